//! `plan --refresh`: each database tenant's own record of its migrations,
//! the table `tenantctl.migrations` inside its database. Unlike the bulk
//! reads, this opens one connection per database tenant, so plain plans
//! leave it out and trust the registry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::{Actual, Servers, db, registry, server_key};
use crate::error::{Error, Result};
use crate::spec::desired::{DatabaseTarget, Desired, DesiredTenant};
use crate::spec::model::Isolation;

/// Databases read at once.
const READERS: usize = 4;

/// The (version, checksum) rows of one tenant database's
/// `tenantctl.migrations`, or why they could not be read.
pub type LocalRecords = std::result::Result<Vec<(String, String)>, String>;

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = Bool)]
    present: bool,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Text)]
    checksum: String,
}

/// Reads `tenantctl.migrations` of every selected database tenant whose
/// database exists into [`Actual::local`], keyed by tenant id. A database
/// without the table has no records. Also reads, in one query, the
/// registry's full list for those tenants, so the diff compares lists
/// rather than a summary.
pub fn refresh(
    desired: &Desired,
    servers: &Servers,
    actual: &mut Actual,
    control: &mut PgConnection,
    only: &[String],
) -> Result<()> {
    let targets = targets(desired, servers, actual, only);
    let summarized: Vec<String> = targets
        .iter()
        .map(|(tenant, ..)| tenant.id.clone())
        .filter(|id| {
            actual.registry.applied.contains_key(id) && !actual.applied_details.contains_key(id)
        })
        .collect();
    if !summarized.is_empty() {
        let details = registry::applied_migrations(control, &summarized)?;
        actual.applied_details.extend(details);
    }
    actual.local = Some(read_all(&targets));
    tracing::debug!(
        databases = targets.len(),
        "read the tenants' migration tables"
    );
    Ok(())
}

/// Lists the selected database tenants whose database exists, with the
/// admin URL of their server.
fn targets<'a>(
    desired: &'a Desired,
    servers: &'a Servers,
    actual: &Actual,
    only: &[String],
) -> Vec<(&'a DesiredTenant, &'a DatabaseTarget, &'a str)> {
    desired
        .tenants
        .iter()
        .filter(|tenant| only.is_empty() || only.contains(&tenant.id))
        .filter(|tenant| tenant.isolation == Isolation::Database)
        .filter_map(|tenant| {
            let database = tenant.database.as_ref()?;
            let key = server_key(database, &servers.control_key);
            let Some(Ok(catalog)) = actual.servers.get(&key) else {
                return None;
            };
            catalog.databases.get(&database.name)?;
            let server = servers.get(&key)?;
            Some((tenant, database, server.admin_url.as_str()))
        })
        .collect()
}

/// Reads the databases [`READERS`] at a time.
fn read_all(targets: &[(&DesiredTenant, &DatabaseTarget, &str)]) -> HashMap<String, LocalRecords> {
    let next = AtomicUsize::new(0);
    let found = Mutex::new(HashMap::new());
    std::thread::scope(|scope| {
        for _ in 0..READERS.min(targets.len()) {
            scope.spawn(|| {
                while let Some((tenant, database, admin_url)) =
                    targets.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    let records = read_one(admin_url, &database.name);
                    if let Err(error) = &records {
                        tracing::debug!(tenant = %tenant.id, database = %database.name, %error, "cannot read tenantctl.migrations");
                    }
                    found
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .insert(tenant.id.clone(), records);
                }
            });
        }
    });
    found
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads one database's `tenantctl.migrations` as the server's admin role.
fn read_one(admin_url: &str, database: &str) -> LocalRecords {
    let url = db::with_database(admin_url, database).map_err(|error| error.to_string())?;
    let mut connection = db::connect(&url).map_err(|error| match error {
        Error::Connect { reason, .. } => format!("cannot connect: {reason}"),
        other => other.to_string(),
    })?;
    let present: Present =
        diesel::sql_query("SELECT to_regclass('tenantctl.migrations') IS NOT NULL AS present")
            .get_result(&mut connection)
            .map_err(|error| error.to_string())?;
    if !present.present {
        return Ok(Vec::new());
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT version, checksum FROM tenantctl.migrations ORDER BY version")
            .load(&mut connection)
            .map_err(|error| error.to_string())?;
    Ok(rows
        .into_iter()
        .map(|row| (row.version, row.checksum))
        .collect())
}
