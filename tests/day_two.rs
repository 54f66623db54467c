//! The day-two commands against the real servers: list, show,
//! create-superuser, shell, exec, apply --prune and destroy.

mod support;

use std::path::Path;
use std::process::Command;

use support::{CmdOutput, TestEnv, quote_literal, run};

/// Password of every tenant role in these specs, read from the environment.
const PASSWORD_VAR: &str = "DAY_TWO_PASSWORD";
const PASSWORD: &str = "day-two-secret-Zq7";

fn write_migration(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
}

fn tenantctl(env: &TestEnv, args: &[&str]) -> CmdOutput {
    run(env.cmd().env(PASSWORD_VAR, PASSWORD).args(args))
}

fn assert_code(output: &CmdOutput, code: i32) {
    assert_eq!(
        output.code, code,
        "unexpected exit code\n--- stdout\n{}\n--- stderr\n{}",
        output.stdout, output.stderr
    );
}

/// Replaces the prefix and the folder, which change every run.
fn redact(env: &TestEnv, text: &str) -> String {
    text.replace(&env.dir().display().to_string(), "[DIR]")
        .replace(env.prefix(), "[P]")
}

/// Snapshots `text` with timestamps, checksums and the column padding that
/// depends on the prefix's length filtered out.
macro_rules! assert_redacted_snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({filters => vec![
            (r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( UTC|Z)?", "[TIME]"),
            (r"checksum [0-9a-f]{12}", "checksum [SUM]"),
            (r"(\S) {2,}", "$1  "),
        ]}, {
            insta::assert_snapshot!($name, $text);
        })
    };
}

/// Returns a spec with a schema tenant with a role and a database tenant,
/// both with a password.
fn spec(env: &TestEnv) -> String {
    let (schema, database) = (env.id("acme"), env.id("globex"));
    format!(
        "version = 1\n[defaults]\nmigrations = \"mig\"\n\
         [[tenants]]\nid = \"{schema}\"\nname = \"Acme\"\nisolation = \"schema\"\n\
         [tenants.schema]\nuser = \"{schema}_app\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n\
         [[tenants]]\nid = \"{database}\"\nname = \"Globex\"\nisolation = \"database\"\n\
         [tenants.database]\nuser = \"{database}_owner\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
    )
}

fn applied(env: &TestEnv) {
    let mig = env.dir().join("mig");
    write_migration(
        &mig,
        "1_users",
        "CREATE TABLE users (id int PRIMARY KEY, name text);",
    );
    env.write_spec("tenants.toml", &spec(env));
    assert_code(&tenantctl(env, &["apply", "--auto-approve"]), 0);
}

#[test]
fn list_and_show_from_registry_and_spec() {
    let env = TestEnv::new();
    applied(&env);
    write_migration(
        &env.dir().join("mig"),
        "2_orders",
        "CREATE TABLE orders (id int);",
    );

    let list = tenantctl(&env, &["list"]);
    assert_code(&list, 0);
    assert_redacted_snapshot!("list_text", redact(&env, &list.stdout));

    let json = tenantctl(&env, &["list", "--json", "--isolation", "database"]);
    assert_code(&json, 0);
    let rows: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["id"], env.id("globex"));
    assert_eq!(rows[0]["migrations_applied"], 1);
    assert_eq!(rows[0]["migrations_pending"], 1);
    assert_eq!(rows[0]["status"], "ready");

    let unmatched = tenantctl(&env, &["list", "--status", "failed"]);
    assert_code(&unmatched, 0);
    assert!(
        unmatched
            .stderr
            .contains("No tenants match the filters (2 registered)."),
        "{}",
        unmatched.stderr
    );

    // Without the spec only the registry speaks: pending is unknown.
    let bare = run(env
        .cmd()
        .args(["list", "--json", "--status", "ready", "-f", "/dev/null"]));
    assert_code(&bare, 1);
    std::fs::rename(env.dir().join("tenants.toml"), env.dir().join("spec.toml")).unwrap();
    let bare = tenantctl(&env, &["list", "--json", "--status", "ready"]);
    assert_code(&bare, 0);
    let rows: serde_json::Value = serde_json::from_str(&bare.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(rows[0]["migrations_pending"].is_null());
    let invalid = tenantctl(&env, &["list", "--status", "gone"]);
    assert_code(&invalid, 1);
    assert!(invalid.stderr.contains("invalid status `gone`"));

    // Drift: a grant outside tenantctl shows as a repair, and the new
    // migration as pending.
    env.psql(&format!(
        "GRANT USAGE ON SCHEMA \"{}\" TO PUBLIC",
        env.id("acme")
    ));
    let show = tenantctl(&env, &["show", &env.id("acme"), "-f", "spec.toml"]);
    assert_code(&show, 0);
    assert_redacted_snapshot!("show_text", redact(&env, &show.stdout));

    let show_json = tenantctl(&env, &["show", &env.id("globex"), "--json"]);
    assert_code(&show_json, 0);
    let details: serde_json::Value = serde_json::from_str(&show_json.stdout).unwrap();
    assert_eq!(details["tenant"]["config"]["owner"], env.id("globex_owner"));
    assert_eq!(details["migrations"][0]["version"], "1");
    assert!(details["drift"].is_null());
    assert!(details["events"].as_array().unwrap().len() >= 4);
    assert!(!show_json.stdout.contains(PASSWORD));

    let ghost = tenantctl(&env, &["show", "ghost"]);
    assert_code(&ghost, 1);
    assert_eq!(
        ghost.stderr,
        "Error: Tenant 'ghost' not found\n  hint: list the registered tenants with tenantctl list\n"
    );
}

/// Runs one statement as `user` through psql; returns the output or error.
fn psql_as(user: &str, database: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-U",
            user,
            "-d",
            database,
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

#[test]
fn superuser_reaches_its_tenant_only() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(
        &mig,
        "1_users",
        "CREATE TABLE users (id int PRIMARY KEY, name text);",
    );
    let (a, b) = (env.id("acme"), env.id("globex"));
    let mut text = spec(&env);
    for name in ["initech", "umbrella"] {
        let id = env.id(name);
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\nisolation = \"database\"\n\
             [tenants.database]\nuser = \"{id}\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
        ));
    }
    let e = env.id("hooli");
    text.push_str(&format!(
        "[[tenants]]\nid = \"{e}\"\nname = \"Hooli\"\nisolation = \"schema\"\n"
    ));
    env.write_spec("tenants.toml", &text);
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    let (c, d) = (env.id("initech"), env.id("umbrella"));

    // Schema tenant acme and database tenant initech get a superuser each.
    let schema_admin = env.id("acme_admin");
    let made = run(env.cmd().env("SU_PASSWORD", "su-secret-1").args([
        "create-superuser",
        &a,
        "--username",
        &schema_admin,
        "--password-env",
        "SU_PASSWORD",
    ]));
    assert_code(&made, 0);
    assert!(made.stdout.contains(&format!(
        "Connect with: psql 'postgres://{schema_admin}@127.0.0.1:5432/{}'",
        env.control_db()
    )));
    assert!(!made.both().contains("su-secret-1"));
    let database_admin = format!("{c}_admin");
    let made = run(env.cmd().env("SU_PASSWORD", "su-secret-2").args([
        "create-superuser",
        &c,
        "--password-env",
        "SU_PASSWORD",
    ]));
    assert_code(&made, 0);
    assert!(
        made.stdout
            .contains(&format!("postgres://{database_admin}@127.0.0.1:5432/{c}'"))
    );

    // Idempotent: the second run keeps the role and sets a new verifier.
    let verifier = |role: &str| {
        env.psql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(role)
        ))
    };
    let before = verifier(&database_admin);
    assert!(before.starts_with("SCRAM-SHA-256$"));
    let again = run(env.cmd().env("SU_PASSWORD", "su-secret-3").args([
        "create-superuser",
        &c,
        "--password-env",
        "SU_PASSWORD",
    ]));
    assert_code(&again, 0);
    assert_ne!(verifier(&database_admin), before);

    // The database superuser works in its database and nowhere else.
    let control = env.control_db();
    assert_eq!(
        psql_as(
            &database_admin,
            &c,
            "INSERT INTO users VALUES (1, 'x'); SELECT count(*) FROM users"
        ),
        Ok("INSERT 0 1\n1".to_string())
    );
    let denied = psql_as(&database_admin, &d, "SELECT 1").unwrap_err();
    assert!(
        denied.contains("permission denied for database"),
        "{denied}"
    );
    let denied = psql_as(
        &database_admin,
        control,
        &format!("SELECT count(*) FROM \"{a}\".users"),
    )
    .unwrap_err();
    assert!(denied.contains("permission denied for schema"), "{denied}");

    // The schema superuser owns its schema's objects, now and later.
    assert_eq!(
        psql_as(
            &schema_admin,
            control,
            "INSERT INTO users VALUES (1, 'a'); SELECT count(*) FROM users"
        ),
        Ok("INSERT 0 1\n1".to_string())
    );
    write_migration(&mig, "2_later", "CREATE TABLE later (id int);");
    assert_code(&tenantctl(&env, &["migrate", &a]), 0);
    assert_eq!(
        psql_as(&schema_admin, control, "SELECT count(*) FROM later"),
        Ok("0".to_string())
    );
    assert_eq!(
        psql_as(&schema_admin, control, "DROP TABLE later"),
        Ok("DROP TABLE".to_string())
    );
    for (database, sql) in [
        (control, format!("SELECT 1 FROM \"{e}\".users")),
        (control, "SELECT 1 FROM tenantctl.tenants".to_string()),
        (b.as_str(), "SELECT 1".to_string()),
        (c.as_str(), "SELECT 1".to_string()),
    ] {
        let denied = psql_as(&schema_admin, database, &sql).unwrap_err();
        assert!(
            denied.contains("permission denied"),
            "{database}: {sql}: {denied}"
        );
    }

    // Roles that belong to something else are refused.
    for (username, owner) in [
        (database_admin.as_str(), "tenant"),
        (&format!("{b}_owner"), "exists"),
    ] {
        let taken = run(env.cmd().env("SU_PASSWORD", "x").args([
            "create-superuser",
            &a,
            "--username",
            username,
            "--password-env",
            "SU_PASSWORD",
        ]));
        assert_code(&taken, 1);
        assert!(taken.stderr.contains(owner), "{}", taken.stderr);
        assert!(
            taken
                .stderr
                .contains("hint: choose another name with --username")
        );
    }
    let no_password = tenantctl(&env, &["create-superuser", &a]);
    assert_code(&no_password, 1);
    assert!(no_password.stderr.contains("pass --password-env VAR"));
}

#[test]
fn shell_and_exec_run_in_tenant_context() {
    let env = TestEnv::new();
    applied(&env);
    let (a, b) = (env.id("acme"), env.id("globex"));

    // The schema tenant's shell logs in as its role with its search_path.
    let sql = "SELECT current_user, current_setting('search_path'), count(*) FROM users";
    let shell = tenantctl(&env, &["shell", &a, "--", "-X", "-A", "-t", "-c", sql]);
    assert_code(&shell, 0);
    assert_eq!(shell.stdout.trim(), format!("{a}_app|{a}|0"));
    let shell = tenantctl(
        &env,
        &[
            "shell",
            &b,
            "--",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_user, current_database()",
        ],
    );
    assert_code(&shell, 0);
    assert_eq!(shell.stdout.trim(), format!("{b}_owner|{b}"));

    // Without the spec, the admin logs in and takes on the tenant's role.
    std::fs::rename(env.dir().join("tenants.toml"), env.dir().join("spec.toml")).unwrap();
    let shell = tenantctl(
        &env,
        &[
            "shell",
            &a,
            "--",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT current_user, session_user",
        ],
    );
    assert_code(&shell, 0);
    assert_eq!(shell.stdout.trim(), format!("{a}_app|postgres"));

    let ghost = tenantctl(&env, &["shell", "ghost", "--", "-c", "SELECT 1"]);
    assert_code(&ghost, 1);
    assert!(ghost.stderr.starts_with("Error: Tenant 'ghost' not found"));
    let no_psql = run(env.cmd().env("PATH", "/nonexistent").args(["shell", &a]));
    assert_code(&no_psql, 1);
    assert!(no_psql.stderr.contains("`psql` was not found on PATH"));
    assert!(no_psql.stderr.contains("postgresql-client"));

    // exec passes the context in the environment, the password never in argv.
    let script = "echo \"$TENANT_ID|$DATABASE_URL|$PGOPTIONS|${PGPASSWORD:+set}\"";
    let exec = run(env.cmd().env(PASSWORD_VAR, PASSWORD).args([
        "exec",
        &a,
        "-f",
        "spec.toml",
        "--",
        "sh",
        "-c",
        script,
    ]));
    assert_code(&exec, 0);
    assert_eq!(
        exec.stdout.trim(),
        format!(
            "{a}|postgres://{a}_app@127.0.0.1:5432/{}|-c search_path={a}|set",
            env.control_db()
        )
    );
    let exit = tenantctl(&env, &["exec", &b, "--", "sh", "-c", "exit 7"]);
    assert_code(&exit, 7);

    // --all prefixes every line and reports failures per tenant.
    let script = "echo out; echo err >&2; psql -X -A -t -c 'SELECT current_user'; [ \"$TENANT_ID\" != \"$FAIL\" ]";
    let all = run(env.cmd().env("FAIL", &b).args([
        "exec",
        "--all",
        "--parallelism",
        "2",
        "--",
        "sh",
        "-c",
        script,
    ]));
    assert_code(&all, 1);
    for id in [&a, &b] {
        assert!(
            all.stdout.contains(&format!("{id}: out\n")),
            "{}",
            all.stdout
        );
        assert!(
            all.stderr.contains(&format!("{id}: err\n")),
            "{}",
            all.stderr
        );
    }
    assert!(all.stdout.contains(&format!("{a}: {a}_app\n")));
    assert!(all.stdout.contains(&format!("{b}: {b}_owner\n")));
    assert!(
        all.stderr
            .contains(&format!("{b}: failed with exit code 1"))
    );
    assert!(
        all.stderr
            .contains(&format!("Ran on 2 tenants, 1 failed: {b}."))
    );
}

/// A tenant that names the schema or role of a registered tenant removed
/// from the spec must not adopt it: pruning that tenant would then drop the
/// schema under both.
#[test]
fn declared_tenant_cannot_take_another_registered_tenants_objects() {
    let env = TestEnv::new();
    applied(&env);
    let (acme, globex, thief) = (env.id("acme"), env.id("globex"), env.id("thief"));
    env.write_spec(
        "tenants.toml",
        &format!(
            "version = 1\n[defaults]\nmigrations = \"mig\"\n\
             [[tenants]]\nid = \"{thief}\"\nname = \"Thief\"\nisolation = \"schema\"\n\
             [tenants.schema]\nname = \"{acme}\"\nuser = \"{globex}_owner\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
        ),
    );
    let plan = tenantctl(&env, &["plan"]);
    assert_code(&plan, 0);
    for object in [
        format!("schema \"{acme}\" belongs to tenant \"{acme}\" in the registry"),
        format!("role \"{globex}_owner\" on 127.0.0.1:5432 belongs to tenant \"{globex}\""),
    ] {
        assert!(plan.stdout.contains(&object), "{}", plan.stdout);
    }
    assert!(!plan.stdout.contains("adopted"), "{}", plan.stdout);
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    assert_eq!(
        env.psql("SELECT string_agg(id, ',' ORDER BY id) FROM tenantctl.tenants"),
        format!("{acme},{globex}")
    );
}

#[test]
fn prune_and_destroy_remove_only_what_tenantctl_made() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_users", "CREATE TABLE users (id int PRIMARY KEY);");
    let (a, b, kept, adopted, neighbour) = (
        env.id("ab"),
        env.id("db"),
        env.id("kept"),
        env.id("adopted"),
        env.id("abc"),
    );
    // A schema that exists before its tenant is adopted, with data.
    env.psql(&format!("CREATE SCHEMA \"{adopted}\"; CREATE TABLE \"{adopted}\".data (id int); INSERT INTO \"{adopted}\".data VALUES (1)"));
    let tenant = |id: &str, extra: &str| {
        format!("[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"schema\"\n{extra}")
    };
    let declared = [
        tenant(
            &a,
            &format!(
                "[tenants.schema]\nuser = \"{a}_app\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n[tenants.cache]\nprefix = \"{a}:\"\nacl_user = false\n"
            ),
        ),
        format!(
            "[[tenants]]\nid = \"{b}\"\nname = \"db\"\nisolation = \"database\"\n[tenants.database]\nuser = \"{b}\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
        ),
        tenant(&kept, "deletion_protection = true\n"),
        tenant(&adopted, ""),
        tenant(
            &neighbour,
            &format!("[tenants.cache]\nprefix = \"{neighbour}:\"\nacl_user = false\n"),
        ),
    ];
    let head = "version = 1\n[defaults]\nmigrations = \"mig\"\n";
    env.write_spec("tenants.toml", &format!("{head}{}", declared.concat()));
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    env.cmd()
        .env("SU_PASSWORD", "x")
        .args(["create-superuser", &a, "--password-env", "SU_PASSWORD"])
        .assert()
        .success();
    for key in [format!("{a}:1"), format!("{a}:2"), format!("{neighbour}:1")] {
        env.redis(&["SET", &key, "v"]);
    }

    // Only the neighbour stays declared. Without --prune the others are kept.
    env.write_spec("tenants.toml", &format!("{head}{}", declared[4]));
    let kept_plan = tenantctl(&env, &["plan"]);
    assert_code(&kept_plan, 0);
    assert!(kept_plan.stdout.contains(&format!("tenant \"{a}\" (schema) is no longer declared in the spec; it is kept (apply --prune removes it)")));
    let plan = tenantctl(&env, &["plan", "--prune"]);
    assert_code(&plan, 0);
    assert_redacted_snapshot!("prune_plan", redact(&env, &plan.stdout));
    let unconfirmed = tenantctl(&env, &["apply", "--prune"]);
    assert_code(&unconfirmed, 1);
    assert!(unconfirmed.stderr.contains("pass --auto-approve"));
    assert_eq!(
        env.psql(&format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
            quote_literal(&a)
        )),
        "1"
    );

    let pruned = tenantctl(&env, &["apply", "--prune", "--auto-approve"]);
    assert_code(&pruned, 1);
    assert!(
        pruned
            .stdout
            .contains("Apply complete: 0 created, 0 changed, 3 destroyed, 1 failed."),
        "{}",
        pruned.stdout
    );
    assert!(pruned.stderr.contains(&format!(
        "✗ Tenant '{kept}' was not pruned: deletion_protection is on"
    )));
    let exists = |sql: String| env.psql(&sql);
    assert_eq!(
        env.psql("SELECT string_agg(id, ',' ORDER BY id) FROM tenantctl.tenants"),
        format!("{neighbour},{kept}")
    );
    assert_eq!(
        exists(format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ({}, {})",
            quote_literal(&a),
            quote_literal(&kept)
        )),
        "1"
    );
    assert_eq!(
        exists(format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            quote_literal(&b)
        )),
        "0"
    );
    assert_eq!(
        exists(format!(
            "SELECT count(*) FROM pg_roles WHERE rolname IN ({}, {}, {})",
            quote_literal(&format!("{a}_app")),
            quote_literal(&format!("{a}_admin")),
            quote_literal(&b)
        )),
        "0"
    );
    // The adopted schema and its data survive; only its record went.
    assert_eq!(
        env.psql(&format!("SELECT count(*) FROM \"{adopted}\".data")),
        "1"
    );
    assert_eq!(
        env.redis(&["EXISTS", &format!("{a}:1"), &format!("{a}:2")]),
        "0"
    );
    assert_eq!(env.redis(&["GET", &format!("{neighbour}:1")]), "v");
    let events = env.psql(&format!("SELECT count(*) FROM tenantctl.events WHERE tenant_id = {} AND action LIKE 'registry record%' AND outcome = 'ok'", quote_literal(&a)));
    assert_eq!(events, "2", "one event when registered, one when removed");

    // destroy refuses the protected tenant until the spec lifts it.
    let refused = tenantctl(&env, &["destroy", &kept, "--auto-approve"]);
    assert_code(&refused, 1);
    assert!(refused.stderr.contains("deletion_protection = true"));
    env.write_spec(
        "tenants.toml",
        &format!(
            "{head}{}{}",
            declared[4],
            tenant(&kept, "deletion_protection = false\n")
        ),
    );
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    let destroyed = tenantctl(&env, &["destroy", &kept, "--auto-approve"]);
    assert_code(&destroyed, 0);
    assert!(destroyed.stderr.contains("is still declared in the spec"));
    assert!(
        destroyed
            .stdout
            .contains(&format!("✓ Tenant '{kept}' destroyed"))
    );
    assert_eq!(
        exists(format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
            quote_literal(&kept)
        )),
        "0"
    );

    // --drop-adopted drops an adopted schema too.
    let other = env.id("other");
    env.psql(&format!("CREATE SCHEMA \"{other}\""));
    env.write_spec("tenants.toml", &format!("{head}{}", tenant(&other, "")));
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    let detach = tenantctl(
        &env,
        &[
            "destroy",
            &other,
            "--auto-approve",
            "--drop-adopted",
            "-f",
            "/dev/null",
        ],
    );
    assert_code(&detach, 1);
    std::fs::remove_file(env.dir().join("tenants.toml")).unwrap();
    let dropped = tenantctl(
        &env,
        &["destroy", &other, "--auto-approve", "--drop-adopted"],
    );
    assert_code(&dropped, 0);
    assert_eq!(
        exists(format!(
            "SELECT count(*) FROM pg_namespace WHERE nspname = {}",
            quote_literal(&other)
        )),
        "0"
    );
    let unknown = tenantctl(&env, &["destroy", &other, "--auto-approve"]);
    assert_code(&unknown, 1);
}

/// Starts tenantctl on a pseudo-terminal, as a person would run it.
fn spawn_on_terminal(env: &TestEnv, args: &[&str]) -> rexpect::session::PtySession {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin!("tenantctl"));
    command
        .args(args)
        .current_dir(env.dir())
        .env("TENANTCTL_DATABASE_URL", env.database_url())
        .env("NO_COLOR", "1")
        .env(PASSWORD_VAR, PASSWORD)
        .env_remove("CI");
    rexpect::session::spawn_command(command, Some(30_000)).unwrap()
}

#[test]
fn terminal_prompts_for_superuser_and_destroy() {
    let env = TestEnv::new();
    applied(&env);
    let (a, b) = (env.id("acme"), env.id("globex"));

    // create-superuser prompts for the name (with a default) and the
    // password, which is not echoed.
    let mut session = spawn_on_terminal(&env, &["create-superuser", &a]);
    session.exp_string("Superuser name for tenant").unwrap();
    session.send_line("").unwrap();
    session.exp_string("Password").unwrap();
    session.send_line("typed-secret-9").unwrap();
    session.exp_string("Repeat password").unwrap();
    session.send_line("typed-secret-9").unwrap();
    let rest = session.exp_eof().unwrap();
    assert!(
        rest.contains(&format!("Superuser '{a}_admin' of tenant '{a}' is ready.")),
        "{rest}"
    );
    assert!(!rest.contains("typed-secret-9"), "{rest}");
    assert_eq!(
        env.psql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {}",
            quote_literal(&format!("{a}_admin"))
        )),
        "1"
    );

    // destroy goes ahead only when the tenant id is typed back.
    let mut session = spawn_on_terminal(&env, &["destroy", &b]);
    session.exp_string("Type its id to confirm:").unwrap();
    session.send_line("globex").unwrap();
    let rest = session.exp_eof().unwrap();
    assert!(rest.contains("Destroy cancelled."), "{rest}");
    let database = format!(
        "SELECT count(*) FROM pg_database WHERE datname = {}",
        quote_literal(&b)
    );
    assert_eq!(env.psql(&database), "1");
    let mut session = spawn_on_terminal(&env, &["destroy", &b]);
    session.exp_string("Type its id to confirm:").unwrap();
    session.send_line(&b).unwrap();
    let rest = session.exp_eof().unwrap();
    assert!(rest.contains(&format!("Tenant '{b}' destroyed")), "{rest}");
    assert_eq!(env.psql(&database), "0");
}

#[test]
fn table_and_cache_tenants_day_two() {
    let env = TestEnv::new();
    let (ta, tb, ca, cab) = (env.id("ta"), env.id("tb"), env.id("ca"), env.id("cab"));
    let roleless = env.id("tc");
    write_migration(
        &env.dir().join("shared"),
        "1_items",
        "CREATE TABLE items (tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id', true), name text);",
    );
    let table = |id: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"table\"\n\
             [tenants.role]\nuser = \"{id}_user\"\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
        )
    };
    let cache = |id: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"cache\"\n\
             [tenants.cache]\npassword = {{ env = \"{PASSWORD_VAR}\" }}\n"
        )
    };
    let head = "version = 1\n[tables]\nmigrations = \"shared\"\n";
    let without_role =
        format!("[[tenants]]\nid = \"{roleless}\"\nname = \"{roleless}\"\nisolation = \"table\"\n");
    let all = [
        table(&ta),
        table(&tb),
        cache(&ca),
        cache(&cab),
        without_role,
    ];
    env.write_spec("tenants.toml", &format!("{head}{}", all.concat()));
    assert_code(&tenantctl(&env, &["apply", "--auto-approve"]), 0);
    env.psql(&format!(
        "INSERT INTO items VALUES ({}, 'a'), ({}, 'b')",
        quote_literal(&ta),
        quote_literal(&tb)
    ));

    // shell: the table tenant's role with its tenant set; the cache
    // tenant's redis-cli as its ACL user, held to its prefix.
    let sql = "SELECT current_user, current_setting('app.tenant_id'), count(*) FROM items";
    let shell = tenantctl(&env, &["shell", &ta, "--", "-X", "-A", "-t", "-c", sql]);
    assert_code(&shell, 0);
    assert_eq!(shell.stdout.trim(), format!("{ta}_user|{ta}|1"));

    // A table tenant without a role would get the admin's login, which
    // sees every tenant's rows, so shell and exec need --unrestricted.
    let refused = tenantctl(
        &env,
        &["shell", &roleless, "--", "-X", "-A", "-t", "-c", sql],
    );
    assert_code(&refused, 1);
    assert!(
        refused.stderr.contains("has no role of its own"),
        "{}",
        refused.stderr
    );
    let exec_refused = tenantctl(&env, &["exec", &roleless, "--", "true"]);
    assert_code(&exec_refused, 1);
    let allowed = tenantctl(
        &env,
        &[
            "shell",
            &roleless,
            "--unrestricted",
            "--",
            "-X",
            "-A",
            "-t",
            "-c",
            "SELECT 1",
        ],
    );
    assert_code(&allowed, 0);
    let own_key = format!("{ca}:k");
    let set = tenantctl(&env, &["shell", &ca, "--", "SET", &own_key, "v"]);
    assert_code(&set, 0);
    assert_eq!(set.stdout.trim(), "OK");
    let whoami = tenantctl(&env, &["shell", &ca, "--", "ACL", "WHOAMI"]);
    assert_eq!(whoami.stdout.trim(), ca);
    let other_key = format!("{cab}:k");
    let denied = tenantctl(&env, &["shell", &ca, "--", "SET", &other_key, "x"]);
    assert!(denied.stdout.contains("NOPERM"), "{}", denied.stdout);
    assert!(!denied.both().contains(PASSWORD));
    env.redis(&["SET", &other_key, "neighbour"]);

    // The table tenant's superuser stays on its tenant's rows even when it
    // claims another tenant in its session.
    let admin = format!("{ta}_admin");
    let made = run(env.cmd().env("SU_PASSWORD", "su-table-1").args([
        "create-superuser",
        &ta,
        "--password-env",
        "SU_PASSWORD",
    ]));
    assert_code(&made, 0);
    let control = env.control_db();
    assert_eq!(
        psql_as(
            &admin,
            control,
            "SELECT string_agg(tenant_id, ',') FROM items"
        ),
        Ok(ta.clone())
    );
    let claim = format!(
        "SET app.tenant_id = {}; SELECT count(*) FROM items",
        quote_literal(&tb)
    );
    assert_eq!(psql_as(&admin, control, &claim), Ok("SET\n0".to_string()));
    let denied = psql_as(&admin, control, "SELECT 1 FROM tenantctl.tenants").unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");

    // migrate runs the shared migrations once, then secures and grants the
    // new table.
    write_migration(
        &env.dir().join("shared"),
        "2_orders",
        "CREATE TABLE orders (tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id', true), total int);",
    );
    let migrated = tenantctl(&env, &["migrate", "--all"]);
    assert_code(&migrated, 0);
    assert!(
        migrated
            .stdout
            .contains("shared tables in public (3 table tenants): 1 migration applied"),
        "{}",
        migrated.stdout
    );
    assert!(
        migrated
            .stdout
            .contains("Migrated 3 tenants, 0 up to date, 0 failed.")
    );
    assert_eq!(
        psql_as(
            &admin,
            control,
            "INSERT INTO orders (total) VALUES (5); SELECT count(*) FROM orders"
        ),
        Ok("INSERT 0 1\n1".to_string())
    );
    assert_eq!(
        psql_as(
            &format!("{tb}_user"),
            control,
            "SELECT count(*) FROM orders"
        ),
        Ok("0".to_string())
    );
    let plan = tenantctl(&env, &["plan", "--detailed-exitcode"]);
    assert_code(&plan, 0);

    // Pruning the table tenant deletes its rows from every shared table and
    // drops its roles. Pruning a cache tenant deletes its ACL user and its
    // keys, but not those of the tenant whose prefix starts the same way.
    env.write_spec(
        "tenants.toml",
        &format!("{head}{}{}", table(&tb), cache(&cab)),
    );
    let pruned = tenantctl(&env, &["apply", "--prune", "--auto-approve"]);
    assert_code(&pruned, 0);
    assert!(pruned.stdout.contains("3 destroyed"), "{}", pruned.stdout);
    let rows = "SELECT (SELECT string_agg(tenant_id, ',') FROM items) || '|' || (SELECT count(*) FROM orders)";
    assert_eq!(env.psql(rows), format!("{tb}|0"));
    let roles = format!(
        "SELECT count(*) FROM pg_roles WHERE rolname IN ({}, {})",
        quote_literal(&admin),
        quote_literal(&format!("{ta}_user"))
    );
    assert_eq!(env.psql(&roles), "0");
    assert!(!env.redis(&["ACL", "USERS"]).lines().any(|user| user == ca));
    assert!(env.redis(&["ACL", "USERS"]).lines().any(|user| user == cab));
    assert_eq!(env.redis(&["EXISTS", &own_key]), "0");
    assert_eq!(env.redis(&["GET", &other_key]), "neighbour");
}

/// Commands that only read the registry do not create it: on a database
/// without one they fail, naming the database without its password.
#[test]
fn read_only_commands_create_no_registry() {
    let env = TestEnv::new();
    let url = format!(
        "postgres://postgres:hidden-pw@127.0.0.1:5432/{}",
        env.control_db()
    );
    let id = env.id("acme");
    write_migration(&env.dir().join("mig"), "1_a", "SELECT 1;");
    let commands: [&[&str]; 6] = [
        &["list"],
        &["show", &id],
        &["exec", &id, "--", "true"],
        &["exec", "--all", "--", "true"],
        &["shell", &id],
        &["migrate", "--all", "--dry-run", "--migrations", "mig"],
    ];
    for args in commands {
        let output = run(env.cmd().env("TENANTCTL_DATABASE_URL", &url).args(args));
        assert_code(&output, 1);
        let expected = format!(
            "no tenantctl registry in database postgres://postgres:***@127.0.0.1:5432/{}",
            env.control_db()
        );
        assert!(
            output.stderr.contains(&expected),
            "{args:?}: {}",
            output.stderr
        );
        assert!(
            output
                .stderr
                .contains("tenantctl apply creates the registry"),
            "{args:?}: {}",
            output.stderr
        );
        assert!(!output.both().contains("hidden-pw"), "{args:?}");
    }
    let schemas = env.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'tenantctl'");
    assert_eq!(schemas, "0");

    // An empty schema of that name, which tenantctl did not make, is no
    // registry either, and a read-only command leaves it empty.
    env.psql("CREATE SCHEMA tenantctl");
    let list = tenantctl(&env, &["list"]);
    assert_code(&list, 1);
    assert!(list.stderr.contains("holds no registry"), "{}", list.stderr);
    let tables = env.psql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'tenantctl'");
    assert_eq!(tables, "0");
}
