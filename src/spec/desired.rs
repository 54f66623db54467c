//! The desired state: a validated spec with defaults filled in and secrets
//! resolved.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use super::error::SpecError;
use super::load::Document;
use super::model::{Isolation, SecretSource};
use super::secret::Secret;
use crate::migrations::MigrationSet;

/// What the spec file asks for.
#[derive(Debug)]
pub struct Desired {
    pub origin: String,
    pub base_dir: PathBuf,
    pub path: Option<PathBuf>,
    pub control_url: Option<String>,
    /// Admin URLs of other database servers, keyed by host.
    pub servers: BTreeMap<String, SecretSource>,
    pub redis_url: Option<SecretSource>,
    pub tables: Option<TablesTarget>,
    pub tenants: Vec<DesiredTenant>,
    /// Required values the spec does not give, for fill-in or one error.
    pub missing: Vec<MissingValue>,
    /// Things that work but deserve attention, such as literal secrets.
    pub warnings: Vec<String>,
    /// Position of each tenant id in `tenants`, built on first lookup; apply
    /// looks every tenant up, which must not take quadratic time.
    pub index: OnceLock<HashMap<String, usize>>,
}

impl Desired {
    /// A desired state that declares nothing, for commands run on the
    /// registry alone.
    pub fn empty() -> Desired {
        Desired {
            origin: "(no spec)".to_string(),
            base_dir: PathBuf::from("."),
            path: None,
            control_url: None,
            servers: BTreeMap::new(),
            redis_url: None,
            tables: None,
            tenants: Vec::new(),
            missing: Vec::new(),
            warnings: Vec::new(),
            index: OnceLock::new(),
        }
    }

    /// Finds a tenant by id.
    pub fn tenant(&self, id: &str) -> Option<&DesiredTenant> {
        let index = self.index.get_or_init(|| {
            self.tenants
                .iter()
                .enumerate()
                .map(|(position, tenant)| (tenant.id.clone(), position))
                .collect()
        });
        index
            .get(id)
            .and_then(|position| self.tenants.get(*position))
            .filter(|tenant| tenant.id == id)
    }
}

/// One tenant as the spec wants it.
#[derive(Debug)]
pub struct DesiredTenant {
    pub id: String,
    pub name: String,
    pub isolation: Isolation,
    /// JSON pointer of the tenant in the spec file.
    pub pointer: String,
    pub line: usize,
    pub migrations: Option<Arc<MigrationSet>>,
    pub run_migrations: bool,
    pub deletion_protection: bool,
    pub database: Option<DatabaseTarget>,
    pub schema: Option<SchemaTarget>,
    /// Login role of a table tenant.
    pub role: Option<RoleTarget>,
    pub cache: Option<CacheTarget>,
}

/// Database of a database tenant.
#[derive(Debug)]
pub struct DatabaseTarget {
    pub name: String,
    /// Login role that owns the database.
    pub owner: String,
    pub password: Option<Secret>,
    pub password_source: Option<SecretSource>,
    /// Host as the spec writes it; None means the control server's host.
    pub host: Option<String>,
    /// Port as the spec writes it; None means the control server's port
    /// when the host is the control server's, and 5432 otherwise.
    pub port: Option<u16>,
    pub create: bool,
    pub template: bool,
}

/// Schema of a schema tenant.
#[derive(Debug)]
pub struct SchemaTarget {
    pub name: String,
    pub role: Option<RoleTarget>,
}

/// A login role (or Redis ACL user) and its password.
#[derive(Debug)]
pub struct RoleTarget {
    pub name: String,
    pub password: Option<Secret>,
}

/// Redis key prefix of a tenant.
#[derive(Debug)]
pub struct CacheTarget {
    pub prefix: String,
    pub acl_user: Option<RoleTarget>,
    /// JSON pointer of the prefix in the spec file.
    pub pointer: String,
}

/// Shared tables of table tenants.
#[derive(Debug, Clone)]
pub struct TablesTarget {
    pub schema: String,
    pub column: String,
    pub setting: String,
    pub migrations: Option<Arc<MigrationSet>>,
}

impl TablesTarget {
    /// Returns the spec's `[tables]`, or without one the shared tables of
    /// `schema` with the default column and setting.
    pub fn of_spec_or(desired: Option<&Desired>, schema: Option<&str>) -> TablesTarget {
        if let Some(tables) = desired.and_then(|desired| desired.tables.as_ref()) {
            return tables.clone();
        }
        TablesTarget {
            schema: schema.unwrap_or("public").to_string(),
            column: super::validate::DEFAULT_TENANT_COLUMN.to_string(),
            setting: super::validate::DEFAULT_TENANT_SETTING.to_string(),
            migrations: None,
        }
    }
}

/// A required value the spec does not give.
#[derive(Debug, Clone)]
pub struct MissingValue {
    pub tenant: String,
    /// Field path inside the tenant, such as `database.password`.
    pub field: String,
    /// Prompt text without the tenant, such as `Enter database password`.
    pub prompt: String,
    pub secret: bool,
    /// Why it is missing, when it is not simply absent.
    pub reason: Option<String>,
    pub pointer: String,
    pub origin: String,
    pub position: super::load::Position,
}

impl MissingValue {
    pub fn new(
        document: &Document,
        tenant: &str,
        pointer: &str,
        field: &str,
        prompt: &str,
    ) -> MissingValue {
        MissingValue {
            tenant: tenant.to_string(),
            field: field.to_string(),
            prompt: prompt.to_string(),
            secret: false,
            reason: None,
            pointer: pointer.to_string(),
            origin: document.origin.clone(),
            position: document.position(pointer),
        }
    }

    pub fn secret(mut self) -> MissingValue {
        self.secret = true;
        self
    }

    pub fn because(mut self, reason: String) -> MissingValue {
        self.reason = Some(reason);
        self
    }

    /// Describes where the value is missing and why, such as
    /// `tenants.toml:14:1: tenant 'acme': database.password: environment
    /// variable `ACME_DB_PASSWORD` is not set`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{}:{}:{}: tenant '{}': {}",
            self.origin, self.position.line, self.position.column, self.tenant, self.field
        );
        if let Some(reason) = &self.reason {
            text.push_str(&format!(": {reason}"));
        }
        text
    }
}

/// Builds the one error that lists every missing value, for runs that
/// cannot ask for them.
pub fn missing_error(missing: &[MissingValue]) -> SpecError {
    let origin = missing.first().map_or("", |value| value.origin.as_str());
    let count = match missing.len() {
        1 => "1 required value is".to_string(),
        many => format!("{many} required values are"),
    };
    let mut error = SpecError::plain(origin, format!("{count} missing from the spec"));
    for value in missing {
        error = error.with_note(format!("  {}", value.describe()));
    }
    error.with_hint(
        "set them in the spec or its environment variables, or run on a terminal without --no-input or CI=true to type them",
    )
}
