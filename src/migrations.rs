//! A tenant application's migrations, read from a folder in diesel's layout:
//! one folder per migration named `VERSION_name`, holding `up.sql` and an
//! optional `metadata.toml` with `run_in_transaction = false`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One migration of a tenant application.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The folder name's part before the first `_`; migrations run in the
    /// byte order of their versions, as diesel runs them.
    pub version: String,
    /// The whole folder name.
    pub name: String,
    pub up_sql: String,
    /// SHA-256 of `up.sql`, hex-encoded.
    pub checksum: String,
    pub run_in_transaction: bool,
    pub path: PathBuf,
}

impl Migration {
    /// Returns the version and checksum, as the registry records them.
    pub fn version_and_checksum(&self) -> (String, String) {
        (self.version.clone(), self.checksum.clone())
    }
}

/// All migrations of one folder, sorted by version.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub migrations: Vec<Migration>,
    /// SHA-256 over every version and checksum: equal digests mean equal sets.
    pub digest: String,
}

/// A migration folder that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration folder `{0}` does not exist")]
    Missing(PathBuf),
    #[error("cannot read migration folder `{path}`: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("migration folder name `{0}` has no version: expected VERSION_name")]
    BadName(PathBuf),
    #[error("migration `{0}` has no up.sql")]
    MissingUp(PathBuf),
    #[error("migration `{path}` has an invalid metadata.toml: {reason}")]
    BadMetadata { path: PathBuf, reason: String },
    #[error("migrations `{first}` and `{second}` have the same version")]
    DuplicateVersion { first: String, second: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    run_in_transaction: Option<bool>,
}

impl MigrationSet {
    /// Reads every migration folder below `dir`.
    pub fn load(dir: &Path) -> Result<MigrationSet, MigrationError> {
        if !dir.is_dir() {
            return Err(MigrationError::Missing(dir.to_path_buf()));
        }
        let unreadable = |source| MigrationError::Unreadable {
            path: dir.to_path_buf(),
            source,
        };
        let mut migrations = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let entry = entry.map_err(unreadable)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            migrations.push(read_migration(&path, name)?);
        }
        migrations.sort_by(|left, right| left.version.cmp(&right.version));
        for pair in migrations.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrationError::DuplicateVersion {
                    first: pair[0].name.clone(),
                    second: pair[1].name.clone(),
                });
            }
        }
        let mut hasher = Sha256::new();
        for migration in &migrations {
            hasher.update(migration.version.as_bytes());
            hasher.update(b"\0");
            hasher.update(migration.checksum.as_bytes());
            hasher.update(b"\n");
        }
        Ok(MigrationSet {
            dir: dir.to_path_buf(),
            migrations,
            digest: hex::encode(hasher.finalize()),
        })
    }

    /// Finds a migration by version.
    pub fn get(&self, version: &str) -> Option<&Migration> {
        self.migrations
            .iter()
            .find(|migration| migration.version == version)
    }
}

fn read_migration(path: &Path, name: String) -> Result<Migration, MigrationError> {
    let version = match name.split_once('_') {
        Some((version, _)) if !version.is_empty() => version.to_string(),
        _ => return Err(MigrationError::BadName(path.to_path_buf())),
    };
    let up_path = path.join("up.sql");
    let up_sql = match std::fs::read_to_string(&up_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(MigrationError::MissingUp(path.to_path_buf()));
        }
        Err(source) => {
            return Err(MigrationError::Unreadable {
                path: up_path,
                source,
            });
        }
    };
    let run_in_transaction = read_metadata(path)?;
    Ok(Migration {
        version,
        name,
        checksum: checksum(&up_sql),
        up_sql,
        run_in_transaction,
        path: path.to_path_buf(),
    })
}

fn read_metadata(path: &Path) -> Result<bool, MigrationError> {
    let metadata_path = path.join("metadata.toml");
    let text = match std::fs::read_to_string(&metadata_path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(source) => {
            return Err(MigrationError::Unreadable {
                path: metadata_path,
                source,
            });
        }
    };
    let metadata: Metadata =
        toml::from_str(&text).map_err(|error| MigrationError::BadMetadata {
            path: path.to_path_buf(),
            reason: error.message().to_string(),
        })?;
    Ok(metadata.run_in_transaction.unwrap_or(true))
}

/// Returns the hex SHA-256 of a migration's SQL.
pub fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, sql: &str) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
    }

    #[test]
    fn migrations_sorted_by_version() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "2024-02-01-000000_second", "select 2;");
        write(dir.path(), "2024-01-01-000000_first", "select 1;");
        let set = MigrationSet::load(dir.path()).unwrap();
        let versions: Vec<_> = set.migrations.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(versions, ["2024-01-01-000000", "2024-02-01-000000"]);
    }

    #[test]
    fn metadata_disables_transaction() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "1_index",
            "create index concurrently i on t (c);",
        );
        std::fs::write(
            dir.path().join("1_index/metadata.toml"),
            "run_in_transaction = false\n",
        )
        .unwrap();
        let set = MigrationSet::load(dir.path()).unwrap();
        assert!(!set.migrations[0].run_in_transaction);
    }

    #[test]
    fn digest_changes_with_sql() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1_a", "select 1;");
        let before = MigrationSet::load(dir.path()).unwrap().digest;
        write(dir.path(), "1_a", "select 2;");
        let after = MigrationSet::load(dir.path()).unwrap().digest;
        assert_ne!(before, after);
    }

    #[test]
    fn missing_folder_reported() {
        let error = MigrationSet::load(Path::new("/nonexistent/tenantctl")).unwrap_err();
        assert!(matches!(error, MigrationError::Missing(_)));
    }
}
