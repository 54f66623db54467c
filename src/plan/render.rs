//! Prints a plan as text, in the style of Terraform, or as JSON.

use std::fmt::Write;

use super::action::{Action, Effect, Plan, SharedPlan, TenantChange};

/// Returns the mark shown before an action: `+` add, `~` change, `-` destroy,
/// `<=` adopt.
pub fn sign(action: &Action) -> &'static str {
    match action {
        Action::AdoptRole { .. } | Action::AdoptDatabase { .. } | Action::AdoptSchema { .. } => {
            "<="
        }
        _ => match action.effect() {
            Effect::Add => "+",
            Effect::Change => "~",
            Effect::Destroy => "-",
        },
    }
}

/// Describes one action on one line, without secrets.
pub fn describe(action: &Action) -> String {
    match action {
        Action::CreateRole { role } => format!("role \"{role}\" (login, password (sensitive))"),
        Action::AdoptRole { role } => format!("role \"{role}\" (exists; adopted, not recreated)"),
        Action::SetPassword { role } => format!("password (sensitive) of role \"{role}\""),
        Action::RestrictRole { role, reasons } => {
            format!(
                "role \"{role}\": NOSUPERUSER NOBYPASSRLS ({})",
                reasons.join(", ")
            )
        }
        Action::CreateDatabase {
            database,
            owner,
            server,
            template,
        } => {
            let from = template
                .as_ref()
                .map(|t| format!(", from template \"{t}\""))
                .unwrap_or_default();
            format!("database \"{database}\" on {server}, owner \"{owner}\"{from}")
        }
        Action::AdoptDatabase { database, server } => {
            format!("database \"{database}\" on {server} (exists; adopted, not recreated)")
        }
        Action::RestrictConnect { database, role, .. } => {
            format!("CONNECT on \"{database}\" only for \"{role}\" (revoked from PUBLIC)")
        }
        Action::CreateSchema { schema } => format!("schema \"{schema}\""),
        Action::AdoptSchema { schema } => {
            format!("schema \"{schema}\" (exists; adopted, not recreated)")
        }
        Action::RestrictSchema { schema, role, .. } => match role {
            Some(role) => format!(
                "privileges on schema \"{schema}\": USAGE, CREATE for \"{role}\", none for PUBLIC"
            ),
            None => format!("privileges on schema \"{schema}\": none for PUBLIC"),
        },
        Action::RunMigrations { migrations } => describe_migrations(migrations),
        Action::RunSharedMigrations { schema, migrations } => {
            format!(
                "shared tables in \"{schema}\": {}, then row-level security on every table with the tenant column",
                describe_migrations(migrations)
            )
        }
        Action::SetPolicy {
            schema,
            table,
            because,
            ..
        } => format!(
            "row-level security policy on \"{schema}\".\"{table}\"{}",
            describe_because(because)
        ),
        Action::GrantTableRole {
            role,
            schema,
            because,
        } => format!(
            "DML on shared tables in \"{schema}\" for \"{role}\", tenant setting fixed{}",
            describe_because(because)
        ),
        Action::RevokeTableRole { role, schema } => format!(
            "privileges on shared tables in \"{schema}\" and tenant setting revoked from \"{role}\", which the tenant no longer uses (the role is kept)"
        ),
        Action::SetAclUser {
            user,
            prefix,
            because,
            ..
        } => format!(
            "Redis ACL user \"{user}\" limited to keys and channels \"{prefix}*\", password (sensitive){}",
            describe_because(because)
        ),
        Action::Register { name } => format!("registry record (name \"{name}\")"),
        Action::UpdateName { from, to } => format!("name: \"{from}\" -> \"{to}\""),
        Action::UpdateConfig { changes } => format!("config: {}", changes.join(", ")),
        Action::UpdateProtection { to } => format!("deletion_protection: {} -> {to}", !to),
        Action::MarkReady { from } => format!("status: {from} -> ready"),
        Action::DropDatabase { database, server } => {
            format!("database \"{database}\" on {server} (its sessions are terminated)")
        }
        Action::DropSchema { schema } => format!("schema \"{schema}\" and everything in it"),
        Action::DeleteRows { schema, column } => {
            format!("rows of the tenant in every table of \"{schema}\" with column \"{column}\"")
        }
        Action::DeleteKeys { prefix } => format!("Redis keys \"{prefix}*\""),
        Action::DeleteAclUser { user } => format!("Redis ACL user \"{user}\""),
        Action::DisableAclUser { user } => {
            format!("Redis ACL user \"{user}\" disabled (adopted, so kept)")
        }
        Action::DropRole { role, server } => format!("role \"{role}\" on {server}"),
        Action::Detach { object } => format!("{object} (adopted; detached, not dropped)"),
        Action::Unregister => "registry record and migration records".to_string(),
    }
}

fn describe_because(because: &[String]) -> String {
    if because.is_empty() {
        String::new()
    } else {
        format!(" ({})", because.join("; "))
    }
}

fn describe_migrations(migrations: &[String]) -> String {
    match migrations {
        [] => "no migrations".to_string(),
        [only] => format!("1 migration ({only})"),
        [first, .., last] => format!("{} migrations ({first} … {last})", migrations.len()),
    }
}

/// Renders the plan as text. Its warnings are left out, because commands
/// print them to stderr.
pub fn to_text(plan: &Plan) -> String {
    let mut out = String::new();
    if let Some(shared) = &plan.shared {
        write_shared(&mut out, shared);
    }
    for tenant in &plan.tenants {
        let verb = match (tenant.change, tenant.actions.is_empty()) {
            (_, true) => "has notes",
            (TenantChange::Create, false) => "will be created",
            (TenantChange::Update, false) => "will be updated in place",
            (TenantChange::Destroy, false) => "will be destroyed",
        };
        let _ = writeln!(
            out,
            "  # tenant \"{}\" ({}) {verb}",
            tenant.id, tenant.isolation
        );
        for action in &tenant.actions {
            let _ = writeln!(out, "  {} {}", sign(action), describe(action));
        }
        for note in &tenant.notes {
            let _ = writeln!(out, "  ! {note}");
        }
        for action in &tenant.deferred {
            let _ = writeln!(out, "  ! left for a later apply: {}", describe(action));
        }
        for error in &tenant.errors {
            let _ = writeln!(out, "  ✗ {error}");
        }
        out.push('\n');
    }
    for tenant in &plan.undeclared {
        let why = if tenant.protected {
            "; deletion_protection keeps it (set it to false in the spec and apply first)"
        } else if plan.source.prune {
            ""
        } else {
            "; it is kept (apply --prune removes it)"
        };
        let _ = writeln!(
            out,
            "  # tenant \"{}\" ({}) is no longer declared in the spec{why}\n",
            tenant.id, tenant.isolation
        );
    }
    if plan.has_changes() {
        let summary = plan.summary;
        let _ = writeln!(
            out,
            "Plan: {} to add, {} to change, {} to destroy.",
            summary.add, summary.change, summary.destroy
        );
    } else {
        let waiting = plan
            .tenants
            .iter()
            .filter(|tenant| tenant.stays_pending)
            .count();
        if waiting == 0 {
            let _ = writeln!(out, "No changes. Tenants are up to date.");
        } else {
            let tenants = if waiting == 1 { "tenant" } else { "tenants" };
            let _ = writeln!(
                out,
                "No changes. {waiting} {tenants} cannot be applied yet: see the notes above."
            );
        }
    }
    out
}

fn write_shared(out: &mut String, shared: &SharedPlan) {
    if shared.actions.is_empty()
        && shared.shared_tables.is_empty()
        && shared.notes.is_empty()
        && shared.errors.is_empty()
    {
        return;
    }
    let verb = if shared.actions.is_empty() {
        "are up to date"
    } else {
        "will be updated"
    };
    let _ = writeln!(
        out,
        "  # shared tables in schema \"{}\" {verb}",
        shared.schema
    );
    for action in &shared.actions {
        let _ = writeln!(out, "  {} {}", sign(action), describe(action));
    }
    if !shared.shared_tables.is_empty() {
        let tables: Vec<String> = shared
            .shared_tables
            .iter()
            .map(|table| format!("\"{table}\""))
            .collect();
        let _ = writeln!(
            out,
            "  = shared by all tenants (no tenant column): {}",
            tables.join(", ")
        );
    }
    for note in &shared.notes {
        let _ = writeln!(out, "  ! {note}");
    }
    for error in &shared.errors {
        let _ = writeln!(out, "  ✗ {error}");
    }
    out.push('\n');
}

/// Renders the plan as pretty JSON.
pub fn to_json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan always serializes")
}
