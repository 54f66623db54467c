//! The notes of `plan --refresh`: where a tenant's own record of its
//! migrations disagrees with the registry's.
//!
//! A database tenant's migrations commit inside its database, and the
//! registry records them afterwards, so the two records can part: after a
//! crash between the two, or when someone edits either. A schema tenant's
//! migrations commit in one transaction with the registry's record, so its
//! only check is that the schema still exists.

use std::collections::HashSet;

use crate::migrations::MigrationSet;
use crate::state::local::LocalRecords;

/// The migration records of one database tenant, as the diff compares them.
pub struct DatabaseRecords<'a> {
    pub tenant: &'a str,
    pub database: &'a str,
    pub set: Option<&'a MigrationSet>,
    /// (version, checksum) the registry records.
    pub recorded: &'a [(String, String)],
    /// `tenantctl.migrations` of the tenant's database.
    pub local: &'a LocalRecords,
    /// Names of the migrations the plan runs. Apply records those the
    /// database's table lists without running them again.
    pub pending: &'a [String],
}

/// Returns one note per version that only one of the two records lists.
pub fn database_notes(records: &DatabaseRecords<'_>) -> Vec<String> {
    let database = records.database;
    let local = match records.local {
        Ok(local) => local,
        Err(reason) => {
            return vec![format!(
                "cannot check tenantctl.migrations of database \"{database}\": {reason}"
            )];
        }
    };
    let recorded: HashSet<&str> = records.recorded.iter().map(|(v, _)| v.as_str()).collect();
    let in_database: HashSet<&str> = local.iter().map(|(v, _)| v.as_str()).collect();
    let mut notes: Vec<String> = local
        .iter()
        .filter(|(version, _)| !recorded.contains(version.as_str()))
        .map(|(version, _)| unrecorded_note(records, version))
        .collect();
    notes.extend(
        records
            .recorded
            .iter()
            .filter(|(version, _)| !in_database.contains(version.as_str()))
            .map(|(version, _)| {
                format!(
                    "drift: the registry records migration {version} for tenant \"{}\", but tenantctl.migrations of database \"{database}\" lacks it; apply does not run it again (delete its row from tenantctl.tenant_migrations in the control database to run it on the next apply)",
                    records.tenant
                )
            }),
    );
    notes
}

/// Describes a version the database's table lists and the registry lacks.
fn unrecorded_note(records: &DatabaseRecords<'_>, version: &str) -> String {
    let found = format!(
        "migration {version} is in tenantctl.migrations of database \"{}\"",
        records.database
    );
    match records.set.and_then(|set| set.get(version)) {
        Some(migration) if records.pending.contains(&migration.name) => {
            format!("{found} but not in the registry; apply records it without running it again")
        }
        Some(_) => format!(
            "{found} but not in the registry; apply records it when it runs the tenant's migrations"
        ),
        // The folder is not named: its path depends on how the spec was
        // given, and a saved plan must read the same on apply.
        None => format!(
            "{found} but neither in the registry nor among the tenant's migrations; apply leaves it as it is"
        ),
    }
}

/// Returns the note for a schema tenant whose schema is gone while the
/// registry still records migrations for it, which apply cannot run again.
pub fn schema_note(tenant: &str, schema: &str, exists: bool, recorded: i64) -> Option<String> {
    if recorded == 0 || exists {
        return None;
    }
    Some(format!(
        "drift: the registry records {recorded} migrations for tenant \"{tenant}\", but schema \"{schema}\" does not exist; apply creates it empty and does not run them again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(versions: &[&str]) -> Vec<(String, String)> {
        versions
            .iter()
            .map(|version| (version.to_string(), format!("sum-{version}")))
            .collect()
    }

    fn notes(recorded: &[&str], local: LocalRecords) -> Vec<String> {
        database_notes(&DatabaseRecords {
            tenant: "acme",
            database: "acme_db",
            set: None,
            recorded: &pairs(recorded),
            local: &local,
            pending: &[],
        })
    }

    #[test]
    fn agreeing_records_have_no_notes() {
        assert!(notes(&["1", "2"], Ok(pairs(&["1", "2"]))).is_empty());
        assert!(notes(&[], Ok(Vec::new())).is_empty());
    }

    #[test]
    fn each_side_reports_what_the_other_lacks() {
        let found = notes(&["1", "2"], Ok(pairs(&["1", "3"])));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("migration 3 is in tenantctl.migrations of database \"acme_db\" but neither in the registry"));
        assert!(found[1].starts_with(
            "drift: the registry records migration 2 for tenant \"acme\", but tenantctl.migrations of database \"acme_db\" lacks it"
        ));
    }

    #[test]
    fn unreadable_table_is_one_note() {
        let found = notes(&["1"], Err("cannot connect: refused".to_string()));
        assert_eq!(
            found,
            ["cannot check tenantctl.migrations of database \"acme_db\": cannot connect: refused"]
        );
    }

    #[test]
    fn missing_schema_with_records_is_drift() {
        assert!(schema_note("acme", "acme", true, 3).is_none());
        assert!(schema_note("acme", "acme", false, 0).is_none());
        let note = schema_note("acme", "acme_s", false, 3).unwrap();
        assert!(note.contains("schema \"acme_s\" does not exist"), "{note}");
    }
}
