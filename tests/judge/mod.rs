//! Judging core through the real native sandbox: the shipped problems verify, the
//! whitespace rules end to end (V7), interactive hostile programs (V8), the compile side
//! (C1–C4) and custom / testlib validators mapping to IE.
//!
//! Needs the native sandbox (root, cgroups); without it every test prints why it is
//! skipped. Languages whose toolchain is missing are skipped with the reason printed.

use std::path::PathBuf;
use std::sync::{Arc, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use ::judge::judge::program::{Program, SourceFile, COMPILE_MESSAGE_CAP, TRUNCATED_MARKER};
use ::judge::judge::runner::{judge_program, JudgeOptions};
use ::judge::judge::verify::verify;
use ::judge::judge::{judge, JudgeEvent, JudgeResult, Languages, Problem, Verdict};
use ::judge::sandbox::Sandbox;

mod cli;
mod languages;

/// The native sandbox (one instance shared by every test, as a worker pool shares one)
/// with the process-wide sandbox lock held (see `util::sandbox_lock`), or `None` (with
/// the reason printed) when this host cannot run it.
pub fn sandbox() -> Option<Locked> {
    static SHARED: OnceLock<Result<Arc<dyn Sandbox>, String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| ::judge::sandbox::open("native").map_err(|e| e.to_string()));
    match shared {
        Ok(s) => Some(Locked {
            _lock: crate::util::sandbox_lock(),
            sb: s.clone(),
        }),
        Err(e) => {
            eprintln!("SKIPPED: the native sandbox is unavailable here: {e}");
            None
        }
    }
}

/// The shared sandbox while the lock is held.
pub struct Locked {
    _lock: MutexGuard<'static, ()>,
    sb: Arc<dyn Sandbox>,
}

impl std::ops::Deref for Locked {
    type Target = Arc<dyn Sandbox>;
    fn deref(&self) -> &Arc<dyn Sandbox> {
        &self.sb
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Writes `files` under a fresh package folder named `name` and loads it.
fn package(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Problem) {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join(name);
    for (rel, c) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, c).unwrap();
    }
    let p = Problem::load(&dir).unwrap();
    (t, p)
}

fn run(sb: &dyn Sandbox, p: &Problem, lang: &str, src: &str) -> JudgeResult {
    let langs = Languages::builtin();
    let l = langs.get(lang).unwrap();
    judge(
        sb,
        p,
        l,
        src.as_bytes(),
        &JudgeOptions::default(),
        &mut |_| {},
    )
}

fn toolchain(lang: &str) -> bool {
    match Languages::builtin().get(lang).unwrap().check_toolchain() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("SKIPPED ({lang}): {e}");
            false
        }
    }
}

fn verify_shipped(name: &str) {
    let Some(sb) = sandbox() else { return };
    let mut p = Problem::load(&repo().join("problems").join(name)).unwrap();
    let langs = Languages::builtin();
    let report = verify(sb.as_ref(), &mut p, &langs, &mut |_| {});
    for s in &report.submissions {
        if let Some(why) = &s.skipped {
            eprintln!("SKIPPED {name}/{}: {why}", s.path);
        }
    }
    let bad: Vec<String> = report
        .submissions
        .iter()
        .filter(|s| !s.ok)
        .map(|s| format!("{} -> {:?} {:?}: {}", s.path, s.verdict, s.score, s.message))
        .collect();
    assert!(
        report.ok,
        "{name}: {bad:#?}\nwarnings: {:?}",
        report.warnings
    );
    assert!(report
        .submissions
        .iter()
        .any(|s| s.expected == "accepted" && s.verdict == Some(Verdict::AC)));
}

#[test]
fn shipped_aplusb_verifies() {
    verify_shipped("aplusb");
}

#[test]
fn shipped_divide_verifies() {
    verify_shipped("divide");
}

#[test]
fn shipped_guess_verifies() {
    verify_shipped("guess");
}

#[test]
fn shipped_sumbig_verifies() {
    verify_shipped("sumbig");
}

#[test]
fn shipped_derangement_verifies() {
    verify_shipped("derangement");
}

#[test]
fn every_shipped_problem_has_a_verify_test() {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("problems"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["aplusb", "derangement", "divide", "guess", "sumbig"]
    );
    let langs = Languages::builtin();
    // aplusb has an accepted solution in every language.
    let accepted = repo().join("problems/aplusb/submissions/accepted");
    let mut ids: Vec<String> = std::fs::read_dir(&accepted)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name == "aplusb20.cpp" {
                "cpp20".to_string()
            } else {
                langs
                    .guess(&path, &std::fs::read(&path).unwrap())
                    .unwrap()
                    .id
                    .clone()
            }
        })
        .collect();
    ids.sort();
    let mut all: Vec<String> = langs.all().iter().map(|l| l.id.clone()).collect();
    all.sort();
    assert_eq!(ids, all);
}

#[test]
fn shipped_problems_load_with_their_types() {
    let load = |n: &str| Problem::load(&repo().join("problems").join(n)).unwrap();
    let a = load("aplusb");
    assert_eq!(
        (a.time_limit_ms(), a.memory_limit_bytes(), a.test_count()),
        (2000, 256 << 20, 6)
    );
    assert!(!a.is_interactive() && !a.is_scoring());
    let d = load("divide");
    assert_eq!(d.tests[0].validator_args, ["float_tolerance", "1e-6"]);
    let g = load("guess");
    assert!(g.is_interactive());
    let s = load("sumbig");
    assert!(s.is_scoring());
    assert_eq!(s.max_score(), Some(100.0));
    let p = load("derangement");
    assert!(matches!(
        p.validator,
        ::judge::judge::problem::ValidatorKind::Custom { .. }
    ));
}

/// A package without a time limit: `judge problem verify` derives it from the accepted
/// submissions (smallest whole second ≥ 2 × the slowest accepted run), checks the
/// time_limit_exceeded ones still time out at 1.5 × that, and writes `.timelimit`.
#[test]
fn time_limit_is_derived_from_the_accepted_submissions() {
    let Some(_sb) = sandbox() else { return };
    if !toolchain("c") {
        return;
    }
    let (t, p) = package(
        "derive",
        &[
            ("problem.yaml", "problem_format_version: 2023-07-draft\nname: Derive\n"),
            ("data/secret/1.in", "2 3\n"),
            ("data/secret/1.ans", "5\n"),
            (
                "submissions/accepted/add.c",
                "#include <stdio.h>\nint main(){long long a,b; scanf(\"%lld %lld\",&a,&b); printf(\"%lld\\n\",a+b);}\n",
            ),
            (
                "submissions/time_limit_exceeded/spin.c",
                "int main(){volatile unsigned long x=0; for(;;) x++;}\n",
            ),
        ],
    );
    assert_eq!(
        p.time_limit_source,
        ::judge::judge::problem::TimeLimitSource::Default
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_judge"))
        .args(["problem", "verify", "--json"])
        .arg(&p.dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    assert_eq!(v["time_limit_derived"], true);
    assert_eq!(v["time_limit_ms"], 1000);
    assert_eq!(
        std::fs::read_to_string(p.dir.join(".timelimit"))
            .unwrap()
            .trim(),
        "1"
    );
    let again = Problem::load(&p.dir).unwrap();
    assert_eq!(again.time_limit_ms(), 1000);
    assert_eq!(
        again.time_limit_source,
        ::judge::judge::problem::TimeLimitSource::TimelimitFile
    );
    drop(t);
}

/// Java's heap is capped at the memory limit (-Xmx) and an OutOfMemoryError is MLE, not
/// RTE; a deep recursion fits the 64 MiB thread stack (-Xss64m).
#[test]
fn java_out_of_memory_is_mle() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("java") {
        return;
    }
    let p = aplusb();
    let hog = "public class Hog { public static void main(String[] a) { long[] x = new long[1 << 27]; x[5] = 1; System.out.println(x.length); } }\n";
    let r = run(sb.as_ref(), &p, "java", hog);
    assert_eq!(r.verdict, Verdict::MLE, "{r:?}");
    assert!(r.tests[0].message.contains("memory"), "{:?}", r.tests[0]);
    let deep = "import java.util.*;\npublic class Deep { static long f(int n) { return n == 0 ? 0 : 1 + f(n - 1); }\n\
                public static void main(String[] a) { Scanner s = new Scanner(System.in); long x = s.nextLong(), y = s.nextLong();\n\
                if (f(200000) != 200000) return; System.out.println(x + y); } }\n";
    let r = run(sb.as_ref(), &p, "java", deep);
    assert_eq!(r.verdict, Verdict::AC, "{r:?}");
}

/// V7: CRLF, no final newline, trailing spaces, extra blank lines, a CRLF answer file:
/// AC under the default validator; only the exact whitespace under space_change_sensitive.
#[test]
fn v7_whitespace_variants() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("python3") {
        return;
    }
    let files = |flags: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("problem.yaml", flags),
            ("data/secret/1-lf.in", ""),
            ("data/secret/1-lf.ans", "1 2\n3\n"),
            ("data/secret/2-crlf.in", ""),
            ("data/secret/2-crlf.ans", "1 2\r\n3\r\n"),
        ]
    };
    let (_t, lenient) = package("lenient", &files("limits: {time_limit: 2}\n"));
    let (_t2, strict) = package(
        "strict",
        &files("limits: {time_limit: 2}\nvalidator_flags: space_change_sensitive\n"),
    );
    let variants = [
        ("crlf", r#"sys.stdout.write("1 2\r\n3\r\n")"#),
        ("no final newline", r#"sys.stdout.write("1 2\n3")"#),
        ("trailing spaces", r#"sys.stdout.write("1 2   \n3 \n")"#),
        ("extra blank lines", r#"sys.stdout.write("1 2\n3\n\n\n\n")"#),
        (
            "tokens on separate lines",
            r#"sys.stdout.write("1\n2\n3\n")"#,
        ),
    ];
    for (what, body) in variants {
        let r = run(
            sb.as_ref(),
            &lenient,
            "python3",
            &format!("import sys\n{body}\n"),
        );
        assert_eq!(r.verdict, Verdict::AC, "{what}: {r:?}");
        assert_eq!(r.tests.len(), 2);
        let s = run(
            sb.as_ref(),
            &strict,
            "python3",
            &format!("import sys\n{body}\n"),
        );
        assert_eq!(s.verdict, Verdict::WA, "strict, {what}: {s:?}");
    }
    // Under space_change_sensitive, the exact answer passes the LF test but not the CRLF one…
    let exact = run(
        sb.as_ref(),
        &strict,
        "python3",
        "import sys\nsys.stdout.write('1 2\\n3\\n')\n",
    );
    assert_eq!(exact.verdict, Verdict::WA);
    assert_eq!(exact.tests[0].verdict, Verdict::AC);
    assert_eq!(exact.tests[1].verdict, Verdict::WA);
    assert!(
        exact.tests[1].message.contains("whitespace"),
        "{:?}",
        exact.tests[1]
    );
    // …and a wrong token is WA in both.
    let wrong = run(sb.as_ref(), &lenient, "python3", "print('1 2\\n4')\n");
    assert_eq!(wrong.verdict, Verdict::WA);
    assert!(
        wrong.tests[0].message.contains("token 3"),
        "{:?}",
        wrong.tests[0]
    );
}

/// V8: interactive hostile programs against the shipped guess problem.
#[test]
fn v8_interactive_hostile_programs() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("python3") || !toolchain("c") {
        return;
    }
    let p = Problem::load(&repo().join("problems/guess")).unwrap();
    let wall = ::judge::judge::runner::wall_limit_ms(p.time_limit_ms());
    let bound = Duration::from_millis(wall + 2000 + 5000);

    // (a) A query without a flush, then waiting for the reply: TLE by the wall clock.
    let t = Instant::now();
    let a = run(sb.as_ref(), &p, "c", "#include <stdio.h>\nint main(){printf(\"? 500000\\n\"); char r[8]; scanf(\"%7s\", r); return 0;}\n");
    assert_eq!(a.verdict, Verdict::TLE, "{a:?}");
    assert_eq!(a.tests.len(), 1, "stops at the first test");
    assert!(
        t.elapsed() < bound,
        "the judge is free within the wall limit: {:?}",
        t.elapsed()
    );

    // (b) Flooding queries without reading replies: both block; TLE or the interactor's WA.
    let t = Instant::now();
    let b = run(
        sb.as_ref(),
        &p,
        "c",
        "#include <stdio.h>\nint main(){for(;;){printf(\"? 1\\n\"); fflush(stdout);} }\n",
    );
    assert!(matches!(b.verdict, Verdict::TLE | Verdict::WA), "{b:?}");
    assert!(t.elapsed() < bound, "{:?}", t.elapsed());

    // (c) Exiting early: WA from the interactor.
    let c = run(sb.as_ref(), &p, "python3", "pass\n");
    assert_eq!(c.verdict, Verdict::WA, "{c:?}");
    assert!(
        c.tests[0].message.contains("without finding"),
        "{:?}",
        c.tests[0]
    );

    // The validator's WA wins over the program's later failure: too many queries, after
    // which the program dies on EOF (it would be RTE on its own).
    let d = run(
        sb.as_ref(),
        &p,
        "python3",
        "for y in range(1, 100):\n    print('?', y, flush=True)\n    input()\n",
    );
    assert_eq!(d.verdict, Verdict::WA, "{d:?}");
    assert!(
        d.tests[0].message.contains("more than 25"),
        "{:?}",
        d.tests[0]
    );

    // And the judge is healthy: a correct program is accepted right after.
    let ok = run(
        sb.as_ref(),
        &p,
        "python3",
        &std::fs::read_to_string(
            repo().join("problems/guess/submissions/accepted/binary_search.py"),
        )
        .unwrap(),
    );
    assert_eq!(ok.verdict, Verdict::AC, "{ok:?}");
    assert_eq!(ok.tests.len(), p.test_count());
}

fn aplusb() -> Problem {
    Problem::load(&repo().join("problems/aplusb")).unwrap()
}

/// No process whose command line contains `marker` is left (waits up to 2 s).
fn assert_no_process_with(marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut found = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name();
            if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).contains(marker) {
                    found.push(name.to_string_lossy().into_owned());
                }
            }
        }
        if found.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left running: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Judges a C++ program saved as `<marker>.cpp` so its compiler processes can be found.
fn judge_cpp_marked(
    sb: &dyn Sandbox,
    p: &Problem,
    marker: &str,
    src: &str,
) -> (JudgeResult, Duration) {
    let langs = Languages::builtin();
    let lang = langs.get("cpp").unwrap();
    let program = Program {
        files: vec![SourceFile {
            name: format!("{marker}.cpp"),
            content: Arc::new(src.as_bytes().to_vec()),
        }],
        main: 0,
    };
    let t = Instant::now();
    let r = judge_program(sb, p, lang, &program, &JudgeOptions::default(), &mut |_| {});
    (r, t.elapsed())
}

/// How long a compile may take before the judge has failed to stop it: the compile
/// step's wall-clock limit plus 5 s for the judge's own work.
fn compile_bound() -> Duration {
    use ::judge::judge::program::{COMPILE_TIME_MS, COMPILE_WALL_FACTOR};
    Duration::from_millis(COMPILE_TIME_MS * COMPILE_WALL_FACTOR + 5000)
}

fn marker(what: &str) -> String {
    format!("judgetest_{what}_{}", uuid::Uuid::new_v4().simple())
}

/// S4: the compile step runs in the sandbox. Sources that pull host files in at compile
/// time (`#include` of a host canary and of /etc/shadow, `.incbin` of the canary through
/// inline assembly) see only the box: CE, the canary unchanged and its content in no
/// message, no compiler process left.
#[test]
fn s4_compile_time_host_file_access_stays_in_the_box() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let canary =
        std::env::temp_dir().join(format!("judge-canary-{}", uuid::Uuid::new_v4().simple()));
    let secret = format!("canary-secret-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(&canary, format!("int leaked = 1; // {secret}\n")).unwrap();
    let before = std::fs::metadata(&canary).unwrap();
    let sources = [
        format!(
            "#include \"{}\"\nint main() {{ return leaked; }}\n",
            canary.display()
        ),
        "#include \"/etc/shadow\"\nint main() {}\n".to_string(),
        format!(
            "asm(\".section .rodata\\n.incbin \\\"{}\\\"\\n.text\");\nint main() {{}}\n",
            canary.display()
        ),
    ];
    for src in &sources {
        let m = marker("s4");
        let (r, _) = judge_cpp_marked(sb.as_ref(), &aplusb(), &m, src);
        assert_eq!(r.verdict, Verdict::CE, "{src}: {r:?}");
        assert!(!r.compile.message.contains(&secret), "{r:?}");
        assert_no_process_with(&m);
    }
    let after = std::fs::metadata(&canary).unwrap();
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        format!("int leaked = 1; // {secret}\n")
    );
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());
    std::fs::remove_file(&canary).unwrap();
}

/// C1: including a device that never ends: CE within the compile limit.
#[test]
fn c1_include_of_endless_devices_is_a_compile_error() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let p = aplusb();
    for dev in ["/dev/random", "/dev/zero", "/dev/stdin", "/proc/self/fd/0"] {
        let m = marker("c1");
        let (r, took) = judge_cpp_marked(
            sb.as_ref(),
            &p,
            &m,
            // No main of its own: even an empty include cannot link.
            &format!("#include \"{dev}\"\n"),
        );
        assert_eq!(r.verdict, Verdict::CE, "{dev}: {r:?}");
        assert!(
            !r.compile.ok && !r.compile.message.is_empty(),
            "{dev}: {r:?}"
        );
        assert!(r.tests.is_empty());
        assert!(took < compile_bound(), "{dev}: took {took:?}");
        assert_no_process_with(&m);
    }
}

/// C2: a 2 GB initialised global array: CE with a clear message; nothing left behind.
#[test]
fn c2_huge_initialised_array_is_a_compile_error() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let m = marker("c2");
    let (r, took) = judge_cpp_marked(
        sb.as_ref(),
        &aplusb(),
        &m,
        "char big[2000000000] = {1};\nint main() { return big[12345]; }\n",
    );
    assert_eq!(r.verdict, Verdict::CE, "{r:?}");
    assert!(!r.compile.message.trim().is_empty());
    assert!(took < compile_bound(), "{took:?}");
    assert_no_process_with(&m);
}

/// C3: exponential self-inclusion and a constexpr loop of 1e11 steps: CE with the
/// compile limit named; every compiler process killed.
#[test]
fn c3_compile_bombs_hit_the_compile_limit() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let m = marker("c3");
    let bomb = format!("#include \"{m}.cpp\"\n#include \"{m}.cpp\"\nint main() {{}}\n");
    let (r, took) = judge_cpp_marked(sb.as_ref(), &aplusb(), &m, &bomb);
    assert_eq!(r.verdict, Verdict::CE, "{r:?}");
    assert!(took < compile_bound(), "{took:?}");
    assert_no_process_with(&m);

    let m = marker("c3loop");
    let src = "constexpr long long f() { long long s = 0; for (long long i = 0; i < 100000000000LL; i++) s += i; return s; }\n\
               constexpr long long x = f();\nint main() { return x == 0; }\n";
    let (r, took) = judge_cpp_marked(sb.as_ref(), &aplusb(), &m, src);
    assert_eq!(r.verdict, Verdict::CE, "{r:?}");
    assert!(took < compile_bound(), "{took:?}");
    assert_no_process_with(&m);
}

/// C4: thousands of errors: CE with the message capped at 64 KiB + "\n[truncated]".
#[test]
fn c4_compiler_flood_is_capped() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let mut src = String::from("#include <string>\n#include <utility>\nint main() {\n");
    for i in 0..10_000 {
        src.push_str(&format!("  bool b{i} = std::pair<int, std::string>(1, \"a\") == std::pair<std::string, int>(\"a\", 1);\n"));
    }
    src.push_str("}\n");
    let m = marker("c4");
    let (r, _) = judge_cpp_marked(sb.as_ref(), &aplusb(), &m, &src);
    assert_eq!(r.verdict, Verdict::CE, "{:?}", r.verdict);
    assert!(
        r.compile.message.len() <= COMPILE_MESSAGE_CAP + TRUNCATED_MARKER.len(),
        "{}",
        r.compile.message.len()
    );
    assert!(
        r.compile.message.ends_with(TRUNCATED_MARKER),
        "{}",
        &r.compile.message[r.compile.message.len().saturating_sub(200)..]
    );
    assert!(r.compile.message.contains("error"));
    assert_no_process_with(&m);
}

/// Compile once: the events come in order and every test reuses the one binary.
#[test]
fn events_in_order_and_one_compile() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") {
        return;
    }
    let p = aplusb();
    let langs = Languages::builtin();
    let src =
        std::fs::read(repo().join("problems/aplusb/submissions/accepted/aplusb.cpp")).unwrap();
    let mut events = Vec::new();
    let r = judge(
        sb.as_ref(),
        &p,
        langs.get("cpp").unwrap(),
        &src,
        &JudgeOptions::default(),
        &mut |e| events.push(e.clone()),
    );
    assert_eq!(r.verdict, Verdict::AC);
    assert_eq!(events.first(), Some(&JudgeEvent::Compiling));
    assert!(
        matches!(&events[1], JudgeEvent::Compiled { compile, total_tests } if compile.ok && *total_tests == p.test_count())
    );
    for (k, e) in events[2..events.len() - 1].iter().enumerate() {
        assert!(
            matches!(e, JudgeEvent::TestFinished { index, total, .. } if *index == k && *total == p.test_count()),
            "{e:?}"
        );
    }
    assert!(matches!(events.last(), Some(JudgeEvent::Finished { result }) if *result == r));
    assert_eq!(
        r.tests.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()[..2],
        ["sample/1", "secret/01-zero"]
    );
    // --samples runs only the sample; --all keeps going after a rejection.
    let s = judge(
        sb.as_ref(),
        &p,
        langs.get("cpp").unwrap(),
        &src,
        &JudgeOptions {
            samples_only: true,
            ..Default::default()
        },
        &mut |_| {},
    );
    assert_eq!((s.verdict, s.tests.len()), (Verdict::AC, 1));
    let wa =
        std::fs::read(repo().join("problems/aplusb/submissions/wrong_answer/int32.cpp")).unwrap();
    let all = judge(
        sb.as_ref(),
        &p,
        langs.get("cpp").unwrap(),
        &wa,
        &JudgeOptions {
            run_all: true,
            ..Default::default()
        },
        &mut |_| {},
    );
    assert_eq!(all.verdict, Verdict::WA);
    assert_eq!(all.tests.len(), p.test_count());
    assert_eq!(
        all.tests
            .iter()
            .find(|t| t.verdict != Verdict::AC)
            .unwrap()
            .name,
        "secret/03-int32"
    );
}

/// A Kattis validator exiting 0 (or crashing) is the judge's problem: IE, never AC/WA.
#[test]
fn misbehaving_validator_is_an_internal_error() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("python3") {
        return;
    }
    let (_t, p) = package(
        "badval",
        &[
            (
                "problem.yaml",
                "validation: custom\nlimits: {time_limit: 2}\n",
            ),
            (
                "output_validators/v/validate.py",
                "import sys\nsys.exit(0)\n",
            ),
            ("data/secret/1.in", "1\n"),
            ("data/secret/1.ans", "1\n"),
        ],
    );
    let r = run(sb.as_ref(), &p, "python3", "print(1)\n");
    assert_eq!(r.verdict, Verdict::IE, "{r:?}");
    assert!(
        r.tests[0].message.contains("exited with code 0"),
        "{:?}",
        r.tests[0]
    );
}

/// testlib checkers: `check input output answer`; 0 AC, 1 WA, 2 PE → WA, 3 FAIL → IE,
/// 7 points (scoring).
#[test]
fn testlib_checker_exit_codes() {
    let Some(sb) = sandbox() else { return };
    if !toolchain("cpp") || !toolchain("python3") {
        return;
    }
    // A stand-in header: the checker only needs to include "testlib.h" to be one.
    let checker = r#"#include "testlib.h"
#include <cstdio>
int main(int argc, char** argv) {
    FILE* f = std::fopen(argv[2], "r");
    int code = 3;
    if (!f || std::fscanf(f, "%d", &code) != 1) code = 3;
    std::fprintf(stderr, code == 7 ? "points 0.5 half right" : "checker says %d", code);
    return code;
}
"#;
    let (_t, p) = package(
        "tl",
        &[
            (
                "problem.yaml",
                "validation: custom\nlimits: {time_limit: 2}\n",
            ),
            ("output_validators/check/check.cpp", checker),
            ("output_validators/check/testlib.h", "#pragma once\n"),
            ("data/secret/1.in", "\n"),
            ("data/secret/1.ans", "\n"),
        ],
    );
    for (code, verdict, msg) in [
        (0, Verdict::AC, "checker says 0"),
        (1, Verdict::WA, "checker says 1"),
        (2, Verdict::WA, "presentation"),
        (3, Verdict::IE, "FAIL"),
    ] {
        let r = run(sb.as_ref(), &p, "python3", &format!("print({code})\n"));
        assert_eq!(r.verdict, verdict, "exit {code}: {r:?}");
        assert!(
            r.tests[0].message.contains(msg),
            "exit {code}: {:?}",
            r.tests[0]
        );
    }
}

/// A missing toolchain is reported naming the Debian package (never a crash).
#[test]
fn missing_toolchains_name_their_package() {
    for l in Languages::builtin().all() {
        if let Err(e) = l.check_toolchain() {
            let msg = e.to_string();
            assert!(msg.contains("apt-get install"), "{msg}");
            eprintln!("note: {msg}");
        }
    }
}
