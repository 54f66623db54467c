//! Template databases: one per server and migration set, migrated once and
//! copied into each new database tenant with `CREATE DATABASE ... TEMPLATE`,
//! which is much faster than running the migrations in every new database.
//!
//! The template's migrations run as `pg_database_owner`, the role whose one
//! member is the owner of the current database. What they create belongs to
//! the owner of each copy, the tenant role, with no step in the copy: a copy
//! needs no connection, and no role is shared between tenants. The template
//! database itself belongs to the connecting role.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use sha2::{Digest, Sha256};

use super::migrate::run_in_open_database;
use super::schema::execute;
use super::{ApplyContext, TenantError};
use crate::migrations::MigrationSet;
use crate::spec::model::Isolation;
use crate::spec::validate::MAX_IDENTIFIER_BYTES;
use crate::sql::quote_ident;
use crate::state::registry::{self, TemplateRecord};
use crate::state::{db, server_key};

/// Text between the control database's name and the digest in a template's
/// name.
const MARKER: &str = "_tpl_";

/// How long making a template waits for its migration session to end.
const SESSION_END_WAIT: Duration = Duration::from_secs(1);

/// Hex digits of the SHA-256 of a long control database name in its
/// templates' names.
const LONG_NAME_DIGITS: usize = 8;

/// Hex digits of the migration set's digest in a template's name.
const DIGEST_DIGITS: usize = 12;

/// Returns the start of every template name of a control database, then
/// `_tpl_`. A name too long for a 63-byte template name is cut and ends
/// with 8 hex digits of its SHA-256, so two long control database names
/// that start alike still get different templates.
pub fn prefix(control_database: &str) -> String {
    let room = MAX_IDENTIFIER_BYTES - MARKER.len() - DIGEST_DIGITS;
    if control_database.len() <= room {
        return format!("{control_database}{MARKER}");
    }
    let hash = hex::encode(Sha256::digest(control_database.as_bytes()));
    let mut cut = room - 1 - LONG_NAME_DIGITS;
    while !control_database.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}_{}{MARKER}",
        &control_database[..cut],
        &hash[..LONG_NAME_DIGITS]
    )
}

/// Returns the name of the template database for a migration set.
pub fn name(control_database: &str, set: &MigrationSet) -> String {
    let digits = set.digest.get(..DIGEST_DIGITS).unwrap_or(&set.digest);
    format!("{}{digits}", prefix(control_database))
}

/// The template databases of one apply. Each is checked or made once, while
/// the other workers that need it wait: PostgreSQL refuses to copy a
/// database that has open connections, so making one must not overlap its
/// use.
#[derive(Debug, Default)]
pub struct Templates {
    outcomes: Mutex<HashMap<String, Result<(), String>>>,
}

/// The connections a worker lends to template work.
pub struct Connections<'c> {
    /// Admin connection of the tenant's server.
    pub admin: &'c mut PgConnection,
    /// Connection to the control database, for the registry.
    pub control: &'c mut PgConnection,
}

impl Templates {
    /// Makes sure the template `name` exists on server `key` with `set`
    /// applied, and makes it when needed. A failure is kept, so every tenant
    /// that needs the template reports it without trying again.
    pub fn ensure(
        &self,
        context: &ApplyContext<'_>,
        connections: Connections<'_>,
        key: &str,
        name: &str,
        set: &MigrationSet,
    ) -> Result<(), TenantError> {
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outcome = match outcomes.get(name) {
            Some(outcome) => outcome.clone(),
            None => {
                let outcome = Maker {
                    context,
                    connections,
                    key,
                    name,
                }
                .make(set)
                .map_err(|error| error.to_string());
                outcomes.insert(name.to_string(), outcome.clone());
                outcome
            }
        };
        outcome.map_err(|message| TenantError::new(format!("template {name}"), message))
    }
}

struct Maker<'a, 'c> {
    context: &'a ApplyContext<'a>,
    connections: Connections<'c>,
    key: &'a str,
    name: &'a str,
}

/// The role that owns what the template's migrations create.
pub const OWNER: &str = "pg_database_owner";

impl Maker<'_, '_> {
    fn make(mut self, set: &MigrationSet) -> Result<(), TenantError> {
        let records = registry::templates(self.connections.control, self.key)
            .map_err(|error| TenantError::new("read templates from the registry", error))?;
        let record = records.iter().find(|record| record.name == self.name);
        let exists = existing(self.connections.admin, self.name)?;
        if exists && record.is_some_and(|record| record.ready) {
            return Ok(());
        }
        if record.is_none() && exists {
            return Err(TenantError::new(
                "create template",
                format!(
                    "a database named {} exists, and tenantctl did not make it; \
                     hint: rename or drop it, or set template = false",
                    self.name
                ),
            ));
        }
        registry::start_template(self.connections.control, self.key, self.name, &set.digest)
            .map_err(|error| TenantError::new("record template in the registry", error))?;
        if exists {
            // Left half-made by an earlier run that stopped.
            drop_database(self.connections.admin, self.name)?;
        }
        self.create(set)?;
        registry::finish_template(self.connections.control, self.key, self.name)
            .map_err(|error| TenantError::new("record template in the registry", error))?;
        self.drop_unused(&records);
        Ok(())
    }

    /// Creates the database, runs the migrations in it as
    /// `pg_database_owner`, and freezes it as a template.
    fn create(&mut self, set: &MigrationSet) -> Result<(), TenantError> {
        let ident = quote_ident(self.name);
        let admin = &mut *self.connections.admin;
        // The CREATE privilege on a database is its owner's, the connecting
        // role's, not pg_database_owner's. A copy has its own privileges.
        execute(
            admin,
            "create template",
            &format!("CREATE DATABASE {ident}"),
        )?;
        execute(
            admin,
            "grant on template",
            &format!("GRANT CREATE ON DATABASE {ident} TO {OWNER}"),
        )?;

        let server = self.context.servers.get(self.key).ok_or_else(|| {
            TenantError::new("connect", format!("server {} is not known", self.key))
        })?;
        let url = db::with_database(&server.admin_url, self.name)
            .map_err(|error| TenantError::new("connect", error))?;
        let mut connection =
            db::connect(&url).map_err(|error| TenantError::new("connect", error))?;
        let all: Vec<_> = set.migrations.iter().collect();
        run_in_open_database(&mut connection, OWNER, &all)?;
        drop(connection);

        // No session may connect to a template: one would block every copy.
        // It is not marked IS_TEMPLATE: its owner, the connecting role, may
        // copy it anyway, and a plain DROP DATABASE still removes it.
        execute(
            admin,
            "freeze template",
            &format!("ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS false"),
        )?;
        wait_for_sessions_to_end(admin, self.name)
    }

    /// Drops this server's recorded templates that no tenant of the spec
    /// uses any more. A failure is a warning: the template stays recorded
    /// and the next new template tries again.
    fn drop_unused(&mut self, records: &[TemplateRecord]) {
        let used = used_templates(self.context, self.key);
        for record in records {
            if record.name == self.name || used.contains(&record.name) {
                continue;
            }
            let dropped = drop_template(self.connections.admin, &record.name).and_then(|_| {
                registry::forget_template(self.connections.control, self.key, &record.name)
                    .map_err(|error| TenantError::new("forget template", error))
            });
            match dropped {
                Ok(()) => tracing::info!(template = %record.name, "dropped an unused template"),
                Err(error) => self.context.printer.warn(&format!(
                    "cannot drop unused template {} on {}: {error}",
                    record.name, self.key
                )),
            }
        }
    }
}

/// Names of the templates the spec's database tenants on server `key` copy.
fn used_templates(context: &ApplyContext<'_>, key: &str) -> BTreeSet<String> {
    let Ok(control) = db::database_name(&context.servers.control_url) else {
        return BTreeSet::new();
    };
    context
        .desired
        .tenants
        .iter()
        .filter(|tenant| tenant.isolation == Isolation::Database && tenant.run_migrations)
        .filter_map(|tenant| {
            let database = tenant.database.as_ref()?;
            let on_server = server_key(database, &context.servers.control_key) == key;
            (database.template && on_server).then_some(())?;
            tenant.migrations.as_ref().map(|set| name(&control, set))
        })
        .collect()
}

/// Tells whether a database named `name` exists.
fn existing(admin: &mut PgConnection, name: &str) -> Result<bool, TenantError> {
    query_flag(
        admin,
        "read pg_database",
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found",
        name,
    )
}

/// Waits until no session is connected to database `name`. The session
/// that ran the template's migrations ends a moment after the client
/// closes it, and a CREATE DATABASE that finds it still there sleeps 100 ms
/// before it checks again (CountOtherDBBackends in PostgreSQL's procarray.c).
fn wait_for_sessions_to_end(admin: &mut PgConnection, name: &str) -> Result<(), TenantError> {
    let deadline = Instant::now() + SESSION_END_WAIT;
    loop {
        let open = query_flag(
            admin,
            "read pg_stat_activity",
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = $1) AS found",
            name,
        )?;
        // After the deadline the copies wait for the session themselves.
        if !open || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs a query whose one column `found` is a boolean, with `name` as `$1`.
fn query_flag(
    admin: &mut PgConnection,
    step: &str,
    sql: &str,
    name: &str,
) -> Result<bool, TenantError> {
    #[derive(QueryableByName)]
    struct Flag {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    diesel::sql_query(sql)
        .bind::<Text, _>(name)
        .get_result::<Flag>(admin)
        .map(|row| row.found)
        .map_err(|error| TenantError::new(step, error))
}

fn drop_database(admin: &mut PgConnection, name: &str) -> Result<(), TenantError> {
    execute(
        admin,
        "drop template",
        &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(name)),
    )
}

/// Drops a template database.
fn drop_template(admin: &mut PgConnection, name: &str) -> Result<(), TenantError> {
    if existing(admin, name)? {
        drop_database(admin, name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_control_names_are_cut() {
        let control = "c".repeat(63);
        let set = MigrationSet {
            dir: std::path::PathBuf::from("m"),
            migrations: Vec::new(),
            digest: "0123456789abcdef".repeat(4),
        };
        let template = name(&control, &set);
        assert_eq!(template.len(), MAX_IDENTIFIER_BYTES);
        assert!(template.ends_with("_tpl_0123456789ab"));
        assert_eq!(name("ctl", &set), "ctl_tpl_0123456789ab");

        // Two long names that differ only past the cut get their own.
        let other = format!("{}d", "c".repeat(62));
        let other_template = name(&other, &set);
        assert_eq!(other_template.len(), MAX_IDENTIFIER_BYTES);
        assert_ne!(other_template, template);
        let fits = "c".repeat(MAX_IDENTIFIER_BYTES - MARKER.len() - DIGEST_DIGITS);
        assert_eq!(prefix(&fits), format!("{fits}{MARKER}"));
    }
}
