//! `tenantctl migrate`: runs the pending migrations of registered tenants.
//!
//! The pending migrations come from bulk reads of the registry. A tenant
//! whose recorded migrations match its folder's digest is up to date without
//! any further query or connection. So a run with nothing to do costs a fixed
//! number of queries, whatever the number of tenants.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use diesel::Connection;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apply::TenantError;
use crate::apply::lock::ApplyLock;
use crate::apply::migrate::{self, RecordIn};
use crate::apply::{superuser, table};
use crate::cli::{GlobalArgs, MigrateArgs};
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationSet};
use crate::output::{Printer, Progress, plural};
use crate::plan::pending::{Comparison, Drift, compare, compare_recorded};
use crate::spec::desired::{Desired, TablesTarget};
use crate::spec::model::Isolation;
use crate::state::db::{self, PgPool};
use crate::state::location::Location;
use crate::state::registry::{self, RegistryState, STATUS_FAILED, STATUS_READY, TenantRecord};
use crate::state::{Servers, catalog};

/// Prefix of the registry's `last_error` when migrate failed a tenant, so a
/// later successful run may mark the tenant ready again.
const ERROR_PREFIX: &str = "migrate: ";

/// The work migrate does for one tenant.
#[derive(Debug)]
enum Work<'a> {
    UpToDate,
    Skip(String),
    /// Applied migrations no longer match the folder.
    Refuse(Vec<Drift>),
    /// A failure because the tenant's schema or database does not exist, with
    /// the text that names it. Nothing runs and nothing is recorded.
    Missing(String),
    Run {
        pending: Vec<&'a Migration>,
        /// Drift that `--allow-changed` lets through, shown as warnings.
        drift: Vec<Drift>,
    },
}

/// One unit of the run: a schema or database tenant, or the shared tables
/// of the table tenants in one schema, migrated once for all of them.
struct Job<'a> {
    /// The tenant id, or the shared tables' description.
    label: String,
    /// The tenants the job migrates: one, or every table tenant of the schema.
    members: Vec<&'a TenantRecord>,
    location: Location,
    work: Work<'a>,
    /// The shared tables, for the job of table tenants.
    shared: Option<SharedTables>,
}

/// The shared tables of one schema and the roles that work on them.
struct SharedTables {
    target: TablesTarget,
    /// (tenant id, role): the table tenants' roles and superusers, which
    /// get their privileges on tables the migrations create.
    roles: Vec<(String, String)>,
}

/// Counts for the closing line.
#[derive(Debug, Default)]
struct Counts {
    migrated: usize,
    up_to_date: usize,
    skipped: usize,
    failed: usize,
}

/// Runs pending migrations of one, several or all registered tenants.
pub fn run(global: &GlobalArgs, args: &MigrateArgs, printer: &Printer) -> Result<i32> {
    let spec = super::load_spec_if_any(&args.spec, args.migrations.is_none())?;
    let desired = spec.as_ref().map(|(_, desired)| desired);
    let folder = args.migrations.as_deref().map(load_folder).transpose()?;
    let control_url = super::control_url(global, desired);
    // A dry run only reads, so it creates no registry.
    let mut control = if args.dry_run {
        super::open_existing_registry(&control_url)?
    } else {
        super::open_control(&control_url)?
    };

    let lock = if args.dry_run {
        None
    } else {
        Some(ApplyLock::acquire(
            db::connect(&control_url)?,
            args.lock_timeout,
            |pid| super::report_lock_wait(printer, pid),
        )?)
    };
    let state = registry::read_state(&mut control)?;
    let records = select(&state, &args.ids, args.all)?;
    let sets = records
        .iter()
        .map(|record| migration_set(record, desired, folder.as_ref()))
        .collect::<Vec<_>>();
    let servers = match desired {
        Some(desired) => Servers::resolve(desired, &control_url)?,
        None => Servers::control_only(&control_url)?,
    };
    let options = JobOptions {
        desired,
        allow_changed: args.allow_changed,
        shared_schema: desired
            .and_then(|desired| desired.tables.as_ref())
            .map_or("public", |tables| tables.schema.as_str()),
    };
    let mut jobs = plan_jobs(&mut control, &state, &records, &sets, options)?;
    check_provisioned(&mut control, &servers, &mut jobs)?;
    drop(control);

    if args.dry_run {
        return Ok(print_dry_run(printer, &jobs));
    }
    let runner = Runner {
        control: db::pool(&control_url, u32::from(args.parallelism))?,
        servers,
        progress: Progress::new(printer, jobs.len()),
        counts: Mutex::new(Counts::default()),
        stop: AtomicBool::new(false),
        fail_fast: args.fail_fast,
    };
    crate::workers::run_all(&jobs, usize::from(args.parallelism), &runner.stop, |job| {
        runner.run(job)
    });
    runner.progress.finish();
    if let Some(lock) = lock {
        lock.release();
    }
    let counts = runner
        .counts
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    let total: usize = jobs.iter().map(|job| job.members.len()).sum();
    let not_started = total - counts.migrated - counts.up_to_date - counts.skipped - counts.failed;
    printer.block(&[summary(&counts, not_started)]);
    if jobs.iter().any(|job| matches!(job.work, Work::Refuse(_))) {
        printer.error("  hint: restore the changed files, or pass --allow-changed to run the pending migrations anyway");
    }
    Ok(if counts.failed > 0 { 1 } else { 0 })
}

fn load_folder(dir: &Path) -> Result<Arc<MigrationSet>> {
    MigrationSet::load(dir).map(Arc::new).map_err(|error| {
        Error::with_hint(
            error.to_string(),
            "check the folder given with --migrations",
        )
    })
}

/// Picks the records of the tenants named, or of all tenants, sorted by id.
fn select<'a>(
    state: &'a RegistryState,
    ids: &[String],
    all: bool,
) -> Result<Vec<&'a TenantRecord>> {
    let mut records: Vec<&TenantRecord> = if all {
        state.tenants.values().collect()
    } else {
        ids.iter()
            .map(|id| super::find_tenant(state, id))
            .collect::<Result<_>>()?
    };
    records.sort_by(|left, right| left.id.cmp(&right.id));
    records.dedup_by(|left, right| left.id == right.id);
    Ok(records)
}

/// Returns the migration folder of a tenant: `--migrations`, or the spec's
/// (for a table tenant, that of the shared tables).
fn migration_set(
    record: &TenantRecord,
    desired: Option<&Desired>,
    folder: Option<&Arc<MigrationSet>>,
) -> Option<Arc<MigrationSet>> {
    if let Some(folder) = folder {
        return Some(folder.clone());
    }
    let desired = desired?;
    if record.isolation == Isolation::Table.as_str() {
        return desired.tables.as_ref()?.migrations.clone();
    }
    desired.tenant(&record.id)?.migrations.clone()
}

/// Works out every job from the registry: one query for the tenants whose
/// recorded digest differs from their folder's, none for the others, and
/// one per shared schema of table tenants.
fn plan_jobs<'a>(
    control: &mut diesel::PgConnection,
    state: &RegistryState,
    records: &[&'a TenantRecord],
    sets: &'a [Option<Arc<MigrationSet>>],
    options: JobOptions<'_>,
) -> Result<Vec<Job<'a>>> {
    let applied = crate::state::read_stale_applied(
        control,
        state,
        records
            .iter()
            .zip(sets)
            .filter_map(|(record, set)| Some((record.id.as_str(), set.as_deref()?))),
    )?;
    let mut jobs = Vec::new();
    let mut shared: BTreeMap<String, SharedGroup<'a>> = BTreeMap::new();
    for (record, set) in records.iter().zip(sets) {
        let location = Location::of(record);
        let work = match (location.isolation, set) {
            (Some(Isolation::Cache), _) => continue,
            (Some(Isolation::Table), set) => {
                let schema = location
                    .schema
                    .clone()
                    .unwrap_or_else(|| options.shared_schema.to_string());
                let group = shared.entry(schema).or_default();
                group.members.push(record);
                group.set = group.set.or(set.as_deref());
                continue;
            }
            (_, None) => Work::Skip(
                "no migration folder: the tenant is not in the spec; pass --migrations DIR".into(),
            ),
            (_, Some(set)) => tenant_work(
                record,
                state,
                applied.get(&record.id),
                set,
                options.allow_changed,
            ),
        };
        jobs.push(Job {
            label: record.id.clone(),
            members: vec![record],
            location,
            work,
            shared: None,
        });
    }
    for (schema, group) in shared {
        jobs.push(shared_job(control, state, schema, group, options)?);
    }
    Ok(jobs)
}

/// Inputs of `plan_jobs` besides the registry.
#[derive(Clone, Copy)]
struct JobOptions<'a> {
    desired: Option<&'a Desired>,
    allow_changed: bool,
    /// Schema of the shared tables for table tenants whose record names none.
    shared_schema: &'a str,
}

/// The table tenants of one shared schema and their migration folder.
#[derive(Default)]
struct SharedGroup<'a> {
    members: Vec<&'a TenantRecord>,
    set: Option<&'a MigrationSet>,
}

fn shared_job<'a>(
    control: &mut diesel::PgConnection,
    state: &RegistryState,
    schema: String,
    group: SharedGroup<'a>,
    options: JobOptions<'_>,
) -> Result<Job<'a>> {
    let work = match group.set {
        None => Work::Skip(
            "no migration folder: the spec has no [tables] migrations; pass --migrations DIR"
                .into(),
        ),
        Some(set) => {
            let applied = registry::shared_applied(control, &schema)?;
            comparison_work(compare(set, &applied), options.allow_changed)
        }
    };
    let mut roles = Vec::new();
    for record in &group.members {
        let superusers = state.superusers.get(&record.id).into_iter().flatten();
        let own = Location::of(record).role;
        for role in own.into_iter().chain(superusers.cloned()) {
            roles.push((record.id.clone(), role));
        }
    }
    Ok(Job {
        label: format!(
            "shared tables in {schema} ({})",
            plural(group.members.len(), "table tenant")
        ),
        members: group.members,
        location: Location {
            isolation: Some(Isolation::Table),
            schema: Some(schema.clone()),
            ..Location::default()
        },
        work,
        shared: Some(SharedTables {
            target: TablesTarget::of_spec_or(options.desired, Some(&schema)),
            roles,
        }),
    })
}

/// Checks that the schema or database of each tenant with migrations to
/// run, or with status pending, exists. A pending tenant without it is
/// skipped, because apply left it for later (such as a database with
/// `create = false`). Any other tenant without it fails with nothing run or
/// recorded: a migration must not run outside the tenant's schema, nor be
/// recorded as applied where no schema contains it. Sends one query for the
/// schemas and one per server for the databases, and none when no tenant
/// needs checking, so a run with nothing to do reads no catalog.
fn check_provisioned(
    control: &mut diesel::PgConnection,
    servers: &Servers,
    jobs: &mut [Job<'_>],
) -> Result<()> {
    let checked: Vec<&mut Job<'_>> = jobs.iter_mut().filter(|job| needs_check(job)).collect();
    let schemas: Vec<String> = checked
        .iter()
        .filter(|job| job.location.isolation == Some(Isolation::Schema))
        .filter_map(|job| job.location.schema.clone())
        .collect();
    let schemas = catalog::existing_schemas(control, &schemas)?;
    let mut databases: HashMap<String, Option<HashSet<String>>> = HashMap::new();
    for job in checked {
        let location = &job.location;
        let missing = match (location.isolation, &location.server, &location.database) {
            (Some(Isolation::Schema), _, _) => match &location.schema {
                Some(schema) if schemas.contains(schema) => None,
                Some(schema) => Some(format!("schema \"{schema}\" does not exist")),
                None => Some("the registry record names no schema".to_string()),
            },
            (Some(Isolation::Database), Some(server), Some(database)) => {
                let names = databases
                    .entry(server.clone())
                    .or_insert_with(|| database_names(servers, server));
                names
                    .as_ref()
                    .is_some_and(|names| !names.contains(database))
                    .then(|| format!("database \"{database}\" on {server} does not exist"))
            }
            _ => None,
        };
        let Some(missing) = missing else {
            continue;
        };
        job.work = if job.members[0].status == registry::STATUS_PENDING {
            Work::Skip(
                "its schema or database does not exist yet (status pending); run tenantctl apply"
                    .into(),
            )
        } else {
            Work::Missing(format!("{missing} yet; run tenantctl apply to create it"))
        };
    }
    Ok(())
}

/// Returns whether `check_provisioned` looks at a job: a schema or database
/// tenant with migrations to run, or a pending one.
fn needs_check(job: &Job<'_>) -> bool {
    let own_place = matches!(
        job.location.isolation,
        Some(Isolation::Schema | Isolation::Database)
    );
    let pending = job.members[0].status == registry::STATUS_PENDING;
    let work = match job.work {
        Work::Run { .. } => true,
        Work::UpToDate | Work::Refuse(_) => pending,
        Work::Skip(_) | Work::Missing(_) => false,
    };
    own_place && job.shared.is_none() && work
}

/// Reads the names of the databases on server `key`. A server that cannot
/// be reached gives `None`, so its tenants are not judged here and each
/// fails on its own connection, while the other tenants go on.
fn database_names(servers: &Servers, key: &str) -> Option<HashSet<String>> {
    let names = servers
        .admin_url(key)
        .and_then(|url| db::connect(&url))
        .and_then(|mut connection| catalog::database_names(&mut connection));
    match names {
        Ok(names) => Some(names),
        Err(error) => {
            tracing::debug!(server = %key, error = %error, "cannot read the server's databases");
            None
        }
    }
}

fn tenant_work<'a>(
    record: &TenantRecord,
    state: &RegistryState,
    applied: Option<&Vec<(String, String)>>,
    set: &'a MigrationSet,
    allow_changed: bool,
) -> Work<'a> {
    let comparison = compare_recorded(
        set,
        state.applied.contains_key(&record.id),
        applied.map(Vec::as_slice),
    );
    comparison_work(comparison, allow_changed)
}

fn comparison_work(comparison: Comparison<'_>, allow_changed: bool) -> Work<'_> {
    if !comparison.drift.is_empty() && !allow_changed {
        return Work::Refuse(comparison.drift);
    }
    if comparison.pending.is_empty() {
        return Work::UpToDate;
    }
    Work::Run {
        pending: comparison.pending,
        drift: comparison.drift,
    }
}

fn print_dry_run(printer: &Printer, jobs: &[Job<'_>]) -> i32 {
    let mut counts = Counts::default();
    for job in jobs {
        let id = &job.label;
        let members = job.members.len();
        match &job.work {
            Work::UpToDate => counts.up_to_date += members,
            Work::Skip(reason) => {
                counts.skipped += members;
                printer.block(&[format!("{id}: skipped: {reason}")]);
            }
            Work::Refuse(drift) => {
                counts.failed += members;
                for item in drift {
                    printer.error(&format!("{id}: refused: {item}"));
                }
            }
            Work::Missing(reason) => {
                counts.failed += members;
                printer.error(&format!("{id}: failed: {reason}"));
            }
            Work::Run { pending, drift } => {
                counts.migrated += members;
                for item in drift {
                    printer.warn(&format!("{id}: {item}"));
                }
                let mut lines = vec![format!(
                    "{id}: {} to apply",
                    plural(pending.len(), "migration")
                )];
                lines.extend(pending.iter().map(|m| format!("  + {}", m.name)));
                printer.block(&lines);
            }
        }
    }
    printer.block(&[format!(
        "Dry run: {} to migrate, {} up to date{}, {} failed.",
        plural(counts.migrated, "tenant"),
        counts.up_to_date,
        skipped_text(counts.skipped),
        counts.failed
    )]);
    if counts.failed > 0 { 1 } else { 0 }
}

/// Everything the workers share.
struct Runner<'a> {
    control: PgPool,
    servers: Servers,
    progress: Progress<'a>,
    counts: Mutex<Counts>,
    stop: AtomicBool,
    fail_fast: bool,
}

impl Runner<'_> {
    fn run(&self, job: &Job<'_>) {
        let id = &job.label;
        let members = job.members.len();
        match &job.work {
            Work::UpToDate => self.count(|counts| counts.up_to_date += members),
            Work::Skip(reason) => {
                self.progress.block(&[format!("{id}: skipped: {reason}")]);
                self.count(|counts| counts.skipped += members);
            }
            Work::Refuse(drift) => {
                for item in drift {
                    self.progress.error(&format!("{id}: refused: {item}"));
                }
                self.fail(members);
            }
            Work::Missing(reason) => {
                self.progress.error(&format!("{id}: failed: {reason}"));
                self.fail(members);
            }
            Work::Run { pending, drift } => {
                for item in drift {
                    self.progress.error(&format!("Warning: {id}: {item}"));
                }
                self.progress.start(id);
                match self.migrate(job, pending) {
                    Ok(count) => {
                        self.progress
                            .block(&[format!("{id}: {} applied", plural(count, "migration"))]);
                        self.count(|counts| counts.migrated += members);
                    }
                    Err(error) => {
                        self.record_failure(&job.members, &error);
                        self.progress.error(&format!("{id}: failed: {error}"));
                        self.fail(members);
                    }
                }
            }
        }
        self.progress.done();
    }

    fn count(&self, update: impl FnOnce(&mut Counts)) {
        update(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn fail(&self, members: usize) {
        self.count(|counts| counts.failed += members);
        if self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Runs one job's pending migrations and records them; returns how many
    /// are now recorded.
    fn migrate(&self, job: &Job<'_>, pending: &[&Migration]) -> Result<usize, TenantError> {
        let mut control =
            db::checkout(&self.control).map_err(|error| TenantError::new("connect", error))?;
        let (applied, logged) = self.run_pending(&mut control, job, pending)?;
        let event = migrate::migrated_event(applied);
        for record in &job.members {
            let recovered = record.status == STATUS_FAILED
                && record
                    .last_error
                    .as_deref()
                    .is_some_and(|error| error.starts_with(ERROR_PREFIX));
            if !logged {
                registry::log_event(&mut control, &record.id, &event, None)
                    .map_err(|error| TenantError::new("record in registry", error))?;
            }
            if recovered {
                registry::set_status(&mut control, &record.id, STATUS_READY, None)
                    .map_err(|error| TenantError::new("record in registry", error))?;
            }
        }
        Ok(applied)
    }

    /// Runs the migrations in the schema or database of the job's location.
    /// Returns how many are now recorded, and whether their event was logged
    /// with them.
    fn run_pending(
        &self,
        control: &mut diesel::PgConnection,
        job: &Job<'_>,
        pending: &[&Migration],
    ) -> Result<(usize, bool), TenantError> {
        let location = &job.location;
        let missing =
            |what: &str| TenantError::new("registry", format!("the record has no {what}"));
        let schema = || location.schema.as_deref().ok_or_else(|| missing("schema"));
        let applied = match location.isolation {
            Some(Isolation::Schema) => {
                // The record and the event commit with the migrations.
                let record_in = RecordIn::Migrated(&job.label);
                let role = location.role.as_deref();
                migrate::run_in_schema(control, record_in, schema()?, role, pending)?
            }
            Some(Isolation::Table) => {
                let shared = job
                    .shared
                    .as_ref()
                    .ok_or_else(|| missing("shared schema"))?;
                return Ok((run_shared(control, shared, pending)?, false));
            }
            Some(Isolation::Database) => {
                let database = location
                    .database
                    .as_deref()
                    .ok_or_else(|| missing("database"))?;
                let owner = location.owner.as_deref().ok_or_else(|| missing("owner"))?;
                let server = location
                    .server
                    .as_deref()
                    .ok_or_else(|| missing("server"))?;
                let url = self
                    .servers
                    .database_url(server, database)
                    .map_err(|error| TenantError::new("connect", error))?;
                let applied = migrate::run_in_database(&url, owner, pending)?;
                let records: Vec<(&str, &str)> = applied
                    .iter()
                    .map(|(version, checksum)| (version.as_str(), checksum.as_str()))
                    .collect();
                let event = migrate::migrated_event(applied.len());
                registry::record_migrations_logged(control, &job.label, &records, &event)
                    .map_err(|error| TenantError::new("record migrations", error))?;
                applied
            }
            _ => {
                let reason = "no migrations for this isolation type";
                return Err(TenantError::new("migrate", reason));
            }
        };
        Ok((applied.len(), true))
    }

    fn record_failure(&self, members: &[&TenantRecord], error: &TenantError) {
        // The prefix marks the status as a failure of migrate. The event
        // needs no prefix because its action is already "migrate".
        let message = format!("{ERROR_PREFIX}{error}");
        let detail = error.to_string();
        let result = db::checkout(&self.control)
            .map_err(|error| error.to_string())
            .and_then(|mut connection| {
                members.iter().try_for_each(|record| {
                    registry::set_status(&mut connection, &record.id, STATUS_FAILED, Some(&message))
                        .and_then(|_| {
                            registry::log_event(
                                &mut connection,
                                &record.id,
                                "migrate",
                                Some(&detail),
                            )
                        })
                        .map_err(|error| error.to_string())
                })
            });
        if let Err(problem) = result {
            self.progress.error(&format!(
                "Error: cannot record the failure of migrate in the registry: {problem}"
            ));
        }
    }
}

/// Runs the shared tables' migrations, then secures the tables they made
/// with row-level security and grants them to the tenants' roles, in one
/// transaction unless a migration cannot run in one.
fn run_shared(
    control: &mut diesel::PgConnection,
    shared: &SharedTables,
    pending: &[&Migration],
) -> Result<usize, TenantError> {
    let target = &shared.target;
    let steps = |connection: &mut diesel::PgConnection| -> Result<usize, TenantError> {
        let record_in = RecordIn::Shared(&target.schema);
        let applied = migrate::run_in_schema(connection, record_in, &target.schema, None, pending)?;
        table::secure_all_tables(connection, target)?;
        for (id, role) in &shared.roles {
            if superuser::role_exists(connection, role)? {
                table::grant_table_role(connection, target, id, role)?;
            }
        }
        Ok(applied.len())
    };
    if pending.iter().all(|migration| migration.run_in_transaction) {
        control.transaction(steps)
    } else {
        steps(control)
    }
}

fn summary(counts: &Counts, not_started: usize) -> String {
    let not_started = if not_started > 0 {
        format!(", {not_started} not started")
    } else {
        String::new()
    };
    format!(
        "Migrated {}, {} up to date{}, {} failed{not_started}.",
        plural(counts.migrated, "tenant"),
        counts.up_to_date,
        skipped_text(counts.skipped),
        counts.failed
    )
}

fn skipped_text(skipped: usize) -> String {
    if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    }
}
