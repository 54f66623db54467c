//! `plan` reads the state in bulk: the number of SQL statements it sends does
//! not grow with the number of tenants, and the per-tenant summary of applied
//! migrations that makes this possible stays exact through `apply` and
//! `migrate`.

mod support;

use std::path::Path;

use support::TestEnv;

fn write_migration(dir: &Path, name: &str, sql: &str) {
    std::fs::create_dir_all(dir.join(name)).unwrap();
    std::fs::write(dir.join(name).join("up.sql"), sql).unwrap();
}

fn spec(env: &TestEnv, count: usize) -> String {
    let mut text =
        "version = 1\n[defaults]\nisolation = \"schema\"\nmigrations = \"mig\"\n".to_string();
    for index in 0..count {
        let id = env.id(&format!("s{index}"));
        text.push_str(&format!("[[tenants]]\nid = \"{id}\"\nname = \"{id}\"\n"));
    }
    text
}

/// Runs tenantctl with `-v`; returns stdout and the statement count it logs.
fn run(env: &TestEnv, args: &[&str]) -> (String, u64) {
    let output = env.cmd().args(args).arg("-v").output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let count = stderr
        .lines()
        .find_map(|line| line.split("statements=").nth(1))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no statement count in: {stderr}"));
    (stdout, count)
}

#[test]
fn plan_statements_stay_constant_and_summaries_exact() {
    let env = TestEnv::new();
    let mig = env.dir().join("mig");
    write_migration(&mig, "1_users", "CREATE TABLE users (id int);");
    write_migration(&mig, "2_notes", "CREATE TABLE notes (id int);");

    let mut counts = Vec::new();
    for tenants in [2, 7] {
        env.write_spec("tenants.toml", &spec(&env, tenants));
        run(&env, &["apply", "-f", "tenants.toml", "--auto-approve"]);
        let (plan, count) = run(&env, &["plan", "-f", "tenants.toml"]);
        assert!(plan.contains("No changes"), "{plan}");
        counts.push(count);
    }
    assert_eq!(counts[0], counts[1], "statements of plan: {counts:?}");

    // A migration changed after it ran is reported for every tenant.
    write_migration(&mig, "2_notes", "CREATE TABLE notes (id bigint);");
    let (plan, _) = run(&env, &["plan", "-f", "tenants.toml"]);
    assert_eq!(
        plan.matches("migration 2 was changed after it was applied")
            .count(),
        7,
        "{plan}"
    );

    // `migrate` records each tenant's new migration with its event.
    write_migration(&mig, "2_notes", "CREATE TABLE notes (id int);");
    write_migration(&mig, "3_tags", "CREATE TABLE tags (id int);");
    let (output, _) = run(&env, &["migrate", "--all", "-f", "tenants.toml"]);
    assert!(output.contains("Migrated 7 tenants"), "{output}");
    let events = env.psql(
        "SELECT count(*) FROM tenantctl.events WHERE action = 'migrate: 1 migration applied'",
    );
    assert_eq!(events, "7");
    let (plan, _) = run(&env, &["plan", "-f", "tenants.toml"]);
    assert!(plan.contains("No changes"), "{plan}");

    // Removing a record by hand makes that migration pending again.
    env.psql(&format!(
        "DELETE FROM tenantctl.tenant_migrations WHERE tenant_id = '{}' AND version = '2'",
        env.id("s3")
    ));
    let (plan, _) = run(&env, &["plan", "-f", "tenants.toml"]);
    assert_eq!(plan.matches("2_notes").count(), 1, "{plan}");
    assert!(!plan.contains("3_tags"), "{plan}");
}
