//! The dashboard's state and its pure update functions: apply a fetch result, handle a key.
//!
//! Nothing here touches the terminal or the network, and time comes in as an argument
//! ([`App::now`]), so every transition is unit-tested.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::engine::model::{Alert, AlertState, ScalingEvent, Severity, Stats, SubmissionSummary};

/// Queue-depth samples kept per pool: 10 minutes at the default 1 s interval. The
/// sparkline shows the newest samples that fit its width.
pub const HISTORY_LEN: usize = 600;

/// Longest wait between two attempts while the server is unreachable.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A bounded history of one pool's queue depth (jobs waiting), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    samples: VecDeque<u64>,
    cap: usize,
}

impl History {
    /// An empty history keeping at most `cap` samples (at least 1).
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        History {
            samples: VecDeque::with_capacity(cap.min(HISTORY_LEN)),
            cap,
        }
    }

    /// Appends a sample, dropping the oldest one when full.
    pub fn push(&mut self, depth: u64) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(depth);
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The newest `n` samples (fewer if fewer were taken), oldest first.
    pub fn newest(&self, n: usize) -> Vec<u64> {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.iter().skip(skip).copied().collect()
    }
}

/// Exponential backoff between fetch attempts after failures: `base`, 2×`base`,
/// 4×`base`, … capped at `max`; a success resets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `base` (the refresh interval) and capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub fn failure(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// Records a success: the next failure waits `base` again.
    pub fn success(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No HTTP answer: connection refused, DNS failure, timeout.
    #[error("{0}")]
    Unreachable(String),
    /// The server answered with an error status (401 for a bad token, 403 for a
    /// non-admin token, 5xx).
    #[error("HTTP {status} on {path}: {message}")]
    Http {
        /// Request path, e.g. `/api/v1/stats`.
        path: String,
        /// HTTP status code.
        status: u16,
        /// The server's error message, or the start of its body.
        message: String,
    },
    /// The answer was not the JSON shape this client expects (a server of another version).
    #[error("unexpected answer on {path}: {message}")]
    Decode {
        /// Request path.
        path: String,
        /// The decoder's message.
        message: String,
    },
}

/// One successful poll of the server. `/api/v1/stats` is required; alerts and scaling
/// events are optional, so a server without them (or failing on them) still shows its pools.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `GET /api/v1/stats`.
    pub stats: Stats,
    /// `GET /api/v1/alerts`, or why it failed.
    pub alerts: Result<Vec<Alert>, FetchError>,
    /// `GET /api/v1/scaling-events`, or why it failed.
    pub scaling_events: Result<Vec<ScalingEvent>, FetchError>,
}

/// What the fetcher sends after each attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchResult {
    /// The server answered.
    Ok {
        /// The figures.
        snapshot: Box<Snapshot>,
        /// When the answer arrived.
        at: Instant,
    },
    /// The attempt failed.
    Err {
        /// Why.
        error: FetchError,
        /// Consecutive failed attempts, this one included (≥ 1).
        failures: u32,
        /// When the fetcher tries again.
        retry_at: Instant,
        /// When this attempt failed.
        at: Instant,
    },
}

/// Connection state as the dashboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    /// No answer and no failure yet.
    Connecting,
    /// The last attempt succeeded.
    Connected,
    /// The last `failures` attempts failed; the figures on screen are from before `since`.
    Disconnected {
        /// When the first failure of this streak happened.
        since: Instant,
        /// The latest error.
        error: FetchError,
        /// Consecutive failed attempts.
        failures: u32,
        /// When the fetcher tries again.
        retry_at: Instant,
    },
}

/// The panels that take keyboard focus, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    /// The pool cards; ↑/↓ and ←/→ select a pool.
    Pools,
    /// Active alerts; ↑/↓ scroll.
    Alerts,
    /// Latest scaling events; ↑/↓ scroll.
    Scaling,
    /// Latest submissions; ↑/↓ scroll.
    Submissions,
}

impl Panel {
    /// All panels in Tab order.
    pub const ALL: [Panel; 4] = [
        Panel::Pools,
        Panel::Alerts,
        Panel::Scaling,
        Panel::Submissions,
    ];

    fn index(self) -> usize {
        Panel::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    /// The panel after this one (Tab), wrapping.
    pub fn next(self) -> Panel {
        Panel::ALL[(self.index() + 1) % Panel::ALL.len()]
    }

    /// The panel before this one (Shift-Tab), wrapping.
    pub fn prev(self) -> Panel {
        Panel::ALL[(self.index() + Panel::ALL.len() - 1) % Panel::ALL.len()]
    }
}

/// What the event loop must do after a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the dashboard.
    Quit,
    /// Ask the fetcher to poll now instead of waiting out its interval or backoff.
    RefreshNow,
}

/// The whole state of the dashboard.
#[derive(Debug, Clone)]
pub struct App {
    /// Server base URL, shown in the header.
    pub server: String,
    /// Refresh interval, shown in the help.
    pub interval: Duration,
    /// The current time, set by the event loop before each draw (tests set it by hand so
    /// that countdowns and ages are deterministic).
    pub now: Instant,
    /// The latest stats; `None` until the first answer.
    pub stats: Option<Stats>,
    /// The latest alerts as the server sent them (all states).
    pub alerts: Vec<Alert>,
    /// Why the latest alerts request failed, if it did.
    pub alerts_error: Option<FetchError>,
    /// The latest scaling events as the server sent them.
    pub scaling_events: Vec<ScalingEvent>,
    /// Why the latest scaling-events request failed, if it did.
    pub scaling_error: Option<FetchError>,
    /// Queue-depth history per pool name; pools the server no longer reports are dropped.
    pub history: BTreeMap<String, History>,
    /// Reachability of the server.
    pub connection: Connection,
    /// When the figures on screen arrived.
    pub last_update: Option<Instant>,
    /// Index into `stats.pools` of the highlighted pool.
    pub selected_pool: usize,
    /// The panel that gets ↑/↓.
    pub focus: Panel,
    /// First line shown in each panel, indexed in [`Panel::ALL`] order (the pools entry is
    /// unused: the pool selection is `selected_pool`).
    pub scroll: [usize; 4],
    /// While paused, results are held in `pending` and the screen keeps its figures.
    pub paused: bool,
    /// The newest result received while paused; applied on resume.
    pub pending: Option<FetchResult>,
    /// Whether the help overlay is shown.
    pub show_help: bool,
    /// Whether the alerts, scaling events and submissions are narrowed to the selected pool.
    pub pool_filter: bool,
}

impl App {
    /// A dashboard for `server`, polling every `interval`, before any answer.
    pub fn new(server: impl Into<String>, interval: Duration, now: Instant) -> Self {
        App {
            server: server.into(),
            interval,
            now,
            stats: None,
            alerts: Vec::new(),
            alerts_error: None,
            scaling_events: Vec::new(),
            scaling_error: None,
            history: BTreeMap::new(),
            connection: Connection::Connecting,
            last_update: None,
            selected_pool: 0,
            focus: Panel::Pools,
            scroll: [0; 4],
            paused: false,
            pending: None,
            show_help: false,
            pool_filter: false,
        }
    }

    /// Applies the fetcher's latest result. While paused, the result is kept (only the newest)
    /// and applied on resume.
    pub fn apply(&mut self, result: FetchResult) {
        if self.paused {
            self.pending = Some(result);
            return;
        }
        match result {
            FetchResult::Ok { snapshot, at } => {
                let Snapshot {
                    stats,
                    alerts,
                    scaling_events,
                } = *snapshot;
                for pool in &stats.pools {
                    self.history
                        .entry(pool.name.clone())
                        .or_insert_with(|| History::new(HISTORY_LEN))
                        .push(pool.queue_depth.total());
                }
                self.history
                    .retain(|name, _| stats.pools.iter().any(|p| &p.name == name));
                if self.selected_pool >= stats.pools.len() {
                    self.selected_pool = stats.pools.len().saturating_sub(1);
                }
                self.stats = Some(stats);
                match alerts {
                    Ok(a) => {
                        self.alerts = a;
                        self.alerts_error = None;
                    }
                    Err(e) => self.alerts_error = Some(e),
                }
                match scaling_events {
                    Ok(e) => {
                        self.scaling_events = e;
                        self.scaling_error = None;
                    }
                    Err(e) => self.scaling_error = Some(e),
                }
                self.clamp_scrolls();
                self.connection = Connection::Connected;
                self.last_update = Some(at);
            }
            FetchResult::Err {
                error,
                failures,
                retry_at,
                at,
            } => {
                let since = match &self.connection {
                    Connection::Disconnected { since, .. } => *since,
                    _ => at,
                };
                self.connection = Connection::Disconnected {
                    since,
                    error,
                    failures,
                    retry_at,
                };
            }
        }
    }

    /// Handles one key press; returns what the event loop must do.
    ///
    /// q, Esc (outside the help) and Ctrl-C quit; Tab / Shift-Tab move the focus between
    /// panels; ←/→ select a pool; ↑/↓ select a pool or scroll the focused list; f narrows
    /// the lists to the selected pool and back; p pauses and resumes; r polls now; ?
    /// toggles the help (Esc also closes it).
    pub fn handle_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL)
            && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C'))
        {
            return Action::Quit;
        }
        if self.show_help {
            match key.code {
                KeyCode::Char('q') | KeyCode::Char('Q') => return Action::Quit,
                KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter => self.show_help = false,
                _ => {}
            }
            return Action::None;
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Char('h') => self.show_help = true,
            KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => self.toggle_pause(),
            KeyCode::Char('r') | KeyCode::Char('R') => return Action::RefreshNow,
            KeyCode::Char('f') | KeyCode::Char('F') => {
                self.pool_filter = !self.pool_filter;
                self.scroll = [0; 4];
            }
            KeyCode::Tab => self.focus = self.focus.next(),
            KeyCode::BackTab => self.focus = self.focus.prev(),
            KeyCode::Left => self.select_pool(-1),
            KeyCode::Right => self.select_pool(1),
            KeyCode::Up => self.move_in_focus(-1),
            KeyCode::Down => self.move_in_focus(1),
            _ => {}
        }
        Action::None
    }

    /// Pauses (the screen keeps its figures) or resumes (the newest held result is applied).
    pub fn toggle_pause(&mut self) {
        self.paused = !self.paused;
        if !self.paused {
            if let Some(r) = self.pending.take() {
                self.apply(r);
            }
        }
    }

    /// Number of pools in the latest stats.
    pub fn pool_count(&self) -> usize {
        self.stats.as_ref().map_or(0, |s| s.pools.len())
    }

    fn select_pool(&mut self, delta: isize) {
        let n = self.pool_count();
        if n == 0 {
            self.selected_pool = 0;
            return;
        }
        let cur = self.selected_pool.min(n - 1) as isize;
        self.selected_pool = (cur + delta).rem_euclid(n as isize) as usize;
        if self.pool_filter {
            // The lists now hold another pool's lines.
            self.scroll = [0; 4];
        }
    }

    fn move_in_focus(&mut self, delta: isize) {
        if self.focus == Panel::Pools {
            self.select_pool(delta);
            return;
        }
        let len = self.list_len(self.focus);
        let s = &mut self.scroll[self.focus.index()];
        *s = s.saturating_add_signed(delta).min(len.saturating_sub(1));
    }

    /// First line shown in a list panel.
    pub fn scroll_of(&self, panel: Panel) -> usize {
        self.scroll[panel.index()]
    }

    fn clamp_scrolls(&mut self) {
        for panel in [Panel::Alerts, Panel::Scaling, Panel::Submissions] {
            let max = self.list_len(panel).saturating_sub(1);
            let s = &mut self.scroll[panel.index()];
            *s = (*s).min(max);
        }
    }

    fn list_len(&self, panel: Panel) -> usize {
        match panel {
            Panel::Pools => self.pool_count(),
            Panel::Alerts => self.active_alerts().len(),
            Panel::Scaling => self.scaling_events_newest_first().len(),
            Panel::Submissions => self.recent_submissions().len(),
        }
    }

    /// The pool the lists are narrowed to (the `f` key), if any: the selected pool.
    pub fn filter_pool(&self) -> Option<&str> {
        if !self.pool_filter {
            return None;
        }
        let pools = &self.stats.as_ref()?.pools;
        pools
            .get(self.selected_pool.min(pools.len().checked_sub(1)?))
            .map(|p| p.name.as_str())
    }

    /// Alerts that are pending or firing (resolved ones are history), most urgent first:
    /// critical before warning, firing before pending, then oldest first (by id). With the
    /// pool filter on, only that pool's alerts and those about no pool in particular.
    pub fn active_alerts(&self) -> Vec<&Alert> {
        let pool = self.filter_pool();
        let mut v: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .filter(|a| pool.is_none() || a.pool.is_none() || a.pool.as_deref() == pool)
            .collect();
        v.sort_by_key(|a| {
            (
                std::cmp::Reverse(a.severity),
                a.state != AlertState::Firing,
                a.id,
            )
        });
        v
    }

    /// The most severe state among the pending or firing alerts about pool `name`, and how
    /// many there are (for the mark on its card; the pool filter does not apply).
    pub fn pool_alerts(&self, name: &str) -> Option<(Severity, AlertState, usize)> {
        let mine: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved && a.pool.as_deref() == Some(name))
            .collect();
        let worst = mine
            .iter()
            .max_by_key(|a| (a.severity, a.state == AlertState::Firing, -a.id))?;
        Some((worst.severity, worst.state, mine.len()))
    }

    /// Scaling events, newest first (highest id first); only the filtered pool's when the
    /// pool filter is on.
    pub fn scaling_events_newest_first(&self) -> Vec<&ScalingEvent> {
        let pool = self.filter_pool();
        let mut v: Vec<&ScalingEvent> = self
            .scaling_events
            .iter()
            .filter(|e| pool.is_none_or(|p| e.pool == p))
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.id));
        v
    }

    /// The latest submissions as the server listed them (newest first); only the filtered
    /// pool's when the pool filter is on.
    pub fn recent_submissions(&self) -> Vec<&SubmissionSummary> {
        let pool = self.filter_pool();
        self.stats
            .iter()
            .flat_map(|s| s.recent.iter())
            .filter(|s| pool.is_none_or(|p| s.pool == p))
            .collect()
    }

    /// Seconds until the next attempt while disconnected, rounded up (0 when due).
    pub fn retry_in_secs(&self) -> Option<u64> {
        match &self.connection {
            Connection::Disconnected { retry_at, .. } => {
                let d = retry_at.saturating_duration_since(self.now);
                Some(d.as_secs() + u64::from(d.subsec_nanos() > 0))
            }
            _ => None,
        }
    }

    /// Age of the figures on screen, if any arrived.
    pub fn age(&self) -> Option<Duration> {
        self.last_update
            .map(|t| self.now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{PoolStats, QueueDepth, Severity};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn stats_with(pools: &[(&str, u64)]) -> Stats {
        Stats {
            pools: pools
                .iter()
                .map(|(name, depth)| PoolStats {
                    name: (*name).into(),
                    queue_depth: QueueDepth {
                        high: 0,
                        normal: *depth,
                        low: 0,
                    },
                    ..PoolStats::default()
                })
                .collect(),
            ..Stats::default()
        }
    }

    fn ok(stats: Stats, at: Instant) -> FetchResult {
        FetchResult::Ok {
            snapshot: Box::new(Snapshot {
                stats,
                alerts: Ok(vec![]),
                scaling_events: Ok(vec![]),
            }),
            at,
        }
    }

    fn err(at: Instant, failures: u32) -> FetchResult {
        FetchResult::Err {
            error: FetchError::Unreachable("connection refused".into()),
            failures,
            retry_at: at + Duration::from_secs(2),
            at,
        }
    }

    fn alert(id: i64, severity: Severity, state: AlertState) -> Alert {
        Alert {
            id,
            rule: format!("rule{id}"),
            pool: None,
            severity,
            state,
            message: String::new(),
            value: 0.0,
            since: String::new(),
            resolved_at: None,
        }
    }

    #[test]
    fn history_keeps_only_the_newest_samples() {
        let mut h = History::new(3);
        for v in 1..=5 {
            h.push(v);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.newest(10), vec![3, 4, 5]);
        assert_eq!(h.newest(2), vec![4, 5]);
        assert_eq!(h.newest(0), Vec::<u64>::new());
    }

    #[test]
    fn history_is_capped_at_history_len_through_apply() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        for i in 0..(HISTORY_LEN as u64 + 25) {
            app.apply(ok(stats_with(&[("container", i)]), t0));
        }
        let h = &app.history["container"];
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.newest(1), vec![HISTORY_LEN as u64 + 24]);
        assert_eq!(h.newest(HISTORY_LEN)[0], 25);
    }

    #[test]
    fn history_of_a_vanished_pool_is_dropped() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        app.apply(ok(stats_with(&[("container", 1), ("microvm", 2)]), t0));
        app.selected_pool = 1;
        app.apply(ok(stats_with(&[("container", 3)]), t0));
        assert_eq!(app.history.keys().collect::<Vec<_>>(), vec!["container"]);
        assert_eq!(app.history["container"].newest(5), vec![1, 3]);
        assert_eq!(
            app.selected_pool, 0,
            "selection clamped to the remaining pools"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let waits: Vec<u64> = (0..6).map(|_| b.failure().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 10, 10]);
        assert_eq!(b.failures(), 6);
        b.success();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failure(), Duration::from_secs(1));
    }

    #[test]
    fn backoff_survives_huge_failure_counts() {
        let mut b = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
        for _ in 0..200 {
            assert!(b.failure() <= MAX_BACKOFF);
        }
        assert_eq!(b.failure(), MAX_BACKOFF);
    }

    #[test]
    fn failures_keep_the_first_failure_time_and_success_reconnects() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        app.apply(ok(stats_with(&[("container", 4)]), t0));
        assert_eq!(app.connection, Connection::Connected);
        let t1 = t0 + Duration::from_secs(1);
        let t2 = t0 + Duration::from_secs(3);
        app.apply(err(t1, 1));
        app.apply(err(t2, 2));
        match &app.connection {
            Connection::Disconnected {
                since,
                failures,
                retry_at,
                ..
            } => {
                assert_eq!(*since, t1);
                assert_eq!(*failures, 2);
                assert_eq!(*retry_at, t2 + Duration::from_secs(2));
            }
            c => panic!("expected disconnected, got {c:?}"),
        }
        // The last figures stay on screen while disconnected.
        assert_eq!(app.stats.as_ref().unwrap().pools[0].queue_depth.total(), 4);
        app.now = t2 + Duration::from_millis(500);
        assert_eq!(app.retry_in_secs(), Some(2));
        app.now = t2 + Duration::from_secs(5);
        assert_eq!(app.retry_in_secs(), Some(0));
        app.apply(ok(
            stats_with(&[("container", 9)]),
            t2 + Duration::from_secs(2),
        ));
        assert_eq!(app.connection, Connection::Connected);
        assert_eq!(app.retry_in_secs(), None);
    }

    #[test]
    fn a_failing_alerts_endpoint_keeps_the_previous_alerts_and_records_the_error() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        let a = alert(1, Severity::Warning, AlertState::Firing);
        app.apply(FetchResult::Ok {
            snapshot: Box::new(Snapshot {
                stats: Stats::default(),
                alerts: Ok(vec![a.clone()]),
                scaling_events: Ok(vec![]),
            }),
            at: t0,
        });
        let e404 = FetchError::Http {
            path: "/api/v1/alerts".into(),
            status: 404,
            message: "".into(),
        };
        app.apply(FetchResult::Ok {
            snapshot: Box::new(Snapshot {
                stats: Stats::default(),
                alerts: Err(e404.clone()),
                scaling_events: Ok(vec![]),
            }),
            at: t0,
        });
        assert_eq!(app.alerts, vec![a]);
        assert_eq!(app.alerts_error, Some(e404));
        assert_eq!(app.connection, Connection::Connected);
    }

    #[test]
    fn pause_holds_only_the_newest_result_and_applies_it_on_resume() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        app.apply(ok(stats_with(&[("container", 1)]), t0));
        assert_eq!(app.handle_key(key(KeyCode::Char('p'))), Action::None);
        assert!(app.paused);
        app.apply(ok(stats_with(&[("container", 2)]), t0));
        app.apply(ok(stats_with(&[("container", 3)]), t0));
        assert_eq!(app.stats.as_ref().unwrap().pools[0].queue_depth.total(), 1);
        assert_eq!(app.history["container"].newest(10), vec![1]);
        app.handle_key(key(KeyCode::Char('p')));
        assert!(!app.paused);
        assert_eq!(app.stats.as_ref().unwrap().pools[0].queue_depth.total(), 3);
        assert_eq!(app.history["container"].newest(10), vec![1, 3]);
        assert!(app.pending.is_none());
    }

    #[test]
    fn quit_keys() {
        let mut app = App::new("http://x", Duration::from_secs(1), Instant::now());
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(app.handle_key(key(KeyCode::Esc)), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.handle_key(ctrl_c), Action::Quit);
        assert_eq!(app.handle_key(key(KeyCode::Char('c'))), Action::None);
        // A key release (reported on some platforms) does nothing.
        let mut release = key(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(app.handle_key(release), Action::None);
    }

    #[test]
    fn help_overlay_toggles_and_swallows_other_keys() {
        let mut app = App::new("http://x", Duration::from_secs(1), Instant::now());
        app.handle_key(key(KeyCode::Char('?')));
        assert!(app.show_help);
        // Esc closes the help instead of quitting; Tab does nothing while it is open.
        assert_eq!(app.handle_key(key(KeyCode::Tab)), Action::None);
        assert_eq!(app.focus, Panel::Pools);
        assert_eq!(app.handle_key(key(KeyCode::Esc)), Action::None);
        assert!(!app.show_help);
        app.handle_key(key(KeyCode::Char('?')));
        assert_eq!(app.handle_key(key(KeyCode::Char('?'))), Action::None);
        assert!(!app.show_help);
        app.handle_key(key(KeyCode::Char('?')));
        assert_eq!(app.handle_key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn tab_cycles_panels_both_ways() {
        let mut app = App::new("http://x", Duration::from_secs(1), Instant::now());
        let mut seen = vec![app.focus];
        for _ in 0..4 {
            app.handle_key(key(KeyCode::Tab));
            seen.push(app.focus);
        }
        assert_eq!(
            seen,
            vec![
                Panel::Pools,
                Panel::Alerts,
                Panel::Scaling,
                Panel::Submissions,
                Panel::Pools
            ]
        );
        app.handle_key(key(KeyCode::BackTab));
        assert_eq!(app.focus, Panel::Submissions);
    }

    #[test]
    fn arrows_select_pools_with_wrap_and_scroll_lists_within_bounds() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        app.handle_key(key(KeyCode::Right));
        assert_eq!(app.selected_pool, 0, "no pools: nothing to select");
        app.apply(ok(
            stats_with(&[("container", 1), ("microvm", 2), ("trusted", 0)]),
            t0,
        ));
        app.handle_key(key(KeyCode::Right));
        assert_eq!(app.selected_pool, 1);
        app.handle_key(key(KeyCode::Down));
        assert_eq!(app.selected_pool, 2);
        app.handle_key(key(KeyCode::Right));
        assert_eq!(app.selected_pool, 0, "wraps around");
        app.handle_key(key(KeyCode::Left));
        assert_eq!(app.selected_pool, 2);

        app.alerts = (0..3)
            .map(|i| alert(i, Severity::Warning, AlertState::Firing))
            .collect();
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.focus, Panel::Alerts);
        for _ in 0..10 {
            app.handle_key(key(KeyCode::Down));
        }
        assert_eq!(app.scroll_of(Panel::Alerts), 2, "stops at the last alert");
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.scroll_of(Panel::Alerts), 1);
        for _ in 0..5 {
            app.handle_key(key(KeyCode::Up));
        }
        assert_eq!(app.scroll_of(Panel::Alerts), 0);
        assert_eq!(app.selected_pool, 2, "↑/↓ in a list leave the pool alone");
    }

    #[test]
    fn f_narrows_the_lists_to_the_selected_pool() {
        let t0 = Instant::now();
        let mut app = App::new("http://x", Duration::from_secs(1), t0);
        let mut stats = stats_with(&[("container", 1), ("microvm", 2)]);
        let sub = |id: &str, pool: &str| SubmissionSummary {
            id: id.into(),
            user: "u".into(),
            problem: "p".into(),
            language: "cpp".into(),
            state: "queued".into(),
            verdict: None,
            pool: pool.into(),
            submitted_at: String::new(),
        };
        stats.recent = vec![
            sub("a", "container"),
            sub("b", "microvm"),
            sub("c", "container"),
        ];
        app.apply(ok(stats, t0));
        let on = |id: i64, pool: Option<&str>| {
            let mut a = alert(id, Severity::Warning, AlertState::Firing);
            a.pool = pool.map(Into::into);
            a
        };
        app.alerts = vec![
            on(1, Some("container")),
            on(2, Some("microvm")),
            on(3, None),
        ];
        let ev = |id: i64, pool: &str| ScalingEvent {
            id,
            at: String::new(),
            pool: pool.into(),
            from: 1,
            to: 2,
            rule: String::new(),
            value: 0.0,
            ok: true,
            error: None,
        };
        app.scaling_events = vec![ev(1, "microvm"), ev(2, "container"), ev(3, "microvm")];
        let ids = |app: &App| {
            (
                app.active_alerts().iter().map(|a| a.id).collect::<Vec<_>>(),
                app.scaling_events_newest_first()
                    .iter()
                    .map(|e| e.id)
                    .collect::<Vec<_>>(),
                app.recent_submissions()
                    .iter()
                    .map(|s| s.id.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            ids(&app),
            (
                vec![1, 2, 3],
                vec![3, 2, 1],
                vec!["a".into(), "b".into(), "c".into()]
            )
        );
        app.handle_key(key(KeyCode::Char('f')));
        assert_eq!(app.filter_pool(), Some("container"));
        assert_eq!(
            ids(&app),
            (vec![1, 3], vec![2], vec!["a".to_string(), "c".into()])
        );
        app.handle_key(key(KeyCode::Right));
        assert_eq!(app.filter_pool(), Some("microvm"));
        assert_eq!(ids(&app), (vec![2, 3], vec![3, 1], vec!["b".to_string()]));
        // The card mark ignores the filter.
        assert_eq!(
            app.pool_alerts("container"),
            Some((Severity::Warning, AlertState::Firing, 1))
        );
        assert_eq!(app.pool_alerts("trusted"), None);
        app.handle_key(key(KeyCode::Char('f')));
        assert_eq!(app.filter_pool(), None);
    }

    #[test]
    fn r_asks_for_a_refresh() {
        let mut app = App::new("http://x", Duration::from_secs(1), Instant::now());
        assert_eq!(app.handle_key(key(KeyCode::Char('r'))), Action::RefreshNow);
    }

    #[test]
    fn active_alerts_are_sorted_by_urgency_and_skip_resolved() {
        let mut app = App::new("http://x", Duration::from_secs(1), Instant::now());
        app.alerts = vec![
            alert(1, Severity::Warning, AlertState::Firing),
            alert(2, Severity::Critical, AlertState::Pending),
            alert(3, Severity::Critical, AlertState::Resolved),
            alert(4, Severity::Critical, AlertState::Firing),
            alert(5, Severity::Warning, AlertState::Pending),
        ];
        let ids: Vec<i64> = app.active_alerts().iter().map(|a| a.id).collect();
        assert_eq!(ids, vec![4, 2, 1, 5]);
    }
}
