//! Pure draw functions: [`draw`] turns an [`App`] into a frame and nothing else.
//!
//! Layout, top to bottom: a header line (server, uptime, totals, shedding, freshness), a
//! banner while the server is unreachable, one card per pool (queue depth and its sparkline,
//! busy slots as a gauge, replicas, p95, error rate, cold start, breaker), the active alerts,
//! the latest scaling events beside the latest submissions, and a footer with the keys.
//! Below [`MIN_WIDTH`]×[`MIN_HEIGHT`] only a "terminal too small" note is drawn.

use std::time::Duration;

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;

use super::app::{App, Connection, FetchError, Panel};
use crate::engine::model::{
    Alert, AlertState, PoolStats, ScalingEvent, Severity, Shedding, SubmissionSummary,
};
use crate::judge::Verdict;

/// Narrowest terminal that gets the full dashboard (columns).
pub const MIN_WIDTH: u16 = 50;
/// Shortest terminal that gets the full dashboard (rows).
pub const MIN_HEIGHT: u16 = 15;
/// Narrowest pool card (columns); fewer cards are shown side by side when the terminal is
/// narrower than one card per pool, and ←/→ scroll through them.
pub const CARD_MIN_WIDTH: u16 = 26;

/// Draws the whole dashboard for `app` into `frame`.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        draw_too_small(frame, area);
        return;
    }
    let banner = banner(app);
    let rest = area.height - 2 - u16::from(banner.is_some());
    let alerts_h = alerts_height(app, rest);
    // The pool cards get what the alerts and at least 7 rows of lists leave, 9 to 18 rows.
    let pools_h = rest.saturating_sub(alerts_h + 7).clamp(9, 18);
    let [header_a, banner_a, pools_a, alerts_a, bottom_a, footer_a] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(pools_h),
        Constraint::Length(alerts_h),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);

    draw_header(frame, header_a, app);
    if let Some(b) = banner {
        frame.render_widget(Paragraph::new(b), banner_a);
    }
    draw_pools(frame, pools_a, app);
    draw_alerts(frame, alerts_a, app);
    let [scaling_a, subs_a] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(bottom_a);
    draw_scaling(frame, scaling_a, app);
    draw_submissions(frame, subs_a, app);
    draw_footer(frame, footer_a);
    if app.show_help {
        draw_help(frame, area, app);
    }
}

fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "terminal too small: {}×{} (judge top needs {MIN_WIDTH}×{MIN_HEIGHT}) · q quits",
        area.width, area.height
    );
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .style(Style::new().fg(Color::Yellow)),
        area,
    );
}

/// Alerts panel height: one line per active alert (at least one line for "none"), plus
/// borders, at most a fifth of the rows available.
fn alerts_height(app: &App, rest: u16) -> u16 {
    let lines = app.active_alerts().len().max(1) + usize::from(app.alerts_error.is_some());
    let want = u16::try_from(lines).unwrap_or(u16::MAX).saturating_add(2);
    want.clamp(3, (rest / 5).max(3))
}

// ---------------------------------------------------------------------------------------
// Formatting helpers (pure, unit-tested below).

/// A duration in ms as `"850ms"`, `"1.25s"` or `"2m05s"`; `"—"` when unknown.
pub fn fmt_ms(ms: Option<f64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if !ms.is_finite() || ms < 0.0 => "—".into(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) if ms < 60_000.0 => format!("{:.2}s", ms / 1000.0),
        Some(ms) => {
            let s = (ms / 1000.0).round() as u64;
            format!("{}m{:02}s", s / 60, s % 60)
        }
    }
}

/// A number of seconds as `"45s"`, `"12m05s"`, `"3h07m"` or `"2d04h"`.
pub fn fmt_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A ratio 0.0..=1.0 as a percentage with one decimal under 10 %, e.g. `"0.5%"`, `"12%"`.
pub fn fmt_pct(ratio: f64) -> String {
    let p = if ratio.is_finite() {
        ratio * 100.0
    } else {
        0.0
    };
    if p > 0.0 && p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// The wall-clock part (`HH:MM:SS`) of an RFC 3339 time, in the offset the server wrote;
/// the raw text (at most 8 characters) when it does not parse.
pub fn fmt_clock(rfc3339: &str) -> String {
    let fmt = time::macros::format_description!("[hour]:[minute]:[second]");
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| rfc3339.chars().take(8).collect())
}

/// Colour of a verdict: green AC, red WA, yellow TLE, magenta MLE and OLE, light red RTE,
/// blue CE, and IE reversed on red (the judge's own fault).
pub fn verdict_style(v: Verdict) -> Style {
    let s = Style::new().add_modifier(Modifier::BOLD);
    match v {
        Verdict::AC => s.fg(Color::Green),
        Verdict::WA => s.fg(Color::Red),
        Verdict::TLE => s.fg(Color::Yellow),
        Verdict::MLE | Verdict::OLE => s.fg(Color::Magenta),
        Verdict::RTE => s.fg(Color::LightRed),
        Verdict::CE => s.fg(Color::Blue),
        Verdict::IE => s.fg(Color::White).bg(Color::Red),
    }
}

/// Colour of an alert severity: red critical, yellow warning; pending alerts are dimmed.
pub fn severity_style(sev: Severity, state: AlertState) -> Style {
    let s = match sev {
        Severity::Critical => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Severity::Warning => Style::new().fg(Color::Yellow),
    };
    if state == AlertState::Pending {
        s.add_modifier(Modifier::DIM)
    } else {
        s
    }
}

fn breaker_style(state: &str) -> Style {
    match state {
        "closed" => Style::new().fg(Color::Green),
        "open" => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    }
}

fn load_style(ratio: f64) -> Style {
    if ratio >= 0.9 {
        Style::new().fg(Color::Red)
    } else if ratio >= 0.7 {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new().fg(Color::Green)
    }
}

fn border_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

// ---------------------------------------------------------------------------------------
// Header, banner, footer.

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let right: Vec<Span> = if app.paused {
        vec![
            Span::raw(" "),
            Span::styled(
                " PAUSED ",
                Style::new().fg(Color::Black).bg(Color::Yellow).bold(),
            ),
        ]
    } else {
        match (&app.connection, app.age()) {
            (Connection::Connected, Some(age)) => {
                vec![Span::styled(
                    format!(" updated {} ago ", fmt_secs(age.as_secs())),
                    dim(),
                )]
            }
            (Connection::Disconnected { .. }, Some(age)) => vec![Span::styled(
                format!(" stale: {} old ", fmt_secs(age.as_secs())),
                Style::new().fg(Color::Red),
            )],
            _ => vec![],
        }
    };
    let right = Line::from(right);
    let rw = u16::try_from(right.width())
        .unwrap_or(area.width)
        .min(area.width);
    let [left_a, right_a] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(rw)]).areas(area);
    let full = header_left(app, false);
    let left = if full.width() <= usize::from(left_a.width) {
        full
    } else {
        header_left(app, true)
    };
    frame.render_widget(Paragraph::new(left), left_a);
    frame.render_widget(Paragraph::new(right).alignment(Alignment::Right), right_a);
}

/// The header's left part: server, shedding flag, uptime and totals; `compact` drops the
/// badge and the URL scheme and shortens the labels, for narrow terminals.
fn header_left(app: &App, compact: bool) -> Line<'static> {
    let mut left = Vec::new();
    if !compact {
        left.push(Span::styled(
            " judge top ",
            Style::new().fg(Color::Black).bg(Color::Cyan).bold(),
        ));
    }
    let server = if compact {
        app.server
            .split_once("://")
            .map_or(app.server.as_str(), |(_, rest)| rest)
    } else {
        app.server.as_str()
    };
    left.push(Span::styled(format!(" {server}"), Style::new().bold()));
    let Some(s) = &app.stats else {
        return Line::from(left);
    };
    if s.shedding != Shedding::None {
        let what = if s.shedding == Shedding::Low {
            "low"
        } else {
            "low+normal"
        };
        left.push(Span::raw(" "));
        left.push(Span::styled(
            format!(" SHEDDING {what} "),
            Style::new().fg(Color::White).bg(Color::Red).bold(),
        ));
    }
    let (subs, limited) = if compact {
        ("subs", "limited")
    } else {
        ("submitted", "rate-limited")
    };
    let sep = || Span::styled(" · ", dim());
    left.extend([
        sep(),
        Span::raw(format!("up {}", fmt_secs(s.uptime_s))),
        sep(),
        Span::raw(format!("{} {subs}", s.submissions_total)),
        sep(),
        Span::raw(format!("{} shed", s.shed_total)),
        sep(),
        Span::raw(format!("{} {limited}", s.rate_limited_total)),
    ]);
    Line::from(left)
}

/// The banner line, when there is something to say about the connection.
fn banner(app: &App) -> Option<Line<'static>> {
    match &app.connection {
        Connection::Connected => None,
        Connection::Connecting => Some(Line::from(Span::styled(
            format!(" connecting to {} …", app.server),
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ))),
        Connection::Disconnected {
            since,
            error,
            failures,
            ..
        } => {
            let what = match error {
                FetchError::Unreachable(_) => "server unreachable".to_string(),
                FetchError::Http {
                    status: 401 | 403, ..
                } => "access refused (is the token an admin token?)".to_string(),
                FetchError::Http { .. } => "server error".to_string(),
                FetchError::Decode { .. } => "unexpected answer from the server".to_string(),
            };
            let retry = match app.retry_in_secs() {
                Some(0) | None => "retrying now".to_string(),
                Some(s) => format!("retrying in {s}s"),
            };
            let down = fmt_secs(app.now.saturating_duration_since(*since).as_secs());
            let attempts = if *failures == 1 {
                "attempt"
            } else {
                "attempts"
            };
            Some(Line::from(vec![
                Span::styled(
                    format!(" {what} — {retry} "),
                    Style::new().fg(Color::White).bg(Color::Red).bold(),
                ),
                Span::styled(
                    format!(" down {down} · {failures} failed {attempts} · {error}"),
                    Style::new().fg(Color::Red),
                ),
            ]))
        }
    }
}

fn draw_footer(frame: &mut Frame, area: Rect) {
    let keys = [
        ("q", "quit"),
        ("tab", "panel"),
        ("←→", "pool"),
        ("↑↓", "scroll"),
        ("p", "pause"),
        ("f", "filter"),
        ("r", "refresh"),
        ("?", "help"),
    ];
    let mut spans = vec![Span::raw(" ")];
    for (k, what) in keys {
        spans.push(Span::styled(k, Style::new().fg(Color::Cyan).bold()));
        spans.push(Span::styled(format!(" {what}  "), dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

// ---------------------------------------------------------------------------------------
// Pools.

fn draw_pools(frame: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Panel::Pools;
    let pools = app
        .stats
        .as_ref()
        .map(|s| s.pools.as_slice())
        .unwrap_or_default();
    if pools.is_empty() {
        let text = if app.stats.is_some() {
            "no pools reported by the server"
        } else {
            "waiting for the server…"
        };
        let block = Block::bordered()
            .title(" pools ")
            .border_style(border_style(focused));
        frame.render_widget(Paragraph::new(Span::styled(text, dim())).block(block), area);
        return;
    }
    let fit = usize::from((area.width / CARD_MIN_WIDTH).max(1));
    let shown = pools.len().min(fit);
    let selected = app.selected_pool.min(pools.len() - 1);
    let first = (selected + 1).saturating_sub(shown);
    let cards = Layout::horizontal(vec![Constraint::Ratio(1, shown as u32); shown]).split(area);
    for (i, card_area) in cards.iter().enumerate() {
        let idx = first + i;
        let more_left = i == 0 && first > 0;
        let more_right = i + 1 == shown && idx + 1 < pools.len();
        draw_pool_card(
            frame,
            *card_area,
            app,
            &pools[idx],
            CardMarks {
                selected: idx == selected,
                focused,
                more_left,
                more_right,
            },
        );
    }
}

struct CardMarks {
    selected: bool,
    focused: bool,
    more_left: bool,
    more_right: bool,
}

fn draw_pool_card(frame: &mut Frame, area: Rect, app: &App, pool: &PoolStats, marks: CardMarks) {
    let mut title = vec![];
    if marks.more_left {
        title.push(Span::styled("‹", Style::new().fg(Color::Cyan)));
    }
    let name_style = if marks.selected {
        Style::new().bold().reversed()
    } else {
        Style::new().bold()
    };
    title.push(Span::styled(format!(" {} ", pool.name), name_style));
    if !pool.backend.is_empty() {
        title.push(Span::styled(format!("· {} ", pool.backend), dim()));
    }
    let mut block = Block::bordered()
        .title(Line::from(title))
        .border_style(if marks.selected {
            border_style(marks.focused)
                .add_modifier(Modifier::BOLD)
                .fg(if marks.focused {
                    Color::Cyan
                } else {
                    Color::White
                })
        } else {
            dim()
        });
    if let Some((severity, state, n)) = app.pool_alerts(&pool.name) {
        // ▲N: N pending or firing alerts about this pool, coloured by the worst.
        let mark = Span::styled(format!("▲{n}"), severity_style(severity, state));
        block = block.title(Line::from(mark).right_aligned());
    }
    if marks.more_right {
        block = block
            .title(Line::from(Span::styled("›", Style::new().fg(Color::Cyan))).right_aligned());
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.is_empty() {
        return;
    }

    let [queue_a, prio_a, spark_a, busy_a, repl_a, lat_a, cold_a] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(inner);

    let q = pool.queue_depth;
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw("queue "),
            Span::styled(q.total().to_string(), Style::new().bold()),
            Span::styled(format!(" · {} in flight", pool.in_flight), dim()),
        ])),
        queue_a,
    );
    frame.render_widget(
        Paragraph::new(Span::styled(
            // The same form on every card of a row: long labels from 30 columns on.
            if prio_a.width >= 30 {
                format!("high {} · normal {} · low {}", q.high, q.normal, q.low)
            } else {
                format!("h {} · n {} · l {}", q.high, q.normal, q.low)
            },
            dim(),
        )),
        prio_a,
    );
    if spark_a.height > 0 {
        let data = app
            .history
            .get(&pool.name)
            .map(|h| h.newest(usize::from(spark_a.width)));
        let data = data.unwrap_or_default();
        let max = data.iter().copied().max().unwrap_or(0).max(1);
        frame.render_widget(
            Sparkline::default()
                .data(&data)
                .max(max)
                .style(Style::new().fg(Color::Cyan)),
            spark_a,
        );
    }
    frame.render_widget(Paragraph::new(busy_gauge(pool, busy_a.width)), busy_a);

    let mut repl = vec![
        Span::raw("replicas "),
        Span::styled(pool.replicas.to_string(), Style::new().bold()),
    ];
    if pool.desired_replicas != pool.replicas {
        repl.push(Span::styled(
            format!("→{}", pool.desired_replicas),
            Style::new().fg(Color::Yellow).bold(),
        ));
    }
    repl.push(Span::styled(
        format!(" [{}..{}]", pool.min_replicas, pool.max_replicas),
        dim(),
    ));
    frame.render_widget(Paragraph::new(Line::from(repl)), repl_a);

    let err_style = if pool.error_rate > 0.05 {
        Style::new().fg(Color::Red).bold()
    } else if pool.error_rate > 0.0 {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new()
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw("p95 "),
            Span::styled(fmt_ms(pool.p95_ms), Style::new().bold()),
            Span::styled(" · ", dim()),
            Span::raw("err "),
            Span::styled(fmt_pct(pool.error_rate), err_style),
        ])),
        lat_a,
    );

    let cold = format!("cold {}", fmt_ms(pool.cold_start_ms));
    let state = if pool.breaker.is_empty() {
        "?"
    } else {
        pool.breaker.as_str()
    };
    let state = state.replace('_', "-");
    let full = format!("breaker {state}");
    let width = usize::from(cold_a.width);
    let right = if cold.chars().count() + 1 + full.chars().count() <= width {
        full
    } else {
        state.clone()
    };
    let gap = width
        .saturating_sub(cold.chars().count() + right.chars().count())
        .max(1);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(cold),
            Span::raw(" ".repeat(gap)),
            Span::styled(right, breaker_style(&pool.breaker)),
        ])),
        cold_a,
    );
}

/// `busy 6/8 ██████░░ 75%`: busy slots over slots as a text gauge that stays readable
/// without colour. The bar takes what is left of `width` columns.
fn busy_gauge(pool: &PoolStats, width: u16) -> Line<'static> {
    let ratio = if pool.slots == 0 {
        0.0
    } else {
        (f64::from(pool.busy_slots) / f64::from(pool.slots)).clamp(0.0, 1.0)
    };
    let label = format!("busy {}/{} ", pool.busy_slots, pool.slots);
    let pct = format!(" {:>3.0}%", ratio * 100.0);
    let bar_w = usize::from(width).saturating_sub(label.chars().count() + pct.chars().count());
    let filled = ((bar_w as f64) * ratio).round() as usize;
    Line::from(vec![
        Span::raw(label),
        Span::styled("█".repeat(filled), load_style(ratio)),
        Span::styled("░".repeat(bar_w - filled), dim()),
        Span::raw(pct),
    ])
}

// ---------------------------------------------------------------------------------------
// Alerts, scaling events, submissions.

fn list_block(title: Line<'static>, focused: bool) -> Block<'static> {
    Block::bordered()
        .title(title)
        .border_style(border_style(focused))
}

fn draw_alerts(frame: &mut Frame, area: Rect, app: &App) {
    let active = app.active_alerts();
    let crit = active
        .iter()
        .filter(|a| a.severity == Severity::Critical)
        .count();
    let warn = active.len() - crit;
    let mut title = vec![Span::raw(" alerts ")];
    if let Some(p) = app.filter_pool() {
        title.push(Span::styled(format!("· {p} + global "), dim()));
    }
    if crit > 0 {
        title.push(Span::styled("· ", dim()));
        title.push(Span::styled(
            format!("{crit} critical "),
            severity_style(Severity::Critical, AlertState::Firing),
        ));
    }
    if warn > 0 {
        title.push(Span::styled("· ", dim()));
        title.push(Span::styled(
            format!("{warn} warning "),
            severity_style(Severity::Warning, AlertState::Firing),
        ));
    }
    let mut lines: Vec<Line> = Vec::new();
    if let Some(e) = &app.alerts_error {
        lines.push(Line::from(Span::styled(
            format!("alerts unavailable: {e}"),
            Style::new().fg(Color::Yellow),
        )));
    }
    if active.is_empty() && app.alerts_error.is_none() {
        let text = if app.stats.is_some() {
            "no active alerts"
        } else {
            "—"
        };
        lines.push(Line::from(Span::styled(
            text,
            Style::new().fg(Color::Green),
        )));
    }
    lines.extend(
        active
            .iter()
            .skip(app.scroll_of(Panel::Alerts))
            .map(|a| alert_line(a)),
    );
    frame.render_widget(
        Paragraph::new(lines).block(list_block(Line::from(title), app.focus == Panel::Alerts)),
        area,
    );
}

fn alert_line(a: &Alert) -> Line<'static> {
    let style = severity_style(a.severity, a.state);
    let sev = match a.severity {
        Severity::Critical => "CRIT",
        Severity::Warning => "WARN",
    };
    let state = match a.state {
        AlertState::Firing => "firing ",
        AlertState::Pending => "pending",
        AlertState::Resolved => "resolved",
    };
    let message = if a.message.is_empty() {
        a.rule.clone()
    } else {
        a.message.clone()
    };
    let mut spans = vec![
        Span::styled(fmt_clock(&a.since), dim()),
        Span::raw(" "),
        Span::styled(sev, style.add_modifier(Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(state, style),
        Span::raw(" "),
    ];
    if let Some(pool) = &a.pool {
        spans.push(Span::styled(format!("{pool}: "), Style::new().bold()));
    }
    spans.push(Span::styled(message, style.remove_modifier(Modifier::BOLD)));
    spans.push(Span::styled(format!(" [{}]", a.rule), dim()));
    Line::from(spans)
}

fn draw_scaling(frame: &mut Frame, area: Rect, app: &App) {
    let events = app.scaling_events_newest_first();
    let mut lines: Vec<Line> = Vec::new();
    if let Some(e) = &app.scaling_error {
        lines.push(Line::from(Span::styled(
            format!("unavailable: {e}"),
            Style::new().fg(Color::Yellow),
        )));
    }
    if events.is_empty() && app.scaling_error.is_none() {
        let text = if app.stats.is_some() {
            "no scaling events yet"
        } else {
            "—"
        };
        lines.push(Line::from(Span::styled(text, dim())));
    }
    lines.extend(
        events
            .iter()
            .skip(app.scroll_of(Panel::Scaling))
            .map(|e| scaling_line(e)),
    );
    let title = Line::from(format!(
        " scaling events {}{}",
        count_note(events.len(), app.scroll_of(Panel::Scaling)),
        filter_note(app)
    ));
    frame.render_widget(
        Paragraph::new(lines).block(list_block(title, app.focus == Panel::Scaling)),
        area,
    );
}

/// `"· container only "` while the lists are narrowed to a pool.
fn filter_note(app: &App) -> String {
    app.filter_pool()
        .map(|p| format!("· {p} only "))
        .unwrap_or_default()
}

/// `"(12) "`, or `"(4–12 of 12) "` when scrolled.
fn count_note(len: usize, scroll: usize) -> String {
    match (len, scroll) {
        (0, _) => String::new(),
        (n, 0) => format!("({n}) "),
        (n, s) => format!("({}–{n} of {n}) ", s + 1),
    }
}

fn scaling_line(e: &ScalingEvent) -> Line<'static> {
    let (arrow, arrow_style) = match e.to.cmp(&e.from) {
        std::cmp::Ordering::Greater => ("↑", Style::new().fg(Color::Green).bold()),
        std::cmp::Ordering::Less => ("↓", Style::new().fg(Color::Blue).bold()),
        std::cmp::Ordering::Equal => ("=", dim()),
    };
    let (arrow, arrow_style) = if e.ok {
        (arrow, arrow_style)
    } else {
        ("✗", Style::new().fg(Color::Red).bold())
    };
    let mut spans = vec![
        Span::styled(fmt_clock(&e.at), dim()),
        Span::raw(" "),
        Span::styled(arrow, arrow_style),
        Span::styled(format!(" {} ", e.pool), Style::new().bold()),
        Span::raw(format!("{}→{} ", e.from, e.to)),
    ];
    if e.ok {
        spans.push(Span::raw(e.rule.clone()));
        spans.push(Span::styled(format!(" ({})", fmt_value(e.value)), dim()));
    } else {
        let why = e.error.clone().unwrap_or_else(|| "actuator failed".into());
        spans.push(Span::styled(
            format!("FAILED: {why}"),
            Style::new().fg(Color::Red).bold(),
        ));
        spans.push(Span::styled(format!(" [{}]", e.rule), dim()));
    }
    Line::from(spans)
}

/// A metric value: integers without decimals, others with at most two.
fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn draw_submissions(frame: &mut Frame, area: Rect, app: &App) {
    let focused = app.focus == Panel::Submissions;
    let recent = app.recent_submissions();
    let scroll = app.scroll_of(Panel::Submissions);
    let title = Line::from(format!(
        " latest submissions {}{}",
        count_note(recent.len(), scroll),
        filter_note(app)
    ));
    let block = list_block(title, focused);
    if recent.is_empty() {
        let text = if app.stats.is_some() {
            "no submissions yet"
        } else {
            "—"
        };
        frame.render_widget(Paragraph::new(Span::styled(text, dim())).block(block), area);
        return;
    }
    // time, verdict, user, problem, language; pool and id when there is room for them.
    let columns = if area.width >= 60 { 7 } else { 5 };
    let rows = recent
        .iter()
        .skip(scroll)
        .map(|s| submission_row(s, columns));
    let widths: &[Constraint] = if columns == 7 {
        &[
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Fill(1),
        ]
    } else {
        &[
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Fill(1),
        ]
    };
    let names = ["time", "verdict", "user", "problem", "lang", "pool", "id"];
    let header = Row::new(names.into_iter().take(columns)).style(dim());
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block)
            .column_spacing(1),
        area,
    );
}

fn submission_row(s: &SubmissionSummary, columns: usize) -> Row<'static> {
    let verdict = match (s.verdict, s.state.as_str()) {
        (Some(v), _) => Span::styled(v.code(), verdict_style(v)),
        (None, "judging") => Span::styled("judging", Style::new().fg(Color::Cyan)),
        (None, state) => Span::styled(state.to_string(), dim()),
    };
    Row::new(
        [
            Cell::from(Span::styled(fmt_clock(&s.submitted_at), dim())),
            Cell::from(verdict),
            Cell::from(s.user.clone()),
            Cell::from(s.problem.clone()),
            Cell::from(s.language.clone()),
            Cell::from(Span::styled(s.pool.clone(), dim())),
            Cell::from(Span::styled(s.id.clone(), dim())),
        ]
        .into_iter()
        .take(columns)
        .collect::<Vec<_>>(),
    )
}

// ---------------------------------------------------------------------------------------
// Help.

fn draw_help(frame: &mut Frame, area: Rect, app: &App) {
    let key =
        |k: &'static str| Span::styled(format!("{k:<10}"), Style::new().fg(Color::Cyan).bold());
    let interval =
        humantime::format_duration(Duration::from_millis(app.interval.as_millis() as u64));
    let lines = vec![
        Line::from(vec![key("q  Esc"), Span::raw("quit (also Ctrl-C)")]),
        Line::from(vec![
            key("tab"),
            Span::raw("next panel (shift-tab: previous)"),
        ]),
        Line::from(vec![key("← →"), Span::raw("select a pool")]),
        Line::from(vec![
            key("↑ ↓"),
            Span::raw("select a pool / scroll the panel"),
        ]),
        Line::from(vec![
            key("p  space"),
            Span::raw("pause / resume the figures"),
        ]),
        Line::from(vec![
            key("f"),
            Span::raw("lists: only the selected pool / all pools"),
        ]),
        Line::from(vec![key("r"), Span::raw("refresh now (skip the backoff)")]),
        Line::from(vec![key("?"), Span::raw("this help (Esc closes)")]),
        Line::from(""),
        Line::from(Span::styled("Pool card", Style::new().bold())),
        Line::from(" queue: jobs waiting (high · normal · low), graph of recent depth"),
        Line::from(" busy: slots judging now / all slots of the pool"),
        Line::from(" replicas N→D [min..max]: running → wanted by the autoscaler"),
        Line::from(" p95: judging time, last 5 min · err: share of IE, last 10 min"),
        Line::from(" cold: time to make a new box ready · breaker: closed/open/half-open"),
        Line::from(" ▲N: N pending or firing alerts about the pool"),
        Line::from(""),
        Line::from(Span::styled(format!("refreshing every {interval}"), dim())),
    ];
    let w = area.width.min(74);
    let h = area
        .height
        .min(u16::try_from(lines.len()).unwrap_or(u16::MAX) + 2);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" help ")
                .border_style(Style::new().fg(Color::Cyan).bold()),
        ),
        popup,
    );
}
