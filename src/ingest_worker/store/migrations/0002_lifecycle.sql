-- The incident lifecycle: episodes, lifecycle columns, persisted recoveries.
-- Existing rows become episode 1 of their key, status as stored (OPEN), their recovery scope
-- their own key (keys of the documented signals that share a scope get it from their next signal's
-- events).

ALTER TABLE incidents
    ADD COLUMN episode              integer     NOT NULL DEFAULT 1,
    ADD COLUMN previous_incident_id uuid,
    ADD COLUMN recovery_scope       text,
    ADD COLUMN acknowledged_at      timestamptz,
    ADD COLUMN mitigated_at         timestamptz,
    ADD COLUMN resolved_at          timestamptz,
    ADD COLUMN closed_at            timestamptz,
    ADD COLUMN resolved_by          text,
    ADD COLUMN reopen_count         integer     NOT NULL DEFAULT 0;

UPDATE incidents SET recovery_scope = incident_key WHERE recovery_scope IS NULL;

ALTER TABLE incidents
    ALTER COLUMN recovery_scope SET NOT NULL,
    DROP CONSTRAINT incidents_incident_key_key,
    ADD CONSTRAINT incidents_incident_key_episode_key UNIQUE (incident_key, episode),
    ADD CONSTRAINT incidents_episode_check CHECK (episode >= 1),
    ADD CONSTRAINT incidents_status_check CHECK (status IN (
        'PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED', 'RESOLVED', 'CLOSED',
        'CANCELLED', 'ARCHIVED')),
    ADD CONSTRAINT incidents_resolved_by_check CHECK (resolved_by IN ('signal', 'command')),
    ADD CONSTRAINT incidents_previous_incident_id_fkey
        FOREIGN KEY (previous_incident_id) REFERENCES incidents (id);

-- Recoveries resolve the active incidents of their scope.
CREATE INDEX incidents_active_recovery_scope_idx ON incidents (recovery_scope)
    WHERE status IN ('PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED');

-- Recovery signals, kept permanently: a trigger older than its scope's newest recovery is born
-- resolved, whatever the arrival order.
CREATE TABLE recoveries (
    scope         text        NOT NULL,
    signal_sha256 text        NOT NULL,
    source_kind   text        NOT NULL,
    signal_time   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recoveries_pkey PRIMARY KEY (scope, signal_sha256)
);

CREATE INDEX recoveries_scope_signal_time_idx ON recoveries (scope, signal_time DESC);
