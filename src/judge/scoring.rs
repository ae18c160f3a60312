//! Verdict and score aggregation over the test data tree.
//!
//! - `legacy` packages: each group's result comes from the default grader
//!   (`grader_flags`: verdict mode worst_error / first_error / always_accept, score mode
//!   sum / avg / min / max, `ignore_sample` at the root, `accept_if_any_accepted`) over
//!   the sub-results judged so far; `on_reject: break` stops a group at its first
//!   rejected sub-result. A test case scores `accept_score` (or the validator's
//!   `score.txt`) when accepted, `reject_score` otherwise. On a scoring problem a
//!   submission whose root verdict is not AC scores 0 (spec: "for non-Accepted results on
//!   scoring problems, the score provided by the grader will always be ignored").
//! - `2023-07` packages: `secret` is scored with `scoring.aggregation` (sum by default,
//!   pass-fail below it), maximum scores inferred as "Maximum Score Inference" says; a
//!   failed test case scores 0; samples are judged but never scored.
//!
//! Everywhere: an IE stops judging at once and makes the submission IE (a judge fault is
//! never hidden by aggregation).

use crate::judge::problem::{
    Aggregation, FormatVersion, OnReject, Problem, ScoreMode, TestGroup, TestNode, VerdictMode,
};
use crate::judge::verdict::Verdict;

/// What judging one test case produced, as the aggregation needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaseOutcome {
    /// The test's verdict.
    pub verdict: Verdict,
    /// The validator's `score.txt`, when it wrote one.
    pub score: Option<f64>,
    /// The validator's `score_multiplier.txt` (2023-07), when it wrote one.
    pub score_multiplier: Option<f64>,
}

impl CaseOutcome {
    /// An outcome with this verdict and no validator score.
    pub fn of(verdict: Verdict) -> CaseOutcome {
        CaseOutcome {
            verdict,
            score: None,
            score_multiplier: None,
        }
    }
}

/// The aggregated result of a submission.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aggregate {
    /// The submission's verdict.
    pub verdict: Verdict,
    /// The score on scoring problems, `None` on pass-fail problems.
    pub score: Option<f64>,
}

/// Walks the test tree in order, judging test cases lazily with `judge_case` (called at
/// most once per selected test case, in test order) and aggregating as the package's
/// format says. `selected(i)` filters which tests exist for this run (e.g. samples only).
/// Returns the aggregate and, per test index, the score it was given (scoring problems).
pub fn evaluate(
    problem: &Problem,
    selected: &dyn Fn(usize) -> bool,
    judge_case: &mut dyn FnMut(usize) -> CaseOutcome,
) -> (Aggregate, Vec<Option<f64>>) {
    let mut ev = Evaluator {
        problem,
        selected,
        judge_case,
        aborted: false,
        any_ie: false,
        scores: vec![None; problem.tests.len()],
    };
    let (verdict, score) = match problem.format {
        FormatVersion::Legacy => {
            let r = ev.legacy_group(&problem.root, true);
            let score = problem.scoring.then(|| {
                if r.verdict == Verdict::AC {
                    r.score
                } else {
                    0.0
                }
            });
            (r.verdict, score)
        }
        FormatVersion::V2023 => ev.v2023_root(),
    };
    let verdict = if ev.any_ie { Verdict::IE } else { verdict };
    let scores = ev.scores;
    (Aggregate { verdict, score }, scores)
}

/// The maximum score of a scoring problem (see [`Problem::max_score`]).
pub fn max_score(problem: &Problem) -> f64 {
    match problem.format {
        FormatVersion::V2023 => secret_group(problem)
            .and_then(|g| g.settings.max_score)
            .unwrap_or(100.0),
        FormatVersion::Legacy => {
            let hi = problem.root.settings.range.1;
            if hi.is_finite() {
                return hi;
            }
            let (agg, _) = evaluate(problem, &|_| true, &mut |_| CaseOutcome::of(Verdict::AC));
            agg.score.unwrap_or(0.0)
        }
    }
}

fn secret_group(problem: &Problem) -> Option<&TestGroup> {
    problem.root.children.iter().find_map(|c| match c {
        TestNode::Group(g) if g.name == "secret" => Some(g),
        _ => None,
    })
}

struct Evaluator<'a> {
    problem: &'a Problem,
    selected: &'a dyn Fn(usize) -> bool,
    judge_case: &'a mut dyn FnMut(usize) -> CaseOutcome,
    aborted: bool,
    any_ie: bool,
    scores: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Copy)]
struct SubResult {
    verdict: Verdict,
    score: f64,
}

/// Legacy worst_error order: "the first of JE, IF, RTE, MLE, TLE, OLE, WA".
fn severity(v: Verdict) -> u8 {
    match v {
        Verdict::IE => 7,
        Verdict::CE => 6,
        Verdict::RTE => 5,
        Verdict::MLE => 4,
        Verdict::TLE => 3,
        Verdict::OLE => 2,
        Verdict::WA => 1,
        Verdict::AC => 0,
    }
}

impl Evaluator<'_> {
    fn case(&mut self, i: usize) -> CaseOutcome {
        let o = (self.judge_case)(i);
        if o.verdict == Verdict::IE {
            self.aborted = true;
            self.any_ie = true;
        }
        o
    }

    fn has_selected(&self, g: &TestGroup) -> bool {
        g.case_indices().into_iter().any(|i| (self.selected)(i))
    }

    fn legacy_group(&mut self, g: &TestGroup, is_root: bool) -> SubResult {
        let s = &g.settings;
        let mut subs: Vec<SubResult> = Vec::new();
        for child in &g.children {
            if self.aborted {
                break;
            }
            let r = match child {
                TestNode::Case(i) => {
                    if !(self.selected)(*i) {
                        continue;
                    }
                    let o = self.case(*i);
                    let score = if o.verdict == Verdict::AC {
                        o.score.unwrap_or(s.accept_score)
                    } else {
                        s.reject_score
                    };
                    if self.problem.scoring {
                        self.scores[*i] = Some(score);
                    }
                    SubResult {
                        verdict: o.verdict,
                        score,
                    }
                }
                TestNode::Group(sub) => {
                    if !self.has_selected(sub) {
                        continue;
                    }
                    self.legacy_group(sub, false)
                }
            };
            subs.push(r);
            if r.verdict != Verdict::AC && s.on_reject == OnReject::Break {
                break;
            }
        }
        // ignore_sample: root only, drop the `sample` sub-result (the first child) when present.
        if is_root && s.grader.ignore_sample {
            let first_is_sample = matches!(g.children.first(), Some(TestNode::Group(sg)) if sg.name == "sample" && self.has_selected(sg));
            if first_is_sample && !subs.is_empty() {
                subs.remove(0);
            }
        }
        grade(
            &subs,
            s.grader.verdict,
            s.grader.score,
            s.grader.accept_if_any_accepted,
        )
    }

    fn v2023_root(&mut self) -> (Verdict, Option<f64>) {
        let problem = self.problem;
        let mut first_fail: Option<Verdict> = None;
        let mut score = None;
        for child in &problem.root.children {
            if self.aborted {
                break;
            }
            let TestNode::Group(g) = child else { continue };
            if !self.has_selected(g) {
                continue;
            }
            if problem.scoring && g.name == "secret" {
                let max = g.settings.max_score.unwrap_or(100.0);
                let (s, fail) = self.v2023_scored_group(g, max);
                score = Some(s);
                first_fail = first_fail.or(fail);
            } else {
                // Pass-fail: every test case must be accepted; stop at the first rejection
                // unless the group says continue.
                let fail = self.v2023_passfail(g);
                first_fail = first_fail.or(fail);
                if fail.is_some() && !problem.scoring && g.settings.on_reject == OnReject::Break {
                    break;
                }
            }
        }
        match (problem.scoring, first_fail) {
            (false, None) => (Verdict::AC, None),
            (false, Some(v)) => (v, None),
            (true, None) => (Verdict::AC, score.or(Some(0.0))),
            // A scoring problem's submission that earned points is accepted with a partial score.
            (true, Some(v)) => match score {
                Some(s) if s > 0.0 => (Verdict::AC, Some(s)),
                _ => (v, Some(0.0)),
            },
        }
    }

    /// Judges a pass-fail group; returns the first failing verdict.
    fn v2023_passfail(&mut self, g: &TestGroup) -> Option<Verdict> {
        let mut first: Option<Verdict> = None;
        for child in &g.children {
            if self.aborted {
                break;
            }
            let fail = match child {
                TestNode::Case(i) => {
                    if !(self.selected)(*i) {
                        continue;
                    }
                    let o = self.case(*i);
                    (o.verdict != Verdict::AC).then_some(o.verdict)
                }
                TestNode::Group(sub) => {
                    if !self.has_selected(sub) {
                        continue;
                    }
                    self.v2023_passfail(sub)
                }
            };
            if fail.is_some() {
                first = first.or(fail);
                if g.settings.on_reject == OnReject::Break {
                    break;
                }
            }
        }
        first
    }

    /// Scores a group under `secret` whose maximum score is `max`; returns its score and
    /// the first failing verdict in it.
    fn v2023_scored_group(&mut self, g: &TestGroup, max: f64) -> (f64, Option<Verdict>) {
        let agg = g.settings.aggregation;
        if agg == Aggregation::PassFail {
            let fail = self.v2023_passfail(g);
            return (if fail.is_none() { max } else { 0.0 }, fail);
        }
        // Maximum score inference for the children.
        let specified: f64 = g
            .children
            .iter()
            .filter_map(|c| match c {
                TestNode::Group(sg) => sg.settings.max_score,
                _ => None,
            })
            .sum();
        let unspecified = g
            .children
            .iter()
            .filter(|c| match c {
                TestNode::Group(sg) => sg.settings.max_score.is_none(),
                TestNode::Case(_) => true,
            })
            .count();
        let child_default = match agg {
            Aggregation::Min => max,
            _ if max.is_infinite() => f64::INFINITY,
            _ => {
                if unspecified == 0 {
                    0.0
                } else {
                    ((max - specified) / unspecified as f64).max(0.0)
                }
            }
        };
        let mut scores = Vec::new();
        let mut first: Option<Verdict> = None;
        for child in &g.children {
            if self.aborted {
                break;
            }
            let (s, fail) = match child {
                TestNode::Case(i) => {
                    if !(self.selected)(*i) {
                        continue;
                    }
                    let o = self.case(*i);
                    let s = if o.verdict != Verdict::AC {
                        0.0
                    } else if let Some(m) = o.score_multiplier {
                        m.clamp(0.0, 1.0) * child_default
                    } else if let Some(sc) = o.score {
                        sc
                    } else if child_default.is_finite() {
                        child_default
                    } else {
                        0.0
                    };
                    self.scores[*i] = Some(s);
                    (s, (o.verdict != Verdict::AC).then_some(o.verdict))
                }
                TestNode::Group(sub) => {
                    if !self.has_selected(sub) {
                        continue;
                    }
                    let m = sub.settings.max_score.unwrap_or(child_default);
                    self.v2023_scored_group(sub, m)
                }
            };
            scores.push(s);
            first = first.or(fail);
            // A min group's score is 0 once anything fails: nothing more to learn.
            if agg == Aggregation::Min && fail.is_some() {
                break;
            }
        }
        let total = match agg {
            Aggregation::Sum => scores.iter().sum(),
            Aggregation::Min => scores.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregation::PassFail => unreachable!("handled above"),
        };
        (if total.is_finite() { total } else { 0.0 }, first)
    }
}

/// The legacy default grader over `subs`.
fn grade(
    subs: &[SubResult],
    vmode: VerdictMode,
    smode: ScoreMode,
    accept_if_any: bool,
) -> SubResult {
    let score = if subs.is_empty() {
        0.0
    } else {
        let it = subs.iter().map(|r| r.score);
        match smode {
            ScoreMode::Sum => it.sum(),
            ScoreMode::Avg => it.sum::<f64>() / subs.len() as f64,
            ScoreMode::Min => it.fold(f64::INFINITY, f64::min),
            ScoreMode::Max => it.fold(f64::NEG_INFINITY, f64::max),
        }
    };
    let all_ac = subs.iter().all(|r| r.verdict == Verdict::AC);
    let any_ac = subs.iter().any(|r| r.verdict == Verdict::AC);
    let verdict = if all_ac || (accept_if_any && any_ac) {
        Verdict::AC
    } else {
        match vmode {
            VerdictMode::AlwaysAccept => Verdict::AC,
            VerdictMode::FirstError => subs
                .iter()
                .find(|r| r.verdict != Verdict::AC)
                .map(|r| r.verdict)
                .unwrap_or(Verdict::AC),
            VerdictMode::WorstError => subs
                .iter()
                .map(|r| r.verdict)
                .max_by_key(|v| severity(*v))
                .unwrap_or(Verdict::AC),
        }
    };
    SubResult { verdict, score }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Problem) {
        let t = tempfile::tempdir().unwrap();
        for (rel, c) in files {
            write(t.path(), rel, c);
        }
        let p = Problem::load(t.path()).unwrap();
        (t, p)
    }

    /// Runs `evaluate` with verdicts by test name (missing = AC); returns the aggregate
    /// and the names judged in order.
    fn run(
        p: &Problem,
        verdicts: &[(&str, Verdict)],
        samples_only: bool,
    ) -> (Aggregate, Vec<String>, Vec<Option<f64>>) {
        let map: HashMap<&str, Verdict> = verdicts.iter().copied().collect();
        let mut judged = Vec::new();
        let sel = |i: usize| !samples_only || p.tests[i].is_sample;
        let (agg, scores) = evaluate(p, &sel, &mut |i| {
            let name = p.tests[i].name.as_str();
            judged.push(name.to_string());
            CaseOutcome::of(*map.get(name).unwrap_or(&Verdict::AC))
        });
        (agg, judged, scores)
    }

    fn tc(name: &str) -> [(String, &'static str); 2] {
        [
            (format!("data/{name}.in"), ""),
            (format!("data/{name}.ans"), ""),
        ]
    }

    fn files(names: &[&str], extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = names
            .iter()
            .flat_map(|n| tc(n))
            .map(|(a, b)| (a, b.to_string()))
            .collect();
        v.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        v
    }

    fn load_owned(v: &[(String, String)]) -> (tempfile::TempDir, Problem) {
        let refs: Vec<(&str, &str)> = v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        load(&refs)
    }

    #[test]
    fn pass_fail_stops_at_the_first_rejection() {
        let (_t, p) = load_owned(&files(
            &["sample/1", "secret/1", "secret/2", "secret/3"],
            &[],
        ));
        let (agg, judged, _) = run(
            &p,
            &[("secret/2", Verdict::TLE), ("secret/3", Verdict::WA)],
            false,
        );
        assert_eq!(agg.verdict, Verdict::TLE);
        assert_eq!(agg.score, None);
        assert_eq!(judged, ["sample/1", "secret/1", "secret/2"]);
        let (agg, judged, _) = run(&p, &[("sample/1", Verdict::WA)], false);
        assert_eq!(agg.verdict, Verdict::WA);
        assert_eq!(judged, ["sample/1"], "a failing sample stops judging");
        let (agg, judged, _) = run(&p, &[("secret/1", Verdict::WA)], true);
        assert_eq!(agg.verdict, Verdict::AC);
        assert_eq!(judged, ["sample/1"]);
    }

    #[test]
    fn on_reject_continue_uses_the_worst_error() {
        let (_t, p) = load_owned(&files(
            &["secret/1", "secret/2", "secret/3"],
            &[("data/testdata.yaml", "on_reject: continue\n")],
        ));
        let (agg, judged, _) = run(
            &p,
            &[("secret/1", Verdict::WA), ("secret/2", Verdict::RTE)],
            false,
        );
        assert_eq!(judged.len(), 3);
        assert_eq!(agg.verdict, Verdict::RTE, "worst_error: RTE before WA");
        let (_t, p) = load_owned(&files(
            &["secret/1", "secret/2", "secret/3"],
            &[(
                "data/testdata.yaml",
                "on_reject: continue\ngrader_flags: first_error\n",
            )],
        ));
        let (agg, _, _) = run(
            &p,
            &[("secret/1", Verdict::WA), ("secret/2", Verdict::RTE)],
            false,
        );
        assert_eq!(agg.verdict, Verdict::WA);
    }

    #[test]
    fn ie_aborts_and_wins() {
        let (_t, p) = load_owned(&files(
            &["secret/1", "secret/2", "secret/3"],
            &[(
                "data/testdata.yaml",
                "on_reject: continue\ngrader_flags: accept_if_any_accepted\n",
            )],
        ));
        let (agg, judged, _) = run(&p, &[("secret/2", Verdict::IE)], false);
        assert_eq!(agg.verdict, Verdict::IE);
        assert_eq!(judged, ["secret/1", "secret/2"]);
    }

    #[test]
    fn legacy_subtasks_with_min_and_sum() {
        let (_t, p) = load_owned(&files(
            &["sample/1", "secret/g1/1", "secret/g1/2", "secret/g2/1", "secret/g2/2"],
            &[
                ("problem.yaml", "type: scoring\n"),
                ("data/testdata.yaml", "on_reject: continue\ngrader_flags: ignore_sample accept_if_any_accepted\nrange: 0 100\n"),
                ("data/secret/testdata.yaml", "on_reject: continue\ngrader_flags: sum accept_if_any_accepted\n"),
                ("data/secret/g1/testdata.yaml", "grader_flags: min\naccept_score: 40\n"),
                ("data/secret/g2/testdata.yaml", "grader_flags: min\naccept_score: 60\n"),
            ],
        ));
        assert_eq!(p.max_score(), Some(100.0));
        let (agg, _, _) = run(&p, &[], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(100.0)));
        let (agg, judged, scores) = run(&p, &[("secret/g2/1", Verdict::WA)], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(40.0)));
        assert!(
            !judged.contains(&"secret/g2/2".to_string()),
            "g2 breaks at its first rejection"
        );
        assert_eq!(scores[3], Some(0.0));
        assert_eq!(scores[1], Some(40.0));
        let (agg, _, _) = run(
            &p,
            &[("secret/g1/2", Verdict::TLE), ("secret/g2/2", Verdict::WA)],
            false,
        );
        assert_eq!(
            agg.verdict,
            Verdict::TLE,
            "nothing accepted: the worst error"
        );
        assert_eq!(agg.score, Some(0.0));
        // The sample is ignored for verdict and score.
        let (agg, _, _) = run(&p, &[("sample/1", Verdict::WA)], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(100.0)));
    }

    #[test]
    fn legacy_scoring_without_range_infers_the_maximum() {
        let (_t, p) = load_owned(&files(
            &["secret/1", "secret/2", "secret/3"],
            &[
                ("problem.yaml", "type: scoring\n"),
                (
                    "data/testdata.yaml",
                    "on_reject: continue\naccept_score: 5\n",
                ),
            ],
        ));
        assert_eq!(p.max_score(), Some(15.0));
        let (agg, _, _) = run(&p, &[("secret/2", Verdict::WA)], false);
        assert_eq!(
            (agg.verdict, agg.score),
            (Verdict::WA, Some(0.0)),
            "not AC: score ignored"
        );
    }

    #[test]
    fn v2023_sum_with_passfail_subgroups() {
        let (_t, p) = load_owned(&files(
            &[
                "sample/1",
                "secret/g1/1",
                "secret/g1/2",
                "secret/g2/1",
                "secret/g2/2",
            ],
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2023-07-draft\ntype: scoring\n",
                ),
                ("data/secret/g1/test_group.yaml", "scoring: {score: 30}\n"),
            ],
        ));
        assert_eq!(p.max_score(), Some(100.0));
        let (agg, _, _) = run(&p, &[], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(100.0)));
        // g2 gets the leftover 70.
        let (agg, judged, _) = run(&p, &[("secret/g1/1", Verdict::WA)], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(70.0)));
        assert!(!judged.contains(&"secret/g1/2".to_string()));
        assert!(
            judged.contains(&"secret/g2/2".to_string()),
            "other groups still judged"
        );
        let (agg, _, _) = run(
            &p,
            &[("secret/g1/2", Verdict::WA), ("secret/g2/1", Verdict::RTE)],
            false,
        );
        assert_eq!((agg.verdict, agg.score), (Verdict::WA, Some(0.0)));
        // A failing sample does not cost points.
        let (agg, _, _) = run(&p, &[("sample/1", Verdict::WA)], false);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(100.0)));
    }

    #[test]
    fn v2023_test_cases_share_the_group_score() {
        let (_t, p) = load_owned(&files(
            &["secret/1", "secret/2", "secret/3", "secret/4"],
            &[(
                "problem.yaml",
                "problem_format_version: 2023-07-draft\ntype: scoring\n",
            )],
        ));
        let mut n = 0;
        let (agg, scores) = evaluate(&p, &|_| true, &mut |i| {
            n += 1;
            match i {
                1 => CaseOutcome::of(Verdict::WA),
                2 => CaseOutcome {
                    verdict: Verdict::AC,
                    score: None,
                    score_multiplier: Some(0.5),
                },
                _ => CaseOutcome::of(Verdict::AC),
            }
        });
        assert_eq!(n, 4);
        assert_eq!(scores, [Some(25.0), Some(0.0), Some(12.5), Some(25.0)]);
        assert_eq!((agg.verdict, agg.score), (Verdict::AC, Some(62.5)));
    }

    #[test]
    fn grader_modes() {
        let s = |v, score| SubResult { verdict: v, score };
        let subs = [
            s(Verdict::AC, 2.0),
            s(Verdict::WA, 1.0),
            s(Verdict::TLE, 6.0),
        ];
        let g = grade(&subs, VerdictMode::WorstError, ScoreMode::Avg, false);
        assert_eq!((g.verdict, g.score), (Verdict::TLE, 3.0));
        let g = grade(&subs, VerdictMode::FirstError, ScoreMode::Max, false);
        assert_eq!((g.verdict, g.score), (Verdict::WA, 6.0));
        let g = grade(&subs, VerdictMode::AlwaysAccept, ScoreMode::Min, false);
        assert_eq!((g.verdict, g.score), (Verdict::AC, 1.0));
        let g = grade(&subs, VerdictMode::WorstError, ScoreMode::Sum, true);
        assert_eq!((g.verdict, g.score), (Verdict::AC, 9.0));
        let g = grade(&[], VerdictMode::WorstError, ScoreMode::Min, false);
        assert_eq!((g.verdict, g.score), (Verdict::AC, 0.0));
    }
}
