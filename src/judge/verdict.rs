//! Verdicts, per-test results and the result of judging one submission.
//!
//! The JSON shape of [`JudgeResult`] is the one `judge test --json`, `judge submit --json`
//! and `GET /api/v1/submissions/{id}` print:
//! `{"verdict": "AC", "score": null, "compile": {"ok": true, "message": ""},
//!   "tests": [{"name": "secret/01", "verdict": "AC", "time_ms": 3, "memory_kib": 1024, "message": ""}]}`

use serde::{Deserialize, Serialize};

/// The verdict of a test case or a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Verdict {
    /// Accepted.
    AC,
    /// Wrong answer (the output validator rejected the output).
    WA,
    /// Time limit exceeded (CPU time, or wall time / idleness).
    TLE,
    /// Memory limit exceeded.
    MLE,
    /// Run-time error (non-zero exit or a signal).
    RTE,
    /// Output limit exceeded.
    OLE,
    /// Compilation error.
    CE,
    /// Internal error: the judge's fault (sandbox failure, broken validator), never the contestant's.
    IE,
}

impl Verdict {
    /// All verdicts, in declaration order.
    pub const ALL: [Verdict; 8] = [
        Verdict::AC,
        Verdict::WA,
        Verdict::TLE,
        Verdict::MLE,
        Verdict::RTE,
        Verdict::OLE,
        Verdict::CE,
        Verdict::IE,
    ];

    /// The two-or-three letter code, e.g. `"TLE"`.
    pub fn code(self) -> &'static str {
        match self {
            Verdict::AC => "AC",
            Verdict::WA => "WA",
            Verdict::TLE => "TLE",
            Verdict::MLE => "MLE",
            Verdict::RTE => "RTE",
            Verdict::OLE => "OLE",
            Verdict::CE => "CE",
            Verdict::IE => "IE",
        }
    }

    /// A human name, e.g. `"Time Limit Exceeded"`.
    pub fn long_name(self) -> &'static str {
        match self {
            Verdict::AC => "Accepted",
            Verdict::WA => "Wrong Answer",
            Verdict::TLE => "Time Limit Exceeded",
            Verdict::MLE => "Memory Limit Exceeded",
            Verdict::RTE => "Run-Time Error",
            Verdict::OLE => "Output Limit Exceeded",
            Verdict::CE => "Compilation Error",
            Verdict::IE => "Internal Error",
        }
    }

    /// The process exit code of `judge test` and `judge submit` for a submission
    /// with this verdict (documented in README.md, "Exit codes"):
    /// AC 0, WA 10, TLE 11, MLE 12, RTE 13, OLE 14, CE 15, IE 16.
    /// (1 is "the command itself failed", 2 is a usage error, 17 is AC tests with a
    /// partial score on a scoring problem, see [`EXIT_PARTIAL_SCORE`].)
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::AC => 0,
            Verdict::WA => 10,
            Verdict::TLE => 11,
            Verdict::MLE => 12,
            Verdict::RTE => 13,
            Verdict::OLE => 14,
            Verdict::CE => 15,
            Verdict::IE => 16,
        }
    }
}

/// Exit code of `judge test` / `judge submit` when a scoring problem's submission is
/// accepted with less than the full score.
pub const EXIT_PARTIAL_SCORE: u8 = 17;

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.code().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown verdict {s:?} (expected one of AC, WA, TLE, MLE, RTE, OLE, CE, IE)"
                )
            })
    }
}

/// The result of one test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Test name relative to `data/` without extension, e.g. `"secret/group1/01"`.
    pub name: String,
    /// The test's verdict.
    pub verdict: Verdict,
    /// CPU time in ms.
    pub time_ms: u64,
    /// Peak memory in KiB.
    pub memory_kib: u64,
    /// The checker's message to the team (may be empty).
    pub message: String,
    /// The score of this test on scoring problems (`None` on pass-fail problems).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// The outcome of compiling a submission.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompileResult {
    /// Whether compilation succeeded (always true for interpreted languages).
    pub ok: bool,
    /// Compiler diagnostics, capped at 64 KiB with a `"\n[truncated]"` marker.
    pub message: String,
}

/// The result of judging one submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeResult {
    /// The submission's verdict: the first failing test's verdict in test order, AC if none
    /// failed, CE when compilation failed, IE on a judge fault.
    pub verdict: Verdict,
    /// The aggregated score on scoring problems, `null` on pass-fail problems.
    pub score: Option<f64>,
    /// The compilation step.
    pub compile: CompileResult,
    /// Per-test results in test order (tests after a rejection are absent unless
    /// `on_reject: continue`).
    pub tests: Vec<TestResult>,
}

/// Progress events emitted while judging, in order: `Compiling`, `Compiled`, then one
/// `TestFinished` per test, then `Finished`. The engine forwards them as server-sent events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JudgeEvent {
    /// Compilation started.
    Compiling,
    /// Compilation finished; `total_tests` tests will run if it succeeded.
    Compiled {
        /// The compile outcome.
        compile: CompileResult,
        /// Number of test cases that will be run.
        total_tests: usize,
    },
    /// One test case finished.
    TestFinished {
        /// 0-based position in test order.
        index: usize,
        /// Number of test cases in all.
        total: usize,
        /// The test's result.
        result: TestResult,
    },
    /// Judging finished with this result.
    Finished {
        /// The final result.
        result: JudgeResult,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_the_documented_one() {
        let r = JudgeResult {
            verdict: Verdict::AC,
            score: None,
            compile: CompileResult {
                ok: true,
                message: String::new(),
            },
            tests: vec![TestResult {
                name: "secret/01".into(),
                verdict: Verdict::AC,
                time_ms: 3,
                memory_kib: 1024,
                message: String::new(),
                score: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"verdict":"AC","score":null,"compile":{"ok":true,"message":""},"tests":[{"name":"secret/01","verdict":"AC","time_ms":3,"memory_kib":1024,"message":""}]}"#
        );
    }

    #[test]
    fn exit_codes_are_distinct() {
        let mut codes: Vec<u8> = Verdict::ALL.iter().map(|v| v.exit_code()).collect();
        codes.push(EXIT_PARTIAL_SCORE);
        codes.push(1);
        codes.push(2);
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }

    #[test]
    fn parses_codes_case_insensitively() {
        assert_eq!("tle".parse::<Verdict>().unwrap(), Verdict::TLE);
        assert!("XYZ".parse::<Verdict>().is_err());
    }
}
