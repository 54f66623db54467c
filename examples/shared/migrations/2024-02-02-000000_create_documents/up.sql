-- Each row belongs to one tenant. tenantctl enables row-level security on
-- every table with a tenant_id column; the default fills the column from
-- the session's tenant, so the application never writes it.
--
-- Identity columns need no grant on their sequence, so tenant roles can
-- insert with only the table privileges tenantctl gives them.
CREATE TABLE documents (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id', true),
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Lets other tables reference a document of the same tenant only.
    UNIQUE (tenant_id, id)
);
