//! Plans the shared tables of table tenants (schema, shared migrations,
//! row-level security) and checks each table tenant's role against them.
//! Pure: no I/O.

use super::action::{Action, SharedPlan};
use super::diff::pending_migrations;
use crate::rls::{POLICY_NAME, expected_expression, same_expression};
use crate::spec::desired::TablesTarget;
use crate::state::catalog::RoleInfo;
use crate::state::tables::{PolicyInfo, SharedState, TableInfo};

/// Privileges a tenant role holds on a table with the tenant column.
const TENANT_TABLE_PRIVILEGES: &[&str] = &["DELETE", "INSERT", "SELECT", "UPDATE"];

/// Privileges a tenant role holds on a table without it, whose rows every
/// tenant shares: reading, never changing them for the others.
const SHARED_TABLE_PRIVILEGES: &[&str] = &["SELECT"];

/// Plans the shared schema, the shared migrations and the policy of every
/// table that has the tenant column.
pub fn plan_shared(target: &TablesTarget, state: &SharedState) -> SharedPlan {
    let mut plan = SharedPlan {
        schema: target.schema.clone(),
        actions: Vec::new(),
        shared_tables: Vec::new(),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    if !state.schema_exists {
        plan.actions.push(Action::CreateSchema {
            schema: target.schema.clone(),
        });
    }
    plan_shared_migrations(target, state, &mut plan);
    for table in &state.tables {
        match &table.column {
            None => plan.shared_tables.push(table.name.clone()),
            Some(_) => plan_table_policy(target, state, table, &mut plan),
        }
    }
    plan
}

fn plan_shared_migrations(target: &TablesTarget, state: &SharedState, plan: &mut SharedPlan) {
    let Some(set) = &target.migrations else {
        return;
    };
    let pending = pending_migrations(set, &state.applied, "shared migration", &mut plan.notes);
    if !pending.is_empty() {
        plan.actions.push(Action::RunSharedMigrations {
            schema: target.schema.clone(),
            migrations: pending,
        });
    }
}

fn plan_table_policy(
    target: &TablesTarget,
    state: &SharedState,
    table: &TableInfo,
    plan: &mut SharedPlan,
) {
    let Some(column) = &table.column else {
        return;
    };
    let expected = expected_expression(column, &target.setting);
    let policy = state.policy(&table.name, POLICY_NAME);
    let mut because = Vec::new();
    if let Some(policy) = policy {
        if !table.row_security {
            because.push("row-level security is disabled".to_string());
        }
        if !table.force_row_security {
            because.push("row-level security is not forced, so the owner skips it".to_string());
        }
        because.extend(policy_drift(policy, &expected));
    }
    if policy.is_none() || !because.is_empty() {
        plan.actions.push(Action::SetPolicy {
            schema: target.schema.clone(),
            table: table.name.clone(),
            exists: policy.is_some(),
            because,
        });
    }

    for other in state.policies.iter().filter(|other| {
        other.table_name == table.name && other.name != POLICY_NAME && other.permissive
    }) {
        plan.notes.push(format!(
            "table \"{}\" also has permissive policy \"{}\"; PostgreSQL combines permissive policies with OR, so it can show tenants rows of other tenants",
            table.name, other.name
        ));
    }
    if let Some(privileges) = table.grants.get("PUBLIC") {
        plan.notes.push(format!(
            "PUBLIC holds {} on table \"{}\", so every role can use it with any {} it sets",
            privileges.join(", "),
            table.name,
            target.setting
        ));
    }
}

fn policy_drift(policy: &PolicyInfo, expected: &str) -> Vec<String> {
    let mut drift = Vec::new();
    if !policy.permissive {
        drift.push("the policy is restrictive".to_string());
    }
    if policy.command != "*" {
        drift.push("the policy does not cover all commands".to_string());
    }
    if !policy.to_public {
        drift.push("the policy applies to some roles only".to_string());
    }
    let matches = |text: &Option<String>| {
        text.as_deref()
            .is_some_and(|text| same_expression(text, expected))
    };
    if !matches(&policy.using_expression) {
        drift.push("its USING expression differs".to_string());
    }
    if !matches(&policy.check_expression) {
        drift.push("its WITH CHECK expression differs".to_string());
    }
    drift
}

/// The inputs of the check of a table tenant's existing role.
pub struct TableRoleCheck<'a> {
    pub target: &'a TablesTarget,
    pub state: &'a SharedState,
    pub tenant_id: &'a str,
    pub role: &'a RoleInfo,
    /// Whether the shared plan creates the schema or runs migrations, which
    /// can add tables the role needs grants on.
    pub shared_changes: bool,
}

impl TableRoleCheck<'_> {
    /// Lists why the role needs its grants and setting again (empty when
    /// nothing drifted), and remarks that apply cannot fix.
    pub fn drift(&self) -> (Vec<String>, Vec<String>) {
        let mut because = Vec::new();
        let mut notes = Vec::new();
        let role = &self.role.name;
        if self.shared_changes {
            because.push("the shared tables change".to_string());
        }
        if self.role.superuser {
            because.push("the role is a superuser".to_string());
        }
        if self.role.bypass_rls {
            because.push("the role has BYPASSRLS".to_string());
        }

        let setting = format!("{}={}", self.target.setting, self.tenant_id);
        let has_setting = self
            .state
            .role_settings
            .get(role)
            .is_some_and(|settings| settings.contains(&setting));
        if !has_setting {
            because.push(format!(
                "{} is not set to '{}'",
                self.target.setting, self.tenant_id
            ));
        }

        if self.state.schema_exists && privileges_of(&self.state.schema_grants, role) != ["USAGE"] {
            because.push(format!(
                "its privileges on schema \"{}\" differ from USAGE",
                self.target.schema
            ));
        }
        let drifted: Vec<&str> = self
            .state
            .tables
            .iter()
            .filter(|table| {
                privileges_of(&table.grants, role) != expected_privileges(table)
                    || !sequences_granted(table, role)
            })
            .map(|table| table.name.as_str())
            .collect();
        if !drifted.is_empty() {
            because.push(format!("its privileges differ on {}", drifted.join(", ")));
        }

        for table in self.state.tables.iter().filter(|t| &t.owner == role) {
            notes.push(format!(
                "role \"{role}\" owns table \"{}\", so it can turn off its row-level security; tenantctl does not change owners",
                table.name
            ));
        }
        (because, notes)
    }
}

/// Tells whether `role` has USAGE and nothing else on every sequence of a
/// tenant table, and nothing on the sequences of a shared table.
fn sequences_granted(table: &TableInfo, role: &str) -> bool {
    let usage = format!("{role}=USAGE");
    let of_role = format!("{role}=");
    let granted: Vec<&String> = table
        .sequence_grants
        .iter()
        .filter(|grant| grant.starts_with(&of_role))
        .collect();
    let expected = if table.column.is_some() {
        table.sequence_count
    } else {
        0
    };
    granted.len() == expected && granted.iter().all(|grant| **grant == usage)
}

fn privileges_of<'a>(
    grants: &'a std::collections::BTreeMap<String, Vec<String>>,
    role: &str,
) -> &'a [String] {
    grants.get(role).map(Vec::as_slice).unwrap_or(&[])
}

fn expected_privileges(table: &TableInfo) -> &'static [&'static str] {
    if table.column.is_some() {
        TENANT_TABLE_PRIVILEGES
    } else {
        SHARED_TABLE_PRIVILEGES
    }
}

/// Returns the privileges a tenant role gets on a table, as SQL.
pub fn grant_list(has_tenant_column: bool) -> String {
    if has_tenant_column {
        TENANT_TABLE_PRIVILEGES.join(", ")
    } else {
        SHARED_TABLE_PRIVILEGES.join(", ")
    }
}
