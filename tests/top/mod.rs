//! `judge top` end to end: a real `judge serve` (judging paused, so queued submissions
//! stay queued and the queue depth is stable), and `judge top` running inside a detached
//! tmux session that the test reads with `capture-pane` and drives with `send-keys`.
//!
//! Needs tmux (install.sh installs it); skips with a printed reason when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_judge");

/// A detached tmux session on a private socket (so it never touches the user's tmux);
/// the tmux server is killed on drop.
struct Tmux {
    socket: String,
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
        let socket = format!(
            "judge-top-test-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        );
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
        c.args(["-L", &self.socket]);
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

#[test]
fn top_restores_the_terminal_on_sigterm_and_rejects_a_pipe() {
    if !Tmux::available() {
        eprintln!("SKIP top_restores_the_terminal_on_sigterm: tmux is not installed (install.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Nothing listens on this port: judge top starts disconnected and keeps retrying.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = root.display();
    let script = root.join("top.sh");
    std::fs::write(
        &script,
        format!(
            "stty -g > {d}/stty.before\n\
             {BIN} top --server http://127.0.0.1:{port} --token t --interval 200ms &\n\
             echo $! > {d}/top.pid\n\
             wait $!\n\
             echo $? > {d}/top.rc\n\
             stty -g > {d}/stty.after\n\
             echo TOP-EXITED\n\
             sleep 600\n"
        ),
    )
    .unwrap();
    let tmux = Tmux::start(&script, 80, 24);
    tmux.wait_for("the unreachable banner", Duration::from_secs(30), |s| {
        s.contains("server unreachable — retrying")
    });
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
    tmux.wait_for("judge top to exit", Duration::from_secs(10), |s| {
        s.contains("TOP-EXITED")
    });
    assert_eq!(read(root, "top.rc"), "0");
    assert_eq!(tmux.display("#{alternate_on}"), "0");
    assert_eq!(read(root, "stty.after"), read(root, "stty.before"));

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

fn read(root: &Path, name: &str) -> String {
    let p: PathBuf = root.join(name);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}
