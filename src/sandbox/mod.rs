//! The sandbox: runs one untrusted command under limits and reports how it ended.
//!
//! This layer knows nothing of problems, verdicts, HTTP or queues (see
//! `DESIGN.md`, "The sandbox contract"). Every backend implements [`Sandbox`];
//! [`RunSpec`] describes one run declaratively (as nsjail's config message does)
//! and [`RunOutcome`] reports it with isolate's meta quantities and units.
//!
//! Backends:
//! - [`native`]: namespaces, pivot_root into a read-only root, cgroups (v1 and v2),
//!   seccomp, unprivileged uid; warm boxes reused after a wipe. The default.
//! - [`process`]: the trusted pool: no namespaces, but rlimits, its own cgroup and
//!   an unprivileged uid.

pub mod boxfs;
pub mod cgroup;
pub mod cgroup_keeper;
mod exec;
pub mod native;
pub mod process;
mod raw;
pub mod seccomp;
mod spec;
mod sys;

/// The stack rlimit (bytes) of a run under a memory limit (bytes): what a runtime's own
/// stack size must stay below (see `judge::language`).
pub use exec::stack_bytes;
pub use spec::*;

use std::sync::Arc;
use std::time::Duration;

/// Names accepted by [`open`].
pub const BACKENDS: &[&str] = &["native", "process"];

/// Opens a backend by name with its default configuration: `"native"`
/// ([`native::NativeSandbox`]) or `"process"` ([`process::ProcessSandbox`]).
/// Cheap enough to call once per `judge test` and once per engine pool (no box is
/// made until the first run or [`Sandbox::prepare`]).
///
/// Errors: [`SandboxError::InvalidSpec`] for an unknown name (listing the valid ones);
/// [`SandboxError::Unavailable`] when the host lacks what the backend needs.
pub fn open(backend: &str) -> Result<Arc<dyn Sandbox>, SandboxError> {
    match backend {
        "native" => Ok(Arc::new(native::NativeSandbox::new(
            native::NativeConfig::default(),
        )?)),
        "process" => Ok(Arc::new(process::ProcessSandbox::new(
            process::ProcessConfig::default(),
        )?)),
        other => Err(SandboxError::InvalidSpec(format!(
            "unknown sandbox backend {other:?}; valid: {}",
            BACKENDS.join(", ")
        ))),
    }
}

/// One isolation backend. Implementations must be safe to call from many threads
/// at once: the judge runs an interactive problem's program and interactor
/// concurrently, and a pool runs many slots.
pub trait Sandbox: Send + Sync {
    /// Runs `spec` to completion (or to a limit) and reports how it ended.
    ///
    /// The contestant's program misbehaving (crashing, exceeding limits, attacking
    /// the box) is always an `Ok(RunOutcome)`; `Err` is only for the judge's own
    /// failures (cgroup writes failing, the box not starting), which the caller
    /// turns into IE.
    fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError>;

    /// Short backend name for logs, metrics and `judge doctor` (`"native"`, `"process"`).
    fn name(&self) -> &'static str;

    /// Makes one new box ready ahead of use and returns how long that took
    /// (the `cold_start_time` metric). Backends without warm state return
    /// `Ok(Duration::ZERO)`.
    fn prepare(&self) -> Result<Duration, SandboxError> {
        Ok(Duration::ZERO)
    }
}
