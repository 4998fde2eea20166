-- Whole-table views for operators (ingest_worker.store.overview): the incident gauge of the
-- worker's metrics and the CLI's timeline of one incident key, across tenants.

-- name: active_counts
-- The active incidents only: served by the partial index of active incidents, a small part of
-- the table, so cheap enough for every probe interval.
SELECT status, severity, count(*) FROM incidents
WHERE status = ANY($1::text[]) GROUP BY status, severity

-- name: all_counts
-- Every status: a scan of the whole table, which only grows.
SELECT status, severity, count(*) FROM incidents GROUP BY status, severity

-- name: timeline
SELECT i.episode, e.seq, e.type, e.occurred_at, e.payload->'cause' AS cause,
       e.payload->>'rationale' AS rationale, e.payload->>'note' AS note,
       e.payload->'changes'->'status' AS status, e.payload->'snapshot'->>'status' AS now, i.id
FROM incidents AS i
JOIN incident_events AS e ON e.tenant = i.tenant AND e.incident_id = i.id
WHERE i.incident_key = $1 OR i.id::text = $1
ORDER BY i.episode, e.seq
