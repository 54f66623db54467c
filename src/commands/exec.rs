//! `tenantctl exec`: runs a command with a tenant's context in its
//! environment, for one tenant or all of them.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use crate::cli::{ExecArgs, GlobalArgs, SpecArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::session::Session;
use crate::spec::desired::Desired;
use crate::state::Servers;
use crate::state::registry::{self, TenantRecord};

/// Builds the session of one registered tenant, with the spec when one is
/// given or found.
pub fn session_of(global: &GlobalArgs, spec_args: &SpecArgs, id: &str) -> Result<Session> {
    let spec = super::load_spec_if_any(spec_args, false)?;
    let desired = spec.as_ref().map(|(_, desired)| desired);
    let control_url = super::control_url(global, desired);
    let mut control = super::open_existing_registry(&control_url)?;
    let state = registry::read_state(&mut control)?;
    let record = super::find_tenant(&state, id)?;
    Session::build(record, desired, &servers(desired, &control_url)?)
}

fn servers(desired: Option<&Desired>, control_url: &str) -> Result<Servers> {
    match desired {
        Some(desired) => Servers::resolve(desired, control_url),
        None => Servers::control_only(control_url),
    }
}

/// Rejects sessions that would reach other tenants' rows, unless the user
/// passed `--unrestricted`.
pub fn check_restricted<'a>(
    sessions: impl IntoIterator<Item = &'a Session>,
    unrestricted: bool,
) -> Result<()> {
    if unrestricted {
        return Ok(());
    }
    let reasons: Vec<String> = sessions
        .into_iter()
        .filter_map(Session::unrestricted_reason)
        .collect();
    if reasons.is_empty() {
        return Ok(());
    }
    Err(Error::with_hint(
        reasons.join("\n"),
        "declare [tenants.role] for the tenant and apply, or pass --unrestricted to use the admin role knowingly",
    ))
}

/// Runs the command for one tenant, or for every tenant with `--all`.
pub fn run(global: &GlobalArgs, args: &ExecArgs, printer: &Printer) -> Result<i32> {
    let (program, arguments) = args.command.split_first().ok_or_else(|| {
        Error::with_hint(
            "no command given",
            "write it after --, such as: tenantctl exec acme -- env",
        )
    })?;
    if let Some(id) = &args.id {
        let session = session_of(global, &args.spec, id)?;
        check_restricted([&session], args.unrestricted)?;
        let status = command(program, arguments, &session)
            .status()
            .map_err(|error| start_error(program, &error))?;
        return Ok(status.code().unwrap_or(1));
    }

    let spec = super::load_spec_if_any(&args.spec, false)?;
    let desired = spec.as_ref().map(|(_, desired)| desired);
    let control_url = super::control_url(global, desired);
    let mut control = super::open_existing_registry(&control_url)?;
    let state = registry::read_state(&mut control)?;
    let mut records: Vec<&TenantRecord> = state.tenants.values().collect();
    records.sort_by(|left, right| left.id.cmp(&right.id));
    let servers = servers(desired, &control_url)?;
    let sessions = records
        .iter()
        .map(|record| Session::build(record, desired, &servers))
        .collect::<Result<Vec<_>>>()?;
    check_restricted(&sessions, args.unrestricted)?;

    let failures = Mutex::new(Vec::new());
    let never = AtomicBool::new(false);
    crate::workers::run_all(
        &sessions,
        usize::from(args.parallelism),
        &never,
        |session| {
            if let Err(problem) = run_prefixed(program, arguments, session, printer) {
                printer.error(&format!("{}: {problem}", session.tenant_id));
                failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(session.tenant_id.clone());
            }
        },
    );
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort();
    let summary = match failures.len() {
        0 => format!("Ran on {} tenants, 0 failed.", sessions.len()),
        _ => format!(
            "Ran on {} tenants, {} failed: {}.",
            sessions.len(),
            failures.len(),
            failures.join(", ")
        ),
    };
    printer.error(&summary);
    Ok(if failures.is_empty() { 0 } else { 1 })
}

fn command(program: &str, arguments: &[String], session: &Session) -> Command {
    let mut command = Command::new(program);
    command.args(arguments);
    super::shell::set_environment(&mut command, session);
    command
}

fn start_error(program: &str, error: &std::io::Error) -> Error {
    Error::with_hint(
        format!("cannot start `{program}`: {error}"),
        "check that the command exists and is executable",
    )
}

/// Runs the command for one tenant with each output line prefixed by the
/// tenant id; returns a description of the failure, if any.
fn run_prefixed(
    program: &str,
    arguments: &[String],
    session: &Session,
    printer: &Printer,
) -> std::result::Result<(), String> {
    let mut child = command(program, arguments, session)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| start_error(program, &error).to_string())?;
    let id = &session.tenant_id;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        scope.spawn(|| forward(stdout, |line| printer.block(&[format!("{id}: {line}")])));
        scope.spawn(|| forward(stderr, |line| printer.error(&format!("{id}: {line}"))));
    });
    let status = child.wait().map_err(|error| error.to_string())?;
    describe_failure(status).map_or(Ok(()), Err)
}

fn forward(stream: Option<impl Read>, mut print: impl FnMut(&str)) {
    let Some(stream) = stream else {
        return;
    };
    for line in BufReader::new(stream)
        .split(b'\n')
        .map_while(|line| line.ok())
    {
        print(String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
}

fn describe_failure(status: ExitStatus) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    if status.success() {
        return None;
    }
    Some(match (status.code(), status.signal()) {
        (Some(code), _) => format!("failed with exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "failed".to_string(),
    })
}
