//! The advisory lock that keeps two applies from running at once.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use crate::error::{Error, Result};
use crate::state::db;
use crate::state::registry::APPLY_LOCK_KEY;

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Nullable<Integer>)]
    pid: Option<i32>,
}

/// Holds the apply lock for as long as its connection lives.
pub struct ApplyLock {
    connection: PgConnection,
}

impl ApplyLock {
    /// Takes the lock, waiting up to `timeout` for another apply to finish.
    /// Calls `on_wait` once with the other holder's pid when it has to wait.
    pub fn acquire(
        mut connection: PgConnection,
        timeout: Duration,
        on_wait: impl FnOnce(Option<i32>),
    ) -> Result<ApplyLock> {
        let started = Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            let taken: bool = diesel::select(
                diesel::dsl::sql::<Bool>("pg_try_advisory_lock(")
                    .bind::<BigInt, _>(APPLY_LOCK_KEY)
                    .sql(")"),
            )
            .get_result(&mut connection)
            .map_err(Error::query("cannot take the apply lock"))?;
            if taken {
                return Ok(ApplyLock { connection });
            }
            if let Some(callback) = on_wait.take() {
                callback(holder_pid(&mut connection));
            }
            if started.elapsed() >= timeout {
                let holder = holder_pid(&mut connection)
                    .map(|pid| format!(", held by server process {pid}"))
                    .unwrap_or_default();
                return Err(Error::with_hint(
                    format!(
                        "timed out after {} waiting for the tenantctl apply lock (pg_advisory_lock({APPLY_LOCK_KEY}) in the control database){holder}",
                        humantime::format_duration(timeout)
                    ),
                    "another apply is running: wait for it to finish, or raise --lock-timeout",
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits, up to `timeout`, until no other tenantctl session working for
    /// this control database is running a statement or has a transaction
    /// open. Their application name (see [`db::tag_sessions`]) shows which
    /// control database a session works for.
    ///
    /// A killed apply releases the lock as soon as its lock connection
    /// closes, but PostgreSQL finishes a statement the killed client had
    /// sent (a CREATE DATABASE, a migration) before it notices the client is
    /// gone. Planning while such a statement runs would plan it again. Only
    /// sessions visible to the connecting role are seen, which includes
    /// every session of that role.
    pub fn wait_for_leftovers(
        &mut self,
        timeout: Duration,
        on_wait: impl FnOnce(i64),
    ) -> Result<()> {
        let started = Instant::now();
        let mut on_wait = Some(on_wait);
        loop {
            let busy: i64 = diesel::select(
                diesel::dsl::sql::<BigInt>(
                    "(SELECT count(*) FROM pg_stat_activity WHERE application_name = ",
                )
                .bind::<Text, _>(db::application_name())
                .sql(
                    " AND pid <> pg_backend_pid() \
                     AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)') \
                     AND query NOT LIKE '%pg_try_advisory_lock%')",
                ),
            )
            .get_result(&mut self.connection)
            .map_err(Error::query("cannot read pg_stat_activity"))?;
            if busy == 0 {
                return Ok(());
            }
            if let Some(callback) = on_wait.take() {
                callback(busy);
            }
            if started.elapsed() >= timeout {
                return Err(Error::with_hint(
                    format!(
                        "timed out after {} waiting for {busy} statements of an interrupted tenantctl run to finish",
                        humantime::format_duration(timeout)
                    ),
                    format!(
                        "look for sessions with application_name = '{}' in pg_stat_activity, or raise --lock-timeout",
                        db::application_name()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Releases the lock (closing the connection would release it too).
    pub fn release(mut self) {
        let _ = diesel::select(
            diesel::dsl::sql::<Bool>("pg_advisory_unlock(")
                .bind::<BigInt, _>(APPLY_LOCK_KEY)
                .sql(")"),
        )
        .get_result::<bool>(&mut self.connection);
    }
}

fn holder_pid(connection: &mut PgConnection) -> Option<i32> {
    // pg_locks splits a bigint advisory key into classid (high 32 bits) and
    // objid (low 32 bits), with objsubid 1.
    let high = (APPLY_LOCK_KEY >> 32) as i32;
    let low = (APPLY_LOCK_KEY & 0xffff_ffff) as i32;
    diesel::sql_query(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid::int = $1 AND objid::bigint = ($2::bigint & 4294967295) AND objsubid = 1 LIMIT 1",
    )
    .bind::<Integer, _>(high)
    .bind::<BigInt, _>(i64::from(low))
    .get_result::<Holder>(connection)
    .ok()
    .and_then(|holder| holder.pid)
}
