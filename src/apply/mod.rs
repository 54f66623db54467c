//! Applies a plan: tenants in parallel, each tenant's failure recorded and
//! kept from stopping the others.

pub mod database;
pub mod lock;
pub mod migrate;
pub mod schema;
pub mod template;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::PgConnection;

use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::action::{Action, TenantChange};
use crate::plan::diff::tenant_config;
use crate::plan::{Plan, TenantPlan};
use crate::spec::desired::{Desired, DesiredTenant};
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
    pub current_role: CurrentRole,
    pub parallelism: u32,
    pub printer: &'a Printer,
    /// Template databases checked or made during this apply.
    pub templates: template::Templates,
}

/// How a tenant's apply ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub created: usize,
    pub changed: usize,
    pub failed: usize,
    pub pending: usize,
}

/// A tenant's failure: the step and the server's message.
#[derive(Debug)]
pub struct TenantError {
    pub step: String,
    pub message: String,
}

impl TenantError {
    pub fn new(step: impl Into<String>, message: impl std::fmt::Display) -> TenantError {
        TenantError {
            step: step.into(),
            message: message.to_string().trim().to_string(),
        }
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
        let server = self
            .servers
            .get(key)
            .ok_or_else(|| TenantError::new("connect", format!("server {key} is not known")))?;
        let pool = db::pool(&server.admin_url, self.parallelism)
            .map_err(|error| TenantError::new("connect", error))?;
        pools.insert(key.to_string(), pool.clone());
        Ok(pool)
    }
}

/// Applies every tenant plan; returns the counts.
pub fn execute(context: &ApplyContext<'_>, plan: &Plan) -> Result<Outcome> {
    let outcome = Mutex::new(Outcome::default());
    let next = AtomicUsize::new(0);
    let tenants: Vec<&TenantPlan> = plan
        .tenants
        .iter()
        .filter(|tenant| !tenant.actions.is_empty())
        .collect();
    let workers = (context.parallelism as usize).clamp(1, tenants.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(tenant_plan) = tenants.get(index) else {
                        break;
                    };
                    run_one(context, tenant_plan, &outcome);
                }
            });
        }
    });
    Ok(outcome
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner()))
}

fn run_one(context: &ApplyContext<'_>, tenant_plan: &TenantPlan, outcome: &Mutex<Outcome>) {
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
    let result = match tenant.isolation {
        crate::spec::model::Isolation::Database => database::apply(context, tenant, tenant_plan),
        crate::spec::model::Isolation::Schema => schema::apply(context, tenant, tenant_plan),
        other => Err(TenantError::new(
            "apply",
            format!("{other} tenants are not supported by this build"),
        )),
    };
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
            drop(counts);
            tracing::info!(error = %error, "tenant failed");
            record_failure(context, tenant, tenant_plan, &error);
            context
                .printer
                .block(&[format!("✗ Tenant '{}' failed: {error}", tenant.id)]);
        }
    }
}

/// Objects the plan adopts: they existed before, so removal detaches them.
pub fn adopted_objects(
    context: &ApplyContext<'_>,
    tenant: &DesiredTenant,
    tenant_plan: &TenantPlan,
) -> Vec<String> {
    let mut adopted: Vec<String> = context
        .actual
        .registry
        .tenants
        .get(&tenant.id)
        .map(|record| record.adopted.clone())
        .unwrap_or_default();
    for action in &tenant_plan.actions {
        let object = match action {
            Action::AdoptRole { role } => format!("role:{role}"),
            Action::AdoptDatabase { database, .. } => format!("database:{database}"),
            Action::AdoptSchema { schema } => format!("schema:{schema}"),
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
    let config = tenant_config(tenant, context.desired, context.servers);
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
                registry::log_event(&mut connection, &tenant.id, &error.step, Some(&message))
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
