-- Tenants: a `tenant` column on every table holding tenant data, leading every primary key,
-- unique key and list index; row-level security enabled and forced on every table; the
-- login-less `ingest_reader` role of the read paths and the `ingest_writer` role of the worker.
--
-- Existing rows migrate in place to the tenant `default` (a column default: no table rewrite,
-- and the append-only trigger of incident_events is not fired by DDL). Ids of the default
-- tenant are unchanged, so its hashes and replays stay valid.
--
-- Writes: the worker applies batches that mix tenants, set-based, one transaction per batch.
-- Setting `ingest.tenant` per statement would cost a statement per tenant and per query, so
-- the writer role sees every row through its own policy and every write query names its
-- tenant explicitly instead. Reads: any other role sees only the rows of the tenant set for
-- its transaction (`tenant_isolation`, for PUBLIC), and none when no tenant is set.

-- Roles are cluster-wide: create them once, tolerating a concurrent migration of another
-- database of the same cluster.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ingest_reader') THEN
        BEGIN
            CREATE ROLE ingest_reader NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ingest_writer') THEN
        BEGIN
            CREATE ROLE ingest_writer NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- The migrating role (usually the worker's, the tables' owner) writes through
    -- ingest_writer's policy and reads through ingest_reader (SET LOCAL ROLE).
    IF NOT pg_has_role(current_user, 'ingest_writer', 'USAGE') THEN
        EXECUTE format('GRANT ingest_writer TO %I', current_user);
    END IF;
    IF NOT pg_has_role(current_user, 'ingest_reader', 'MEMBER') THEN
        EXECUTE format('GRANT ingest_reader TO %I', current_user);
    END IF;
END
$$;

-- Foreign keys between the tables go. Keyed by (tenant, id), the integrity check of each
-- inserted row is a query planned once per connection, often while the tables are young:
-- it then probed `incidents` by any index that leads with the tenant (the list indexes), a
-- scan of the whole tenant per row, which multiplied the batch write's cost several times.
-- Every row of the write path is derived from the events in one statement, and
-- `verify` / `replay --check` check that incidents, events and evidence agree.
ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_fkey;
ALTER TABLE command_receipts DROP CONSTRAINT command_receipts_event_id_fkey;
ALTER TABLE incident_evidence DROP CONSTRAINT incident_evidence_incident_id_fkey;
ALTER TABLE incident_events DROP CONSTRAINT incident_events_incident_id_fkey;
ALTER TABLE incidents DROP CONSTRAINT incidents_previous_incident_id_fkey;

ALTER TABLE incidents
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT incidents_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT incidents_pkey,
    DROP CONSTRAINT incidents_incident_key_episode_key,
    ADD CONSTRAINT incidents_pkey PRIMARY KEY (tenant, id),
    ADD CONSTRAINT incidents_tenant_incident_key_episode_key
        UNIQUE (tenant, incident_key, episode);

DROP INDEX incidents_last_seen_at_idx;
CREATE INDEX incidents_tenant_last_seen_at_idx ON incidents (tenant, last_seen_at);
DROP INDEX incidents_active_recovery_scope_idx;
CREATE INDEX incidents_tenant_active_recovery_scope_idx ON incidents (tenant, recovery_scope)
    WHERE status IN ('PENDING', 'OPEN', 'ACKNOWLEDGED', 'MITIGATING', 'MITIGATED');

ALTER TABLE incident_evidence
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT incident_evidence_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT incident_evidence_incident_id_sha256_key,
    ADD CONSTRAINT incident_evidence_tenant_incident_id_sha256_key
        UNIQUE (tenant, incident_id, sha256);

ALTER TABLE incident_events
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT incident_events_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT incident_events_pkey,
    DROP CONSTRAINT incident_events_incident_id_seq_key,
    ADD CONSTRAINT incident_events_pkey PRIMARY KEY (tenant, id),
    ADD CONSTRAINT incident_events_tenant_incident_id_seq_key UNIQUE (tenant, incident_id, seq);

ALTER TABLE processed_signals
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT processed_signals_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT processed_signals_pkey,
    ADD CONSTRAINT processed_signals_pkey PRIMARY KEY (tenant, incident_key, signal_sha256);

ALTER TABLE recoveries
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT recoveries_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT recoveries_pkey,
    ADD CONSTRAINT recoveries_pkey PRIMARY KEY (tenant, scope, signal_sha256);

DROP INDEX recoveries_scope_signal_time_idx;
CREATE INDEX recoveries_tenant_scope_signal_time_idx
    ON recoveries (tenant, scope, signal_time DESC);

-- The outbox is a work queue drained across tenants by lane: its lane index stays
-- (lane, incident_id, seq); rows still carry and key on their tenant.
ALTER TABLE outbox
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT outbox_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT outbox_pkey,
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (tenant, event_id);

ALTER TABLE command_receipts
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT command_receipts_tenant_check CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT command_receipts_pkey,
    ADD CONSTRAINT command_receipts_pkey PRIMARY KEY (tenant, command_id);

-- A work queue too (drained in created_at order across tenants).
ALTER TABLE command_results_outbox
    ADD COLUMN tenant text NOT NULL DEFAULT 'default'
        CONSTRAINT command_results_outbox_tenant_check
        CHECK (tenant ~ '^[a-z0-9][-a-z0-9]*$' AND length(tenant) <= 63),
    DROP CONSTRAINT command_results_outbox_pkey,
    ADD CONSTRAINT command_results_outbox_pkey PRIMARY KEY (tenant, id);

-- Row-level security, enabled and forced (the owner too) on every table of the schema.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'incidents', 'incident_evidence', 'incident_events', 'processed_signals', 'recoveries',
        'outbox', 'command_receipts', 'command_results_outbox']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I AS PERMISSIVE FOR ALL TO PUBLIC '
            'USING (tenant = NULLIF(current_setting(''ingest.tenant'', true), '''')) '
            'WITH CHECK (tenant = NULLIF(current_setting(''ingest.tenant'', true), ''''))', t);
        EXECUTE format(
            'CREATE POLICY ingest_writer_all ON %I AS PERMISSIVE FOR ALL TO ingest_writer '
            'USING (true) WITH CHECK (true)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ingest_writer', t);
    END LOOP;
    -- Tables without tenant data: only the writer sees them.
    FOREACH t IN ARRAY ARRAY['outbox_lanes', 'schema_migrations']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY ingest_writer_all ON %I AS PERMISSIVE FOR ALL TO ingest_writer '
            'USING (true) WITH CHECK (true)', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO ingest_writer', t);
    END LOOP;
END
$$;

-- The read paths: SELECT on the tenant data a reader shows, nothing else.
GRANT SELECT ON incidents, incident_evidence, incident_events, command_receipts TO ingest_reader;
