//! `tenantctl create`: one tenant, asked for value by value on a terminal or
//! given by flags, provisioned by the usual plan and apply for that tenant
//! alone, then added to the spec file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::apply::lock::ApplyLock;
use crate::cli::{CreateArgs, GlobalArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::plan::Plan;
use crate::plan::action::Action;
use crate::prompt::{self, Check};
use crate::spec::desired::{Desired, missing_error};
use crate::spec::edit::{self, NewDatabase, NewTenant};
use crate::spec::fill::{check_not_blank, role_names};
use crate::spec::load::{self, Document, Format};
use crate::spec::model::Isolation;
use crate::spec::secret::Secret;
use crate::spec::validate::{ValidateOptions, check_host, check_name, check_prefix, validate};
use crate::state::registry::{self, RegistryState};
use crate::state::{db, server_key};

const ID_TAKEN_HINT: &str = "Use unique tenant_id for each tenant.";
const ISOLATION_ERROR: &str =
    "Invalid isolation type\nValid options: database, schema, table, cache";

/// Creates one tenant.
pub fn run(global: &GlobalArgs, args: &CreateArgs, printer: &Printer) -> Result<i32> {
    let asker = Asker {
        args,
        interactive: super::interactive(args.no_input),
    };
    asker.check_flags()?;
    let existing = args.file.as_deref().map(Existing::load).transpose()?;
    let control_url = super::control_url(global, existing.as_ref().map(|spec| &spec.desired));
    let mut control = super::open_control(&control_url)?;
    let taken = Taken::new(existing.as_ref(), &registry::read_state(&mut control)?);

    prompt::on_interrupt("nothing was created, and the spec file is unchanged.");
    if asker.interactive {
        printer.error("Starting tenant creation...");
    }
    let answers = asker.tenant(&taken)?;
    let (document, desired) = combine(existing.as_ref(), &answers)?;
    let migrate = asker.migrate(&desired, &answers)?;

    let writer = match (&existing, args.no_save) {
        (Some(spec), false) => Some(SpecWriter::prepare(spec)?),
        _ => None,
    };
    let outcome = provision(
        &control_url,
        args,
        document,
        desired,
        &answers,
        migrate,
        printer,
    )?;
    let saved = report(printer, existing.as_ref(), writer, &answers, &outcome);
    Ok(if outcome.failed || !saved { 1 } else { 0 })
}

/// The spec file given with `-f`, or the start of a new one when the file
/// does not exist yet.
struct Existing {
    document: Document,
    desired: Desired,
    /// The file's text as read, or None when it does not exist yet.
    original: Option<String>,
}

impl Existing {
    fn load(path: &Path) -> Result<Existing> {
        if path.as_os_str() == "-" {
            return Err(Error::with_hint(
                "create adds the tenant to a spec file, and `-` (standard input) cannot be written",
                "pass -f FILE, or leave -f out to print the tenant's block",
            ));
        }
        let exists = path.exists();
        let document = if exists {
            load::load_path(path, None)?
        } else {
            let origin = path.display().to_string();
            let format = Format::from_path(path).ok_or_else(|| {
                Error::with_hint(
                    format!("cannot tell the spec format of {origin} from its name"),
                    "name the file *.toml, *.yaml or *.yml",
                )
            })?;
            let start = match format {
                Format::Toml => "version = 1\n",
                Format::Yaml => "version: 1\n",
            };
            load::parse_bytes(
                &origin,
                Some(path.to_path_buf()),
                load::base_dir(path),
                format,
                start.as_bytes().to_vec(),
            )?
        };
        let desired = validate(&document, ValidateOptions::default())?;
        let original = exists.then(|| document.text.clone());
        Ok(Existing {
            document,
            desired,
            original,
        })
    }
}

/// Values of the new tenant, from the flags or the terminal.
struct Answers {
    tenant: NewTenant,
    /// The typed password of the database role or the Redis ACL user, or
    /// None when it comes from the environment.
    password: Option<Secret>,
    create_database: bool,
}

impl Answers {
    /// Returns which password the tenant needs, if any, and the variable
    /// the spec reads it from.
    fn password_env(&self) -> Option<(PasswordFor, &str)> {
        if let Some(database) = &self.tenant.database {
            return Some((PasswordFor::Database, database.password_env.as_str()));
        }
        let env = self.tenant.cache_password_env.as_deref()?;
        Some((PasswordFor::Cache, env))
    }
}

/// The kind of password a new tenant needs: its database role's or its
/// Redis ACL user's.
#[derive(Clone, Copy)]
enum PasswordFor {
    Database,
    Cache,
}

impl PasswordFor {
    /// Returns the name that prompts and messages use.
    fn label(self) -> &'static str {
        match self {
            PasswordFor::Database => "database password",
            PasswordFor::Cache => "cache password",
        }
    }

    /// Returns the field of a missing value that this password fills.
    fn field(self) -> &'static str {
        match self {
            PasswordFor::Database => "database.password",
            PasswordFor::Cache => "cache.password",
        }
    }

    /// Returns the `--*-password-env` flag and its value.
    fn env_flag(self, args: &CreateArgs) -> (&'static str, Option<&str>) {
        match self {
            PasswordFor::Database => ("--db-password-env", args.db_password_env.as_deref()),
            PasswordFor::Cache => ("--cache-password-env", args.cache_password_env.as_deref()),
        }
    }
}

/// Gets each value from its flag, the terminal, or (with `--yes`) its default.
struct Asker<'a> {
    args: &'a CreateArgs,
    interactive: bool,
}

impl Asker<'_> {
    /// Checks the form of every value given by a flag before any connection
    /// is opened. Whether a name is free is checked later.
    fn check_flags(&self) -> Result<()> {
        let free = Taken::default();
        let args = self.args;
        let id = args.id.as_deref().unwrap_or("tenant");
        let checks: [(&str, Option<&str>, &FlagCheck); 9] = [
            // An ID that differs from a taken one only in case gets the
            // "already exists" message later, once the registry is read.
            ("--id", args.id.as_deref(), &|v| {
                free.check_id(&v.to_lowercase()).map(drop)
            }),
            ("--name", args.name.as_deref(), &|v| {
                check_not_blank(v).map(drop)
            }),
            ("--isolation", args.isolation.as_deref(), &|v| {
                parse_isolation(v).map(drop)
            }),
            ("--db-name", args.db_name.as_deref(), &|v| {
                free.check_database(v, id).map(drop)
            }),
            ("--db-user", args.db_user.as_deref(), &|v| {
                free.check_role(v).map(drop)
            }),
            (
                "--db-password-env",
                args.db_password_env.as_deref(),
                &check_env_name,
            ),
            (
                "--cache-password-env",
                args.cache_password_env.as_deref(),
                &check_env_name,
            ),
            ("--db-host", args.db_host.as_deref(), &|v| {
                check_host_answer(v).map(drop)
            }),
            ("--schema-name", args.schema_name.as_deref(), &|v| {
                free.check_schema(v, id).map(drop)
            }),
        ];
        for (flag, given, check) in checks {
            if let Some(given) = given {
                check(given).map_err(|message| flag_error(flag, given, &message))?;
            }
        }
        if let Some(prefix) = &args.cache_prefix {
            free.check_prefix(prefix, id)
                .map_err(|message| flag_error("--cache-prefix", prefix, &message))?;
        }
        Ok(())
    }

    fn tenant(&self, taken: &Taken) -> Result<Answers> {
        let args = self.args;
        let id = self.value(
            "--id",
            args.id.as_deref(),
            "Enter tenant ID (unique)",
            None,
            |v| taken.check_id(v),
        )?;
        let name = self.value(
            "--name",
            args.name.as_deref(),
            "Enter tenant name",
            None,
            check_not_blank,
        )?;
        let isolation = self.value(
            "--isolation",
            args.isolation.as_deref(),
            "Select isolation type (database/schema/table/cache)",
            None,
            |v| taken.check_isolation(v),
        )?;
        let mut answers = Answers {
            tenant: NewTenant {
                id,
                name,
                isolation,
                database: None,
                schema: None,
                prefix: None,
                cache_password_env: None,
            },
            password: None,
            create_database: true,
        };
        match isolation {
            Isolation::Database => self.database(taken, &mut answers)?,
            Isolation::Schema => {
                let id = &answers.tenant.id;
                answers.tenant.schema = Some(self.value(
                    "--schema-name",
                    args.schema_name.as_deref(),
                    "Enter schema name",
                    Some(id),
                    |v| taken.check_schema(v, id),
                )?);
            }
            Isolation::Cache => self.cache(taken, &mut answers)?,
            Isolation::Table => {}
        }
        Ok(answers)
    }

    fn cache(&self, taken: &Taken, answers: &mut Answers) -> Result<()> {
        let args = self.args;
        let id = answers.tenant.id.clone();
        answers.tenant.prefix = Some(self.value(
            "--cache-prefix",
            args.cache_prefix.as_deref(),
            "Enter cache key prefix",
            Some(&format!("{id}:")),
            |v| taken.check_prefix(v, &id),
        )?);
        let acl_user = self.yes_no(
            "--acl-user",
            args.acl_user,
            "Do you want a Redis ACL user for this tenant?",
        )?;
        if !acl_user {
            return Ok(());
        }
        let password_env = args
            .cache_password_env
            .clone()
            .unwrap_or_else(|| format!("{}_REDIS_PASSWORD", id.to_uppercase()));
        answers.password = self.password(PasswordFor::Cache, &password_env)?;
        answers.tenant.cache_password_env = Some(password_env);
        Ok(())
    }

    fn database(&self, taken: &Taken, answers: &mut Answers) -> Result<()> {
        let args = self.args;
        let id = answers.tenant.id.clone();
        answers.create_database = self.yes_no(
            "--create-database",
            args.create_database,
            "Do you want to create the database now?",
        )?;
        let name = self.value(
            "--db-name",
            args.db_name.as_deref(),
            "Enter database name for tenant",
            None,
            |v| taken.check_database(v, &id),
        )?;
        let user = self.value(
            "--db-user",
            args.db_user.as_deref(),
            "Enter database user",
            None,
            |v| taken.check_role(v),
        )?;
        let password_env = args
            .db_password_env
            .clone()
            .unwrap_or_else(|| format!("{}_DB_PASSWORD", id.to_uppercase()));
        answers.password = self.password(PasswordFor::Database, &password_env)?;
        let host = self.value(
            "--db-host",
            args.db_host.as_deref(),
            "Enter database host",
            None,
            check_host_answer,
        )?;
        let port = self.value(
            "--db-port",
            args.db_port.map(|port| port.to_string()).as_deref(),
            "Enter database port",
            Some("5432"),
            check_port,
        )?;
        answers.tenant.database = Some(NewDatabase {
            name,
            user,
            password_env,
            host,
            port,
        });
        Ok(())
    }

    /// Asks for the password on a terminal, unless the variable named by
    /// `--db-password-env` or `--cache-password-env` contains one. Without a
    /// terminal the variable must contain it, and validation reads it from
    /// there.
    fn password(&self, what: PasswordFor, env: &str) -> Result<Option<Secret>> {
        let (flag, named) = what.env_flag(self.args);
        let set = std::env::var_os(env).is_some_and(|value| !value.is_empty());
        if set && (named.is_some() || !self.interactive) {
            return Ok(None);
        }
        if self.interactive {
            return prompt::ask_secret(&format!("Enter {}", what.label())).map(Some);
        }
        let without = match what {
            PasswordFor::Database => "",
            PasswordFor::Cache => ", or pass --acl-user=no for a tenant without an ACL user",
        };
        Err(Error::with_hint(
            format!(
                "no {}: environment variable `{env}` is not set, and prompting is off (no terminal, --no-input or CI)",
                what.label()
            ),
            format!(
                "set {env} to the password, or name the variable that contains it with {flag}{without}"
            ),
        ))
    }

    /// Asks whether to run the tenant's migrations now, when it has any and
    /// its database is being created.
    fn migrate(&self, desired: &Desired, answers: &Answers) -> Result<bool> {
        let has_migrations = desired.tenant(&answers.tenant.id).is_some_and(|tenant| {
            tenant.run_migrations
                && tenant
                    .migrations
                    .as_ref()
                    .is_some_and(|set| !set.migrations.is_empty())
        });
        if !has_migrations || !answers.create_database {
            return Ok(true);
        }
        self.yes_no(
            "--migrate",
            self.args.migrate,
            "Do you want to run migrations for this tenant now?",
        )
    }

    fn value<T>(
        &self,
        flag: &str,
        given: Option<&str>,
        prompt: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Check<T>,
    ) -> Result<T> {
        let preset = given.or(default.filter(|_| self.args.yes));
        if let Some(value) = preset {
            return check(value).map_err(|message| flag_error(flag, value, &message));
        }
        if self.interactive {
            return prompt::ask(prompt, default, check);
        }
        let hint = match default {
            Some(default) => format!("pass {flag}, or --yes to take the default {default}"),
            None => format!("pass {flag}"),
        };
        Err(Error::with_hint(
            format!("no value for {flag}, and prompting is off (no terminal, --no-input or CI)"),
            hint,
        ))
    }

    fn yes_no(&self, flag: &str, given: Option<bool>, prompt: &str) -> Result<bool> {
        if let Some(answer) = given.or(self.args.yes.then_some(true)) {
            return Ok(answer);
        }
        if self.interactive {
            return prompt::ask_yes_no(prompt);
        }
        Err(Error::with_hint(
            format!(
                "no answer to {prompt:?}, and prompting is off (no terminal, --no-input or CI)"
            ),
            format!("pass {flag}=yes or {flag}=no, or --yes"),
        ))
    }
}

/// Checks the form of one flag's value.
type FlagCheck<'a> = dyn Fn(&str) -> Check<()> + 'a;

fn flag_error(flag: &str, value: &str, message: &str) -> Error {
    Error::other(format!("{flag} {value:?}: {message}"))
}

fn parse_isolation(answer: &str) -> Check<Isolation> {
    Isolation::parse(&answer.to_lowercase()).ok_or_else(|| ISOLATION_ERROR.to_string())
}

fn check_host_answer(answer: &str) -> Check<String> {
    check_host(answer)
        .map(|()| answer.to_string())
        .map_err(|reason| format!("invalid host {answer:?}: {reason}"))
}

fn check_port(answer: &str) -> Check<u16> {
    match answer.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!(
            "invalid port {answer:?}: it must be a number from 1 to 65535"
        )),
    }
}

fn check_env_name(name: &str) -> Check<()> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err("an environment variable name has only ASCII letters, digits and `_`, and does not start with a digit".to_string())
    }
}

/// Names other tenants already use, from the spec and the registry, so a
/// clashing answer is asked again instead of failing at the end.
#[derive(Default)]
struct Taken {
    /// Tenant ids keyed by their lowercase form.
    ids: BTreeMap<String, String>,
    /// Database and schema names (which share a namespace with ids),
    /// with what they are and whose.
    names: BTreeMap<String, (&'static str, String)>,
    databases: BTreeMap<String, String>,
    roles: BTreeMap<String, String>,
    schemas: BTreeMap<String, String>,
    prefixes: Vec<(String, String)>,
    /// Whether the spec has a `[tables]` section, which table tenants need.
    tables: Option<bool>,
}

impl Taken {
    fn new(existing: Option<&Existing>, registry: &RegistryState) -> Taken {
        let mut taken = Taken {
            tables: existing.map(|spec| spec.desired.tables.is_some()),
            ..Taken::default()
        };
        if let Some(spec) = existing {
            taken.add_spec(&spec.desired);
        }
        for record in registry.tenants.values() {
            let config = |key: &str| record.config.get(key).and_then(|v| v.as_str());
            taken.add(
                &record.id,
                config("database"),
                config("schema"),
                config("prefix"),
            );
            for role in [config("owner"), config("role"), config("acl_user")]
                .into_iter()
                .flatten()
            {
                taken
                    .roles
                    .entry(role.to_string())
                    .or_insert_with(|| record.id.clone());
            }
        }
        taken
    }

    fn add_spec(&mut self, desired: &Desired) {
        if let Some(tables) = &desired.tables {
            self.schemas
                .insert(tables.schema.clone(), "(shared tables)".to_string());
        }
        for tenant in &desired.tenants {
            self.add(
                &tenant.id,
                tenant.database.as_ref().map(|d| d.name.as_str()),
                tenant.schema.as_ref().map(|s| s.name.as_str()),
                tenant.cache.as_ref().map(|c| c.prefix.as_str()),
            );
            for role in role_names(tenant) {
                self.roles.insert(role.to_string(), tenant.id.clone());
            }
        }
    }

    fn add(
        &mut self,
        id: &str,
        database: Option<&str>,
        schema: Option<&str>,
        prefix: Option<&str>,
    ) {
        self.ids
            .entry(id.to_lowercase())
            .or_insert_with(|| id.to_string());
        for (what, name, owners) in [
            ("database", database, &mut self.databases),
            ("schema", schema, &mut self.schemas),
        ] {
            let Some(name) = name else { continue };
            owners
                .entry(name.to_string())
                .or_insert_with(|| id.to_string());
            if name != id {
                self.names
                    .entry(name.to_string())
                    .or_insert((what, id.to_string()));
            }
        }
        if let Some(prefix) = prefix {
            self.prefixes.push((prefix.to_string(), id.to_string()));
        }
    }

    fn check_id(&self, answer: &str) -> Check<String> {
        if let Some(existing) = self.ids.get(&answer.to_lowercase()) {
            return Err(format!(
                "Tenant with ID '{existing}' already exists\n{ID_TAKEN_HINT}"
            ));
        }
        check_name(answer).map_err(|reason| format!("invalid tenant ID {answer:?}: {reason}"))?;
        if let Some((what, owner)) = self.names.get(answer) {
            return Err(format!(
                "{answer:?} is already the {what} name of tenant '{owner}'\n{ID_TAKEN_HINT}"
            ));
        }
        Ok(answer.to_string())
    }

    fn check_isolation(&self, answer: &str) -> Check<Isolation> {
        let isolation = parse_isolation(answer)?;
        match (isolation, self.tables) {
            (Isolation::Table, Some(false)) => Err(
                "table tenants need a [tables] section in the spec file, and it has none"
                    .to_string(),
            ),
            (Isolation::Table, None) => Err(
                "table tenants need the [tables] section of a spec file; run again with -f FILE"
                    .to_string(),
            ),
            _ => Ok(isolation),
        }
    }

    /// Checks a database or schema name: valid, not another tenant's, and
    /// (unless it is the tenant's own id) not another tenant's id.
    fn check_object(
        &self,
        answer: &str,
        id: &str,
        what: &str,
        owners: &BTreeMap<String, String>,
    ) -> Check<String> {
        check_name(answer).map_err(|reason| format!("invalid {what} name {answer:?}: {reason}"))?;
        if let Some(owner) = owners.get(answer) {
            return Err(format!(
                "{what} {answer:?} already belongs to tenant '{owner}'"
            ));
        }
        if answer != id {
            if let Some(owner) = self.ids.get(answer) {
                return Err(format!(
                    "{what} name {answer:?} is the ID of tenant '{owner}'"
                ));
            }
            if let Some((kind, owner)) = self.names.get(answer) {
                return Err(format!(
                    "{what} name {answer:?} is the {kind} name of tenant '{owner}'"
                ));
            }
        }
        Ok(answer.to_string())
    }

    fn check_database(&self, answer: &str, id: &str) -> Check<String> {
        self.check_object(answer, id, "database", &self.databases)
    }

    fn check_schema(&self, answer: &str, id: &str) -> Check<String> {
        self.check_object(answer, id, "schema", &self.schemas)
    }

    fn check_role(&self, answer: &str) -> Check<String> {
        check_name(answer).map_err(|reason| format!("invalid role name {answer:?}: {reason}"))?;
        match self.roles.get(answer) {
            Some(owner) => Err(format!(
                "role {answer:?} is already used by tenant '{owner}'"
            )),
            None => Ok(answer.to_string()),
        }
    }

    fn check_prefix(&self, answer: &str, id: &str) -> Check<String> {
        check_prefix(answer)
            .map_err(|reason| format!("invalid cache prefix {answer:?}: {reason}"))?;
        let overlap = self
            .prefixes
            .iter()
            .find(|(other, _)| other.starts_with(answer) || answer.starts_with(other.as_str()));
        if let Some((other, owner)) = overlap {
            return Err(format!(
                "cache prefix {answer:?} overlaps prefix {other:?} of tenant '{owner}'"
            ));
        }
        let bare = answer
            .trim_end_matches(':')
            .trim_start_matches('{')
            .trim_end_matches('}');
        match self.ids.get(bare) {
            Some(owner) if bare != id => {
                Err(format!("cache prefix {answer:?} names tenant '{owner}'"))
            }
            _ => Ok(answer.to_string()),
        }
    }
}

/// Builds the spec with the new tenant added and validates it, exactly as
/// a later plan will read it. A typed password replaces the one the spec
/// refers to.
fn combine(existing: Option<&Existing>, answers: &Answers) -> Result<(Document, Desired)> {
    let document = match existing {
        Some(spec) => {
            let text = edit::append(&spec.document, &answers.tenant)
                .map_err(crate::spec::error::SpecErrors::from)?;
            load::parse_bytes(
                &spec.document.origin,
                spec.document.path.clone(),
                spec.document.base_dir.clone(),
                spec.document.format,
                text.into_bytes(),
            )?
        }
        None => load::parse_bytes(
            "<new tenant>",
            None,
            std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            Format::Toml,
            edit::new_spec(&answers.tenant).into_bytes(),
        )?,
    };
    let mut desired = validate(&document, ValidateOptions::default())?;
    let id = &answers.tenant.id;
    let typed = answers
        .password_env()
        .filter(|_| answers.password.is_some())
        .map(|(what, _)| what.field());
    let missing: Vec<_> = std::mem::take(&mut desired.missing)
        .into_iter()
        .filter(|value| &value.tenant == id)
        .filter(|value| Some(value.field.as_str()) != typed)
        .collect();
    if !missing.is_empty() {
        return Err(crate::spec::error::SpecErrors::from(missing_error(&missing)).into());
    }
    let tenant = desired.tenants.iter_mut().find(|tenant| &tenant.id == id);
    if let (Some(tenant), Some(password)) = (tenant, &answers.password) {
        let acl_user = tenant
            .cache
            .as_mut()
            .and_then(|cache| cache.acl_user.as_mut());
        let slot = match tenant.database.as_mut() {
            Some(database) => Some(&mut database.password),
            None => acl_user.map(|user| &mut user.password),
        };
        if let Some(slot) = slot {
            *slot = Some(password.clone());
        }
    }
    Ok((document, desired))
}

/// The outcome of provisioning.
struct Created {
    failed: bool,
    text: String,
}

/// Plans and applies the new tenant alone, under the apply lock, leaving
/// out what the person declined.
fn provision(
    control_url: &str,
    args: &CreateArgs,
    document: Document,
    desired: Desired,
    answers: &Answers,
    migrate: bool,
    printer: &Printer,
) -> Result<Created> {
    let id = answers.tenant.id.clone();
    let lock = ApplyLock::acquire(db::connect(control_url)?, args.lock_timeout, |_| {
        printer.error("Waiting for another tenantctl apply to finish...");
    })?;
    let mut control = db::connect(control_url)?;
    let mut planned = super::plan::compute(
        document,
        desired,
        control_url.to_string(),
        &mut control,
        std::slice::from_ref(&id),
        super::plan::Removal::default(),
    )?;
    drop(control);
    if let Some(existing) = planned
        .actual
        .registry
        .tenants
        .keys()
        .find(|other| other.eq_ignore_ascii_case(&id))
    {
        return Err(Error::other(format!(
            "Tenant with ID '{existing}' already exists\n{ID_TAKEN_HINT}"
        )));
    }
    check_reachable(&planned, &id)?;

    prompt::on_interrupt(
        "the tenant may be only partly created, and the spec file is unchanged; add the tenant to it and run tenantctl apply to finish it.",
    );
    for tenant_plan in planned.plan.tenants.iter_mut().filter(|plan| plan.id == id) {
        if !answers.create_database {
            tenant_plan.defer(|action| !is_registry_action(action));
        } else if !migrate {
            tenant_plan.defer(|action| matches!(action, Action::RunMigrations { .. }));
        }
    }
    planned.plan.summary = Plan::summarize(planned.plan.shared.as_ref(), &planned.plan.tenants);
    let outcome = super::apply::execute_planned(&planned, 2, printer)?;
    lock.release();
    Ok(Created {
        failed: outcome.failed > 0,
        text: planned.document.text,
    })
}

fn is_registry_action(action: &Action) -> bool {
    matches!(
        action,
        Action::Register { .. }
            | Action::UpdateName { .. }
            | Action::UpdateConfig { .. }
            | Action::UpdateProtection { .. }
            | Action::MarkReady { .. }
    )
}

/// Fails when the new database tenant's server could not be read, before
/// anything is created.
fn check_reachable(planned: &super::plan::Planned, id: &str) -> Result<()> {
    let Some(database) = planned
        .desired
        .tenant(id)
        .and_then(|tenant| tenant.database.as_ref())
    else {
        return Ok(());
    };
    let key = server_key(database, &planned.servers.control_key);
    match planned.actual.servers.get(&key) {
        Some(Err(reason)) => Err(Error::other(reason.clone())),
        _ => Ok(()),
    }
}

/// Writes the spec file through a temporary file in the same folder, so
/// the file is either the old text or the new one.
struct SpecWriter {
    target: PathBuf,
    temp: tempfile::NamedTempFile,
    original: Option<String>,
}

impl SpecWriter {
    /// Makes sure the spec's folder can take the new file before anything
    /// is provisioned.
    fn prepare(spec: &Existing) -> Result<SpecWriter> {
        let path = spec.document.path.clone().unwrap_or_default();
        let target = std::fs::canonicalize(&path).unwrap_or(path);
        let folder = load::base_dir(&target);
        let temp = tempfile::Builder::new()
            .prefix(".tenantctl-")
            .tempfile_in(&folder)
            .map_err(|error| {
                Error::with_hint(
                    format!("cannot write to {}: {error}", folder.display()),
                    "fix the folder's permissions, or pass --no-save",
                )
            })?;
        Ok(SpecWriter {
            target,
            temp,
            original: spec.original.clone(),
        })
    }

    fn commit(mut self, text: &str) -> Result<()> {
        let shown = self.target.display().to_string();
        let current = std::fs::read_to_string(&self.target).ok();
        if current != self.original {
            return Err(Error::other(format!(
                "{shown} changed while the tenant was being created, so it was left as it is"
            )));
        }
        let fail = |error: std::io::Error| Error::other(format!("cannot write {shown}: {error}"));
        self.temp.write_all(text.as_bytes()).map_err(fail)?;
        if let Ok(metadata) = std::fs::metadata(&self.target) {
            self.temp
                .as_file()
                .set_permissions(metadata.permissions())
                .map_err(fail)?;
        }
        self.temp.as_file().sync_all().map_err(fail)?;
        self.temp
            .persist(&self.target)
            .map_err(|error| fail(error.error))?;
        Ok(())
    }
}

/// Saves or prints the new tenant's spec block and prints what is left to do.
/// Returns false when the spec file was to be written and could not be.
fn report(
    printer: &Printer,
    existing: Option<&Existing>,
    writer: Option<SpecWriter>,
    answers: &Answers,
    created: &Created,
) -> bool {
    let wanted = writer.is_some();
    let id = &answers.tenant.id;
    let saved = match (writer, existing) {
        (Some(writer), Some(spec)) => match writer.commit(&created.text) {
            Ok(()) => {
                printer.error(&format!("Added tenant '{id}' to {}.", spec.document.origin));
                true
            }
            Err(error) => {
                printer.error(&format!("Error: {error}"));
                false
            }
        },
        _ => false,
    };
    if !saved {
        printer.error("Add this block to the tenants of your spec file:");
        printer.out(&format!(
            "\n{}",
            edit::block(&answers.tenant, existing.map(|spec| &spec.document))
        ));
    }
    if let Some((what, env)) = answers.password_env() {
        let matches = answers
            .password
            .as_ref()
            .is_none_or(|typed| std::env::var(env).is_ok_and(|value| value == typed.expose()));
        if !matches {
            printer.error(&format!(
                "The spec reads the {} from {env}: set it to the password you typed before the next plan or apply.",
                what.label()
            ));
        }
    }
    if created.failed {
        printer.error(&format!(
            "Tenant '{id}' is recorded as failed; fix the cause and run tenantctl apply to finish it."
        ));
    }
    saved || !wanted
}
