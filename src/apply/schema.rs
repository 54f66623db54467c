//! Provisioning of schema tenants: the schema, its optional role and its
//! migrations, all in one transaction together with the registry record.

use diesel::{Connection, PgConnection};

use super::migrate::{RecordIn, execute};
use super::{
    ApplyContext, Report, TenantError, final_status, finish, is_registry_only, log_action, migrate,
    write_record,
};
use crate::plan::TenantPlan;
use crate::plan::action::{Action, TenantChange};
use crate::spec::desired::{DesiredTenant, RoleTarget};
use crate::sql::{quote_ident, quote_literal, scram_verifier};
use crate::state::catalog::CurrentRole;
use crate::state::db;
use crate::state::registry;

/// Applies a schema tenant's plan.
pub fn apply(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<(Report, &'static str), TenantError> {
    let schema = tenant
        .schema
        .as_ref()
        .ok_or_else(|| TenantError::new("plan", "schema tenant without a schema"))?;
    let mut connection =
        db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
    let status = final_status(tenant_plan);
    let mut report = vec![created_line(tenant, tenant_plan)];
    connection.transaction::<_, TenantError, _>(|connection| {
        // The record comes first: migration records refer to it.
        write_record(connection, context, tenant, tenant_plan, status, None)
            .map_err(|error| TenantError::new("record in registry", error))?;
        for action in &tenant_plan.actions {
            match action {
                Action::CreateRole { role } => create_role(
                    connection,
                    &context.current_role,
                    role_target(schema.role.as_ref(), role)?,
                )?,
                Action::SetPassword { role } => {
                    set_password(connection, role_target(schema.role.as_ref(), role)?)?
                }
                Action::AdoptRole { role } => {
                    ensure_membership(connection, &context.current_role, role)?;
                    report.push(format!(
                        "✓ Role '{role}' adopted (it existed; not recreated)"
                    ));
                }
                Action::AdoptSchema { schema: name } => {
                    report.push(format!(
                        "✓ Schema '{name}' adopted (it existed; not recreated)"
                    ));
                }
                Action::CreateSchema { schema: name } => {
                    execute(
                        connection,
                        "create schema",
                        &format!("CREATE SCHEMA {}", quote_ident(name)),
                    )?;
                    report.push(format!("✓ Schema '{name}' created"));
                }
                Action::RestrictSchema {
                    schema: name, role, ..
                } => restrict_schema(connection, name, role.as_deref())?,
                Action::RunMigrations { migrations } => {
                    let pending = pending_of(tenant, migrations)?;
                    if pending.iter().all(|migration| migration.run_in_transaction) {
                        let role = schema.role.as_ref().map(|role| role.name.as_str());
                        migrate::run_in_schema(
                            connection,
                            RecordIn::Tenant(&tenant.id),
                            &schema.name,
                            role,
                            &pending,
                        )?;
                        report.push("✓ Migrations completed".to_string());
                    }
                }
                _ => {}
            }
            if !is_registry_only(action) {
                log_action(connection, &tenant.id, action)?;
            }
        }
        finish(connection, context, tenant, tenant_plan, status)
    })?;
    // Migrations that cannot run in a transaction run after the tenant's
    // other actions commit, each recorded right after it succeeds.
    for action in &tenant_plan.actions {
        if let Action::RunMigrations { migrations } = action {
            let pending = pending_of(tenant, migrations)?;
            if pending
                .iter()
                .any(|migration| !migration.run_in_transaction)
            {
                let role = schema.role.as_ref().map(|role| role.name.as_str());
                migrate::run_in_schema(
                    &mut connection,
                    RecordIn::Tenant(&tenant.id),
                    &schema.name,
                    role,
                    &pending,
                )?;
                report.push("✓ Migrations completed".to_string());
            }
        }
    }
    report.push(ready_line(status, tenant_plan));
    Ok((report, status))
}

fn pending_of<'a>(
    tenant: &'a DesiredTenant,
    migrations: &[String],
) -> Result<Vec<&'a crate::migrations::Migration>, TenantError> {
    let set = tenant
        .migrations
        .as_ref()
        .ok_or_else(|| TenantError::new("migrations", "no migration folder"))?;
    migrate::pending(set, migrations)
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

/// Creates a login role with a SCRAM verifier, so the plaintext password
/// never reaches the server. A role that is not superuser joins the new
/// role, which PostgreSQL 15 requires for `SET ROLE` and `OWNER`.
pub fn create_role(
    connection: &mut PgConnection,
    current: &CurrentRole,
    role: &RoleTarget,
) -> Result<(), TenantError> {
    let password = match &role.password {
        Some(password) => format!(" PASSWORD {}", quote_literal(&scram_verifier(password))),
        None => String::new(),
    };
    execute(
        connection,
        &format!("create role {}", role.name),
        &format!(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS{password}",
            quote_ident(&role.name)
        ),
    )?;
    ensure_membership(connection, current, &role.name)
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
