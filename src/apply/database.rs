//! Provisioning of database tenants: login role, database, CONNECT
//! restricted to that role, and migrations run inside the new database as
//! that role so the tenant owns its objects.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::schema::{
    create_role, created_line, ensure_membership, execute, ready_line, set_password,
};
use super::template::{self, Connections};
use super::{
    ApplyContext, Report, TenantError, final_status, finish, is_applied_separately, log_action,
    migrate, write_record,
};
use crate::migrations::Migration;
use crate::plan::TenantPlan;
use crate::plan::action::Action;
use crate::spec::desired::{DatabaseTarget, DesiredTenant, RoleTarget};
use crate::sql::quote_ident;
use crate::state::registry::{self, STATUS_PENDING};
use crate::state::{db, server_key};

type AdminConnection =
    diesel::r2d2::PooledConnection<diesel::r2d2::ConnectionManager<PgConnection>>;

/// Table, inside each tenant database, that records the migrations applied
/// there; it lets a rerun after a crash tell what ran before the registry
/// heard of it.
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

    let key = server_key(database, &context.servers.control_key);
    let role = RoleTarget {
        name: database.owner.clone(),
        password: database.password.clone(),
    };
    let mut admin = None;
    for action in &tenant_plan.actions {
        if is_applied_separately(action) {
            continue;
        }
        if let Action::RunMigrations { migrations } = action {
            run_planned_migrations(context, tenant, database, &key, migrations, &mut control)?;
            report.push("✓ Migrations completed".to_string());
        } else {
            let admin = match &mut admin {
                Some(admin) => admin,
                None => admin.insert(admin_connection(context, &key)?),
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
                    control: &mut control,
                };
                context
                    .templates
                    .ensure(context, connections, &key, template, set)?;
            }
            if let Some(line) = run_admin_action(context, admin, &role, action)? {
                report.push(line);
            }
        }
        log_action(&mut control, &tenant.id, action)?;
    }

    finish(&mut control, context, tenant, tenant_plan, status)?;
    report.push(ready_line(status, tenant_plan));
    Ok((report, status))
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

/// Runs the plan's migrations in the tenant database and records them.
fn run_planned_migrations(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    database: &DatabaseTarget,
    key: &str,
    migrations: &[String],
    control: &mut PgConnection,
) -> Result<(), TenantError> {
    let set = tenant
        .migrations
        .as_ref()
        .ok_or_else(|| TenantError::new("migrations", "no migration folder"))?;
    let pending = migrate::pending(set, migrations)?;
    let admin_url = &context
        .servers
        .get(key)
        .ok_or_else(|| TenantError::new("connect", format!("server {key} is not known")))?
        .admin_url;
    let template_prefix = database.template.then(|| {
        db::database_name(&context.servers.control_url)
            .map(|control| template::prefix(&control))
            .unwrap_or_default()
    });
    let applied = run_migrations(admin_url, database, &pending, template_prefix.as_deref())?;
    let applied: Vec<(&str, &str)> = applied
        .iter()
        .map(|(version, checksum)| (version.as_str(), checksum.as_str()))
        .collect();
    registry::record_migrations(control, &tenant.id, &applied)
        .map_err(|error| TenantError::new("record migrations", error))
}

/// Runs migrations inside the tenant database as the tenant role; returns
/// every (version, checksum) now applied there, including those a crashed
/// earlier run applied but did not record in the registry. With a template
/// prefix, objects a copied template left to its placeholder role are given
/// to the tenant role first.
fn run_migrations(
    admin_url: &str,
    database: &DatabaseTarget,
    pending: &[&Migration],
    template_prefix: Option<&str>,
) -> Result<Vec<(String, String)>, TenantError> {
    let url = db::with_database(admin_url, &database.name)
        .map_err(|error| TenantError::new("connect", error))?;
    let mut connection = db::connect(&url).map_err(|error| TenantError::new("connect", error))?;
    if let Some(prefix) = template_prefix {
        template::adopt_copied_objects(&mut connection, prefix, &database.owner)?;
    }
    run_on(&mut connection, &database.owner, pending)
}

/// Runs migrations as `role` on a connection to the tenant's database,
/// skipping those its own record (`tenantctl.migrations`) lists; returns
/// every (version, checksum) of `pending` applied there now.
pub fn run_on(
    connection: &mut PgConnection,
    role: &str,
    pending: &[&Migration],
) -> Result<Vec<(String, String)>, TenantError> {
    let role = quote_ident(role);
    execute(
        connection,
        "set role",
        &format!("SET client_min_messages = warning; SET ROLE {role}; {LOCAL_RECORD_DDL}"),
    )?;
    let local: Vec<LocalRecord> =
        diesel::sql_query("SELECT version, checksum FROM tenantctl.migrations")
            .load(connection)
            .map_err(|error| TenantError::new("read tenantctl.migrations", error))?;
    let already: std::collections::HashSet<&str> =
        local.iter().map(|record| record.version.as_str()).collect();
    let mut applied: Vec<(String, String)> = local
        .iter()
        .filter(|record| pending.iter().any(|m| m.version == record.version))
        .map(|record| (record.version.clone(), record.checksum.clone()))
        .collect();
    let to_run: Vec<&&Migration> = pending
        .iter()
        .filter(|m| !already.contains(m.version.as_str()))
        .collect();

    let mut index = 0;
    while index < to_run.len() {
        if !to_run[index].run_in_transaction {
            let migration = to_run[index];
            migrate::run(connection, migration)?;
            record_local(connection, migration)?;
            applied.push((migration.version.clone(), migration.checksum.clone()));
            index += 1;
            continue;
        }
        let batch_end = to_run[index..]
            .iter()
            .position(|m| !m.run_in_transaction)
            .map_or(to_run.len(), |offset| index + offset);
        connection.transaction::<_, TenantError, _>(|connection| {
            for migration in &to_run[index..batch_end] {
                migrate::run(connection, migration)?;
                record_local(connection, migration)?;
            }
            Ok(())
        })?;
        applied.extend(
            to_run[index..batch_end]
                .iter()
                .map(|m| (m.version.clone(), m.checksum.clone())),
        );
        index = batch_end;
    }
    Ok(applied)
}

fn record_local(connection: &mut PgConnection, migration: &Migration) -> Result<(), TenantError> {
    diesel::sql_query("INSERT INTO tenantctl.migrations (version, checksum) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING")
        .bind::<Text, _>(&migration.version)
        .bind::<Text, _>(&migration.checksum)
        .execute(connection)
        .map(|_| ())
        .map_err(|error| TenantError::new("record in tenantctl.migrations", error))
}
