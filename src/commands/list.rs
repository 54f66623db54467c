//! `tenantctl list`: the registered tenants, from the registry alone.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{GlobalArgs, ListArgs};
use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
use crate::output::{Printer, table};
use crate::plan::pending::compare_recorded;
use crate::spec::desired::Desired;
use crate::spec::model::Isolation;
use crate::state::location::Location;
use crate::state::registry::{self, RegistryState, TenantRecord};

/// One tenant as `list` shows it.
#[derive(Debug, Serialize)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub isolation: String,
    /// Location of the tenant's data, in words.
    pub location: String,
    pub status: String,
    pub deletion_protection: bool,
    pub migrations_applied: i64,
    /// Pending migrations; None without a spec or `--migrations` folder.
    pub migrations_pending: Option<usize>,
    pub created_at: DateTime<Utc>,
}

/// Builds the rows of the given records; pending counts need a migration
/// folder, from the spec. Reads the registry at most once more, in bulk.
pub fn rows(
    control: &mut diesel::PgConnection,
    state: &RegistryState,
    records: &[&TenantRecord],
    desired: Option<&Desired>,
) -> Result<Vec<TenantRow>> {
    let sets: HashMap<&str, Arc<MigrationSet>> = records
        .iter()
        .filter_map(|record| Some((record.id.as_str(), migration_set(record, desired)?)))
        .collect();
    let details = crate::state::read_stale_applied(
        control,
        state,
        sets.iter().map(|(id, set)| (*id, set.as_ref())),
    )?;
    Ok(records
        .iter()
        .map(|record| {
            let pending = sets.get(record.id.as_str()).map(|set| {
                compare_recorded(
                    set,
                    state.applied.contains_key(&record.id),
                    details.get(&record.id).map(Vec::as_slice),
                )
                .pending
                .len()
            });
            TenantRow {
                id: record.id.clone(),
                name: record.name.clone(),
                isolation: record.isolation.clone(),
                location: Location::of(record).describe(),
                status: record.status.clone(),
                deletion_protection: record.deletion_protection,
                migrations_applied: state.applied.get(&record.id).map_or(0, |s| s.count),
                migrations_pending: pending,
                created_at: record.created_at,
            }
        })
        .collect())
}

/// Returns the spec's migration folder of a registered tenant.
pub fn migration_set(
    record: &TenantRecord,
    desired: Option<&Desired>,
) -> Option<Arc<MigrationSet>> {
    desired?.tenant(&record.id)?.migrations.clone()
}

/// Prints the registered tenants as a table or JSON.
pub fn run(global: &GlobalArgs, args: &ListArgs, printer: &Printer) -> Result<i32> {
    let isolation = args.isolation.as_deref().map(parse_isolation).transpose()?;
    let status = args.status.as_deref().map(parse_status).transpose()?;
    let spec = super::load_spec_if_any(&args.spec, false)?;
    let desired = spec.as_ref().map(|(_, desired)| desired);
    let mut control = super::open_existing_registry(&super::control_url(global, desired))?;
    let state = registry::read_state(&mut control)?;
    let mut records: Vec<&TenantRecord> = state
        .tenants
        .values()
        .filter(|record| isolation.is_none_or(|wanted| record.isolation == wanted.as_str()))
        .filter(|record| status.is_none_or(|wanted| record.status == wanted))
        .collect();
    records.sort_by(|left, right| left.id.cmp(&right.id));
    let rows = rows(&mut control, &state, &records, desired)?;
    if args.json {
        let text = serde_json::to_string_pretty(&rows).expect("rows always serialize");
        printer.out(&format!("{text}\n"));
        return Ok(0);
    }
    if rows.is_empty() && !state.tenants.is_empty() {
        printer.error(&format!(
            "No tenants match the filters ({} registered).",
            state.tenants.len()
        ));
        return Ok(0);
    }
    if rows.is_empty() {
        printer.error("No tenants registered.");
        return Ok(0);
    }
    printer.out(&render(&rows));
    Ok(0)
}

/// Renders rows as an aligned table.
pub fn render(rows: &[TenantRow]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.id.clone(),
                row.name.clone(),
                row.isolation.clone(),
                row.location.clone(),
                row.status.clone(),
                row.migrations_applied.to_string(),
                row.migrations_pending
                    .map_or_else(|| "-".to_string(), |pending| pending.to_string()),
                row.created_at.format("%Y-%m-%d %H:%M").to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "ISOLATION",
            "WHERE",
            "STATUS",
            "APPLIED",
            "PENDING",
            "CREATED",
        ],
        &cells,
    )
}

fn parse_isolation(text: &str) -> Result<Isolation> {
    Isolation::parse(text).ok_or_else(|| {
        Error::with_hint(
            format!("invalid isolation type `{text}`"),
            "use database, schema, table or cache",
        )
    })
}

fn parse_status(text: &str) -> Result<&str> {
    [
        registry::STATUS_READY,
        registry::STATUS_FAILED,
        registry::STATUS_PENDING,
    ]
    .into_iter()
    .find(|status| *status == text)
    .ok_or_else(|| {
        Error::with_hint(
            format!("invalid status `{text}`"),
            "use ready, failed or pending",
        )
    })
}
