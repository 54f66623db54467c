//! One entry function per subcommand, plus the steps they share.

pub mod apply;
pub mod create;
pub mod create_superuser;
pub mod destroy;
pub mod exec;
pub mod list;
pub mod migrate;
pub mod plan;
pub mod shell;
pub mod show;
pub mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;

use diesel::PgConnection;

use crate::cli::{GlobalArgs, SpecArgs};
use crate::error::{Error, Result};
use crate::spec::desired::Desired;
use crate::spec::load::{self, Document};
use crate::spec::validate::{ValidateOptions, validate};
use crate::state::{db, registry};

/// Spec files looked for in the current folder when `-f` is not given.
const DEFAULT_SPEC_FILES: &[&str] = &["tenants.toml", "tenants.yaml", "tenants.yml"];

/// Returns the spec path: `-f`, or the first default file that exists.
pub fn spec_path(args: &SpecArgs) -> Result<PathBuf> {
    if let Some(file) = &args.file {
        return Ok(file.clone());
    }
    DEFAULT_SPEC_FILES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            Error::with_hint(
                "no spec file given",
                "pass -f FILE (or name it tenants.toml in this folder)",
            )
        })
}

/// Whether a person can be asked: stdin and stderr are terminals, and
/// neither `--no-input` nor `CI` says otherwise.
pub fn interactive(no_input: bool) -> bool {
    let ci = std::env::var("CI")
        .is_ok_and(|value| !value.is_empty() && value != "false" && value != "0");
    !no_input && !ci && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Loads and validates a spec. Missing required values are asked for when
/// `ask` is true, and otherwise reported together as one error.
pub fn load_desired(args: &SpecArgs, ask: bool, only: &[String]) -> Result<(Document, Desired)> {
    let path = spec_path(args)?;
    let document = load::load_path(&path, args.format)?;
    let mut desired = validate(
        &document,
        ValidateOptions {
            missing_is_error: false,
        },
    )?;
    // With --tenant, the other tenants' secrets are not needed.
    desired
        .missing
        .retain(|value| only.is_empty() || only.contains(&value.tenant));
    if desired.missing.is_empty() {
        return Ok((document, desired));
    }
    if !ask {
        let error = crate::spec::desired::missing_error(&desired.missing);
        return Err(crate::spec::error::SpecErrors::from(error).into());
    }
    crate::spec::fill::fill(&mut desired)?;
    Ok((document, desired))
}

/// Loads the spec when `-f` names one or a default spec file exists, for
/// commands that also work from the registry alone. Secrets that cannot be
/// read are left out, not asked for. With `required`, a missing spec is an
/// error.
pub fn load_spec_if_any(args: &SpecArgs, required: bool) -> Result<Option<(Document, Desired)>> {
    let has_default = DEFAULT_SPEC_FILES
        .iter()
        .any(|name| std::path::Path::new(name).is_file());
    if args.file.is_none() && !has_default && !required {
        return Ok(None);
    }
    let path = spec_path(args)?;
    let document = load::load_path(&path, args.format)?;
    let desired = validate(
        &document,
        ValidateOptions {
            missing_is_error: false,
        },
    )?;
    Ok(Some((document, desired)))
}

/// Returns a tenant's registry record, or an error naming the id.
pub fn find_tenant<'a>(
    state: &'a crate::state::registry::RegistryState,
    id: &str,
) -> Result<&'a crate::state::registry::TenantRecord> {
    state.tenants.get(id).ok_or_else(|| {
        Error::with_hint(
            format!("Tenant '{id}' not found"),
            "list the registered tenants with tenantctl list",
        )
    })
}

/// Checks that every `--tenant` id is declared, before any connection.
pub fn check_tenant_filter(desired: &Desired, tenants: &[String]) -> Result<()> {
    let unknown: Vec<&str> = tenants
        .iter()
        .filter(|id| desired.tenant(id).is_none())
        .map(String::as_str)
        .collect();
    let Some(first) = unknown.first() else {
        return Ok(());
    };
    let message = match unknown.len() {
        1 => format!("Tenant '{first}' not found in {}", desired.origin),
        _ => format!(
            "Tenants '{}' not found in {}",
            unknown.join("', '"),
            desired.origin
        ),
    };
    Err(Error::with_hint(
        message,
        "check the ids given with --tenant against the spec",
    ))
}

/// Picks the control URL: flag or environment, then the spec, then the default.
pub fn control_url(global: &GlobalArgs, desired: Option<&Desired>) -> String {
    global
        .database_url
        .clone()
        .filter(|url| !url.is_empty())
        .or_else(|| desired.and_then(|desired| desired.control_url.clone()))
        .unwrap_or_else(|| db::DEFAULT_DATABASE_URL.to_string())
}

/// Connects to the control database and creates or upgrades the registry.
pub fn open_control(url: &str) -> Result<PgConnection> {
    db::tag_sessions(url);
    let mut connection = db::connect(url)?;
    registry::bootstrap(&mut connection)?;
    Ok(connection)
}

/// Connects to the control database for a command that only reads the
/// registry. A database without the registry is an error, so such a command
/// never creates one. An existing registry of an older tenantctl is upgraded
/// as `open_control` does, because the queries expect the current tables.
pub fn open_existing_registry(url: &str) -> Result<PgConnection> {
    db::tag_sessions(url);
    let mut connection = db::connect(url)?;
    if !registry::has_registry(&mut connection)? {
        return Err(Error::with_hint(
            format!(
                "no tenantctl registry in database {}: schema tenantctl does not exist or holds no registry",
                db::redact(url)
            ),
            "tenantctl apply creates the registry. If this is the wrong database, set --database-url, TENANTCTL_DATABASE_URL or [control] database_url in the spec",
        ));
    }
    registry::bootstrap(&mut connection)?;
    Ok(connection)
}

/// Refuses a plan that the connecting role cannot carry out, before any
/// change: the error lists each missing privilege with the action that
/// needs it.
pub fn refuse_plan_errors(plan: &crate::plan::Plan) -> Result<()> {
    if !plan.has_errors() {
        return Ok(());
    }
    let errors = plan.errors();
    Err(Error::with_hint(
        format!(
            "the connecting role lacks {} privilege{} that the plan needs; nothing was changed:\n  {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n  ")
        ),
        "grant them (see \"Reliability and security\" in the README), or connect as a role that has them",
    ))
}

/// Prints the spec's warnings to stderr.
pub fn print_warnings(printer: &crate::output::Printer, desired: &Desired) {
    for warning in &desired.warnings {
        printer.warn(warning);
    }
}

/// Prints the plan's warnings to stderr, except the spec's warnings, which
/// `print_warnings` printed before connecting.
pub fn print_plan_warnings(
    printer: &crate::output::Printer,
    plan: &crate::plan::Plan,
    desired: &Desired,
) {
    for warning in &plan.warnings {
        if !desired.warnings.contains(warning) {
            printer.warn(warning);
        }
    }
}

/// Tells the user that another run holds the apply lock.
pub fn report_lock_wait(printer: &crate::output::Printer, pid: Option<i32>) {
    let holder = pid
        .map(|pid| format!(" (held by server process {pid})"))
        .unwrap_or_default();
    printer.error(&format!("Waiting for the apply lock{holder}..."));
}
