//! A tenant's session context: how to reach its data as that tenant, as
//! environment variables for `shell` and `exec`. Passwords travel only in
//! the environment (PGPASSWORD, REDISCLI_AUTH), never on a command line.

use crate::error::Result;
use crate::spec::desired::{Desired, DesiredTenant};
use crate::spec::model::Isolation;
use crate::spec::secret::Secret;
use crate::spec::validate::DEFAULT_TENANT_SETTING;
use crate::state::location::Location;
use crate::state::redis::RedisTarget;
use crate::state::registry::TenantRecord;
use crate::state::{Servers, db};

/// Connection settings of a session in one tenant's context.
#[derive(Debug)]
pub struct Session {
    pub tenant_id: String,
    pub isolation: Option<Isolation>,
    /// PostgreSQL URL without a password.
    pub database_url: Option<String>,
    pub pg_password: Option<Secret>,
    /// libpq startup options: the tenant's role, search_path or tenant setting.
    pub pg_options: Option<String>,
    /// Redis URL without a password.
    pub redis_url: Option<String>,
    pub redis_user: Option<String>,
    pub redis_password: Option<Secret>,
    pub key_prefix: Option<String>,
    /// Whether the PostgreSQL session uses the tenant's own role, by login
    /// or through the `role` setting.
    pub own_role: bool,
}

impl Session {
    /// Builds a registered tenant's session. When the spec gives the password
    /// of the tenant's own role, the session logs in as that role. Otherwise it
    /// logs in with the admin URL's user and takes on the tenant's role through
    /// the `role` setting.
    pub fn build(
        record: &TenantRecord,
        desired: Option<&Desired>,
        servers: &Servers,
    ) -> Result<Session> {
        let location = Location::of(record);
        let tenant = desired.and_then(|desired| desired.tenant(&record.id));
        let mut session = Session {
            tenant_id: record.id.clone(),
            isolation: location.isolation,
            database_url: None,
            pg_password: None,
            pg_options: None,
            redis_url: None,
            redis_user: location.acl_user.clone(),
            redis_password: None,
            key_prefix: location.prefix.clone(),
            own_role: false,
        };
        if location.isolation != Some(Isolation::Cache) {
            session.set_postgres(&location, tenant, desired, servers)?;
        }
        if location.prefix.is_some() {
            session.set_redis(tenant, desired)?;
        }
        Ok(session)
    }

    fn set_postgres(
        &mut self,
        location: &Location,
        tenant: Option<&DesiredTenant>,
        desired: Option<&Desired>,
        servers: &Servers,
    ) -> Result<()> {
        let admin_url = match (&location.server, &location.database) {
            (Some(server), Some(database)) => servers.database_url(server, database)?,
            _ => servers.control_url.clone(),
        };
        let role = location.tenant_role();
        self.own_role = role.is_some();
        let own_password = tenant.and_then(|tenant| role_password(tenant, role?));
        let mut options = Vec::new();
        match (role, own_password) {
            (Some(role), Some(password)) => {
                self.database_url = Some(db::with_user(&admin_url, role)?);
                self.pg_password = Some(password.clone());
            }
            (role, _) => {
                let (user, password) = db::credentials(&admin_url)?;
                self.database_url = Some(db::with_user(&admin_url, &user)?);
                self.pg_password = password;
                options.extend(role.map(|role| setting("role", role)));
            }
        }
        match location.isolation {
            Some(Isolation::Schema) => {
                let schema = location.schema.as_deref().unwrap_or(&self.tenant_id);
                options.push(setting("search_path", schema));
            }
            Some(Isolation::Table) => {
                let name = desired
                    .and_then(|desired| desired.tables.as_ref())
                    .map_or(DEFAULT_TENANT_SETTING, |tables| tables.setting.as_str());
                options.push(setting(name, &self.tenant_id));
            }
            _ => {}
        }
        self.pg_options = (!options.is_empty()).then(|| options.join(" "));
        Ok(())
    }

    fn set_redis(
        &mut self,
        tenant: Option<&DesiredTenant>,
        desired: Option<&Desired>,
    ) -> Result<()> {
        let (url, admin_password) = RedisTarget::from_spec(desired)?.split_password();
        self.redis_url = Some(url);
        let acl_password = tenant
            .and_then(|tenant| tenant.cache.as_ref())
            .and_then(|cache| cache.acl_user.as_ref())
            .and_then(|user| user.password.clone());
        self.redis_password = match &self.redis_user {
            Some(_) => acl_password,
            None => admin_password,
        };
        Ok(())
    }

    /// Returns why the session is not limited to the tenant's rows: a table
    /// tenant without a role of its own gets the admin's login, and a
    /// superuser or BYPASSRLS role skips row-level security.
    pub fn unrestricted_reason(&self) -> Option<String> {
        if self.isolation != Some(Isolation::Table) || self.own_role {
            return None;
        }
        Some(format!(
            "table tenant '{}' has no role of its own, so the session would log in as the admin role, which can see and change every tenant's rows",
            self.tenant_id
        ))
    }

    /// Returns the environment a tenant command runs with.
    pub fn environment(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("TENANT_ID", self.tenant_id.clone())];
        let optional = [
            ("DATABASE_URL", self.database_url.clone()),
            (
                "PGPASSWORD",
                self.pg_password.as_ref().map(|s| s.expose().to_string()),
            ),
            ("PGOPTIONS", self.pg_options.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.key_prefix.clone()),
            ("REDIS_USER", self.redis_user.clone()),
            (
                "REDISCLI_AUTH",
                self.redis_password.as_ref().map(|s| s.expose().to_string()),
            ),
        ];
        env.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?))),
        );
        env
    }
}

/// Returns the spec's password of the tenant role `role`, if it gives one.
fn role_password<'a>(tenant: &'a DesiredTenant, role: &str) -> Option<&'a Secret> {
    let candidates = [
        tenant
            .database
            .as_ref()
            .map(|database| (database.owner.as_str(), database.password.as_ref())),
        tenant
            .schema
            .as_ref()
            .and_then(|schema| schema.role.as_ref())
            .map(|role| (role.name.as_str(), role.password.as_ref())),
        tenant
            .role
            .as_ref()
            .map(|role| (role.name.as_str(), role.password.as_ref())),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|(name, _)| *name == role)
        .and_then(|(_, password)| password)
}

/// Formats one `-c name=value` libpq option; a space or backslash in the
/// value is escaped with a backslash, as libpq's option parser expects.
fn setting(name: &str, value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if character == ' ' || character == '\\' {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    format!("-c {name}={escaped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_escapes_spaces() {
        assert_eq!(
            setting("app.tenant_id", "a b\\c"),
            "-c app.tenant_id=a\\ b\\\\c"
        );
    }
}
