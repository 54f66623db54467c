-- Template databases tenantctl made: one per server and migration set,
-- migrated once and copied into each new database tenant. A row is written
-- before its database is created and marked ready once the migrations ran,
-- so a half-made template is known to be tenantctl's and can be remade.

CREATE TABLE templates (
    server text NOT NULL,
    name text NOT NULL,
    -- MigrationSet digest of the migrations the template holds.
    digest text NOT NULL,
    ready boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (server, name)
);
