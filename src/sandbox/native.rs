//! The native backend: Linux namespaces, a read-only root, cgroups, seccomp.
//!
//! # Boxes
//! A *box* is a mount namespace and an empty network namespace (a loopback, down: no
//! network, and no abstract unix socket shared with another box), made once and
//! reused. The mount namespace's root is a tmpfs
//! holding read-only bind mounts of the host's toolchain folders (`/usr`, and `/bin`,
//! `/lib`, `/lib64`, `/sbin` as binds or — on merged-usr hosts — as the same symlinks
//! into `/usr`), the few `/etc` pieces toolchains need ([`ETC_PIECES`], a generated
//! `passwd`/`group` naming the box uid), a minimal `/dev` (null, zero, random, urandom
//! bound from the host; `fd`, `stdin`, `stdout`, `stderr` links into `/proc/self/fd`,
//! and `shm` a link to `/tmp`),
//! an empty `/proc` mount point, and two tmpfs mounts: the work folder
//! [`BOX_WORK_DIR`] (also the working directory and `HOME`) and `/tmp`. The
//! namespace is kept alive by a descriptor, the host reaches `/box` and `/tmp`
//! through descriptors as well (every host-side access goes through [`super::boxfs`],
//! which refuses symlinks), and after a run both folders are wiped and the box goes
//! back to an idle list keyed by its extra mounts. A box whose wipe would take too long
//! (more than [`WIPE_BUDGET`] entries) is dropped instead: the kernel frees its
//! tmpfs with the namespace.
//!
//! Mounts of the root, made once per box, are recorded in `root_plan`'s
//! operations; a box's extra mounts never change, so boxes are kept per mount set.
//!
//! Language folders outside the default root (e.g. `/root/.rustup` and
//! `/root/.cargo` for rustc) are passed by the judge in [`RunSpec::mounts`]; missing
//! parent folders of a target are created inside the box root, so a host parent
//! that is mode 0700 (`/root`) does not matter. Go's GOROOT is under `/usr/lib/go`
//! and Java's JDK under `/usr/lib/jvm` (reached through `/etc/alternatives`), both
//! inside the default root.
//!
//! # One run
//! A box's *init* is made ahead of its run (`ReadyInit`): `clone3` makes pid 1 of
//! a new PID namespace, with new IPC and UTS namespaces (so SysV IPC objects never
//! outlive a run), sharing the judge's memory (`CLONE_VM`, on a stack of the box: see
//! `sandbox::raw` for why and what that demands of its code), so starting it copies no page
//! table whatever the judge's size. Init joins the box's network namespace and a
//! private copy of its mount namespace, mounts a fresh `/proc` there, and waits on a
//! `SOCK_SEQPACKET` socket. A box's first init is made with the box; each next one
//! while the previous run's program runs.
//!
//! A run builds everything that allocates first (`exec::Prepared`, `exec::Stdio`,
//! the run's cgroup), then sends init the address of its `RunArgs` and the run's
//! descriptors (`SCM_RIGHTS`). Init sizes the tmpfs mounts for this run
//! (`size` = [`super::Limits::disk_bytes`] plus the input files, `nr_inodes` =
//! `disk_bytes / 4096`, at least 1024) and starts the program vfork-style
//! (`CLONE_VM | CLONE_VFORK` on the box's program stack, into the run's cgroup on v2;
//! on v1 the program joins it by writing `0` to each hierarchy's `tasks`). Init
//! itself stays out of the run's cgroups (see `box_init`).
//! The program sets up fds 0–2 (closing everything else), rlimits, drops to the box's
//! unprivileged uid/gid (no supplementary groups, so no capabilities), sets
//! no_new_privs, loads the seccomp filter and execs. Init reaps everything and, when
//! the program ends, reports its wait status on the socket and exits: the kernel then
//! kills every other process of the PID namespace. The host takes the report as the
//! end of the run (it does not wait for init's exit: init is reaped after the run, or
//! at the latest before another init takes its stack). If the judge dies, init sees
//! the socket close and exits too. The host watches CPU time in the cgroup, wall
//! time and output caps (`exec::watch`); on a limit it SIGKILLs init (which takes
//! the whole namespace down), then kills whatever is left in the cgroup, copies out
//! [`RunSpec::collect`] and wipes the box. The run's cgroup is fresh but made ahead,
//! and removed after the run, by a background thread ([`super::cgroup_keeper`]).
//!
//! Child code runs only raw syscalls on prepared memory: the module docs of `sandbox::sys` say why.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::boxfs;
use super::cgroup::{CgroupLimits, CgroupOps, CgroupRoot};
use super::cgroup_keeper::CgroupKeeper;
use super::exec::{self, stage, Prepared, Slots, Stdio};
use super::raw::{self, sc};
use super::seccomp;
use super::sys;
use super::{Mount, RunOutcome, RunSpec, Sandbox, SandboxError, BOX_WORK_DIR};

/// `/etc` entries bound into every box (when they exist on the host): the dynamic
/// linker's cache and configuration, `alternatives` (java/javac links go through it
/// into `/usr/lib/jvm`), the JDK's configuration, and the time zone. Nothing else of
/// `/etc` is visible (no host users, no resolver, no certificates).
pub const ETC_PIECES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/java-17-openjdk",
    "/etc/localtime",
];

/// Host folders that form the box's read-only root.
pub const ROOT_DIRS: &[&str] = &["/usr", "/bin", "/lib", "/lib64", "/sbin"];

/// Device nodes bound from the host into the box's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "random", "urandom"];

/// Most entries a post-run wipe removes before the box is dropped instead.
pub const WIPE_BUDGET: usize = 4096;

/// Configuration of the native backend.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// First uid (and gid) of boxes; box `n` runs as `uid_base + n`, for the lowest
    /// `n` that no other box on this host holds (in this process or another judge's:
    /// uids are locked host-wide, see `Slots::take_host_wide`). Default 60000 (as
    /// isolate).
    pub uid_base: u32,
    /// Maximum number of boxes alive at once (bounds the uids used). Default 1000.
    pub max_boxes: u32,
    /// Idle boxes kept per mount set. Default 8.
    pub keep_warm: usize,
    /// Whether to load the seccomp filter ([`seccomp::DENY`]). Default true.
    pub seccomp: bool,
    /// Host folder over which each box's root tmpfs is mounted while being built (in
    /// the box's private mount namespace; the host sees it empty). Default
    /// `/run/judge-sandbox/root`.
    pub staging: PathBuf,
    /// Where runs' cgroups live; `None`: detected ([`CgroupRoot::detect`]).
    pub cgroups: Option<CgroupRoot>,
    /// First part of run cgroup names, `<tag>-<pid>-<n>` (letters only). Default
    /// `run`; tests use their own to tell their runs apart.
    pub cgroup_tag: String,
}

impl Default for NativeConfig {
    fn default() -> Self {
        NativeConfig {
            uid_base: 60_000,
            max_boxes: 1000,
            keep_warm: 8,
            seccomp: true,
            staging: PathBuf::from("/run/judge-sandbox/root"),
            cgroups: None,
            cgroup_tag: "run".into(),
        }
    }
}

/// The native sandbox. Cheap to clone (shared state); `run` may be called from many
/// threads at once, each run gets its own box.
#[derive(Clone)]
pub struct NativeSandbox {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: NativeConfig,
    cgroups: CgroupRoot,
    /// Makes run cgroups ahead of runs and removes them behind (off the run's path).
    cgroup_keeper: CgroupKeeper,
    seccomp: Option<seccomp::Program>,
    idle: Mutex<HashMap<Vec<Mount>, Vec<WarmBox>>>,
    slots: Arc<Slots>,
    ncpu: u64,
}

/// A prepared box: its mount namespace and descriptors of its two tmpfs folders.
struct WarmBox {
    slot: u32,
    uid: u32,
    mnt_ns: OwnedFd,
    /// The box's own empty network namespace (only a loopback, down): boxes cannot
    /// reach each other, not even through abstract unix sockets.
    net_ns: OwnedFd,
    work: OwnedFd,
    tmp: OwnedFd,
    slots: Arc<Slots>,
    /// The host-wide lock on this box's uid (see [`Slots::take_host_wide`]).
    _uid_lock: std::fs::File,
    /// tmpfs options last applied to `/box` and `/tmp` (skipped when unchanged).
    mounted_opts: Option<(CString, CString)>,
    /// The init of the box's next run, made ahead (see [`ReadyInit`]). Declared
    /// before `stacks`: it is dropped (init killed and reaped) before they are.
    ready: Option<ReadyInit>,
    /// The init of the box's last run, ended and not yet reaped (see
    /// `run_prepared`); reaped before another init takes a stack, or with the box.
    retired: Option<ReadyInit>,
    /// Stacks of the box's inits and of the program before `execve` (they share the
    /// judge's memory: see [`raw`]).
    stacks: raw::ChildStacks,
}

impl WarmBox {
    /// The box's two folders with the owner and mode each must have before a run:
    /// `/box` the box user's (0755), `/tmp` root's, sticky and world-writable (1777).
    fn folders(&self) -> [(RawFd, u32, libc::mode_t); 2] {
        [
            (self.work.as_raw_fd(), self.uid, 0o755),
            (self.tmp.as_raw_fd(), 0, 0o1777),
        ]
    }
}

impl Drop for WarmBox {
    fn drop(&mut self) {
        self.slots.give(self.slot);
    }
}

fn internal(what: impl std::fmt::Display) -> SandboxError {
    SandboxError::Internal(what.to_string())
}

/// One step of building a box root, executed by the box-making child (raw syscalls).
enum RootOp {
    Mkdir(CString, u32),
    Symlink {
        target: CString,
        link: CString,
    },
    /// Bind `src` at `dst` (creating `dst` as a folder or an empty file).
    Bind {
        src: CString,
        dst: CString,
        file: bool,
        writable: bool,
        dev: bool,
    },
    WriteFile(CString, Vec<u8>),
    Tmpfs(CString, CString),
    /// Remount read-only (bind remount, per-mount flag).
    ReadOnly(CString),
}

fn cs(p: &Path) -> Result<CString, SandboxError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| SandboxError::InvalidSpec(format!("path {} contains NUL", p.display())))
}

/// Checks a mount of a spec: absolute target without `..`, not one of the box's own
/// folders, host path existing.
fn check_mount(m: &Mount) -> Result<(), SandboxError> {
    let t = &m.target;
    let bad = |why: &str| SandboxError::InvalidSpec(format!("mount target {}: {why}", t.display()));
    if !t.is_absolute() {
        return Err(bad("must be absolute"));
    }
    if t.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad("must not contain '..'"));
    }
    if t == Path::new("/") || t == Path::new("/etc") {
        return Err(bad("is one of the box's own folders"));
    }
    if let Some(root) = ROOT_DIRS.iter().find(|d| t.starts_with(d)) {
        return Err(bad(&format!(
            "is inside the box's read-only {root}, which shows the host's {root} already"
        )));
    }
    for reserved in ["/proc", "/dev", BOX_WORK_DIR, "/tmp"] {
        if t.starts_with(reserved) {
            return Err(bad(
                "is inside one of the box's own folders (/proc, /dev, /box, /tmp)",
            ));
        }
    }
    if !m.host.exists() {
        return Err(SandboxError::InvalidSpec(format!(
            "mount source {} does not exist on the host",
            m.host.display()
        )));
    }
    Ok(())
}

fn passwd(uid: u32) -> Vec<u8> {
    format!("root:x:0:0:root:/:/usr/sbin/nologin\nbox:x:{uid}:{uid}:box:{BOX_WORK_DIR}:/bin/sh\nnobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n").into_bytes()
}

fn group(uid: u32) -> Vec<u8> {
    format!("root:x:0:\nbox:x:{uid}:\nnogroup:x:65534:\n").into_bytes()
}

/// The steps that build a box root under `stage` for `uid` with extra `mounts`.
fn root_plan(staging: &Path, uid: u32, mounts: &[Mount]) -> Result<Vec<RootOp>, SandboxError> {
    let at = |p: &str| staging.join(p.trim_start_matches('/'));
    let mut ops = Vec::new();
    for d in ["etc", "dev", "proc", "box", "tmp"] {
        ops.push(RootOp::Mkdir(cs(&at(d))?, 0o755));
    }
    for d in ROOT_DIRS {
        let host = Path::new(d);
        match std::fs::symlink_metadata(host) {
            Ok(md) if md.file_type().is_symlink() => {
                let target = std::fs::read_link(host).map_err(|source| SandboxError::Io {
                    op: "readlink",
                    path: host.into(),
                    source,
                })?;
                ops.push(RootOp::Symlink {
                    target: cs(&target)?,
                    link: cs(&at(d))?,
                });
            }
            Ok(md) if md.is_dir() => ops.push(RootOp::Bind {
                src: cs(host)?,
                dst: cs(&at(d))?,
                file: false,
                writable: false,
                dev: false,
            }),
            _ => {}
        }
    }
    for e in ETC_PIECES {
        let host = Path::new(e);
        let Ok(md) = std::fs::metadata(host) else {
            continue;
        };
        ops.push(RootOp::Bind {
            src: cs(host)?,
            dst: cs(&at(e))?,
            file: !md.is_dir(),
            writable: false,
            dev: false,
        });
    }
    ops.push(RootOp::WriteFile(cs(&at("/etc/passwd"))?, passwd(uid)));
    ops.push(RootOp::WriteFile(cs(&at("/etc/group"))?, group(uid)));
    for d in DEVICES {
        ops.push(RootOp::Bind {
            src: cs(&Path::new("/dev").join(d))?,
            dst: cs(&at(&format!("/dev/{d}")))?,
            file: true,
            writable: true,
            dev: true,
        });
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        // POSIX shared memory and named semaphores (shm_open, sem_open: Python's
        // multiprocessing locks) live in /dev/shm: the run's /tmp, sized, wiped and
        // charged with it.
        ("/dev/shm", "/tmp"),
    ] {
        ops.push(RootOp::Symlink {
            target: cs(Path::new(target))?,
            link: cs(&at(link))?,
        });
    }
    let mut extra: Vec<&Mount> = mounts.iter().collect();
    extra.sort_by_key(|m| m.target.components().count());
    for m in extra {
        check_mount(m)?;
        // Parents of the target, created in the box root (0755) when missing.
        let mut parent = PathBuf::new();
        let comps: Vec<_> = m.target.components().skip(1).collect();
        for c in comps.iter().take(comps.len().saturating_sub(1)) {
            parent.push(c);
            ops.push(RootOp::Mkdir(cs(&staging.join(&parent))?, 0o755));
        }
        ops.push(RootOp::Bind {
            src: cs(&m.host)?,
            dst: cs(&staging.join(m.target.strip_prefix("/").unwrap_or(&m.target)))?,
            file: !m.host.is_dir(),
            writable: m.writable,
            dev: false,
        });
    }
    let opts = CString::new("size=1g,nr_inodes=65536,mode=0755").expect("no NUL");
    ops.push(RootOp::Tmpfs(cs(&at(BOX_WORK_DIR))?, opts.clone()));
    ops.push(RootOp::Tmpfs(
        cs(&at("/tmp"))?,
        CString::new("size=1g,nr_inodes=65536,mode=1777").expect("no NUL"),
    ));
    ops.push(RootOp::ReadOnly(cs(staging)?));
    Ok(ops)
}

/// Box-making child: runs the plan, pivots into the new root, then waits for the host.
/// Raw syscalls only; reports failures on `report`.
fn box_child(staging: &CString, ops: &[RootOp], report: RawFd, hold: RawFd) -> ! {
    let fail = |st: u32| -> ! { sys::child_fail(report, st, sys::errno()) };
    // Descriptors of other threads (and the hold pipe's write end) must not stay open here.
    sys::close_all_except(3, &[report, hold]);
    // SAFETY: raw syscalls on C strings prepared before the clone (whole function).
    unsafe {
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(stage::ROOT_OP);
        }
        if libc::mount(
            c"judge-box".as_ptr(),
            staging.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"size=4m,nr_inodes=4096,mode=0755".as_ptr().cast(),
        ) != 0
        {
            fail(stage::ROOT_OP);
        }
        for (i, op) in ops.iter().enumerate() {
            let st = stage::ROOT_OP + 1 + i as u32;
            match op {
                RootOp::Mkdir(p, mode) => {
                    if libc::mkdir(p.as_ptr(), *mode) != 0 && sys::errno() != libc::EEXIST {
                        fail(st);
                    }
                }
                RootOp::Symlink { target, link } => {
                    if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                        fail(st);
                    }
                }
                RootOp::Bind {
                    src,
                    dst,
                    file,
                    writable,
                    dev,
                } => {
                    if *file {
                        let fd = libc::open(
                            dst.as_ptr(),
                            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                            0o644,
                        );
                        if fd < 0 && sys::errno() != libc::EEXIST {
                            fail(st);
                        }
                        libc::close(fd);
                    } else if libc::mkdir(dst.as_ptr(), 0o755) != 0 && sys::errno() != libc::EEXIST
                    {
                        fail(st);
                    }
                    if libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(st);
                    }
                    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
                    if !*writable {
                        flags |= libc::MS_RDONLY;
                    }
                    if !*dev {
                        flags |= libc::MS_NODEV;
                    }
                    if libc::mount(
                        std::ptr::null(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(st);
                    }
                }
                RootOp::WriteFile(p, content) => {
                    let fd = libc::open(
                        p.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 || sys::write_all_raw(fd, content).is_err() {
                        fail(st);
                    }
                    libc::close(fd);
                }
                RootOp::Tmpfs(p, opts) => {
                    if libc::mount(
                        c"judge-box".as_ptr(),
                        p.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV,
                        opts.as_ptr().cast(),
                    ) != 0
                    {
                        fail(st);
                    }
                }
                RootOp::ReadOnly(p) => {
                    let flags = libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV;
                    if libc::mount(
                        std::ptr::null(),
                        p.as_ptr(),
                        std::ptr::null(),
                        flags,
                        std::ptr::null(),
                    ) != 0
                    {
                        fail(st);
                    }
                }
            }
        }
        // pivot_root(".", ".") stacks the old root under the new one; detaching "."
        // then removes the old root from the namespace entirely.
        if libc::chdir(staging.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
            || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
            || libc::chdir(c"/".as_ptr()) != 0
        {
            fail(stage::ROOT_OP + ops.len() as u32 + 1);
        }
        libc::close(report);
        let mut b = [0u8; 1];
        libc::read(hold, b.as_mut_ptr().cast(), 1);
        libc::_exit(0);
    }
}

impl NativeSandbox {
    /// Builds the backend: checks root, detects cgroups (unless given) and removes run
    /// cgroups of dead judge processes. No box is made until the first run or
    /// [`Sandbox::prepare`]: cheap enough to call once per `judge test` and once per
    /// engine pool (well under a millisecond).
    ///
    /// Errors: [`SandboxError::Unavailable`] when not root, when namespaces or cgroups
    /// are unusable, or seccomp is asked for on a non-x86_64 host.
    pub fn new(cfg: NativeConfig) -> Result<NativeSandbox, SandboxError> {
        let cgroups = exec::host_setup(
            &cfg.cgroups,
            "the native sandbox needs root (namespaces, cgroups, mounts)",
        )?;
        let seccomp = if cfg.seccomp {
            Some(seccomp::Program::build().ok_or_else(|| {
                SandboxError::Unavailable("the seccomp filter exists for x86_64 only; disable seccomp in the native backend's config".into())
            })?)
        } else {
            None
        };
        std::fs::create_dir_all(&cfg.staging).map_err(|source| SandboxError::Io {
            op: "mkdir",
            path: cfg.staging.clone(),
            source,
        })?;
        let swept = cgroups.sweep_stale();
        if swept > 0 {
            tracing::warn!(
                swept,
                "removed run cgroups left by judge processes that died mid-run"
            );
        }
        // No freezer: killing the box's init takes the whole PID namespace down
        // atomically, so nothing can fork away while being killed.
        let cgroup_keeper = CgroupKeeper::new(cgroups.clone(), &cfg.cgroup_tag, false)?;
        let slots = Slots::new(cfg.max_boxes);
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let sb = NativeSandbox {
            inner: Arc::new(Inner {
                cfg,
                cgroups,
                cgroup_keeper,
                seccomp,
                idle: Mutex::new(HashMap::new()),
                slots: Arc::new(slots),
                ncpu,
            }),
        };
        Ok(sb)
    }

    /// The cgroup hierarchy in use.
    pub fn cgroups(&self) -> &CgroupRoot {
        &self.inner.cgroups
    }

    /// Waits (at most `timeout`) until the cgroups of finished runs are removed and the
    /// stock of ready ones is refilled; returns whether that happened. Tests call it
    /// before looking for leftover cgroups: a run's cgroup is removed in the
    /// background after `run` returns (its processes are gone by then).
    pub fn settle(&self, timeout: Duration) -> bool {
        self.inner.cgroup_keeper.settle(timeout)
    }

    /// Folders (the memory one on v1) of the ready, never used run cgroups kept in
    /// stock; the only cgroups of this sandbox left once [`NativeSandbox::settle`]
    /// returned true with no run in flight.
    pub fn stocked_cgroups(&self) -> Vec<PathBuf> {
        self.inner.cgroup_keeper.stocked()
    }

    /// Number of idle warm boxes (all mount sets).
    pub fn idle_boxes(&self) -> usize {
        self.inner
            .idle
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Number of idle boxes whose work folder or `/tmp` is not empty (0 when every
    /// wipe worked; used by the health checks of the tests and by `judge doctor`).
    pub fn dirty_idle_boxes(&self) -> Result<usize, SandboxError> {
        let idle = self
            .inner
            .idle
            .lock()
            .map_err(|_| internal("box pool poisoned"))?;
        let mut dirty = 0;
        for b in idle.values().flatten() {
            for (dir, ..) in b.folders() {
                if !boxfs::is_clean(dir).map_err(internal)? {
                    dirty += 1;
                    break;
                }
            }
        }
        Ok(dirty)
    }

    fn make_box(&self, mounts: &[Mount]) -> Result<WarmBox, SandboxError> {
        let inner = &self.inner;
        let lock_dir = inner
            .cfg
            .staging
            .parent()
            .unwrap_or(Path::new("/run/judge-sandbox"))
            .join("locks");
        let (slot, uid_lock) = inner.slots.take_host_wide(&lock_dir, inner.cfg.uid_base)?;
        let uid = inner.cfg.uid_base + slot;
        let give_back = |e: SandboxError| {
            inner.slots.give(slot);
            e
        };
        let ops = root_plan(&inner.cfg.staging, uid, mounts).map_err(give_back)?;
        let staging = cs(&inner.cfg.staging).map_err(give_back)?;
        let (rep_r, rep_w) = sys::pipe().map_err(internal).map_err(give_back)?;
        let (hold_r, hold_w) = sys::pipe().map_err(internal).map_err(give_back)?;
        // SAFETY: the child runs box_child only (raw syscalls on prepared data).
        let child =
            unsafe { sys::clone_fork((libc::CLONE_NEWNS | libc::CLONE_NEWNET) as u64, None) }
                .map_err(|e| give_back(internal(format!("clone a mount namespace: {e}"))))?;
        let Some(child) = child else {
            box_child(&staging, &ops, rep_w.as_raw_fd(), hold_r.as_raw_fd());
        };
        drop(rep_w);
        drop(hold_r);
        let report = sys::read_child_report(rep_r.as_raw_fd());
        let opened = (|| -> Result<(OwnedFd, OwnedFd, OwnedFd, OwnedFd), SandboxError> {
            match report {
                Ok(None) => {}
                Ok(Some((st, err))) => {
                    let what = if st > stage::ROOT_OP
                        && ((st - stage::ROOT_OP - 1) as usize) < ops.len()
                    {
                        describe_op(&ops[(st - stage::ROOT_OP - 1) as usize])
                    } else {
                        "mount the box root / pivot_root".to_string()
                    };
                    return Err(internal(format!(
                        "building a box root failed at {what}: {}",
                        std::io::Error::from_raw_os_error(err)
                    )));
                }
                Err(e) => return Err(internal(format!("read box report: {e}"))),
            }
            let open = |p: String, dir: bool| -> Result<OwnedFd, SandboxError> {
                let mut o = std::fs::OpenOptions::new();
                o.read(true);
                if dir {
                    std::os::unix::fs::OpenOptionsExt::custom_flags(
                        &mut o,
                        libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    );
                }
                o.open(&p)
                    .map(OwnedFd::from)
                    .map_err(|source| SandboxError::Io {
                        op: "open",
                        path: p.into(),
                        source,
                    })
            };
            Ok((
                open(format!("/proc/{}/ns/mnt", child.pid), false)?,
                open(format!("/proc/{}/ns/net", child.pid), false)?,
                open(format!("/proc/{}/root/box", child.pid), true)?,
                open(format!("/proc/{}/root/tmp", child.pid), true)?,
            ))
        })();
        drop(hold_w);
        let _ = sys::wait_pid(child.pid);
        let (mnt_ns, net_ns, work, tmp) = opened.map_err(give_back)?;
        let stacks = raw::ChildStacks::new()
            .map_err(|e| internal(format!("map the box's child stacks: {e}")))
            .map_err(give_back)?;
        let mut b = WarmBox {
            slot,
            uid,
            mnt_ns,
            net_ns,
            work,
            tmp,
            slots: inner.slots.clone(),
            _uid_lock: uid_lock,
            mounted_opts: None,
            ready: None,
            retired: None,
            stacks,
        };
        for (dir, uid, mode) in b.folders() {
            boxfs::restore_attrs(dir, uid, mode);
        }
        // The first run's init, made ahead like every later one.
        b.ready = spawn_init(&mut b, raw::INIT_STACKS[0]).ok();
        Ok(b)
    }

    fn take_box(&self, mounts: &[Mount]) -> Result<WarmBox, SandboxError> {
        let warm = self
            .inner
            .idle
            .lock()
            .map_err(|_| internal("box pool poisoned"))?
            .get_mut(mounts)
            .and_then(Vec::pop);
        match warm {
            Some(b) => Ok(b),
            None => self.make_box(mounts),
        }
    }

    /// Wipes a used box and keeps it warm, or drops it (the kernel frees everything
    /// with the namespace) when the wipe is too large or fails.
    fn recycle(&self, mut b: WarmBox, mounts: &[Mount]) {
        // The program may have changed the folders' contents, attributes, modes (it
        // owns /box) and times: all go back, or the box is dropped.
        let mut budget = WIPE_BUDGET;
        let clean = b
            .folders()
            .iter()
            .all(|&(dir, uid, mode)| boxfs::reset(dir, &mut budget, uid, mode));
        if !clean {
            return;
        }
        // The last run's init has exited by now, mostly: no zombie waits with an
        // idle box.
        if b.retired.as_mut().is_some_and(ReadyInit::try_reap) {
            b.retired = None;
        }
        if let Ok(mut idle) = self.inner.idle.lock() {
            let list = idle.entry(mounts.to_vec()).or_default();
            if list.len() < self.inner.cfg.keep_warm {
                list.push(b);
            }
        }
    }

    /// Writes the spec's input files into the box's work folder; returns their size
    /// rounded up to pages (added to the tmpfs size, so that `disk_bytes` is what the
    /// program itself may write).
    fn write_inputs(spec: &RunSpec, b: &WarmBox) -> Result<u64, SandboxError> {
        for f in &spec.files {
            boxfs::write_file(
                b.work.as_raw_fd(),
                &f.path,
                &f.content,
                f.executable,
                b.uid,
                b.uid,
            )?;
        }
        Ok(exec::input_file_bytes(spec))
    }

    fn run_in_box(
        &self,
        spec: &RunSpec,
        b: &mut WarmBox,
        input_bytes: u64,
    ) -> Result<RunOutcome, SandboxError> {
        let inner = &self.inner;
        let limits = &spec.limits;
        let inodes = (limits.disk_bytes / 4096).max(1024);
        let box_opts = CString::new(format!(
            "size={},nr_inodes={}",
            limits.disk_bytes + input_bytes,
            inodes + spec.files.len() as u64 * 2
        ))
        .expect("no NUL");
        let tmp_opts = CString::new(format!(
            "size={},nr_inodes={inodes}",
            limits.disk_bytes.max(4096)
        ))
        .expect("no NUL");
        let mut prepared = Prepared::new(spec, BOX_WORK_DIR, b.uid, b.uid, None)?;
        prepared.seccomp = inner.seccomp.clone();
        let Some(memory_bytes) = exec::memory_after_inputs(limits.memory_bytes, input_bytes) else {
            return Ok(exec::inputs_exceed_memory(input_bytes));
        };
        let stdio = Stdio::new(spec)?;
        // A fresh cgroup, made ahead by the keeper (or inline when it has none ready).
        let cg = inner.cgroup_keeper.take(&CgroupLimits {
            memory_bytes,
            // Only the program and its descendants are in the run's cgroup (the
            // box's init stays out: see box_init).
            pids: limits.pids,
        })?;
        let opts = (box_opts, tmp_opts);
        let remount = b.mounted_opts.as_ref() != Some(&opts);
        let result = self.run_prepared(spec, b, &prepared, stdio, &cg, remount.then_some(&opts));
        if result.is_ok() {
            b.mounted_opts = Some(opts);
        }
        // Whatever happened: nothing of the run survives (killed inline), the cgroup
        // is removed in the background.
        let finished = inner.cgroup_keeper.finish(cg);
        let mut outcome = result?;
        finished?;
        exec::count_inputs_as_memory(&mut outcome, input_bytes);
        for name in &spec.collect {
            if let Ok(data) = boxfs::read_regular(b.work.as_raw_fd(), name, limits.file_size_bytes)?
            {
                outcome.files.insert(name.clone(), data);
            }
        }
        Ok(outcome)
    }

    fn run_prepared(
        &self,
        spec: &RunSpec,
        b: &mut WarmBox,
        prepared: &Prepared,
        stdio: Stdio,
        cg: &super::cgroup::RunCgroup,
        remount: Option<&(CString, CString)>,
    ) -> Result<RunOutcome, SandboxError> {
        let inner = &self.inner;
        let (rep_r, rep_w) = sys::pipe().map_err(internal)?;
        let join = cg.join_fds();
        let cgroup_fd = cg.clone_into_fd();
        let run = RunArgs {
            prepared,
            remount,
            program_stack: b.stacks.stack(raw::PROGRAM_STACK),
            joins: if cgroup_fd.is_some() { 0 } else { join.len() },
        };
        // The descriptors init receives, in the order `box_init` expects them.
        let mut fds = Vec::with_capacity(8);
        fds.extend(stdio.child_raw());
        fds.push(rep_w.as_raw_fd());
        match cgroup_fd {
            Some(fd) => fds.push(fd),
            None => fds.extend(&join),
        }
        // The box's init made ahead (or now, for a box's first run or when the ready
        // one is gone): hand it the run.
        let mut init = match b.ready.take() {
            Some(r) => r,
            None => spawn_init(b, raw::INIT_STACKS[0])?,
        };
        if let Err(e) = init.start(&run, &fds) {
            // It ended while waiting (killed from outside): make another, once.
            let stack = init.stack;
            drop(init);
            init = spawn_init(b, stack)?;
            init.start(&run, &fds)
                .map_err(|_| internal(format!("hand the run to the box's init: {e}")))?;
        }
        drop(rep_w);
        let Stdio {
            child: cfds,
            captures,
        } = stdio;
        drop(cfds);
        let pidfd = init.child.pidfd.as_raw_fd();
        let kill = || sys::pidfd_kill(pidfd, libc::SIGKILL);
        // Blocks until the program exec'd (EOF) or a step failed (a report).
        let report = sys::read_child_report(rep_r.as_raw_fd());
        let start = Instant::now();
        match report {
            Ok(None) => {}
            Ok(Some((st, err))) => return Err(exec::child_error(&spec.argv[0], st, err)),
            Err(e) => return Err(internal(format!("read box report: {e}"))),
        }
        // While the program runs, make the box's next init (the other init stack):
        // its namespaces and fresh /proc are then ready when the next run comes.
        b.ready = spawn_init(b, raw::other_init_stack(init.stack)).ok();
        // The watch ends when init reports the program's end on its socket, or when
        // init is gone (the socket hangs up).
        let sock = init.sock.as_raw_fd();
        let watched = exec::watch(sock, cg, &spec.limits, captures, inner.ncpu, start, &kill)?;
        // Init has no more use for this run's arguments: it exits (taking its PID
        // namespace down) and is reaped later, off the run's path, before its stack
        // is used again (`spawn_init`).
        let ended = init.end();
        b.retired = Some(init);
        let wait_status = match ended {
            InitEnd::Status(st) => Some(st),
            InitEnd::Failed(st, err) => return Err(exec::child_error(&spec.argv[0], st, err)),
            InitEnd::Silent if watched.kill.is_some() => None,
            // Init reports the program's end before exiting; without a report and
            // without a kill of ours, something outside the run ended the box: a
            // judge fault, never the contestant's.
            InitEnd::Silent => {
                return Err(internal(
                    "the box's init ended without reporting the program's end",
                ))
            }
        };
        let peak = match cg.memory_peak()? {
            Some(p) => p,
            None => watched.sampled_peak,
        };
        Ok(exec::classify(
            watched,
            wait_status,
            &spec.limits,
            cg.oom_kills()?,
            cg.memory_limit_hits()?,
            peak,
        ))
    }
}

fn describe_op(op: &RootOp) -> String {
    let s = |c: &CString| c.to_string_lossy().into_owned();
    match op {
        RootOp::Mkdir(p, _) => format!("mkdir {}", s(p)),
        RootOp::Symlink { link, target } => format!("symlink {} -> {}", s(link), s(target)),
        RootOp::Bind { src, dst, .. } => format!("bind {} at {}", s(src), s(dst)),
        RootOp::WriteFile(p, _) => format!("write {}", s(p)),
        RootOp::Tmpfs(p, _) => format!("tmpfs at {}", s(p)),
        RootOp::ReadOnly(p) => format!("remount {} read-only", s(p)),
    }
}

/// What a box's init reads while setting itself up: owned by its [`ReadyInit`] (on
/// the heap, at a fixed address) until it has been reaped.
struct SpawnArgs {
    /// Init's end of the command socket.
    sock: RawFd,
    netns: RawFd,
    mntns: RawFd,
}

/// What init needs for one run, on the judge's stack in `run_prepared` (which outlives
/// init: it reaps init, or kills and reaps it, before returning). Its address is the
/// command init receives.
struct RunArgs<'a> {
    prepared: &'a Prepared,
    /// New tmpfs options for `/box` and `/tmp`, when they change.
    remount: Option<&'a (CString, CString)>,
    /// Where the program runs until `execve` (lowest address, size).
    program_stack: (*mut u8, usize),
    /// v1: how many of the received descriptors (after stdio and the report pipe) are
    /// cgroup `tasks` files the program joins; v2 (0): one descriptor follows, the run
    /// cgroup's folder, into which the program is cloned.
    joins: usize,
}

/// Most descriptors a run command carries: stdin, stdout, stderr, the report pipe and
/// up to four cgroup descriptors.
const MAX_RUN_FDS: usize = 8;

/// A box's init, made ahead of its run: pid 1 of a fresh PID namespace (with fresh
/// IPC and UTS namespaces), in the box's network namespace and a private copy of the
/// box's mount namespace with a fresh `/proc`, waiting on a `SOCK_SEQPACKET` socket
/// for its run ([`ReadyInit::start`]). Dropping it kills and reaps init.
struct ReadyInit {
    child: sys::Child,
    /// The judge's end of the command socket; init also reports on it (the program's
    /// wait status, 4 bytes; or a failure `(stage, errno)`, 8 bytes) before exiting.
    sock: OwnedFd,
    /// Which of the box's init stacks it runs on.
    stack: usize,
    _args: Box<SpawnArgs>,
    /// Set by [`ReadyInit::try_reap`] (its pid may belong to another process since).
    reaped: bool,
}

/// How a box's init ended.
enum InitEnd {
    /// It reported the program's wait status.
    Status(i32),
    /// A step of its own failed: `(stage, errno)`.
    Failed(u32, i32),
    /// It reported nothing (killed).
    Silent,
}

impl ReadyInit {
    /// Sends the run: the address of `run` (in the memory init shares) and `fds`
    /// (copied into init's descriptor table). Errors: init is gone.
    fn start(&self, run: &RunArgs, fds: &[RawFd]) -> std::io::Result<()> {
        assert!(fds.len() <= MAX_RUN_FDS, "too many descriptors for a run");
        let addr = (run as *const RunArgs as usize).to_ne_bytes();
        let mut iov = libc::iovec {
            iov_base: addr.as_ptr() as *mut libc::c_void,
            iov_len: addr.len(),
        };
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain data; the pointers set below stay valid for sendmsg.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        let data_len = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_* compute sizes and offsets inside cbuf (64 bytes, enough for
        // MAX_RUN_FDS descriptors: 16 + 32).
        unsafe {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(data_len) as usize;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast(), fds.len());
        }
        // SAFETY: msg points at live buffers; MSG_NOSIGNAL: no SIGPIPE if init is gone.
        let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads init's report once its socket is readable or hung up (see `run_prepared`)
    /// and SIGKILLs init, which is exiting anyway (after reporting) or dead: no
    /// process of its PID namespace survives it. Init is reaped when dropped.
    fn end(&self) -> InitEnd {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into buf; init sent its report before exiting.
        let n = unsafe {
            libc::recv(
                self.sock.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        sys::pidfd_kill(self.child.pidfd.as_raw_fd(), libc::SIGKILL);
        match n {
            4 => InitEnd::Status(i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]])),
            8 => {
                let (stage, err) = sys::decode_report(&buf);
                InitEnd::Failed(stage, err)
            }
            _ => InitEnd::Silent,
        }
    }

    /// Reaps init if it has exited, without waiting; returns whether it did.
    fn try_reap(&mut self) -> bool {
        let mut st = 0;
        // SAFETY: waitpid on our own child (not reaped yet) with a valid status int.
        let r = unsafe { libc::waitpid(self.child.pid, &mut st, libc::WNOHANG | libc::__WALL) };
        self.reaped = r == self.child.pid;
        self.reaped
    }
}

impl Drop for ReadyInit {
    fn drop(&mut self) {
        if !self.reaped {
            // Init shares the judge's memory: it must be gone before its stack and
            // arguments are.
            sys::pidfd_kill(self.child.pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = sys::wait_pid(self.child.pid);
        }
    }
}

/// Makes a box's init on init stack `stack` (see [`ReadyInit`]). The init of the
/// box's run before (exited, or killed, when that run ended) is reaped first: it may
/// have used that stack. Init sets itself up on its own while the caller goes on.
///
/// Errors: [`SandboxError::Internal`] when the socket or the clone fails.
fn spawn_init(b: &mut WarmBox, stack: usize) -> Result<ReadyInit, SandboxError> {
    b.retired = None;
    let mut pair = [0 as RawFd; 2];
    // SAFETY: pair is a valid array of two ints.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(internal(format!(
            "socketpair: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: socketpair returned two fresh descriptors that we now own.
    let (judge_end, init_end) =
        unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let args = Box::new(SpawnArgs {
        sock: init_end.as_raw_fd(),
        netns: b.net_ns.as_raw_fd(),
        mntns: b.mnt_ns.as_raw_fd(),
    });
    let flags = (libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    // SAFETY: init_entry follows spawn_on_stack's rules (raw syscalls only, never
    // returns). `args` is kept by the ReadyInit, the stack by the box; ReadyInit's
    // Drop (or `reap`) ends init before either goes away, and the box never gives
    // this stack to another init while this one lives (`run_prepared` alternates).
    // Signals stay blocked across the clone: a handler of the judge must never run on
    // init's stack (init keeps them blocked).
    let child = sys::with_signals_blocked(|| unsafe {
        sys::spawn_on_stack(
            flags,
            None,
            b.stacks.stack(stack),
            init_entry,
            &*args as *const SpawnArgs as *mut libc::c_void,
        )
    })
    .map_err(|e| internal(format!("clone the box init: {e}")))?;
    // Init has its own copy of its end (cloned with the descriptor table).
    drop(init_end);
    Ok(ReadyInit {
        child,
        sock: judge_end,
        stack,
        _args: args,
        reaped: false,
    })
}

/// What the program child needs, on init's stack (init waits, `CLONE_VFORK`).
struct ProgramArgs<'a> {
    join: &'a [RawFd],
    prepared: &'a Prepared,
    stdio: [RawFd; 3],
    report: RawFd,
}

/// Entry of a box's init on its own stack.
///
/// # Safety
/// `arg` points at a [`SpawnArgs`] that outlives init.
unsafe extern "C" fn init_entry(arg: *mut libc::c_void) -> ! {
    // SAFETY: the caller's contract.
    box_init(unsafe { &*(arg as *const SpawnArgs) })
}

/// Entry of the program child on its own stack.
///
/// # Safety
/// `arg` points at a [`ProgramArgs`] that outlives the child's `execve`.
unsafe extern "C" fn program_entry(arg: *mut libc::c_void) -> ! {
    // SAFETY: the caller's contract.
    let a = unsafe { &*(arg as *const ProgramArgs) };
    // v1: join the run's cgroups (this process has one thread: `tasks` moves it whole).
    for &fd in a.join {
        if let Err(e) = sys::write_all_raw(fd, b"0") {
            sys::child_fail(a.report, stage::JOIN_CGROUP, e);
        }
    }
    // A cgroup namespace rooted at the run's cgroup: /proc/self/cgroup shows `/`, not
    // the judge's cgroup layout and pid.
    // SAFETY: unshare takes a flag word.
    if let Err(e) = raw::check(unsafe { sc!(libc::SYS_unshare, libc::CLONE_NEWCGROUP) }) {
        sys::child_fail(a.report, stage::JOIN_CGROUP, e);
    }
    exec::program_child(a.prepared, a.stdio, a.report)
}

/// A box's init (pid 1 of its run's PID namespace). It shares the judge's memory
/// and thread-local storage (see [`raw`]): raw system calls only, no `errno`.
///
/// It sets itself up right away (namespaces, a private copy of the box's mount
/// namespace with a fresh `/proc`), then waits for its run on the command socket;
/// if the judge goes away instead (the socket's other end closes), it exits, and
/// the kernel tears its namespaces down. With the run it starts the program
/// vfork-style, reaps every process that ends up as its child, and reports the
/// program's wait status on the socket when the program ends — or exits at once if
/// the judge goes away meanwhile, which kills every process of the namespace.
///
/// Init stays out of the run's cgroups; only the program (and what it starts) is
/// put there. That keeps init's work off the contestant's CPU time, and above all
/// keeps init away from the run's OOM killer: the OOM killer picks the process with
/// the most resident memory — init's would be the judge's — and kills every process
/// sharing the victim's memory, which would be the judge itself.
fn box_init(a: &SpawnArgs) -> ! {
    let sock = a.sock;
    // A failure of init's own goes to the judge on the command socket (read by
    // `ReadyInit::reap`); SIGPIPE, should the judge be gone, is blocked below.
    let fail = |st: u32, e: i32| -> ! { sys::child_fail(sock, st, e) };
    // Init takes signals through a signalfd only (SIGKILL cannot be blocked), and a
    // handler the judge installed must never run here (the judge cloned it with every
    // signal blocked; this keeps them so).
    let all: u64 = !0;
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
    // Keep only the socket and the namespaces (the judge's other descriptors go).
    sys::close_all_except_many(0, &mut [sock, a.netns, a.mntns]);
    let ok = |r: isize, st: u32| {
        if let Err(e) = raw::check(r) {
            fail(st, e);
        }
    };
    // SAFETY: raw syscalls on data prepared before the clone (whole block).
    unsafe {
        ok(
            sc!(libc::SYS_setns, a.netns, libc::CLONE_NEWNET),
            stage::SETNS_NET,
        );
        ok(
            sc!(libc::SYS_setns, a.mntns, libc::CLONE_NEWNS),
            stage::SETNS_MNT,
        );
        // A private copy of the box's mounts: this run's /proc is mounted there, while
        // the previous run of the box may still use its own.
        ok(sc!(libc::SYS_unshare, libc::CLONE_NEWNS), stage::COPY_MNT);
        sc!(libc::SYS_close, a.netns);
        sc!(libc::SYS_close, a.mntns);
        ok(
            sc!(libc::SYS_sethostname, c"box".as_ptr(), 3),
            stage::HOSTNAME,
        );
        // hidepid=2: the program sees only processes of its own uid; init (root,
        // whose memory and command line are the judge's) stays invisible.
        let pflags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        ok(
            sc!(
                libc::SYS_mount,
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                pflags,
                c"hidepid=2".as_ptr()
            ),
            stage::MOUNT_PROC,
        );
        // SIGCHLD must not be ignored (children would be reaped behind wait4's
        // back); it is read through a signalfd.
        let dfl = raw::KernelSigaction::default();
        sc!(
            libc::SYS_rt_sigaction,
            libc::SIGCHLD,
            &dfl as *const raw::KernelSigaction,
            0,
            8
        );
        let chld: u64 = 1 << (libc::SIGCHLD - 1);
        let sfd = sc!(
            libc::SYS_signalfd4,
            -1i32,
            &chld as *const u64,
            8,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK
        );
        let sfd = match raw::check(sfd) {
            Ok(fd) => fd as RawFd,
            Err(e) => fail(stage::SIGNALFD, e),
        };
        // Wait for the run: the address of its RunArgs and its descriptors.
        let mut addr = [0u8; 8];
        let mut iov = libc::iovec {
            iov_base: addr.as_mut_ptr().cast(),
            iov_len: 8,
        };
        let mut cbuf = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = loop {
            let r = sc!(
                libc::SYS_recvmsg,
                sock,
                &mut msg as *mut libc::msghdr,
                libc::MSG_CMSG_CLOEXEC
            );
            match raw::check(r) {
                Err(libc::EINTR) => continue,
                Ok(n) => break n,
                Err(_) => sys::child_exit(0),
            }
        };
        if n != 8 {
            // The judge closed its end: this box is gone.
            sys::child_exit(0);
        }
        let mut fds = [-1 as RawFd; MAX_RUN_FDS];
        let mut nfds = 0;
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let data_len = (*c).cmsg_len - libc::CMSG_LEN(0) as usize;
            nfds = (data_len / std::mem::size_of::<RawFd>()).min(MAX_RUN_FDS);
            std::ptr::copy_nonoverlapping(
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.as_mut_ptr(),
                nfds,
            );
        }
        // SAFETY (of the dereference): the judge sent the address of a RunArgs that
        // lives until it has reaped this process.
        let run = &*(usize::from_ne_bytes(addr) as *const RunArgs);
        if nfds < 4 + run.joins.max(1) {
            fail(stage::STDIO, libc::EBADF);
        }
        let report = fds[3];
        let (join, cgroup_fd) = if run.joins > 0 {
            (&fds[4..4 + run.joins], None)
        } else {
            (&fds[4..4], Some(fds[4]))
        };
        let rfail = |st: u32, e: i32| -> ! { sys::child_fail(report, st, e) };
        let rok = |r: isize, st: u32| {
            if let Err(e) = raw::check(r) {
                rfail(st, e);
            }
        };
        // Size the tmpfs mounts for this run (skipped when the previous run of this box
        // used the same options).
        if let Some((box_opts, tmp_opts)) = run.remount {
            let flags = libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
            rok(
                sc!(
                    libc::SYS_mount,
                    0,
                    c"/box".as_ptr(),
                    0,
                    flags,
                    box_opts.as_ptr()
                ),
                stage::REMOUNT_BOX,
            );
            rok(
                sc!(
                    libc::SYS_mount,
                    0,
                    c"/tmp".as_ptr(),
                    0,
                    flags,
                    tmp_opts.as_ptr()
                ),
                stage::REMOUNT_TMP,
            );
        }
        // The program: a vfork-style child on its own stack, sharing memory until its
        // execve (init waits meanwhile), so nothing is copied.
        let pargs = ProgramArgs {
            join,
            prepared: run.prepared,
            stdio: [fds[0], fds[1], fds[2]],
            report,
        };
        let parg = &pargs as *const ProgramArgs as *mut libc::c_void;
        let (lo, size) = run.program_stack;
        let cflags = (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
        let r = match cgroup_fd {
            // v2: born in the run's cgroup (no migration, no lock).
            Some(cg) => {
                let mut cargs = sys::CloneArgs {
                    flags: cflags | sys::CLONE_INTO_CGROUP,
                    exit_signal: libc::SIGCHLD as u64,
                    stack: lo as u64,
                    stack_size: size as u64,
                    cgroup: cg as u64,
                    ..Default::default()
                };
                let cargs_len = std::mem::size_of::<sys::CloneArgs>();
                let cargs_ptr = &mut cargs as *mut sys::CloneArgs as usize;
                raw::clone_on_stack(
                    libc::SYS_clone3,
                    [cargs_ptr, cargs_len, 0, 0, 0],
                    program_entry,
                    parg,
                )
            }
            None => raw::clone_on_stack(
                libc::SYS_clone,
                [
                    (cflags | libc::SIGCHLD as u64) as usize,
                    lo as usize + size,
                    0,
                    0,
                    0,
                ],
                program_entry,
                parg,
            ),
        };
        let pid = match raw::check(r) {
            Ok(pid) => pid as libc::pid_t,
            Err(e) => rfail(stage::FORK, e),
        };
        // Init keeps only the socket and the signalfd: the program's descriptors must
        // not be held open by it (an output pipe would never see EOF).
        sys::close_all_except_many(0, &mut [sock, sfd]);
        loop {
            let mut pfd = [
                libc::pollfd {
                    fd: sock,
                    events: 0,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let r = sc!(libc::SYS_poll, pfd.as_mut_ptr(), 2, -1i32);
            if raw::check(r).is_ok() && pfd[0].revents != 0 {
                // The judge is gone: end the run (the namespace dies with init).
                sys::child_exit(1);
            }
            let mut drain = [0u8; 128 * 4];
            while raw::check(sc!(libc::SYS_read, sfd, drain.as_mut_ptr(), drain.len())).is_ok() {}
            loop {
                let mut st: i32 = 0;
                let r = sc!(
                    libc::SYS_wait4,
                    -1i32,
                    &mut st as *mut i32,
                    libc::WNOHANG | libc::__WALL,
                    0
                );
                match raw::check(r) {
                    Ok(0) => break,
                    Ok(p) if p as libc::pid_t == pid => {
                        let b = st.to_ne_bytes();
                        sc!(
                            libc::SYS_sendto,
                            sock,
                            b.as_ptr(),
                            4,
                            libc::MSG_NOSIGNAL,
                            0,
                            0
                        );
                        sys::child_exit(0);
                    }
                    Ok(_) | Err(libc::EINTR) => {}
                    Err(_) => break,
                }
            }
        }
    }
}

impl Sandbox for NativeSandbox {
    fn run(&self, spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
        if spec.argv.is_empty() {
            return Err(SandboxError::InvalidSpec("empty argv".into()));
        }
        for f in &spec.files {
            boxfs::check_relative(&f.path)?;
        }
        for c in &spec.collect {
            boxfs::check_relative(c)?;
        }
        for m in &spec.mounts {
            check_mount(m)?;
        }
        let mut b = self.take_box(&spec.mounts)?;
        // A warm box's tmpfs keeps the size of its previous run: input files larger
        // than that fail to fit, and a fresh box (sized generously) is used instead.
        let input_bytes = match Self::write_inputs(spec, &b) {
            Ok(n) => n,
            Err(_) => {
                drop(b);
                b = self.make_box(&spec.mounts)?;
                Self::write_inputs(spec, &b)?
            }
        };
        let r = self.run_in_box(spec, &mut b, input_bytes);
        match &r {
            Ok(_) => self.recycle(b, &spec.mounts),
            // A failed run's box may be in any state: drop it (the kernel frees it).
            Err(_) => drop(b),
        }
        r
    }

    fn name(&self) -> &'static str {
        "native"
    }

    fn prepare(&self) -> Result<Duration, SandboxError> {
        self.inner.cgroup_keeper.prime();
        let t = Instant::now();
        let b = self.make_box(&[])?;
        let took = t.elapsed();
        if let Ok(mut idle) = self.inner.idle.lock() {
            let list = idle.entry(Vec::new()).or_default();
            if list.len() < self.inner.cfg.keep_warm {
                list.push(b);
            }
        }
        Ok(took)
    }
}
