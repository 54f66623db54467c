//! The PostgreSQL server under test, reached through `psql`: statements,
//! CHECKPOINT, facts about the server, and the removal of every database
//! and role the benchmark created.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// A server and the name prefix of everything this run creates on it.
pub struct Server {
    /// `postgres://USER@HOST:PORT`, without a database.
    pub url: String,
    pub prefix: String,
}

impl Server {
    /// Returns the URL of one database of the server.
    pub fn database_url(&self, database: &str) -> String {
        format!("{}/{database}", self.url.trim_end_matches('/'))
    }

    /// Runs one statement in a database and returns psql's unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = Command::new("psql")
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.database_url(database))
            .arg("-c")
            .arg(sql)
            .output()
            .map_err(|error| format!("cannot run psql: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "psql failed on `{sql}` in {database}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Runs an SQL file in one psql session and returns its wall time in
    /// seconds.
    pub fn psql_file(&self, database: &str, file: &Path) -> Result<f64, String> {
        let started = Instant::now();
        let output = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.database_url(database))
            .arg("-f")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| format!("cannot run psql: {error}"))?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "psql failed on {} in {database}: {}",
                file.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(seconds)
    }

    /// Creates an empty database whose name starts with the prefix.
    pub fn create_database(&self, name: &str) -> Result<(), String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))
            .map(|_| ())
    }

    /// Drops one database, ending the sessions connected to it.
    pub fn drop_database(&self, name: &str) -> Result<(), String> {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .map(|_| ())
    }

    /// Writes every dirty buffer to disk and flushes the file system, so a
    /// timed phase does not pay for the previous one's writes.
    pub fn checkpoint(&self) -> Result<(), String> {
        self.psql("postgres", "CHECKPOINT")?;
        // A CHECKPOINT leaves the file system's own writes, such as the
        // blocks freed by the databases dropped before, to the next step.
        let synced = std::process::Command::new("sync")
            .status()
            .map_err(|error| format!("cannot run sync: {error}"))?;
        if synced.success() {
            Ok(())
        } else {
            Err(format!("sync failed ({synced})"))
        }
    }

    /// Returns the server's version string.
    pub fn version(&self) -> Result<String, String> {
        self.psql("postgres", "SHOW server_version")
    }

    /// Drops the databases, then the roles, whose names start with `start`
    /// (which itself starts with the run's prefix).
    pub fn drop_matching(&self, start: &str) {
        assert!(
            start.starts_with(&self.prefix),
            "only the run's own objects"
        );
        let pattern = format!("'{}'", start.replace('\'', "''"));
        let databases = self
            .psql(
                "postgres",
                &format!("SELECT datname FROM pg_database WHERE starts_with(datname, {pattern})"),
            )
            .unwrap_or_default();
        for database in databases.lines().filter(|line| !line.is_empty()) {
            if let Err(error) = self.drop_database(database) {
                eprintln!("cleanup: {error}");
            }
        }
        let roles = self
            .psql(
                "postgres",
                &format!("SELECT rolname FROM pg_roles WHERE starts_with(rolname, {pattern})"),
            )
            .unwrap_or_default();
        for role in roles.lines().filter(|line| !line.is_empty()) {
            let dropped = self
                .psql("postgres", &format!("DROP OWNED BY \"{role}\""))
                .and_then(|_| self.psql("postgres", &format!("DROP ROLE IF EXISTS \"{role}\"")));
            if let Err(error) = dropped {
                eprintln!("cleanup: {error}");
            }
        }
    }
}

/// Removes everything the run created when dropped, also after a panic.
pub struct Cleanup<'a>(pub &'a Server);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        eprintln!("Removing the databases and roles named {}*", self.0.prefix);
        self.0.drop_matching(&self.0.prefix);
    }
}

/// Describes the machine: cores, memory and load.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.1} GiB memory",
        memory_kb as f64 / 1024.0 / 1024.0
    )
}

/// Returns the 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_string())
}
