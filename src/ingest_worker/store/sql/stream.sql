-- The live stream's reads (ingest_worker.store.stream). A position is (tx, recorded_at,
-- incident_id, seq): the writing transaction's id first, so that the order is the order in
-- which events become final. Every read stops below the snapshot's xmin: all transactions under
-- it have ended and no new one can write under it, so what is read there never changes.
-- Transaction ids travel as text (xid8 has no binary codec in every driver).

-- name: events_between
-- Events after the position ($2..$5) and up to the position ($6..$9), final ones only, in stream
-- order; $10: limit.
SELECT tx::text AS tx, recorded_at, incident_id, seq, type, hash, payload::text AS payload
FROM incident_events
WHERE tenant = $1::text
  AND (tx, recorded_at, incident_id, seq)
      > ($2::text::xid8, $3::timestamptz, $4::uuid, $5::int)
  AND (tx, recorded_at, incident_id, seq)
      <= ($6::text::xid8, $7::timestamptz, $8::uuid, $9::int)
  AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx, recorded_at, incident_id, seq
LIMIT $10::int

-- name: stream_head
-- The last final event of the tenant: where a stream without Last-Event-ID starts.
SELECT tx::text AS tx, recorded_at, incident_id, seq
FROM incident_events
WHERE tenant = $1::text AND tx < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx DESC, recorded_at DESC, incident_id DESC, seq DESC
LIMIT 1

-- name: event_tx
-- The writing transaction of an event named by an older, three-part position.
SELECT tx::text AS tx, recorded_at
FROM incident_events
WHERE tenant = $1::text AND incident_id = $2::uuid AND seq = $3::int
