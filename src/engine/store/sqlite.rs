//! [`Store`] on one SQLite file (rusqlite, WAL mode, versioned migrations).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{named_params, params, Connection, OptionalExtension, Row};

use super::sqlite_conn::{Db, DbError};
use super::*;
use crate::engine::clock::{from_ms, to_ms};

/// Schema migrations, applied in order; `PRAGMA user_version` counts the applied ones.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('contestant', 'admin')),
        trust         TEXT NOT NULL CHECK (trust IN ('standard', 'verified')),
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        id            INTEGER PRIMARY KEY,
        token_hash    TEXT NOT NULL UNIQUE,
        user          TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        label         TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX tokens_user ON tokens(user);

    -- seq orders submissions by insertion; id is the public UUID.
    CREATE TABLE submissions (
        seq             INTEGER PRIMARY KEY,
        id              TEXT NOT NULL UNIQUE,
        user            TEXT NOT NULL,
        problem         TEXT NOT NULL,
        language        TEXT NOT NULL,
        pool            TEXT NOT NULL,
        priority        TEXT NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
        source_key      TEXT NOT NULL,
        idempotency_key TEXT,
        state           TEXT NOT NULL CHECK (state IN ('queued', 'judging', 'done')),
        submitted_at_ms INTEGER NOT NULL,
        started_at_ms   INTEGER,
        finished_at_ms  INTEGER,
        attempts        INTEGER NOT NULL DEFAULT 0,
        result_json     TEXT,
        CHECK ((state = 'done') = (result_json IS NOT NULL)),
        UNIQUE (user, idempotency_key)
    );
    CREATE INDEX submissions_state ON submissions(state, seq);
    CREATE INDEX submissions_user ON submissions(user, seq);

    CREATE TABLE test_results (
        submission_id TEXT NOT NULL REFERENCES submissions(id) ON DELETE CASCADE,
        idx           INTEGER NOT NULL,
        result_json   TEXT NOT NULL,
        PRIMARY KEY (submission_id, idx)
    ) WITHOUT ROWID;

    CREATE TABLE problems (
        id                 TEXT PRIMARY KEY,
        name               TEXT NOT NULL,
        problem_type       TEXT NOT NULL,
        time_limit_ms      INTEGER NOT NULL,
        memory_limit_bytes INTEGER NOT NULL,
        test_count         INTEGER NOT NULL,
        location           TEXT NOT NULL,
        updated_at_ms      INTEGER NOT NULL
    );

    CREATE TABLE scaling_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms         INTEGER NOT NULL,
        pool          TEXT NOT NULL,
        from_replicas INTEGER NOT NULL,
        to_replicas   INTEGER NOT NULL,
        rule          TEXT NOT NULL,
        value         REAL NOT NULL,
        ok            INTEGER NOT NULL,
        error         TEXT
    );
    CREATE INDEX scaling_events_at ON scaling_events(at_ms, id);

    -- pool '' means "no pool", so the partial unique index covers pool-less alerts too.
    CREATE TABLE alerts (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        rule           TEXT NOT NULL,
        pool           TEXT NOT NULL,
        severity       TEXT NOT NULL CHECK (severity IN ('warning', 'critical')),
        state          TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
        message        TEXT NOT NULL,
        value          REAL NOT NULL,
        since_ms       INTEGER NOT NULL,
        updated_at_ms  INTEGER NOT NULL,
        resolved_at_ms INTEGER
    );
    CREATE UNIQUE INDEX alerts_open ON alerts(rule, pool) WHERE state IN ('pending', 'firing');
    CREATE INDEX alerts_since ON alerts(since_ms, id);
    "#,
];

/// The SQLite [`Store`]. Cheap to clone (one shared connection).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The connection, used on tokio's blocking threads.
    pub(super) db: Db,
    /// Source of every "now" the store stamps.
    clock: Arc<dyn Clock>,
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        StoreError::backend("using the SQLite store", e)
    }
}

/// Maps a rusqlite error to [`StoreError::Backend`] with `context`.
fn be(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let context = context.into();
    move |e| StoreError::backend(context, e)
}

impl SqliteStore {
    /// Opens and migrates the store at `path`; see [`open_sqlite`].
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> StoreResult<SqliteStore> {
        let db = Db::open(path, MIGRATIONS)
            .map_err(|e| StoreError::backend(format!("opening the store {}", path.display()), e))?;
        Ok(SqliteStore { db, clock })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Runs `f` inside one IMMEDIATE transaction on a blocking thread (the write lock is
    /// taken at BEGIN, so read-then-write sequences cannot interleave with another writer).
    async fn write<T, F>(&self, context: String, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, i64) -> StoreResult<T> + Send + 'static,
    {
        let now = self.clock.now_ms();
        self.db.write(context, move |tx| f(tx, now)).await
    }

    /// Runs the read-only `f` on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.db.call(move |conn: &mut Connection| f(conn)).await
    }
}

// --- row mapping ---------------------------------------------------------------------------

const SUBMISSION_COLUMNS: &str =
    "id, user, problem, language, pool, priority, source_key, idempotency_key, \
     state, submitted_at_ms, started_at_ms, finished_at_ms, attempts, result_json";

pub(crate) fn priority_str(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

pub(crate) fn parse_priority(s: &str) -> Option<Priority> {
    match s {
        "high" => Some(Priority::High),
        "normal" => Some(Priority::Normal),
        "low" => Some(Priority::Low),
        _ => None,
    }
}

/// A text column that did not parse into its enum.
fn bad_column(idx: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        format!("unexpected {what} {value:?} in the database").into(),
    )
}

fn json_column<T: serde::de::DeserializeOwned>(idx: usize, text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn submission_from_row(row: &Row<'_>) -> rusqlite::Result<Submission> {
    let priority: String = row.get(5)?;
    let state: String = row.get(8)?;
    let result: Option<String> = row.get(13)?;
    Ok(Submission {
        id: row.get(0)?,
        user: row.get(1)?,
        problem: row.get(2)?,
        language: row.get(3)?,
        pool: row.get(4)?,
        priority: parse_priority(&priority).ok_or_else(|| bad_column(5, "priority", &priority))?,
        source_key: row.get(6)?,
        idempotency_key: row.get(7)?,
        state: state.parse().map_err(|_| bad_column(8, "state", &state))?,
        submitted_at: from_ms(row.get(9)?),
        started_at: row.get::<_, Option<i64>>(10)?.map(from_ms),
        finished_at: row.get::<_, Option<i64>>(11)?.map(from_ms),
        attempts: row.get(12)?,
        result: result.as_deref().map(|t| json_column(13, t)).transpose()?,
    })
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(1)?;
    let trust: String = row.get(2)?;
    Ok(User {
        name: row.get(0)?,
        role: role.parse().map_err(|_| bad_column(1, "role", &role))?,
        trust: trust.parse().map_err(|_| bad_column(2, "trust", &trust))?,
    })
}

const PROBLEM_COLUMNS: &str =
    "id, name, problem_type, time_limit_ms, memory_limit_bytes, test_count, location, updated_at_ms";

fn problem_from_row(row: &Row<'_>) -> rusqlite::Result<ProblemMeta> {
    Ok(ProblemMeta {
        id: row.get(0)?,
        name: row.get(1)?,
        problem_type: row.get(2)?,
        time_limit_ms: row.get(3)?,
        memory_limit_bytes: row.get(4)?,
        test_count: row.get(5)?,
        location: row.get(6)?,
        updated_at: from_ms(row.get(7)?),
    })
}

const SCALING_COLUMNS: &str = "id, at_ms, pool, from_replicas, to_replicas, rule, value, ok, error";

fn scaling_from_row(row: &Row<'_>) -> rusqlite::Result<ScalingEvent> {
    Ok(ScalingEvent {
        id: row.get(0)?,
        at: rfc3339(from_ms(row.get(1)?)),
        pool: row.get(2)?,
        from: row.get(3)?,
        to: row.get(4)?,
        rule: row.get(5)?,
        value: row.get(6)?,
        ok: row.get(7)?,
        error: row.get(8)?,
    })
}

fn severity_str(s: Severity) -> &'static str {
    match s {
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn alert_state_str(s: AlertState) -> &'static str {
    match s {
        AlertState::Pending => "pending",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    }
}

const ALERT_COLUMNS: &str =
    "id, rule, pool, severity, state, message, value, since_ms, resolved_at_ms";

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<Alert> {
    let pool: String = row.get(2)?;
    let severity: String = row.get(3)?;
    let state: String = row.get(4)?;
    Ok(Alert {
        id: row.get(0)?,
        rule: row.get(1)?,
        pool: (!pool.is_empty()).then_some(pool),
        severity: match severity.as_str() {
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return Err(bad_column(3, "severity", &severity)),
        },
        state: match state.as_str() {
            "pending" => AlertState::Pending,
            "firing" => AlertState::Firing,
            "resolved" => AlertState::Resolved,
            _ => return Err(bad_column(4, "alert state", &state)),
        },
        message: row.get(5)?,
        value: row.get(6)?,
        since: rfc3339(from_ms(row.get(7)?)),
        resolved_at: row.get::<_, Option<i64>>(8)?.map(|ms| rfc3339(from_ms(ms))),
    })
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn get_submission_tx(conn: &Connection, id: &str) -> StoreResult<Option<Submission>> {
    conn.prepare_cached(&format!(
        "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE id = ?1"
    ))
    .and_then(|mut st| st.query_row([id], submission_from_row).optional())
    .map_err(be(format!("reading submission {id}")))
}

/// The state of submission `id`, or [`StoreError::NotFound`].
fn submission_state(conn: &Connection, id: &str) -> StoreResult<SubmissionState> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM submissions WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
        .map_err(be(format!("reading the state of submission {id}")))?;
    let state = state.ok_or_else(|| StoreError::NotFound {
        what: format!("submission {id}"),
    })?;
    state
        .parse()
        .map_err(|e: String| StoreError::backend(format!("reading submission {id}"), e))
}

fn to_json<T: Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::backend(format!("encoding {what}"), e))
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_submission(&self, new: &NewSubmission) -> StoreResult<InsertOutcome> {
        let new = new.clone();
        self.write(format!("inserting submission {}", new.id), move |tx, now| {
            if let Some(key) = &new.idempotency_key {
                let earlier: Option<Submission> = tx
                    .prepare_cached(&format!(
                        "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE user = ?1 AND idempotency_key = ?2"
                    ))
                    .and_then(|mut st| st.query_row(params![new.user, key], submission_from_row).optional())
                    .map_err(be("looking up an idempotency key"))?;
                if let Some(earlier) = earlier {
                    return Ok(InsertOutcome::Duplicate(earlier));
                }
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO submissions (id, user, problem, language, pool, priority, source_key, \
                     idempotency_key, state, submitted_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9) ON CONFLICT(id) DO NOTHING",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        new.id,
                        new.user,
                        new.problem,
                        new.language,
                        new.pool,
                        priority_str(new.priority),
                        new.source_key,
                        new.idempotency_key,
                        now
                    ])
                })
                .map_err(be(format!("inserting submission {}", new.id)))?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!("submission id {} exists already", new.id)));
            }
            Ok(InsertOutcome::Created(Submission {
                id: new.id,
                user: new.user,
                problem: new.problem,
                language: new.language,
                pool: new.pool,
                priority: new.priority,
                source_key: new.source_key,
                idempotency_key: new.idempotency_key,
                state: SubmissionState::Queued,
                submitted_at: from_ms(now),
                started_at: None,
                finished_at: None,
                attempts: 0,
                result: None,
            }))
        })
        .await
    }

    async fn get_submission(&self, id: &str) -> StoreResult<Submission> {
        let id = id.to_string();
        self.read(move |conn| {
            get_submission_tx(conn, &id)?.ok_or_else(|| StoreError::NotFound {
                what: format!("submission {id}"),
            })
        })
        .await
    }

    async fn find_by_idempotency_key(
        &self,
        user: &str,
        key: &str,
    ) -> StoreResult<Option<Submission>> {
        let (user, key) = (user.to_string(), key.to_string());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE user = ?1 AND idempotency_key = ?2"
            ))
            .and_then(|mut st| st.query_row(params![user, key], submission_from_row).optional())
            .map_err(be("looking up an idempotency key"))
        })
        .await
    }

    async fn recent_submissions(
        &self,
        limit: usize,
        user: Option<&str>,
    ) -> StoreResult<Vec<Submission>> {
        let user = user.map(str::to_string);
        self.read(move |conn| {
            let rows = match &user {
                Some(u) => conn
                    .prepare_cached(&format!(
                        "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE user = ?1 ORDER BY seq DESC LIMIT ?2"
                    ))
                    .and_then(|mut st| st.query_map(params![u, limit_i64(limit)], submission_from_row)?.collect()),
                None => conn
                    .prepare_cached(&format!("SELECT {SUBMISSION_COLUMNS} FROM submissions ORDER BY seq DESC LIMIT ?1"))
                    .and_then(|mut st| st.query_map([limit_i64(limit)], submission_from_row)?.collect()),
            };
            rows.map_err(be("listing recent submissions"))
        })
        .await
    }

    async fn unfinished_submissions(&self) -> StoreResult<Vec<Submission>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {SUBMISSION_COLUMNS} FROM submissions WHERE state IN ('queued', 'judging') ORDER BY seq"
            ))
            .and_then(|mut st| st.query_map([], submission_from_row)?.collect())
            .map_err(be("listing unfinished submissions"))
        })
        .await
    }

    async fn mark_judging(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(format!("marking submission {id} judging"), move |tx, now| {
            if submission_state(tx, &id)? == SubmissionState::Done {
                return Ok(false);
            }
            tx.prepare_cached("DELETE FROM test_results WHERE submission_id = ?1")
                .and_then(|mut st| st.execute([&id]))
                .map_err(be(format!("clearing test results of submission {id}")))?;
            tx.prepare_cached(
                "UPDATE submissions SET state = 'judging', started_at_ms = ?2, attempts = attempts + 1 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, now]))
            .map_err(be(format!("marking submission {id} judging")))?;
            Ok(true)
        })
        .await
    }

    async fn mark_queued(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(
            format!("marking submission {id} queued"),
            move |tx, _now| {
                if submission_state(tx, &id)? == SubmissionState::Done {
                    return Ok(false);
                }
                tx.prepare_cached("UPDATE submissions SET state = 'queued' WHERE id = ?1")
                    .and_then(|mut st| st.execute([&id]))
                    .map_err(be(format!("marking submission {id} queued")))?;
                Ok(true)
            },
        )
        .await
    }

    async fn record_test(&self, id: &str, index: u32, result: &TestResult) -> StoreResult<bool> {
        let id = id.to_string();
        let json = to_json("a test result", result)?;
        self.write(
            format!("recording test {index} of submission {id}"),
            move |tx, _now| {
                if submission_state(tx, &id)? == SubmissionState::Done {
                    return Ok(false);
                }
                tx.prepare_cached(
                "INSERT INTO test_results (submission_id, idx, result_json) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(submission_id, idx) DO UPDATE SET result_json = excluded.result_json",
            )
            .and_then(|mut st| st.execute(params![id, index, json]))
            .map_err(be(format!("recording test {index} of submission {id}")))?;
                Ok(true)
            },
        )
        .await
    }

    async fn test_results(&self, id: &str) -> StoreResult<Vec<(u32, TestResult)>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT idx, result_json FROM test_results WHERE submission_id = ?1 ORDER BY idx",
            )
            .and_then(|mut st| {
                st.query_map([&id], |r| {
                    let idx: u32 = r.get(0)?;
                    let text: String = r.get(1)?;
                    Ok((idx, json_column(1, &text)?))
                })?
                .collect()
            })
            .map_err(be(format!("reading test results of submission {id}")))
        })
        .await
    }

    async fn record_final(&self, id: &str, result: &JudgeResult) -> StoreResult<bool> {
        let id = id.to_string();
        let json = to_json("a judge result", result)?;
        self.write(
            format!("recording the final result of submission {id}"),
            move |tx, now| {
                let changed = tx
                .prepare_cached(
                    "UPDATE submissions SET state = 'done', result_json = ?2, finished_at_ms = ?3 \
                     WHERE id = ?1 AND result_json IS NULL",
                )
                .and_then(|mut st| st.execute(params![id, json, now]))
                .map_err(be(format!("recording the final result of submission {id}")))?;
                if changed == 0 {
                    // Either it is done already (the first result stays) or it does not exist.
                    submission_state(tx, &id)?;
                    return Ok(false);
                }
                Ok(true)
            },
        )
        .await
    }

    async fn count_by_state(&self) -> StoreResult<StateCounts> {
        self.read(|conn| {
            let mut counts = StateCounts::default();
            let mut st = conn
                .prepare_cached("SELECT state, count(*) FROM submissions GROUP BY state")
                .map_err(be("counting submissions"))?;
            let rows = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(be("counting submissions"))?;
            for (state, n) in rows {
                match state.as_str() {
                    "queued" => counts.queued = n,
                    "judging" => counts.judging = n,
                    "done" => counts.done = n,
                    other => {
                        return Err(StoreError::backend(
                            "counting submissions",
                            format!("unknown state {other:?}"),
                        ))
                    }
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn upsert_user(&self, user: &User) -> StoreResult<()> {
        let user = user.clone();
        self.write(format!("saving user {}", user.name), move |tx, now| {
            tx.prepare_cached(
                "INSERT INTO users (name, role, trust, created_at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(name) DO UPDATE SET role = excluded.role, trust = excluded.trust",
            )
            .and_then(|mut st| {
                st.execute(params![
                    user.name,
                    user.role.as_str(),
                    user.trust.as_str(),
                    now
                ])
            })
            .map_err(be(format!("saving user {}", user.name)))?;
            Ok(())
        })
        .await
    }

    async fn get_user(&self, name: &str) -> StoreResult<Option<User>> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT name, role, trust FROM users WHERE name = ?1")
                .and_then(|mut st| st.query_row([&name], user_from_row).optional())
                .map_err(be(format!("reading user {name}")))
        })
        .await
    }

    async fn insert_token(
        &self,
        user: &str,
        token_hash: &str,
        label: &str,
    ) -> StoreResult<TokenRecord> {
        let (user, token_hash, label) =
            (user.to_string(), token_hash.to_string(), label.to_string());
        self.write(format!("storing a token for user {user}"), move |tx, now| {
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE name = ?1)")
                .and_then(|mut st| st.query_row([&user], |r| r.get(0)))
                .map_err(be(format!("reading user {user}")))?;
            if !exists {
                return Err(StoreError::NotFound { what: format!("user {user}") });
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO tokens (token_hash, user, label, created_at_ms) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(token_hash) DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![token_hash, user, label, now]))
                .map_err(be(format!("storing a token for user {user}")))?;
            if inserted == 0 {
                return Err(StoreError::Conflict("this token is stored already".into()));
            }
            Ok(TokenRecord { id: tx.last_insert_rowid(), token_hash, user, label, created_at: from_ms(now) })
        })
        .await
    }

    async fn user_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<User>> {
        let token_hash = token_hash.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT u.name, u.role, u.trust FROM tokens t JOIN users u ON u.name = t.user WHERE t.token_hash = ?1",
            )
            .and_then(|mut st| st.query_row([&token_hash], user_from_row).optional())
            .map_err(be("looking up a token"))
        })
        .await
    }

    async fn revoke_token(&self, token_hash: &str) -> StoreResult<bool> {
        let token_hash = token_hash.to_string();
        self.write("revoking a token".into(), move |tx, _now| {
            let n = tx
                .prepare_cached("DELETE FROM tokens WHERE token_hash = ?1")
                .and_then(|mut st| st.execute([&token_hash]))
                .map_err(be("revoking a token"))?;
            Ok(n > 0)
        })
        .await
    }

    async fn count_admins(&self) -> StoreResult<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT count(*) FROM users WHERE role = 'admin'")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(be("counting admins"))
        })
        .await
    }

    async fn upsert_problem(&self, meta: &ProblemMeta) -> StoreResult<()> {
        let meta = meta.clone();
        self.write(format!("saving problem {}", meta.id), move |tx, _now| {
            tx.prepare_cached(
                "INSERT INTO problems (id, name, problem_type, time_limit_ms, memory_limit_bytes, test_count, \
                 location, updated_at_ms) VALUES (:id, :name, :type, :tl, :ml, :tc, :loc, :at) \
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, problem_type = excluded.problem_type, \
                 time_limit_ms = excluded.time_limit_ms, memory_limit_bytes = excluded.memory_limit_bytes, \
                 test_count = excluded.test_count, location = excluded.location, \
                 updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut st| {
                st.execute(named_params! {
                    ":id": meta.id,
                    ":name": meta.name,
                    ":type": meta.problem_type,
                    ":tl": meta.time_limit_ms,
                    ":ml": meta.memory_limit_bytes,
                    ":tc": meta.test_count,
                    ":loc": meta.location,
                    ":at": to_ms(meta.updated_at),
                })
            })
            .map_err(be(format!("saving problem {}", meta.id)))?;
            Ok(())
        })
        .await
    }

    async fn get_problem(&self, id: &str) -> StoreResult<Option<ProblemMeta>> {
        let id = id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {PROBLEM_COLUMNS} FROM problems WHERE id = ?1"
            ))
            .and_then(|mut st| st.query_row([&id], problem_from_row).optional())
            .map_err(be(format!("reading problem {id}")))
        })
        .await
    }

    async fn list_problems(&self) -> StoreResult<Vec<ProblemMeta>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {PROBLEM_COLUMNS} FROM problems ORDER BY id"
            ))
            .and_then(|mut st| st.query_map([], problem_from_row)?.collect())
            .map_err(be("listing problems"))
        })
        .await
    }

    async fn delete_problem(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(format!("deleting problem {id}"), move |tx, _now| {
            let n = tx
                .prepare_cached("DELETE FROM problems WHERE id = ?1")
                .and_then(|mut st| st.execute([&id]))
                .map_err(be(format!("deleting problem {id}")))?;
            Ok(n > 0)
        })
        .await
    }

    async fn insert_scaling_event(&self, event: &NewScalingEvent) -> StoreResult<ScalingEvent> {
        let e = event.clone();
        self.write(format!("recording a scaling event of pool {}", e.pool), move |tx, _now| {
            tx.prepare_cached(
                "INSERT INTO scaling_events (at_ms, pool, from_replicas, to_replicas, rule, value, ok, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![to_ms(e.at), e.pool, e.from, e.to, e.rule, e.value, e.ok, e.error])
            })
            .map_err(be(format!("recording a scaling event of pool {}", e.pool)))?;
            Ok(ScalingEvent {
                id: tx.last_insert_rowid(),
                at: rfc3339(from_ms(to_ms(e.at))),
                pool: e.pool,
                from: e.from,
                to: e.to,
                rule: e.rule,
                value: e.value,
                ok: e.ok,
                error: e.error,
            })
        })
        .await
    }

    async fn latest_scaling_events(&self, limit: usize) -> StoreResult<Vec<ScalingEvent>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {SCALING_COLUMNS} FROM scaling_events ORDER BY at_ms DESC, id DESC LIMIT ?1"
            ))
            .and_then(|mut st| {
                st.query_map([limit_i64(limit)], scaling_from_row)?
                    .collect()
            })
            .map_err(be("listing scaling events"))
        })
        .await
    }

    async fn upsert_alert(&self, update: &AlertUpdate) -> StoreResult<Option<Alert>> {
        let u = update.clone();
        let pool = u.pool.clone().unwrap_or_default();
        self.write(format!("storing alert {}", u.rule), move |tx, _now| {
            let at = to_ms(u.at);
            let open: Option<(i64, String)> = tx
                .prepare_cached(
                    "SELECT id, state FROM alerts WHERE rule = ?1 AND pool = ?2 AND state IN ('pending', 'firing')",
                )
                .and_then(|mut st| st.query_row(params![u.rule, pool], |r| Ok((r.get(0)?, r.get(1)?))).optional())
                .map_err(be(format!("reading alert {}", u.rule)))?;
            let id = match (open, u.state) {
                (None, AlertState::Resolved) => return Ok(None),
                (None, state) => {
                    tx.prepare_cached(
                        "INSERT INTO alerts (rule, pool, severity, state, message, value, since_ms, updated_at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            u.rule,
                            pool,
                            severity_str(u.severity),
                            alert_state_str(state),
                            u.message,
                            u.value,
                            at
                        ])
                    })
                    .map_err(be(format!("opening alert {}", u.rule)))?;
                    tx.last_insert_rowid()
                }
                (Some((_, current)), AlertState::Pending) if current == "firing" => {
                    return Err(StoreError::Conflict(format!(
                        "alert {} is firing and cannot go back to pending (it resolves first)",
                        u.rule
                    )));
                }
                (Some((id, _)), state) => {
                    tx.prepare_cached(
                        "UPDATE alerts SET severity = ?2, state = ?3, message = ?4, value = ?5, updated_at_ms = ?6, \
                         resolved_at_ms = CASE WHEN ?3 = 'resolved' THEN ?6 ELSE NULL END WHERE id = ?1",
                    )
                    .and_then(|mut st| {
                        st.execute(params![id, severity_str(u.severity), alert_state_str(state), u.message, u.value, at])
                    })
                    .map_err(be(format!("updating alert {}", u.rule)))?;
                    id
                }
            };
            tx.prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))
                .and_then(|mut st| st.query_row([id], alert_from_row))
                .map(Some)
                .map_err(be(format!("reading alert {}", u.rule)))
        })
        .await
    }

    async fn resolve_open_alerts(&self, at: OffsetDateTime) -> StoreResult<u64> {
        let at = to_ms(at);
        self.write("resolving open alerts".into(), move |tx, _now| {
            tx.prepare_cached(
                "UPDATE alerts SET state = 'resolved', resolved_at_ms = ?1, updated_at_ms = ?1 \
                 WHERE state IN ('pending', 'firing')",
            )
            .and_then(|mut st| st.execute([at]))
            .map(|n| n as u64)
            .map_err(be("resolving open alerts"))
        })
        .await
    }

    async fn prune_history(&self, before: OffsetDateTime) -> StoreResult<PrunedHistory> {
        let before = to_ms(before);
        self.write("pruning history".into(), move |tx, _now| {
            let scaling_events = tx
                .prepare_cached("DELETE FROM scaling_events WHERE at_ms < ?1")
                .and_then(|mut st| st.execute([before]))
                .map_err(be("pruning scaling events"))?;
            let alerts = tx
                .prepare_cached(
                    "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at_ms < ?1",
                )
                .and_then(|mut st| st.execute([before]))
                .map_err(be("pruning resolved alerts"))?;
            Ok(PrunedHistory {
                scaling_events: scaling_events as u64,
                alerts: alerts as u64,
            })
        })
        .await
    }

    async fn active_alerts(&self) -> StoreResult<Vec<Alert>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE state IN ('pending', 'firing') \
                 ORDER BY severity = 'critical' DESC, state = 'firing' DESC, since_ms, id"
            ))
            .and_then(|mut st| st.query_map([], alert_from_row)?.collect())
            .map_err(be("listing active alerts"))
        })
        .await
    }

    async fn recent_alerts(&self, limit: usize) -> StoreResult<Vec<Alert>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts ORDER BY since_ms DESC, id DESC LIMIT ?1"
            ))
            .and_then(|mut st| st.query_map([limit_i64(limit)], alert_from_row)?.collect())
            .map_err(be("listing recent alerts"))
        })
        .await
    }
}
