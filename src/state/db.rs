//! PostgreSQL connections: URLs, single connections and pools.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::error::{Error, Result};

pub type PgPool = Pool<ConnectionManager<PgConnection>>;

/// A connection checked out of a [`PgPool`].
pub type PooledConnection = diesel::r2d2::PooledConnection<ConnectionManager<PgConnection>>;

/// Default control database when neither flag, environment nor spec names one.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Seconds libpq waits for a server before giving up.
const CONNECT_TIMEOUT_SECONDS: u32 = 10;

/// Statements sent to any PostgreSQL server by this process.
static STATEMENTS_SENT: AtomicU64 = AtomicU64::new(0);

/// Makes every connection opened from now on count the statements it sends
/// (a batch of several statements counts once: it is one round trip).
pub fn count_statements() {
    fn counter() -> Option<Box<dyn Instrumentation>> {
        Some(Box::new(|event: InstrumentationEvent<'_>| {
            if matches!(event, InstrumentationEvent::StartQuery { .. }) {
                STATEMENTS_SENT.fetch_add(1, Ordering::Relaxed);
            }
        }))
    }
    if let Err(error) = set_default_instrumentation(counter) {
        tracing::debug!(%error, "cannot count SQL statements");
    }
}

/// Returns the number of statements sent since [`count_statements`].
pub fn statements_sent() -> u64 {
    STATEMENTS_SENT.load(Ordering::Relaxed)
}

/// Returns a URL with its password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // libpq also takes the password as a query parameter.
            if parsed.query_pairs().any(|(key, _)| key == "password") {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let value = if key == "password" {
                            "***".into()
                        } else {
                            value
                        };
                        (key.into_owned(), value.into_owned())
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        // A URL that does not parse is shown only when it cannot hold a
        // password, which needs a `:` before an `@`.
        Err(_) if !url.contains('@') => format!("`{url}`"),
        Err(_) => "(not shown: it does not parse and may hold a password)".to_string(),
    }
}

/// Returns the URL with another database name.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let mut parsed = parse(url)?;
    parsed.set_path(&format!("/{}", utf8_percent_encode(database)));
    Ok(parsed.to_string())
}

/// Returns the URL with another user and no password, for showing how to
/// connect as that user.
pub fn with_user(url: &str, user: &str) -> Result<String> {
    let mut parsed = parse(url)?;
    let invalid = |_| Error::other(format!("cannot set a user on URL {}", redact(url)));
    parsed.set_username(user).map_err(invalid)?;
    parsed.set_password(None).map_err(invalid)?;
    Ok(parsed.to_string())
}

/// Returns the user name and password of a URL, percent-decoded.
pub fn credentials(url: &str) -> Result<(String, Option<crate::spec::secret::Secret>)> {
    let parsed = parse(url)?;
    let user = percent_decode(parsed.username());
    let password = parsed
        .password()
        .map(|password| crate::spec::secret::Secret::new(percent_decode(password)));
    Ok((user, password))
}

/// Decodes `%XX` escapes of a URL part; unlike form decoding, `+` stays `+`.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Returns the URL with another host and port.
pub fn with_host(url: &str, host: &str, port: u16) -> Result<String> {
    let mut parsed = parse(url)?;
    parsed
        .set_host(Some(host))
        .map_err(|error| Error::other(format!("invalid database host `{host}`: {error}")))?;
    parsed
        .set_port(Some(port))
        .map_err(|_| Error::other(format!("cannot set a port on URL {}", redact(url))))?;
    Ok(parsed.to_string())
}

/// Returns the host and port of a URL (port 5432 when it names none).
pub fn host_port(url: &str) -> Result<(String, u16)> {
    let parsed = parse(url)?;
    let host = parsed.host_str().unwrap_or("localhost").to_string();
    Ok((host, parsed.port().unwrap_or(5432)))
}

/// Returns the database name of a URL.
pub fn database_name(url: &str) -> Result<String> {
    let parsed = parse(url)?;
    let path = parsed.path().trim_start_matches('/');
    let name = url::form_urlencoded::parse(path.as_bytes())
        .next()
        .map(|(key, _)| key.into_owned())
        .unwrap_or_default();
    Ok(if name.is_empty() {
        parsed.username().to_string()
    } else {
        name
    })
}

fn parse(url: &str) -> Result<url::Url> {
    let parsed = url::Url::parse(url).map_err(|error| {
        Error::with_hint(
            format!("invalid PostgreSQL URL {}: {error}", redact(url)),
            "write it as postgres://USER@HOST:PORT/DATABASE",
        )
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(Error::with_hint(
            format!(
                "invalid PostgreSQL URL {}: the scheme must be postgres://",
                redact(url)
            ),
            "write it as postgres://USER@HOST:PORT/DATABASE",
        ));
    }
    Ok(parsed)
}

fn utf8_percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Adds a connect timeout and an application name to a URL, unless set.
fn with_defaults(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut full = url.to_string();
    let mut sep = separator;
    if !url.contains("connect_timeout=") {
        full.push_str(&format!("{sep}connect_timeout={CONNECT_TIMEOUT_SECONDS}"));
        sep = '&';
    }
    if !url.contains("application_name=") {
        full.push_str(&format!("{sep}application_name={}", application_name()));
    }
    full
}

/// Application name of this process's sessions, set by [`tag_sessions`].
static APPLICATION_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names this process's sessions after the control database, as
/// `tenantctl-` and 12 hex digits of a hash of its host, port and name, so
/// `apply` can tell the sessions of runs on the same control database from
/// those of runs on other control databases of the server. A URL that sets
/// its own `application_name` keeps it.
pub fn tag_sessions(control_url: &str) {
    use sha2::{Digest, Sha256};
    let Ok((host, port)) = host_port(control_url) else {
        return;
    };
    let database = database_name(control_url).unwrap_or_default();
    let digest = hex::encode(Sha256::digest(format!("{host}:{port}/{database}")));
    let _ = APPLICATION_NAME.set(format!("tenantctl-{}", &digest[..12]));
}

/// Returns the application name of this process's sessions: `tenantctl`
/// until [`tag_sessions`] runs.
pub fn application_name() -> &'static str {
    APPLICATION_NAME.get().map_or("tenantctl", String::as_str)
}

/// Opens one connection.
pub fn connect(url: &str) -> Result<PgConnection> {
    parse(url)?;
    PgConnection::establish(&with_defaults(url)).map_err(|error| Error::Connect {
        url: redact(url),
        reason: error.to_string().trim().to_string(),
    })
}

/// Resets session state when a pooled connection is handed out, so no
/// tenant's search_path, role or setting leaks into the next tenant's work.
#[derive(Debug)]
struct ResetSession;

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for ResetSession {
    fn on_acquire(&self, connection: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        diesel::sql_query("SET client_min_messages = warning")
            .execute(connection)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens a pool of up to `size` connections; the first one is opened now so
/// an unreachable server fails here with a clear message.
pub fn pool(url: &str, size: u32) -> Result<PgPool> {
    let first = connect(url)?;
    drop(first);
    let manager = ConnectionManager::<PgConnection>::new(with_defaults(url));
    Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(u64::from(CONNECT_TIMEOUT_SECONDS) + 5))
        .connection_customizer(Box::new(ResetSession))
        .build(manager)
        .map_err(|error| Error::Connect {
            url: redact(url),
            reason: error.to_string(),
        })
}

/// Checks a pooled connection out; the session is reset to its defaults.
pub fn checkout(pool: &PgPool) -> Result<PooledConnection> {
    let mut connection = pool.get().map_err(|error| Error::Connect {
        url: "(pool)".to_string(),
        reason: error.to_string(),
    })?;
    diesel::sql_query("RESET ALL")
        .execute(&mut connection)
        .map_err(Error::query("cannot reset a pooled connection"))?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_password() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=secret"),
            "postgres://u@h/db?sslmode=disable&password=***"
        );
    }

    #[test]
    fn credentials_percent_decoded() {
        let (user, password) = credentials("postgres://a%40b:p%2Bq+r@h/db").unwrap();
        assert_eq!(user, "a@b");
        assert_eq!(password.unwrap().expose(), "p+q+r");
        assert_eq!(
            with_user("postgres://u:secret@h:1/db", "admin").unwrap(),
            "postgres://admin@h:1/db"
        );
    }

    #[test]
    fn database_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/a?x=1", "b").unwrap(),
            "postgres://u@h:1/b?x=1"
        );
        assert_eq!(database_name("postgres://u@h:1/abc").unwrap(), "abc");
    }
}
