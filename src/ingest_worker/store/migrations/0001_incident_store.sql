-- The incident store: projection, evidence, append-only hash-chained events,
-- permanent signal idempotency and the transactional outbox.
-- Every constraint is named: the write path refers to them in ON CONFLICT clauses.

-- The projection. Every column except created_at/updated_at is a pure function of the SET of
-- signals applied to the incident (never of their order): see ingest_worker.projection.
CREATE TABLE incidents (
    id                 uuid        NOT NULL,
    incident_key       text        NOT NULL,
    source_kind        text        NOT NULL,
    severity           text        NOT NULL,
    status             text        NOT NULL DEFAULT 'OPEN',
    title              text        NOT NULL,
    env                text,
    classification     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    source_primary     jsonb       NOT NULL,
    correlation_keys   text[]      NOT NULL DEFAULT '{}',
    first_seen_at      timestamptz NOT NULL,
    last_seen_at       timestamptz NOT NULL,
    occurrence_count   integer     NOT NULL,
    -- seq of the newest event of this incident (= number of events).
    last_seq           integer     NOT NULL,
    -- The lead signal supplies the descriptive columns (source_kind, title, env,
    -- classification, source_primary): the greatest (severity, lead_signal_at,
    -- lead_signal_sha256) among the incident's signals.
    lead_signal_at     timestamptz NOT NULL,
    lead_signal_sha256 text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incidents_pkey PRIMARY KEY (id),
    CONSTRAINT incidents_incident_key_key UNIQUE (incident_key),
    CONSTRAINT incidents_severity_check CHECK (severity IN ('YELLOW', 'RED')),
    CONSTRAINT incidents_seen_check CHECK (first_seen_at <= last_seen_at),
    CONSTRAINT incidents_occurrence_count_check CHECK (occurrence_count >= 1),
    CONSTRAINT incidents_last_seq_check CHECK (last_seq >= 1)
);

CREATE INDEX incidents_last_seen_at_idx ON incidents (last_seen_at);
CREATE INDEX incidents_correlation_keys_idx ON incidents USING gin (correlation_keys);

-- Evidence, deduplicated per incident by sha256 of canonical {incident_id, kind, ref}.
CREATE TABLE incident_evidence (
    incident_id uuid        NOT NULL,
    kind        text        NOT NULL,
    ref         text        NOT NULL,
    sha256      text        NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    observed_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT incident_evidence_incident_id_sha256_key UNIQUE (incident_id, sha256),
    CONSTRAINT incident_evidence_incident_id_fkey
        FOREIGN KEY (incident_id) REFERENCES incidents (id)
);

-- The event log: append-only, one hash chain per incident.
CREATE TABLE incident_events (
    id          uuid        NOT NULL,
    incident_id uuid        NOT NULL,
    seq         integer     NOT NULL,
    type        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb       NOT NULL,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL,
    CONSTRAINT incident_events_pkey PRIMARY KEY (id),
    CONSTRAINT incident_events_incident_id_seq_key UNIQUE (incident_id, seq),
    CONSTRAINT incident_events_incident_id_fkey
        FOREIGN KEY (incident_id) REFERENCES incidents (id),
    CONSTRAINT incident_events_seq_check CHECK (seq >= 1),
    CONSTRAINT incident_events_hash_check CHECK (hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT incident_events_prev_hash_check CHECK (prev_hash ~ '^[0-9a-f]{64}$')
);

CREATE FUNCTION incident_events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'incident_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'Events are immutable history; record a new event instead.';
END
$$;

-- Statement level, so that even a statement touching no row is refused.
CREATE TRIGGER incident_events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION incident_events_reject_change();

-- Permanent idempotency (no TTL): a signal already applied to a key is never applied again.
CREATE TABLE processed_signals (
    incident_key  text        NOT NULL,
    signal_sha256 text        NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processed_signals_pkey PRIMARY KEY (incident_key, signal_sha256)
);

-- Transactional outbox: one row per event to publish, deleted by the publisher once acknowledged.
-- lane = first 4 bytes of incident_id (big-endian, unsigned) modulo the number of lanes; a
-- publisher owns a lane by locking its outbox_lanes row FOR UPDATE SKIP LOCKED, which keeps
-- per-incident order across publisher replicas.
CREATE TABLE outbox (
    event_id    uuid        NOT NULL,
    incident_id uuid        NOT NULL,
    seq         integer     NOT NULL,
    lane        integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_pkey PRIMARY KEY (event_id),
    CONSTRAINT outbox_event_id_fkey FOREIGN KEY (event_id) REFERENCES incident_events (id),
    CONSTRAINT outbox_lane_check CHECK (lane >= 0)
);

CREATE INDEX outbox_lane_incident_id_seq_idx ON outbox (lane, incident_id, seq);

-- Lanes in use, inserted lazily by the write path (ON CONFLICT DO NOTHING).
CREATE TABLE outbox_lanes (
    lane integer NOT NULL,
    CONSTRAINT outbox_lanes_pkey PRIMARY KEY (lane),
    CONSTRAINT outbox_lanes_lane_check CHECK (lane >= 0)
);
