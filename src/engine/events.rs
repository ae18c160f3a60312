//! Live judging events of submissions, from the worker judging them to every
//! `GET /api/v1/submissions/{id}/events` stream following them.
//!
//! The store holds what happened so far (per-test results, the final result); the hub only
//! carries what happens next, plus the one thing the store does not keep before the end:
//! the compile outcome and the number of tests. A follower subscribes first, then reads
//! the store, then forwards live events it has not yet sent, so nothing falls in between.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::judge::{CompileResult, JudgeResult, TestResult};

/// Events buffered per submission for slow followers; one who lags further re-reads the store.
const CAPACITY: usize = 256;

/// One live event of a submission.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    /// A worker claimed it (again, after a redelivery: tests restart from 0).
    Judging,
    /// Compilation started.
    Compiling,
    /// Compilation finished; `total_tests` will run if it succeeded.
    Compiled {
        /// The compile outcome.
        compile: CompileResult,
        /// Tests that will run.
        total_tests: usize,
    },
    /// Test `index` (0-based) of `total` finished.
    Test {
        /// Position in test order.
        index: usize,
        /// Tests in all.
        total: usize,
        /// Its result.
        result: TestResult,
    },
    /// The final result is recorded; the stream ends.
    Final(JudgeResult),
}

#[derive(Debug)]
struct Channel {
    tx: broadcast::Sender<LiveEvent>,
    /// Set by the worker between `Compiled` and `Final`, for followers who arrive late.
    compiled: Option<(CompileResult, usize)>,
    /// A worker is judging it now.
    active: bool,
}

impl Channel {
    fn new() -> Self {
        Channel {
            tx: broadcast::channel(CAPACITY).0,
            compiled: None,
            active: false,
        }
    }
}

/// Per-submission broadcast channels. One per engine.
#[derive(Debug, Default)]
pub struct EventHub {
    channels: Mutex<HashMap<String, Channel>>,
}

/// What a new follower gets: the live receiver and the compile outcome so far.
#[derive(Debug)]
pub struct Subscription {
    /// Live events from now on.
    pub rx: broadcast::Receiver<LiveEvent>,
    /// `(compile outcome, total tests)` when a worker compiled it already in this process.
    pub compiled: Option<(CompileResult, usize)>,
}

impl EventHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows submission `id` from now on.
    pub fn subscribe(&self, id: &str) -> Subscription {
        let mut map = self.lock();
        let ch = map.entry(id.to_string()).or_insert_with(Channel::new);
        Subscription {
            rx: ch.tx.subscribe(),
            compiled: ch.compiled.clone(),
        }
    }

    /// The compile outcome and test count of `id`, when a worker in this process has
    /// compiled it and not yet finished.
    pub fn compiled(&self, id: &str) -> Option<(CompileResult, usize)> {
        self.lock().get(id).and_then(|c| c.compiled.clone())
    }

    /// A follower of `id` left: drops the channel when nobody follows and no worker is on it.
    pub fn unsubscribe(&self, id: &str) {
        let mut map = self.lock();
        if let Some(ch) = map.get(id) {
            if ch.tx.receiver_count() == 0 && !ch.active {
                map.remove(id);
            }
        }
    }

    /// Sends `ev` to every follower of `id`. A worker calls it in judging order; `Final`
    /// drops the channel (followers still receive it; the store has it for later ones).
    pub fn publish(&self, id: &str, ev: LiveEvent) {
        let mut map = self.lock();
        match &ev {
            LiveEvent::Final(_) => {
                if let Some(ch) = map.remove(id) {
                    let _ = ch.tx.send(ev);
                }
                return;
            }
            LiveEvent::Judging => {
                let ch = map.entry(id.to_string()).or_insert_with(Channel::new);
                ch.active = true;
                ch.compiled = None;
            }
            LiveEvent::Compiled {
                compile,
                total_tests,
            } => {
                let ch = map.entry(id.to_string()).or_insert_with(Channel::new);
                ch.compiled = Some((compile.clone(), *total_tests));
            }
            _ => {}
        }
        if let Some(ch) = map.get(id) {
            let _ = ch.tx.send(ev);
        }
    }

    /// The worker gave `id` up without a final result (lease handed back at shutdown).
    pub fn abandon(&self, id: &str) {
        let mut map = self.lock();
        if let Some(ch) = map.get_mut(id) {
            ch.active = false;
            if ch.tx.receiver_count() == 0 {
                map.remove(id);
            }
        }
    }

    /// Submissions with a channel (followed or being judged); for tests and stats.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no submission has a channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Verdict;

    fn result() -> JudgeResult {
        JudgeResult {
            verdict: Verdict::AC,
            score: None,
            compile: CompileResult {
                ok: true,
                message: String::new(),
            },
            tests: vec![],
        }
    }

    #[tokio::test]
    async fn late_follower_gets_the_compile_outcome_and_live_events() {
        let hub = EventHub::new();
        hub.publish("s", LiveEvent::Judging);
        hub.publish("s", LiveEvent::Compiling);
        hub.publish(
            "s",
            LiveEvent::Compiled {
                compile: CompileResult {
                    ok: true,
                    message: String::new(),
                },
                total_tests: 3,
            },
        );
        let mut sub = hub.subscribe("s");
        assert_eq!(sub.compiled.as_ref().map(|c| c.1), Some(3));
        hub.publish("s", LiveEvent::Final(result()));
        assert_eq!(sub.rx.recv().await.unwrap(), LiveEvent::Final(result()));
        assert!(
            sub.rx.recv().await.is_err(),
            "the channel closes after the final event"
        );
        assert!(hub.is_empty());
    }

    #[test]
    fn idle_channels_are_dropped() {
        let hub = EventHub::new();
        let sub = hub.subscribe("a");
        drop(sub);
        hub.unsubscribe("a");
        assert!(hub.is_empty());
        // A channel a worker is on survives its followers leaving.
        hub.publish("b", LiveEvent::Judging);
        let sub = hub.subscribe("b");
        drop(sub);
        hub.unsubscribe("b");
        assert_eq!(hub.len(), 1);
        hub.abandon("b");
        assert!(hub.is_empty());
    }
}
