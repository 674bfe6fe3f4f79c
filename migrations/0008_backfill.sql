-- slurm-ledger schema, version 8: what `backfill` did, month by month, so that an interrupted
-- backfill resumes where it stopped and does no month twice.
-- part: `collect:CLUSTER` (every window of the month was read from that cluster) or `report:SINK`
-- (every item of the sink in that month went out). done_at: when it was done; NULL while it is
-- not, with `error` saying why the last try failed (it is tried again by the next backfill).
CREATE TABLE backfill (
    month      TEXT    NOT NULL,
    part       TEXT    NOT NULL,
    done_at    INTEGER,
    error      TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (month, part)
) STRICT;
-- The total an accumulating item had when it was last delivered: what the platform holds, as far
-- as the ledger knows (`status` shows it beside the ledger's total). NULL: never delivered, or
-- not a total.
ALTER TABLE outbox ADD COLUMN delivered_total INTEGER;
-- Totals delivered before this version: what they hold now is what was delivered.
UPDATE outbox SET delivered_total = total WHERE state = 3 AND total IS NOT NULL;
