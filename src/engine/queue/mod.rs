//! Per-pool job queues with priorities and leases (DESIGN.md, "Storage adapters").
//!
//! The contract is at-least-once delivery with leases, in Redis Streams terms:
//! - [`JobQueue::enqueue`] appends a job to a pool's queue (`XADD`).
//! - A **consumer** (a worker slot, e.g. `"container-r2-s5"`) [`JobQueue::claim`]s jobs:
//!   highest priority first, FIFO within a priority (`XREADGROUP`), including jobs whose
//!   lease expired, which are redelivered (`XAUTOCLAIM`). Each claim gives a [`Lease`]
//!   that expires unless [`JobQueue::extend`]ed (a heartbeat), and bumps the job's
//!   **delivery count**.
//! - The holder of the current lease [`JobQueue::ack`]s the job when its final result is
//!   recorded (`XACK`), or [`JobQueue::release`]s it to hand it back at once (graceful
//!   shutdown, a replica stopping, an open circuit breaker).
//! - A lease that was superseded (expired and claimed by another consumer, released, or
//!   acked) is stale: its ack, extend and release are refused with
//!   [`QueueError::LeaseLost`], which names why.
//!
//! A job can thus be judged twice (a worker that outlived its lease); the store makes
//! that harmless: [`crate::engine::store::Store::record_final`] keeps the first result.
//!
//! The embedded default is [`SqliteQueue`]: durable (after `kill -9` every queued or
//! leased job is still there; leased jobs are redelivered once their lease expires, or at
//! once after [`JobQueue::recover`] at startup). A Redis Streams backend with consumer
//! groups and `XAUTOCLAIM` fits the same trait.
//!
//! # How the engine uses it, so every submission ends with exactly one final result
//!
//! - Admission: `store.insert_submission`, then `queue.enqueue(pool, job)`.
//! - Startup: `queue.recover()` (embedded, single process), then `queue.enqueue` for every
//!   `store.unfinished_submissions()` — idempotent, so only jobs lost between the two writes
//!   of an admission are added.
//! - A worker slot: `claim` → `store.mark_judging` (false: already done → `ack` and move
//!   on) → `extend` every lease/3 while judging → `store.record_test` per test →
//!   `store.record_final` → `ack`. On [`QueueError::LeaseLost`] it stops work on that job.
//! - Stopping a replica or an open circuit breaker: `release` (and `store.mark_queued`).
//! - A job that keeps killing its worker comes back with a growing
//!   [`Lease::delivery_count`]; past a limit the worker should record a final IE result
//!   instead of judging it again (a poison job must not loop forever).

mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::engine::clock::{Clock, SystemClock};
pub use crate::engine::model::{Priority, QueueDepth};

pub use sqlite::SqliteQueue;

/// Errors of a [`JobQueue`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease is no longer the job's current lease; the caller must stop acting on the job
    /// (its result, if recorded, stands; another delivery will finish it otherwise).
    #[error("lease on job {job_id} (delivery {delivery_count}, consumer {consumer}) is no longer held: {reason}")]
    LeaseLost {
        /// The job.
        job_id: JobId,
        /// The stale lease's delivery count.
        delivery_count: u32,
        /// The stale lease's consumer.
        consumer: String,
        /// Why, e.g. "the job was redelivered to consumer w2 (delivery 2)".
        reason: String,
    },
    /// An argument is out of range (an empty pool or consumer name, a zero lease).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The backend failed; `context` says during what.
    #[error("queue backend error while {context}: {source}")]
    Backend {
        /// The operation, e.g. `"claiming from pool container"`.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl QueueError {
    /// A [`QueueError::Backend`] with `context`.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        QueueError::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Result of queue operations.
pub type QueueResult<T> = Result<T, QueueError>;

/// A job's id within its queue: opaque text (a row id for SQLite, a stream entry id such as
/// `"1526919030474-55"` for Redis Streams).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub String);

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One unit of work: judge this submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The submission to judge (its id in the store).
    pub submission_id: String,
    /// Queue priority: `high` before `normal` before `low`.
    pub priority: Priority,
    /// When it was enqueued (the first time, if it was enqueued again idempotently).
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
}

/// A consumer's claim on a job until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job's id.
    pub job_id: JobId,
    /// The pool whose queue holds the job.
    pub pool: String,
    /// The job.
    pub job: Job,
    /// Who holds the lease.
    pub consumer: String,
    /// Deliveries of this job so far, this one included (1 on the first claim; above 1
    /// after a redelivery). Together with `job_id` it identifies this lease.
    pub delivery_count: u32,
    /// When the lease lapses unless extended; afterwards the job may be redelivered.
    pub expires_at: OffsetDateTime,
}

/// Per-pool queues of jobs with priorities, leases, ack and redelivery. `Send + Sync`,
/// shared as `Arc<dyn JobQueue>`. Pools need no declaration: a pool's queue exists once a
/// job is enqueued to it.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Appends `job` to `pool`'s queue. Idempotent per (pool, submission): while a job for
    /// the same submission is in that queue (waiting or leased), nothing is added and its id
    /// is returned, so the engine can re-enqueue every unfinished submission at startup.
    /// Errors: [`QueueError::Invalid`] for an empty pool name or submission id.
    async fn enqueue(&self, pool: &str, job: Job) -> QueueResult<JobId>;

    /// Leases up to `max` jobs of `pool` to `consumer` for `lease`: waiting jobs and jobs
    /// whose lease expired, highest priority first, FIFO (enqueue order) within a priority.
    /// Each returned job's delivery count is one more than before. Two claims never receive
    /// the same job while its lease is live. Returns an empty list when nothing is ready.
    /// Errors: [`QueueError::Invalid`] for an empty consumer name or a zero `lease`.
    async fn claim(
        &self,
        pool: &str,
        consumer: &str,
        max: usize,
        lease: Duration,
    ) -> QueueResult<Vec<Lease>>;

    /// Heartbeat: the lease now expires `by` after now. Returns the renewed lease. A lease
    /// that expired but was not yet claimed by anyone else can still be extended.
    /// Errors: [`QueueError::LeaseLost`] when the lease is stale.
    async fn extend(&self, lease: &Lease, by: Duration) -> QueueResult<Lease>;

    /// The job is done (its final result is recorded): removes it from the queue.
    /// Errors: [`QueueError::LeaseLost`] when the lease is stale (redelivered to another
    /// consumer, released, or acked already): the caller's ack is refused.
    async fn ack(&self, lease: &Lease) -> QueueResult<()>;

    /// Hands the job back at once (it becomes claimable again at its original place in the
    /// queue, keeping its delivery count).
    /// Errors: [`QueueError::LeaseLost`] when the lease is stale.
    async fn release(&self, lease: &Lease) -> QueueResult<()>;

    /// Hands back every job `consumer` holds in `pool` (a replica stopping without its
    /// slots' lease objects at hand). Returns how many.
    async fn release_consumer(&self, pool: &str, consumer: &str) -> QueueResult<u64>;

    /// Startup recovery for a queue only this process consumes (the embedded default):
    /// every lease, of any pool, is handed back at once, since their holders died with the
    /// previous process. Returns how many. Do not call it while other processes consume the
    /// same queues; their leases would be broken (they then lose them at ack).
    async fn recover(&self) -> QueueResult<u64>;

    /// Jobs of `pool` waiting to be claimed, per priority (jobs with an expired lease count
    /// as waiting; live leases do not).
    async fn depth(&self, pool: &str) -> QueueResult<QueueDepth>;

    /// Jobs of `pool` under a live lease.
    async fn in_flight(&self, pool: &str) -> QueueResult<u64>;
}

/// Opens (creating if needed) the SQLite queue at `path` with the system clock: WAL mode,
/// busy timeout 5 s, migrations applied. Give it its own file (e.g. `<data>/queue.db`), not
/// the store's: each file carries one schema version.
/// Errors: [`QueueError::Backend`] when the file cannot be opened or migrated.
pub fn open_sqlite(path: &Path) -> QueueResult<SqliteQueue> {
    SqliteQueue::open(path, Arc::new(SystemClock))
}

/// [`open_sqlite`] with an injected clock (tests).
pub fn open_sqlite_with_clock(path: &Path, clock: Arc<dyn Clock>) -> QueueResult<SqliteQueue> {
    SqliteQueue::open(path, clock)
}

#[cfg(test)]
mod tests;
