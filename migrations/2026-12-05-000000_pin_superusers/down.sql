CREATE OR REPLACE FUNCTION tenantctl.current_tenant(setting text) RETURNS text
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
