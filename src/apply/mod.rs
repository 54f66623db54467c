//! Applies a plan: tenants in parallel, each tenant's failure recorded and
//! kept from stopping the others.

pub mod cache;
pub mod database;
pub mod lock;
pub mod migrate;
pub mod remove;
pub mod schema;
pub mod superuser;
pub mod table;
pub mod template;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use diesel::{Connection, PgConnection};

use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::action::{Action, TenantChange};
use crate::plan::diff::tenant_config;
use crate::plan::{Plan, TenantPlan};
use crate::spec::desired::{Desired, DesiredTenant};
use crate::spec::model::Isolation;
use crate::state::catalog::CurrentRole;
use crate::state::db::{self, PgPool};
use crate::state::registry::{self, STATUS_FAILED, STATUS_PENDING, STATUS_READY, TenantUpsert};
use crate::state::{Actual, Servers};

/// Everything a worker needs, shared by all workers.
pub struct ApplyContext<'a> {
    pub desired: &'a Desired,
    pub actual: &'a Actual,
    pub servers: &'a Servers,
    pub control: PgPool,
    /// Admin pools of the database servers, opened on first use.
    pub server_pools: Mutex<HashMap<String, PgPool>>,
    /// The Redis pool, or why it cannot be opened, set on first use so
    /// that an unreachable server is tried once per apply.
    pub redis: OnceLock<std::result::Result<cache::RedisPool, String>>,
    /// Error of the first failed Redis connection of this apply, so the
    /// tenants after it fail at once instead of each waiting for the pool's
    /// timeout.
    pub redis_lost: OnceLock<String>,
    pub current_role: CurrentRole,
    pub parallelism: u32,
    pub printer: &'a Printer,
    /// Template databases checked or made during this apply.
    pub templates: template::Templates,
}

/// Counts of how tenants ended in one apply.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub created: usize,
    pub changed: usize,
    pub destroyed: usize,
    pub failed: usize,
    pub pending: usize,
    /// Tenants left alone because a server was lost first.
    pub not_started: usize,
    /// The server whose connection was lost, and the error, when one was.
    pub lost: Option<(String, String)>,
}

/// A tenant's failure: the step and the server's message.
#[derive(Debug)]
pub struct TenantError {
    pub step: String,
    pub message: String,
    /// `host:port` of the database server the failing step talked to, when
    /// it is not the control server.
    pub server: Option<String>,
}

impl TenantError {
    pub fn new(step: impl Into<String>, message: impl std::fmt::Display) -> TenantError {
        TenantError {
            step: step.into(),
            message: message.to_string().trim().to_string(),
            server: None,
        }
    }

    /// Names the database server the failing step talked to.
    pub fn at_server(mut self, key: &str) -> TenantError {
        self.server.get_or_insert_with(|| key.to_string());
        self
    }

    /// Returns whether the failure is the loss of a PostgreSQL server rather
    /// than a problem of this tenant: the connection was closed or refused,
    /// or the server is shutting down or starting up. libpq and PostgreSQL 15
    /// report these only as text, so the text is matched.
    pub fn is_connection_lost(&self) -> bool {
        const SIGNS: &[&str] = &[
            "terminating connection",
            "server closed the connection",
            "connection refused",
            "could not connect",
            "no connection to the server",
            "the database system is",
            "timed out waiting for connection",
            "broken pipe",
            "connection reset",
            "lost synchronization with server",
        ];
        // An unreachable Redis server fails only the tenants with an ACL
        // user, so it does not stop the run.
        if self.step.contains("Redis") {
            return false;
        }
        let message = self.message.to_lowercase();
        SIGNS.iter().any(|sign| message.contains(sign))
    }
}

impl From<diesel::result::Error> for TenantError {
    fn from(error: diesel::result::Error) -> TenantError {
        TenantError::new("transaction", error)
    }
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.step, self.message)
    }
}

/// Lines printed for a tenant that succeeded.
pub type Report = Vec<String>;

impl ApplyContext<'_> {
    /// Returns the admin pool of a database server.
    pub fn server_pool(&self, key: &str) -> std::result::Result<PgPool, TenantError> {
        let mut pools = self
            .server_pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pool) = pools.get(key) {
            return Ok(pool.clone());
        }
        let admin_url = self
            .servers
            .admin_url(key)
            .map_err(|error| TenantError::new("connect", error))?;
        let pool = db::pool(&admin_url, self.parallelism)
            .map_err(|error| TenantError::new("connect", error))?;
        pools.insert(key.to_string(), pool.clone());
        Ok(pool)
    }
}

impl ApplyContext<'_> {
    /// Returns the Redis pool, opening it on first use.
    pub fn redis_pool(&self) -> std::result::Result<cache::RedisPool, String> {
        self.redis.get_or_init(|| cache::open_pool(self)).clone()
    }
}

/// Applies the shared tables first, then every tenant plan in parallel;
/// returns the counts. A failed shared step fails the table tenants only.
pub fn execute(context: &ApplyContext<'_>, plan: &Plan) -> Result<Outcome> {
    let mut first = Outcome::default();
    let shared_failure = plan
        .shared
        .as_ref()
        .filter(|shared| !shared.actions.is_empty())
        .and_then(|shared| run_shared(context, shared, &mut first));
    let outcome = Mutex::new(first);
    let tenants: Vec<&TenantPlan> = plan
        .tenants
        .iter()
        .filter(|tenant| !tenant.actions.is_empty())
        .collect();
    let lost = AtomicBool::new(false);
    let started = AtomicUsize::new(0);
    // A lost server stops the run: the tenants not started yet are left
    // untouched for the next apply.
    crate::workers::run_all(
        &tenants,
        context.parallelism as usize,
        &lost,
        |tenant_plan| {
            started.fetch_add(1, Ordering::Relaxed);
            run_one(context, tenant_plan, &outcome, shared_failure.as_deref());
            if outcome_lost(&outcome) {
                lost.store(true, Ordering::Relaxed);
            }
        },
    );
    let mut outcome = outcome
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    outcome.not_started = tenants.len() - started.into_inner();
    Ok(outcome)
}

fn outcome_lost(outcome: &Mutex<Outcome>) -> bool {
    outcome
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .lost
        .is_some()
}

/// Applies the shared plan; returns its error, which is also printed,
/// logged and counted as a failure.
fn run_shared(
    context: &ApplyContext<'_>,
    shared: &crate::plan::action::SharedPlan,
    outcome: &mut Outcome,
) -> Option<String> {
    let span = tracing::info_span!("shared", schema = %shared.schema);
    let _entered = span.enter();
    match table::apply_shared(context, shared) {
        Ok(report) => {
            context.printer.block(&report);
            None
        }
        Err(error) => {
            outcome.failed += 1;
            let message = error.to_string();
            tracing::info!(error = %message, "shared tables failed");
            let logged = db::checkout(&context.control)
                .map_err(|error| error.to_string())
                .and_then(|mut connection| {
                    let id = table::shared_log_id(&shared.schema);
                    registry::log_event(&mut connection, &id, &error.step, Some(&error.message))
                        .map_err(|error| error.to_string())
                });
            if let Err(log_error) = logged {
                tracing::error!(error = %log_error, "cannot record the shared tables failure");
            }
            context.printer.block(&[format!(
                "✗ Shared tables in schema '{}' failed: {message}",
                shared.schema
            )]);
            Some(message)
        }
    }
}

/// Runs a tenant's Redis step, then the steps of its isolation type.
fn provision(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    shared_failure: Option<&str>,
) -> std::result::Result<(Report, &'static str), TenantError> {
    if let (Isolation::Table, Some(failure)) = (tenant.isolation, shared_failure) {
        return Err(TenantError::new(
            "shared tables",
            format!("not applied, because the shared tables failed: {failure}"),
        ));
    }
    let acl_lines = cache::apply_acl_users(context, tenant, tenant_plan)?;
    let (mut report, status) = match tenant.isolation {
        Isolation::Database => database::apply(context, tenant, tenant_plan)?,
        Isolation::Schema => schema::apply(context, tenant, tenant_plan)?,
        Isolation::Table => table::apply(context, tenant, tenant_plan)?,
        Isolation::Cache => cache::apply(context, tenant, tenant_plan)?,
    };
    let at = report.len().min(1);
    report.splice(at..at, acl_lines);
    Ok((report, status))
}

fn run_one(
    context: &ApplyContext<'_>,
    tenant_plan: &TenantPlan,
    outcome: &Mutex<Outcome>,
    shared_failure: Option<&str>,
) {
    if tenant_plan.change == TenantChange::Destroy {
        return remove_one(context, tenant_plan, outcome);
    }
    let Some(tenant) = context.desired.tenant(&tenant_plan.id) else {
        context.printer.error(&format!(
            "✗ Tenant '{}' is in the plan but not in the spec",
            tenant_plan.id
        ));
        outcome.lock().unwrap_or_else(|p| p.into_inner()).failed += 1;
        return;
    };
    let span = tracing::info_span!("tenant", id = %tenant.id);
    let _entered = span.enter();
    tracing::debug!(actions = tenant_plan.actions.len(), "applying");
    let result = provision(context, tenant, tenant_plan, shared_failure);
    let mut counts = outcome.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok((report, status)) => {
            if status == STATUS_PENDING {
                counts.pending += 1;
            } else if tenant_plan.change == TenantChange::Create {
                counts.created += 1;
            } else {
                counts.changed += 1;
            }
            drop(counts);
            context.printer.block(&report);
        }
        Err(error) => {
            counts.failed += 1;
            if error.is_connection_lost() && counts.lost.is_none() {
                let server = error
                    .server
                    .clone()
                    .unwrap_or_else(|| context.servers.control_key.clone());
                counts.lost = Some((server, error.to_string()));
            }
            drop(counts);
            tracing::info!(error = %error, "tenant failed");
            record_failure(context, tenant, tenant_plan, &error);
            context
                .printer
                .block(&[format!("✗ Tenant '{}' failed: {error}", tenant.id)]);
        }
    }
}

fn remove_one(context: &ApplyContext<'_>, tenant_plan: &TenantPlan, outcome: &Mutex<Outcome>) {
    let id = &tenant_plan.id;
    let result = match context.actual.registry.tenants.get(id) {
        Some(record) => remove::apply(context, record, tenant_plan),
        None => Err(TenantError::new(
            "destroy",
            "the tenant is not in the registry",
        )),
    };
    let mut counts = outcome.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(report) => {
            counts.destroyed += 1;
            drop(counts);
            context.printer.block(&report);
        }
        Err(error) => {
            counts.failed += 1;
            drop(counts);
            let message = error.to_string();
            let recorded = db::checkout(&context.control)
                .map_err(|error| error.to_string())
                .and_then(|mut connection| {
                    registry::set_status(&mut connection, id, STATUS_FAILED, Some(&message))
                        .and_then(|_| {
                            registry::log_event(&mut connection, id, "destroy", Some(&message))
                        })
                        .map_err(|error| error.to_string())
                });
            if let Err(problem) = recorded {
                tracing::error!(tenant = %id, error = %problem, "cannot record the failure in the registry");
            }
            context
                .printer
                .block(&[format!("✗ Tenant '{id}' could not be destroyed: {error}")]);
        }
    }
}

/// Objects the plan adopts: they existed before, so removal detaches them.
pub fn adopted_objects(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Vec<String> {
    let record = context.actual.registry.tenants.get(&tenant.id);
    let mut adopted: Vec<String> = record
        .map(|record| record.adopted.clone())
        .unwrap_or_default();
    let recorded_user = record.and_then(|record| record.config_text("acl_user"));
    for action in &tenant_plan.actions {
        let object = match action {
            Action::AdoptRole { role } => format!("role:{role}"),
            Action::AdoptDatabase { database, .. } => format!("database:{database}"),
            Action::AdoptSchema { schema } => format!("schema:{schema}"),
            // An ACL user that existed before this tenant named it.
            // NOTE: a user this tenant set in an apply that stopped before its
            // record was written looks adopted too, so removing the tenant
            // disables that user instead of deleting it.
            Action::SetAclUser {
                user, exists: true, ..
            } if recorded_user != Some(user.as_str()) => format!("acl_user:{user}"),
            _ => continue,
        };
        if !adopted.contains(&object) {
            adopted.push(object);
        }
    }
    adopted
}

/// Writes the tenant's registry row with a status.
pub fn write_record(
    connection: &mut PgConnection,
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    status: &str,
    error: Option<&str>,
) -> diesel::QueryResult<()> {
    let mut config = tenant_config(tenant, context.desired, context.servers);
    let record = context.actual.registry.tenants.get(&tenant.id);
    // A failed apply may not have removed the old Redis ACL user yet, so
    // the record keeps naming it and the next plan removes it.
    let old_user = record.and_then(|record| record.config_text("acl_user"));
    if let (STATUS_FAILED, Some(old_user), Some(object)) =
        (status, old_user, config.as_object_mut())
    {
        object.insert("acl_user".to_string(), old_user.into());
    }
    let adopted = adopted_objects(context, tenant, tenant_plan);
    registry::upsert_tenant(
        connection,
        &TenantUpsert {
            id: &tenant.id,
            name: &tenant.name,
            isolation: tenant.isolation.as_str(),
            config: &config,
            status,
            deletion_protection: tenant.deletion_protection,
            adopted: &adopted,
            last_error: error,
        },
    )
}

/// Returns whether an action only changes the registry record, which
/// `finish` writes together with its event.
pub fn is_registry_only(action: &Action) -> bool {
    matches!(
        action,
        Action::Register { .. }
            | Action::UpdateName { .. }
            | Action::UpdateConfig { .. }
            | Action::UpdateProtection { .. }
            | Action::MarkReady { .. }
    )
}

/// Returns whether an action is applied, and its event logged, outside the
/// steps of the tenant's isolation type: registry-only actions by `finish`,
/// the Redis ACL users by [`cache::apply_acl_users`] before those steps.
pub fn is_applied_separately(action: &Action) -> bool {
    is_registry_only(action)
        || matches!(
            action,
            Action::SetAclUser { .. }
                | Action::DeleteAclUser { .. }
                | Action::DisableAclUser { .. }
        )
}

/// Appends the event of one action that succeeded.
pub fn log_action(
    connection: &mut PgConnection,
    id: &str,
    action: &Action,
) -> std::result::Result<(), TenantError> {
    registry::log_event(connection, id, &crate::plan::render::describe(action), None)
        .map_err(|error| TenantError::new("record in registry", error))
}

fn record_failure(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    error: &TenantError,
) {
    let message = error.to_string();
    let result = db::checkout(&context.control)
        .map_err(|error| error.to_string())
        .and_then(|mut connection| {
            write_record(
                &mut connection,
                context,
                tenant,
                tenant_plan,
                STATUS_FAILED,
                Some(&message),
            )
            .and_then(|_| {
                registry::log_event(
                    &mut connection,
                    &tenant.id,
                    &error.step,
                    Some(&error.message),
                )
            })
            .map_err(|error| error.to_string())
        });
    if let Err(record_error) = result {
        tracing::error!(tenant = %tenant.id, error = %record_error, "cannot record the failure in the registry");
        context.printer.error(&format!(
            "Error: cannot record the failure of tenant '{}' in the registry: {record_error}",
            tenant.id
        ));
    }
}

/// Runs a tenant's steps in one transaction on the control database. The
/// registry record is written first, because migration records refer to it
/// and `tenantctl.current_tenant` reads a table tenant's role from it, and
/// finished last with the tenant's status and event log.
pub fn in_registry_transaction(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    steps: impl FnOnce(&mut PgConnection, &mut Report) -> std::result::Result<(), TenantError>,
) -> std::result::Result<(Report, &'static str), TenantError> {
    let mut connection =
        db::checkout(&context.control).map_err(|error| TenantError::new("connect", error))?;
    let status = final_status(tenant_plan);
    let mut report = vec![schema::created_line(tenant, tenant_plan)];
    connection.transaction::<_, TenantError, _>(|connection| {
        // The record already has its final status: it commits only if
        // every step succeeds, so it is not written a second time.
        write_record(connection, context, tenant, tenant_plan, status, None)
            .map_err(|error| TenantError::new("record in registry", error))?;
        steps(connection, &mut report)?;
        // One statement logs every event: the steps' actions, then the
        // registry-only ones, in plan order.
        let events: Vec<String> = tenant_plan
            .actions
            .iter()
            .filter(|action| !is_applied_separately(action))
            .chain(tenant_plan.actions.iter().filter(|a| is_registry_only(a)))
            .map(crate::plan::render::describe)
            .collect();
        registry::log_events(connection, &tenant_plan.id, &events)
            .map_err(|error| TenantError::new("record in registry", error))
    })?;
    report.push(schema::ready_line(status, tenant_plan));
    Ok((report, status))
}

/// Marks a tenant as ready (or pending) in the registry and logs the events
/// of its registry-only actions.
pub fn finish(
    connection: &mut PgConnection,
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
    status: &str,
) -> std::result::Result<(), TenantError> {
    write_record(connection, context, tenant, tenant_plan, status, None)
        .map_err(|error| TenantError::new("record in registry", error))?;
    for action in tenant_plan.actions.iter().filter(|a| is_registry_only(a)) {
        log_action(connection, &tenant.id, action)?;
    }
    Ok(())
}

/// Returns the status a tenant ends with when all its actions succeeded:
/// pending when its plan notes something that apply cannot do or leaves
/// actions for later, else ready.
pub fn final_status(tenant_plan: &TenantPlan) -> &'static str {
    if tenant_plan.stays_pending || !tenant_plan.deferred.is_empty() {
        STATUS_PENDING
    } else {
        STATUS_READY
    }
}

/// Turns an error of a whole-run step into the command's error.
pub fn run_error(message: impl Into<String>) -> Error {
    Error::other(message)
}
