//! The advisory lock that keeps two applies from running at once.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable};

use crate::error::{Error, Result};
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
