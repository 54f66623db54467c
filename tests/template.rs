//! Database tenants copied from a template database. A copy has the
//! migrations and is recorded. Its objects belong to `pg_database_owner`,
//! so to the copy's owner, the tenant role. A changed migration set gets a
//! new template, and the old one is dropped.

mod support;

use std::path::Path;

use support::{TestEnv, psql_as, quote_literal};

fn write_migration(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
}

/// Returns a spec of database tenants that are copied from a template.
fn spec(env: &TestEnv, names: &[&str]) -> String {
    let mut text =
        "version = 1\n[defaults]\nisolation = \"database\"\nmigrations = \"mig\"\ntemplate = true\n"
            .to_string();
    for name in names {
        let id = env.id(name);
        text.push_str(&format!(
            "[[tenants]]\nid = \"{id}\"\nname = \"{name}\"\n\
             [tenants.database]\nuser = \"{id}\"\npassword = {{ env = \"TENANT_PASSWORD\" }}\n"
        ));
    }
    text
}

fn apply(env: &TestEnv) -> String {
    let output = env
        .cmd()
        .args(["apply", "-f", "tenants.toml", "--auto-approve"])
        .env("TENANT_PASSWORD", "pw")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "apply failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn plan(env: &TestEnv) -> String {
    let output = env
        .cmd()
        .args(["plan", "-f", "tenants.toml"])
        .env("TENANT_PASSWORD", "pw")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Names of the databases tenantctl made as templates for this test.
fn templates(env: &TestEnv) -> Vec<String> {
    let sql = format!(
        "SELECT datname FROM pg_database WHERE starts_with(datname, {}) AND NOT datallowconn \
         ORDER BY datname",
        quote_literal(&format!("{}_tpl_", env.control_db()))
    );
    let names = env.psql_db("postgres", &sql);
    names.lines().map(str::to_string).collect()
}

/// Owners of every table, sequence, view and index in the tenant database's
/// `public` and `tenantctl` schemas, with the rows of its own migration
/// record.
fn ownership(env: &TestEnv, name: &str) -> (String, String) {
    let id = env.id(name);
    let owners = env.psql_db(
        &id,
        "SELECT string_agg(DISTINCT pg_get_userbyid(relowner)::text, ',' \
         ORDER BY pg_get_userbyid(relowner)::text) FROM pg_class \
         WHERE relnamespace IN ('public'::regnamespace, 'tenantctl'::regnamespace)",
    );
    let versions = env.psql_db(
        &id,
        "SELECT string_agg(version, ',' ORDER BY version) FROM tenantctl.migrations",
    );
    (owners, versions)
}

/// Counts the rows of a shared catalog that match `condition`, with `$1`
/// replaced by `value` as a literal.
fn count_in_postgres(env: &TestEnv, catalog: &str, condition: &str, value: &str) -> String {
    let condition = condition.replace("$1", &quote_literal(value));
    env.psql_db(
        "postgres",
        &format!("SELECT count(*) FROM {catalog} WHERE {condition}"),
    )
}

/// The role that owns what a copied template contains.
const OWNER: &str = "pg_database_owner";

fn recorded(env: &TestEnv, name: &str) -> String {
    env.psql(&format!(
        "SELECT string_agg(version, ',' ORDER BY version) FROM tenantctl.tenant_migrations \
         WHERE tenant_id = {}",
        quote_literal(&env.id(name))
    ))
}

#[test]
fn database_tenants_from_a_template() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(
        &mig,
        "1_users",
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text UNIQUE);",
    );
    write_migration(
        &mig,
        "2_user_names",
        "ALTER TABLE users ADD COLUMN name text; CREATE VIEW named AS SELECT name FROM users;",
    );
    env.write_spec("tenants.toml", &spec(&env, &["a", "b"]));

    let first_plan = plan(&env);
    let template = format!("{}_tpl_", env.control_db());
    assert!(
        first_plan.contains(&format!("from template \"{template}")),
        "{first_plan}"
    );
    apply(&env);

    let first = templates(&env);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first_plan.contains(&first[0]), "{first_plan}");
    for name in ["a", "b"] {
        let id = env.id(name);
        assert_eq!(
            ownership(&env, name),
            (OWNER.to_string(), "1,2".to_string())
        );
        assert_eq!(recorded(&env, name), "1,2");
        let owns = env.psql_db(
            &id,
            &format!(
                "SELECT pg_has_role({}, 'pg_database_owner', 'USAGE')",
                quote_literal(&id)
            ),
        );
        assert_eq!(owns, "t", "the tenant role owns its database's objects");
        // The tenant role can use and change what it owns.
        let used = psql_as(
            &id,
            &id,
            &[
                "INSERT INTO users (email, name) VALUES ('x@y', 'x'); ALTER TABLE users ADD COLUMN note text; SELECT count(*) FROM named",
            ],
        );
        assert!(used.is_ok(), "{used:?}");
    }
    // The other copy's role has no privilege on the objects, though they belong
    // to pg_database_owner in both databases.
    let (a, b) = (env.id("a"), env.id("b"));
    let foreign = env.psql_db(
        &a,
        &format!(
            "SELECT pg_has_role({b}, 'pg_database_owner', 'USAGE'), \
             has_table_privilege({b}, 'users', 'SELECT'), \
             has_database_privilege({b}, current_database(), 'CONNECT')",
            b = quote_literal(&b)
        ),
    );
    assert_eq!(foreign, "f|f|f");
    // No role was made for the template.
    let template_roles = count_in_postgres(&env, "pg_roles", "starts_with(rolname, $1)", &template);
    assert_eq!(template_roles, "0");
    assert!(plan(&env).contains("No changes"));

    // A new migration makes a new template for the next new tenant; the old
    // template goes. The copies made before run it as pg_database_owner too,
    // so a copied view can be replaced to read a new table.
    write_migration(
        &mig,
        "3_notes",
        "CREATE TABLE notes (id int); \
         CREATE OR REPLACE VIEW named AS SELECT name FROM users CROSS JOIN notes;",
    );
    env.write_spec("tenants.toml", &spec(&env, &["a", "b", "c"]));
    apply(&env);
    let second = templates(&env);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    for name in ["a", "b", "c"] {
        assert_eq!(
            ownership(&env, name),
            (OWNER.to_string(), "1,2,3".to_string())
        );
        assert_eq!(recorded(&env, name), "1,2,3");
        let id = env.id(name);
        let read = psql_as(&id, &id, &["SELECT count(*) FROM named"]);
        assert!(read.is_ok(), "{name}: {read:?}");
    }
    assert!(plan(&env).contains("No changes"));
}

/// A role with only CREATEDB and CREATEROLE makes and copies templates, and
/// a copy whose migrations the registry lost is finished by the next apply
/// from the copy's own record, running nothing again.
#[test]
fn template_non_superuser_and_lost_record() {
    let env = TestEnv::new();
    let admin = env.id("admin");
    env.psql(&format!(
        "CREATE ROLE {role} LOGIN NOSUPERUSER CREATEDB CREATEROLE; \
         GRANT CREATE ON DATABASE {control} TO {role}",
        role = support::quote_ident(&admin),
        control = support::quote_ident(env.control_db()),
    ));
    let url = format!("postgres://{admin}@127.0.0.1:5432/{}", env.control_db());

    let mig = env.dir().join("mig");
    // A row the migration writes shows whether it ran in a copy again.
    write_migration(
        &mig,
        "1_users",
        "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text); \
         CREATE TABLE runs (at timestamptz DEFAULT now()); INSERT INTO runs DEFAULT VALUES;",
    );
    env.write_spec("tenants.toml", &spec(&env, &["a", "b"]));
    let run = |args: &[&str]| {
        let output = env
            .cmd()
            .args(args)
            .env("TENANTCTL_DATABASE_URL", &url)
            .env("TENANT_PASSWORD", "pw")
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{args:?} failed:\n{text}");
        text
    };
    run(&["apply", "-f", "tenants.toml", "--auto-approve"]);
    let template = templates(&env);
    assert_eq!(template.len(), 1, "{template:?}");
    let template_owner = env.psql_db(
        "postgres",
        &format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = {}",
            quote_literal(&template[0])
        ),
    );
    assert_eq!(template_owner, admin);
    for name in ["a", "b"] {
        assert_eq!(ownership(&env, name), (OWNER.to_string(), "1".to_string()));
    }

    // The registry loses a's migrations, as when apply stops between the
    // copy and its record.
    let a = env.id("a");
    env.psql(&format!(
        "DELETE FROM tenantctl.tenant_migrations WHERE tenant_id = {id}; \
         UPDATE tenantctl.tenants SET status = 'pending' WHERE id = {id}",
        id = quote_literal(&a)
    ));
    let plan = run(&["plan", "-f", "tenants.toml"]);
    assert!(plan.contains("1_users"), "{plan}");
    run(&["apply", "-f", "tenants.toml", "--auto-approve"]);
    assert_eq!(recorded(&env, "a"), "1");
    assert_eq!(env.psql_db(&a, "SELECT count(*) FROM runs"), "1");
    let status = env.psql(&format!(
        "SELECT status FROM tenantctl.tenants WHERE id = {}",
        quote_literal(&a)
    ));
    assert_eq!(status, "ready");
    assert!(run(&["plan", "-f", "tenants.toml"]).contains("No changes"));
}

/// A tenant database named like this control database's templates is not
/// applied, because apply drops unused templates by that name.
#[test]
fn template_name_reserved() {
    let env = TestEnv::new();
    write_migration(&env.dir().join("mig"), "1_t", "CREATE TABLE t (id int);");
    let id = env.id("a");
    let reserved = format!("{}_tpl_0123", env.control_db());
    env.write_spec(
        "tenants.toml",
        &format!(
            "version = 1\n[defaults]\nmigrations = \"mig\"\n[[tenants]]\nid = \"{id}\"\n\
             name = \"a\"\nisolation = \"database\"\n[tenants.database]\nname = \"{reserved}\"\n\
             user = \"{id}\"\npassword = {{ env = \"TENANT_PASSWORD\" }}\n"
        ),
    );
    let output = env
        .cmd()
        .args(["apply", "-f", "tenants.toml", "--auto-approve"])
        .env("TENANT_PASSWORD", "pw")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("are reserved for them"), "{stdout}");
    let created = count_in_postgres(&env, "pg_database", "datname = $1", &reserved);
    assert_eq!(created, "0");
}

/// A migration that fails while the template is made fails every tenant
/// that copies it, with the file, line and column of the bad SQL. Once the
/// file is fixed, apply makes a new template and drops the half-made one.
#[test]
fn template_migration_failure() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_t", "CREATE TABLE t (id int);");
    write_migration(&mig, "2_bad", "SELECT 1;\nCREATE TABLE (;\n");
    env.write_spec("tenants.toml", &spec(&env, &["a", "b"]));
    let output = env
        .cmd()
        .args(["apply", "-f", "tenants.toml", "--auto-approve"])
        .env("TENANT_PASSWORD", "pw")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    for name in ["a", "b"] {
        let line = text
            .lines()
            .find(|line| line.contains(&format!("Tenant '{}' failed", env.id(name))))
            .unwrap_or_else(|| panic!("no failure of {name}:\n{text}"));
        assert!(line.contains("migration 2_bad: syntax error"), "{line}");
        assert!(line.contains("2_bad/up.sql:2:14)"), "{line}");
    }
    assert_eq!(recorded(&env, "a"), "");
    // The event's action names the template, so its error starts with the
    // failed migration.
    let event = env.psql(&format!(
        "SELECT action || ' | ' || error FROM tenantctl.events \
         WHERE tenant_id = {} AND outcome = 'failed'",
        quote_literal(&env.id("a"))
    ));
    let template = format!("template {}_tpl_", env.control_db());
    assert!(event.starts_with(&template), "{event}");
    assert!(
        event.contains(" | migration 2_bad: syntax error"),
        "{event}"
    );

    write_migration(&mig, "2_bad", "SELECT 1;\nCREATE TABLE u (id int);\n");
    apply(&env);
    assert_eq!(templates(&env).len(), 1, "{:?}", templates(&env));
    assert_eq!(recorded(&env, "b"), "1,2");
    assert!(plan(&env).contains("No changes"));
}
