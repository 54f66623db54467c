//! Running a tenant's migrations on a connection whose search_path or
//! database already points at the tenant.

use diesel::PgConnection;
use diesel::connection::SimpleConnection;

use super::TenantError;
use crate::migrations::{Migration, MigrationSet};
use crate::sql::quote_ident;

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

/// Whether a migration holds nothing but comments and white space; libpq
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
        .map_err(|error| TenantError::new(format!("migration {}", migration.name), error))
}

/// Runs migrations inside the caller's transaction with `search_path` set
/// to `schema` and, when `role` is given, as that role, which then owns
/// what they create. Rejects `run_in_transaction = false` migrations,
/// since they would share the transaction.
pub fn run_in_schema(
    connection: &mut PgConnection,
    pending: &[&Migration],
    schema: &str,
    role: Option<&str>,
) -> Result<(), TenantError> {
    if let Some(migration) = pending.iter().find(|m| !m.run_in_transaction) {
        return Err(TenantError::new(
            format!("migration {}", migration.name),
            "run_in_transaction = false is not supported here, because these migrations run in one transaction with their records",
        ));
    }
    let mut setup = format!("SET LOCAL search_path TO {};", quote_ident(schema));
    if let Some(role) = role {
        setup.push_str(&format!("SET LOCAL ROLE {};", quote_ident(role)));
    }
    connection
        .batch_execute(&setup)
        .map_err(|error| TenantError::new(format!("set search_path to {schema}"), error))?;
    for migration in pending {
        run(connection, migration)?;
    }
    connection
        .batch_execute("RESET ROLE; RESET search_path")
        .map_err(|error| TenantError::new("reset role", error))
}

#[cfg(test)]
mod tests {
    use super::is_blank;

    #[test]
    fn comment_only_sql_is_blank() {
        assert!(is_blank("-- nothing\n\n-- more\n"));
        assert!(is_blank("/* x */ ;"));
        assert!(!is_blank("-- c\ncreate table t ();"));
    }
}
