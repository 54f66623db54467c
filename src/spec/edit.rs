//! Adds a tenant to a spec file's text and keeps everything already there:
//! comments, order, quoting and layout. TOML goes through toml_edit; YAML
//! gets a block appended to the `tenants` list, written in the indentation
//! and quoting the file already uses.

use toml_edit::{ArrayOfTables, DocumentMut, InlineTable, Item, Table};

use super::error::SpecError;
use super::load::{Document, Format};
use super::model::Isolation;

/// A tenant to add to a spec file. Its password appears only as the name of
/// the environment variable that contains it.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: String,
    pub name: String,
    pub isolation: Isolation,
    pub database: Option<NewDatabase>,
    /// Schema name of a schema tenant.
    pub schema: Option<String>,
    /// Redis key prefix of a cache tenant.
    pub prefix: Option<String>,
    /// Environment variable the spec reads the cache tenant's Redis ACL
    /// user password from, when the tenant has an ACL user.
    pub cache_password_env: Option<String>,
}

/// The database section of a new database tenant.
#[derive(Debug, Clone)]
pub struct NewDatabase {
    pub name: String,
    pub user: String,
    /// Environment variable the spec reads the password from.
    pub password_env: String,
    pub host: String,
    pub port: u16,
}

/// One value of the new tenant's block.
enum Scalar {
    Text(String),
    Number(u16),
    /// A secret read from this environment variable: `{ env = "NAME" }`.
    Env(String),
}

/// The tenant's top-level keys (`key` None) or one of its sections.
struct Section {
    key: Option<&'static str>,
    entries: Vec<(&'static str, Scalar)>,
}

impl NewTenant {
    fn sections(&self) -> Vec<Section> {
        let text = |value: &str| Scalar::Text(value.to_string());
        let mut sections = vec![Section {
            key: None,
            entries: vec![
                ("id", text(&self.id)),
                ("name", text(&self.name)),
                ("isolation", text(self.isolation.as_str())),
            ],
        }];
        if let Some(database) = &self.database {
            sections.push(Section {
                key: Some("database"),
                entries: vec![
                    ("name", text(&database.name)),
                    ("user", text(&database.user)),
                    ("password", Scalar::Env(database.password_env.clone())),
                    ("host", text(&database.host)),
                    ("port", Scalar::Number(database.port)),
                ],
            });
        }
        if let Some(schema) = &self.schema {
            sections.push(Section {
                key: Some("schema"),
                entries: vec![("name", text(schema))],
            });
        }
        if let Some(prefix) = &self.prefix {
            let mut entries = vec![("prefix", text(prefix))];
            if let Some(env) = &self.cache_password_env {
                entries.push(("password", Scalar::Env(env.clone())));
            }
            sections.push(Section {
                key: Some("cache"),
                entries,
            });
        }
        sections
    }
}

/// Returns the document's text with the tenant appended to its `tenants`.
pub fn append(document: &Document, tenant: &NewTenant) -> Result<String, SpecError> {
    let appended = match document.format {
        Format::Toml => append_toml(&document.text, tenant),
        Format::Yaml => append_yaml(&document.text, tenant),
    };
    appended.map_err(|reason| {
        SpecError::plain(
            &document.origin,
            format!("cannot add tenant '{}' to the spec: {reason}", tenant.id),
        )
        .with_hint("run with --no-save and add the printed block by hand")
    })
}

/// Returns a whole TOML spec that contains only this tenant.
pub fn new_spec(tenant: &NewTenant) -> String {
    let mut document = DocumentMut::new();
    document.insert(
        "version",
        toml_edit::value(i64::from(super::model::SPEC_VERSION)),
    );
    let mut tenants = ArrayOfTables::new();
    tenants.push(toml_table(tenant));
    document.insert("tenants", Item::ArrayOfTables(tenants));
    document.to_string()
}

/// Returns the tenant's TOML block, `[[tenants]]` and its sections.
pub fn toml_block(tenant: &NewTenant) -> String {
    let mut document = DocumentMut::new();
    let mut tenants = ArrayOfTables::new();
    tenants.push(toml_table(tenant));
    document.insert("tenants", Item::ArrayOfTables(tenants));
    document.to_string().trim_start().to_string()
}

fn append_toml(text: &str, tenant: &NewTenant) -> Result<String, String> {
    let mut document: DocumentMut = text
        .parse()
        .map_err(|error| format!("invalid TOML: {error}"))?;
    let table = toml_table(tenant);
    match document.get_mut("tenants") {
        None => {
            let mut tenants = ArrayOfTables::new();
            tenants.push(table);
            document.insert("tenants", Item::ArrayOfTables(tenants));
        }
        Some(Item::ArrayOfTables(tenants)) => tenants.push(table),
        Some(item @ Item::Value(toml_edit::Value::Array(_))) => {
            let array = item.as_array_mut().expect("matched an array");
            if array.is_empty() {
                let mut tenants = ArrayOfTables::new();
                tenants.push(table);
                *item = Item::ArrayOfTables(tenants);
            } else {
                array.push(table.into_inline_table());
            }
        }
        Some(_) => return Err("`tenants` is not a list of tables".to_string()),
    }
    Ok(document.to_string())
}

fn toml_table(tenant: &NewTenant) -> Table {
    let mut table = Table::new();
    table.decor_mut().set_prefix("\n");
    for section in tenant.sections() {
        let entries = section
            .entries
            .into_iter()
            .map(|(key, value)| (key, toml_item(value)));
        match section.key {
            None => entries.for_each(|(key, item)| {
                table.insert(key, item);
            }),
            Some(name) => {
                let mut child = Table::new();
                child.decor_mut().set_prefix("\n");
                entries.for_each(|(key, item)| {
                    child.insert(key, item);
                });
                table.insert(name, Item::Table(child));
            }
        }
    }
    table
}

fn toml_item(value: Scalar) -> Item {
    match value {
        Scalar::Text(text) => toml_edit::value(text),
        Scalar::Number(number) => toml_edit::value(i64::from(number)),
        Scalar::Env(name) => {
            let mut reference = InlineTable::new();
            reference.insert("env", name.into());
            toml_edit::value(reference)
        }
    }
}

/// How the YAML file quotes its strings, judged by the first tenant's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    Plain,
    Single,
    Double,
}

/// The layout of a YAML file's `tenants` list.
#[derive(Debug, Clone, Copy)]
struct YamlStyle {
    /// Spaces before each item's `-`.
    dash: usize,
    /// Spaces between the `-` and the item's first key.
    after_dash: usize,
    /// Indentation step of a section inside an item.
    step: usize,
    quote: Quote,
    /// Whether env references are written as `{ env: NAME }`.
    flow_references: bool,
    /// Whether items are separated by a blank line.
    blank_between: bool,
}

/// Where a YAML file's `tenants` list is: the line of its key and the last
/// line of its block (both None when the file has no such key).
struct YamlList<'a> {
    lines: Vec<&'a str>,
    key_line: Option<usize>,
    end: usize,
}

impl<'a> YamlList<'a> {
    fn find(text: &'a str) -> YamlList<'a> {
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let key_line = lines
            .iter()
            .position(|line| is_top_level_key(line, "tenants"));
        let end = key_line.map_or(0, |key_line| block_end(&lines, key_line));
        YamlList {
            lines,
            key_line,
            end,
        }
    }

    /// Returns the lines of the list's block, after its key.
    fn block(&self) -> &[&'a str] {
        match self.key_line {
            Some(key_line) => &self.lines[key_line + 1..=self.end],
            None => &[],
        }
    }
}

/// Returns the tenant's block in the spec's format and style, for printing:
/// TOML without a spec, or a list item styled like the YAML spec's items.
pub fn block(tenant: &NewTenant, document: Option<&Document>) -> String {
    match document {
        Some(document) if document.format == Format::Yaml => {
            let list = YamlList::find(&document.text);
            YamlStyle::detect(&document.text, list.block()).item(tenant)
        }
        _ => toml_block(tenant),
    }
}

fn append_yaml(text: &str, tenant: &NewTenant) -> Result<String, String> {
    let list = YamlList::find(text);
    let style = YamlStyle::detect(text, list.block());
    let Some(key_line) = list.key_line else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("tenants:\n");
        out.push_str(&style.item(tenant));
        return Ok(out);
    };
    let mut out: String = list.lines[..key_line].concat();
    let key = list.lines[key_line];
    match yaml_value_of(key) {
        "" => out.push_str(key),
        "[]" => out.push_str(&key.replacen("[]", "", 1)),
        _ => return Err("its tenants list is written in flow style (`[...]`)".to_string()),
    }
    out.push_str(&list.block().concat());
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if style.blank_between && list.block().iter().any(|line| is_item(line)) {
        out.push('\n');
    }
    out.push_str(&style.item(tenant));
    out.push_str(&list.lines[list.end + 1..].concat());
    Ok(out)
}

/// Returns whether a line is `KEY:` at column 0, plain or quoted.
fn is_top_level_key(line: &str, key: &str) -> bool {
    [key.to_string(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .any(|written| {
            line.strip_prefix(written.as_str())
                .map(|rest| rest.trim_start_matches(' '))
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\n', '\r', '#']))
        })
}

/// Returns what follows the first `:` of a line, without a comment.
fn yaml_value_of(line: &str) -> &str {
    let value = line.split_once(':').map_or("", |(_, value)| value);
    let value = match value.find(" #") {
        Some(cut) => &value[..cut],
        None => value,
    };
    value.trim()
}

fn is_item(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ').trim_end();
    trimmed == "-" || trimmed.starts_with("- ")
}

/// Returns the index of the last line that belongs to the block starting
/// after `key_line`: indented lines and `-` items at column 0. Comments at
/// column 0 may belong to what follows, so they do not extend the block.
fn block_end(lines: &[&str], key_line: usize) -> usize {
    let mut last = key_line;
    for (index, line) in lines.iter().enumerate().skip(key_line + 1) {
        let trimmed = line.trim_end();
        if trimmed.trim_start().is_empty() {
            continue;
        }
        let at_column_zero = !line.starts_with(' ');
        if at_column_zero && trimmed.starts_with('#') {
            continue;
        }
        if at_column_zero && !is_item(line) {
            break;
        }
        last = index;
    }
    last
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

impl YamlStyle {
    fn detect(text: &str, block: &[&str]) -> YamlStyle {
        let file_step = text
            .lines()
            .map(indentation)
            .find(|indent| *indent > 0)
            .unwrap_or(2);
        let first_item = block.iter().find(|line| is_item(line));
        let (dash, after_dash, quote) = match first_item {
            Some(line) => {
                let dash = indentation(line);
                let after = &line[dash + 1..];
                let after_dash = indentation(after).max(1);
                let first_value = yaml_value_of(after).chars().next();
                let quote = match first_value {
                    Some('"') => Quote::Double,
                    Some('\'') => Quote::Single,
                    _ => Quote::Plain,
                };
                (dash, after_dash, quote)
            }
            None => (file_step, 1, Quote::Plain),
        };
        let key_column = dash + 1 + after_dash;
        let step = section_step(block, key_column).unwrap_or(file_step);
        let blank_between = block.windows(2).skip(1).any(|pair| {
            pair[0].trim().is_empty() && is_item(pair[1]) && indentation(pair[1]) == dash
        });
        let flow_references = text.lines().any(|line| {
            let value = yaml_value_of(line);
            value.starts_with('{') && (value.contains("env:") || value.contains("file:"))
        });
        YamlStyle {
            dash,
            after_dash,
            step,
            quote,
            flow_references,
            blank_between,
        }
    }

    /// Writes the tenant as one list item.
    fn item(&self, tenant: &NewTenant) -> String {
        let key_pad = " ".repeat(self.dash + 1 + self.after_dash);
        let mut out = String::new();
        for section in tenant.sections() {
            let pad = match section.key {
                None => key_pad.clone(),
                Some(name) => {
                    out.push_str(&format!("{key_pad}{name}:\n"));
                    format!("{key_pad}{}", " ".repeat(self.step))
                }
            };
            for (key, value) in section.entries {
                out.push_str(&self.entry(&pad, key, &value));
            }
        }
        let first = format!("{}-{}", " ".repeat(self.dash), " ".repeat(self.after_dash));
        out.replacen(&key_pad, &first, 1)
    }

    fn entry(&self, pad: &str, key: &str, value: &Scalar) -> String {
        match value {
            Scalar::Text(text) => format!("{pad}{key}: {}\n", yaml_scalar(text, self.quote)),
            Scalar::Number(number) => format!("{pad}{key}: {number}\n"),
            Scalar::Env(name) => {
                let name = yaml_scalar(name, self.quote);
                if self.flow_references {
                    format!("{pad}{key}: {{ env: {name} }}\n")
                } else {
                    format!("{pad}{key}:\n{pad}{}env: {name}\n", " ".repeat(self.step))
                }
            }
        }
    }
}

/// Finds how far a section's keys are indented past its own key, from the
/// first `KEY:` line in the block that opens a section.
fn section_step(block: &[&str], key_column: usize) -> Option<usize> {
    let content: Vec<&&str> = block
        .iter()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .collect();
    content.windows(2).find_map(|pair| {
        let opens = indentation(pair[0]) == key_column
            && !is_item(pair[0])
            && yaml_value_of(pair[0]).is_empty();
        let inner = indentation(pair[1]);
        (opens && inner > key_column).then(|| inner - key_column)
    })
}

/// Writes a string in the file's quoting style, quoting it whenever a plain
/// scalar would read differently (numbers, booleans, `:`, `#` and so on).
fn yaml_scalar(text: &str, quote: Quote) -> String {
    match quote {
        Quote::Plain if is_plain_safe(text) => text.to_string(),
        Quote::Single | Quote::Plain if !text.chars().any(char::is_control) => {
            format!("'{}'", text.replace('\'', "''"))
        }
        _ => serde_json::to_string(text).expect("a string always serializes"),
    }
}

fn is_plain_safe(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let starts_well = text
        .chars()
        .next()
        .is_some_and(|first| first.is_alphabetic() || first == '_');
    starts_well
        && !text.ends_with(' ')
        && text
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '_' | '-' | '.' | '/'))
        && !WORDS.contains(&text.to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::parse_bytes;
    use crate::spec::validate::{ValidateOptions, validate};

    fn database_tenant() -> NewTenant {
        NewTenant {
            id: "acme".into(),
            name: "ACME Corporation".into(),
            isolation: Isolation::Database,
            database: Some(NewDatabase {
                name: "acme_db".into(),
                user: "acme_user".into(),
                password_env: "ACME_DB_PASSWORD".into(),
                host: "localhost".into(),
                port: 5432,
            }),
            schema: None,
            prefix: None,
            cache_password_env: None,
        }
    }

    fn cache_tenant() -> NewTenant {
        NewTenant {
            id: "beta".into(),
            name: "Beta: the #1 \"team\"".into(),
            isolation: Isolation::Cache,
            database: None,
            schema: None,
            prefix: Some("beta:".into()),
            cache_password_env: None,
        }
    }

    /// Parses and validates the text; returns (id, name, database name, prefix) of each tenant.
    fn tenants_of(text: &str, format: Format) -> Vec<(String, String, String, String)> {
        let document = parse_bytes("test", None, ".".into(), format, text.as_bytes().to_vec())
            .unwrap_or_else(|error| panic!("{error}\n{text}"));
        let desired = validate(&document, ValidateOptions::default())
            .unwrap_or_else(|error| panic!("{error}\n{text}"));
        desired
            .tenants
            .iter()
            .map(|tenant| {
                (
                    tenant.id.clone(),
                    tenant.name.clone(),
                    tenant
                        .database
                        .as_ref()
                        .map_or(String::new(), |d| d.name.clone()),
                    tenant
                        .cache
                        .as_ref()
                        .map_or(String::new(), |c| c.prefix.clone()),
                )
            })
            .collect()
    }

    fn append_text(text: &str, format: Format, tenant: &NewTenant) -> String {
        match format {
            Format::Toml => append_toml(text, tenant).unwrap(),
            Format::Yaml => append_yaml(text, tenant).unwrap(),
        }
    }

    const TOML_SPEC: &str = "# Our tenants\nversion = 1 # format\n\n[[tenants]]\nid = \"old\" # first\nname = 'Old'\nisolation = \"schema\"\n\n[redis]\nurl = \"redis://127.0.0.1:6379\"\n# trailing comment\n";

    #[test]
    fn toml_append_keeps_comments_and_order() {
        let text = append_text(TOML_SPEC, Format::Toml, &database_tenant());
        assert!(text.starts_with("# Our tenants\nversion = 1 # format\n\n[[tenants]]\nid = \"old\" # first\nname = 'Old'\n"), "{text}");
        let block = "\n[[tenants]]\nid = \"acme\"\nname = \"ACME Corporation\"\nisolation = \"database\"\n\n[tenants.database]\nname = \"acme_db\"\nuser = \"acme_user\"\npassword = { env = \"ACME_DB_PASSWORD\" }\nhost = \"localhost\"\nport = 5432\n";
        assert!(
            text.contains(&format!("isolation = \"schema\"\n{block}\n[redis]")),
            "{text}"
        );
        assert!(text.ends_with("# trailing comment\n"), "{text}");
        let tenants = tenants_of(&text, Format::Toml);
        assert_eq!(tenants.len(), 2);
        assert_eq!(tenants[1].2, "acme_db");
    }

    #[test]
    fn toml_without_tenants_and_with_empty_list() {
        for spec in ["version = 1\n", "version = 1\ntenants = []\n"] {
            let text = append_text(spec, Format::Toml, &cache_tenant());
            let tenants = tenants_of(&text, Format::Toml);
            assert_eq!(tenants.len(), 1, "{text}");
            assert_eq!(tenants[0].1, "Beta: the #1 \"team\"");
            assert_eq!(tenants[0].3, "beta:");
        }
    }

    #[test]
    fn toml_cache_password_is_env_reference() {
        let tenant = NewTenant {
            cache_password_env: Some("BETA_REDIS_PASSWORD".into()),
            ..cache_tenant()
        };
        let block = toml_block(&tenant);
        assert!(
            block.ends_with(
                "[tenants.cache]\nprefix = \"beta:\"\npassword = { env = \"BETA_REDIS_PASSWORD\" }\n"
            ),
            "{block}"
        );
    }

    #[test]
    fn toml_new_spec_and_block() {
        let spec = new_spec(&database_tenant());
        assert!(spec.starts_with("version = 1\n\n[[tenants]]\n"), "{spec}");
        assert_eq!(tenants_of(&spec, Format::Toml).len(), 1);
        assert!(toml_block(&database_tenant()).starts_with("[[tenants]]\nid = \"acme\"\n"));
    }

    #[test]
    fn yaml_follows_the_file_style() {
        let spec = "# tenants\nversion: 1\ntenants:\n    -   id: \"old\"   # first\n        name: \"Old\"\n        isolation: \"database\"\n        database:\n              user: \"old_user\"\n              password: { env: OLD_PW }\n\n    -   id: \"two\"\n        name: \"Two\"\n        isolation: \"schema\"\n# about redis\nredis:\n  url: redis://127.0.0.1:6379\n";
        let text = append_text(spec, Format::Yaml, &database_tenant());
        let expected = "        isolation: \"schema\"\n\n    -   id: \"acme\"\n        name: \"ACME Corporation\"\n        isolation: \"database\"\n        database:\n              name: \"acme_db\"\n              user: \"acme_user\"\n              password: { env: \"ACME_DB_PASSWORD\" }\n              host: \"localhost\"\n              port: 5432\n# about redis\nredis:\n";
        assert!(text.contains(expected), "{text}");
        assert!(text.starts_with(spec.split("# about").next().unwrap()));
        let tenants = tenants_of(&text, Format::Yaml);
        assert_eq!(tenants.len(), 3);
        assert_eq!(tenants[2].2, "acme_db");
    }

    #[test]
    fn yaml_compact_list_plain_strings() {
        let spec = "version: 1\ntenants:\n- id: old\n  name: Old\n  isolation: schema\n";
        let text = append_text(spec, Format::Yaml, &cache_tenant());
        assert!(
            text.ends_with("  isolation: schema\n- id: beta\n  name: \"Beta: the #1 \\\"team\\\"\"\n  isolation: cache\n  cache:\n    prefix: 'beta:'\n")
                || text.ends_with("  isolation: schema\n- id: beta\n  name: 'Beta: the #1 \"team\"'\n  isolation: cache\n  cache:\n    prefix: 'beta:'\n"),
            "{text}"
        );
        let tenants = tenants_of(&text, Format::Yaml);
        assert_eq!(tenants[1].1, "Beta: the #1 \"team\"");
        assert_eq!(tenants[1].3, "beta:");
    }

    #[test]
    fn yaml_without_tenants_empty_list_and_block_references() {
        for spec in [
            "version: 1\n",
            "version: 1\ntenants: []  # none yet\n",
            "version: 1",
        ] {
            let text = append_text(spec, Format::Yaml, &database_tenant());
            assert!(text.contains("password:\n"), "{text}");
            assert_eq!(tenants_of(&text, Format::Yaml).len(), 1, "{text}");
        }
        assert!(append_yaml("version: 1\ntenants: [{id: a}]\n", &database_tenant()).is_err());
    }
}
