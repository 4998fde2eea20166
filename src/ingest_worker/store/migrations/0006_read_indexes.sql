-- The read side: one index per list sort, each leading with the tenant, so that a page of any
-- filter is a walk down one tenant's slice of one index (keyset pagination, no offset), and
-- the stream's resume reads one tenant's events in recording order.

CREATE INDEX IF NOT EXISTS incidents_tenant_last_seen_idx
    ON incidents (tenant, last_seen_at DESC, id DESC);
-- It serves every range of (tenant, last_seen_at) the older index served: one index less to
-- maintain on every write.
DROP INDEX IF EXISTS incidents_tenant_last_seen_at_idx;
CREATE INDEX IF NOT EXISTS incidents_tenant_created_idx
    ON incidents (tenant, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS incidents_tenant_updated_idx
    ON incidents (tenant, updated_at DESC, id DESC);
-- RED before YELLOW, then newest first: the rank expression is the one the -severity query uses.
CREATE INDEX IF NOT EXISTS incidents_tenant_severity_idx
    ON incidents (tenant, (CASE severity WHEN 'RED' THEN 2 ELSE 1 END) DESC,
                  last_seen_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS incident_events_tenant_recorded_idx
    ON incident_events (tenant, recorded_at, incident_id, seq);
