DROP TABLE events;
DROP TABLE shared_migrations;
DROP TABLE tenant_migrations;
DROP TABLE tenants;
