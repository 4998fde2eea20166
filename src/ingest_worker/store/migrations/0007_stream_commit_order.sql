-- The stream's positions follow commit visibility, not allocation order.
--
-- Concurrent write batches each commit in their own transaction, in any order: an event recorded
-- earlier (by time or by any counter taken before commit) can become visible after a later one,
-- and a reader resuming "after the last position it saw" would skip it for good. Each event now
-- carries the id of the transaction that wrote it (`tx`), the stream's order leads with it, and
-- a reader serves only the events of transactions below its snapshot's xmin: every one of those
-- has ended, and every transaction still to write gets a larger id, so that prefix of the order
-- never changes once read.
--
-- Rows already present take this migration's transaction id (one value for all of them): they
-- keep their recording order among themselves, and come before every later event.

ALTER TABLE incident_events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX IF NOT EXISTS incident_events_tenant_tx_idx
    ON incident_events (tenant, tx, recorded_at, incident_id, seq);
-- The resume reads by the index above; the older one only served the position it replaces.
DROP INDEX IF EXISTS incident_events_tenant_recorded_idx;
