//! cgroup v1 and v2: one cgroup per run for memory, pids and CPU accounting.
//!
//! [`CgroupRoot::detect`] reads `/proc/self/mountinfo` and picks the hierarchy:
//! - **v1** (this project's CI and many container hosts): needs the `memory`, `cpuacct`
//!   and `pids` controllers mounted separately or co-mounted (`cpu,cpuacct`); `freezer`
//!   is used for killing when present. A hybrid host (v1 controllers plus an empty
//!   `unified` v2 mount) uses v1.
//! - **v2** (Ubuntu 24.04, Debian 12, Fedora): needs `memory` and `pids` available to
//!   our base cgroup (CPU time comes from `cpu.stat`, always present).
//!
//! Runs live under `<hierarchy>/judge/` (or `$JUDGE_CGROUP_ROOT`, a path inside the
//! hierarchy). As youki's `libcgroups` and firecracker's jailer do, the two versions
//! sit behind one trait ([`CgroupOps`]) with enum dispatch ([`RunCgroup`]), and every
//! I/O error names the path and the data written. Both are tested against a fake
//! cgroup tree in a temporary folder (see the tests at the end of this file).
//!
//! A run's cgroup is made in two steps, [`CgroupOps::make`] (folders, shared
//! settings, the files read per poll opened once) and [`CgroupOps::apply`] (the run's
//! limits), so that [`super::cgroup_keeper`] can do the first ahead of runs.

use std::fs;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SandboxError;

/// Which cgroup hierarchy a host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies.
    V1,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        })
    }
}

/// Limits a run's cgroup enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Memory limit in bytes (swap is turned off for the cgroup).
    pub memory_bytes: u64,
    /// Maximum number of tasks (processes plus threads).
    pub pids: u32,
}

fn cg_err(op: &str, path: &Path, data: Option<&str>, e: io::Error) -> SandboxError {
    match data {
        Some(d) => SandboxError::Cgroup(format!("{op} {:?} to {}: {e}", d, path.display())),
        None => SandboxError::Cgroup(format!("{op} {}: {e}", path.display())),
    }
}

/// Writes `data` to a cgroup control file; the error names the path and the data.
fn write_file(path: &Path, data: &str) -> Result<(), SandboxError> {
    // create+truncate is what `echo data > file` does; kernfs accepts it, and it lets
    // the unit tests run against a plain folder.
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| io::Write::write_all(&mut f, data.as_bytes()))
        .map_err(|e| cg_err("write", path, Some(data), e))
}

fn read_file(path: &Path) -> Result<String, SandboxError> {
    fs::read_to_string(path).map_err(|e| cg_err("read", path, None, e))
}

fn parse_u64(text: &str, path: impl FnOnce() -> PathBuf) -> Result<u64, SandboxError> {
    text.trim().parse::<u64>().map_err(|e| {
        SandboxError::Cgroup(format!(
            "parse {}: {:?}: {e}",
            path().display(),
            text.trim()
        ))
    })
}

/// Reads the small control file `dir/name` through its already open descriptor when
/// there is one (pread at offset 0: a cgroup file's seq_file starts over at 0, so each
/// read is fresh), else by path. The path is only built for an error or an open.
///
/// Never use this for `cgroup.procs` or `tasks` on v1: those cache their pid list per
/// open file for a second, so a held descriptor may answer a stale list.
fn read_ctl(f: Option<&fs::File>, dir: &Path, name: &str) -> Result<String, SandboxError> {
    let Some(f) = f else {
        return read_file(&dir.join(name));
    };
    let mut buf = [0u8; 4096];
    let n = f
        .read_at(&mut buf, 0)
        .map_err(|e| cg_err("read", &dir.join(name), None, e))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// [`read_ctl`] of a file holding one number.
fn read_ctl_u64(f: Option<&fs::File>, dir: &Path, name: &str) -> Result<u64, SandboxError> {
    parse_u64(&read_ctl(f, dir, name)?, || dir.join(name))
}

/// Value of `key` in a flat-keyed file (`memory.events`, `cpu.stat`, `memory.oom_control`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok())?
    })
}

/// Pids listed in a `cgroup.procs` file; none when the file is gone (the cgroup
/// folder was removed meanwhile). Opened afresh each time (see [`read_ctl`]).
fn read_pids(path: &Path) -> Result<Vec<libc::pid_t>, SandboxError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(cg_err("read", path, None, e)),
    }
}

/// Creates a base folder (already existing is fine).
fn mkdir(path: &Path) -> Result<(), SandboxError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(cg_err("mkdir", path, None, e)),
    }
}

/// Creates a run cgroup folder; one that already exists is an error (a run never
/// shares a cgroup). The kernel fills it with control files.
fn mkdir_run(path: &Path) -> Result<(), SandboxError> {
    fs::create_dir(path).map_err(|e| cg_err("mkdir", path, None, e))?;
    #[cfg(test)]
    fake::populate(path);
    Ok(())
}

/// Removes a run cgroup folder, retrying briefly while the kernel finishes tearing down
/// its last tasks (EBUSY).
fn rmdir(path: &Path) -> Result<(), SandboxError> {
    #[cfg(test)]
    fake::depopulate(path);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(cg_err("rmdir", path, None, e)),
        }
    }
}

fn open_rw(path: &Path) -> Result<OwnedFd, SandboxError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| cg_err("open", path, None, e))
}

fn open_ro(path: &Path) -> Result<fs::File, SandboxError> {
    fs::File::open(path).map_err(|e| cg_err("open", path, None, e))
}

/// Numbers run cgroups (`<tag>-<owner>-<n>`) across every sandbox of the process: two
/// instances (two pools, two test modules, a keeper and an inline fallback) must never
/// pick the same name.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Where each judge process keeps a lock file named by its [`owner_token`], locked
/// (`flock`) for the process's life: [`CgroupRoot::sweep_stale`] asks it whether the
/// owner of a run cgroup still lives.
pub const OWNERS_DIR: &str = "/run/judge-sandbox/owners";

/// This process's part of its run cgroups' names: `<pid>.<nonce>` (8 random hex
/// digits). A pid alone is not unique on a host: judges in containers (PID namespaces)
/// sharing the host's cgroup tree are all pid 1 or so, and used to take each other's
/// cgroup names and sweep each other's live cgroups (QA). The first call creates and
/// locks `OWNERS_DIR/<token>` (best effort: without it, other judges leave this
/// process's cgroups alone).
pub fn owner_token() -> &'static str {
    static OWNER: std::sync::OnceLock<(String, Option<fs::File>)> = std::sync::OnceLock::new();
    &OWNER
        .get_or_init(|| {
            let mut nonce = [0u8; 4];
            // SAFETY: getrandom into a 4-byte buffer; on failure the time's bits are
            // used.
            let got = unsafe { libc::getrandom(nonce.as_mut_ptr().cast(), 4, 0) };
            if got != 4 {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                nonce = t.to_ne_bytes();
            }
            let token = format!("{}.{:08x}", std::process::id(), u32::from_ne_bytes(nonce));
            let lock = (|| -> io::Result<fs::File> {
                fs::create_dir_all(OWNERS_DIR)?;
                let f = fs::File::create(Path::new(OWNERS_DIR).join(&token))?;
                // SAFETY: flock on a descriptor we own (kept for the process's life).
                if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f)
            })();
            (token, lock.ok())
        })
        .0
}

/// Whether the owner of run cgroups named with `owner` (a `<pid>.<nonce>` token, or a
/// bare pid from older versions) still lives: `Some(false)` only when that is certain
/// (its lock file is there and unlocked, or the bare pid is gone); `None` when it
/// cannot be told (no lock file: another host's `/run`, e.g. a container's).
fn owner_alive(owner: &str) -> Option<bool> {
    if let Ok(pid) = owner.parse::<u32>() {
        return Some(Path::new(&format!("/proc/{pid}")).exists());
    }
    let (pid, nonce) = owner.split_once('.')?;
    if pid.parse::<u32>().is_err()
        || nonce.is_empty()
        || !nonce.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    let f = fs::File::open(Path::new(OWNERS_DIR).join(owner)).ok()?;
    // SAFETY: flock on a descriptor we own; released when `f` is dropped.
    let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    Some(locked)
}

/// Removes this process's lock file from [`OWNERS_DIR`] (at exit, once every cgroup of
/// its is gone: later sweeps then have nothing to ask about it).
pub fn forget_owner() {
    let _ = fs::remove_file(Path::new(OWNERS_DIR).join(owner_token()));
}

/// A fresh run cgroup name, `<tag>-<owner>-<n>` with this process's [`owner_token`]
/// (the shape [`CgroupRoot::sweep_stale`] recognises; `tag` is lowercase letters).
pub fn run_name(tag: &str) -> String {
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{n}", owner_token())
}

/// Where runs' cgroups are created: one folder per controller on v1, one on v2.
#[derive(Debug, Clone)]
pub enum CgroupRoot {
    /// v1: the `judge` folder inside each controller's hierarchy.
    V1 {
        /// `.../memory/judge`.
        memory: PathBuf,
        /// `.../cpuacct/judge` (or `cpu,cpuacct`).
        cpuacct: PathBuf,
        /// `.../pids/judge`.
        pids: PathBuf,
        /// `.../freezer/judge`, used to stop every task before killing them.
        freezer: Option<PathBuf>,
    },
    /// v2: the base folder whose children are the runs.
    V2 {
        /// e.g. `/sys/fs/cgroup/judge`.
        base: PathBuf,
    },
}

/// The cgroup mounts found in mountinfo.
#[derive(Debug, Default, Clone)]
pub struct CgroupMounts {
    /// v1 mount points by controller name.
    pub v1: Vec<(String, PathBuf)>,
    /// The v2 mount point, if any.
    pub v2: Option<PathBuf>,
}

impl CgroupMounts {
    /// Parses `/proc/self/mountinfo` text.
    pub fn parse(mountinfo: &str) -> CgroupMounts {
        let mut out = CgroupMounts::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split_whitespace().nth(4).unwrap_or("");
            let mut r = right.split_whitespace();
            let fstype = r.next().unwrap_or("");
            let _source = r.next();
            let opts = r.next().unwrap_or("");
            match fstype {
                "cgroup2" => out.v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    for o in opts.split(',') {
                        if matches!(o, "memory" | "cpuacct" | "pids" | "freezer" | "cpu") {
                            out.v1.push((o.to_string(), PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn v1_controller(&self, name: &str) -> Option<&PathBuf> {
        self.v1.iter().find(|(c, _)| c == name).map(|(_, p)| p)
    }
}

impl CgroupRoot {
    /// Detects the host's hierarchy and prepares the `judge` base folder(s).
    ///
    /// Errors: [`SandboxError::Unavailable`] with what to fix when neither a complete v1
    /// set (memory, cpuacct, pids) nor a v2 hierarchy with memory and pids is usable.
    pub fn detect() -> Result<CgroupRoot, SandboxError> {
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| SandboxError::Io {
            op: "read",
            path: "/proc/self/mountinfo".into(),
            source: e,
        })?;
        let mounts = CgroupMounts::parse(&info);
        let sub = std::env::var("JUDGE_CGROUP_ROOT").unwrap_or_else(|_| "judge".to_string());
        let sub = sub.trim_start_matches('/').to_string();
        let v1 = (
            mounts.v1_controller("memory"),
            mounts.v1_controller("cpuacct"),
            mounts.v1_controller("pids"),
        );
        if let (Some(m), Some(c), Some(p)) = v1 {
            let root = CgroupRoot::v1_at(
                m.join(&sub),
                c.join(&sub),
                p.join(&sub),
                mounts.v1_controller("freezer").map(|f| f.join(&sub)),
            );
            root.ensure_base()?;
            return Ok(root);
        }
        if let Some(v2) = &mounts.v2 {
            let root = CgroupRoot::v2_at(v2.join(&sub));
            root.ensure_base()?;
            return Ok(root);
        }
        Err(SandboxError::Unavailable(format!(
            "no usable cgroup hierarchy: found v1 controllers {:?} and v2 mount {:?}; \
             mount cgroup2 on /sys/fs/cgroup (systemd does this by default) or the v1 \
             memory, cpuacct and pids controllers, and run judge as root",
            mounts
                .v1
                .iter()
                .map(|(c, _)| c.as_str())
                .collect::<Vec<_>>(),
            mounts.v2
        )))
    }

    /// A v1 root at explicit folders (tests use a temporary folder).
    pub fn v1_at(
        memory: PathBuf,
        cpuacct: PathBuf,
        pids: PathBuf,
        freezer: Option<PathBuf>,
    ) -> CgroupRoot {
        CgroupRoot::V1 {
            memory,
            cpuacct,
            pids,
            freezer,
        }
    }

    /// A v2 root at an explicit base folder (tests use a temporary folder).
    pub fn v2_at(base: PathBuf) -> CgroupRoot {
        CgroupRoot::V2 { base }
    }

    /// The hierarchy version.
    pub fn version(&self) -> CgroupVersion {
        match self {
            CgroupRoot::V1 { .. } => CgroupVersion::V1,
            CgroupRoot::V2 { .. } => CgroupVersion::V2,
        }
    }

    /// Base folders, for `judge doctor`.
    pub fn base_paths(&self) -> Vec<PathBuf> {
        match self {
            CgroupRoot::V1 {
                memory,
                cpuacct,
                pids,
                freezer,
            } => {
                let mut v = vec![memory.clone(), cpuacct.clone(), pids.clone()];
                v.extend(freezer.clone());
                v
            }
            CgroupRoot::V2 { base } => vec![base.clone()],
        }
    }

    /// Creates the base folder(s); on v2 also delegates the memory and pids
    /// controllers to the runs (`+memory +pids` in `cgroup.subtree_control`).
    pub fn ensure_base(&self) -> Result<(), SandboxError> {
        match self {
            CgroupRoot::V1 { .. } => {
                for p in self.base_paths() {
                    mkdir(&p)?;
                }
                Ok(())
            }
            CgroupRoot::V2 { base } => {
                mkdir(base)?;
                let parent = base.parent().unwrap_or(Path::new("/"));
                let want = ["memory", "pids"];
                for dir in [parent, base.as_path()] {
                    let have = read_file(&dir.join("cgroup.subtree_control")).unwrap_or_default();
                    let missing: Vec<String> = want
                        .iter()
                        .filter(|c| !have.split_whitespace().any(|h| h == **c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    let path = dir.join("cgroup.subtree_control");
                    write_file(&path, &missing.join(" ")).map_err(|e| {
                        SandboxError::Unavailable(format!(
                            "{e}; cgroup v2 needs the memory and pids controllers delegated to \
                             {}: run judge as root in a cgroup with no other processes (e.g. \
                             `systemd-run --scope -p Delegate=yes judge ...`) or set \
                             JUDGE_CGROUP_ROOT to a delegated cgroup path",
                            base.display()
                        ))
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Removes run cgroups left by judge processes that died mid-run: folders named
    /// `<tag>-<owner>-<n>` (a lowercase tag such as `run`, `proc`, `doctor`) whose
    /// owner is certainly gone (see [`owner_token`]: its lock file in [`OWNERS_DIR`]
    /// is unlocked; for a bare pid of older versions, the pid no longer exists). A
    /// cgroup whose owner cannot be told (a judge in a container with its own `/run`)
    /// is left alone. Their tasks (if any survived) are killed first. Returns how many were
    /// removed; failures are skipped (they are retried at the next start).
    pub fn sweep_stale(&self) -> usize {
        let mut removed = 0;
        // Cgroups of dead owners: name -> owner.
        let mut names = std::collections::BTreeMap::new();
        // Each owner is asked once per sweep.
        let mut owners = std::collections::HashMap::new();
        for base in self.base_paths() {
            let Ok(rd) = fs::read_dir(&base) else {
                continue;
            };
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                let mut parts = n.splitn(3, '-');
                let (Some(prefix), Some(owner), Some(_)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_lowercase()) {
                    continue;
                }
                let alive = *owners
                    .entry(owner.to_string())
                    .or_insert_with(|| owner_alive(owner));
                if alive == Some(false) {
                    let owner = owner.to_string();
                    names.insert(n, owner);
                }
            }
        }
        // Dead owners with a cgroup that could not be removed keep their lock file.
        let mut kept = std::collections::HashSet::new();
        for (n, owner) in names {
            let freezer = match self {
                CgroupRoot::V1 {
                    freezer: Some(f), ..
                } => f.join(&n).exists(),
                _ => false,
            };
            let mut cg = self.blank(&n, freezer);
            if let RunCgroup::V1(v1) = &cg {
                // A hierarchy may already lack the folder: only kill and remove what exists.
                if v1.dirs().iter().any(|d| !d.exists()) {
                    for d in v1.dirs() {
                        if d.exists()
                            && read_pids(&d.join("cgroup.procs")).is_ok_and(|p| p.is_empty())
                        {
                            let _ = rmdir(d);
                        }
                    }
                    if v1.dirs().iter().any(|d| d.exists()) {
                        kept.insert(owner);
                    }
                    removed += 1;
                    continue;
                }
            }
            if cg.kill_all().is_ok() && cg.remove().is_ok() {
                removed += 1;
            } else {
                kept.insert(owner);
            }
        }
        // The lock files of dead owners whose cgroups are all gone now.
        for (owner, alive) in owners {
            if alive == Some(false) && owner.contains('.') && !kept.contains(&owner) {
                let _ = fs::remove_file(Path::new(OWNERS_DIR).join(owner));
            }
        }
        removed
    }

    /// Creates the cgroup of one run named `name` with `limits` applied. On v1,
    /// `freezer` says whether the run also joins the freezer hierarchy (needed to kill
    /// a run reliably without a PID namespace; each hierarchy joined costs a task
    /// migration, ~0.1 ms).
    ///
    /// Errors: [`SandboxError::Cgroup`] naming the path (and data) that failed; a
    /// half-created cgroup is removed again.
    pub fn create(
        &self,
        name: &str,
        limits: &CgroupLimits,
        freezer: bool,
    ) -> Result<RunCgroup, SandboxError> {
        self.blank(name, freezer).kept_if(|cg| cg.setup(limits))
    }

    /// The run cgroup `name` under this root, as a value: nothing is created or opened
    /// ([`CgroupOps::make`] does that). `freezer` as in [`CgroupRoot::create`].
    pub fn blank(&self, name: &str, freezer: bool) -> RunCgroup {
        match self {
            CgroupRoot::V1 {
                memory,
                cpuacct,
                pids,
                freezer: freezer_root,
            } => RunCgroup::V1(V1Cgroup {
                memory: memory.join(name),
                cpuacct: cpuacct.join(name),
                pids: pids.join(name),
                freezer: freezer_root
                    .as_ref()
                    .filter(|_| freezer)
                    .map(|f| f.join(name)),
                files: None,
                limits: None,
            }),
            CgroupRoot::V2 { base } => RunCgroup::V2(V2Cgroup {
                dir: base.join(name),
                files: None,
                limits: None,
            }),
        }
    }
}

/// What the sandbox needs from a run's cgroup, whatever the version.
pub trait CgroupOps {
    /// Creates the folder(s), makes the settings every run shares (swap off; on v2 an
    /// OOM kill takes the whole run) and opens the files read per poll and per run, so
    /// that a run reads them with one pread each. No limit is written yet (see
    /// [`CgroupOps::apply`]). [`CgroupKeeper`](super::cgroup_keeper::CgroupKeeper)
    /// does this ahead of runs.
    ///
    /// Errors: [`SandboxError::Cgroup`] naming the path (and data) that failed; the
    /// caller removes what was made.
    fn make(&mut self) -> Result<(), SandboxError>;
    /// Writes `limits` (memory, and memory+swap on v1 or swap 0 on v2; pids), skipping
    /// each value this cgroup already holds (a stocked cgroup is made with the limits
    /// of the run before).
    ///
    /// Errors: [`SandboxError::Cgroup`] naming the file and the value.
    fn apply(&mut self, limits: &CgroupLimits) -> Result<(), SandboxError>;
    /// [`CgroupOps::make`] then [`CgroupOps::apply`].
    fn setup(&mut self, limits: &CgroupLimits) -> Result<(), SandboxError> {
        self.make()?;
        self.apply(limits)
    }
    /// Descriptors of control files to which a single-threaded child writes `0` to
    /// join (v1: each hierarchy's `tasks`).
    fn join_fds(&self) -> Vec<RawFd>;
    /// A descriptor of the cgroup folder for `clone3(CLONE_INTO_CGROUP)` (v2).
    fn clone_into_fd(&self) -> Option<RawFd>;
    /// CPU time used so far by every task of the run, in ns (user + system).
    fn cpu_usage_ns(&self) -> Result<u64, SandboxError>;
    /// Current memory use in bytes.
    fn memory_current(&self) -> Result<u64, SandboxError>;
    /// Peak memory in bytes, if the kernel records it (v1 always, v2 from 5.19).
    fn memory_peak(&self) -> Result<Option<u64>, SandboxError>;
    /// Number of tasks the OOM killer killed in this cgroup.
    fn oom_kills(&self) -> Result<u64, SandboxError>;
    /// Number of times memory use hit the limit.
    fn memory_limit_hits(&self) -> Result<u64, SandboxError>;
    /// Pids of the tasks still in the cgroup.
    fn pids(&self) -> Result<Vec<libc::pid_t>, SandboxError>;
    /// Kills every task and waits until the cgroup is empty.
    fn kill_all(&self) -> Result<(), SandboxError>;
    /// Closes the cgroup's files and removes the folder(s). Call after
    /// [`CgroupOps::kill_all`].
    fn remove(&mut self) -> Result<(), SandboxError>;
    /// The run's folder (the memory one on v1), for messages.
    fn path(&self) -> &Path;
}

/// The cgroup of one run, v1 or v2.
#[derive(Debug)]
pub enum RunCgroup {
    /// v1.
    V1(V1Cgroup),
    /// v2.
    V2(V2Cgroup),
}

impl RunCgroup {
    /// `self` once `step` (making it, applying limits) succeeded on it; when `step`
    /// fails, the half-made cgroup is removed again (best effort) and the error
    /// returned.
    pub fn kept_if(
        mut self,
        step: impl FnOnce(&mut RunCgroup) -> Result<(), SandboxError>,
    ) -> Result<RunCgroup, SandboxError> {
        match step(&mut self) {
            Ok(()) => Ok(self),
            Err(e) => {
                let _ = self.remove();
                Err(e)
            }
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $cg:ident => $e:expr) => {
        match $self {
            RunCgroup::V1($cg) => $e,
            RunCgroup::V2($cg) => $e,
        }
    };
}

impl CgroupOps for RunCgroup {
    fn make(&mut self) -> Result<(), SandboxError> {
        dispatch!(self, cg => cg.make())
    }
    fn apply(&mut self, limits: &CgroupLimits) -> Result<(), SandboxError> {
        dispatch!(self, cg => cg.apply(limits))
    }
    fn join_fds(&self) -> Vec<RawFd> {
        dispatch!(self, cg => cg.join_fds())
    }
    fn clone_into_fd(&self) -> Option<RawFd> {
        dispatch!(self, cg => cg.clone_into_fd())
    }
    fn cpu_usage_ns(&self) -> Result<u64, SandboxError> {
        dispatch!(self, cg => cg.cpu_usage_ns())
    }
    fn memory_current(&self) -> Result<u64, SandboxError> {
        dispatch!(self, cg => cg.memory_current())
    }
    fn memory_peak(&self) -> Result<Option<u64>, SandboxError> {
        dispatch!(self, cg => cg.memory_peak())
    }
    fn oom_kills(&self) -> Result<u64, SandboxError> {
        dispatch!(self, cg => cg.oom_kills())
    }
    fn memory_limit_hits(&self) -> Result<u64, SandboxError> {
        dispatch!(self, cg => cg.memory_limit_hits())
    }
    fn pids(&self) -> Result<Vec<libc::pid_t>, SandboxError> {
        dispatch!(self, cg => cg.pids())
    }
    fn kill_all(&self) -> Result<(), SandboxError> {
        dispatch!(self, cg => cg.kill_all())
    }
    fn remove(&mut self) -> Result<(), SandboxError> {
        dispatch!(self, cg => cg.remove())
    }
    fn path(&self) -> &Path {
        dispatch!(self, cg => cg.path())
    }
}

/// How long [`CgroupOps::kill_all`] keeps trying before reporting the cgroup as stuck.
const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// Kills the listed pids (SIGKILL) until `pids()` is empty.
fn kill_loop(
    path: &Path,
    pids: impl Fn() -> Result<Vec<libc::pid_t>, SandboxError>,
    mut freeze: impl FnMut(bool) -> Result<(), SandboxError>,
) -> Result<(), SandboxError> {
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        let list = pids()?;
        if list.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::Cgroup(format!(
                "{}: tasks {list:?} survive SIGKILL",
                path.display()
            )));
        }
        freeze(true)?;
        for pid in pids()? {
            // SAFETY: kill with a pid read from the cgroup; the run's tasks are frozen,
            // so they cannot fork meanwhile. A stale pid fails with ESRCH.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        freeze(false)?;
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// A run's cgroup on v1: one folder per controller.
#[derive(Debug)]
pub struct V1Cgroup {
    memory: PathBuf,
    cpuacct: PathBuf,
    pids: PathBuf,
    freezer: Option<PathBuf>,
    /// Open once the folders exist ([`CgroupOps::make`]); `None` for a cgroup found by
    /// [`CgroupRoot::sweep_stale`] (read by path then).
    files: Option<V1Files>,
    /// The limits last written; `None`: the kernel's defaults (no limit).
    limits: Option<CgroupLimits>,
}

/// The files of a v1 run cgroup read per poll or per run, and its join descriptors.
#[derive(Debug)]
struct V1Files {
    /// Each hierarchy's `tasks`, opened for writing (see [`CgroupOps::join_fds`]).
    join: Vec<OwnedFd>,
    /// `cpuacct.usage` (ns).
    cpu: fs::File,
    /// `memory.usage_in_bytes`, sampled while polling.
    usage: fs::File,
    /// `memory.max_usage_in_bytes`.
    peak: fs::File,
    /// `memory.oom_control` (its `oom_kill` line, Linux 4.13+).
    oom: fs::File,
    /// `memory.failcnt`.
    failcnt: fs::File,
    /// Whether `memory.memsw.limit_in_bytes` exists (swap accounting enabled).
    memsw: bool,
}

impl V1Cgroup {
    fn dirs(&self) -> Vec<&PathBuf> {
        let mut v = vec![&self.memory, &self.cpuacct, &self.pids];
        v.extend(self.freezer.as_ref());
        v
    }

    fn freeze(&self, on: bool) -> Result<(), SandboxError> {
        let Some(f) = &self.freezer else {
            return Ok(());
        };
        let state = f.join("freezer.state");
        write_file(&state, if on { "FROZEN" } else { "THAWED" })?;
        if on {
            // Freezing is asynchronous: wait (briefly) until every task is frozen.
            let deadline = Instant::now() + Duration::from_millis(500);
            while read_file(&state)?.trim() == "FREEZING" && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    }

    /// Makes the settings every run shares and opens the files (after the folders
    /// exist; the kernel fills them with control files).
    fn ready(&mut self) -> Result<(), SandboxError> {
        let swappiness = self.memory.join("memory.swappiness");
        if swappiness.exists() {
            let _ = write_file(&swappiness, "0");
        }
        let memsw = self.memory.join("memory.memsw.limit_in_bytes").exists();
        let mem = |name: &str| open_ro(&self.memory.join(name));
        // The child joins by writing `0` to `tasks`, not `cgroup.procs`: moving only
        // the calling thread lets the kernel skip write-locking the global
        // threadgroup rwsem, whose RCU grace period stalled about one join in ten
        // for 1-10 ms (measured: mean join 126 µs with cgroup.procs, 17 µs with
        // tasks). The child is single-threaded, so the thread is the whole process.
        let mut join = Vec::new();
        for d in self.dirs() {
            join.push(open_rw(&d.join("tasks"))?);
        }
        self.files = Some(V1Files {
            join,
            cpu: open_ro(&self.cpuacct.join("cpuacct.usage"))?,
            usage: mem("memory.usage_in_bytes")?,
            peak: mem("memory.max_usage_in_bytes")?,
            oom: mem("memory.oom_control")?,
            failcnt: mem("memory.failcnt")?,
            memsw,
        });
        Ok(())
    }

    fn files(&self) -> Option<&V1Files> {
        self.files.as_ref()
    }
}

impl CgroupOps for V1Cgroup {
    fn make(&mut self) -> Result<(), SandboxError> {
        for d in self.dirs() {
            mkdir_run(d)?;
        }
        self.ready()
    }

    fn apply(&mut self, limits: &CgroupLimits) -> Result<(), SandboxError> {
        let old = self.limits.take();
        if old.map(|o| o.memory_bytes) != Some(limits.memory_bytes) {
            let mem = limits.memory_bytes.to_string();
            let memsw_path = self.memory.join("memory.memsw.limit_in_bytes");
            let memsw = self
                .files()
                .map_or_else(|| memsw_path.exists(), |f| f.memsw);
            let write_mem = || write_file(&self.memory.join("memory.limit_in_bytes"), &mem);
            // memory+swap = memory: no swap for the run. The kernel refuses any
            // moment where memory+swap < memory (EINVAL; memcg v1 docs, "memsw"):
            // raising writes memory+swap first, lowering (and a fresh cgroup, whose
            // both limits are "unlimited") writes memory first.
            if old.is_some_and(|o| limits.memory_bytes > o.memory_bytes) {
                if memsw {
                    write_file(&memsw_path, &mem)?;
                }
                write_mem()?;
            } else {
                write_mem()?;
                if memsw {
                    write_file(&memsw_path, &mem)?;
                }
            }
        }
        if old.map(|o| o.pids) != Some(limits.pids) {
            write_file(&self.pids.join("pids.max"), &limits.pids.to_string())?;
        }
        self.limits = Some(*limits);
        Ok(())
    }

    fn join_fds(&self) -> Vec<RawFd> {
        self.files()
            .map(|f| f.join.iter().map(|f| f.as_raw_fd()).collect())
            .unwrap_or_default()
    }

    fn clone_into_fd(&self) -> Option<RawFd> {
        None
    }

    fn cpu_usage_ns(&self) -> Result<u64, SandboxError> {
        read_ctl_u64(self.files().map(|f| &f.cpu), &self.cpuacct, "cpuacct.usage")
    }

    fn memory_current(&self) -> Result<u64, SandboxError> {
        let f = self.files().map(|f| &f.usage);
        read_ctl_u64(f, &self.memory, "memory.usage_in_bytes")
    }

    fn memory_peak(&self) -> Result<Option<u64>, SandboxError> {
        let f = self.files().map(|f| &f.peak);
        read_ctl_u64(f, &self.memory, "memory.max_usage_in_bytes").map(Some)
    }

    fn oom_kills(&self) -> Result<u64, SandboxError> {
        let text = read_ctl(
            self.files().map(|f| &f.oom),
            &self.memory,
            "memory.oom_control",
        )?;
        // `oom_kill` exists since Linux 4.13; before that, `under_oom` plus failcnt
        // (see memory_limit_hits) is what we have.
        Ok(keyed(&text, "oom_kill").unwrap_or(0))
    }

    fn memory_limit_hits(&self) -> Result<u64, SandboxError> {
        read_ctl_u64(
            self.files().map(|f| &f.failcnt),
            &self.memory,
            "memory.failcnt",
        )
    }

    fn pids(&self) -> Result<Vec<libc::pid_t>, SandboxError> {
        let mut all = Vec::new();
        for d in self.dirs() {
            for p in read_pids(&d.join("cgroup.procs"))? {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
        }
        Ok(all)
    }

    fn kill_all(&self) -> Result<(), SandboxError> {
        kill_loop(&self.memory, || self.pids(), |on| self.freeze(on))
    }

    fn remove(&mut self) -> Result<(), SandboxError> {
        self.files = None;
        let mut first = None;
        for d in self.dirs() {
            if let Err(e) = rmdir(d) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn path(&self) -> &Path {
        &self.memory
    }
}

/// A run's cgroup on v2.
#[derive(Debug)]
pub struct V2Cgroup {
    dir: PathBuf,
    /// Open once the folder exists ([`CgroupOps::make`]); `None` for a cgroup found by
    /// [`CgroupRoot::sweep_stale`] (read by path then).
    files: Option<V2Files>,
    /// The limits last written; `None`: the kernel's defaults (no limit).
    limits: Option<CgroupLimits>,
}

/// The files of a v2 run cgroup read per poll or per run, and its join descriptors.
#[derive(Debug)]
struct V2Files {
    /// The folder, for `clone3(CLONE_INTO_CGROUP)`.
    dir: OwnedFd,
    /// `cgroup.procs` opened for writing (joining by a write, when clone3 cannot).
    procs: OwnedFd,
    /// `cpu.stat` (`usage_usec`).
    cpu: fs::File,
    /// `memory.current`, sampled while polling.
    current: fs::File,
    /// `memory.peak`, absent before Linux 5.19.
    peak: Option<fs::File>,
    /// `memory.events` (`max`, `oom_kill`, `oom_group_kill`).
    events: fs::File,
    /// `cgroup.events` (`populated`: whether any task is left, kept exact by the
    /// kernel at every task exit; unlike `cgroup.procs` on v1, no per-open cache).
    cg_events: fs::File,
}

impl V2Cgroup {
    fn files(&self) -> Option<&V2Files> {
        self.files.as_ref()
    }

    fn events(&self) -> Result<String, SandboxError> {
        read_ctl(self.files().map(|f| &f.events), &self.dir, "memory.events")
    }

    fn freeze(&self, on: bool) -> Result<(), SandboxError> {
        let f = self.dir.join("cgroup.freeze");
        if !f.exists() {
            return Ok(());
        }
        write_file(&f, if on { "1" } else { "0" })?;
        if on {
            let deadline = Instant::now() + Duration::from_millis(500);
            while keyed(&read_file(&self.dir.join("cgroup.events"))?, "frozen") != Some(1)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        Ok(())
    }

    /// Makes the settings every run shares and opens the files (after the folder
    /// exists; the kernel fills it with control files).
    fn ready(&mut self) -> Result<(), SandboxError> {
        let swap = self.dir.join("memory.swap.max");
        if swap.exists() {
            write_file(&swap, "0")?;
        }
        let group = self.dir.join("memory.oom.group");
        if group.exists() {
            // An OOM kill takes the whole run down, not one random thread's process.
            write_file(&group, "1")?;
        }
        let open = |name: &str| open_ro(&self.dir.join(name));
        let peak = self.dir.join("memory.peak");
        let dir = fs::File::open(&self.dir).map_err(|e| cg_err("open", &self.dir, None, e))?;
        self.files = Some(V2Files {
            dir: OwnedFd::from(dir),
            procs: open_rw(&self.dir.join("cgroup.procs"))?,
            cpu: open("cpu.stat")?,
            current: open("memory.current")?,
            peak: if peak.exists() {
                Some(open_ro(&peak)?)
            } else {
                None
            },
            events: open("memory.events")?,
            cg_events: open("cgroup.events")?,
        });
        Ok(())
    }
}

impl CgroupOps for V2Cgroup {
    fn make(&mut self) -> Result<(), SandboxError> {
        mkdir_run(&self.dir)?;
        self.ready()
    }

    fn apply(&mut self, limits: &CgroupLimits) -> Result<(), SandboxError> {
        // memory.max and memory.swap.max are independent (swap is 0 from make).
        let old = self.limits.take();
        if old.map(|o| o.memory_bytes) != Some(limits.memory_bytes) {
            let mem = limits.memory_bytes.to_string();
            write_file(&self.dir.join("memory.max"), &mem)?;
        }
        if old.map(|o| o.pids) != Some(limits.pids) {
            write_file(&self.dir.join("pids.max"), &limits.pids.to_string())?;
        }
        self.limits = Some(*limits);
        Ok(())
    }

    fn join_fds(&self) -> Vec<RawFd> {
        self.files()
            .map(|f| vec![f.procs.as_raw_fd()])
            .unwrap_or_default()
    }

    fn clone_into_fd(&self) -> Option<RawFd> {
        self.files().map(|f| f.dir.as_raw_fd())
    }

    fn cpu_usage_ns(&self) -> Result<u64, SandboxError> {
        let text = read_ctl(self.files().map(|f| &f.cpu), &self.dir, "cpu.stat")?;
        keyed(&text, "usage_usec")
            .map(|us| us * 1000)
            .ok_or_else(|| {
                SandboxError::Cgroup(format!("{}/cpu.stat: no usage_usec", self.dir.display()))
            })
    }

    fn memory_current(&self) -> Result<u64, SandboxError> {
        read_ctl_u64(
            self.files().map(|f| &f.current),
            &self.dir,
            "memory.current",
        )
    }

    fn memory_peak(&self) -> Result<Option<u64>, SandboxError> {
        match self.files() {
            Some(V2Files { peak: Some(f), .. }) => {
                read_ctl_u64(Some(f), &self.dir, "memory.peak").map(Some)
            }
            Some(_) => Ok(None),
            None if self.dir.join("memory.peak").exists() => {
                read_ctl_u64(None, &self.dir, "memory.peak").map(Some)
            }
            None => Ok(None),
        }
    }

    fn oom_kills(&self) -> Result<u64, SandboxError> {
        let e = self.events()?;
        Ok(keyed(&e, "oom_kill").unwrap_or(0) + keyed(&e, "oom_group_kill").unwrap_or(0))
    }

    fn memory_limit_hits(&self) -> Result<u64, SandboxError> {
        Ok(keyed(&self.events()?, "max").unwrap_or(0))
    }

    fn pids(&self) -> Result<Vec<libc::pid_t>, SandboxError> {
        read_pids(&self.dir.join("cgroup.procs"))
    }

    fn kill_all(&self) -> Result<(), SandboxError> {
        // Usually every task is gone already (a native run's PID namespace died with
        // its init): one pread says so.
        if let Some(f) = self.files() {
            let events = read_ctl(Some(&f.cg_events), &self.dir, "cgroup.events")?;
            if keyed(&events, "populated") == Some(0) {
                return Ok(());
            }
        }
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            write_file(&kill, "1")?;
        }
        kill_loop(&self.dir, || self.pids(), |on| self.freeze(on))
    }

    fn remove(&mut self) -> Result<(), SandboxError> {
        self.files = None;
        rmdir(&self.dir)
    }

    fn path(&self) -> &Path {
        &self.dir
    }
}

/// Reads a whole file to a string (used by doctor for controller lists).
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut s = String::new();
    fs::File::open(path)?.read_to_string(&mut s)?;
    Ok(s)
}

/// A fake kernel for unit tests: a base folder holding a `fake-kernel` folder of
/// template files makes [`mkdir_run`] fill each new run folder with copies of them (as
/// the kernel fills a new cgroup with control files), and [`rmdir`] empty it first (as
/// the kernel removes a cgroup with its control files). Real cgroup folders never hold
/// `fake-kernel`, so nothing else changes.
#[cfg(test)]
pub(crate) mod fake {
    use std::fs;
    use std::path::Path;

    use super::CgroupRoot;

    /// The template folder's name inside a fake base folder.
    pub const TEMPLATE: &str = "fake-kernel";

    pub fn populate(dir: &Path) {
        let Some(template) = dir.parent().map(|p| p.join(TEMPLATE)) else {
            return;
        };
        let Ok(rd) = fs::read_dir(&template) else {
            return;
        };
        for e in rd.flatten() {
            fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }

    pub fn depopulate(dir: &Path) {
        if !dir.parent().is_some_and(|p| p.join(TEMPLATE).is_dir()) {
            return;
        }
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn base(base: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(base.join(TEMPLATE)).unwrap();
        for (name, content) in files {
            fs::write(base.join(TEMPLATE).join(name), content).unwrap();
        }
    }

    /// A fake v1 root under `t` (`t/<controller>/judge`), with freezer.
    pub fn v1_root(t: &Path) -> CgroupRoot {
        let p = |c: &str| t.join(c).join("judge");
        let join = [("cgroup.procs", ""), ("tasks", "")];
        let unlimited = "9223372036854771712\n";
        let mut memory = vec![
            ("memory.limit_in_bytes", unlimited),
            ("memory.memsw.limit_in_bytes", unlimited),
            ("memory.swappiness", "60\n"),
            ("memory.usage_in_bytes", "0\n"),
            ("memory.max_usage_in_bytes", "0\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
            ("memory.failcnt", "0\n"),
        ];
        memory.extend(join);
        base(&p("memory"), &memory);
        base(&p("cpuacct"), &[join[0], join[1], ("cpuacct.usage", "0\n")]);
        base(&p("pids"), &[join[0], join[1], ("pids.max", "max\n")]);
        base(
            &p("freezer"),
            &[join[0], join[1], ("freezer.state", "THAWED\n")],
        );
        CgroupRoot::v1_at(p("memory"), p("cpuacct"), p("pids"), Some(p("freezer")))
    }

    /// A fake v2 root at `t/judge`; `peak`: whether the kernel has `memory.peak` (5.19+).
    pub fn v2_root(t: &Path, peak: bool) -> CgroupRoot {
        let b = t.join("judge");
        let mut files = vec![
            ("cgroup.procs", ""),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.oom.group", "0\n"),
            ("memory.current", "0\n"),
            ("pids.max", "max\n"),
            ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
            ),
        ];
        if peak {
            files.push(("memory.peak", "0\n"));
        }
        base(&b, &files);
        CgroupRoot::v2_at(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: CgroupLimits = CgroupLimits {
        memory_bytes: 256 << 20,
        pids: 65,
    };

    /// A fake v1 run cgroup: the folders and the files the kernel would provide.
    fn fake_v1(t: &Path) -> V1Cgroup {
        let cg = V1Cgroup {
            memory: t.join("memory/judge/r"),
            cpuacct: t.join("cpuacct/judge/r"),
            pids: t.join("pids/judge/r"),
            freezer: Some(t.join("freezer/judge/r")),
            files: None,
            limits: None,
        };
        for d in cg.dirs() {
            fs::create_dir_all(d).unwrap();
            fs::write(d.join("cgroup.procs"), "").unwrap();
            fs::write(d.join("tasks"), "").unwrap();
        }
        fs::write(cg.memory.join("memory.memsw.limit_in_bytes"), "max").unwrap();
        fs::write(cg.cpuacct.join("cpuacct.usage"), "1234567\n").unwrap();
        fs::write(cg.memory.join("memory.max_usage_in_bytes"), "8192\n").unwrap();
        fs::write(cg.memory.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(
            cg.memory.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        fs::write(cg.memory.join("memory.failcnt"), "5\n").unwrap();
        cg
    }

    fn fake_v2(t: &Path, peak: bool) -> V2Cgroup {
        let d = t.join("judge/r");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("memory.swap.max"), "max").unwrap();
        fs::write(d.join("memory.oom.group"), "0").unwrap();
        if peak {
            fs::write(d.join("memory.peak"), "3145728\n").unwrap();
        }
        fs::write(d.join("memory.current"), "1048576\n").unwrap();
        fs::write(
            d.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(d.join("cgroup.procs"), "").unwrap();
        fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        V2Cgroup {
            dir: d,
            files: None,
            limits: None,
        }
    }

    #[test]
    fn parses_hybrid_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";
        let m = CgroupMounts::parse(info);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_controller("cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(
            m.v1_controller("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(m.v1_controller("freezer").is_none());
        let v2only = "40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let m = CgroupMounts::parse(v2only);
        assert!(m.v1.is_empty());
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
    }

    #[test]
    fn v1_configure_writes_limits_and_reads_accounting() {
        let t = tempfile::tempdir().unwrap();
        let mut cg = fake_v1(t.path());
        cg.ready().unwrap();
        cg.apply(&LIMITS).unwrap();
        let read = |p: PathBuf| fs::read_to_string(p).unwrap();
        assert_eq!(read(cg.memory.join("memory.limit_in_bytes")), "268435456");
        assert_eq!(
            read(cg.memory.join("memory.memsw.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(read(cg.pids.join("pids.max")), "65");
        assert_eq!(cg.join_fds().len(), 4);
        assert_eq!(cg.clone_into_fd(), None);
        assert_eq!(cg.cpu_usage_ns().unwrap(), 1_234_567);
        fs::write(cg.cpuacct.join("cpuacct.usage"), "2000000\n").unwrap();
        // Read through the open descriptor (pread at 0), so the new value shows.
        assert_eq!(cg.cpu_usage_ns().unwrap(), 2_000_000);
        assert_eq!(cg.memory_peak().unwrap(), Some(8192));
        assert_eq!(cg.oom_kills().unwrap(), 3);
        assert_eq!(cg.memory_limit_hits().unwrap(), 5);
        assert!(cg.pids().unwrap().is_empty());
        cg.kill_all().unwrap();
        // With no task, nothing was frozen.
        assert!(!cg.freezer.as_ref().unwrap().join("freezer.state").exists());
        // rmdir of a folder with files fails (the kernel's folders have none) and names it.
        let err = cg.remove().unwrap_err().to_string();
        assert!(err.contains("rmdir") && err.contains("judge/r"), "{err}");
    }

    #[test]
    fn v1_missing_control_file_error_names_path_and_data() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("missing/dir/memory.limit_in_bytes");
        let err = write_file(&path, "268435456").unwrap_err().to_string();
        assert!(err.contains("\"268435456\""), "{err}");
        assert!(err.contains("missing/dir/memory.limit_in_bytes"), "{err}");
        // Readying without the kernel's cpuacct.usage fails naming it.
        let mut cg = fake_v1(t.path());
        fs::remove_file(cg.cpuacct.join("cpuacct.usage")).unwrap();
        let err = cg.ready().unwrap_err().to_string();
        assert!(err.contains("cpuacct.usage"), "{err}");
    }

    #[test]
    fn v1_create_refuses_an_existing_run_cgroup() {
        let t = tempfile::tempdir().unwrap();
        let _ = fake_v1(t.path());
        let p = |c: &str| t.path().join(c).join("judge");
        let root = CgroupRoot::v1_at(p("memory"), p("cpuacct"), p("pids"), Some(p("freezer")));
        let err = root.create("r", &LIMITS, true).unwrap_err().to_string();
        assert!(err.contains("mkdir") && err.contains("judge/r"), "{err}");
    }

    #[test]
    fn v2_configure_writes_limits_and_reads_accounting() {
        let t = tempfile::tempdir().unwrap();
        let mut cg = fake_v2(t.path(), true);
        cg.ready().unwrap();
        cg.apply(&LIMITS).unwrap();
        let read = |n: &str| fs::read_to_string(cg.dir.join(n)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("pids.max"), "65");
        assert!(cg.clone_into_fd().is_some());
        assert_eq!(cg.join_fds().len(), 1);
        assert_eq!(cg.cpu_usage_ns().unwrap(), 1_500_000);
        assert_eq!(cg.memory_peak().unwrap(), Some(3_145_728));
        assert_eq!(cg.memory_current().unwrap(), 1_048_576);
        assert_eq!(cg.oom_kills().unwrap(), 1);
        assert_eq!(cg.memory_limit_hits().unwrap(), 4);
        // kill_all writes cgroup.kill only where it exists (5.14+).
        cg.kill_all().unwrap();
        assert!(!cg.dir.join("cgroup.kill").exists());
        fs::write(cg.dir.join("cgroup.kill"), "").unwrap();
        cg.kill_all().unwrap();
        assert_eq!(read("cgroup.kill"), "1");
        // With no task left (cgroup.events says so, read by pread), nothing is written.
        fs::write(cg.dir.join("cgroup.kill"), "").unwrap();
        fs::write(cg.dir.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        cg.kill_all().unwrap();
        assert_eq!(read("cgroup.kill"), "");
    }

    #[test]
    fn v2_without_memory_peak_reports_none() {
        let t = tempfile::tempdir().unwrap();
        let mut cg = fake_v2(t.path(), false);
        cg.ready().unwrap();
        cg.apply(&LIMITS).unwrap();
        // Kernels before 5.19: no memory.peak; the sandbox samples memory.current.
        assert_eq!(cg.memory_peak().unwrap(), None);
    }

    #[test]
    fn v2_delegates_controllers() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.subtree_control"), "cpu memory").unwrap();
        let base = t.path().join("judge");
        let root = CgroupRoot::v2_at(base.clone());
        root.ensure_base().unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+pids"
        );
        assert_eq!(
            fs::read_to_string(base.join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        assert_eq!(root.version(), CgroupVersion::V2);
    }

    #[test]
    fn v2_delegation_failure_says_what_to_do() {
        let t = tempfile::tempdir().unwrap();
        // The parent's subtree_control is a folder: writing it fails as EBUSY would.
        fs::create_dir(t.path().join("cgroup.subtree_control")).unwrap();
        let root = CgroupRoot::v2_at(t.path().join("judge"));
        let err = root.ensure_base().unwrap_err().to_string();
        assert!(err.contains("Delegate=yes"), "{err}");
        assert!(err.contains("cgroup.subtree_control"), "{err}");
    }

    #[test]
    fn sweep_removes_only_cgroups_of_dead_judges() {
        let t = tempfile::tempdir().unwrap();
        let base = t.path().join("judge");
        // pid 0x7ffffff0 does not exist; our own pid does.
        let dead = base.join("run-2147483632-3");
        let alive = base.join(format!("run-{}-0", std::process::id()));
        let other = base.join("something-else");
        // A token owner: ours is alive (locked); one whose lock file is unlocked is
        // dead; one without a lock file (another /run) cannot be told: left alone.
        let ours = base.join(format!("run-{}-1", owner_token()));
        let gone_token = "7.0000beef";
        fs::create_dir_all(OWNERS_DIR).unwrap();
        fs::File::create(Path::new(OWNERS_DIR).join(gone_token)).unwrap();
        let gone = base.join(format!("run-{gone_token}-2"));
        let unknown = base.join("run-1.12345678-4");
        for d in [&dead, &alive, &other, &ours, &gone, &unknown] {
            fs::create_dir_all(d).unwrap();
        }
        let root = CgroupRoot::v2_at(base.clone());
        // The kernel lets a task-less cgroup folder be removed with its control files;
        // a plain folder must be empty, so the dead one is left empty here.
        let gone_too = base.join(format!("run-{gone_token}-5"));
        fs::create_dir_all(&gone_too).unwrap();
        assert_eq!(root.sweep_stale(), 3);
        assert!(!dead.exists() && !gone.exists() && !gone_too.exists());
        assert!(!Path::new(OWNERS_DIR).join(gone_token).exists());
        // Folders of live judges, of owners that cannot be told, and other names are
        // left alone.
        assert!(alive.exists() && other.exists() && ours.exists() && unknown.exists());
    }

    #[test]
    fn keyed_reads_flat_files() {
        assert_eq!(keyed("a 1\nusage_usec 42\n", "usage_usec"), Some(42));
        assert_eq!(keyed("max 3\n", "oom_kill"), None);
    }
}
