//! Snapshot and style tests of the draw functions, on ratatui's `TestBackend`.
//!
//! The `.snap` files under `src/tui/snapshots/` are the accepted screens; `cargo test` fails
//! when a screen differs. To accept a deliberate change: `INSTA_UPDATE=always cargo test
//! --lib tui::ui_tests`, then review the diff of the `.snap` files before committing.

use std::time::{Duration, Instant};

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use ratatui::Terminal;

use super::app::{App, FetchError, FetchResult, Snapshot};
use super::ui::{draw, fmt_clock, fmt_ms, fmt_pct, fmt_secs};
use crate::engine::model::{
    Alert, AlertState, PoolStats, QueueDepth, ScalingEvent, Severity, Shedding, Stats,
    SubmissionSummary,
};
use crate::judge::Verdict;

fn pool(name: &str, backend: &str, q: (u64, u64, u64)) -> PoolStats {
    PoolStats {
        name: name.into(),
        backend: backend.into(),
        queue_depth: QueueDepth {
            high: q.0,
            normal: q.1,
            low: q.2,
        },
        breaker: "closed".into(),
        ..PoolStats::default()
    }
}

/// One recent submission; `outcome` is `queued`, `judging` or a verdict code (state `done`).
fn sub(
    id: &str,
    user: &str,
    problem: &str,
    lang: &str,
    outcome: &str,
    pool: &str,
    at: &str,
) -> SubmissionSummary {
    let verdict: Option<Verdict> = outcome.parse().ok();
    SubmissionSummary {
        id: id.into(),
        user: user.into(),
        problem: problem.into(),
        language: lang.into(),
        state: if verdict.is_some() { "done" } else { outcome }.into(),
        verdict,
        pool: pool.into(),
        submitted_at: format!("2026-11-30T{at}Z"),
    }
}

fn normal_stats() -> Stats {
    let container = PoolStats {
        in_flight: 19,
        replicas: 3,
        desired_replicas: 4,
        min_replicas: 1,
        max_replicas: 8,
        slots: 24,
        busy_slots: 19,
        utilization: 0.78,
        p95_ms: Some(840.0),
        error_rate: 0.004,
        cold_start_ms: Some(180.0),
        ..pool("container", "native", (2, 37, 5))
    };
    let microvm = PoolStats {
        in_flight: 2,
        replicas: 2,
        desired_replicas: 2,
        min_replicas: 1,
        max_replicas: 4,
        slots: 4,
        busy_slots: 2,
        utilization: 0.5,
        p95_ms: Some(2350.0),
        error_rate: 0.0,
        cold_start_ms: Some(420.0),
        ..pool("microvm", "native", (0, 3, 0))
    };
    let trusted = PoolStats {
        replicas: 1,
        desired_replicas: 1,
        min_replicas: 1,
        max_replicas: 2,
        slots: 4,
        busy_slots: 0,
        p95_ms: None,
        cold_start_ms: Some(3.0),
        ..pool("trusted", "process", (0, 0, 0))
    };
    Stats {
        now: "2026-11-30T12:00:00Z".into(),
        uptime_s: 3725,
        pools: vec![container, microvm, trusted],
        submissions_total: 1234,
        shed_total: 0,
        rate_limited_total: 3,
        shedding: Shedding::None,
        recent: vec![
            sub(
                "s-0108", "alice", "aplusb", "cpp", "judging", "microvm", "11:59:58",
            ),
            sub(
                "s-0107",
                "bob",
                "hello",
                "python",
                "queued",
                "container",
                "11:59:57",
            ),
            sub(
                "s-0106",
                "carol",
                "aplusb",
                "python",
                "AC",
                "container",
                "11:59:55",
            ),
            sub("s-0105", "dave", "sort", "cpp", "WA", "microvm", "11:59:51"),
            sub(
                "s-0104", "erin", "sort", "java", "TLE", "microvm", "11:59:40",
            ),
            sub(
                "s-0103",
                "frank",
                "graph",
                "python",
                "MLE",
                "container",
                "11:59:32",
            ),
            sub(
                "s-0102", "grace", "aplusb", "c", "CE", "microvm", "11:59:20",
            ),
            sub(
                "s-0101",
                "heidi",
                "hello",
                "js",
                "RTE",
                "container",
                "11:59:02",
            ),
        ],
    }
}

fn scaling_events() -> Vec<ScalingEvent> {
    let ev =
        |id: i64, at: &str, pool: &str, from: u32, to: u32, rule: &str, value: f64| ScalingEvent {
            id,
            at: format!("2026-11-30T{at}Z"),
            pool: pool.into(),
            from,
            to,
            rule: rule.into(),
            value,
            ok: true,
            error: None,
        };
    vec![
        ev(
            1,
            "11:50:00",
            "microvm",
            3,
            2,
            "worker_idle_time > 60s: -1",
            75.0,
        ),
        ev(
            2,
            "11:58:10",
            "container",
            2,
            3,
            "queue_depth > 20: +1",
            27.0,
        ),
        ev(
            3,
            "11:59:40",
            "container",
            3,
            4,
            "queue_depth > 20: +1",
            44.0,
        ),
    ]
}

fn alert(
    id: i64,
    rule: &str,
    pool: Option<&str>,
    severity: Severity,
    state: AlertState,
    message: &str,
    since: &str,
) -> Alert {
    Alert {
        id,
        rule: rule.into(),
        pool: pool.map(Into::into),
        severity,
        state,
        message: message.into(),
        value: 0.0,
        since: format!("2026-11-30T{since}Z"),
        resolved_at: None,
    }
}

/// A dashboard that has polled a busy server 60 times (one per second), the last one at `t0`
/// plus 60 s, with `now` one second later.
fn loaded_app(stats: Stats, alerts: Vec<Alert>, events: Vec<ScalingEvent>) -> (App, Instant) {
    let t0 = Instant::now();
    let mut app = App::new("http://127.0.0.1:8080", Duration::from_secs(1), t0);
    for i in 0..60u64 {
        // A contest-start wave on container, a small one on microvm, nothing on trusted.
        let mut s = stats.clone();
        let wave = |peak: u64, i: u64| peak * (30 - i.abs_diff(30)) / 30;
        s.pools[0].queue_depth.normal = wave(80, i);
        if s.pools.len() > 1 {
            s.pools[1].queue_depth.normal = wave(6, (i + 20) % 60);
        }
        app.apply(ok(s, t0 + Duration::from_secs(i)));
    }
    let at = t0 + Duration::from_secs(60);
    app.apply(FetchResult::Ok {
        snapshot: Box::new(Snapshot {
            stats,
            alerts: Ok(alerts),
            scaling_events: Ok(events),
        }),
        at,
    });
    app.now = at + Duration::from_secs(1);
    (app, at)
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

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    t
}

fn firing_alerts() -> Vec<Alert> {
    vec![
        alert(
            7,
            "error_rate",
            Some("microvm"),
            Severity::Warning,
            AlertState::Firing,
            "error rate 7.2% > 5% for 10m",
            "11:49:00",
        ),
        alert(
            9,
            "queue_depth_critical",
            Some("container"),
            Severity::Critical,
            AlertState::Firing,
            "queue depth 612 > 500 for 5m",
            "11:54:30",
        ),
        alert(
            10,
            "queue_depth_warning",
            Some("trusted"),
            Severity::Warning,
            AlertState::Pending,
            "queue depth 140 > 100",
            "11:59:30",
        ),
        alert(
            3,
            "worker_memory",
            None,
            Severity::Critical,
            AlertState::Resolved,
            "worker memory 93% > 90%",
            "11:30:00",
        ),
    ]
}

/// Finds the first cell whose symbol starts `text` on the screen; returns its position.
fn find(buf: &Buffer, text: &str) -> Option<(u16, u16)> {
    let area = buf.area;
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(byte) = line.find(text) {
            let col = line[..byte].chars().count() as u16;
            // Cells hold one symbol each; map the char index back to a column.
            let mut x = 0u16;
            let mut chars = 0u16;
            while chars < col {
                chars += buf[(x, y)].symbol().chars().count() as u16;
                x += 1;
            }
            return Some((x, y));
        }
    }
    None
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    t.backend().to_string()
}

#[test]
fn normal_load() {
    let (app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    let t = render(&app, 120, 40);
    insta::assert_snapshot!("normal_load_120x40", t.backend());
}

#[test]
fn normal_load_80x24() {
    let (app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    let t = render(&app, 80, 24);
    insta::assert_snapshot!("normal_load_80x24", t.backend());
}

#[test]
fn empty_server() {
    let t0 = Instant::now();
    let mut app = App::new("http://127.0.0.1:8080", Duration::from_secs(1), t0);
    let stats = Stats {
        now: "2026-11-30T12:00:00Z".into(),
        uptime_s: 12,
        ..Stats::default()
    };
    app.apply(ok(stats, t0));
    app.now = t0;
    let t = render(&app, 100, 30);
    insta::assert_snapshot!("empty_server", t.backend());
}

#[test]
fn firing_alerts_and_a_failed_scale_up() {
    let mut stats = normal_stats();
    stats.shedding = Shedding::Low;
    stats.shed_total = 212;
    stats.pools[0].queue_depth = QueueDepth {
        high: 12,
        normal: 480,
        low: 120,
    };
    stats.pools[1].breaker = "open".into();
    stats.pools[1].error_rate = 0.072;
    stats.pools[1].busy_slots = 4;
    let mut events = scaling_events();
    events.push(ScalingEvent {
        id: 4,
        at: "2026-11-30T11:59:50Z".into(),
        pool: "container".into(),
        from: 4,
        to: 4,
        rule: "queue_depth > 20: +1".into(),
        value: 612.0,
        ok: false,
        error: Some("max replicas reached on host".into()),
    });
    let (app, _) = loaded_app(stats, firing_alerts(), events);
    let t = render(&app, 120, 40);
    insta::assert_snapshot!("firing_alerts", t.backend());

    // Colours: critical red, warning yellow, pending dimmed; the open breaker red.
    let buf = t.backend().buffer();
    let crit = find(buf, "CRIT").expect("a critical alert line");
    assert_eq!(buf[crit].fg, Color::Red);
    let warn = find(buf, "WARN").expect("a warning alert line");
    assert_eq!(buf[warn].fg, Color::Yellow);
    let open = find(buf, "breaker open").expect("microvm's breaker");
    assert_eq!(buf[open].fg, Color::Red);
    let shed = find(buf, "SHEDDING low").expect("the shedding flag");
    assert_eq!(buf[shed].bg, Color::Red);
    let failed = find(buf, "FAILED: max replicas").expect("the failed scale-up");
    assert_eq!(buf[failed].fg, Color::Red);
    // The resolved alert is not listed; critical ones come first.
    let text = screen_text(&t);
    assert!(!text.contains("worker memory"), "{text}");
    assert!(crit.1 < warn.1);
}

/// The firing-alerts server, with microvm selected and the lists narrowed to it (`f`).
#[test]
fn lists_filtered_to_the_selected_pool() {
    let (mut app, _) = loaded_app(normal_stats(), firing_alerts(), scaling_events());
    app.selected_pool = 1;
    app.pool_filter = true;
    let t = render(&app, 120, 40);
    insta::assert_snapshot!("filtered_to_microvm", t.backend());
    let text = screen_text(&t);
    assert!(
        text.contains("latest submissions (4) · microvm only"),
        "{text}"
    );
    assert!(
        !text.contains("carol"),
        "a container submission is hidden: {text}"
    );
}

#[test]
fn disconnected() {
    let (mut app, at) = loaded_app(normal_stats(), vec![], scaling_events());
    let first = at + Duration::from_secs(1);
    for (n, fail_at) in [
        (1, first),
        (2, first + Duration::from_secs(1)),
        (3, first + Duration::from_secs(3)),
    ] {
        app.apply(FetchResult::Err {
            error: FetchError::Unreachable("Connection refused (os error 111)".into()),
            failures: n,
            retry_at: fail_at + Duration::from_secs(1 << (n - 1)),
            at: fail_at,
        });
    }
    // Third failure at +4 s; next attempt at +8 s; it is +4.5 s now: retry in 4 s (rounded up),
    // down for 3 s since the first failure.
    app.now = first + Duration::from_millis(3500);
    let t = render(&app, 120, 40);
    insta::assert_snapshot!("disconnected", t.backend());
    let text = screen_text(&t);
    assert!(
        text.contains("server unreachable — retrying in 4s"),
        "{text}"
    );
    let buf = t.backend().buffer();
    let banner = find(buf, "server unreachable").unwrap();
    assert_eq!(buf[banner].bg, Color::Red);
    // The last figures stay on screen (queue depth of container: 2 + 37 + 5).
    assert!(text.contains("queue 44"), "{text}");

    let t = render(&app, 80, 24);
    insta::assert_snapshot!("disconnected_80x24", t.backend());
}

#[test]
fn auth_failure_says_so() {
    let t0 = Instant::now();
    let mut app = App::new("http://127.0.0.1:8080", Duration::from_secs(1), t0);
    app.apply(FetchResult::Err {
        error: FetchError::Http {
            path: "/api/v1/stats".into(),
            status: 403,
            message: "admin role required".into(),
        },
        failures: 1,
        retry_at: t0 + Duration::from_secs(1),
        at: t0,
    });
    let text = screen_text(&render(&app, 160, 30));
    assert!(
        text.contains("access refused (is the token an admin token?) — retrying in 1s"),
        "{text}"
    );
    assert!(
        text.contains("HTTP 403 on /api/v1/stats: admin role required"),
        "{text}"
    );
}

#[test]
fn help_overlay() {
    let (mut app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    app.show_help = true;
    let t = render(&app, 80, 24);
    insta::assert_snapshot!("help_80x24", t.backend());
}

#[test]
fn connecting_before_the_first_answer() {
    let app = App::new(
        "http://judge.example:8080",
        Duration::from_secs(1),
        Instant::now(),
    );
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("connecting to http://judge.example:8080"),
        "{text}"
    );
    assert!(text.contains("waiting for the server"), "{text}");
}

#[test]
fn verdict_colours_in_the_submissions_list() {
    let (app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    let t = render(&app, 120, 40);
    let buf = t.backend().buffer();
    for (code, colour) in [
        ("AC ", Color::Green),
        ("WA ", Color::Red),
        ("TLE", Color::Yellow),
        ("CE ", Color::Blue),
    ] {
        let pos = find(buf, &format!(" {code}")).unwrap_or_else(|| panic!("{code} on screen"));
        let cell = &buf[(pos.0 + 1, pos.1)];
        assert_eq!(cell.fg, colour, "{code}");
    }
}

#[test]
fn narrow_terminal_scrolls_pool_cards_to_the_selection() {
    let (mut app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    app.selected_pool = 2;
    let text = screen_text(&render(&app, 60, 24));
    assert!(text.contains(" trusted "), "{text}");
    assert!(!text.contains(" container · "), "{text}");
    assert!(
        text.contains('‹'),
        "a mark says more pools are on the left: {text}"
    );
}

#[test]
fn sparkline_shows_the_newest_samples() {
    let (app, _) = loaded_app(normal_stats(), vec![], scaling_events());
    let t = render(&app, 120, 40);
    let buf = t.backend().buffer();
    // The container card's sparkline peaks (full block) somewhere: the wave reached 80.
    let text = screen_text(&t);
    assert!(text.contains('█'), "{text}");
    assert!(find(buf, "queue 44").is_some());
}

#[test]
fn never_panics_at_any_small_size() {
    let (mut app, _) = loaded_app(normal_stats(), firing_alerts(), scaling_events());
    // Every width at the heights around the layout's thresholds, and every height at the
    // widths around them (a full sweep takes too long in a debug build).
    let mut sizes: Vec<(u16, u16)> = Vec::new();
    for w in 1..=90 {
        for h in [1, 2, 3, 7, 14, 15, 16, 24] {
            sizes.push((w, h));
        }
    }
    for h in 1..=30 {
        for w in [1, 2, 25, 26, 49, 50, 51, 52, 59, 60, 77, 80] {
            sizes.push((w, h));
        }
    }
    for help in [false, true] {
        app.show_help = help;
        for &(w, h) in &sizes {
            render(&app, w, h);
        }
    }
    let text = screen_text(&render(&app, 30, 8));
    assert!(text.contains("terminal too small"), "{text}");
}

#[test]
fn formatting_helpers() {
    assert_eq!(fmt_ms(None), "—");
    assert_eq!(fmt_ms(Some(3.0)), "3ms");
    assert_eq!(fmt_ms(Some(999.4)), "999ms");
    assert_eq!(fmt_ms(Some(2350.0)), "2.35s");
    assert_eq!(fmt_ms(Some(125_000.0)), "2m05s");
    assert_eq!(fmt_ms(Some(f64::NAN)), "—");
    assert_eq!(fmt_secs(45), "45s");
    assert_eq!(fmt_secs(3725), "1h02m");
    assert_eq!(fmt_secs(725), "12m05s");
    assert_eq!(fmt_secs(2 * 86_400 + 4 * 3600), "2d04h");
    assert_eq!(fmt_pct(0.004), "0.4%");
    assert_eq!(fmt_pct(0.0), "0%");
    assert_eq!(fmt_pct(0.125), "12%");
    assert_eq!(fmt_pct(1.0), "100%");
    assert_eq!(fmt_clock("2026-11-30T11:59:58Z"), "11:59:58");
    assert_eq!(fmt_clock("2026-11-30T11:59:58.123+02:00"), "11:59:58");
    assert_eq!(fmt_clock("garbage-time"), "garbage-");
}
