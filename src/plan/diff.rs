//! Compares the desired state with the actual state and lists the actions
//! that make them match. Pure: no I/O.

use std::collections::HashSet;

use serde_json::json;

use super::action::{
    Action, PLAN_FORMAT_VERSION, Plan, PlanSource, SharedPlan, TenantChange, TenantPlan, Undeclared,
};
use super::claims::Claims;
use super::pending::Drift;
use super::privileges::{self, Rights};
use super::refresh::{self, DatabaseRecords};
use super::shared::{TableRoleCheck, plan_shared};
use crate::acl::DesiredUser;
use crate::apply::template;
use crate::spec::desired::{DatabaseTarget, Desired, DesiredTenant, RoleTarget};
use crate::spec::model::Isolation;
use crate::spec::validate::DEFAULT_TENANT_COLUMN;
use crate::sql::scram_matches;
use crate::state::catalog::{SchemaInfo, ServerCatalog};
use crate::state::registry::{self, STATUS_FAILED, STATUS_READY, TenantRecord};
use crate::state::tables::by_grantee;
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
    let shared = shared_section(desired, actual, servers, &selected);
    let shared_changes = shared.as_ref().is_some_and(|shared| {
        shared.actions.iter().any(|action| {
            matches!(
                action,
                Action::CreateSchema { .. } | Action::RunSharedMigrations { .. }
            )
        })
    });
    let claims = Claims::of(&actual.registry, &servers.control_key);
    let control_database = db::database_name(&servers.control_url).ok();
    let mut tenants = Vec::new();
    for tenant in desired.tenants.iter().filter(|tenant| selected(&tenant.id)) {
        let record = actual.registry.tenants.get(&tenant.id);
        let mut planner = TenantPlanner {
            tenant,
            record,
            actual,
            servers,
            desired,
            claims: &claims,
            control_database: control_database.as_deref(),
            shared_changes,
            actions: Vec::new(),
            notes: Vec::new(),
            blocked: false,
        };
        planner.plan();
        let errors = planner.check_privileges();
        if !planner.actions.is_empty() || !planner.notes.is_empty() || !errors.is_empty() {
            tenants.push(TenantPlan {
                id: tenant.id.clone(),
                isolation: tenant.isolation,
                change: tenant_change(record, &planner.actions),
                stays_pending: planner.blocked,
                actions: planner.actions,
                notes: planner.notes,
                errors,
                deferred: Vec::new(),
            });
        }
    }

    let declared: HashSet<&str> = desired
        .tenants
        .iter()
        .map(|tenant| tenant.id.as_str())
        .collect();
    let mut undeclared: Vec<Undeclared> = Vec::new();
    let mut removed: Vec<TenantPlan> = Vec::new();
    for record in actual.registry.tenants.values() {
        if declared.contains(record.id.as_str()) || !selected(&record.id) {
            continue;
        }
        if source.prune && !record.deletion_protection {
            let superusers = actual
                .registry
                .superusers
                .get(&record.id)
                .map_or(&[][..], Vec::as_slice);
            let context = super::removal::RemovalContext {
                control_key: &servers.control_key,
                column: desired
                    .tables
                    .as_ref()
                    .map_or(DEFAULT_TENANT_COLUMN, |tables| tables.column.as_str()),
                drop_adopted: source.drop_adopted,
            };
            removed.push(super::removal::tenant_plan(record, superusers, context));
            continue;
        }
        undeclared.push(Undeclared {
            id: record.id.clone(),
            isolation: record.isolation.clone(),
            protected: record.deletion_protection,
        });
    }
    undeclared.sort_by(|left, right| left.id.cmp(&right.id));
    removed.sort_by(|left, right| left.id.cmp(&right.id));
    tenants.extend(removed);

    if let Some(current) = &actual.control.current
        && current.verifies_passwords_warning()
        && desired.tenants.iter().any(has_password)
    {
        warnings.push(format!(
            "role {} cannot read pg_authid, so passwords changed outside tenantctl cannot be checked",
            current.name
        ));
    }
    warnings.extend(isolation_warnings(desired, actual, servers));
    let summary = Plan::summarize(shared.as_ref(), &tenants);
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        source,
        shared,
        tenants,
        undeclared,
        warnings,
        summary,
    }
}

/// Plans the shared tables when the spec has `[tables]` and the plan covers
/// a table tenant (every tenant when no `--tenant` filter is given).
fn shared_section(
    desired: &Desired,
    actual: &Actual,
    servers: &Servers,
    selected: &dyn Fn(&str) -> bool,
) -> Option<SharedPlan> {
    let (target, state) = (desired.tables.as_ref()?, actual.shared.as_ref()?);
    let wanted = desired
        .tenants
        .iter()
        .any(|tenant| tenant.isolation == Isolation::Table && selected(&tenant.id));
    let unfiltered = desired.tenants.iter().all(|tenant| selected(&tenant.id));
    if !wanted && !unfiltered {
        return None;
    }
    let mut plan = plan_shared(target, state);
    if let Some(Ok(server)) = actual.servers.get(&servers.control_key) {
        let rights = Rights::of(actual, servers, server, &servers.control_key);
        plan.errors = privileges::check(&plan.actions, &rights);
    }
    Some(plan)
}

/// Warns about server settings that defeat row-level security or Redis ACL
/// users.
fn isolation_warnings(desired: &Desired, actual: &Actual, servers: &Servers) -> Vec<String> {
    let mut warnings = Vec::new();
    if desired.tables.is_some()
        && let Some(current) = &actual.control.current
        && (current.superuser || current.bypass_rls)
    {
        let what = if current.superuser {
            "is a superuser"
        } else {
            "has BYPASSRLS"
        };
        warnings.push(format!(
            "tenantctl connects as role {}, which {what} and so skips every row-level security policy; connect applications as tenant roles or as a role without BYPASSRLS",
            current.name
        ));
    }
    if let (Some(Ok(state)), Some(target)) = (&actual.redis, &servers.redis)
        && state.default_user_open()
    {
        warnings.push(format!(
            "the default user of Redis server {} is on with nopass, so every client that reaches the server skips the tenants' ACL users; give it a password (ACL SETUSER default resetpass >PASSWORD) or turn it off",
            target.display
        ));
    }
    warnings
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
    claims: &'a Claims,
    /// Name of the control database, which names its template databases.
    control_database: Option<&'a str>,
    /// Whether the shared plan creates the shared schema or runs shared
    /// migrations, so table tenants' roles need their grants again.
    shared_changes: bool,
    actions: Vec<Action>,
    notes: Vec<String>,
    /// Set when the tenant's database or schema cannot exist yet, so its
    /// migrations cannot run.
    blocked: bool,
}

impl TenantPlanner<'_> {
    fn plan(&mut self) {
        let conflicts = self
            .claims
            .conflicts(self.tenant, &self.servers.control_key);
        if !conflicts.is_empty() {
            self.notes.extend(conflicts);
            self.blocked = true;
            return;
        }
        if let Some(note) = self.template_name_taken() {
            self.notes.push(note);
            self.blocked = true;
            return;
        }
        match self.tenant.isolation {
            Isolation::Database => self.plan_database(),
            Isolation::Schema => self.plan_schema(),
            Isolation::Table => self.plan_table(),
            Isolation::Cache => {}
        }
        if !self.blocked {
            self.plan_migrations();
        }
        self.keep_template_with_migrations();
        self.plan_cache();
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
        // Last, so its notes change no action, not even MarkReady.
        self.plan_refresh();
    }

    /// Compares the tenant's own migration records with the registry's
    /// when `plan --refresh` read them.
    fn plan_refresh(&mut self) {
        let Some(local) = &self.actual.local else {
            return;
        };
        let id = &self.tenant.id;
        if let Some(schema) = &self.tenant.schema {
            let exists = self.actual.control.schemas.contains_key(&schema.name);
            let recorded = self.actual.registry.applied.get(id).map_or(0, |s| s.count);
            self.notes
                .extend(refresh::schema_note(id, &schema.name, exists, recorded));
        }
        let (Some(database), Some(records)) = (&self.tenant.database, local.get(id)) else {
            return;
        };
        let pending = self.actions.iter().find_map(|action| match action {
            Action::RunMigrations { migrations } => Some(migrations.as_slice()),
            _ => None,
        });
        let notes = refresh::database_notes(&DatabaseRecords {
            tenant: id,
            database: &database.name,
            set: self.tenant.migrations.as_deref(),
            recorded: &self.recorded_migrations(),
            local: records,
            pending: pending.unwrap_or_default(),
        });
        self.notes.extend(notes);
    }

    /// Lists the privileges the connecting role lacks for this tenant's
    /// actions, on the server that holds the tenant's roles.
    fn check_privileges(&self) -> Vec<String> {
        let key = match &self.tenant.database {
            Some(database) => server_key(database, &self.servers.control_key),
            None => self.servers.control_key.clone(),
        };
        let Some(Ok(server)) = self.actual.servers.get(&key) else {
            return Vec::new();
        };
        let rights = Rights::of(self.actual, self.servers, server, &key);
        privileges::check(&self.actions, &rights)
    }

    /// Returns a note when the tenant's database is named like this control
    /// database's templates, which apply drops when no tenant uses them.
    fn template_name_taken(&self) -> Option<String> {
        let database = self.tenant.database.as_ref()?;
        let reserved = template::prefix(self.control_database?);
        database.name.starts_with(&reserved).then(|| {
            format!(
                "database \"{}\" is named like a template database of this control database \
                 (names starting with \"{reserved}\" are reserved for them), so this tenant is \
                 not applied; choose another database name",
                database.name
            )
        })
    }

    /// Returns the template a new database of this tenant is copied from:
    /// one that holds the tenant's migration set, when the spec asks for
    /// templates and apply runs the tenant's migrations.
    fn template(&self, database: &DatabaseTarget) -> Option<String> {
        if !database.template || !self.tenant.run_migrations {
            return None;
        }
        let set = self.tenant.migrations.as_ref()?;
        Some(template::name(self.control_database?, set))
    }

    /// Drops the template of a new database whose migrations do not run in
    /// this plan: the step that runs them is the one that records the
    /// copied migrations in the registry.
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
            Some(info) => {
                if self.adopts("role", &role.name) {
                    self.actions.push(Action::AdoptRole {
                        role: role.name.clone(),
                    });
                }
                let mut reasons = Vec::new();
                if info.superuser {
                    reasons.push("it is a superuser".to_string());
                }
                if info.bypass_rls {
                    reasons.push("it has BYPASSRLS".to_string());
                }
                if !reasons.is_empty() {
                    self.actions.push(Action::RestrictRole {
                        role: role.name.clone(),
                        reasons,
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
            Some(info) => self.schema_access_drifted(info, role_name.as_deref()),
        };
        if needs_restrict {
            self.actions.push(Action::RestrictSchema {
                schema: schema.name.clone(),
                role: role_name,
                repair: existing.is_some(),
            });
        }
    }

    /// Returns whether an existing schema's privileges differ from what
    /// RestrictSchema sets: nothing for PUBLIC, USAGE and CREATE for the
    /// tenant's role. Notes other roles' privileges, which apply keeps.
    fn schema_access_drifted(&mut self, info: &SchemaInfo, role: Option<&str>) -> bool {
        let grants = by_grantee(info.grants.clone());
        let role_lacks_access = role.is_some_and(|role| {
            grants.get(role).is_none_or(|privileges| {
                !(privileges.iter().any(|p| p == "USAGE")
                    && privileges.iter().any(|p| p == "CREATE"))
            })
        });
        let others = grants.keys().filter(|grantee| {
            **grantee != info.owner
                && grantee.as_str() != "PUBLIC"
                && Some(grantee.as_str()) != role
        });
        for grantee in others {
            self.notes.push(format!(
                "role \"{grantee}\" holds privileges on schema \"{}\"; tenantctl does not revoke grants it did not make",
                info.name
            ));
        }
        let registered_role = self.record.and_then(|record| record.config_text("role"));
        info.public_access || role_lacks_access || self.record.is_none() || registered_role != role
    }

    fn plan_table(&mut self) {
        let Some(Ok(catalog)) = self.actual.servers.get(&self.servers.control_key) else {
            return;
        };
        self.plan_role_revocation(catalog);
        let (Some(target), Some(role)) = (&self.desired.tables, &self.tenant.role) else {
            return;
        };
        self.plan_role(role, catalog);
        let because = match (catalog.roles.get(&role.name), &self.actual.shared) {
            (Some(info), Some(state)) => {
                let check = TableRoleCheck {
                    target,
                    state,
                    tenant_id: &self.tenant.id,
                    role: info,
                    shared_changes: self.shared_changes,
                };
                let (because, notes) = check.drift();
                self.notes.extend(notes);
                if because.is_empty() {
                    return;
                }
                because
            }
            _ => Vec::new(),
        };
        self.actions.push(Action::GrantTableRole {
            role: role.name.clone(),
            schema: target.schema.clone(),
            because,
        });
    }

    /// Plans taking the shared tables away from the role the registry
    /// records for this table tenant when the spec names another role or
    /// none. Otherwise that role would keep its grants while
    /// `tenantctl.current_tenant` no longer ties it to the tenant, and it
    /// could read any tenant's rows by setting the tenant setting.
    fn plan_role_revocation(&mut self, catalog: &ServerCatalog) {
        let Some(record) = self.record else {
            return;
        };
        let (Some(old_role), Some(schema)) =
            (record.config_text("role"), record.config_text("schema"))
        else {
            return;
        };
        let taken = self.desired.tenants.iter().any(|tenant| {
            tenant.isolation == Isolation::Table
                && tenant
                    .role
                    .as_ref()
                    .is_some_and(|role| role.name == old_role)
        });
        if taken || !catalog.roles.contains_key(old_role) {
            return;
        }
        self.actions.push(Action::RevokeTableRole {
            role: old_role.to_string(),
            schema: schema.to_string(),
        });
    }

    /// Plans removing the Redis ACL user the registry records for this
    /// tenant when the spec names another user or none. The old user would
    /// otherwise keep its password and its access to the tenant's keys.
    /// A user tenantctl made is deleted, and an adopted one is disabled.
    /// When Redis could not be read, the removal is planned anyway. Apply
    /// then fails the tenant if Redis is still down, and the registry keeps
    /// the old user for the next apply.
    fn plan_acl_user_removal(&mut self) {
        let Some(record) = self.record else {
            return;
        };
        let Some(old) = record.config_text("acl_user") else {
            return;
        };
        let declared = self
            .tenant
            .cache
            .as_ref()
            .and_then(|cache| cache.acl_user.as_ref())
            .is_some_and(|user| user.name == old);
        if declared {
            return;
        }
        if let Some(Ok(state)) = &self.actual.redis
            && !state.users.contains_key(old)
        {
            return;
        }
        let user = old.to_string();
        if record.adopted.contains(&format!("acl_user:{old}")) {
            self.actions.push(Action::DisableAclUser { user });
        } else {
            self.actions.push(Action::DeleteAclUser { user });
        }
    }

    fn plan_cache(&mut self) {
        self.plan_acl_user_removal();
        let Some(cache) = &self.tenant.cache else {
            return;
        };
        let Some(user) = &cache.acl_user else {
            return;
        };
        let Some(password) = &user.password else {
            return;
        };
        let desired = DesiredUser {
            name: &user.name,
            prefix: &cache.prefix,
            password,
        };
        let (exists, because) = match &self.actual.redis {
            None => return,
            Some(Err(error)) => {
                self.notes
                    .push(format!("{error}; apply will try again to set the ACL user"));
                (false, Vec::new())
            }
            Some(Ok(state)) => match state.users.get(&user.name) {
                None => (false, Vec::new()),
                Some(live) => {
                    let because = desired.differences(live, &state.commands);
                    if because.is_empty() {
                        return;
                    }
                    (true, because)
                }
            },
        };
        if exists && !self.made_acl_user(&user.name) {
            self.notes.push(format!(
                "Redis ACL user \"{}\" exists and tenantctl did not make it for this tenant: \
                 apply replaces its rules and adopts it, so removing the tenant disables it \
                 instead of deleting it",
                user.name
            ));
        }
        self.actions.push(Action::SetAclUser {
            user: user.name.clone(),
            prefix: cache.prefix.clone(),
            exists,
            because,
        });
    }

    /// Tells whether the registry records the Redis ACL user `name` as one
    /// tenantctl made for this tenant.
    fn made_acl_user(&self, name: &str) -> bool {
        self.record.is_some_and(|record| {
            record.config_text("acl_user") == Some(name)
                && !record.adopted.contains(&format!("acl_user:{name}"))
        })
    }

    fn plan_migrations(&mut self) {
        let Some(set) = &self.tenant.migrations else {
            return;
        };
        if !self.tenant.run_migrations {
            return;
        }
        let applied = self.recorded_migrations();
        let pending = pending_migrations(set, &applied, "migration", &mut self.notes);
        if !pending.is_empty() {
            self.actions.push(Action::RunMigrations {
                migrations: pending,
            });
        }
    }

    /// Returns the (version, checksum) of each migration the registry
    /// records for the tenant. The bulk read lists them only when their
    /// summary differs from the tenant's migration set. Otherwise the set
    /// is the list.
    fn recorded_migrations(&self) -> Vec<(String, String)> {
        let id = &self.tenant.id;
        if let Some(list) = self.actual.applied_details.get(id) {
            return list.clone();
        }
        match (
            &self.tenant.migrations,
            self.actual.registry.applied.get(id),
        ) {
            (Some(set), Some(_)) => set
                .migrations
                .iter()
                .map(crate::migrations::Migration::version_and_checksum)
                .collect(),
            _ => Vec::new(),
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

/// Returns the names of the migrations of `set` that `applied` (version,
/// checksum) lacks, in version order. Adds a note, naming the migration as
/// `kind`, for each applied migration that was changed or removed since.
pub fn pending_migrations(
    set: &crate::migrations::MigrationSet,
    applied: &[(String, String)],
    kind: &str,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let comparison = super::pending::compare(set, applied);
    notes.extend(drift_notes(&comparison.drift, kind));
    comparison
        .pending
        .iter()
        .map(|migration| migration.name.clone())
        .collect()
}

/// Returns the plan notes of applied migrations that were changed or
/// removed since, naming each migration as `kind`.
fn drift_notes<'a>(drift: &'a [Drift], kind: &'a str) -> impl Iterator<Item = String> + 'a {
    drift.iter().map(move |item| match item {
        Drift::Changed { .. } => format!("{}; it is not run again", item.describe(kind)),
        Drift::Missing { .. } => item.describe(kind),
    })
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
