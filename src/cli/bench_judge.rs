//! `judge bench judge --tests N`: judging N tests of A+B in C++ (compiled once, in the
//! sandbox) against N bare runs of the same binary (fork+exec, no sandbox, output read
//! back), in one run; prints both and their ratio (target ≤ 2×).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::Rng;

use crate::judge::program::{compile, CompileLimits, Program};
use crate::judge::runner::{judge_program, submission_run_spec, JudgeOptions};
use crate::judge::{JudgeEvent, Languages, Problem, Verdict};
use crate::sandbox::{Output, Stdin};

const APLUSB_CPP: &str = "#include <cstdio>\nint main() { long long a, b; if (std::scanf(\"%lld %lld\", &a, &b) != 2) return 1; std::printf(\"%lld\\n\", a + b); }\n";

/// Writes an A+B package with `n` secret tests under `dir`.
fn write_problem(dir: &std::path::Path, n: u32) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("problem.yaml"),
        "name: A plus B (bench)\nlimits:\n  time_limit: 1\n  memory: 256\n",
    )?;
    let secret = dir.join("data/secret");
    std::fs::create_dir_all(&secret)?;
    let mut rng = rand::thread_rng();
    for i in 0..n {
        let (a, b): (i64, i64) = (
            rng.gen_range(-1_000_000_000..=1_000_000_000),
            rng.gen_range(-1_000_000_000..=1_000_000_000),
        );
        std::fs::write(secret.join(format!("{i:04}.in")), format!("{a} {b}\n"))?;
        std::fs::write(secret.join(format!("{i:04}.ans")), format!("{}\n", a + b))?;
    }
    Ok(())
}

/// One round's timings.
struct Round {
    compile: Duration,
    judging: Duration,
    bare: Duration,
    sandbox: Duration,
}

/// Runs the benchmark: `rounds` rounds, each judging then bare runs then sandbox-only
/// runs; the minimum of each quantity over the rounds is reported (the least disturbed
/// measurement on a shared machine), with every round printed too.
pub fn run(tests: u32, rounds: u32, sandbox_name: &str) -> anyhow::Result<ExitCode> {
    if tests == 0 || rounds == 0 {
        bail!("--tests and --rounds must be at least 1");
    }
    let tmp = tempfile::Builder::new().prefix("judge-bench").tempdir()?;
    let pkg = tmp.path().join("aplusb");
    std::fs::create_dir(&pkg)?;
    write_problem(&pkg, tests)?;
    let problem = Problem::load(&pkg)?;
    let langs = Languages::builtin();
    let lang = langs.require("cpp")?;
    lang.check_toolchain()?;
    let sandbox = crate::sandbox::open(sandbox_name)
        .with_context(|| format!("opening the {sandbox_name} sandbox"))?;
    let program = Program::single(lang, APLUSB_CPP.as_bytes());

    // The binary for the bare and sandbox-only runs: compiled the same way, copied out.
    let compiled = compile(sandbox.as_ref(), lang, &program, CompileLimits::default())
        .map_err(|e| anyhow::anyhow!("compiling for the bare runs: {e:?}"))?;
    let binary = compiled
        .files
        .iter()
        .find(|f| f.path == "main")
        .context("no binary")?;
    let bin_path = tmp.path().join("main");
    std::fs::write(&bin_path, &binary.content[..])?;
    std::fs::set_permissions(&bin_path, std::fs::Permissions::from_mode(0o755))?;

    let mut out = std::io::stdout();
    writeln!(
        out,
        "A+B in C++, {tests} tests, sandbox {}, {rounds} round(s)",
        sandbox.name()
    )?;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(tests);
    let mut all = Vec::new();
    for r in 0..rounds {
        let round = one_round(
            sandbox.as_ref(),
            &problem,
            lang,
            &program,
            &compiled,
            &bin_path,
        )?;
        writeln!(
            out,
            "round {}: compile {:.1} ms, judging {:.2} ms/test, sandbox alone {:.2} ms/run, bare {:.2} ms/run",
            r + 1,
            round.compile.as_secs_f64() * 1000.0,
            per(round.judging),
            per(round.sandbox),
            per(round.bare)
        )?;
        all.push(round);
    }
    let min = |f: fn(&Round) -> Duration| all.iter().map(f).min().unwrap_or_default();
    let (compile_time, judge_time, bare_time, sandbox_time) = (
        min(|r| r.compile),
        min(|r| r.judging),
        min(|r| r.bare),
        min(|r| r.sandbox),
    );
    let ratio = judge_time.as_secs_f64() / bare_time.as_secs_f64().max(1e-9);
    writeln!(out, "best of {rounds}:")?;
    writeln!(
        out,
        "  compile (once, in the sandbox): {:>9.1} ms",
        compile_time.as_secs_f64() * 1000.0
    )?;
    writeln!(
        out,
        "  judging {tests} tests:             {:>9.1} ms  ({:.2} ms/test)",
        judge_time.as_secs_f64() * 1000.0,
        per(judge_time)
    )?;
    writeln!(
        out,
        "  {tests} bare runs of the binary:    {:>9.1} ms  ({:.2} ms/run)",
        bare_time.as_secs_f64() * 1000.0,
        per(bare_time)
    )?;
    writeln!(
        out,
        "  {tests} sandbox runs alone:        {:>9.1} ms  ({:.2} ms/run)",
        sandbox_time.as_secs_f64() * 1000.0,
        per(sandbox_time)
    )?;
    writeln!(
        out,
        "  judge's own share (judging - sandbox runs): {:.2} ms/test",
        per(judge_time.saturating_sub(sandbox_time))
    )?;
    writeln!(
        out,
        "ratio judging / bare: {ratio:.2}x (target <= 2x); sandbox alone / bare: {:.2}x",
        sandbox_time.as_secs_f64() / bare_time.as_secs_f64().max(1e-9)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn one_round(
    sandbox: &dyn crate::sandbox::Sandbox,
    problem: &Problem,
    lang: &crate::judge::Language,
    program: &Program,
    compiled: &crate::judge::program::Compiled,
    bin_path: &std::path::Path,
) -> anyhow::Result<Round> {
    let tests = problem.tests.len();
    // Judging: compile once, then every test in the sandbox with the default validator.
    let t0 = Instant::now();
    let mut compiled_at = None;
    let result = judge_program(
        sandbox,
        problem,
        lang,
        program,
        &JudgeOptions::default(),
        &mut |e| {
            if let JudgeEvent::Compiled { .. } = e {
                compiled_at = Some(Instant::now());
            }
        },
    );
    let end = Instant::now();
    if result.verdict != Verdict::AC || result.tests.len() != tests {
        bail!(
            "the benchmark's A+B was not accepted: {} ({})",
            result.verdict,
            result.compile.message
        );
    }
    let compiled_at = compiled_at.context("no Compiled event")?;

    // Bare runs of the same binary: fork+exec, output read back and compared.
    let t1 = Instant::now();
    for t in &problem.tests {
        let out = std::process::Command::new(bin_path)
            .stdin(Stdio::from(std::fs::File::open(&t.input)?))
            .stderr(Stdio::null())
            .output()?;
        if out.stdout != std::fs::read(&t.answer)? {
            bail!("bare run of {} printed the wrong answer", t.name);
        }
    }
    let bare = t1.elapsed();

    // The same runs through the sandbox alone (no validation, no events): what the
    // sandbox costs, so the rest of the judging time is the judge's own.
    let t2 = Instant::now();
    for t in &problem.tests {
        let spec = submission_run_spec(
            compiled,
            problem,
            problem.time_limit_ms(),
            Stdin::HostFile(t.input.clone()),
            Output::Capture {
                limit: problem.output_bytes,
                kill_on_overflow: true,
            },
        );
        let out = sandbox.run(&spec)?;
        if out.stdout != std::fs::read(&t.answer)? {
            bail!(
                "sandbox run of {} printed the wrong answer ({:?})",
                t.name,
                out.status
            );
        }
    }
    Ok(Round {
        compile: compiled_at - t0,
        judging: end - compiled_at,
        bare,
        sandbox: t2.elapsed(),
    })
}
