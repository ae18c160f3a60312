//! [`JobQueue`] on a SQLite file: the embedded, durable default.
//!
//! One table holds every pool's jobs. A job is waiting when it has no lease or its lease
//! expired (`lease_until_ms <= now`), leased otherwise. Every call is one IMMEDIATE
//! transaction on one connection, so concurrent claims are serialized and never hand out
//! the same job twice while its lease is live. Row ids come from AUTOINCREMENT and are
//! never reused, so a stale lease can never match a later job.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::*;
use crate::engine::clock::{duration_ms, from_ms, to_ms};
use crate::engine::store::sqlite_conn::{Db, DbError};

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE jobs (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        pool           TEXT NOT NULL,
        submission_id  TEXT NOT NULL,
        priority       INTEGER NOT NULL CHECK (priority IN (0, 1, 2)),  -- 0 high, 1 normal, 2 low
        enqueued_at_ms INTEGER NOT NULL,
        consumer       TEXT,
        lease_until_ms INTEGER,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        CHECK ((consumer IS NULL) = (lease_until_ms IS NULL)),
        UNIQUE (pool, submission_id)
    );
    CREATE INDEX jobs_order ON jobs(pool, priority, id);
    CREATE INDEX jobs_leased ON jobs(pool, lease_until_ms) WHERE lease_until_ms IS NOT NULL;
    "#,
];

/// The SQLite [`JobQueue`]. Cheap to clone (one shared connection).
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    /// The connection, used on tokio's blocking threads.
    pub(super) db: Db,
    /// Source of "now" for lease expiry.
    clock: Arc<dyn Clock>,
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        QueueError::backend("using the SQLite queue", e)
    }
}

/// Maps a rusqlite error to [`QueueError::Backend`] with `context`.
fn be(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> QueueError {
    let context = context.into();
    move |e| QueueError::backend(context, e)
}

fn rank(p: Priority) -> i64 {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
        Priority::Low => 2,
    }
}

fn from_rank(r: i64) -> Option<Priority> {
    match r {
        0 => Some(Priority::High),
        1 => Some(Priority::Normal),
        2 => Some(Priority::Low),
        _ => None,
    }
}

fn row_id(job_id: &JobId) -> QueueResult<i64> {
    job_id.0.parse().map_err(|_| {
        QueueError::Invalid(format!("job id {job_id:?} is not one of this queue's ids"))
    })
}

fn nonempty(what: &str, value: &str) -> QueueResult<()> {
    if value.is_empty() {
        return Err(QueueError::Invalid(format!("{what} must not be empty")));
    }
    Ok(())
}

/// Why `lease` no longer matches its job's row (called after a guarded write changed
/// nothing).
fn lease_lost(tx: &Transaction<'_>, lease: &Lease, id: i64, now: i64) -> QueueResult<QueueError> {
    let row: Option<(Option<String>, Option<i64>, u32)> = tx
        .prepare_cached("SELECT consumer, lease_until_ms, delivery_count FROM jobs WHERE id = ?1")
        .and_then(|mut st| {
            st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(be(format!("reading job {id}")))?;
    let reason = match row {
        None => "the job is no longer queued (it was acked)".to_string(),
        Some((_, None, count)) if count == lease.delivery_count => {
            "the lease was released and the job waits to be claimed again".to_string()
        }
        Some((_, None, count)) => {
            format!("the job was redelivered (delivery {count}) and released since")
        }
        Some((Some(consumer), Some(until), count)) => {
            let live = if until > now { "live" } else { "expired" };
            format!(
                "the job was redelivered to consumer {consumer} (delivery {count}, lease {live})"
            )
        }
        Some((None, Some(_), count)) => {
            format!("the job is in an inconsistent state (delivery {count})")
        }
    };
    Ok(QueueError::LeaseLost {
        job_id: lease.job_id.clone(),
        delivery_count: lease.delivery_count,
        consumer: lease.consumer.clone(),
        reason,
    })
}

impl SqliteQueue {
    /// Opens and migrates the queue at `path`; see [`open_sqlite`].
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> QueueResult<SqliteQueue> {
        let db = Db::open(path, MIGRATIONS)
            .map_err(|e| QueueError::backend(format!("opening the queue {}", path.display()), e))?;
        Ok(SqliteQueue { db, clock })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Runs `f` in one IMMEDIATE transaction on a blocking thread with the clock's now (ms).
    async fn write<T, F>(&self, context: String, f: F) -> QueueResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, i64) -> QueueResult<T> + Send + 'static,
    {
        let now = self.clock.now_ms();
        self.db.write(context, move |tx| f(tx, now)).await
    }

    /// Runs a write guarded by `lease` (`sql` binds ?1 = row id, ?2 = delivery count,
    /// ?3 = consumer, and ?4 = now + `extend_ms` when given); refuses a stale lease with
    /// [`QueueError::LeaseLost`]. Returns the new expiry (ms), or now without `extend_ms`.
    async fn guarded(
        &self,
        lease: &Lease,
        what: &'static str,
        sql: &'static str,
        extend_ms: Option<i64>,
    ) -> QueueResult<i64> {
        let id = row_id(&lease.job_id)?;
        let lease = lease.clone();
        self.write(format!("{what} job {id}"), move |tx, now| {
            let value = extend_ms.map(|v| now.saturating_add(v));
            let changed = tx
                .prepare_cached(sql)
                .and_then(|mut st| match value {
                    Some(v) => st.execute(params![id, lease.delivery_count, lease.consumer, v]),
                    None => st.execute(params![id, lease.delivery_count, lease.consumer]),
                })
                .map_err(be(format!("{what} job {id}")))?;
            if changed == 0 {
                return Err(lease_lost(tx, &lease, id, now)?);
            }
            Ok(value.unwrap_or(now))
        })
        .await
    }
}

#[async_trait]
impl JobQueue for SqliteQueue {
    async fn enqueue(&self, pool: &str, job: Job) -> QueueResult<JobId> {
        nonempty("pool name", pool)?;
        nonempty("submission id", &job.submission_id)?;
        let pool = pool.to_string();
        self.write(format!("enqueuing submission {} to pool {pool}", job.submission_id), move |tx, _now| {
            let ctx = || format!("enqueuing submission {} to pool {pool}", job.submission_id);
            tx.prepare_cached(
                "INSERT INTO jobs (pool, submission_id, priority, enqueued_at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(pool, submission_id) DO NOTHING",
            )
            .and_then(|mut st| st.execute(params![pool, job.submission_id, rank(job.priority), to_ms(job.enqueued_at)]))
            .map_err(be(ctx()))?;
            let id: i64 = tx
                .prepare_cached("SELECT id FROM jobs WHERE pool = ?1 AND submission_id = ?2")
                .and_then(|mut st| st.query_row(params![pool, job.submission_id], |r| r.get(0)))
                .map_err(be(ctx()))?;
            Ok(JobId(id.to_string()))
        })
        .await
    }

    async fn claim(
        &self,
        pool: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> QueueResult<Vec<Lease>> {
        nonempty("consumer name", consumer)?;
        let lease_ms = duration_ms(lease);
        if lease_ms <= 0 {
            return Err(QueueError::Invalid(
                "a lease must last at least 1 ms".into(),
            ));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let (pool, consumer) = (pool.to_string(), consumer.to_string());
        self.write(format!("claiming from pool {pool}"), move |tx, now| {
            let ctx = || format!("claiming from pool {pool}");
            let until = now.saturating_add(lease_ms);
            let ready: Vec<(i64, String, i64, i64, u32)> = tx
                .prepare_cached(
                    "SELECT id, submission_id, priority, enqueued_at_ms, delivery_count FROM jobs \
                     WHERE pool = ?1 AND (lease_until_ms IS NULL OR lease_until_ms <= ?2) \
                     ORDER BY priority, id LIMIT ?3",
                )
                .and_then(|mut st| {
                    st.query_map(params![pool, now, i64::try_from(max).unwrap_or(i64::MAX)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect()
                })
                .map_err(be(ctx()))?;
            let mut update = tx
                .prepare_cached(
                    "UPDATE jobs SET consumer = ?2, lease_until_ms = ?3, delivery_count = delivery_count + 1 \
                     WHERE id = ?1",
                )
                .map_err(be(ctx()))?;
            let mut leases = Vec::with_capacity(ready.len());
            for (id, submission_id, priority, enqueued_at_ms, count) in ready {
                update.execute(params![id, consumer, until]).map_err(be(ctx()))?;
                let priority = from_rank(priority)
                    .ok_or_else(|| QueueError::backend(ctx(), format!("job {id} has unknown priority {priority}")))?;
                leases.push(Lease {
                    job_id: JobId(id.to_string()),
                    pool: pool.clone(),
                    job: Job { submission_id, priority, enqueued_at: from_ms(enqueued_at_ms) },
                    consumer: consumer.clone(),
                    delivery_count: count.saturating_add(1),
                    expires_at: from_ms(until),
                });
            }
            Ok(leases)
        })
        .await
    }

    async fn extend(&self, lease: &Lease, by: Duration) -> QueueResult<Lease> {
        let by_ms = duration_ms(by);
        if by_ms <= 0 {
            return Err(QueueError::Invalid(
                "a lease must last at least 1 ms".into(),
            ));
        }
        let until = self
            .guarded(
                lease,
                "extending the lease on",
                "UPDATE jobs SET lease_until_ms = ?4 \
                 WHERE id = ?1 AND delivery_count = ?2 AND consumer = ?3 AND lease_until_ms IS NOT NULL",
                Some(by_ms),
            )
            .await?;
        Ok(Lease {
            expires_at: from_ms(until),
            ..lease.clone()
        })
    }

    async fn ack(&self, lease: &Lease) -> QueueResult<()> {
        self.guarded(
            lease,
            "acking",
            "DELETE FROM jobs WHERE id = ?1 AND delivery_count = ?2 AND consumer = ?3 \
             AND lease_until_ms IS NOT NULL",
            None,
        )
        .await
        .map(drop)
    }

    async fn release(&self, lease: &Lease) -> QueueResult<()> {
        self.guarded(
            lease,
            "releasing",
            "UPDATE jobs SET consumer = NULL, lease_until_ms = NULL WHERE id = ?1 AND delivery_count = ?2 \
             AND consumer = ?3 AND lease_until_ms IS NOT NULL",
            None,
        )
        .await
        .map(drop)
    }

    async fn release_consumer(&self, pool: &str, consumer: &str) -> QueueResult<u64> {
        let (pool, consumer) = (pool.to_string(), consumer.to_string());
        self.write(format!("releasing the jobs of consumer {consumer}"), move |tx, _now| {
            tx.prepare_cached(
                "UPDATE jobs SET consumer = NULL, lease_until_ms = NULL WHERE pool = ?1 AND consumer = ?2",
            )
            .and_then(|mut st| st.execute(params![pool, consumer]))
            .map(|n| n as u64)
            .map_err(be(format!("releasing the jobs of consumer {consumer}")))
        })
        .await
    }

    async fn recover(&self) -> QueueResult<u64> {
        self.write("recovering leases".into(), |tx, _now| {
            tx.prepare_cached(
                "UPDATE jobs SET consumer = NULL, lease_until_ms = NULL WHERE lease_until_ms IS NOT NULL",
            )
            .and_then(|mut st| st.execute([]))
            .map(|n| n as u64)
            .map_err(be("recovering leases"))
        })
        .await
    }

    async fn depth(&self, pool: &str) -> QueueResult<QueueDepth> {
        let pool = pool.to_string();
        let now = self.clock.now_ms();
        self.db
            .call(move |conn: &mut Connection| {
                let ctx = || format!("measuring the depth of pool {pool}");
                let rows: Vec<(i64, u64)> = conn
                    .prepare_cached(
                        "SELECT priority, count(*) FROM jobs \
                         WHERE pool = ?1 AND (lease_until_ms IS NULL OR lease_until_ms <= ?2) GROUP BY priority",
                    )
                    .and_then(|mut st| st.query_map(params![pool, now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                    .map_err(be(ctx()))?;
                let mut depth = QueueDepth::default();
                for (priority, n) in rows {
                    match from_rank(priority) {
                        Some(Priority::High) => depth.high = n,
                        Some(Priority::Normal) => depth.normal = n,
                        Some(Priority::Low) => depth.low = n,
                        None => return Err(QueueError::backend(ctx(), format!("unknown priority {priority}"))),
                    }
                }
                Ok(depth)
            })
            .await
    }

    async fn in_flight(&self, pool: &str) -> QueueResult<u64> {
        let pool = pool.to_string();
        let now = self.clock.now_ms();
        self.db
            .call(move |conn: &mut Connection| {
                conn.prepare_cached(
                    "SELECT count(*) FROM jobs WHERE pool = ?1 AND lease_until_ms > ?2",
                )
                .and_then(|mut st| st.query_row(params![pool, now], |r| r.get(0)))
                .map_err(be(format!("counting jobs in flight in pool {pool}")))
            })
            .await
    }
}
