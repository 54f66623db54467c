//! Reads a spec file (TOML or YAML) into a JSON value plus a map from JSON
//! pointers to source positions, so every later error can name file, line
//! and column.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::error::{SpecError, SpecErrors};

/// Largest spec file accepted. A 100,000-tenant file is about 10 MiB of TOML.
pub const MAX_SPEC_BYTES: u64 = 32 * 1024 * 1024;

/// The serialization of a spec file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    /// Picks the format from a file name's extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "toml" => Some(Format::Toml),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }
}

/// A line and column, both counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// A parsed spec file before typing: its text, its JSON value and where each
/// value came from.
#[derive(Debug)]
pub struct Document {
    /// Name shown in errors: the path as given, or `<stdin>`.
    pub origin: String,
    /// Folder that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// The file's path, when it came from a file.
    pub path: Option<PathBuf>,
    pub format: Format,
    pub text: String,
    pub value: Value,
    positions: HashMap<String, usize>,
    line_starts: Vec<usize>,
}

impl Document {
    /// Finds the position of the value at a JSON pointer, falling back to its
    /// nearest ancestor that has one.
    pub fn position(&self, pointer: &str) -> Position {
        let mut current = pointer;
        loop {
            if let Some(offset) = self.positions.get(current) {
                return self.position_of_offset(*offset);
            }
            match current.rfind('/') {
                Some(cut) => current = &current[..cut],
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    fn position_of_offset(&self, offset: usize) -> Position {
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let start = self.line_starts[line.saturating_sub(1)];
        let column = self.text[start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        Position { line, column }
    }

    /// Builds an error located at a JSON pointer of this document.
    pub fn error_at(&self, pointer: &str, message: impl Into<String>) -> SpecError {
        SpecError::at(&self.origin, self.position(pointer), message)
    }
}

/// Reads a spec from a path, or from standard input when the path is `-`.
pub fn load_path(path: &Path, format: Option<Format>) -> Result<Document, SpecErrors> {
    if path.as_os_str() == "-" {
        let format = format.ok_or_else(|| {
            SpecError::plain("<stdin>", "the spec format of standard input is unknown")
                .with_hint("pass --format toml or --format yaml")
        })?;
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_SPEC_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| {
                SpecError::plain("<stdin>", format!("cannot read standard input: {error}"))
            })?;
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        return parse_bytes("<stdin>", None, cwd, format, bytes);
    }

    let origin = path.display().to_string();
    let format = match format.or_else(|| Format::from_path(path)) {
        Some(format) => format,
        None => {
            return Err(SpecError::plain(
                &origin,
                "cannot tell the spec format from the file name",
            )
            .with_hint("name the file *.toml, *.yaml or *.yml, or pass --format toml|yaml")
            .into());
        }
    };
    let file = std::fs::File::open(path).map_err(|error| {
        SpecError::plain(&origin, format!("cannot open spec file: {error}"))
            .with_hint("check the path given with -f")
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| SpecError::plain(&origin, format!("cannot read spec file: {error}")))?;
    parse_bytes(
        &origin,
        Some(path.to_path_buf()),
        base_dir(path),
        format,
        bytes,
    )
}

/// Returns the folder that relative paths in the spec at `path` start from.
pub fn base_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Parses spec bytes that were already read.
pub fn parse_bytes(
    origin: &str,
    path: Option<PathBuf>,
    base_dir: PathBuf,
    format: Format,
    bytes: Vec<u8>,
) -> Result<Document, SpecErrors> {
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecError::plain(
            origin,
            format!("spec file is larger than the limit of {MAX_SPEC_BYTES} bytes"),
        )
        .with_hint("split the tenants over several spec files")
        .into());
    }
    let text = String::from_utf8(bytes).map_err(|error| {
        SpecError::plain(
            origin,
            format!(
                "spec file is not valid UTF-8 (invalid byte at offset {})",
                error.utf8_error().valid_up_to()
            ),
        )
    })?;
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(index, _)| index + 1));
    let mut document = Document {
        origin: origin.to_string(),
        base_dir,
        path,
        format,
        text,
        value: Value::Null,
        positions: HashMap::new(),
        line_starts,
    };
    match format {
        Format::Toml => parse_toml(&mut document)?,
        Format::Yaml => parse_yaml(&mut document)?,
    }
    Ok(document)
}

fn parse_toml(document: &mut Document) -> Result<(), SpecErrors> {
    let table = DeTable::parse(&document.text).map_err(|error| {
        let offset = error.span().map(|span| span.start).unwrap_or(0);
        let message = error.message().trim().to_string();
        SpecError::at(
            &document.origin,
            document.position_of_offset(offset),
            format!("invalid TOML: {message}"),
        )
    })?;
    let mut positions = HashMap::new();
    let value = toml_table_to_json(table.get_ref(), "", &mut positions);
    document.positions = positions;
    document.value = value;
    Ok(())
}

fn toml_table_to_json(
    table: &DeTable<'_>,
    pointer: &str,
    positions: &mut HashMap<String, usize>,
) -> Value {
    let mut object = Map::new();
    for (key, value) in table.iter() {
        let child = format!("{pointer}/{}", escape_pointer(key.get_ref()));
        positions.insert(child.clone(), key.span().start);
        let json = toml_value_to_json(value.get_ref(), &child, positions);
        object.insert(key.get_ref().to_string(), json);
    }
    Value::Object(object)
}

fn toml_value_to_json(
    value: &DeValue<'_>,
    pointer: &str,
    positions: &mut HashMap<String, usize>,
) -> Value {
    match value {
        DeValue::String(text) => Value::String(text.to_string()),
        DeValue::Integer(integer) => {
            let digits = integer.as_str().replace('_', "");
            let digits = digits
                .trim_start_matches("0x")
                .trim_start_matches("0o")
                .trim_start_matches("0b");
            match i64::from_str_radix(digits, integer.radix()) {
                Ok(number) => Value::from(number),
                Err(_) => Value::String(integer.as_str().to_string()),
            }
        }
        DeValue::Float(float) => float
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(float.as_str().to_string())),
        DeValue::Boolean(flag) => Value::Bool(*flag),
        DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
        DeValue::Array(array) => {
            let mut items = Vec::with_capacity(array.len());
            for (index, item) in array.iter().enumerate() {
                let child = format!("{pointer}/{index}");
                positions.insert(child.clone(), item.span().start);
                items.push(toml_value_to_json(item.get_ref(), &child, positions));
            }
            Value::Array(items)
        }
        DeValue::Table(table) => toml_table_to_json(table, pointer, positions),
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Deepest nesting of YAML flow collections (`[...]`, `{...}`) accepted. A
/// spec needs about five levels; the YAML parser takes time that grows with
/// the square of the depth, so deeper documents are rejected before parsing.
const MAX_YAML_FLOW_DEPTH: usize = 64;

/// Finds the first place where flow collections nest deeper than
/// [`MAX_YAML_FLOW_DEPTH`], skipping quoted strings and comments. A bracket
/// counts only where a collection can start: after `:`, `-`, `,`, another
/// bracket, or at the start of a line.
fn find_deep_yaml_nesting(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    // The last character that is not a space or tab, and the one right before.
    let mut previous = '\n';
    let mut previous_raw = '\n';
    let mut characters = text.char_indices().peekable();
    while let Some((offset, character)) = characters.next() {
        let can_start = matches!(previous, ':' | '-' | ',' | '[' | '{' | '\n');
        if let Some(open) = quote {
            if character == open {
                if open == '\'' && characters.peek().map(|(_, next)| *next) == Some('\'') {
                    characters.next();
                    continue;
                }
                quote = None;
                previous = character;
                previous_raw = character;
            } else if open == '"' && character == '\\' {
                characters.next();
            }
            continue;
        }
        match character {
            '#' if previous_raw.is_whitespace() => {
                for (_, skipped) in characters.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                previous = '\n';
                previous_raw = '\n';
                continue;
            }
            '"' | '\'' if can_start => quote = Some(character),
            '[' | '{' if can_start => {
                depth += 1;
                if depth > MAX_YAML_FLOW_DEPTH {
                    return Some(offset);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if character != ' ' && character != '\t' {
            previous = character;
        }
        previous_raw = character;
    }
    None
}

fn parse_yaml(document: &mut Document) -> Result<(), SpecErrors> {
    if let Some(offset) = find_deep_yaml_nesting(&document.text) {
        return Err(SpecError::at(
            &document.origin,
            document.position_of_offset(offset),
            format!("invalid YAML: collections nested more than {MAX_YAML_FLOW_DEPTH} levels deep"),
        )
        .into());
    }
    // serde_yaml rejects duplicate keys and limits alias expansion, which
    // stops "billion laughs" documents before they use much memory.
    let parsed: serde_yaml::Value = serde_yaml::from_str(&document.text).map_err(|error| {
        let position = error
            .location()
            .map(|location| Position {
                line: location.line(),
                column: location.column(),
            })
            .unwrap_or(Position { line: 1, column: 1 });
        SpecError::at(&document.origin, position, format!("invalid YAML: {error}"))
    })?;

    let mut locator = YamlLocator::default();
    let mut parser = Parser::new_from_str(&document.text);
    if let Err(error) = parser.load(&mut locator, false) {
        let marker = error.marker();
        return Err(SpecError::at(
            &document.origin,
            Position {
                line: marker.line(),
                column: marker.col() + 1,
            },
            format!("invalid YAML: {}", error.info()),
        )
        .into());
    }

    document.positions = std::mem::take(&mut locator.positions);
    if !document.text.is_ascii() {
        chars_to_bytes(&document.text, &mut document.positions);
    }
    let mut errors = Vec::new();
    for (pointer, text) in &locator.ambiguous {
        errors.push(
            document
                .error_at(
                    pointer,
                    format!("ambiguous YAML value `{text}`: YAML 1.1 reads it as a boolean"),
                )
                .with_hint(format!(
                    "quote it (\"{text}\") for a string, or write true or false"
                )),
        );
    }
    document.value = match yaml_to_json(parsed, "") {
        Ok(value) => value,
        Err((pointer, message)) => {
            errors.push(document.error_at(&pointer, message));
            Value::Null
        }
    };
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors(errors))
    }
}

/// Turns the YAML parser's character indexes into byte offsets, which the
/// line table uses.
fn chars_to_bytes(text: &str, positions: &mut HashMap<String, usize>) {
    let mut wanted: Vec<usize> = positions.values().copied().collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut bytes = HashMap::with_capacity(wanted.len());
    let mut next = wanted.iter().peekable();
    for (char_index, (byte_index, _)) in text.char_indices().enumerate() {
        while next.peek() == Some(&&char_index) {
            bytes.insert(char_index, byte_index);
            next.next();
        }
        if next.peek().is_none() {
            break;
        }
    }
    for offset in positions.values_mut() {
        *offset = bytes.get(offset).copied().unwrap_or(text.len());
    }
}

fn yaml_to_json(value: serde_yaml::Value, pointer: &str) -> Result<Value, (String, String)> {
    use serde_yaml::Value as Yaml;
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(flag) => Value::Bool(flag),
        Yaml::Number(number) => {
            if let Some(integer) = number.as_i64() {
                Value::from(integer)
            } else if let Some(integer) = number.as_u64() {
                Value::from(integer)
            } else {
                let float = number.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(float)
                    .map(Value::Number)
                    .ok_or_else(|| (pointer.to_string(), format!("invalid number `{number}`")))?
            }
        }
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => {
            let mut array = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                array.push(yaml_to_json(item, &format!("{pointer}/{index}"))?);
            }
            Value::Array(array)
        }
        Yaml::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Yaml::String(text) => text,
                    other => {
                        let shown = serde_yaml::to_string(&other).unwrap_or_default();
                        return Err((
                            pointer.to_string(),
                            format!("invalid key `{}`: keys must be strings", shown.trim()),
                        ));
                    }
                };
                let child = format!("{pointer}/{}", escape_pointer(&key));
                let converted = yaml_to_json(item, &child)?;
                object.insert(key, converted);
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) => {
            return Err((
                pointer.to_string(),
                format!("YAML tag `{}` is not supported", tagged.tag),
            ));
        }
    })
}

/// Plain YAML scalars that YAML 1.1 reads as booleans and YAML 1.2 as strings.
const YAML_11_BOOLEANS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Walks YAML parser events to record where each value starts.
#[derive(Default)]
struct YamlLocator {
    positions: HashMap<String, usize>,
    ambiguous: Vec<(String, String)>,
    stack: Vec<Container>,
}

enum Container {
    Sequence {
        pointer: String,
        next_index: usize,
    },
    Mapping {
        pointer: String,
        pending_key: Option<String>,
    },
}

impl YamlLocator {
    /// Returns the pointer of the value that the next event starts, or None
    /// when the event is a mapping key.
    fn next_value_pointer(&mut self, mark: &Marker, key_text: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Container::Sequence {
                pointer,
                next_index,
            }) => {
                let child = format!("{pointer}/{next_index}");
                *next_index += 1;
                self.positions.insert(child.clone(), mark.index());
                Some(child)
            }
            Some(Container::Mapping {
                pointer,
                pending_key,
            }) => match pending_key.take() {
                Some(key) => Some(format!("{pointer}/{}", escape_pointer(&key))),
                None => {
                    let key = key_text.unwrap_or_default().to_string();
                    let child = format!("{pointer}/{}", escape_pointer(&key));
                    self.positions.insert(child, mark.index());
                    *pending_key = Some(key);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for YamlLocator {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, _, _) => {
                if let Some(pointer) = self.next_value_pointer(&mark, Some(&text))
                    && style == TScalarStyle::Plain
                    && YAML_11_BOOLEANS.contains(&text.as_str())
                {
                    self.ambiguous.push((pointer, text));
                }
            }
            Event::Alias(_) => {
                self.next_value_pointer(&mark, Some(""));
            }
            Event::SequenceStart(_, _) => {
                let pointer = self.next_value_pointer(&mark, None).unwrap_or_default();
                self.stack.push(Container::Sequence {
                    pointer,
                    next_index: 0,
                });
            }
            Event::MappingStart(_, _) => {
                let pointer = self.next_value_pointer(&mark, None).unwrap_or_default();
                self.stack.push(Container::Mapping {
                    pointer,
                    pending_key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: Format, text: &str) -> Result<Document, SpecErrors> {
        parse_bytes(
            "spec",
            None,
            PathBuf::from("."),
            format,
            text.as_bytes().to_vec(),
        )
    }

    #[test]
    fn toml_positions_of_nested_keys() {
        let text = "version = 1\n\n[[tenants]]\nid = \"acme\"\n\n[[tenants]]\nid = \"globex\"\n";
        let document = parse(Format::Toml, text).unwrap();
        assert_eq!(document.value["tenants"][1]["id"], "globex");
        assert_eq!(
            document.position("/tenants/1/id"),
            Position { line: 7, column: 1 }
        );
        assert_eq!(document.position("/tenants/0/id").line, 4);
    }

    #[test]
    fn yaml_positions_of_nested_keys() {
        let text = "version: 1\ntenants:\n  - id: acme\n    name: ACME\n  - id: globex\n";
        let document = parse(Format::Yaml, text).unwrap();
        assert_eq!(document.value["tenants"][1]["id"], "globex");
        assert_eq!(document.position("/tenants/1/id").line, 5);
        assert_eq!(document.position("/tenants/0/name").line, 4);
    }

    #[test]
    fn yaml_positions_after_non_ascii_text() {
        let text = "version: 1\ntenants:\n  - name: \"Société Générale\"\n    id: soc\n";
        let document = parse(Format::Yaml, text).unwrap();
        assert_eq!(
            document.position("/tenants/0/id"),
            Position { line: 4, column: 5 }
        );
    }

    #[test]
    fn yaml_ambiguous_boolean_rejected() {
        let errors = parse(
            Format::Yaml,
            "version: 1\ntenants:\n  - id: acme\n    name: yes\n",
        )
        .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(
            errors.0[0].message.contains("`yes`"),
            "{}",
            errors.0[0].message
        );
        assert_eq!(
            errors.0[0].position.unwrap(),
            Position { line: 4, column: 5 }
        );
    }

    #[test]
    fn yaml_quoted_yes_is_a_string() {
        let document = parse(Format::Yaml, "tenants:\n  - name: \"yes\"\n").unwrap();
        assert_eq!(document.value["tenants"][0]["name"], "yes");
    }

    #[test]
    fn yaml_duplicate_key_rejected() {
        let errors = parse(Format::Yaml, "version: 1\nversion: 2\n").unwrap_err();
        assert!(
            errors.0[0].message.contains("duplicate"),
            "{}",
            errors.0[0].message
        );
    }

    #[test]
    fn toml_duplicate_key_rejected() {
        let errors = parse(Format::Toml, "version = 1\nversion = 2\n").unwrap_err();
        assert!(
            errors.0[0].message.contains("duplicate key"),
            "{}",
            errors.0[0].message
        );
        assert_eq!(errors.0[0].position.unwrap().line, 2);
    }

    #[test]
    fn yaml_deep_nesting_rejected_quickly() {
        let depth = 100_000;
        let text = format!(
            "version: 1\ntenants: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let errors = parse(Format::Yaml, &text).unwrap_err();
        assert!(
            errors.0[0].message.contains("nested more than"),
            "{}",
            errors.0[0].message
        );
        assert_eq!(errors.0[0].position.unwrap().line, 2);
    }

    #[test]
    fn yaml_brackets_in_strings_not_counted() {
        let text = format!(
            "version: 1\ntenants:\n  - id: acme\n    name: \"{}\" # {}\n",
            "[".repeat(200),
            "{".repeat(200)
        );
        let document = parse(Format::Yaml, &text).unwrap();
        assert_eq!(document.value["tenants"][0]["id"], "acme");
    }

    #[test]
    fn yaml_alias_bomb_rejected() {
        let mut text =
            String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i", "j"];
        let mut previous = "a";
        for name in names {
            text.push_str(&format!(
                "{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]\n"
            ));
            previous = name;
        }
        assert!(parse(Format::Yaml, &text).is_err());
    }
}
