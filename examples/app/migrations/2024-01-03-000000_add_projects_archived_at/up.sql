-- NULL means the project is active. The partial index covers the common
-- query for a user's active projects.
ALTER TABLE projects ADD COLUMN archived_at timestamptz;

CREATE INDEX projects_active_by_owner_idx ON projects (owner_id) WHERE archived_at IS NULL;
