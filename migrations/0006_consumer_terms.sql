-- slurm-ledger schema, version 6: the terms each consumer bills on (for a slice sink: its TRES,
-- basis, unit, period and zone), as its planner states them. Items are planned on these terms; a
-- pass whose terms differ from the stored ones is refused until the operator accepts the change
-- (`slurm-ledger accept-terms`), so that a changed TRES never silently re-plans or skips usage.
-- NULL: not known yet (the first pass stores them).
ALTER TABLE consumers ADD COLUMN terms TEXT;
