//! The cases, named after their ids in `cases/sandbox-and-verdicts.md`.

use std::sync::Arc;

use judge::sandbox::{Limits, Output, RunSpec, Status, Stdin};

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
        "env; echo ---; id; echo ---; ls /; echo ---; ls /proc | grep -c '^[0-9]'; hostname",
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
    // /proc shows only the box's processes: init, sh, ls/grep (a handful).
    let mut last = parts[3].lines();
    let nprocs: u32 = last.next().unwrap().trim().parse().unwrap();
    assert!(nprocs <= 5, "{nprocs} processes visible");
    assert_eq!(last.next(), Some("box"));
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
        limits(1000, 5000, 64),
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
    let mut spec = prog_spec(bin.clone(), limits(1000, 5000, 64));
    spec.argv.push("1300".into());
    let o = h.run(&spec);
    assert_eq!(o.status, Status::TimeLimit, "{o:?}");
    assert!(o.time_ms < 1050, "TLE detected late: {o:?}");
    let mut spec = prog_spec(bin, limits(1000, 5000, 64));
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
