//! `tenantctl create-superuser`: a login role that administers one tenant.

use dialoguer::theme::SimpleTheme;
use dialoguer::{Input, Password};
use diesel::Connection;

use crate::apply::{TenantError, superuser};
use crate::cli::{CreateSuperuserArgs, GlobalArgs};
use crate::error::{Error, Result};
use crate::output::Printer;
use crate::spec::desired::TablesTarget;
use crate::spec::model::Isolation;
use crate::spec::secret::Secret;
use crate::spec::validate::check_name;
use crate::state::location::Location;
use crate::state::registry::{self, TenantRecord};
use crate::state::{Servers, catalog, db};

/// Creates or updates the superuser role of one tenant.
pub fn run(global: &GlobalArgs, args: &CreateSuperuserArgs, printer: &Printer) -> Result<i32> {
    let spec = super::load_spec_if_any(&args.spec, false)?;
    let desired = spec.as_ref().map(|(_, desired)| desired);
    let control_url = super::control_url(global, desired);
    let mut control = super::open_control(&control_url)?;
    let state = registry::read_state(&mut control)?;
    let record = super::find_tenant(&state, &args.id)?;
    let location = Location::of(record);
    if location.isolation == Some(Isolation::Cache) {
        return Err(Error::with_hint(
            format!(
                "tenant '{}' is a cache tenant, which has no database role",
                record.id
            ),
            "its Redis ACL user is set in the spec's cache section",
        ));
    }
    let ask = super::interactive(false);
    let name = username(args, record, ask)?;
    let password = password(args, ask)?;
    let servers = match desired {
        Some(desired) => Servers::resolve(desired, &control_url)?,
        None => Servers::control_only(&control_url)?,
    };
    let (admin_url, connect_url) = urls(&servers, &location, &control_url)?;

    let mut server = db::connect(&admin_url)?;
    check_owner(&mut control, &mut server, record, &name)?;
    let current = catalog::read_control(&mut server)?
        .current
        .ok_or_else(|| Error::other("the connecting role could not be read"))?;
    // The registry learns of the role first, so a crash right after CREATE
    // ROLE leaves a record that lets the tenant's removal drop it.
    registry::record_superuser(&mut control, &record.id, &name)
        .map_err(Error::query("cannot record the superuser in the registry"))?;
    let tables = TablesTarget::of_spec_or(desired, location.schema.as_deref());
    let outcome = server.transaction::<_, TenantError, _>(|server| {
        superuser::upsert_role(server, &current, &name, &password)?;
        superuser::grant(server, &record.id, &location, &tables, &name)
    });
    let error = outcome.as_ref().err().map(ToString::to_string);
    registry::log_event(
        &mut control,
        &record.id,
        &format!("superuser \"{name}\""),
        error.as_deref(),
    )
    .map_err(Error::query("cannot record the event in the registry"))?;
    outcome.map_err(|error| {
        Error::other(format!(
            "cannot create superuser '{name}' of tenant '{}': {error}",
            record.id
        ))
    })?;

    printer.block(&[
        format!("Superuser '{name}' of tenant '{}' is ready.", record.id),
        format!(
            "Connect with: psql '{}'",
            db::with_user(&connect_url, &name)?
        ),
    ]);
    Ok(0)
}

/// Returns the URL of the server where the role lives and the URL of the
/// tenant's database.
fn urls(servers: &Servers, location: &Location, control_url: &str) -> Result<(String, String)> {
    match (&location.server, &location.database) {
        (Some(server), Some(database)) => Ok((
            servers.admin_url(server)?,
            servers.database_url(server, database)?,
        )),
        _ => Ok((control_url.to_string(), control_url.to_string())),
    }
}

/// Rejects a role name that belongs to something else: another tenant's
/// superuser, or any role create-superuser did not make for this tenant.
fn check_owner(
    control: &mut diesel::PgConnection,
    server: &mut diesel::PgConnection,
    record: &TenantRecord,
    name: &str,
) -> Result<()> {
    let hint = "choose another name with --username";
    match registry::superuser_tenant(control, name)? {
        Some(owner) if owner == record.id => Ok(()),
        Some(owner) => Err(Error::with_hint(
            format!("role '{name}' is the superuser of tenant '{owner}'"),
            hint,
        )),
        None => {
            let exists = superuser::role_exists(server, name)
                .map_err(|error| Error::other(error.to_string()))?;
            if exists {
                return Err(Error::with_hint(
                    format!(
                        "role '{name}' exists and was not made by create-superuser for tenant '{}'",
                        record.id
                    ),
                    hint,
                ));
            }
            Ok(())
        }
    }
}

fn username(args: &CreateSuperuserArgs, record: &TenantRecord, ask: bool) -> Result<String> {
    let default = format!("{}_admin", record.id);
    let name = match (&args.username, ask) {
        (Some(name), _) => name.clone(),
        (None, false) => default,
        (None, true) => Input::<String>::with_theme(&SimpleTheme)
            .with_prompt(format!("Superuser name for tenant '{}'", record.id))
            .default(default)
            .validate_with(|text: &String| {
                check_name(text).map_err(|reason| format!("invalid name {text:?}: {reason}"))
            })
            .interact_text()
            .map_err(aborted)?,
    };
    check_name(&name).map_err(|reason| {
        Error::with_hint(
            format!("invalid role name `{name}`: {reason}"),
            "pass a valid --username",
        )
    })?;
    Ok(name)
}

fn password(args: &CreateSuperuserArgs, ask: bool) -> Result<Secret> {
    if let Some(variable) = &args.password_env {
        return match std::env::var(variable) {
            Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
            _ => Err(Error::with_hint(
                format!("environment variable `{variable}` is not set or empty"),
                "export the password in it, or leave out --password-env to be asked",
            )),
        };
    }
    if !ask {
        return Err(Error::with_hint(
            "create-superuser needs a password, and standard input is not a terminal",
            "pass --password-env VAR with the password in that environment variable",
        ));
    }
    Password::with_theme(&SimpleTheme)
        .with_prompt("Password")
        .with_confirmation("Repeat password", "The passwords do not match.")
        .interact()
        .map(Secret::new)
        .map_err(aborted)
}

fn aborted(error: dialoguer::Error) -> Error {
    Error::Aborted(format!("Aborted: {error}; nothing was changed."))
}
