-- slurm-ledger schema, version 1. Migrations are append-only: never edit a released file,
-- add 0002_*.sql instead.

-- Free-form counters and settings of the ledger itself.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT;
INSERT INTO meta (key, value) VALUES ('change_seq', 0);

-- One row per run of a job: slurmdbd's key (cluster, JobIDRaw, submit time).
-- change_seq is a ledger-wide sequence number, bumped on every insert or content change, so
-- every consumer (meter, sinks, archive) can read "what changed since N" with its own cursor.
CREATE TABLE job_runs (
    cluster           TEXT    NOT NULL,
    job_id_raw        INTEGER NOT NULL,
    submit            INTEGER NOT NULL,
    job_id            TEXT    NOT NULL,
    array_job_id      INTEGER,
    array_task_id     INTEGER,
    het_job_id        INTEGER,
    het_job_offset    INTEGER,
    name              TEXT    NOT NULL,
    user_name         TEXT    NOT NULL,
    uid               INTEGER,
    group_name        TEXT    NOT NULL,
    account           TEXT    NOT NULL,
    partition         TEXT    NOT NULL,
    qos               TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    cancelled_by      INTEGER,
    exit_code         TEXT,
    derived_exit_code TEXT,
    eligible          INTEGER,
    start             INTEGER,
    end               INTEGER,
    elapsed_secs      INTEGER NOT NULL,
    suspended_secs    INTEGER NOT NULL,
    timelimit_mins    INTEGER,
    nnodes            INTEGER NOT NULL,
    alloc_cpus        INTEGER NOT NULL,
    req_cpus          INTEGER NOT NULL,
    req_mem_bytes     INTEGER,
    req_mem_per_cpu   INTEGER NOT NULL,
    req_tres          TEXT    NOT NULL,
    alloc_tres        TEXT    NOT NULL,
    nodelist          TEXT    NOT NULL,
    total_cpu_ms      INTEGER NOT NULL,
    user_cpu_ms       INTEGER NOT NULL,
    system_cpu_ms     INTEGER NOT NULL,
    max_rss_bytes     INTEGER,
    tres_usage_in_tot TEXT    NOT NULL,
    step_count        INTEGER NOT NULL,
    energy_joules     INTEGER,
    wckey             TEXT    NOT NULL,
    reservation       TEXT    NOT NULL,
    flags             TEXT    NOT NULL,
    work_dir          TEXT    NOT NULL,
    submit_line       TEXT    NOT NULL,
    db_index          INTEGER,
    is_final          INTEGER NOT NULL,
    content_hash      INTEGER NOT NULL,
    revision          INTEGER NOT NULL,
    change_seq        INTEGER NOT NULL,
    first_seen        INTEGER NOT NULL,
    last_changed      INTEGER NOT NULL,
    PRIMARY KEY (cluster, job_id_raw, submit)
) STRICT;
CREATE INDEX job_runs_by_change ON job_runs (change_seq);
CREATE INDEX job_runs_open ON job_runs (cluster, job_id_raw) WHERE is_final = 0;

-- Where the next poll of each cluster starts (before the safety overlap).
CREATE TABLE collect_cursors (
    cluster    TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Records that could not be read, with their text and the reason. Never deleted by collect.
CREATE TABLE quarantine (
    id         INTEGER PRIMARY KEY,
    cluster    TEXT    NOT NULL,
    source     TEXT    NOT NULL,
    line       INTEGER NOT NULL,
    raw        TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    times_seen INTEGER NOT NULL,
    UNIQUE (cluster, raw)
) STRICT;

-- One row per collect: what it asked for and what it got.
CREATE TABLE collect_runs (
    id            INTEGER PRIMARY KEY,
    cluster       TEXT    NOT NULL,
    source        TEXT    NOT NULL,
    slurm_version TEXT,
    window_start  INTEGER,
    window_end    INTEGER,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    runs_seen     INTEGER NOT NULL,
    runs_new      INTEGER NOT NULL,
    runs_updated  INTEGER NOT NULL,
    quarantined   INTEGER NOT NULL,
    error         TEXT
) STRICT;
