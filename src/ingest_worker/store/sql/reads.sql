-- The read side (ingest_worker.store.reads): the incident list, detail, timeline and receipts
-- (the stream's reads are in stream.sql). Every query names the tenant ($1) and runs as
-- ingest_reader with the same tenant set for the transaction; every one is served by an index
-- that leads with the tenant.
--
-- List blocks share the filter block `incident_filters` (inserted where `/*filters*/` stands).
-- Parameters of the filters: $5 statuses, $6 severities, $7 source kinds, $8 envs, $9 correlation
-- keys (any of them), $10 incident keys, $11 title substring (case-insensitive), $12..$17 the
-- since/until bounds on created_at, updated_at, last_seen_at; NULL: no filter.

-- name: incident_columns
id, tenant, incident_key, episode, title, status, severity, source_kind, env, correlation_keys,
occurrence_count, first_seen_at, last_seen_at, created_at, updated_at, acknowledged_at,
mitigated_at, resolved_at, closed_at, resolved_by, reopen_count, previous_incident_id,
classification::text AS classification, source_primary::text AS source_primary, last_seq,
classification->>'error_code' AS error_code

-- name: incident_filters
  AND ($5::text[] IS NULL OR status = ANY($5::text[]))
  AND ($6::text[] IS NULL OR severity = ANY($6::text[]))
  AND ($7::text[] IS NULL OR source_kind = ANY($7::text[]))
  AND ($8::text[] IS NULL OR env = ANY($8::text[]))
  AND ($9::text[] IS NULL OR correlation_keys && $9::text[])
  AND ($10::text[] IS NULL OR incident_key = ANY($10::text[]))
  AND ($11::text IS NULL OR strpos(lower(title), lower($11::text)) > 0)
  AND ($12::timestamptz IS NULL OR created_at >= $12::timestamptz)
  AND ($13::timestamptz IS NULL OR created_at < $13::timestamptz)
  AND ($14::timestamptz IS NULL OR updated_at >= $14::timestamptz)
  AND ($15::timestamptz IS NULL OR updated_at < $15::timestamptz)
  AND ($16::timestamptz IS NULL OR last_seen_at >= $16::timestamptz)
  AND ($17::timestamptz IS NULL OR last_seen_at < $17::timestamptz)

-- name: list_by_last_seen
-- $2, $3: the page starts below (last_seen_at, id); $4: last_seen_at lower bound; $18: limit.
SELECT /*columns*/ FROM incidents
WHERE tenant = $1::text
  AND (last_seen_at, id) < ($2::timestamptz, $3::uuid)
  AND last_seen_at >= $4::timestamptz
/*filters*/
ORDER BY last_seen_at DESC, id DESC
LIMIT $18::int

-- name: list_by_created
SELECT /*columns*/ FROM incidents
WHERE tenant = $1::text
  AND (created_at, id) < ($2::timestamptz, $3::uuid)
  AND created_at >= $4::timestamptz
/*filters*/
ORDER BY created_at DESC, id DESC
LIMIT $18::int

-- name: list_by_updated
SELECT /*columns*/ FROM incidents
WHERE tenant = $1::text
  AND (updated_at, id) < ($2::timestamptz, $3::uuid)
  AND updated_at >= $4::timestamptz
/*filters*/
ORDER BY updated_at DESC, id DESC
LIMIT $18::int

-- name: list_by_severity
-- $2, $3, $4: the page starts below (severity rank, last_seen_at, id); RED ranks 2, YELLOW 1.
SELECT /*columns*/ FROM incidents
WHERE tenant = $1::text
  AND ((CASE severity WHEN 'RED' THEN 2 ELSE 1 END), last_seen_at, id)
      < ($2::int, $3::timestamptz, $4::uuid)
/*filters*/
ORDER BY (CASE severity WHEN 'RED' THEN 2 ELSE 1 END) DESC, last_seen_at DESC, id DESC
LIMIT $18::int

-- name: count_incidents
-- The list's filters and parameters; the page's ($2..$4, $18) play no part (num_nulls only types
-- them, so that one argument list serves both).
SELECT count(*) FROM incidents
WHERE tenant = $1::text
  AND num_nulls($2::timestamptz, $3::uuid, $4::timestamptz, $18::int) >= 0
/*filters*/

-- name: incident_by_id
SELECT /*columns*/ FROM incidents WHERE tenant = $1::text AND id = $2::uuid

-- name: incident_exists
SELECT EXISTS (SELECT 1 FROM incidents WHERE tenant = $1::text AND id = $2::uuid)

-- name: next_episode
SELECT id FROM incidents
WHERE tenant = $1::text AND incident_key = $2::text AND episode = $3::int + 1

-- name: evidence_of
-- $3: with payloads (only on request: they can be large).
SELECT kind, ref, sha256, observed_at,
       CASE WHEN $3::bool THEN payload::text END AS payload
FROM incident_evidence
WHERE tenant = $1::text AND incident_id = $2::uuid
ORDER BY observed_at, sha256
LIMIT 1000

-- name: timeline_of
-- $3: after this seq; $4: event types (NULL: all); $5: limit.
SELECT seq, type, occurred_at, recorded_at, hash, prev_hash,
       payload->'cause' AS cause, payload->'cause'->'actor' AS actor,
       payload->>'rationale' AS rationale, payload->>'note' AS note,
       payload->'changes' AS changes
FROM incident_events
WHERE tenant = $1::text AND incident_id = $2::uuid AND seq > $3::int
  AND ($4::text[] IS NULL OR type = ANY($4::text[]))
ORDER BY seq
LIMIT $5::int

-- name: receipt_of
SELECT command_id, type, incident_id, outcome, reason, event_id, result::text AS result,
       recorded_at
FROM command_receipts
WHERE tenant = $1::text AND command_id = $2::text
