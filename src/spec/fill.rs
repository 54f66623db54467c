//! Fill-in: asks a person at the terminal for required values the spec does
//! not give. Values typed are used for this run only and never written back.

use super::desired::{Desired, MissingValue, RoleTarget};
use super::secret::Secret;
use super::validate::{check_display_name, check_name};
use crate::error::{Error, Result};
use crate::prompt::{self, Check};

/// A typed value: secrets stay in [`Secret`] from the moment they are read.
enum Answer {
    Text(String),
    Secret(Secret),
}

/// Asks for every missing value, in file order, and stores the answers in
/// `desired`.
pub fn fill(desired: &mut Desired) -> Result<()> {
    let missing = std::mem::take(&mut desired.missing);
    prompt::on_interrupt("nothing was changed.");
    for value in &missing {
        if value.reason.is_some() {
            prompt::print_note(&value.describe());
        }
        let answer = ask(desired, value)?;
        store(desired, value, answer)?;
    }
    Ok(())
}

fn ask(desired: &Desired, value: &MissingValue) -> Result<Answer> {
    let prompt = format!("{} for tenant '{}'", value.prompt, value.tenant);
    if value.secret {
        return prompt::ask_secret(&prompt).map(Answer::Secret);
    }
    let answer = match value.field.as_str() {
        "database.user" => prompt::ask(&prompt, None, |answer| {
            check_role(desired, &value.tenant, answer)
        })?,
        _ => prompt::ask(&prompt, None, check_not_blank)?,
    };
    Ok(Answer::Text(answer))
}

/// Accepts any answer that is not blank and has no control characters.
pub fn check_not_blank(answer: &str) -> Check<String> {
    if answer.trim().is_empty() {
        return Err("a value is required".to_string());
    }
    check_display_name(answer)?;
    Ok(answer.trim().to_string())
}

/// Accepts a role name that is valid and no other tenant of the spec uses.
fn check_role(desired: &Desired, tenant: &str, answer: &str) -> Check<String> {
    check_name(answer).map_err(|reason| format!("invalid role name {answer:?}: {reason}"))?;
    let owner = desired
        .tenants
        .iter()
        .find(|other| other.id != tenant && role_names(other).any(|role| role == answer));
    match owner {
        Some(other) => Err(format!(
            "role {answer:?} is already used by tenant '{}'",
            other.id
        )),
        None => Ok(answer.to_string()),
    }
}

/// Returns the login roles a tenant uses.
pub fn role_names(tenant: &super::desired::DesiredTenant) -> impl Iterator<Item = &str> {
    let owner = tenant
        .database
        .as_ref()
        .map(|database| database.owner.as_str());
    let schema_role = tenant
        .schema
        .as_ref()
        .and_then(|schema| schema.role.as_ref())
        .map(|role| role.name.as_str());
    let table_role = tenant.role.as_ref().map(|role| role.name.as_str());
    [owner, schema_role, table_role]
        .into_iter()
        .flatten()
        .filter(|name| !name.is_empty())
}

fn store(desired: &mut Desired, value: &MissingValue, answer: Answer) -> Result<()> {
    let tenant = desired
        .tenants
        .iter_mut()
        .find(|tenant| tenant.id == value.tenant)
        .ok_or_else(|| Error::other(format!("tenant {} vanished during fill-in", value.tenant)))?;
    let (text, secret) = match answer {
        Answer::Text(text) => (Some(text), None),
        Answer::Secret(secret) => (None, Some(secret)),
    };
    let stored = match (value.field.as_str(), text, secret) {
        ("name", Some(text), _) => {
            tenant.name = text;
            true
        }
        ("database.user", Some(text), _) => tenant
            .database
            .as_mut()
            .map(|database| database.owner = text)
            .is_some(),
        ("database.password", _, Some(secret)) => tenant
            .database
            .as_mut()
            .map(|database| database.password = Some(secret))
            .is_some(),
        ("schema.password", _, Some(secret)) => tenant
            .schema
            .as_mut()
            .and_then(|schema| schema.role.as_mut())
            .map(|role| role.password = Some(secret))
            .is_some(),
        ("role.password", _, Some(secret)) => tenant
            .role
            .as_mut()
            .map(|role| role.password = Some(secret))
            .is_some(),
        ("cache.password", _, Some(secret)) => tenant
            .cache
            .as_mut()
            .and_then(|cache| cache.acl_user.as_mut())
            .map(|user: &mut RoleTarget| user.password = Some(secret))
            .is_some(),
        _ => false,
    };
    if stored {
        Ok(())
    } else {
        Err(Error::other(format!(
            "cannot fill in {} of tenant '{}'",
            value.field, value.tenant
        )))
    }
}
