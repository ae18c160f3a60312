//! The `process` backend, for the trusted pool: no namespaces, but its own cgroup per
//! run (memory, pids, CPU accounting, kill of every descendant), rlimits, an
//! unprivileged uid/gid per slot, no_new_privs, only fds 0–2, and the native backend's
//! seccomp filter (on x86_64; [`ProcessConfig::seccomp`]): without namespaces it is
//! what keeps a trusted user's program from making its own (an unprivileged user
//! namespace), tracing the slot's other processes or reaching the kernel's keyrings,
//! `bpf` and `io_uring`.
//!
//! The program sees the host's filesystem with the permissions of its uid. The work
//! folder is `<root>/<slot>` (mode 0700, owned by the slot's uid) instead of `/box`:
//! arguments and environment values equal to [`BOX_WORK_DIR`] or starting with
//! `/box/` are rewritten to it, so a [`RunSpec`] written for the native backend runs
//! unchanged. [`RunSpec::mounts`] cannot be honoured without a mount namespace: a
//! mount whose target differs from its host path is refused ([`SandboxError::InvalidSpec`]);
//! one with equal paths is only checked to exist (the uid must be able to read it).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::boxfs;
use super::cgroup::{CgroupLimits, CgroupOps, CgroupRoot, RunCgroup};
use super::cgroup_keeper::CgroupKeeper;
use super::exec::{self, Prepared, Slots, Stdio};
use super::sys;
use super::{RunOutcome, RunSpec, Sandbox, SandboxError, BOX_WORK_DIR};

/// Configuration of the process backend.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// First uid (and gid) of slots; slot `n` runs as `uid_base + n`. Default 61000
    /// (distinct from the native backend's 60000 range).
    pub uid_base: u32,
    /// Maximum concurrent runs. Default 1000.
    pub max_slots: u32,
    /// Folder holding the work folders (created mode 0711). Default `/run/judge-sandbox/process`.
    pub root: PathBuf,
    /// Where runs' cgroups live; `None`: detected.
    pub cgroups: Option<CgroupRoot>,
    /// First part of run cgroup names, `<tag>-<pid>-<n>` (letters only). Default `proc`.
    pub cgroup_tag: String,
    /// Load the seccomp filter of [`super::seccomp`] before exec (x86_64 only; ignored
    /// elsewhere). Default true.
    pub seccomp: bool,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            uid_base: 61_000,
            max_slots: 1000,
            root: PathBuf::from("/run/judge-sandbox/process"),
            cgroups: None,
            cgroup_tag: "proc".into(),
            seccomp: true,
        }
    }
}

/// The process backend (see the module docs).
#[derive(Clone)]
pub struct ProcessSandbox {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ProcessConfig,
    /// Makes run cgroups ahead of runs and removes them behind (off the run's path).
    cgroup_keeper: CgroupKeeper,
    slots: Slots,
    ncpu: u64,
    seccomp: Option<super::seccomp::Program>,
}

fn internal(what: impl std::fmt::Display) -> SandboxError {
    SandboxError::Internal(what.to_string())
}

impl ProcessSandbox {
    /// Builds the backend. Errors: [`SandboxError::Unavailable`] when not root or
    /// without a usable cgroup hierarchy.
    pub fn new(cfg: ProcessConfig) -> Result<ProcessSandbox, SandboxError> {
        let cgroups = exec::host_setup(
            &cfg.cgroups,
            "the process sandbox needs root (cgroups, switching uid)",
        )?;
        std::fs::create_dir_all(&cfg.root).map_err(|source| SandboxError::Io {
            op: "mkdir",
            path: cfg.root.clone(),
            source,
        })?;
        let _ = std::fs::set_permissions(
            &cfg.root,
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        );
        let swept = cgroups.sweep_stale();
        if swept > 0 {
            tracing::warn!(
                swept,
                "removed run cgroups left by judge processes that died mid-run"
            );
        }
        // With the freezer: without a PID namespace, killing a run means freezing it
        // first so that nothing forks away meanwhile.
        let cgroup_keeper = CgroupKeeper::new(cgroups, &cfg.cgroup_tag, true)?;
        let slots = Slots::new(cfg.max_slots);
        let seccomp = if cfg.seccomp {
            super::seccomp::Program::build()
        } else {
            None
        };
        Ok(ProcessSandbox {
            inner: Arc::new(Inner {
                seccomp,
                cfg,
                cgroup_keeper,
                slots,
                ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            }),
        })
    }

    /// Waits (at most `timeout`) until the cgroups of finished runs are removed and
    /// the stock of ready ones is refilled; returns whether that happened (see
    /// [`super::native::NativeSandbox::settle`]).
    pub fn settle(&self, timeout: Duration) -> bool {
        self.inner.cgroup_keeper.settle(timeout)
    }

    /// Folders of the ready, never used run cgroups kept in stock (see
    /// [`super::native::NativeSandbox::stocked_cgroups`]).
    pub fn stocked_cgroups(&self) -> Vec<PathBuf> {
        self.inner.cgroup_keeper.stocked()
    }

    /// Takes a slot that no other judge process on this host uses either (see
    /// [`Slots::take_host_wide`]; locks in `<root>/locks`). Without that, two judge
    /// processes could run programs under the same uid (able to signal each other) in
    /// the same work folder.
    fn take_host_slot(&self) -> Result<(u32, std::fs::File), SandboxError> {
        let cfg = &self.inner.cfg;
        self.inner
            .slots
            .take_host_wide(&cfg.root.join("locks"), cfg.uid_base)
    }

    fn run_slot(&self, spec: &RunSpec, slot: u32) -> Result<RunOutcome, SandboxError> {
        let inner = &self.inner;
        let uid = inner.cfg.uid_base + slot;
        let dir = inner.cfg.root.join(slot.to_string());
        // A folder left by a crashed judge is removed first (never followed).
        if std::fs::symlink_metadata(&dir).is_ok() {
            remove_work_dir(&dir)?;
        }
        std::fs::create_dir(&dir).map_err(|source| SandboxError::Io {
            op: "mkdir",
            path: dir.clone(),
            source,
        })?;
        let result = (|| {
            let dirfd =
                OwnedFd::from(
                    std::fs::File::open(&dir).map_err(|source| SandboxError::Io {
                        op: "open",
                        path: dir.clone(),
                        source,
                    })?,
                );
            // SAFETY: fchown/fchmod on a descriptor we own.
            unsafe {
                libc::fchown(dirfd.as_raw_fd(), uid, uid);
                libc::fchmod(dirfd.as_raw_fd(), 0o700);
            }
            for f in &spec.files {
                boxfs::write_file(
                    dirfd.as_raw_fd(),
                    &f.path,
                    &f.content,
                    f.executable,
                    uid,
                    uid,
                )?;
            }
            let host_dir = dir.to_string_lossy().into_owned();
            let mut prepared =
                Prepared::new(spec, &host_dir, uid, uid, Some((BOX_WORK_DIR, &host_dir)))?;
            prepared.seccomp = inner.seccomp.clone();
            let input_bytes = exec::input_file_bytes(spec);
            let Some(memory_bytes) =
                exec::memory_after_inputs(spec.limits.memory_bytes, input_bytes)
            else {
                return Ok(exec::inputs_exceed_memory(input_bytes));
            };
            let stdio = Stdio::new(spec)?;
            let cg = inner.cgroup_keeper.take(&CgroupLimits {
                memory_bytes,
                pids: spec.limits.pids,
            })?;
            let r = self.run_prepared(spec, &prepared, stdio, &cg);
            // Every descendant is killed inline; the cgroup is removed in the background.
            let finished = inner.cgroup_keeper.finish(cg);
            let mut outcome = r?;
            finished?;
            exec::count_inputs_as_memory(&mut outcome, input_bytes);
            for name in &spec.collect {
                if let Ok(data) =
                    boxfs::read_regular(dirfd.as_raw_fd(), name, spec.limits.file_size_bytes)?
                {
                    outcome.files.insert(name.clone(), data);
                }
            }
            Ok(outcome)
        })();
        let cleaned = remove_work_dir(&dir);
        let outcome = result?;
        cleaned?;
        Ok(outcome)
    }

    fn run_prepared(
        &self,
        spec: &RunSpec,
        prepared: &Prepared,
        stdio: Stdio,
        cg: &RunCgroup,
    ) -> Result<RunOutcome, SandboxError> {
        let (rep_r, rep_w) = sys::pipe().map_err(internal)?;
        let join = cg.join_fds();
        let fds = stdio.child_raw();
        // SAFETY: the child runs process_child only (raw syscalls on prepared data).
        let child = unsafe { sys::clone_fork(0, cg.clone_into_fd()) }
            .map_err(|e| internal(format!("clone: {e}")))?;
        let Some(child) = child else {
            process_child(&join, prepared, fds, rep_w.as_raw_fd());
        };
        drop(rep_w);
        let Stdio {
            child: cfds,
            captures,
        } = stdio;
        drop(cfds);
        let kill = || sys::pidfd_kill(child.pidfd.as_raw_fd(), libc::SIGKILL);
        let report = sys::read_child_report(rep_r.as_raw_fd());
        let start = Instant::now();
        match report {
            Ok(None) => {}
            Ok(Some((st, err))) => {
                let _ = sys::wait_pid(child.pid);
                return Err(exec::child_error(&spec.argv[0], st, err));
            }
            Err(e) => {
                kill();
                let _ = sys::wait_pid(child.pid);
                return Err(internal(format!("read child report: {e}")));
            }
        }
        // Without a PID namespace, the end of the program does not end its
        // descendants: the caller kills the whole cgroup afterwards.
        let watched = match exec::watch(
            child.pidfd.as_raw_fd(),
            cg,
            &spec.limits,
            captures,
            self.inner.ncpu,
            start,
            &|| {
                kill();
                let _ = cg.kill_all();
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                kill();
                let _ = sys::wait_pid(child.pid);
                return Err(e);
            }
        };
        let status = sys::wait_pid(child.pid).map_err(|e| internal(format!("wait: {e}")))?;
        let peak = cg.memory_peak()?.unwrap_or(watched.sampled_peak);
        Ok(exec::classify(
            watched,
            Some(status),
            &spec.limits,
            cg.oom_kills()?,
            cg.memory_limit_hits()?,
            peak,
        ))
    }
}

/// Child of the process backend: join the cgroup (v1), then the common last steps.
fn process_child(join: &[RawFd], prepared: &Prepared, stdio: [RawFd; 3], report: RawFd) -> ! {
    for &fd in join {
        if let Err(e) = sys::write_all_raw(fd, b"0") {
            sys::child_fail(report, exec::stage::JOIN_CGROUP, e);
        }
    }
    exec::program_child(prepared, stdio, report)
}

/// Removes a work folder without following links.
fn remove_work_dir(dir: &std::path::Path) -> Result<(), SandboxError> {
    let io = |op, source| SandboxError::Io {
        op,
        path: dir.to_path_buf(),
        source,
    };
    let md = std::fs::symlink_metadata(dir).map_err(|e| io("stat", e))?;
    if !md.is_dir() {
        return std::fs::remove_file(dir).map_err(|e| io("remove", e));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_nofollow()
        .open(dir)
        .map_err(|e| io("open", e))?;
    let mut budget = usize::MAX;
    boxfs::wipe(f.as_raw_fd(), &mut budget).map_err(|e| io("wipe", e))?;
    std::fs::remove_dir(dir).map_err(|e| io("rmdir", e))
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::custom_flags(self, libc::O_NOFOLLOW | libc::O_DIRECTORY)
    }
}

impl Sandbox for ProcessSandbox {
    fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        if spec.argv.is_empty() {
            return Err(SandboxError::InvalidSpec("empty argv".into()));
        }
        for m in &spec.mounts {
            if m.host != m.target {
                return Err(SandboxError::InvalidSpec(format!(
                    "the process backend cannot mount {} at {}: it has no mount namespace (use the same path)",
                    m.host.display(),
                    m.target.display()
                )));
            }
            if !m.host.exists() {
                return Err(SandboxError::InvalidSpec(format!(
                    "mount source {} does not exist",
                    m.host.display()
                )));
            }
        }
        let (slot, _lock) = self.take_host_slot()?;
        let r = self.run_slot(spec, slot);
        self.inner.slots.give(slot);
        r
    }

    fn name(&self) -> &'static str {
        "process"
    }
}
