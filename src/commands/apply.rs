//! `tenantctl apply`.

use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use crate::apply::lock::ApplyLock;
use crate::apply::{ApplyContext, Outcome, execute};
use crate::cli::{ApplyArgs, GlobalArgs, SpecArgs};
use crate::commands::plan::Planned;
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::render;
use crate::state::db;

/// Makes the servers match the spec, or applies a saved plan.
pub fn run(global: &GlobalArgs, args: &ApplyArgs, printer: &Printer) -> Result<i32> {
    let saved = match &args.plan {
        Some(path) => Some(super::plan::load_saved(path)?),
        None => None,
    };
    let spec_args = match &saved {
        Some(plan) => saved_spec(plan, &args.spec)?,
        None => args.spec.clone(),
    };
    let tenants = saved
        .as_ref()
        .map(|plan| plan.source.tenant_filter.clone())
        .unwrap_or_else(|| args.tenants.clone());
    let refresh = saved
        .as_ref()
        .map_or(args.refresh, |plan| plan.source.refresh);
    let (document, desired) = super::load_desired(&spec_args, super::interactive(args.no_input))?;
    super::check_tenant_filter(&desired, &tenants)?;
    super::print_warnings(printer, &desired);
    let control_url = super::control_url(global, Some(&desired));
    let mut control = super::open_control(&control_url)?;

    let lock = ApplyLock::acquire(db::connect(&control_url)?, args.lock_timeout, |pid| {
        let holder = pid
            .map(|pid| format!(" (held by server process {pid})"))
            .unwrap_or_default();
        printer.error(&format!("Waiting for the apply lock{holder}..."));
    })?;
    let planned = super::plan::compute_with(
        document,
        desired,
        control_url.clone(),
        &mut control,
        &tenants,
        refresh,
    )?;
    drop(control);

    if let Some(saved) = &saved {
        check_fresh(saved, &planned.plan)?;
    }

    printer.out(&render::to_text(&planned.plan));
    if !planned.plan.has_changes() {
        lock.release();
        return Ok(0);
    }
    if saved.is_none() && !args.auto_approve && !confirm(printer)? {
        lock.release();
        printer.error("Apply cancelled.");
        return Ok(1);
    }

    printer.out("\n");
    let outcome = execute_planned(&planned, args.parallelism, printer)?;
    lock.release();
    let pending = if outcome.pending > 0 {
        format!(", {} pending", outcome.pending)
    } else {
        String::new()
    };
    printer.out(&format!(
        "\nApply complete: {} created, {} changed, {} failed{pending}.\n",
        outcome.created, outcome.changed, outcome.failed
    ));
    Ok(if outcome.failed > 0 { 1 } else { 0 })
}

/// Picks the spec of a saved plan: `-f` when given (required for a plan made
/// from standard input), otherwise the file the plan was made from. Its
/// digest is compared with the plan's before anything runs.
fn saved_spec(plan: &crate::plan::Plan, given: &SpecArgs) -> Result<SpecArgs> {
    if given.file.is_some() {
        return Ok(given.clone());
    }
    let path = plan.source.spec_path.clone().ok_or_else(|| {
        Error::with_hint(
            "this plan was made from standard input, and apply needs that spec again",
            "pass it the same way: tenantctl apply PLAN -f - --format toml|yaml < SPEC",
        )
    })?;
    Ok(SpecArgs {
        file: Some(path),
        format: given.format,
    })
}

/// Lists each tenant's id, change and actions, leaving out notes: notes are
/// commentary that may name paths, which differ with the way `-f` was given.
fn actions_of(
    plan: &crate::plan::Plan,
) -> Vec<(
    &str,
    &crate::plan::action::TenantChange,
    &[crate::plan::Action],
)> {
    plan.tenants
        .iter()
        .map(|tenant| {
            (
                tenant.id.as_str(),
                &tenant.change,
                tenant.actions.as_slice(),
            )
        })
        .collect()
}

/// Checks that a saved plan still matches the spec, the control database
/// and the state it was made from, so apply runs exactly what was reviewed.
fn check_fresh(saved: &crate::plan::Plan, now: &crate::plan::Plan) -> Result<()> {
    let stale = if saved.source.spec_digest != now.source.spec_digest {
        "the spec file changed since the plan was made".to_string()
    } else if saved.source.control != now.source.control {
        format!(
            "it was made for control database {}, not {}",
            saved.source.control, now.source.control
        )
    } else if actions_of(saved) != actions_of(now) || saved.shared != now.shared {
        "the servers or the registry changed since the plan was made".to_string()
    } else {
        return Ok(());
    };
    Err(Error::with_hint(
        format!("stale plan: {stale}"),
        "run tenantctl plan --out again",
    ))
}

/// Provisions a computed plan with up to `parallelism` tenants at once.
pub fn execute_planned(planned: &Planned, parallelism: u16, printer: &Printer) -> Result<Outcome> {
    let current_role = planned
        .actual
        .control
        .current
        .clone()
        .ok_or_else(|| Error::other("the connecting role could not be read"))?;
    let control_pool = db::pool(&planned.control_url, u32::from(parallelism))?;
    let context = ApplyContext {
        desired: &planned.desired,
        actual: &planned.actual,
        servers: &planned.servers,
        control: control_pool,
        server_pools: Mutex::new(HashMap::new()),
        redis: OnceLock::new(),
        current_role,
        parallelism: u32::from(parallelism),
        printer,
        templates: Default::default(),
    };
    execute(&context, &planned.plan)
}

/// Asks for confirmation on a terminal; without one, `--auto-approve` is required.
fn confirm(printer: &Printer) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::with_hint(
            "apply needs confirmation, and standard input is not a terminal",
            "review the plan and pass --auto-approve",
        ));
    }
    let _ = printer;
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "\nDo you want to apply these changes? (y/n): ");
    let _ = stderr.flush();
    let mut answer = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|error| Error::other(format!("cannot read the answer: {error}")))?;
    if read == 0 {
        return Err(Error::Aborted(
            "Aborted: end of input; nothing was changed.".to_string(),
        ));
    }
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}
