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
    let removal = match &saved {
        Some(plan) => super::plan::Removal {
            prune: plan.source.prune,
            drop_adopted: plan.source.drop_adopted,
        },
        None => super::plan::Removal {
            prune: args.removal.prune,
            drop_adopted: args.removal.drop_adopted,
        },
    };
    let refresh = saved
        .as_ref()
        .map_or(args.refresh, |plan| plan.source.refresh);
    let (document, desired) =
        super::load_desired(&spec_args, super::interactive(args.no_input), &tenants)?;
    super::check_tenant_filter(&desired, &tenants)?;
    super::print_warnings(printer, &desired);
    let control_url = super::control_url(global, Some(&desired));
    let mut control = super::open_control(&control_url)?;

    let mut lock = ApplyLock::acquire(db::connect(&control_url)?, args.lock_timeout, |pid| {
        super::report_lock_wait(printer, pid)
    })?;
    lock.wait_for_leftovers(args.lock_timeout, |busy| {
        printer.error(&format!(
            "Waiting for {busy} statements of an interrupted apply to finish..."
        ));
    })?;
    let planned = super::plan::compute_with(
        document,
        desired,
        control_url.clone(),
        &mut control,
        &tenants,
        refresh,
        removal,
    )?;
    drop(control);

    if let Some(saved) = &saved {
        check_fresh(saved, &planned.plan)?;
    }

    super::print_plan_warnings(printer, &planned.plan, &planned.desired);
    printer.out(&render::to_text(&planned.plan));
    super::refuse_plan_errors(&planned.plan)?;
    let refused = refuse_protected(printer, &planned.plan);
    if !planned.plan.has_changes() {
        lock.release();
        return Ok(if refused > 0 { 1 } else { 0 });
    }
    if saved.is_none()
        && !args.auto_approve
        && !(confirm(printer)? && confirm_removals(&planned.plan)?)
    {
        lock.release();
        printer.error("Apply cancelled.");
        return Ok(1);
    }

    printer.out("\n");
    let outcome = execute_planned(&planned, args.parallelism, printer)?;
    lock.release();
    if let Some((server, error)) = &outcome.lost {
        return Err(Error::with_hint(
            format!(
                "lost database server {server} during apply: {error}\n  {} tenants failed, {} were not started and are untouched",
                outcome.failed, outcome.not_started
            ),
            "check that the server runs, then run tenantctl apply again: it finishes what was started",
        ));
    }
    let pending = if outcome.pending > 0 {
        format!(", {} pending", outcome.pending)
    } else {
        String::new()
    };
    let destroyed = if outcome.destroyed > 0 {
        format!(", {} destroyed", outcome.destroyed)
    } else {
        String::new()
    };
    printer.out(&format!(
        "\nApply complete: {} created, {} changed{destroyed}, {} failed{pending}.\n",
        outcome.created,
        outcome.changed,
        outcome.failed + refused
    ));
    Ok(if outcome.failed + refused > 0 { 1 } else { 0 })
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
        redis_lost: OnceLock::new(),
        current_role,
        parallelism: u32::from(parallelism),
        printer,
        templates: Default::default(),
    };
    execute(&context, &planned.plan)
}

/// Reports each undeclared tenant that prune keeps because of its deletion
/// protection; returns how many there are.
fn refuse_protected(printer: &Printer, plan: &crate::plan::Plan) -> usize {
    if !plan.source.prune {
        return 0;
    }
    let protected: Vec<_> = plan.undeclared.iter().filter(|t| t.protected).collect();
    for tenant in &protected {
        printer.error(&format!(
            "✗ Tenant '{}' was not pruned: deletion_protection is on\n  hint: declare it again with deletion_protection = false, apply, then remove it from the spec",
            tenant.id
        ));
    }
    protected.len()
}

/// Asks the user to type the id of every tenant the plan destroys.
pub fn confirm_removals(plan: &crate::plan::Plan) -> Result<bool> {
    for tenant in plan
        .tenants
        .iter()
        .filter(|tenant| tenant.change == crate::plan::action::TenantChange::Destroy)
    {
        if !confirm_removal(&tenant.id)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Asks the user to type a tenant's id before it is destroyed.
pub fn confirm_removal(id: &str) -> Result<bool> {
    let answer = ask(&format!(
        "Tenant '{id}' and its data will be destroyed. Type its id to confirm: "
    ))?;
    Ok(answer.trim() == id)
}

/// Fails unless a person can answer: without a terminal, `--auto-approve`
/// is required.
pub fn require_terminal() -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::with_hint(
            "this needs confirmation, and standard input is not a terminal",
            "review the plan and pass --auto-approve",
        ));
    }
    Ok(())
}

/// Asks for confirmation on a terminal; without one, `--auto-approve` is required.
pub fn confirm(printer: &Printer) -> Result<bool> {
    require_terminal()?;
    let _ = printer;
    let answer = ask("\nDo you want to apply these changes? (y/n): ")?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// Prints a prompt on stderr and reads one line of standard input.
fn ask(prompt: &str) -> Result<String> {
    let mut stderr = std::io::stderr();
    let _ = write!(stderr, "{prompt}");
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
    Ok(answer)
}
