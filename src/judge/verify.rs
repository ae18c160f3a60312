//! `judge problem verify`: judge every program under `submissions/<expected>/` and
//! check its verdict against its folder.
//!
//! Folders and what they require: `accepted` AC on every test (and the full score on a
//! scoring problem); `partially_accepted` AC with less than the full score;
//! `wrong_answer` WA; `time_limit_exceeded` TLE even with the time limit multiplied by
//! `time_limit_to_tle` (legacy `time_safety_margin`); `run_time_error` RTE; and our
//! additions `memory_limit_exceeded` MLE, `output_limit_exceeded` OLE,
//! `compile_error` CE. A program whose toolchain is missing on this host is skipped with
//! the reason. When the package gives no time limit, it is derived from the accepted
//! submissions first (see [`derive_time_limit_ms`]).

use std::path::Path;

use serde::Serialize;

use crate::judge::language::{Language, Languages};
use crate::judge::problem::{derive_time_limit_ms, Problem, TimeLimitSource};
use crate::judge::program::Program;
use crate::judge::runner::{judge_program, JudgeOptions};
use crate::judge::verdict::{JudgeResult, Verdict};
use crate::sandbox::Sandbox;

/// Time limit used to measure accepted submissions when deriving a time limit, in ms.
pub const PROBE_TIME_LIMIT_MS: u64 = 10_000;

/// The submission folders we know, in the order they are judged.
pub const FOLDERS: [&str; 8] = [
    "accepted",
    "partially_accepted",
    "wrong_answer",
    "time_limit_exceeded",
    "run_time_error",
    "memory_limit_exceeded",
    "output_limit_exceeded",
    "compile_error",
];

/// One submission's check.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionReport {
    /// Path relative to `submissions/`, e.g. `"accepted/sol.cpp"`.
    pub path: String,
    /// The folder, i.e. what was expected.
    pub expected: String,
    /// The language id, when determined.
    pub language: Option<String>,
    /// The verdict it got (`None` when skipped or unreadable).
    pub verdict: Option<Verdict>,
    /// Its score on scoring problems.
    pub score: Option<f64>,
    /// Its slowest test's CPU time in ms.
    pub max_time_ms: u64,
    /// Whether the verdict matches the folder.
    pub ok: bool,
    /// Why it was not judged (toolchain missing), when skipped.
    pub skipped: Option<String>,
    /// What went wrong (mismatch details, first failing test).
    pub message: String,
}

/// The whole verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The problem's short name.
    pub problem: String,
    /// The time limit used, in ms.
    pub time_limit_ms: u64,
    /// Whether the time limit was derived from the accepted submissions.
    pub time_limit_derived: bool,
    /// True when every judged submission matched and at least one accepted one ran.
    pub ok: bool,
    /// Per submission.
    pub submissions: Vec<SubmissionReport>,
    /// Non-fatal remarks (time limit margins, unknown folders).
    pub warnings: Vec<String>,
}

/// Progress of a verification, for a progress bar.
#[derive(Debug, Clone)]
pub struct VerifyProgress {
    /// Submissions finished.
    pub done: usize,
    /// Submissions in all.
    pub total: usize,
    /// The one being judged now (or just finished).
    pub current: String,
}

/// A submission's program and language, or the report saying why it is not judged.
type Loaded<'l> = Result<(Program, &'l Language), SubmissionReport>;

struct Entry {
    rel: String,
    folder: String,
    path: std::path::PathBuf,
}

fn list_submissions(problem: &Problem, warnings: &mut Vec<String>) -> Vec<Entry> {
    let root = problem.dir.join("submissions");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return out;
    };
    let mut present: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    present.sort();
    for f in &present {
        if !FOLDERS.contains(&f.as_str()) {
            warnings.push(format!("submissions/{f}/: unknown folder, skipped"));
        }
    }
    for folder in FOLDERS {
        let dir = root.join(folder);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for n in names {
            out.push(Entry {
                rel: format!("{folder}/{n}"),
                folder: folder.to_string(),
                path: dir.join(&n),
            });
        }
    }
    out
}

/// Reads `submissions/submissions.yaml` (2023-07): for keys that name one submission
/// exactly (no glob patterns), its `language`. Errors with a message when malformed.
fn submission_languages(dir: &Path) -> Result<std::collections::HashMap<String, String>, String> {
    let p = dir.join("submissions/submissions.yaml");
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(format!("{}: {e}", p.display())),
    };
    let v: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let mut out = std::collections::HashMap::new();
    if let serde_yaml::Value::Mapping(m) = v {
        for (k, val) in m {
            if let (Some(k), Some(lang)) =
                (k.as_str(), val.get("language").and_then(|l| l.as_str()))
            {
                out.insert(k.trim_end_matches('/').to_string(), lang.to_string());
            }
        }
    }
    Ok(out)
}

fn max_time(r: &JudgeResult) -> u64 {
    r.tests.iter().map(|t| t.time_ms).max().unwrap_or(0)
}

fn first_failure(r: &JudgeResult) -> String {
    if !r.compile.ok || r.tests.is_empty() {
        return r
            .compile
            .message
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join(" / ");
    }
    r.tests
        .iter()
        .find(|t| t.verdict != Verdict::AC)
        .map(|t| format!("{}: {} {}", t.name, t.verdict, t.message))
        .unwrap_or_default()
}

/// Checks `r` against the folder's expectation; `Err` says why it does not match.
fn matches(folder: &str, r: &JudgeResult, max_score: Option<f64>) -> Result<(), String> {
    let all_ac = r.tests.iter().all(|t| t.verdict == Verdict::AC);
    let full = match (r.score, max_score) {
        (Some(s), Some(m)) => s >= m - 1e-9,
        _ => true,
    };
    let want = |v: Verdict| {
        if r.verdict == v {
            Ok(())
        } else {
            Err(format!("expected {v}, got {}", r.verdict))
        }
    };
    match folder {
        "accepted" => {
            want(Verdict::AC)?;
            if !all_ac {
                return Err("some test was not accepted".into());
            }
            if !full {
                return Err(format!(
                    "expected the full score {:?}, got {:?}",
                    max_score, r.score
                ));
            }
            Ok(())
        }
        "partially_accepted" => {
            want(Verdict::AC)?;
            if full {
                return Err(format!(
                    "expected less than the full score, got {:?}",
                    r.score
                ));
            }
            Ok(())
        }
        "wrong_answer" => want(Verdict::WA),
        "time_limit_exceeded" => want(Verdict::TLE),
        "run_time_error" => want(Verdict::RTE),
        "memory_limit_exceeded" => want(Verdict::MLE),
        "output_limit_exceeded" => want(Verdict::OLE),
        "compile_error" => want(Verdict::CE),
        other => Err(format!("unknown folder {other}")),
    }
}

/// Verifies `problem`'s submissions in `sandbox`. `problem`'s time limit is set to the
/// derived one when the package gives none.
pub fn verify(
    sandbox: &dyn Sandbox,
    problem: &mut Problem,
    langs: &Languages,
    on_progress: &mut dyn FnMut(&VerifyProgress),
) -> VerifyReport {
    let mut warnings = Vec::new();
    let entries = list_submissions(problem, &mut warnings);
    let mut reports: Vec<SubmissionReport> = Vec::new();
    let derive = problem.time_limit_source == TimeLimitSource::Default;
    let max_score = problem.max_score();
    let mut done = 0;

    let languages_yaml = match submission_languages(&problem.dir) {
        Ok(m) => m,
        Err(e) => {
            warnings.push(e);
            Default::default()
        }
    };
    // Load every program first: language and toolchain.
    let mut loaded: Vec<(Entry, Loaded)> = Vec::new();
    for e in entries {
        let base = SubmissionReport {
            path: e.rel.clone(),
            expected: e.folder.clone(),
            language: None,
            verdict: None,
            score: None,
            max_time_ms: 0,
            ok: false,
            skipped: None,
            message: String::new(),
        };
        let forced = match languages_yaml.get(&e.rel) {
            Some(id) => match langs.require(id) {
                Ok(l) => Some(l),
                Err(err) => {
                    loaded.push((
                        e,
                        Err(SubmissionReport {
                            message: err.to_string(),
                            ..base
                        }),
                    ));
                    continue;
                }
            },
            None => None,
        };
        let r = match Program::load(&e.path, langs, forced) {
            Err(err) => Err(SubmissionReport {
                message: err.to_string(),
                ..base
            }),
            Ok((p, lang)) => match lang.check_toolchain() {
                Err(err) => Err(SubmissionReport {
                    language: Some(lang.id.clone()),
                    ok: true,
                    skipped: Some(err.to_string()),
                    ..base
                }),
                Ok(()) => Ok((p, lang)),
            },
        };
        loaded.push((e, r));
    }

    let runnable = |folder: Option<&str>| {
        loaded
            .iter()
            .filter(|(e, r)| r.is_ok() && folder.is_none_or(|f| e.folder == f))
            .count()
    };
    let total = runnable(None)
        + if derive {
            runnable(Some("accepted"))
        } else {
            0
        };
    let tl = problem.time_limit_ms();
    let mut judge_one = |e: &Entry,
                         p: &Program,
                         lang: &Language,
                         tl_override: Option<u64>,
                         problem: &Problem|
     -> JudgeResult {
        on_progress(&VerifyProgress {
            done,
            total,
            current: e.rel.clone(),
        });
        let opts = JudgeOptions {
            time_limit_ms: tl_override,
            ..Default::default()
        };
        let r = judge_program(sandbox, problem, lang, p, &opts, &mut |_| {});
        done += 1;
        on_progress(&VerifyProgress {
            done,
            total,
            current: e.rel.clone(),
        });
        r
    };

    // 1. Accepted submissions (measured with a generous limit when deriving).
    let mut t_ac: Option<u64> = None;
    let mut results: Vec<Option<JudgeResult>> = vec![None; loaded.len()];
    for (k, (e, r)) in loaded.iter().enumerate() {
        if e.folder != "accepted" {
            continue;
        }
        if let Ok((p, lang)) = r {
            let res = judge_one(e, p, lang, derive.then_some(PROBE_TIME_LIMIT_MS), problem);
            if res.verdict == Verdict::AC {
                t_ac = Some(t_ac.unwrap_or(0).max(max_time(&res)));
            }
            results[k] = Some(res);
        }
    }
    let mut time_limit_derived = false;
    if derive {
        match t_ac {
            Some(t) => match derive_time_limit_ms(t, None, &problem.time_multipliers) {
                Ok(d) => {
                    problem.set_time_limit_ms(d, TimeLimitSource::Default);
                    time_limit_derived = true;
                }
                Err(m) => warnings.push(m),
            },
            None => {
                warnings.push("no accepted submission passed: cannot derive a time limit".into())
            }
        }
    } else if let Some(t) = t_ac {
        let need = (t as f64 * problem.time_multipliers.ac_to_time_limit).ceil() as u64;
        if need > tl {
            warnings.push(format!(
                "slowest accepted run {t} ms × ac_to_time_limit {} = {need} ms exceeds the time limit {tl} ms",
                problem.time_multipliers.ac_to_time_limit
            ));
        }
    }
    let tl = problem.time_limit_ms();
    let tle_limit = (tl as f64 * problem.time_multipliers.time_limit_to_tle).ceil() as u64;

    // 2. Everything else (and, when the limit was derived, the accepted ones again under
    //    it), with the TLE margin for time_limit_exceeded.
    for (k, (e, r)) in loaded.iter().enumerate() {
        let Ok((p, lang)) = r else { continue };
        if e.folder == "accepted" && !derive {
            continue;
        }
        let ov = (e.folder == "time_limit_exceeded").then_some(tle_limit);
        results[k] = Some(judge_one(e, p, lang, ov, problem));
    }

    for ((e, r), res) in loaded.into_iter().zip(results) {
        match r {
            Err(rep) => reports.push(rep),
            Ok((_, lang)) => {
                let res = res.expect("every loaded program was judged");
                let m = matches(&e.folder, &res, max_score);
                reports.push(SubmissionReport {
                    path: e.rel,
                    expected: e.folder,
                    language: Some(lang.id.clone()),
                    verdict: Some(res.verdict),
                    score: res.score,
                    max_time_ms: max_time(&res),
                    ok: m.is_ok(),
                    skipped: None,
                    message: match m {
                        Ok(()) => String::new(),
                        Err(why) => format!("{why}; {}", first_failure(&res)),
                    },
                });
            }
        }
    }
    let any_accepted = reports
        .iter()
        .any(|r| r.expected == "accepted" && r.verdict.is_some());
    if !any_accepted {
        warnings.push("no accepted submission was judged".into());
    }
    let ok = any_accepted && reports.iter().all(|r| r.ok);
    VerifyReport {
        problem: problem.id.clone(),
        time_limit_ms: tl,
        time_limit_derived,
        ok,
        submissions: reports,
        warnings,
    }
}

/// The submission folder names that exist in `dir/submissions`.
pub fn folders_present(dir: &Path) -> Vec<String> {
    FOLDERS
        .iter()
        .filter(|f| dir.join("submissions").join(f).is_dir())
        .map(|f| f.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::verdict::{CompileResult, TestResult};

    fn result(verdict: Verdict, score: Option<f64>, tests: &[Verdict]) -> JudgeResult {
        JudgeResult {
            verdict,
            score,
            compile: CompileResult {
                ok: true,
                message: String::new(),
            },
            tests: tests
                .iter()
                .enumerate()
                .map(|(i, v)| TestResult {
                    name: format!("secret/{i}"),
                    verdict: *v,
                    time_ms: 1,
                    memory_kib: 1,
                    message: String::new(),
                    score: None,
                })
                .collect(),
        }
    }

    #[test]
    fn folder_expectations() {
        assert!(matches("accepted", &result(Verdict::AC, None, &[Verdict::AC]), None).is_ok());
        assert!(matches("accepted", &result(Verdict::WA, None, &[Verdict::WA]), None).is_err());
        assert!(matches(
            "accepted",
            &result(Verdict::AC, Some(40.0), &[Verdict::AC]),
            Some(100.0)
        )
        .is_err());
        assert!(matches(
            "accepted",
            &result(Verdict::AC, Some(40.0), &[Verdict::AC, Verdict::WA]),
            Some(40.0)
        )
        .is_err());
        assert!(matches(
            "partially_accepted",
            &result(Verdict::AC, Some(40.0), &[Verdict::AC, Verdict::WA]),
            Some(100.0)
        )
        .is_ok());
        assert!(matches(
            "partially_accepted",
            &result(Verdict::AC, Some(100.0), &[Verdict::AC]),
            Some(100.0)
        )
        .is_err());
        assert!(matches(
            "wrong_answer",
            &result(Verdict::WA, None, &[Verdict::WA]),
            None
        )
        .is_ok());
        assert!(matches(
            "wrong_answer",
            &result(Verdict::TLE, None, &[Verdict::TLE]),
            None
        )
        .is_err());
        assert!(matches(
            "time_limit_exceeded",
            &result(Verdict::TLE, None, &[Verdict::TLE]),
            None
        )
        .is_ok());
        assert!(matches(
            "run_time_error",
            &result(Verdict::RTE, None, &[Verdict::RTE]),
            None
        )
        .is_ok());
        assert!(matches(
            "memory_limit_exceeded",
            &result(Verdict::MLE, None, &[Verdict::MLE]),
            None
        )
        .is_ok());
        assert!(matches("compile_error", &result(Verdict::CE, None, &[]), None).is_ok());
    }
}
