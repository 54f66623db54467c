//! Provisioning of table tenants: the shared tables (once per apply, before
//! any tenant) and each tenant's login role, grants and tenant setting.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Text};

use super::schema::{apply_role_action, execute};
use super::{
    ApplyContext, Report, TenantError, in_registry_transaction, is_applied_separately, migrate,
};
use crate::plan::TenantPlan;
use crate::plan::action::{Action, SharedPlan};
use crate::plan::render::describe;
use crate::plan::shared::grant_list;
use crate::rls::secure_table_sql;
use crate::spec::desired::{DesiredTenant, TablesTarget};
use crate::sql::{quote_ident, quote_literal};
use crate::state::db;
use crate::state::registry;

#[derive(QueryableByName)]
struct SharedTable {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Bool)]
    has_column: bool,
    /// Sequences the table's columns own (serial and identity columns).
    #[diesel(sql_type = Array<Text>)]
    sequences: Vec<String>,
}

#[derive(QueryableByName)]
struct RoleAttributes {
    #[diesel(sql_type = Bool)]
    superuser: bool,
    #[diesel(sql_type = Bool)]
    bypass_rls: bool,
}

/// Returns the id the event log uses for the shared tables of a schema.
pub fn shared_log_id(schema: &str) -> String {
    format!("shared:{schema}")
}

/// Applies the shared plan in one transaction: the schema, the shared
/// migrations with their records, and the row-level security of every
/// table with the tenant column.
pub fn apply_shared(
    context: &ApplyContext<'_>,
    shared: &SharedPlan,
) -> Result<Report, TenantError> {
    let target = tables_target(context)?;
    let mut connection =
        db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
    let mut report = Vec::new();
    connection.transaction::<_, TenantError, _>(|connection| {
        let mut secured_all = false;
        for action in &shared.actions {
            match action {
                Action::CreateSchema { schema } => {
                    execute(
                        connection,
                        "create shared schema",
                        &format!("CREATE SCHEMA {}", quote_ident(schema)),
                    )?;
                    report.push(format!("✓ Shared schema '{schema}' created"));
                }
                Action::RunSharedMigrations { migrations, .. } => {
                    run_shared_migrations(connection, target, migrations)?;
                    let secured = secure_all_tables(connection, target)?;
                    report.push(format!(
                        "✓ Shared migrations completed; row-level security on {secured} tables"
                    ));
                    secured_all = true;
                }
                Action::SetPolicy { table, .. } if !secured_all => {
                    let sql =
                        secure_table_sql(&target.schema, table, &target.column, &target.setting);
                    execute(connection, &format!("secure table {table}"), &sql)?;
                    report.push(format!("✓ Row-level security set on '{table}'"));
                }
                _ => {}
            }
        }
        let log_id = shared_log_id(&target.schema);
        for action in &shared.actions {
            registry::log_event(connection, &log_id, &describe(action), None)
                .map_err(|error| TenantError::new("record in registry", error))?;
        }
        Ok(())
    })?;
    Ok(report)
}

fn tables_target<'a>(context: &ApplyContext<'a>) -> Result<&'a TablesTarget, TenantError> {
    context
        .desired
        .tables
        .as_ref()
        .ok_or_else(|| TenantError::new("plan", "the spec has no [tables] section"))
}

fn run_shared_migrations(
    connection: &mut PgConnection,
    target: &TablesTarget,
    names: &[String],
) -> Result<(), TenantError> {
    let set = target
        .migrations
        .as_ref()
        .ok_or_else(|| TenantError::new("shared migrations", "no migration folder"))?;
    let pending = migrate::pending(set, names)?;
    migrate::reject_non_transactional(&pending)?;
    let record_in = migrate::RecordIn::Shared(&target.schema);
    migrate::run_in_schema(connection, record_in, &target.schema, None, &pending)?;
    Ok(())
}

/// Lists the tables of the shared schema and whether each has the column.
fn shared_tables(
    connection: &mut PgConnection,
    target: &TablesTarget,
) -> Result<Vec<SharedTable>, TenantError> {
    diesel::sql_query(
        "SELECT c.relname::text AS name, EXISTS (SELECT 1 FROM pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped) AS has_column, \
         ARRAY(SELECT quote_ident(sn.nspname) || '.' || quote_ident(s.relname) \
           FROM pg_depend d JOIN pg_class s ON s.oid = d.objid \
           JOIN pg_namespace sn ON sn.oid = s.relnamespace \
           WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
             AND d.refobjid = c.oid AND d.deptype IN ('a', 'i') AND s.relkind = 'S' \
           ORDER BY s.relname)::text[] AS sequences \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
    )
    .bind::<Text, _>(&target.schema)
    .bind::<Text, _>(&target.column)
    .load(connection)
    .map_err(|error| TenantError::new("read shared tables", error))
}

/// Secures every table with the tenant column, including those the shared
/// migrations just created; returns how many there are.
pub fn secure_all_tables(
    connection: &mut PgConnection,
    target: &TablesTarget,
) -> Result<usize, TenantError> {
    let tables = shared_tables(connection, target)?;
    let mut secured = 0;
    for table in tables.iter().filter(|table| table.has_column) {
        let sql = secure_table_sql(&target.schema, &table.name, &target.column, &target.setting);
        execute(connection, &format!("secure table {}", table.name), &sql)?;
        secured += 1;
    }
    Ok(secured)
}

/// Applies a table tenant's plan in one transaction with its registry
/// record, which is also what ties its login role to the tenant in
/// `tenantctl.current_tenant`.
pub fn apply(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<(Report, &'static str), TenantError> {
    let target = tables_target(context)?;
    in_registry_transaction(context, tenant, tenant_plan, |connection, report| {
        let declared = tenant.role.as_ref();
        for action in tenant_plan
            .actions
            .iter()
            .filter(|a| !is_applied_separately(a))
        {
            let current = &context.current_role;
            if !apply_role_action(connection, current, declared, action, report)? {
                apply_table_action(connection, target, &tenant.id, action, report)?;
            }
        }
        Ok(())
    })
}

fn apply_table_action(
    connection: &mut PgConnection,
    target: &TablesTarget,
    tenant_id: &str,
    action: &Action,
    report: &mut Report,
) -> Result<(), TenantError> {
    match action {
        Action::GrantTableRole { role, .. } => {
            grant_table_role(connection, target, tenant_id, role)?;
            report.push(format!("✓ Role '{role}' limited to tenant '{tenant_id}'"));
        }
        Action::RevokeTableRole { role, schema } => {
            revoke_table_role(connection, target, role, schema)?;
            report.push(format!("✓ Shared tables revoked from role '{role}'"));
        }
        _ => {}
    }
    Ok(())
}

/// Advisory lock key held by a table tenant's transaction while it changes
/// privileges on the shared tables ("tenant" as bytes, then 3).
const SHARED_GRANTS_LOCK_KEY: i64 = 0x7465_6e61_6e74_0003;

/// Revokes every privilege on the shared schema, its tables and its
/// sequences from a role and resets its tenant setting.
fn revoke_table_role(
    connection: &mut PgConnection,
    target: &TablesTarget,
    role: &str,
    schema: &str,
) -> Result<(), TenantError> {
    lock_shared_grants(connection)?;
    let role_sql = quote_ident(role);
    let schema_sql = quote_ident(schema);
    let sql = format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema_sql} FROM {role_sql};\
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_sql} FROM {role_sql};\
         REVOKE ALL ON SCHEMA {schema_sql} FROM {role_sql};\
         ALTER ROLE {role_sql} RESET {};",
        setting_sql(target)?
    );
    execute(
        connection,
        &format!("revoke shared tables from {role}"),
        &sql,
    )
}

/// Returns the tenant setting as SQL, each part quoted (`"app"."tenant_id"`).
fn setting_sql(target: &TablesTarget) -> Result<String, TenantError> {
    let (prefix, name) = target
        .setting
        .split_once('.')
        .ok_or_else(|| TenantError::new("plan", format!("invalid setting {}", target.setting)))?;
    Ok(format!("{}.{}", quote_ident(prefix), quote_ident(name)))
}

/// Takes the advisory lock that serializes changes to the privileges on
/// the shared tables until the transaction ends. Table tenants are applied
/// in parallel, and PostgreSQL 15 fails a GRANT on a table whose access
/// list another open transaction changed ("tuple concurrently updated").
fn lock_shared_grants(connection: &mut PgConnection) -> Result<(), TenantError> {
    execute(
        connection,
        "wait for other tenants' grants",
        &format!("SELECT pg_advisory_xact_lock({SHARED_GRANTS_LOCK_KEY})"),
    )
}

/// Gives the role exactly the privileges a tenant role has on the shared
/// tables, fixes its tenant setting and strips SUPERUSER and BYPASSRLS,
/// which would skip the policies.
pub fn grant_table_role(
    connection: &mut PgConnection,
    target: &TablesTarget,
    tenant_id: &str,
    role: &str,
) -> Result<(), TenantError> {
    lock_shared_grants(connection)?;
    let role_sql = quote_ident(role);
    let schema_sql = quote_ident(&target.schema);
    let mut sql = format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA {schema_sql} FROM {role_sql};\
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema_sql} FROM {role_sql};\
         REVOKE ALL ON SCHEMA {schema_sql} FROM {role_sql};\
         GRANT USAGE ON SCHEMA {schema_sql} TO {role_sql};"
    );

    for table in shared_tables(connection, target)? {
        sql.push_str(&format!(
            "GRANT {} ON TABLE {schema_sql}.{} TO {role_sql};",
            grant_list(table.has_column),
            quote_ident(&table.name)
        ));
        // USAGE lets the default of a serial column of a tenant table call
        // nextval. The sequences of the read-only shared tables stay closed.
        if table.has_column {
            for sequence in &table.sequences {
                sql.push_str(&format!(
                    "GRANT USAGE ON SEQUENCE {sequence} TO {role_sql};"
                ));
            }
        }
    }
    sql.push_str(&format!(
        "ALTER ROLE {role_sql} SET {} = {};",
        setting_sql(target)?,
        quote_literal(tenant_id)
    ));

    let attributes: RoleAttributes = diesel::sql_query(
        "SELECT rolsuper AS superuser, rolbypassrls AS bypass_rls FROM pg_roles WHERE rolname = $1",
    )
    .bind::<Text, _>(role)
    .get_result(connection)
    .map_err(|error| TenantError::new(format!("read role {role}"), error))?;
    if attributes.superuser || attributes.bypass_rls {
        sql.push_str(&format!("ALTER ROLE {role_sql} NOSUPERUSER NOBYPASSRLS;"));
    }
    execute(connection, &format!("grant shared tables to {role}"), &sql)
}
