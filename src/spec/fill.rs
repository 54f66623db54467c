//! Fill-in: asks a person at the terminal for required values the spec does
//! not give. Values typed are used for this run only and never written back.

use dialoguer::theme::SimpleTheme;
use dialoguer::{Input, Password};

use super::desired::{Desired, MissingValue, RoleTarget};
use super::secret::Secret;
use super::validate::check_name;
use crate::error::{Error, Result};

/// Asks for every missing value and stores the answers in `desired`.
pub fn fill(desired: &mut Desired) -> Result<()> {
    let missing = std::mem::take(&mut desired.missing);
    for value in &missing {
        let answer = ask(value)?;
        store(desired, value, answer)?;
    }
    Ok(())
}

fn ask(value: &MissingValue) -> Result<String> {
    let prompt = format!("{} for tenant '{}'", value.prompt, value.tenant);
    let theme = SimpleTheme;
    let answer = if value.secret {
        Password::with_theme(&theme).with_prompt(prompt).interact()
    } else if value.field.ends_with("user") {
        Input::<String>::with_theme(&theme)
            .with_prompt(prompt)
            .validate_with(|text: &String| {
                check_name(text).map_err(|reason| format!("invalid name {text:?}: {reason}"))
            })
            .interact_text()
    } else {
        Input::<String>::with_theme(&theme)
            .with_prompt(prompt)
            .validate_with(|text: &String| {
                if text.trim().is_empty() {
                    Err("a value is required".to_string())
                } else {
                    Ok(())
                }
            })
            .interact_text()
    };
    answer.map_err(|error| match error {
        dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
            Error::Aborted("Aborted: nothing was changed.".to_string())
        }
        other => Error::Aborted(format!("Aborted: {other}; nothing was changed.")),
    })
}

fn store(desired: &mut Desired, value: &MissingValue, answer: String) -> Result<()> {
    let tenant = desired
        .tenants
        .iter_mut()
        .find(|tenant| tenant.id == value.tenant)
        .ok_or_else(|| Error::other(format!("tenant {} vanished during fill-in", value.tenant)))?;
    let secret = || Some(Secret::new(answer.clone()));
    match value.field.as_str() {
        "name" => tenant.name = answer,
        "database.user" => {
            if let Some(database) = tenant.database.as_mut() {
                database.owner = answer;
            }
        }
        "database.password" => {
            if let Some(database) = tenant.database.as_mut() {
                database.password = secret();
            }
        }
        "schema.password" => {
            if let Some(role) = tenant
                .schema
                .as_mut()
                .and_then(|schema| schema.role.as_mut())
            {
                role.password = secret();
            }
        }
        "role.password" => {
            if let Some(role) = tenant.role.as_mut() {
                role.password = secret();
            }
        }
        "cache.password" => {
            if let Some(user) = tenant
                .cache
                .as_mut()
                .and_then(|cache| cache.acl_user.as_mut())
            {
                *user = RoleTarget {
                    name: user.name.clone(),
                    password: secret(),
                };
            }
        }
        other => return Err(Error::other(format!("cannot fill in field {other}"))),
    }
    Ok(())
}
