//! Checks, before anything changes, that the connecting role may carry out
//! every action of a tenant's plan, so a missing privilege stops the run at
//! plan time instead of halfway through an apply.
//!
//! The rules are PostgreSQL 15's. CREATE ROLE, ALTER ROLE and GRANT of a
//! non-superuser role need CREATEROLE. CREATE DATABASE needs CREATEDB, and
//! CREATE SCHEMA needs CREATE on the database. GRANT and REVOKE on an
//! existing database or schema need its owner's rights, which members of
//! the owning role have too.

use super::action::Action;
use crate::state::catalog::{ControlCatalog, ServerCatalog};

/// Catalogs of the servers one tenant's actions run on.
pub struct Rights<'a> {
    /// Catalog of the server with the tenant's roles and database.
    pub server: &'a ServerCatalog,
    /// `host:port` of that server, as plans name it.
    pub server_key: &'a str,
    pub control: &'a ControlCatalog,
}

/// Returns one message per missing privilege, naming the action that needs it.
pub fn check(actions: &[Action], rights: &Rights<'_>) -> Vec<String> {
    let current = &rights.server.current;
    if current.superuser {
        return Vec::new();
    }
    let tenant_roles = tenant_roles(actions);
    let mut missing = Vec::new();
    for action in actions {
        if let Some(problem) = check_action(action, &tenant_roles, rights) {
            missing.push(format!(
                "role \"{}\" on {} {problem}",
                current.name, rights.server_key
            ));
        }
    }
    missing
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
        _ => None,
    }
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

    fn run(server: &ServerCatalog, actions: &[Action]) -> Vec<String> {
        let control = ControlCatalog {
            schemas: HashMap::new(),
            current: Some(server.current.clone()),
        };
        let rights = Rights {
            server,
            server_key: "h:5432",
            control: &control,
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
}
