-- Login roles made by `tenantctl create-superuser`. They belong to their
-- tenant: removing the tenant drops them.
CREATE TABLE superusers (
    tenant_id text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    role_name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, role_name)
);

CREATE UNIQUE INDEX superusers_role_name ON superusers (role_name);
