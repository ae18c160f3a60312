//! The language table's compile and run lines judged end to end: honest contestant
//! programs that a run line (flags, limits) once turned into a wrong verdict (QA), each
//! through the real native sandbox, and the limits that must still hold.

use std::time::{Duration, Instant};

use ::judge::judge::{JudgeResult, Problem, Verdict};

use super::{package, run, sandbox, toolchain, Locked};

/// A one-test package: input `3 4`, answer `7`, 2 s of CPU time, `memory_mib` MiB.
fn add(memory_mib: u32) -> (tempfile::TempDir, Problem) {
    let yaml = format!("name: Add\nlimits:\n  time_limit: 2\n  memory: {memory_mib}\n");
    package(
        "add",
        &[
            ("problem.yaml", yaml.as_str()),
            ("data/secret/1.in", "3 4\n"),
            ("data/secret/1.ans", "7\n"),
        ],
    )
}

/// Judges `src` as `lang` on [`add`] under 256 MiB and expects `verdict`.
fn expect(sb: &Locked, lang: &str, what: &str, src: &str, verdict: Verdict) -> JudgeResult {
    let (_t, p) = add(256);
    let r = run(sb.as_ref(), &p, lang, src);
    assert_eq!(r.verdict, verdict, "{lang}, {what}: {r:#?}");
    r
}

/// 20 threads (C++) and a process pool of 14 (Python) are honest programs: the run's
/// pids limit (processes + threads) leaves room for them…
#[test]
fn threads_and_process_pools_fit_the_pids_limit() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") || !toolchain("python3") {
        return;
    }
    let threads = "#include <bits/stdc++.h>\nint main(){long long a,b;std::cin>>a>>b;std::vector<std::thread> t;std::atomic<int> ready{0};int N=20;\n\
                   for(int i=0;i<N;i++)t.emplace_back([&]{ready++;while(ready<N)std::this_thread::yield();});for(auto&x:t)x.join();std::cout<<a+b<<\"\\n\";}\n";
    expect(&sb, "cpp", "20 threads", threads, Verdict::AC);
    let pool = r#"import multiprocessing as mp, sys
def f(x): return x*x
if __name__=='__main__':
    a,b=map(int,sys.stdin.read().split())
    with mp.Pool(14) as p: r=p.map(f,range(100))
    assert sum(r)==328350
    print(a+b)
"#;
    expect(&sb, "python3", "Pool(14)", pool, Verdict::AC);
}

/// …while a fork bomb is still stopped (by the pids, memory or CPU limit), within the
/// wall-clock limit, and the next run is normal.
#[test]
fn fork_bomb_is_still_stopped() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("c") {
        return;
    }
    let t = Instant::now();
    let bomb = "#include <unistd.h>\nint main(void){ for(;;) fork(); }\n";
    let (_t, p) = add(256);
    let r = run(sb.as_ref(), &p, "c", bomb);
    assert!(
        matches!(r.verdict, Verdict::TLE | Verdict::MLE | Verdict::RTE),
        "{r:#?}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let ok = run(
        sb.as_ref(),
        &p,
        "c",
        "#include <stdio.h>\nint main(){long long a,b; scanf(\"%lld %lld\",&a,&b); printf(\"%lld\\n\",a+b);}\n",
    );
    assert_eq!(ok.verdict, Verdict::AC, "{ok:#?}");
}

/// Python's `exit()` and `quit()` (defined by the `site` module) end an honest program
/// normally: the run line must import `site`.
#[test]
fn python_exit_and_quit_are_defined() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("python3") {
        return;
    }
    for (what, src) in [
        ("exit()", "a,b=map(int,input().split())\nprint(a+b)\nexit()\n"),
        (
            "quit(0)",
            "a,b=map(int,input().split())\nif True:\n    print(a+b)\n    quit(0)\n",
        ),
        (
            "sys.exit() and the script's folder on sys.path",
            "import sys, os\nassert os.path.dirname(os.path.abspath(sys.argv[0])) in map(os.path.abspath, sys.path)\na,b=map(int,input().split())\nprint(a+b)\nsys.exit()\n",
        ),
    ] {
        expect(&sb, "python3", what, src, Verdict::AC);
    }
}

/// PHP: a notice or warning goes to stderr, never into the answer; the extensions
/// Debian enables for the CLI (ctype here) are loaded.
#[test]
fn php_warnings_go_to_stderr_and_extensions_load() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("php") {
        return;
    }
    let warn = "<?php\n[$a,$b]=array_map('intval',explode(' ',trim(fgets(STDIN))));\n\
                $cnt[$a] += 1;   // undefined variable and key: a warning, harmless\necho $a+$b, \"\\n\";\n";
    expect(&sb, "php", "a warning", warn, Verdict::AC);
    // Debian enables ctype for the CLI with /etc/php/<version>/cli/conf.d/20-ctype.ini.
    let enabled = std::fs::read_dir("/etc/php")
        .into_iter()
        .flatten()
        .flatten()
        .any(|v| {
            std::fs::read_dir(v.path().join("cli/conf.d"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|f| f.file_name().to_string_lossy().ends_with("ctype.ini"))
        });
    if !enabled {
        eprintln!("SKIPPED (php ctype): no /etc/php/*/cli/conf.d/*ctype.ini here");
        return;
    }
    let ctype = "<?php\n$l=trim(fgets(STDIN)); [$a,$b]=explode(' ',$l);\n\
                 if (!ctype_digit(ltrim($a,'-'))) { exit(1); }\necho intval($a)+intval($b), \"\\n\";\n";
    expect(&sb, "php", "ctype_digit", ctype, Verdict::AC);
}

/// Java: the source file is named after the real public class whatever the comments
/// say, and a `package` declaration runs (the jar's main class is `foo.Main`).
#[test]
fn java_main_class_and_package() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("java") {
        return;
    }
    let main = "public class Main { public static void main(String[] x){ java.util.Scanner s=new java.util.Scanner(System.in); System.out.println(s.nextLong()+s.nextLong()); } }\n";
    for head in [
        "/* Solution for A+B.\n * Uses a public class with a static main. */\n",
        "// Note: the helper is not a public class Helper\nimport java.util.*;\n",
        "package foo;\n",
        "package org.example.sol; // public class Nope\n",
    ] {
        expect(&sb, "java", head, &format!("{head}{main}"), Verdict::AC);
    }
}

/// Java: the class with `main` runs even when another top-level type is the public one
/// (the file is named after that one), and a class named with a Unicode escape compiles
/// (QA: `public class Helper {}` + `class Main`, a `public sealed interface`,
/// `public class \u0053ol`).
#[test]
fn java_main_class_beside_a_public_type() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("java") {
        return;
    }
    let main = "public static void main(String[] a){ Scanner s=new Scanner(System.in); System.out.println(s.nextInt()+s.nextInt()); }";
    for (what, src) in [
        (
            "public class Helper without main",
            format!("import java.util.*;\npublic class Helper {{ static int two(){{return 2;}} }}\nclass Main {{ {main} }}\n"),
        ),
        (
            "public sealed interface",
            format!("import java.util.*;\npublic sealed interface Shape permits Circle {{}}\nfinal class Circle implements Shape {{}}\nclass Main {{ {main} }}\n"),
        ),
        (
            "unicode escape in the class name",
            format!("import java.util.*;\npublic class \\u0053ol {{ {main} }}\n"),
        ),
        (
            "package and a public type without main",
            format!("package a.b;\nimport java.util.*;\npublic class Util {{}}\nclass Sol {{ {main} }}\n"),
        ),
    ] {
        expect(&sb, "java", what, &src, Verdict::AC);
    }
}

/// Java: one `int[45_000_000]` (172 MiB) under 256 MiB fits: the old generation, where
/// an array too large for the young one goes, is most of the heap (-XX:NewRatio), not
/// two thirds of it.
#[test]
fn java_large_array_fits_the_old_generation() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("java") {
        return;
    }
    let src = "import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s=new Scanner(System.in); long a=s.nextLong(), b=s.nextLong();\n\
               int[] big=new int[45_000_000]; for(int i=0;i<big.length;i++)big[i]=i;\n\
               System.out.println(a+b+(big[7]-7)); } }\n";
    expect(&sb, "java", "int[45_000_000]", src, Verdict::AC);
}

/// Node: ~100 MiB of live objects plus garbage under 256 MiB is collected before the
/// memory limit (the heap is sized from the limit, not from the host's RAM), and a
/// recursion 100,000 deep fits the stack (--stack-size).
#[test]
fn node_heap_and_stack_follow_the_memory_limit() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("javascript") {
        return;
    }
    let read =
        "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(BigInt);\n";
    let garbage = format!(
        "{read}const live=[]; for(let i=0;i<1_000_000;i++) live.push({{x:i,y:[i,i+1]}});\n\
         let s=0; for(let it=0;it<30;it++){{ const tmp=new Array(200000); for(let i=0;i<tmp.length;i++) tmp[i]={{v:i*it}}; s+=tmp[it].v; }}\n\
         if (live.length!==1_000_000) process.exit(3);\nconsole.log((a+b).toString());\n"
    );
    expect(
        &sb,
        "javascript",
        "live data and garbage",
        &garbage,
        Verdict::AC,
    );
    let deep = format!(
        "{read}function dfs(n){{ return n===0?0:1+dfs(n-1); }}\nif (dfs(100000)!==100000) process.exit(3);\nconsole.log((a+b).toString());\n"
    );
    expect(&sb, "javascript", "recursion 1e5 deep", &deep, Verdict::AC);
    // An endless recursion is still a RangeError (a runtime error), not a crash of V8
    // past the real stack.
    let endless = "function f(n){ return 1+f(n+1); }\ntry { f(0); } catch (e) { if (e instanceof RangeError) process.exit(4); }\n";
    let r = expect(
        &sb,
        "javascript",
        "endless recursion",
        endless,
        Verdict::RTE,
    );
    assert!(
        r.tests[0].message.contains("exit code 4"),
        "{:?}",
        r.tests[0]
    );
}

/// Node: a recursion 1,000,000 deep fits under 256 MiB (--stack-size is most of half
/// the box's stack rlimit, not a quarter of the memory limit: QA `js_1e6.js` was RTE
/// using 72 MB), and an endless one is a RangeError, never a crash past the real stack
/// nor MLE, under 64 MiB, 256 MiB and 1 GiB.
#[test]
fn node_stack_follows_the_stack_rlimit() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("javascript") {
        return;
    }
    let deep = "function f(n){ if(n==0) return 0; return f(n-1)+1; }\n\
                const l=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);\n\
                console.log(l[0]+l[1]+f(1000000)-1000000);\n";
    let (_t, p) = add(256);
    let r = run(sb.as_ref(), &p, "javascript", deep);
    assert_eq!(r.verdict, Verdict::AC, "1e6 deep: {r:#?}");
    let endless = "function f(n){ return 1+f(n+1); }\ntry { f(0); } catch (e) { if (e instanceof RangeError) process.exit(4); }\n";
    for mib in [64, 256, 1024] {
        let (_t, p) = add(mib);
        let r = run(sb.as_ref(), &p, "javascript", endless);
        assert_eq!(r.verdict, Verdict::RTE, "{mib} MiB: {r:#?}");
        assert!(
            r.tests[0].message.contains("exit code 4"),
            "{mib} MiB: {:?}",
            r.tests[0]
        );
    }
}

/// Ruby: a recursion 100,000 deep fits the VM stack (RUBY_THREAD_VM_STACK_SIZE); an
/// endless one is still a SystemStackError.
#[test]
fn ruby_deep_recursion_fits() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("ruby") {
        return;
    }
    let deep = "a,b=STDIN.read.split.map(&:to_i)\ndef f(n) n==0 ? 0 : 1+f(n-1) end\nexit 3 unless f(100000)==100000\nputs a+b\n";
    expect(&sb, "ruby", "recursion 1e5 deep", deep, Verdict::AC);
    let endless = "def f(n) 1+f(n+1) end\nbegin\n  f(0)\nrescue SystemStackError\n  exit 4\nend\n";
    let r = expect(&sb, "ruby", "endless recursion", endless, Verdict::RTE);
    assert!(
        r.tests[0].message.contains("exit code 4"),
        "{:?}",
        r.tests[0]
    );
}

/// Ruby: the VM stack follows the memory limit (RUBY_THREAD_VM_STACK_SIZE is
/// `{vm_stack_bytes}`): a recursion 1,000,000 deep fits under 512 MiB and 1 GiB (it was a
/// SystemStackError with a fixed 64 MiB, QA `rb_1e6.rb`), and an endless one, caught or
/// not, is a SystemStackError, neither MLE nor TLE, under 64 MiB, 256 MiB and 1 GiB.
#[test]
fn ruby_vm_stack_follows_the_memory_limit() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("ruby") {
        return;
    }
    let deep = "def f(n) (n==0) ? 0 : f(n-1)+1 end\na,b=gets.split.map(&:to_i)\nputs a+b+f(1000000)-1000000\n";
    for mib in [512, 1024] {
        let (_t, p) = add(mib);
        let r = run(sb.as_ref(), &p, "ruby", deep);
        assert_eq!(r.verdict, Verdict::AC, "1e6 deep, {mib} MiB: {r:#?}");
    }
    let endless = "def f(n) 1+f(n+1) end\nbegin\n  f(0)\nrescue SystemStackError\n  exit 4\nend\n";
    for mib in [64u32, 256, 1024] {
        let (_t, p) = add(mib);
        let r = run(sb.as_ref(), &p, "ruby", endless);
        assert_eq!(r.verdict, Verdict::RTE, "{mib} MiB: {r:#?}");
        assert!(
            r.tests[0].message.contains("exit code 4"),
            "{mib} MiB: {:?}",
            r.tests[0]
        );
        // Uncaught, Ruby builds and prints the whole backtrace: still well within the
        // memory limit, and within the 2 s time limit.
        let r = run(sb.as_ref(), &p, "ruby", "def f(n) 1+f(n+1) end\nf(0)\n");
        assert_eq!(r.verdict, Verdict::RTE, "uncaught, {mib} MiB: {r:#?}");
        assert!(
            r.tests[0].memory_kib < u64::from(mib << 10) * 3 / 4,
            "uncaught, {mib} MiB: {:?}",
            r.tests[0]
        );
    }
}

/// C and C++ compile with OpenMP (`omp_*` calls and `#pragma omp`), and a run uses one
/// thread of it (OMP_NUM_THREADS=1: CPU time counts every thread, and one thread per
/// host core could exceed the pids limit).
#[test]
fn openmp_compiles_and_runs_one_thread() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") || !toolchain("c") {
        return;
    }
    let body = "long long a,b; if(scanf(\"%lld %lld\",&a,&b)!=2) return 1; long s=0;\n\
                #pragma omp parallel for reduction(+:s)\nfor(int i=0;i<1000000;i++) s+=i%3;\n\
                if (s!=999999 || omp_get_max_threads()!=1) return 3; printf(\"%lld\\n\",a+b); return 0; }\n";
    for (lang, head) in [
        (
            "cpp",
            "#include <bits/stdc++.h>\n#include <omp.h>\nint main(){",
        ),
        ("cpp20", "#include <cstdio>\n#include <omp.h>\nint main(){"),
        ("c", "#include <stdio.h>\n#include <omp.h>\nint main(void){"),
    ] {
        expect(&sb, lang, "OpenMP", &format!("{head}{body}"), Verdict::AC);
    }
}

/// An out-of-memory end is MLE even after more than the 64 KiB of stderr the judge
/// keeps from the start: the last 16 KiB are kept as well, where the marker is (QA:
/// 100 KB of debug output, then a MemoryError, was RTE).
#[test]
fn out_of_memory_marker_after_long_stderr() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("python3") {
        return;
    }
    let src = "import sys\nsys.stderr.write('x' * 100000 + '\\n')\na = [0] * 10**11\n";
    let r = expect(
        &sb,
        "python3",
        "MemoryError after 100 KB of stderr",
        src,
        Verdict::MLE,
    );
    assert!(r.tests[0].message.contains("out of memory"), "{r:#?}");
}
