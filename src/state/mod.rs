//! The actual state: registry, catalogs and Redis, read in bulk.

pub mod catalog;
pub mod db;
pub mod registry;

use std::collections::{BTreeMap, HashMap};

use diesel::PgConnection;

use crate::error::{Error, Result};
use crate::spec::desired::{DatabaseTarget, Desired};
use crate::spec::model::Isolation;

/// A database server that holds database tenants.
#[derive(Debug, Clone)]
pub struct Server {
    /// `host:port`, as plans name it.
    pub key: String,
    /// URL of a role allowed to create roles and databases there. It may
    /// carry a password, so show it only through [`db::redact`].
    pub admin_url: String,
}

/// Every server the desired state touches, keyed by `host:port`.
#[derive(Debug, Clone)]
pub struct Servers {
    pub control_key: String,
    pub control_url: String,
    pub by_key: BTreeMap<String, Server>,
}

impl Servers {
    /// Works out the server of each database tenant and its admin URL: the
    /// spec's `[servers.HOST]` entry, or the control URL pointed at that host.
    pub fn resolve(desired: &Desired, control_url: &str) -> Result<Servers> {
        let (control_host, control_port) = db::host_port(control_url)?;
        let control_key = format!("{control_host}:{control_port}");
        let mut by_key = BTreeMap::new();
        by_key.insert(
            control_key.clone(),
            Server {
                key: control_key.clone(),
                admin_url: control_url.to_string(),
            },
        );
        for tenant in &desired.tenants {
            let Some(database) = &tenant.database else {
                continue;
            };
            let key = server_key(database, &control_key);
            if by_key.contains_key(&key) {
                continue;
            }
            let host = database.host.clone().unwrap_or_default();
            let admin_url = match desired.servers.get(&host) {
                Some(source) => source
                    .resolve(&desired.base_dir)
                    .map_err(|problem| {
                        Error::other(format!(
                            "cannot read the admin URL of server `{host}`: {problem}"
                        ))
                    })?
                    .expose()
                    .to_string(),
                None => db::with_database(
                    &db::with_host(control_url, &host, database.port)?,
                    "postgres",
                )?,
            };
            by_key.insert(key.clone(), Server { key, admin_url });
        }
        Ok(Servers {
            control_key,
            control_url: control_url.to_string(),
            by_key,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Server> {
        self.by_key.get(key)
    }
}

/// Returns the `host:port` key of a database tenant's server.
pub fn server_key(database: &DatabaseTarget, control_key: &str) -> String {
    match &database.host {
        Some(host) => format!("{host}:{}", database.port),
        None => control_key.to_string(),
    }
}

/// What exists now.
#[derive(Debug, Default)]
pub struct Actual {
    pub registry: registry::RegistryState,
    /// Applied (version, checksum) lists of tenants whose summary differs
    /// from their full migration set.
    pub applied_details: HashMap<String, Vec<(String, String)>>,
    pub control: catalog::ControlCatalog,
    /// Catalog of each server, keyed like [`Servers::by_key`]; a server that
    /// could not be reached has an error instead.
    pub servers: HashMap<String, std::result::Result<catalog::ServerCatalog, String>>,
}

/// Reads the actual state in bulk: a fixed number of queries per server.
pub fn inspect(desired: &Desired, servers: &Servers, control: &mut PgConnection) -> Result<Actual> {
    let registry_state = registry::read_state(control)?;
    let control_catalog = catalog::read_control(control)?;

    let mut details_needed = Vec::new();
    // Tenants share a few migration sets: each set's digest is computed once.
    let mut expected_digests: HashMap<&str, String> = HashMap::new();
    for tenant in &desired.tenants {
        let Some(set) = &tenant.migrations else {
            continue;
        };
        let Some(summary) = registry_state.applied.get(&tenant.id) else {
            continue;
        };
        let expected = expected_digests
            .entry(set.digest.as_str())
            .or_insert_with(|| {
                registry::applied_digest(
                    set.migrations
                        .iter()
                        .map(|m| (m.version.as_str(), m.checksum.as_str())),
                )
            });
        if summary.digest != *expected {
            details_needed.push(tenant.id.clone());
        }
    }
    let applied_details = if details_needed.is_empty() {
        HashMap::new()
    } else {
        registry::applied_migrations(control, &details_needed)?
    };

    let mut server_catalogs = HashMap::new();
    server_catalogs.insert(
        servers.control_key.clone(),
        Ok(catalog::read_server(control)?),
    );
    let needs_server = |key: &str| {
        desired.tenants.iter().any(|tenant| {
            tenant.isolation == Isolation::Database
                && tenant
                    .database
                    .as_ref()
                    .is_some_and(|database| server_key(database, &servers.control_key) == key)
        })
    };
    for (key, server) in &servers.by_key {
        if server_catalogs.contains_key(key) || !needs_server(key) {
            continue;
        }
        let catalog = db::connect(&server.admin_url)
            .and_then(|mut connection| catalog::read_server(&mut connection))
            .map_err(|error| error.to_string());
        server_catalogs.insert(key.clone(), catalog);
    }

    Ok(Actual {
        registry: registry_state,
        applied_details,
        control: control_catalog,
        servers: server_catalogs,
    })
}
