DROP TRIGGER summarize_deleted ON tenant_migrations;
DROP TRIGGER summarize_updated ON tenant_migrations;
DROP TRIGGER summarize_inserted ON tenant_migrations;
DROP FUNCTION summarize_applied();
ALTER TABLE tenants DROP COLUMN applied_digest, DROP COLUMN applied_count;
