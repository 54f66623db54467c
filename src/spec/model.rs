//! The spec file's data model. The JSON Schema in `schema/tenants.schema.json`
//! is generated from these types, and their doc comments become its
//! descriptions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// The spec format version this build reads.
pub const SPEC_VERSION: u32 = 1;

/// A tenantctl spec: the tenants of one deployment and where they live.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "tenantctl spec")]
pub struct Spec {
    /// Spec format version. Only version 1 exists.
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    /// URL of an editor's JSON Schema for this file; ignored by tenantctl.
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// The control database, which holds the registry in schema `tenantctl`
    /// and the schemas of schema tenants.
    #[serde(default)]
    pub control: Control,
    /// Values used by every tenant that does not set its own.
    #[serde(default)]
    pub defaults: Defaults,
    /// Admin connections for database servers other than the control server,
    /// keyed by host name as tenants write it in `database.host`.
    #[serde(default)]
    pub servers: BTreeMap<String, Server>,
    /// The shared tables of `table` tenants.
    #[serde(default)]
    pub tables: Option<Tables>,
    /// The Redis server of cache tenants.
    #[serde(default)]
    pub redis: Option<RedisServer>,
    /// The tenants.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
}

/// The control database.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// PostgreSQL URL of the control database. `--database-url` and
    /// `TENANTCTL_DATABASE_URL` take precedence.
    pub database_url: Option<String>,
}

/// Defaults for every tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Isolation type of tenants that do not name one.
    pub isolation: Option<Isolation>,
    /// Folder of the tenant migrations (diesel layout: `VERSION_name/up.sql`),
    /// relative to the spec file.
    pub migrations: Option<String>,
    /// Whether apply runs pending migrations. Default: true.
    pub run_migrations: Option<bool>,
    /// Whether new database tenants are copied from a migrated template
    /// database. Default: false.
    pub template: Option<bool>,
}

/// An admin connection for one database server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// PostgreSQL URL of a role allowed to create roles and databases there.
    pub admin_url: SecretSource,
}

/// Shared tables of `table` tenants, isolated by row-level security.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    /// Schema of the shared tables. Default: `public`.
    pub schema: Option<String>,
    /// Migrations of the shared application, run once for all table tenants,
    /// relative to the spec file.
    pub migrations: Option<String>,
    /// Column that carries the tenant id. Default: `tenant_id`.
    pub column: Option<String>,
    /// Setting that carries the current tenant id. Default: `app.tenant_id`.
    pub setting: Option<String>,
}

/// The Redis server of cache tenants.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisServer {
    /// Redis URL. `TENANTCTL_REDIS_URL` takes precedence. Default:
    /// `redis://127.0.0.1:6379`.
    pub url: Option<SecretSource>,
}

/// How a tenant's data is kept apart from other tenants' data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// A database and login role per tenant.
    Database,
    /// A schema per tenant in the control database.
    Schema,
    /// Rows in shared tables, filtered by row-level security.
    Table,
    /// A Redis key prefix, enforced by a Redis ACL user.
    Cache,
}

impl Isolation {
    pub const ALL: [Isolation; 4] = [
        Isolation::Database,
        Isolation::Schema,
        Isolation::Table,
        Isolation::Cache,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Database => "database",
            Isolation::Schema => "schema",
            Isolation::Table => "table",
            Isolation::Cache => "cache",
        }
    }

    pub fn parse(text: &str) -> Option<Isolation> {
        Isolation::ALL
            .into_iter()
            .find(|isolation| isolation.as_str() == text)
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One tenant.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Unique id: a lowercase ASCII letter, then lowercase letters, digits
    /// and `_`, at most 63 bytes.
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Isolation type. Default: `defaults.isolation`.
    pub isolation: Option<Isolation>,
    /// Migration folder of this tenant, relative to the spec file. Default:
    /// `defaults.migrations`.
    pub migrations: Option<String>,
    /// Whether apply runs this tenant's pending migrations. Default:
    /// `defaults.run_migrations`.
    pub run_migrations: Option<bool>,
    /// When true, prune and destroy refuse to remove this tenant.
    pub deletion_protection: Option<bool>,
    /// Database of a `database` tenant.
    pub database: Option<DatabaseSection>,
    /// Schema of a `schema` tenant.
    pub schema: Option<SchemaSection>,
    /// Login role of a `table` tenant.
    pub role: Option<RoleSection>,
    /// Redis key prefix of the tenant; any isolation type may have one.
    pub cache: Option<CacheSection>,
}

/// Database of a `database` tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSection {
    /// Database name. Default: the tenant id.
    pub name: Option<String>,
    /// Login role that owns the database. Required: asked for on a terminal
    /// when missing.
    pub user: Option<String>,
    /// Password of the login role.
    pub password: Option<SecretSource>,
    /// Server host. Default: the control database's host.
    pub host: Option<String>,
    /// Server port. Default: the control database's port when `host` is not
    /// given, 5432 otherwise.
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Whether apply creates the database and role when they are missing.
    /// Default: true. With false the tenant stays pending.
    pub create: Option<bool>,
    /// Whether the database is copied from a migrated template database.
    /// Default: `defaults.template`.
    pub template: Option<bool>,
}

/// Schema of a `schema` tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// Schema name. Default: the tenant id.
    pub name: Option<String>,
    /// Optional login role limited to this schema.
    pub user: Option<String>,
    /// Password of that role.
    pub password: Option<SecretSource>,
}

/// Login role of a `table` tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    /// Role name.
    pub user: String,
    /// Password of the role.
    pub password: Option<SecretSource>,
}

/// Redis key prefix of a tenant.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Key prefix; must end with `:`. Default: `<id>:`.
    pub prefix: Option<String>,
    /// Wrap the id in braces (`{<id>}:`) so all keys of the tenant hash to
    /// one Redis Cluster slot.
    pub hash_tag: Option<bool>,
    /// Whether a Redis ACL user limited to the prefix is created. Default:
    /// true when a password is given.
    pub acl_user: Option<bool>,
    /// ACL user name. Default: the tenant id.
    pub user: Option<String>,
    /// Password of the ACL user.
    pub password: Option<SecretSource>,
}

/// Where a secret comes from. A literal string works but is reported as a
/// warning, because spec files live in git.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretSource {
    /// The secret itself (discouraged).
    Literal(String),
    /// The name of an environment variable that holds the secret.
    Env {
        /// Environment variable name.
        env: String,
    },
    /// A file whose content (without its trailing newline) is the secret,
    /// relative to the spec file.
    File {
        /// Path of the file.
        file: String,
    },
}

/// Generates the JSON Schema of the spec format.
pub fn json_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<Spec>();
    let mut value = serde_json::to_value(schema).expect("a JSON Schema always serializes");
    forbid_null(&mut value);
    value
}

/// Removes `null` from every type, because an optional key is left out of
/// a spec file, never written as null (`name: null` is an error).
fn forbid_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|kind| kind != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            if let Some(Value::Array(options)) = map.get_mut("anyOf") {
                options.retain(|option| option.get("type").and_then(Value::as_str) != Some("null"));
                if options.len() == 1 {
                    let only = options.remove(0);
                    map.remove("anyOf");
                    if let Value::Object(inner) = only {
                        for (key, item) in inner {
                            map.entry(key).or_insert(item);
                        }
                    }
                }
            }
            for item in map.values_mut() {
                forbid_null(item);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_null),
        _ => {}
    }
}

/// Returns the JSON Schema as the pretty JSON text committed in the repository.
pub fn json_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&json_schema()).expect("JSON always serializes");
    text.push('\n');
    text
}
