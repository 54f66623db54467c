//! The work both contenders do: spec files and tenantctl runs on one side,
//! the same SQL in one psql session (the floor) on the other.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Password of every database tenant role, passed through the environment.
pub const PASSWORD_VARIABLE: &str = "BENCH_TENANT_PASSWORD";

/// One timed run of tenantctl.
#[derive(Debug, Clone)]
pub struct Run {
    pub seconds: f64,
    /// Peak resident set size of the tenantctl process, in KiB.
    pub peak_kib: u64,
    /// SQL statements tenantctl sent, as it reports with `-v`.
    pub statements: Option<u64>,
    pub stdout: String,
}

/// Runs tenantctl under `/usr/bin/time` against a control database.
pub fn tenantctl(
    binary: &Path,
    args: &[String],
    control_url: &str,
    scratch: &Path,
) -> Result<Run, String> {
    let time_file = scratch.join("time.out");
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&time_file)
        .arg(binary)
        .args(args)
        .arg("-v")
        .env("TENANTCTL_DATABASE_URL", control_url)
        .env(PASSWORD_VARIABLE, "bench-password")
        .env("NO_COLOR", "1")
        .env("CI", "true")
        .env_remove("RUST_LOG")
        .output()
        .map_err(|error| format!("cannot run /usr/bin/time {}: {error}", binary.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let tail: Vec<&str> = stdout.lines().rev().take(5).collect();
        return Err(format!(
            "tenantctl {} failed ({}):\n{}\n{}",
            args.join(" "),
            output.status,
            stderr.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    let peak_kib = std::fs::read_to_string(&time_file)
        .ok()
        .and_then(|text| {
            text.lines()
                .last()
                .and_then(|line| line.trim().parse().ok())
        })
        .ok_or_else(|| format!("cannot read the peak memory from {}", time_file.display()))?;
    Ok(Run {
        seconds,
        peak_kib,
        statements: statements_sent(&stderr),
        stdout,
    })
}

/// Finds `statements=N` in tenantctl's `-v` log.
fn statements_sent(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let rest = &line[line.find("statements=")? + "statements=".len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Checks the last line of an apply: every tenant created or changed, none
/// failed.
pub fn check_applied(run: &Run, expected: usize) -> Result<(), String> {
    let summary = run
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with("Apply complete:") || line.starts_with("No changes"))
        .unwrap_or("(no summary line)");
    let counts: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|number| number.parse().ok())
        .collect();
    match counts.as_slice() {
        [created, changed, 0, ..] if created + changed == expected => Ok(()),
        [] if expected == 0 && summary.starts_with("No changes") => Ok(()),
        _ => Err(format!(
            "expected {expected} tenants applied, got: {summary}"
        )),
    }
}

/// Checks the summary of `migrate`: `expected` tenants migrated, none
/// failed.
pub fn check_migrated(run: &Run, expected: usize) -> Result<(), String> {
    let summary = run
        .stdout
        .lines()
        .rev()
        .find(|line| line.starts_with("Migrated "))
        .unwrap_or("(no summary line)");
    let counts: Vec<usize> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|number| number.parse().ok())
        .collect();
    match counts.as_slice() {
        [migrated, _, 0, ..] if *migrated == expected => Ok(()),
        _ => Err(format!(
            "expected {expected} tenants migrated, got: {summary}"
        )),
    }
}

/// Migration folders: the ones tenants start with, and the same plus the
/// new ones that a later deploy brings.
pub struct Migrations {
    pub base: PathBuf,
    pub full: PathBuf,
    /// `up.sql` files of `base` and of the new migrations, in version order.
    pub base_sql: Vec<PathBuf>,
    pub next_sql: Vec<PathBuf>,
}

impl Migrations {
    /// Links the migrations of `dir` (and `next`) into `scratch/base` and
    /// `scratch/full`. Without `next`, the last migration of `dir` is the
    /// new one.
    pub fn prepare(dir: &Path, next: Option<&Path>, scratch: &Path) -> Result<Migrations, String> {
        let mut base = migration_folders(dir)?;
        let next = match next {
            Some(next) => migration_folders(next)?,
            None => base.pop().into_iter().collect(),
        };
        if base.is_empty() || next.is_empty() {
            return Err(format!(
                "{} needs at least two migrations (or pass --next)",
                dir.display()
            ));
        }
        let migrations = Migrations {
            base: scratch.join("base"),
            full: scratch.join("full"),
            base_sql: base.iter().map(|folder| folder.join("up.sql")).collect(),
            next_sql: next.iter().map(|folder| folder.join("up.sql")).collect(),
        };
        link_all(&base, &migrations.base)?;
        link_all(&base, &migrations.full)?;
        link_all(&next, &migrations.full)?;
        Ok(migrations)
    }

    pub fn count(&self) -> (usize, usize) {
        (self.base_sql.len(), self.next_sql.len())
    }
}

fn migration_folders(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read migration folder {}: {error}", dir.display()))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.join("up.sql").is_file())
        .collect();
    folders.sort();
    Ok(folders)
}

fn link_all(folders: &[PathBuf], into: &Path) -> Result<(), String> {
    std::fs::create_dir_all(into)
        .map_err(|error| format!("cannot create {}: {error}", into.display()))?;
    for folder in folders {
        let absolute = std::fs::canonicalize(folder)
            .map_err(|error| format!("cannot resolve {}: {error}", folder.display()))?;
        let name = folder.file_name().unwrap_or_default();
        std::os::unix::fs::symlink(&absolute, into.join(name))
            .map_err(|error| format!("cannot link {}: {error}", folder.display()))?;
    }
    Ok(())
}

/// Writes a spec of schema tenants with the given ids.
pub fn schema_spec(path: &Path, ids: &[String], migrations: &Path) -> Result<(), String> {
    let mut text = format!(
        "version = 1\n\n[defaults]\nisolation = \"schema\"\nmigrations = \"{}\"\n",
        migrations.display()
    );
    for id in ids {
        let _ = write!(
            text,
            "\n[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\n"
        );
    }
    write(path, &text)
}

/// Writes a spec of database tenants, each with its own `template` setting.
pub fn database_spec(
    path: &Path,
    tenants: &[(String, bool)],
    migrations: &Path,
) -> Result<(), String> {
    let mut text = format!(
        "version = 1\n\n[defaults]\nisolation = \"database\"\nmigrations = \"{}\"\n",
        migrations.display()
    );
    for (id, template) in tenants {
        let _ = write!(
            text,
            "\n[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\n\n[tenants.database]\nuser = \"{id}\"\npassword = {{ env = \"{PASSWORD_VARIABLE}\" }}\ntemplate = {template}\n"
        );
    }
    write(path, &text)
}

/// Writes the floor of schema tenants: per schema one transaction that runs
/// the migrations in it, after creating it when `create` is set.
pub fn floor_sql(
    path: &Path,
    ids: &[String],
    migrations: &[PathBuf],
    create: bool,
) -> Result<(), String> {
    let all = concatenate(migrations)?;
    let mut text = String::with_capacity(ids.len() * (all.len() + 100));
    for id in ids {
        text.push_str("BEGIN;\n");
        if create {
            let _ = writeln!(text, "CREATE SCHEMA {id};");
        }
        let _ = write!(text, "SET LOCAL search_path TO {id};\n{all}COMMIT;\n");
    }
    write(path, &text)
}

fn concatenate(files: &[PathBuf]) -> Result<String, String> {
    let mut all = String::new();
    for file in files {
        let sql = std::fs::read_to_string(file)
            .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        all.push_str(&sql);
        all.push('\n');
    }
    Ok(all)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|error| format!("cannot write {}: {error}", path.display()))
}
