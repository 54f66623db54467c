//! The Redis server of cache tenants: its URL, and what plan reads from it
//! (`ACL LIST` and `COMMAND`, in one round trip whatever the number of
//! tenants).

use std::collections::HashMap;
use std::time::Duration;

use crate::acl::{AclUser, CommandTable};
use crate::error::{Error, Result};
use crate::spec::desired::Desired;
use crate::spec::secret::Secret;
use crate::state::db::redact;

/// Redis URL when neither `TENANTCTL_REDIS_URL` nor `[redis] url` names one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Environment variable that overrides the spec's Redis URL.
pub const REDIS_URL_ENV: &str = "TENANTCTL_REDIS_URL";

/// How long tenantctl waits for Redis to accept a connection or reply.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The Redis server and how to reach it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// The URL, which may carry a password.
    url: Secret,
    /// The URL with its password replaced by `***`, for messages.
    pub display: String,
}

impl RedisTarget {
    /// Picks the Redis URL: `TENANTCTL_REDIS_URL`, then `[redis] url`, then
    /// the default. Returns None when no tenant has a Redis ACL user, since
    /// then nothing needs the server.
    pub fn resolve(desired: &Desired) -> Result<Option<RedisTarget>> {
        let needed = desired
            .tenants
            .iter()
            .any(|tenant| tenant.cache.as_ref().is_some_and(|c| c.acl_user.is_some()));
        if !needed {
            return Ok(None);
        }
        RedisTarget::from_spec(Some(desired)).map(Some)
    }

    /// Picks the Redis URL whether or not a tenant needs it:
    /// `TENANTCTL_REDIS_URL`, then `[redis] url` of the spec, if any, then
    /// the default.
    pub fn from_spec(desired: Option<&Desired>) -> Result<RedisTarget> {
        let from_env = std::env::var(REDIS_URL_ENV)
            .ok()
            .filter(|url| !url.is_empty());
        let source = desired.and_then(|desired| Some((desired.redis_url.as_ref()?, desired)));
        let url = match (from_env, source) {
            (Some(url), _) => Secret::new(url),
            (None, Some((source, desired))) => {
                source.resolve(&desired.base_dir).map_err(|problem| {
                    Error::with_hint(
                        format!("cannot read the Redis URL ([redis] url): {problem}"),
                        format!("set it in the spec or in {REDIS_URL_ENV}"),
                    )
                })?
            }
            (None, None) => Secret::new(DEFAULT_REDIS_URL),
        };
        let display = redact(url.expose());
        redis::Client::open(url.expose()).map_err(|error| {
            Error::with_hint(
                format!("invalid Redis URL {display}: {error}"),
                "write it as redis://[USER:PASSWORD@]HOST:PORT[/DB]",
            )
        })?;
        Ok(RedisTarget { url, display })
    }

    /// Returns the URL without its password, and the password, so a child
    /// process gets the password in its environment only.
    pub fn split_password(&self) -> (String, Option<Secret>) {
        let Ok(mut parsed) = url::Url::parse(self.url.expose()) else {
            return (self.display.clone(), None);
        };
        let password = parsed
            .password()
            .map(|password| Secret::new(crate::state::db::percent_decode(password)));
        let _ = parsed.set_password(None);
        (parsed.to_string(), password)
    }

    /// Returns a client for this server; the URL was checked by `resolve`.
    pub fn client(&self) -> std::result::Result<redis::Client, String> {
        redis::Client::open(self.url.expose()).map_err(|error| self.connect_failure(error))
    }

    /// Opens one connection, waiting at most the timeout.
    pub fn connect(&self) -> std::result::Result<redis::Connection, String> {
        let connection = self
            .client()?
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|error| self.connect_failure(error))?;
        connection
            .set_read_timeout(Some(TIMEOUT))
            .and_then(|_| connection.set_write_timeout(Some(TIMEOUT)))
            .map_err(|error| self.connect_failure(error))?;
        Ok(connection)
    }

    /// Describes a failed connection, naming the server by its redacted URL.
    pub fn connect_failure(&self, error: impl std::fmt::Display) -> String {
        format!("cannot connect to Redis server {}: {error}", self.display)
    }

    /// Describes a failed command, naming the server by its redacted URL.
    pub fn command_failure(&self, command: &str, error: impl std::fmt::Display) -> String {
        format!("{command} failed on Redis server {}: {error}", self.display)
    }
}

/// The ACL users and command table of the Redis server.
#[derive(Debug, Default)]
pub struct RedisState {
    /// ACL users by name.
    pub users: HashMap<String, AclUser>,
    pub commands: CommandTable,
}

impl RedisState {
    /// Returns whether the `default` user is enabled without a password, so
    /// every client that reaches the server may run every command it allows.
    pub fn default_user_open(&self) -> bool {
        self.users
            .get("default")
            .is_some_and(|user| user.enabled && user.nopass)
    }
}

/// Reads every ACL user and the command table in one pipelined round trip.
pub fn read(target: &RedisTarget) -> std::result::Result<RedisState, String> {
    let mut connection = target.connect()?;
    let (lines, commands): (Vec<String>, redis::Value) = redis::pipe()
        .cmd("ACL")
        .arg("LIST")
        .cmd("COMMAND")
        .query(&mut connection)
        .map_err(|error| target.command_failure("ACL LIST", error))?;
    let commands = CommandTable::from_reply(&commands)
        .map_err(|error| target.command_failure("COMMAND", error))?;
    let users = lines
        .iter()
        .filter_map(|line| AclUser::parse(line))
        .map(|user| (user.name.clone(), user))
        .collect();
    Ok(RedisState { users, commands })
}
