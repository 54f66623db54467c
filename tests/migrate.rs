//! `tenantctl migrate` against the real servers: parallel runs with a
//! failing tenant, a killed run resumed, changed migrations, dry runs and
//! the bulk path for a large registry.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{TestEnv, quote_literal};

/// Writes one migration folder `VERSION_name` with `up.sql`.
fn write_migration(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
}

/// Returns a spec with schema tenants and database tenants that share `mig`.
fn spec(env: &TestEnv, schemas: &[&str], databases: &[&str]) -> String {
    let mut text =
        "version = 1\n[defaults]\nmigrations = \"mig\"\nrun_migrations = false\n".to_string();
    for name in schemas {
        let id = env.id(name);
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\nisolation = \"schema\"\n"
        ));
    }
    for name in databases {
        let id = env.id(name);
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\nisolation = \"database\"\n\
             [tenants.database]\nuser = \"{id}\"\npassword = \"pw-{name}\"\n"
        ));
    }
    text
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the rows of `runs` in a tenant's schema or database.
fn runs(env: &TestEnv, id: &str, database: bool) -> String {
    if database {
        env.psql_db(id, "SELECT string_agg(name, ',' ORDER BY name) FROM runs")
    } else {
        env.psql(&format!(
            "SELECT string_agg(name, ',' ORDER BY name) FROM \"{id}\".runs"
        ))
    }
}

#[test]
fn migrate_failing_tenant_dry_run_and_changed_file() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_runs", "CREATE TABLE runs (name text PRIMARY KEY);");
    env.write_spec("tenants.toml", &spec(&env, &["a", "b", "c"], &["d"]));
    env.cmd()
        .args(["apply", "--auto-approve"])
        .assert()
        .success();

    // Nothing ran yet (run_migrations = false): all four are pending.
    let dry = env
        .cmd()
        .args(["migrate", "--all", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(stdout(&dry).contains(&format!(
        "{}: 1 migration to apply\n  + 1_runs",
        env.id("b")
    )));
    assert!(stdout(&dry).contains("Dry run: 4 tenants to migrate, 0 up to date, 0 failed."));
    assert_eq!(
        env.psql("SELECT count(*) FROM tenantctl.tenant_migrations"),
        "0"
    );

    // One tenant first, by id.
    let one = env.cmd().args(["migrate", &env.id("a")]).output().unwrap();
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(stdout(&one).contains(&format!("{}: 1 migration applied", env.id("a"))));
    assert!(stdout(&one).contains("Migrated 1 tenant, 0 up to date, 0 failed."));

    // Tenant b already has the table the next migration creates, so it
    // fails while the others go on.
    write_migration(
        &mig,
        "2_items",
        "CREATE TABLE items (id int); INSERT INTO runs VALUES ('2');",
    );
    env.psql(&format!("CREATE TABLE \"{}\".items (id int)", env.id("b")));
    let all = env
        .cmd()
        .args(["migrate", "--all", "--parallelism", "2"])
        .output()
        .unwrap();
    assert_eq!(all.status.code(), Some(1), "{}", stdout(&all));
    assert!(
        stdout(&all).contains("Migrated 3 tenants, 0 up to date, 1 failed."),
        "{}",
        stdout(&all)
    );
    assert!(stderr(&all).contains(&format!("{}: failed: migration 2_items", env.id("b"))));
    assert_eq!(runs(&env, &env.id("a"), false), "2");
    assert_eq!(runs(&env, &env.id("c"), false), "2");
    assert_eq!(runs(&env, &env.id("d"), true), "2");
    let b_status = env.psql(&format!(
        "SELECT status || ' ' || (last_error LIKE 'migrate: %') FROM tenantctl.tenants WHERE id = {}",
        quote_literal(&env.id("b"))
    ));
    assert_eq!(b_status, "failed true");
    // The event's action names migrate; its error does not say it again.
    let b_event = env.psql(&format!(
        "SELECT action || ' | ' || error FROM tenantctl.events \
         WHERE tenant_id = {} AND outcome = 'failed'",
        quote_literal(&env.id("b"))
    ));
    assert!(
        b_event.starts_with("migrate | migration 2_items"),
        "{b_event}"
    );
    // Tenant b ran neither migration: the failed batch rolled back whole.
    assert_eq!(
        env.psql(&format!(
            "SELECT count(*) FROM tenantctl.tenant_migrations WHERE tenant_id = {}",
            quote_literal(&env.id("b"))
        )),
        "0"
    );

    // Fixed, it catches up and becomes ready; the others are up to date.
    env.psql(&format!("DROP TABLE \"{}\".items", env.id("b")));
    let again = env.cmd().args(["migrate", "--all"]).output().unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("Migrated 1 tenant, 3 up to date, 0 failed."));
    assert_eq!(runs(&env, &env.id("b"), false), "2");
    assert_eq!(
        env.psql(&format!(
            "SELECT status FROM tenantctl.tenants WHERE id = {}",
            quote_literal(&env.id("b"))
        )),
        "ready"
    );

    // An applied migration edited afterwards is refused, naming the tenant,
    // the version and the file; --allow-changed lets the new one through.
    std::fs::write(mig.join("1_runs/up.sql"), "CREATE TABLE runs (name text);").unwrap();
    write_migration(&mig, "3_more", "INSERT INTO runs VALUES ('3');");
    let changed = env.cmd().args(["migrate", &env.id("c")]).output().unwrap();
    assert_eq!(changed.status.code(), Some(1));
    let message = stderr(&changed);
    assert!(
        message.contains(&format!(
            "{}: refused: migration 1 was changed after it was applied",
            env.id("c")
        )),
        "{message}"
    );
    assert!(message.contains("1_runs/up.sql"), "{message}");
    assert!(message.contains("hint: restore the changed files, or pass --allow-changed"));
    assert_eq!(runs(&env, &env.id("c"), false), "2");
    let allowed = env
        .cmd()
        .args(["migrate", &env.id("c"), "--allow-changed"])
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(stderr(&allowed).contains("Warning:"));
    assert_eq!(runs(&env, &env.id("c"), false), "2,3");

    // A recorded migration missing from the folder is reported too.
    std::fs::remove_dir_all(mig.join("2_items")).unwrap();
    let missing = env
        .cmd()
        .args(["migrate", &env.id("a"), "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("migration 2 is recorded as applied but is missing from"));

    // --fail-fast starts no tenant after the first failure.
    write_migration(
        &mig,
        "2_items",
        "CREATE TABLE items (id int); INSERT INTO runs VALUES ('2');",
    );
    write_migration(&mig, "4_fail", "SELECT no_such_function();");
    let fast = env
        .cmd()
        .args([
            "migrate",
            "--all",
            "--allow-changed",
            "--fail-fast",
            "--parallelism",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(fast.status.code(), Some(1));
    assert!(
        stdout(&fast).contains("Migrated 0 tenants, 0 up to date, 1 failed, 3 not started."),
        "{}",
        stdout(&fast)
    );

    // A pending tenant runs when its schema exists (only its migrations
    // were left for later) and is skipped when its database does not.
    std::fs::remove_dir_all(mig.join("4_fail")).unwrap();
    write_migration(&mig, "5_ok", "INSERT INTO runs VALUES ('5');");
    let e = env.id("e");
    let mut text = spec(&env, &["a", "b", "c"], &["d"]);
    text.push_str(&format!(
        "[[tenants]]\nid = \"{e}\"\nname = \"e\"\nisolation = \"database\"\n\
         [tenants.database]\nuser = \"{e}\"\ncreate = false\n"
    ));
    env.write_spec("tenants.toml", &text);
    env.cmd()
        .args(["apply", "--auto-approve", "--tenant", &e])
        .assert()
        .success();
    env.psql(&format!(
        "UPDATE tenantctl.tenants SET status = 'pending' WHERE id = {}",
        quote_literal(&env.id("a"))
    ));
    let pending = env
        .cmd()
        .args(["migrate", &env.id("a"), &e, "--allow-changed"])
        .output()
        .unwrap();
    assert!(pending.status.success(), "{}", stderr(&pending));
    assert!(stdout(&pending).contains(&format!(
        "{e}: skipped: its schema or database does not exist yet"
    )));
    assert!(
        stdout(&pending).contains("Migrated 1 tenant, 0 up to date, 1 skipped, 0 failed."),
        "{}",
        stdout(&pending)
    );
    assert_eq!(runs(&env, &env.id("a"), false), "2,3,5");

    // An unknown tenant is an error before anything runs.
    let unknown = env.cmd().args(["migrate", "ghost"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("Error: Tenant 'ghost' not found"));
}

/// Starts `tenantctl migrate --all` as a child process.
fn spawn_migrate(env: &TestEnv) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"))
        .args(["migrate", "--all", "--parallelism", "2"])
        .env("TENANTCTL_DATABASE_URL", env.database_url())
        .env("CI", "true")
        .current_dir(env.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Returns a pseudo-random number below `bound` from the clock.
fn random_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    u64::from(nanos) % bound
}

#[test]
fn migrate_killed_midway_resumes() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_runs", "CREATE TABLE runs (name text PRIMARY KEY);");
    env.write_spec(
        "tenants.toml",
        &spec(&env, &["s1", "s2", "s3"], &["d1", "d2"]),
    );
    env.cmd()
        .args(["apply", "--auto-approve"])
        .assert()
        .success();
    // Each migration inserts its name once: running one twice would fail
    // on the primary key, and skipping one would leave its row out.
    for step in [2, 3, 5, 6] {
        write_migration(
            &mig,
            &format!("{step}_step"),
            &format!("INSERT INTO runs VALUES ('{step}'); SELECT pg_sleep(0.2);"),
        );
    }
    // A migration outside a transaction can be killed after it commits and
    // before its record, so such migrations must be safe to run again.
    write_migration(
        &mig,
        "4_step",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_name ON runs (name)",
    );
    std::fs::write(
        mig.join("4_step/metadata.toml"),
        "run_in_transaction = false\n",
    )
    .unwrap();

    // A full run takes about 2 s (5 tenants, 4 sleeping migrations, 2 at
    // once), so the first kill always lands mid-run.
    let mut killed = 0;
    for round in 0..3 {
        let mut child = spawn_migrate(&env);
        std::thread::sleep(Duration::from_millis(100 + random_below(1100)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        eprintln!("round {round}: {status}");
        killed += usize::from(status.signal() == Some(9));
    }
    assert!(killed >= 1, "no run was killed before it finished");
    let finish = env.cmd().args(["migrate", "--all"]).output().unwrap();
    assert!(
        finish.status.success(),
        "{}\n{}",
        stdout(&finish),
        stderr(&finish)
    );

    let expected = "1,2,3,4,5,6";
    for name in ["s1", "s2", "s3"] {
        let id = env.id(name);
        // Migration 1 creates the table and inserts no row.
        assert_eq!(runs(&env, &id, false), "2,3,5,6", "tenant {id}");
    }
    for name in ["d1", "d2"] {
        let id = env.id(name);
        assert_eq!(runs(&env, &id, true), "2,3,5,6", "tenant {id}");
        let local = env.psql_db(
            &id,
            "SELECT string_agg(version, ',' ORDER BY version) FROM tenantctl.migrations",
        );
        assert_eq!(local, expected, "tenant {id}");
    }
    let recorded = env.psql(
        "SELECT string_agg(DISTINCT n::text, ',') FROM \
         (SELECT count(*) AS n FROM tenantctl.tenant_migrations GROUP BY tenant_id) counts",
    );
    assert_eq!(recorded, "6");
    let last = env.cmd().args(["migrate", "--all"]).output().unwrap();
    assert!(stdout(&last).contains("Migrated 0 tenants, 5 up to date, 0 failed."));
}

#[test]
fn migrate_large_registry_from_bulk_reads() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_a", "CREATE TABLE a (id int);");
    write_migration(&mig, "2_b", "CREATE TABLE b (id int);");
    let mig_arg = mig.to_str().unwrap();
    // The first run creates the registry.
    env.cmd()
        .args(["migrate", "--all", "--migrations", mig_arg])
        .assert()
        .success();

    // Ten thousand database tenants on databases that do not exist: any
    // per-tenant connection would fail them.
    let prefix = quote_literal(env.prefix());
    let checksum = |sql: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(sql.as_bytes()))
    };
    env.psql(&format!(
        "INSERT INTO tenantctl.tenants (id, name, isolation, config, status) \
         SELECT {prefix} || 'n' || g, 'n' || g, 'database', \
           jsonb_build_object('database', {prefix} || 'n' || g, 'owner', {prefix} || 'n' || g, \
             'server', '127.0.0.1:5432'), 'ready' \
         FROM generate_series(1, 10000) g;\
         INSERT INTO tenantctl.tenant_migrations (tenant_id, version, checksum) \
         SELECT id, v.version, v.checksum FROM tenantctl.tenants, \
           (VALUES ('1', {}), ('2', {})) v(version, checksum);",
        quote_literal(&checksum("CREATE TABLE a (id int);")),
        quote_literal(&checksum("CREATE TABLE b (id int);")),
    ));
    // Two table tenants share one set of tables, migrated once for both.
    let shared = env.id("shared");
    env.psql(&format!(
        "CREATE SCHEMA \"{shared}\";\
         INSERT INTO tenantctl.tenants (id, name, isolation, config, status) \
         SELECT {prefix} || 't' || g, 't' || g, 'table', jsonb_build_object('schema', {}), 'ready' \
         FROM generate_series(1, 2) g;",
        quote_literal(&shared)
    ));
    let started = Instant::now();
    let output = env
        .cmd()
        .args(["migrate", "--all", "--migrations", mig_arg])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    eprintln!("migrate --all over 10,002 tenants took {elapsed:?}");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&format!(
            "shared tables in {shared} (2 table tenants): 2 migrations applied"
        )),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains("Migrated 2 tenants, 10000 up to date, 0 failed."));
    assert_eq!(
        env.psql(&format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = {}",
            quote_literal(&shared)
        )),
        "2"
    );
    // Generous: a debug build took about 0.5 s on a 2-core machine running
    // other tests at the same time.
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let again = env
        .cmd()
        .args(["migrate", "--all", "--migrations", mig_arg])
        .output()
        .unwrap();
    assert!(stdout(&again).contains("Migrated 0 tenants, 10002 up to date, 0 failed."));
}

/// A tenant whose first apply failed has a registry record but no schema or
/// database. Migrate fails it with nothing run or recorded, and the other
/// tenants go on.
#[test]
fn migrate_tenant_without_schema_or_database() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_runs", "CREATE TABLE runs (name text PRIMARY KEY);");
    write_migration(&mig, "2_bad", "SELECT * FROM missing_table;");
    let (ok, lost, copied) = (env.id("ok"), env.id("lost"), env.id("copied"));
    let mut text = "version = 1\n[defaults]\nmigrations = \"mig\"\n".to_string();
    text.push_str(&format!(
        "[[tenants]]\nid = \"{ok}\"\nname = \"ok\"\nisolation = \"schema\"\nrun_migrations = false\n\
         [[tenants]]\nid = \"{lost}\"\nname = \"lost\"\nisolation = \"schema\"\n\
         [[tenants]]\nid = \"{copied}\"\nname = \"copied\"\nisolation = \"database\"\n\
         [tenants.database]\nuser = \"{copied}\"\npassword = \"pw\"\ntemplate = true\n"
    ));
    env.write_spec("tenants.toml", &text);
    let apply = env
        .cmd()
        .args(["apply", "--auto-approve"])
        .output()
        .unwrap();
    assert_eq!(apply.status.code(), Some(1), "{}", stdout(&apply));

    // With the migration fixed, only the tenant that has its schema migrates.
    write_migration(&mig, "2_bad", "SELECT 1;");
    let migrated = env.cmd().args(["migrate", "--all"]).output().unwrap();
    assert_eq!(migrated.status.code(), Some(1), "{}", stdout(&migrated));
    assert!(
        stderr(&migrated).contains(&format!(
            "{lost}: failed: schema \"{lost}\" does not exist yet; run tenantctl apply to create it"
        )),
        "{}",
        stderr(&migrated)
    );
    assert!(
        stderr(&migrated).contains(&format!(
            "{copied}: failed: database \"{copied}\" on 127.0.0.1:5432 does not exist yet; run tenantctl apply to create it"
        )),
        "{}",
        stderr(&migrated)
    );
    assert!(
        stdout(&migrated).contains("Migrated 1 tenant, 0 up to date, 2 failed."),
        "{}",
        stdout(&migrated)
    );
    let recorded = |id: &str| {
        env.psql(&format!(
            "SELECT count(*) FROM tenantctl.tenant_migrations WHERE tenant_id = {}",
            quote_literal(id)
        ))
    };
    assert_eq!(recorded(&ok), "2");
    assert_eq!(recorded(&lost), "0");
    assert_eq!(recorded(&copied), "0");
    let status = env.psql(&format!(
        "SELECT string_agg(status, ',' ORDER BY id) FROM tenantctl.tenants WHERE id IN ({}, {})",
        quote_literal(&copied),
        quote_literal(&lost)
    ));
    assert_eq!(status, "failed,failed");

    // The dry run reports the same failures.
    let dry = env
        .cmd()
        .args(["migrate", "--all", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(1), "{}", stdout(&dry));
    assert!(stderr(&dry).contains(&format!("{lost}: failed: schema \"{lost}\" does not exist")));

    // Apply then creates the schema and runs the migrations in it.
    env.cmd()
        .args(["apply", "--auto-approve"])
        .assert()
        .success();
    assert_eq!(recorded(&lost), "2");
    assert_eq!(runs(&env, &lost, false), "");
}
