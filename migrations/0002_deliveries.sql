-- slurm-ledger schema, version 2: the delivery engine's state, shared by every sink.
-- The ledger knows a sink only by name and stores its payloads as opaque text.

-- Each sink follows job_runs.change_seq with its own cursor.
CREATE TABLE sink_cursors (
    sink       TEXT    PRIMARY KEY,
    change_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Per sink and job run: the planning frontier. Slices exist for the billable span up to
-- planned_until; hold_reason says why the run cannot be planned (e.g. unmapped account).
CREATE TABLE sink_runs (
    sink          TEXT    NOT NULL,
    cluster       TEXT    NOT NULL,
    job_id_raw    INTEGER NOT NULL,
    submit        INTEGER NOT NULL,
    planned_until INTEGER,
    complete      INTEGER NOT NULL DEFAULT 0,
    hold_reason   TEXT,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (sink, cluster, job_id_raw, submit)
) STRICT;
CREATE INDEX sink_runs_held ON sink_runs (sink) WHERE hold_reason IS NOT NULL;
CREATE INDEX sink_runs_open ON sink_runs (sink) WHERE complete = 0;

-- The outbox. id is deterministic (sink, run key, slice), so a slice can never be planned twice.
-- state: pending → sent → delivered | retry (next_attempt_at) | rejected; 'sent' means the
-- outcome is unknown (sent, no answer recorded) and must be looked up before sending again.
CREATE TABLE deliveries (
    id              TEXT    PRIMARY KEY,
    sink            TEXT    NOT NULL,
    cluster         TEXT    NOT NULL,
    job_id_raw      INTEGER NOT NULL,
    submit          INTEGER NOT NULL,
    slice_start     INTEGER NOT NULL,
    slice_end       INTEGER NOT NULL,
    quantity        TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'delivered', 'retry', 'rejected')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    remote_id       TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX deliveries_due ON deliveries (sink, state, next_attempt_at);
CREATE INDEX deliveries_by_run ON deliveries (sink, cluster, job_id_raw, submit);
