//! Sandbox-level cases of `cases/sandbox-and-verdicts.md` (S1–S3, S5–S15, V1–V6),
//! run through the native backend as root. Every case asserts the outcome AND the
//! health afterwards ([`Harness::check_health`]): no process of the run left (no
//! cgroup of this test process remains), the box's folders wiped, the host canary
//! untouched and its content in no output.
//!
//! Runs are serialised (one lock): timing assertions need the CPUs, and health checks
//! look for leftovers of this process.

mod cases;
mod cgroups;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use judge::sandbox::native::{NativeConfig, NativeSandbox};
use judge::sandbox::process::{ProcessConfig, ProcessSandbox};
use judge::sandbox::{
    InputFile, Limits, Output, RunOutcome, RunSpec, Sandbox, Stdin, BOX_WORK_DIR,
};

/// Why a test cannot run here, or `None`.
fn precondition() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: the native sandbox needs root".into());
    }
    if !Path::new("/usr/bin/gcc").exists() {
        return Some("gcc not installed".into());
    }
    None
}

/// Skips the calling test (with a printed reason) when a precondition is absent.
macro_rules! require_root {
    () => {
        if let Some(why) = crate::sandbox::precondition() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}
pub(crate) use require_root;

pub struct Harness {
    _lock: MutexGuard<'static, ()>,
    pub sb: NativeSandbox,
    pub canary: PathBuf,
    pub canary_content: Vec<u8>,
}

fn lock() -> MutexGuard<'static, ()> {
    // Shared with tests/judge, which runs the native sandbox in this process too.
    crate::util::sandbox_lock()
}

/// cgroup name tags of this module's runs: other test modules in this binary run
/// sandboxes concurrently, and the health checks must only look at ours.
const NATIVE_TAG: &str = "tsbxnative";
const PROCESS_TAG: &str = "tsbxprocess";

fn sandbox() -> NativeSandbox {
    static SB: OnceLock<NativeSandbox> = OnceLock::new();
    SB.get_or_init(|| {
        NativeSandbox::new(NativeConfig {
            cgroup_tag: NATIVE_TAG.into(),
            ..NativeConfig::default()
        })
        .expect("native sandbox")
    })
    .clone()
}

static PROCESS_SB: OnceLock<ProcessSandbox> = OnceLock::new();

fn process_sandbox() -> ProcessSandbox {
    PROCESS_SB
        .get_or_init(|| {
            ProcessSandbox::new(ProcessConfig {
                cgroup_tag: PROCESS_TAG.into(),
                ..ProcessConfig::default()
            })
            .expect("process sandbox")
        })
        .clone()
}

/// Compiles C (or C++ when `cpp`) source once per test process; returns the binary.
pub fn compile(name: &str, src: &str, cpp: bool, extra: &[&str]) -> Vec<u8> {
    static CACHE: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(b) = cache.lock().unwrap().get(name) {
        return b.clone();
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let ext = if cpp { "cpp" } else { "c" };
    let src_path = dir.path().join(format!("{name}.{ext}"));
    let out = dir.path().join(name);
    std::fs::write(&src_path, src).unwrap();
    let st = std::process::Command::new(if cpp { "g++" } else { "gcc" })
        .args(["-O2", "-o"])
        .arg(&out)
        .arg(&src_path)
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success(), "compiling {name} failed");
    let bin = std::fs::read(&out).unwrap();
    cache.lock().unwrap().insert(name.to_string(), bin.clone());
    bin
}

pub fn base_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), BOX_WORK_DIR.into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// A spec running a compiled binary placed at /box/prog.
pub fn prog_spec(bin: Vec<u8>, limits: Limits) -> RunSpec {
    RunSpec {
        argv: vec!["./prog".into()],
        env: base_env(),
        files: vec![InputFile {
            path: "prog".into(),
            content: Arc::new(bin),
            executable: true,
        }],
        stdout: Output::Capture {
            limit: 64 << 20,
            kill_on_overflow: true,
        },
        stderr: Output::Capture {
            limit: 1 << 20,
            kill_on_overflow: false,
        },
        limits,
        stdin: Stdin::Null,
        ..RunSpec::default()
    }
}

impl Harness {
    /// Takes the lock, makes a fresh canary file.
    pub fn new() -> Harness {
        let _lock = lock();
        let sb = sandbox();
        let tag: u64 = rand::random();
        let canary = PathBuf::from(format!("/tmp/judge-canary-{tag:016x}"));
        let canary_content = format!("CANARY-{tag:016x}-SECRET").into_bytes();
        std::fs::write(&canary, &canary_content).unwrap();
        Harness {
            _lock,
            sb,
            canary,
            canary_content,
        }
    }

    /// Runs and checks health; returns the outcome.
    pub fn run(&self, spec: &RunSpec) -> RunOutcome {
        let o = self.sb.run(spec).expect("the sandbox itself must not fail");
        self.check_health(&o);
        o
    }

    /// Runs through the process backend and checks health; returns the outcome.
    pub fn run_process(&self, spec: &RunSpec) -> RunOutcome {
        let o = process_sandbox()
            .run(spec)
            .expect("the sandbox itself must not fail");
        self.check_health(&o);
        // The work folders of this process's slots are gone.
        let root = Path::new("/run/judge-sandbox/process");
        for e in std::fs::read_dir(root).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(n == "locks" || n.parse::<u32>().is_ok(), "unexpected {n}");
        }
        o
    }

    /// No cgroup of a run of this process left (once the background removals are
    /// done, only never-used stock cgroups remain), no process in one, idle boxes
    /// clean, canary intact.
    pub fn check_health(&self, o: &RunOutcome) {
        let settle = Duration::from_secs(10);
        assert!(
            self.sb.settle(settle),
            "native cgroup keeper did not settle"
        );
        let mut stocked = self.sb.stocked_cgroups();
        if let Some(p) = PROCESS_SB.get() {
            assert!(p.settle(settle), "process cgroup keeper did not settle");
            stocked.extend(p.stocked_cgroups());
        }
        let stocked: Vec<String> = stocked
            .iter()
            .filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned()))
            .collect();
        for prefix in [NATIVE_TAG, PROCESS_TAG] {
            self.check_no_cgroups(
                &format!("{prefix}-{}-", judge::sandbox::cgroup::owner_token()),
                &stocked,
            );
        }
        self.check_files(o);
    }

    fn check_no_cgroups(&self, me: &str, stocked: &[String]) {
        for ctl in ["memory", "cpuacct", "pids", "freezer", "unified"] {
            let base = Path::new("/sys/fs/cgroup").join(ctl).join("judge");
            if let Ok(rd) = std::fs::read_dir(&base) {
                for e in rd.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if !n.starts_with(me) {
                        continue;
                    }
                    assert!(
                        stocked.contains(&n),
                        "cgroup {} left behind",
                        e.path().display()
                    );
                    // A stocked cgroup was never used: nothing was ever charged to it.
                    let read = |f: &str| std::fs::read_to_string(e.path().join(f));
                    let unused = match ctl {
                        "memory" => read("memory.max_usage_in_bytes").unwrap().trim() == "0",
                        "cpuacct" => read("cpuacct.usage").unwrap().trim() == "0",
                        _ => read("cgroup.procs").unwrap().trim().is_empty(),
                    };
                    assert!(unused, "stocked cgroup {} was used", e.path().display());
                }
            }
        }
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cg) = std::fs::read_to_string(e.path().join("cgroup")) {
                assert!(
                    !cg.contains(me),
                    "process {:?} of a run survives",
                    e.file_name()
                );
            }
        }
    }

    fn check_files(&self, o: &RunOutcome) {
        assert_eq!(
            self.sb.dirty_idle_boxes().unwrap(),
            0,
            "an idle box is not clean"
        );
        assert_eq!(
            std::fs::read(&self.canary).unwrap(),
            self.canary_content,
            "canary changed"
        );
        let md = std::fs::symlink_metadata(&self.canary).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&md),
            0,
            "canary chowned"
        );
        for out in [&o.stdout, &o.stderr] {
            assert!(
                !out.windows(self.canary_content.len())
                    .any(|w| w == self.canary_content),
                "canary content leaked into an output"
            );
        }
        for f in o.files.values() {
            assert!(!f
                .windows(self.canary_content.len())
                .any(|w| w == self.canary_content));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.canary);
    }
}
