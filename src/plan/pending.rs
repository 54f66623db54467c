//! Compares a tenant's applied migrations, as the registry records them,
//! with its migration folder. Pure: no I/O.

use std::collections::HashSet;
use std::path::PathBuf;

use crate::migrations::{Migration, MigrationSet};

/// An applied migration whose file no longer matches what was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// The file's checksum differs from the recorded one.
    Changed {
        version: String,
        file: PathBuf,
        recorded: String,
        current: String,
    },
    /// The registry records the version, but the folder has no such migration.
    Missing { version: String, dir: PathBuf },
}

impl Drift {
    /// Describes the drift, naming the migration as `kind`, such as
    /// "migration" or "shared migration".
    pub fn describe(&self, kind: &str) -> String {
        match self {
            Drift::Changed {
                version,
                file,
                recorded,
                current,
            } => format!(
                "{kind} {version} was changed after it was applied: {} (checksum recorded {}, file now {})",
                file.display(),
                short(recorded),
                short(current)
            ),
            Drift::Missing { version, dir } => format!(
                "{kind} {version} is recorded as applied but is missing from {}",
                dir.display()
            ),
        }
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.describe("migration"))
    }
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

/// The migrations of a tenant's folder that are pending or conflict with its record.
#[derive(Debug)]
pub struct Comparison<'a> {
    /// Migrations not recorded as applied, in version order.
    pub pending: Vec<&'a Migration>,
    pub drift: Vec<Drift>,
}

/// Compares a tenant's record with its folder from bulk reads. `details` are
/// the applied pairs, read only when the recorded digest differed from the
/// folder's. Without them, a tenant with a record matches its folder.
pub fn compare_recorded<'a>(
    set: &'a MigrationSet,
    recorded: bool,
    details: Option<&[(String, String)]>,
) -> Comparison<'a> {
    match details {
        Some(applied) => compare(set, applied),
        None if recorded => Comparison {
            pending: Vec::new(),
            drift: Vec::new(),
        },
        None => compare(set, &[]),
    }
}

/// Compares the applied (version, checksum) pairs with the folder.
pub fn compare<'a>(set: &'a MigrationSet, applied: &[(String, String)]) -> Comparison<'a> {
    let mut drift = Vec::new();
    for (version, checksum) in applied {
        match set.get(version) {
            Some(migration) if &migration.checksum != checksum => drift.push(Drift::Changed {
                version: version.clone(),
                file: migration.path.join("up.sql"),
                recorded: checksum.clone(),
                current: migration.checksum.clone(),
            }),
            Some(_) => {}
            None => drift.push(Drift::Missing {
                version: version.clone(),
                dir: set.dir.clone(),
            }),
        }
    }
    let versions: HashSet<&str> = applied.iter().map(|(v, _)| v.as_str()).collect();
    let pending = set
        .migrations
        .iter()
        .filter(|migration| !versions.contains(migration.version.as_str()))
        .collect();
    Comparison { pending, drift }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dir: &std::path::Path, files: &[(&str, &str)]) -> MigrationSet {
        for (name, sql) in files {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
        }
        MigrationSet::load(dir).unwrap()
    }

    #[test]
    fn pending_changed_and_missing_found() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(dir.path(), &[("1_a", "select 1;"), ("2_b", "select 2;")]);
        let applied = vec![
            ("1".to_string(), "not-the-checksum".to_string()),
            ("0".to_string(), "gone".to_string()),
        ];
        let comparison = compare(&set, &applied);
        let pending: Vec<&str> = comparison.pending.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(pending, ["2_b"]);
        assert_eq!(comparison.drift.len(), 2);
        assert!(comparison.drift[0].to_string().contains("1_a/up.sql"));
        assert!(comparison.drift[1].to_string().contains("missing"));
    }
}
