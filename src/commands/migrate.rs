//! `tenantctl migrate`: runs the pending migrations of registered tenants.
//!
//! The pending migrations come from bulk reads of the registry. A tenant
//! whose recorded migrations match its folder's digest is up to date without
//! any further query or connection. So a run with nothing to do costs a fixed
//! number of queries, whatever the number of tenants.

use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::apply::TenantError;
use crate::apply::lock::ApplyLock;
use crate::apply::migrate;
use crate::cli::{GlobalArgs, MigrateArgs};
use crate::error::{Error, Result};
use crate::migrations::{Migration, MigrationSet};
use crate::output::{Printer, Progress, plural};
use crate::plan::pending::{Drift, compare_recorded};
use crate::spec::desired::Desired;
use crate::spec::model::Isolation;
use crate::state::Servers;
use crate::state::db::{self, PgPool};
use crate::state::location::Location;
use crate::state::registry::{self, RegistryState, STATUS_FAILED, STATUS_READY, TenantRecord};

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
    Run {
        pending: Vec<&'a Migration>,
        /// Drift that `--allow-changed` lets through, shown as warnings.
        drift: Vec<Drift>,
    },
}

/// One tenant's share of the run.
struct Job<'a> {
    record: &'a TenantRecord,
    location: Location,
    work: Work<'a>,
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
    let mut control = super::open_control(&control_url)?;

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
    let jobs = plan_jobs(&mut control, &state, &records, &sets, args.allow_changed)?;
    drop(control);

    if args.dry_run {
        return Ok(print_dry_run(printer, &jobs));
    }
    let servers = match desired {
        Some(desired) => Servers::resolve(desired, &control_url)?,
        None => Servers::control_only(&control_url)?,
    };
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
    let not_started =
        jobs.len() - counts.migrated - counts.up_to_date - counts.skipped - counts.failed;
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

/// Returns the migration folder of a tenant: `--migrations`, or the spec's.
fn migration_set(
    record: &TenantRecord,
    desired: Option<&Desired>,
    folder: Option<&Arc<MigrationSet>>,
) -> Option<Arc<MigrationSet>> {
    if let Some(folder) = folder {
        return Some(folder.clone());
    }
    desired?.tenant(&record.id)?.migrations.clone()
}

/// Works out every tenant's work from the registry: one query for the
/// tenants whose recorded digest differs from their folder's, none for the
/// others.
fn plan_jobs<'a>(
    control: &mut diesel::PgConnection,
    state: &RegistryState,
    records: &[&'a TenantRecord],
    sets: &'a [Option<Arc<MigrationSet>>],
    allow_changed: bool,
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
    for (record, set) in records.iter().zip(sets) {
        let location = Location::of(record);
        let work = match (location.isolation, set) {
            (Some(Isolation::Cache), _) => continue,
            (_, None) => Work::Skip(
                "no migration folder: the tenant is not in the spec; pass --migrations DIR".into(),
            ),
            (Some(Isolation::Schema | Isolation::Database), Some(set)) => {
                tenant_work(record, state, applied.get(&record.id), set, allow_changed)
            }
            (other, Some(_)) => Work::Skip(format!(
                "{} tenants are not migrated by this build",
                other.map_or("unknown", Isolation::as_str)
            )),
        };
        jobs.push(Job {
            record,
            location,
            work,
        });
    }
    Ok(jobs)
}

fn tenant_work<'a>(
    record: &TenantRecord,
    state: &RegistryState,
    applied: Option<&Vec<(String, String)>>,
    set: &'a MigrationSet,
    allow_changed: bool,
) -> Work<'a> {
    if record.status == registry::STATUS_PENDING {
        return Work::Skip("not provisioned yet (status pending); run tenantctl apply".into());
    }
    let comparison = compare_recorded(
        set,
        state.applied.contains_key(&record.id),
        applied.map(Vec::as_slice),
    );
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
        let id = &job.record.id;
        match &job.work {
            Work::UpToDate => counts.up_to_date += 1,
            Work::Skip(reason) => {
                counts.skipped += 1;
                printer.block(&[format!("{id}: skipped: {reason}")]);
            }
            Work::Refuse(drift) => {
                counts.failed += 1;
                for item in drift {
                    printer.error(&format!("{id}: refused: {item}"));
                }
            }
            Work::Run { pending, drift } => {
                counts.migrated += 1;
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
        let id = &job.record.id;
        match &job.work {
            Work::UpToDate => self.count(|counts| counts.up_to_date += 1),
            Work::Skip(reason) => {
                self.progress.block(&[format!("{id}: skipped: {reason}")]);
                self.count(|counts| counts.skipped += 1);
            }
            Work::Refuse(drift) => {
                for item in drift {
                    self.progress.error(&format!("{id}: refused: {item}"));
                }
                self.fail();
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
                        self.count(|counts| counts.migrated += 1);
                    }
                    Err(error) => {
                        self.record_failure(job.record, &error);
                        self.progress.error(&format!("{id}: failed: {error}"));
                        self.fail();
                    }
                }
            }
        }
        self.progress.done();
    }

    fn count(&self, update: impl FnOnce(&mut Counts)) {
        update(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn fail(&self) {
        self.count(|counts| counts.failed += 1);
        if self.fail_fast {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Runs one tenant's pending migrations and records them; returns how
    /// many are now recorded.
    fn migrate(&self, job: &Job<'_>, pending: &[&Migration]) -> Result<usize, TenantError> {
        let id = &job.record.id;
        let location = &job.location;
        let mut control =
            db::checkout(&self.control).map_err(|error| TenantError::new("connect", error))?;
        let missing =
            |what: &str| TenantError::new("registry", format!("the record has no {what}"));
        let applied = match location.isolation {
            Some(Isolation::Schema) => {
                let schema = location
                    .schema
                    .as_deref()
                    .ok_or_else(|| missing("schema"))?;
                migrate::run_in_schema(&mut control, id, schema, location.role.as_deref(), pending)?
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
                migrate::record_in_registry(&mut control, id, &applied)?;
                applied
            }
            _ => {
                return Err(TenantError::new(
                    "migrate",
                    "no migrations for this isolation type",
                ));
            }
        };
        let event = format!("migrate: {} applied", plural(applied.len(), "migration"));
        let recovered = job.record.status == STATUS_FAILED
            && job
                .record
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(ERROR_PREFIX));
        registry::log_event(&mut control, id, &event, None)
            .and_then(|_| match recovered {
                true => registry::set_status(&mut control, id, STATUS_READY, None),
                false => Ok(()),
            })
            .map_err(|error| TenantError::new("record in registry", error))?;
        Ok(applied.len())
    }

    fn record_failure(&self, record: &TenantRecord, error: &TenantError) {
        let message = format!("{ERROR_PREFIX}{error}");
        let result = db::checkout(&self.control)
            .map_err(|error| error.to_string())
            .and_then(|mut connection| {
                registry::set_status(&mut connection, &record.id, STATUS_FAILED, Some(&message))
                    .and_then(|_| {
                        registry::log_event(&mut connection, &record.id, "migrate", Some(&message))
                    })
                    .map_err(|error| error.to_string())
            });
        if let Err(problem) = result {
            self.progress.error(&format!(
                "Error: cannot record the failure of tenant '{}' in the registry: {problem}",
                record.id
            ));
        }
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
