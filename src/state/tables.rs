//! Bulk reads of the shared tables of table tenants: tables, policies,
//! privileges and role settings, in a fixed number of queries.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Nullable, Text};

use crate::error::{Error, Result};
use crate::rls::TenantColumn;
use crate::spec::desired::TablesTarget;
use crate::state::registry;

/// A table of the shared schema.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    pub owner: String,
    pub row_security: bool,
    pub force_row_security: bool,
    /// The tenant column, when the table has one.
    pub column: Option<TenantColumn>,
    /// Privileges by grantee (`PUBLIC` for everyone), such as `SELECT`.
    pub grants: BTreeMap<String, Vec<String>>,
    /// Sequences the table's columns own (serial and identity columns).
    pub sequence_count: usize,
    /// Privileges on those sequences, as `grantee=PRIVILEGE` texts, one
    /// per sequence and privilege.
    pub sequence_grants: Vec<String>,
}

/// A row-level security policy on a shared table.
#[derive(Debug, Clone, QueryableByName)]
pub struct PolicyInfo {
    #[diesel(sql_type = Text)]
    pub table_name: String,
    #[diesel(sql_type = Text)]
    pub name: String,
    #[diesel(sql_type = Bool)]
    pub permissive: bool,
    /// `*` for all commands, else `r`, `a`, `w` or `d`.
    #[diesel(sql_type = Text)]
    pub command: String,
    #[diesel(sql_type = Bool)]
    pub to_public: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub using_expression: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub check_expression: Option<String>,
}

/// The actual state of the shared tables.
#[derive(Debug, Default)]
pub struct SharedState {
    pub schema_exists: bool,
    /// Privileges on the shared schema by grantee.
    pub schema_grants: BTreeMap<String, Vec<String>>,
    pub tables: Vec<TableInfo>,
    pub policies: Vec<PolicyInfo>,
    /// Role-wide settings (`ALTER ROLE ... SET`) by role, as `name=value`.
    pub role_settings: HashMap<String, Vec<String>>,
    /// Applied shared migrations (version, checksum).
    pub applied: Vec<(String, String)>,
    /// Whether the connecting role may set the tenant setting, which
    /// `ALTER ROLE ... SET` of a custom setting needs in PostgreSQL 15:
    /// superusers may, other roles after `GRANT SET ON PARAMETER`.
    pub may_set_setting: bool,
}

impl SharedState {
    pub fn policy(&self, table: &str, name: &str) -> Option<&PolicyInfo> {
        self.policies
            .iter()
            .find(|policy| policy.table_name == table && policy.name == name)
    }
}

#[derive(QueryableByName)]
struct TableRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Bool)]
    row_security: bool,
    #[diesel(sql_type = Bool)]
    force_row_security: bool,
    #[diesel(sql_type = Nullable<Text>)]
    column_quoted: Option<String>,
    #[diesel(sql_type = Bool)]
    column_is_text: bool,
    #[diesel(sql_type = Array<Text>)]
    grants: Vec<String>,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    sequence_count: i32,
    #[diesel(sql_type = Array<Text>)]
    sequence_grants: Vec<String>,
}

#[derive(QueryableByName)]
struct SchemaRow {
    #[diesel(sql_type = Array<Text>)]
    grants: Vec<String>,
}

#[derive(QueryableByName)]
struct RoleSettingRow {
    #[diesel(sql_type = Text)]
    role_name: String,
    #[diesel(sql_type = Array<Text>)]
    settings: Vec<String>,
}

/// Returns the SQL that lists an ACL column as `grantee=PRIVILEGE` texts,
/// with PUBLIC for grantee 0.
pub fn grants_of(acl_column: &str) -> String {
    format!(
        "ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
         ELSE pg_get_userbyid(a.grantee)::text END || '=' || a.privilege_type \
         FROM aclexplode({acl_column}) a)"
    )
}

/// Condition on `pg_depend d` and `pg_class s` that selects the sequences
/// the columns of table `c` own.
const OWNED_SEQUENCE: &str = "s.oid = d.objid AND d.classid = 'pg_class'::regclass \
     AND d.refclassid = 'pg_class'::regclass AND d.refobjid = c.oid \
     AND d.deptype IN ('a', 'i') AND s.relkind = 'S'";

/// Reads the shared schema, its tables and policies, role settings and the
/// applied shared migrations in a fixed number of queries.
pub fn read(connection: &mut PgConnection, target: &TablesTarget) -> Result<SharedState> {
    let schema: Vec<SchemaRow> = diesel::sql_query(format!(
        "SELECT {} AS grants FROM pg_namespace n WHERE n.nspname = $1",
        grants_of("n.nspacl")
    ))
    .bind::<Text, _>(&target.schema)
    .load(connection)
    .map_err(Error::query("cannot read the shared tables schema"))?;
    let tables: Vec<TableRow> = diesel::sql_query(format!(
        "SELECT c.relname::text AS name, pg_get_userbyid(c.relowner)::text AS owner, \
         c.relrowsecurity AS row_security, c.relforcerowsecurity AS force_row_security, \
         quote_ident(t.attname) AS column_quoted, \
         COALESCE(t.atttypid = 'text'::regtype, false) AS column_is_text, {} AS grants, \
         (SELECT count(*)::int FROM pg_depend d, pg_class s WHERE {OWNED_SEQUENCE}) \
           AS sequence_count, \
         ARRAY(SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
           ELSE pg_get_userbyid(a.grantee)::text END || '=' || a.privilege_type \
           FROM pg_depend d, pg_class s, aclexplode(s.relacl) a WHERE {OWNED_SEQUENCE}) \
           AS sequence_grants \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attribute t ON t.attrelid = c.oid AND t.attname = $2 \
           AND t.attnum > 0 AND NOT t.attisdropped \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        grants_of("c.relacl")
    ))
    .bind::<Text, _>(&target.schema)
    .bind::<Text, _>(&target.column)
    .load(connection)
    .map_err(Error::query("cannot read the shared tables"))?;
    let policies = read_policies(connection, &target.schema)?;
    let settings: Vec<RoleSettingRow> = diesel::sql_query(
        "SELECT r.rolname::text AS role_name, s.setconfig AS settings \
         FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole \
         WHERE s.setdatabase = 0 AND s.setconfig IS NOT NULL",
    )
    .load(connection)
    .map_err(Error::query(
        "cannot read role settings (pg_db_role_setting)",
    ))?;
    let applied = registry::shared_applied(connection, &target.schema)?;
    let may_set_setting: bool = diesel::select(
        diesel::dsl::sql::<Bool>("has_parameter_privilege(")
            .bind::<Text, _>(&target.setting)
            .sql(", 'SET')"),
    )
    .get_result(connection)
    .map_err(Error::query(
        "cannot check the privilege to set the tenant setting",
    ))?;

    Ok(SharedState {
        schema_exists: !schema.is_empty(),
        schema_grants: schema
            .into_iter()
            .next()
            .map(|row| by_grantee(row.grants))
            .unwrap_or_default(),
        tables: tables.into_iter().map(table_info).collect(),
        policies,
        role_settings: settings
            .into_iter()
            .map(|row| (row.role_name, row.settings))
            .collect(),
        applied,
        may_set_setting,
    })
}

/// Reads the policies of the shared schema's tables. `pg_get_expr` leaves
/// out the schema of a function that `search_path` finds, so the query runs
/// with `search_path` set to `pg_catalog` alone: the text then names
/// `tenantctl.current_tenant` in full whatever the connection's settings.
fn read_policies(connection: &mut PgConnection, schema: &str) -> Result<Vec<PolicyInfo>> {
    connection
        .transaction(|connection| {
            diesel::sql_query("SET LOCAL search_path TO pg_catalog").execute(connection)?;
            diesel::sql_query(
                "SELECT c.relname::text AS table_name, p.polname::text AS name, \
                 p.polpermissive AS permissive, p.polcmd::text AS command, \
                 p.polroles = '{0}'::oid[] AS to_public, \
                 pg_get_expr(p.polqual, p.polrelid) AS using_expression, \
                 pg_get_expr(p.polwithcheck, p.polrelid) AS check_expression \
                 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            )
            .bind::<Text, _>(schema)
            .load(connection)
        })
        .map_err(Error::query(
            "cannot read the policies of the shared tables",
        ))
}

fn table_info(row: TableRow) -> TableInfo {
    TableInfo {
        name: row.name,
        owner: row.owner,
        row_security: row.row_security,
        force_row_security: row.force_row_security,
        column: row.column_quoted.map(|quoted| TenantColumn {
            quoted,
            is_text: row.column_is_text,
        }),
        grants: by_grantee(row.grants),
        sequence_count: usize::try_from(row.sequence_count).unwrap_or(0),
        sequence_grants: row.sequence_grants,
    }
}

/// Groups `grantee=PRIVILEGE` texts by grantee, privileges sorted.
pub fn by_grantee(grants: Vec<String>) -> BTreeMap<String, Vec<String>> {
    let mut grouped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for grant in grants {
        if let Some((grantee, privilege)) = grant.rsplit_once('=') {
            grouped
                .entry(grantee.to_string())
                .or_default()
                .push(privilege.to_string());
        }
    }
    for privileges in grouped.values_mut() {
        privileges.sort();
        privileges.dedup();
    }
    grouped
}
