//! The plan: per-tenant actions as plain data, serializable for `plan --out`
//! and `--json`. Secrets never appear here, only the fact that one changes.

use serde::{Deserialize, Serialize};

use crate::spec::model::Isolation;

/// Version of the saved and JSON plan format.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// One change to make for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Creates a login role with a SCRAM-encoded password.
    CreateRole { role: String },
    /// Takes over a role that exists but that tenantctl did not create.
    AdoptRole { role: String },
    /// Sets a role's password (the value is never shown).
    SetPassword { role: String },
    /// Takes SUPERUSER and BYPASSRLS away from a tenant role that gained
    /// them outside tenantctl: either would let it skip the isolation.
    RestrictRole { role: String, reasons: Vec<String> },
    /// Creates a database owned by the tenant role.
    CreateDatabase {
        database: String,
        owner: String,
        server: String,
        template: Option<String>,
    },
    /// Takes over a database that exists but that tenantctl did not create.
    AdoptDatabase { database: String, server: String },
    /// Revokes CONNECT from PUBLIC and grants it to the tenant role;
    /// `repair` is set when the database exists and its privileges drifted.
    RestrictConnect {
        database: String,
        role: String,
        server: String,
        repair: bool,
    },
    /// Creates a schema.
    CreateSchema { schema: String },
    /// Takes over a schema that exists but that tenantctl did not create.
    AdoptSchema { schema: String },
    /// Revokes every PUBLIC privilege on the schema and gives the tenant's
    /// role (if any) USAGE, CREATE and its search_path.
    RestrictSchema {
        schema: String,
        role: Option<String>,
        repair: bool,
    },
    /// Runs pending migrations (folder names), in version order.
    RunMigrations { migrations: Vec<String> },
    /// Runs pending migrations of the shared tables of table tenants.
    RunSharedMigrations {
        schema: String,
        migrations: Vec<String>,
    },
    /// Enables and forces row-level security on a shared table and creates
    /// or replaces its tenant policy; `because` lists what drifted.
    SetPolicy {
        schema: String,
        table: String,
        exists: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        because: Vec<String>,
    },
    /// Gives a table tenant's role exactly DML on the shared tables that
    /// have the tenant column, SELECT on the others, USAGE on their schema
    /// and its tenant setting. `because` lists why an existing role needs it.
    GrantTableRole {
        role: String,
        schema: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        because: Vec<String>,
    },
    /// Takes the privileges on the shared tables and the tenant setting away
    /// from a role a table tenant no longer uses. The role itself is kept.
    RevokeTableRole { role: String, schema: String },
    /// Creates or resets the Redis ACL user of a tenant; `because` lists
    /// how the existing user differs.
    SetAclUser {
        user: String,
        prefix: String,
        exists: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        because: Vec<String>,
    },
    /// Takes every key pattern, command and password away from an adopted
    /// Redis ACL user that the tenant no longer uses, and keeps the user.
    DisableAclUser { user: String },
    /// Adds the tenant to the registry.
    Register { name: String },
    /// Changes the tenant's display name in the registry.
    UpdateName { from: String, to: String },
    /// Changes the tenant's non-secret configuration in the registry.
    UpdateConfig { changes: Vec<String> },
    /// Changes the tenant's deletion protection in the registry.
    UpdateProtection { to: bool },
    /// Marks a tenant whose earlier apply failed or stopped as ready.
    MarkReady { from: String },
    /// Drops a tenant database, terminating its sessions.
    DropDatabase { database: String, server: String },
    /// Drops a tenant schema and everything in it.
    DropSchema { schema: String },
    /// Deletes a table tenant's rows from every shared table that has the
    /// tenant column.
    DeleteRows { schema: String, column: String },
    /// Unlinks every Redis key that starts with the prefix.
    DeleteKeys { prefix: String },
    /// Deletes a Redis ACL user.
    DeleteAclUser { user: String },
    /// Drops a login role after taking its privileges away.
    DropRole { role: String, server: String },
    /// Leaves an adopted object (`kind:name`) in place and forgets it.
    Detach { object: String },
    /// Removes the tenant from the registry, with its migration records.
    Unregister,
}

/// Whether an action adds, changes or removes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Add,
    Change,
    Destroy,
}

impl Action {
    pub fn effect(&self) -> Effect {
        match self {
            Action::CreateRole { .. }
            | Action::CreateDatabase { .. }
            | Action::CreateSchema { .. }
            | Action::RunMigrations { .. }
            | Action::RunSharedMigrations { .. }
            | Action::Register { .. } => Effect::Add,
            Action::SetPolicy { exists, .. } | Action::SetAclUser { exists, .. } => {
                if *exists {
                    Effect::Change
                } else {
                    Effect::Add
                }
            }
            Action::RestrictConnect { repair, .. } | Action::RestrictSchema { repair, .. } => {
                if *repair {
                    Effect::Change
                } else {
                    Effect::Add
                }
            }
            Action::DropDatabase { .. }
            | Action::DropSchema { .. }
            | Action::DeleteRows { .. }
            | Action::DeleteKeys { .. }
            | Action::DeleteAclUser { .. }
            | Action::DropRole { .. }
            | Action::Unregister => Effect::Destroy,
            Action::GrantTableRole { because, .. } => {
                if because.is_empty() {
                    Effect::Add
                } else {
                    Effect::Change
                }
            }
            _ => Effect::Change,
        }
    }
}

/// Whether a tenant is new, changed or about to be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantChange {
    Create,
    Update,
    /// The tenant is removed: `apply --prune` or `destroy`.
    Destroy,
}

/// The actions of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPlan {
    pub id: String,
    pub isolation: Isolation,
    pub change: TenantChange,
    /// Set when something the plan cannot do (a missing database with
    /// `create = false`, a database owned by another role) keeps the tenant
    /// pending after apply.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stays_pending: bool,
    pub actions: Vec<Action>,
    /// Remarks shown under the tenant, such as a role that cannot be checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Privileges the connecting role lacks for these actions; a plan with
    /// any is refused before anything changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Actions left out of this run on purpose; the tenant stays pending
    /// until a later apply runs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<Action>,
}

impl TenantPlan {
    /// Moves the actions `later` selects to [`TenantPlan::deferred`].
    pub fn defer(&mut self, later: impl Fn(&Action) -> bool) {
        let (deferred, kept) = std::mem::take(&mut self.actions)
            .into_iter()
            .partition(|action| later(action));
        self.actions = kept;
        self.deferred.extend::<Vec<Action>>(deferred);
    }
}

/// A registry tenant that the spec no longer declares. It is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeclared {
    pub id: String,
    pub isolation: String,
    /// Whether deletion protection keeps the tenant from being pruned.
    #[serde(default)]
    pub protected: bool,
}

/// Counts of the plan's actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

/// Where a saved plan came from, to detect a stale plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSource {
    /// Absolute path of the spec file, or None for standard input.
    pub spec_path: Option<std::path::PathBuf>,
    /// SHA-256 of the spec file's text.
    pub spec_digest: String,
    /// The `--tenant` filter the plan was made with.
    #[serde(default)]
    pub tenant_filter: Vec<String>,
    /// Control database URL without its password.
    pub control: String,
    /// Whether the plan removes tenants the spec no longer declares.
    #[serde(default)]
    pub prune: bool,
    /// Whether removal drops adopted objects instead of detaching them.
    #[serde(default)]
    pub drop_adopted: bool,
    /// Whether the plan also read each database tenant's own migration
    /// table (`plan --refresh`); applying the saved plan reads it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
}

/// The work on the shared tables of table tenants, applied once before any
/// tenant, since the tenants' grants need the tables and their policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPlan {
    pub schema: String,
    pub actions: Vec<Action>,
    /// Tables without the tenant column: every tenant sees all their rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Privileges the connecting role lacks for these actions; a plan with
    /// any is refused before anything changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub source: PlanSource,
    /// Shared tables, when the spec has `[tables]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedPlan>,
    pub tenants: Vec<TenantPlan>,
    pub undeclared: Vec<Undeclared>,
    pub warnings: Vec<String>,
    pub summary: Summary,
}

impl Plan {
    /// Whether some action cannot be carried out by the connecting role.
    pub fn has_errors(&self) -> bool {
        !self.errors().is_empty()
    }

    /// Returns every error of the plan, each after the shared tables'
    /// schema or its tenant's id.
    pub fn errors(&self) -> Vec<String> {
        let shared = self.shared.iter().flat_map(|shared| {
            shared
                .errors
                .iter()
                .map(move |error| format!("shared tables in {}: {error}", shared.schema))
        });
        let tenants = self.tenants.iter().flat_map(|tenant| {
            tenant
                .errors
                .iter()
                .map(move |error| format!("tenant {}: {error}", tenant.id))
        });
        shared.chain(tenants).collect()
    }

    /// Whether applying the plan would change anything.
    pub fn has_changes(&self) -> bool {
        self.tenants.iter().any(|tenant| !tenant.actions.is_empty())
            || self
                .shared
                .as_ref()
                .is_some_and(|shared| !shared.actions.is_empty())
    }

    /// Counts the actions by effect.
    pub fn summarize(shared: Option<&SharedPlan>, tenants: &[TenantPlan]) -> Summary {
        let mut summary = Summary::default();
        let shared_actions = shared.into_iter().flat_map(|shared| &shared.actions);
        let tenant_actions = tenants.iter().flat_map(|tenant| &tenant.actions);
        for action in shared_actions.chain(tenant_actions) {
            match action.effect() {
                Effect::Add => summary.add += 1,
                Effect::Change => summary.change += 1,
                Effect::Destroy => summary.destroy += 1,
            }
        }
        summary
    }
}
