//! Integration tests of the core commands against the real PostgreSQL
//! server: validate, schema, plan and apply for schema and database tenants.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::{CmdOutput, TestEnv, copy_dir, free_port, quote_literal, run};

/// Environment variable that contains the database tenant's password.
const PASSWORD_VAR: &str = "CORE_TEST_PASSWORD";

/// Key of the apply lock, as `pg_advisory_lock` takes it.
const APPLY_LOCK_KEY: i64 = 0x7465_6e61_6e74_0002;

/// Returns the folder of the example application's migrations.
fn example_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app/migrations")
}

/// Copies the first `count` example migrations into `to`.
fn copy_migrations(to: &Path, count: usize) {
    let mut names: Vec<_> = std::fs::read_dir(example_migrations())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    for name in names.into_iter().take(count) {
        copy_dir(&example_migrations().join(&name), &to.join(&name));
    }
}

/// Replaces the test's prefix and temporary folder, which change every run.
fn redact(env: &TestEnv, text: &str) -> String {
    text.replace(&env.dir().display().to_string(), "[DIR]")
        .replace(env.prefix(), "[P]")
}

/// Runs `tenantctl ARGS` with the tenant password set.
fn tenantctl(env: &TestEnv, args: &[&str], password: &str) -> CmdOutput {
    run(env.cmd().env(PASSWORD_VAR, password).args(args))
}

fn assert_code(output: &CmdOutput, code: i32) {
    assert_eq!(
        output.code, code,
        "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
        output.stdout, output.stderr
    );
}

fn count(env: &TestEnv, sql: &str) -> i64 {
    env.psql(sql)
        .parse()
        .unwrap_or_else(|_| panic!("not a number from {sql}"))
}

fn schema_tenant(id: &str, name: &str) -> String {
    format!("\n[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\n")
}

fn database_tenant(id: &str, name: &str, create: bool) -> String {
    format!(
        "\n[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\nisolation = \"database\"\n\
         [tenants.database]\nname = \"{id}_db\"\nuser = \"{id}_owner\"\n\
         password = {{ env = \"{PASSWORD_VAR}\" }}\ncreate = {create}\n"
    )
}

const SPEC_HEAD: &str =
    "version = 1\n\n[defaults]\nisolation = \"schema\"\nmigrations = \"migrations\"\n";

#[test]
fn validate_reports_each_rule() {
    let env = TestEnv::new();
    let cases: &[(&str, &str)] = &[
        ("version.toml", "version = 2\n"),
        (
            "unknown_key.toml",
            "version = 1\n[[tenants]]\nid = \"acme\"\nnmae = \"ACME\"\nisolation = \"schema\"\n",
        ),
        (
            "isolation.toml",
            "version = 1\n[[tenants]]\nid = \"acme\"\nname = \"ACME\"\nisolation = \"tenant\"\n",
        ),
        (
            "ids.toml",
            "version = 1\n[defaults]\nisolation = \"schema\"\n\
             [[tenants]]\nid = \"Acme\"\nname = \"A\"\n\
             [[tenants]]\nid = \"9lives\"\nname = \"B\"\n\
             [[tenants]]\nid = \"has-dash\"\nname = \"C\"\n\
             [[tenants]]\nid = \"public\"\nname = \"D\"\n\
             [[tenants]]\nid = \"information_schema\"\nname = \"E\"\n\
             [[tenants]]\nid = \"tenantctl\"\nname = \"F\"\n\
             [[tenants]]\nid = \"pg_acme\"\nname = \"G\"\n\
             [[tenants]]\nid = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\nname = \"H\"\n\
             [[tenants]]\nid = \"twice\"\nname = \"I\"\n\
             [[tenants]]\nid = \"twice\"\nname = \"J\"\n",
        ),
        (
            "collisions.toml",
            "version = 1\n\
             [[tenants]]\nid = \"one\"\nname = \"One\"\nisolation = \"schema\"\n\
             [[tenants]]\nid = \"two\"\nname = \"Two\"\nisolation = \"schema\"\nschema = { name = \"one\" }\n\
             [[tenants]]\nid = \"three\"\nname = \"Three\"\nisolation = \"database\"\n\
             database = { name = \"shared_db\", user = \"shared_user\", password = \"x\" }\n\
             [[tenants]]\nid = \"four\"\nname = \"Four\"\nisolation = \"database\"\n\
             database = { name = \"shared_db\", user = \"shared_user\", password = \"x\" }\n\
             [[tenants]]\nid = \"five\"\nname = \"Five\"\nisolation = \"schema\"\nschema = { name = \"pg_five\" }\n\
             [[tenants]]\nid = \"six\"\nname = \"Six\"\nisolation = \"database\"\n\
             database = { name = \"Six-DB\", user = \"six\", password = \"x\" }\n",
        ),
        (
            "scalars.yaml",
            "version: 1\ntenants:\n  - id: yes_tenant\n    name: yes\n    isolation: schema\n",
        ),
        (
            "types.yaml",
            "version: 1\ntenants:\n  - id: nulled\n    name: null\n    isolation: schema\n\
             \x20 - id: quoted_port\n    name: Q\n    isolation: database\n\
             \x20   database: {user: q, password: {env: X}, port: \"5432\"}\n\
             \x20 - id: big_port\n    name: B\n    isolation: database\n\
             \x20   database: {user: b, password: {env: X}, port: 70000}\n",
        ),
        (
            "missing.toml",
            "version = 1\n\
             [[tenants]]\nid = \"one\"\nname = \"One\"\nisolation = \"database\"\n\
             database = { user = \"one\", password = { env = \"CORE_TEST_UNSET_ONE\" } }\n\
             [[tenants]]\nid = \"two\"\nname = \"Two\"\nisolation = \"database\"\n\
             database = { user = \"two\", password = { env = \"CORE_TEST_UNSET_TWO\" } }\n",
        ),
        ("empty.yaml", ""),
    ];
    let mut report = String::new();
    for (file, spec) in cases {
        env.write_spec(file, spec);
        let output = run(env.cmd().args(["validate", "-f", file]));
        assert_code(&output, 1);
        assert_eq!(output.stdout, "", "{file}: errors belong on stderr");
        report.push_str(&format!("## {file}\n{}\n", output.stderr));
    }
    insta::assert_snapshot!("validation_errors", report);

    // Invalid arguments exit 1, never the 2 of --detailed-exitcode.
    let usage = run(env
        .cmd()
        .args(["plan", "--detailed-exitcode", "--no-such-flag"]));
    assert_code(&usage, 1);

    // The isolation error carries these two lines exactly.
    let isolation = run(env.cmd().args(["validate", "-f", "isolation.toml"]));
    let lines: Vec<&str> = isolation.stderr.lines().collect();
    assert!(
        lines.contains(&"Error: Invalid isolation type"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"Valid options: database, schema, table, cache"),
        "{lines:?}"
    );

    // The example spec is valid once its password variables are set, also
    // when it arrives on standard input.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants.example.toml");
    let output = run(env
        .cmd()
        .env("ACME_DB_PASSWORD", "not-used")
        .env("GLOBEX_DB_PASSWORD", "not-used")
        .env("INITECH_DB_PASSWORD", "not-used")
        .env("HOOLI_REDIS_PASSWORD", "not-used")
        .arg("validate")
        .arg("-f")
        .arg(&example));
    assert_code(&output, 0);
    assert!(output.stdout.ends_with("is valid: 4 tenants.\n"));
    let yaml = "version: 1\ntenants:\n  - id: acme\n    name: ACME\n    isolation: schema\n";
    let output = run(env
        .cmd()
        .args(["validate", "-f", "-", "--format", "yaml"])
        .write_stdin(yaml));
    assert_code(&output, 0);
    assert_eq!(output.stdout, "<stdin> is valid: 1 tenant.\n");
}

#[test]
fn schema_command_prints_the_committed_schema() {
    let env = TestEnv::new();
    let output = run(env.cmd().arg("schema"));
    assert_code(&output, 0);
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/tenants.schema.json"),
    )
    .unwrap();
    assert!(
        output.stdout == committed,
        "schema/tenants.schema.json is out of date; regenerate it with: \
         cargo run -- schema > schema/tenants.schema.json"
    );
}

/// Walks the life of three tenants: plan, refused and confirmed applies,
/// idempotency, a saved plan going stale, a new migration, a tenant leaving
/// the spec, an adopted schema and a database that may not be created. The
/// password must never show up in any output, plan file or registry table.
#[test]
fn lifecycle_of_schema_and_database_tenants() {
    let env = TestEnv::new();
    let password = format!("pw-{}-Zq9", env.prefix());
    let (alpha, beta, delta) = (env.id("alpha"), env.id("beta"), env.id("delta"));
    let migrations = env.dir().join("migrations");
    copy_migrations(&migrations, 2);
    let spec = format!(
        "{SPEC_HEAD}{}{}{}",
        schema_tenant(&alpha, "Alpha"),
        schema_tenant(&beta, "Beta"),
        database_tenant(&delta, "Delta", true)
    );
    env.write_spec("tenants.toml", &spec);
    let transcript = std::cell::RefCell::new(Vec::new());
    let step = |args: &[&str], code: i32| {
        let output = tenantctl(&env, args, &password);
        assert_code(&output, code);
        transcript.borrow_mut().push(output.both());
        output
    };

    let first = step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 2);
    insta::assert_snapshot!("lifecycle_first_plan", redact(&env, &first.stdout));

    let json = step(&["plan", "-f", "tenants.toml", "--json"], 0);
    let plan: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(plan["format_version"], 1);
    let ids: Vec<&str> = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tenant| tenant["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alpha.as_str(), beta.as_str(), delta.as_str()]);
    assert_eq!(plan["summary"]["add"], 13);

    // Without a terminal, apply refuses to run unconfirmed.
    let refused = step(&["apply", "-f", "tenants.toml"], 1);
    assert!(
        refused.stderr.contains("pass --auto-approve"),
        "{}",
        refused.stderr
    );
    let schema_count = format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
        quote_literal(&alpha)
    );
    assert_eq!(
        count(&env, &schema_count),
        0,
        "a refused apply changed something"
    );
    answer_prompt_with_no(&env, &password);
    assert_eq!(
        count(&env, &schema_count),
        0,
        "a declined apply changed something"
    );

    step(&["plan", "-f", "tenants.toml", "--out", "first.plan"], 0);
    let saved = std::fs::read_to_string(env.dir().join("first.plan")).unwrap();
    transcript.borrow_mut().push(saved);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(env.dir().join("first.plan"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "a plan file is for its owner only");

    let applied = step(&["-vv", "apply", "first.plan"], 0);
    for line in [
        format!("✓ Tenant '{alpha}' created successfully"),
        format!("✓ Tenant '{delta}' created successfully"),
        format!("✓ Database '{delta}_db' created"),
        "✓ Migrations completed".to_string(),
        "Tenant is ready to use".to_string(),
        "Apply complete: 3 created, 0 changed, 0 failed.".to_string(),
    ] {
        assert!(
            applied.stdout.contains(&line),
            "missing {line:?} in\n{}",
            applied.stdout
        );
    }
    check_provisioned(&env, &alpha, &delta, 2);
    check_events_match_plan(&env, &plan);

    // Idempotent: nothing left to do, and the saved plan is now stale.
    let again = step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 0);
    assert_eq!(again.stdout, "No changes. Tenants are up to date.\n");
    let again = step(&["apply", "-f", "tenants.toml", "--auto-approve"], 0);
    assert_eq!(again.stdout, "No changes. Tenants are up to date.\n");
    let stale = step(&["apply", "first.plan"], 1);
    assert!(
        stale
            .stderr
            .contains("stale plan: the servers or the registry changed"),
        "{}",
        stale.stderr
    );

    // A new migration is pending for every tenant. The plan comes from
    // standard input, so applying it needs the same spec again.
    copy_migrations(&migrations, 3);
    let pending = step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 2);
    let new_migration = "+ 1 migration (2024-01-03-000000_add_projects_archived_at)";
    assert_eq!(
        pending.stdout.matches(new_migration).count(),
        3,
        "{}",
        pending.stdout
    );
    let only = step(&["plan", "-f", "tenants.toml", "--tenant", &beta], 0);
    assert!(only.stdout.contains(&beta), "{}", only.stdout);
    assert!(!only.stdout.contains(&alpha), "{}", only.stdout);
    let stdin_plan = run(env
        .cmd()
        .env(PASSWORD_VAR, &password)
        .args(["plan", "-f", "-", "--format", "toml", "--out", "stdin.plan"])
        .write_stdin(spec.as_str()));
    assert_code(&stdin_plan, 0);
    transcript.borrow_mut().push(stdin_plan.both());
    let needs_spec = step(&["apply", "stdin.plan"], 1);
    assert!(
        needs_spec.stderr.contains("made from standard input"),
        "{}",
        needs_spec.stderr
    );
    let from_stdin = run(env
        .cmd()
        .env(PASSWORD_VAR, &password)
        .args(["apply", "stdin.plan", "-f", "-", "--format", "toml"])
        .write_stdin(spec.as_str()));
    assert_code(&from_stdin, 0);
    transcript.borrow_mut().push(from_stdin.both());
    assert!(
        from_stdin
            .stdout
            .contains("Apply complete: 0 created, 3 changed, 0 failed."),
        "{}",
        from_stdin.stdout
    );
    check_provisioned(&env, &alpha, &delta, 3);
    step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 0);
    check_refresh(&env, &delta, &password);

    // A saved plan goes stale when the control URL or the spec changes.
    step(&["plan", "-f", "tenants.toml", "--out", "second.plan"], 0);
    let same_database = env.database_url().replace("postgres://", "postgresql://");
    let elsewhere = step(
        &["--database-url", &same_database, "apply", "second.plan"],
        1,
    );
    assert!(
        elsewhere
            .stderr
            .contains("stale plan: it was made for control database postgres://"),
        "{}",
        elsewhere.stderr
    );
    env.write_spec("tenants.toml", &spec.replace("\"Alpha\"", "\"Alpha Inc\""));
    let stale = step(&["apply", "second.plan"], 1);
    assert!(
        stale.stderr.contains("stale plan: the spec file changed"),
        "{}",
        stale.stderr
    );

    // Beta leaves the spec and is kept; gamma's schema exists already and
    // is adopted; epsilon's database may not be created, so it stays pending.
    let (gamma, epsilon) = (env.id("gamma"), env.id("epsilon"));
    env.psql(&format!("CREATE SCHEMA {gamma}"));
    let spec = format!(
        "{SPEC_HEAD}{}{}{}{}",
        schema_tenant(&alpha, "Alpha Inc"),
        database_tenant(&delta, "Delta", true),
        schema_tenant(&gamma, "Gamma"),
        database_tenant(&epsilon, "Epsilon", false)
    );
    env.write_spec("tenants.toml", &spec);
    let changed = step(&["plan", "-f", "tenants.toml"], 0);
    insta::assert_snapshot!("lifecycle_changed_plan", redact(&env, &changed.stdout));
    let applied = step(
        &[
            "apply",
            "-f",
            "tenants.toml",
            "--auto-approve",
            "--parallelism",
            "2",
        ],
        0,
    );
    for line in [
        format!("✓ Schema '{gamma}' adopted (it existed; not recreated)"),
        format!("✓ Tenant '{epsilon}' registered"),
        "Apply complete: 1 created, 1 changed, 0 failed, 1 pending.".to_string(),
    ] {
        assert!(
            applied.stdout.contains(&line),
            "missing {line:?} in\n{}",
            applied.stdout
        );
    }
    assert_eq!(
        count(&env, &schema_count.replace(&alpha, &beta)),
        1,
        "beta was dropped"
    );
    let statuses = env.psql(
        "SELECT id || ' ' || status || ' ' || array_to_string(adopted, ',') \
         FROM tenantctl.tenants ORDER BY id",
    );
    assert_eq!(
        redact(&env, &statuses),
        "[P]alpha ready \n[P]beta ready \n[P]delta ready \n[P]epsilon pending \n[P]gamma ready schema:[P]gamma"
    );
    let settled = step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 0);
    assert!(
        settled.stdout.contains("stays pending"),
        "{}",
        settled.stdout
    );

    // Epsilon's role and database, made by hand with default privileges,
    // are adopted: PUBLIC loses CONNECT and the role gets its password.
    let owner = format!("{epsilon}_owner");
    env.psql_db(
        "postgres",
        &format!("CREATE ROLE {owner} LOGIN; CREATE DATABASE {epsilon}_db OWNER {owner}"),
    );
    let adopting = step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 2);
    for line in [
        format!("<= role \"{owner}\" (exists; adopted, not recreated)"),
        format!("~ password (sensitive) of role \"{owner}\""),
        format!("<= database \"{epsilon}_db\" on 127.0.0.1:5432 (exists; adopted, not recreated)"),
        format!("~ CONNECT on \"{epsilon}_db\" only for \"{owner}\" (revoked from PUBLIC)"),
    ] {
        assert!(
            adopting.stdout.contains(&line),
            "missing {line:?} in\n{}",
            adopting.stdout
        );
    }
    let adopted = step(&["apply", "-f", "tenants.toml", "--auto-approve"], 0);
    assert!(
        adopted
            .stdout
            .contains("Apply complete: 0 created, 1 changed, 0 failed."),
        "{}",
        adopted.stdout
    );
    check_provisioned(&env, &alpha, &epsilon, 3);
    let record = env.psql(&format!(
        "SELECT status || ' ' || array_to_string(adopted, ',') FROM tenantctl.tenants WHERE id = {}",
        quote_literal(&epsilon)
    ));
    assert_eq!(record, format!("ready role:{owner},database:{epsilon}_db"));
    step(&["plan", "-f", "tenants.toml", "--detailed-exitcode"], 0);

    // The password reached the server only as a SCRAM verifier.
    let registry = env.psql(
        "SELECT t::text FROM tenantctl.tenants t UNION ALL SELECT e::text FROM tenantctl.events e \
         UNION ALL SELECT m::text FROM tenantctl.tenant_migrations m",
    );
    transcript.borrow_mut().push(registry);
    for text in transcript.borrow().iter() {
        assert!(
            !text.contains(&password),
            "the password leaked into:\n{text}"
        );
    }
}

/// Runs apply on a terminal and declines the prompt.
fn answer_prompt_with_no(env: &TestEnv, password: &str) {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"));
    command
        .args(["apply", "-f", "tenants.toml"])
        .current_dir(env.dir())
        .env("TENANTCTL_DATABASE_URL", env.database_url())
        .env("NO_COLOR", "1")
        .env(PASSWORD_VAR, password);
    let mut session = rexpect::session::spawn_command(command, Some(30_000)).unwrap();
    session
        .exp_string("Do you want to apply these changes? (y/n)")
        .unwrap();
    session.send_line("n").unwrap();
    let rest = session.exp_eof().unwrap();
    assert!(rest.contains("Apply cancelled."), "{rest}");
    let status = format!("{:?}", session.process().wait().unwrap());
    assert!(
        status.starts_with("Exited(") && status.ends_with(", 1)"),
        "{status}"
    );
    assert!(
        !rest.contains(password),
        "the password leaked onto the terminal"
    );
}

/// Checks the schema tenant's tables and the database tenant's database,
/// owner, privileges and password verifier.
fn check_provisioned(env: &TestEnv, schema: &str, database_tenant: &str, migrations: i64) {
    let database = format!("{database_tenant}_db");
    let owner = format!("{database_tenant}_owner");
    let archived = migrations >= 3;
    let column = format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = {} \
         AND table_name = 'projects' AND column_name = 'archived_at'",
        quote_literal(schema)
    );
    assert_eq!(count(env, &column), i64::from(archived));
    assert_eq!(
        count(
            env,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        0,
        "migrations must run with search_path set to the tenant schema alone"
    );
    let recorded = format!(
        "SELECT count(*) FROM tenantctl.tenant_migrations WHERE tenant_id IN ({}, {})",
        quote_literal(schema),
        quote_literal(database_tenant)
    );
    assert_eq!(count(env, &recorded), 2 * migrations);

    let facts = env.psql_db(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(d.datdba), \
             EXISTS (SELECT 1 FROM aclexplode(d.datacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CONNECT'), \
             has_database_privilege({owner_lit}, d.datname, 'CONNECT'), \
             (SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AND rolcanlogin FROM pg_authid WHERE rolname = {owner_lit}) \
             FROM pg_database d WHERE d.datname = {}",
            quote_literal(&database),
            owner_lit = quote_literal(&owner)
        ),
    );
    assert_eq!(facts, format!("{owner}|f|t|t"));
    let table_owner = env.psql_db(
        &database,
        "SELECT tableowner FROM pg_tables WHERE tablename = 'projects'",
    );
    assert_eq!(table_owner, owner, "migrations must run as the tenant role");
}

/// Edits a migrated database tenant's own `tenantctl.migrations` behind the
/// registry's back: `plan --refresh` reports both differences and a plain
/// plan none. A version the registry lost is recorded again by apply
/// without running it, since running the third migration twice would fail.
fn check_refresh(env: &TestEnv, tenant: &str, password: &str) {
    let database = format!("{tenant}_db");
    let (second, third) = ("2024-01-02-000000", "2024-01-03-000000");
    env.psql_db(
        &database,
        &format!(
            "DELETE FROM tenantctl.migrations WHERE version = '{second}'; \
             INSERT INTO tenantctl.migrations (version, checksum) VALUES ('2099-01-01-000000', 'fake')"
        ),
    );
    let plain = tenantctl(
        env,
        &["plan", "-f", "tenants.toml", "--detailed-exitcode"],
        password,
    );
    assert_code(&plain, 0);
    assert_eq!(plain.stdout, "No changes. Tenants are up to date.\n");

    let refreshed = tenantctl(env, &["plan", "-f", "tenants.toml", "--refresh"], password);
    assert_code(&refreshed, 0);
    let notes = [
        format!(
            "  # tenant \"{tenant}\" (database) has notes\n  ! migration 2099-01-01-000000 is in tenantctl.migrations of database \"{database}\" but neither in the registry nor among the tenant's migrations; apply leaves it as it is\n"
        ),
        format!(
            "  ! drift: the registry records migration {second} for tenant \"{tenant}\", but tenantctl.migrations of database \"{database}\" lacks it; apply does not run it again"
        ),
        "No changes. Tenants are up to date.\n".to_string(),
    ];
    for note in &notes {
        assert!(
            refreshed.stdout.contains(note),
            "missing {note:?} in\n{}",
            refreshed.stdout
        );
    }
    assert_eq!(
        refreshed.stdout.matches("  ! ").count(),
        2,
        "{}",
        refreshed.stdout
    );

    env.psql(&format!(
        "DELETE FROM tenantctl.tenant_migrations WHERE tenant_id = {} AND version = '{third}'",
        quote_literal(tenant)
    ));
    let lost = tenantctl(
        env,
        &[
            "plan",
            "-f",
            "tenants.toml",
            "--refresh",
            "--out",
            "refresh.plan",
        ],
        password,
    );
    let recorded_again = format!(
        "  ! migration {third} is in tenantctl.migrations of database \"{database}\" but not in the registry; apply records it without running it again"
    );
    assert!(lost.stdout.contains(&recorded_again), "{}", lost.stdout);
    assert!(
        lost.stdout.contains(&format!("+ 1 migration ({third}_")),
        "{}",
        lost.stdout
    );
    // The saved plan keeps --refresh, so apply reads the same notes again
    // and does not find the plan stale.
    let applied = tenantctl(env, &["apply", "refresh.plan"], password);
    assert_code(&applied, 0);
    assert!(
        applied
            .stdout
            .contains("Apply complete: 0 created, 1 changed, 0 failed."),
        "{}",
        applied.stdout
    );

    // Both records agree again once the edits are undone.
    let checksum = env.psql(&format!(
        "SELECT checksum FROM tenantctl.tenant_migrations WHERE tenant_id = {} AND version = '{second}'",
        quote_literal(tenant)
    ));
    env.psql_db(
        &database,
        &format!(
            "DELETE FROM tenantctl.migrations WHERE version = '2099-01-01-000000'; \
             INSERT INTO tenantctl.migrations (version, checksum) VALUES ('{second}', {})",
            quote_literal(&checksum)
        ),
    );
    let after = tenantctl(
        env,
        &["apply", "-f", "tenants.toml", "--refresh", "--auto-approve"],
        password,
    );
    assert_code(&after, 0);
    assert_eq!(after.stdout, "No changes. Tenants are up to date.\n");
}

/// Checks that the event log has one row per planned action.
fn check_events_match_plan(env: &TestEnv, plan: &serde_json::Value) {
    for tenant in plan["tenants"].as_array().unwrap() {
        let id = tenant["id"].as_str().unwrap();
        let actions = tenant["actions"].as_array().unwrap().len();
        let events = count(
            env,
            &format!(
                "SELECT count(*) FROM tenantctl.events WHERE tenant_id = {} AND outcome = 'ok'",
                quote_literal(id)
            ),
        );
        assert_eq!(events, actions as i64, "events of tenant {id}");
    }
}

/// One tenant's migration fails: it is marked failed with its error while the
/// others succeed, and a rerun after the fix applies only that tenant. The
/// plan's reads stay the same when more tenants are declared.
#[test]
fn failing_tenant_is_isolated_and_retried() {
    let env = TestEnv::new();
    let password = format!("pw-{}-Fx1", env.prefix());
    copy_migrations(&env.dir().join("migrations"), 2);
    let broken = env.dir().join("broken");
    copy_migrations(&broken, 2);
    let bad_sql = broken.join("2024-01-05-000000_broken/up.sql");
    std::fs::create_dir_all(bad_sql.parent().unwrap()).unwrap();
    std::fs::write(
        &bad_sql,
        "CREATE TABLE notes (user_id bigint REFERENCES nowhere (id));\n",
    )
    .unwrap();

    let ids: Vec<String> = (1..=4).map(|n| env.id(&format!("ok{n}"))).collect();
    let (bad, bad_db) = (env.id("bad"), env.id("baddb"));
    let mut spec = SPEC_HEAD.to_string();
    for id in &ids[..2] {
        spec.push_str(&schema_tenant(id, "Fine"));
    }
    spec.push_str(&schema_tenant(&bad, "Bad"));
    spec.push_str("migrations = \"broken\"\n");
    spec.push_str(&database_tenant(&bad_db, "Bad database", true).replace(
        "isolation = \"database\"\n",
        "isolation = \"database\"\nmigrations = \"broken\"\n",
    ));
    for id in &ids[2..] {
        spec.push_str(&schema_tenant(id, "Fine"));
    }
    env.write_spec("tenants.toml", &spec);

    let failed = tenantctl(
        &env,
        &["apply", "-f", "tenants.toml", "--auto-approve"],
        &password,
    );
    assert_code(&failed, 1);
    assert!(
        failed
            .stdout
            .contains("Apply complete: 4 created, 0 changed, 2 failed."),
        "{}{}",
        failed.stdout,
        failed.stderr
    );
    let failure = format!(
        "✗ Tenant '{bad}' failed: migration 2024-01-05-000000_broken: relation \"nowhere\" does not exist"
    );
    assert!(failed.stdout.contains(&failure), "{}", failed.stdout);
    let statuses = env.psql(
        "SELECT id || ' ' || status || ' ' || coalesce(last_error, '-') FROM tenantctl.tenants ORDER BY id",
    );
    let error = "migration 2024-01-05-000000_broken: relation \"nowhere\" does not exist \
                 (at ./broken/2024-01-05-000000_broken/up.sql)";
    assert_eq!(
        redact(&env, &statuses),
        format!(
            "[P]bad failed {error}\n[P]baddb failed {error}\n[P]ok1 ready -\n[P]ok2 ready -\n[P]ok3 ready -\n[P]ok4 ready -"
        )
    );
    // The schema tenant's work rolled back as one transaction; the database
    // tenant keeps its role and database, logged before the failure.
    let bad_schema = format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
        quote_literal(&bad)
    );
    assert_eq!(count(&env, &bad_schema), 0);
    let events = env.psql(&format!(
        "SELECT outcome || ' ' || action FROM tenantctl.events WHERE tenant_id = {} ORDER BY id",
        quote_literal(&bad_db)
    ));
    assert_eq!(
        redact(&env, &events),
        "ok role \"[P]baddb_owner\" (login, password (sensitive))\n\
         ok database \"[P]baddb_db\" on 127.0.0.1:5432, owner \"[P]baddb_owner\"\n\
         ok CONNECT on \"[P]baddb_db\" only for \"[P]baddb_owner\" (revoked from PUBLIC)\n\
         failed migration 2024-01-05-000000_broken"
    );
    // The event's action is the step, so its error does not repeat it, while
    // the tenant's last error keeps the whole text.
    let failed_events = env.psql(&format!(
        "SELECT tenant_id || ' ' || action || ' | ' || error FROM tenantctl.events \
         WHERE tenant_id IN ({}, {}) AND outcome = 'failed' ORDER BY tenant_id",
        quote_literal(&bad),
        quote_literal(&bad_db)
    ));
    let event_error = "relation \"nowhere\" does not exist \
                       (at ./broken/2024-01-05-000000_broken/up.sql)";
    assert_eq!(
        redact(&env, &failed_events),
        format!(
            "[P]bad migration 2024-01-05-000000_broken | {event_error}\n\
             [P]baddb migration 2024-01-05-000000_broken | {event_error}"
        )
    );

    let retry_plan = tenantctl(&env, &["-vv", "plan", "-f", "tenants.toml"], &password);
    assert_code(&retry_plan, 0);
    insta::assert_snapshot!("failed_tenants_plan", redact(&env, &retry_plan.stdout));

    // Six more declared tenants do not add a single query to the plan's reads.
    let mut bigger = spec.clone();
    for n in 5..=10 {
        bigger.push_str(&schema_tenant(&env.id(&format!("ok{n}")), "More"));
    }
    env.write_spec("bigger.toml", &bigger);
    let bigger_plan = tenantctl(&env, &["-vv", "plan", "-f", "bigger.toml"], &password);
    assert_code(&bigger_plan, 0);
    assert_eq!(
        state_queries(&retry_plan),
        state_queries(&bigger_plan),
        "plan's reads grew with the tenant count"
    );

    std::fs::write(
        &bad_sql,
        "CREATE TABLE notes (user_id bigint REFERENCES users (id));\n",
    )
    .unwrap();
    let retried = tenantctl(
        &env,
        &[
            "apply",
            "-f",
            "tenants.toml",
            "--auto-approve",
            "--parallelism",
            "1",
        ],
        &password,
    );
    assert_code(&retried, 0);
    assert!(
        retried
            .stdout
            .contains("Apply complete: 1 created, 1 changed, 0 failed."),
        "{}",
        retried.stdout
    );
    assert!(
        !retried.stdout.contains(&ids[0]),
        "a ready tenant was applied again"
    );
    let errors = count(
        &env,
        "SELECT count(*) FROM tenantctl.tenants WHERE status <> 'ready' OR last_error IS NOT NULL",
    );
    assert_eq!(errors, 0);
    let done = tenantctl(
        &env,
        &["plan", "-f", "tenants.toml", "--detailed-exitcode"],
        &password,
    );
    assert_code(&done, 0);
    assert!(!(failed.both() + &retried.both()).contains(&password));
}

/// Returns the number of queries plan used to read the state, from its
/// debug log.
fn state_queries(output: &CmdOutput) -> usize {
    let line = output
        .stderr
        .lines()
        .find(|line| line.contains("read the actual state"))
        .unwrap_or_else(|| panic!("no state read in the log:\n{}", output.stderr));
    let count = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("queries="))
        .unwrap_or_else(|| panic!("no query count in {line:?}"));
    count.parse().unwrap()
}

/// Apply waits for the advisory lock another session holds and gives up
/// after `--lock-timeout` naming the lock; the control URL follows flag >
/// environment > spec, and an unreachable server gets the exact message.
#[test]
fn apply_lock_and_connection_settings() {
    let env = TestEnv::new();
    let tenant = env.id("locked");
    env.write_spec(
        "tenants.toml",
        &format!(
            "version = 1\n{}isolation = \"schema\"\n",
            schema_tenant(&tenant, "Locked")
        ),
    );

    let mut holder = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            support::PG_HOST,
            "-U",
            "postgres",
            "-d",
            env.control_db(),
        ])
        .args([
            "-c",
            &format!("SELECT pg_advisory_lock({APPLY_LOCK_KEY}); SELECT pg_sleep(60)"),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("failed to start psql");
    // Advisory locks belong to one database, and other tests take the same
    // key in theirs, so only this test's control database is looked at.
    let held = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = {} \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        APPLY_LOCK_KEY & 0xffff_ffff
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&env, &held) == 0 {
        assert!(Instant::now() < deadline, "psql did not take the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let blocked = run(env.cmd().args([
        "apply",
        "-f",
        "tenants.toml",
        "--auto-approve",
        "--lock-timeout",
        "2s",
    ]));
    let waited = started.elapsed();
    // Killing psql would leave its server process asleep with the lock.
    env.psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = {} \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        APPLY_LOCK_KEY & 0xffff_ffff
    ));
    let _ = holder.wait();
    assert_code(&blocked, 1);
    assert!(
        waited >= Duration::from_secs(2),
        "apply gave up after {waited:?}"
    );
    assert!(
        blocked.stderr.contains("Waiting for the apply lock"),
        "{}",
        blocked.stderr
    );
    let timeout = format!(
        "Error: timed out after 2s waiting for the tenantctl apply lock (pg_advisory_lock({APPLY_LOCK_KEY}) in the control database)"
    );
    assert!(blocked.stderr.contains(&timeout), "{}", blocked.stderr);
    let schema = format!(
        "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
        quote_literal(&tenant)
    );
    assert_eq!(count(&env, &schema), 0);

    // The probe closes the port again, so no server listens there.
    let closed = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let unreachable =
        run(env
            .cmd()
            .args(["--database-url", &closed, "plan", "-f", "tenants.toml"]));
    assert_code(&unreachable, 1);
    let lines: Vec<&str> = unreachable.stderr.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"Error: Cannot connect to database server"),
        "{lines:?}"
    );
    assert_eq!(
        lines.last(),
        Some(&"Verify database host, port, and credentials.")
    );
    assert!(unreachable.stderr.contains(&closed));

    // An unknown --tenant is reported before any connection is tried.
    let unknown = run(env.cmd().args([
        "--database-url",
        &closed,
        "plan",
        "-f",
        "tenants.toml",
        "--tenant",
        "nobody",
    ]));
    assert_code(&unknown, 1);
    assert!(
        unknown
            .stderr
            .starts_with("Error: Tenant 'nobody' not found in tenants.toml"),
        "{}",
        unknown.stderr
    );

    // With --tenant, another tenant's unset password is not needed.
    let other = env.id("other_db");
    let partial = format!(
        "version = 1\n{}isolation = \"schema\"\n{}",
        schema_tenant(&tenant, "Locked"),
        database_tenant(&other, "Other", true)
    );
    env.write_spec("partial.toml", &partial);
    let everything = run(env
        .cmd()
        .env_remove(PASSWORD_VAR)
        .args(["plan", "-f", "partial.toml"]));
    assert_code(&everything, 1);
    assert!(
        everything.stderr.contains(PASSWORD_VAR),
        "{}",
        everything.stderr
    );
    let selected = run(env.cmd().env_remove(PASSWORD_VAR).args([
        "plan",
        "-f",
        "partial.toml",
        "--tenant",
        &tenant,
    ]));
    assert!(
        !selected.stderr.contains(PASSWORD_VAR),
        "{}",
        selected.stderr
    );
    assert!(
        selected.stdout.contains(&format!("tenant \"{tenant}\"")),
        "{}",
        selected.stdout
    );

    // The spec's control URL counts only without flag and environment.
    let in_spec = format!(
        "version = 1\n[control]\ndatabase_url = \"{}\"\n{}isolation = \"schema\"\n",
        env.database_url(),
        schema_tenant(&tenant, "Locked")
    );
    env.write_spec("control.toml", &in_spec);
    let from_spec = run(env.cmd().env_remove("TENANTCTL_DATABASE_URL").args([
        "apply",
        "-f",
        "control.toml",
        "--auto-approve",
    ]));
    assert_code(&from_spec, 0);
    assert_eq!(count(&env, &schema), 1);
    let overridden =
        run(env
            .cmd()
            .env("TENANTCTL_DATABASE_URL", &closed)
            .args(["plan", "-f", "control.toml"]));
    assert_code(&overridden, 1);
    assert!(overridden.stderr.contains(&closed), "{}", overridden.stderr);
    let flag_wins = run(env.cmd().env("TENANTCTL_DATABASE_URL", &closed).args([
        "--database-url",
        &env.database_url(),
        "plan",
        "-f",
        "control.toml",
    ]));
    assert_code(&flag_wins, 0);
    assert_eq!(flag_wins.stdout, "No changes. Tenants are up to date.\n");
}

/// Applies the real Django application's 19 migrations, then its 20th as a
/// new migration, to a few schema tenants.
#[test]
fn django_application_reaches_schema_tenants() {
    let Some(bench) = support::shared_bench_dir() else {
        println!("skipped: ../shared/bench is absent, so there is no Django application to apply");
        return;
    };
    let app = bench.join("django-app");
    let env = TestEnv::new();
    let migrations = env.dir().join("migrations");
    copy_dir(&app.join("migrations"), &migrations);
    let ids: Vec<String> = (1..=3).map(|n| env.id(&format!("shop{n}"))).collect();
    let mut spec = SPEC_HEAD.to_string();
    for id in &ids {
        spec.push_str(&schema_tenant(id, "Shop"));
    }
    env.write_spec("tenants.toml", &spec);

    let first = run(env
        .cmd()
        .args(["apply", "-f", "tenants.toml", "--auto-approve"]));
    assert_code(&first, 0);
    assert!(
        first
            .stdout
            .contains("Apply complete: 3 created, 0 changed, 0 failed.")
    );
    let recorded = count(&env, "SELECT count(*) FROM tenantctl.tenant_migrations");
    assert_eq!(recorded, 3 * 19);

    copy_dir(&app.join("migrations-next"), &migrations);
    let pending = run(env
        .cmd()
        .args(["plan", "-f", "tenants.toml", "--detailed-exitcode"]));
    assert_code(&pending, 2);
    assert_eq!(
        pending.stdout.matches("+ 1 migration (").count(),
        3,
        "{}",
        pending.stdout
    );
    let second = run(env
        .cmd()
        .args(["apply", "-f", "tenants.toml", "--auto-approve"]));
    assert_code(&second, 0);
    let tables = count(
        &env,
        &format!(
            "SELECT count(*) FROM pg_tables WHERE schemaname = {}",
            quote_literal(&ids[0])
        ),
    );
    assert_eq!(
        tables, 15,
        "13 application tables and 2 from the new migration"
    );
    let done = run(env
        .cmd()
        .args(["plan", "-f", "tenants.toml", "--detailed-exitcode"]));
    assert_code(&done, 0);
}

/// The tool's warnings go to stderr once each, the plan text to stdout, and
/// `plan --json` keeps stdout pure JSON with the warnings inside.
#[test]
fn plan_warnings_go_to_stderr() {
    let env = TestEnv::new();
    let shared = env.dir().join("shared/1_items");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(
        shared.join("up.sql"),
        "CREATE TABLE items (tenant_id text, name text);",
    )
    .unwrap();
    let (table, cache) = (env.id("table"), env.id("cache"));
    env.write_spec(
        "tenants.toml",
        &format!(
            "version = 1\n[tables]\nmigrations = \"shared\"\n\
             [[tenants]]\nid = \"{table}\"\nname = \"t\"\nisolation = \"table\"\n\
             [[tenants]]\nid = \"{cache}\"\nname = \"c\"\nisolation = \"cache\"\n\
             [tenants.cache]\npassword = \"literal-pw\"\n"
        ),
    );
    // Plan warns about the shared Redis server only while its default user
    // is on without a password.
    let default_open = env
        .redis(&["ACL", "GETUSER", "default"])
        .lines()
        .any(|line| line == "nopass");
    let mut expected = vec![
        "is a literal secret in the spec file",
        "skips every row-level security policy",
    ];
    if default_open {
        expected.push("Warning: the default user of Redis server");
    }
    let plan = tenantctl(&env, &["plan"], "");
    assert_code(&plan, 0);
    assert!(!plan.stdout.contains("Warning"), "{}", plan.stdout);
    assert!(plan.stdout.contains("Plan: "), "{}", plan.stdout);
    let warnings: Vec<&str> = plan
        .stderr
        .lines()
        .filter(|line| line.starts_with("Warning: "))
        .collect();
    for text in &expected {
        let found = warnings.iter().filter(|line| line.contains(text)).count();
        assert_eq!(found, 1, "{text}: {}", plan.stderr);
    }
    assert_eq!(warnings.len(), expected.len(), "{}", plan.stderr);

    let json = tenantctl(&env, &["plan", "--json"], "");
    assert_code(&json, 0);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan --json");
    let listed = document["warnings"].as_array().expect("warnings").len();
    assert_eq!(listed, expected.len(), "{}", json.stdout);
}
