//! `tenantctl destroy`: removes one tenant, as `apply --prune` would.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::apply::lock::ApplyLock;
use crate::apply::{ApplyContext, execute};
use crate::cli::{DestroyArgs, GlobalArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::action::{PLAN_FORMAT_VERSION, Plan};
use crate::plan::{removal, render};
use crate::spec::desired::Desired;
use crate::spec::validate::DEFAULT_TENANT_COLUMN;
use crate::state::{Actual, Servers, catalog, db, registry};

/// Removes one registered tenant and everything tenantctl made for it.
pub fn run(global: &GlobalArgs, args: &DestroyArgs, printer: &Printer) -> Result<i32> {
    let spec = super::load_spec_if_any(&args.spec, false)?;
    let (document, desired) = match spec {
        Some((document, desired)) => (Some(document), desired),
        None => (None, Desired::empty()),
    };
    let control_url = super::control_url(global, document.as_ref().map(|_| &desired));
    let mut control = super::open_control(&control_url)?;
    let lock = ApplyLock::acquire(db::connect(&control_url)?, args.lock_timeout, |pid| {
        super::report_lock_wait(printer, pid)
    })?;
    let actual = Actual {
        registry: registry::read_state(&mut control)?,
        control: catalog::read_control(&mut control)?,
        ..Actual::default()
    };
    let record = super::find_tenant(&actual.registry, &args.id)?;
    if record.deletion_protection {
        return Err(Error::with_hint(
            format!(
                "Tenant '{}' has deletion_protection = true, so it is not destroyed",
                record.id
            ),
            "set deletion_protection = false for it in the spec and run tenantctl apply first",
        ));
    }
    if desired.tenant(&record.id).is_some() {
        printer.warn(&format!(
            "tenant '{}' is still declared in the spec, so the next apply creates it again",
            record.id
        ));
    }
    let servers = match document {
        Some(_) => Servers::resolve(&desired, &control_url)?,
        None => Servers::control_only(&control_url)?,
    };
    let superusers = actual
        .registry
        .superusers
        .get(&record.id)
        .map_or(&[][..], Vec::as_slice);
    let context = removal::RemovalContext {
        control_key: &servers.control_key,
        column: desired
            .tables
            .as_ref()
            .map_or(DEFAULT_TENANT_COLUMN, |tables| tables.column.as_str()),
        drop_adopted: args.drop_adopted,
    };
    let tenant_plan = removal::tenant_plan(record, superusers, context);
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        source: super::plan::plan_source_without_spec(&control_url),
        summary: Plan::summarize(None, std::slice::from_ref(&tenant_plan)),
        shared: None,
        tenants: vec![tenant_plan],
        undeclared: Vec::new(),
        warnings: Vec::new(),
    };
    printer.out(&render::to_text(&plan));
    let approved = args.auto_approve || {
        super::apply::require_terminal()?;
        super::apply::confirm_removal(&args.id)?
    };
    if !approved {
        lock.release();
        printer.error("Destroy cancelled.");
        return Ok(1);
    }

    let current_role = actual
        .control
        .current
        .clone()
        .ok_or_else(|| Error::other("the connecting role could not be read"))?;
    let context = ApplyContext {
        desired: &desired,
        actual: &actual,
        servers: &servers,
        control: db::pool(&control_url, 1)?,
        server_pools: Mutex::new(HashMap::new()),
        redis: OnceLock::new(),
        redis_lost: OnceLock::new(),
        current_role,
        parallelism: 1,
        printer,
        templates: Default::default(),
    };
    printer.out("\n");
    let outcome = execute(&context, &plan)?;
    lock.release();
    Ok(if outcome.failed > 0 { 1 } else { 0 })
}
