//! Hostile and malformed spec files: each is rejected by validate, plan and
//! apply with exit code 1 and a message that names the file, the line and
//! the value, before any server is touched.

mod support;

use std::path::Path;

use support::TestEnv;

/// Names that no id or object name may take.
fn bad_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "Acme",
        "acme-1",
        "1acme",
        "a\"b",
        "x'y",
        "a;drop",
        "a b",
        "a:b",
        "a*",
        "",
        "public",
        "pg_temp",
        "information_schema",
        "tenantctl",
    ]
    .map(String::from)
    .to_vec();
    names.push("a".repeat(64));
    names.push("é".repeat(32));
    names
}

/// Writes `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Builds a two-tenant spec with one field replaced, and returns it with
/// the line of that field.
fn spec_with(env: &TestEnv, field: &str, value: &str) -> (String, usize) {
    let mut id = toml_string(&env.id("acme"));
    let mut database = toml_string(&env.id("acme_db"));
    let mut user = toml_string(&env.id("acme_owner"));
    let mut schema = toml_string(&env.id("globex_s"));
    let quoted = toml_string(value);
    let line = match field {
        "id" => {
            id = quoted;
            4
        }
        "database name" => {
            database = quoted;
            7
        }
        "role name" => {
            user = quoted;
            7
        }
        _ => {
            schema = quoted;
            13
        }
    };
    let globex = toml_string(&env.id("globex"));
    let text = format!(
        "version = 1\n\n[[tenants]]\nid = {id}\nname = \"Hostile\"\nisolation = \"database\"\n\
         database = {{ name = {database}, user = {user}, password = {{ env = \"HOSTILE_PASSWORD\" }} }}\n\n\
         [[tenants]]\nid = {globex}\nname = \"Other\"\nisolation = \"schema\"\nschema = {{ name = {schema} }}\n"
    );
    (text, line)
}

/// Runs validate, plan and apply on a spec and checks each is refused with
/// a message holding every `expected` piece.
fn assert_refused(env: &TestEnv, file: &str, expected: &[String]) {
    let path = env.dir().join(file);
    let path_arg = path.display().to_string();
    for command in [
        &["validate"][..],
        &["plan", "--no-input"][..],
        &["apply", "--no-input", "--auto-approve"][..],
    ] {
        let output = env
            .cmd()
            .args(command)
            .args(["-f", &path_arg])
            .env("HOSTILE_PASSWORD", "hostile-password")
            .output()
            .expect("tenantctl runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("{command:?} on {file}:\n{stderr}");
        assert_eq!(output.status.code(), Some(1), "{context}");
        assert!(!stderr.contains("panicked"), "{context}");
        for piece in expected {
            assert!(
                stderr.contains(piece.as_str()),
                "missing {piece:?}: {context}"
            );
        }
    }
}

/// Checks that no server was touched: no registry, no prefixed database
/// other than the control database, no prefixed role.
fn assert_untouched(env: &TestEnv) {
    assert_eq!(
        env.psql("SELECT to_regnamespace('tenantctl') IS NULL"),
        "t",
        "the registry was created"
    );
    let prefix = support::quote_literal(env.prefix());
    let objects = env.psql_db(
        "postgres",
        &format!(
            "SELECT (SELECT count(*) FROM pg_database WHERE starts_with(datname, {prefix})) + \
             (SELECT count(*) FROM pg_roles WHERE starts_with(rolname, {prefix}))"
        ),
    );
    assert_eq!(objects, "1", "only the control database exists");
}

#[test]
fn hostile_names_are_refused_everywhere() {
    let env = TestEnv::new();
    for (index, value) in bad_names().iter().enumerate() {
        for field in ["id", "database name", "role name", "schema name"] {
            let (text, line) = spec_with(&env, field, value);
            let file = format!("names_{index}_{}.toml", field.replace(' ', "_"));
            env.write_spec(&file, &text);
            let expected = [format!("{file}:{line}:"), format!("{value:?}")];
            assert_refused(&env, &file, &expected);
        }
    }
    assert_untouched(&env);
}

#[test]
fn colliding_names_are_refused() {
    let env = TestEnv::new();
    let acme = env.id("acme");
    let cases = [
        // An id equal to another tenant's database name.
        (
            format!(
                "version = 1\n[[tenants]]\nid = \"{acme}\"\nname = \"A\"\nisolation = \"database\"\n\
                 database = {{ name = \"{acme}_x\", user = \"{acme}_u\", password = \"p\" }}\n\
                 [[tenants]]\nid = \"{acme}_x\"\nname = \"B\"\nisolation = \"schema\"\n"
            ),
            8,
            format!("\"{acme}_x\""),
        ),
        // An id equal to another tenant's cache prefix.
        (
            format!(
                "version = 1\n[[tenants]]\nid = \"{acme}\"\nname = \"A\"\nisolation = \"schema\"\n\
                 [[tenants]]\nid = \"{acme}_b\"\nname = \"B\"\nisolation = \"schema\"\n\
                 cache = {{ prefix = \"{acme}:\" }}\n"
            ),
            10,
            format!("\"{acme}:\""),
        ),
        // Two ids that differ only in case.
        (
            format!(
                "version = 1\n[[tenants]]\nid = \"{acme}\"\nname = \"A\"\nisolation = \"schema\"\n\
                 [[tenants]]\nid = \"{}\"\nname = \"B\"\nisolation = \"schema\"\n",
                acme.to_uppercase()
            ),
            7,
            format!("{:?}", acme.to_uppercase()),
        ),
    ];
    for (index, (text, line, value)) in cases.into_iter().enumerate() {
        let file = format!("collision_{index}.toml");
        env.write_spec(&file, &text);
        assert_refused(&env, &file, &[format!("{file}:{line}:"), value]);
    }
    assert_untouched(&env);
}

/// Writes a YAML document whose aliases expand to 9^10 strings.
fn yaml_bomb() -> String {
    let mut text = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    let mut previous = 'a';
    for name in 'b'..='j' {
        let aliases = vec![format!("*{previous}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
        previous = name;
    }
    text
}

#[test]
fn malformed_structure_is_refused() {
    let env = TestEnv::new();
    let tenant = |extra: &str| {
        format!(
            "version = 1\n[[tenants]]\nid = \"{}\"\nname = \"A\"\nisolation = \"schema\"\n{extra}",
            env.id("acme")
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "not.toml",
            "version = 1\nthis is { not toml\n".into(),
            ":2:",
            "invalid TOML",
        ),
        (
            "not.yaml",
            "version: 1\ntenants: [ {id: a\n".into(),
            ":3:",
            "invalid YAML",
        ),
        ("bomb.yaml", yaml_bomb(), ":1:", "repetition limit exceeded"),
        (
            "dup.toml",
            "version = 1\nversion = 1\n".into(),
            ":2:",
            "duplicate key: `version`",
        ),
        (
            "dup.yaml",
            "version: 1\nversion: 1\n".into(),
            ":2:",
            "duplicate key `version`",
        ),
        (
            "type.toml",
            "version = 1\n[[tenants]]\nid = 5\n".into(),
            ":3:",
            "invalid value 5",
        ),
        (
            "port.toml",
            tenant("database = { port = \"x\" }\n").replace("\"schema\"", "\"database\""),
            ":6:",
            "invalid value \"x\"",
        ),
        (
            "isolation.toml",
            tenant("").replace("\"schema\"", "\"vm\""),
            ":5:",
            "\"vm\"",
        ),
        ("version.toml", "version = 99\n".into(), ":1:", "version 99"),
        (
            "folder.toml",
            tenant("migrations = \"no_such_folder\"\n"),
            ":6:",
            "no_such_folder",
        ),
        (
            "env.toml",
            tenant(
                "schema = { user = \"u\", password = { env = \"SURELY_UNSET_PASSWORD_VAR\" } }\n",
            )
            .replace("\"u\"", &format!("\"{}\"", env.id("u"))),
            ":6:",
            "SURELY_UNSET_PASSWORD_VAR",
        ),
        (
            "device.toml",
            tenant("schema = { user = \"u\", password = { file = \"/dev/zero\" } }\n")
                .replace("\"u\"", &format!("\"{}\"", env.id("u"))),
            ":6:",
            "/dev/zero",
        ),
    ];
    for (file, text, line, value) in cases {
        env.write_spec(file, &text);
        assert_refused(&env, file, &[format!("{file}{line}"), value.to_string()]);
    }

    // Over the size limit: 50 MB of comment lines.
    let huge = env.dir().join("huge.toml");
    std::fs::write(&huge, "# padding\n".repeat(5 * 1024 * 1024)).expect("write");
    assert_refused(&env, "huge.toml", &["larger than the limit".to_string()]);
    assert_untouched(&env);
}

/// A spec of 100,000 schema tenants is accepted. Its time is not asserted;
/// README's reliability section notes the time measured by hand.
#[test]
fn hundred_thousand_tenants_are_accepted() {
    let env = TestEnv::new();
    let mut text = String::from("version = 1\n");
    for index in 0..100_000 {
        text.push_str(&format!(
            "[[tenants]]\nid = \"t{index}\"\nname = \"Tenant {index}\"\nisolation = \"schema\"\n"
        ));
    }
    let path = env.write_spec("big.toml", &text);
    let output = env
        .cmd()
        .args(["validate", "-f"])
        .arg(Path::new(&path))
        .output()
        .expect("tenantctl runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("is valid: 100000 tenants."), "{stdout}");
}

#[test]
fn invalid_migration_sql_fails_only_its_tenant() {
    let env = TestEnv::new();
    env.write_spec("good/001_items/up.sql", "CREATE TABLE items (id int);\n");
    env.write_spec("bad/001_broken/up.sql", "CREATE TABLE (;\n");
    let (good, bad) = (env.id("good"), env.id("bad"));
    let text = format!(
        "version = 1\n[[tenants]]\nid = \"{good}\"\nname = \"Good\"\nisolation = \"schema\"\nmigrations = \"good\"\n\
         [[tenants]]\nid = \"{bad}\"\nname = \"Bad\"\nisolation = \"schema\"\nmigrations = \"bad\"\n"
    );
    env.write_spec("tenants.toml", &text);
    env.cmd().arg("validate").assert().success();

    let output = env
        .cmd()
        .args(["apply", "--auto-approve"])
        .output()
        .expect("tenantctl runs");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "✗ Tenant '{bad}' failed: migration 001_broken: syntax error"
        )),
        "{shown}"
    );
    // The error names the file, line and column of the bad SQL.
    assert!(shown.contains("bad/001_broken/up.sql:1:14)"), "{shown}");
    let registry =
        env.psql("SELECT string_agg(id || ':' || status, ',' ORDER BY id) FROM tenantctl.tenants");
    assert_eq!(registry, format!("{bad}:failed,{good}:ready"));
    assert_eq!(
        env.psql(&format!("SELECT to_regclass('{good}.items') IS NOT NULL")),
        "t"
    );
    assert_eq!(
        env.psql(&format!("SELECT to_regnamespace('{bad}') IS NULL")),
        "t"
    );
}
