//! Command-line arguments. The doc comments here are the `--help` text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::spec::load::Format;

/// Declarative tenant provisioning for multi-tenant PostgreSQL and Redis.
///
/// Keep tenants in a TOML or YAML spec file; `plan` shows what would change
/// and `apply` makes the servers match.
#[derive(Debug, Parser)]
#[command(name = "tenantctl", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL of the control database, which holds the registry.
    /// Precedence: this flag, then TENANTCTL_DATABASE_URL, then the spec's
    /// [control] database_url, then postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(
        long,
        global = true,
        env = "TENANTCTL_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// More log output on stderr: -v for info, -vv for debug. RUST_LOG
    /// overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print no colours (NO_COLOR does the same).
    #[arg(long, global = true)]
    pub no_color: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec file: syntax, JSON Schema and naming rules.
    Validate(ValidateArgs),
    /// Print the JSON Schema of spec files.
    Schema,
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Make the servers match the spec, or apply a saved plan.
    Apply(ApplyArgs),
    /// Run the pending migrations of one, several or all tenants.
    Migrate(MigrateArgs),
    /// List the registered tenants.
    List(ListArgs),
    /// Show everything known about one tenant.
    Show(ShowArgs),
    /// Create or update a login role that administers one tenant only.
    CreateSuperuser(CreateSuperuserArgs),
    /// Open psql (redis-cli for cache tenants) in a tenant's context.
    Shell(ShellArgs),
    /// Run a command with a tenant's context in its environment.
    Exec(ExecArgs),
    /// Remove one tenant and everything tenantctl made for it.
    Destroy(DestroyArgs),
    /// Create one tenant: ask for its values on a terminal (or take them
    /// from flags), provision it and add it to the spec file.
    Create(CreateArgs),
}

/// Where the spec comes from.
#[derive(Debug, Args, Clone)]
pub struct SpecArgs {
    /// Spec file (TOML or YAML, by extension); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Format of the spec, needed with `-f -`.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecArgs,

    /// Print the plan as a versioned JSON document.
    #[arg(long)]
    pub json: bool,

    /// Save the plan to this file, for `tenantctl apply PLAN`.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there are no changes, 1 on error, 2 when changes are pending.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Plan only this tenant (repeatable).
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,

    /// Also compare each database tenant's own migration table
    /// (tenantctl.migrations) with the registry. It opens one connection
    /// per database tenant. Without it, plan trusts the registry.
    #[arg(long)]
    pub refresh: bool,

    /// Never prompt for missing values; report them as errors.
    #[arg(long)]
    pub no_input: bool,

    #[command(flatten)]
    pub removal: RemovalArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; applies exactly that plan.
    #[arg(value_name = "PLAN", conflicts_with_all = ["tenants", "refresh"])]
    pub plan: Option<PathBuf>,

    #[command(flatten)]
    pub spec: SpecArgs,

    /// Apply without asking for confirmation (required without a terminal).
    #[arg(long)]
    pub auto_approve: bool,

    /// Number of tenants provisioned at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,

    /// Apply only this tenant (repeatable).
    #[arg(long = "tenant", value_name = "ID")]
    pub tenants: Vec<String>,

    /// Plan as `plan --refresh` does: compare each database tenant's own
    /// migration table with the registry. A saved plan keeps the setting
    /// it was made with.
    #[arg(long)]
    pub refresh: bool,

    /// Never prompt for missing values; report them as errors.
    #[arg(long)]
    pub no_input: bool,

    /// How long to wait for another apply's lock, such as 60s or 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,

    #[command(flatten)]
    pub removal: RemovalArgs,
}

/// Options for the tenants the spec no longer declares.
#[derive(Debug, Args, Clone, Copy)]
pub struct RemovalArgs {
    /// Remove registered tenants the spec no longer declares: their
    /// database or schema, roles, Redis keys and ACL user, rows in shared
    /// tables and registry record. Without it they are kept.
    #[arg(long)]
    pub prune: bool,

    /// Drop objects that existed before tenantctl adopted them, instead of
    /// leaving them in place.
    #[arg(long)]
    pub drop_adopted: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Tenants to migrate.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub ids: Vec<String>,

    /// Migrate every registered tenant.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub spec: SpecArgs,

    /// Migration folder to use for every tenant instead of the spec's; the
    /// spec is then optional.
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,

    /// Number of tenants migrated at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,

    /// List what would run for each tenant without running it.
    #[arg(long)]
    pub dry_run: bool,

    /// Start no further tenant after the first failure.
    #[arg(long)]
    pub fail_fast: bool,

    /// Run pending migrations even when an applied migration was changed or
    /// removed from the folder since.
    #[arg(long)]
    pub allow_changed: bool,

    /// How long to wait for another apply's or migrate's lock, such as 60s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Only tenants of this isolation type: database, schema, table or cache.
    #[arg(long, value_name = "TYPE")]
    pub isolation: Option<String>,

    /// Only tenants with this status: ready, failed or pending.
    #[arg(long)]
    pub status: Option<String>,

    /// Spec file; with it, pending migrations are counted too.
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Tenant id.
    pub id: String,

    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Spec file; with it, pending migrations and drift are shown too.
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct CreateSuperuserArgs {
    /// Tenant id.
    pub id: String,

    /// Role name. Default: asked on a terminal, otherwise `<ID>_admin`.
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,

    /// Environment variable that contains the password. Without it the
    /// password is asked on a terminal.
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,

    /// Spec file, for the admin URLs of other database servers.
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Tenant id.
    pub id: String,

    /// Spec file; with it, the session logs in as the tenant's own role
    /// when the spec gives its password.
    #[command(flatten)]
    pub spec: SpecArgs,

    /// Open the session even when it is not limited to the tenant: a table
    /// tenant without a role of its own gets the admin's login.
    #[arg(long)]
    pub unrestricted: bool,

    /// Arguments passed on to psql or redis-cli, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Tenant id.
    #[arg(
        value_name = "ID",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub id: Option<String>,

    /// Run the command once for every registered tenant, prefixing each
    /// output line with the tenant id.
    #[arg(long)]
    pub all: bool,

    /// Number of tenants the command runs for at once, with --all.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,

    /// Spec file; with it, the command logs in as the tenant's own role
    /// when the spec gives its password.
    #[command(flatten)]
    pub spec: SpecArgs,

    /// Run even when a session is not limited to its tenant: a table tenant
    /// without a role of its own gets the admin's login.
    #[arg(long)]
    pub unrestricted: bool,

    /// The command and its arguments, after `--`. It gets TENANT_ID,
    /// DATABASE_URL, PGPASSWORD, PGOPTIONS, REDIS_URL, REDIS_KEY_PREFIX,
    /// REDIS_USER and REDISCLI_AUTH in its environment.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Tenant id.
    pub id: String,

    /// Destroy without typing the tenant id (required without a terminal).
    #[arg(long)]
    pub auto_approve: bool,

    /// Drop objects that existed before tenantctl adopted them, instead of
    /// leaving them in place.
    #[arg(long)]
    pub drop_adopted: bool,

    /// Spec file, for the admin URLs of other servers and the Redis URL.
    #[command(flatten)]
    pub spec: SpecArgs,

    /// How long to wait for another apply's lock, such as 60s or 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Spec file (TOML or YAML) the new tenant is added to. Without it the
    /// tenant is provisioned and recorded in the registry, and its spec
    /// block is printed.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Leave the spec file as it is; print the new tenant's block instead.
    #[arg(long, requires = "file")]
    pub no_save: bool,

    /// Tenant ID: a lowercase letter, then lowercase letters, digits and `_`.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,

    /// Display name of the tenant.
    #[arg(long)]
    pub name: Option<String>,

    /// Isolation type: database, schema, table or cache.
    #[arg(long, value_name = "TYPE")]
    pub isolation: Option<String>,

    /// Whether to create the database now (yes or no); with no the tenant
    /// stays pending until a later apply.
    #[arg(long, value_name = "yes|no", num_args = 0..=1, require_equals = true,
          default_missing_value = "yes", value_parser = parse_yes_no)]
    pub create_database: Option<bool>,

    /// Database name of a database tenant.
    #[arg(long, value_name = "NAME")]
    pub db_name: Option<String>,

    /// Login role that owns the tenant's database.
    #[arg(long, value_name = "ROLE")]
    pub db_user: Option<String>,

    /// Environment variable that contains the database password; the spec
    /// refers to it by name. Without a terminal the password is read from
    /// it. Default: <ID>_DB_PASSWORD in capitals.
    #[arg(long, value_name = "VAR")]
    pub db_password_env: Option<String>,

    /// Host of the tenant's database server.
    #[arg(long, value_name = "HOST")]
    pub db_host: Option<String>,

    /// Port of the tenant's database server (default: 5432).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub db_port: Option<u16>,

    /// Schema name of a schema tenant (default: the tenant ID).
    #[arg(long, value_name = "NAME")]
    pub schema_name: Option<String>,

    /// Redis key prefix of a cache tenant (default: `<ID>:`).
    #[arg(long, value_name = "PREFIX")]
    pub cache_prefix: Option<String>,

    /// Whether a cache tenant gets a Redis ACL user limited to its prefix
    /// (yes or no). The user is named like the tenant and needs a password.
    #[arg(long, value_name = "yes|no", num_args = 0..=1, require_equals = true,
          default_missing_value = "yes", value_parser = parse_yes_no)]
    pub acl_user: Option<bool>,

    /// Environment variable that contains the Redis ACL user's password;
    /// the spec refers to it by name. Without a terminal the password is
    /// read from it. Default: <ID>_REDIS_PASSWORD in capitals.
    #[arg(long, value_name = "VAR")]
    pub cache_password_env: Option<String>,

    /// Whether to run the tenant's migrations now (yes or no); with no they
    /// stay pending until a later apply.
    #[arg(long, value_name = "yes|no", num_args = 0..=1, require_equals = true,
          default_missing_value = "yes", value_parser = parse_yes_no)]
    pub migrate: Option<bool>,

    /// Take every shown default and answer yes to every question that no
    /// flag answers.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Never prompt; a value that no flag gives is an error.
    #[arg(long)]
    pub no_input: bool,

    /// How long to wait for a running apply's lock, such as 60s or 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
}

fn parse_yes_no(text: &str) -> Result<bool, String> {
    crate::prompt::parse_yes_no(text)
}
