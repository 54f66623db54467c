DROP INDEX tenantctl.tenants_table_role;
DROP FUNCTION tenantctl.current_tenant(text);
