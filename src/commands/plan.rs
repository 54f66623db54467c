//! `tenantctl plan`.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::cli::{GlobalArgs, PlanArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::action::PlanSource;
use crate::plan::diff::{DiffContext, diff};
use crate::plan::{Plan, render};
use crate::spec::desired::Desired;
use crate::spec::load::Document;
use crate::state::{self, Servers, db};

/// Everything needed to compute a plan, kept for apply.
pub struct Planned {
    pub document: Document,
    pub desired: Desired,
    pub servers: Servers,
    pub actual: state::Actual,
    pub plan: Plan,
    pub control_url: String,
}

/// Whether a plan removes tenants the spec no longer declares, and how.
#[derive(Debug, Clone, Copy, Default)]
pub struct Removal {
    pub prune: bool,
    pub drop_adopted: bool,
}

/// Describes the spec a plan was made from.
pub fn plan_source(
    document: &Document,
    control_url: &str,
    tenants: &[String],
    removal: Removal,
) -> PlanSource {
    PlanSource {
        spec_path: document
            .path
            .as_ref()
            .map(|path| std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())),
        spec_digest: hex::encode(Sha256::digest(document.text.as_bytes())),
        tenant_filter: tenants.to_vec(),
        control: db::redact(control_url),
        prune: removal.prune,
        drop_adopted: removal.drop_adopted,
        refresh: false,
    }
}

/// Describes a plan made from the registry alone, such as `destroy`'s.
pub fn plan_source_without_spec(control_url: &str) -> PlanSource {
    PlanSource {
        spec_path: None,
        spec_digest: String::new(),
        tenant_filter: Vec::new(),
        control: db::redact(control_url),
        prune: false,
        drop_adopted: false,
        refresh: false,
    }
}

/// Reads the state and diffs it against the spec.
pub fn compute(
    document: Document,
    desired: Desired,
    control_url: String,
    control: &mut diesel::PgConnection,
    tenants: &[String],
    removal: Removal,
) -> Result<Planned> {
    compute_with(
        document,
        desired,
        control_url,
        control,
        tenants,
        false,
        removal,
    )
}

/// Reads the state and diffs it against the spec. With `refresh`, it also
/// reads each database tenant's own migration table.
pub fn compute_with(
    document: Document,
    desired: Desired,
    control_url: String,
    control: &mut diesel::PgConnection,
    tenants: &[String],
    refresh: bool,
    removal: Removal,
) -> Result<Planned> {
    let servers = Servers::resolve(&desired, &control_url)?;
    let mut actual = state::inspect(&desired, &servers, control)?;
    if refresh {
        state::local::refresh(&desired, &servers, &mut actual, control, tenants)?;
    }
    let mut source = plan_source(&document, &control_url, tenants, removal);
    source.refresh = refresh;
    let plan = diff(DiffContext {
        desired: &desired,
        actual: &actual,
        servers: &servers,
        source,
        only: tenants,
    });
    Ok(Planned {
        document,
        desired,
        servers,
        actual,
        plan,
        control_url,
    })
}

/// Shows what apply would change.
pub fn run(global: &GlobalArgs, args: &PlanArgs, printer: &Printer) -> Result<i32> {
    let (document, desired) =
        super::load_desired(&args.spec, super::interactive(args.no_input), &args.tenants)?;
    super::check_tenant_filter(&desired, &args.tenants)?;
    if !args.json {
        super::print_warnings(printer, &desired);
    }
    let control_url = super::control_url(global, Some(&desired));
    let mut control = super::open_control(&control_url)?;
    let removal = Removal {
        prune: args.removal.prune,
        drop_adopted: args.removal.drop_adopted,
    };
    let planned = compute_with(
        document,
        desired,
        control_url,
        &mut control,
        &args.tenants,
        args.refresh,
        removal,
    )?;
    if args.json {
        printer.out(&format!("{}\n", render::to_json(&planned.plan)));
    } else {
        super::print_plan_warnings(printer, &planned.plan, &planned.desired);
        printer.out(&render::to_text(&planned.plan));
    }
    super::refuse_plan_errors(&planned.plan)?;
    if let Some(out) = &args.out {
        save(&planned.plan, out)?;
        if !args.json {
            let spec = match planned.plan.source.spec_path {
                Some(_) => String::new(),
                None => " -f - --format FORMAT < SPEC".to_string(),
            };
            printer.error(&format!(
                "Saved the plan to {out}; apply it with: tenantctl apply {out}{spec}",
                out = out.display()
            ));
        }
    }
    Ok(if args.detailed_exitcode && planned.plan.has_changes() {
        2
    } else {
        0
    })
}

/// Writes a plan file readable by its owner only.
fn save(plan: &Plan, path: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = render::to_json(plan);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| {
            Error::other(format!(
                "cannot write plan file {}: {error}",
                path.display()
            ))
        })?;
    file.write_all(text.as_bytes()).map_err(|error| {
        Error::other(format!(
            "cannot write plan file {}: {error}",
            path.display()
        ))
    })
}

/// Reads a plan saved with `plan --out`.
pub fn load_saved(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        Error::with_hint(
            format!("cannot read plan file {}: {error}", path.display()),
            "make one with tenantctl plan --out FILE",
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
        Error::other(format!(
            "{} is not a tenantctl plan file: {error}",
            path.display()
        ))
    })?;
    let version = value.get("format_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(crate::plan::action::PLAN_FORMAT_VERSION)) {
        return Err(Error::with_hint(
            format!(
                "plan file {} has format version {}, and this tenantctl reads {}",
                path.display(),
                version.map_or("(none)".to_string(), |v| v.to_string()),
                crate::plan::action::PLAN_FORMAT_VERSION
            ),
            "make the plan again with this tenantctl",
        ));
    }
    serde_json::from_value(value).map_err(|error| {
        Error::other(format!(
            "{} is not a tenantctl plan file: {error}",
            path.display()
        ))
    })
}
