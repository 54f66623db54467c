//! `tenantctl shell`: psql (or redis-cli for cache tenants) in a tenant's
//! context.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::cli::{GlobalArgs, ShellArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::session::Session;
use crate::spec::model::Isolation;

/// Replaces this process with psql or redis-cli for one tenant.
pub fn run(global: &GlobalArgs, args: &ShellArgs, printer: &Printer) -> Result<i32> {
    let session = super::exec::session_of(global, &args.spec, &args.id)?;
    super::exec::check_restricted([&session], args.unrestricted)?;
    let mut command = match session.isolation {
        Some(Isolation::Cache) => redis_cli(&session)?,
        _ => psql(&session)?,
    };
    command.args(&args.args);
    let error = command.exec();
    printer.error(&format!(
        "Error: cannot start {:?}: {error}",
        command.get_program()
    ));
    Ok(1)
}

fn psql(session: &Session) -> Result<Command> {
    let url = session
        .database_url
        .as_ref()
        .ok_or_else(|| Error::other(format!("tenant '{}' has no database", session.tenant_id)))?;
    let mut command = Command::new(find_program("psql", "postgresql-client")?);
    command.arg("--dbname").arg(url);
    set_environment(&mut command, session);
    Ok(command)
}

fn redis_cli(session: &Session) -> Result<Command> {
    let url = session.redis_url.as_ref().ok_or_else(|| {
        Error::other(format!(
            "tenant '{}' has no Redis key prefix",
            session.tenant_id
        ))
    })?;
    if session.redis_user.is_some() && session.redis_password.is_none() {
        return Err(Error::with_hint(
            format!(
                "the password of tenant '{}''s Redis ACL user is not known",
                session.tenant_id
            ),
            "pass -f with the spec that holds it",
        ));
    }
    let mut command = Command::new(find_program("redis-cli", "redis-tools")?);
    command.arg("-u").arg(url);
    if let Some(user) = &session.redis_user {
        command.arg("--user").arg(user);
    }
    set_environment(&mut command, session);
    Ok(command)
}

/// Puts the tenant's context, passwords included, in the child's environment.
pub fn set_environment(command: &mut Command, session: &Session) {
    command.envs(session.environment());
}

/// Finds a program on PATH, or returns an error naming the package that
/// provides it.
pub fn find_program(name: &str, package: &str) -> Result<PathBuf> {
    which::which(name).map_err(|_| {
        Error::with_hint(
            format!("`{name}` was not found on PATH"),
            format!("install the {package} package (for example: apt-get install {package})"),
        )
    })
}
