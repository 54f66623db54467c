//! Helpers shared by the integration tests.
//!
//! `TestEnv` gives each test its own name prefix on the shared PostgreSQL and
//! Redis servers and removes everything carrying that prefix when dropped.
//! `PrivatePostgres` and `PrivateRedis` run throwaway servers for tests that
//! stop or restart one. All server access goes through the `psql` and
//! `redis-cli` binaries, so these helpers do not depend on the crate's code.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Address of the shared PostgreSQL 15 server (trust auth, superuser `postgres`).
pub const PG_HOST: &str = "127.0.0.1";
pub const PG_PORT: u16 = 5432;

/// Address of the shared Redis server.
pub const REDIS_HOST: &str = "127.0.0.1";
pub const REDIS_PORT: u16 = 6379;

/// Directory of the PostgreSQL 15 server binaries on Debian.
const PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Maximum time to wait for a private server to start or stop.
const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Maximum number of keys passed to one `UNLINK` call.
const UNLINK_BATCH: usize = 100;

static NEXT_ENV_NUMBER: AtomicU32 = AtomicU32::new(0);

/// A test's namespace on the shared servers: a name prefix, a control
/// database named `<prefix>ctl` and a temporary working directory.
///
/// Dropping it removes every PostgreSQL database and role and every Redis key
/// and ACL user whose name starts with the prefix, and nothing else.
pub struct TestEnv {
    prefix: String,
    control_db: String,
    dir: tempfile::TempDir,
}

impl TestEnv {
    /// Picks a fresh prefix and creates the control database.
    ///
    /// The prefix has the form `t<pid>_<counter>_<6 random letters>_`, uses
    /// only `[a-z0-9_]` and is at most 20 bytes while the counter is below
    /// 1000 (Linux process ids have at most 7 digits), so names built from it
    /// stay within PostgreSQL's 63-byte identifier limit.
    pub fn new() -> Self {
        let number = NEXT_ENV_NUMBER.fetch_add(1, Ordering::Relaxed);
        let prefix = format!(
            "t{}_{}_{}_",
            std::process::id(),
            number,
            random_letters(number, 6)
        );
        let control_db = format!("{prefix}ctl");
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir()
            .expect("failed to create the test's temporary directory");

        // The value exists before the database so that a panic in CREATE
        // DATABASE still runs the cleanup in Drop.
        let env = TestEnv {
            prefix,
            control_db,
            dir,
        };
        env.psql_db(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(&env.control_db)),
        );
        env
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Returns `name` with the test's prefix in front, for tenant ids, roles,
    /// databases and keys that the cleanup in Drop must find.
    pub fn id(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn control_db(&self) -> &str {
        &self.control_db
    }

    /// Returns the URL of the control database, connecting as `postgres`.
    pub fn database_url(&self) -> String {
        format!(
            "postgres://postgres@{PG_HOST}:{PG_PORT}/{}",
            self.control_db
        )
    }

    pub fn redis_url(&self) -> String {
        format!("redis://{REDIS_HOST}:{REDIS_PORT}/")
    }

    /// Returns the temporary directory that `cmd()` runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `contents` to `file_name` inside the temporary directory,
    /// creating parent directories, and returns the file's path.
    pub fn write_spec(&self, file_name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(file_name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("failed to create {}: {err}", parent.display()));
        }
        fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("failed to write {}: {err}", path.display()));
        path
    }

    /// Builds a command for the `tenantctl` binary that runs in the temporary
    /// directory against the control database.
    ///
    /// Every `TENANTCTL_*` variable of the test process is removed, so
    /// `TENANTCTL_REDIS_URL` is unset unless the test sets it.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"));
        for (name, _) in std::env::vars_os() {
            if name.as_bytes().starts_with(b"TENANTCTL_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("TENANTCTL_DATABASE_URL", self.database_url())
            .env("NO_COLOR", "1")
            .env("CI", "true")
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs `sql` in the control database and returns the trimmed output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db(&self.control_db, sql)
    }

    /// Runs `sql` in database `db` of the shared server and returns the
    /// trimmed output, one row a line with columns separated by `|`.
    ///
    /// Panics with psql's stderr if any statement fails.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        run_psql(PG_PORT, db, sql).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Runs `redis-cli` against the shared server with `args` and returns the
    /// trimmed output.
    ///
    /// `redis-cli` exits with 0 on an error reply and prints it (for example
    /// `ERR unknown command`), so the output is returned as it is. Panics only
    /// when `redis-cli` itself fails, for example when it cannot connect.
    pub fn redis(&self, args: &[&str]) -> String {
        run_redis_cli(REDIS_PORT, args).unwrap_or_else(|err| panic!("{err}"))
    }

    fn drop_databases(&self) {
        let query = format!(
            "SELECT datname FROM pg_database WHERE starts_with(datname, {}) ORDER BY datname",
            quote_literal(&self.prefix)
        );
        let databases = match run_psql(PG_PORT, "postgres", &query) {
            Ok(output) => output,
            Err(err) => {
                eprintln!("test cleanup: failed to list databases: {err}");
                return;
            }
        };
        for db in databases.lines().filter(|line| !line.is_empty()) {
            // WITH (FORCE) terminates the sessions connected to the database.
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db));
            if let Err(err) = run_psql(PG_PORT, "postgres", &sql) {
                eprintln!("test cleanup: failed to drop database {db}: {err}");
            }
        }
    }

    /// Drops the prefixed roles after the prefixed databases are gone, so
    /// `DROP OWNED BY` only has to run in the `postgres` database. Roles that
    /// fail are tried once more because one role can hold grants that block
    /// dropping another.
    fn drop_roles(&self) {
        let query = format!(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, {}) ORDER BY rolname",
            quote_literal(&self.prefix)
        );
        let roles = match run_psql(PG_PORT, "postgres", &query) {
            Ok(output) => output,
            Err(err) => {
                eprintln!("test cleanup: failed to list roles: {err}");
                return;
            }
        };
        let mut remaining: Vec<&str> = roles.lines().filter(|line| !line.is_empty()).collect();
        for attempt in 1..=2 {
            let mut failed = Vec::new();
            for role in remaining {
                let sql = format!(
                    "DROP OWNED BY {role_ident};\nDROP ROLE IF EXISTS {role_ident};",
                    role_ident = quote_ident(role)
                );
                if let Err(err) = run_psql(PG_PORT, "postgres", &sql) {
                    if attempt == 2 {
                        eprintln!("test cleanup: failed to drop role {role}: {err}");
                    }
                    failed.push(role);
                }
            }
            remaining = failed;
        }
    }

    fn drop_redis_acl_users(&self) {
        let users = match run_redis_cli(REDIS_PORT, &["ACL", "USERS"]) {
            Ok(output) => output,
            Err(err) => {
                eprintln!("test cleanup: failed to list Redis ACL users: {err}");
                return;
            }
        };
        for user in users.lines().filter(|user| user.starts_with(&self.prefix)) {
            match run_redis_cli(REDIS_PORT, &["ACL", "DELUSER", user]) {
                Ok(reply) if reply == "1" => {}
                Ok(reply) => eprintln!("test cleanup: ACL DELUSER {user} returned {reply:?}"),
                Err(err) => eprintln!("test cleanup: failed to delete ACL user {user}: {err}"),
            }
        }
    }

    /// Unlinks the keys named `<prefix>*` or `{<prefix>*` (the prefix inside
    /// a cluster hash tag) in every logical database that contains keys.
    fn drop_redis_keys(&self) {
        let databases = match redis_databases_with_keys(REDIS_PORT) {
            Ok(databases) => databases,
            Err(err) => {
                eprintln!("test cleanup: failed to list Redis databases: {err}");
                return;
            }
        };
        for db in databases {
            for pattern in [format!("{}*", self.prefix), format!("{{{}*", self.prefix)] {
                if let Err(err) = unlink_matching_keys(REDIS_PORT, db, &pattern) {
                    eprintln!(
                        "test cleanup: failed to unlink Redis keys {pattern} in db {db}: {err}"
                    );
                }
            }
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.drop_databases();
        self.drop_roles();
        self.drop_redis_acl_users();
        self.drop_redis_keys();
    }
}

/// A PostgreSQL 15 server in a temporary directory on a free port, for tests
/// that stop, restart or reconfigure a server.
///
/// It runs as the `postgres` OS user through `runuser`, so the tests must run
/// as root. It listens on 127.0.0.1 with trust auth for the superuser
/// `postgres`. Dropping it stops the server and removes the directory.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl PrivatePostgres {
    /// Creates a cluster with `initdb` and starts it.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-pg-")
            .tempdir()
            .expect("failed to create a temporary directory for PostgreSQL");
        run_checked(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()),
        )
        .unwrap_or_else(|err| panic!("{err}"));

        let mut server = PrivatePostgres {
            dir,
            port: 0,
            running: false,
        };
        let data_dir = server.data_dir();
        run_checked(
            server
                .postgres_command("initdb")
                .arg("-D")
                .arg(&data_dir)
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync"]),
        )
        .unwrap_or_else(|err| panic!("{err}"));

        // Another process can take the probed port before the server binds
        // it, so a failed start is retried on a new port.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("failed to start a private PostgreSQL server: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the URL of the `postgres` database, connecting as `postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Returns the path of the server log that `pg_ctl -l` writes.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Runs `sql` in database `db` of this server and returns the trimmed
    /// output. Panics with psql's stderr if any statement fails.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        run_psql(self.port, db, sql).unwrap_or_else(|err| panic!("{err}"))
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// Stops the server with the fast shutdown mode, which disconnects the
    /// clients. Does nothing if it is stopped.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.pg_ctl_stop("fast")
            .unwrap_or_else(|err| panic!("{err}"));
        self.running = false;
    }

    /// Starts the stopped server again on the same port. Does nothing if it
    /// is running.
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        self.try_start().unwrap_or_else(|err| panic!("{err}"));
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Sets `key` with `ALTER SYSTEM`, reloads the configuration and waits
    /// until new sessions see the reload.
    ///
    /// Settings that take effect only at server start also need `restart()`.
    pub fn set_config(&self, key: &str, value: &str) {
        assert!(
            !key.is_empty()
                && key.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || b == b'.'),
            "invalid configuration parameter name {key:?}"
        );
        let loaded_before = self.psql("SELECT pg_conf_load_time()");
        self.psql(&format!(
            "ALTER SYSTEM SET {key} = {}",
            quote_literal(value)
        ));
        self.psql("SELECT pg_reload_conf()");

        // pg_reload_conf() only signals the postmaster. Each new backend
        // inherits the postmaster's load time, which changes once the
        // postmaster has reread the configuration files.
        let check = format!(
            "SELECT pg_conf_load_time() > {}::timestamptz",
            quote_literal(&loaded_before)
        );
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while self.psql(&check) != "t" {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on port {} did not reload its configuration within {SERVER_TIMEOUT:?}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn postgres_command(&self, program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN_DIR).join(program))
            // The postgres user may not be able to read the test's current
            // directory, and initdb and pg_ctl fail there.
            .current_dir(self.dir.path());
        cmd
    }

    fn try_start(&mut self) -> Result<(), String> {
        let server_options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let result = run_checked(
            self.postgres_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .arg("-o")
                .arg(server_options)
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "start"]),
        );
        match result {
            Ok(_) => {
                self.running = true;
                Ok(())
            }
            Err(err) => {
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                Err(format!("{err}\nserver log:\n{log}"))
            }
        }
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<(), String> {
        run_checked(
            self.postgres_command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", mode, "-w", "-t", "60", "stop"]),
        )
        .map(|_| ())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            // The data is thrown away, so the server need not shut down cleanly.
            if let Err(err) = self.pg_ctl_stop("immediate") {
                eprintln!(
                    "test cleanup: failed to stop PostgreSQL on port {}: {err}",
                    self.port
                );
            }
        }
    }
}

/// A Redis server on a free port that keeps nothing on disk, for tests that
/// stop or restart one. Dropping it shuts the server down.
pub struct PrivateRedis {
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tenantctl-redis-")
            .tempdir()
            .expect("failed to create a temporary directory for Redis");
        let mut server = PrivateRedis {
            dir,
            port: 0,
            running: false,
        };

        // As for PostgreSQL, the probed port can be taken before the server
        // binds it.
        let mut last_error = String::new();
        for _ in 0..3 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => return server,
                Err(err) => last_error = err,
            }
        }
        panic!("failed to start a private Redis server: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Runs `redis-cli` against this server, like `TestEnv::redis`.
    pub fn redis(&self, args: &[&str]) -> String {
        run_redis_cli(self.port, args).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Shuts the server down without saving and waits until the port refuses
    /// connections. Does nothing if it is stopped.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.shutdown().unwrap_or_else(|err| panic!("{err}"));
        self.running = false;
    }

    /// Starts the stopped server again on the same port, with no keys. Does
    /// nothing if it is running.
    pub fn start_again(&mut self) {
        if self.running {
            return;
        }
        self.try_start().unwrap_or_else(|err| panic!("{err}"));
    }

    fn try_start(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        run_checked(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--daemonize", "yes"])
                .arg("--pidfile")
                .arg(dir.join("redis.pid"))
                .arg("--logfile")
                .arg(self.log_path())
                .arg("--dir")
                .arg(dir),
        )?;

        // With --daemonize the command returns before the server binds the
        // port. The reply to CONFIG GET dir distinguishes this server from
        // another one that took the port.
        let expected = format!("dir\n{}", dir.display());
        let deadline = Instant::now() + SERVER_TIMEOUT;
        loop {
            if let Ok(reply) = run_redis_cli(self.port, &["CONFIG", "GET", "dir"]) {
                if reply == expected {
                    self.running = true;
                    return Ok(());
                }
                return Err(format!(
                    "another server answers on port {}: CONFIG GET dir returned {reply:?}",
                    self.port
                ));
            }
            if Instant::now() >= deadline {
                let log = fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!(
                    "Redis on port {} did not answer within {SERVER_TIMEOUT:?}\nserver log:\n{log}",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn shutdown(&self) -> Result<(), String> {
        run_redis_cli(self.port, &["SHUTDOWN", "NOSAVE"])?;
        let deadline = Instant::now() + SERVER_TIMEOUT;
        while run_redis_cli(self.port, &["PING"]).is_ok() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "Redis on port {} still answers {SERVER_TIMEOUT:?} after SHUTDOWN",
                    self.port
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if self.running
            && let Err(err) = self.shutdown()
        {
            eprintln!(
                "test cleanup: failed to stop Redis on port {}: {err}",
                self.port
            );
        }
    }
}

/// What a finished command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    /// The exit code, or -1 when a signal ended the process.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Returns stdout and stderr together, for checks that a value never
    /// appears in either.
    pub fn both(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs a command to its end and returns its exit code and output.
pub fn run(cmd: &mut assert_cmd::Command) -> CmdOutput {
    let output = cmd.output().expect("failed to run the command");
    CmdOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Copies the folders and files below `from` into `to`, creating `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|err| panic!("failed to create {}: {err}", to.display()));
    let entries =
        fs::read_dir(from).unwrap_or_else(|err| panic!("failed to read {}: {err}", from.display()));
    for entry in entries {
        let entry = entry.expect("failed to read a directory entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|err| panic!("failed to copy {}: {err}", entry.path().display()));
        }
    }
}

/// Returns the folder of the shared benchmark inputs, which CI places
/// beside the repository (`../shared/bench`), or None when it is absent.
pub fn shared_bench_dir() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = repo.parent()?.join("shared").join("bench");
    dir.is_dir().then_some(dir)
}

/// Runs statements in one session of `database` as `role`, over TCP.
/// Returns the output, or psql's error when a statement fails.
pub fn psql_as(role: &str, database: &str, statements: &[&str]) -> Result<String, String> {
    let mut command = Command::new("psql");
    command
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", "5432", "-U", role, "-d", database])
        .env("PGCONNECT_TIMEOUT", "10");
    for statement in statements {
        command.args(["-c", statement]);
    }
    let output = command.output().expect("psql runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a PostgreSQL string literal (with standard_conforming_strings on,
/// the default since PostgreSQL 9.1).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Returns `count` lowercase letters from a hash of the time, the process id
/// and `number`, keyed by the random keys of `RandomState`.
fn random_letters(number: u32, count: usize) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u32(number);
    let mut bits = hasher.finish();
    (0..count)
        .map(|_| {
            let letter = char::from(b'a' + (bits % 26) as u8);
            bits /= 26;
            letter
        })
        .collect()
}

/// Returns a TCP port on 127.0.0.1 that was free when probed.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("failed to find a free TCP port on 127.0.0.1")
}

/// Runs `sql` with psql as `postgres` in database `db` on 127.0.0.1:`port`.
///
/// The SQL goes through stdin, so each statement runs on its own and
/// statements such as CREATE DATABASE, which cannot run inside a transaction
/// block, work in a script.
fn run_psql(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let mut child = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", db, "-f", "-"])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("failed to run psql: {err}"))?;

    // A separate thread writes stdin so that a large script cannot block
    // while psql waits for its output to be read.
    let mut stdin = child.stdin.take().expect("psql stdin is piped");
    let script = sql.to_owned();
    let writer = thread::spawn(move || stdin.write_all(script.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|err| format!("failed to wait for psql: {err}"))?;
    let write_result = writer.join().expect("psql stdin writer panicked");

    if !output.status.success() {
        return Err(format!(
            "psql on port {port}, database {db} failed ({}):\n{}\nSQL:\n{sql}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    write_result.map_err(|err| format!("failed to write SQL to psql: {err}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn run_redis_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let output = run_checked(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
    )?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Returns the numbers of the logical databases that hold keys, read from
/// `INFO keyspace` lines such as `db0:keys=1,expires=0,avg_ttl=0`.
fn redis_databases_with_keys(port: u16) -> Result<Vec<u32>, String> {
    let info = run_redis_cli(port, &["INFO", "keyspace"])?;
    Ok(info
        .lines()
        .filter_map(|line| line.strip_prefix("db")?.split(':').next()?.parse().ok())
        .collect())
}

/// Unlinks the keys of database `db` that match `pattern`, found with SCAN.
///
/// NOTE: `redis-cli --scan` prints one key per line, so a key containing a
/// newline is not found.
fn unlink_matching_keys(port: u16, db: u32, pattern: &str) -> Result<(), String> {
    let port = port.to_string();
    let db = db.to_string();
    let scan = run_checked(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "-n", &db])
            .args(["--scan", "--pattern", pattern]),
    )?;
    // Keys are binary-safe, so they are passed on as raw bytes.
    let keys: Vec<&OsStr> = scan
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|key| !key.is_empty())
        .map(OsStr::from_bytes)
        .collect();
    for batch in keys.chunks(UNLINK_BATCH) {
        run_checked(
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port, "-n", &db, "UNLINK"])
                .args(batch),
        )?;
    }
    Ok(())
}

/// Runs `cmd` and returns its output, or an error with its stderr if it
/// cannot start or exits with a failure status.
fn run_checked(cmd: &mut Command) -> Result<Output, String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("failed to run {cmd:?}: {err}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}
