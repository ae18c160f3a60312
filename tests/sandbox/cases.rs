//! The cases, named after their ids in `cases/sandbox-and-verdicts.md`.

use std::sync::Arc;

use judge::sandbox::{Limits, Output, RunSpec, Sandbox, Status, Stdin};

use super::{base_env, compile, prog_spec, require_root, Harness};

fn limits(cpu_ms: u64, wall_ms: u64, mem_mb: u64) -> Limits {
    Limits {
        cpu_ms,
        wall_ms,
        memory_bytes: mem_mb << 20,
        ..Limits::default()
    }
}

fn sh(script: &str, l: Limits) -> RunSpec {
    RunSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: base_env(),
        stdout: Output::Capture {
            limit: 1 << 20,
            kill_on_overflow: true,
        },
        stderr: Output::Capture {
            limit: 1 << 20,
            kill_on_overflow: false,
        },
        limits: l,
        ..RunSpec::default()
    }
}

const APLUSB: &str = r#"
#include <stdio.h>
int main(void){ long a,b; if(scanf("%ld %ld",&a,&b)!=2) return 1; printf("%ld\n",a+b); return 0; }
"#;

#[test]
fn aplusb_ok_and_exact_stdout() {
    require_root!();
    let h = Harness::new();
    let mut spec = prog_spec(
        compile("aplusb", APLUSB, false, &[]),
        limits(1000, 3000, 64),
    );
    spec.stdin = Stdin::Bytes(Arc::new(b"2 40\n".to_vec()));
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.exit_code, Some(0));
    assert_eq!(o.stdout, b"42\n");
    // Reused box: same again.
    let o = h.run(&spec);
    assert_eq!(o.stdout, b"42\n");
}

#[test]
fn nonzero_exit_and_signal_are_reported() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&sh("exit 7", limits(1000, 3000, 64)));
    assert_eq!((o.status, o.exit_code), (Status::NonzeroExit, Some(7)));
    let o = h.run(&sh("kill -SEGV $$", limits(1000, 3000, 64)));
    assert_eq!(
        (o.status, o.signal),
        (Status::Signaled, Some(libc::SIGSEGV)),
        "{o:?}"
    );
}

/// S5: the environment is the allow-list only; only the box is visible.
#[test]
fn s5_environment_and_view() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&sh(
        "env; echo ---; id; echo ---; ls /; echo ---; ls /proc | grep -c '^[0-9]'; hostname; \
         echo ---; cat /proc/1/cmdline; ls -d /proc/1; true",
        limits(1000, 3000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let parts: Vec<&str> = out.split("---\n").collect();
    let mut env: Vec<&str> = parts[0].lines().collect();
    env.sort();
    assert_eq!(
        env,
        [
            "HOME=/box",
            "LANG=C.UTF-8",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "PWD=/box"
        ]
    );
    assert!(parts[1].starts_with("uid=60"), "{}", parts[1]);
    assert!(!parts[1].contains("uid=0"), "{}", parts[1]);
    let mut root: Vec<&str> = parts[2].lines().collect();
    root.sort();
    assert_eq!(
        root,
        ["bin", "box", "dev", "etc", "lib", "lib64", "proc", "sbin", "tmp", "usr"]
    );
    // /proc shows only the box's processes of the box's uid: sh, ls/grep (a handful);
    // init (root, sharing the judge's memory and command line) is invisible.
    let mut last = parts[3].lines();
    let nprocs: u32 = last.next().unwrap().trim().parse().unwrap();
    assert!(nprocs <= 4, "{nprocs} processes visible");
    assert_eq!(last.next(), Some("box"));
    assert_eq!(parts[4], "", "init visible: {:?}", parts[4]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("judge"),
        "{out}"
    );
}

/// S7: fork bomb with setsid: time or wall limit, every descendant killed.
#[test]
fn s7_fork_bomb_with_setsid() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <unistd.h>
int main(void){ for(;;){ pid_t p = fork(); if(p==0) setsid(); } }
"#;
    let o = h.run(&prog_spec(
        compile("forkbomb", src, false, &[]),
        limits(1000, 2000, 128),
    ));
    // Which limit comes first depends on the machine (each process costs kernel
    // memory too): any limit verdict, within the wall limit.
    assert!(
        matches!(
            o.status,
            Status::TimeLimit | Status::WallLimit | Status::MemoryLimit
        ),
        "{o:?}"
    );
    assert!(o.wall_ms < 3000, "{o:?}");
    // The next run is normal.
    let o = h.run(&sh("echo fine", limits(1000, 3000, 64)));
    assert_eq!(o.stdout, b"fine\n");
}

/// S8: thread bomb: the pids limit counts threads; ends by a limit or a failure, never hangs.
#[test]
fn s8_thread_bomb() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <pthread.h>
#include <stdio.h>
static void *spawn(void *a){ pthread_t t; for(;;){ if(pthread_create(&t,0,spawn,0)==0) pthread_detach(t); } return a; }
int main(void){ spawn(0); return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("threadbomb", src, false, &["-pthread"]),
        limits(1000, 2000, 256),
    ));
    assert!(
        matches!(
            o.status,
            Status::TimeLimit
                | Status::WallLimit
                | Status::Signaled
                | Status::NonzeroExit
                | Status::MemoryLimit
        ),
        "{o:?}"
    );
    assert!(o.wall_ms < 3000, "{o:?}");
}

/// S10 (a): endless output stops at the cap with an output limit; (c) a 20 MB answer is fine.
#[test]
fn s10_output_cap_and_big_answer() {
    require_root!();
    let h = Harness::new();
    let mut spec = sh(
        "while :; do echo 0123456789012345678901234567890123456789; done",
        limits(2000, 3000, 64),
    );
    spec.stdout = Output::Capture {
        limit: 1 << 20,
        kill_on_overflow: true,
    };
    let o = h.run(&spec);
    assert_eq!(o.status, Status::OutputLimit, "{o:?}");
    assert_eq!(o.stdout.len(), 1 << 20);
    assert!(o.stdout_truncated);
    // (b) 200 MB to stderr with a non-fatal cap: truncated, the run ends normally.
    let mut spec = sh(
        "head -c 209715200 /dev/zero >&2; echo done",
        limits(3000, 6000, 64),
    );
    spec.stderr = Output::Capture {
        limit: 64 << 10,
        kill_on_overflow: false,
    };
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stderr.len(), 64 << 10);
    assert!(o.stderr_truncated);
    assert_eq!(o.stdout, b"done\n");
    // (c) 20 MB answer under a 64 MB cap.
    let mut spec = sh(
        "head -c 20971520 /dev/zero | tr '\\0' 'x'",
        limits(3000, 6000, 64),
    );
    spec.stdout = Output::Capture {
        limit: 64 << 20,
        kill_on_overflow: true,
    };
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout.len(), 20 << 20);
}

/// S11: sleeping, blocking on stdin that never closes, pause(): wall limit.
#[test]
fn s11_sleep_and_blocked_reads_hit_the_wall_limit() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&sh("sleep 3600", limits(1000, 500, 64)));
    assert_eq!(o.status, Status::WallLimit, "{o:?}");
    assert!((500..1000).contains(&o.wall_ms), "{o:?}");
    // Blocking read on a pipe whose write end the judge keeps open.
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut spec = sh("read x", limits(1000, 500, 64));
    spec.stdin = Stdin::Fd(Arc::new(r));
    let o = h.run(&spec);
    assert_eq!(o.status, Status::WallLimit, "{o:?}");
    drop(w);
    let src = "#include <unistd.h>\nint main(void){ pause(); return 0; }\n";
    let o = h.run(&prog_spec(
        compile("pause", src, false, &[]),
        limits(1000, 500, 64),
    ));
    assert_eq!(o.status, Status::WallLimit, "{o:?}");
}

/// S12: 8 threads x 0.4 s under a 1 s limit: CPU time is summed over threads.
/// (CPU-limit cases get a 30 s wall backstop: a loaded host must not turn them into
/// wall-limit outcomes.)
#[test]
fn s12_threads_sum_cpu_time() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <pthread.h>
#include <time.h>
static double cpu(void){ struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t); return t.tv_sec+t.tv_nsec/1e9; }
static void *spin(void *a){ volatile unsigned long x=0; while(cpu()<0.4) x++; return a; }
int main(void){ pthread_t t[8]; for(int i=0;i<8;i++) pthread_create(&t[i],0,spin,0); for(int i=0;i<8;i++) pthread_join(t[i],0); return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("threads8", src, false, &["-pthread"]),
        limits(1000, 30_000, 64),
    ));
    assert_eq!(o.status, Status::TimeLimit, "{o:?}");
    assert!(o.time_ms >= 1000 && o.time_ms < 1100, "{o:?}");
}

const SPIN_TO: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double cpu(void){ struct timespec t; clock_gettime(CLOCK_PROCESS_CPUTIME_ID,&t); return t.tv_sec+t.tv_nsec/1e9; }
int main(int argc, char **argv){ double target = atof(argv[1]) / 1000.0; volatile unsigned long x=0; while(cpu()<target) x++; printf("%.6f\n", cpu()); return 0; }
"#;

/// S13: a spin to limit + 300 ms is a TLE; to limit − 100 ms is OK with a reported
/// time within 20 ms of the program's own CPU clock.
#[test]
fn s13_cpu_time_is_exact() {
    require_root!();
    let h = Harness::new();
    let bin = compile("spinto", SPIN_TO, false, &[]);
    let mut spec = prog_spec(bin.clone(), limits(1000, 30_000, 64));
    spec.argv.push("1300".into());
    let o = h.run(&spec);
    assert_eq!(o.status, Status::TimeLimit, "{o:?}");
    assert!(o.time_ms < 1050, "TLE detected late: {o:?}");
    let mut spec = prog_spec(bin, limits(1000, 30_000, 64));
    spec.argv.push("900".into());
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let truth: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let truth_ms = truth * 1000.0;
    assert!(
        (o.time_ms as f64 - truth_ms).abs() <= 20.0,
        "reported {} ms, true {truth_ms:.1} ms",
        o.time_ms
    );
}

/// S15: a setsid'd child spinning forever after the parent answered: OK, nothing left,
/// and the next run's CPU time is unaffected.
#[test]
fn s15_orphan_spinner_is_killed() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <stdio.h>
#include <unistd.h>
int main(void){ if(fork()==0){ setsid(); close(0); close(1); close(2); for(;;); } printf("42\n"); return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("orphan", src, false, &[]),
        limits(1000, 3000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"42\n");
    let o = h.run(&sh("true", limits(1000, 3000, 64)));
    assert!(o.time_ms < 50, "{o:?}");
}

/// V1 (a): 800 MB global array fully written under 256 MB; (b) push_back forever: MLE,
/// peak close to the limit.
#[test]
fn v1_memory_limit_exceeded() {
    require_root!();
    let h = Harness::new();
    let a = r#"
#include <string.h>
static char big[800u<<20];
int main(void){ memset(big, 1, sizeof big); return big[12345]; }
"#;
    let b = r#"
#include <vector>
int main(){ std::vector<long> v; for(;;) v.push_back(1); }
"#;
    for (name, src, cpp) in [("v1a", a, false), ("v1b", b, true)] {
        let o = h.run(&prog_spec(
            compile(name, src, cpp, &[]),
            limits(5000, 10000, 256),
        ));
        assert_eq!(o.status, Status::MemoryLimit, "{name}: {o:?}");
        assert!(
            o.memory_kib > 240 << 10 && o.memory_kib <= 257 << 10,
            "{name}: {o:?}"
        );
    }
}

/// V2: touch 1 GB in 1 MB chunks under 256 MB, in a fresh box and reused boxes: MLE every time.
#[test]
fn v2_mle_in_fresh_and_reused_boxes() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <stdlib.h>
#include <string.h>
int main(void){ for(int i=0;i<1024;i++){ char *p = malloc(1<<20); memset(p, i, 1<<20); } return 0; }
"#;
    let spec = prog_spec(compile("v2", src, false, &[]), limits(5000, 10000, 256));
    for round in 0..3 {
        let o = h.run(&spec);
        assert_eq!(o.status, Status::MemoryLimit, "round {round}: {o:?}");
        assert!(o.memory_kib > 240 << 10, "round {round}: {o:?}");
    }
}

/// V3: (a) an empty C main uses < 2 MB; (b) a 512 MB array with one page touched is OK
/// with small memory under 256 MB.
#[test]
fn v3_memory_metric() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&prog_spec(
        compile("empty", "int main(void){return 0;}", false, &[]),
        limits(1000, 3000, 256),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(o.memory_kib < 2048, "{o:?}");
    let src = "static char big[512u<<20];\nint main(void){ big[4096]=1; return big[0]; }\n";
    let o = h.run(&prog_spec(
        compile("sparse", src, false, &[]),
        limits(1000, 3000, 256),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(o.memory_kib < 4096, "{o:?}");
}

/// S1: just before exiting, every file of the work folder and the names the judge
/// reads afterwards become symlinks to the host canary (also a link to its folder).
/// Nothing is followed: the collected names are absent, the canary untouched.
#[test]
fn s1_symlinks_to_the_canary_are_never_followed() {
    require_root!();
    let h = Harness::new();
    let canary = h.canary.to_string_lossy().into_owned();
    let script = format!(
        "echo 42; echo data > out.txt; for f in *; do rm -f \"$f\"; ln -s {canary} \"$f\"; done; \
         for f in stdout stderr meta output.txt; do ln -sf {canary} $f; done; ln -s /tmp dir; \
         mkdir sub; ln -s {canary} sub/x; ls -la >&2"
    );
    let mut spec = sh(&script, limits(1000, 3000, 64));
    spec.files.push(judge::sandbox::InputFile {
        path: "input.txt".into(),
        content: Arc::new(b"1 2\n".to_vec()),
        executable: false,
    });
    spec.collect = [
        "out.txt",
        "stdout",
        "meta",
        "output.txt",
        "dir/x",
        "sub/x",
        "input.txt",
    ]
    .map(String::from)
    .to_vec();
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"42\n");
    assert!(
        o.files.is_empty(),
        "collected through a link: {:?}",
        o.files.keys()
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("out.txt -> /tmp/judge-canary"));
}

/// S2: no network: only a loopback that is down; nothing connects.
#[test]
fn s2_no_network() {
    require_root!();
    let h = Harness::new();
    let py = r#"
import socket
targets = [("127.0.0.1", 80), ("127.0.0.1", 8080), ("127.0.0.1", 5432), ("127.0.0.1", 6379),
           ("10.0.0.1", 80), ("172.17.0.1", 80), ("192.168.1.1", 80), ("169.254.169.254", 80), ("8.8.8.8", 53)]
for host, port in targets:
    s = socket.socket(); s.settimeout(0.5)
    try:
        s.connect((host, port)); print("CONNECTED", host, port)
    except OSError as e:
        print("refused", host, port, e.errno)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("8.8.8.8", 53)); print("SENT udp")
except OSError as e:
    print("refused udp", e.errno)
print(open("/proc/net/dev").read())
"#;
    let mut spec = sh("", limits(3000, 8000, 128));
    spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), py.into()];
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("CONNECTED") && !out.contains("SENT"), "{out}");
    assert_eq!(out.matches("refused").count(), 10, "{out}");
    let ifaces: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.contains("face"))
        .skip(1)
        .filter(|l| l.contains(':'))
        .collect();
    assert_eq!(ifaces.len(), 1, "{out}");
    assert!(ifaces[0].trim_start().starts_with("lo:"), "{out}");
}

/// S3: the output file replaced by a symlink to /etc/hostname, or by a FIFO: absent.
#[test]
fn s3_output_file_that_is_not_a_regular_file() {
    require_root!();
    let h = Harness::new();
    let mut spec = sh(
        "ln -s /etc/hostname output.txt; mkfifo fifo.txt; mkdir dir.txt",
        limits(1000, 3000, 64),
    );
    spec.collect = vec!["output.txt".into(), "fifo.txt".into(), "dir.txt".into()];
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(o.files.is_empty(), "{:?}", o.files.keys());
    // A regular output file is collected.
    let mut spec = sh("printf 'answer\\n' > output.txt", limits(1000, 3000, 64));
    spec.collect = vec!["output.txt".into()];
    let o = h.run(&spec);
    assert_eq!(
        o.files.get("output.txt").map(Vec::as_slice),
        Some(&b"answer\n"[..])
    );
}

/// S6: walking the visible tree finds no test data or other submissions: only the
/// run's own folder (and the read-only toolchains, not walked here).
#[test]
fn s6_no_test_data_visible() {
    require_root!();
    let h = Harness::new();
    // Host-side test data and another "submission" that must stay invisible.
    let secret = tempfile::Builder::new()
        .prefix("judge-s6-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(secret.path().join("1.in"), b"HOSTDATA").unwrap();
    std::fs::write(secret.path().join("1.ans"), b"HOSTDATA").unwrap();
    let py = r#"
import os
hits = []
for top in ["/", "/tmp", "/var", "/box", "/etc", "/dev"]:
    for root, dirs, files in os.walk(top):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("usr", "proc")]
        for f in files:
            if f.endswith((".in", ".ans", ".out", ".cpp", ".py", ".java")):
                p = os.path.join(root, f)
                try: hits.append((p, open(p, "rb").read(16)))
                except OSError: hits.append((p, b"?"))
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            for f in os.listdir("/proc/%s/cwd" % pid): hits.append(("/proc/%s/cwd/%s" % (pid, f), b""))
        except OSError: pass
for p, b in sorted(set(hits)): print(p, b)
"#;
    let mut spec = sh("", limits(5000, 10000, 128));
    spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), py.into()];
    spec.files.push(judge::sandbox::InputFile {
        path: "own.in".into(),
        content: Arc::new(b"mine".to_vec()),
        executable: false,
    });
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("HOSTDATA"), "{out}");
    for line in out.lines() {
        let path = line.split_whitespace().next().unwrap();
        assert!(
            path.starts_with("/box/") || (path.starts_with("/proc/") && path.contains("/cwd/")),
            "visible outside the box: {line}"
        );
    }
    assert!(out.contains("/box/own.in b'mine'"), "{out}");
}

/// S9: (a) fallocate 10 GB in the work folder; (b) a million small files in /tmp:
/// promptly refused (file size / tmpfs size / inode limits), folders wiped.
#[test]
fn s9_disk_and_inode_exhaustion() {
    require_root!();
    let h = Harness::new();
    let a = r#"
#include <fcntl.h>
#include <stdio.h>
int main(void){ int fd = open("big", O_CREAT|O_WRONLY, 0644); int r = posix_fallocate(fd, 0, 10LL<<30); printf("%d\n", r); return r ? 1 : 0; }
"#;
    let o = h.run(&prog_spec(
        compile("falloc", a, false, &[]),
        limits(2000, 4000, 256),
    ));
    assert!(
        matches!(o.status, Status::OutputLimit | Status::NonzeroExit),
        "{o:?}"
    );
    assert!(o.wall_ms < 2000, "{o:?}");
    let b = r#"
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void){ char n[64]; for(int i=0;i<1000000;i++){ snprintf(n, sizeof n, "/tmp/f%d", i); int fd = open(n, O_CREAT|O_WRONLY, 0644); if(fd<0){ printf("stopped at %d\n", i); return 1; } close(fd);} return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("inodes", b, false, &[]),
        limits(5000, 8000, 256),
    ));
    assert_eq!(o.status, Status::NonzeroExit, "{o:?}");
    let n: u64 = String::from_utf8_lossy(&o.stdout)
        .trim()
        .trim_start_matches("stopped at ")
        .parse()
        .unwrap();
    assert!(n < 100_000, "{n} files created");
    // The next run gets a clean /tmp.
    let o = h.run(&sh("ls -A /tmp | wc -l", limits(1000, 3000, 64)));
    assert_eq!(o.stdout, b"0\n");
}

/// S14: kill(-1), kill of the parent, ptrace-attach of the parent, then the answer:
/// verdict from the output; the judge survives; 20 runs cut short in a row leave it healthy.
#[test]
fn s14_killing_and_tracing_the_judge() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>
#include <errno.h>
int main(void){
  int a = kill(-1, SIGKILL);
  int b = kill(getppid(), SIGKILL);
  long c = ptrace(PTRACE_ATTACH, getppid(), 0, 0); int ce = errno;
  long d = ptrace(PTRACE_TRACEME, 0, 0, 0);
  fprintf(stderr, "%d %d %ld/%d %ld\n", a, b, c, ce, d);
  printf("42\n"); return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("killer", src, false, &[]),
        limits(1000, 3000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"42\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("-1/{}", libc::EPERM)),
        "ptrace not refused: {err}"
    );
    for _ in 0..20 {
        let o = h.run(&sh("sleep 10", limits(1000, 30, 64)));
        assert_eq!(o.status, Status::WallLimit);
    }
    let o = h.run(&sh("echo alive", limits(1000, 3000, 64)));
    assert_eq!(o.stdout, b"alive\n");
}

/// The seccomp filter: namespaces and the i386 / x32 ABIs are refused.
#[test]
fn seccomp_refuses_namespaces_and_foreign_abis() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv){
  if (!strcmp(argv[1], "unshare")) { int r = unshare(CLONE_NEWUSER); printf("%d %d\n", r, errno); return 0; }
  if (!strcmp(argv[1], "modify_ldt")) { char b[16]; long r = syscall(SYS_modify_ldt, 0, b, sizeof b); printf("%ld %d\n", r, errno); return 0; }
  if (!strcmp(argv[1], "x32")) { long r = syscall(0x40000000 | SYS_getpid); printf("%ld\n", r); return 0; }
  if (!strcmp(argv[1], "i386")) { long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20)); printf("%ld\n", r); return 0; }
  return 2; }
"#;
    let bin = compile("abi", src, false, &[]);
    for refused in ["unshare", "modify_ldt"] {
        let mut spec = prog_spec(bin.clone(), limits(1000, 3000, 64));
        spec.argv.push(refused.into());
        let o = h.run(&spec);
        assert_eq!(
            o.stdout,
            format!("-1 {}\n", libc::EPERM).into_bytes(),
            "{refused}: {o:?}"
        );
    }
    for abi in ["x32", "i386"] {
        let mut spec = prog_spec(bin.clone(), limits(1000, 3000, 64));
        spec.argv.push(abi.into());
        let o = h.run(&spec);
        assert_eq!(
            (o.status, o.signal),
            (Status::Signaled, Some(libc::SIGSYS)),
            "{abi}: {o:?}"
        );
    }
}

/// V1 (c): a Python list of 1e9 zeros under 256 MB: MLE.
#[test]
fn v1c_python_memory_limit() {
    require_root!();
    let h = Harness::new();
    let mut spec = sh("", limits(5000, 10000, 256));
    spec.argv = vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        "x = [0] * 10**9\nprint(len(x))".into(),
    ];
    let o = h.run(&spec);
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert!(o.memory_kib > 240 << 10, "{o:?}");
}

/// V2 variants: memory through a shared mmap of a file is charged and killed (MLE), in
/// fresh and reused boxes. The alloca variant grows the stack, which may use the
/// memory limit less a headroom (`exec::stack_bytes`: 240 MiB of 256, so that V6's
/// infinite recursion is a runtime error; the two cannot be told apart): it ends with
/// SIGSEGV at the stack limit, its stack counted in the reported memory, never beyond
/// the memory limit.
#[test]
fn v2_alloca_and_mmap_variants() {
    require_root!();
    let h = Harness::new();
    let alloca = r#"
#include <alloca.h>
#include <string.h>
int main(void){ for(int i=0;i<1024;i++){ char *p = alloca(1<<20); memset(p, i, 1<<20); } return 0; }
"#;
    let mmap = r#"
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void){ int fd = open("/tmp/m", O_CREAT|O_RDWR, 0600); ftruncate(fd, 1L<<30);
  char *p = mmap(0, 1L<<30, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0); if (p == MAP_FAILED) return 3;
  for (long i = 0; i < (1L<<30); i += 4096) p[i] = 1; return 0; }
"#;
    let mut l = limits(5000, 10000, 256);
    l.disk_bytes = 2 << 30;
    l.file_size_bytes = 2 << 30;
    for round in 0..2 {
        let o = h.run(&prog_spec(compile("v2mmap", mmap, false, &[]), l));
        assert_eq!(o.status, Status::MemoryLimit, "mmap round {round}: {o:?}");
        let o = h.run(&prog_spec(compile("v2alloca", alloca, false, &[]), l));
        assert_eq!(
            (o.status, o.signal),
            (Status::Signaled, Some(libc::SIGSEGV)),
            "alloca round {round}: {o:?}"
        );
        assert!(
            o.memory_kib > 180 << 10 && o.memory_kib < 256 << 10,
            "alloca round {round}: {o:?}"
        );
    }
}

fn java_available() -> Option<&'static str> {
    ["/usr/bin/java", "/usr/bin/javac"]
        .iter()
        .all(|p| std::path::Path::new(p).exists())
        .then_some("/usr/bin/java")
}

/// Compiles Java on the host; returns (class name, class file bytes).
fn javac(name: &str, src: &str) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join(format!("{name}.java")), src).unwrap();
    let st = std::process::Command::new("javac")
        .arg("-d")
        .arg(d.path())
        .arg(d.path().join(format!("{name}.java")))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read(d.path().join(format!("{name}.class"))).unwrap()
}

fn java_spec(class: &str, bytes: Vec<u8>, l: Limits, heap_flags: &[&str]) -> RunSpec {
    let mut spec = sh("", l);
    spec.argv = ["/usr/bin/java"]
        .iter()
        .chain(heap_flags)
        .chain(
            [
                "-Xss64m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                "-Xshare:auto",
                "-cp",
                "/box",
                class,
            ]
            .iter(),
        )
        .map(|s| s.to_string())
        .collect();
    spec.files.push(judge::sandbox::InputFile {
        path: format!("{class}.class"),
        content: Arc::new(bytes),
        executable: false,
    });
    spec
}

/// V3 (c) and V4: Java hello / A+B under 64 MB with the default process limit: OK.
/// A 1 GB array under 256 MB: without -Xmx the cgroup kills it (MLE); with -Xmx and
/// -XX:+ExitOnOutOfMemoryError the JVM exits 3 saying OutOfMemoryError, which the
/// judge layer maps to MLE (the sandbox reports what happened; the message is on stdout).
#[test]
fn v4_java_under_small_limits() {
    require_root!();
    if java_available().is_none() {
        eprintln!("SKIPPED: java/javac not installed");
        return;
    }
    let h = Harness::new();
    let aplusb = javac("Main", "import java.util.*;\npublic class Main { public static void main(String[] a){ Scanner s = new Scanner(System.in); System.out.println(s.nextLong() + s.nextLong()); } }\n");
    let mut spec = java_spec("Main", aplusb, limits(5000, 10000, 64), &["-Xmx32m"]);
    spec.stdin = Stdin::Bytes(Arc::new(b"20 22\n".to_vec()));
    let o = h.run(&spec);
    assert_eq!(
        o.status,
        Status::Ok,
        "{o:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"42\n");
    let big = javac("Big", "public class Big { public static void main(String[] a){ long[] b = new long[128*1024*1024]; b[5] = 1; System.out.println(b.length); } }\n");
    let o = h.run(&java_spec(
        "Big",
        big.clone(),
        limits(5000, 10000, 256),
        &[],
    ));
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    let o = h.run(&java_spec(
        "Big",
        big,
        limits(5000, 10000, 256),
        &["-Xmx200m", "-XX:+ExitOnOutOfMemoryError"],
    ));
    assert_eq!(
        (o.status, o.exit_code),
        (Status::NonzeroExit, Some(3)),
        "{o:?}"
    );
    // HotSpot prints "Terminating due to java.lang.OutOfMemoryError" on stdout.
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("java.lang.OutOfMemoryError"),
        "{o:?}"
    );
}

/// V5: Go hello world and 100 sleeping goroutines under 32 MB, compiled in a box.
#[test]
fn v5_go_goroutines_under_32mb() {
    require_root!();
    if !std::path::Path::new("/usr/bin/go").exists() {
        eprintln!("SKIPPED: go not installed (apt install golang-go)");
        return;
    }
    let h = Harness::new();
    let src = "package main\nimport (\"fmt\"; \"time\")\nfunc main() { for i := 0; i < 100; i++ { go func() { time.Sleep(time.Hour) }() }; time.Sleep(20 * time.Millisecond); fmt.Println(\"hello\") }\n";
    let mut build = sh("go build -o prog main.go", limits(20000, 60000, 512));
    build.limits.pids = 128;
    build.env.extend([
        ("GOCACHE".into(), "/tmp/gocache".into()),
        ("GOPATH".into(), "/tmp/gopath".into()),
        ("GO111MODULE".into(), "off".into()),
        ("CGO_ENABLED".into(), "0".into()),
    ]);
    build.files.push(judge::sandbox::InputFile {
        path: "main.go".into(),
        content: Arc::new(src.as_bytes().to_vec()),
        executable: false,
    });
    build.collect = vec!["prog".into()];
    let o = h.run(&build);
    assert_eq!(
        o.status,
        Status::Ok,
        "{o:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = o.files.get("prog").expect("compiled binary").clone();
    let o = h.run(&prog_spec(bin, limits(1000, 3000, 32)));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"hello\n");
}

/// V6: deep but finite recursion is fine (stack limited by the memory limit); infinite
/// recursion is a runtime error, never an internal error.
#[test]
fn v6_deep_and_infinite_recursion() {
    require_root!();
    let h = Harness::new();
    let cpp = r#"
#include <cstdio>
#include <cstdlib>
static long f(long n, volatile char *pad){ volatile char buf[64]; buf[0] = (char)n; if (n == 0) return buf[0]; return f(n - 1, buf) + 1; }
int main(int argc, char **argv){ long n = atol(argv[1]); printf("%ld\n", f(n, 0)); return 0; }
"#;
    let bin = compile("recurse", cpp, true, &["-O0"]);
    let mut spec = prog_spec(bin.clone(), limits(3000, 6000, 256));
    spec.argv.push("1000000".into());
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"1000000\n");
    // About 200 MB of stack (each frame ~94 bytes at -O0) under 256 MB: still within
    // the memory limit, so it must pass (QA: it ended with SIGSEGV when the stack was
    // capped at 3/4 of the limit; now it may use the limit less 1/16).
    let mut spec = prog_spec(bin.clone(), limits(5000, 10000, 256));
    spec.argv.push("2150000".into());
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"2150000\n");
    assert!(o.memory_kib > 195 << 10, "{o:?}");
    let mut spec = prog_spec(bin, limits(3000, 6000, 256));
    spec.argv.push("1000000000000".into());
    let o = h.run(&spec);
    assert_eq!(
        (o.status, o.signal),
        (Status::Signaled, Some(libc::SIGSEGV)),
        "{o:?}"
    );
    let deep = "import sys\nsys.setrecursionlimit(300000)\ndef f(n): return 0 if n == 0 else 1 + f(n - 1)\nprint(f(200000))\n";
    let mut spec = sh("", limits(5000, 10000, 256));
    spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), deep.into()];
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"200000\n");
    let inf = "def f(n): return 1 + f(n + 1)\nf(0)\n";
    spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), inf.into()];
    let o = h.run(&spec);
    assert_eq!(o.status, Status::NonzeroExit, "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("RecursionError"));
}

/// A reused box leaves nothing behind for the next run: files in /box and /tmp, SysV
/// IPC objects, processes.
#[test]
fn reused_box_is_clean() {
    require_root!();
    let h = Harness::new();
    let py = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT = 0o1000
shm = libc.shmget(0x1234, 4096, IPC_CREAT | 0o600)
msg = libc.msgget(0x1235, IPC_CREAT | 0o600)
sem = libc.semget(0x1236, 1, IPC_CREAT | 0o600)
open("/box/left.txt", "w").write("x"); open("/tmp/left.txt", "w").write("x")
print(shm >= 0, msg >= 0, sem >= 0)
"#;
    let mut spec = sh("", limits(3000, 6000, 128));
    spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), py.into()];
    let o = h.run(&spec);
    assert_eq!(o.stdout, b"True True True\n", "{o:?}");
    let o = h.run(&sh(
        "ls -A /box /tmp; cat /proc/sysvipc/shm /proc/sysvipc/msg /proc/sysvipc/sem | grep -v key | wc -l; ls /proc | grep -c '^[0-9]'",
        limits(1000, 3000, 64),
    ));
    let out = String::from_utf8_lossy(&o.stdout);
    // Three processes visible: sh, ls and grep (init is hidden: hidepid=2).
    assert_eq!(out, "/box:\n\n/tmp:\n0\n3\n", "{out}");
}

/// Input files larger than what a warm box's tmpfs was last sized for still fit (a
/// fresh box is made), and `disk_bytes` stays what the program itself may write.
#[test]
fn larger_inputs_than_the_warm_box_fit() {
    require_root!();
    let h = Harness::new();
    let mut l = limits(1000, 3000, 64);
    l.disk_bytes = 1 << 20;
    h.run(&sh("true", l));
    let mut spec = sh(
        "wc -c < big.in; head -c 2000000 /dev/zero > out 2>/dev/null; echo $?",
        l,
    );
    spec.files.push(judge::sandbox::InputFile {
        path: "big.in".into(),
        content: Arc::new(vec![b'x'; 3 << 20]),
        executable: false,
    });
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    // The input fits; writing 2 MB more than disk_bytes (1 MB) fails.
    assert_eq!(String::from_utf8_lossy(&o.stdout), "3145728\n1\n");
}

/// The process backend (trusted pool): limits, an unprivileged uid, every descendant
/// killed through the cgroup, `/box` paths rewritten to its work folder, links refused.
#[test]
fn process_backend_limits_and_cleanup() {
    require_root!();
    let h = Harness::new();
    let o = h.run_process(&sh("id -u; pwd; echo $HOME", limits(1000, 3000, 64)));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert!(lines[0].starts_with("61"), "{out}");
    assert!(lines[1].starts_with("/run/judge-sandbox/process/"), "{out}");
    assert_eq!(lines[1], lines[2]);
    let mut spec = prog_spec(
        compile("spinto", SPIN_TO, false, &[]),
        limits(500, 30_000, 64),
    );
    spec.argv = vec!["/box/prog".into(), "2000".into()];
    let o = h.run_process(&spec);
    assert_eq!(o.status, Status::TimeLimit, "{o:?}");
    assert!(o.time_ms < 550, "{o:?}");
    let src = r#"
#include <stdio.h>
#include <unistd.h>
int main(void){ if(fork()==0){ setsid(); close(0); close(1); close(2); for(;;); } printf("42\n"); return 0; }
"#;
    let o = h.run_process(&prog_spec(
        compile("orphan", src, false, &[]),
        limits(1000, 3000, 64),
    ));
    assert_eq!(
        (o.status, o.stdout.as_slice()),
        (Status::Ok, &b"42\n"[..]),
        "{o:?}"
    );
    let big = "#include <stdlib.h>\n#include <string.h>\nint main(void){ for(;;){ char *p = malloc(1<<20); memset(p, 1, 1<<20); } }\n";
    let o = h.run_process(&prog_spec(
        compile("v2", big, false, &[]),
        limits(5000, 10000, 128),
    ));
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    let canary = h.canary.to_string_lossy().into_owned();
    let mut spec = sh(&format!("ln -s {canary} out.txt"), limits(1000, 3000, 64));
    spec.collect = vec!["out.txt".into()];
    let o = h.run_process(&spec);
    assert!(o.files.is_empty());
    // Background sleepers until the pids limit stops the shell: whatever ends the
    // run, every sleeper is killed with the cgroup (run_process checks it).
    let o = h.run_process(&sh(
        "while :; do sh -c 'sleep 100' & done",
        limits(1000, 1500, 64),
    ));
    assert!(
        matches!(
            o.status,
            Status::TimeLimit | Status::WallLimit | Status::NonzeroExit
        ),
        "{o:?}"
    );
}

/// Interactive problems: the program and the interactor run concurrently in two boxes
/// connected by pipes (Stdin::Fd / Output::Fd).
#[test]
fn interactive_runs_concurrently_over_pipes() {
    require_root!();
    let h = Harness::new();
    let (to_prog_r, to_prog_w) = nix::unistd::pipe().unwrap();
    let (to_inter_r, to_inter_w) = nix::unistd::pipe().unwrap();
    // The program: answers every number with its successor until it reads 0.
    let prog = "while read n; do [ \"$n\" = 0 ] && exit 0; echo $((n + 1)); done";
    // The interactor: asks 1..100, checks each answer, then says 0.
    let inter = "i=1; while [ $i -le 100 ]; do echo $i; read a; [ \"$a\" = $((i + 1)) ] || { echo bad >&2; exit 43; }; i=$((i + 1)); done; echo 0; echo fine >&2; exit 42";
    let mut p = sh(prog, limits(2000, 5000, 64));
    p.stdin = Stdin::Fd(Arc::new(to_prog_r));
    p.stdout = Output::Fd(Arc::new(to_inter_w));
    let mut i = sh(inter, limits(2000, 5000, 64));
    i.stdin = Stdin::Fd(Arc::new(to_inter_r));
    i.stdout = Output::Fd(Arc::new(to_prog_w));
    let (po, io) = std::thread::scope(|s| {
        let a = s.spawn(|| h.sb.run(&p).unwrap());
        let b = s.spawn(|| h.sb.run(&i).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    // The judge drops its pipe ends with the specs.
    drop(p);
    drop(i);
    h.check_health(&po);
    assert_eq!(po.status, Status::Ok, "{po:?}");
    assert_eq!(
        io.exit_code,
        Some(42),
        "{io:?} {}",
        String::from_utf8_lossy(&io.stderr)
    );
}

/// Two concurrent boxes cannot talk: no shared network namespace (abstract unix sockets
/// are per network namespace).
#[test]
fn concurrent_boxes_share_no_abstract_sockets() {
    require_root!();
    let h = Harness::new();
    let server = "import socket, time\ns = socket.socket(socket.AF_UNIX)\ns.bind('\\0judge-s2-test')\ns.listen(1)\ns.settimeout(2)\ntry:\n    s.accept(); print('ACCEPTED')\nexcept OSError:\n    print('alone')\n";
    let client = "import socket, time\ntime.sleep(0.5)\nc = socket.socket(socket.AF_UNIX)\ntry:\n    c.connect('\\0judge-s2-test'); print('CONNECTED')\nexcept OSError as e:\n    print('refused', e.errno)\n";
    let py = |code: &str| {
        let mut s = sh("", limits(3000, 5000, 64));
        s.argv = vec!["/usr/bin/python3".into(), "-c".into(), code.into()];
        s
    };
    let (a, b) = (py(server), py(client));
    let (ao, bo) = std::thread::scope(|s| {
        let x = s.spawn(|| h.sb.run(&a).unwrap());
        let y = s.spawn(|| h.sb.run(&b).unwrap());
        (x.join().unwrap(), y.join().unwrap())
    });
    h.check_health(&ao);
    assert_eq!(String::from_utf8_lossy(&ao.stdout), "alone\n", "{ao:?}");
    assert!(
        String::from_utf8_lossy(&bo.stdout).starts_with("refused"),
        "{bo:?}"
    );
}

/// Toolchains outside the default root come in through RunSpec::mounts, even when the
/// host parent is mode 0700 (/root): rustc compiles and the binary runs.
#[test]
fn rustc_through_mounts_under_a_private_root_folder() {
    require_root!();
    if !std::path::Path::new("/root/.cargo/bin/rustc").exists() {
        eprintln!("SKIPPED: no rustc under /root/.cargo");
        return;
    }
    let h = Harness::new();
    let mut spec = sh(
        "rustc -O main.rs -o main && ./main",
        limits(30_000, 60_000, 1024),
    );
    spec.limits.pids = 128;
    spec.env = vec![
        ("PATH".into(), "/root/.cargo/bin:/usr/bin:/bin".into()),
        ("HOME".into(), "/box".into()),
        ("RUSTUP_HOME".into(), "/root/.rustup".into()),
        ("CARGO_HOME".into(), "/root/.cargo".into()),
    ];
    spec.mounts = ["/root/.rustup", "/root/.cargo"]
        .iter()
        .map(|p| judge::sandbox::Mount {
            host: p.into(),
            target: p.into(),
            writable: false,
        })
        .collect();
    spec.files.push(judge::sandbox::InputFile {
        path: "main.rs".into(),
        content: Arc::new(b"fn main() { println!(\"{}\", 40 + 2); }\n".to_vec()),
        executable: false,
    });
    let o = h.run(&spec);
    assert_eq!(
        o.status,
        Status::Ok,
        "{o:?} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"42\n");
}

/// Regression (IE "Text file busy" under concurrent judging): while one slot writes a
/// freshly compiled executable into its box, another slot's clone inherits the write
/// descriptor until that child execs, and the first box's execve fails with ETXTBSY.
/// Every run of an executable copied into its box must start, however many run at once.
#[test]
fn concurrent_runs_of_fresh_executables_never_hit_text_file_busy() {
    require_root!();
    let h = Harness::new();
    // A large static binary keeps each write (and so each open write descriptor) long.
    let bin = compile(
        "exit0static",
        "int main(void){return 0;}",
        false,
        &["-static"],
    );
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..50)
                        .map(|_| h.sb.run(&prog_spec(bin.clone(), limits(1000, 10_000, 64))))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for o in outcomes {
        let o = o.expect("the sandbox itself must not fail");
        h.check_health(&o);
        assert_eq!(o.status, Status::Ok, "{o:?}");
    }
}

/// A run that fills the box's tmpfs past its memory limit (page cache, not RSS) makes
/// the run cgroup's OOM killer pick a victim: it must be a process of the run, never
/// the judge — even while the judge holds far more memory than the program (the
/// OOM killer prefers the largest process, and also kills every process sharing the
/// victim's memory).
#[test]
fn tmpfs_filling_oom_never_picks_the_judge() {
    require_root!();
    let h = Harness::new();
    // 512 MiB resident in the judge (this test process).
    let ballast = vec![1u8; 512 << 20];
    let mut l = limits(5000, 10000, 32);
    l.disk_bytes = 512 << 20;
    let o = h.run(&sh(
        "head -c 300000000 /dev/zero > /tmp/fill && echo wrote",
        l,
    ));
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert!(o.stdout.is_empty(), "300 MB fit in a 32 MiB limit: {o:?}");
    // The judge is alive and the next run works.
    let o = h.run(&sh("echo alive", limits(1000, 3000, 64)));
    assert_eq!(o.stdout, b"alive\n");
    assert_eq!(ballast.iter().map(|&b| b as u64).sum::<u64>(), 512 << 20);
}

/// Pids of processes whose command line is exactly `argv`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want = argv.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want.as_bytes())
        })
        .collect()
}

/// The judge killed with SIGKILL mid-run: the box's init notices (its command socket
/// closes) and takes the run down — program, background children and the box's
/// waiting inits — instead of leaving them running unsupervised.
#[test]
fn judge_killed_mid_run_takes_its_boxes_down() {
    require_root!();
    let _h = Harness::new();
    let mut judge = std::process::Command::new(env!("CARGO_BIN_EXE_judge"))
        .args(["sandbox", "run", "--time", "60s", "--wall", "60s", "--"])
        .args(["/bin/sh", "-c", "sleep 986 & exec sleep 987"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pids_running(&["sleep", "987"]).is_empty() || pids_running(&["sleep", "986"]).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The judge's children: the run's init and the box's next init, made ahead.
    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", judge.id()))
        .unwrap()
        .flatten()
        .map(|t| std::fs::read_to_string(t.path().join("children")).unwrap_or_default() + " ")
        .collect::<String>()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(!children.is_empty(), "no box init found");
    judge.kill().unwrap();
    judge.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left: Vec<u32> = pids_running(&["sleep", "987"])
            .into_iter()
            .chain(pids_running(&["sleep", "986"]))
            .chain(
                children
                    .iter()
                    .copied()
                    .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()),
            )
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes of the dead judge's boxes still alive: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The program leads a session of its own: the terminal's Ctrl-C to a foreground
/// `judge serve` (SIGINT to its process group) and kill(0, …) from a program of
/// another judge in the same process group never reach it.
#[test]
fn program_leads_its_own_session() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&sh(
        "echo $$; cut -d' ' -f5,6 /proc/$$/stat",
        limits(1000, 3000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let mut lines = out.lines();
    let pid = lines.next().unwrap();
    // Process group and session are both the program's own pid.
    assert_eq!(lines.next(), Some(format!("{pid} {pid}").as_str()), "{out}");
}

/// S10 (b): 200 MB written to stderr ends with an output limit at the cap, while only
/// the first bytes are kept (the judge's memory stays flat).
#[test]
fn s10b_stderr_volume_is_an_output_limit() {
    require_root!();
    let h = Harness::new();
    let mut spec = sh(
        "head -c 200000000 /dev/zero >&2; echo done",
        limits(5000, 10000, 64),
    );
    spec.stderr = Output::CaptureHead {
        keep: 64 << 10,
        limit: 16 << 20,
    };
    let o = h.run(&spec);
    assert_eq!(o.status, Status::OutputLimit, "{o:?}");
    assert_eq!(&o.stderr[..64 << 10], &[0u8; 64 << 10][..]);
    assert!(o.stderr.len() <= (80 << 10) + 64, "{}", o.stderr.len());
    assert!(o.stderr_truncated);
    assert!(o.stdout.is_empty(), "{o:?}");
    // Under the limit: the head, a line saying what was cut, the last 16 KiB (where an
    // out-of-memory message would be); no verdict.
    spec.argv[2] = "head -c 1000000 /dev/zero >&2; echo THE-END >&2; echo done".into();
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let cut = 1_000_008 - (64 << 10) - (16 << 10);
    let line = format!("\n[... {cut} bytes not kept ...]\n");
    assert_eq!(o.stderr.len(), (64 << 10) + line.len() + (16 << 10));
    assert_eq!(
        &o.stderr[64 << 10..(64 << 10) + line.len()],
        line.as_bytes()
    );
    assert!(o.stderr.ends_with(b"THE-END\n"));
    assert_eq!(o.stdout, b"done\n");
}

/// Input files (the executable among them) live in the box's RAM filesystem, written
/// by the judge: they count against the memory limit, or a binary with a huge
/// initialised array would run under any limit (QA found 250 MB reading every page
/// under 64 MiB reported as AC with 1 MiB).
#[test]
fn initialised_data_in_the_executable_counts_as_memory() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <stdio.h>
static char a[80 << 20] = {1};
int main(void){ long s = 0; for (long i = 0; i < (long)sizeof a; i += 4096) s += a[i]; printf("%ld\n", s); return 0; }
"#;
    let bin = compile("bigdata", src, false, &[]);
    assert!(bin.len() > 80 << 20);
    // 80 MB of data under 64 MiB: a memory limit, without even starting.
    let o = h.run(&prog_spec(bin.clone(), limits(2000, 4000, 64)));
    assert_eq!(o.status, Status::MemoryLimit, "{o:?}");
    assert!(o.memory_kib >= 80 << 10, "{o:?}");
    // Under 256 MiB it runs, and the reported memory includes the executable.
    let o = h.run(&prog_spec(bin, limits(2000, 4000, 256)));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"1\n");
    assert!(o.memory_kib >= 80 << 10, "{o:?}");
    assert!(o.memory_kib < 200 << 10, "{o:?}");
}

/// POSIX shared memory and named semaphores work in a box (`/dev/shm` is the run's
/// `/tmp`): an honest program using them (Python's multiprocessing locks use
/// sem_open) must not end with a runtime error; what it leaves there is gone for the
/// next run.
#[test]
fn posix_shared_memory_and_semaphores_work() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void){
  int fd = shm_open("/judge-test", O_CREAT|O_RDWR, 0600);
  if (fd < 0) { perror("shm_open"); return 1; }
  if (ftruncate(fd, 4096)) { perror("ftruncate"); return 1; }
  int *p = mmap(0, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, fd, 0);
  sem_t *s = sem_open("/judge-sem", O_CREAT, 0600, 0);
  if (p == MAP_FAILED || s == SEM_FAILED) { perror("mmap/sem_open"); return 1; }
  if (fork() == 0) { *p = 42; sem_post(s); _exit(0); }
  sem_wait(s); wait(0);
  printf("%d\n", *p);
  return 0; }
"#;
    let o = h.run(&prog_spec(
        compile("posixshm", src, false, &[]),
        limits(2000, 4000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"42\n", "{o:?}");
    h.check_health(&o);
    let o = h.run(&sh("ls -A /dev/shm/ | wc -l", limits(1000, 3000, 64)));
    assert_eq!(o.stdout, b"0\n", "{o:?}");
}

/// Reopening the standard descriptors through /dev/stdin, /dev/stdout and /dev/stderr
/// (links to /proc/self/fd/N) works for the box user, whether they are pipes made by
/// the judge (captured output, an interactor's pipe) or a memfd (QA: `open("/dev/stdout")`
/// failed with EACCES, an honest program's RTE or WA).
#[test]
fn standard_descriptors_reopen_through_dev() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <stdio.h>
int main(void){
  int a = 0;
  FILE *in = fopen("/dev/stdin", "r");
  if (!in || fscanf(in, "%d", &a) != 1) { perror("/dev/stdin"); return 1; }
  FILE *out = fopen("/dev/stdout", "w");
  FILE *err = fopen("/dev/stderr", "w");
  if (!out || !err) { perror("/dev/stdout or /dev/stderr"); return 1; }
  fprintf(out, "%d\n", a + 1); fprintf(err, "note\n");
  return 0; }
"#;
    let bin = compile("reopen", src, false, &[]);
    let mut spec = prog_spec(bin.clone(), limits(1000, 3000, 64));
    spec.stdin = Stdin::Bytes(Arc::new(b"41\n".to_vec()));
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"42\n");
    assert_eq!(o.stderr, b"note\n");
    // Standard input from a pipe of the judge's, as an interactor gives it.
    let (r, w) = std::io::pipe().unwrap();
    std::io::Write::write_all(&mut &w, b"6\n").unwrap();
    drop(w);
    let mut spec = prog_spec(bin, limits(1000, 3000, 64));
    spec.stdin = Stdin::Fd(Arc::new(std::os::fd::OwnedFd::from(r)));
    let o = h.run(&spec);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"7\n");
    h.check_health(&o);
}

/// The program's cgroups are its own root (a cgroup namespace): /proc/self/cgroup does
/// not show the judge's cgroup layout or pid.
#[test]
fn cgroup_paths_do_not_show_the_judge() {
    require_root!();
    let h = Harness::new();
    let o = h.run(&sh("cat /proc/self/cgroup", limits(1000, 3000, 64)));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.is_empty());
    for line in text.lines() {
        assert!(line.ends_with(":/"), "{line:?} in {text}");
    }
    h.check_health(&o);
}

/// A test input read straight from the host (Stdin::HostFile) is charged to the judge,
/// not the run, whether it was in the page cache or not: reading 24 MB of input under
/// a 16 MiB limit reports the program's own few MiB (QA: a cold input was reported at
/// the limit on one run and small on the next).
#[test]
fn host_file_input_is_not_charged_to_the_run() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
int main(void){ struct stat st; fstat(0, &st);
  unsigned char *p = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, 0, 0); if (p == MAP_FAILED) return 1;
  unsigned long s = 0; for (long i = 0; i < st.st_size; i++) s += p[i]; printf("%lu\n", s); return 0; }
"#;
    let bin = compile("suminput", src, false, &[]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.in");
    std::fs::write(&input, vec![1u8; 24 << 20]).unwrap();
    for round in 0..2 {
        // Out of the page cache, as a test input not read for a while.
        let f = std::fs::File::open(&input).unwrap();
        f.sync_all().unwrap();
        // SAFETY: fadvise on an open file.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        let mut spec = prog_spec(bin.clone(), limits(2000, 4000, 16));
        spec.stdin = Stdin::HostFile(input.clone());
        let o = h.run(&spec);
        assert_eq!(o.status, Status::Ok, "round {round}: {o:?}");
        assert_eq!(o.stdout, format!("{}\n", 24u64 << 20).into_bytes());
        assert!(o.memory_kib < 8 << 10, "round {round}: {o:?}");
    }
}

/// Extended attributes the program sets on its work folder (which it owns) do not
/// reach the box's next run: the wipe removes files, and the folder's own attributes
/// are cleared too (QA: a `user.*` attribute on /box carried data, up to ~16 MB, to
/// the next run in a reused box).
#[test]
fn xattrs_on_the_work_folder_do_not_reach_the_next_run() {
    require_root!();
    let h = Harness::new();
    let mut set = sh("", limits(2000, 4000, 64));
    set.argv = vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        "import os\nos.setxattr('/box', 'user.m', b'7' * 1000)\nprint(os.listxattr('/box'))\n"
            .into(),
    ];
    let o = h.run(&set);
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(o.stdout, b"['user.m']\n", "{o:?}");
    h.check_health(&o);
    let mut get = sh("", limits(2000, 4000, 64));
    get.argv = vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        "import os\nprint(os.listxattr('/box'), os.listxattr('/tmp'))\n".into(),
    ];
    for _ in 0..3 {
        let o = h.run(&get);
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert_eq!(o.stdout, b"[] []\n", "{o:?}");
    }
}

/// Two sandboxes on one host (two judge processes, or here two in one process) never
/// give boxes alive at the same time the same uid: uids are locked host-wide (QA: two
/// judges both ran programs as uid 60000, sharing per-user kernel limits). Each new
/// sandbox numbers its boxes from 0, so without the locks both would use the same uid.
#[test]
fn two_sandboxes_never_share_a_box_uid() {
    require_root!();
    let _h = Harness::new();
    let make = |tag: &str| {
        judge::sandbox::native::NativeSandbox::new(judge::sandbox::native::NativeConfig {
            cgroup_tag: tag.into(),
            ..Default::default()
        })
        .unwrap()
    };
    let (one, two) = (make("tsbxnative2"), make("tsbxnative3"));
    let id = || sh("id -u; sleep 0.5", limits(1000, 3000, 64));
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| one.run(&id()).unwrap());
        let b = s.spawn(|| two.run(&id()).unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.status, Status::Ok, "{a:?}");
    assert_eq!(b.status, Status::Ok, "{b:?}");
    assert_ne!(a.stdout, b.stdout, "same uid in two sandboxes at once");
}

/// The process backend loads the same seccomp filter: without namespaces, an
/// unprivileged user namespace (and everything it unlocks), ptrace of the slot's
/// other processes, keyrings, bpf and io_uring stay refused.
#[test]
fn process_backend_loads_the_seccomp_filter() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <unistd.h>
int main(void){
  int u = unshare(CLONE_NEWUSER); int ue = errno;
  long p = ptrace(PTRACE_TRACEME, 0, 0, 0); int pe = errno;
  printf("%d %d %ld %d\n", u, ue, p, pe); return 0; }
"#;
    let o = h.run_process(&prog_spec(
        compile("procseccomp", src, false, &[]),
        limits(1000, 3000, 64),
    ));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("-1 {0} -1 {0}\n", libc::EPERM),
        "{o:?}"
    );
}

/// The work folder's times do not carry data to the box's next run: the program owns
/// /box and can set its times to anything (QA: ~60 bits per run through atime).
#[test]
fn folder_times_do_not_reach_the_next_run() {
    require_root!();
    let h = Harness::new();
    let set = "import os\nos.utime('/box', ns=(4000000000123456789, 3735928559987654321))\nopen('/tmp/x', 'w').close()\n";
    let get = "import os\nb = os.stat('/box'); t = os.stat('/tmp')\nprint(b.st_atime_ns, b.st_mtime_ns > 3000000000 * 10**9, t.st_mtime_ns)\n";
    let py = |src: &str| {
        let mut spec = sh("", limits(2000, 4000, 64));
        spec.argv = vec!["/usr/bin/python3".into(), "-c".into(), src.into()];
        spec
    };
    let o = h.run(&py(set));
    assert_eq!(o.status, Status::Ok, "{o:?}");
    for _ in 0..3 {
        let o = h.run(&py(get));
        assert_eq!(o.status, Status::Ok, "{o:?}");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(!out.contains("4000000000123456789"), "{out}");
        assert!(out.contains(" False "), "{out}");
    }
}

/// `Stdin::HostFile` must be a regular file: a folder's descriptor would let the
/// program walk the host's tree from it (QA: `--stdin DIR` listed the host's /), and a
/// FIFO would block the judge before any limit applies.
#[test]
fn standard_input_must_be_a_regular_file() {
    require_root!();
    let h = Harness::new();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    for p in [dir.path().to_path_buf(), fifo] {
        let mut spec = sh("cat", limits(1000, 2000, 64));
        spec.stdin = Stdin::HostFile(p.clone());
        let t = std::time::Instant::now();
        let e = h.sb.run(&spec).unwrap_err();
        assert!(
            matches!(e, judge::sandbox::SandboxError::InvalidSpec(_)),
            "{}: {e}",
            p.display()
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
    }
}

/// A deleted file held open by a unix socket queued on itself (an SCM_RIGHTS cycle)
/// outlives its run until the kernel's collector frees it; the box that held it is
/// dropped, so the next run's /tmp has all its space (QA: the next test found 24 of
/// 64 MiB free, then none).
#[test]
fn space_pinned_past_the_run_is_not_handed_on() {
    require_root!();
    let h = Harness::new();
    let src = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void){
  int sv[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
  int fd = open("/tmp/big", O_CREAT|O_RDWR, 0600); static char b[1<<16]; memset(b, 1, sizeof b);
  for (int i = 0; i < 300; i++) write(fd, b, sizeof b);
  unlink("/tmp/big");
  char c = 'x'; struct iovec v = {&c, 1}; char cb[CMSG_SPACE(3*sizeof(int))];
  struct msghdr m = {0}; m.msg_iov = &v; m.msg_iovlen = 1; m.msg_control = cb; m.msg_controllen = sizeof cb;
  struct cmsghdr *h = CMSG_FIRSTHDR(&m); h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS;
  h->cmsg_len = CMSG_LEN(3*sizeof(int)); int fds[3] = {fd, sv[0], sv[1]}; memcpy(CMSG_DATA(h), fds, sizeof fds);
  sendmsg(sv[1], &m, 0); sendmsg(sv[0], &m, 0);
  printf("pinned\n"); return 0; }
"#;
    let pin = compile("pincycle", src, false, &[]);
    let mut free = sh("", limits(2000, 4000, 128));
    free.argv = vec![
        "/usr/bin/python3".into(),
        "-c".into(),
        "import os\ns = os.statvfs('/tmp')\nprint(s.f_blocks - s.f_bfree)\n".into(),
    ];
    for _ in 0..3 {
        let o = h.run(&prog_spec(pin.clone(), limits(2000, 4000, 128)));
        assert_eq!(o.stdout, b"pinned\n", "{o:?}");
        let o = h.run(&free);
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert_eq!(
            o.stdout, b"0\n",
            "blocks in use in a fresh run's /tmp: {o:?}"
        );
    }
}
