DROP INDEX projects_active_by_owner_idx;

ALTER TABLE projects DROP COLUMN archived_at;
