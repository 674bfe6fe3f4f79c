-- slurm-ledger schema, version 5: one outbox for every kind of consumer (sinks of slices, totals,
-- events, the archive). The ledger knows a consumer only by name; what an item means is the
-- consumer's: the engine stores its opaque key, the run it belongs to, its span, amount and
-- route, and drives the state machine. Every delivery, frontier and cursor of version 4 is
-- carried over unchanged; nothing is re-planned.

-- Each consumer follows job_runs.change_seq with its own cursor (was sink_cursors).
CREATE TABLE consumers (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    change_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
INSERT INTO consumers (name, change_seq, updated_at) SELECT sink, change_seq, updated_at FROM sink_cursors ORDER BY sink;
INSERT OR IGNORE INTO consumers (name, change_seq, updated_at)
    SELECT sink, 0, 0 FROM (SELECT sink FROM sink_runs UNION SELECT sink FROM deliveries) ORDER BY sink;

-- Per consumer and run: the consumer's mark (for slices, the billable span planned so far), whether
-- nothing more will come (done), and why the run is held (was sink_runs).
CREATE TABLE consumer_runs (
    consumer   INTEGER NOT NULL,
    cluster    TEXT    NOT NULL,
    job_id_raw INTEGER NOT NULL,
    submit     INTEGER NOT NULL,
    mark       INTEGER,
    done       INTEGER NOT NULL,
    hold       TEXT,
    PRIMARY KEY (consumer, cluster, job_id_raw, submit)
) STRICT, WITHOUT ROWID;
INSERT INTO consumer_runs (consumer, cluster, job_id_raw, submit, mark, done, hold)
    SELECT c.id, s.cluster, s.job_id_raw, s.submit, s.planned_until, s.complete, s.hold_reason
    FROM sink_runs s JOIN consumers c ON c.name = s.sink;
CREATE INDEX consumer_runs_held ON consumer_runs (consumer) WHERE hold IS NOT NULL;

-- The outbox (was deliveries). key is the item's deterministic id, unique per consumer, so an item
-- is never planned twice. Lean: no payload (a sender renders it from the run and the item when it
-- sends), no CHECK. state: 0 pending → 1 sent → 3 delivered | 2 retry (next_attempt_at) | 4
-- rejected; 1 means the outcome is unknown and the item is looked up before it is sent again.
-- route: what the planner pinned when it planned (for ACTIVATE: allocation, SKU and TRES; for JSONL:
-- TRES and unit; joined by 0x1F), so that a send and its look-up go where and as planned even if the
-- mapping or the config changed since. total: an accumulating
-- item's running total (a total per period, counted once per run's increment); NULL otherwise.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    consumer        INTEGER NOT NULL,
    key             TEXT    NOT NULL,
    cluster         TEXT,
    job_id_raw      INTEGER,
    submit          INTEGER,
    span_start      INTEGER,
    span_end        INTEGER,
    amount          TEXT,
    route           TEXT,
    total           INTEGER,
    state           INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    remote_id       TEXT,
    updated_at      INTEGER NOT NULL
) STRICT;
-- Version 4 stored each payload whole. The route keeps what the sink pinned in it: for ACTIVATE
-- ({"allocation": …, "event": {"sku": …, "metadata": {"tres": …}}}) the allocation, SKU and TRES;
-- for JSONL ({"tres": …, "unit": …, …}) the TRES and unit; each joined by 0x1F.
INSERT INTO outbox (consumer, key, cluster, job_id_raw, submit, span_start, span_end, amount, route, state, attempts,
                    next_attempt_at, last_error, remote_id, updated_at)
    SELECT c.id, d.id, d.cluster, d.job_id_raw, d.submit, d.slice_start, d.slice_end, d.quantity,
           CASE WHEN NOT json_valid(d.payload) THEN NULL
                WHEN json_type(d.payload, '$.allocation') = 'text'
                THEN json_extract(d.payload, '$.allocation') || char(31) || coalesce(json_extract(d.payload, '$.event.sku'), '')
                     || char(31) || coalesce(json_extract(d.payload, '$.event.metadata.tres'), '')
                WHEN json_type(d.payload, '$.tres') = 'text'
                THEN json_extract(d.payload, '$.tres') || char(31) || coalesce(json_extract(d.payload, '$.unit'), '')
           END,
           CASE d.state WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'retry' THEN 2 WHEN 'delivered' THEN 3 ELSE 4 END,
           d.attempts, d.next_attempt_at, d.last_error, d.remote_id, d.updated_at
    FROM deliveries d JOIN consumers c ON c.name = d.sink
    ORDER BY d.created_at, d.id;
CREATE UNIQUE INDEX outbox_key ON outbox (consumer, key);
CREATE INDEX outbox_due ON outbox (consumer, next_attempt_at) WHERE state < 3;
CREATE INDEX outbox_rejected ON outbox (consumer) WHERE state = 4;

DROP TABLE deliveries;
DROP TABLE sink_runs;
DROP TABLE sink_cursors;
