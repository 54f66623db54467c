-- The tenant whose rows a session may see in the shared tables of table
-- tenants; their row-level security policies compare the tenant column
-- with it. It returns the value of the given setting (app.tenant_id by
-- default), or NULL when the setting is unset or empty, so such a session
-- sees no rows and cannot insert any.
--
-- PostgreSQL lets every session SET a custom setting, so the setting alone
-- would let a tenant's login role read other tenants' rows. When the
-- session's login role is the role of a table tenant in the registry, the
-- setting counts only when it names that tenant. session_user is used, not
-- current_user, because SET ROLE cannot change it.
--
-- SECURITY DEFINER lets the function read the registry, which tenant roles
-- cannot; it reads nothing else and pins its search_path.
CREATE FUNCTION tenantctl.current_tenant(setting text) RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pinned IS NULL OR pinned = chosen THEN chosen END
    FROM (
        SELECT NULLIF(current_setting(setting, true), '') AS chosen,
               (SELECT id FROM tenantctl.tenants
                 WHERE isolation = 'table' AND config ->> 'role' = session_user
                 LIMIT 1) AS pinned
    ) AS session
$$;

CREATE INDEX tenants_table_role ON tenantctl.tenants ((config ->> 'role'))
    WHERE isolation = 'table';
