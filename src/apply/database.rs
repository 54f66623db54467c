//! Provisioning of database tenants: login role, database, CONNECT
//! restricted to that role, and migrations run inside the new database as
//! that role so the tenant owns its objects.

use super::migrate::execute;
use super::schema::{create_role, created_line, ensure_membership, ready_line, set_password};
use super::{ApplyContext, Report, TenantError, final_status, finish, migrate, write_record};
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::spec::desired::{DesiredTenant, RoleTarget};
use crate::sql::quote_ident;
use crate::state::registry::STATUS_PENDING;
use crate::state::{db, server_key};

/// Applies a database tenant's plan.
pub fn apply(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Result<(Report, &'static str), TenantError> {
    let database = tenant
        .database
        .as_ref()
        .ok_or_else(|| TenantError::new("plan", "database tenant without a database"))?;
    let mut control =
        db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
    let status = final_status(tenant, tenant_plan);
    let mut report = vec![created_line(tenant, tenant_plan)];

    // The registry learns of the tenant before anything is created, so a
    // crash right after CREATE DATABASE leaves a record that owns the database.
    if !context.actual.registry.tenants.contains_key(&tenant.id) {
        write_record(
            &mut control,
            context,
            tenant,
            tenant_plan,
            STATUS_PENDING,
            None,
        )
        .map_err(|error| TenantError::new("record in registry", error))?;
    }

    let key = server_key(database, &context.servers.control_key);
    let role = RoleTarget {
        name: database.owner.clone(),
        password: database.password.clone(),
    };
    let needs_admin = tenant_plan.actions.iter().any(|action| {
        matches!(
            action,
            Action::CreateRole { .. }
                | Action::SetPassword { .. }
                | Action::AdoptRole { .. }
                | Action::CreateDatabase { .. }
                | Action::RestrictConnect { .. }
        )
    });
    if needs_admin {
        let pool = context.server_pool(&key)?;
        let mut admin = pool
            .get()
            .map_err(|error| TenantError::new("connect", format!("server {key}: {error}")))?;
        for action in &tenant_plan.actions {
            match action {
                Action::CreateRole { .. } => create_role(&mut admin, &context.current_role, &role)?,
                Action::SetPassword { .. } => set_password(&mut admin, &role)?,
                Action::AdoptRole { role } => {
                    ensure_membership(&mut admin, &context.current_role, role)?
                }
                Action::CreateDatabase {
                    database: name,
                    owner,
                    template,
                    ..
                } => {
                    let from = template
                        .as_ref()
                        .map(|t| format!(" TEMPLATE {} STRATEGY FILE_COPY", quote_ident(t)))
                        .unwrap_or_default();
                    execute(
                        &mut admin,
                        &format!("create database {name}"),
                        &format!(
                            "CREATE DATABASE {} OWNER {}{from}",
                            quote_ident(name),
                            quote_ident(owner)
                        ),
                    )?;
                    report.push(format!("✓ Database '{name}' created"));
                }
                Action::RestrictConnect {
                    database: name,
                    role,
                    ..
                } => execute(
                    &mut admin,
                    &format!("restrict connect on {name}"),
                    &format!(
                        "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                        db = quote_ident(name),
                        role = quote_ident(role)
                    ),
                )?,
                _ => {}
            }
        }
    }

    for action in &tenant_plan.actions {
        if let Action::RunMigrations { migrations } = action {
            let set = tenant
                .migrations
                .as_ref()
                .ok_or_else(|| TenantError::new("migrations", "no migration folder"))?;
            let pending = migrate::pending(set, migrations)?;
            let admin_url = &context
                .servers
                .get(&key)
                .ok_or_else(|| TenantError::new("connect", format!("server {key} is not known")))?
                .admin_url;
            let url = db::with_database(admin_url, &database.name)
                .map_err(|error| TenantError::new("connect", error))?;
            let applied = migrate::run_in_database(&url, &database.owner, &pending)?;
            migrate::record_in_registry(&mut control, &tenant.id, &applied)?;
            report.push("✓ Migrations completed".to_string());
        }
    }

    finish(&mut control, context, tenant, tenant_plan, status)?;
    report.push(ready_line(status));
    Ok((report, status))
}
