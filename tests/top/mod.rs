//! `judge top` end to end: a real `judge serve` (judging paused, so queued submissions
//! stay queued and the queue depth is stable; the server helper is the serve tests' one),
//! and `judge top` running inside a detached tmux session that the test reads with
//! `capture-pane` and drives with `send-keys`.
//!
//! Needs tmux (install.sh installs it); skips with a printed reason when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use judge::engine::model::Stats;

use crate::serve::{env, Server, CPP_AC, PY_AC};

const BIN: &str = env!("CARGO_BIN_EXE_judge");

/// A detached tmux session on a private socket (so it never touches the user's tmux)
/// beside its script, in the test's temporary folder; the tmux server is killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Starts `script` (a shell script path) in a `width`×`height` session named `top`.
    fn start(script: &Path, width: u16, height: u16) -> Tmux {
        let socket = script.with_file_name("tmux.sock");
        let t = Tmux { socket };
        let status = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "top",
                "-x",
                &width.to_string(),
                "-y",
            ])
            .arg(height.to_string())
            .arg(format!("sh {}", script.display()))
            .status()
            .expect("running tmux");
        assert!(status.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn send_keys(&self, keys: &str) {
        let status = self
            .cmd()
            .args(["send-keys", "-t", "top", keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The pane's `#{...}` format value, e.g. `alternate_on`.
    fn display(&self, format: &str) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "top", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Waits up to `timeout` for the pane to satisfy `pred`; panics with the last screen.
    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if pred(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The queue depth each pool card shows: for a card titled `┌ NAME · backend`, the number
/// after `queue ` on the line below, within the card's columns. `None` when not on screen.
fn shown_queue_depths(screen: &str, pools: &[String]) -> Vec<(String, Option<u64>)> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let shown = |name: &str| -> Option<u64> {
        let title: Vec<char> = format!(" {name} ·").chars().collect();
        let (y, x) = lines.iter().enumerate().find_map(|(y, line)| {
            line.windows(title.len())
                .position(|w| w == title.as_slice())
                .map(|x| (y, x))
        })?;
        // From the card's top-left corner (`┌ NAME` or `┌‹ NAME`), the line below starts
        // with the card's left border.
        let corner = lines[y][..=x].iter().rposition(|c| *c == '┌')?;
        let below: String = lines.get(y + 1)?.iter().skip(corner).collect();
        let inside = below.split('│').nth(1)?;
        inside
            .trim()
            .strip_prefix("queue ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    pools
        .iter()
        .map(|name| (name.clone(), shown(name)))
        .collect()
}

fn stats(server: &Server) -> Stats {
    let (status, body) = server.get(Some(&server.token), "/api/v1/stats");
    assert_eq!(status, 200, "stats: {body}");
    serde_json::from_value(body).expect("stats in the model's shape")
}

fn expected_depths(stats: &Stats) -> Vec<(String, Option<u64>)> {
    stats
        .pools
        .iter()
        .map(|p| (p.name.clone(), Some(p.queue_depth.total())))
        .collect()
}

#[test]
fn top_shows_the_servers_queue_depth_and_restores_the_terminal() {
    if !Tmux::available() {
        eprintln!("SKIP top_shows_the_servers_queue_depth: tmux is not installed (install.sh installs it)");
        return;
    }
    // Judging paused; the autoscaler and the alert rules evaluated every second, with
    // thresholds the queued submissions below exceed.
    let e = env("paused = true\n\
         [autoscale]\ninterval = \"1s\"\n\
         [[autoscale.container.scale_up]]\n\
         metric = \"queue_depth\"\nthreshold = 3\naction = \"+2\"\ncooldown = \"600s\"\n\
         [alerts]\ninterval = \"1s\"\n\
         [[alerts.rules]]\n\
         name = \"queue_depth_test\"\nmetric = \"queue_depth\"\nthreshold = 2\n\
         for = \"1s\"\nseverity = \"critical\"\n");
    let server = Server::start(&e);
    // Python goes to the container pool, C++ to microvm; judging is paused, so they wait.
    for _ in 0..4 {
        server.submit(&server.token, "aplusb", "python3", PY_AC);
    }
    for _ in 0..3 {
        server.submit(&server.token, "aplusb", "cpp", CPP_AC);
    }
    let first = stats(&server);
    let names: Vec<String> = first.pools.iter().map(|p| p.name.clone()).collect();
    let want = expected_depths(&first);
    assert_eq!(want.iter().filter_map(|w| w.1).sum::<u64>(), 7, "{first:?}");
    assert!(
        want.iter().filter(|w| w.1 > Some(0)).count() >= 2,
        "two pools queue: {want:?}"
    );

    // No --server/--token: `judge top` finds both in the client config `judge serve` wrote.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let run = format!(
        "JUDGE_CONFIG_DIR={} {BIN} top --interval 300ms 2> {}/top.stderr",
        server.config_dir.display(),
        root.display()
    );
    let script = top_script(root, &run);
    let tmux = Tmux::start(&script, 120, 40);
    let screen = tmux.wait_for(
        "the queue depths of /api/v1/stats",
        Duration::from_secs(30),
        |s| shown_queue_depths(s, &names) == want,
    );
    assert!(
        screen.contains(&server.url),
        "the header names the server:\n{screen}"
    );
    // /api/v1/alerts and /api/v1/scaling-events answered, in the model's shape: the
    // container pool (4 waiting > 3) scaled 1 → 3, and its alert (> 2 for 1 s) fires.
    let screen = tmux.wait_for("the scale-up and the alert", Duration::from_secs(30), |s| {
        s.contains("↑ container 1→3 queue_depth > 3: +2") && s.contains("CRIT firing  container:")
    });
    assert!(!screen.contains("unavailable"), "{screen}");
    let (status, events) = server.get(Some(&server.token), "/api/v1/scaling-events");
    assert_eq!(status, 200);
    let events: Vec<judge::engine::model::ScalingEvent> = serde_json::from_value(events).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.pool == "container" && (e.from, e.to) == (1, 3) && e.ok),
        "{events:?}"
    );
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "judge top draws on the alternate screen"
    );

    // The dashboard follows the server: three more submissions show up.
    for _ in 0..3 {
        server.submit(&server.token, "aplusb", "python3", PY_AC);
    }
    let want = expected_depths(&stats(&server));
    assert_eq!(want.iter().filter_map(|w| w.1).sum::<u64>(), 10);
    tmux.wait_for("the new queue depths", Duration::from_secs(30), |s| {
        shown_queue_depths(s, &names) == want
    });
    let screen = tmux.capture();
    assert!(
        screen.contains("queued"),
        "the latest submissions are listed:\n{screen}"
    );

    // Help overlay on '?', closed by Esc.
    tmux.send_keys("?");
    tmux.wait_for("the help overlay", Duration::from_secs(10), |s| {
        s.contains("refresh now")
    });
    tmux.send_keys("Escape");
    tmux.wait_for("the help to close", Duration::from_secs(10), |s| {
        !s.contains("refresh now")
    });

    // Down to 80×24: every pool card still shows the server's figure.
    let status = tmux
        .cmd()
        .args(["resize-window", "-t", "top", "-x", "80", "-y", "24"])
        .status();
    assert!(status.unwrap().success());
    tmux.wait_for("the 80×24 layout", Duration::from_secs(10), |s| {
        s.lines().count() == 24
            && s.lines().all(|l| l.chars().count() <= 80)
            && shown_queue_depths(s, &names) == want
    });

    // The server goes away: a banner says so, and the last figures stay.
    drop(server);
    let screen = tmux.wait_for("the unreachable banner", Duration::from_secs(30), |s| {
        s.contains("server unreachable — retrying")
    });
    assert_eq!(
        shown_queue_depths(&screen, &names),
        want,
        "last figures kept:\n{screen}"
    );

    // q quits: exit status 0, the normal screen is back, and the tty settings are restored.
    tmux.send_keys("q");
    let stderr = || read(root, "top.stderr");
    assert_exited_and_restored(&tmux, root, "0", stderr);
}

#[test]
fn top_restores_the_terminal_on_sigterm_and_rejects_a_pipe() {
    if !Tmux::available() {
        eprintln!("SKIP top_restores_the_terminal_on_sigterm: tmux is not installed (install.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (tmux, port) = start_disconnected_top(root);
    assert_eq!(tmux.display("#{alternate_on}"), "1");
    tmux.send_keys("p");
    tmux.wait_for("the pause mark", Duration::from_secs(10), |s| {
        s.contains("PAUSED")
    });
    let pid: i32 = read(root, "top.pid").parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_exited_and_restored(&tmux, root, "0", String::new);

    // Without a terminal it refuses at once, with a reason, instead of garbling a pipe.
    let out = Command::new(BIN)
        .args([
            "top",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--token",
            "t",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs a terminal"), "{err}");
}

/// Regression: closing the terminal under `judge top` (tmux kill-server, a dropped ssh
/// session) left it spinning at 100% CPU on EOF from the dead tty, forever. It must exit.
#[test]
fn top_exits_when_its_terminal_goes_away() {
    if !Tmux::available() {
        eprintln!("SKIP top_exits_when_its_terminal_goes_away: tmux is not installed (install.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let _ = start_disconnected_top(root);
    let pid = nix::unistd::Pid::from_raw(read(root, "top.pid").parse().unwrap());
    // `start_disconnected_top`'s Tmux was dropped above: the tmux server is killed and
    // the pane's terminal is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nix::sys::signal::kill(pid, None).is_ok() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break; // exited; its parent shell is gone too and nobody reaps it yet
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("judge top still running 10 s after its terminal went away");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Set in the environment of [`panic_inside_the_dashboard_child`] when the parent test runs
/// it inside tmux.
const PANIC_CHILD: &str = "JUDGE_TOP_TEST_PANIC_CHILD";

/// Not a test on its own: the child of
/// [`top_restores_the_terminal_when_the_dashboard_panics`], which runs this test binary
/// inside tmux with `--ignored --exact` and [`PANIC_CHILD`] set. It enters the dashboard's
/// terminal mode, draws, and panics.
#[test]
#[ignore = "run by top_restores_the_terminal_when_the_dashboard_panics inside tmux"]
fn panic_inside_the_dashboard_child() {
    if std::env::var_os(PANIC_CHILD).is_none() {
        return;
    }
    let _ = judge::tui::run::with_terminal(|t| -> Result<(), judge::tui::run::TopError> {
        t.draw(|f| {
            f.render_widget(
                ratatui::widgets::Paragraph::new("inside the dashboard"),
                f.area(),
            )
        })?;
        std::thread::sleep(Duration::from_millis(300));
        panic!("deliberate panic inside the dashboard");
    });
}

#[test]
fn top_restores_the_terminal_when_the_dashboard_panics() {
    if !Tmux::available() {
        eprintln!("SKIP top_restores_the_terminal_when_the_dashboard_panics: tmux is not installed (install.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let me = std::env::current_exe().unwrap();
    let run = format!(
        "{PANIC_CHILD}=1 {} --exact top::panic_inside_the_dashboard_child --ignored \
         --nocapture --test-threads 1 2> {d}/child.err",
        me.display(),
        d = root.display()
    );
    let script = top_script(root, &run);
    let tmux = Tmux::start(&script, 100, 30);
    // The child's stdout is the pane (it needs a terminal); its stderr, where the panic
    // message goes, is a file. The test binary exits 101 for the failed child.
    let stderr = || read(root, "child.err");
    assert_exited_and_restored(&tmux, root, "101", stderr);
    let out = stderr();
    assert!(
        out.contains("deliberate panic inside the dashboard"),
        "{out}"
    );
}

/// Waits for the script of [`top_script`] to finish, then checks the exit status of what
/// it ran (`log` says why when it differs) and that the terminal is back as it was: the
/// normal screen, a visible cursor, and the tty settings from before (raw mode undone).
fn assert_exited_and_restored(tmux: &Tmux, root: &Path, rc: &str, log: impl Fn() -> String) {
    tmux.wait_for("judge top to exit", Duration::from_secs(60), |s| {
        s.contains("TOP-EXITED")
    });
    assert_eq!(read(root, "top.rc"), rc, "{}", log());
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    assert_eq!(
        tmux.display("#{cursor_flag}"),
        "1",
        "the cursor is visible again"
    );
    assert_eq!(
        read(root, "stty.after"),
        read(root, "stty.before"),
        "raw mode undone"
    );
}

/// Writes `root/top.sh`: saves the tty settings, runs `run` (a shell line that starts
/// `judge top`), saves its exit status and the tty settings again, prints `TOP-EXITED`,
/// then keeps the pane open so the test can read it.
/// Starts `judge top` in an 80×24 tmux pane against a port nothing listens on (so it starts
/// disconnected and keeps retrying), with its pid in `root/top.pid`; returns once the
/// unreachable banner shows, with the tmux session and the port.
fn start_disconnected_top(root: &Path) -> (Tmux, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let run = format!(
        "{BIN} top --server http://127.0.0.1:{port} --token t --interval 200ms &\n\
         echo $! > {}/top.pid\n\
         wait $!",
        root.display()
    );
    let script = top_script(root, &run);
    let tmux = Tmux::start(&script, 80, 24);
    tmux.wait_for("the unreachable banner", Duration::from_secs(30), |s| {
        s.contains("server unreachable — retrying")
    });
    (tmux, port)
}

fn top_script(root: &Path, run: &str) -> PathBuf {
    let d = root.display();
    let script = root.join("top.sh");
    std::fs::write(
        &script,
        format!(
            "stty -g > {d}/stty.before\n\
             {run}\n\
             echo $? > {d}/top.rc\n\
             stty -g > {d}/stty.after\n\
             echo TOP-EXITED\n\
             sleep 600\n"
        ),
    )
    .unwrap();
    script
}

fn read(root: &Path, name: &str) -> String {
    let p: PathBuf = root.join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}
