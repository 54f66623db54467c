//! Turns a loaded document into the desired state: JSON Schema first, then
//! typing, then the rules a schema cannot say (names, collisions, folders,
//! secrets).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::desired::{
    CacheTarget, DatabaseTarget, Desired, DesiredTenant, MissingValue, RoleTarget, SchemaTarget,
    TablesTarget, missing_error,
};
use super::error::{SpecError, SpecErrors};
use super::load::{Document, Format, escape_pointer};
use super::model::{Isolation, SPEC_VERSION, SecretSource, Spec, Tenant, json_schema};
use crate::migrations::{MigrationError, MigrationSet};

/// Longest PostgreSQL identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The Redis user that connections without a user name log in as.
const REDIS_DEFAULT_USER: &str = "default";

/// Names no tenant object may take.
const RESERVED_NAMES: &[&str] = &["public", "information_schema", "tenantctl"];

/// Checks a tenant id or an object name: a lowercase ASCII letter, then
/// lowercase letters, digits and `_`, at most 63 bytes, and not reserved.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return Err(format!(
            "it is {} bytes long, more than {MAX_IDENTIFIER_BYTES}",
            name.len()
        ));
    }
    let first = name.chars().next().unwrap_or_default();
    if !first.is_ascii_lowercase() {
        return Err("it must start with a lowercase ASCII letter (a-z)".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "it contains {bad:?}; only lowercase ASCII letters, digits and `_` are allowed"
        ));
    }
    if RESERVED_NAMES.contains(&name) || name.starts_with("pg_") {
        return Err("it is reserved by PostgreSQL or tenantctl".into());
    }
    Ok(())
}

/// Checks a tenant's display name: any text without control characters,
/// which would garble the plan on a terminal, and which PostgreSQL cannot
/// store when it is NUL.
pub fn check_display_name(name: &str) -> Result<(), String> {
    match name.chars().find(|c| c.is_control()) {
        Some(bad) => Err(format!(
            "it contains the control character {bad:?}; names are shown in plans and stored in the registry"
        )),
        None => Ok(()),
    }
}

fn schema_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&json_schema()).expect("the generated JSON Schema is valid")
    })
}

/// Options that change what validation asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOptions {
    /// Report unresolved secrets and missing names as errors, instead of
    /// returning them in [`Desired::missing`] for interactive fill-in.
    pub missing_is_error: bool,
}

/// Validates a document and builds the desired state.
pub fn validate(document: &Document, options: ValidateOptions) -> Result<Desired, SpecErrors> {
    let mut errors = Vec::new();
    check_schema(document, &mut errors);
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    let spec: Spec = match serde_path_to_error::deserialize(&document.value) {
        Ok(spec) => spec,
        Err(error) => {
            let pointer = path_to_pointer(error.path());
            let message = error.into_inner().to_string();
            return Err(document
                .error_at(&pointer, format!("invalid value: {message}"))
                .into());
        }
    };
    let mut builder = Builder::new(document);
    let desired = builder.build(&spec);
    errors.extend(builder.errors);
    errors.sort_by_key(|error| error.position.map(|p| (p.line, p.column)));
    if options.missing_is_error && !desired.missing.is_empty() {
        errors.push(missing_error(&desired.missing));
    }
    if errors.is_empty() {
        Ok(desired)
    } else {
        Err(SpecErrors(errors))
    }
}

fn path_to_pointer(path: &serde_path_to_error::Path) -> String {
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            serde_path_to_error::Segment::Map { key } => {
                pointer.push('/');
                pointer.push_str(&escape_pointer(key));
            }
            _ => {}
        }
    }
    pointer
}

fn check_schema(document: &Document, errors: &mut Vec<SpecError>) {
    if let Some(version) = document.value.get("version")
        && version.as_u64() != Some(u64::from(SPEC_VERSION))
    {
        errors.push(
            document
                .error_at("/version", format!("unsupported spec version {version}"))
                .with_hint(format!("this tenantctl reads version = {SPEC_VERSION}")),
        );
        return;
    }
    if document.value.is_null() {
        let start = match document.format {
            Format::Toml => format!("version = {SPEC_VERSION} and a [[tenants]] table"),
            Format::Yaml => format!("version: {SPEC_VERSION} and a tenants: list"),
        };
        errors.push(
            SpecError::plain(&document.origin, "the spec file is empty")
                .with_hint(format!("start it with {start}")),
        );
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut found = Vec::new();
    for error in schema_validator().iter_errors(&document.value) {
        let pointer = error.instance_path().to_string();
        let spec_error = describe_schema_error(document, &pointer, &error);
        if seen.insert(spec_error.to_string()) {
            found.push(spec_error);
        }
    }
    found.sort_by_key(|error| error.position.map(|p| (p.line, p.column)));
    errors.extend(found);
}

fn describe_schema_error(
    document: &Document,
    pointer: &str,
    error: &jsonschema::ValidationError<'_>,
) -> SpecError {
    use jsonschema::error::ValidationErrorKind as Kind;

    let field = pointer.rsplit('/').next().unwrap_or_default();
    let value = error.instance();
    if field == "isolation" && value.is_string() {
        let options: Vec<&str> = Isolation::ALL.iter().map(|kind| kind.as_str()).collect();
        return document
            .error_at(pointer, "Invalid isolation type")
            .with_note(format!("  {} = {value}", describe_pointer(pointer)))
            .with_note(format!("Valid options: {}", options.join(", ")));
    }
    match error.kind() {
        Kind::AdditionalProperties { unexpected } => {
            let key = unexpected.first().cloned().unwrap_or_default();
            let known = known_keys(&error.schema_path().to_string());
            let key_pointer = format!("{pointer}/{}", escape_pointer(&key));
            let mut spec_error = document.error_at(
                &key_pointer,
                format!("unknown key `{key}` in {}", describe_pointer(pointer)),
            );
            if let Some(suggestion) = closest(&key, &known) {
                spec_error = spec_error.with_hint(format!("did you mean `{suggestion}`?"));
            } else if !known.is_empty() {
                spec_error = spec_error.with_hint(format!("known keys: {}", known.join(", ")));
            }
            spec_error
        }
        Kind::Required { property } => document.error_at(
            pointer,
            format!(
                "missing required key `{}` in {}",
                property.as_str().unwrap_or_default(),
                describe_pointer(pointer)
            ),
        ),
        kind => document.error_at(
            pointer,
            format!(
                "invalid value {} for {}: {}",
                short(value),
                describe_pointer(pointer),
                expectation(kind, field).unwrap_or_else(|| error.to_string())
            ),
        ),
    }
}

/// Says what a value should have been, for the common schema errors.
fn expectation(kind: &jsonschema::error::ValidationErrorKind, field: &str) -> Option<String> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as Kind};
    match kind {
        Kind::Type {
            kind: TypeKind::Single(expected),
        } => Some(format!("expected {}", article(&expected.to_string()))),
        Kind::Maximum { limit } => Some(format!("the largest allowed value is {limit}")),
        Kind::Minimum { limit } => Some(format!("the smallest allowed value is {limit}")),
        Kind::AnyOf { .. } if matches!(field, "password" | "admin_url" | "url") => {
            Some("expected { env = \"NAME\" }, { file = \"PATH\" } or a string".to_string())
        }
        _ => None,
    }
}

fn article(kind: &str) -> String {
    match kind {
        "integer" | "object" | "array" => format!("an {kind}"),
        "null" => kind.to_string(),
        _ => format!("a {kind}"),
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// Describes a JSON pointer as a spec path such as `tenants[2].database.port`.
pub fn describe_pointer(pointer: &str) -> String {
    let mut text = String::new();
    for segment in pointer.split('/').skip(1) {
        if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
            text.push_str(&format!("[{segment}]"));
        } else {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    if text.is_empty() {
        "the top level".to_string()
    } else {
        text
    }
}

/// Finds the keys allowed where an `additionalProperties` error was raised,
/// by walking the schema path and following `$ref`s.
fn known_keys(schema_path: &str) -> Vec<String> {
    let schema = json_schema();
    let mut node = &schema;
    let segments: Vec<&str> = schema_path.split('/').skip(1).collect();
    let Some((_, parents)) = segments.split_last() else {
        return Vec::new();
    };
    for segment in parents {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if segment == "$ref" {
            let Some(target) = node.get("$ref").and_then(Value::as_str) else {
                return Vec::new();
            };
            let Some(found) = schema.pointer(target.trim_start_matches('#')) else {
                return Vec::new();
            };
            node = found;
            continue;
        }
        let next = match node {
            Value::Object(map) => map.get(&segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(found) => node = found,
            None => return Vec::new(),
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

fn closest(key: &str, known: &[String]) -> Option<String> {
    known
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.clone())
}

/// Which tenant and field first claimed a name.
struct Claim {
    tenant: String,
    what: String,
    pointer: String,
}

struct Builder<'a> {
    document: &'a Document,
    errors: Vec<SpecError>,
    missing: Vec<MissingValue>,
    warnings: Vec<String>,
    migration_sets: HashMap<PathBuf, Option<Arc<MigrationSet>>>,
    /// Cluster-wide names: roles, databases, and (in the control database)
    /// schemas, keyed by namespace and name.
    claims: HashMap<(&'static str, String), Claim>,
    /// Pointers already reported as colliding, so one name gets one error.
    collided: std::collections::HashSet<String>,
}

impl<'a> Builder<'a> {
    fn new(document: &'a Document) -> Builder<'a> {
        Builder {
            document,
            errors: Vec::new(),
            missing: Vec::new(),
            warnings: Vec::new(),
            migration_sets: HashMap::new(),
            claims: HashMap::new(),
            collided: std::collections::HashSet::new(),
        }
    }

    fn error(&mut self, pointer: &str, message: impl Into<String>) -> &mut SpecError {
        self.errors.push(self.document.error_at(pointer, message));
        self.errors.last_mut().expect("just pushed")
    }

    fn build(&mut self, spec: &Spec) -> Desired {
        let tables = spec.tables.as_ref().map(|tables| self.build_tables(tables));
        if let Some(tables) = &tables {
            self.claim(
                "schema",
                &tables.schema,
                "(shared tables)",
                "the shared tables schema",
                "/tables/schema",
            );
        }
        for (host, server) in &spec.servers {
            self.note_url(
                &server.admin_url,
                &format!("/servers/{}/admin_url", escape_pointer(host)),
            );
        }
        if let Some(url) = spec.redis.as_ref().and_then(|redis| redis.url.as_ref()) {
            self.note_url(url, "/redis/url");
        }

        let mut ids: HashMap<String, String> = HashMap::new();
        let mut tenants = Vec::with_capacity(spec.tenants.len());
        for (index, tenant) in spec.tenants.iter().enumerate() {
            let pointer = format!("/tenants/{index}");
            let id_pointer = format!("{pointer}/id");
            if let Err(reason) = check_name(&tenant.id) {
                self.error(
                    &id_pointer,
                    format!("invalid tenant id {:?}: {reason}", tenant.id),
                );
                continue;
            }
            if let Some(first) = ids.insert(tenant.id.to_lowercase(), id_pointer.clone()) {
                let first_line = self.document.position(&first).line;
                self.error(&id_pointer, format!("duplicate tenant id {:?}", tenant.id))
                    .notes
                    .push(format!(
                        "  hint: it is first declared on line {first_line}; ids must be unique"
                    ));
                continue;
            }
            if let Some(desired) = self.build_tenant(spec, tenant, &pointer, tables.is_some()) {
                tenants.push(desired);
            }
        }
        self.check_prefixes(&tenants);

        Desired {
            origin: self.document.origin.clone(),
            base_dir: self.document.base_dir.clone(),
            path: self.document.path.clone(),
            control_url: spec.control.database_url.clone(),
            servers: spec
                .servers
                .iter()
                .map(|(host, server)| (host.clone(), server.admin_url.clone()))
                .collect::<BTreeMap<_, _>>(),
            redis_url: spec.redis.as_ref().and_then(|redis| redis.url.clone()),
            tables,
            tenants,
            missing: std::mem::take(&mut self.missing),
            warnings: std::mem::take(&mut self.warnings),
            index: OnceLock::new(),
        }
    }

    fn build_tables(&mut self, tables: &super::model::Tables) -> TablesTarget {
        let schema = tables
            .schema
            .clone()
            .unwrap_or_else(|| "public".to_string());
        if schema != "public"
            && let Err(reason) = check_name(&schema)
        {
            self.error(
                "/tables/schema",
                format!("invalid schema name {schema:?}: {reason}"),
            );
        }
        let column = tables
            .column
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT_COLUMN.to_string());
        if let Err(reason) = check_name(&column) {
            self.error(
                "/tables/column",
                format!("invalid column name {column:?}: {reason}"),
            );
        }
        let setting = tables
            .setting
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT_SETTING.to_string());
        let valid_setting = setting
            .split_once('.')
            .is_some_and(|(prefix, name)| check_name(prefix).is_ok() && check_name(name).is_ok());
        if !valid_setting {
            self.error(
                "/tables/setting",
                format!("invalid setting name {setting:?}"),
            )
            .notes
            .push("  hint: a custom setting has two parts, such as app.tenant_id".to_string());
        }
        let migrations = tables
            .migrations
            .as_ref()
            .and_then(|folder| self.migration_set(folder, "/tables/migrations"));
        TablesTarget {
            schema,
            column,
            setting,
            migrations,
        }
    }

    fn build_tenant(
        &mut self,
        spec: &Spec,
        tenant: &Tenant,
        pointer: &str,
        has_tables: bool,
    ) -> Option<DesiredTenant> {
        let id = tenant.id.clone();
        let isolation = match tenant.isolation.or(spec.defaults.isolation) {
            Some(isolation) => isolation,
            None => {
                self.error(&format!("{pointer}/id"), format!("tenant {id:?} has no isolation type"))
                    .notes
                    .push("  hint: set isolation = \"database\", \"schema\", \"table\" or \"cache\" on the tenant or in [defaults]".to_string());
                return None;
            }
        };
        let name = match &tenant.name {
            Some(name) if !name.trim().is_empty() => {
                if let Err(reason) = check_display_name(name) {
                    let message = format!("invalid tenant name {name:?}: {reason}");
                    self.error(&format!("{pointer}/name"), message);
                }
                name.clone()
            }
            _ => {
                self.missing.push(MissingValue::new(
                    self.document,
                    &id,
                    pointer,
                    "name",
                    "Enter tenant name",
                ));
                String::new()
            }
        };
        self.check_sections(tenant, isolation, pointer);
        self.claim("name", &id, &id, "tenant id", &format!("{pointer}/id"));

        let run_migrations = tenant
            .run_migrations
            .or(spec.defaults.run_migrations)
            .unwrap_or(true);
        let migrations = match isolation {
            Isolation::Database | Isolation::Schema => tenant
                .migrations
                .as_ref()
                .map(|folder| (folder, format!("{pointer}/migrations")))
                .or_else(|| {
                    spec.defaults
                        .migrations
                        .as_ref()
                        .map(|f| (f, "/defaults/migrations".to_string()))
                })
                .and_then(|(folder, at)| self.migration_set(folder, &at)),
            Isolation::Table | Isolation::Cache => None,
        };
        if isolation == Isolation::Table && !has_tables {
            self.error(
                &format!("{pointer}/isolation"),
                format!("table tenant {id:?} needs a [tables] section"),
            )
            .notes
            .push("  hint: add [tables] with the shared schema and migrations".to_string());
        }

        let database =
            (isolation == Isolation::Database).then(|| self.build_database(spec, tenant, pointer));
        let schema = (isolation == Isolation::Schema).then(|| self.build_schema(tenant, pointer));
        let role = tenant.role.as_ref().map(|role| {
            let at = format!("{pointer}/role");
            self.build_role(&id, &role.user, role.password.as_ref(), &at, "role")
        });
        let cache = match (isolation, &tenant.cache) {
            (Isolation::Cache, section) => Some(self.build_cache(&id, section.as_ref(), pointer)),
            (_, Some(section)) => Some(self.build_cache(&id, Some(section), pointer)),
            (_, None) => None,
        };

        Some(DesiredTenant {
            id,
            name,
            isolation,
            pointer: pointer.to_string(),
            line: self.document.position(pointer).line,
            migrations,
            run_migrations,
            deletion_protection: tenant.deletion_protection.unwrap_or(false),
            database,
            schema,
            role: role.flatten(),
            cache,
        })
    }

    fn check_sections(&mut self, tenant: &Tenant, isolation: Isolation, pointer: &str) {
        let misplaced = [
            (
                "database",
                tenant.database.is_some() && isolation != Isolation::Database,
                "database",
            ),
            (
                "schema",
                tenant.schema.is_some() && isolation != Isolation::Schema,
                "schema",
            ),
            (
                "role",
                tenant.role.is_some() && isolation != Isolation::Table,
                "table",
            ),
        ];
        for (section, is_misplaced, owner) in misplaced {
            if is_misplaced {
                self.error(
                    &format!("{pointer}/{section}"),
                    format!("[{section}] applies only to {owner} tenants, and tenant {:?} is a {isolation} tenant", tenant.id),
                );
            }
        }
    }

    fn build_database(&mut self, spec: &Spec, tenant: &Tenant, pointer: &str) -> DatabaseTarget {
        let section = tenant.database.clone().unwrap_or_default();
        let at = format!("{pointer}/database");
        let name = section.name.clone().unwrap_or_else(|| tenant.id.clone());
        self.check_object_name(&name, "database name", &format!("{at}/name"));
        self.claim(
            "database",
            &name,
            &tenant.id,
            "database",
            &format!("{at}/name"),
        );
        if name != tenant.id {
            self.claim(
                "name",
                &name,
                &tenant.id,
                "database name",
                &format!("{at}/name"),
            );
        }
        let owner = match &section.user {
            Some(user) => {
                self.check_object_name(user, "role name", &format!("{at}/user"));
                self.claim(
                    "role",
                    user,
                    &tenant.id,
                    "database user",
                    &format!("{at}/user"),
                );
                user.clone()
            }
            None => {
                self.missing.push(MissingValue::new(
                    self.document,
                    &tenant.id,
                    &at,
                    "database.user",
                    "Enter database user",
                ));
                String::new()
            }
        };
        let create = section.create.unwrap_or(true);
        let password = self.resolve_password(
            &tenant.id,
            section.password.as_ref(),
            &format!("{at}/password"),
            "database.password",
            "Enter database password",
            create,
        );
        if let Some(host) = &section.host
            && let Err(reason) = check_host(host)
        {
            self.error(
                &format!("{at}/host"),
                format!("invalid host {host:?}: {reason}"),
            );
        }
        DatabaseTarget {
            name,
            owner,
            password,
            password_source: section.password.clone(),
            host: section.host.clone(),
            port: section.port,
            create,
            template: section.template.or(spec.defaults.template).unwrap_or(false),
        }
    }

    fn build_schema(&mut self, tenant: &Tenant, pointer: &str) -> SchemaTarget {
        let section = tenant.schema.clone().unwrap_or_default();
        let at = format!("{pointer}/schema");
        let name = section.name.clone().unwrap_or_else(|| tenant.id.clone());
        self.check_object_name(&name, "schema name", &format!("{at}/name"));
        self.claim("schema", &name, &tenant.id, "schema", &format!("{at}/name"));
        if name != tenant.id {
            self.claim(
                "name",
                &name,
                &tenant.id,
                "schema name",
                &format!("{at}/name"),
            );
        }
        let role = match &section.user {
            Some(user) => {
                self.build_role(&tenant.id, user, section.password.as_ref(), &at, "schema")
            }
            None => {
                if section.password.is_some() {
                    self.error(
                        &format!("{at}/password"),
                        "a schema password needs a schema user",
                    );
                }
                None
            }
        };
        SchemaTarget { name, role }
    }

    fn build_role(
        &mut self,
        id: &str,
        user: &str,
        password: Option<&SecretSource>,
        at: &str,
        section: &str,
    ) -> Option<RoleTarget> {
        self.check_object_name(user, "role name", &format!("{at}/user"));
        self.claim(
            "role",
            user,
            id,
            &format!("{section} user"),
            &format!("{at}/user"),
        );
        let password = self.resolve_password(
            id,
            password,
            &format!("{at}/password"),
            &format!("{section}.password"),
            &format!("Enter {section} role password"),
            true,
        );
        Some(RoleTarget {
            name: user.to_string(),
            password,
        })
    }

    fn build_cache(
        &mut self,
        id: &str,
        section: Option<&super::model::CacheSection>,
        pointer: &str,
    ) -> CacheTarget {
        let section = section.cloned().unwrap_or_default();
        let at = format!("{pointer}/cache");
        let prefix = match (&section.prefix, section.hash_tag.unwrap_or(false)) {
            (Some(prefix), _) => prefix.clone(),
            (None, true) => format!("{{{id}}}:"),
            (None, false) => format!("{id}:"),
        };
        if let Err(reason) = check_prefix(&prefix) {
            self.error(
                &format!("{at}/prefix"),
                format!("invalid cache prefix {prefix:?}: {reason}"),
            );
        }
        let wants_user = section.acl_user.unwrap_or(section.password.is_some());
        let acl_user = if wants_user {
            let user = section.user.clone().unwrap_or_else(|| id.to_string());
            self.check_object_name(&user, "ACL user name", &format!("{at}/user"));
            if user == REDIS_DEFAULT_USER {
                self.error(
                    &format!("{at}/user"),
                    "invalid ACL user name \"default\": it is Redis's own user, which clients use when they give no user name",
                );
            }
            self.claim("redis user", &user, id, "ACL user", &format!("{at}/user"));
            let password = self.resolve_password(
                id,
                section.password.as_ref(),
                &format!("{at}/password"),
                "cache.password",
                "Enter cache password",
                true,
            );
            Some(RoleTarget {
                name: user,
                password,
            })
        } else {
            None
        };
        CacheTarget {
            prefix,
            acl_user,
            pointer: format!("{at}/prefix"),
        }
    }

    fn check_prefixes(&mut self, tenants: &[DesiredTenant]) {
        let mut prefixes: Vec<(&str, &DesiredTenant)> = tenants
            .iter()
            .filter_map(|tenant| {
                tenant
                    .cache
                    .as_ref()
                    .map(|cache| (cache.prefix.as_str(), tenant))
            })
            .collect();
        prefixes.sort_by(|left, right| left.0.cmp(right.0));
        // After sorting, a prefix of another sorts directly before some string
        // it prefixes, so checking neighbours finds every overlap.
        let mut errors = Vec::new();
        for pair in prefixes.windows(2) {
            let ((first, first_tenant), (second, second_tenant)) = (pair[0], pair[1]);
            if second.starts_with(first) {
                let pointer = &second_tenant.cache.as_ref().expect("has cache").pointer;
                errors.push(self.document.error_at(
                    pointer,
                    format!(
                        "cache prefix {second:?} of tenant {:?} starts with prefix {first:?} of tenant {:?}",
                        second_tenant.id, first_tenant.id
                    ),
                ).with_hint("give each tenant a prefix that no other prefix starts with"));
            }
        }
        for (prefix, tenant) in &prefixes {
            let bare = prefix
                .trim_end_matches(':')
                .trim_start_matches('{')
                .trim_end_matches('}');
            if let Some(claim) = self.claims.get(&("name", bare.to_string()))
                && claim.tenant != tenant.id
            {
                let pointer = &tenant.cache.as_ref().expect("has cache").pointer;
                errors.push(self.document.error_at(
                    pointer,
                    format!(
                        "cache prefix {prefix:?} of tenant {:?} names the {} {bare:?} of tenant {:?}",
                        tenant.id, claim.what, claim.tenant
                    ),
                ));
            }
        }
        self.errors.extend(errors);
    }

    fn check_object_name(&mut self, name: &str, what: &str, pointer: &str) {
        if let Err(reason) = check_name(name) {
            self.error(pointer, format!("invalid {what} {name:?}: {reason}"));
        }
    }

    /// Records that `tenant` uses `name` in `namespace`; reports a collision
    /// with another tenant's use of it.
    fn claim(
        &mut self,
        namespace: &'static str,
        name: &str,
        tenant: &str,
        what: &str,
        pointer: &str,
    ) {
        if name.is_empty() {
            return;
        }
        let key = (namespace, name.to_string());
        match self.claims.get(&key) {
            Some(claim) if claim.tenant != tenant && !self.collided.contains(pointer) => {
                self.collided.insert(pointer.to_string());
                let line = self.document.position(&claim.pointer).line;
                let message = format!(
                    "{what} {name:?} of tenant {tenant:?} is already used as the {} of tenant {:?} (line {line})",
                    claim.what, claim.tenant
                );
                self.error(pointer, message);
            }
            Some(_) => {}
            None => {
                self.claims.insert(
                    key,
                    Claim {
                        tenant: tenant.to_string(),
                        what: what.to_string(),
                        pointer: pointer.to_string(),
                    },
                );
            }
        }
    }

    fn resolve_password(
        &mut self,
        id: &str,
        source: Option<&SecretSource>,
        pointer: &str,
        field: &str,
        prompt: &str,
        required: bool,
    ) -> Option<crate::spec::secret::Secret> {
        let Some(source) = source else {
            if required {
                self.missing
                    .push(MissingValue::new(self.document, id, pointer, field, prompt).secret());
            }
            return None;
        };
        let errors_before = self.errors.len();
        self.note_literal(source, pointer);
        if self.errors.len() > errors_before {
            return None;
        }
        match source.resolve(&self.document.base_dir) {
            Ok(secret) => Some(secret),
            Err(problem) => {
                self.missing.push(
                    MissingValue::new(self.document, id, pointer, field, prompt)
                        .secret()
                        .because(problem.to_string()),
                );
                None
            }
        }
    }

    /// Checks a server URL like a secret, except that a URL written in the
    /// spec without a password is no secret and gets no warning.
    fn note_url(&mut self, source: &SecretSource, pointer: &str) {
        let plain = match source {
            SecretSource::Literal(text) => url::Url::parse(text).is_ok_and(|url| {
                url.password().is_none() && !url.query_pairs().any(|(key, _)| key == "password")
            }),
            _ => false,
        };
        if !plain {
            self.note_literal(source, pointer);
        }
    }

    /// Warns about a literal secret, and reports an `env` or `file`
    /// reference that cannot name anything.
    fn note_literal(&mut self, source: &SecretSource, pointer: &str) {
        match source {
            SecretSource::Env { env } if !is_env_name(env) => {
                self.error(
                    &format!("{pointer}/env"),
                    format!("invalid environment variable name {env:?}"),
                )
                .notes
                .push("  hint: use letters, digits and `_`, not starting with a digit, such as ACME_DB_PASSWORD".to_string());
            }
            SecretSource::File { file } if file.trim().is_empty() => {
                self.error(
                    &format!("{pointer}/file"),
                    "invalid secret file path \"\": it is empty",
                );
            }
            _ => {}
        }
        if source.is_literal() {
            let position = self.document.position(pointer);
            self.warnings.push(format!(
                "{}:{}:{}: {} is a literal secret in the spec file; use {{ env = \"NAME\" }} or {{ file = \"PATH\" }}",
                self.document.origin,
                position.line,
                position.column,
                describe_pointer(pointer)
            ));
        }
    }

    fn migration_set(&mut self, folder: &str, pointer: &str) -> Option<Arc<MigrationSet>> {
        let dir = resolve_path(&self.document.base_dir, folder);
        if let Some(cached) = self.migration_sets.get(&dir) {
            return cached.clone();
        }
        let loaded = match MigrationSet::load(&dir) {
            Ok(set) => Some(Arc::new(set)),
            Err(error) => {
                let hint = match error {
                    MigrationError::Missing(_) => {
                        "paths are relative to the folder of the spec file"
                    }
                    _ => "fix the migration folder and run again",
                };
                self.error(pointer, error.to_string())
                    .notes
                    .push(format!("  hint: {hint}"));
                None
            }
        };
        self.migration_sets.insert(dir, loaded.clone());
        loaded
    }
}

/// Checks a database host name: not empty, and free of the characters that
/// would change the meaning of a connection URL.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("it is empty".into());
    }
    if let Some(bad) = host
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '/' | '@' | '?' | '#'))
    {
        return Err(format!("it contains {bad:?}"));
    }
    Ok(())
}

/// Column of the shared tables that carries the tenant id, unless
/// `[tables] column` names another.
pub const DEFAULT_TENANT_COLUMN: &str = "tenant_id";

/// Setting that carries the current tenant id, unless `[tables] setting`
/// names another.
pub const DEFAULT_TENANT_SETTING: &str = "app.tenant_id";

/// Checks a Redis key prefix: it ends with `:` and contains no glob
/// characters, spaces or control characters, so it can be used in ACL key
/// patterns and `SCAN MATCH` as it is.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.ends_with(':') {
        return Err("it must end with `:`".into());
    }
    if prefix.len() < 2 {
        return Err("it is empty".into());
    }
    if prefix.len() > 128 {
        return Err("it is longer than 128 bytes".into());
    }
    if let Some(bad) = prefix.chars().find(|c| {
        matches!(
            c,
            '*' | '?' | '[' | ']' | '\\' | '"' | '\'' | '%' | '~' | '&'
        ) || c.is_whitespace()
            || c.is_control()
    }) {
        return Err(format!(
            "it contains {bad:?}, which Redis ACL patterns or SCAN MATCH would read as special"
        ));
    }
    Ok(())
}

/// Whether a string is a portable environment variable name.
fn is_env_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves a spec-relative path.
pub fn resolve_path(base_dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accepted_and_rejected() {
        assert!(check_name("acme").is_ok());
        assert!(check_name("acme_2").is_ok());
        // tests/hostile_input.rs runs the whole list through the binary.
        for bad in ["Acme", "a;drop", "", "public", "pg_temp", "tenantctl"] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(check_name(&"a".repeat(63)).is_ok());
        assert!(check_name(&"a".repeat(64)).is_err());
        assert!(check_name(&"é".repeat(32)).is_err());
    }

    #[test]
    fn tenant_names_with_control_characters_rejected() {
        for (name, shown) in [("A\\u0000B", "'\\0'"), ("\\u001b[31mRed", "'\\u{1b}'")] {
            let text = format!(
                "version = 1\n[[tenants]]\nid = \"acme\"\nname = \"{name}\"\nisolation = \"schema\"\n"
            );
            let document = crate::spec::load::parse_bytes(
                "t.toml",
                None,
                ".".into(),
                crate::spec::load::Format::Toml,
                text.into_bytes(),
            )
            .expect("the spec parses");
            let options = ValidateOptions {
                missing_is_error: true,
            };
            let errors = validate(&document, options).expect_err("the name was accepted");
            let message = errors.to_string();
            assert!(message.contains("invalid tenant name"), "{message}");
            assert!(message.contains(shown), "{message}");
            assert!(message.contains("t.toml:4:1"), "{message}");
        }
        assert!(check_display_name("Créé \"quoted\" 'x'").is_ok());
    }

    fn validate_toml(text: &str) -> Result<Desired, SpecErrors> {
        let document = crate::spec::load::parse_bytes(
            "t.toml",
            None,
            ".".into(),
            crate::spec::load::Format::Toml,
            text.as_bytes().to_vec(),
        )
        .expect("the spec parses");
        validate(
            &document,
            ValidateOptions {
                missing_is_error: true,
            },
        )
    }

    #[test]
    fn redis_default_user_rejected() {
        let text = "version = 1\n[[tenants]]\nid = \"acme\"\nname = \"A\"\nisolation = \"cache\"\n\
                    [tenants.cache]\nuser = \"default\"\npassword = { file = \"/dev/null\" }\n";
        let message = validate_toml(text)
            .expect_err("the default user was accepted")
            .to_string();
        assert!(
            message.contains("invalid ACL user name \"default\""),
            "{message}"
        );
        assert!(message.contains("t.toml:7:1"), "{message}");
    }

    #[test]
    fn urls_warned_only_with_a_password() {
        let spec = |url: &str| {
            format!(
                "version = 1\n[redis]\nurl = \"{url}\"\n[[tenants]]\nid = \"acme\"\nname = \"A\"\nisolation = \"cache\"\n"
            )
        };
        let plain = validate_toml(&spec("redis://127.0.0.1:6379")).expect("valid");
        assert!(plain.warnings.is_empty(), "{:?}", plain.warnings);
        let secret = validate_toml(&spec("redis://admin:sekrit@127.0.0.1:6379")).expect("valid");
        assert!(
            secret
                .warnings
                .iter()
                .any(|warning| warning.contains("redis.url is a literal secret")),
            "{:?}",
            secret.warnings
        );
    }

    #[test]
    fn prefixes_checked() {
        assert!(check_prefix("acme:").is_ok());
        assert!(check_prefix("{acme}:").is_ok());
        assert!(check_prefix("acme").is_err());
        assert!(check_prefix("ac*me:").is_err());
        assert!(check_prefix(":").is_err());
    }

    #[test]
    fn env_names_checked() {
        assert!(is_env_name("ACME_DB_PASSWORD"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name(""));
        assert!(!is_env_name("A B"));
        assert!(!is_env_name("1A"));
    }

    #[test]
    fn pointer_described_as_path() {
        assert_eq!(
            describe_pointer("/tenants/2/database/port"),
            "tenants[2].database.port"
        );
    }
}
