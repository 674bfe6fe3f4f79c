-- slurm-ledger schema, version 3: what a replaced tool (slurm-tracker) already reported, per job,
-- so that switching to slurm-ledger bills nothing twice. A row applies to the first run of the
-- job a sink plans whose facts match it; applied_submit then names that run.
CREATE TABLE imported_frontiers (
    sink                  TEXT    NOT NULL,
    cluster               TEXT    NOT NULL,
    job_id_raw            INTEGER NOT NULL,
    reported_elapsed_secs INTEGER NOT NULL,
    reported_at           INTEGER NOT NULL,
    completed_at          INTEGER NOT NULL,
    source                TEXT    NOT NULL,
    imported_at           INTEGER NOT NULL,
    applied_submit        INTEGER,
    PRIMARY KEY (sink, cluster, job_id_raw)
) STRICT;
CREATE INDEX imported_frontiers_pending ON imported_frontiers (sink) WHERE applied_submit IS NULL;
