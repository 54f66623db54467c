//! The location of a registered tenant's data, read from its registry record
//! alone, so day-two commands work without the spec.

use super::registry::TenantRecord;
use crate::spec::model::Isolation;

/// The objects of one registered tenant, as its record's config names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub isolation: Option<Isolation>,
    /// Database of a database tenant.
    pub database: Option<String>,
    /// Owner role of a database tenant's database.
    pub owner: Option<String>,
    /// `host:port` of a database tenant's server.
    pub server: Option<String>,
    /// Schema of a schema tenant, or the shared schema of a table tenant.
    pub schema: Option<String>,
    /// Login role of a schema or table tenant.
    pub role: Option<String>,
    /// Column of the shared tables that carries a table tenant's id.
    pub column: Option<String>,
    /// Redis key prefix.
    pub prefix: Option<String>,
    pub acl_user: Option<String>,
}

impl Location {
    /// Reads the location from a registry record.
    pub fn of(record: &TenantRecord) -> Location {
        let text = |key: &str| record.config_text(key).map(str::to_string);
        Location {
            isolation: Isolation::parse(&record.isolation),
            database: text("database"),
            owner: text("owner"),
            server: text("server"),
            schema: text("schema"),
            role: text("role"),
            column: text("column"),
            prefix: text("prefix"),
            acl_user: text("acl_user"),
        }
    }

    /// Returns the role a session of the tenant runs as: the database owner
    /// of a database tenant, the login role of a schema or table tenant.
    pub fn tenant_role(&self) -> Option<&str> {
        match self.isolation {
            Some(Isolation::Database) => self.owner.as_deref(),
            _ => self.role.as_deref(),
        }
    }

    /// Describes where the tenant's data lives, in a few words.
    pub fn describe(&self) -> String {
        match self.isolation {
            Some(Isolation::Database) => format!(
                "database {}{}",
                self.database.as_deref().unwrap_or("?"),
                self.server
                    .as_deref()
                    .map(|server| format!(" on {server}"))
                    .unwrap_or_default()
            ),
            Some(Isolation::Schema) => format!("schema {}", self.schema.as_deref().unwrap_or("?")),
            Some(Isolation::Table) => format!(
                "shared schema {}",
                self.schema.as_deref().unwrap_or("public")
            ),
            Some(Isolation::Cache) => {
                format!("key prefix {}", self.prefix.as_deref().unwrap_or("?"))
            }
            None => "(unknown)".to_string(),
        }
    }
}
