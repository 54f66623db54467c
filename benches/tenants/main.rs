//! Benchmark of tenantctl against the PostgreSQL floor and, when its script
//! is given, against django-tenants: creating schema tenants, planning with
//! nothing to change, migrating every tenant, and creating database tenants
//! with and without a template. See BENCHMARKS.md for the command and the
//! figures.
//!
//! Contenders are interleaved (floor, tenantctl, floor, tenantctl, ...)
//! and a CHECKPOINT runs before each timed step, because a shared disk
//! drifts by up to 2x within one run. Every ratio is printed with its median.

mod report;
mod server;
mod work;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

use report::{Report, Section, mebibytes, median, per_tenant, ratio, ratios_with_median, seconds};
use server::{Cleanup, Server};
use work::{Migrations, Run};

/// Benchmark of tenantctl against the PostgreSQL floor and django-tenants.
#[derive(Debug, Parser)]
#[command(name = "tenants-bench")]
struct Args {
    /// Schema tenants created and migrated.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,

    /// Tenants of the `plan` measurement.
    #[arg(long, default_value_t = 10_000)]
    plan_tenants: usize,

    /// Database tenants created with and without a template.
    #[arg(long, default_value_t = 50)]
    database_tenants: usize,

    /// Rounds of each interleaved comparison.
    #[arg(long, default_value_t = 2)]
    rounds: usize,

    /// Rounds of the database tenant comparison, which is short and varies
    /// most with the disk.
    #[arg(long, default_value_t = 5)]
    database_rounds: usize,

    /// Migration folder the tenants start with (diesel layout). Default:
    /// the example application's.
    #[arg(long)]
    migrations: Option<PathBuf>,

    /// Folder of the migrations a later deploy brings. Default: the last
    /// migration of --migrations.
    #[arg(long)]
    next: Option<PathBuf>,

    /// Server URL without a database; the user must be a superuser.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    url: String,

    /// Script that measures django-tenants (called with N; prints its
    /// figures). Skipped when not given.
    #[arg(long)]
    anchor: Option<PathBuf>,

    /// Parallelism of the parallel runs. Default: tenantctl's own default.
    #[arg(long)]
    parallelism: Option<u16>,

    /// Phases to run: create, migrate, plan, database, anchor.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "create,migrate,plan,database,anchor"
    )]
    phases: Vec<String>,

    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// A control database of schema tenants made by the create phase, with the
/// floor database made next to it; the migrate phase migrates both.
struct Created {
    floor: String,
    control: String,
    parallelism: Option<u16>,
}

struct Bench {
    args: Args,
    server: Server,
    binary: PathBuf,
    scratch: tempfile::TempDir,
    migrations: Migrations,
    next_number: std::cell::Cell<usize>,
    /// Whether this tenantctl has `migrate`; without it, `apply` brings new
    /// migrations.
    has_migrate: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let scratch =
        tempfile::tempdir().map_err(|error| format!("cannot make a temp dir: {error}"))?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = args
        .migrations
        .clone()
        .unwrap_or_else(|| manifest.join("examples/app/migrations"));
    let migrations = Migrations::prepare(&dir, args.next.as_deref(), scratch.path())?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() % 100_000);
    let server = Server {
        url: args.url.clone(),
        prefix: format!("tb{}x{stamp}_", std::process::id()),
    };
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_tenantctl"));
    let has_migrate = Command::new(&binary)
        .args(["migrate", "--help"])
        .output()
        .is_ok_and(|output| output.status.success());
    let bench = Bench {
        has_migrate,
        binary,
        server,
        scratch,
        migrations,
        next_number: std::cell::Cell::new(0),
        args,
    };
    let _cleanup = Cleanup(&bench.server);
    let mut report = Report::default();
    bench.preamble(&mut report, &dir)?;
    let wants = |phase: &str| bench.args.phases.iter().any(|wanted| wanted == phase);

    // The database phase comes first: it is short and the most sensitive to
    // the disk work that dropping the other phases' databases leaves.
    if wants("database") {
        bench.database_phase(&mut report)?;
    }
    let mut noop_per_tenant = None;
    if wants("create") || wants("migrate") {
        let created = bench.create_phase(&mut report)?;
        if wants("migrate") {
            noop_per_tenant = Some(bench.migrate_phase(&mut report, &created)?);
        }
        for created in created {
            bench.server.drop_database(&created.floor)?;
            bench.server.drop_database(&created.control)?;
        }
    }
    if wants("anchor") {
        bench.anchor_phase(&mut report, noop_per_tenant)?;
    }
    if wants("plan") {
        bench.plan_phase(&mut report)?;
    }
    report.preamble.push(format!(
        "Load average at the end: {}",
        server::load_average()
    ));
    println!("{}", report.to_markdown());
    Ok(())
}

impl Bench {
    fn preamble(&self, report: &mut Report, dir: &Path) -> Result<(), String> {
        let (base, next) = self.migrations.count();
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
        let command: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        report.preamble = vec![
            format!("## Run of {date}"),
            String::new(),
            format!("Machine: {}", server::machine()),
            format!("PostgreSQL {}", self.server.version()?),
            format!("Load average at the start: {}", server::load_average()),
            format!(
                "Command: `cargo bench --bench tenants -- {}`",
                command.join(" ")
            ),
            format!(
                "Migrations: {} ({base} migrations, then {next} new)",
                dir.display()
            ),
        ];
        eprintln!(
            "Prefix of this run's databases and roles: {}",
            self.server.prefix
        );
        Ok(())
    }

    /// Returns a fresh name with the run's prefix.
    fn name(&self, kind: &str) -> String {
        let number = self.next_number.get();
        self.next_number.set(number + 1);
        format!("{}{kind}{number}", self.server.prefix)
    }

    fn schema_ids(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|index| format!("{}s{index:05}", self.server.prefix))
            .collect()
    }

    fn path(&self, file: &str) -> PathBuf {
        self.scratch.path().join(file)
    }

    /// Runs tenantctl against a control database after a CHECKPOINT.
    fn tenantctl(&self, control: &str, args: &[&str]) -> Result<Run, String> {
        self.server.checkpoint()?;
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        work::tenantctl(
            &self.binary,
            &args,
            &self.server.database_url(control),
            self.scratch.path(),
        )
    }

    /// Applies a spec, checking that every tenant was applied.
    fn apply(
        &self,
        control: &str,
        spec: &Path,
        parallelism: Option<u16>,
        expected: usize,
    ) -> Result<Run, String> {
        let spec = spec.display().to_string();
        let parallelism_text = parallelism.map(|value| value.to_string());
        let mut args = vec!["apply", "-f", spec.as_str(), "--auto-approve"];
        if let Some(value) = &parallelism_text {
            args.extend(["--parallelism", value.as_str()]);
        }
        let run = self.tenantctl(control, &args)?;
        work::check_applied(&run, expected)?;
        Ok(run)
    }

    /// Brings the spec's migrations to every registered tenant with
    /// `migrate --all`, or with `apply` when this tenantctl has no
    /// `migrate`; checks that `expected` tenants were migrated.
    fn migrate(
        &self,
        control: &str,
        spec: &Path,
        parallelism: Option<u16>,
        expected: usize,
    ) -> Result<Run, String> {
        if !self.has_migrate {
            return self.apply(control, spec, parallelism, expected);
        }
        let spec = spec.display().to_string();
        let parallelism_text = parallelism.map(|value| value.to_string());
        let mut args = vec!["migrate", "--all", "-f", spec.as_str()];
        if let Some(value) = &parallelism_text {
            args.extend(["--parallelism", value.as_str()]);
        }
        let run = self.tenantctl(control, &args)?;
        work::check_migrated(&run, expected)?;
        Ok(run)
    }

    /// Names the command that brings new migrations.
    fn migrate_command(&self) -> &'static str {
        if self.has_migrate {
            "migrate --all"
        } else {
            "apply"
        }
    }

    /// Runs an SQL file in one psql session after a CHECKPOINT.
    fn floor(&self, database: &str, file: &Path) -> Result<f64, String> {
        self.server.checkpoint()?;
        self.server.psql_file(database, file)
    }

    fn create_phase(&self, report: &mut Report) -> Result<Vec<Created>, String> {
        let count = self.args.tenants;
        let ids = self.schema_ids(count);
        let spec = self.path("schemas.toml");
        work::schema_spec(&spec, &ids, &self.migrations.base)?;
        let floor_sql = self.path("floor-create.sql");
        work::floor_sql(&floor_sql, &ids, &self.migrations.base_sql, true)?;

        let mut section = Section::new(format!("Create {count} schema tenants"), COMPARED);
        let mut created = Vec::new();
        let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for round in 1..=self.args.rounds {
            for (slot, parallelism) in [Some(1), self.args.parallelism].into_iter().enumerate() {
                let floor_db = self.name("f");
                self.server.create_database(&floor_db)?;
                eprintln!("create: round {round}, floor");
                let floor = self.floor(&floor_db, &floor_sql)?;
                floor_row(&mut section, round, floor, count);
                let control = self.name("c");
                self.server.create_database(&control)?;
                eprintln!("create: round {round}, tenantctl {}", describe(parallelism));
                let run = self.apply(&control, &spec, parallelism, count)?;
                ratios[slot].push(run.seconds / floor);
                let label = format!("tenantctl {}", describe(parallelism));
                tool_row(&mut section, round, &label, &run, count, Some(floor));
                created.push(Created {
                    floor: floor_db,
                    control,
                    parallelism,
                });
            }
        }
        let serial = median(&ratios[0]).unwrap_or(f64::NAN);
        let parallel = median(&ratios[1]).unwrap_or(f64::NAN);
        report.verdict(
            "create schema tenants, --parallelism 1: at most 1.15x the floor",
            ratios_with_median(&ratios[0]),
            Some(serial <= 1.15),
        );
        report.verdict(
            format!(
                "create schema tenants, {}: faster than the floor",
                describe(self.args.parallelism)
            ),
            ratios_with_median(&ratios[1]),
            Some(parallel < 1.0),
        );
        report.sections.push(section);
        Ok(created)
    }

    /// Brings the new migrations to every tenant; returns the time per
    /// tenant of a run with nothing to apply, in milliseconds.
    fn migrate_phase(&self, report: &mut Report, created: &[Created]) -> Result<f64, String> {
        let count = self.args.tenants;
        let ids = self.schema_ids(count);
        let spec = self.path("schemas-next.toml");
        work::schema_spec(&spec, &ids, &self.migrations.full)?;
        let floor_sql = self.path("floor-migrate.sql");
        work::floor_sql(&floor_sql, &ids, &self.migrations.next_sql, false)?;

        let mut section = Section::new(
            format!("Migrate {count} schema tenants: one new migration, then nothing to apply"),
            COMPARED,
        );
        let mut ratios: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for (index, created) in created.iter().enumerate() {
            eprintln!("migrate: run {}, floor", index + 1);
            let floor = self.floor(&created.floor, &floor_sql)?;
            floor_row(&mut section, index + 1, floor, count);
            eprintln!(
                "migrate: run {}, tenantctl {}",
                index + 1,
                describe(created.parallelism)
            );
            let run = self.migrate(&created.control, &spec, created.parallelism, count)?;
            let slot = usize::from(created.parallelism != Some(1));
            ratios[slot].push(run.seconds / floor);
            let label = format!("tenantctl {}", describe(created.parallelism));
            tool_row(&mut section, index + 1, &label, &run, count, Some(floor));
        }
        let mut noop = Vec::new();
        for (index, created) in created.iter().enumerate() {
            eprintln!("migrate: run {}, nothing to apply", index + 1);
            let run = self.migrate(&created.control, &spec, self.args.parallelism, 0)?;
            noop.push(run.seconds * 1000.0 / count as f64);
            let label = "tenantctl, nothing to apply";
            tool_row(&mut section, index + 1, label, &run, count, None);
        }
        section.notes.push(format!(
            "tenantctl runs `{}`. The floor runs the new migration in each schema, one transaction per schema, in one psql session.",
            self.migrate_command()
        ));
        report.verdict(
            format!(
                "migrate with one new migration, {}: at most 1.2x the floor",
                describe(self.args.parallelism)
            ),
            ratios_with_median(&ratios[1]),
            Some(median(&ratios[1]).unwrap_or(f64::NAN) <= 1.2),
        );
        report.verdict(
            "migrate with one new migration, --parallelism 1 (for reference)",
            ratios_with_median(&ratios[0]),
            None,
        );
        report.sections.push(section);
        Ok(median(&noop).unwrap_or(f64::NAN))
    }

    fn anchor_phase(&self, report: &mut Report, noop_ms: Option<f64>) -> Result<(), String> {
        let count = self.args.tenants;
        let Some(script) = &self.args.anchor else {
            report
                .preamble
                .push("django-tenants: skipped, no --anchor script given.".into());
            return Ok(());
        };
        let ids = self.schema_ids(count);
        let spec = self.path("schemas-all.toml");
        work::schema_spec(&spec, &ids, &self.migrations.full)?;

        let mut ours = Ours::default();
        let mut theirs = None;
        for step in 0..3 {
            if step == 1 {
                eprintln!("anchor: django-tenants (this takes a while)");
                match self.run_anchor(script, count) {
                    Ok(figures) => theirs = Some(figures),
                    Err(reason) => {
                        report
                            .preamble
                            .push(format!("django-tenants: skipped: {reason}"));
                        return Ok(());
                    }
                }
                continue;
            }

            let control = self.name("c");
            self.server.create_database(&control)?;
            eprintln!("anchor: tenantctl, {}", describe(self.args.parallelism));
            let run = self.apply(&control, &spec, self.args.parallelism, count)?;
            ours.create_ms.push(run.seconds * 1000.0 / count as f64);
            let noop = self.migrate(&control, &spec, self.args.parallelism, 0)?;
            ours.noop_ms.push(noop.seconds * 1000.0 / count as f64);
            self.server.drop_database(&control)?;
        }
        if let Some(theirs) = theirs {
            self.anchor_report(report, &ours, &theirs, noop_ms);
        }
        Ok(())
    }

    /// Adds the comparison with django-tenants to the report.
    fn anchor_report(
        &self,
        report: &mut Report,
        ours: &Ours,
        theirs: &AnchorFigures,
        noop_ms: Option<f64>,
    ) {
        let count = self.args.tenants;
        let mut section = Section::new(
            format!("Against django-tenants: {count} schema tenants, all migrations"),
            &[
                "contender",
                "create, per tenant",
                "nothing to apply, per tenant",
            ],
        );
        section.notes.push(format!(
            "tenantctl's run with nothing to apply is `{}`; django-tenants' is `migrate_schemas`.",
            self.migrate_command()
        ));
        if let Some(noop) = noop_ms {
            section.notes.push(format!(
                "tenantctl with nothing to apply after the migrate phase: {noop:.2} ms per tenant."
            ));
        }

        for (create, noop) in ours.create_ms.iter().zip(&ours.noop_ms) {
            section.row(vec![
                format!("tenantctl, {}", describe(self.args.parallelism)),
                format!("{create:.1} ms"),
                format!("{noop:.2} ms"),
            ]);
        }
        section.row(vec![
            "django-tenants 4.0.1".into(),
            format!("{:.1} ms", theirs.create_ms),
            format!(
                "{:.1} ms serial, {} with its multiprocessing executor",
                theirs.noop_ms,
                theirs
                    .noop_parallel_ms
                    .map_or("-".into(), |ms| format!("{ms:.1} ms"))
            ),
        ]);

        let create_ratios: Vec<f64> = ours
            .create_ms
            .iter()
            .map(|ms| theirs.create_ms / ms)
            .collect();
        let noop_ratios: Vec<f64> = ours.noop_ms.iter().map(|ms| theirs.noop_ms / ms).collect();
        report.verdict(
            "against django-tenants, create: at least 5x faster",
            ratios_with_median(&create_ratios),
            Some(median(&create_ratios).unwrap_or(0.0) >= 5.0),
        );
        report.verdict(
            "against django-tenants, nothing to apply (its serial executor): at least 100x faster",
            ratios_with_median(&noop_ratios),
            Some(median(&noop_ratios).unwrap_or(0.0) >= 100.0),
        );
        if let Some(parallel) = theirs.noop_parallel_ms {
            let ratios: Vec<f64> = ours.noop_ms.iter().map(|ms| parallel / ms).collect();
            report.verdict(
                "against django-tenants, nothing to apply (its multiprocessing executor)",
                ratios_with_median(&ratios),
                None,
            );
        }
        report.sections.push(section);
    }

    fn run_anchor(&self, script: &Path, count: usize) -> Result<AnchorFigures, String> {
        let url = url::Url::parse(&self.server.url).map_err(|error| error.to_string())?;
        self.server.checkpoint()?;
        let output = Command::new("bash")
            .arg(script)
            .arg(count.to_string())
            .env("PGHOST", url.host_str().unwrap_or("127.0.0.1"))
            .env("PGPORT", url.port().unwrap_or(5432).to_string())
            .env("PGUSER", url.username())
            .env("ANCHOR_DB", format!("{}dj", self.server.prefix))
            .output()
            .map_err(|error| format!("cannot run {}: {error}", script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(format!(
                "{} failed ({}): {}",
                script.display(),
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        let figure = |needle: &str| {
            stdout
                .lines()
                .find(|line| line.contains(needle))
                .and_then(milliseconds_per_tenant)
        };
        Ok(AnchorFigures {
            create_ms: figure("created")
                .ok_or_else(|| format!("no creation figure in its output: {stdout}"))?,
            noop_ms: figure("no-op migrate_schemas over")
                .ok_or_else(|| format!("no migrate figure in its output: {stdout}"))?,
            noop_parallel_ms: figure("--executor=multiprocessing"),
        })
    }

    fn plan_phase(&self, report: &mut Report) -> Result<(), String> {
        let mut section = Section::new(
            "Plan, and migrate, with nothing to change",
            &[
                "tenants",
                "command",
                "round",
                "time",
                "statements",
                "peak RSS",
            ],
        );
        let mut large = Vec::new();
        let mut counts = Vec::new();
        for count in [100, self.args.plan_tenants] {
            let ids = self.schema_ids(count);
            let spec = self.path(&format!("plan-{count}.toml"));
            work::schema_spec(&spec, &ids, &self.migrations.full)?;
            let control = self.name("c");
            self.server.create_database(&control)?;
            eprintln!("plan: creating {count} tenants");
            let setup = self.apply(&control, &spec, self.args.parallelism, count)?;
            section.notes.push(format!(
                "Creating the {count} tenants ({}) took {} ({} per tenant, peak RSS {}).",
                describe(self.args.parallelism),
                seconds(setup.seconds),
                per_tenant(setup.seconds, count),
                mebibytes(setup.peak_kib)
            ));

            let spec_text = spec.display().to_string();
            for round in 1..=self.args.rounds {
                eprintln!("plan: {count} tenants, round {round}");
                let run =
                    self.tenantctl(&control, &["plan", "-f", &spec_text, "--detailed-exitcode"])?;
                if !run.stdout.contains("No changes") {
                    return Err(format!("plan over {count} tenants is not empty"));
                }
                counts.push(run.statements);
                if count == self.args.plan_tenants {
                    large.push(run.clone());
                }
                section.row(plan_row(count, "plan", round, &run));
            }

            let run = self.migrate(&control, &spec, self.args.parallelism, 0)?;
            section.row(plan_row(count, self.migrate_command(), 1, &run));
            self.server.drop_database(&control)?;
        }
        self.plan_verdicts(report, &large, &counts);
        report.sections.push(section);
        Ok(())
    }

    /// Judges the plan runs against their targets.
    fn plan_verdicts(&self, report: &mut Report, large: &[Run], counts: &[Option<u64>]) {
        let plan_tenants = self.args.plan_tenants;
        let times: Vec<String> = large.iter().map(|run| seconds(run.seconds)).collect();
        report.verdict(
            format!("plan, nothing to change, {plan_tenants} tenants: under 1 s"),
            times.join(", "),
            Some(large.iter().all(|run| run.seconds < 1.0)),
        );

        let listed: Vec<String> = counts
            .iter()
            .map(|count| count.map_or("?".into(), |n| n.to_string()))
            .collect();
        let constant = counts
            .iter()
            .all(|count| count.is_some() && *count == counts[0]);
        report.verdict(
            "plan: statements do not grow with the tenants",
            format!("{} (100 tenants, then {plan_tenants})", listed.join(", ")),
            Some(constant),
        );

        let worst_memory = large.iter().map(|run| run.peak_kib).max().unwrap_or(0);
        report.verdict(
            format!("plan, {plan_tenants} tenants: peak memory under 150 MB"),
            mebibytes(worst_memory),
            Some(worst_memory * 1024 < 150_000_000),
        );
    }

    fn database_phase(&self, report: &mut Report) -> Result<(), String> {
        let count = self.args.database_tenants;
        let mut section = Section::new(
            format!("Create {count} database tenants"),
            &[
                "round",
                "contender",
                "time",
                "per tenant",
                "peak RSS",
                "statements",
            ],
        );
        let contenders = [
            Contender::Migrations,
            Contender::NewTemplate,
            Contender::ExistingTemplate,
        ];
        let mut ratios: [Vec<f64>; 2] = Default::default();
        for round in 1..=self.args.database_rounds {
            // Every run follows the drop of the databases of the run before
            // it, which can slow the next run's file creation, so the order
            // turns from round to round.
            let mut order = contenders;
            order.rotate_left((round - 1) % contenders.len());
            let mut times = [0.0; 3];
            for contender in order {
                let control = self.name("c");
                let tenants = self.name("d");
                let ids: Vec<String> = (0..count)
                    .map(|index| format!("{tenants}_{index:03}"))
                    .collect();
                // Every timed run adds tenants to a deployment that has one:
                // an untimed apply of one tenant makes the registry first,
                // and for one contender the template too.
                let first = (
                    format!("{tenants}_first"),
                    contender == Contender::ExistingTemplate,
                );
                self.server.create_database(&control)?;
                let warm_up = self.path(&format!("{tenants}_first.toml"));
                work::database_spec(
                    &warm_up,
                    std::slice::from_ref(&first),
                    &self.migrations.full,
                )?;
                self.apply(&control, &warm_up, self.args.parallelism, 1)?;
                let template = contender != Contender::Migrations;
                let all: Vec<(String, bool)> = std::iter::once(first)
                    .chain(ids.iter().map(|id| (id.clone(), template)))
                    .collect();
                let spec = self.path(&format!("{tenants}.toml"));
                work::database_spec(&spec, &all, &self.migrations.full)?;
                let label = contender.label();
                eprintln!("database: round {round}, {label}");
                let run = self.apply(&control, &spec, self.args.parallelism, count)?;
                times[contender as usize] = run.seconds;
                section.row(vec![
                    round.to_string(),
                    format!("tenantctl, {label}"),
                    seconds(run.seconds),
                    per_tenant(run.seconds, count),
                    mebibytes(run.peak_kib),
                    statements(&run),
                ]);
                self.server.drop_matching(&tenants);
                self.server.drop_matching(&control);
            }
            ratios[0].push(times[0] / times[1]);
            ratios[1].push(times[0] / times[2]);
        }
        // Every apply after the first copies the kept template, so the
        // target is the copy. The first apply also makes the template once,
        // and its ratio is reported beside the target.
        report.verdict(
            "database tenants from a template (made before, as on every apply after the first): at least 2x faster than running the migrations",
            ratios_with_median(&ratios[1]),
            Some(median(&ratios[1]).unwrap_or(0.0) >= 2.0),
        );
        report.verdict(
            "database tenants, the first apply, which also makes the template (for reference)",
            ratios_with_median(&ratios[0]),
            None,
        );
        section.notes.push(
            "Each timed run adds the tenants to a control database where an untimed apply \
             made one tenant first, copied from the template for the template made before, \
             with its migrations run for the others."
                .to_string(),
        );
        report.sections.push(section);
        Ok(())
    }
}

/// Source of each new database's migrations in the database phase.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// `template = false`: each database runs every migration.
    Migrations = 0,
    /// `template = true` into a fresh control database: the timed run makes
    /// the template first.
    NewTemplate = 1,
    /// `template = true` where an earlier apply made the template.
    ExistingTemplate = 2,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Contender::Migrations => "running the migrations",
            Contender::NewTemplate => "from a template made in the run",
            Contender::ExistingTemplate => "from a template made before",
        }
    }
}

/// tenantctl's times per tenant beside django-tenants, in milliseconds.
#[derive(Default)]
struct Ours {
    create_ms: Vec<f64>,
    noop_ms: Vec<f64>,
}

/// django-tenants' times per tenant, in milliseconds.
struct AnchorFigures {
    create_ms: f64,
    noop_ms: f64,
    noop_parallel_ms: Option<f64>,
}

/// Reads `(123 ms/tenant)` from a line of the anchor script.
fn milliseconds_per_tenant(line: &str) -> Option<f64> {
    let end = line.find(" ms/tenant")?;
    let start = line[..end].rfind('(')? + 1;
    line[start..end].trim().parse().ok()
}

fn describe(parallelism: Option<u16>) -> String {
    match parallelism {
        Some(value) => format!("--parallelism {value}"),
        None => "default parallelism".to_string(),
    }
}

/// Columns of a section that compares tenantctl with the floor.
const COMPARED: &[&str] = &[
    "run",
    "contender",
    "time",
    "per tenant",
    "ratio to the floor before",
    "peak RSS",
    "statements",
];

fn floor_row(section: &mut Section, run: usize, seconds_taken: f64, tenants: usize) {
    section.row(vec![
        run.to_string(),
        "floor (psql)".into(),
        seconds(seconds_taken),
        per_tenant(seconds_taken, tenants),
        "-".into(),
        "-".into(),
        "-".into(),
    ]);
}

/// Adds a tenantctl run, with its ratio to the floor run before it if any.
fn tool_row(
    section: &mut Section,
    number: usize,
    label: &str,
    run: &Run,
    tenants: usize,
    floor: Option<f64>,
) {
    section.row(vec![
        number.to_string(),
        label.to_string(),
        seconds(run.seconds),
        per_tenant(run.seconds, tenants),
        floor.map_or("-".into(), |floor| ratio(run.seconds / floor)),
        mebibytes(run.peak_kib),
        statements(run),
    ]);
}

fn plan_row(tenants: usize, command: &str, round: usize, run: &Run) -> Vec<String> {
    vec![
        tenants.to_string(),
        command.to_string(),
        round.to_string(),
        seconds(run.seconds),
        statements(run),
        mebibytes(run.peak_kib),
    ]
}

fn statements(run: &Run) -> String {
    run.statements
        .map_or("?".to_string(), |count| count.to_string())
}
