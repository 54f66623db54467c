//! The row-level security policy of the shared tables of table tenants: the
//! SQL that creates it and the text PostgreSQL shows for it, so plan can tell
//! a correct policy from a changed one.
//!
//! The policy compares the tenant column with `tenantctl.current_tenant`,
//! a function of the registry (see its migration). It returns the value of
//! the tenant setting, or NULL when the setting is unset or empty, so a
//! session that sets nothing sees no rows and cannot insert any. A tenant's
//! login role could change the setting with `SET`, because PostgreSQL lets
//! every session set a custom setting, so for a session whose login role
//! belongs to a table tenant the function returns the setting only when it
//! names that tenant.

use crate::sql::{quote_ident, quote_literal};

/// Name of the policy tenantctl creates on every shared table.
pub const POLICY_NAME: &str = "tenantctl_tenant_isolation";

/// A shared table's tenant column as plan reads it from the catalog.
#[derive(Debug, Clone)]
pub struct TenantColumn {
    /// The column name as `quote_ident` writes it on the server.
    pub quoted: String,
    /// Whether the column is of type `text`; other types are cast to text.
    pub is_text: bool,
}

/// Returns the condition of the policy's USING and WITH CHECK clauses.
fn condition(column: &str, setting: &str) -> String {
    format!(
        "{}::text = (SELECT tenantctl.current_tenant({}))",
        quote_ident(column),
        quote_literal(setting)
    )
}

/// Returns the SQL that enables and forces row-level security on a table
/// and replaces its tenant policy, in one batch. FORCE makes the policy
/// apply to the table owner too; only superusers and BYPASSRLS roles skip it.
pub fn secure_table_sql(schema: &str, table: &str, column: &str, setting: &str) -> String {
    let table = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let policy = quote_ident(POLICY_NAME);
    let condition = condition(column, setting);
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\
         DROP POLICY IF EXISTS {policy} ON {table};\
         CREATE POLICY {policy} ON {table} AS PERMISSIVE FOR ALL TO PUBLIC \
         USING ({condition}) WITH CHECK ({condition});"
    )
}

/// Returns the condition as `pg_get_expr` shows it on PostgreSQL 15: the
/// cast of a text column disappears, and the sub-select gets an alias.
pub fn expected_expression(column: &TenantColumn, setting: &str) -> String {
    let column = if column.is_text {
        column.quoted.clone()
    } else {
        format!("({})::text", column.quoted)
    };
    format!(
        "({column} = ( SELECT tenantctl.current_tenant({}::text) AS current_tenant))",
        quote_literal(setting)
    )
}

/// Compares two expressions, ignoring differences in white space.
pub fn same_expression(left: &str, right: &str) -> bool {
    let squeeze = |text: &str| text.split_whitespace().collect::<String>();
    squeeze(left) == squeeze(right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_sql_quotes_names() {
        let sql = secure_table_sql("app", "order\"s", "tenant_id", "app.tenant_id");
        assert!(sql.contains("ALTER TABLE \"app\".\"order\"\"s\" FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains(
            "USING (\"tenant_id\"::text = (SELECT tenantctl.current_tenant('app.tenant_id')))"
        ));
        assert!(sql.contains("WITH CHECK (\"tenant_id\"::text"));
    }

    #[test]
    fn expected_expression_casts_other_types() {
        let text = TenantColumn {
            quoted: "tenant_id".into(),
            is_text: true,
        };
        let varchar = TenantColumn {
            quoted: "tenant_id".into(),
            is_text: false,
        };
        assert_eq!(
            expected_expression(&text, "app.tenant_id"),
            "(tenant_id = ( SELECT tenantctl.current_tenant('app.tenant_id'::text) AS current_tenant))"
        );
        assert!(expected_expression(&varchar, "app.tenant_id").starts_with("((tenant_id)::text ="));
        assert!(same_expression("(a =  b)", "(a = b)"));
    }
}
