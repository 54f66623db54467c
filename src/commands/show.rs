//! `tenantctl show`: everything known about one tenant.

use serde::Serialize;

use crate::cli::{GlobalArgs, ShowArgs};
use crate::error::Result;
use crate::output::Printer;
use crate::plan::pending::compare;
use crate::plan::{Action, render};
use crate::spec::desired::Desired;
use crate::spec::load::Document;
use crate::state::location::Location;
use crate::state::registry::{self, AppliedMigration, EventRecord, TenantRecord};

/// Number of events `show` prints.
const EVENT_COUNT: i64 = 10;

/// Whether a tenant matches its spec and the servers.
#[derive(Debug, Serialize)]
pub struct Drift {
    /// Whether the spec still declares the tenant.
    pub declared: bool,
    /// The actions apply would run for the tenant.
    pub actions: Vec<Action>,
    pub notes: Vec<String>,
}

/// Everything `show` prints.
#[derive(Debug, Serialize)]
pub struct TenantDetails {
    pub tenant: TenantRecord,
    pub location: String,
    /// Roles made by create-superuser for the tenant.
    pub superusers: Vec<String>,
    pub migrations: Vec<AppliedMigration>,
    /// Pending migration names; None without a spec.
    pub pending: Option<Vec<String>>,
    pub events: Vec<EventRecord>,
    /// None without a spec.
    pub drift: Option<Drift>,
}

/// Prints one tenant's record, migrations, last events and drift.
pub fn run(global: &GlobalArgs, args: &ShowArgs, printer: &Printer) -> Result<i32> {
    let spec = super::load_spec_if_any(&args.spec, false)?;
    let control_url = super::control_url(global, spec.as_ref().map(|(_, desired)| desired));
    let mut control = super::open_existing_registry(&control_url)?;
    let state = registry::read_state(&mut control)?;
    let record = super::find_tenant(&state, &args.id)?.clone();
    let migrations = registry::tenant_migrations_of(&mut control, &record.id)?;
    let events = registry::recent_events(&mut control, &record.id, EVENT_COUNT)?;
    let pending = spec
        .as_ref()
        .and_then(|(_, desired)| pending_names(&record, desired, &migrations));
    let drift = match spec {
        Some((document, desired)) => Some(drift(
            document,
            desired,
            control_url,
            &mut control,
            &record.id,
        )?),
        None => None,
    };
    let superusers = state
        .superusers
        .get(&record.id)
        .cloned()
        .unwrap_or_default();
    let details = TenantDetails {
        location: Location::of(&record).describe(),
        superusers,
        tenant: record,
        migrations,
        pending,
        events,
        drift,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&details).expect("details always serialize");
        printer.out(&format!("{text}\n"));
    } else {
        printer.out(&render_text(&details));
    }
    Ok(0)
}

fn pending_names(
    record: &TenantRecord,
    desired: &Desired,
    migrations: &[AppliedMigration],
) -> Option<Vec<String>> {
    let set = super::list::migration_set(record, Some(desired))?;
    let applied: Vec<(String, String)> = migrations
        .iter()
        .map(|m| (m.version.clone(), m.checksum.clone()))
        .collect();
    Some(
        compare(&set, &applied)
            .pending
            .iter()
            .map(|m| m.name.clone())
            .collect(),
    )
}

/// Plans the one tenant against its spec and the servers.
fn drift(
    document: Document,
    desired: Desired,
    control_url: String,
    control: &mut diesel::PgConnection,
    id: &str,
) -> Result<Drift> {
    if desired.tenant(id).is_none() {
        return Ok(Drift {
            declared: false,
            actions: Vec::new(),
            notes: Vec::new(),
        });
    }
    let planned = super::plan::compute(
        document,
        desired,
        control_url,
        control,
        &[id.to_string()],
        super::plan::Removal::default(),
    )?;
    let tenant_plan = planned
        .plan
        .tenants
        .into_iter()
        .find(|tenant| tenant.id == id);
    Ok(match tenant_plan {
        Some(tenant_plan) => Drift {
            declared: true,
            actions: tenant_plan.actions,
            notes: tenant_plan.notes,
        },
        None => Drift {
            declared: true,
            actions: Vec::new(),
            notes: Vec::new(),
        },
    })
}

/// Renders the details as text.
pub fn render_text(details: &TenantDetails) -> String {
    let tenant = &details.tenant;
    let location = Location::of(tenant);
    let mut fields: Vec<(&str, String)> = vec![
        ("name", tenant.name.clone()),
        ("isolation", tenant.isolation.clone()),
        ("where", details.location.clone()),
    ];
    let optional = [
        ("owner role", location.owner.clone()),
        ("role", location.role.clone()),
        (
            "key prefix",
            location
                .prefix
                .clone()
                .filter(|_| tenant.isolation != "cache"),
        ),
        ("ACL user", location.acl_user.clone()),
    ];
    fields.extend(
        optional
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?))),
    );
    fields.extend([
        ("status", tenant.status.clone()),
        (
            "last error",
            tenant.last_error.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "deletion protection",
            tenant.deletion_protection.to_string(),
        ),
        ("adopted", list_or_dash(&tenant.adopted)),
        ("superusers", list_or_dash(&details.superusers)),
        ("created", timestamp(&tenant.created_at)),
        ("updated", timestamp(&tenant.updated_at)),
    ]);
    let mut out = format!("Tenant {}\n", tenant.id);
    for (key, value) in fields {
        out.push_str(&format!("  {:<21}{value}\n", format!("{key}:")));
    }
    out.push_str(&render_migrations(details));
    out.push_str(&render_drift(details.drift.as_ref()));
    out.push_str("\nLast events:\n");
    if details.events.is_empty() {
        out.push_str("  (none)\n");
    }
    for event in &details.events {
        let error = event
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {:<6}  {}{error}\n",
            timestamp(&event.at),
            event.outcome,
            event.action
        ));
    }
    out
}

fn render_migrations(details: &TenantDetails) -> String {
    let pending = details.pending.as_ref().map_or_else(
        || " (pending unknown without a spec)".to_string(),
        |pending| format!(", {} pending", pending.len()),
    );
    let mut out = format!(
        "\nMigrations: {} applied{pending}\n",
        details.migrations.len()
    );
    for migration in &details.migrations {
        out.push_str(&format!(
            "  {}  applied {}  checksum {}\n",
            migration.version,
            timestamp(&migration.applied_at),
            migration.checksum.get(..12).unwrap_or(&migration.checksum)
        ));
    }
    for name in details.pending.iter().flatten() {
        out.push_str(&format!("  {name}  pending\n"));
    }
    out
}

fn render_drift(drift: Option<&Drift>) -> String {
    let Some(drift) = drift else {
        return "\nDrift: unknown without a spec (pass -f FILE)\n".to_string();
    };
    if !drift.declared {
        return "\nDrift: the spec no longer declares this tenant; it is kept until apply --prune removes it\n"
            .to_string();
    }
    if drift.actions.is_empty() && drift.notes.is_empty() {
        return "\nDrift: none; the tenant matches its spec and the server\n".to_string();
    }
    let mut out = "\nDrift: apply would change\n".to_string();
    for action in &drift.actions {
        out.push_str(&format!(
            "  {} {}\n",
            render::sign(action),
            render::describe(action)
        ));
    }
    for note in &drift.notes {
        out.push_str(&format!("  ! {note}\n"));
    }
    out
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn timestamp(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}
