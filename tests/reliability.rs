//! Reliability and security of apply against real servers: SIGKILL at random
//! moments, a server restarted mid-apply, concurrent runs, least privilege
//! and secrets.
//!
//! The crash test's long version runs with
//! `cargo test --test reliability -- --ignored crash_long`.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{PrivatePostgres, PrivateRedis, TestEnv, quote_ident, quote_literal};

/// Environment variable that carries the tenant passwords of these specs.
const PASSWORD_ENV: &str = "RELIABILITY_TENANT_PASSWORD";
const PASSWORD: &str = "Rel-pw-5c2e9a41";

/// Where the servers of one run are: the shared ones through a TestEnv, or a
/// private PostgreSQL server.
struct Target<'a> {
    env: &'a TestEnv,
    /// Port of the PostgreSQL server with the control database.
    port: u16,
    control_db: String,
    /// Value of PASSWORD_ENV for the commands.
    password: String,
    /// Port of the Redis server of cache tenants.
    redis_port: u16,
}

impl Target<'_> {
    fn shared(env: &TestEnv) -> Target<'_> {
        Target {
            env,
            port: support::PG_PORT,
            control_db: env.control_db().to_string(),
            password: PASSWORD.to_string(),
            redis_port: support::REDIS_PORT,
        }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port, self.control_db
        )
    }

    fn psql_db(&self, db: &str, sql: &str) -> String {
        psql(self.port, "postgres", db, sql)
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_db(&self.control_db, sql)
    }

    /// Builds a tenantctl command (not yet started) against this target.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"));
        command
            .args(args)
            .env("TENANTCTL_DATABASE_URL", self.url())
            .env(PASSWORD_ENV, &self.password)
            .env("NO_COLOR", "1")
            .env("CI", "true")
            .env(
                "TENANTCTL_REDIS_URL",
                format!("redis://127.0.0.1:{}/", self.redis_port),
            )
            .env_remove("RUST_LOG")
            .current_dir(self.env.dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("tenantctl runs")
    }
}

/// Runs SQL with psql as `user`; panics with psql's stderr on failure.
fn psql(port: u16, user: &str, db: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(["-d", db, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed on port {port}, database {db}: {}\nSQL: {sql}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The tenants of one spec, as the checks need them.
#[derive(Clone, Debug)]
struct Layout {
    /// (tenant id, database name, owner role) of database tenants.
    databases: Vec<(String, String, String)>,
    /// (tenant id, schema name, role) of schema tenants.
    schemas: Vec<(String, String, String)>,
    /// (tenant id, role) of table tenants, which share the tables of schema
    /// `shared`.
    tables: Vec<(String, String)>,
    /// Tenant ids of cache tenants, each with an ACL user named after it.
    caches: Vec<String>,
    shared: String,
}

impl Layout {
    fn new(env: &TestEnv, databases: usize, schemas: usize) -> Layout {
        Layout::every_type(env, [databases, schemas, 0, 0])
    }

    /// Builds a layout with the given numbers of database, schema, table
    /// and cache tenants.
    fn every_type(env: &TestEnv, counts: [usize; 4]) -> Layout {
        let [databases, schemas, tables, caches] = counts;
        Layout {
            tables: (0..tables)
                .map(|i| {
                    let id = env.id(&format!("t{i}"));
                    (id.clone(), format!("{id}_user"))
                })
                .collect(),
            caches: (0..caches).map(|i| env.id(&format!("c{i}"))).collect(),
            shared: env.id("shared"),
            databases: (0..databases)
                .map(|i| {
                    let id = env.id(&format!("d{i}"));
                    (id.clone(), format!("{id}_db"), format!("{id}_owner"))
                })
                .collect(),
            schemas: (0..schemas)
                .map(|i| {
                    let id = env.id(&format!("s{i}"));
                    (id.clone(), format!("{id}_sch"), format!("{id}_user"))
                })
                .collect(),
        }
    }

    fn ids(&self) -> BTreeSet<String> {
        self.databases
            .iter()
            .chain(&self.schemas)
            .map(|(id, _, _)| id.clone())
            .chain(self.tables.iter().map(|(id, _)| id.clone()))
            .chain(self.caches.iter().cloned())
            .collect()
    }

    fn roles(&self) -> BTreeSet<String> {
        self.databases
            .iter()
            .chain(&self.schemas)
            .map(|(_, _, role)| role.clone())
            .chain(self.tables.iter().map(|(_, role)| role.clone()))
            .collect()
    }

    fn schemas(&self) -> BTreeSet<String> {
        let shared = (!self.tables.is_empty()).then(|| self.shared.clone());
        self.schemas
            .iter()
            .map(|(_, schema, _)| schema.clone())
            .chain(shared)
            .collect()
    }

    /// Writes the migrations and the spec; returns the spec's path.
    fn write(&self, env: &TestEnv, migration_sleep: f64) -> PathBuf {
        write_migrations(env, migration_sleep);
        let mut spec = String::from("version = 1\n\n[defaults]\nmigrations = \"migrations\"\n\n");
        if !self.tables.is_empty() {
            write_shared_migrations(env);
            spec.push_str(&format!(
                "[tables]\nschema = \"{}\"\nmigrations = \"shared\"\n\n",
                self.shared
            ));
        }
        for (id, database, owner) in &self.databases {
            spec.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\nisolation = \"database\"\n\
                 database = {{ name = \"{database}\", user = \"{owner}\", password = {{ env = \"{PASSWORD_ENV}\" }} }}\n\n"
            ));
        }
        for (id, schema, user) in &self.schemas {
            spec.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\nisolation = \"schema\"\n\
                 schema = {{ name = \"{schema}\", user = \"{user}\", password = {{ env = \"{PASSWORD_ENV}\" }} }}\n\n"
            ));
        }
        for (id, user) in &self.tables {
            spec.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\nisolation = \"table\"\n\
                 role = {{ user = \"{user}\", password = {{ env = \"{PASSWORD_ENV}\" }} }}\n\n"
            ));
        }
        for id in &self.caches {
            spec.push_str(&format!(
                "[[tenants]]\nid = \"{id}\"\nname = \"Tenant {id}\"\nisolation = \"cache\"\n\
                 cache = {{ password = {{ env = \"{PASSWORD_ENV}\" }} }}\n\n"
            ));
        }
        env.write_spec("tenants.toml", &spec)
    }
}

/// Writes the two shared migrations of table tenants; the second inserts a
/// row, so running it twice leaves an extra row.
fn write_shared_migrations(env: &TestEnv) {
    env.write_spec(
        "shared/001_notes/up.sql",
        "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id', true), body text);\n",
    );
    env.write_spec(
        "shared/002_runs/up.sql",
        "CREATE TABLE runs (n int NOT NULL);\nINSERT INTO runs VALUES (2);\n",
    );
}

/// Writes three migrations. The second and third insert a row, so a
/// migration that ran twice leaves an extra row or fails on CREATE TABLE.
fn write_migrations(env: &TestEnv, sleep: f64) {
    env.write_spec(
        "migrations/001_items/up.sql",
        "CREATE TABLE items (id int PRIMARY KEY, note text);\n",
    );
    env.write_spec(
        "migrations/002_runs/up.sql",
        "CREATE TABLE runs (n int NOT NULL);\nINSERT INTO runs VALUES (2);\n",
    );
    env.write_spec(
        "migrations/003_index/up.sql",
        &format!(
            "SELECT pg_sleep({sleep});\nCREATE INDEX items_note ON items (note);\nINSERT INTO runs VALUES (3);\n"
        ),
    );
}

/// Asserts that the servers hold exactly what the layout declares, every
/// tenant ready with each migration applied exactly once, and that plan has
/// nothing left to do.
fn assert_converged(target: &Target<'_>, layout: &Layout, context: &str) {
    let plan = target.run(&["plan", "--detailed-exitcode", "--no-input"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{context}: plan is not empty\n{}",
        text(&plan)
    );

    let prefix = quote_literal(target.env.prefix());
    let registry = target.psql(
        "SELECT string_agg(id || ':' || status || ':' || (last_error IS NULL), ',' ORDER BY id) \
         FROM tenantctl.tenants",
    );
    let expected: Vec<String> = layout
        .ids()
        .into_iter()
        .map(|id| format!("{id}:ready:true"))
        .collect();
    assert_eq!(registry, expected.join(","), "{context}: registry");
    let counts = target.psql(
        "SELECT count(*) FILTER (WHERE n <> 3) FROM (SELECT count(*) AS n FROM tenantctl.tenant_migrations GROUP BY tenant_id) c",
    );
    assert_eq!(counts, "0", "{context}: a tenant lacks a migration record");

    for (id, database, owner) in &layout.databases {
        let actual_owner = target.psql_db(
            "postgres",
            &format!(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
                quote_literal(database)
            ),
        );
        assert_eq!(&actual_owner, owner, "{context}: owner of {database}");
        let runs = target.psql_db(
            database,
            "SELECT string_agg(n::text, ',' ORDER BY n) FROM runs",
        );
        assert_eq!(runs, "2,3", "{context}: migrations of {id}");
        let local = target.psql_db(database, "SELECT count(*) FROM tenantctl.migrations");
        assert_eq!(local, "3", "{context}: local migration records of {id}");
    }
    for (id, schema, _) in &layout.schemas {
        let runs = target.psql(&format!(
            "SELECT string_agg(n::text, ',' ORDER BY n) FROM {}.runs",
            quote_ident(schema)
        ));
        assert_eq!(runs, "2,3", "{context}: migrations of {id}");
    }

    let databases = target.psql_db(
        "postgres",
        &format!(
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database \
             WHERE starts_with(datname, {prefix}) AND datname <> {}",
            quote_literal(&target.control_db)
        ),
    );
    let declared: BTreeSet<&str> = layout.databases.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(
        databases,
        declared.into_iter().collect::<Vec<_>>().join(","),
        "{context}: databases"
    );
    let roles = target.psql_db(
        "postgres",
        &format!(
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles \
             WHERE starts_with(rolname, {prefix}) AND rolname NOT LIKE '%admin'"
        ),
    );
    assert_eq!(
        roles,
        layout.roles().into_iter().collect::<Vec<_>>().join(","),
        "{context}: roles"
    );
    let schemas = target.psql(&format!(
        "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace WHERE starts_with(nspname, {prefix})"
    ));
    assert_eq!(
        schemas,
        layout.schemas().into_iter().collect::<Vec<_>>().join(","),
        "{context}: schemas"
    );
    if !layout.tables.is_empty() {
        assert_shared_converged(target, layout, context);
    }
    if !layout.caches.is_empty() {
        assert_acl_users(target, layout, context);
    }
}

/// Checks the shared tables of table tenants: each shared migration ran
/// once, and the tenant table has its row-level security policy.
fn assert_shared_converged(target: &Target<'_>, layout: &Layout, context: &str) {
    let shared = quote_ident(&layout.shared);
    let runs = target.psql(&format!(
        "SELECT string_agg(n::text, ',') FROM {shared}.runs"
    ));
    assert_eq!(runs, "2", "{context}: shared migrations");
    let recorded = target.psql("SELECT count(*) FROM tenantctl.shared_migrations");
    assert_eq!(recorded, "2", "{context}: shared migration records");
    let policies = target.psql(&format!(
        "SELECT count(*) FROM pg_policies WHERE schemaname = {} AND tablename = 'notes'",
        quote_literal(&layout.shared)
    ));
    assert_eq!(policies, "1", "{context}: row-level security policy");
}

/// Checks that the Redis ACL users with the test's prefix are exactly the
/// cache tenants' users, each limited to its tenant's keys.
fn assert_acl_users(target: &Target<'_>, layout: &Layout, context: &str) {
    let list = redis_cli(target.redis_port, &["ACL", "LIST"]);
    let mut users = BTreeSet::new();
    for line in list.lines() {
        let mut words = line.split(' ');
        let (Some("user"), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        if !name.starts_with(target.env.prefix()) {
            continue;
        }
        assert!(
            line.contains(&format!("~{name}:*")),
            "{context}: ACL user {name} is not limited to its prefix: {line}"
        );
        users.insert(name.to_string());
    }
    let declared: BTreeSet<String> = layout.caches.iter().cloned().collect();
    assert_eq!(users, declared, "{context}: ACL users");
}

/// Runs redis-cli on a port of 127.0.0.1 and returns its trimmed output.
fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A small xorshift generator: the crash test prints its seed, and
/// CRASH_SEED replays a run.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_nanos() as u64)
                    .unwrap_or(7)
                    | 1
            });
        eprintln!("crash test seed: CRASH_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Returns a duration drawn uniformly from zero to `limit`.
    fn below(&mut self, limit: Duration) -> Duration {
        let millis = limit.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % millis)
    }
}

fn apply_args(spec: &Path) -> Vec<String> {
    vec![
        "apply".into(),
        "--auto-approve".into(),
        "--no-input".into(),
        "-f".into(),
        spec.display().to_string(),
    ]
}

fn spawn(target: &Target<'_>, args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = target.command(&args);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command.spawn().expect("tenantctl starts")
}

/// Kills `tenantctl apply` with SIGKILL at random moments of a batch of
/// tenants, runs apply again and checks that it converged, `trials` times.
fn crash_trials(trials: usize) {
    let mut rng = Rng::from_env();
    let mut full_run: Option<Duration> = None;
    let mut killed_mid_run = 0;
    for trial in 0..trials {
        let env = TestEnv::new();
        let target = Target::shared(&env);
        let layout = Layout::every_type(&env, [2, 2, 1, 1]);
        let spec = layout.write(&env, 0.05);
        let args = apply_args(&spec);

        let Some(duration) = full_run else {
            let started = Instant::now();
            let output = target.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(output.status.success(), "first apply\n{}", text(&output));
            full_run = Some(started.elapsed());
            assert_converged(&target, &layout, "uninterrupted apply");
            continue;
        };

        // Four fifths of one apply: the measured run can be slower than the
        // next ones when other tests load the machine.
        let delay = rng.below(duration * 4 / 5);
        let mut child = spawn(&target, &args);
        std::thread::sleep(delay);
        let finished = child.try_wait().expect("wait works").is_some();
        child.kill().ok();
        child.wait().ok();
        if !finished {
            killed_mid_run += 1;
        }

        let rerun = target.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let context = format!("trial {trial}, killed after {delay:?}");
        assert!(rerun.status.success(), "{context}: rerun\n{}", text(&rerun));
        assert_converged(&target, &layout, &context);
    }
    eprintln!(
        "crash test: {trials} trials, {killed_mid_run} killed during apply, one apply took {:?}; all converged",
        full_run.unwrap_or_default()
    );
    assert!(
        killed_mid_run * 4 >= trials,
        "only {killed_mid_run} of {trials} kills landed during an apply"
    );
}

#[test]
fn crash_kill_and_rerun_converges() {
    crash_trials(20);
}

#[test]
#[ignore = "long version of the crash test: 200 trials, several minutes"]
fn crash_long_kill_and_rerun_converges() {
    crash_trials(200);
}

/// Creates a login role that is not superuser, with the given attributes
/// and CREATE on the control database, which the registry and schema
/// tenants need. Returns the shared target and the role's name.
fn non_superuser<'a>(env: &'a TestEnv, name: &str, attributes: &str) -> (Target<'a>, String) {
    let role = env.id(name);
    env.psql(&format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER {attributes}; GRANT CREATE ON DATABASE {} TO {role}",
        quote_ident(env.control_db()),
        role = quote_ident(&role),
    ));
    (Target::shared(env), role)
}

fn run_as(target: &Target<'_>, role: &str, args: &[&str]) -> Output {
    let url = format!(
        "postgres://{role}@127.0.0.1:{}/{}",
        target.port, target.control_db
    );
    target
        .command(args)
        .env("TENANTCTL_DATABASE_URL", url)
        .output()
        .expect("tenantctl runs")
}

#[test]
fn createdb_createrole_role_applies_tenants() {
    let env = TestEnv::new();
    let (target, admin) = non_superuser(&env, "admin", "CREATEDB CREATEROLE");
    env.psql(&format!(
        "GRANT SET ON PARAMETER app.tenant_id TO {}",
        quote_ident(&admin)
    ));
    let layout = Layout::every_type(&env, [2, 2, 1, 1]);
    layout.write(&env, 0.0);

    let apply = run_as(
        &target,
        &admin,
        &["apply", "--auto-approve", "--parallelism", "4"],
    );
    assert!(apply.status.success(), "{}", text(&apply));
    let plan = run_as(&target, &admin, &["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let stderr = String::from_utf8_lossy(&plan.stderr);
    assert!(
        stderr.contains(
            "cannot read pg_authid, so passwords changed outside tenantctl cannot be checked"
        ),
        "{}",
        text(&plan)
    );
    assert_converged(&target, &layout, "apply as a non-superuser");
}

#[test]
fn missing_privileges_refuse_the_plan_before_any_change() {
    let env = TestEnv::new();
    let (target, weak) = non_superuser(&env, "weak_admin", "CREATEROLE");
    let layout = Layout::new(&env, 1, 1);
    layout.write(&env, 0.0);

    for command in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let output = run_as(&target, &weak, command);
        let shown = text(&output);
        assert_eq!(output.status.code(), Some(1), "{shown}");
        let (_, database, _) = &layout.databases[0];
        assert!(
            shown.contains(&format!(
                "✗ role \"{weak}\" on 127.0.0.1:5432 lacks CREATEDB, which creating database \"{database}\" needs"
            )),
            "{shown}"
        );
        assert!(
            shown.contains(
                "the connecting role lacks 1 privilege that the plan needs; nothing was changed"
            ),
            "{shown}"
        );
        assert!(!shown.contains("panicked"), "{shown}");
    }
    assert_eq!(target.psql("SELECT count(*) FROM tenantctl.tenants"), "0");

    // Without SET on the tenant setting, a table tenant's role is refused.
    Layout::every_type(&env, [0, 0, 1, 0]).write(&env, 0.0);
    let output = run_as(&target, &weak, &["plan"]);
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let table_role = format!("{}_user", env.id("t0"));
    assert!(
        shown.contains(&format!(
            "lacks SET on the tenant setting (GRANT SET ON PARAMETER), which setting it for role \"{table_role}\" needs"
        )),
        "{shown}"
    );

    // A Redis user that may not run ACL SETUSER is refused the same way.
    let redis_user = env.id("redis_deployer");
    let url = format!(
        "redis://{redis_user}:deployer-pw@127.0.0.1:{}/",
        target.redis_port
    );
    redis_cli(
        target.redis_port,
        &[
            "ACL",
            "SETUSER",
            &redis_user,
            "on",
            ">deployer-pw",
            "~*",
            "+@all",
            "-acl|setuser",
        ],
    );
    Layout::every_type(&env, [0, 0, 0, 1]).write(&env, 0.0);
    let output = target
        .command(&["plan"])
        .env("TENANTCTL_REDIS_URL", &url)
        .output()
        .expect("tenantctl runs");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let cache = env.id("c0");
    assert!(
        shown.contains(&format!(
            "✗ Redis user \"{redis_user}\" on redis://{redis_user}:***@127.0.0.1:{}/ may not run ACL SETUSER, which setting ACL user \"{cache}\" needs",
            target.redis_port
        )),
        "{shown}"
    );
    let prefix = quote_literal(env.prefix());
    let created = target.psql_db(
        "postgres",
        &format!(
            "SELECT (SELECT count(*) FROM pg_database WHERE starts_with(datname, {prefix})) + \
             (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, {prefix}))"
        ),
    );
    // The control database and the connecting role, nothing else.
    assert_eq!(created, "2");
}

#[test]
fn two_applies_at_once_wait_for_each_other() {
    let env = TestEnv::new();
    let target = Target::shared(&env);
    let layout = Layout::new(&env, 2, 2);
    let spec = layout.write(&env, 0.2);
    let args = apply_args(&spec);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let children: Vec<Child> = (0..2)
        .map(|_| target.command(&args).spawn().expect("tenantctl starts"))
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("tenantctl ends"))
        .collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(output));
    }
    let waited = outputs
        .iter()
        .filter(|output| {
            String::from_utf8_lossy(&output.stderr).contains("Waiting for the apply lock")
        })
        .count();
    assert_eq!(waited, 1, "{}\n{}", text(&outputs[0]), text(&outputs[1]));
    assert_converged(&target, &layout, "two applies at once");
    let events =
        target.psql("SELECT count(*) FROM tenantctl.events WHERE action LIKE 'registry record%'");
    assert_eq!(events, "4", "each tenant was registered once");
}

#[test]
fn parallel_creation_never_collides_in_the_catalogs() {
    for round in 0..2 {
        let env = TestEnv::new();
        let (target, admin) = non_superuser(&env, "admin", "CREATEDB CREATEROLE");
        let layout = Layout::new(&env, 8, 8);
        layout.write(&env, 0.0);
        let args = ["apply", "--auto-approve", "--parallelism", "8"];
        let output = if round == 0 {
            target.run(&args)
        } else {
            run_as(&target, &admin, &args)
        };
        let shown = text(&output);
        assert!(output.status.success(), "round {round}\n{shown}");
        for collision in ["tuple concurrently updated", "duplicate key"] {
            assert!(!shown.contains(collision), "round {round}\n{shown}");
        }
        assert_converged(&target, &layout, &format!("round {round}"));
    }
}

/// Creates the TestEnv's control database on a private PostgreSQL server
/// and returns a target that uses it.
fn private_target<'a>(env: &'a TestEnv, server: &PrivatePostgres) -> Target<'a> {
    let control_db = env.control_db().to_string();
    server.psql(&format!("CREATE DATABASE {}", quote_ident(&control_db)));
    Target {
        env,
        port: server.port(),
        control_db,
        password: PASSWORD.to_string(),
        redis_port: support::REDIS_PORT,
    }
}

/// Checks that nothing of a tenant exists: no registry row, database,
/// schema or role.
fn untouched(target: &Target<'_>, layout: &Layout, id: &str) -> bool {
    let registered = target.psql(&format!(
        "SELECT count(*) FROM tenantctl.tenants WHERE id = {}",
        quote_literal(id)
    ));
    let found = |sql: String| target.psql_db("postgres", &sql) != "0";
    let objects = layout
        .databases
        .iter()
        .chain(&layout.schemas)
        .filter(|(tenant, _, _)| tenant == id)
        .any(|(_, object, role)| {
            found(format!(
                "SELECT count(*) FROM pg_database WHERE datname = {}",
                quote_literal(object)
            )) || found(format!(
                "SELECT count(*) FROM pg_roles WHERE rolname = {}",
                quote_literal(role)
            )) || target.psql(&format!(
                "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
                quote_literal(object)
            )) != "0"
        });
    registered == "0" && !objects
}

#[test]
fn postgres_restart_mid_apply_converges() {
    let env = TestEnv::new();
    let mut server = PrivatePostgres::start();
    let target = private_target(&env, &server);
    let layout = Layout::new(&env, 3, 5);
    let spec = layout.write(&env, 0.5);
    let mut args = apply_args(&spec);
    args.extend(["--parallelism".to_string(), "2".to_string()]);

    let child = target
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .expect("tenantctl starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let registered = "SELECT count(*) FROM tenantctl.tenants";
    let exists = "SELECT to_regclass('tenantctl.tenants') IS NOT NULL";
    while target.psql(exists) != "t" || target.psql(registered) == "0" {
        assert!(Instant::now() < deadline, "apply registered no tenant");
        std::thread::sleep(Duration::from_millis(20));
    }
    server.restart();
    let output = child.wait_with_output().expect("tenantctl ends");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("lost database server 127.0.0.1:{}", server.port())),
        "{shown}"
    );
    assert!(
        shown.contains("hint: check that the server runs"),
        "{shown}"
    );
    let untouched_count = layout
        .ids()
        .iter()
        .filter(|id| untouched(&target, &layout, id))
        .count();
    assert!(untouched_count > 0, "every tenant was touched\n{shown}");
    assert!(
        shown.contains(&format!("{untouched_count} were not started")),
        "{shown}"
    );

    let rerun = target.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_converged(&target, &layout, "after a restart");
}

/// Lists the command lines of running processes that contain `needle`.
fn command_lines_with(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
        .filter(|line| line.contains(needle))
        .collect()
}

/// Runs tenantctl while another thread watches every process's argv for
/// the passwords.
fn run_watched(target: &Target<'_>, args: &[&str], password: &str, secrets: &[&str]) -> Output {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for secret in secrets {
                    seen.extend(command_lines_with(secret));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        let output = target
            .command(args)
            .env(PASSWORD_ENV, password)
            .output()
            .expect("tenantctl runs");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = watcher.join().expect("watcher ends");
        assert!(seen.is_empty(), "a password is in a command line: {seen:?}");
        output
    })
}

#[test]
fn passwords_never_leak_and_changes_apply() {
    let env = TestEnv::new();
    let server = PrivatePostgres::start();
    server.set_config("log_statement", "all");
    let redis = PrivateRedis::start();
    let mut target = private_target(&env, &server);
    target.redis_port = redis.port();
    let layout = Layout::every_type(&env, [1, 1, 1, 1]);
    let spec = layout.write(&env, 0.0);
    let first = "Secret-one-7f3a9c";
    let second = "Secret-two-41be0d";
    let superuser = "Secret-super-2b7e14";
    let secrets = [first, second, superuser];
    let plan_file = env.dir().join("saved.plan");
    let plan_file_arg = plan_file.display().to_string();
    let spec_arg = spec.display().to_string();

    let mut outputs = vec![
        run_watched(&target, &["plan", "--json"], first, &secrets),
        run_watched(&target, &["plan", "--out", &plan_file_arg], first, &secrets),
        run_watched(&target, &["-vv", "apply", &plan_file_arg], first, &secrets),
    ];
    assert!(outputs[2].status.success(), "{}", text(&outputs[2]));

    // A new password in the spec, then one changed behind tenantctl's back.
    let changed = run_watched(&target, &["-vv", "plan", "-f", &spec_arg], second, &secrets);
    let roles = layout.roles();
    for role in &roles {
        assert!(
            text(&changed).contains(&format!("~ password (sensitive) of role \"{role}\"")),
            "{}",
            text(&changed)
        );
    }
    let user = &layout.caches[0];
    assert!(
        text(&changed).contains(&format!("~ Redis ACL user \"{user}\"")),
        "{}",
        text(&changed)
    );
    assert!(
        text(&changed).contains("the password differs"),
        "{}",
        text(&changed)
    );
    outputs.push(changed);
    let apply = ["-vv", "apply", "--auto-approve", "-f", &spec_arg];
    outputs.push(run_watched(&target, &apply, second, &secrets));
    let role = roles.iter().next().expect("a role");
    server.psql(&format!(
        "ALTER ROLE {} PASSWORD 'changed-by-hand'",
        quote_ident(role)
    ));
    let drifted = run_watched(&target, &["plan", "--detailed-exitcode"], second, &secrets);
    assert_eq!(drifted.status.code(), Some(2), "{}", text(&drifted));
    assert!(
        text(&drifted).contains(&format!("~ password (sensitive) of role \"{role}\"")),
        "{}",
        text(&drifted)
    );
    outputs.push(drifted);
    outputs.push(run_watched(&target, &apply, second, &secrets));

    // A superuser role of a database and of a schema tenant, whose password
    // comes from PASSWORD_ENV too.
    let superusers: Vec<String> = [&layout.databases[0].0, &layout.schemas[0].0]
        .into_iter()
        .map(|id| {
            let name = format!("{id}_admin");
            let args = [
                "create-superuser",
                id,
                "--username",
                &name,
                "--password-env",
                PASSWORD_ENV,
            ];
            let created = run_watched(&target, &args, superuser, &secrets);
            assert!(created.status.success(), "{}", text(&created));
            outputs.push(created);
            name
        })
        .collect();
    target.password = second.to_string();
    assert_converged(&target, &layout, "after password changes");

    let secret = |value: &str| tenantctl::spec::secret::Secret::new(value);
    for name in &superusers {
        let verifier = server.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(name)
        ));
        assert!(
            tenantctl::sql::scram_matches(&secret(superuser), &verifier),
            "{name}"
        );
    }

    for role in &roles {
        let verifier = server.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(role)
        ));
        let secret = |value: &str| tenantctl::spec::secret::Secret::new(value);
        assert!(
            tenantctl::sql::scram_matches(&secret(second), &verifier),
            "{role}"
        );
        assert!(
            !tenantctl::sql::scram_matches(&secret(first), &verifier),
            "{role}"
        );
    }

    let acl = redis.redis(&["ACL", "GETUSER", user]);
    let digest = |value: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    };
    assert!(acl.contains(&digest(second)), "{acl}");
    assert!(!acl.contains(&digest(first)), "{acl}");

    // Every table of the registry, as pg_dump writes its rows.
    let dump = Command::new("pg_dump")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "-U",
            "postgres",
        ])
        .args(["--data-only", "--schema", "tenantctl", &target.control_db])
        .output()
        .expect("pg_dump runs");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let registry = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(
        registry.contains(&superusers[0]),
        "the dump shows the registry's rows"
    );
    let server_log = std::fs::read_to_string(server.log_path()).expect("server log");
    assert!(
        server_log.contains("ALTER ROLE"),
        "log_statement = 'all' logs statements"
    );
    let mut places = vec![
        ("the registry".to_string(), registry),
        ("the server log".to_string(), server_log),
        (
            "the Redis log".to_string(),
            std::fs::read_to_string(redis.log_path()).unwrap_or_default(),
        ),
        (
            "the saved plan".to_string(),
            std::fs::read_to_string(&plan_file).expect("saved plan"),
        ),
    ];
    for (index, output) in outputs.iter().enumerate() {
        places.push((format!("output {index}"), text(output)));
    }
    for (place, content) in &places {
        for secret in secrets {
            assert!(!content.contains(secret), "{place} holds a password");
        }
    }
}

#[test]
fn redis_stop_mid_apply_converges() {
    let env = TestEnv::new();
    let mut redis = PrivateRedis::start();
    let mut target = Target::shared(&env);
    target.redis_port = redis.port();
    let layout = Layout::every_type(&env, [0, 3, 0, 3]);
    let spec = layout.write(&env, 0.4);
    // The first cache tenant goes first, so Redis stops between cache tenants.
    let written = std::fs::read_to_string(&spec).expect("spec");
    let mut blocks: Vec<&str> = written.split("[[tenants]]").collect();
    let head = blocks.remove(0);
    let first_cache = blocks.len() - layout.caches.len();
    let moved = blocks.remove(first_cache);
    blocks.insert(0, moved);
    std::fs::write(
        &spec,
        format!("{head}[[tenants]]{}", blocks.join("[[tenants]]")),
    )
    .expect("spec");

    let mut args = apply_args(&spec);
    args.extend(["--parallelism".to_string(), "1".to_string()]);
    let child = target
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .expect("tenantctl starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !redis.redis(&["ACL", "USERS"]).contains(&layout.caches[0]) {
        assert!(Instant::now() < deadline, "apply set no ACL user");
        std::thread::sleep(Duration::from_millis(10));
    }
    redis.stop();
    let output = child.wait_with_output().expect("tenantctl ends");
    let shown = text(&output);
    assert_eq!(output.status.code(), Some(1), "{shown}");
    let unreachable = format!(
        "cannot connect to Redis server redis://127.0.0.1:{}/",
        redis.port()
    );
    for id in &layout.caches[1..] {
        assert!(
            shown.contains(&format!(
                "✗ Tenant '{id}' failed: set Redis ACL user {id}: {unreachable}"
            )),
            "{shown}"
        );
    }
    assert!(shown.contains("2 failed"), "{shown}");
    let ready = target.psql(
        "SELECT string_agg(id, ',' ORDER BY id) FROM tenantctl.tenants WHERE status = 'ready'",
    );
    let mut expected: Vec<&str> = layout.schemas.iter().map(|s| s.0.as_str()).collect();
    expected.push(&layout.caches[0]);
    expected.sort();
    assert_eq!(ready, expected.join(","), "{shown}");

    // A restarted Redis keeps no ACL users: the next apply sets all three.
    redis.start_again();
    let rerun = target.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_converged(&target, &layout, "after Redis came back");
}

/// Starts `create` for a tenant of the spec. It writes to a spec file of
/// its own with the same migrations, so it holds the apply lock while they
/// run, and races an apply of the main spec for the same id.
fn spawn_create(target: &Target<'_>, id: &str) -> Child {
    target.env.write_spec(
        "created.toml",
        "version = 1\n[defaults]\nmigrations = \"migrations\"\n",
    );
    target
        .command(&[
            "create",
            "-f",
            "created.toml",
            "--id",
            id,
            "--name",
            "Racer",
            "--isolation",
            "schema",
            "--yes",
        ])
        .spawn()
        .expect("tenantctl starts")
}

#[test]
fn create_racing_apply_reports_duplicate() {
    for create_first in [false, true] {
        let env = TestEnv::new();
        let target = Target::shared(&env);
        let id = env.id("racer");
        write_migrations(&env, 0.3);
        let spec = env.write_spec(
            "tenants.toml",
            &format!(
                "version = 1\n[[tenants]]\nid = \"{id}\"\nname = \"Racer\"\nisolation = \"schema\"\n\
                 migrations = \"migrations\"\n"
            ),
        );
        let args = apply_args(&spec);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (first, second) = if create_first {
            let create = spawn_create(&target, &id);
            std::thread::sleep(Duration::from_millis(100));
            (
                create,
                target.command(&args).spawn().expect("tenantctl starts"),
            )
        } else {
            let apply = target.command(&args).spawn().expect("tenantctl starts");
            std::thread::sleep(Duration::from_millis(300));
            (apply, spawn_create(&target, &id))
        };
        let first = first.wait_with_output().expect("tenantctl ends");
        let second = second.wait_with_output().expect("tenantctl ends");
        let (create, apply) = if create_first {
            (first, second)
        } else {
            (second, first)
        };
        let shown = format!("create:\n{}\napply:\n{}", text(&create), text(&apply));
        assert!(apply.status.success(), "{shown}");
        if create.status.success() {
            assert!(!text(&apply).contains("will be created"), "{shown}");
        } else {
            assert_eq!(create.status.code(), Some(1), "{shown}");
            assert!(
                text(&create).contains(&format!("Tenant with ID '{id}' already exists")),
                "{shown}"
            );
        }
        let plan = target.run(&["plan", "--detailed-exitcode", "-f", args[4]]);
        assert_eq!(plan.status.code(), Some(0), "{shown}\n{}", text(&plan));
        let registry =
            target.psql("SELECT string_agg(id || ':' || status, ',') FROM tenantctl.tenants");
        assert_eq!(registry, format!("{id}:ready"), "{shown}");
    }
}
