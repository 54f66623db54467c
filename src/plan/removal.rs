//! The actions that remove a registered tenant, worked out from its registry
//! record alone. Pure: no I/O.
//!
//! Only what tenantctl created is dropped: an object the record marks as
//! adopted (`schema:acme`, `role:x`, `database:y`, `acl_user:z`) is detached
//! unless `drop_adopted` is set. An adopted Redis ACL user is disabled.

use super::action::{Action, TenantChange, TenantPlan};
use crate::spec::model::Isolation;
use crate::state::location::Location;
use crate::state::registry::TenantRecord;

/// Inputs of a tenant's removal besides its record.
#[derive(Debug, Clone, Copy)]
pub struct RemovalContext<'a> {
    /// The control server's `host:port`.
    pub control_key: &'a str,
    /// The tenant column of the shared tables, for a table tenant.
    pub column: &'a str,
    pub drop_adopted: bool,
}

/// Builds the plan that removes a tenant. `superusers` are the roles
/// create-superuser made for it.
pub fn tenant_plan(
    record: &TenantRecord,
    superusers: &[String],
    context: RemovalContext<'_>,
) -> TenantPlan {
    let location = Location::of(record);
    let server = location
        .server
        .clone()
        .unwrap_or_else(|| context.control_key.to_string());
    let removal = Removal {
        record,
        drop_adopted: context.drop_adopted,
    };

    let mut actions: Vec<Action> = removal
        .storage(&location, &server, context.column)
        .into_iter()
        .collect();
    if let Some(prefix) = &location.prefix {
        actions.push(Action::DeleteKeys {
            prefix: prefix.clone(),
        });
    }
    if let Some(user) = &location.acl_user {
        // An adopted user got the tenant's rules and password when it was
        // adopted, so it is disabled rather than left with them.
        let action = match removal.drop_or_detach("acl_user", user, || Action::DeleteAclUser {
            user: user.clone(),
        }) {
            Action::Detach { .. } => Action::DisableAclUser { user: user.clone() },
            action => action,
        };
        actions.push(action);
    }
    let roles = superusers
        .iter()
        .map(String::as_str)
        .chain(location.tenant_role());
    for role in roles {
        actions.push(removal.drop_or_detach("role", role, || Action::DropRole {
            role: role.to_string(),
            server: server.clone(),
        }));
    }
    actions.push(Action::Unregister);

    TenantPlan {
        id: record.id.clone(),
        isolation: location.isolation.unwrap_or(Isolation::Schema),
        change: TenantChange::Destroy,
        actions,
        notes: Vec::new(),
        errors: Vec::new(),
        stays_pending: false,
        deferred: Vec::new(),
    }
}

/// One tenant's removal, deciding between dropping and detaching.
struct Removal<'a> {
    record: &'a TenantRecord,
    drop_adopted: bool,
}

impl Removal<'_> {
    /// Returns the drop action, or a detach when the record marks the
    /// object (`kind:name`) as adopted and adopted objects are kept.
    fn drop_or_detach(&self, kind: &str, name: &str, drop: impl FnOnce() -> Action) -> Action {
        let object = format!("{kind}:{name}");
        if !self.drop_adopted && self.record.adopted.contains(&object) {
            Action::Detach { object }
        } else {
            drop()
        }
    }

    /// Returns the action that removes the tenant's data: its database,
    /// its schema, or its rows in the shared tables.
    fn storage(&self, location: &Location, server: &str, column: &str) -> Option<Action> {
        match (location.isolation, &location.database, &location.schema) {
            (Some(Isolation::Database), Some(database), _) => {
                Some(
                    self.drop_or_detach("database", database, || Action::DropDatabase {
                        database: database.clone(),
                        server: server.to_string(),
                    }),
                )
            }
            (Some(Isolation::Schema), _, Some(schema)) => {
                Some(
                    self.drop_or_detach("schema", schema, || Action::DropSchema {
                        schema: schema.clone(),
                    }),
                )
            }
            (Some(Isolation::Table), _, schema) => Some(Action::DeleteRows {
                schema: schema.clone().unwrap_or_else(|| "public".to_string()),
                column: location
                    .column
                    .clone()
                    .unwrap_or_else(|| column.to_string()),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(isolation: &str, config: serde_json::Value, adopted: &[&str]) -> TenantRecord {
        TenantRecord {
            id: "acme".into(),
            name: "Acme".into(),
            isolation: isolation.into(),
            config,
            status: "ready".into(),
            deletion_protection: false,
            adopted: adopted.iter().map(|a| a.to_string()).collect(),
            last_error: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn context(drop_adopted: bool) -> RemovalContext<'static> {
        RemovalContext {
            control_key: "h:5432",
            column: "tenant_id",
            drop_adopted,
        }
    }

    #[test]
    fn adopted_schema_detached_unless_asked() {
        let record = record(
            "schema",
            serde_json::json!({"schema": "acme", "role": "acme_user", "prefix": "acme:"}),
            &["schema:acme"],
        );
        let plan = tenant_plan(&record, &["acme_admin".into()], context(false));
        assert_eq!(
            plan.actions,
            [
                Action::Detach {
                    object: "schema:acme".into()
                },
                Action::DeleteKeys {
                    prefix: "acme:".into()
                },
                Action::DropRole {
                    role: "acme_admin".into(),
                    server: "h:5432".into()
                },
                Action::DropRole {
                    role: "acme_user".into(),
                    server: "h:5432".into()
                },
                Action::Unregister,
            ]
        );
        let dropped = tenant_plan(&record, &[], context(true));
        assert_eq!(
            dropped.actions[0],
            Action::DropSchema {
                schema: "acme".into()
            }
        );
    }

    #[test]
    fn database_tenant_dropped_on_its_server() {
        let record = record(
            "database",
            serde_json::json!({"database": "acme_db", "owner": "acme_user", "server": "db2:5433"}),
            &["role:acme_user"],
        );
        let plan = tenant_plan(&record, &[], context(false));
        assert_eq!(
            plan.actions,
            [
                Action::DropDatabase {
                    database: "acme_db".into(),
                    server: "db2:5433".into()
                },
                Action::Detach {
                    object: "role:acme_user".into()
                },
                Action::Unregister,
            ]
        );
    }
}
