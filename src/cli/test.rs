//! `judge test SOLUTION --problem DIR`: judge locally, print a table or one JSON object.
//!
//! Exit code: [`Verdict::exit_code`] of the verdict (0 AC with the full score),
//! [`EXIT_PARTIAL_SCORE`] for an accepted submission with less than the full score on a
//! scoring problem, 1 when the command itself failed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::judge::program::Program;
use crate::judge::runner::{judge_program, JudgeOptions};
use crate::judge::{
    JudgeEvent, JudgeResult, Languages, Problem, TestResult, Verdict, EXIT_PARTIAL_SCORE,
};

/// Arguments of `judge test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The solution: a source file, or a folder holding one program.
    pub solution: PathBuf,
    /// The problem package folder (Kattis problem package format).
    #[arg(long, short)]
    pub problem: PathBuf,
    /// Language id (c, cpp, cpp20, python3, java, rust, go, javascript, ruby, php); guessed from the extension when absent.
    #[arg(long)]
    pub lang: Option<String>,
    /// Run only the sample tests.
    #[arg(long)]
    pub samples: bool,
    /// Run every test even after a rejection.
    #[arg(long)]
    pub all: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Sandbox backend: `native` (namespaces, cgroups, seccomp) or `process` (trusted code only).
    #[arg(long, env = "JUDGE_SANDBOX", default_value = "native")]
    pub sandbox: String,
}

/// The exit code of `judge test` / `judge submit` for a result on a problem whose
/// maximum score is `max_score` (scoring problems only).
pub fn exit_code_for(result: &JudgeResult, max_score: Option<f64>) -> u8 {
    match (result.verdict, result.score, max_score) {
        (Verdict::AC, Some(s), Some(m)) if s < m - 1e-9 => EXIT_PARTIAL_SCORE,
        (v, _, _) => v.exit_code(),
    }
}

/// Formats a score without noise: `70`, `62.5`.
pub fn format_score(s: f64) -> String {
    if (s - s.round()).abs() < 1e-9 {
        format!("{}", s.round() as i64)
    } else {
        format!("{s:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Table rows of `judge test`, printed as tests finish.
pub struct Table {
    name_width: usize,
}

impl Table {
    /// A table whose test-name column fits `names`.
    pub fn new<'a>(names: impl Iterator<Item = &'a str>) -> Table {
        Table {
            name_width: names.map(str::len).max().unwrap_or(4).max(4),
        }
    }

    /// The header line.
    pub fn header(&self) -> String {
        format!(
            "{:<w$}  {:<7}  {:>7}  {:>10}  message",
            "test",
            "verdict",
            "time ms",
            "memory KiB",
            w = self.name_width
        )
    }

    /// One row.
    pub fn row(&self, t: &TestResult) -> String {
        let msg = crate::cli::printable(t.message.lines().next().unwrap_or(""));
        let score = t
            .score
            .map(|s| format!(" [score {}]", format_score(s)))
            .unwrap_or_default();
        format!(
            "{:<w$}  {:<7}  {:>7}  {:>10}  {msg}{score}",
            t.name,
            t.verdict.code(),
            t.time_ms,
            t.memory_kib,
            w = self.name_width
        )
        .trim_end()
        .to_string()
    }
}

/// The final line, e.g. `verdict: AC (Accepted)` or `verdict: AC, score 70 / 100`.
pub fn final_line(result: &JudgeResult, max_score: Option<f64>) -> String {
    let mut s = format!(
        "verdict: {} ({})",
        result.verdict.code(),
        result.verdict.long_name()
    );
    if let Some(sc) = result.score {
        s.push_str(&format!(", score {}", format_score(sc)));
        if let Some(m) = max_score.filter(|m| m.is_finite()) {
            s.push_str(&format!(" / {}", format_score(m)));
        }
    }
    s
}

/// Runs `judge test`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let problem = Problem::load(&args.problem)
        .with_context(|| format!("loading the problem {}", args.problem.display()))?;
    if args.samples && problem.sample_count() == 0 {
        anyhow::bail!("{} has no sample tests (data/sample/*.in)", problem.id);
    }
    let langs = Languages::builtin();
    let forced = match &args.lang {
        Some(id) => Some(langs.require(id)?),
        None => None,
    };
    let (program, lang) = Program::load(&args.solution, &langs, forced)?;
    lang.check_toolchain()?;
    let sandbox = crate::sandbox::open(&args.sandbox)
        .with_context(|| format!("opening the {} sandbox", args.sandbox))?;
    let opts = JudgeOptions {
        samples_only: args.samples,
        run_all: args.all,
        ..Default::default()
    };
    let max_score = problem.max_score();

    let table = Table::new(
        problem
            .tests
            .iter()
            .filter(|t| !args.samples || t.is_sample)
            .map(|t| t.name.as_str()),
    );
    let json = args.json;
    let mut stderr = std::io::stderr();
    let mut stdout = std::io::stdout();
    if !json {
        let _ = writeln!(
            stderr,
            "judging {} as {}{} against {} ({} tests, time limit {} ms, memory {} MiB)",
            args.solution.display(),
            lang.name,
            if args.lang.is_none() {
                " (guessed from the file; --lang to choose another)"
            } else {
                ""
            },
            problem.id,
            if args.samples {
                problem.sample_count()
            } else {
                problem.test_count()
            },
            problem.time_limit_ms(),
            problem.memory_limit_bytes() >> 20
        );
    }
    let mut on_event = |e: &JudgeEvent| {
        if json {
            return;
        }
        match e {
            JudgeEvent::Compiling => {}
            JudgeEvent::Compiled { compile, .. } => {
                if !compile.message.is_empty() {
                    let _ = writeln!(
                        stderr,
                        "{}",
                        crate::cli::printable(compile.message.trim_end())
                    );
                }
                if compile.ok {
                    let _ = writeln!(stdout, "{}", table.header());
                }
            }
            JudgeEvent::TestFinished { result, .. } => {
                let _ = writeln!(stdout, "{}", table.row(result));
                let _ = stdout.flush();
            }
            JudgeEvent::Finished { .. } => {}
        }
    };
    let result = judge_program(
        sandbox.as_ref(),
        &problem,
        lang,
        &program,
        &opts,
        &mut on_event,
    );
    // A closed stdout (piped into `head`) must not turn the verdict into a panic.
    if json {
        crate::cli::client::out(serde_json::to_string(&result)?);
    } else {
        crate::cli::client::out(final_line(&result, max_score));
    }
    Ok(ExitCode::from(exit_code_for(&result, max_score)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::CompileResult;

    fn tr(name: &str, v: Verdict, msg: &str) -> TestResult {
        TestResult {
            name: name.into(),
            verdict: v,
            time_ms: 12,
            memory_kib: 3456,
            message: msg.into(),
            score: None,
        }
    }

    #[test]
    fn table_rows_align() {
        let t = Table::new(["sample/1", "secret/group1/01"].into_iter());
        assert_eq!(
            t.header(),
            "test              verdict  time ms  memory KiB  message"
        );
        assert_eq!(
            t.row(&tr("sample/1", Verdict::AC, "")),
            "sample/1          AC            12        3456"
        );
        assert_eq!(
            t.row(&tr(
                "secret/group1/01",
                Verdict::WA,
                "wrong answer at token 1\nmore"
            )),
            "secret/group1/01  WA            12        3456  wrong answer at token 1"
        );
    }

    #[test]
    fn exit_codes_and_final_line() {
        let mut r = JudgeResult {
            verdict: Verdict::AC,
            score: Some(70.0),
            compile: CompileResult {
                ok: true,
                message: String::new(),
            },
            tests: vec![],
        };
        assert_eq!(exit_code_for(&r, Some(100.0)), EXIT_PARTIAL_SCORE);
        assert_eq!(
            final_line(&r, Some(100.0)),
            "verdict: AC (Accepted), score 70 / 100"
        );
        r.score = Some(100.0);
        assert_eq!(exit_code_for(&r, Some(100.0)), 0);
        r.score = None;
        r.verdict = Verdict::TLE;
        assert_eq!(exit_code_for(&r, None), 11);
        assert_eq!(final_line(&r, None), "verdict: TLE (Time Limit Exceeded)");
        assert_eq!(format_score(62.5), "62.5");
        assert_eq!(format_score(1.0 / 3.0), "0.3333");
    }
}
