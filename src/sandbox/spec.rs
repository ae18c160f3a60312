//! The declarative description of one run ([`RunSpec`]) and its result ([`RunOutcome`]).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Path of the work folder inside every box; it is also the working directory and `HOME`.
pub const BOX_WORK_DIR: &str = "/box";

/// Everything a backend needs to run one command. Paths inside the box are absolute
/// box paths; file names in [`RunSpec::files`] and [`RunSpec::collect`] are relative to
/// [`BOX_WORK_DIR`] and must be plain names or relative paths without `..`.
#[derive(Debug, Default)]
pub struct RunSpec {
    /// Program and arguments; `argv[0]` is resolved against `PATH` of [`RunSpec::env`] inside the box.
    pub argv: Vec<String>,
    /// The complete environment of the program, as `(name, value)` pairs. Nothing of the
    /// host's environment is added by the backend except what this lists.
    pub env: Vec<(String, String)>,
    /// Files written into the work folder before the run.
    pub files: Vec<InputFile>,
    /// Where standard input comes from.
    pub stdin: Stdin,
    /// Where standard output goes.
    pub stdout: Output,
    /// Where standard error goes.
    pub stderr: Output,
    /// Extra bind mounts (toolchain folders, a problem's read-only files) on top of
    /// the backend's default read-only root.
    ///
    /// The native backend's default root holds `/usr`, `/bin`, `/lib`, `/lib64`,
    /// `/sbin` and a few `/etc` pieces (`crate::sandbox::native::ETC_PIECES`), so
    /// gcc, g++, `/usr/bin/python3`, Java (`/usr/lib/jvm` through `/etc/alternatives`)
    /// and Go (`/usr/lib/go`) need no mount. Toolchains elsewhere must be listed here,
    /// e.g. `/root/.rustup` and `/root/.cargo` for rustc: the target's missing parent
    /// folders are created inside the box, so a host parent of mode 0700 (`/root`) is
    /// fine. Targets inside `/box`, `/tmp`, `/proc` or `/dev`, and `/` or `/etc`
    /// themselves, are refused ([`SandboxError::InvalidSpec`]). Warm boxes are kept per
    /// mount set, so use the same list for every run of a language. The process
    /// backend has no mount namespace: it accepts only mounts whose target equals the
    /// host path.
    pub mounts: Vec<Mount>,
    /// Resource limits; see [`Limits`].
    pub limits: Limits,
    /// Regular files (relative to the work folder) copied out after the run into
    /// [`RunOutcome::files`]. A name that is missing, a symlink or not a regular file
    /// is reported as absent; the host never follows a link the program made.
    pub collect: Vec<String>,
}

/// A file placed in the work folder before the run.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Path relative to the work folder (no `..`, not absolute).
    pub path: String,
    /// The bytes to write.
    pub content: Arc<Vec<u8>>,
    /// Whether to mark it executable (mode 0755 instead of 0644).
    pub executable: bool,
}

/// Standard input of a run.
#[derive(Debug, Default, Clone)]
pub enum Stdin {
    /// `/dev/null`.
    #[default]
    Null,
    /// These bytes (fed through a pipe or a sealed file).
    Bytes(Arc<Vec<u8>>),
    /// A host file opened read-only by the judge (never by the program).
    HostFile(PathBuf),
    /// An already open descriptor, e.g. one end of a pipe to an interactor.
    Fd(Arc<OwnedFd>),
}

/// Standard output or error of a run.
#[derive(Debug, Default, Clone)]
pub enum Output {
    /// Discarded.
    #[default]
    Null,
    /// Captured into [`RunOutcome::stdout`] / [`RunOutcome::stderr`], at most
    /// `limit` bytes. Writing more ends the run with [`Status::OutputLimit`] when
    /// `kill_on_overflow` is set; otherwise the excess is dropped and the capture
    /// is marked truncated.
    Capture {
        /// Cap in bytes.
        limit: u64,
        /// Whether exceeding the cap is an output-limit verdict (stdout of a
        /// solution) or merely truncated (stderr, compiler diagnostics).
        kill_on_overflow: bool,
    },
    /// Captured like [`Output::Capture`], keeping only the first `keep` bytes, while
    /// writing more than `limit` bytes in all ends the run with
    /// [`Status::OutputLimit`]: a solution's stderr, whose content matters little but
    /// whose volume must stay bounded (case S10: 200 MB on stderr is an output limit,
    /// with the judge's memory flat).
    ///
    /// Past the first `keep` bytes, the last 16 KiB are kept as well (an out-of-memory
    /// message or the end of a traceback is there), after a line
    /// `[... N bytes not kept ...]`; `stderr_truncated` says that bytes were cut.
    CaptureHead {
        /// Bytes kept from the start.
        keep: u64,
        /// Most bytes the program may write in all.
        limit: u64,
    },
    /// An already open descriptor, e.g. one end of a pipe to an interactor.
    Fd(Arc<OwnedFd>),
}

/// A bind mount from the host into the box.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    /// Host path (a folder or a file).
    pub host: PathBuf,
    /// Absolute path inside the box.
    pub target: PathBuf,
    /// Read-write when true; read-only (and nosuid, nodev) otherwise.
    pub writable: bool,
}

/// Limits of one run. Zero never means "unlimited": every field has a finite default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time in ms, summed over every thread and process of the run (user + system),
    /// measured by the cgroup and enforced by watching it.
    pub cpu_ms: u64,
    /// Wall-clock time in ms from exec to exit.
    pub wall_ms: u64,
    /// Memory in bytes (cgroup memory limit, swap off; never an address-space limit).
    /// Files written to the box's tmpfs count against it.
    pub memory_bytes: u64,
    /// Maximum number of processes plus threads alive at once (pids controller).
    pub pids: u32,
    /// Largest file the program may write, in bytes (RLIMIT_FSIZE); exceeding it is
    /// [`Status::OutputLimit`].
    pub file_size_bytes: u64,
    /// Maximum number of open file descriptors (RLIMIT_NOFILE).
    pub open_files: u32,
    /// Size of the work folder's and /tmp's tmpfs in bytes.
    pub disk_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_ms: 1_000,
            wall_ms: 3_000,
            memory_bytes: 256 << 20,
            pids: 64,
            file_size_bytes: 64 << 20,
            open_files: 64,
            disk_bytes: 64 << 20,
        }
    }
}

/// How a run ended. Serialized in snake_case as `judge sandbox run --json` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exited with code 0.
    #[default]
    Ok,
    /// Exited with a non-zero code ([`RunOutcome::exit_code`]).
    NonzeroExit,
    /// Killed by a signal ([`RunOutcome::signal`]) that is not one of the limits below.
    Signaled,
    /// CPU time limit exceeded.
    TimeLimit,
    /// Wall-clock limit exceeded.
    WallLimit,
    /// Memory limit exceeded (cgroup OOM kill or failed allocation at the limit).
    MemoryLimit,
    /// Output or file-size limit exceeded.
    OutputLimit,
}

/// The result of one run, with isolate's meta quantities.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    /// How it ended.
    pub status: Status,
    /// Exit code when the program exited by itself.
    pub exit_code: Option<i32>,
    /// Terminating signal number when it was killed by one.
    pub signal: Option<i32>,
    /// CPU time in ms (user + system, all threads and processes), from the cgroup.
    pub time_ms: u64,
    /// Wall time in ms.
    pub wall_ms: u64,
    /// Peak memory in KiB, from the cgroup (memory.max_usage_in_bytes on v1, memory.peak on v2).
    pub memory_kib: u64,
    /// Captured standard output (see [`Output::Capture`]).
    pub stdout: Vec<u8>,
    /// Whether `stdout` was cut at its cap.
    pub stdout_truncated: bool,
    /// Captured standard error.
    pub stderr: Vec<u8>,
    /// Whether `stderr` was cut at its cap.
    pub stderr_truncated: bool,
    /// Files named in [`RunSpec::collect`] that existed as regular files, by name.
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

/// The judge's own failure to run something. Never the contestant's fault: callers
/// report it as IE (internal error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The host lacks something the backend needs (no usable cgroup hierarchy, not root,
    /// namespaces disabled). The message says what to fix.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// The spec is invalid (empty argv, a file name with `..`, a mount target that is not absolute).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// An I/O operation of the judge failed; `path` names what it touched.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "write" or "mkdir".
        op: &'static str,
        /// The host path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup: {0}")]
    Cgroup(String),
    /// Anything else that went wrong setting up or tearing down a box.
    #[error("sandbox internal error: {0}")]
    Internal(String),
}
