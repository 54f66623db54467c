//! The actual state: registry, catalogs and Redis, read in bulk.

pub mod catalog;
pub mod db;
pub mod local;
pub mod redis;
pub mod registry;
pub mod tables;

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::PgConnection;
use diesel::connection::{Connection, InstrumentationEvent};

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
    /// The Redis server, when a tenant has a Redis ACL user.
    pub redis: Option<redis::RedisTarget>,
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
            let host = database
                .host
                .clone()
                .unwrap_or_else(|| control_host.clone());
            let port = match (&database.host, database.port) {
                (_, Some(port)) => port,
                (None, None) => control_port,
                (Some(_), None) => 5432,
            };
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
                None => db::with_database(&db::with_host(control_url, &host, port)?, "postgres")?,
            };
            by_key.insert(key.clone(), Server { key, admin_url });
        }
        Ok(Servers {
            control_key,
            control_url: control_url.to_string(),
            by_key,
            redis: redis::RedisTarget::resolve(desired)?,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Server> {
        self.by_key.get(key)
    }
}

/// Returns the `host:port` key of a database tenant's server. A missing
/// host means the control server's host, and a missing port means the
/// control server's port on that host and 5432 on any other.
pub fn server_key(database: &DatabaseTarget, control_key: &str) -> String {
    match (&database.host, database.port) {
        (Some(host), port) => format!("{host}:{}", port.unwrap_or(5432)),
        (None, None) => control_key.to_string(),
        (None, Some(port)) => {
            let host = control_key
                .rsplit_once(':')
                .map_or(control_key, |(host, _)| host);
            format!("{host}:{port}")
        }
    }
}

/// What exists now.
#[derive(Debug, Default)]
pub struct Actual {
    pub registry: registry::RegistryState,
    /// Applied (version, checksum) lists of tenants whose summary differs
    /// from their full migration set, and with `plan --refresh` of every
    /// database tenant whose own migration table was read.
    pub applied_details: HashMap<String, Vec<(String, String)>>,
    pub control: catalog::ControlCatalog,
    /// Catalog of each server, keyed like [`Servers::by_key`]; a server that
    /// could not be reached has an error instead.
    pub servers: HashMap<String, std::result::Result<catalog::ServerCatalog, String>>,
    /// The shared tables of table tenants, when the spec has `[tables]`.
    pub shared: Option<tables::SharedState>,
    /// ACL users and commands of the Redis server, or why they could not be
    /// read; None when no tenant has a Redis ACL user.
    pub redis: Option<std::result::Result<redis::RedisState, String>>,
    /// Each database tenant's own migration records, read only by
    /// `plan --refresh`, so None on a plain plan.
    pub local: Option<HashMap<String, local::LocalRecords>>,
}

/// Reads the actual state in bulk: a fixed number of queries per server.
pub fn inspect(desired: &Desired, servers: &Servers, control: &mut PgConnection) -> Result<Actual> {
    let queries = QueryCounter::default();
    queries.attach(control);
    let actual = read_actual(desired, servers, control, &queries)?;
    tracing::debug!(
        queries = queries.count(),
        tenants = desired.tenants.len(),
        "read the actual state"
    );
    Ok(actual)
}

/// Counts the queries sent on the connections it is attached to, so the
/// debug log shows that plan's reads do not grow with the tenant count.
#[derive(Clone, Default)]
pub struct QueryCounter(Arc<AtomicUsize>);

impl QueryCounter {
    pub fn attach(&self, connection: &mut PgConnection) {
        let count = Arc::clone(&self.0);
        connection.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

fn read_actual(
    desired: &Desired,
    servers: &Servers,
    control: &mut PgConnection,
    queries: &QueryCounter,
) -> Result<Actual> {
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
        // A server that cannot be read fails the whole plan: planning its
        // tenants blind would show objects that exist as new.
        let mut connection = db::connect(&server.admin_url)?;
        queries.attach(&mut connection);
        server_catalogs.insert(key.clone(), Ok(catalog::read_server(&mut connection)?));
    }

    let shared = match &desired.tables {
        Some(target) => Some(tables::read(control, target)?),
        None => None,
    };
    let redis = servers.redis.as_ref().map(redis::read);

    Ok(Actual {
        registry: registry_state,
        applied_details,
        control: control_catalog,
        servers: server_catalogs,
        shared,
        redis,
        local: None,
    })
}
