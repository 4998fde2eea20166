-- Read-only queries of `ingest-worker verify` and `replay --check` (ingest_worker.audit).
-- Each streams one table in (tenant, incident_id) order so that the audit merges them incident
-- by incident; $1 is one tenant, or NULL for every tenant.

-- name: incidents_by_id
SELECT tenant, id, incident_key, source_kind, severity, status, title, env,
       classification::text AS classification, source_primary::text AS source_primary,
       correlation_keys, first_seen_at, last_seen_at, occurrence_count, last_seq,
       lead_signal_at, lead_signal_sha256, episode, previous_incident_id, recovery_scope,
       acknowledged_at, mitigated_at, resolved_at, closed_at, resolved_by, reopen_count
FROM incidents
WHERE $1::text IS NULL OR tenant = $1::text
ORDER BY tenant, id;

-- name: events_by_incident
SELECT tenant, id, incident_id, seq, type, occurred_at, payload::text AS payload, prev_hash,
       hash
FROM incident_events
WHERE $1::text IS NULL OR tenant = $1::text
ORDER BY tenant, incident_id, seq;

-- name: evidence_by_incident
SELECT tenant, incident_id, kind, ref, sha256
FROM incident_evidence
WHERE $1::text IS NULL OR tenant = $1::text
ORDER BY tenant, incident_id, sha256;

-- name: events_of_incident
-- One incident's chain (the console's verified mark), in seq order.
SELECT tenant, id, incident_id, seq, type, occurred_at, payload::text AS payload, prev_hash,
       hash
FROM incident_events
WHERE tenant = $1::text AND incident_id = $2::uuid
ORDER BY seq;
