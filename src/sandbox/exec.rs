//! What both backends share: preparing a run before the clone (everything that
//! allocates), the program child's last steps before `execve` (raw syscalls only),
//! watching the run (CPU time, wall time, output caps) and turning what happened into
//! a [`RunOutcome`].

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use super::cgroup::{CgroupOps, CgroupRoot, RunCgroup};
use super::raw::{self, sc};
use super::sys;
use super::{Limits, Output, RunOutcome, RunSpec, SandboxError, Status, Stdin};

/// Checks that the judge runs as root and returns the cgroup root to use: `given`, or
/// the detected one. `why` says what the backend needs root for.
pub(crate) fn host_setup(
    given: &Option<CgroupRoot>,
    why: &str,
) -> Result<CgroupRoot, SandboxError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SandboxError::Unavailable(format!(
            "{why}; run judge as root"
        )));
    }
    match given {
        Some(c) => Ok(c.clone()),
        None => CgroupRoot::detect(),
    }
}

/// A pool of numbered slots (box numbers, hence uids) shared by the runs of a backend.
#[derive(Debug)]
pub(crate) struct Slots {
    free: std::sync::Mutex<std::collections::BTreeSet<u32>>,
    max: u32,
}

impl Slots {
    pub fn new(max: u32) -> Slots {
        Slots {
            free: std::sync::Mutex::new((0..max).collect()),
            max,
        }
    }

    /// Takes the lowest free slot. Errors: [`SandboxError::Unavailable`] when all are in use.
    pub fn take(&self) -> Result<u32, SandboxError> {
        let mut s = self
            .free
            .lock()
            .map_err(|_| SandboxError::Internal("slot pool poisoned".into()))?;
        let first = *s.iter().next().ok_or_else(|| {
            SandboxError::Unavailable(format!("all {} boxes are in use", self.max))
        })?;
        s.remove(&first);
        Ok(first)
    }

    /// Returns a slot.
    pub fn give(&self, slot: u32) {
        if let Ok(mut s) = self.free.lock() {
            s.insert(slot);
        }
    }

    /// Takes the lowest slot that no other judge process (or other sandbox of this
    /// one) on this host holds either: slots are numbered per sandbox, so the uid of
    /// each (`uid_base + slot`) is also locked host-wide, with `flock` on
    /// `dir/<uid>` held until the returned file is dropped (the kernel drops it with a
    /// dead process). Two judge processes never run programs under the same uid, which
    /// would share per-user kernel limits (pipe buffers, message queues, inotify) and
    /// standing to signal each other.
    ///
    /// Errors: [`SandboxError::Unavailable`] when every slot is taken here or by others;
    /// [`SandboxError::Io`] when the lock folder or a lock file cannot be made.
    pub fn take_host_wide(
        &self,
        dir: &std::path::Path,
        uid_base: u32,
    ) -> Result<(u32, std::fs::File), SandboxError> {
        std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
            op: "mkdir",
            path: dir.to_path_buf(),
            source,
        })?;
        let mut busy = Vec::new();
        let result = loop {
            let slot = match self.take() {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            let path = dir.join((uid_base + slot).to_string());
            let f = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            {
                Ok(f) => f,
                Err(source) => {
                    self.give(slot);
                    break Err(SandboxError::Io {
                        op: "open",
                        path,
                        source,
                    });
                }
            };
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break Ok((slot, f));
            }
            busy.push(slot);
        };
        for s in busy {
            self.give(s);
        }
        result
    }
}

/// Child-side failure stages reported through the error pipe (see [`stage_name`]).
pub(crate) mod stage {
    pub const JOIN_CGROUP: u32 = 1;
    pub const SETNS_NET: u32 = 2;
    pub const SETNS_MNT: u32 = 3;
    pub const HOSTNAME: u32 = 4;
    pub const REMOUNT_BOX: u32 = 5;
    pub const REMOUNT_TMP: u32 = 6;
    pub const MOUNT_PROC: u32 = 7;
    pub const FORK: u32 = 8;
    pub const STDIO: u32 = 9;
    pub const CHDIR: u32 = 10;
    pub const RLIMIT: u32 = 11;
    pub const PRIVILEGES: u32 = 12;
    pub const SECCOMP: u32 = 13;
    pub const EXEC: u32 = 14;
    pub const COPY_MNT: u32 = 15;
    pub const SIGNALFD: u32 = 16;
    /// Box construction steps are reported as `ROOT_OP + index of the operation`.
    pub const ROOT_OP: u32 = 1000;
}

/// Human name of a child-side failure stage.
pub(crate) fn stage_name(s: u32) -> &'static str {
    match s {
        stage::JOIN_CGROUP => "join cgroup",
        stage::SETNS_NET => "join network namespace",
        stage::SETNS_MNT => "join mount namespace",
        stage::HOSTNAME => "set hostname",
        stage::REMOUNT_BOX => "remount /box",
        stage::REMOUNT_TMP => "remount /tmp",
        stage::MOUNT_PROC => "mount /proc",
        stage::FORK => "fork program",
        stage::STDIO => "set up standard descriptors",
        stage::CHDIR => "change to the work folder",
        stage::RLIMIT => "set resource limits",
        stage::PRIVILEGES => "drop privileges",
        stage::SECCOMP => "load seccomp filter",
        stage::EXEC => "execute the program",
        stage::COPY_MNT => "copy the box's mount namespace",
        stage::SIGNALFD => "make init's signal descriptor",
        _ => "build the box root",
    }
}

/// Turns a child-side report into the error returned to the caller.
pub(crate) fn child_error(argv0: &str, stage: u32, err: i32) -> SandboxError {
    let e = std::io::Error::from_raw_os_error(err);
    if stage == stage::EXEC {
        SandboxError::InvalidSpec(format!("cannot execute {argv0:?} in the box: {e}"))
    } else {
        SandboxError::Internal(format!("{}: {e}", stage_name(stage)))
    }
}

/// Everything the program child needs, built before the clone.
pub(crate) struct Prepared {
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    candidates: Vec<CString>,
    rlimits: Vec<(u32, libc::rlimit)>,
    workdir: CString,
    uid: u32,
    gid: u32,
    /// A seccomp program to load last (`None`: no filter).
    pub seccomp: Option<super::seccomp::Program>,
}

fn cstring(what: &str, s: &str) -> Result<CString, SandboxError> {
    CString::new(s).map_err(|_| SandboxError::InvalidSpec(format!("{what} {s:?} contains NUL")))
}

impl Prepared {
    /// Builds argv, envp, the exec candidates (argv[0] resolved along the spec's
    /// `PATH`, default `/usr/local/bin:/usr/bin:/bin`) and the rlimits.
    ///
    /// `rewrite` maps a box path prefix to a host one (the process backend's work
    /// folder); the native backend passes `None`.
    pub fn new(
        spec: &RunSpec,
        workdir: &str,
        uid: u32,
        gid: u32,
        rewrite: Option<(&str, &str)>,
    ) -> Result<Prepared, SandboxError> {
        let fix = |s: &str| -> String {
            match rewrite {
                Some((from, to)) if s == from || s.starts_with(&format!("{from}/")) => {
                    format!("{to}{}", &s[from.len()..])
                }
                _ => s.to_string(),
            }
        };
        let argv0 = spec
            .argv
            .first()
            .ok_or_else(|| SandboxError::InvalidSpec("empty argv".into()))?;
        // Limits no program can start under are the caller's mistake, not a verdict.
        if spec.limits.memory_bytes < 1 << 20 {
            return Err(SandboxError::InvalidSpec(format!(
                "memory limit of {} bytes is below 1 MiB: no program can start under it",
                spec.limits.memory_bytes
            )));
        }
        if spec.limits.pids == 0 {
            return Err(SandboxError::InvalidSpec(
                "pids limit 0: the program itself is a task".into(),
            ));
        }
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring("argument", &fix(a)))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = spec
            .env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(SandboxError::InvalidSpec(format!(
                        "bad environment name {k:?}"
                    )));
                }
                cstring("environment entry", &format!("{k}={}", fix(v)))
            })
            .collect::<Result<_, _>>()?;
        let path = spec
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        let candidates = if argv0.contains('/') {
            vec![cstring("program", &fix(argv0))?]
        } else {
            path.split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstring("program", &format!("{}/{argv0}", fix(d))))
                .collect::<Result<_, _>>()?
        };
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(Prepared {
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            candidates,
            rlimits: rlimits(&spec.limits),
            workdir: cstring("work folder", workdir)?,
            uid,
            gid,
            seccomp: None,
        })
    }
}

/// The stack limit (bytes) under a memory limit of `memory_bytes`: the limit less a
/// headroom of 1/16 of it, at least 8 MiB (at most half the limit), for the rest of
/// the program (code, libraries, heap). A recursion that stays within the memory
/// limit then has the stack it needs (cases V6: "stack limited only by the memory
/// limit"), while an infinite one reaches the stack limit — SIGSEGV, a runtime error —
/// before the memory cgroup's limit, unless the rest of the program is larger than
/// the headroom (then the run ends as a memory limit, which it also is).
pub fn stack_bytes(memory_bytes: u64) -> u64 {
    let headroom = (memory_bytes / 16).max(8 << 20).min(memory_bytes / 2);
    memory_bytes - headroom
}

/// The rlimits of a run. RLIMIT_CPU is only a backstop (whole seconds, one more than
/// the limit rounded up): CPU time is enforced by watching the cgroup. The stack may
/// use the memory limit less a headroom ([`stack_bytes`]): deep recursion is fine,
/// an infinite one ends with SIGSEGV (a runtime error, case V6) before the cgroup's
/// OOM killer would turn it into a memory limit. No address-space limit: the JVM and
/// Go reserve far more address space than they use.
pub(crate) fn rlimits(l: &Limits) -> Vec<(u32, libc::rlimit)> {
    let r = |v: u64| libc::rlimit {
        rlim_cur: v,
        rlim_max: v,
    };
    let cpu_s = l.cpu_ms.div_ceil(1000) + 1;
    vec![
        (
            libc::RLIMIT_CPU,
            libc::rlimit {
                rlim_cur: cpu_s,
                rlim_max: cpu_s + 1,
            },
        ),
        (libc::RLIMIT_FSIZE, r(l.file_size_bytes)),
        (libc::RLIMIT_NOFILE, r(u64::from(l.open_files))),
        (libc::RLIMIT_STACK, r(stack_bytes(l.memory_bytes))),
        (libc::RLIMIT_CORE, r(0)),
        (libc::RLIMIT_MEMLOCK, r(64 << 10)),
    ]
}

/// Program child: the last steps before `execve`. Never returns; on failure it reports
/// `(stage, errno)` on `report` and exits 127. Only raw syscalls (see [`sys`]).
pub(crate) fn program_child(p: &Prepared, stdio: [RawFd; 3], report: RawFd) -> ! {
    // The child may share the judge's memory and thread-local storage (CLONE_VM):
    // raw system calls only, no errno (see `raw`). Signals: block everything while
    // the dispositions inherited from the judge are reset (a handler of the judge must
    // never run here), then unblock right before execve — the program starts with an
    // empty mask and default dispositions (Rust's runtime ignores SIGPIPE, and
    // "ignore" would survive exec).
    let all: u64 = !0;
    let none: u64 = 0;
    // SAFETY: rt_sigprocmask with an 8-byte kernel sigset on this stack.
    unsafe {
        sc!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            0,
            8
        )
    };
    let dfl = raw::KernelSigaction::default();
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction with a kernel sigaction on this stack (SIG_DFL).
            unsafe {
                sc!(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const raw::KernelSigaction,
                    0,
                    8
                )
            };
        }
    }
    if let Err(e) = sys::child_setup_stdio(stdio, report) {
        sys::child_fail(report, stage::STDIO, e);
    }
    // SAFETY: workdir is a valid C string.
    if let Err(e) = raw::check(unsafe { sc!(libc::SYS_chdir, p.workdir.as_ptr()) }) {
        sys::child_fail(report, stage::CHDIR, e);
    }
    for (res, lim) in &p.rlimits {
        // SAFETY: prlimit64 on this process with a valid rlimit.
        let r = unsafe { sc!(libc::SYS_prlimit64, 0, *res, lim as *const libc::rlimit, 0) };
        if let Err(e) = raw::check(r) {
            sys::child_fail(report, stage::RLIMIT, e);
        }
    }
    // A session of its own: the terminal's Ctrl-C (SIGINT to the judge's foreground
    // process group) and kill(0, …) of another program started by the same judge
    // process group never reach it.
    // SAFETY: setsid takes no arguments; a fresh child is never a group leader.
    if let Err(e) = raw::check(unsafe { sc!(libc::SYS_setsid) }) {
        sys::child_fail(report, stage::PRIVILEGES, e);
    }
    if let Err(e) = sys::child_drop_privileges(p.uid, p.gid) {
        sys::child_fail(report, stage::PRIVILEGES, e);
    }
    if let Some(prog) = &p.seccomp {
        if let Err(e) = prog.load() {
            sys::child_fail(report, stage::SECCOMP, e);
        }
    }
    let cands: [&CStr; 16] = {
        let mut a: [&CStr; 16] = [c""; 16];
        for (slot, c) in a.iter_mut().zip(p.candidates.iter()) {
            *slot = c.as_c_str();
        }
        a
    };
    let n = p.candidates.len().min(16);
    // SAFETY: as above; from here on signals are delivered with default actions.
    unsafe {
        sc!(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &none as *const u64,
            0,
            8
        )
    };
    let err = sys::child_exec(&cands[..n], &p.argv_ptrs, &p.envp_ptrs);
    sys::child_fail(report, stage::EXEC, err)
}

/// A pipe the host reads a captured stream from.
pub(crate) struct Capture {
    read: OwnedFd,
    /// Bytes kept in `buf`.
    keep: u64,
    /// Most bytes the program may write in all (checked when `kill_on_overflow`).
    limit: u64,
    kill_on_overflow: bool,
    buf: Vec<u8>,
    /// Past `keep`: the latest bytes, at most [`TAIL_KEPT`] once trimmed (`None`: not
    /// kept, for [`Output::Capture`]).
    tail: Option<Vec<u8>>,
    /// Bytes read so far.
    total: u64,
    truncated: bool,
    eof: bool,
}

/// Bytes kept from the end of an [`Output::CaptureHead`] stream that went past its
/// head: where an out-of-memory message or the last line of a traceback is.
pub const TAIL_KEPT: usize = 16 << 10;

impl Capture {
    /// What was kept: the head, and for a head-and-tail capture that went past its
    /// head, a line saying how many bytes were left out, then the last [`TAIL_KEPT`]
    /// bytes.
    fn into_kept(self) -> Vec<u8> {
        let mut buf = self.buf;
        if let Some(tail) = self.tail.filter(|t| !t.is_empty()) {
            let tail = &tail[tail.len().saturating_sub(TAIL_KEPT)..];
            let cut = self.total - buf.len() as u64 - tail.len() as u64;
            if cut > 0 {
                buf.extend_from_slice(format!("\n[... {cut} bytes not kept ...]\n").as_bytes());
            }
            buf.extend_from_slice(tail);
        }
        buf
    }

    /// Reads what is available; returns true when the cap was exceeded and the run
    /// must end with an output limit.
    fn drain(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        loop {
            // SAFETY: chunk is a valid buffer; the fd is non-blocking.
            let n = unsafe {
                libc::read(
                    self.read.as_raw_fd(),
                    chunk.as_mut_ptr().cast(),
                    chunk.len(),
                )
            };
            if n == 0 {
                self.eof = true;
                return false;
            }
            if n < 0 {
                let e = sys::errno();
                if e == libc::EINTR {
                    continue;
                }
                if e != libc::EAGAIN {
                    self.eof = true;
                }
                return false;
            }
            let data = &chunk[..n as usize];
            self.total += data.len() as u64;
            let room = (self.keep as usize).saturating_sub(self.buf.len());
            if data.len() > room {
                self.buf.extend_from_slice(&data[..room]);
                self.truncated = true;
                if let Some(tail) = self.tail.as_mut() {
                    tail.extend_from_slice(&data[room..]);
                    if tail.len() > 2 * TAIL_KEPT {
                        tail.drain(..tail.len() - TAIL_KEPT);
                    }
                }
            } else {
                self.buf.extend_from_slice(data);
            }
            if self.kill_on_overflow && self.total > self.limit {
                return true;
            }
        }
    }
}

/// The child's three standard descriptors, plus the host ends that capture output.
pub(crate) struct Stdio {
    /// Descriptors the child dup2's into 0, 1, 2 (the host closes its copies after the clone).
    pub child: [OwnedFd; 3],
    /// Host read ends for stdout and stderr captures.
    pub captures: [Option<Capture>; 2],
}

fn dup_fd(fd: RawFd) -> Result<OwnedFd, SandboxError> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor the caller keeps open.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if d < 0 {
        return Err(SandboxError::Internal(format!(
            "dup descriptor {fd}: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

fn open_host(path: &std::path::Path, write: bool) -> Result<OwnedFd, SandboxError> {
    open_host_flags(path, write, 0)
}

/// [`open_host`] with extra `open(2)` flags.
fn open_host_flags(
    path: &std::path::Path,
    write: bool,
    flags: i32,
) -> Result<OwnedFd, SandboxError> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(flags)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| SandboxError::Io {
            op: "open",
            path: path.into(),
            source,
        })
}

/// Opens a host file given as a run's standard input: a regular file only. A folder
/// would hand the program a descriptor from which `openat(fd, "..")` walks the host's
/// tree, and a FIFO without a writer would block the judge before any time limit
/// applies (QA), so both are refused; opening does not block (`O_NONBLOCK`, which
/// regular files ignore, is cleared again).
///
/// Returns the descriptor and the file's size in bytes.
///
/// Errors: [`SandboxError::Io`] when it cannot be opened; [`SandboxError::InvalidSpec`]
/// when it is not a regular file.
fn open_input(path: &std::path::Path) -> Result<(OwnedFd, u64), SandboxError> {
    let fd = open_host_flags(path, false, libc::O_NONBLOCK | libc::O_NOCTTY)?;
    // SAFETY: fstat into a zeroed stat; fcntl on a descriptor we own (back to blocking
    // reads for the program).
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(io_internal("fstat")(std::io::Error::last_os_error()));
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(SandboxError::InvalidSpec(format!(
                "standard input {} is not a regular file",
                path.display()
            )));
        }
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
        Ok((fd, st.st_size as u64))
    }
}

fn io_internal(what: &str) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |e| SandboxError::Internal(format!("{what}: {e}"))
}

/// Brings a host file the program will read into the page cache from the judge's side.
/// Page cache is charged to the memory cgroup of whoever reads a page first, so a
/// program reading a test input that was not cached was charged for it: its memory
/// reported up to the limit on one run and small on the next, and a run that then
/// crashed for another reason could be taken for a memory limit (the limit was hit).
/// Mapping the file here and populating the mapping (`MADV_POPULATE_READ`, Linux 5.14;
/// older kernels read it) charges the judge's cgroup instead; pages already cached
/// cost a page-table walk, not a copy. Best effort: any failure leaves
/// things as they were. `fd` is a regular file of `len` bytes ([`open_input`]).
fn cache_as_judge(fd: RawFd, len: u64) {
    let len = len as usize;
    if len == 0 {
        return;
    }
    // SAFETY: a shared read-only mapping of a descriptor we hold, never touched (only
    // populated by the kernel), unmapped before returning; pread into a buffer here.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            return;
        }
        const MADV_POPULATE_READ: i32 = 22;
        let populated = libc::madvise(p, len, MADV_POPULATE_READ) == 0;
        let old_kernel = !populated && sys::errno() == libc::EINVAL;
        libc::munmap(p, len);
        if old_kernel {
            // Reading (not touching the mapping: a file cut short meanwhile would be
            // SIGBUS) fills the cache the same way, with a copy.
            let mut buf = [0u8; 64 << 10];
            let mut off = 0i64;
            while (off as usize) < len {
                let n = libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off);
                if n <= 0 {
                    break;
                }
                off += n as i64;
            }
        }
    }
}

/// Lets the box user reopen a pipe it was given as fd 0–2 (`/dev/stdout` is a link to
/// `/proc/self/fd/1`: opening it opens the pipe again, checked against the pipe's
/// owner and mode, which are root's and 0600 when the judge made it). The mode is
/// widened to 0666; it guards nothing else, as only a process allowed to look into
/// the holder's `/proc/<pid>/fd` (the same uid, or root) can reach the pipe at all.
/// Files and other descriptors are left as they are.
fn reopenable(fd: RawFd) {
    // SAFETY: fstat into a zeroed stat, fchmod on a descriptor we hold.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO {
            libc::fchmod(fd, 0o666);
        }
    }
}

/// A capture pipe: the write end for the child, and the host's [`Capture`] keeping
/// the first `keep` bytes and, when `kill_on_overflow`, ending the run after `limit`.
fn capture_pipe(
    keep: u64,
    limit: u64,
    kill_on_overflow: bool,
    tail: bool,
) -> Result<(OwnedFd, Capture), SandboxError> {
    let (r, w) = sys::pipe().map_err(io_internal("pipe"))?;
    sys::set_nonblocking(r.as_raw_fd()).map_err(io_internal("pipe"))?;
    // A larger pipe means fewer wake-ups for big outputs; best effort.
    // SAFETY: fcntl on our pipe.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    let capture = Capture {
        read: r,
        keep,
        limit,
        kill_on_overflow,
        buf: Vec::new(),
        tail: tail.then(Vec::new),
        total: 0,
        truncated: false,
        eof: false,
    };
    Ok((w, capture))
}

impl Stdio {
    /// Opens or creates the descriptors `spec` asks for. Stdin bytes go into a sealed
    /// memfd (seekable like a file, never blocks the judge).
    pub fn new(spec: &RunSpec) -> Result<Stdio, SandboxError> {
        let stdin = match &spec.stdin {
            Stdin::Null => open_host("/dev/null".as_ref(), false)?,
            Stdin::HostFile(p) => {
                let (fd, len) = open_input(p)?;
                cache_as_judge(fd.as_raw_fd(), len);
                fd
            }
            Stdin::Fd(fd) => dup_fd(fd.as_raw_fd())?,
            Stdin::Bytes(b) => {
                // SAFETY: memfd_create with a static name.
                let fd = unsafe {
                    libc::memfd_create(
                        c"stdin".as_ptr(),
                        libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
                    )
                };
                if fd < 0 {
                    return Err(io_internal("memfd_create")(std::io::Error::last_os_error()));
                }
                // SAFETY: fresh descriptor.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let mut f = std::fs::File::from(fd);
                std::io::Write::write_all(&mut f, b).map_err(io_internal("write stdin"))?;
                std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0))
                    .map_err(io_internal("seek stdin"))?;
                // SAFETY: fcntl seal on our memfd.
                unsafe {
                    libc::fcntl(
                        f.as_raw_fd(),
                        libc::F_ADD_SEALS,
                        libc::F_SEAL_WRITE
                            | libc::F_SEAL_GROW
                            | libc::F_SEAL_SHRINK
                            | libc::F_SEAL_SEAL,
                    )
                };
                OwnedFd::from(f)
            }
        };
        let mut captures: [Option<Capture>; 2] = [None, None];
        let mut outs = Vec::with_capacity(2);
        for (i, o) in [&spec.stdout, &spec.stderr].into_iter().enumerate() {
            outs.push(match o {
                Output::Null => open_host("/dev/null".as_ref(), true)?,
                Output::Fd(fd) => dup_fd(fd.as_raw_fd())?,
                Output::Capture {
                    limit,
                    kill_on_overflow,
                } => {
                    let (w, c) = capture_pipe(*limit, *limit, *kill_on_overflow, false)?;
                    captures[i] = Some(c);
                    w
                }
                Output::CaptureHead { keep, limit } => {
                    let (w, c) = capture_pipe(*keep, *limit, true, true)?;
                    captures[i] = Some(c);
                    w
                }
            });
        }
        let err = outs.pop().expect("two outputs");
        let out = outs.pop().expect("two outputs");
        let child = [stdin, out, err];
        for fd in &child {
            reopenable(fd.as_raw_fd());
        }
        Ok(Stdio { child, captures })
    }

    /// Raw numbers of the child's descriptors.
    pub fn child_raw(&self) -> [RawFd; 3] {
        [
            self.child[0].as_raw_fd(),
            self.child[1].as_raw_fd(),
            self.child[2].as_raw_fd(),
        ]
    }
}

/// Why the host ended a run early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    Cpu,
    Wall,
    Output,
}

/// What watching a run found.
pub(crate) struct Watched {
    pub kill: Option<Kill>,
    pub cpu_ns: u64,
    pub wall: Duration,
    /// Highest memory.current seen (fallback where the kernel keeps no peak).
    pub sampled_peak: u64,
    pub captures: [Option<Capture>; 2],
}

/// Watches the run until `pidfd` becomes readable or hangs up (the program's pidfd
/// when it exits; the native box's init socket when init reports the program's end
/// or dies) or a limit is hit, then kills the run through `kill` (called once). CPU
/// time is read from the cgroup; the next check comes when the remaining CPU time could be used up by all
/// `ncpu` CPUs at once, but at least every millisecond near the limit and at most
/// every 50 ms, so a TLE is detected within about `ncpu` ms of the limit.
pub(crate) fn watch(
    pidfd: RawFd,
    cg: &RunCgroup,
    limits: &Limits,
    mut captures: [Option<Capture>; 2],
    ncpu: u64,
    start: Instant,
    kill: &dyn Fn(),
) -> Result<Watched, SandboxError> {
    let cpu_limit_ns = limits.cpu_ms.saturating_mul(1_000_000);
    let wall_limit = Duration::from_millis(limits.wall_ms);
    let mut killed = None;
    let mut sampled_peak = 0u64;
    let mut cpu_ns;
    loop {
        cpu_ns = cg.cpu_usage_ns()?;
        if let Ok(m) = cg.memory_current() {
            sampled_peak = sampled_peak.max(m);
        }
        let wall = start.elapsed();
        if killed.is_none() {
            if cpu_ns > cpu_limit_ns {
                killed = Some(Kill::Cpu);
                kill();
            } else if wall > wall_limit {
                killed = Some(Kill::Wall);
                kill();
            }
        }
        let timeout = if killed.is_some() {
            Duration::from_millis(50)
        } else {
            let cpu_left = Duration::from_nanos((cpu_limit_ns - cpu_ns) / ncpu.max(1));
            let wall_left = wall_limit.saturating_sub(wall);
            cpu_left
                .min(wall_left)
                .clamp(Duration::from_millis(1), Duration::from_millis(50))
        };
        let mut fds = [libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        }; 3];
        let mut n = 1;
        let mut which = [usize::MAX; 3];
        for (i, c) in captures.iter().enumerate() {
            if let Some(c) = c {
                if !c.eof {
                    fds[n] = libc::pollfd {
                        fd: c.read.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    which[n] = i;
                    n += 1;
                }
            }
        }
        let ms = timeout.as_millis().max(1) as i32;
        // SAFETY: fds[..n] are initialised pollfd entries.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, ms) };
        if r < 0 && sys::errno() != libc::EINTR {
            return Err(io_internal("poll")(std::io::Error::last_os_error()));
        }
        for k in 1..n {
            if fds[k].revents != 0 {
                if let Some(c) = captures[which[k]].as_mut() {
                    if c.drain() && killed.is_none() {
                        killed = Some(Kill::Output);
                        kill();
                    }
                }
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    let wall = start.elapsed();
    // The run's tasks are gone (or dying): take what is left in the pipes. A writer
    // outside the run (an interactor holding a dup) cannot exist for capture pipes.
    for c in captures.iter_mut().flatten() {
        if !c.eof && c.drain() && killed.is_none() {
            killed = Some(Kill::Output);
        }
    }
    Ok(Watched {
        kill: killed,
        cpu_ns: cg.cpu_usage_ns().unwrap_or(cpu_ns).max(cpu_ns),
        wall,
        sampled_peak,
        captures,
    })
}

/// Bytes the spec's input files take in the box's RAM filesystem: whole pages, plus a
/// page per file for its inode.
pub(crate) fn input_file_bytes(spec: &RunSpec) -> u64 {
    spec.files
        .iter()
        .map(|f| (f.content.len() as u64).div_ceil(4096) * 4096 + 4096)
        .sum()
}

/// The memory-cgroup limit left for a run whose input files take `input_bytes`, or
/// `None` when they leave it less than 1 MiB (no program can start).
///
/// The judge writes the input files (the executable among them) into a RAM
/// filesystem, so their pages are charged to the judge's memory cgroup, not to the
/// run's, although the program maps and reads them: an executable with 250 MB of
/// initialised data ran under a 64 MiB limit. So they count against the memory limit:
/// the run's cgroup gets what is left, and its reported peak includes them.
pub(crate) fn memory_after_inputs(limit: u64, input_bytes: u64) -> Option<u64> {
    limit
        .checked_sub(input_bytes)
        .filter(|&left| left >= 1 << 20)
}

/// The outcome of a run that cannot start because its input files alone take its
/// memory limit (see [`memory_after_inputs`]).
pub(crate) fn inputs_exceed_memory(input_bytes: u64) -> RunOutcome {
    RunOutcome {
        status: Status::MemoryLimit,
        memory_kib: input_bytes.div_ceil(1024),
        ..Default::default()
    }
}

/// Adds the input files (whole pages) to a finished run's reported memory (see
/// [`memory_after_inputs`]).
pub(crate) fn count_inputs_as_memory(outcome: &mut RunOutcome, input_bytes: u64) {
    outcome.memory_kib += input_bytes / 1024;
}

/// Turns what happened into an outcome. Order of precedence: a limit the host
/// enforced (CPU, wall, output), then CPU time over the limit at exit, then an OOM kill
/// in the cgroup (or an abnormal end after memory hit the limit), then SIGXFSZ (file
/// size limit), then the program's own exit or signal.
pub(crate) fn classify(
    w: Watched,
    wait_status: Option<i32>,
    limits: &Limits,
    oom_kills: u64,
    limit_hits: u64,
    peak_bytes: u64,
) -> RunOutcome {
    let mut o = RunOutcome {
        time_ms: w.cpu_ns / 1_000_000,
        wall_ms: w.wall.as_millis() as u64,
        memory_kib: peak_bytes.div_ceil(1024),
        ..Default::default()
    };
    let mut caps = w.captures;
    if let Some(c) = caps[0].take() {
        o.stdout_truncated = c.truncated;
        o.stdout = c.into_kept();
    }
    if let Some(c) = caps[1].take() {
        o.stderr_truncated = c.truncated;
        o.stderr = c.into_kept();
    }
    if let Some(st) = wait_status {
        if libc::WIFEXITED(st) {
            o.exit_code = Some(libc::WEXITSTATUS(st));
        } else if libc::WIFSIGNALED(st) {
            o.signal = Some(libc::WTERMSIG(st));
        }
    }
    let abnormal = o.signal.is_some() || o.exit_code.is_some_and(|c| c != 0);
    o.status = match w.kill {
        Some(Kill::Cpu) => Status::TimeLimit,
        Some(Kill::Wall) => Status::WallLimit,
        Some(Kill::Output) => Status::OutputLimit,
        None if w.cpu_ns > limits.cpu_ms * 1_000_000 => Status::TimeLimit,
        None if oom_kills > 0 => Status::MemoryLimit,
        None if abnormal && limit_hits > 0 => Status::MemoryLimit,
        None if o.signal == Some(libc::SIGXFSZ) => Status::OutputLimit,
        None if o.signal.is_some() => Status::Signaled,
        None if wait_status.is_none() => Status::Signaled,
        None if o.exit_code == Some(0) => Status::Ok,
        None => Status::NonzeroExit,
    };
    o
}

#[cfg(test)]
mod tests {
    use super::stack_bytes;

    #[test]
    fn stack_is_the_memory_limit_less_a_headroom() {
        const MIB: u64 = 1 << 20;
        // 1/16 of the limit ...
        assert_eq!(stack_bytes(256 * MIB), 240 * MIB);
        assert_eq!(stack_bytes(1024 * MIB), 960 * MIB);
        // ... at least 8 MiB ...
        assert_eq!(stack_bytes(64 * MIB), 56 * MIB);
        // ... at most half the limit.
        assert_eq!(stack_bytes(4 * MIB), 2 * MIB);
        assert_eq!(stack_bytes(0), 0);
    }
}
