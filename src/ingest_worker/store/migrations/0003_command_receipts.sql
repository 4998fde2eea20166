-- Lifecycle commands: permanent receipts and the outbox of their outcomes.

-- One receipt per commandId, forever (no TTL: a command id is never decided twice). The same
-- commandId again republishes `result`; with other content (content_sha256) it is rejected as
-- idempotency_key_reused.
CREATE TABLE command_receipts (
    command_id     text        NOT NULL,
    content_sha256 text        NOT NULL,
    type           text        NOT NULL,
    incident_id    uuid,
    outcome        text        NOT NULL,
    reason         text,
    event_id       uuid,
    issued_at      timestamptz NOT NULL,
    result         jsonb       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT command_receipts_pkey PRIMARY KEY (command_id),
    CONSTRAINT command_receipts_outcome_check CHECK (outcome IN ('applied', 'noop', 'rejected')),
    CONSTRAINT command_receipts_event_id_fkey FOREIGN KEY (event_id) REFERENCES incident_events (id)
);

-- Outcomes to publish on incident.command-results, written in the transaction of their effect
-- and deleted by the publisher once the broker acknowledged them. id = the CloudEvents ce_id.
CREATE TABLE command_results_outbox (
    id          uuid        NOT NULL,
    command_id  text        NOT NULL,
    outcome     text        NOT NULL,
    subject     text        NOT NULL,
    payload     jsonb       NOT NULL,
    occurred_at timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT command_results_outbox_pkey PRIMARY KEY (id)
);

CREATE INDEX command_results_outbox_created_at_idx ON command_results_outbox (created_at);
