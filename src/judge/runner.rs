//! The runner: compile once in the sandbox, run every test case from the same
//! artifacts, check each output (default validator, custom Kattis validator, testlib
//! checker, or an interactor connected by pipes), aggregate verdict and score.
//!
//! Verdict of a test case, from the sandbox's [`Status`]:
//! CPU time over the time limit (or `TimeLimit` / `WallLimit`) → TLE; `MemoryLimit` (or a
//! language's out-of-memory marker on stderr, e.g. Java's `OutOfMemoryError`) → MLE;
//! `OutputLimit` → OLE; `NonzeroExit` / `Signaled` → RTE; `Ok` → the output validator
//! decides (AC / WA). A [`SandboxError`](crate::sandbox::SandboxError) or a validator that
//! misbehaves (exit code other than 42/43, testlib FAIL) → IE.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::judge::language::Language;
use crate::judge::problem::{Problem, TestCase, ValidatorKind};
use crate::judge::program::{
    compile, compile_cached, run_spec, CompileFailure, CompileLimits, Compiled, Program,
};
use crate::judge::scoring::{self, CaseOutcome};
use crate::judge::validator::{self, DefaultFlags};
use crate::judge::verdict::{CompileResult, JudgeEvent, JudgeResult, TestResult, Verdict};
use crate::judge::Languages;
use crate::sandbox::{InputFile, Limits, Output, RunOutcome, RunSpec, Sandbox, Status, Stdin};

/// Standard error of a submission is kept up to this many bytes (for OOM markers).
const STDERR_CAP: u64 = 64 << 10;
/// Messages from validators are cut at this many bytes.
const MESSAGE_CAP: usize = 4 << 10;
/// CPU and wall limit of an output validator run, in ms (on top of the program's wall
/// limit for interactive problems).
const VALIDATOR_TIME_MS: u64 = 30_000;
/// Memory limit of an output validator run, in bytes.
const VALIDATOR_MEMORY_BYTES: u64 = 1 << 30;
/// Feedback folder of a validator, inside its box.
const FEEDBACK_DIR: &str = "feedback/";

/// Options of one judging.
#[derive(Debug, Clone, Default)]
pub struct JudgeOptions {
    /// Run only the sample test cases.
    pub samples_only: bool,
    /// Run every test case even after a rejection (the verdict stays the one the
    /// package's rules give, i.e. the first failing test's under `on_reject: break`).
    pub run_all: bool,
    /// Time limit override in ms (e.g. `judge problem verify` checking the TLE margin).
    pub time_limit_ms: Option<u64>,
    /// Compile limits (default 10 s, 1 GiB); the package's `compilation_time` /
    /// `compilation_memory` replace the defaults when set.
    pub compile_limits: Option<CompileLimits>,
}

/// The wall-clock limit of a run with CPU limit `tl_ms`: 2 × tl + 1 s. It is also the
/// idleness limit of interactive problems.
pub fn wall_limit_ms(tl_ms: u64) -> u64 {
    tl_ms.saturating_mul(2).saturating_add(1000)
}

/// Judges `source` written in `lang` against `problem`. Never panics and never fails:
/// a judge fault is a result with verdict IE and the reason in `compile.message` (before
/// any test ran) or in the failing test's message. Events in order: `Compiling`,
/// `Compiled`, one `TestFinished` per test judged, `Finished`.
pub fn judge(
    sandbox: &dyn Sandbox,
    problem: &Problem,
    lang: &Language,
    source: &[u8],
    opts: &JudgeOptions,
    on_event: &mut dyn FnMut(&JudgeEvent),
) -> JudgeResult {
    let program = Program::single(lang, source);
    judge_program(sandbox, problem, lang, &program, opts, on_event)
}

/// Like [`judge`] for a program of one or more files (see [`Program::load`]).
pub fn judge_program(
    sandbox: &dyn Sandbox,
    problem: &Problem,
    lang: &Language,
    program: &Program,
    opts: &JudgeOptions,
    on_event: &mut dyn FnMut(&JudgeEvent),
) -> JudgeResult {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        judge_inner(sandbox, problem, lang, program, opts, on_event)
    }));
    let result = caught.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        internal(CompileResult {
            ok: false,
            message: format!("internal error: judge panicked: {what}"),
        })
    });
    on_event(&JudgeEvent::Finished {
        result: result.clone(),
    });
    result
}

fn internal(compile: CompileResult) -> JudgeResult {
    JudgeResult {
        verdict: Verdict::IE,
        score: None,
        compile,
        tests: vec![],
    }
}

fn judge_inner(
    sandbox: &dyn Sandbox,
    problem: &Problem,
    lang: &Language,
    program: &Program,
    opts: &JudgeOptions,
    on_event: &mut dyn FnMut(&JudgeEvent),
) -> JudgeResult {
    on_event(&JudgeEvent::Compiling);
    let limits = opts.compile_limits.unwrap_or(CompileLimits {
        time_ms: problem
            .compilation_time_ms
            .unwrap_or(crate::judge::program::COMPILE_TIME_MS),
        memory_bytes: problem
            .compilation_memory_bytes
            .unwrap_or(crate::judge::program::COMPILE_MEMORY_BYTES),
    });
    let compiled = match compile(sandbox, lang, program, limits) {
        Ok(c) => c,
        Err(CompileFailure::Error(message)) => {
            let compile = CompileResult { ok: false, message };
            on_event(&JudgeEvent::Compiled {
                compile: compile.clone(),
                total_tests: 0,
            });
            return JudgeResult {
                verdict: Verdict::CE,
                score: problem.scoring.then_some(0.0),
                compile,
                tests: vec![],
            };
        }
        Err(CompileFailure::Internal(message)) => {
            let compile = CompileResult {
                ok: false,
                message: format!("internal error: {message}"),
            };
            on_event(&JudgeEvent::Compiled {
                compile: compile.clone(),
                total_tests: 0,
            });
            return internal(compile);
        }
    };
    let mut compile_result = CompileResult {
        ok: true,
        message: compiled.message.clone(),
    };

    let checker = match Checker::prepare(sandbox, problem) {
        Ok(c) => c,
        Err(message) => {
            compile_result.message = format!(
                "{}internal error: {message}",
                with_newline(&compile_result.message)
            );
            on_event(&JudgeEvent::Compiled {
                compile: compile_result.clone(),
                total_tests: 0,
            });
            return internal(compile_result);
        }
    };

    let selected = |i: usize| !opts.samples_only || problem.tests[i].is_sample;
    let total = (0..problem.tests.len()).filter(|&i| selected(i)).count();
    on_event(&JudgeEvent::Compiled {
        compile: compile_result.clone(),
        total_tests: total,
    });

    let ctx = TestContext {
        sandbox,
        problem,
        compiled: &compiled,
        checker: &checker,
        tl_ms: opts
            .time_limit_ms
            .unwrap_or_else(|| problem.time_limit_ms()),
    };
    let mut results: Vec<Option<(TestResult, CaseOutcome)>> = vec![None; problem.tests.len()];
    let mut position = 0usize;
    let mut run_one =
        |i: usize, results: &mut Vec<Option<(TestResult, CaseOutcome)>>| -> CaseOutcome {
            if let Some((_, o)) = &results[i] {
                return *o;
            }
            let (tr, o) = ctx.run_test(&problem.tests[i]);
            on_event(&JudgeEvent::TestFinished {
                index: position,
                total,
                result: tr.clone(),
            });
            position += 1;
            results[i] = Some((tr, o));
            o
        };
    if opts.run_all {
        for i in (0..problem.tests.len()).filter(|&i| selected(i)) {
            if run_one(i, &mut results).verdict == Verdict::IE {
                break;
            }
        }
    }
    let (agg, scores) = if opts.run_all {
        // Everything is judged already: aggregate from the stored outcomes.
        let stored: Vec<Option<CaseOutcome>> = results
            .iter()
            .map(|r| r.as_ref().map(|(_, o)| *o))
            .collect();
        scoring::evaluate(problem, &selected, &mut |i| {
            stored[i].unwrap_or(CaseOutcome::of(Verdict::IE))
        })
    } else {
        scoring::evaluate(problem, &selected, &mut |i| run_one(i, &mut results))
    };

    let tests: Vec<TestResult> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.map(|(mut tr, _)| {
                if problem.scoring {
                    tr.score = scores[i];
                }
                tr
            })
        })
        .collect();
    let score = if opts.samples_only { None } else { agg.score };
    JudgeResult {
        verdict: agg.verdict,
        score,
        compile: compile_result,
        tests,
    }
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// The [`RunSpec`] of one run of a compiled submission on `problem` with CPU limit
/// `tl_ms`: the compiled files, the language's run argv, environment, mounts and pids;
/// wall limit [`wall_limit_ms`]; the problem's memory limit; its output limit as the
/// file size limit (stdout's cap is the caller's `stdout`); stderr: first 64 KiB kept,
/// more than the output limit in all is an output limit.
pub fn submission_run_spec(
    compiled: &Compiled,
    problem: &Problem,
    tl_ms: u64,
    stdin: Stdin,
    stdout: Output,
) -> RunSpec {
    RunSpec {
        argv: compiled.run_argv(problem.memory_bytes),
        env: compiled.run_env(problem.memory_bytes),
        files: compiled.files.clone(),
        stdin,
        stdout,
        // The first 64 KiB are kept (messages, markers such as Java's
        // OutOfMemoryError); writing more than the output limit to stderr is an output
        // limit, as on stdout (case S10).
        stderr: Output::CaptureHead {
            keep: STDERR_CAP,
            limit: problem.output_bytes,
        },
        mounts: compiled.mounts.clone(),
        limits: Limits {
            cpu_ms: tl_ms,
            wall_ms: wall_limit_ms(tl_ms),
            memory_bytes: problem.memory_bytes,
            pids: compiled.lang.pids,
            file_size_bytes: problem.output_bytes,
            open_files: 256,
            disk_bytes: 64 << 20,
        },
        collect: vec![],
    }
}

/// How outputs of this problem are checked.
enum Checker {
    /// The built-in default validator.
    Default,
    /// A compiled Kattis validator (42/43, feedback folder).
    Kattis(Arc<Compiled>),
    /// A compiled testlib checker (`check input output answer`).
    Testlib(Arc<Compiled>),
}

impl Checker {
    fn prepare(sandbox: &dyn Sandbox, problem: &Problem) -> Result<Checker, String> {
        let ValidatorKind::Custom { path } = &problem.validator else {
            return Ok(Checker::Default);
        };
        let langs = Languages::builtin();
        let (program, lang) = Program::load(path, &langs, None)
            .map_err(|e| format!("cannot read the output validator: {e}"))?;
        let testlib = program
            .files
            .iter()
            .any(|f| validator::is_testlib_source(&f.content));
        let compiled = compile_cached(
            sandbox,
            lang,
            &program,
            CompileLimits {
                time_ms: 60_000,
                memory_bytes: 2 << 30,
            },
        )
        .map_err(|e| match e {
            CompileFailure::Error(m) => format!("the output validator does not compile:\n{m}"),
            CompileFailure::Internal(m) => format!("compiling the output validator: {m}"),
        })?;
        if testlib && problem.interactive {
            return Err(
                "testlib interactors are not supported; write a Kattis-style interactive validator"
                    .into(),
            );
        }
        Ok(if testlib {
            Checker::Testlib(compiled)
        } else {
            Checker::Kattis(compiled)
        })
    }
}

struct TestContext<'a> {
    sandbox: &'a dyn Sandbox,
    problem: &'a Problem,
    compiled: &'a Compiled,
    checker: &'a Checker,
    tl_ms: u64,
}

/// What a run of the submission ended as, before output validation.
enum RunEnd {
    /// Exited 0: validate the output.
    Finished,
    /// A verdict without validation (TLE, MLE, OLE, RTE) and a message.
    Failed(Verdict, String),
}

fn signal_name(sig: i32) -> String {
    let name = nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{sig} ({name})")
}

impl TestContext<'_> {
    fn submission_spec(&self, stdin: Stdin, stdout: Output) -> RunSpec {
        submission_run_spec(self.compiled, self.problem, self.tl_ms, stdin, stdout)
    }

    /// Classifies a finished run of the submission.
    fn classify(&self, out: &RunOutcome) -> RunEnd {
        if out.time_ms > self.tl_ms || matches!(out.status, Status::TimeLimit) {
            return RunEnd::Failed(
                Verdict::TLE,
                format!("CPU time over the limit of {} ms", self.tl_ms),
            );
        }
        // The markers may be on stderr or (the JVM's "Terminating due to
        // java.lang.OutOfMemoryError") at the end of stdout.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail = String::from_utf8_lossy(&out.stdout[out.stdout.len().saturating_sub(4096)..]);
        let oom = self
            .compiled
            .lang
            .oom_markers
            .iter()
            .any(|m| stderr.contains(m.as_str()) || tail.contains(m.as_str()));
        match out.status {
            Status::Ok => RunEnd::Finished,
            Status::TimeLimit => unreachable!("handled above"),
            Status::WallLimit => RunEnd::Failed(
                Verdict::TLE,
                format!(
                    "wall time over the limit of {} ms after {} ms of CPU time (sleeping, blocked on input, or starved of CPU on a busy host)",
                    wall_limit_ms(self.tl_ms),
                    out.time_ms
                ),
            ),
            Status::MemoryLimit => RunEnd::Failed(
                Verdict::MLE,
                format!(
                    "memory over the limit of {} MiB",
                    self.problem.memory_bytes >> 20
                ),
            ),
            Status::OutputLimit => RunEnd::Failed(
                Verdict::OLE,
                format!(
                    "output over the limit of {} MiB",
                    self.problem.output_bytes >> 20
                ),
            ),
            Status::NonzeroExit | Status::Signaled if oom => RunEnd::Failed(
                Verdict::MLE,
                format!(
                    "out of memory (limit {} MiB)",
                    self.problem.memory_bytes >> 20
                ),
            ),
            Status::NonzeroExit => RunEnd::Failed(
                Verdict::RTE,
                format!("exit code {}", out.exit_code.unwrap_or(-1)),
            ),
            Status::Signaled => RunEnd::Failed(
                Verdict::RTE,
                format!("killed by signal {}", signal_name(out.signal.unwrap_or(0))),
            ),
        }
    }

    fn run_test(&self, test: &TestCase) -> (TestResult, CaseOutcome) {
        let mut tr = TestResult {
            name: test.name.clone(),
            verdict: Verdict::IE,
            time_ms: 0,
            memory_kib: 0,
            message: String::new(),
            score: None,
        };
        let outcome = if self.problem.interactive {
            self.run_interactive(test, &mut tr)
        } else {
            self.run_batch(test, &mut tr)
        };
        tr.verdict = outcome.verdict;
        tr.message = cap(&tr.message);
        (tr, outcome)
    }

    fn run_batch(&self, test: &TestCase, tr: &mut TestResult) -> CaseOutcome {
        let mut spec = self.submission_spec(
            Stdin::HostFile(test.input.clone()),
            Output::Capture {
                limit: self.problem.output_bytes,
                kill_on_overflow: true,
            },
        );
        let out = match run_spec(self.sandbox, &mut spec) {
            Ok(o) => o,
            Err(e) => {
                tr.message = format!("internal error: sandbox: {e}");
                return CaseOutcome::of(Verdict::IE);
            }
        };
        drop(spec);
        tr.time_ms = out.time_ms;
        tr.memory_kib = out.memory_kib;
        match self.classify(&out) {
            RunEnd::Failed(v, m) => {
                tr.message = m;
                CaseOutcome::of(v)
            }
            RunEnd::Finished => self.check_output(test, out.stdout, tr),
        }
    }

    fn check_output(&self, test: &TestCase, output: Vec<u8>, tr: &mut TestResult) -> CaseOutcome {
        match self.checker {
            Checker::Default => {
                let flags = match DefaultFlags::parse(&test.validator_args) {
                    Ok(f) => f,
                    Err(e) => {
                        tr.message = format!("internal error: default output validator: {e}");
                        return CaseOutcome::of(Verdict::IE);
                    }
                };
                let answer = match std::fs::read(&test.answer) {
                    Ok(a) => a,
                    Err(e) => {
                        tr.message =
                            format!("internal error: reading {}: {e}", test.answer.display());
                        return CaseOutcome::of(Verdict::IE);
                    }
                };
                match validator::default_validate(&answer, &output, &flags) {
                    Ok(()) => CaseOutcome::of(Verdict::AC),
                    Err(m) => {
                        tr.message = m;
                        CaseOutcome::of(Verdict::WA)
                    }
                }
            }
            Checker::Kattis(v) => {
                self.run_kattis_validator(
                    v,
                    test,
                    Stdin::Bytes(Arc::new(output)),
                    Output::Null,
                    None,
                    tr,
                )
                .0
            }
            Checker::Testlib(v) => self.run_testlib(v, test, output, tr),
        }
    }

    fn data_files(&self, test: &TestCase) -> Result<Vec<InputFile>, String> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("internal error: reading {}: {e}", p.display()))
        };
        Ok(vec![
            InputFile {
                path: "judge_in".into(),
                content: Arc::new(read(&test.input)?),
                executable: false,
            },
            InputFile {
                path: "judge_ans".into(),
                content: Arc::new(read(&test.answer)?),
                executable: false,
            },
        ])
    }

    fn validator_limits(&self, v: &Compiled, extra_wall_ms: u64) -> Limits {
        Limits {
            cpu_ms: VALIDATOR_TIME_MS + extra_wall_ms,
            wall_ms: VALIDATOR_TIME_MS + extra_wall_ms,
            memory_bytes: VALIDATOR_MEMORY_BYTES,
            pids: v.lang.pids,
            file_size_bytes: 64 << 20,
            open_files: 64,
            disk_bytes: 256 << 20,
        }
    }

    /// Runs a Kattis output validator `input answer feedback_dir [args] < team_output`.
    /// Returns the outcome and when the validator finished.
    fn run_kattis_validator(
        &self,
        v: &Compiled,
        test: &TestCase,
        stdin: Stdin,
        stdout: Output,
        extra_wall_ms: Option<u64>,
        tr: &mut TestResult,
    ) -> (CaseOutcome, Instant) {
        let mut files = v.files.clone();
        match self.data_files(test) {
            Ok(d) => files.extend(d),
            Err(m) => {
                tr.message = m;
                return (CaseOutcome::of(Verdict::IE), Instant::now());
            }
        }
        // The feedback folder is made by the validator's own user inside the box.
        let mut argv: Vec<String> = vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p feedback && exec \"$@\"".into(),
            "sh".into(),
        ];
        argv.extend(v.run_argv(VALIDATOR_MEMORY_BYTES));
        argv.extend([
            "judge_in".to_string(),
            "judge_ans".to_string(),
            FEEDBACK_DIR.to_string(),
        ]);
        argv.extend(test.validator_args.iter().cloned());
        let mut spec = RunSpec {
            argv,
            env: v.run_env(VALIDATOR_MEMORY_BYTES),
            files,
            stdin,
            stdout,
            stderr: Output::Capture {
                limit: STDERR_CAP,
                kill_on_overflow: false,
            },
            mounts: v.mounts.clone(),
            limits: self.validator_limits(v, extra_wall_ms.unwrap_or(0)),
            collect: [
                "judgemessage.txt",
                "teammessage.txt",
                "score.txt",
                "score_multiplier.txt",
            ]
            .iter()
            .map(|f| format!("{FEEDBACK_DIR}{f}"))
            .collect(),
        };
        let res = run_spec(self.sandbox, &mut spec);
        let done = Instant::now();
        drop(spec);
        let out = match res {
            Ok(o) => o,
            Err(e) => {
                tr.message = format!("internal error: sandbox (output validator): {e}");
                return (CaseOutcome::of(Verdict::IE), done);
            }
        };
        let file = |n: &str| out.files.get(&format!("{FEEDBACK_DIR}{n}"));
        let text = |n: &str| {
            file(n)
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let feedback = text("teammessage.txt")
            .or_else(|| text("judgemessage.txt"))
            .unwrap_or_default();
        let j = match (out.status, out.exit_code) {
            (Status::Ok, _) => validator::kattis_exit(0),
            (Status::NonzeroExit, Some(c)) => validator::kattis_exit(c),
            (s, _) => {
                tr.message = format!(
                    "internal error: output validator ended with {s:?} (signal {:?})",
                    out.signal
                );
                return (CaseOutcome::of(Verdict::IE), done);
            }
        };
        if j.verdict == Verdict::IE {
            let stderr = String::from_utf8_lossy(&out.stderr);
            tr.message = format!(
                "internal error: {}; {feedback} {}",
                j.message,
                stderr.trim()
            );
            return (CaseOutcome::of(Verdict::IE), done);
        }
        tr.message = feedback;
        let mut o = CaseOutcome::of(j.verdict);
        for (name, slot) in [
            ("score.txt", &mut o.score),
            ("score_multiplier.txt", &mut o.score_multiplier),
        ] {
            if let Some(b) = file(name) {
                match validator::parse_score_file(b) {
                    Ok(x) => *slot = Some(x),
                    Err(e) => {
                        tr.message = format!("internal error: output validator's {name}: {e}");
                        return (CaseOutcome::of(Verdict::IE), done);
                    }
                }
            }
        }
        (o, done)
    }

    fn run_testlib(
        &self,
        v: &Compiled,
        test: &TestCase,
        output: Vec<u8>,
        tr: &mut TestResult,
    ) -> CaseOutcome {
        let mut files = v.files.clone();
        match self.data_files(test) {
            Ok(d) => files.extend(d),
            Err(m) => {
                tr.message = m;
                return CaseOutcome::of(Verdict::IE);
            }
        }
        files.push(InputFile {
            path: "judge_out".into(),
            content: Arc::new(output),
            executable: false,
        });
        let mut argv = v.run_argv(VALIDATOR_MEMORY_BYTES);
        argv.extend([
            "judge_in".to_string(),
            "judge_out".to_string(),
            "judge_ans".to_string(),
        ]);
        let mut spec = RunSpec {
            argv,
            env: v.run_env(VALIDATOR_MEMORY_BYTES),
            files,
            stdin: Stdin::Null,
            stdout: Output::Capture {
                limit: STDERR_CAP,
                kill_on_overflow: false,
            },
            stderr: Output::Capture {
                limit: STDERR_CAP,
                kill_on_overflow: false,
            },
            mounts: v.mounts.clone(),
            limits: self.validator_limits(v, 0),
            collect: vec![],
        };
        let out = match run_spec(self.sandbox, &mut spec) {
            Ok(o) => o,
            Err(e) => {
                tr.message = format!("internal error: sandbox (checker): {e}");
                return CaseOutcome::of(Verdict::IE);
            }
        };
        let code = match out.status {
            Status::Ok => 0,
            Status::NonzeroExit => out.exit_code.unwrap_or(-1),
            s => {
                tr.message = format!("internal error: checker ended with {s:?}");
                return CaseOutcome::of(Verdict::IE);
            }
        };
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let j = validator::testlib_exit(code, &msg);
        tr.message = j.message;
        CaseOutcome {
            verdict: j.verdict,
            score: j.points,
            score_multiplier: None,
        }
    }

    /// Interactive: the validator's stdout feeds the program's stdin and the program's
    /// stdout feeds the validator's stdin, through two pipes; both run sandboxed at the
    /// same time and are killed at the end. The program's wall limit is the idleness
    /// limit (a deadlock ends there as TLE); the validator gets 2 s more so it sees the
    /// program's end. Verdict: a validator that rejected (43) before the program ended
    /// gives WA even if the program then failed; otherwise a program that failed gives
    /// its own verdict (TLE, MLE, RTE); otherwise the validator's 42/43.
    fn run_interactive(&self, test: &TestCase, tr: &mut TestResult) -> CaseOutcome {
        let Checker::Kattis(v) = self.checker else {
            tr.message =
                "internal error: interactive problem without a Kattis output validator".into();
            return CaseOutcome::of(Verdict::IE);
        };
        let pipes = (|| -> nix::Result<(OwnedFd, OwnedFd, OwnedFd, OwnedFd)> {
            let (to_val_r, to_val_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (to_prog_r, to_prog_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            Ok((to_val_r, to_val_w, to_prog_r, to_prog_w))
        })();
        let (to_val_r, to_val_w, to_prog_r, to_prog_w) = match pipes {
            Ok(p) => p,
            Err(e) => {
                tr.message = format!("internal error: pipe: {e}");
                return CaseOutcome::of(Verdict::IE);
            }
        };
        let mut vtr = tr.clone();
        let extra = wall_limit_ms(self.tl_ms) + 2000;
        let ((vout, vdone), prog) = std::thread::scope(|s| {
            let val = s.spawn(|| {
                // Moved in: dropped as soon as this run returns, so the program sees EOF.
                self.run_kattis_validator(
                    v,
                    test,
                    Stdin::Fd(Arc::new(to_val_r)),
                    Output::Fd(Arc::new(to_prog_w)),
                    Some(extra),
                    &mut vtr,
                )
            });
            let mut spec = self.submission_spec(
                Stdin::Fd(Arc::new(to_prog_r)),
                Output::Fd(Arc::new(to_val_w)),
            );
            let res = run_spec(self.sandbox, &mut spec);
            let pdone = Instant::now();
            drop(spec); // close our ends: the validator sees EOF on its stdin
            let vres = val.join().unwrap_or_else(|_| {
                let mut o = CaseOutcome::of(Verdict::IE);
                o.score = None;
                (o, Instant::now())
            });
            (vres, (res, pdone))
        });
        let (pres, pdone) = prog;
        let pout = match pres {
            Ok(o) => o,
            Err(e) => {
                tr.message = format!("internal error: sandbox: {e}");
                return CaseOutcome::of(Verdict::IE);
            }
        };
        tr.time_ms = pout.time_ms;
        tr.memory_kib = pout.memory_kib;
        let (outcome, message) =
            combine_interactive(self.classify(&pout), vout, vtr.message, vdone < pdone);
        tr.message = message;
        outcome
    }
}

/// The verdict of an interactive test case from how the program ended, the validator's
/// outcome and message, and whether the validator finished first: a WA the validator gave
/// before the program ended wins over whatever the program did next (it typically dies on
/// the closed pipe or waits until the wall limit); otherwise a program that failed (TLE,
/// MLE, RTE, OLE) gets its own verdict, whatever the validator then made of the broken
/// conversation; otherwise the validator decides (AC, WA, or IE when it misbehaved).
fn combine_interactive(
    program: RunEnd,
    validator: CaseOutcome,
    validator_message: String,
    validator_first: bool,
) -> (CaseOutcome, String) {
    match (program, validator.verdict) {
        (_, Verdict::WA) if validator_first => (validator, validator_message),
        (RunEnd::Failed(v, m), _) => (CaseOutcome::of(v), m),
        (RunEnd::Finished, _) => (validator, validator_message),
    }
}

fn cap(s: &str) -> String {
    if s.len() <= MESSAGE_CAP {
        return s.to_string();
    }
    let mut end = MESSAGE_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_limit_is_twice_plus_a_second() {
        assert_eq!(wall_limit_ms(1000), 3000);
        assert_eq!(wall_limit_ms(u64::MAX), u64::MAX);
    }

    #[test]
    fn interactive_verdict_rules() {
        let wa = CaseOutcome::of(Verdict::WA);
        let ac = CaseOutcome::of(Verdict::AC);
        let ie = CaseOutcome::of(Verdict::IE);
        let tle = || RunEnd::Failed(Verdict::TLE, "wall".into());
        let m = || "validator says".to_string();
        // The validator's earlier WA wins over the program's later TLE.
        assert_eq!(combine_interactive(tle(), wa, m(), true), (wa, m()));
        // The program failed first: its verdict, whatever the validator then said.
        assert_eq!(
            combine_interactive(tle(), wa, m(), false),
            (CaseOutcome::of(Verdict::TLE), "wall".into())
        );
        assert_eq!(
            combine_interactive(tle(), ie, m(), false).0.verdict,
            Verdict::TLE
        );
        assert_eq!(
            combine_interactive(tle(), ac, m(), true).0.verdict,
            Verdict::TLE
        );
        // The program exited 0: the validator decides.
        assert_eq!(
            combine_interactive(RunEnd::Finished, ac, m(), false),
            (ac, m())
        );
        assert_eq!(
            combine_interactive(RunEnd::Finished, wa, m(), false)
                .0
                .verdict,
            Verdict::WA
        );
        assert_eq!(
            combine_interactive(RunEnd::Finished, ie, m(), true)
                .0
                .verdict,
            Verdict::IE
        );
    }

    #[test]
    fn messages_are_capped_on_char_boundaries() {
        let s = "é".repeat(MESSAGE_CAP);
        let c = cap(&s);
        assert!(c.len() <= MESSAGE_CAP + '…'.len_utf8());
        assert_eq!(cap("short"), "short");
    }
}
