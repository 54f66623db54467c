//! Checks, before anything changes, that the connecting role may carry out
//! every action of a tenant's plan, so a missing privilege stops the run at
//! plan time instead of halfway through an apply.
//!
//! The rules are PostgreSQL 15's. CREATE ROLE, ALTER ROLE and GRANT of a
//! non-superuser role need CREATEROLE. CREATE DATABASE needs CREATEDB, and
//! CREATE SCHEMA needs CREATE on the database. GRANT and REVOKE on an
//! existing database, schema or table need its owner's rights, which
//! members of the owning role have too. In Redis, setting an ACL user needs
//! the `ACL SETUSER` command.

use super::action::Action;
use crate::state::catalog::{ControlCatalog, ServerCatalog};
use crate::state::redis::RedisState;
use crate::state::tables::SharedState;
use crate::state::{Actual, Servers};

/// Catalogs of the servers one tenant's actions run on.
pub struct Rights<'a> {
    /// Catalog of the server with the tenant's roles and database.
    pub server: &'a ServerCatalog,
    /// `host:port` of that server, as plans name it.
    pub server_key: &'a str,
    pub control: &'a ControlCatalog,
    /// The shared tables of table tenants, when the spec has `[tables]`.
    pub shared: Option<&'a SharedState>,
    /// The Redis server's state and its URL without password, when read.
    pub redis: Option<(&'a RedisState, &'a str)>,
}

impl<'a> Rights<'a> {
    /// Gathers the rights of actions that run on `server`, which is the
    /// server `server_key` names.
    pub fn of(
        actual: &'a Actual,
        servers: &'a Servers,
        server: &'a ServerCatalog,
        server_key: &'a str,
    ) -> Rights<'a> {
        let redis = match (&actual.redis, &servers.redis) {
            (Some(Ok(state)), Some(target)) => Some((state, target.display.as_str())),
            _ => None,
        };
        Rights {
            server,
            server_key,
            control: &actual.control,
            shared: actual.shared.as_ref(),
            redis,
        }
    }
}

/// Returns one message per missing privilege, naming the action that needs it.
pub fn check(actions: &[Action], rights: &Rights<'_>) -> Vec<String> {
    let current = &rights.server.current;
    let mut missing = Vec::new();
    if !current.superuser {
        let tenant_roles = tenant_roles(actions);
        for action in actions {
            if let Some(problem) = check_action(action, &tenant_roles, rights) {
                missing.push(format!(
                    "role \"{}\" on {} {problem}",
                    current.name, rights.server_key
                ));
            }
        }
    }
    missing.extend(
        actions
            .iter()
            .filter_map(|action| check_redis(action, rights)),
    );
    missing
}

/// Checks that the Redis user may run `ACL SETUSER` for an ACL user action.
fn check_redis(action: &Action, rights: &Rights<'_>) -> Option<String> {
    let Action::SetAclUser { user, .. } = action else {
        return None;
    };
    let (state, server) = rights.redis?;
    (state.may_set_users == Some(false)).then(|| {
        format!(
            "Redis user \"{}\" on {server} may not run ACL SETUSER, which setting ACL user \"{user}\" needs",
            state.user
        )
    })
}

/// Roles that the plan creates or adopts: the connecting role becomes their
/// member before it acts as them.
fn tenant_roles(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::CreateRole { role } | Action::AdoptRole { role } => Some(role.as_str()),
            _ => None,
        })
        .collect()
}

fn check_action(action: &Action, tenant_roles: &[&str], rights: &Rights<'_>) -> Option<String> {
    let server = rights.server;
    let current = &server.current;
    let acts_as = |owner: &str| server.acts_as(owner) || tenant_roles.contains(&owner);
    match action {
        Action::CreateRole { role } if !current.create_role => Some(format!(
            "lacks CREATEROLE, which creating role \"{role}\" needs"
        )),
        Action::SetPassword { role } | Action::AdoptRole { role } => {
            check_role_change(action, role, server)
        }
        Action::CreateDatabase { database, .. } if !current.create_db => Some(format!(
            "lacks CREATEDB, which creating database \"{database}\" needs"
        )),
        Action::RestrictConnect {
            database,
            repair: true,
            ..
        } => {
            let owner = &server.databases.get(database)?.owner;
            (!acts_as(owner)).then(|| {
                format!(
                    "is not owner \"{owner}\" of database \"{database}\" nor a member of it, which changing its CONNECT privilege needs"
                )
            })
        }
        Action::CreateSchema { schema } if !rights.control.current_can_create_schema() => {
            Some(format!(
                "lacks CREATE on the control database, which creating schema \"{schema}\" needs"
            ))
        }
        Action::RestrictSchema { schema, role, .. } => {
            check_restrict_schema(schema, role.as_deref(), rights, &acts_as)
        }
        // PostgreSQL 15 lets only superusers change SUPERUSER and BYPASSRLS.
        Action::RestrictRole { role, .. } => Some(format!(
            "is not superuser, which removing SUPERUSER and BYPASSRLS from role \"{role}\" needs"
        )),
        Action::GrantTableRole { role, .. } | Action::RevokeTableRole { role, .. } => {
            check_table_grants(role, rights, &acts_as)
        }
        Action::SetPolicy { table, .. } => {
            let owner = &rights
                .shared?
                .tables
                .iter()
                .find(|t| &t.name == table)?
                .owner;
            (!acts_as(owner)).then(|| {
                format!(
                    "is not owner \"{owner}\" of shared table \"{table}\" nor a member of it, which enabling its row-level security needs"
                )
            })
        }
        Action::RunSharedMigrations { schema, .. } => {
            let owner = &rights.control.schemas.get(schema)?.owner;
            let may_create = rights
                .shared?
                .schema_grants
                .get(&current.name)
                .is_some_and(|privileges| privileges.iter().any(|p| p == "CREATE"));
            (!acts_as(owner) && !may_create).then(|| {
                format!(
                    "has no CREATE on schema \"{schema}\" and is not its owner \"{owner}\" nor a member of it, which the shared migrations need"
                )
            })
        }
        _ => None,
    }
}

/// Checks the rights that granting the shared tables to a table tenant's
/// role, or revoking them, needs: the tables' owner rights, and CREATEROLE
/// to set or reset the role's tenant setting.
fn check_table_grants(
    role: &str,
    rights: &Rights<'_>,
    acts_as: &dyn Fn(&str) -> bool,
) -> Option<String> {
    let tables = rights
        .shared
        .map(|shared| shared.tables.as_slice())
        .unwrap_or_default();
    if let Some(table) = tables.iter().find(|table| !acts_as(&table.owner)) {
        return Some(format!(
            "is not owner \"{}\" of shared table \"{}\" nor a member of it, which granting it to role \"{role}\" needs",
            table.owner, table.name
        ));
    }
    if rights.shared.is_some_and(|shared| !shared.may_set_setting) {
        return Some(format!(
            "lacks SET on the tenant setting (GRANT SET ON PARAMETER), which setting it for role \"{role}\" needs"
        ));
    }
    let current = &rights.server.current;
    (!current.create_role && current.name != role).then(|| {
        format!("lacks CREATEROLE, which setting the tenant setting of role \"{role}\" needs")
    })
}

fn check_role_change(action: &Action, role: &str, server: &ServerCatalog) -> Option<String> {
    let current = &server.current;
    let what = match action {
        Action::SetPassword { .. } => "setting the password of",
        _ => "adopting (joining)",
    };
    if server.roles.get(role).is_some_and(|info| info.superuser) {
        return Some(format!(
            "is not superuser, which {what} superuser role \"{role}\" needs"
        ));
    }
    let is_self = current.name == role;
    let already_member = matches!(action, Action::AdoptRole { .. }) && server.acts_as(role);
    if current.create_role || is_self || already_member {
        return None;
    }
    Some(format!(
        "lacks CREATEROLE, which {what} role \"{role}\" needs"
    ))
}

fn check_restrict_schema(
    schema: &str,
    role: Option<&str>,
    rights: &Rights<'_>,
    acts_as: &dyn Fn(&str) -> bool,
) -> Option<String> {
    if let Some(info) = rights.control.schemas.get(schema)
        && !acts_as(&info.owner)
    {
        return Some(format!(
            "is not owner \"{}\" of schema \"{schema}\" nor a member of it, which changing its privileges needs",
            info.owner
        ));
    }
    let current = &rights.server.current;
    match role {
        Some(role) if !current.create_role && current.name != role => Some(format!(
            "lacks CREATEROLE, which setting the search_path of role \"{role}\" needs"
        )),
        _ => None,
    }
}

impl ControlCatalog {
    fn current_can_create_schema(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|current| current.superuser || current.create_schema)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::state::catalog::{CurrentRole, DatabaseInfo};

    fn role(create_role: bool, create_db: bool) -> CurrentRole {
        CurrentRole {
            name: "admin".into(),
            superuser: false,
            create_role,
            create_db,
            bypass_rls: false,
            reads_authid: false,
            create_schema: true,
        }
    }

    fn catalog(current: CurrentRole) -> ServerCatalog {
        ServerCatalog {
            roles: HashMap::new(),
            databases: HashMap::new(),
            verifiers: None,
            members: HashMap::new(),
            current,
        }
    }

    fn create_database_actions() -> Vec<Action> {
        vec![
            Action::CreateRole {
                role: "acme".into(),
            },
            Action::CreateDatabase {
                database: "acme".into(),
                owner: "acme".into(),
                server: "h:5432".into(),
                template: None,
            },
        ]
    }

    fn control_of(server: &ServerCatalog) -> ControlCatalog {
        ControlCatalog {
            schemas: HashMap::new(),
            current: Some(server.current.clone()),
        }
    }

    fn run(server: &ServerCatalog, actions: &[Action]) -> Vec<String> {
        let control = control_of(server);
        let rights = Rights {
            server,
            server_key: "h:5432",
            control: &control,
            shared: None,
            redis: None,
        };
        check(actions, &rights)
    }

    #[test]
    fn new_database_tenant_needs_createdb_createrole() {
        assert!(run(&catalog(role(true, true)), &create_database_actions()).is_empty());
    }

    #[test]
    fn missing_privileges_name_their_action() {
        let errors = run(&catalog(role(false, false)), &create_database_actions());
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("CREATEROLE"), "{errors:?}");
        assert!(errors[0].contains("creating role \"acme\""), "{errors:?}");
        assert!(errors[1].contains("CREATEDB"), "{errors:?}");
        assert!(
            errors[1].contains("creating database \"acme\""),
            "{errors:?}"
        );
    }

    #[test]
    fn adopted_database_needs_owner_rights() {
        let mut server = catalog(role(true, true));
        server.databases.insert(
            "acme".into(),
            DatabaseInfo {
                name: "acme".into(),
                owner: "someone".into(),
                public_connect: true,
            },
        );
        let actions = [Action::RestrictConnect {
            database: "acme".into(),
            role: "acme".into(),
            server: "h:5432".into(),
            repair: true,
        }];
        let errors = run(&server, &actions);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("owner \"someone\""), "{errors:?}");
        server
            .members
            .insert("someone".into(), ["admin".to_string()].into());
        assert!(run(&server, &actions).is_empty());
    }

    #[test]
    fn redis_user_without_acl_setuser_is_named() {
        let server = catalog(role(true, true));
        let control = control_of(&server);
        let state = RedisState {
            users: HashMap::new(),
            commands: Default::default(),
            user: "deployer".into(),
            may_set_users: Some(false),
        };
        let rights = Rights {
            server: &server,
            server_key: "h:5432",
            control: &control,
            shared: None,
            redis: Some((&state, "redis://h:6379/")),
        };
        let actions = [Action::SetAclUser {
            user: "acme".into(),
            prefix: "acme:".into(),
            exists: false,
            because: Vec::new(),
        }];
        let errors = check(&actions, &rights);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("\"deployer\" on redis://h:6379/"),
            "{errors:?}"
        );
        assert!(errors[0].contains("ACL user \"acme\""), "{errors:?}");
    }

    #[test]
    fn table_grants_need_the_setting_privilege() {
        let server = catalog(role(true, true));
        let control = control_of(&server);
        let shared = SharedState::default();
        let rights = Rights {
            server: &server,
            server_key: "h:5432",
            control: &control,
            shared: Some(&shared),
            redis: None,
        };
        let actions = [Action::GrantTableRole {
            role: "acme".into(),
            schema: "public".into(),
            because: Vec::new(),
        }];
        let errors = check(&actions, &rights);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("GRANT SET ON PARAMETER"), "{errors:?}");
    }
}
