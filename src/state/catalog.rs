//! Bulk reads of PostgreSQL catalogs: a fixed number of queries per server,
//! whatever the number of tenants.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text};

use crate::error::{Error, Result};

/// A role as `pg_roles` shows it.
#[derive(Debug, Clone, QueryableByName)]
pub struct RoleInfo {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Bool)]
    pub superuser: bool,
    #[diesel(sql_type = Bool)]
    pub can_login: bool,
    #[diesel(sql_type = Bool)]
    pub bypass_rls: bool,
}

/// A schema and its owner and access list.
#[derive(Debug, Clone, QueryableByName)]
pub struct SchemaInfo {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub owner: String,
    /// Whether PUBLIC holds any privilege on the schema.
    #[diesel(sql_type = Bool)]
    pub public_access: bool,
    /// Privileges as `grantee=PRIVILEGE` (`PUBLIC` for everyone); group
    /// them with [`crate::state::tables::by_grantee`].
    #[diesel(sql_type = diesel::sql_types::Array<Text>)]
    pub grants: Vec<String>,
}

/// A database and its owner.
#[derive(Debug, Clone, QueryableByName)]
pub struct DatabaseInfo {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Text)]
    pub owner: String,
    /// Whether PUBLIC may connect. A NULL access list means the defaults,
    /// which let PUBLIC connect (PostgreSQL 15).
    #[diesel(sql_type = Bool)]
    pub public_connect: bool,
}

/// What the connecting role may do.
#[derive(Debug, Clone, QueryableByName)]
pub struct CurrentRole {
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Bool)]
    pub superuser: bool,
    #[diesel(sql_type = Bool)]
    pub create_role: bool,
    #[diesel(sql_type = Bool)]
    pub create_db: bool,
    #[diesel(sql_type = Bool)]
    pub bypass_rls: bool,
    /// Whether the role may read password verifiers in `pg_authid`.
    #[diesel(sql_type = Bool)]
    pub reads_authid: bool,
    /// Whether the role may create schemas in the current database.
    #[diesel(sql_type = Bool)]
    pub create_schema: bool,
}

#[derive(QueryableByName)]
struct Verifier {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Nullable<Text>)]
    password: Option<String>,
}

/// The catalogs of one server, as plan needs them.
#[derive(Debug)]
pub struct ServerCatalog {
    pub roles: HashMap<String, RoleInfo>,
    pub databases: HashMap<String, DatabaseInfo>,
    /// Password verifiers, when the connecting role may read them.
    pub verifiers: Option<HashMap<String, Option<String>>>,
    /// Members of each role: role name to the names of its members.
    pub members: HashMap<String, HashSet<String>>,
    /// The connecting role on this server.
    pub current: CurrentRole,
}

impl ServerCatalog {
    /// Whether the connecting role may act as the owner `owner`: it is
    /// superuser, is that role, or is a direct member of it (PostgreSQL 15
    /// lets members of the owning role grant and alter as the owner).
    pub fn acts_as(&self, owner: &str) -> bool {
        self.current.superuser
            || self.current.name == owner
            || self
                .members
                .get(owner)
                .is_some_and(|members| members.contains(&self.current.name))
    }
}

/// Schemas of the control database.
#[derive(Debug, Default)]
pub struct ControlCatalog {
    pub schemas: HashMap<String, SchemaInfo>,
    pub current: Option<CurrentRole>,
}

/// Reads roles, databases, memberships and (when allowed) verifiers of a server.
pub fn read_server(connection: &mut PgConnection) -> Result<ServerCatalog> {
    let roles: Vec<RoleInfo> = diesel::sql_query(
        "SELECT rolname::text AS name, rolsuper AS superuser, rolcanlogin AS can_login, \
         rolbypassrls AS bypass_rls FROM pg_roles",
    )
    .load(connection)
    .map_err(Error::query("cannot read pg_roles"))?;
    let databases: Vec<DatabaseInfo> = diesel::sql_query(
        "SELECT d.datname::text AS name, pg_get_userbyid(d.datdba)::text AS owner, \
         (d.datacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(d.datacl) a \
           WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT')) AS public_connect \
         FROM pg_database d",
    )
    .load(connection)
    .map_err(Error::query("cannot read pg_database"))?;
    let memberships: Vec<(String, String)> = diesel::sql_query(
        "SELECT r.rolname::text AS role_name, m.rolname::text AS member_name \
         FROM pg_auth_members am JOIN pg_roles r ON r.oid = am.roleid \
         JOIN pg_roles m ON m.oid = am.member",
    )
    .load::<Membership>(connection)
    .map_err(Error::query("cannot read pg_auth_members"))?
    .into_iter()
    .map(|row| (row.role_name, row.member_name))
    .collect();
    let can_read: bool = diesel::select(diesel::dsl::sql::<Bool>(
        "has_table_privilege('pg_authid', 'SELECT')",
    ))
    .get_result(connection)
    .map_err(Error::query("cannot check access to pg_authid"))?;
    let verifiers = if can_read {
        let rows: Vec<Verifier> = diesel::sql_query(
            "SELECT rolname::text AS name, rolpassword AS password FROM pg_authid",
        )
        .load(connection)
        .map_err(Error::query("cannot read pg_authid"))?;
        Some(
            rows.into_iter()
                .map(|row| (row.name, row.password))
                .collect(),
        )
    } else {
        None
    };
    let mut members: HashMap<String, HashSet<String>> = HashMap::new();
    for (role, member) in memberships {
        members.entry(role).or_default().insert(member);
    }
    let current = read_current_role(connection)?;
    Ok(ServerCatalog {
        roles: roles
            .into_iter()
            .map(|role| (role.name.clone(), role))
            .collect(),
        databases: databases
            .into_iter()
            .map(|database| (database.name.clone(), database))
            .collect(),
        verifiers,
        members,
        current,
    })
}

#[derive(QueryableByName)]
struct Membership {
    #[diesel(sql_type = Text)]
    role_name: String,
    #[diesel(sql_type = Text)]
    member_name: String,
}

/// Reads what the connecting role may do on the server it is connected to.
fn read_current_role(connection: &mut PgConnection) -> Result<CurrentRole> {
    diesel::sql_query(
        "SELECT rolname::text AS name, rolsuper AS superuser, rolcreaterole AS create_role, \
         rolcreatedb AS create_db, rolbypassrls AS bypass_rls, \
         has_table_privilege('pg_authid', 'SELECT') AS reads_authid, \
         has_database_privilege(current_database(), 'CREATE') AS create_schema \
         FROM pg_roles WHERE rolname = current_user",
    )
    .get_result(connection)
    .map_err(Error::query("cannot read the connecting role"))
}

/// Reads the schemas of the control database and the connecting role's rights.
pub fn read_control(connection: &mut PgConnection) -> Result<ControlCatalog> {
    let schemas: Vec<SchemaInfo> = diesel::sql_query(format!(
        "SELECT n.nspname::text AS name, pg_get_userbyid(n.nspowner)::text AS owner, \
         EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = 0) AS public_access, \
         {} AS grants FROM pg_namespace n",
        crate::state::tables::grants_of("n.nspacl")
    ))
    .load(connection)
    .map_err(Error::query("cannot read pg_namespace"))?;
    let current = read_current_role(connection)?;
    Ok(ControlCatalog {
        schemas: schemas
            .into_iter()
            .map(|schema| (schema.name.clone(), schema))
            .collect(),
        current: Some(current),
    })
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Reads the names of a server's databases.
pub fn database_names(connection: &mut PgConnection) -> Result<HashSet<String>> {
    let rows: Vec<Name> = diesel::sql_query("SELECT datname::text AS name FROM pg_database")
        .load(connection)
        .map_err(Error::query("cannot read pg_database"))?;
    Ok(rows.into_iter().map(|row| row.name).collect())
}

/// Returns which of `names` are schemas of the connected database, in one
/// query whatever the number of names.
pub fn existing_schemas(
    connection: &mut PgConnection,
    names: &[String],
) -> Result<HashSet<String>> {
    if names.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<Name> =
        diesel::sql_query("SELECT nspname::text AS name FROM pg_namespace WHERE nspname = ANY($1)")
            .bind::<diesel::sql_types::Array<Text>, _>(names)
            .load(connection)
            .map_err(Error::query("cannot read pg_namespace"))?;
    Ok(rows.into_iter().map(|row| row.name).collect())
}
