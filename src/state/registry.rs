//! The registry: schema `tenantctl` in the control database, created and
//! upgraded by the embedded diesel migrations in `migrations/`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key (both halves) held while the registry is created or
/// upgraded: "tenantctl" as bytes, folded into a 64-bit number.
const BOOTSTRAP_LOCK_KEY: i64 = 0x7465_6e61_6e74_0001;

/// Advisory lock key held by `apply` for the whole run.
pub const APPLY_LOCK_KEY: i64 = 0x7465_6e61_6e74_0002;

pub mod schema {
    diesel::table! {
        tenantctl.tenants (id) {
            id -> Text,
            name -> Text,
            isolation -> Text,
            config -> Jsonb,
            status -> Text,
            deletion_protection -> Bool,
            adopted -> Array<Text>,
            last_error -> Nullable<Text>,
            created_at -> Timestamptz,
            updated_at -> Timestamptz,
            applied_count -> Integer,
            applied_digest -> Nullable<Text>,
        }
    }

    diesel::table! {
        tenantctl.tenant_migrations (tenant_id, version) {
            tenant_id -> Text,
            version -> Text,
            checksum -> Text,
            applied_at -> Timestamptz,
        }
    }

    diesel::table! {
        tenantctl.shared_migrations (schema_name, version) {
            schema_name -> Text,
            version -> Text,
            checksum -> Text,
            applied_at -> Timestamptz,
        }
    }

    diesel::table! {
        tenantctl.events (id) {
            id -> BigInt,
            tenant_id -> Text,
            action -> Text,
            outcome -> Text,
            error -> Nullable<Text>,
            at -> Timestamptz,
        }
    }

    diesel::table! {
        tenantctl.superusers (tenant_id, role_name) {
            tenant_id -> Text,
            role_name -> Text,
            created_at -> Timestamptz,
        }
    }

    diesel::table! {
        tenantctl.templates (server, name) {
            server -> Text,
            name -> Text,
            digest -> Text,
            ready -> Bool,
            created_at -> Timestamptz,
        }
    }

    diesel::joinable!(tenant_migrations -> tenants (tenant_id));
    diesel::allow_tables_to_appear_in_same_query!(tenants, tenant_migrations);
}

use schema::{events, shared_migrations, superusers, templates, tenant_migrations, tenants};

/// Tenant status as the registry stores it.
pub const STATUS_READY: &str = "ready";
pub const STATUS_FAILED: &str = "failed";
pub const STATUS_PENDING: &str = "pending";

/// One registry row.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = tenants)]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub isolation: String,
    pub config: serde_json::Value,
    pub status: String,
    pub deletion_protection: bool,
    pub adopted: Vec<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantRecord {
    /// Returns a text value of the record's config, such as `acl_user`.
    pub fn config_text(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(|value| value.as_str())
    }
}

/// A registry row to insert or update. `last_error: None` clears the
/// column, so a tenant that succeeds after a failure drops its old error.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = tenants, treat_none_as_null = true)]
pub struct TenantUpsert<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub isolation: &'a str,
    pub config: &'a serde_json::Value,
    pub status: &'a str,
    pub deletion_protection: bool,
    pub adopted: &'a [String],
    pub last_error: Option<&'a str>,
}

/// One event of the log.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = events)]
pub struct EventRecord {
    pub id: i64,
    pub tenant_id: String,
    pub action: String,
    pub outcome: String,
    pub error: Option<String>,
    pub at: DateTime<Utc>,
}

/// Summary of the migrations recorded for one tenant.
#[derive(Debug, Clone)]
pub struct AppliedSummary {
    pub tenant_id: String,
    pub count: i64,
    /// MD5 of every `version:checksum`, one per line, in version order.
    pub digest: String,
}

/// The registry contents that plan needs, read in a fixed number of
/// queries.
#[derive(Debug, Default)]
pub struct RegistryState {
    pub tenants: HashMap<String, TenantRecord>,
    pub applied: HashMap<String, AppliedSummary>,
    /// Roles made by create-superuser, by tenant id.
    pub superusers: HashMap<String, Vec<String>>,
}

/// Creates or upgrades the registry. An advisory lock keeps two processes
/// from running the migrations at once.
pub fn bootstrap(connection: &mut PgConnection) -> Result<()> {
    let context = "cannot create the registry (schema tenantctl) in the control database";
    diesel::sql_query("SET client_min_messages = warning")
        .execute(connection)
        .map_err(Error::query(context))?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({BOOTSTRAP_LOCK_KEY})"))
        .execute(connection)
        .map_err(Error::query(context))?;
    let result = run_registry_migrations(connection);
    let unlock = diesel::sql_query(format!("SELECT pg_advisory_unlock({BOOTSTRAP_LOCK_KEY})"))
        .execute(connection)
        .map_err(Error::query(context));
    result?;
    unlock?;
    Ok(())
}

/// Returns whether the connected database has the registry schema
/// `tenantctl`, whatever its version.
pub fn exists(connection: &mut PgConnection) -> Result<bool> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tenantctl')",
    ))
    .get_result(connection)
    .map_err(Error::query("cannot read pg_namespace"))
}

/// Tells whether the control database contains a registry: the schema with
/// its record of applied registry migrations. An empty `tenantctl` schema
/// made by someone else is no registry.
pub fn has_registry(connection: &mut PgConnection) -> Result<bool> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "to_regclass('tenantctl.__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(connection)
    .map_err(Error::query(
        "cannot look for the registry table tenantctl.__diesel_schema_migrations",
    ))
}

fn run_registry_migrations(connection: &mut PgConnection) -> Result<()> {
    let context = "cannot create the registry (schema tenantctl) in the control database";
    if !exists(connection)? {
        diesel::sql_query("CREATE SCHEMA tenantctl")
            .execute(connection)
            .map_err(Error::query(context))?;
    }
    // diesel keeps its record of applied migrations in the first schema of
    // search_path, so the registry's record lands in tenantctl, not public.
    diesel::sql_query("SET search_path TO tenantctl")
        .execute(connection)
        .map_err(Error::query(context))?;
    let outcome = connection.run_pending_migrations(MIGRATIONS).map(|_| ());
    diesel::sql_query("RESET search_path")
        .execute(connection)
        .map_err(Error::query(context))?;
    outcome.map_err(|error| {
        Error::with_hint(
            format!("{context}\n  caused by: {error}"),
            "the control database role needs CREATE on the database",
        )
    })
}

/// Reads all tenants and a summary of their applied migrations, in one
/// query: triggers on `tenant_migrations` keep the summary in each tenant's
/// row.
pub fn read_state(connection: &mut PgConnection) -> Result<RegistryState> {
    let rows: Vec<(TenantRecord, i32, Option<String>)> = tenants::table
        .select((
            TenantRecord::as_select(),
            tenants::applied_count,
            tenants::applied_digest,
        ))
        .load(connection)
        .map_err(Error::query("cannot read the registry"))?;
    let superuser_rows: Vec<(String, String)> = superusers::table
        .select((superusers::tenant_id, superusers::role_name))
        .order((superusers::tenant_id, superusers::role_name))
        .load(connection)
        .map_err(Error::query("cannot read the registry's superusers"))?;
    let mut state = RegistryState::default();
    for (tenant, role) in superuser_rows {
        state.superusers.entry(tenant).or_default().push(role);
    }
    for (record, count, digest) in rows {
        if let Some(digest) = digest.filter(|_| count > 0) {
            let summary = AppliedSummary {
                tenant_id: record.id.clone(),
                count: i64::from(count),
                digest,
            };
            state.applied.insert(record.id.clone(), summary);
        }
        state.tenants.insert(record.id.clone(), record);
    }
    Ok(state)
}

/// Reads the applied migrations (version, checksum) of the given tenants.
pub fn applied_migrations(
    connection: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, Vec<(String, String)>>> {
    let rows: Vec<(String, String, String)> = tenant_migrations::table
        .filter(tenant_migrations::tenant_id.eq_any(ids))
        .select((
            tenant_migrations::tenant_id,
            tenant_migrations::version,
            tenant_migrations::checksum,
        ))
        .order((tenant_migrations::tenant_id, tenant_migrations::version))
        .load(connection)
        .map_err(Error::query("cannot read the registry's migration records"))?;
    let mut applied: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for (tenant, version, checksum) in rows {
        applied.entry(tenant).or_default().push((version, checksum));
    }
    Ok(applied)
}

/// Reads the applied shared migrations of a table schema.
pub fn shared_applied(
    connection: &mut PgConnection,
    schema_name: &str,
) -> Result<Vec<(String, String)>> {
    shared_migrations::table
        .filter(shared_migrations::schema_name.eq(schema_name))
        .select((shared_migrations::version, shared_migrations::checksum))
        .order(shared_migrations::version)
        .load(connection)
        .map_err(Error::query(
            "cannot read the registry's shared migration records",
        ))
}

/// Inserts a tenant row, or updates it when it exists.
pub fn upsert_tenant(connection: &mut PgConnection, row: &TenantUpsert<'_>) -> QueryResult<()> {
    diesel::insert_into(tenants::table)
        .values(row)
        .on_conflict(tenants::id)
        .do_update()
        .set((row, tenants::updated_at.eq(diesel::dsl::now)))
        .execute(connection)
        .map(|_| ())
}

/// Sets a tenant's status and error text.
pub fn set_status(
    connection: &mut PgConnection,
    id: &str,
    status: &str,
    error: Option<&str>,
) -> QueryResult<()> {
    diesel::update(tenants::table.find(id))
        .set((
            tenants::status.eq(status),
            tenants::last_error.eq(error),
            tenants::updated_at.eq(diesel::dsl::now),
        ))
        .execute(connection)
        .map(|_| ())
}

/// Records applied migrations of a tenant; versions already recorded are kept.
pub fn record_migrations(
    connection: &mut PgConnection,
    id: &str,
    applied: &[(&str, &str)],
) -> QueryResult<()> {
    if applied.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = applied
        .iter()
        .map(|(version, checksum)| {
            (
                tenant_migrations::tenant_id.eq(id),
                tenant_migrations::version.eq(*version),
                tenant_migrations::checksum.eq(*checksum),
            )
        })
        .collect();
    diesel::insert_into(tenant_migrations::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(connection)
        .map(|_| ())
}

/// Records applied migrations of a tenant together with the event that logs
/// them, in one statement: `migrate` then costs one round trip and one
/// commit per tenant for the registry.
pub fn record_migrations_logged(
    connection: &mut PgConnection,
    id: &str,
    applied: &[(&str, &str)],
    event: &str,
) -> QueryResult<()> {
    let (versions, checksums): (Vec<&str>, Vec<&str>) = applied.iter().copied().unzip();
    diesel::sql_query(
        "WITH recorded AS (\
         INSERT INTO tenantctl.tenant_migrations (tenant_id, version, checksum) \
         SELECT $1, version, checksum FROM unnest($2::text[], $3::text[]) AS m (version, checksum) \
         ON CONFLICT DO NOTHING) \
         INSERT INTO tenantctl.events (tenant_id, action, outcome) VALUES ($1, $4, 'ok')",
    )
    .bind::<Text, _>(id)
    .bind::<Array<Text>, _>(versions)
    .bind::<Array<Text>, _>(checksums)
    .bind::<Text, _>(event)
    .execute(connection)
    .map(|_| ())
}

/// Records applied shared migrations of a table schema.
pub fn record_shared_migrations(
    connection: &mut PgConnection,
    schema_name: &str,
    applied: &[(&str, &str)],
) -> QueryResult<()> {
    if applied.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = applied
        .iter()
        .map(|(version, checksum)| {
            (
                shared_migrations::schema_name.eq(schema_name),
                shared_migrations::version.eq(*version),
                shared_migrations::checksum.eq(*checksum),
            )
        })
        .collect();
    diesel::insert_into(shared_migrations::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(connection)
        .map(|_| ())
}

/// Appends one event to the log.
pub fn log_event(
    connection: &mut PgConnection,
    id: &str,
    action: &str,
    error: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(events::table)
        .values((
            events::tenant_id.eq(id),
            events::action.eq(action),
            events::outcome.eq(if error.is_some() { "failed" } else { "ok" }),
            events::error.eq(error),
        ))
        .execute(connection)
        .map(|_| ())
}

/// Appends successful events of one tenant, in order, with one statement.
pub fn log_events(connection: &mut PgConnection, id: &str, actions: &[String]) -> QueryResult<()> {
    if actions.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = actions
        .iter()
        .map(|action| {
            (
                events::tenant_id.eq(id),
                events::action.eq(action),
                events::outcome.eq("ok"),
            )
        })
        .collect();
    diesel::insert_into(events::table)
        .values(rows)
        .execute(connection)
        .map(|_| ())
}

/// Reads the newest events of a tenant, newest first.
pub fn recent_events(
    connection: &mut PgConnection,
    id: &str,
    limit: i64,
) -> Result<Vec<EventRecord>> {
    events::table
        .filter(events::tenant_id.eq(id))
        .order((events::at.desc(), events::id.desc()))
        .limit(limit)
        .select(EventRecord::as_select())
        .load(connection)
        .map_err(Error::query("cannot read the event log"))
}

/// A template database tenantctl made on one server.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = templates)]
pub struct TemplateRecord {
    pub server: String,
    pub name: String,
    pub digest: String,
    pub ready: bool,
}

/// Reads the template databases recorded for a server.
pub fn templates(connection: &mut PgConnection, server: &str) -> QueryResult<Vec<TemplateRecord>> {
    templates::table
        .filter(templates::server.eq(server))
        .select(TemplateRecord::as_select())
        .order(templates::name)
        .load(connection)
}

/// Records that a template database is being made; it is not ready yet.
pub fn start_template(
    connection: &mut PgConnection,
    server: &str,
    name: &str,
    digest: &str,
) -> QueryResult<()> {
    diesel::insert_into(templates::table)
        .values((
            templates::server.eq(server),
            templates::name.eq(name),
            templates::digest.eq(digest),
            templates::ready.eq(false),
        ))
        .on_conflict((templates::server, templates::name))
        .do_update()
        .set((templates::digest.eq(digest), templates::ready.eq(false)))
        .execute(connection)
        .map(|_| ())
}

/// Marks a template database as migrated and ready to copy.
pub fn finish_template(connection: &mut PgConnection, server: &str, name: &str) -> QueryResult<()> {
    diesel::update(templates::table.find((server, name)))
        .set(templates::ready.eq(true))
        .execute(connection)
        .map(|_| ())
}

/// Forgets a template database once it is dropped.
pub fn forget_template(connection: &mut PgConnection, server: &str, name: &str) -> QueryResult<()> {
    diesel::delete(templates::table.find((server, name)))
        .execute(connection)
        .map(|_| ())
}

/// Returns MD5 of `version:checksum` lines, as the registry's
/// `summarize_applied` trigger computes it in SQL.
pub fn applied_digest<'a>(applied: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    use md5::{Digest, Md5};
    let lines: Vec<String> = applied
        .into_iter()
        .map(|(version, checksum)| format!("{version}:{checksum}"))
        .collect();
    hex::encode(Md5::digest(lines.join("\n").as_bytes()))
}

/// One recorded migration of a tenant.
#[derive(Debug, Clone, Queryable, serde::Serialize)]
pub struct AppliedMigration {
    pub version: String,
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
}

/// Reads the recorded migrations of one tenant, in version order.
pub fn tenant_migrations_of(
    connection: &mut PgConnection,
    id: &str,
) -> Result<Vec<AppliedMigration>> {
    tenant_migrations::table
        .filter(tenant_migrations::tenant_id.eq(id))
        .select((
            tenant_migrations::version,
            tenant_migrations::checksum,
            tenant_migrations::applied_at,
        ))
        .order(tenant_migrations::version)
        .load(connection)
        .map_err(Error::query("cannot read the registry's migration records"))
}

/// Returns the tenant a superuser role was made for, if any.
pub fn superuser_tenant(connection: &mut PgConnection, role: &str) -> Result<Option<String>> {
    superusers::table
        .filter(superusers::role_name.eq(role))
        .select(superusers::tenant_id)
        .first(connection)
        .optional()
        .map_err(Error::query("cannot read the registry's superusers"))
}

/// Records a superuser role of a tenant.
pub fn record_superuser(connection: &mut PgConnection, id: &str, role: &str) -> QueryResult<()> {
    diesel::insert_into(superusers::table)
        .values((superusers::tenant_id.eq(id), superusers::role_name.eq(role)))
        .on_conflict_do_nothing()
        .execute(connection)
        .map(|_| ())
}

/// Deletes a tenant's registry row; its migration and superuser records go
/// with it, its events stay.
pub fn delete_tenant(connection: &mut PgConnection, id: &str) -> QueryResult<()> {
    diesel::delete(tenants::table.find(id))
        .execute(connection)
        .map(|_| ())
}
