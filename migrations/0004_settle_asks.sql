-- slurm-ledger schema, version 4: open runs a poll's window did not show, asked for by job id
-- (`sacct --jobs`). How often and when last, so that a run slurmdbd never settles (purged while
-- open, a record keyed differently, a job held pending) is asked less and less often and is
-- listed by `status`, instead of costing a query on every collect.
CREATE TABLE settle_asks (
    cluster    TEXT    NOT NULL,
    job_id_raw INTEGER NOT NULL,
    submit     INTEGER NOT NULL,
    asks       INTEGER NOT NULL,
    last_asked INTEGER NOT NULL,
    PRIMARY KEY (cluster, job_id_raw, submit)
) STRICT;
