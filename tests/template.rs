//! Database tenants copied from a template database: the copy has the
//! migrations, belongs to the tenant role and is recorded; a changed
//! migration set gets a new template and the old one is dropped.

mod support;

use std::path::Path;

use support::{TestEnv, quote_literal};

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

/// Owners of every table, sequence, view and schema the migrations made in
/// a tenant database, with the rows of its own migration record.
fn ownership(env: &TestEnv, name: &str) -> (String, String) {
    let id = env.id(name);
    let owners = env.psql_db(
        &id,
        "SELECT string_agg(DISTINCT pg_get_userbyid(relowner)::text, ',') FROM pg_class \
         WHERE relnamespace IN ('public'::regnamespace, 'tenantctl'::regnamespace)",
    );
    let versions = env.psql_db(
        &id,
        "SELECT string_agg(version, ',' ORDER BY version) FROM tenantctl.migrations",
    );
    (owners, versions)
}

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
        assert_eq!(ownership(&env, name), (id.clone(), "1,2".to_string()));
        assert_eq!(recorded(&env, name), "1,2");
        // Nothing in the copy still depends on the template's placeholder.
        let leftovers = env.psql_db(
            &id,
            &format!(
                "SELECT count(*) FROM pg_shdepend d JOIN pg_roles r ON r.oid = d.refobjid \
                 WHERE d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND r.rolname = {}",
                quote_literal(&first[0])
            ),
        );
        assert_eq!(leftovers, "0");
        // The tenant role can use and change what it owns.
        let url = format!("postgres://{id}:pw@127.0.0.1:5432/{id}");
        let output = std::process::Command::new("psql")
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c"])
            .arg("INSERT INTO users (email, name) VALUES ('x@y', 'x'); ALTER TABLE users ADD COLUMN note text; SELECT count(*) FROM named")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
    }
    assert!(plan(&env).contains("No changes"));

    // A new migration makes a new template for the next new tenant; the old
    // template and its placeholder role go.
    write_migration(&mig, "3_notes", "CREATE TABLE notes (id int);");
    env.write_spec("tenants.toml", &spec(&env, &["a", "b", "c"]));
    apply(&env);
    let second = templates(&env);
    assert_eq!(second.len(), 1, "{second:?}");
    assert_ne!(second, first);
    let old_role = env.psql_db(
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = {}",
            quote_literal(&first[0])
        ),
    );
    assert_eq!(old_role, "0");
    for name in ["a", "b", "c"] {
        assert_eq!(ownership(&env, name), (env.id(name), "1,2,3".to_string()));
        assert_eq!(recorded(&env, name), "1,2,3");
    }
    assert!(plan(&env).contains("No changes"));
}
