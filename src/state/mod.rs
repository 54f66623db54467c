//! The actual state: registry, catalogs and Redis, read in bulk.

pub mod catalog;
pub mod db;
pub mod local;
pub mod location;
pub mod redis;
pub mod registry;
pub mod tables;

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::PgConnection;
use diesel::connection::{Connection, InstrumentationEvent};

use crate::error::{Error, Result};
use crate::migrations::MigrationSet;
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
    /// The spec's `[servers.HOST]` admin URLs, resolved on first use for a
    /// server no declared tenant names, such as a removed tenant's.
    named: BTreeMap<String, crate::spec::model::SecretSource>,
    base_dir: std::path::PathBuf,
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
            named: desired.servers.clone(),
            base_dir: desired.base_dir.clone(),
            redis: redis::RedisTarget::resolve(desired)?,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Server> {
        self.by_key.get(key)
    }

    /// Knows only the control server, for commands run without a spec.
    pub fn control_only(control_url: &str) -> Result<Servers> {
        let (host, port) = db::host_port(control_url)?;
        let control_key = format!("{host}:{port}");
        let server = Server {
            key: control_key.clone(),
            admin_url: control_url.to_string(),
        };
        Ok(Servers {
            control_key: control_key.clone(),
            control_url: control_url.to_string(),
            by_key: BTreeMap::from([(control_key, server)]),
            named: BTreeMap::new(),
            base_dir: std::path::PathBuf::from("."),
            redis: None,
        })
    }

    /// Returns the admin URL of a server by its `host:port` key: the spec's
    /// `[servers.HOST]` entry, or, as [`Servers::resolve`] does, the control
    /// URL pointed at that host and database `postgres`.
    pub fn admin_url(&self, key: &str) -> Result<String> {
        if let Some(server) = self.by_key.get(key) {
            return Ok(server.admin_url.clone());
        }
        let (host, port) = key
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| Error::other(format!("invalid server `{key}` in the registry")))?;
        match self.named.get(host) {
            Some(source) => source
                .resolve(&self.base_dir)
                .map(|url| url.expose().to_string())
                .map_err(|problem| {
                    Error::other(format!(
                        "cannot read the admin URL of server `{host}`: {problem}"
                    ))
                }),
            None => db::with_database(&db::with_host(&self.control_url, host, port)?, "postgres"),
        }
    }

    /// Returns the URL of a tenant database on a server, with the admin's
    /// credentials.
    pub fn database_url(&self, key: &str, database: &str) -> Result<String> {
        db::with_database(&self.admin_url(key)?, database)
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

/// Reads, in one query, the applied migrations of the tenants whose
/// recorded digest differs from their folder's; tenants without a record or
/// with a matching one need no read.
pub fn read_stale_applied<'a>(
    control: &mut PgConnection,
    registry_state: &registry::RegistryState,
    tenants: impl IntoIterator<Item = (&'a str, &'a MigrationSet)>,
) -> Result<HashMap<String, Vec<(String, String)>>> {
    let mut digests: HashMap<&std::path::Path, String> = HashMap::new();
    let mut stale = Vec::new();
    for (id, set) in tenants {
        let Some(summary) = registry_state.applied.get(id) else {
            continue;
        };
        let digest = digests
            .entry(set.dir.as_path())
            .or_insert_with(|| crate::plan::diff::set_digest(set));
        if summary.digest != *digest {
            stale.push(id.to_string());
        }
    }
    if stale.is_empty() {
        return Ok(HashMap::new());
    }
    registry::applied_migrations(control, &stale)
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

    let applied_details = read_stale_applied(
        control,
        &registry_state,
        desired.tenants.iter().filter_map(|tenant| {
            let set = tenant.migrations.as_deref()?;
            Some((tenant.id.as_str(), set))
        }),
    )?;

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
