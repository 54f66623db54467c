//! The one migration runner: `apply` and `migrate` both run a tenant's
//! pending migrations through it, in its schema of the control database or
//! in its own database.
//!
//! Consecutive migrations that may run in a transaction run in one, together
//! with their record, so a run killed at any point leaves each of them either
//! applied and recorded or neither. A migration marked
//! `run_in_transaction = false` runs on its own and is recorded right after
//! it succeeds.

use std::collections::HashSet;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::TenantError;
use super::schema::execute;
use super::template;
use crate::migrations::{Migration, MigrationSet};
use crate::sql::quote_ident;
use crate::state::{db, registry};

/// Table, inside each tenant database, that records the migrations applied
/// there. It commits with the migrations, so a rerun after a crash finds
/// what ran before the registry recorded it.
const LOCAL_RECORD_DDL: &str = "CREATE SCHEMA IF NOT EXISTS tenantctl; \
    CREATE TABLE IF NOT EXISTS tenantctl.migrations (\
    version text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())";

#[derive(QueryableByName)]
struct LocalRecord {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Text)]
    checksum: String,
}

/// A (version, checksum) pair as the registry records it.
pub type Applied = (String, String);

/// Looks up the plan's migration names in the tenant's migration set.
pub fn pending<'a>(
    set: &'a MigrationSet,
    names: &[String],
) -> Result<Vec<&'a Migration>, TenantError> {
    names
        .iter()
        .map(|name| {
            set.migrations
                .iter()
                .find(|migration| &migration.name == name)
                .ok_or_else(|| {
                    TenantError::new(
                        "migrations",
                        format!(
                            "migration {name} is in the plan but no longer in {}",
                            set.dir.display()
                        ),
                    )
                })
        })
        .collect()
}

/// Rejects `run_in_transaction = false` migrations where every migration
/// runs inside one transaction, as the shared tables' do in apply.
pub fn reject_non_transactional(pending: &[&Migration]) -> Result<(), TenantError> {
    match pending.iter().find(|m| !m.run_in_transaction) {
        Some(migration) => Err(TenantError::new(
            format!("migration {}", migration.name),
            "run_in_transaction = false is not supported here, because these migrations run \
             in one transaction with their records; run them with tenantctl migrate",
        )),
        None => Ok(()),
    }
}

/// Splits migrations into the groups that run together: a run of
/// transactional migrations, or one `run_in_transaction = false` migration.
fn batches<'a, 'm>(pending: &'a [&'m Migration]) -> Vec<&'a [&'m Migration]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < pending.len() {
        let end = if pending[start].run_in_transaction {
            pending[start..]
                .iter()
                .position(|migration| !migration.run_in_transaction)
                .map_or(pending.len(), |offset| start + offset)
        } else {
            start + 1
        };
        groups.push(&pending[start..end]);
        start = end;
    }
    groups
}

/// Where the registry records a batch of migrations.
#[derive(Debug, Clone, Copy)]
pub enum RecordIn<'a> {
    /// The migrations of one tenant, by id.
    Tenant(&'a str),
    /// The migrations of the shared tables of table tenants, by schema.
    Shared(&'a str),
    /// The migrations `migrate` ran for one tenant, by id, recorded with
    /// the event that logs them.
    Migrated(&'a str),
}

impl RecordIn<'_> {
    fn record(self, connection: &mut PgConnection, applied: &[(&str, &str)]) -> QueryResult<()> {
        match self {
            RecordIn::Tenant(id) => registry::record_migrations(connection, id, applied),
            RecordIn::Shared(schema) => {
                registry::record_shared_migrations(connection, schema, applied)
            }
            RecordIn::Migrated(id) => registry::record_migrations_logged(
                connection,
                id,
                applied,
                &migrated_event(applied.len()),
            ),
        }
    }
}

/// Returns the event `migrate` logs for a tenant it ran migrations for.
pub fn migrated_event(count: usize) -> String {
    format!(
        "migrate: {} applied",
        crate::output::plural(count, "migration")
    )
}

/// Runs migrations on a control database connection, with `search_path` set
/// to the schema and, when given, as the schema's role: a schema tenant's
/// migrations, or once for all table tenants the shared tables' migrations.
/// Each batch commits with its registry record.
///
/// Called inside an open transaction, the batches become savepoints of it;
/// a `run_in_transaction = false` migration cannot run there, so the caller
/// runs those outside any transaction.
pub fn run_in_schema(
    connection: &mut PgConnection,
    record_in: RecordIn<'_>,
    schema: &str,
    role: Option<&str>,
    pending: &[&Migration],
) -> Result<Vec<Applied>, TenantError> {
    let mut applied = Vec::new();
    for batch in batches(pending) {
        let records: Vec<(&str, &str)> = batch
            .iter()
            .map(|m| (m.version.as_str(), m.checksum.as_str()))
            .collect();
        let run_batch = |connection: &mut PgConnection| -> Result<(), TenantError> {
            enter_schema(connection, schema, role, batch[0].run_in_transaction)?;
            let outcome = batch.iter().try_for_each(|m| run(connection, m));
            // The role and search_path are reset before the record is
            // written, because the tenant role may not write the registry.
            // After a failure inside a transaction the reset fails too, and
            // the rollback undoes the SET LOCAL instead.
            let reset = execute(connection, "reset role", "RESET ROLE; RESET search_path");
            outcome?;
            reset?;
            record_in
                .record(connection, &records)
                .map_err(|error| TenantError::new("record migrations", error))
        };
        if batch[0].run_in_transaction {
            connection.transaction(run_batch)?;
        } else {
            run_batch(connection)?;
        }
        applied.extend(batch.iter().map(|m| m.version_and_checksum()));
    }
    Ok(applied)
}

fn enter_schema(
    connection: &mut PgConnection,
    schema: &str,
    role: Option<&str>,
    local: bool,
) -> Result<(), TenantError> {
    let scope = if local { "LOCAL " } else { "" };
    let mut sql = format!("SET {scope}search_path TO {}", quote_ident(schema));
    if let Some(role) = role {
        sql.push_str(&format!("; SET {scope}ROLE {}", quote_ident(role)));
    }
    execute(connection, "set search_path", &sql)
}

/// Runs migrations inside a tenant database as the role [`migration_role`]
/// returns, recording each batch in the database's own
/// `tenantctl.migrations` table in the same transaction. Returns every
/// (version, checksum) of `pending` now applied there, including those a
/// killed earlier run applied but did not record in the registry. The caller
/// records them in the registry.
pub fn run_in_database(
    url: &str,
    owner: &str,
    pending: &[&Migration],
) -> Result<Vec<Applied>, TenantError> {
    let mut connection = db::connect(url).map_err(|error| TenantError::new("connect", error))?;
    run_in_open_database(&mut connection, owner, pending)
}

/// Returns the role that runs migrations in an open tenant database:
/// `pg_database_owner` in a copy of a template, which owns every copied
/// object there, else `owner`. Objects the tenant role created would be
/// unreadable to a copied view or SECURITY DEFINER function that uses them.
fn migration_role(connection: &mut PgConnection, owner: &str) -> Result<String, TenantError> {
    #[derive(QueryableByName)]
    struct Copied {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        copied: bool,
    }
    if owner == template::OWNER {
        return Ok(owner.to_string());
    }
    let found: Copied = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('tenantctl.migrations') \
         AND relowner = 'pg_database_owner'::regrole) AS copied",
    )
    .get_result(connection)
    .map_err(|error| TenantError::new("read the owner of tenantctl.migrations", error))?;
    if !found.copied {
        return Ok(owner.to_string());
    }
    // The CREATE privilege on a database is its owner's, the tenant role's,
    // and a copy does not take the template's privileges.
    execute(
        connection,
        "grant create to pg_database_owner",
        "DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO pg_database_owner', \
         current_database()); END $$",
    )?;
    Ok(template::OWNER.to_string())
}

/// Does what [`run_in_database`] does, on a connection the caller opened.
pub fn run_in_open_database(
    connection: &mut PgConnection,
    owner: &str,
    pending: &[&Migration],
) -> Result<Vec<Applied>, TenantError> {
    let role = migration_role(connection, owner)?;
    execute(
        connection,
        "set role",
        &format!(
            "SET client_min_messages = warning; SET ROLE {}; {LOCAL_RECORD_DDL}",
            quote_ident(&role)
        ),
    )?;
    let local: Vec<LocalRecord> =
        diesel::sql_query("SELECT version, checksum FROM tenantctl.migrations")
            .load(connection)
            .map_err(|error| TenantError::new("read tenantctl.migrations", error))?;
    let already: HashSet<&str> = local.iter().map(|record| record.version.as_str()).collect();
    let mut applied: Vec<Applied> = local
        .iter()
        .filter(|record| pending.iter().any(|m| m.version == record.version))
        .map(|record| (record.version.clone(), record.checksum.clone()))
        .collect();
    let to_run: Vec<&Migration> = pending
        .iter()
        .copied()
        .filter(|m| !already.contains(m.version.as_str()))
        .collect();

    for batch in batches(&to_run) {
        let run_batch = |connection: &mut PgConnection| -> Result<(), TenantError> {
            for migration in batch {
                run(connection, migration)?;
                record_local(connection, migration)?;
            }
            Ok(())
        };
        if batch[0].run_in_transaction {
            connection.transaction(run_batch)?;
        } else {
            run_batch(connection)?;
        }
        applied.extend(batch.iter().map(|m| m.version_and_checksum()));
    }
    Ok(applied)
}

fn record_local(connection: &mut PgConnection, migration: &Migration) -> Result<(), TenantError> {
    diesel::sql_query(
        "INSERT INTO tenantctl.migrations (version, checksum) VALUES ($1, $2) \
         ON CONFLICT (version) DO NOTHING",
    )
    .bind::<Text, _>(&migration.version)
    .bind::<Text, _>(&migration.checksum)
    .execute(connection)
    .map(|_| ())
    .map_err(|error| TenantError::new("record in tenantctl.migrations", error))
}

/// Records a database tenant's applied migrations in the registry.
pub fn record_in_registry(
    control: &mut PgConnection,
    tenant_id: &str,
    applied: &[Applied],
) -> Result<(), TenantError> {
    let records: Vec<(&str, &str)> = applied
        .iter()
        .map(|(version, checksum)| (version.as_str(), checksum.as_str()))
        .collect();
    registry::record_migrations(control, tenant_id, &records)
        .map_err(|error| TenantError::new("record migrations", error))
}

/// Whether a migration contains nothing but comments and white space; libpq
/// reports such a query string as an empty query, so it is not sent.
fn is_blank(sql: &str) -> bool {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map(|(_, tail)| tail).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix("/*") {
            match after.split_once("*/") {
                Some((_, tail)) => rest = tail,
                None => return false,
            }
        } else {
            return rest.chars().all(|c| c.is_whitespace() || c == ';');
        }
    }
}

/// Runs one migration's SQL as one batch.
pub fn run(connection: &mut PgConnection, migration: &Migration) -> Result<(), TenantError> {
    if is_blank(&migration.up_sql) {
        return Ok(());
    }
    tracing::debug!(migration = %migration.name, "running migration");
    connection
        .batch_execute(&migration.up_sql)
        .map_err(|error| {
            let at = location(migration, &error);
            TenantError::new(
                format!("migration {}", migration.name),
                format!("{error} (at {at})"),
            )
        })
}

/// Returns `PATH/up.sql`, with `:LINE:COLUMN` when PostgreSQL names the
/// position of the error in the file.
fn location(migration: &Migration, error: &diesel::result::Error) -> String {
    let file = migration.path.join("up.sql");
    let position = match error {
        diesel::result::Error::DatabaseError(_, information) => information.statement_position(),
        _ => None,
    };
    match position.and_then(|position| line_and_column(&migration.up_sql, position)) {
        Some((line, column)) => format!("{}:{line}:{column}", file.display()),
        None => file.display().to_string(),
    }
}

/// Converts PostgreSQL's error position, the 1-based index of a character in
/// the text sent, into a 1-based line and column.
fn line_and_column(text: &str, position: i32) -> Option<(usize, usize)> {
    let index = usize::try_from(position).ok()?.checked_sub(1)?;
    let mut line = 1;
    let mut column = 1;
    for character in text.chars().take(index) {
        if character == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (text.chars().count() >= index).then_some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(version: &str, run_in_transaction: bool) -> Migration {
        Migration {
            version: version.to_string(),
            name: format!("{version}_m"),
            up_sql: String::new(),
            checksum: String::new(),
            run_in_transaction,
            path: std::path::PathBuf::new(),
        }
    }

    #[test]
    fn error_positions_become_lines_and_columns() {
        let text = "CREATE TABLE a (id int);\nCREATE TABLE (;\n";
        assert_eq!(line_and_column(text, 1), Some((1, 1)));
        assert_eq!(line_and_column(text, 39), Some((2, 14)));
        // Positions count characters, not bytes.
        assert_eq!(line_and_column("-- é\nx", 6), Some((2, 1)));
        assert_eq!(line_and_column(text, 0), None);
        assert_eq!(line_and_column(text, 500), None);
    }

    #[test]
    fn comment_only_sql_is_blank() {
        assert!(is_blank("-- nothing\n\n-- more\n"));
        assert!(is_blank("/* x */ ;"));
        assert!(!is_blank("-- c\ncreate table t ();"));
    }

    #[test]
    fn batches_split_at_non_transactional() {
        let list = [
            migration("1", true),
            migration("2", true),
            migration("3", false),
            migration("4", false),
            migration("5", true),
        ];
        let refs: Vec<&Migration> = list.iter().collect();
        let sizes: Vec<usize> = batches(&refs).iter().map(|batch| batch.len()).collect();
        assert_eq!(sizes, [2, 1, 1, 1]);
    }
}
