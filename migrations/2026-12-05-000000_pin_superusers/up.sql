-- A superuser that create-superuser made for a table tenant is pinned to
-- that tenant like the tenant's own login role: tenantctl.current_tenant
-- returns the tenant setting for its sessions only when the setting names
-- that tenant. Otherwise it is unchanged.
CREATE OR REPLACE FUNCTION tenantctl.current_tenant(setting text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pinned IS NULL OR pinned = chosen THEN chosen END
    FROM (
        SELECT NULLIF(current_setting(setting, true), '') AS chosen,
               COALESCE(
                   (SELECT id FROM tenantctl.tenants
                     WHERE isolation = 'table' AND config ->> 'role' = session_user
                     LIMIT 1),
                   (SELECT s.tenant_id FROM tenantctl.superusers s
                      JOIN tenantctl.tenants t ON t.id = s.tenant_id
                     WHERE t.isolation = 'table' AND s.role_name = session_user
                     LIMIT 1)
               ) AS pinned
    ) AS session
$$;
