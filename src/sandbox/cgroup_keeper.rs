//! Fresh run cgroups made ahead of runs and removed behind them.
//!
//! Every run gets a cgroup of its own, never used before: nothing an earlier run
//! charged (memory, peak, failcnt, OOM kills, CPU time) may count against the next.
//! Making one (a folder per hierarchy, swap off, a dozen files opened) and removing it
//! again cost about 0.12 ms per run on v1, a good part of a warm run: a
//! [`CgroupKeeper`] does both on one background thread instead. It keeps a small
//! stock of ready cgroups (made with the limits of the latest run, so that a run
//! with the same limits writes nothing) and hands one out in O(1); after the run the
//! caller's [`CgroupKeeper::finish`] kills whatever is left of it *inline* (when a
//! sandbox's `run` returns, no process of the run exists) and queues the empty
//! cgroup for removal.
//!
//! The keeper never makes a run wait or fail: with the stock empty a run creates its
//! cgroup inline as before, and when removals pile up (more than [`MAX_RETIRED`]) the
//! run removes its own. Dropping the keeper stops the thread and removes its stock
//! and pending removals, and so does the process's exit (an `atexit` hook: a sandbox
//! kept in a `static` is never dropped); cgroups of a judge that died are removed by
//! the next one's [`CgroupRoot::sweep_stale`] (stocked cgroups carry the usual
//! `<tag>-<pid>-<n>` names).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cgroup::{run_name, CgroupLimits, CgroupOps, CgroupRoot, RunCgroup};
use super::SandboxError;

/// Most cgroups kept in stock (each holds 6–8 open descriptors).
pub const MAX_STOCK: usize = 16;

/// Most used cgroups waiting for removal; beyond this a run removes its own inline.
pub const MAX_RETIRED: usize = 64;

/// How long the keeper stops refilling after failing to make a cgroup (runs create
/// inline meanwhile, and report the error themselves if it persists).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Makes run cgroups ahead and removes them behind, on one background thread (see
/// the module docs). Owned by a sandbox; dropping it stops the thread and removes
/// every cgroup it still holds.
pub struct CgroupKeeper {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    root: CgroupRoot,
    /// Name tag of the cgroups (see [`run_name`]).
    tag: String,
    /// Whether runs also join the freezer hierarchy (v1; see [`CgroupRoot::create`]).
    freezer: bool,
    state: Mutex<State>,
    /// Wakes the keeper thread: a cgroup was taken or retired, or the keeper stops.
    work: Condvar,
    /// Wakes [`CgroupKeeper::settle`]: the keeper thread has nothing left to do.
    quiet: Condvar,
}

#[derive(Default)]
struct State {
    /// Ready cgroups, the newest last (made with the latest limits: taken first).
    stock: Vec<RunCgroup>,
    /// Used cgroups, emptied of tasks, waiting for removal.
    retired: Vec<RunCgroup>,
    /// Runs holding a cgroup now, and the most seen at once (sizes the stock).
    in_flight: usize,
    most_in_flight: usize,
    /// Limits of the latest run; new stock is made with them. `None` until the first
    /// run: the keeper makes nothing before a run or [`CgroupKeeper::prime`].
    limits: Option<CgroupLimits>,
    /// Whether the stock is kept filled (from the first take or prime on).
    filling: bool,
    /// No refill before this instant (after a failure).
    pause_until: Option<Instant>,
    /// Whether the keeper thread is working outside the lock.
    busy: bool,
    stop: bool,
    /// Set by the keeper thread when it has stopped and removed everything it held.
    done: bool,
}

impl State {
    /// How many cgroups the stock should hold: twice the most runs seen in flight at
    /// once, at least 2, at most [`MAX_STOCK`].
    fn target(&self) -> usize {
        if !self.filling {
            return 0;
        }
        (2 * self.most_in_flight).clamp(2, MAX_STOCK)
    }

    fn wants_refill(&self, now: Instant) -> bool {
        self.stock.len() < self.target() && self.pause_until.is_none_or(|t| now >= t)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state stays consistent at every unlock: a panic elsewhere does not spoil it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CgroupKeeper {
    /// Starts the keeper thread for cgroups under `root` named `<tag>-<pid>-<n>`;
    /// `freezer` as in [`CgroupRoot::create`]. Nothing is made until the first
    /// [`CgroupKeeper::take`] or [`CgroupKeeper::prime`].
    ///
    /// Errors: [`SandboxError::Internal`] when the thread cannot be started.
    pub fn new(root: CgroupRoot, tag: &str, freezer: bool) -> Result<CgroupKeeper, SandboxError> {
        let shared = Arc::new(Shared {
            root,
            tag: tag.to_string(),
            freezer,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            quiet: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("cgroups-{tag}"))
            .spawn(move || {
                background();
                keep(&s)
            })
            .map_err(|e| SandboxError::Internal(format!("start the cgroup keeper: {e}")))?;
        register(&shared);
        Ok(CgroupKeeper {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts filling the stock ahead of the first run (e.g. from a sandbox's
    /// `prepare`). Without limits known yet, stock cgroups get theirs at take.
    pub fn prime(&self) {
        let mut st = lock(&self.shared.state);
        st.filling = true;
        drop(st);
        self.shared.work.notify_one();
    }

    /// A fresh cgroup for one run with `limits` applied: from the stock when there is
    /// one (writing only the limits it does not hold yet), else created inline.
    /// Give it back through [`CgroupKeeper::finish`].
    ///
    /// Errors: [`SandboxError::Cgroup`] naming the path (and data) that failed.
    pub fn take(&self, limits: &CgroupLimits) -> Result<RunCgroup, SandboxError> {
        let mut st = lock(&self.shared.state);
        st.in_flight += 1;
        st.most_in_flight = st.most_in_flight.max(st.in_flight);
        st.filling = true;
        st.limits = Some(*limits);
        let stocked = st.stock.pop();
        drop(st);
        self.shared.work.notify_one();
        let made = match stocked {
            Some(cg) => cg.kept_if(|cg| cg.apply(limits)),
            None => {
                let sh = &self.shared;
                sh.root.create(&run_name(&sh.tag), limits, sh.freezer)
            }
        };
        if made.is_err() {
            lock(&self.shared.state).in_flight -= 1;
        }
        made
    }

    /// Ends a run's use of `cg`: kills every task left in it and waits until it is
    /// empty (inline: when this returns, no process of the run exists), then queues it
    /// for removal by the keeper thread. Read everything the outcome needs from `cg`
    /// before. A cgroup whose tasks could not be killed, or one finishing while
    /// [`MAX_RETIRED`] wait already, is removed inline.
    ///
    /// Errors: [`SandboxError::Cgroup`] when tasks survive SIGKILL or an inline
    /// removal fails.
    pub fn finish(&self, mut cg: RunCgroup) -> Result<(), SandboxError> {
        let killed = cg.kill_all();
        let mut st = lock(&self.shared.state);
        st.in_flight = st.in_flight.saturating_sub(1);
        if killed.is_ok() && !st.stop && st.retired.len() < MAX_RETIRED {
            st.retired.push(cg);
            drop(st);
            self.shared.work.notify_one();
            return Ok(());
        }
        drop(st);
        let removed = cg.remove();
        killed.and(removed)
    }

    /// Waits until every queued removal is done and the stock is refilled (or the
    /// keeper pauses after a failure), at most `timeout`; returns whether it did. Tests
    /// call this before looking for leftover cgroups.
    pub fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            let now = Instant::now();
            if !st.busy && st.retired.is_empty() && !st.wants_refill(now) {
                return true;
            }
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .quiet
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Folders (the memory one on v1) of the cgroups in stock now: made, never used.
    pub fn stocked(&self) -> Vec<std::path::PathBuf> {
        lock(&self.shared.state)
            .stock
            .iter()
            .map(|cg| cg.path().to_path_buf())
            .collect()
    }
}

impl Drop for CgroupKeeper {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes the calling thread a background one: SCHED_BATCH keeps its share of CPU time
/// (nice 0: it never starves, and cannot hold the state lock for long) but a wakeup
/// of it never preempts a running thread (sched(7); `check_preempt_wakeup_fair`).
/// Without it, waking the keeper on a busy host often preempted the very run that
/// woke it, adding the keeper's ~0.1 ms of work to that run. Failure is ignored.
fn background() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid param.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

/// The keeper thread: refills the stock and removes retired cgroups, one of each per
/// turn, until stopped; then removes everything it holds.
fn keep(sh: &Shared) {
    let mut st = lock(&sh.state);
    loop {
        if st.stop {
            break;
        }
        let now = Instant::now();
        let refill = st.wants_refill(now);
        let retired = st.retired.pop();
        if !refill && retired.is_none() {
            st.busy = false;
            sh.quiet.notify_all();
            let pause = st
                .pause_until
                .filter(|&t| t > now && st.stock.len() < st.target());
            st = match pause {
                Some(t) => {
                    sh.work
                        .wait_timeout(st, t - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => sh.work.wait(st).unwrap_or_else(|p| p.into_inner()),
            };
            continue;
        }
        st.busy = true;
        let limits = st.limits;
        drop(st);
        let made = refill.then(|| make(sh, limits));
        if let Some(mut cg) = retired {
            if let Err(e) = cg.remove() {
                tracing::warn!(error = %e, "removing a used run cgroup failed");
            }
        }
        st = lock(&sh.state);
        match made {
            Some(Ok(cg)) => st.stock.push(cg),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "making a run cgroup ahead failed; runs create theirs inline");
                st.pause_until = Some(Instant::now() + RETRY_AFTER);
            }
            None => {}
        }
    }
    let mut all = std::mem::take(&mut st.stock);
    all.append(&mut st.retired);
    st.busy = true;
    drop(st);
    for mut cg in all {
        if let Err(e) = cg.remove() {
            tracing::warn!(error = %e, "removing a run cgroup at shutdown failed");
        }
    }
    let mut st = lock(&sh.state);
    st.busy = false;
    st.done = true;
    drop(st);
    sh.quiet.notify_all();
}

impl Shared {
    /// Tells the keeper thread to remove everything it holds and end.
    fn stop(&self) {
        lock(&self.state).stop = true;
        self.work.notify_one();
    }

    /// Waits until the keeper thread has ended (after [`Shared::stop`]), at most until
    /// `deadline`; returns whether it did.
    fn wait_done(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.state);
        while !st.done {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .quiet
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

/// Keepers of this process, for [`stop_all`] at exit.
static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// The process that installed the exit hook: a forked child calling `exit` (none of
/// ours does: they `_exit`) has no keeper thread to wait for.
static HOOK_PID: AtomicU32 = AtomicU32::new(0);

/// Records a new keeper (forgetting dropped ones) and installs the exit hook once.
fn register(shared: &Arc<Shared>) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        HOOK_PID.store(std::process::id(), Ordering::Relaxed);
        // SAFETY: registers a plain `extern "C" fn()`; it does not unwind (poisoned
        // locks are taken over, nothing else in it panics).
        unsafe { libc::atexit(at_exit) };
    });
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(shared));
}

extern "C" fn at_exit() {
    if HOOK_PID.load(Ordering::Relaxed) == std::process::id() && stop_all(Duration::from_secs(2)) {
        super::cgroup::forget_owner();
    }
}

/// Stops every keeper of the process and waits (at most `timeout` in all) until each
/// has removed its stock and pending removals; returns whether all did and no run
/// holds a cgroup any more. Runs still
/// going afterwards create and remove their cgroups inline. Called at process exit.
pub fn stop_all(timeout: Duration) -> bool {
    // Both locks are only ever held for a few instructions, never across a call
    // that could reach exit.
    let live: Vec<Arc<Shared>> = LIVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for sh in &live {
        sh.stop();
    }
    let deadline = Instant::now() + timeout;
    let mut all = true;
    for sh in &live {
        all &= sh.wait_done(deadline);
        // A run still going holds a cgroup the keeper does not know of.
        all &= lock(&sh.state).in_flight == 0;
    }
    all
}

/// One stock cgroup: made, with `limits` applied when known; removed again on failure.
fn make(sh: &Shared, limits: Option<CgroupLimits>) -> Result<RunCgroup, SandboxError> {
    sh.root
        .blank(&run_name(&sh.tag), sh.freezer)
        .kept_if(|cg| match &limits {
            Some(l) => cg.setup(l),
            None => cg.make(),
        })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::time::SystemTime;

    use super::*;
    use crate::sandbox::cgroup::fake;

    const SETTLE: Duration = Duration::from_secs(10);

    const SMALL: CgroupLimits = CgroupLimits {
        memory_bytes: 64 << 20,
        pids: 17,
    };
    const BIG: CgroupLimits = CgroupLimits {
        memory_bytes: 512 << 20,
        pids: 65,
    };

    /// What differs between the versions in a fake tree.
    struct Layout {
        root: CgroupRoot,
        /// The folders under which run cgroups appear (one per hierarchy on v1).
        bases: Vec<PathBuf>,
        /// Memory limit file and its folder, pids.max's folder, for a run's `path()`.
        memory_file: &'static str,
        pids_dir: fn(&Path) -> PathBuf,
        /// Files every stocked cgroup holds with these contents (settings made ahead).
        made: &'static [(&'static str, &'static str)],
    }

    fn v1(t: &Path) -> Layout {
        let root = fake::v1_root(t);
        Layout {
            bases: root.base_paths(),
            root,
            memory_file: "memory.limit_in_bytes",
            // .../memory/judge/<name> -> .../pids/judge/<name>
            pids_dir: |p| {
                let name = p.file_name().unwrap();
                p.parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("pids/judge")
                    .join(name)
            },
            made: &[("memory.swappiness", "0")],
        }
    }

    fn v2(t: &Path) -> Layout {
        let root = fake::v2_root(t, true);
        Layout {
            bases: root.base_paths(),
            root,
            memory_file: "memory.max",
            pids_dir: |p| p.to_path_buf(),
            made: &[("memory.swap.max", "0"), ("memory.oom.group", "1")],
        }
    }

    fn read(p: PathBuf) -> String {
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Run cgroup folders under the bases (the template folder aside).
    fn run_folders(l: &Layout) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = l
            .bases
            .iter()
            .flat_map(|b| fs::read_dir(b).unwrap().flatten())
            .filter(|e| e.file_name() != fake::TEMPLATE)
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    }

    fn mtime(p: PathBuf) -> SystemTime {
        fs::metadata(p).unwrap().modified().unwrap()
    }

    fn limits_of(l: &Layout, cg: &Path) -> (u64, u32) {
        (
            read(cg.join(l.memory_file)).trim().parse().unwrap(),
            read((l.pids_dir)(cg).join("pids.max"))
                .trim()
                .parse()
                .unwrap(),
        )
    }

    fn stock_refills_hands_out_fresh_cgroups_and_removes_behind(l: Layout) {
        let k = CgroupKeeper::new(l.root.clone(), "tk", false).unwrap();
        // Nothing is made before a run (or prime).
        assert!(k.settle(SETTLE));
        assert!(k.stocked().is_empty() && run_folders(&l).is_empty());

        // The first take finds the stock empty: created inline, limits written.
        let first = k.take(&SMALL).unwrap();
        assert_eq!(limits_of(&l, first.path()), (64 << 20, 17));
        // ... and the keeper fills the stock meanwhile, made with the latest limits.
        assert!(k.settle(SETTLE));
        let stocked = k.stocked();
        assert_eq!(stocked.len(), 2, "{stocked:?}");
        for s in &stocked {
            assert_eq!(limits_of(&l, s), (64 << 20, 17));
            for (f, v) in l.made {
                assert_eq!(read(s.join(f)), *v, "{f}");
            }
        }

        // A take with the same limits hands out a stocked cgroup (the newest) and writes nothing.
        let before = (
            mtime(stocked[1].join(l.memory_file)),
            mtime((l.pids_dir)(&stocked[1]).join("pids.max")),
        );
        std::thread::sleep(Duration::from_millis(20));
        let second = k.take(&SMALL).unwrap();
        assert_eq!(second.path(), stocked[1]);
        let after = (
            mtime(stocked[1].join(l.memory_file)),
            mtime((l.pids_dir)(&stocked[1]).join("pids.max")),
        );
        assert_eq!(before, after, "unchanged limits were written again");
        // Its pre-opened files are read by pread: a change shows at the next read.
        assert!(!second.join_fds().is_empty());
        assert_eq!(second.cpu_usage_ns().unwrap(), 0);

        // Two runs in flight at once: the stock grows to 2 x 2 = 4, made with SMALL.
        assert!(k.settle(SETTLE));
        let stocked = k.stocked();
        assert_eq!(stocked.len(), 4, "{stocked:?}");
        assert!(stocked.iter().all(|s| limits_of(&l, s) == (64 << 20, 17)));
        // Other limits are written over the stocked ones: raised here (v1: memory+swap
        // first) ...
        let third = k.take(&BIG).unwrap();
        assert_eq!(third.path(), stocked[3]);
        assert_eq!(limits_of(&l, third.path()), (512 << 20, 65));
        // Three runs in flight: the stock grows to 6, the new ones made with BIG.
        assert!(k.settle(SETTLE));
        let stocked = k.stocked();
        assert_eq!(stocked.len(), 6, "{stocked:?}");
        assert!(stocked[..3]
            .iter()
            .all(|s| limits_of(&l, s) == (64 << 20, 17)));
        assert!(stocked[3..]
            .iter()
            .all(|s| limits_of(&l, s) == (512 << 20, 65)));
        // ... and lowered here (v1: memory first).
        let fourth = k.take(&SMALL).unwrap();
        assert_eq!(fourth.path(), stocked[5]);
        assert_eq!(limits_of(&l, fourth.path()), (64 << 20, 17));

        // Finished cgroups are removed in the background and never handed out again.
        let used: Vec<PathBuf> = [&first, &second, &third, &fourth]
            .iter()
            .map(|c| c.path().to_path_buf())
            .collect();
        for cg in [first, second, third, fourth] {
            k.finish(cg).unwrap();
        }
        assert!(k.settle(SETTLE));
        let left = run_folders(&l);
        for u in &used {
            assert!(
                !left.iter().any(|f| f.file_name() == u.file_name()),
                "{} left",
                u.display()
            );
        }
        let again = k.take(&SMALL).unwrap();
        assert!(!used.iter().any(|u| u == again.path()));
        k.finish(again).unwrap();

        // Dropping the keeper removes its stock and pending removals: nothing is left.
        assert!(!run_folders(&l).is_empty());
        drop(k);
        assert_eq!(run_folders(&l), Vec::<PathBuf>::new());
    }

    #[test]
    fn v1_keeper_lifecycle() {
        let t = tempfile::tempdir().unwrap();
        stock_refills_hands_out_fresh_cgroups_and_removes_behind(v1(t.path()));
    }

    #[test]
    fn v2_keeper_lifecycle() {
        let t = tempfile::tempdir().unwrap();
        stock_refills_hands_out_fresh_cgroups_and_removes_behind(v2(t.path()));
    }

    #[test]
    fn v2_stocked_cgroup_clones_into_its_folder() {
        let t = tempfile::tempdir().unwrap();
        let l = v2(t.path());
        let k = CgroupKeeper::new(l.root.clone(), "tk", false).unwrap();
        k.prime();
        assert!(k.settle(SETTLE));
        assert_eq!(k.stocked().len(), 2);
        let cg = k.take(&SMALL).unwrap();
        // CLONE_INTO_CGROUP needs the folder's descriptor; the join fd is cgroup.procs.
        let fd = cg.clone_into_fd().expect("a folder descriptor");
        let link = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(link, cg.path());
        assert_eq!(cg.join_fds().len(), 1);
        assert_eq!(cg.memory_peak().unwrap(), Some(0));
        fs::write(cg.path().join("memory.peak"), "4096\n").unwrap();
        assert_eq!(cg.memory_peak().unwrap(), Some(4096));
        k.finish(cg).unwrap();
    }

    #[test]
    fn stopping_at_exit_removes_the_stock_and_runs_go_on_inline() {
        let t = tempfile::tempdir().unwrap();
        let l = v1(t.path());
        let k = CgroupKeeper::new(l.root.clone(), "tk", false).unwrap();
        let running = k.take(&SMALL).unwrap();
        assert!(k.settle(SETTLE));
        assert_eq!(k.stocked().len(), 2);
        // What the exit hook does for every keeper (stop_all), for this one only: the
        // other tests' keepers run in this process too.
        k.shared.stop();
        assert!(k.shared.wait_done(Instant::now() + SETTLE));
        assert!(k.stocked().is_empty());
        let left = run_folders(&l);
        assert_eq!(
            left.len(),
            3,
            "only the running cgroup's 3 folders: {left:?}"
        );
        // A run still going afterwards, and a new one, work inline.
        k.finish(running).unwrap();
        let late = k.take(&BIG).unwrap();
        assert_eq!(limits_of(&l, late.path()), (512 << 20, 65));
        k.finish(late).unwrap();
        assert_eq!(run_folders(&l), Vec::<PathBuf>::new());
        drop(k);
    }

    #[test]
    fn inline_fallback_when_the_keeper_cannot_make_cgroups() {
        let t = tempfile::tempdir().unwrap();
        let l = v1(t.path());
        let k = CgroupKeeper::new(l.root.clone(), "tk", false).unwrap();
        // A hierarchy lost its control files: stock cannot be made (the keeper pauses),
        // and a run creating inline reports the real error, naming the file.
        fs::remove_file(
            t.path()
                .join("cpuacct/judge")
                .join(fake::TEMPLATE)
                .join("cpuacct.usage"),
        )
        .unwrap();
        k.prime();
        assert!(k.settle(SETTLE));
        assert!(k.stocked().is_empty());
        let err = k.take(&SMALL).unwrap_err().to_string();
        assert!(err.contains("cpuacct.usage"), "{err}");
        // Whatever failed was removed again.
        assert_eq!(run_folders(&l), Vec::<PathBuf>::new());
        drop(k);
    }
}
