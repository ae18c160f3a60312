//! Tests of the SQLite store.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::engine::clock::{from_ms, ManualClock};
use crate::engine::store::sqlite_conn::crash;
use crate::judge::{CompileResult, Verdict};

const T0: i64 = 1_764_470_000_000; // 2025-11-30T02:33:20Z

fn store() -> (tempfile::TempDir, SqliteStore, ManualClock) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store =
        open_sqlite_with_clock(&dir.path().join("judge.db"), Arc::new(clock.clone())).unwrap();
    (dir, store, clock)
}

fn new_sub(id: &str, user: &str, key: Option<&str>) -> NewSubmission {
    NewSubmission {
        id: id.into(),
        user: user.into(),
        problem: "aplusb".into(),
        language: "cpp".into(),
        pool: "microvm".into(),
        priority: Priority::High,
        source_key: format!("sources/{id}"),
        idempotency_key: key.map(str::to_string),
    }
}

fn test_result(name: &str, verdict: Verdict, time_ms: u64) -> TestResult {
    TestResult {
        name: name.into(),
        verdict,
        time_ms,
        memory_kib: 2048,
        message: String::new(),
        score: None,
    }
}

fn judge_result(verdict: Verdict) -> JudgeResult {
    JudgeResult {
        verdict,
        score: None,
        compile: CompileResult {
            ok: true,
            message: String::new(),
        },
        tests: vec![test_result("secret/01", verdict, 5)],
    }
}

#[tokio::test]
async fn a_submission_goes_queued_judging_done_with_times_and_results() {
    let (_dir, store, clock) = store();
    let created = store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    let InsertOutcome::Created(s) = created else {
        panic!("expected Created")
    };
    assert_eq!(s.state, SubmissionState::Queued);
    assert_eq!(s.submitted_at, from_ms(T0));
    assert_eq!(
        store.get_submission("s1").await.unwrap(),
        s,
        "what insert returns is what is stored"
    );

    clock.advance(Duration::from_millis(1500));
    assert!(store.mark_judging("s1").await.unwrap());
    assert!(store
        .record_test("s1", 0, &test_result("sample/1", Verdict::AC, 3))
        .await
        .unwrap());
    assert!(store
        .record_test("s1", 1, &test_result("secret/01", Verdict::WA, 4))
        .await
        .unwrap());
    let got = store.get_submission("s1").await.unwrap();
    assert_eq!(got.state, SubmissionState::Judging);
    assert_eq!(got.started_at, Some(from_ms(T0 + 1500)));
    assert_eq!(got.attempts, 1);
    let tests = store.test_results("s1").await.unwrap();
    assert_eq!(
        tests
            .iter()
            .map(|(i, t)| (*i, t.verdict))
            .collect::<Vec<_>>(),
        [(0, Verdict::AC), (1, Verdict::WA)]
    );

    clock.advance(Duration::from_millis(500));
    assert!(store
        .record_final("s1", &judge_result(Verdict::WA))
        .await
        .unwrap());
    let done = store.get_submission("s1").await.unwrap();
    assert_eq!(done.state, SubmissionState::Done);
    assert_eq!(done.finished_at, Some(from_ms(T0 + 2000)));
    assert_eq!(done.result, Some(judge_result(Verdict::WA)));
    assert_eq!(done.summary().verdict, Some(Verdict::WA));
    assert_eq!(done.summary().submitted_at, "2025-11-30T02:33:20Z");
}

#[tokio::test]
async fn record_final_is_idempotent_and_the_first_result_wins() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    assert!(store
        .record_final("s1", &judge_result(Verdict::AC))
        .await
        .unwrap());
    // A redelivered job judged again (say it now hit a TLE) must not change the result.
    assert!(!store
        .record_final("s1", &judge_result(Verdict::TLE))
        .await
        .unwrap());
    assert!(!store
        .record_final("s1", &judge_result(Verdict::AC))
        .await
        .unwrap());
    assert_eq!(
        store
            .get_submission("s1")
            .await
            .unwrap()
            .result
            .unwrap()
            .verdict,
        Verdict::AC
    );
    // And a late worker can neither restart it nor add test results to it.
    assert!(!store.mark_judging("s1").await.unwrap());
    assert!(!store
        .record_test("s1", 0, &test_result("secret/01", Verdict::TLE, 1000))
        .await
        .unwrap());
    assert_eq!(
        store.get_submission("s1").await.unwrap().state,
        SubmissionState::Done
    );
    assert!(store.test_results("s1").await.unwrap().is_empty());
    assert!(matches!(
        store.record_final("nope", &judge_result(Verdict::AC)).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn concurrent_final_results_record_exactly_one() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    let verdicts = [
        Verdict::AC,
        Verdict::WA,
        Verdict::TLE,
        Verdict::RTE,
        Verdict::MLE,
        Verdict::OLE,
    ];
    let tasks: Vec<_> = verdicts
        .iter()
        .map(|&v| {
            let store = store.clone();
            tokio::spawn(
                async move { (v, store.record_final("s1", &judge_result(v)).await.unwrap()) },
            )
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (v, won) = t.await.unwrap();
        if won {
            winners.push(v);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one final result: {winners:?}");
    assert_eq!(
        store
            .get_submission("s1")
            .await
            .unwrap()
            .result
            .unwrap()
            .verdict,
        winners[0]
    );
}

#[tokio::test]
async fn test_results_are_idempotent_per_index_and_a_new_attempt_starts_over() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    store.mark_judging("s1").await.unwrap();
    store
        .record_test("s1", 0, &test_result("sample/1", Verdict::AC, 3))
        .await
        .unwrap();
    store
        .record_test("s1", 0, &test_result("sample/1", Verdict::AC, 3))
        .await
        .unwrap();
    store
        .record_test("s1", 1, &test_result("secret/01", Verdict::AC, 9))
        .await
        .unwrap();
    assert_eq!(store.test_results("s1").await.unwrap().len(), 2);
    // Redelivery: the second attempt clears the first one's partial results.
    assert!(store.mark_judging("s1").await.unwrap());
    assert!(store.test_results("s1").await.unwrap().is_empty());
    store
        .record_test("s1", 0, &test_result("sample/1", Verdict::AC, 4))
        .await
        .unwrap();
    let tests = store.test_results("s1").await.unwrap();
    assert_eq!(tests, vec![(0, test_result("sample/1", Verdict::AC, 4))]);
    assert_eq!(store.get_submission("s1").await.unwrap().attempts, 2);
    assert!(matches!(
        store
            .record_test("nope", 0, &test_result("x", Verdict::AC, 1))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.mark_judging("nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn idempotency_keys_are_per_user_and_racing_retries_create_one_submission() {
    let (_dir, store, _clock) = store();
    let first = store
        .insert_submission(&new_sub("s1", "alice", Some("k1")))
        .await
        .unwrap();
    assert!(matches!(first, InsertOutcome::Created(_)));
    let retry = store
        .insert_submission(&new_sub("s2", "alice", Some("k1")))
        .await
        .unwrap();
    match &retry {
        InsertOutcome::Duplicate(s) => assert_eq!(s.id, "s1"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(retry.submission().id, "s1");
    assert!(matches!(
        store.get_submission("s2").await,
        Err(StoreError::NotFound { .. })
    ));
    // Another user may use the same key.
    let bob = store
        .insert_submission(&new_sub("s3", "bob", Some("k1")))
        .await
        .unwrap();
    assert!(matches!(bob, InsertOutcome::Created(_)));
    assert_eq!(
        store
            .find_by_idempotency_key("alice", "k1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "s1"
    );
    assert_eq!(
        store
            .find_by_idempotency_key("bob", "k1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "s3"
    );
    assert!(store
        .find_by_idempotency_key("alice", "k2")
        .await
        .unwrap()
        .is_none());

    // Ten racing retries with the same key: one submission.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .insert_submission(&new_sub(&format!("r{i}"), "carol", Some("k")))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if let InsertOutcome::Created(_) = t.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(
        store
            .recent_submissions(100, Some("carol"))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_duplicate_id_is_a_conflict() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    match store.insert_submission(&new_sub("s1", "bob", None)).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("s1"), "{msg}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn recent_unfinished_and_counts() {
    let (_dir, store, clock) = store();
    for (i, user) in ["alice", "bob", "alice", "carol"].iter().enumerate() {
        store
            .insert_submission(&new_sub(&format!("s{i}"), user, None))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    let ids = |v: Vec<Submission>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.recent_submissions(3, None).await.unwrap()),
        ["s3", "s2", "s1"]
    );
    assert_eq!(
        ids(store.recent_submissions(10, Some("alice")).await.unwrap()),
        ["s2", "s0"]
    );
    store.mark_judging("s1").await.unwrap();
    store
        .record_final("s2", &judge_result(Verdict::AC))
        .await
        .unwrap();
    assert_eq!(
        ids(store.unfinished_submissions().await.unwrap()),
        ["s0", "s1", "s3"]
    );
    assert_eq!(
        store.count_by_state().await.unwrap(),
        StateCounts {
            queued: 2,
            judging: 1,
            done: 1
        }
    );
    assert_eq!(store.count_by_state().await.unwrap().total(), 4);
}

#[tokio::test]
async fn tokens_are_found_by_hash_only_and_revocable() {
    let (_dir, store, _clock) = store();
    let alice = User {
        name: "alice".into(),
        role: Role::Contestant,
        trust: Trust::Standard,
    };
    store.upsert_user(&alice).await.unwrap();
    let token = generate_token();
    assert!(token.starts_with("jdg_") && token.len() == 68, "{token}");
    assert_ne!(generate_token(), token);
    let hash = hash_token(&token);
    assert_eq!(hash.len(), 64);
    let rec = store.insert_token("alice", &hash, "laptop").await.unwrap();
    assert_eq!((rec.user.as_str(), rec.label.as_str()), ("alice", "laptop"));
    assert_eq!(
        store.user_by_token_hash(&hash).await.unwrap(),
        Some(alice.clone())
    );
    // The plain token is not a key; only its hash is.
    assert_eq!(store.user_by_token_hash(&token).await.unwrap(), None);
    assert!(matches!(
        store.insert_token("alice", &hash, "again").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.insert_token("nobody", &hash_token("x"), "").await,
        Err(StoreError::NotFound { .. })
    ));

    // Upgrading the user changes what the token authenticates as.
    let admin = User {
        role: Role::Admin,
        trust: Trust::Verified,
        ..alice
    };
    store.upsert_user(&admin).await.unwrap();
    assert_eq!(
        store.user_by_token_hash(&hash).await.unwrap(),
        Some(admin.clone())
    );
    assert_eq!(store.get_user("alice").await.unwrap(), Some(admin));
    assert_eq!(store.count_admins().await.unwrap(), 1);

    assert!(store.revoke_token(&hash).await.unwrap());
    assert!(!store.revoke_token(&hash).await.unwrap());
    assert_eq!(store.user_by_token_hash(&hash).await.unwrap(), None);
}

#[test]
fn token_hash_is_sha256_hex() {
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    assert_eq!(
        hash_token("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test]
async fn problems_upsert_list_delete() {
    let (_dir, store, _clock) = store();
    let mut p = ProblemMeta {
        id: "aplusb".into(),
        name: "A plus B".into(),
        problem_type: "pass-fail".into(),
        time_limit_ms: 1000,
        memory_limit_bytes: 256 << 20,
        test_count: 10,
        location: "problems/aplusb.tar".into(),
        updated_at: from_ms(T0),
    };
    store.upsert_problem(&p).await.unwrap();
    p.time_limit_ms = 2000;
    p.updated_at = from_ms(T0 + 10);
    store.upsert_problem(&p).await.unwrap();
    let q = ProblemMeta {
        id: "hello".into(),
        name: "Hello".into(),
        ..p.clone()
    };
    store.upsert_problem(&q).await.unwrap();
    assert_eq!(store.get_problem("aplusb").await.unwrap(), Some(p.clone()));
    assert_eq!(store.list_problems().await.unwrap(), vec![p, q]);
    assert!(store.delete_problem("hello").await.unwrap());
    assert!(!store.delete_problem("hello").await.unwrap());
    assert_eq!(store.get_problem("hello").await.unwrap(), None);
    assert_eq!(
        serde_json::to_value(store.get_problem("aplusb").await.unwrap().unwrap()).unwrap()["type"],
        "pass-fail"
    );
}

fn scaling(at_ms: i64, pool: &str, from: u32, to: u32) -> NewScalingEvent {
    NewScalingEvent {
        at: from_ms(at_ms),
        pool: pool.into(),
        from,
        to,
        rule: "queue_depth > 50: +2".into(),
        value: 73.0,
        ok: true,
        error: None,
    }
}

#[tokio::test]
async fn scaling_events_come_back_newest_first() {
    let (_dir, store, _clock) = store();
    let a = store
        .insert_scaling_event(&scaling(T0, "container", 1, 3))
        .await
        .unwrap();
    let b = store
        .insert_scaling_event(&scaling(T0 + 2000, "microvm", 1, 2))
        .await
        .unwrap();
    // Recorded late but decided earlier: ordered by decision time, not by id.
    let c = store
        .insert_scaling_event(&scaling(T0 + 1000, "container", 3, 5))
        .await
        .unwrap();
    let mut failed = scaling(T0 + 2000, "container", 5, 5);
    failed.ok = false;
    failed.error = Some("no capacity".into());
    let d = store.insert_scaling_event(&failed).await.unwrap();
    assert_eq!(a.at, "2025-11-30T02:33:20Z");
    let latest = store.latest_scaling_events(3).await.unwrap();
    assert_eq!(
        latest.iter().map(|e| e.id).collect::<Vec<_>>(),
        [d.id, b.id, c.id]
    );
    assert_eq!(latest[0], d);
    assert_eq!(latest[0].error.as_deref(), Some("no capacity"));
    assert_eq!(store.latest_scaling_events(10).await.unwrap().len(), 4);
}

fn alert(state: AlertState, at_ms: i64, value: f64) -> AlertUpdate {
    AlertUpdate {
        rule: "queue_depth_warning".into(),
        pool: Some("container".into()),
        severity: Severity::Warning,
        state,
        message: format!("queue depth {value} > 100"),
        value,
        at: from_ms(at_ms),
    }
}

#[tokio::test]
async fn alerts_go_pending_firing_resolved_then_reopen_as_new() {
    let (_dir, store, _clock) = store();
    // Resolving nothing open stores nothing.
    assert_eq!(
        store
            .upsert_alert(&alert(AlertState::Resolved, T0, 0.0))
            .await
            .unwrap(),
        None
    );

    let p = store
        .upsert_alert(&alert(AlertState::Pending, T0, 120.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.state, p.since.as_str(), p.resolved_at.as_deref()),
        (AlertState::Pending, "2025-11-30T02:33:20Z", None)
    );
    let p2 = store
        .upsert_alert(&alert(AlertState::Pending, T0 + 60_000, 130.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (p2.id, p2.value, p2.since.as_str()),
        (p.id, 130.0, "2025-11-30T02:33:20Z")
    );
    let f = store
        .upsert_alert(&alert(AlertState::Firing, T0 + 300_000, 150.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((f.id, f.state), (p.id, AlertState::Firing));
    assert_eq!(store.active_alerts().await.unwrap(), vec![f.clone()]);
    match store
        .upsert_alert(&alert(AlertState::Pending, T0 + 310_000, 150.0))
        .await
    {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("firing"), "{msg}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let r = store
        .upsert_alert(&alert(AlertState::Resolved, T0 + 400_000, 20.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.id, r.state, r.resolved_at.as_deref()),
        (p.id, AlertState::Resolved, Some("2025-11-30T02:40:00Z"))
    );
    assert!(store.active_alerts().await.unwrap().is_empty());

    // The condition returns: a new alert, the old one stays history.
    let again = store
        .upsert_alert(&alert(AlertState::Pending, T0 + 500_000, 140.0))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(again.id, p.id);
    let recent = store.recent_alerts(10).await.unwrap();
    assert_eq!(
        recent.iter().map(|a| (a.id, a.state)).collect::<Vec<_>>(),
        [
            (again.id, AlertState::Pending),
            (p.id, AlertState::Resolved)
        ]
    );
}

#[tokio::test]
async fn alerts_are_keyed_by_rule_and_pool_and_critical_ones_list_first() {
    let (_dir, store, _clock) = store();
    let w = store
        .upsert_alert(&alert(AlertState::Firing, T0, 150.0))
        .await
        .unwrap()
        .unwrap();
    let other_pool = AlertUpdate {
        pool: Some("microvm".into()),
        ..alert(AlertState::Pending, T0 + 1, 110.0)
    };
    let o = store.upsert_alert(&other_pool).await.unwrap().unwrap();
    let no_pool = AlertUpdate {
        rule: "scaling_failure".into(),
        pool: None,
        severity: Severity::Critical,
        ..alert(AlertState::Firing, T0 + 2, 1.0)
    };
    let c = store.upsert_alert(&no_pool).await.unwrap().unwrap();
    assert_eq!(c.pool, None);
    // Same (rule, no pool) updates the same alert.
    assert_eq!(
        store.upsert_alert(&no_pool).await.unwrap().unwrap().id,
        c.id
    );
    assert_ne!(w.id, o.id);
    let active: Vec<i64> = store
        .active_alerts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(active, [c.id, w.id, o.id]);
}

#[tokio::test]
async fn everything_survives_reopening_and_migrations_are_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("judge.db");
    {
        let store = open_sqlite(&path).unwrap();
        store
            .insert_submission(&new_sub("s1", "alice", Some("k")))
            .await
            .unwrap();
        store
            .record_final("s1", &judge_result(Verdict::AC))
            .await
            .unwrap();
        store
            .upsert_user(&User {
                name: "root".into(),
                role: Role::Admin,
                trust: Trust::Verified,
            })
            .await
            .unwrap();
        store
            .insert_token("root", &hash_token("t"), "")
            .await
            .unwrap();
    }
    let store = open_sqlite(&path).unwrap();
    assert_eq!(
        store
            .get_submission("s1")
            .await
            .unwrap()
            .result
            .unwrap()
            .verdict,
        Verdict::AC
    );
    assert_eq!(
        store
            .find_by_idempotency_key("alice", "k")
            .await
            .unwrap()
            .unwrap()
            .id,
        "s1"
    );
    assert_eq!(
        store
            .user_by_token_hash(&hash_token("t"))
            .await
            .unwrap()
            .unwrap()
            .name,
        "root"
    );
    assert_eq!(store.path(), path);
}

#[tokio::test]
async fn a_corrupt_result_is_a_backend_error_with_context() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    store
        .record_final("s1", &judge_result(Verdict::AC))
        .await
        .unwrap();
    store
        .db
        .call_blocking(|c| {
            c.execute(
                "UPDATE submissions SET result_json = '{not json' WHERE id = 's1'",
                [],
            )
        })
        .unwrap();
    let err = store.get_submission("s1").await.unwrap_err();
    assert!(matches!(err, StoreError::Backend { .. }));
    assert!(err.to_string().contains("reading submission s1"), "{err}");
}

#[tokio::test]
async fn startup_resolves_open_alerts_and_wire_alerts_convert_to_updates() {
    let (_dir, store, _clock) = store();
    let firing = store
        .upsert_alert(&alert(AlertState::Firing, T0, 150.0))
        .await
        .unwrap()
        .unwrap();
    let other = AlertUpdate {
        rule: "error_rate_warning".into(),
        ..alert(AlertState::Pending, T0, 0.07)
    };
    store.upsert_alert(&other).await.unwrap();
    store
        .upsert_alert(&AlertUpdate {
            rule: "gone".into(),
            ..alert(AlertState::Pending, T0, 1.0)
        })
        .await
        .unwrap();
    store
        .upsert_alert(&AlertUpdate {
            rule: "gone".into(),
            ..alert(AlertState::Resolved, T0 + 5, 0.0)
        })
        .await
        .unwrap();
    assert_eq!(
        store.resolve_open_alerts(from_ms(T0 + 1000)).await.unwrap(),
        2
    );
    assert!(store.active_alerts().await.unwrap().is_empty());
    // The restarted evaluator starts from pending again: a new alert.
    let again = store
        .upsert_alert(&alert(AlertState::Pending, T0 + 2000, 150.0))
        .await
        .unwrap()
        .unwrap();
    assert_ne!(again.id, firing.id);

    // From the wire type: a resolution is stored at its resolved_at.
    let mut wire = again.clone();
    wire.state = AlertState::Resolved;
    wire.resolved_at = Some("2025-11-30T02:34:00Z".into());
    let up = AlertUpdate::from_alert(&wire).unwrap();
    assert_eq!(
        (up.at, up.state, up.pool.as_deref()),
        (
            from_ms(T0 + 40_000),
            AlertState::Resolved,
            Some("container")
        )
    );
    let stored = store.upsert_alert(&up).await.unwrap().unwrap();
    assert_eq!(
        (stored.id, stored.resolved_at.as_deref()),
        (again.id, Some("2025-11-30T02:34:00Z"))
    );
    wire.since = "yesterday".into();
    wire.state = AlertState::Pending;
    assert!(matches!(
        AlertUpdate::from_alert(&wire),
        Err(StoreError::Conflict(_))
    ));
}

/// Not a test on its own: the crashing child of [`committed_writes_survive_kill_9`].
/// Records s1's final result and s2's first test, starts s2's final result in a transaction
/// it never commits, and dies by SIGKILL.
#[tokio::test]
#[ignore = "helper: runs as the crashing child of committed_writes_survive_kill_9"]
async fn child_records_then_dies() {
    let store = open_sqlite(&crash::child_db()).unwrap();
    assert!(store
        .record_final("s1", &judge_result(Verdict::AC))
        .await
        .unwrap());
    assert!(store.mark_judging("s2").await.unwrap());
    assert!(store
        .record_test("s2", 0, &test_result("sample/1", Verdict::AC, 3))
        .await
        .unwrap());
    store.db.call_blocking(|c| {
        crash::die_mid_transaction(
            c,
            "UPDATE submissions SET state = 'done', result_json = '{}' WHERE id = 's2'; \
             DELETE FROM users;",
        )
    })
}

#[tokio::test]
async fn committed_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("judge.db");
    {
        let store = open_sqlite(&path).unwrap();
        store
            .insert_submission(&new_sub("s1", "alice", None))
            .await
            .unwrap();
        store
            .insert_submission(&new_sub("s2", "alice", Some("k")))
            .await
            .unwrap();
        store
            .upsert_user(&User {
                name: "alice".into(),
                role: Role::Contestant,
                trust: Trust::Standard,
            })
            .await
            .unwrap();
    }
    crash::run_child("engine::store::tests::child_records_then_dies", &path);
    let store = open_sqlite(&path).unwrap();
    assert_eq!(
        store.get_submission("s1").await.unwrap().result,
        Some(judge_result(Verdict::AC))
    );
    let s2 = store.get_submission("s2").await.unwrap();
    assert_eq!(
        (s2.state, s2.attempts, s2.result),
        (SubmissionState::Judging, 1, None)
    );
    assert_eq!(store.test_results("s2").await.unwrap().len(), 1);
    assert_eq!(
        store
            .unfinished_submissions()
            .await
            .unwrap()
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["s2"]
    );
    assert!(
        store.get_user("alice").await.unwrap().is_some(),
        "the uncommitted delete was rolled back"
    );
    // The redelivered job then finishes it exactly once.
    assert!(store.mark_judging("s2").await.unwrap());
    assert!(store
        .record_final("s2", &judge_result(Verdict::WA))
        .await
        .unwrap());
    assert!(!store
        .record_final("s2", &judge_result(Verdict::WA))
        .await
        .unwrap());
}

#[tokio::test]
async fn a_released_job_puts_its_submission_back_to_queued_unless_done() {
    let (_dir, store, _clock) = store();
    store
        .insert_submission(&new_sub("s1", "alice", None))
        .await
        .unwrap();
    store.mark_judging("s1").await.unwrap();
    assert!(store.mark_queued("s1").await.unwrap());
    let s = store.get_submission("s1").await.unwrap();
    assert_eq!(
        (s.state, s.attempts, s.started_at.is_some()),
        (SubmissionState::Queued, 1, true)
    );
    store
        .record_final("s1", &judge_result(Verdict::AC))
        .await
        .unwrap();
    assert!(!store.mark_queued("s1").await.unwrap());
    assert_eq!(
        store.get_submission("s1").await.unwrap().state,
        SubmissionState::Done
    );
    assert!(matches!(
        store.mark_queued("nope").await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn pruning_deletes_old_scaling_events_and_resolved_alerts_only() {
    let (_dir, store, _clock) = store();
    store
        .insert_scaling_event(&scaling(T0, "container", 1, 2))
        .await
        .unwrap();
    let kept = store
        .insert_scaling_event(&scaling(T0 + 10_000, "container", 2, 3))
        .await
        .unwrap();
    store
        .upsert_alert(&alert(AlertState::Firing, T0, 150.0))
        .await
        .unwrap();
    store
        .upsert_alert(&alert(AlertState::Resolved, T0 + 1000, 50.0))
        .await
        .unwrap();
    let open = store
        .upsert_alert(&alert(AlertState::Pending, T0 + 2000, 150.0))
        .await
        .unwrap()
        .unwrap();
    let pruned = store.prune_history(from_ms(T0 + 5000)).await.unwrap();
    assert_eq!(
        pruned,
        PrunedHistory {
            scaling_events: 1,
            alerts: 1
        }
    );
    assert_eq!(store.latest_scaling_events(10).await.unwrap(), vec![kept]);
    assert_eq!(store.recent_alerts(10).await.unwrap(), vec![open]);
}
