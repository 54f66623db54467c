//! Removal of a tenant: `apply --prune` and `destroy`. Every step is
//! idempotent (IF EXISTS, SCAN + UNLINK), and the registry record goes last,
//! so a failed or killed removal is finished by running it again.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::schema::execute;
use super::{ApplyContext, Report, TenantError};
use crate::output::plural;
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::spec::validate::DEFAULT_TENANT_SETTING;
use crate::sql::quote_ident;
use crate::state::db;
use crate::state::registry::{self, TenantRecord};

/// Number of keys asked for per SCAN call and unlinked per UNLINK call.
const KEY_BATCH: usize = 500;

/// Removes one tenant by running the removal steps of its plan.
pub fn apply(
    context: &ApplyContext<'_>,
    record: &TenantRecord,
    tenant_plan: &TenantPlan,
) -> Result<Report, TenantError> {
    if record.deletion_protection {
        return Err(TenantError::new(
            "destroy",
            "deletion_protection is on; set it to false in the spec and apply first",
        ));
    }
    let mut report = Vec::new();
    for action in &tenant_plan.actions {
        if let Some(line) = remove(context, record, action)? {
            report.push(line);
        }
        let mut connection = control(context)?;
        super::log_action(&mut connection, &record.id, action)?;
    }
    report.push(format!("✓ Tenant '{}' destroyed", record.id));
    Ok(report)
}

fn remove(
    context: &ApplyContext<'_>,
    record: &TenantRecord,
    action: &Action,
) -> Result<Option<String>, TenantError> {
    let line = match action {
        Action::DropDatabase { database, server } => {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(database)
            );
            run_on(context, server, &format!("drop database {database}"), &sql)?;
            format!("✓ Database '{database}' dropped")
        }
        Action::DropSchema { schema } => {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", quote_ident(schema));
            let mut control = control(context)?;
            execute(&mut control, &format!("drop schema {schema}"), &sql)?;
            format!("✓ Schema '{schema}' dropped")
        }
        Action::DeleteRows { schema, column } => {
            let count = delete_rows(context, &record.id, schema, column)?;
            format!("✓ {} deleted from the shared tables", plural(count, "row"))
        }
        Action::DeleteKeys { prefix } => {
            let count = delete_keys(context, prefix)?;
            format!("✓ {} unlinked", plural(count, "Redis key"))
        }
        Action::DeleteAclUser { .. } | Action::DisableAclUser { .. } => {
            match super::cache::remove_acl_user(context, action)? {
                Some(line) => line,
                None => return Ok(None),
            }
        }
        Action::DropRole { role, server } => {
            drop_role(context, server, role)?;
            format!("✓ Role '{role}' dropped")
        }
        Action::Detach { object } => format!("✓ {object} detached (adopted; left in place)"),
        Action::Unregister => {
            let mut control = control(context)?;
            registry::delete_tenant(&mut control, &record.id)
                .map_err(|error| TenantError::new("remove from registry", error))?;
            return Ok(None);
        }
        other => {
            return Err(TenantError::new(
                "destroy",
                format!(
                    "`{}` is not a removal step",
                    crate::plan::render::describe(other)
                ),
            ));
        }
    };
    Ok(Some(line))
}

fn control(context: &ApplyContext<'_>) -> Result<db::PooledConnection, TenantError> {
    db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))
}

/// Runs SQL on a server's admin connection.
fn run_on(
    context: &ApplyContext<'_>,
    server: &str,
    step: &str,
    sql: &str,
) -> Result<(), TenantError> {
    let pool = context.server_pool(server)?;
    let mut connection = db::checkout(&pool).map_err(|error| TenantError::new("connect", error))?;
    execute(&mut connection, step, sql)
}

/// Drops a role after handing what it owns to the connecting role and
/// revoking its privileges, so objects in an adopted schema survive.
fn drop_role(context: &ApplyContext<'_>, server: &str, role: &str) -> Result<(), TenantError> {
    let pool = context.server_pool(server)?;
    let mut connection = db::checkout(&pool).map_err(|error| TenantError::new("connect", error))?;
    if !super::superuser::role_exists(&mut connection, role)? {
        return Ok(());
    }
    let ident = quote_ident(role);
    execute(
        &mut connection,
        &format!("drop role {role}"),
        &format!(
            "REASSIGN OWNED BY {ident} TO CURRENT_USER; DROP OWNED BY {ident}; DROP ROLE {ident}"
        ),
    )
}

#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Deletes the tenant's rows from every base table of the shared schema that
/// has the tenant column, in one transaction. The policy's setting is set to
/// the tenant, so that for a role subject to row-level security the policy
/// matches the rows it deletes.
fn delete_rows(
    context: &ApplyContext<'_>,
    id: &str,
    schema: &str,
    column: &str,
) -> Result<usize, TenantError> {
    let setting = context
        .desired
        .tables
        .as_ref()
        .map_or(DEFAULT_TENANT_SETTING, |tables| tables.setting.as_str());
    let mut control = control(context)?;
    control.transaction::<_, TenantError, _>(|connection| {
        diesel::sql_query("SELECT set_config($1, $2, true)")
            .bind::<Text, _>(setting)
            .bind::<Text, _>(id)
            .execute(connection)
            .map_err(|error| TenantError::new("set tenant setting", error))?;
        let tables: Vec<TableName> = diesel::sql_query(
            "SELECT c.table_name::text AS name FROM information_schema.columns c \
             JOIN information_schema.tables t USING (table_schema, table_name) \
             WHERE c.table_schema = $1 AND c.column_name = $2 AND t.table_type = 'BASE TABLE' \
             ORDER BY 1",
        )
        .bind::<Text, _>(schema)
        .bind::<Text, _>(column)
        .load(connection)
        .map_err(|error| TenantError::new("list shared tables", error))?;
        let mut deleted = 0;
        for table in tables {
            let sql = format!(
                "DELETE FROM {}.{} WHERE {} = $1",
                quote_ident(schema),
                quote_ident(&table.name),
                quote_ident(column)
            );
            deleted += diesel::sql_query(sql)
                .bind::<Text, _>(id)
                .execute(connection)
                .map_err(|error| {
                    TenantError::new(format!("delete rows from {}", table.name), error)
                })?;
        }
        Ok(deleted)
    })
}

/// Connects to the spec's Redis server, which apply resolves only when a
/// declared tenant has an ACL user.
fn redis_connection(context: &ApplyContext<'_>) -> Result<redis::Connection, TenantError> {
    let failed = |error: String| TenantError::new("connect to Redis", error);
    super::cache::redis_target(context)
        .map_err(failed)?
        .connect()
        .map_err(failed)
}

/// Escapes the characters SCAN MATCH reads as glob syntax.
pub fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        if matches!(character, '*' | '?' | '[' | ']' | '\\' | '^') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Unlinks every key that starts with the prefix, found with SCAN MATCH
/// (never KEYS, which blocks the server); returns how many were unlinked.
fn delete_keys(context: &ApplyContext<'_>, prefix: &str) -> Result<usize, TenantError> {
    let mut redis = redis_connection(context)?;
    let pattern = format!("{}*", escape_glob(prefix));
    let failed =
        |error: redis::RedisError| TenantError::new(format!("unlink keys {prefix}*"), error);
    let mut cursor: u64 = 0;
    let mut unlinked = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(KEY_BATCH)
            .query(&mut redis)
            .map_err(failed)?;
        for batch in keys.chunks(KEY_BATCH) {
            let count: usize = redis::cmd("UNLINK")
                .arg(batch)
                .query(&mut redis)
                .map_err(failed)?;
            unlinked += count;
        }
        if next == 0 {
            return Ok(unlinked);
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::escape_glob;

    #[test]
    fn glob_characters_escaped() {
        assert_eq!(escape_glob("{acme}:"), "{acme}:");
        assert_eq!(escape_glob("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
    }
}
