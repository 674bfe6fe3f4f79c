-- slurm-ledger schema, version 9: runs' allocation detail (`scontrol -d show job`: which CPUs and
-- GPUs of which node), which only slurmctld knows and only until MinJobAge after a job's end;
-- read for the sinks that report it (cc-backend's resources) and kept apart from the run's
-- content, so it never changes a run's hash or change_seq.
-- detail: JSON of the allocation; NULL: slurmctld no longer knew the run when it was asked (it
-- is not asked again; the sinks use what sacct said). asked_at: when it was asked.
CREATE TABLE run_allocations (
    cluster    TEXT    NOT NULL,
    job_id_raw INTEGER NOT NULL,
    submit     INTEGER NOT NULL,
    asked_at   INTEGER NOT NULL,
    detail     TEXT,
    PRIMARY KEY (cluster, job_id_raw, submit)
) STRICT, WITHOUT ROWID;
-- Per cluster, the change_seq up to which runs were considered for an ask (runs that change
-- later, e.g. a pending run that starts, are considered again).
CREATE TABLE allocation_cursors (
    cluster    TEXT    NOT NULL PRIMARY KEY,
    change_seq INTEGER NOT NULL
) STRICT;
