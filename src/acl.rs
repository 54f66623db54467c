//! Redis ACL users of cache tenants: the rules tenantctl gives them, the
//! parsing of `ACL LIST` lines, and the evaluation of command rules against
//! the server's command table, so drift is found by meaning, not by text.
//!
//! Redis 7.0 rewrites the rules it stores (`-@admin` disappears when every
//! admin command is also denied by `-@dangerous`, for instance), so the text
//! that `ACL LIST` returns cannot be compared with the text that was sent.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use sha2::{Digest, Sha256};

use crate::spec::secret::Secret;

/// Command rules of a tenant user. Everything is allowed except what ignores
/// key and channel patterns or reaches the whole server:
/// - `KEYS`, `SCAN`, `RANDOMKEY`, `DBSIZE` and `CLUSTER GETKEYSINSLOT` list
///   or count other tenants' keys.
/// - `FLUSHDB`, `FLUSHALL`, `SELECT` and `SWAPDB` act beyond the prefix.
/// - `PUBSUB` lists other tenants' channels, and `MEMORY` reports on the
///   whole server.
/// - `CLIENT TRACKING ... BCAST` pushes other tenants' key names as they
///   change (checked on Redis 7.0).
/// - Scripts run commands on keys they do not declare.
pub const COMMAND_RULES: &[&str] = &[
    "+@all",
    "-@admin",
    "-@dangerous",
    "-@scripting",
    "-keys",
    "-scan",
    "-randomkey",
    "-dbsize",
    "-flushdb",
    "-flushall",
    "-select",
    "-swapdb",
    "-pubsub",
    "-memory",
    "-client|tracking",
    "-cluster|countkeysinslot",
    "-cluster|getkeysinslot",
];

/// The user a cache tenant should have.
#[derive(Debug)]
pub struct DesiredUser<'a> {
    pub name: &'a str,
    pub prefix: &'a str,
    pub password: &'a Secret,
}

impl DesiredUser<'_> {
    /// Returns the SHA-256 of the password as `ACL LIST` shows it (lowercase
    /// hex), which lets plan compare passwords without storing them.
    pub fn password_hash(&self) -> String {
        hex::encode(Sha256::digest(self.password.expose().as_bytes()))
    }

    fn key_pattern(&self) -> String {
        format!("~{}*", self.prefix)
    }

    fn channel_pattern(&self) -> String {
        format!("&{}*", self.prefix)
    }

    /// Returns the arguments of `ACL SETUSER` after the user name. `reset`
    /// comes first, so the user ends up with these rules and nothing it had
    /// before, whatever state it was in. The list contains the password
    /// hash: pass it to the server only, never to a log.
    pub fn setuser_rules(&self) -> Vec<String> {
        let mut rules = vec![
            "reset".to_string(),
            "on".to_string(),
            format!("#{}", self.password_hash()),
            self.key_pattern(),
            self.channel_pattern(),
        ];
        rules.extend(COMMAND_RULES.iter().map(|rule| rule.to_string()));
        rules
    }

    /// Lists how `live` differs from this user; empty when it matches.
    pub fn differences(&self, live: &AclUser, commands: &CommandTable) -> Vec<String> {
        let mut found = Vec::new();
        if !live.enabled {
            found.push("the user is off".to_string());
        }
        if live.nopass {
            found.push("the user accepts any password (nopass)".to_string());
        }
        if live.passwords != BTreeSet::from([self.password_hash()]) {
            found.push("the password differs".to_string());
        }
        let keys = BTreeSet::from([self.key_pattern()]);
        if live.keys != keys {
            found.push(format!(
                "key patterns are {} instead of {}",
                join(&live.keys),
                join(&keys)
            ));
        }
        let channels = BTreeSet::from([self.channel_pattern()]);
        if live.channels != channels {
            found.push(format!(
                "channel patterns are {} instead of {}",
                join(&live.channels),
                join(&channels)
            ));
        }
        if live.selectors > 0 {
            found.push(format!("the user has {} selectors", live.selectors));
        }
        found.extend(command_differences(&live.commands, commands));
        found
    }
}

fn command_differences(live: &[String], commands: &CommandTable) -> Vec<String> {
    let desired: Vec<String> = COMMAND_RULES.iter().map(|rule| rule.to_string()).collect();
    let (live, desired) = match (commands.allowed(live), commands.allowed(&desired)) {
        (Ok(live), Ok(desired)) => (live, desired),
        (Err(rule), _) | (_, Err(rule)) => {
            return vec![format!("the command rule `{rule}` cannot be evaluated")];
        }
    };
    let mut found = Vec::new();
    let extra: Vec<&String> = live.difference(&desired).collect();
    if !extra.is_empty() {
        found.push(format!("it also allows {}", first_few(&extra)));
    }
    let missing: Vec<&String> = desired.difference(&live).collect();
    if !missing.is_empty() {
        found.push(format!("it denies {}", first_few(&missing)));
    }
    found
}

fn join(items: &BTreeSet<String>) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.iter().cloned().collect::<Vec<_>>().join(" ")
    }
}

fn first_few(names: &[&String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|name| name.to_uppercase())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// A user as one line of `ACL LIST` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclUser {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// SHA-256 hashes of the passwords, in hex.
    pub passwords: BTreeSet<String>,
    /// Key patterns with their prefix (`~acme:*`, `%R~acme:*`).
    pub keys: BTreeSet<String>,
    /// Channel patterns with their prefix (`&acme:*`).
    pub channels: BTreeSet<String>,
    /// Command rules in order (`+@all`, `-keys`).
    pub commands: Vec<String>,
    pub selectors: usize,
}

impl AclUser {
    /// Parses a line such as `user acme on #5e88... ~acme:* resetchannels
    /// &acme:* +@all -@dangerous`. Returns None for a line that does not
    /// start with `user NAME`.
    pub fn parse(line: &str) -> Option<AclUser> {
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("user") {
            return None;
        }
        let mut user = AclUser {
            name: tokens.next()?.to_string(),
            ..AclUser::default()
        };
        let mut selector_depth = 0usize;
        for token in tokens {
            // A selector is written in brackets and may contain spaces.
            if selector_depth > 0 || token.starts_with('(') {
                if token.starts_with('(') {
                    if selector_depth == 0 {
                        user.selectors += 1;
                    }
                    selector_depth += 1;
                }
                if token.ends_with(')') {
                    selector_depth = selector_depth.saturating_sub(1);
                }
                continue;
            }
            user.add_rule(token);
        }
        Some(user)
    }

    fn add_rule(&mut self, token: &str) {
        match token {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => self.nopass = true,
            "allkeys" => {
                self.keys.insert("~*".to_string());
            }
            "allchannels" => {
                self.channels.insert("&*".to_string());
            }
            "allcommands" => self.commands.push("+@all".to_string()),
            "nocommands" => self.commands.push("-@all".to_string()),
            _ => {
                if let Some(hash) = token.strip_prefix('#') {
                    self.passwords.insert(hash.to_lowercase());
                } else if token.starts_with('~') || token.starts_with('%') {
                    self.keys.insert(token.to_string());
                } else if token.starts_with('&') {
                    self.channels.insert(token.to_string());
                } else if token.starts_with('+') || token.starts_with('-') {
                    self.commands.push(token.to_lowercase());
                }
            }
        }
    }
}

/// One command of the server's command table, with its ACL categories.
#[derive(Debug, Clone, Default)]
struct CommandEntry {
    categories: BTreeSet<String>,
    /// Subcommands (`client|list`) and their categories.
    subcommands: BTreeMap<String, BTreeSet<String>>,
}

/// The server's commands and their ACL categories, as `COMMAND` returns them.
#[derive(Debug, Clone, Default)]
pub struct CommandTable {
    commands: BTreeMap<String, CommandEntry>,
}

impl CommandTable {
    /// Reads the reply of `COMMAND`: one array per command whose seventh
    /// element lists its ACL categories and whose tenth lists its
    /// subcommands in the same form (Redis 7.0 and later).
    pub fn from_reply(reply: &redis::Value) -> Result<CommandTable, String> {
        let mut commands = BTreeMap::new();
        for item in items(reply).ok_or("COMMAND did not return an array")? {
            let (name, categories, subcommands) = describe_command(item)?;
            let mut entry = CommandEntry {
                categories,
                subcommands: BTreeMap::new(),
            };
            for sub in subcommands {
                let (sub_name, sub_categories, _) = describe_command(sub)?;
                entry.subcommands.insert(sub_name, sub_categories);
            }
            commands.insert(name, entry);
        }
        if commands.is_empty() {
            return Err("COMMAND returned no commands".to_string());
        }
        Ok(CommandTable { commands })
    }

    /// Returns the commands and subcommands that `rules` allow, applied in
    /// order to a user that starts with none, as Redis 7.0 applies them: a
    /// command rule or a category that a container command belongs to
    /// covers all its subcommands. Fails with the first rule it cannot read,
    /// such as a first-argument rule (`+select|0`).
    pub fn allowed(&self, rules: &[String]) -> Result<BTreeSet<String>, String> {
        let mut allowed: HashSet<String> = HashSet::new();
        for rule in rules {
            let (add, target) = match rule.split_at_checked(1) {
                Some(("+", target)) => (true, target),
                Some(("-", target)) => (false, target),
                _ => return Err(rule.clone()),
            };
            let names = self.names_for(target).ok_or_else(|| rule.clone())?;
            for name in names {
                if add {
                    allowed.insert(name);
                } else {
                    allowed.remove(&name);
                }
            }
        }
        Ok(self
            .leaves()
            .filter(|name| allowed.contains(name))
            .collect())
    }

    /// Returns every name a rule target (`@read`, `get`, `client|list`)
    /// covers, containers and subcommands alike.
    fn names_for(&self, target: &str) -> Option<Vec<String>> {
        if target == "@all" {
            return Some(self.all_names().collect());
        }
        if target.starts_with('@') {
            let mut names = Vec::new();
            for (name, entry) in &self.commands {
                if entry.categories.contains(target) {
                    names.push(name.clone());
                    names.extend(entry.subcommands.keys().cloned());
                }
                for (sub, categories) in &entry.subcommands {
                    if categories.contains(target) {
                        names.push(sub.clone());
                    }
                }
            }
            return Some(names);
        }
        if let Some((parent, _)) = target.split_once('|') {
            let entry = self.commands.get(parent)?;
            return entry
                .subcommands
                .contains_key(target)
                .then(|| vec![target.to_string()]);
        }
        let entry = self.commands.get(target)?;
        let mut names = vec![target.to_string()];
        names.extend(entry.subcommands.keys().cloned());
        Some(names)
    }

    fn all_names(&self) -> impl Iterator<Item = String> + '_ {
        self.commands.iter().flat_map(|(name, entry)| {
            std::iter::once(name.clone()).chain(entry.subcommands.keys().cloned())
        })
    }

    /// Returns the names a client can run: commands without subcommands,
    /// and subcommands. A container's own permission is never checked.
    fn leaves(&self) -> impl Iterator<Item = String> + '_ {
        self.commands.iter().flat_map(|(name, entry)| {
            let own = entry.subcommands.is_empty().then(|| name.clone());
            own.into_iter().chain(entry.subcommands.keys().cloned())
        })
    }
}

fn items(value: &redis::Value) -> Option<&[redis::Value]> {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => Some(items),
        _ => None,
    }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => Some(text.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

type CommandParts<'a> = (String, BTreeSet<String>, &'a [redis::Value]);

fn describe_command(item: &redis::Value) -> Result<CommandParts<'_>, String> {
    let fields = items(item).ok_or("a COMMAND entry is not an array")?;
    let name = fields
        .first()
        .and_then(text)
        .ok_or("a COMMAND entry has no name")?
        .to_lowercase();
    let categories = fields
        .get(6)
        .and_then(items)
        .ok_or_else(|| format!("COMMAND entry {name} has no ACL categories (Redis before 7.0?)"))?
        .iter()
        .filter_map(text)
        .map(|category| category.to_lowercase())
        .collect();
    let subcommands = fields.get(9).and_then(items).unwrap_or(&[]);
    Ok((name, categories, subcommands))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, categories: &[&str], subcommands: Vec<redis::Value>) -> redis::Value {
        let bulk = |text: &str| redis::Value::BulkString(text.as_bytes().to_vec());
        redis::Value::Array(vec![
            bulk(name),
            redis::Value::Int(-2),
            redis::Value::Array(vec![]),
            redis::Value::Int(1),
            redis::Value::Int(1),
            redis::Value::Int(1),
            redis::Value::Array(
                categories
                    .iter()
                    .map(|c| redis::Value::SimpleString(c.to_string()))
                    .collect(),
            ),
            redis::Value::Array(vec![]),
            redis::Value::Array(vec![]),
            redis::Value::Array(subcommands),
        ])
    }

    fn table() -> CommandTable {
        let mut commands = vec![
            command("get", &["@read", "@string", "@fast"], vec![]),
            command(
                "keys",
                &["@keyspace", "@read", "@slow", "@dangerous"],
                vec![],
            ),
            command("flushall", &["@keyspace", "@write", "@dangerous"], vec![]),
            command(
                "client",
                &["@slow"],
                vec![
                    command("client|id", &["@slow", "@connection"], vec![]),
                    command(
                        "client|kill",
                        &["@admin", "@slow", "@dangerous", "@connection"],
                        vec![],
                    ),
                    command("client|tracking", &["@slow", "@connection"], vec![]),
                ],
            ),
            command(
                "cluster",
                &["@slow"],
                vec![
                    command("cluster|countkeysinslot", &["@slow"], vec![]),
                    command("cluster|getkeysinslot", &["@slow"], vec![]),
                ],
            ),
            command(
                "memory",
                &["@slow"],
                vec![command("memory|stats", &["@slow"], vec![])],
            ),
            command(
                "pubsub",
                &["@slow"],
                vec![command("pubsub|channels", &["@pubsub", "@slow"], vec![])],
            ),
        ];
        // Commands the tenant rules deny by name; their categories do not
        // matter here.
        for name in ["scan", "randomkey", "dbsize", "flushdb", "select", "swapdb"] {
            commands.push(command(name, &["@keyspace"], vec![]));
        }
        CommandTable::from_reply(&redis::Value::Array(commands)).unwrap()
    }

    fn rules(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn tenant_rules_allow_keyed_commands_only() {
        let table = table();
        let desired: Vec<String> = COMMAND_RULES.iter().map(|r| r.to_string()).collect();
        let allowed = table.allowed(&desired).unwrap();
        assert_eq!(
            allowed,
            BTreeSet::from(["get".to_string(), "client|id".to_string()])
        );
    }

    #[test]
    fn container_category_covers_subcommands() {
        let allowed = table().allowed(&rules("+@slow -@dangerous")).unwrap();
        assert!(allowed.contains("client|tracking"));
        assert!(!allowed.contains("client|kill"));
        assert!(!allowed.contains("keys"));
    }

    #[test]
    fn rewritten_rules_compare_equal() {
        // Redis drops `-@admin` and `-keys` here because `-@dangerous`
        // already denies those commands.
        let table = table();
        let sent = table
            .allowed(&rules("+@all -@admin -@dangerous -keys -client|tracking"))
            .unwrap();
        let stored = table
            .allowed(&rules("+@all -@dangerous -client|tracking"))
            .unwrap();
        assert_eq!(sent, stored);
    }

    #[test]
    fn first_argument_rule_is_rejected() {
        assert_eq!(
            table().allowed(&rules("+@all -get|x")),
            Err("-get|x".to_string())
        );
    }

    #[test]
    fn acl_list_line_parsed() {
        let user = AclUser::parse(
            "user acme on sanitize-payload #ABC ~acme:* %R~shared:* resetchannels &acme:* -@all +get (~other:* +set) -keys",
        )
        .unwrap();
        assert_eq!(user.name, "acme");
        assert!(user.enabled);
        assert!(!user.nopass);
        assert_eq!(user.passwords, BTreeSet::from(["abc".to_string()]));
        assert_eq!(
            user.keys,
            BTreeSet::from(["~acme:*".to_string(), "%R~shared:*".to_string()])
        );
        assert_eq!(user.channels, BTreeSet::from(["&acme:*".to_string()]));
        assert_eq!(user.commands, rules("-@all +get -keys"));
        assert_eq!(user.selectors, 1);
        assert!(AclUser::parse("not a user line").is_none());
    }

    #[test]
    fn differences_name_the_drift() {
        let password = Secret::new("pw");
        let desired = DesiredUser {
            name: "acme",
            prefix: "acme:",
            password: &password,
        };
        let table = table();
        let line = format!(
            "user acme on #{} ~acme:* resetchannels &acme:* +@all -@dangerous -scan -randomkey \
             -dbsize -flushdb -select -swapdb -pubsub -memory -client|tracking \
             -cluster|countkeysinslot -cluster|getkeysinslot",
            desired.password_hash()
        );
        let live = AclUser::parse(&line).unwrap();
        assert_eq!(desired.differences(&live, &table), Vec::<String>::new());

        let wider =
            AclUser::parse(&line.replace("~acme:*", "~*").replace(" -@dangerous", "")).unwrap();
        let found = desired.differences(&wider, &table);
        assert_eq!(
            found,
            vec![
                "key patterns are ~* instead of ~acme:*".to_string(),
                "it also allows CLIENT|KILL, FLUSHALL, KEYS".to_string(),
            ]
        );
    }

    #[test]
    fn setuser_rules_start_with_reset_and_hide_password() {
        let password = Secret::new("hunter2");
        let desired = DesiredUser {
            name: "acme",
            prefix: "{acme}:",
            password: &password,
        };
        let rules = desired.setuser_rules();
        assert_eq!(rules[0], "reset");
        assert!(rules.contains(&"~{acme}:*".to_string()));
        assert!(rules.contains(&"&{acme}:*".to_string()));
        assert!(rules.iter().all(|rule| !rule.contains("hunter2")));
        assert_eq!(
            desired.password_hash(),
            "f52fbd32b2b3b86ff88ef6c490628285f482af15ddcb29541f94bcf526a3f6c7"
        );
    }
}
