//! Provisioning of schema tenants: the schema, its optional role and its
//! migrations, all in one transaction together with the registry record.

use diesel::PgConnection;
use diesel::connection::SimpleConnection;

use super::migrate::RecordIn;
use super::{
    ApplyContext, Report, TenantError, in_registry_transaction, is_applied_separately, migrate,
};
use crate::migrations::Migration;
use crate::plan::TenantPlan;
use crate::plan::action::{Action, TenantChange};
use crate::spec::desired::{DesiredTenant, RoleTarget, SchemaTarget};
use crate::sql::{quote_ident, quote_literal, scram_verifier};
use crate::state::catalog::CurrentRole;
use crate::state::db;
use crate::state::registry;

/// Applies a schema tenant's plan in one transaction with its registry
/// record.
pub fn apply(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<(Report, &'static str), TenantError> {
    let schema = tenant
        .schema
        .as_ref()
        .ok_or_else(|| TenantError::new("plan", "schema tenant without a schema"))?;
    let later = run_after_commit(tenant, tenant_plan)?;
    let (mut report, status) =
        in_registry_transaction(context, tenant, tenant_plan, |connection, report| {
            let declared = schema.role.as_ref();
            for action in tenant_plan
                .actions
                .iter()
                .filter(|a| !is_applied_separately(a))
            {
                let current = &context.current_role;
                if !apply_role_action(connection, current, declared, action, report)? {
                    apply_schema_action(connection, tenant, schema, action, report)?;
                }
            }
            Ok(())
        })?;
    if !later.is_empty() {
        // A migration that cannot run in a transaction, and those after it,
        // run once the rest has committed; each batch is recorded right
        // after it succeeds.
        let mut connection =
            db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
        let role = schema.role.as_ref().map(|role| role.name.as_str());
        let record_in = RecordIn::Tenant(&tenant.id);
        migrate::run_in_schema(&mut connection, record_in, &schema.name, role, &later)?;
        let last = report.len().saturating_sub(1);
        report.insert(last, "✓ Migrations completed".to_string());
    }
    Ok((report, status))
}

/// Returns the planned migrations from the first one with
/// `run_in_transaction = false` on, which cannot run in the tenant's
/// transaction.
fn run_after_commit<'a>(
    tenant: &'a DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<Vec<&'a Migration>, TenantError> {
    let Some(names) = tenant_plan.actions.iter().find_map(|action| match action {
        Action::RunMigrations { migrations } => Some(migrations),
        _ => None,
    }) else {
        return Ok(Vec::new());
    };
    let pending = pending_of(tenant, names)?;
    let first = pending.iter().position(|m| !m.run_in_transaction);
    Ok(first.map_or_else(Vec::new, |first| pending[first..].to_vec()))
}

fn pending_of<'a>(
    tenant: &'a DesiredTenant,
    names: &[String],
) -> Result<Vec<&'a Migration>, TenantError> {
    let set = tenant
        .migrations
        .as_ref()
        .ok_or_else(|| TenantError::new("migrations", "no migration folder"))?;
    migrate::pending(set, names)
}

fn apply_schema_action(
    connection: &mut PgConnection,
    tenant: &DesiredTenant,
    schema: &SchemaTarget,
    action: &Action,
    report: &mut Report,
) -> Result<(), TenantError> {
    match action {
        Action::AdoptSchema { schema: name } => {
            report.push(format!(
                "✓ Schema '{name}' adopted (it existed; not recreated)"
            ));
        }
        Action::CreateSchema { schema: name } => {
            let sql = format!("CREATE SCHEMA {}", quote_ident(name));
            execute(connection, "create schema", &sql)?;
            report.push(format!("✓ Schema '{name}' created"));
        }
        Action::RestrictSchema {
            schema: name, role, ..
        } => restrict_schema(connection, name, role.as_deref())?,
        Action::RunMigrations { migrations } => {
            run_migrations(connection, tenant, schema, migrations)?;
            report.push("✓ Migrations completed".to_string());
        }
        _ => {}
    }
    Ok(())
}

/// Runs the tenant's pending migrations up to the first one that cannot run
/// in a transaction, in its schema as its role so the role owns what they
/// create, and records them in the same transaction.
fn run_migrations(
    connection: &mut PgConnection,
    tenant: &DesiredTenant,
    schema: &SchemaTarget,
    names: &[String],
) -> Result<(), TenantError> {
    let pending = pending_of(tenant, names)?;
    let end = pending
        .iter()
        .position(|m| !m.run_in_transaction)
        .unwrap_or(pending.len());
    let role = schema.role.as_ref().map(|role| role.name.as_str());
    let record_in = RecordIn::Tenant(&tenant.id);
    migrate::run_in_schema(connection, record_in, &schema.name, role, &pending[..end])?;
    Ok(())
}

/// Runs a role action (create, adopt, set password) of the tenant's
/// declared role; returns false for any other action.
pub fn apply_role_action(
    connection: &mut PgConnection,
    current: &CurrentRole,
    declared: Option<&RoleTarget>,
    action: &Action,
    report: &mut Report,
) -> Result<bool, TenantError> {
    match action {
        Action::CreateRole { role } => {
            create_role(connection, current, role_target(declared, role)?)?
        }
        Action::SetPassword { role } => set_password(connection, role_target(declared, role)?)?,
        Action::RestrictRole { role, .. } => restrict_role(connection, role)?,
        Action::AdoptRole { role } => {
            ensure_membership(connection, current, role)?;
            report.push(format!(
                "✓ Role '{role}' adopted (it existed; not recreated)"
            ));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn role_target<'a>(
    role: Option<&'a RoleTarget>,
    name: &str,
) -> Result<&'a RoleTarget, TenantError> {
    role.filter(|role| role.name == name).ok_or_else(|| {
        TenantError::new(
            "plan",
            format!("role {name} is not declared for this tenant"),
        )
    })
}

/// Returns the first report line of a tenant.
pub fn created_line(tenant: &DesiredTenant, tenant_plan: &TenantPlan) -> String {
    match (tenant_plan.change, tenant_plan.stays_pending) {
        (TenantChange::Create, false) => format!("✓ Tenant '{}' created successfully", tenant.id),
        (TenantChange::Create, true) => format!("✓ Tenant '{}' registered", tenant.id),
        (TenantChange::Update, _) => format!("✓ Tenant '{}' updated", tenant.id),
        (TenantChange::Destroy, _) => format!("✓ Tenant '{}' destroyed", tenant.id),
    }
}

/// Returns the last report line of a tenant: ready, pending because this
/// run left actions for later, or pending because of what its notes say.
pub fn ready_line(status: &str, tenant_plan: &TenantPlan) -> String {
    if status == registry::STATUS_READY {
        "Tenant is ready to use".to_string()
    } else if !tenant_plan.deferred.is_empty() {
        "Tenant is pending: run apply again to finish it".to_string()
    } else {
        "Tenant is pending: fix what its plan notes say, then run apply again".to_string()
    }
}

/// Runs SQL built only from quoted identifiers and literals.
pub fn execute(connection: &mut PgConnection, step: &str, sql: &str) -> Result<(), TenantError> {
    connection
        .batch_execute(sql)
        .map_err(|error| TenantError::new(step, error))
}

/// Creates a login role with a SCRAM verifier, so the plaintext password
/// never reaches the server. A role that is not superuser joins the new
/// role, which PostgreSQL 15 requires for `SET ROLE` and `OWNER`. Both
/// statements go in one query string, which PostgreSQL runs as one
/// transaction, so a crash cannot leave the role without that membership.
pub fn create_role(
    connection: &mut PgConnection,
    current: &CurrentRole,
    role: &RoleTarget,
) -> Result<(), TenantError> {
    let password = match &role.password {
        Some(password) => format!(" PASSWORD {}", quote_literal(&scram_verifier(password))),
        None => String::new(),
    };
    let mut sql = format!(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS{password}",
        quote_ident(&role.name)
    );
    if !current.superuser {
        sql.push_str(&format!(
            "; GRANT {} TO {}",
            quote_ident(&role.name),
            quote_ident(&current.name)
        ));
    }
    execute(connection, &format!("create role {}", role.name), &sql)
}

/// Makes the connecting role a member of `role` unless it is superuser.
pub fn ensure_membership(
    connection: &mut PgConnection,
    current: &CurrentRole,
    role: &str,
) -> Result<(), TenantError> {
    if current.superuser {
        return Ok(());
    }
    execute(
        connection,
        &format!("grant {role} to {}", current.name),
        &format!(
            "GRANT {} TO {}",
            quote_ident(role),
            quote_ident(&current.name)
        ),
    )
}

/// Sets a role's password from its SCRAM verifier.
pub fn set_password(connection: &mut PgConnection, role: &RoleTarget) -> Result<(), TenantError> {
    let Some(password) = &role.password else {
        return Err(TenantError::new(
            "set password",
            format!("role {} has no password in the spec", role.name),
        ));
    };
    execute(
        connection,
        &format!("set password of {}", role.name),
        &format!(
            "ALTER ROLE {} PASSWORD {}",
            quote_ident(&role.name),
            quote_literal(&scram_verifier(password))
        ),
    )
}

/// Takes SUPERUSER and BYPASSRLS away from a tenant role.
pub fn restrict_role(connection: &mut PgConnection, role: &str) -> Result<(), TenantError> {
    execute(
        connection,
        &format!("restrict role {role}"),
        &format!("ALTER ROLE {} NOSUPERUSER NOBYPASSRLS", quote_ident(role)),
    )
}

fn restrict_schema(
    connection: &mut PgConnection,
    schema: &str,
    role: Option<&str>,
) -> Result<(), TenantError> {
    let schema_ident = quote_ident(schema);
    let mut sql = format!("REVOKE ALL ON SCHEMA {schema_ident} FROM PUBLIC;");
    if let Some(role) = role {
        let role_ident = quote_ident(role);
        sql.push_str(&format!(
            "GRANT USAGE, CREATE ON SCHEMA {schema_ident} TO {role_ident};\
             ALTER ROLE {role_ident} SET search_path = {};",
            quote_literal(schema)
        ));
    }
    execute(connection, &format!("restrict schema {schema}"), &sql)
}
