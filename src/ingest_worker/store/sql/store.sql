-- Queries of the batch write path (ingest_worker.store). jsonb travels as text both ways so
-- that the queries work whatever jsonb codec the connection has.
-- Every query is scoped to one tenant, its last parameter: the worker's role sees every
-- tenant's rows (row-level security lets the writer through), so the predicates here do the
-- scoping, and each leads an index probe.

-- name: lock_incidents
-- Transaction-scoped advisory locks on the batch's incidents, taken in ascending key order so
-- that concurrent writers never deadlock. Locks also cover incidents that do not exist yet.
SELECT pg_advisory_xact_lock($1::int4, s.k)
FROM (SELECT DISTINCT u.k FROM unnest($2::int4[]) AS u(k) ORDER BY u.k) AS s;

-- name: insert_processed_signals
-- Returns only the signals never applied before: the others are redeliveries.
-- Also creates the outbox lanes the batch may use (sorted, before any other write: lane rows
-- are the only rows two writers may both insert, so they must be inserted in one order).
WITH new_lanes AS (
    INSERT INTO outbox_lanes (lane)
    SELECT l.lane FROM unnest($3::int4[]) AS l(lane)
    WHERE NOT EXISTS (SELECT FROM outbox_lanes AS o WHERE o.lane = l.lane)
    ORDER BY l.lane
    ON CONFLICT ON CONSTRAINT outbox_lanes_pkey DO NOTHING
)
INSERT INTO processed_signals (tenant, incident_key, signal_sha256)
SELECT $4::text, u.incident_key, u.signal_sha256
FROM unnest($1::text[], $2::text[]) AS u(incident_key, signal_sha256)
ON CONFLICT ON CONSTRAINT processed_signals_pkey DO NOTHING
RETURNING incident_key, signal_sha256;

-- name: select_incidents
-- Newest episode of the given incident keys ($1), and of the keys with an active incident in
-- the given recovery scopes ($2, usually empty), with the hash of its newest event.
-- Two index scans (the key index, the partial index of active incidents by scope), never a
-- scan of the table.
WITH wanted AS (
    SELECT u.k AS incident_key FROM unnest($1::text[]) AS u(k)
    UNION
    -- One probe of the partial index per scope: as `recovery_scope = ANY($2)`, a young table's
    -- planner chose a scan of the tenant's whole last_seen_at index instead.
    SELECT a.incident_key
    FROM unnest($2::text[]) AS r(scope)
    CROSS JOIN LATERAL (
        SELECT n.incident_key FROM incidents AS n
        WHERE n.tenant = $3::text
          AND n.recovery_scope = r.scope
          AND n.status IN ('PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED')
        OFFSET 0
    ) AS a
)
SELECT i.id, i.incident_key, i.source_kind, i.severity, i.status, i.title, i.env,
       i.classification::text AS classification, i.source_primary::text AS source_primary,
       i.correlation_keys, i.first_seen_at, i.last_seen_at, i.occurrence_count, i.last_seq,
       i.lead_signal_at, i.lead_signal_sha256, i.episode, i.previous_incident_id,
       i.recovery_scope, i.acknowledged_at, i.mitigated_at, i.resolved_at, i.closed_at,
       i.resolved_by, i.reopen_count, e.hash AS head_hash
FROM wanted AS w
CROSS JOIN LATERAL (
    SELECT * FROM incidents AS n
    WHERE n.tenant = $3::text AND n.incident_key = w.incident_key
    ORDER BY n.episode DESC
    LIMIT 1
) AS i
LEFT JOIN incident_events AS e
    ON e.tenant = $3::text AND e.incident_id = i.id AND e.seq = i.last_seq;

-- name: select_recoveries
-- The newest recovery of each given scope ($1, distinct), stored before this batch: one index
-- probe per scope (an `= ANY` over a batch of scopes made the planner scan the whole table).
SELECT u.scope, r.signal_time, r.signal_sha256
FROM unnest($1::text[]) AS u(scope)
CROSS JOIN LATERAL (
    SELECT n.signal_time, n.signal_sha256
    FROM recoveries AS n
    WHERE n.tenant = $2::text AND n.scope = u.scope
    ORDER BY n.signal_time DESC, n.signal_sha256 DESC
    LIMIT 1
) AS r;

-- name: insert_recoveries
INSERT INTO recoveries (tenant, scope, signal_sha256, source_kind, signal_time)
SELECT $5::text, u.scope, u.signal_sha256, u.source_kind, u.signal_time
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
     AS u(scope, signal_sha256, source_kind, signal_time)
ON CONFLICT ON CONSTRAINT recoveries_pkey DO NOTHING;

-- name: select_evidence
-- Which of the given (incident_id, sha256) evidence rows exist already: one probe of the unique
-- index per pair (a join let the planner hash the whole table for a small batch).
SELECT u.incident_id, u.sha256
FROM unnest($1::uuid[], $2::text[]) AS u(incident_id, sha256)
CROSS JOIN LATERAL (
    SELECT FROM incident_evidence AS e
    WHERE e.tenant = $3::text AND e.incident_id = u.incident_id AND e.sha256 = u.sha256
    LIMIT 1
) AS found;

-- name: write_chunk
-- One statement writes a chunk of the batch from its events alone: the events ($1 payloads
-- as text, $2 hashes), their outbox rows ($3 lanes, $6 traceparents: NULL while tracing is off),
-- each incident row as the snapshot of its newest event, and the evidence the events list in
-- changes.evidence_added ($4 sha256 → $5 redacted payload). Then it wakes the outbox publisher (pg_notify is delivered at commit,
-- once per transaction, not at all on rollback). Returns the row counts, which the caller checks.
WITH chunk AS MATERIALIZED (
    SELECT u.payload::jsonb AS payload, u.hash, u.lane, u.traceparent
    FROM unnest($1::text[], $2::text[], $3::int4[], $6::text[]) AS u(payload, hash, lane, traceparent)
), newest AS (
    SELECT DISTINCT ON (c.payload ->> 'incident_id') c.payload -> 'snapshot' AS snapshot
    FROM chunk AS c
    ORDER BY c.payload ->> 'incident_id', (c.payload ->> 'seq')::int4 DESC
), upserted AS (
    INSERT INTO incidents AS i (
        tenant, id, incident_key, source_kind, severity, status, title, env, classification,
        source_primary, correlation_keys, first_seen_at, last_seen_at, occurrence_count,
        last_seq, lead_signal_at, lead_signal_sha256, episode, previous_incident_id,
        recovery_scope, acknowledged_at, mitigated_at, resolved_at, closed_at, resolved_by,
        reopen_count)
    SELECT $7::text, r.id, r.incident_key, r.source_kind, r.severity, r.status, r.title, r.env,
           r.classification, r.source_primary, r.correlation_keys, r.first_seen_at,
           r.last_seen_at, r.occurrence_count, r.last_seq, r.lead_signal_at,
           r.lead_signal_sha256, r.episode, r.previous_incident_id, r.recovery_scope,
           r.acknowledged_at, r.mitigated_at, r.resolved_at, r.closed_at, r.resolved_by,
           r.reopen_count
    FROM newest AS n
    CROSS JOIN LATERAL jsonb_populate_record(NULL::incidents, n.snapshot) AS r
    ORDER BY r.episode
    ON CONFLICT ON CONSTRAINT incidents_pkey DO UPDATE SET
        source_kind = EXCLUDED.source_kind,
        severity = EXCLUDED.severity,
        status = EXCLUDED.status,
        title = EXCLUDED.title,
        env = EXCLUDED.env,
        classification = EXCLUDED.classification,
        source_primary = EXCLUDED.source_primary,
        correlation_keys = EXCLUDED.correlation_keys,
        first_seen_at = EXCLUDED.first_seen_at,
        last_seen_at = EXCLUDED.last_seen_at,
        occurrence_count = EXCLUDED.occurrence_count,
        last_seq = EXCLUDED.last_seq,
        lead_signal_at = EXCLUDED.lead_signal_at,
        lead_signal_sha256 = EXCLUDED.lead_signal_sha256,
        acknowledged_at = EXCLUDED.acknowledged_at,
        mitigated_at = EXCLUDED.mitigated_at,
        resolved_at = EXCLUDED.resolved_at,
        closed_at = EXCLUDED.closed_at,
        resolved_by = EXCLUDED.resolved_by,
        reopen_count = EXCLUDED.reopen_count,
        updated_at = now()
    RETURNING 1
), new_events AS (
    INSERT INTO incident_events (
        tenant, id, incident_id, seq, type, occurred_at, payload, prev_hash, hash)
    SELECT $7::text, (c.payload ->> 'id')::uuid, (c.payload ->> 'incident_id')::uuid,
           (c.payload ->> 'seq')::int4, c.payload ->> 'type',
           (c.payload ->> 'occurred_at')::timestamptz, c.payload, c.payload ->> 'prev_hash',
           c.hash
    FROM chunk AS c
    RETURNING 1
), new_outbox AS (
    INSERT INTO outbox (tenant, event_id, incident_id, seq, lane, traceparent)
    SELECT $7::text, (c.payload ->> 'id')::uuid, (c.payload ->> 'incident_id')::uuid,
           (c.payload ->> 'seq')::int4, c.lane, c.traceparent
    FROM chunk AS c
    RETURNING 1
), new_evidence AS (
    INSERT INTO incident_evidence (tenant, incident_id, kind, ref, sha256, payload, observed_at)
    SELECT $7::text, (c.payload ->> 'incident_id')::uuid, a.item ->> 'kind', a.item ->> 'ref',
           a.item ->> 'sha256', x.payload::jsonb, (c.payload ->> 'occurred_at')::timestamptz
    FROM chunk AS c
    CROSS JOIN LATERAL jsonb_array_elements(c.payload -> 'changes' -> 'evidence_added') AS a(item)
    JOIN unnest($4::text[], $5::text[]) AS x(sha256, payload) ON x.sha256 = a.item ->> 'sha256'
    ON CONFLICT ON CONSTRAINT incident_evidence_tenant_incident_id_sha256_key DO NOTHING
    RETURNING 1
)
SELECT pg_notify('ingest_outbox', '') AS notified,
       (SELECT count(*) FROM upserted) AS incidents,
       (SELECT count(*) FROM new_evidence) AS evidence,
       (SELECT count(*) FROM new_events) AS events,
       (SELECT count(*) FROM new_outbox) AS outbox;

-- name: select_command_scopes
-- Key and recovery scope of command targets (immutable: read before taking the locks), every
-- episode of each key ($1) and each id ($2). One index probe per key and per id, whatever the
-- estimates (the LATERAL subqueries are not flattened: OFFSET 0): as `incident_key = ANY($1)
-- OR id = ANY($2)`, and even as a join of unnest($1) to incidents, the planner chose a
-- sequential scan of the whole table, a cost that grows with the table instead of the batch.
SELECT k.incident_key, k.recovery_scope
FROM unnest($1::text[]) AS u(k)
CROSS JOIN LATERAL (
    SELECT n.incident_key, n.recovery_scope FROM incidents AS n
    WHERE n.tenant = $3::text AND n.incident_key = u.k
    OFFSET 0
) AS k
UNION
SELECT d.incident_key, d.recovery_scope
FROM unnest($2::uuid[]) AS u(id)
CROSS JOIN LATERAL (
    SELECT n.incident_key, n.recovery_scope FROM incidents AS n
    WHERE n.tenant = $3::text AND n.id = u.id
    OFFSET 0
) AS d;

-- name: select_command_targets
-- The targets of a batch's commands and source transitions: the newest episode of each key
-- ($1) and the incidents with the given ids ($2), each with the hash of its newest event.
-- Read after the batch's signals were applied, inside its transaction and locks.
WITH wanted AS (
    SELECT n.id FROM unnest($1::text[]) AS u(k)
    CROSS JOIN LATERAL (
        SELECT a.id FROM incidents AS a
        WHERE a.tenant = $3::text AND a.incident_key = u.k
        ORDER BY a.episode DESC
        LIMIT 1
    ) AS n
    UNION
    SELECT b.id FROM unnest($2::uuid[]) AS v(id)
    CROSS JOIN LATERAL (
        SELECT n.id FROM incidents AS n WHERE n.tenant = $3::text AND n.id = v.id OFFSET 0
    ) AS b
)
SELECT i.id, i.incident_key, i.source_kind, i.severity, i.status, i.title, i.env,
       i.classification::text AS classification, i.source_primary::text AS source_primary,
       i.correlation_keys, i.first_seen_at, i.last_seen_at, i.occurrence_count, i.last_seq,
       i.lead_signal_at, i.lead_signal_sha256, i.episode, i.previous_incident_id,
       i.recovery_scope, i.acknowledged_at, i.mitigated_at, i.resolved_at, i.closed_at,
       i.resolved_by, i.reopen_count, e.hash AS head_hash
FROM wanted AS w
JOIN incidents AS i ON i.tenant = $3::text AND i.id = w.id
LEFT JOIN incident_events AS e
    ON e.tenant = $3::text AND e.incident_id = i.id AND e.seq = i.last_seq;

-- name: select_receipts
SELECT command_id, content_sha256, outcome, reason, result::text AS result
FROM command_receipts
WHERE tenant = $2::text AND command_id = ANY($1::text[]);

-- name: insert_receipts
-- The receipts of a batch's new commands, one statement.
INSERT INTO command_receipts (
    tenant, command_id, content_sha256, type, incident_id, outcome, reason, event_id, issued_at,
    result)
SELECT $10::text, u.command_id, u.content_sha256, u.type, u.incident_id, u.outcome, u.reason, u.event_id,
       u.issued_at, u.result::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::uuid[],
            $8::timestamptz[], $9::text[])
     WITH ORDINALITY AS u(command_id, content_sha256, type, incident_id, outcome, reason,
                          event_id, issued_at, result, n)
ORDER BY u.n;

-- name: insert_command_results
-- The outcomes to publish, in batch order (created_at is per row); the same command again
-- queues the same id (at least once, same ce_id). Then it wakes the outbox publisher.
WITH queued AS (
    INSERT INTO command_results_outbox (
        tenant, id, command_id, outcome, subject, payload, occurred_at)
    SELECT $7::text, u.id, u.command_id, u.outcome, u.subject, u.payload::jsonb, u.occurred_at
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
         WITH ORDINALITY AS u(id, command_id, outcome, subject, payload, occurred_at, n)
    ORDER BY u.n
    ON CONFLICT ON CONSTRAINT command_results_outbox_pkey DO NOTHING
    RETURNING 1
)
SELECT pg_notify('ingest_outbox', '') AS notified, (SELECT count(*) FROM queued) AS queued;
