-- The outbox (ingest_worker.store.outbox): the rows committed events and command outcomes leave
-- behind for the publisher, read and deleted in the publisher's round transaction.

-- name: lock_lanes
-- The lanes no other publisher holds, locked until the round's transaction ends.
SELECT lane FROM outbox_lanes ORDER BY lane FOR UPDATE SKIP LOCKED

-- name: fetch_round
-- The rows of the lanes `lock_lanes` returned ($2), read by a statement of their own: its
-- snapshot is taken after the locks were granted, so it sees the deletions of a publisher that
-- held one of those lanes and committed. Read in the locking statement, whose snapshot is older
-- than its locks, those rows would be published a second time. The round's rows are picked
-- from the outbox alone (ids, ORDER BY … LIMIT) before any payload is read: with the payload in
-- the same select list, PostgreSQL renders the payload of every backlog row before the top-N
-- sort keeps $1 of them, so a round's cost would grow with the backlog. Each event is then one
-- probe of its primary key (LATERAL … LIMIT 1): with a plain join, stale statistics can let the
-- planner hash the whole incident_events table.
WITH picked AS MATERIALIZED (
    SELECT o.tenant, o.event_id, o.incident_id, o.seq, o.traceparent
    FROM outbox o
    WHERE o.lane = ANY($2::integer[])
    ORDER BY o.incident_id, o.seq
    LIMIT $1
)
SELECT e.id, e.incident_id, e.seq, e.type, e.hash, e.payload::text AS payload_text,
       e.payload->>'occurred_at' AS occurred_at, e.payload->>'incident_key' AS incident_key,
       p.traceparent, p.tenant
FROM picked AS p
CROSS JOIN LATERAL (
    SELECT * FROM incident_events AS x WHERE x.tenant = p.tenant AND x.id = p.event_id LIMIT 1
) AS e
ORDER BY p.incident_id, p.seq

-- name: delete_events
DELETE FROM outbox AS o USING unnest($1::text[], $2::uuid[]) AS u(tenant, event_id)
WHERE o.tenant = u.tenant AND o.event_id = u.event_id

-- name: fetch_results
SELECT tenant, id, command_id, outcome, subject, payload::text AS payload_text,
       occurred_at
FROM command_results_outbox
ORDER BY created_at, id
LIMIT $1
FOR UPDATE SKIP LOCKED

-- name: delete_results
DELETE FROM command_results_outbox AS o USING unnest($1::text[], $2::uuid[]) AS u(tenant, id)
WHERE o.tenant = u.tenant AND o.id = u.id

-- name: backlog
SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM command_results_outbox)
