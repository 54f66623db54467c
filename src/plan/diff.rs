//! Compares the desired state with the actual state and lists the actions
//! that make them match. Pure: no I/O.

use std::collections::HashSet;

use serde_json::json;

use super::action::{
    Action, PLAN_FORMAT_VERSION, Plan, PlanSource, TenantChange, TenantPlan, Undeclared,
};
use crate::apply::template;
use crate::spec::desired::{DatabaseTarget, Desired, DesiredTenant, RoleTarget};
use crate::spec::model::Isolation;
use crate::sql::scram_matches;
use crate::state::catalog::ServerCatalog;
use crate::state::registry::{self, STATUS_FAILED, STATUS_READY, TenantRecord};
use crate::state::{Actual, Servers, db, server_key};

/// Builds the non-secret configuration the registry keeps for a tenant.
pub fn tenant_config(
    tenant: &DesiredTenant,
    desired: &Desired,
    servers: &Servers,
) -> serde_json::Value {
    let mut config = serde_json::Map::new();
    if let Some(database) = &tenant.database {
        config.insert("database".into(), json!(database.name));
        config.insert("owner".into(), json!(database.owner));
        config.insert(
            "server".into(),
            json!(server_key(database, &servers.control_key)),
        );
    }
    if let Some(schema) = &tenant.schema {
        config.insert("schema".into(), json!(schema.name));
        if let Some(role) = &schema.role {
            config.insert("role".into(), json!(role.name));
        }
    }
    if tenant.isolation == Isolation::Table {
        if let Some(tables) = &desired.tables {
            config.insert("schema".into(), json!(tables.schema));
        }
        if let Some(role) = &tenant.role {
            config.insert("role".into(), json!(role.name));
        }
    }
    if let Some(cache) = &tenant.cache {
        config.insert("prefix".into(), json!(cache.prefix));
        if let Some(user) = &cache.acl_user {
            config.insert("acl_user".into(), json!(user.name));
        }
    }
    serde_json::Value::Object(config)
}

/// Inputs of the diff that are not part of either state.
pub struct DiffContext<'a> {
    pub desired: &'a Desired,
    pub actual: &'a Actual,
    pub servers: &'a Servers,
    pub source: PlanSource,
    /// Only these tenants, when not empty.
    pub only: &'a [String],
}

/// Builds the plan.
pub fn diff(context: DiffContext<'_>) -> Plan {
    let DiffContext {
        desired,
        actual,
        servers,
        source,
        only,
    } = context;
    let selected = |id: &str| only.is_empty() || only.iter().any(|wanted| wanted == id);
    let mut warnings = desired.warnings.clone();
    let mut tenants = Vec::new();
    for tenant in desired.tenants.iter().filter(|tenant| selected(&tenant.id)) {
        let record = actual.registry.tenants.get(&tenant.id);
        let mut planner = TenantPlanner {
            tenant,
            record,
            actual,
            servers,
            desired,
            actions: Vec::new(),
            notes: Vec::new(),
            blocked: false,
        };
        planner.plan();
        if !planner.actions.is_empty() || !planner.notes.is_empty() {
            tenants.push(TenantPlan {
                id: tenant.id.clone(),
                isolation: tenant.isolation,
                change: tenant_change(record, &planner.actions),
                stays_pending: planner.blocked,
                actions: planner.actions,
                notes: planner.notes,
                deferred: Vec::new(),
            });
        }
    }

    let declared: HashSet<&str> = desired
        .tenants
        .iter()
        .map(|tenant| tenant.id.as_str())
        .collect();
    let mut undeclared: Vec<Undeclared> = actual
        .registry
        .tenants
        .values()
        .filter(|record| !declared.contains(record.id.as_str()) && selected(&record.id))
        .map(|record| Undeclared {
            id: record.id.clone(),
            isolation: record.isolation.clone(),
        })
        .collect();
    undeclared.sort_by(|left, right| left.id.cmp(&right.id));

    if let Some(current) = &actual.control.current
        && current.verifies_passwords_warning()
        && desired.tenants.iter().any(has_password)
    {
        warnings.push(format!(
            "role {} cannot read pg_authid, so passwords changed outside tenantctl cannot be checked",
            current.name
        ));
    }
    let summary = Plan::summarize(&tenants);
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        source,
        tenants,
        undeclared,
        warnings,
        summary,
    }
}

/// Returns `Create` when the registry does not know the tenant, or when an
/// earlier apply failed before its schema or database existed.
fn tenant_change(record: Option<&TenantRecord>, actions: &[Action]) -> TenantChange {
    let creates_home = actions.iter().any(|action| {
        matches!(
            action,
            Action::CreateSchema { .. } | Action::CreateDatabase { .. }
        )
    });
    match record {
        None => TenantChange::Create,
        Some(record) if record.status != STATUS_READY && creates_home => TenantChange::Create,
        Some(_) => TenantChange::Update,
    }
}

fn has_password(tenant: &DesiredTenant) -> bool {
    tenant
        .database
        .as_ref()
        .is_some_and(|database| database.password.is_some())
        || tenant
            .schema
            .as_ref()
            .and_then(|schema| schema.role.as_ref())
            .is_some()
        || tenant.role.is_some()
}

impl crate::state::catalog::CurrentRole {
    fn verifies_passwords_warning(&self) -> bool {
        !self.reads_authid
    }
}

struct TenantPlanner<'a> {
    tenant: &'a DesiredTenant,
    record: Option<&'a TenantRecord>,
    actual: &'a Actual,
    servers: &'a Servers,
    desired: &'a Desired,
    actions: Vec<Action>,
    notes: Vec<String>,
    /// Set when the tenant's database or schema cannot exist yet, so its
    /// migrations cannot run.
    blocked: bool,
}

impl TenantPlanner<'_> {
    fn plan(&mut self) {
        match self.tenant.isolation {
            Isolation::Database => self.plan_database(),
            Isolation::Schema => self.plan_schema(),
            Isolation::Table | Isolation::Cache => {}
        }
        if !self.blocked {
            self.plan_migrations();
        }
        self.keep_template_with_migrations();
        self.plan_registry();
        if let Some(record) = self.record
            && record.status == STATUS_FAILED
        {
            let error = record
                .last_error
                .as_deref()
                .unwrap_or("no error was recorded");
            self.notes.push(format!("the last apply failed: {error}"));
        }
    }

    /// Returns the template a new database of this tenant is copied from:
    /// one that holds the tenant's migration set, when the spec asks for
    /// templates and apply runs the tenant's migrations.
    fn template(&self, database: &DatabaseTarget) -> Option<String> {
        if !database.template || !self.tenant.run_migrations {
            return None;
        }
        let set = self.tenant.migrations.as_ref()?;
        let control = db::database_name(&self.servers.control_url).ok()?;
        Some(template::name(&control, set))
    }

    /// Drops the template of a new database whose migrations do not run in
    /// this plan: the step that runs them also gives the copied objects to
    /// the tenant role.
    fn keep_template_with_migrations(&mut self) {
        let migrates = self
            .actions
            .iter()
            .any(|action| matches!(action, Action::RunMigrations { .. }));
        if migrates {
            return;
        }
        for action in &mut self.actions {
            if let Action::CreateDatabase { template, .. } = action {
                *template = None;
            }
        }
    }

    /// Returns whether an existing object (`kind:name`) is adopted rather
    /// than the tenant's own. Before the tenant is registered it always is.
    /// A `create = false` tenant never has objects of its own, so its objects
    /// are adopted until the registry lists them.
    fn adopts(&self, kind: &str, name: &str) -> bool {
        let Some(record) = self.record else {
            return true;
        };
        let never_creates = self
            .tenant
            .database
            .as_ref()
            .is_some_and(|database| !database.create);
        never_creates && !record.adopted.contains(&format!("{kind}:{name}"))
    }

    fn plan_role(&mut self, role: &RoleTarget, catalog: &ServerCatalog) {
        match catalog.roles.get(&role.name) {
            None => self.actions.push(Action::CreateRole {
                role: role.name.clone(),
            }),
            Some(_) => {
                if self.adopts("role", &role.name) {
                    self.actions.push(Action::AdoptRole {
                        role: role.name.clone(),
                    });
                }
                if let (Some(password), Some(verifiers)) = (&role.password, &catalog.verifiers) {
                    let matches = verifiers
                        .get(&role.name)
                        .and_then(|verifier| verifier.as_deref())
                        .is_some_and(|verifier| scram_matches(password, verifier));
                    if !matches {
                        self.actions.push(Action::SetPassword {
                            role: role.name.clone(),
                        });
                    }
                }
            }
        }
    }

    fn plan_database(&mut self) {
        let Some(database) = &self.tenant.database else {
            return;
        };
        let key = server_key(database, &self.servers.control_key);
        let catalog = match self.actual.servers.get(&key) {
            Some(Ok(catalog)) => catalog,
            Some(Err(error)) => {
                self.notes
                    .push(format!("server {key} cannot be read: {error}"));
                self.blocked = true;
                return;
            }
            None => return,
        };
        let exists = catalog.databases.get(&database.name);
        let missing = match (exists, catalog.roles.contains_key(&database.owner)) {
            (None, _) => Some(format!("database \"{}\"", database.name)),
            (Some(_), false) => Some(format!("role \"{}\"", database.owner)),
            (Some(_), true) => None,
        };
        if let (false, Some(missing)) = (database.create, missing) {
            self.notes.push(format!(
                "{missing} does not exist and create = false, so the tenant stays pending"
            ));
            self.blocked = true;
            return;
        }
        let role = RoleTarget {
            name: database.owner.clone(),
            password: database.password.clone(),
        };
        self.plan_role(&role, catalog);
        match exists {
            None => self.actions.push(Action::CreateDatabase {
                database: database.name.clone(),
                owner: database.owner.clone(),
                server: key.clone(),
                template: self.template(database),
            }),
            Some(info) => {
                if self.adopts("database", &database.name) {
                    self.actions.push(Action::AdoptDatabase {
                        database: database.name.clone(),
                        server: key.clone(),
                    });
                }
                if info.owner != database.owner {
                    self.notes.push(format!(
                        "database \"{}\" is owned by \"{}\", not \"{}\", so migrations cannot run as \"{}\" and the tenant stays pending; tenantctl does not change owners (ALTER DATABASE ... OWNER TO does)",
                        database.name, info.owner, database.owner, database.owner
                    ));
                    self.blocked = true;
                }
            }
        }
        if exists.is_none_or(|info| info.public_connect) {
            self.actions.push(Action::RestrictConnect {
                database: database.name.clone(),
                role: database.owner.clone(),
                server: key,
                repair: exists.is_some(),
            });
        }
    }

    fn plan_schema(&mut self) {
        let Some(schema) = &self.tenant.schema else {
            return;
        };
        let control = self.actual.servers.get(&self.servers.control_key);
        if let (Some(role), Some(Ok(catalog))) = (&schema.role, control) {
            self.plan_role(role, catalog);
        }
        let existing = self.actual.control.schemas.get(&schema.name);
        match existing {
            None => self.actions.push(Action::CreateSchema {
                schema: schema.name.clone(),
            }),
            Some(_) if self.adopts("schema", &schema.name) => {
                self.actions.push(Action::AdoptSchema {
                    schema: schema.name.clone(),
                })
            }
            Some(_) => {}
        }
        let role_name = schema.role.as_ref().map(|role| role.name.clone());
        let needs_restrict = match existing {
            None => true,
            Some(info) => {
                info.public_access
                    || self.record.is_none_or(|record| {
                        record.config.get("role").and_then(|v| v.as_str()) != role_name.as_deref()
                    })
            }
        };
        if needs_restrict {
            self.actions.push(Action::RestrictSchema {
                schema: schema.name.clone(),
                role: role_name,
                repair: existing.is_some(),
            });
        }
    }

    fn plan_migrations(&mut self) {
        let Some(set) = &self.tenant.migrations else {
            return;
        };
        if !self.tenant.run_migrations {
            return;
        }
        let applied: Vec<(String, String)> = match self.actual.applied_details.get(&self.tenant.id)
        {
            Some(list) => list.clone(),
            None => match self.actual.registry.applied.get(&self.tenant.id) {
                // The summary matched the whole set: nothing is pending.
                Some(_) if !self.actual.applied_details.contains_key(&self.tenant.id) => set
                    .migrations
                    .iter()
                    .map(|m| (m.version.clone(), m.checksum.clone()))
                    .collect(),
                _ => Vec::new(),
            },
        };
        let applied_versions: HashSet<&str> = applied
            .iter()
            .map(|(version, _)| version.as_str())
            .collect();
        for (version, checksum) in &applied {
            match set.get(version) {
                Some(migration) if &migration.checksum != checksum => self.notes.push(format!(
                    "migration {version} was changed after it was applied ({}); it is not run again",
                    migration.path.join("up.sql").display()
                )),
                None => self.notes.push(format!(
                    "migration {version} is recorded as applied but is missing from {}",
                    set.dir.display()
                )),
                _ => {}
            }
        }
        let pending: Vec<String> = set
            .migrations
            .iter()
            .filter(|migration| !applied_versions.contains(migration.version.as_str()))
            .map(|migration| migration.name.clone())
            .collect();
        if !pending.is_empty() {
            self.actions.push(Action::RunMigrations {
                migrations: pending,
            });
        }
    }

    fn plan_registry(&mut self) {
        let config = tenant_config(self.tenant, self.desired, self.servers);
        match self.record {
            None => {
                self.actions.push(Action::Register {
                    name: self.tenant.name.clone(),
                });
            }
            Some(record) => {
                if record.name != self.tenant.name {
                    self.actions.push(Action::UpdateName {
                        from: record.name.clone(),
                        to: self.tenant.name.clone(),
                    });
                }
                let changes = config_changes(&record.config, &config);
                if !changes.is_empty() {
                    self.actions.push(Action::UpdateConfig { changes });
                }
                if record.deletion_protection != self.tenant.deletion_protection {
                    self.actions.push(Action::UpdateProtection {
                        to: self.tenant.deletion_protection,
                    });
                }
                if record.status != STATUS_READY && self.actions.is_empty() && self.notes.is_empty()
                {
                    self.actions.push(Action::MarkReady {
                        from: record.status.clone(),
                    });
                }
            }
        }
    }
}

/// Lists `key: old -> new` for every configuration key that differs.
fn config_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let old = old.as_object().unwrap_or(&empty);
    let new = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| old.get(*key) != new.get(*key))
        .map(|key| {
            let show = |value: Option<&serde_json::Value>| {
                value
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "(none)".into())
            };
            format!("{key}: {} -> {}", show(old.get(key)), show(new.get(key)))
        })
        .collect()
}

/// Returns the `version:checksum` digest of a whole migration set.
pub fn set_digest(set: &crate::migrations::MigrationSet) -> String {
    registry::applied_digest(
        set.migrations
            .iter()
            .map(|m| (m.version.as_str(), m.checksum.as_str())),
    )
}
