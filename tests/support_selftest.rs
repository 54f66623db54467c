//! Checks the shared test helpers in `tests/support` against the real servers.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use support::{PrivatePostgres, PrivateRedis, TestEnv, quote_literal};

fn database_exists(env: &TestEnv, db: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_database WHERE datname = {}",
        quote_literal(db)
    );
    env.psql_db("postgres", &sql) == "1"
}

fn role_exists(env: &TestEnv, role: &str) -> bool {
    let sql = format!(
        "SELECT count(*) FROM pg_roles WHERE rolname = {}",
        quote_literal(role)
    );
    env.psql_db("postgres", &sql) == "1"
}

fn acl_user_exists(env: &TestEnv, user: &str) -> bool {
    env.redis(&["ACL", "USERS"])
        .lines()
        .any(|line| line == user)
}

#[test]
fn test_env_drop_removes_prefixed_objects() {
    let env = TestEnv::new();
    // A second environment checks that cleanup leaves other prefixes alone.
    let neighbour = TestEnv::new();

    let prefix = env.prefix().to_owned();
    assert!(
        prefix.len() <= 20,
        "prefix {prefix:?} is longer than 20 bytes"
    );
    assert!(
        prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "prefix {prefix:?} has characters outside [a-z0-9_]"
    );
    assert_ne!(prefix, neighbour.prefix());

    let control_db = env.control_db().to_owned();
    assert!(database_exists(&env, &control_db));
    assert_eq!(env.psql("SELECT current_database()"), control_db);
    assert!(env.database_url().ends_with(&format!("/{control_db}")));

    let role = env.id("owner");
    let db = env.id("tenant_db");
    env.psql(&format!("CREATE ROLE {role} LOGIN"));
    env.psql(&format!(
        "CREATE TABLE owned_by_role (id int); ALTER TABLE owned_by_role OWNER TO {role}"
    ));
    env.psql_db("postgres", &format!("CREATE DATABASE {db} OWNER {role}"));
    env.psql_db(
        &db,
        &format!("CREATE SCHEMA app AUTHORIZATION {role}; CREATE TABLE app.items (id int)"),
    );
    // A session left open in the database must not block its removal.
    let mut idle_session = std::process::Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", &db])
        .args(["-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("failed to start psql");
    let session_count = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = {}",
        quote_literal(&db)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.psql_db("postgres", &session_count) == "0" {
        assert!(Instant::now() < deadline, "psql did not connect to {db}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(database_exists(&env, &db));
    assert!(role_exists(&env, &role));

    let plain_key = env.id("tenant:config");
    let tagged_key = format!("{{{}}}:jobs", env.id("tenant"));
    let other_db_key = env.id("in_db_1");
    let acl_user = env.id("tenant_user");
    assert_eq!(env.redis(&["SET", &plain_key, "v"]), "OK");
    assert_eq!(env.redis(&["RPUSH", &tagged_key, "job"]), "1");
    assert_eq!(env.redis(&["-n", "1", "SET", &other_db_key, "v"]), "OK");
    assert_eq!(
        env.redis(&["ACL", "SETUSER", &acl_user, "on", ">secret", "~*", "+get"]),
        "OK"
    );
    assert!(acl_user_exists(&env, &acl_user));

    let neighbour_key = neighbour.id("key");
    assert_eq!(neighbour.redis(&["SET", &neighbour_key, "v"]), "OK");

    let spec = env.write_spec("specs/tenant.yaml", "name: acme\n");
    assert!(spec.starts_with(env.dir()));
    assert_eq!(std::fs::read_to_string(&spec).unwrap(), "name: acme\n");
    let dir = env.dir().to_owned();

    drop(env);
    let _ = idle_session.wait();

    assert!(
        !database_exists(&neighbour, &control_db),
        "control database left behind"
    );
    assert!(
        !database_exists(&neighbour, &db),
        "tenant database left behind"
    );
    assert!(!role_exists(&neighbour, &role), "role left behind");
    assert_eq!(neighbour.redis(&["EXISTS", &plain_key]), "0");
    assert_eq!(neighbour.redis(&["EXISTS", &tagged_key]), "0");
    assert_eq!(neighbour.redis(&["-n", "1", "EXISTS", &other_db_key]), "0");
    assert!(
        !acl_user_exists(&neighbour, &acl_user),
        "ACL user left behind"
    );
    assert!(!Path::new(&dir).exists(), "temporary directory left behind");

    assert!(database_exists(&neighbour, neighbour.control_db()));
    assert_eq!(neighbour.redis(&["EXISTS", &neighbour_key]), "1");
}

#[test]
fn test_env_cmd_finds_binary() {
    let env = TestEnv::new();
    env.cmd().arg("--help").assert().success();
}

#[test]
fn private_servers_restart() {
    let mut postgres = PrivatePostgres::start();
    assert_eq!(postgres.psql("SELECT 1"), "1");
    assert!(postgres.url().contains(&format!(":{}/", postgres.port())));
    postgres.psql("CREATE TABLE kept (id int); INSERT INTO kept VALUES (7)");

    postgres.set_config("work_mem", "8MB");
    assert_eq!(postgres.psql("SHOW work_mem"), "8MB");

    postgres.restart();
    assert_eq!(postgres.psql("SELECT id FROM kept"), "7");
    assert_eq!(postgres.psql("SHOW work_mem"), "8MB");

    postgres.stop();
    assert!(!postgres.is_running());
    let ready = std::process::Command::new("pg_isready")
        .args(["-q", "-h", "127.0.0.1", "-p", &postgres.port().to_string()])
        .status()
        .expect("failed to run pg_isready");
    assert!(
        !ready.success(),
        "PostgreSQL still accepts connections after stop()"
    );
    postgres.start_again();
    assert_eq!(postgres.psql("SELECT id FROM kept"), "7");
    assert!(postgres.log_path().exists());
    let data_dir = postgres.data_dir();
    drop(postgres);
    assert!(!data_dir.exists(), "PostgreSQL data directory left behind");

    let mut redis = PrivateRedis::start();
    assert_eq!(redis.redis(&["PING"]), "PONG");
    assert!(redis.url().contains(&format!(":{}/", redis.port())));
    assert_eq!(redis.redis(&["SET", "k", "v"]), "OK");
    redis.stop();
    assert!(!redis.is_running());
    redis.start_again();
    assert_eq!(redis.redis(&["PING"]), "PONG");
    assert_eq!(
        redis.redis(&["EXISTS", "k"]),
        "0",
        "a restarted server keeps nothing"
    );
    let port = redis.port().to_string();
    drop(redis);
    let ping = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port, "PING"])
        .output()
        .expect("failed to run redis-cli");
    assert!(!ping.status.success(), "Redis still answers after drop");
}
