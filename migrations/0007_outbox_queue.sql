-- slurm-ledger schema, version 7: a pass drains the backlog (bounded by time, not count), and
-- `status` shows how old the backlog is.
-- queued_at: when the item last became owed (planned; a delivered total raised again; a rejected
-- item put back by `retry`). NULL for items planned before this version: their updated_at stands in.
ALTER TABLE outbox ADD COLUMN queued_at INTEGER;
-- The open items of a consumer in id order (an index on (consumer) is ordered by rowid within a
-- consumer): a pass walks its backlog once, batch after batch, by id. Replaces outbox_due, whose
-- order by next_attempt_at made each batch sort the whole backlog again.
DROP INDEX outbox_due;
CREATE INDEX outbox_open ON outbox (consumer) WHERE state < 3;
