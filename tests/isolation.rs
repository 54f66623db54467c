//! Proofs that the credentials tenantctl hands out reach only their own
//! tenant's data, for each isolation type, and that plan finds and apply
//! repairs a rule changed by hand.

mod support;

use std::path::Path;

use sha2::{Digest, Sha256};
use support::{PrivateRedis, TestEnv, psql_as, quote_literal};

/// Output of one tenantctl run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn tenantctl(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Run {
    let output = env
        .cmd()
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("tenantctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn apply_ok(env: &TestEnv, spec: &str, vars: &[(&str, &str)]) -> Run {
    let run = tenantctl(env, &["apply", "-f", spec, "--auto-approve"], vars);
    assert_eq!(run.code, 0, "apply failed:\n{}", run.all());
    run
}

/// Runs plan with `--detailed-exitcode` and returns it; exit code 2 means
/// changes are pending.
fn plan(env: &TestEnv, spec: &str, vars: &[(&str, &str)]) -> Run {
    let run = tenantctl(env, &["plan", "-f", spec, "--detailed-exitcode"], vars);
    assert!(
        run.code == 0 || run.code == 2,
        "plan failed:\n{}",
        run.all()
    );
    run
}

fn assert_no_changes(env: &TestEnv, spec: &str, vars: &[(&str, &str)]) {
    let run = plan(env, spec, vars);
    assert_eq!(run.code, 0, "plan is not empty:\n{}", run.all());
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);
}

fn assert_denied(result: Result<String, String>, expected: &str) {
    match result {
        Ok(output) => panic!("expected an error containing {expected:?}, got output {output:?}"),
        Err(error) => assert!(
            error.contains(expected),
            "expected an error containing {expected:?}, got {error:?}"
        ),
    }
}

fn write_migration(env: &TestEnv, folder: &str, name: &str, sql: &str) {
    env.write_spec(&format!("{folder}/{name}/up.sql"), sql);
}

#[test]
fn table_rows_isolated_by_policy() {
    let env = TestEnv::new();
    let (a, b) = (env.id("ta"), env.id("tb"));
    let (a_role, b_role) = (env.id("ta_user"), env.id("tb_user"));
    write_migration(
        &env,
        "shared",
        "2024-01-01-000000_create_items",
        "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         tenant_id text NOT NULL DEFAULT current_setting('app.tenant_id', true), name text NOT NULL);\
         CREATE TABLE notes (id bigserial, tenant_id varchar(63) NOT NULL, body text);\
         CREATE TABLE countries (code text PRIMARY KEY);\
         INSERT INTO countries VALUES ('fr'), ('jp');",
    );
    let spec = format!(
        r#"
version = 1
[tables]
migrations = "shared"

[[tenants]]
id = "{a}"
name = "A"
isolation = "table"
[tenants.role]
user = "{a_role}"
password = {{ env = "TA_PASSWORD" }}

[[tenants]]
id = "{b}"
name = "B"
isolation = "table"
[tenants.role]
user = "{b_role}"
password = {{ env = "TB_PASSWORD" }}
"#
    );
    // More tenants make their grants on the same tables overlap in time.
    let mut spec = spec;
    for extra in ["tc", "td", "te"] {
        let (id, user) = (env.id(extra), env.id(&format!("{extra}_user")));
        spec.push_str(&format!(
            "\n[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"table\"\n\
             [tenants.role]\nuser = \"{user}\"\npassword = {{ env = \"TB_PASSWORD\" }}\n"
        ));
    }
    env.write_spec("tenants.toml", &spec);
    let vars = [("TA_PASSWORD", "pw-a"), ("TB_PASSWORD", "pw-b")];
    let db = env.control_db().to_string();

    let first = apply_ok(&env, "tenants.toml", &vars);
    assert!(
        first.stdout.contains("row-level security on 2 tables"),
        "{}",
        first.stdout
    );

    env.psql(&format!(
        "INSERT INTO items (tenant_id, name) VALUES ({}, 'a1'), ({}, 'b1')",
        quote_literal(&a),
        quote_literal(&b)
    ));
    let select_tenants = "SELECT string_agg(DISTINCT tenant_id, ',') FROM items";
    assert_eq!(psql_as(&a_role, &db, &[select_tenants]).unwrap(), a);
    assert_eq!(psql_as(&b_role, &db, &[select_tenants]).unwrap(), b);
    assert_eq!(
        psql_as(
            &a_role,
            &db,
            &[
                "INSERT INTO items (name) VALUES ('a2')",
                "SELECT count(*) FROM items"
            ]
        )
        .unwrap(),
        "2"
    );
    // A serial column's sequence is granted, so its default works.
    let insert_note = format!(
        "INSERT INTO notes (tenant_id, body) VALUES ({}, 'n')",
        quote_literal(&a)
    );
    assert_eq!(
        psql_as(&a_role, &db, &[&insert_note, "SELECT count(*) FROM notes"]).unwrap(),
        "1"
    );
    // A sequence grant taken away shows in the plan, and apply restores it.
    env.psql(&format!(
        "REVOKE USAGE ON SEQUENCE notes_id_seq FROM {}",
        support::quote_ident(&a_role)
    ));
    let revoked = plan(&env, "tenants.toml", &vars);
    assert!(
        revoked.stdout.contains("its privileges differ on notes"),
        "{}",
        revoked.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    let insert_for_b = format!(
        "INSERT INTO items (tenant_id, name) VALUES ({}, 'x')",
        quote_literal(&b)
    );
    assert_denied(
        psql_as(&a_role, &db, &[&insert_for_b]),
        "row-level security",
    );
    let move_to_b = format!("UPDATE items SET tenant_id = {}", quote_literal(&b));
    assert_denied(psql_as(&a_role, &db, &[&move_to_b]), "row-level security");
    // The role's own setting can be changed in a session, but it never
    // shows another tenant's rows.
    let claim_b = format!("SET app.tenant_id = {}", quote_literal(&b));
    assert_eq!(
        psql_as(&a_role, &db, &[&claim_b, "SELECT count(*) FROM items"]).unwrap(),
        "0"
    );
    assert_denied(
        psql_as(&a_role, &db, &[&claim_b, &insert_for_b]),
        "row-level security",
    );
    assert_eq!(
        psql_as(
            &a_role,
            &db,
            &["SET app.tenant_id = ''", "SELECT count(*) FROM items"]
        )
        .unwrap(),
        "0"
    );
    assert_denied(
        psql_as(&a_role, &db, &["TRUNCATE items"]),
        "permission denied",
    );
    assert_eq!(
        psql_as(&a_role, &db, &["SELECT count(*) FROM countries"]).unwrap(),
        "2"
    );
    assert_denied(
        psql_as(&a_role, &db, &["INSERT INTO countries VALUES ('de')"]),
        "permission denied",
    );
    assert_denied(
        psql_as(&a_role, &db, &["SELECT * FROM tenantctl.tenants"]),
        "permission denied",
    );

    // A role that owns the table is held by the policy too, because row-level
    // security is forced; a session without a tenant sees nothing.
    let owner = env.id("owner");
    env.psql(&format!(
        "CREATE ROLE {owner} LOGIN; ALTER TABLE items OWNER TO {owner}"
    ));
    assert_eq!(
        psql_as(&owner, &db, &["SELECT count(*) FROM items"]).unwrap(),
        "0"
    );
    let as_a = format!("SET app.tenant_id = {}", quote_literal(&a));
    assert_eq!(psql_as(&owner, &db, &[&as_a, select_tenants]).unwrap(), a);

    let second = plan(&env, "tenants.toml", &vars);
    assert_eq!(second.code, 0, "{}", second.all());
    assert!(
        second
            .stdout
            .contains("shared by all tenants (no tenant column): \"countries\"")
    );
    assert!(
        second
            .stderr
            .contains("Warning: tenantctl connects as role postgres, which is a superuser"),
        "{}",
        second.stderr
    );
    assert_eq!(
        env.psql("SELECT count(*) FROM tenantctl.shared_migrations"),
        "1"
    );

    env.psql(&format!(
        "ALTER TABLE items NO FORCE ROW LEVEL SECURITY;\
         ALTER POLICY tenantctl_tenant_isolation ON items USING (true);\
         DROP POLICY tenantctl_tenant_isolation ON notes;\
         GRANT TRUNCATE ON items TO {a_role};"
    ));
    assert_eq!(
        psql_as(&owner, &db, &["SELECT count(*) FROM items"]).unwrap(),
        "3"
    );
    let drift = plan(&env, "tenants.toml", &vars);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift.stdout.contains(
            "~ row-level security policy on \"public\".\"items\" (row-level security is not forced, so the owner skips it; its USING expression differs)"
        ),
        "{}",
        drift.stdout
    );
    assert!(
        drift
            .stdout
            .contains("+ row-level security policy on \"public\".\"notes\""),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains(&format!(
            "for \"{a_role}\", tenant setting fixed (its privileges differ on items)"
        )),
        "{}",
        drift.stdout
    );
    assert!(
        !drift.stdout.contains(&format!("for \"{b_role}\"")),
        "{}",
        drift.stdout
    );

    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    assert_eq!(
        psql_as(&owner, &db, &["SELECT count(*) FROM items"]).unwrap(),
        "0"
    );
    assert_denied(
        psql_as(&a_role, &db, &["TRUNCATE items"]),
        "permission denied",
    );
    assert_eq!(
        env.psql("SELECT count(*) FROM tenantctl.shared_migrations"),
        "1"
    );

    // A tenant that moves to a new role takes the shared tables away from
    // the old one, which is no longer tied to the tenant.
    let new_role = env.id("ta_user2");
    let moved_spec = spec.replace(&format!("\"{a_role}\""), &format!("\"{new_role}\""));
    env.write_spec("tenants.toml", &moved_spec);
    let moved = plan(&env, "tenants.toml", &vars);
    assert!(
        moved.stdout.contains(&format!("revoked from \"{a_role}\"")),
        "{}",
        moved.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    assert_denied(
        psql_as(&a_role, &db, &[&as_a, "SELECT count(*) FROM items"]),
        "permission denied",
    );
    assert_eq!(psql_as(&new_role, &db, &[select_tenants]).unwrap(), a);
}

/// Connects to the shared Redis server as an ACL user.
fn redis_as(user: &str, password: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:6379/"))
        .unwrap()
        .get_connection()
        .unwrap_or_else(|error| panic!("cannot connect as {user}: {error}"))
}

fn assert_noperm(connection: &mut redis::Connection, args: &[&str]) {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    match command.query::<redis::Value>(connection) {
        Ok(value) => panic!("{args:?} was allowed: {value:?}"),
        Err(error) => assert_eq!(
            error.code(),
            Some("NOPERM"),
            "{args:?} failed without NOPERM: {error}"
        ),
    }
}

#[test]
fn cache_keys_isolated_by_acl_user() {
    let env = TestEnv::new();
    let (a, b) = (env.id("ca"), env.id("cb"));
    let spec = format!(
        r#"
version = 1
[[tenants]]
id = "{a}"
name = "A"
isolation = "cache"
[tenants.cache]
password = {{ env = "CA_PASSWORD" }}

[[tenants]]
id = "{b}"
name = "B"
isolation = "cache"
[tenants.cache]
hash_tag = true
password = {{ env = "CB_PASSWORD" }}
"#
    );
    env.write_spec("tenants.toml", &spec);
    let vars = [("CA_PASSWORD", "secret-a"), ("CB_PASSWORD", "secret-b")];

    apply_ok(&env, "tenants.toml", &vars);
    let second = plan(&env, "tenants.toml", &vars);
    assert_eq!(second.code, 0, "{}", second.all());
    let default_open = env
        .redis(&["ACL", "LIST"])
        .lines()
        .any(|line| line.starts_with("user default on") && line.contains(" nopass"));
    assert_eq!(
        second
            .all()
            .contains("default user of Redis server redis://127.0.0.1:6379 is on with nopass"),
        default_open
    );
    let stored = env.redis(&["ACL", "GETUSER", &a]);
    assert!(
        stored.contains(&hex::encode(Sha256::digest(b"secret-a"))),
        "{stored}"
    );
    let registry =
        env.psql("SELECT string_agg(row_to_json(t)::text, ' ') FROM tenantctl.tenants t");
    assert!(
        registry.contains(&format!("\"prefix\": \"{{{b}}}:\"")),
        "{registry}"
    );
    assert!(
        registry.contains(&format!("\"acl_user\": \"{a}\"")),
        "{registry}"
    );
    let events = env.psql("SELECT string_agg(action, ' ') FROM tenantctl.events");
    for secret in ["secret-a", "secret-b"] {
        assert!(!registry.contains(secret), "{secret} in the registry");
        assert!(!events.contains(secret), "{secret} in the event log");
        assert!(!second.all().contains(secret), "{secret} in the plan");
    }

    let own_key = format!("{a}:k");
    let other_key = format!("{{{b}}}:k");
    let mut owner_b = redis_as(&b, "secret-b");
    let _: () = redis::cmd("SET")
        .arg(&other_key)
        .arg("b")
        .query(&mut owner_b)
        .unwrap();
    let mut tenant_a = redis_as(&a, "secret-a");
    let _: () = redis::cmd("SET")
        .arg(&own_key)
        .arg("a")
        .query(&mut tenant_a)
        .unwrap();
    let value: String = redis::cmd("GET")
        .arg(&own_key)
        .query(&mut tenant_a)
        .unwrap();
    assert_eq!(value, "a");
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(format!("{a}:events"))
        .arg("x")
        .query(&mut tenant_a)
        .unwrap();
    assert_eq!(receivers, 0);
    let other_channel = format!("{{{b}}}:events");
    for args in [
        &["GET", &other_key][..],
        &["SET", &other_key, "a"],
        &["SCAN", "0"],
        &["KEYS", "*"],
        &["RANDOMKEY"],
        &["DBSIZE"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["SELECT", "1"],
        &["PUBLISH", &other_channel, "x"],
        &["CLIENT", "TRACKING", "on", "BCAST"],
        &["EVAL", "return redis.call('GET', KEYS[1])", "1", &own_key],
    ] {
        assert_noperm(&mut tenant_a, args);
    }
    assert_noperm(
        &mut redis_as(&a, "secret-a"),
        &["SUBSCRIBE", &other_channel],
    );

    env.redis(&["ACL", "SETUSER", &a, "~*", "+keys"]);
    env.redis(&["ACL", "DELUSER", &b]);
    let value: String = redis::cmd("GET")
        .arg(&other_key)
        .query(&mut tenant_a)
        .unwrap();
    assert_eq!(value, "b", "the widened pattern should reach the other key");
    let drift = plan(&env, "tenants.toml", &vars);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift.stdout.contains(&format!("~ Redis ACL user \"{a}\"")),
        "{}",
        drift.stdout
    );
    assert!(
        drift
            .stdout
            .contains(&format!("key patterns are ~* instead of ~{a}:*")),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains("it also allows KEYS"),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains(&format!("+ Redis ACL user \"{b}\"")),
        "{}",
        drift.stdout
    );

    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    assert_noperm(&mut redis_as(&a, "secret-a"), &["GET", &other_key]);

    // A renamed ACL user replaces the old one, which is deleted.
    let renamed = format!("{a}_v2");
    let spec = spec.replacen(
        "[tenants.cache]\npassword",
        &format!("[tenants.cache]\nuser = \"{renamed}\"\npassword"),
        1,
    );
    env.write_spec("tenants.toml", &spec);
    let rename = plan(&env, "tenants.toml", &vars);
    assert!(
        rename.stdout.contains(&format!("- Redis ACL user \"{a}\"")),
        "{}",
        rename.stdout
    );
    assert!(
        rename
            .stdout
            .contains(&format!("+ Redis ACL user \"{renamed}\"")),
        "{}",
        rename.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    let users = env.redis(&["ACL", "USERS"]);
    assert!(!users.lines().any(|user| user == a), "{users}");
    assert!(users.lines().any(|user| user == renamed), "{users}");
    assert_no_changes(&env, "tenants.toml", &vars);
    let value: String = redis::cmd("GET")
        .arg(&own_key)
        .query(&mut redis_as(&renamed, "secret-a"))
        .unwrap();
    assert_eq!(value, "a");
}

#[test]
fn schema_and_database_roles_isolated() {
    let env = TestEnv::new();
    let (sa, sb, da, dbt) = (env.id("sa"), env.id("sb"), env.id("da"), env.id("db"));
    let (sa_user, sb_user) = (env.id("sa_user"), env.id("sb_user"));
    let (da_user, db_user) = (env.id("da_user"), env.id("db_user"));
    write_migration(
        &env,
        "app",
        "2024-01-01-000000_create_things",
        "CREATE TABLE things (id int PRIMARY KEY, secret text);",
    );
    let schema_tenant = |id: &str, user: &str, variable: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"schema\"\n\
             [tenants.schema]\nuser = \"{user}\"\npassword = {{ env = \"{variable}\" }}\n"
        )
    };
    let database_tenant = |id: &str, user: &str, variable: &str| {
        format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"database\"\n\
             [tenants.database]\nuser = \"{user}\"\npassword = {{ env = \"{variable}\" }}\n"
        )
    };
    let spec = format!(
        "version = 1\n[defaults]\nmigrations = \"app\"\n{}{}{}{}",
        schema_tenant(&sa, &sa_user, "PW"),
        schema_tenant(&sb, &sb_user, "PW"),
        database_tenant(&da, &da_user, "PW"),
        database_tenant(&dbt, &db_user, "PW"),
    );
    env.write_spec("tenants.toml", &spec);
    let vars = [("PW", "not-used-with-trust")];
    let control = env.control_db().to_string();

    apply_ok(&env, "tenants.toml", &vars);
    let read_b = format!("SELECT * FROM {sb}.things");
    assert_denied(
        psql_as(&sa_user, &control, &[&read_b]),
        "permission denied for schema",
    );
    assert_denied(
        psql_as(&sa_user, &control, &["CREATE TABLE public.escape (id int)"]),
        "permission denied for schema public",
    );
    assert_eq!(
        psql_as(
            &sa_user,
            &control,
            &["CREATE TABLE extra (id int)", "SELECT current_schema()"]
        )
        .unwrap(),
        sa
    );
    let owners = env.psql(&format!(
        "SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE schemaname = {}",
        quote_literal(&sa)
    ));
    assert_eq!(owners, sa_user);
    assert_eq!(
        psql_as(&da_user, &da, &["SELECT count(*) FROM things"]).unwrap(),
        "0"
    );
    assert_denied(
        psql_as(&da_user, &dbt, &["SELECT 1"]),
        "permission denied for database",
    );
    assert_denied(
        psql_as(&db_user, &da, &["SELECT 1"]),
        "permission denied for database",
    );
    assert_no_changes(&env, "tenants.toml", &vars);

    env.psql(&format!("GRANT USAGE ON SCHEMA {sb} TO PUBLIC"));
    env.psql_db(
        "postgres",
        &format!("GRANT CONNECT ON DATABASE {dbt} TO PUBLIC"),
    );
    assert_denied(
        psql_as(&sa_user, &control, &[&read_b]),
        "permission denied for table",
    );
    assert_eq!(psql_as(&da_user, &dbt, &["SELECT 1"]).unwrap(), "1");
    env.psql(&format!("ALTER ROLE {sa_user} SUPERUSER"));
    env.psql(&format!("ALTER ROLE {da_user} BYPASSRLS"));
    let drift = plan(&env, "tenants.toml", &vars);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift
            .stdout
            .contains(&format!("~ privileges on schema \"{sb}\"")),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains(&format!("~ CONNECT on \"{dbt}\"")),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains(&format!(
            "~ role \"{sa_user}\": NOSUPERUSER NOBYPASSRLS (it is a superuser)"
        )),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains(&format!(
            "~ role \"{da_user}\": NOSUPERUSER NOBYPASSRLS (it has BYPASSRLS)"
        )),
        "{}",
        drift.stdout
    );
    assert!(
        !drift.stdout.contains(&format!("schema \"{sa}\"")),
        "{}",
        drift.stdout
    );

    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    assert_eq!(
        env.psql(&format!(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname IN ('{sa_user}', '{da_user}')"
        )),
        "f\nf"
    );
    assert_denied(
        psql_as(&sa_user, &control, &[&read_b]),
        "permission denied for schema",
    );
    assert_denied(
        psql_as(&da_user, &dbt, &["SELECT 1"]),
        "permission denied for database",
    );
}

/// Returns the example spec with every tenant id and object name prefixed
/// by the test's prefix, and migration folders made absolute.
fn example_spec(env: &TestEnv) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut text = std::fs::read_to_string(root.join("tenants.example.toml")).unwrap();
    for name in ["acme", "globex", "initech", "hooli"] {
        text = text.replace(name, &env.id(name));
    }
    text.replace("\"examples/", &format!("\"{}/examples/", root.display()))
}

/// Returns the number of calls per command from `INFO commandstats`.
fn command_calls(redis: &PrivateRedis) -> Vec<(String, u64)> {
    let mut calls: Vec<(String, u64)> = redis
        .redis(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let count = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!matches!(name, "info" | "config|resetstat")).then(|| (name.to_string(), count))
        })
        .collect();
    calls.sort();
    calls
}

#[test]
fn example_applies_despite_redis_outage() {
    let env = TestEnv::new();
    let mut redis = PrivateRedis::start();
    redis.stop();
    env.write_spec("tenants.toml", &example_spec(&env));
    let url = format!("redis://admin:sekrit@127.0.0.1:{}/", redis.port());
    let vars = [
        ("ACME_DB_PASSWORD", "pw-acme"),
        ("GLOBEX_DB_PASSWORD", "pw-globex"),
        ("INITECH_DB_PASSWORD", "pw-initech"),
        ("HOOLI_REDIS_PASSWORD", "pw-hooli"),
        ("TENANTCTL_REDIS_URL", url.as_str()),
    ];

    let failed = tenantctl(
        &env,
        &["apply", "-f", "tenants.toml", "--auto-approve"],
        &vars,
    );
    assert_eq!(failed.code, 1, "{}", failed.all());
    let hooli = env.id("hooli");
    let redacted = format!(
        "cannot connect to Redis server redis://admin:***@127.0.0.1:{}/",
        redis.port()
    );
    assert!(
        failed
            .stdout
            .contains(&format!("✗ Tenant '{hooli}' failed")),
        "{}",
        failed.all()
    );
    assert!(failed.stdout.contains(&redacted), "{}", failed.all());
    assert!(!failed.all().contains("sekrit"));
    assert!(failed.stdout.contains("1 failed"), "{}", failed.stdout);
    let statuses =
        env.psql("SELECT string_agg(id || '=' || status, ',' ORDER BY id) FROM tenantctl.tenants");
    let expected = format!(
        "{}=ready,{}=ready,{hooli}=failed,{}=ready",
        env.id("acme"),
        env.id("globex"),
        env.id("initech")
    );
    assert_eq!(statuses, expected);
    let error = env.psql(&format!(
        "SELECT last_error FROM tenantctl.tenants WHERE id = {}",
        quote_literal(&hooli)
    ));
    assert!(
        error.contains(&redacted) && !error.contains("sekrit"),
        "{error}"
    );

    redis.start_again();
    redis.redis(&[
        "ACL", "SETUSER", "admin", "on", ">sekrit", "~*", "&*", "+@all",
    ]);
    apply_ok(&env, "tenants.toml", &vars);
    assert_no_changes(&env, "tenants.toml", &vars);
    assert!(
        redis
            .redis(&["ACL", "USERS"])
            .lines()
            .any(|user| user == hooli)
    );

    // Plan sends Redis the same commands whatever the number of tenants.
    redis.redis(&["CONFIG", "RESETSTAT"]);
    plan(&env, "tenants.toml", &vars);
    let with_one = command_calls(&redis);
    let mut bigger = example_spec(&env);
    for extra in ["one", "two", "three"] {
        let id = env.id(extra);
        bigger.push_str(&format!(
            "\n[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"cache\"\n\
             [tenants.cache]\npassword = {{ env = \"HOOLI_REDIS_PASSWORD\" }}\n"
        ));
    }
    env.write_spec("bigger.toml", &bigger);
    redis.redis(&["CONFIG", "RESETSTAT"]);
    plan(&env, "bigger.toml", &vars);
    assert_eq!(command_calls(&redis), with_one);
    assert!(
        with_one.contains(&("acl|list".to_string(), 1)),
        "{with_one:?}"
    );
}

/// Returns the `ACL LIST` line of one user, or None when it does not exist.
fn acl_line(redis: &PrivateRedis, user: &str) -> Option<String> {
    redis
        .redis(&["ACL", "LIST"])
        .lines()
        .find(|line| line.starts_with(&format!("user {user} ")))
        .map(str::to_string)
}

/// An old ACL user is removed when the spec renames it, also after an
/// apply that could not reach Redis, and when a name moves to another
/// tenant. A user that existed before is adopted and only disabled.
#[test]
fn cache_acl_user_renames_and_adoption() {
    let env = TestEnv::new();
    let redis = PrivateRedis::start();
    let mut down = PrivateRedis::start();
    down.stop();
    let (c1, c2) = (env.id("c1"), env.id("c2"));
    let tenant = |id: &str, user: Option<&str>| {
        let mut text =
            format!("[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\nisolation = \"cache\"\n");
        if let Some(user) = user {
            text.push_str(&format!(
                "[tenants.cache]\nuser = \"{user}\"\npassword = {{ env = \"CACHE_PASSWORD\" }}\n"
            ));
        }
        text
    };
    let write = |users: [Option<&str>; 2]| {
        let spec = format!(
            "version = 1\n{}{}",
            tenant(&c1, users[0]),
            tenant(&c2, users[1])
        );
        env.write_spec("tenants.toml", &spec);
    };
    let url = redis.url();
    let vars = [
        ("CACHE_PASSWORD", "pw-cache"),
        ("TENANTCTL_REDIS_URL", url.as_str()),
    ];
    let down_url = down.url();
    let down_vars = [
        ("CACHE_PASSWORD", "pw-cache"),
        ("TENANTCTL_REDIS_URL", down_url.as_str()),
    ];
    let recorded_user = |id: &str| {
        env.psql(&format!(
            "SELECT config->>'acl_user' FROM tenantctl.tenants WHERE id = {}",
            quote_literal(id)
        ))
    };

    let (u1, u2) = (env.id("u1"), env.id("u2"));
    write([Some(&u1), Some(&u2)]);
    apply_ok(&env, "tenants.toml", &vars);

    // Renamed while Redis is down: the tenant fails and keeps its old user
    // on record, and the next apply removes that user.
    let u1b = env.id("u1b");
    write([Some(&u1b), Some(&u2)]);
    let failed = tenantctl(
        &env,
        &["apply", "-f", "tenants.toml", "--auto-approve"],
        &down_vars,
    );
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert_eq!(recorded_user(&c1), u1);
    let retry = plan(&env, "tenants.toml", &vars);
    assert!(
        retry.stdout.contains(&format!("- Redis ACL user \"{u1}\"")),
        "{}",
        retry.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    assert_eq!(acl_line(&redis, &u1), None);
    assert!(acl_line(&redis, &u1b).is_some());

    // The old user is removed before the new one is set, so a removal that
    // fails leaves no user the registry does not name.
    redis.redis(&[
        "ACL",
        "SETUSER",
        "limited",
        "on",
        ">limited-pw",
        "~*",
        "&*",
        "+@all",
        "-acl|deluser",
    ]);
    let limited_url = format!("redis://limited:limited-pw@127.0.0.1:{}/", redis.port());
    let limited_vars = [
        ("CACHE_PASSWORD", "pw-cache"),
        ("TENANTCTL_REDIS_URL", limited_url.as_str()),
    ];
    let u1c = env.id("u1c");
    write([Some(&u1c), Some(&u2)]);
    let rejected = tenantctl(
        &env,
        &["apply", "-f", "tenants.toml", "--auto-approve"],
        &limited_vars,
    );
    assert_eq!(rejected.code, 1, "{}", rejected.all());
    assert_eq!(recorded_user(&c1), u1b);
    assert_eq!(acl_line(&redis, &u1c), None);
    write([Some(&u1b), Some(&u2)]);
    apply_ok(&env, "tenants.toml", &vars);
    assert!(acl_line(&redis, &u1b).is_some());
    assert_no_changes(&env, "tenants.toml", &vars);

    // A name moves from c2 to c1: c2 deletes it first while c1 waits, then
    // c1 makes it again with its own prefix.
    let u2b = env.id("u2b");
    write([Some(&u2), Some(&u2b)]);
    let first = tenantctl(
        &env,
        &["apply", "-f", "tenants.toml", "--auto-approve"],
        &vars,
    );
    assert_eq!(acl_line(&redis, &u2), None, "{}", first.all());
    apply_ok(&env, "tenants.toml", &vars);
    let moved = acl_line(&redis, &u2).expect("the moved user exists");
    assert!(moved.contains(&format!("~{c1}:*")), "{moved}");
    assert!(!moved.contains(&format!("~{c2}:*")), "{moved}");
    assert_eq!(acl_line(&redis, &u1b), None);
    assert_no_changes(&env, "tenants.toml", &vars);

    // Two tenants that swap names wait for each other, and the plan reports it.
    write([Some(&u2b), Some(&u2)]);
    let swap = plan(&env, "tenants.toml", &vars);
    assert!(
        swap.stdout
            .contains("No changes. 2 tenants cannot be applied yet: see the notes above."),
        "{}",
        swap.stdout
    );

    // No tenant has an ACL user any more, so plan does not read Redis; the
    // old users are removed all the same.
    write([None, None]);
    let cleared = plan(&env, "tenants.toml", &vars);
    assert!(
        cleared
            .stdout
            .contains(&format!("- Redis ACL user \"{u2}\"")),
        "{}",
        cleared.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    assert_eq!(acl_line(&redis, &u2), None);
    assert_eq!(acl_line(&redis, &u2b), None);
    assert_no_changes(&env, "tenants.toml", &vars);

    // A user made outside tenantctl is adopted: its rules are replaced, and
    // removing the tenant disables it instead of deleting it.
    let before = env.id("before");
    redis.redis(&[
        "ACL", "SETUSER", &before, "on", ">old-pw", "~other:*", "+get",
    ]);
    write([Some(&before), None]);
    let adopt = plan(&env, "tenants.toml", &vars);
    assert!(
        adopt
            .stdout
            .contains("exists and tenantctl did not make it"),
        "{}",
        adopt.stdout
    );
    apply_ok(&env, "tenants.toml", &vars);
    let adopted = acl_line(&redis, &before).expect("the adopted user exists");
    assert!(adopted.contains(&format!("~{c1}:*")), "{adopted}");
    let destroyed = tenantctl(&env, &["destroy", &c1, "--auto-approve"], &vars);
    assert_eq!(destroyed.code, 0, "{}", destroyed.all());
    let disabled = acl_line(&redis, &before).expect("the adopted user is kept");
    assert!(disabled.contains(" off"), "{disabled}");
    assert!(!disabled.contains('~'), "{disabled}");
    assert!(!disabled.contains('#'), "{disabled}");
}
