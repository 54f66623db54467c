-- A summary of each tenant's applied migrations, kept up to date by
-- triggers, so plan reads one row per tenant instead of aggregating every
-- migration record of every tenant. The digest is MD5 of the
-- `version:checksum` lines in version order, as tenantctl computes it for
-- a migration folder.

ALTER TABLE tenants
    ADD COLUMN applied_count integer NOT NULL DEFAULT 0,
    ADD COLUMN applied_digest text;

CREATE FUNCTION summarize_applied() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    -- A transition table exists only for the events its trigger names.
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT tenant_id) INTO ids FROM new_rows;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT tenant_id) INTO ids
        FROM (SELECT tenant_id FROM new_rows UNION SELECT tenant_id FROM old_rows) changed;
    ELSE
        SELECT array_agg(DISTINCT tenant_id) INTO ids FROM old_rows;
    END IF;
    UPDATE tenantctl.tenants t
    SET applied_count = s.count, applied_digest = s.digest
    FROM (
        SELECT t2.id,
               count(m.version)::integer AS count,
               md5(string_agg(m.version || ':' || m.checksum, E'\n' ORDER BY m.version)) AS digest
        FROM tenantctl.tenants t2
        LEFT JOIN tenantctl.tenant_migrations m ON m.tenant_id = t2.id
        WHERE t2.id = ANY (ids)
        GROUP BY t2.id
    ) s
    WHERE t.id = s.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER summarize_inserted AFTER INSERT ON tenant_migrations
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION summarize_applied();
CREATE TRIGGER summarize_updated AFTER UPDATE ON tenant_migrations
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION summarize_applied();
CREATE TRIGGER summarize_deleted AFTER DELETE ON tenant_migrations
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION summarize_applied();

UPDATE tenants t
SET applied_count = s.count, applied_digest = s.digest
FROM (
    SELECT tenant_id,
           count(*)::integer AS count,
           md5(string_agg(version || ':' || checksum, E'\n' ORDER BY version)) AS digest
    FROM tenant_migrations
    GROUP BY tenant_id
) s
WHERE t.id = s.tenant_id;
