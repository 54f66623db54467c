//! Login roles that administer one tenant and nothing else, made by
//! `tenantctl create-superuser`.

use diesel::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::TenantError;
use super::schema::ensure_membership;
use super::schema::execute;
use crate::spec::desired::TablesTarget;
use crate::spec::model::Isolation;
use crate::spec::secret::Secret;
use crate::sql::{quote_ident, quote_literal, scram_verifier};
use crate::state::catalog::CurrentRole;
use crate::state::location::Location;

/// Creates the login role, or sets the password of the existing one.
pub fn upsert_role(
    connection: &mut PgConnection,
    current: &CurrentRole,
    name: &str,
    password: &Secret,
) -> Result<(), TenantError> {
    let exists = role_exists(connection, name)?;
    let verifier = quote_literal(&scram_verifier(password));
    let role = quote_ident(name);
    let sql = if exists {
        format!("ALTER ROLE {role} LOGIN PASSWORD {verifier}")
    } else {
        format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD {verifier}"
        )
    };
    execute(connection, &format!("create role {name}"), &sql)?;
    ensure_membership(connection, current, name)
}

/// Returns whether a role exists on the server.
pub fn role_exists(connection: &mut PgConnection, name: &str) -> Result<bool, TenantError> {
    diesel::select(
        diesel::dsl::sql::<Bool>("EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ")
            .bind::<Text, _>(name)
            .sql(")"),
    )
    .get_result(connection)
    .map_err(|error| TenantError::new("read pg_roles", error))
}

/// Gives the role the rights of the tenant's owner. For a database tenant
/// that is membership in the owner role. For a schema tenant it is every
/// right on the schema, on its objects and on the objects made there later.
/// For a table tenant it is DML on the shared tables, limited to the
/// tenant's rows by row-level security.
pub fn grant(
    connection: &mut PgConnection,
    tenant_id: &str,
    location: &Location,
    tables: &TablesTarget,
    name: &str,
) -> Result<(), TenantError> {
    let missing = |what: &str| TenantError::new("registry", format!("the record has no {what}"));
    match location.isolation {
        Some(Isolation::Database) => {
            let owner = location.owner.as_deref().ok_or_else(|| missing("owner"))?;
            grant_membership(connection, owner, name)
        }
        Some(Isolation::Schema) => {
            let schema = location
                .schema
                .as_deref()
                .ok_or_else(|| missing("schema"))?;
            grant_schema(connection, schema, location.role.as_deref(), name)
        }
        // The role gets what the tenant's own role gets. The registry's
        // superusers table pins its sessions to the tenant in
        // tenantctl.current_tenant, as the tenant role's are.
        Some(Isolation::Table) => {
            super::table::grant_table_role(connection, tables, tenant_id, name)
        }
        other => Err(TenantError::new(
            "create superuser",
            format!(
                "{} tenants have no database role to administer",
                other.map_or("unknown", Isolation::as_str)
            ),
        )),
    }
}

fn grant_membership(
    connection: &mut PgConnection,
    role: &str,
    name: &str,
) -> Result<(), TenantError> {
    execute(
        connection,
        &format!("grant {role} to {name}"),
        &format!("GRANT {} TO {}", quote_ident(role), quote_ident(name)),
    )
}

/// Grants everything on the schema and its objects, now and later. Later
/// objects are covered by default privileges of the connecting role and of
/// the schema's own role, the two roles that run its migrations.
fn grant_schema(
    connection: &mut PgConnection,
    schema: &str,
    schema_role: Option<&str>,
    name: &str,
) -> Result<(), TenantError> {
    let schema_ident = quote_ident(schema);
    let role = quote_ident(name);
    let mut sql = format!(
        "GRANT USAGE, CREATE ON SCHEMA {schema_ident} TO {role};\
         GRANT ALL ON ALL TABLES IN SCHEMA {schema_ident} TO {role};\
         GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema_ident} TO {role};\
         GRANT ALL ON ALL FUNCTIONS IN SCHEMA {schema_ident} TO {role};\
         ALTER ROLE {role} SET search_path = {};",
        quote_literal(schema)
    );
    let owners = std::iter::once(String::new())
        .chain(schema_role.map(|owner| format!(" FOR ROLE {}", quote_ident(owner))));
    for owner in owners {
        for kind in ["TABLES", "SEQUENCES", "FUNCTIONS"] {
            sql.push_str(&format!(
                "ALTER DEFAULT PRIVILEGES{owner} IN SCHEMA {schema_ident} GRANT ALL ON {kind} TO {role};"
            ));
        }
    }
    execute(
        connection,
        &format!("grant schema {schema} to {name}"),
        &sql,
    )?;
    // Membership in the schema's role lets the superuser alter and drop
    // the objects that role owns.
    match schema_role {
        Some(owner) => grant_membership(connection, owner, name),
        None => Ok(()),
    }
}
