//! Provisioning of database tenants: login role, database, CONNECT
//! restricted to that role, and migrations run inside the new database as
//! that role so the tenant owns its objects.

use diesel::prelude::*;

use super::schema::execute;
use super::schema::{
    create_role, created_line, ensure_membership, ready_line, restrict_role, set_password,
};
use super::template::Connections;
use super::{
    ApplyContext, Report, TenantError, final_status, is_applied_separately, is_registry_only,
    migrate, write_record,
};
use crate::migrations::Migration;
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::plan::render::describe;
use crate::spec::desired::{DatabaseTarget, DesiredTenant, RoleTarget};
use crate::sql::quote_ident;
use crate::state::registry::{self, STATUS_PENDING};
use crate::state::{db, server_key};

type AdminConnection =
    diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<PgConnection>>;

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
    let status = final_status(tenant_plan);
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

    let mut done = Done::default();
    let steps = run_steps(
        context,
        tenant,
        tenant_plan,
        database,
        &mut control,
        &mut report,
        &mut done,
    );
    if let Err(error) = steps {
        // What succeeded before the failure is logged, and the caller
        // records the failure itself.
        if let Err(record_error) = done.record(&mut control, &tenant.id) {
            tracing::warn!(tenant = %tenant.id, error = %record_error, "failed to record the steps that succeeded in the registry");
        }
        return Err(error);
    }

    // The migrations, the events and the final record commit together.
    done.events.extend(
        tenant_plan
            .actions
            .iter()
            .filter(|action| is_registry_only(action))
            .map(describe),
    );
    control.transaction::<_, TenantError, _>(|control| {
        done.record(control, &tenant.id)?;
        write_record(control, context, tenant, tenant_plan, status, None)
            .map_err(|error| TenantError::new("record in registry", error))
    })?;
    report.push(ready_line(status, tenant_plan));
    Ok((report, status))
}

/// Record of a tenant's finished steps, written to the registry when they end.
#[derive(Default)]
struct Done {
    /// Events of the actions that succeeded, in order.
    events: Vec<String>,
    /// Migrations applied in the tenant database.
    migrations: Vec<migrate::Applied>,
}

impl Done {
    /// Writes the applied migrations and the events to the registry.
    fn record(&self, control: &mut PgConnection, id: &str) -> Result<(), TenantError> {
        migrate::record_in_registry(control, id, &self.migrations)?;
        registry::log_events(control, id, &self.events)
            .map_err(|error| TenantError::new("record in registry", error))
    }
}

/// Runs the tenant's actions on its server, in plan order.
fn run_steps(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    database: &DatabaseTarget,
    control: &mut PgConnection,
    report: &mut Report,
    done: &mut Done,
) -> Result<(), TenantError> {
    let key = server_key(database, &context.servers.control_key);
    let role = RoleTarget {
        name: database.owner.clone(),
        password: database.password.clone(),
    };
    let mut admin = None;
    // Set when this run copied the database from a template, which contains
    // every migration of the tenant's set.
    let mut copied = false;
    for action in &tenant_plan.actions {
        if is_applied_separately(action) {
            continue;
        }
        if let Action::RunMigrations { migrations } = action {
            let set = tenant
                .migrations
                .as_ref()
                .ok_or_else(|| TenantError::new("migrations", "no migration folder"))?;
            let pending = migrate::pending(set, migrations)?;
            let applied = if copied {
                pending.iter().map(|m| m.version_and_checksum()).collect()
            } else {
                run_migrations(context, database, &key, &pending)?
            };
            done.migrations.extend(applied);
            report.push("✓ Migrations completed".to_string());
        } else {
            let admin = match &mut admin {
                Some(admin) => admin,
                None => admin.insert(
                    admin_connection(context, &key).map_err(|error| error.at_server(&key))?,
                ),
            };
            if let Action::CreateDatabase {
                template: Some(template),
                ..
            } = action
            {
                let set = tenant
                    .migrations
                    .as_ref()
                    .ok_or_else(|| TenantError::new("template", "no migration folder"))?;
                let connections = Connections {
                    admin,
                    control: &mut *control,
                };
                context
                    .templates
                    .ensure(context, connections, &key, template, set)?;
                copied = true;
            }
            let line = run_admin_action(context, admin, &role, action)
                .map_err(|error| error.at_server(&key))?;
            if let Some(line) = line {
                report.push(line);
            }
        }
        done.events.push(describe(action));
    }
    Ok(())
}

fn admin_connection(context: &ApplyContext<'_>, key: &str) -> Result<AdminConnection, TenantError> {
    context
        .server_pool(key)?
        .get()
        .map_err(|error| TenantError::new("connect", format!("server {key}: {error}")))
}

/// Runs one action that needs the server's admin connection; returns the
/// line to report, if any.
fn run_admin_action(
    context: &ApplyContext<'_>,
    admin: &mut PgConnection,
    role: &RoleTarget,
    action: &Action,
) -> Result<Option<String>, TenantError> {
    match action {
        Action::CreateRole { .. } => create_role(admin, &context.current_role, role)?,
        Action::SetPassword { .. } => set_password(admin, role)?,
        Action::RestrictRole { role, .. } => restrict_role(admin, role)?,
        Action::AdoptRole { role } => {
            ensure_membership(admin, &context.current_role, role)?;
            return Ok(Some(format!(
                "✓ Role '{role}' adopted (it existed; not recreated)"
            )));
        }
        Action::CreateDatabase {
            database,
            owner,
            template,
            ..
        } => {
            // The default strategy, WAL_LOG, copies block by block through
            // the WAL; FILE_COPY forces two checkpoints per database, which
            // cost more than the copy on a server with other writes
            // (measured in BENCHMARKS.md).
            let from = template
                .as_ref()
                .map(|template| format!(" TEMPLATE {}", quote_ident(template)))
                .unwrap_or_default();
            execute(
                admin,
                &format!("create database {database}"),
                &format!(
                    "CREATE DATABASE {} OWNER {}{from}",
                    quote_ident(database),
                    quote_ident(owner)
                ),
            )?;
            return Ok(Some(format!("✓ Database '{database}' created")));
        }
        Action::AdoptDatabase { database, .. } => {
            return Ok(Some(format!(
                "✓ Database '{database}' adopted (it existed; not recreated)"
            )));
        }
        Action::RestrictConnect { database, role, .. } => execute(
            admin,
            &format!("restrict connect on {database}"),
            &format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {db} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role}",
                db = quote_ident(database),
                role = quote_ident(role)
            ),
        )?,
        _ => {}
    }
    Ok(None)
}

/// Runs pending migrations in the tenant database as its owner.
fn run_migrations(
    context: &ApplyContext<'_>,
    database: &DatabaseTarget,
    key: &str,
    pending: &[&Migration],
) -> Result<Vec<migrate::Applied>, TenantError> {
    let admin_url = &context
        .servers
        .get(key)
        .ok_or_else(|| TenantError::new("connect", format!("server {key} is not known")))?
        .admin_url;
    let url = db::with_database(admin_url, &database.name)
        .map_err(|error| TenantError::new("connect", error))?;
    let mut connection =
        db::connect(&url).map_err(|error| TenantError::new("connect", error).at_server(key))?;
    migrate::run_in_open_database(&mut connection, &database.owner, pending)
        .map_err(|error| error.at_server(key))
}
