//! The event loop of `judge top` and the guard that gives the terminal back.
//!
//! The loop redraws at most every [`TICK`] (so countdowns move), reads keys and resizes
//! from crossterm, and takes the fetcher's newest result when one has arrived. The
//! terminal is restored on every way out: a normal quit, an error (the guard's `Drop`), a
//! panic (a panic hook that restores first, then calls the previous hook), and SIGTERM /
//! SIGHUP / SIGINT sent from outside (flags checked each tick).

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use tokio::sync::watch;

use super::app::{Action, App, FetchResult};
use super::fetch::{ApiClient, Fetcher};
use super::ui;

/// Longest time between two redraws, and between two checks for a quit signal.
pub const TICK: Duration = Duration::from_millis(200);

/// What `judge top` needs to start.
#[derive(Debug, Clone)]
pub struct TopConfig {
    /// Server base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Admin token (Bearer).
    pub token: String,
    /// Refresh interval (≥ 100 ms).
    pub interval: Duration,
}

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Standard output is not a terminal (piped, or no TTY).
    #[error("judge top needs a terminal: standard output is not a TTY")]
    NotATerminal,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// The polling thread panicked; its message was printed above.
    #[error("the polling thread stopped unexpectedly")]
    FetcherStopped,
    /// Setting up, drawing to or reading from the terminal failed.
    #[error("terminal: {0}")]
    Io(#[from] io::Error),
}

/// Runs the dashboard until the user quits (q, Esc, Ctrl-C) or a termination signal arrives.
///
/// Errors: [`TopError::NotATerminal`] when stdout is not a TTY, [`TopError::Client`],
/// and [`TopError::Io`] for terminal failures (the terminal is restored first).
pub fn run(config: TopConfig) -> Result<(), TopError> {
    let client = ApiClient::new(&config.server, &config.token)
        .map_err(|e| TopError::Client(e.to_string()))?;
    let quit_signal = Arc::new(AtomicBool::new(false));
    spawn_signal_watch(Arc::clone(&quit_signal))?;
    with_terminal(|terminal| {
        let (fetcher, results) = Fetcher::spawn(client, config.interval)?;
        let app = App::new(config.server, config.interval, Instant::now());
        event_loop(terminal, app, &fetcher, results, &quit_signal)
    })
}

/// How long the event loop gets to notice a termination signal, restore the terminal and
/// return before the process exits anyway.
const SIGNAL_GRACE: Duration = Duration::from_secs(2);

/// Watches SIGTERM, SIGHUP and SIGINT on a thread of its own: sets `quit` (checked by the
/// event loop every tick, which then restores the terminal and returns), and if the loop
/// has not ended the process within [`SIGNAL_GRACE`], exits with 128 + the signal. That
/// second step is for a terminal that vanished (a closed tmux or ssh session: SIGHUP):
/// crossterm then spins reading EOF from the dead tty and never gets back to the loop,
/// and there is nothing left to restore.
fn spawn_signal_watch(quit: Arc<AtomicBool>) -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::Builder::new()
        .name("judge-top-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                quit.store(true, Ordering::SeqCst);
                std::thread::sleep(SIGNAL_GRACE);
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

/// The terminal `judge top` draws on.
pub type Term = Terminal<CrosstermBackend<io::Stdout>>;

/// Runs `body` with the terminal in raw mode on the alternate screen, cursor hidden, and
/// gives the terminal back afterwards whichever way `body` ends: a value, an error, or a
/// panic (through the panic hook, before the panic message is printed).
///
/// Errors: [`TopError::NotATerminal`] when stdout is not a TTY, [`TopError::Io`] when the
/// terminal cannot be set up or restored, and `body`'s own error.
pub fn with_terminal<R>(
    body: impl FnOnce(&mut Term) -> Result<R, TopError>,
) -> Result<R, TopError> {
    if !io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    let mut guard = TerminalGuard::enter()?;
    let result = body(&mut guard.terminal);
    let restored = guard.restore();
    let value = result?;
    restored?;
    Ok(value)
}

fn event_loop(
    terminal: &mut Term,
    mut app: App,
    fetcher: &Fetcher,
    mut results: watch::Receiver<Option<FetchResult>>,
    quit_signal: &AtomicBool,
) -> Result<(), TopError> {
    while !quit_signal.load(Ordering::Relaxed) {
        match results.has_changed() {
            Ok(true) => {
                if let Some(r) = results.borrow_and_update().clone() {
                    app.apply(r);
                }
            }
            Ok(false) => {}
            // The fetcher thread is gone: it only ends when we drop it, so it panicked (the
            // panic hook has restored the terminal and printed the message).
            Err(_) => return Err(TopError::FetcherStopped),
        }
        app.now = Instant::now();
        terminal.draw(|f| ui::draw(f, &app))?;
        if !event::poll(TICK)? {
            continue;
        }
        // Drain what is pending so a burst of keys or resizes costs one redraw.
        loop {
            match event::read()? {
                Event::Key(key) => match app.handle_key(key) {
                    Action::Quit => return Ok(()),
                    Action::RefreshNow => fetcher.refresh_now(),
                    Action::None => {}
                },
                Event::Resize(_, _) => terminal.autoresize()?,
                _ => {}
            }
            if !event::poll(Duration::ZERO)? {
                break;
            }
        }
    }
    Ok(())
}

/// Whether raw mode and the alternate screen are on; makes [`restore_terminal`] act once,
/// whichever exit path (guard, panic hook) gets there first.
static TERMINAL_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Raw mode plus the alternate screen for as long as it lives; restores both (and shows
/// the cursor) when dropped, and installs a panic hook that restores before the previous
/// hook prints the panic.
struct TerminalGuard {
    terminal: Term,
}

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TERMINAL_ACTIVE.store(true, Ordering::SeqCst);
        // From here on, any failure must undo what was done.
        let setup = (|| {
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            let mut t = Terminal::new(CrosstermBackend::new(io::stdout()))?;
            t.clear()?;
            Ok(t)
        })();
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                let _ = restore_terminal();
                Err(e)
            }
        }
    }

    fn restore(self) -> io::Result<()> {
        restore_terminal()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore_terminal();
    }
}

/// Leaves raw mode and the alternate screen and shows the cursor, once: later calls do
/// nothing. Each step is tried even if an earlier one failed; the first error is returned.
fn restore_terminal() -> io::Result<()> {
    if !TERMINAL_ACTIVE.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    let raw = terminal::disable_raw_mode();
    let mut out = io::stdout();
    let screen = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let flush = out.flush();
    raw.and(screen).and(flush)
}

/// Installs (once per process) a panic hook that restores the terminal, then runs the hook
/// that was there before, so the panic message lands on a sane terminal.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = restore_terminal();
            previous(info);
        }));
    });
}
