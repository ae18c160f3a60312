//! `judge doctor`: check the host like isolate-check-environment.
//!
//! Each line is `OK`, `WARN` or `FAIL`, what was found, and (for WARN/FAIL) what to do
//! about it. The checks are real: a test cgroup is created and removed, and one
//! command runs in a native box (namespaces, pivot_root, seccomp, cgroup limits).
//! Exit code: 0 when the sandbox can work (warnings allowed), 1 when a check failed.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::sandbox::cgroup::{CgroupLimits, CgroupMounts, CgroupOps, CgroupRoot, CgroupVersion};
use crate::sandbox::native::{NativeConfig, NativeSandbox};
use crate::sandbox::{Limits, Output, RunSpec, Sandbox, Status, BOX_WORK_DIR};

/// Arguments of `judge doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Severity of one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but timing or safety is weaker than it could be.
    Warn,
    /// The sandbox cannot work until this is fixed.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// Short name, e.g. `cgroup`.
    pub check: String,
    /// Severity.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do (empty when OK).
    pub fix: String,
}

fn check(name: &str, level: Level, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        level,
        detail: detail.into(),
        fix: fix.into(),
    }
}

fn read(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn kernel(out: &mut Vec<Check>) {
    let release = read("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|x| x.parse::<u32>().ok());
    let v = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    if v >= (5, 19) {
        out.push(check("kernel", Level::Ok, format!("Linux {release}"), ""));
    } else if v >= (5, 7) {
        out.push(check(
            "kernel",
            Level::Warn,
            format!("Linux {release}: no memory.peak on cgroup v2 (peak memory is sampled)"),
            "use Linux 5.19 or later for exact peak memory on cgroup v2",
        ));
    } else {
        out.push(check(
            "kernel",
            Level::Fail,
            format!("Linux {release}: clone3 with CLONE_INTO_CGROUP (5.7) and close_range (5.9) are needed"),
            "upgrade the kernel to 5.10 or later",
        ));
    }
}

fn root(out: &mut Vec<Check>) -> bool {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        out.push(check("root", Level::Ok, "running as root", ""));
        true
    } else {
        out.push(check(
            "root",
            Level::Fail,
            format!("running as uid {euid}: namespaces, mounts and cgroups need root"),
            "run judge as root (sudo judge doctor; the judge service runs as root)",
        ));
        false
    }
}

fn cgroups(out: &mut Vec<Check>) -> Option<CgroupRoot> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let m = CgroupMounts::parse(&info);
    let v1: Vec<&str> = m.v1.iter().map(|(c, _)| c.as_str()).collect();
    let v2_ctrls =
        m.v2.as_ref()
            .and_then(|p| read(p.join("cgroup.controllers")))
            .unwrap_or_default();
    let layout = match (v1.is_empty(), &m.v2) {
        (false, Some(_)) => "hybrid (v1 controllers plus a v2 mount)",
        (false, None) => "v1",
        (true, Some(_)) => "v2 (unified)",
        (true, None) => "none",
    };
    out.push(check(
        "cgroup layout",
        Level::Ok,
        format!("{layout}; v1 controllers {v1:?}; v2 controllers [{v2_ctrls}]"),
        "",
    ));
    let root = match CgroupRoot::detect() {
        Ok(r) => r,
        Err(e) => {
            out.push(check(
                "cgroup",
                Level::Fail,
                e.to_string(),
                "see the message; on systemd hosts cgroup v2 is mounted at /sys/fs/cgroup by default",
            ));
            return None;
        }
    };
    let paths: Vec<String> = root
        .base_paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    out.push(check(
        "cgroup",
        Level::Ok,
        format!("using cgroup {} under {}", root.version(), paths.join(", ")),
        "",
    ));
    match root.version() {
        CgroupVersion::V1 => {
            if let CgroupRoot::V1 {
                memory, freezer, ..
            } = &root
            {
                if !memory.join("memory.memsw.limit_in_bytes").exists()
                    && !memory
                        .parent()
                        .is_some_and(|p| p.join("memory.memsw.limit_in_bytes").exists())
                {
                    let swap =
                        read("/proc/swaps").map_or(0, |s| s.lines().count().saturating_sub(1));
                    out.push(check(
                        "cgroup swap",
                        if swap > 0 { Level::Warn } else { Level::Ok },
                        format!("no memory.memsw (swap accounting off); {swap} swap device(s)"),
                        if swap > 0 {
                            "boot with swapaccount=1 or turn swap off (swapoff -a): a run could otherwise use swap beyond its memory limit"
                        } else {
                            ""
                        },
                    ));
                }
                if freezer.is_none() {
                    out.push(check(
                        "cgroup freezer",
                        Level::Warn,
                        "no v1 freezer: the process backend kills by repeated SIGKILL",
                        "mount the freezer controller (mount -t cgroup -o freezer freezer /sys/fs/cgroup/freezer)",
                    ));
                }
            }
        }
        CgroupVersion::V2 => {
            if let CgroupRoot::V2 { base } = &root {
                let ctrls = read(base.join("cgroup.controllers")).unwrap_or_default();
                for c in ["memory", "pids", "cpu"] {
                    let have = ctrls.split_whitespace().any(|x| x == c);
                    if !have && c != "cpu" {
                        out.push(check(
                            "cgroup controllers",
                            Level::Fail,
                            format!("{c} is not available in {}", base.display()),
                            "delegate it: echo +memory +pids > <parent>/cgroup.subtree_control, or run under systemd-run -p Delegate=yes",
                        ));
                    }
                }
            }
        }
    }
    // A real cgroup: create, read the accounting, remove.
    let name = format!("doctor-{}", std::process::id());
    let limits = CgroupLimits {
        memory_bytes: 64 << 20,
        pids: 8,
    };
    match root.create(&name, &limits, true) {
        Ok(mut cg) => {
            let peak = cg.memory_peak();
            let cpu = cg.cpu_usage_ns();
            let removed = cg.remove();
            match (cpu, removed) {
                (Ok(_), Ok(())) => out.push(check(
                    "cgroup writable",
                    Level::Ok,
                    format!(
                        "created, limited and removed a test cgroup; peak memory {}",
                        match peak {
                            Ok(Some(_)) => "recorded by the kernel",
                            _ => "sampled (no memory.peak)",
                        }
                    ),
                    "",
                )),
                (Err(e), _) | (_, Err(e)) => out.push(check(
                    "cgroup writable",
                    Level::Fail,
                    e.to_string(),
                    "check that the cgroup filesystem is mounted read-write and judge runs as root",
                )),
            }
        }
        Err(e) => out.push(check(
            "cgroup writable",
            Level::Fail,
            e.to_string(),
            "check that the cgroup filesystem is mounted read-write and judge runs as root",
        )),
    }
    Some(root)
}

fn seccomp(out: &mut Vec<Check>) {
    let status = read("/proc/self/status").unwrap_or_default();
    let has = status.lines().any(|l| l.starts_with("Seccomp:"));
    let prog = crate::sandbox::seccomp::Program::build();
    match (has, prog) {
        (true, Some(p)) => out.push(check(
            "seccomp",
            Level::Ok,
            format!(
                "supported; filter of {} BPF instructions denying {} syscalls and non-x86_64 ABIs",
                p.len(),
                crate::sandbox::seccomp::DENY.len()
            ),
            "",
        )),
        (false, _) => out.push(check(
            "seccomp",
            Level::Fail,
            "the kernel has no seccomp filter support",
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        )),
        (true, None) => out.push(check(
            "seccomp",
            Level::Fail,
            "the filter exists for x86_64 only",
            "run judge on x86_64, or disable seccomp in the native backend's config",
        )),
    }
}

fn box_run(out: &mut Vec<Check>) {
    let sb = match NativeSandbox::new(NativeConfig::default()) {
        Ok(sb) => sb,
        Err(e) => {
            out.push(check(
                "namespaces",
                Level::Fail,
                e.to_string(),
                "run as root on a kernel with user, PID, mount, IPC, UTS and network namespaces",
            ));
            return;
        }
    };
    let cold = match sb.prepare() {
        Ok(d) => d,
        Err(e) => {
            out.push(check(
                "box",
                Level::Fail,
                format!("cannot build a box: {e}"),
                "check that /usr, /lib* exist and that mounts are allowed (not inside an unprivileged container)",
            ));
            return;
        }
    };
    let spec = RunSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            "id -u; ls /proc | grep -c '^[0-9]'; cat /proc/self/status | grep Seccomp:; hostname"
                .into(),
        ],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("HOME".into(), BOX_WORK_DIR.into()),
        ],
        stdout: Output::Capture {
            limit: 4096,
            kill_on_overflow: true,
        },
        stderr: Output::Capture {
            limit: 4096,
            kill_on_overflow: false,
        },
        limits: Limits::default(),
        ..RunSpec::default()
    };
    let t = Instant::now();
    match sb.run(&spec) {
        Ok(o) if o.status == Status::Ok => {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let uid_ok = lines.first().is_some_and(|u| *u != "0");
            let seccomp_on = lines.get(2).is_some_and(|l| l.ends_with('2'));
            out.push(check(
                "namespaces",
                if uid_ok && seccomp_on { Level::Ok } else { Level::Fail },
                format!(
                    "a box ran /bin/sh as uid {}, {} process(es) visible, seccomp {}, hostname {}; new box {:.1} ms, run {:.1} ms",
                    lines.first().unwrap_or(&"?"),
                    lines.get(1).unwrap_or(&"?"),
                    if seccomp_on { "on" } else { "OFF" },
                    lines.get(3).unwrap_or(&"?"),
                    cold.as_secs_f64() * 1e3,
                    t.elapsed().as_secs_f64() * 1e3
                ),
                if uid_ok && seccomp_on { "" } else { "the box did not drop privileges or load seccomp: report this as a bug" },
            ));
        }
        Ok(o) => out.push(check(
            "namespaces",
            Level::Fail,
            format!(
                "a trivial box run ended {:?}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            "run `judge sandbox run -- /bin/true` to see the details",
        )),
        Err(e) => out.push(check(
            "namespaces",
            Level::Fail,
            format!("a trivial box run failed: {e}"),
            "run as root outside an unprivileged container; the message names the step that failed",
        )),
    }
}

/// First line of `cmd --version`-style output, bounded in time.
fn version(cmd: &str, args: &[&str]) -> Option<String> {
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let o = child.wait_with_output().ok()?;
    let text = if o.stdout.is_empty() {
        o.stderr
    } else {
        o.stdout
    };
    String::from_utf8_lossy(&text)
        .lines()
        .next()
        .map(|l| l.trim().to_string())
}

fn toolchains(out: &mut Vec<Check>) {
    let list: &[(&str, &str, &[&str], &str)] = &[
        ("C", "/usr/bin/gcc", &["--version"], "apt install gcc"),
        ("C++", "/usr/bin/g++", &["--version"], "apt install g++"),
        (
            "Python",
            "/usr/bin/python3",
            &["--version"],
            "apt install python3",
        ),
        (
            "Java",
            "/usr/bin/javac",
            &["-version"],
            "apt install openjdk-17-jdk-headless",
        ),
        ("Go", "/usr/bin/go", &["version"], "apt install golang-go"),
        (
            "Rust",
            "/root/.cargo/bin/rustc",
            &["--version"],
            "install rustup for root (its folders are mounted into boxes)",
        ),
        (
            "JavaScript",
            "/usr/bin/node",
            &["--version"],
            "apt install nodejs",
        ),
        ("Ruby", "/usr/bin/ruby", &["--version"], "apt install ruby"),
        ("PHP", "/usr/bin/php", &["--version"], "apt install php-cli"),
    ];
    for (lang, path, args, fix) in list {
        if Path::new(path).exists() {
            let v = version(path, args).unwrap_or_else(|| "version unknown".into());
            out.push(check(
                &format!("toolchain {lang}"),
                Level::Ok,
                format!("{path}: {v}"),
                "",
            ));
        } else {
            out.push(check(
                &format!("toolchain {lang}"),
                Level::Warn,
                format!("{path} not found: {lang} submissions will fail to compile"),
                *fix,
            ));
        }
    }
}

fn cpu(out: &mut Vec<Check>) {
    let govs: Vec<String> = (0..1024)
        .map_while(|i| {
            read(format!(
                "/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor"
            ))
        })
        .collect();
    if govs.is_empty() {
        out.push(check(
            "cpu frequency",
            Level::Ok,
            "no cpufreq scaling exposed (typical for VMs): nothing to set",
            "",
        ));
    } else if govs.iter().all(|g| g == "performance") {
        out.push(check(
            "cpu frequency",
            Level::Ok,
            "governor performance on every CPU",
            "",
        ));
    } else {
        let mut g = govs.clone();
        g.sort();
        g.dedup();
        out.push(check(
            "cpu frequency",
            Level::Warn,
            format!("scaling governors {g:?}: CPU times vary with the clock speed"),
            "cpupower frequency-set -g performance (or echo performance > /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)",
        ));
    }
    if read("/sys/devices/system/cpu/intel_pstate/no_turbo").as_deref() == Some("0") {
        out.push(check(
            "cpu turbo",
            Level::Warn,
            "turbo boost is on: CPU times depend on load and temperature",
            "echo 1 > /sys/devices/system/cpu/intel_pstate/no_turbo",
        ));
    }
    match read("/sys/devices/system/cpu/smt/active").as_deref() {
        Some("1") => out.push(check(
            "smt",
            Level::Warn,
            "SMT (hyper-threading) is active: sibling threads slow each other's runs",
            "echo off > /sys/devices/system/cpu/smt/control, or give each judge slot a whole core",
        )),
        Some(_) => out.push(check("smt", Level::Ok, "SMT is off", "")),
        None => out.push(check("smt", Level::Ok, "SMT control not exposed", "")),
    }
    if read("/proc/sys/kernel/randomize_va_space").as_deref() == Some("0") {
        out.push(check(
            "aslr",
            Level::Warn,
            "address-space randomisation is off on the host",
            "echo 2 > /proc/sys/kernel/randomize_va_space",
        ));
    }
}

/// Runs every check; returns the findings in order.
pub fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    kernel(&mut out);
    let is_root = root(&mut out);
    if is_root && cgroups(&mut out).is_some() {
        seccomp(&mut out);
        box_run(&mut out);
    } else {
        seccomp(&mut out);
    }
    toolchains(&mut out);
    cpu(&mut out);
    out
}

/// Runs `judge doctor`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let list = checks();
    let failed = list.iter().any(|c| c.level == Level::Fail);
    // A closed stdout (`judge doctor | head -1`) keeps the exit code instead of a panic.
    use crate::cli::client::out;
    if args.json {
        out(serde_json::to_string_pretty(
            &serde_json::json!({ "ok": !failed, "checks": list }),
        )?);
    } else {
        // Wide enough for the longest check name, `toolchain JavaScript`.
        let w = list.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in &list {
            let tag = match c.level {
                Level::Ok => "OK  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            out(format_args!("{tag} {:<w$} {}", c.check, c.detail));
            if !c.fix.is_empty() {
                out(format_args!("     {:<w$} fix: {}", "", c.fix));
            }
        }
        out(if failed {
            "judge doctor: the sandbox cannot work until the FAIL lines are fixed"
        } else {
            "judge doctor: the sandbox can work on this host"
        });
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
