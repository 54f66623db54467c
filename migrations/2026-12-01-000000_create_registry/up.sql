-- The registry: what tenantctl provisioned, in schema tenantctl of the
-- control database. Passwords are never stored here.

CREATE TABLE tenants (
    id text PRIMARY KEY,
    name text NOT NULL,
    isolation text NOT NULL CHECK (isolation IN ('database', 'schema', 'table', 'cache')),
    -- Non-secret configuration: database, schema, role names, prefix, host.
    config jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('ready', 'failed', 'pending')),
    deletion_protection boolean NOT NULL DEFAULT false,
    -- Objects that existed before tenantctl registered the tenant, as
    -- "kind:name" (for example "schema:acme"); removal detaches them.
    adopted text[] NOT NULL DEFAULT '{}',
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX tenants_lower_id ON tenants (lower(id));

CREATE TABLE tenant_migrations (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- Migrations of the shared tables of table tenants, run once per schema.
CREATE TABLE shared_migrations (
    schema_name text NOT NULL,
    version text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, version)
);

-- Append-only log of every action applied. No foreign key, so the history
-- of a removed tenant stays.
CREATE TABLE events (
    id bigserial PRIMARY KEY,
    tenant_id text NOT NULL,
    action text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('ok', 'failed')),
    error text,
    at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX events_tenant_at ON events (tenant_id, at);
