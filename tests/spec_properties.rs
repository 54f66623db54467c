//! Property tests of spec loading and validation: arbitrary TOML and YAML
//! documents and arbitrary strings in every string field never panic, and
//! every name validation accepts reaches PostgreSQL as itself through
//! `sql::quote_ident`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use support::TestEnv;
use tenantctl::spec::desired::Desired;
use tenantctl::spec::load::{Format, parse_bytes};
use tenantctl::spec::validate::{ValidateOptions, check_name, check_prefix, validate};
use tenantctl::sql::quote_ident;

/// Reads a quoted identifier back as PostgreSQL's scanner does: the text
/// between the outer double quotes, with each doubled quote made single.
fn unquote_ident(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut name = String::new();
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        if character == '"' && characters.next() != Some('"') {
            return None;
        }
        name.push(character);
    }
    Some(name)
}

/// Strings that look like names, hostile strings, and anything at all.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => "[a-z][a-z0-9_]{0,40}",
        2 => "[a-z_][a-z0-9_]{0,70}",
        2 => "[a-zA-Z0-9_:{}\\-\"' ;*é]{0,70}",
        1 => Just("public".to_string()),
        1 => Just("user".to_string()),
        1 => Just("pg_x".to_string()),
        2 => any::<String>(),
    ]
}

/// A secret source: a literal, or an environment variable that may be unset.
fn any_secret() -> impl Strategy<Value = Value> {
    prop_oneof![
        any_text().prop_map(Value::String),
        any_text().prop_map(|name| json!({ "env": name })),
    ]
}

fn any_isolation() -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => prop_oneof![Just("database"), Just("schema"), Just("table"), Just("cache")]
            .prop_map(|text| Value::String(text.to_string())),
        1 => any_text().prop_map(Value::String),
    ]
}

/// Adds `key` to `object` when the value is given.
fn put(object: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_string(), value);
    }
}

/// A section with arbitrary strings in its fields, each given most of the
/// time.
fn any_section(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let values = proptest::collection::vec(
        (
            proptest::option::weighted(0.8, any_text()),
            proptest::option::weighted(0.8, any_secret()),
        ),
        fields.len(),
    );
    values.prop_map(move |values| {
        let mut section = serde_json::Map::new();
        for (field, (text, secret)) in fields.iter().zip(values) {
            // A prefix ends with `:`, or validation refuses it before
            // its other characters are looked at.
            let value = match *field {
                "password" => secret,
                "prefix" => text.map(|text| Value::String(format!("{text}:"))),
                _ => text.map(Value::String),
            };
            put(&mut section, field, value);
        }
        Value::Object(section)
    })
}

/// A tenant whose section usually matches its isolation type, so that a
/// fair share of the generated specs pass validation.
fn any_tenant() -> impl Strategy<Value = Value> {
    let head = (
        any_text(),
        proptest::option::weighted(0.9, any_text()),
        proptest::option::weighted(0.9, any_isolation()),
        proptest::option::weighted(0.05, any_text()),
    );
    let sections = (
        any_section(&["name", "user", "password", "host"]),
        any_section(&["name", "user", "password"]),
        any_section(&["user", "password"]),
        any_section(&["prefix", "user", "password"]),
        proptest::collection::vec(proptest::bool::weighted(0.03), 4),
    );
    (head, sections).prop_map(
        |((id, name, isolation, migrations), (database, schema, role, cache, extra))| {
            let mut tenant = serde_json::Map::new();
            tenant.insert("id".into(), Value::String(id));
            put(&mut tenant, "name", name.map(Value::String));
            let kind = isolation
                .as_ref()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            put(&mut tenant, "isolation", isolation);
            put(&mut tenant, "migrations", migrations.map(Value::String));
            let sections = [
                ("database", "database", database),
                ("schema", "schema", schema),
                ("role", "table", role),
                ("cache", "cache", cache),
            ];
            for ((key, owner, section), extra) in sections.into_iter().zip(extra) {
                if owner == kind || extra {
                    tenant.insert(key.into(), section);
                }
            }
            Value::Object(tenant)
        },
    )
}

/// A spec-shaped document with arbitrary strings in every string field.
fn any_spec() -> impl Strategy<Value = Value> {
    let setting = prop_oneof![4 => "[a-z]{1,8}\\.[a-z_]{1,8}", 1 => any_text()];
    let tables = proptest::option::weighted(
        0.3,
        (
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::option::of(setting),
        ),
    );
    (
        proptest::collection::vec(any_tenant(), 1..4),
        proptest::option::of(any_isolation()),
        tables,
        proptest::option::weighted(0.1, any_text()),
        proptest::option::weighted(0.1, (any_text(), any_secret())),
    )
        .prop_map(|(tenants, isolation, tables, control_url, server)| {
            let mut spec = serde_json::Map::new();
            spec.insert("version".into(), json!(1));
            spec.insert("tenants".into(), Value::Array(tenants));
            let mut defaults = serde_json::Map::new();
            put(&mut defaults, "isolation", isolation);
            spec.insert("defaults".into(), Value::Object(defaults));
            if let Some((schema, column, setting)) = tables {
                let mut section = serde_json::Map::new();
                put(&mut section, "schema", schema.map(Value::String));
                put(&mut section, "column", column.map(Value::String));
                put(&mut section, "setting", setting.map(Value::String));
                spec.insert("tables".into(), Value::Object(section));
            }
            if let Some(url) = control_url {
                spec.insert("control".into(), json!({ "database_url": url }));
            }
            if let Some((host, admin_url)) = server {
                spec.insert(
                    "servers".into(),
                    json!({ host: { "admin_url": admin_url } }),
                );
            }
            Value::Object(spec)
        })
}

/// Any JSON-like tree, as a TOML or YAML document of arbitrary shape.
fn any_tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any_text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Loads and validates text; returns the desired state when accepted.
fn load(format: Format, text: &str, base: &Path) -> Option<Desired> {
    let document = parse_bytes(
        "spec",
        None,
        base.to_path_buf(),
        format,
        text.as_bytes().to_vec(),
    )
    .ok()?;
    validate(
        &document,
        ValidateOptions {
            missing_is_error: true,
        },
    )
    .ok()
}

/// Every name the desired state would send to PostgreSQL.
fn accepted_names(desired: &Desired) -> Vec<String> {
    let mut names = Vec::new();
    for tenant in &desired.tenants {
        names.push(tenant.id.clone());
        if let Some(database) = &tenant.database {
            names.extend([database.name.clone(), database.owner.clone()]);
        }
        if let Some(schema) = &tenant.schema {
            names.push(schema.name.clone());
            names.extend(schema.role.as_ref().map(|role| role.name.clone()));
        }
        names.extend(tenant.role.as_ref().map(|role| role.name.clone()));
        if let Some(cache) = &tenant.cache {
            assert!(check_prefix(&cache.prefix).is_ok(), "{:?}", cache.prefix);
            names.extend(cache.acl_user.as_ref().map(|user| user.name.clone()));
        }
    }
    if let Some(tables) = &desired.tables {
        names.extend([tables.schema.clone(), tables.column.clone()]);
    }
    names
}

/// Checks every accepted name and collects it for the check in PostgreSQL.
fn check_accepted(desired: &Desired, seen: &mut BTreeSet<String>) -> Result<(), TestCaseError> {
    for name in accepted_names(desired) {
        prop_assert!(name == "public" || check_name(&name).is_ok(), "{name:?}");
        prop_assert_eq!(unquote_ident(&quote_ident(&name)), Some(name.clone()));
        seen.insert(name);
    }
    Ok(())
}

fn serialize(format: Format, value: &Value) -> Option<String> {
    match format {
        Format::Toml => toml::to_string(value).ok(),
        Format::Yaml => serde_yaml::to_string(value).ok(),
    }
}

#[test]
fn arbitrary_documents_never_panic_and_accepted_names_round_trip() {
    let env = TestEnv::new();
    let base = env.dir().to_path_buf();
    let seen = std::cell::RefCell::new(BTreeSet::new());
    let runner = || TestRunner::new(Config::with_cases(256));

    for format in [Format::Toml, Format::Yaml] {
        runner()
            .run(&any::<String>(), |text| {
                load(format, &text, &base);
                Ok(())
            })
            .unwrap();
        runner()
            .run(&any_tree(), |tree| {
                if let Some(text) = serialize(format, &tree) {
                    load(format, &text, &base);
                }
                Ok(())
            })
            .unwrap();
        runner()
            .run(&any_spec(), |spec| {
                let Some(text) = serialize(format, &spec) else {
                    return Ok(());
                };
                match load(format, &text, &base) {
                    Some(desired) => check_accepted(&desired, &mut seen.borrow_mut()),
                    None => Ok(()),
                }
            })
            .unwrap();
    }

    // PostgreSQL itself reads each quoted name back: the column names of a
    // row built with them must be the names, byte for byte.
    let seen = seen.into_inner();
    assert!(seen.len() > 20, "too few specs were accepted: {seen:?}");
    let names: Vec<&String> = seen.iter().take(1000).collect();
    let columns: Vec<String> = names
        .iter()
        .map(|name| format!("1 AS {}", quote_ident(name)))
        .collect();
    let keys = env.psql(&format!(
        "SELECT string_agg(key, E'\\n' ORDER BY key COLLATE \"C\") FROM jsonb_object_keys(\
         (SELECT to_jsonb(row) FROM (SELECT {}) row)) AS key",
        columns.join(", ")
    ));
    let expected: Vec<&str> = names.iter().map(|name| name.as_str()).collect();
    assert_eq!(keys.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn unquote_reads_doubled_quotes() {
    assert_eq!(unquote_ident("\"a\"\"b\""), Some("a\"b".to_string()));
    assert_eq!(unquote_ident("\"a\"b\""), None);
    assert_eq!(
        unquote_ident(&quote_ident("x\"\"y")),
        Some("x\"\"y".to_string())
    );
}
