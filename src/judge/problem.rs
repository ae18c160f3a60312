//! Problem packages in the Kattis problem package format, `legacy` and `2023-07`
//! (spec: Kattis/problem-package-format, `spec/legacy.md` and `spec/2023-07-draft.md`).
//!
//! [`Problem::load`] reads `problem.yaml`, walks `data/` into a tree of test groups
//! (lexicographic order, `sample` before `secret`), resolves each group's settings
//! (`testdata.yaml` / `test_group.yaml`, inherited down the tree) and locates the
//! output validator. Test files may be symlinks, but only to files inside the package.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

/// Default memory limit when `problem.yaml` gives none: 1024 MiB (in bytes).
pub const DEFAULT_MEMORY_BYTES: u64 = 1024 << 20;
/// Default output limit when `problem.yaml` gives none: 64 MiB (in bytes).
pub const DEFAULT_OUTPUT_BYTES: u64 = 64 << 20;
/// Time limit used when the package gives none and none was derived yet: 1000 ms.
pub const DEFAULT_TIME_LIMIT_MS: u64 = 1000;

/// Why a problem package could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProblemError {
    /// A file or folder could not be read. The I/O error is part of the message, not a
    /// `source()`, so an error chain (`{:#}`) names it once.
    #[error("{path}: {error}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A YAML file is malformed or has a key with a value of the wrong type.
    #[error("{path}: {message}")]
    Invalid {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A test file is a symlink whose target lies outside the package.
    #[error("{path}: symlink points outside the problem package")]
    SymlinkEscape {
        /// The offending link.
        path: PathBuf,
    },
    /// The package has no test case at all.
    #[error("{0}: no test cases (expected data/secret/*.in)")]
    NoTests(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ProblemError + '_ {
    move |error| ProblemError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> ProblemError {
    ProblemError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The version of the package format (`problem_format_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatVersion {
    /// `legacy` (the default when the key is absent).
    Legacy,
    /// `2023-07` / `2023-07-draft` (and later drafts, read the same way).
    V2023,
}

/// Time multipliers used to derive or check a time limit.
///
/// `2023-07`: `ac_to_time_limit` (default 2.0) and `time_limit_to_tle` (default 1.5),
/// `time_resolution` (default 1.0 s). `legacy`: `time_multiplier` (default 5) plays the
/// part of `ac_to_time_limit`, `time_safety_margin` (default 2) the part of
/// `time_limit_to_tle`, and the resolution is one second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeMultipliers {
    /// Slowest accepted run × this ≤ time limit.
    pub ac_to_time_limit: f64,
    /// Time limit × this ≤ fastest time-limit-exceeded run.
    pub time_limit_to_tle: f64,
    /// The derived time limit is a multiple of this, in ms.
    pub resolution_ms: u64,
}

/// Where the time limit in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeLimitSource {
    /// `limits.time_limit` in `problem.yaml`.
    ProblemYaml,
    /// The `.timelimit` file in the package root (written by `judge problem verify`,
    /// also read by DOMjudge and BAPCtools), in seconds.
    TimelimitFile,
    /// Neither: [`DEFAULT_TIME_LIMIT_MS`] until derived from the accepted submissions.
    Default,
}

/// How a failing test case affects the rest of its group (legacy `on_reject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReject {
    /// Stop judging the group at the first rejected test case or subgroup (default).
    Break,
    /// Judge the rest of the group too.
    Continue,
}

/// Verdict aggregation mode of the legacy default grader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictMode {
    /// AC if every sub-result is AC, else the worst error in the order IE, RTE, MLE, TLE, OLE, WA (default).
    WorstError,
    /// AC if every sub-result is AC, else the first rejected sub-result's verdict.
    FirstError,
    /// Always AC.
    AlwaysAccept,
}

/// Score aggregation mode of the legacy default grader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMode {
    /// Sum of the sub-results' scores (default).
    Sum,
    /// Average.
    Avg,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
}

/// The legacy default grader's flags (`grader_flags` in `testdata.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraderFlags {
    /// Verdict mode; the last one given wins.
    pub verdict: VerdictMode,
    /// Score mode; the last one given wins.
    pub score: ScoreMode,
    /// Root only: ignore the first sub-result (`sample`).
    pub ignore_sample: bool,
    /// AC if any sub-result is AC.
    pub accept_if_any_accepted: bool,
}

impl Default for GraderFlags {
    fn default() -> Self {
        GraderFlags {
            verdict: VerdictMode::WorstError,
            score: ScoreMode::Sum,
            ignore_sample: false,
            accept_if_any_accepted: false,
        }
    }
}

impl GraderFlags {
    /// Parses a whitespace-separated flag string; unknown flags are an error.
    pub fn parse(flags: &str) -> Result<GraderFlags, String> {
        let mut g = GraderFlags::default();
        for f in flags.split_whitespace() {
            match f {
                "worst_error" => g.verdict = VerdictMode::WorstError,
                "first_error" => g.verdict = VerdictMode::FirstError,
                "always_accept" => g.verdict = VerdictMode::AlwaysAccept,
                "sum" => g.score = ScoreMode::Sum,
                "avg" => g.score = ScoreMode::Avg,
                "min" => g.score = ScoreMode::Min,
                "max" => g.score = ScoreMode::Max,
                "ignore_sample" => g.ignore_sample = true,
                "accept_if_any_accepted" => g.accept_if_any_accepted = true,
                other => return Err(format!("unknown grader flag {other:?}")),
            }
        }
        Ok(g)
    }
}

/// `2023-07` score aggregation of a group (`scoring.aggregation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Full score if every test case of the group and its subgroups is AC, else 0.
    PassFail,
    /// Sum of the children's scores.
    Sum,
    /// Minimum of the children's scores.
    Min,
}

/// The resolved settings of one test group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSettings {
    /// Legacy `on_reject`.
    pub on_reject: OnReject,
    /// Legacy `grader_flags`.
    pub grader: GraderFlags,
    /// Legacy `accept_score` (default 1).
    pub accept_score: f64,
    /// Legacy `reject_score` (default 0).
    pub reject_score: f64,
    /// Legacy `range` (default −inf..+inf).
    pub range: (f64, f64),
    /// Arguments for the output validator of this group's test cases (legacy
    /// `output_validator_flags`, 2023-07 `output_validator_args`), after the problem's
    /// `validator_flags`.
    pub output_validator_args: Vec<String>,
    /// 2023-07 `scoring.score`: the group's maximum score; `None` when not given (inferred).
    pub max_score: Option<f64>,
    /// 2023-07 `scoring.aggregation` (default `sum` for `secret`, `pass-fail` below it).
    pub aggregation: Aggregation,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            on_reject: OnReject::Break,
            grader: GraderFlags::default(),
            accept_score: 1.0,
            reject_score: 0.0,
            range: (f64::NEG_INFINITY, f64::INFINITY),
            output_validator_args: Vec::new(),
            max_score: None,
            aggregation: Aggregation::PassFail,
        }
    }
}

/// One test case: `data/<name>.in` with its `.ans`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// Name relative to `data/` without extension, e.g. `"secret/group1/01"`.
    pub name: String,
    /// The input file (canonical path inside the package).
    pub input: PathBuf,
    /// The answer file (canonical path inside the package).
    pub answer: PathBuf,
    /// Whether it is under `data/sample`.
    pub is_sample: bool,
    /// Arguments for the output validator (problem flags, then the group's).
    pub validator_args: Vec<String>,
}

/// A node of the test data tree.
#[derive(Debug, Clone, PartialEq)]
pub enum TestNode {
    /// A test case, by index into [`Problem::tests`].
    Case(usize),
    /// A subgroup.
    Group(TestGroup),
}

/// A test data group: a folder under `data/`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestGroup {
    /// Path relative to `data/`, e.g. `"secret/group1"`; `""` for the root.
    pub name: String,
    /// Resolved settings.
    pub settings: GroupSettings,
    /// Children in lexicographic order of their base names.
    pub children: Vec<TestNode>,
}

impl TestGroup {
    /// Indices of every test case in this group and its subgroups, in order.
    pub fn case_indices(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.collect_cases(&mut out);
        out
    }

    fn collect_cases(&self, out: &mut Vec<usize>) {
        for c in &self.children {
            match c {
                TestNode::Case(i) => out.push(*i),
                TestNode::Group(g) => g.collect_cases(out),
            }
        }
    }
}

/// How output is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidatorKind {
    /// The built-in default output validator.
    Default,
    /// A custom output validator program (a file or a folder of files).
    Custom {
        /// The program's file or folder.
        path: PathBuf,
    },
}

/// A loaded problem package.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The problem's short name: the package folder's name.
    pub id: String,
    /// The problem's name (`name` in problem.yaml; the English one when it is a map;
    /// the short name when absent).
    pub name: String,
    /// The package folder (canonical).
    pub dir: PathBuf,
    /// The format version.
    pub format: FormatVersion,
    /// Whether the problem is scored (`type: scoring`).
    pub scoring: bool,
    /// Whether the output validator runs interactively with the program.
    pub interactive: bool,
    /// Whether a custom validator produces scores (legacy `validation: custom score`).
    pub validator_scores: bool,
    /// The output validator.
    pub validator: ValidatorKind,
    /// Time limit in ms, when known (explicit or from `.timelimit`).
    time_limit_ms: Option<u64>,
    /// Where [`Problem::time_limit_ms`] comes from.
    pub time_limit_source: TimeLimitSource,
    /// Multipliers for deriving/checking the time limit.
    pub time_multipliers: TimeMultipliers,
    /// Memory limit in bytes.
    pub memory_bytes: u64,
    /// Output limit in bytes.
    pub output_bytes: u64,
    /// Compilation time limit in ms when the package sets one.
    pub compilation_time_ms: Option<u64>,
    /// Compilation memory limit in bytes when the package sets one.
    pub compilation_memory_bytes: Option<u64>,
    /// Every test case in test order (samples first).
    pub tests: Vec<TestCase>,
    /// The root of the test data tree (`data/`).
    pub root: TestGroup,
}

/// Raw contents of one `testdata.yaml` / `test_group.yaml`.
#[derive(Debug, Clone, Default)]
struct RawGroupFile {
    path: PathBuf,
    on_reject: Option<OnReject>,
    grader_flags: Option<GraderFlags>,
    accept_score: Option<f64>,
    reject_score: Option<f64>,
    range: Option<(f64, f64)>,
    output_validator_args: Option<Vec<String>>,
    max_score: Option<f64>,
    aggregation: Option<Aggregation>,
}

impl Problem {
    /// Loads the package in `dir`.
    ///
    /// Errors: [`ProblemError::Io`] when a file cannot be read, [`ProblemError::Invalid`]
    /// for a malformed `problem.yaml` / `testdata.yaml` or a `.in` without its `.ans`,
    /// [`ProblemError::SymlinkEscape`] for a test file linking outside the package,
    /// [`ProblemError::NoTests`] when `data/` holds no test case.
    pub fn load(dir: &Path) -> Result<Problem, ProblemError> {
        let dir = dir.canonicalize().map_err(io_err(dir))?;
        let id = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "problem".to_string());
        let yaml_path = dir.join("problem.yaml");
        let yaml: Value = match std::fs::read_to_string(&yaml_path) {
            Ok(text) => {
                match serde_yaml::from_str(&text).map_err(|e| invalid(&yaml_path, e.to_string()))? {
                    Value::Null => Value::Mapping(Default::default()),
                    v => v,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Value::Mapping(Default::default())
            }
            Err(e) => return Err(io_err(&yaml_path)(e)),
        };
        if !yaml.is_mapping() {
            return Err(invalid(&yaml_path, "expected a map at the top level"));
        }
        let get = |k: &str| yaml.get(k);

        let format = match get("problem_format_version").and_then(Value::as_str) {
            None | Some("legacy") | Some("legacy-icpc") => FormatVersion::Legacy,
            Some(v) if v.starts_with("20") || v == "draft" => FormatVersion::V2023,
            Some(v) => {
                return Err(invalid(
                    &yaml_path,
                    format!("unknown problem_format_version {v:?}"),
                ))
            }
        };

        let name = match get("name") {
            None => id.clone(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Mapping(m)) => m
                .get("en")
                .or_else(|| m.values().next())
                .and_then(Value::as_str)
                .unwrap_or(&id)
                .to_string(),
            Some(_) => return Err(invalid(&yaml_path, "name: expected a string or a map")),
        };

        // type: a string or (2023-07) a list of strings.
        let mut types: Vec<String> = match get("type") {
            None => vec![],
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Sequence(seq)) => seq
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid(&yaml_path, "type: expected strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(invalid(&yaml_path, "type: expected a string or a list")),
        };
        for t in &types {
            if ![
                "pass-fail",
                "scoring",
                "interactive",
                "multi-pass",
                "submit-answer",
            ]
            .contains(&t.as_str())
            {
                return Err(invalid(&yaml_path, format!("unknown problem type {t:?}")));
            }
        }
        if types
            .iter()
            .any(|t| t == "multi-pass" || t == "submit-answer")
        {
            return Err(invalid(
                &yaml_path,
                "multi-pass and submit-answer problems are not supported",
            ));
        }

        // Legacy `validation: default | custom [interactive] [score]`.
        let validation = match get("validation") {
            None => "default".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid(&yaml_path, "validation: expected a string")),
        };
        let vwords: Vec<&str> = validation.split_whitespace().collect();
        match vwords.first() {
            Some(&"default") | Some(&"custom") => {}
            _ => {
                return Err(invalid(
                    &yaml_path,
                    format!("validation: must start with default or custom, got {validation:?}"),
                ))
            }
        }
        if vwords.contains(&"interactive") {
            types.push("interactive".into());
        }
        let validator_scores = vwords.contains(&"score");
        let scoring = types.iter().any(|t| t == "scoring");
        let interactive = types.iter().any(|t| t == "interactive");

        let validator_flags: Vec<String> = match get("validator_flags") {
            None => vec![],
            Some(v) => string_or_list(v)
                .ok_or_else(|| invalid(&yaml_path, "validator_flags: expected a string"))?,
        };

        // The output validator program.
        let custom_dir = ["output_validator", "output_validators"]
            .iter()
            .map(|d| dir.join(d))
            .find(|p| p.is_dir() && dir_has_entries(p));
        let wants_custom = match format {
            FormatVersion::Legacy => {
                vwords.first() == Some(&"custom") || (interactive && custom_dir.is_some())
            }
            FormatVersion::V2023 => custom_dir.is_some() || vwords.first() == Some(&"custom"),
        };
        let validator = if wants_custom || interactive {
            let d = custom_dir.ok_or_else(|| {
                invalid(&yaml_path, "a custom (or interactive) output validator is required but output_validator(s)/ is missing or empty")
            })?;
            ValidatorKind::Custom {
                path: validator_program_path(&d)?,
            }
        } else {
            ValidatorKind::Default
        };

        // Limits.
        let limits = get("limits");
        let lim_f64 = |k: &str| -> Result<Option<f64>, ProblemError> {
            match limits.and_then(|l| l.get(k)) {
                None => Ok(None),
                Some(v) => match v.as_f64() {
                    Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
                    _ => Err(invalid(
                        &yaml_path,
                        format!("limits.{k}: expected a positive number"),
                    )),
                },
            }
        };
        let mut time_multipliers = match format {
            FormatVersion::Legacy => TimeMultipliers {
                ac_to_time_limit: lim_f64("time_multiplier")?.unwrap_or(5.0),
                time_limit_to_tle: lim_f64("time_safety_margin")?.unwrap_or(2.0),
                resolution_ms: 1000,
            },
            FormatVersion::V2023 => TimeMultipliers {
                ac_to_time_limit: 2.0,
                time_limit_to_tle: 1.5,
                resolution_ms: 1000,
            },
        };
        if let Some(tm) = limits.and_then(|l| l.get("time_multipliers")) {
            if let Some(x) = tm.get("ac_to_time_limit").and_then(Value::as_f64) {
                time_multipliers.ac_to_time_limit = x;
            }
            if let Some(x) = tm.get("time_limit_to_tle").and_then(Value::as_f64) {
                time_multipliers.time_limit_to_tle = x;
            }
        }
        if let Some(r) = lim_f64("time_resolution")? {
            time_multipliers.resolution_ms = secs_to_ms(r).max(1);
        }
        if time_multipliers.ac_to_time_limit < 1.0 || time_multipliers.time_limit_to_tle < 1.0 {
            return Err(invalid(&yaml_path, "time multipliers must be >= 1"));
        }
        let (time_limit_ms, time_limit_source) = if let Some(t) = lim_f64("time_limit")? {
            (Some(secs_to_ms(t).max(1)), TimeLimitSource::ProblemYaml)
        } else if let Some(t) = read_timelimit_file(&dir)? {
            (Some(t), TimeLimitSource::TimelimitFile)
        } else {
            (None, TimeLimitSource::Default)
        };
        let mib = |x: f64| (x * 1024.0 * 1024.0).round() as u64;
        let memory_bytes = lim_f64("memory")?.map(mib).unwrap_or(DEFAULT_MEMORY_BYTES);
        let output_bytes = lim_f64("output")?.map(mib).unwrap_or(DEFAULT_OUTPUT_BYTES);
        let compilation_time_ms = lim_f64("compilation_time")?.map(secs_to_ms);
        let compilation_memory_bytes = lim_f64("compilation_memory")?.map(mib);

        // Test data.
        let data = dir.join("data");
        let mut tests = Vec::new();
        let mut walker = Walker {
            pkg: &dir,
            format,
            scoring,
            validator_flags: &validator_flags,
            tests: &mut tests,
        };
        let root = walker.group(&data, "", None, &GroupSettings::default(), 0)?;
        if tests.is_empty() {
            return Err(ProblemError::NoTests(dir));
        }

        Ok(Problem {
            id,
            name,
            dir,
            format,
            scoring,
            interactive,
            validator_scores,
            validator,
            time_limit_ms,
            time_limit_source,
            time_multipliers,
            memory_bytes,
            output_bytes,
            compilation_time_ms,
            compilation_memory_bytes,
            tests,
            root,
        })
    }

    /// The time limit in force, in ms (CPU time per test case): `limits.time_limit`,
    /// else the `.timelimit` file, else [`DEFAULT_TIME_LIMIT_MS`].
    pub fn time_limit_ms(&self) -> u64 {
        self.time_limit_ms.unwrap_or(DEFAULT_TIME_LIMIT_MS)
    }

    /// Overrides the time limit (e.g. with one derived from the accepted submissions).
    pub fn set_time_limit_ms(&mut self, ms: u64, source: TimeLimitSource) {
        self.time_limit_ms = Some(ms.max(1));
        self.time_limit_source = source;
    }

    /// The memory limit in bytes (`limits.memory` MiB, default [`DEFAULT_MEMORY_BYTES`]).
    pub fn memory_limit_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// Whether the problem is interactive.
    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    /// Whether the problem is a scoring problem.
    pub fn is_scoring(&self) -> bool {
        self.scoring
    }

    /// Number of test cases (samples included).
    pub fn test_count(&self) -> usize {
        self.tests.len()
    }

    /// Number of sample test cases.
    pub fn sample_count(&self) -> usize {
        self.tests.iter().filter(|t| t.is_sample).count()
    }

    /// The maximum score of a scoring problem: for 2023-07 the `secret` group's score
    /// (default 100); for legacy the upper end of the root `range` when finite, else
    /// the score of an all-accepted run as computed by the graders. `None` on pass-fail problems.
    pub fn max_score(&self) -> Option<f64> {
        if !self.scoring {
            return None;
        }
        Some(crate::judge::scoring::max_score(self))
    }
}

fn secs_to_ms(s: f64) -> u64 {
    (s * 1000.0).round() as u64
}

fn dir_has_entries(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Legacy `output_validators/` holds programs; when it holds exactly one entry that is
/// a folder (or one file), that is the program, else the folder itself is one program.
/// 2023-07 `output_validator/` is the program folder itself.
fn validator_program_path(d: &Path) -> Result<PathBuf, ProblemError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(d)
        .map_err(io_err(d))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    entries.sort();
    if entries.len() == 1 {
        return Ok(entries.remove(0));
    }
    Ok(d.to_path_buf())
}

fn read_timelimit_file(dir: &Path) -> Result<Option<u64>, ProblemError> {
    let p = dir.join(".timelimit");
    match std::fs::read_to_string(&p) {
        Ok(s) => {
            let t: f64 = s
                .trim()
                .parse()
                .map_err(|_| invalid(&p, "expected a number of seconds"))?;
            if !(t > 0.0 && t.is_finite()) {
                return Err(invalid(&p, "expected a positive number of seconds"));
            }
            Ok(Some(secs_to_ms(t).max(1)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&p)(e)),
    }
}

/// A YAML string split on whitespace, or a list of scalars.
fn string_or_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        Value::Sequence(seq) => seq
            .iter()
            .map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        Value::Null => Some(vec![]),
        _ => None,
    }
}

fn parse_float_word(w: &str) -> Option<f64> {
    match w {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => w.parse::<f64>().ok().filter(|x| x.is_finite()),
    }
}

fn read_group_file(dir: &Path) -> Result<Option<RawGroupFile>, ProblemError> {
    let path = ["testdata.yaml", "test_group.yaml"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file());
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let v: Value = match serde_yaml::from_str(&text).map_err(|e| invalid(&path, e.to_string()))? {
        // An empty file (or one with only comments) means the defaults.
        Value::Null => Value::Mapping(Default::default()),
        v => v,
    };
    let mut raw = RawGroupFile {
        path: path.clone(),
        ..Default::default()
    };
    let Value::Mapping(m) = &v else {
        return Err(invalid(&path, "expected a map"));
    };
    for (k, val) in m {
        let key = k.as_str().unwrap_or("");
        let num = |val: &Value| {
            val.as_f64()
                .ok_or_else(|| invalid(&path, format!("{key}: expected a number")))
        };
        match key {
            "on_reject" => {
                raw.on_reject = Some(match val.as_str() {
                    Some("break") => OnReject::Break,
                    Some("continue") => OnReject::Continue,
                    _ => return Err(invalid(&path, "on_reject: expected break or continue")),
                })
            }
            "grading" => {
                if val.as_str() != Some("default") {
                    return Err(invalid(
                        &path,
                        "grading: only `default` is supported (no custom graders)",
                    ));
                }
            }
            "grader_flags" => {
                let s = val.as_str().unwrap_or("");
                raw.grader_flags = Some(GraderFlags::parse(s).map_err(|e| invalid(&path, e))?);
            }
            "accept_score" => raw.accept_score = Some(num(val)?),
            "reject_score" => raw.reject_score = Some(num(val)?),
            "range" => {
                let s = match val {
                    Value::String(s) => s.clone(),
                    Value::Sequence(seq) => seq
                        .iter()
                        .map(|x| {
                            x.as_f64()
                                .map(|f| f.to_string())
                                .or_else(|| x.as_str().map(str::to_string))
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                let w: Vec<&str> = s.split_whitespace().collect();
                let r = match w.as_slice() {
                    [a, b] => parse_float_word(a).zip(parse_float_word(b)),
                    _ => None,
                };
                raw.range =
                    Some(r.ok_or_else(|| {
                        invalid(&path, "range: expected two numbers (inf allowed)")
                    })?);
            }
            "output_validator_flags" | "output_validator_args" => {
                // Legacy also allows {name, flags}: take the flags.
                let args = match val {
                    Value::Mapping(mm) => mm.get("flags").and_then(string_or_list),
                    other => string_or_list(other),
                };
                raw.output_validator_args = Some(args.ok_or_else(|| {
                    invalid(&path, format!("{key}: expected a string or a list"))
                })?);
            }
            "scoring" => {
                let Value::Mapping(sm) = val else {
                    return Err(invalid(&path, "scoring: expected a map"));
                };
                if let Some(s) = sm.get("score") {
                    raw.max_score = match s {
                        Value::String(t) if t == "unbounded" => Some(f64::INFINITY),
                        other => Some(other.as_f64().filter(|x| *x >= 0.0).ok_or_else(|| {
                            invalid(
                                &path,
                                "scoring.score: expected a non-negative number or unbounded",
                            )
                        })?),
                    };
                }
                if let Some(a) = sm.get("aggregation") {
                    raw.aggregation = Some(match a.as_str() {
                        Some("pass-fail") => Aggregation::PassFail,
                        Some("sum") => Aggregation::Sum,
                        Some("min") => Aggregation::Min,
                        _ => {
                            return Err(invalid(
                                &path,
                                "scoring.aggregation: expected pass-fail, sum or min",
                            ))
                        }
                    });
                }
            }
            // 2023-07 `score` / `aggregation` at top level of older drafts.
            "score" => raw.max_score = Some(num(val)?),
            "aggregation" => {
                raw.aggregation = Some(match val.as_str() {
                    Some("pass-fail") => Aggregation::PassFail,
                    Some("sum") => Aggregation::Sum,
                    Some("min") => Aggregation::Min,
                    _ => {
                        return Err(invalid(
                            &path,
                            "aggregation: expected pass-fail, sum or min",
                        ))
                    }
                })
            }
            // Keys that do not change judging.
            "input_validator_flags"
            | "input_validator_args"
            | "full_feedback"
            | "hint"
            | "description"
            | "static_validation"
            | "args"
            | "require_pass" => {}
            other => return Err(invalid(&path, format!("unknown key {other:?}"))),
        }
    }
    Ok(Some(raw))
}

struct Walker<'a> {
    pkg: &'a Path,
    format: FormatVersion,
    scoring: bool,
    validator_flags: &'a [String],
    tests: &'a mut Vec<TestCase>,
}

impl Walker<'_> {
    /// Builds the group at `dir` (named `name` relative to data/). `inherited` is the
    /// nearest ancestor's raw file (legacy inherits the whole file); `parent` the
    /// parent's resolved settings (2023-07 inherits key by key).
    fn group(
        &mut self,
        dir: &Path,
        name: &str,
        inherited: Option<&RawGroupFile>,
        parent: &GroupSettings,
        depth: usize,
    ) -> Result<TestGroup, ProblemError> {
        if depth > 16 {
            return Err(invalid(dir, "test groups nested too deep"));
        }
        let own = if dir.is_dir() {
            read_group_file(dir)?
        } else {
            None
        };
        let settings = self.resolve(name, own.as_ref(), inherited, parent);
        let effective_raw = own.as_ref().or(inherited);

        let mut group = TestGroup {
            name: name.to_string(),
            settings,
            children: Vec::new(),
        };
        if !dir.is_dir() {
            return Ok(group);
        }
        // Collect base names: test cases (`x.in`) and subgroups (folders).
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            let fname = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.is_empty() {
                // Only `sample` and `secret` are judged at the root.
                if (fname == "sample" || fname == "secret") && path.is_dir() {
                    entries.insert(fname, Entry::Group(path));
                }
                continue;
            }
            if let Some(base) = fname.strip_suffix(".in") {
                if path.is_file() {
                    entries.insert(base.to_string(), Entry::Case(path));
                }
            } else if path.is_dir() && !fname.ends_with(".files") && !fname.starts_with('.') {
                entries.insert(fname, Entry::Group(path));
            }
        }
        for (base, entry) in entries {
            let child_name = if name.is_empty() {
                base.clone()
            } else {
                format!("{name}/{base}")
            };
            match entry {
                Entry::Group(path) => {
                    let g = self.group(
                        &path,
                        &child_name,
                        effective_raw,
                        &group.settings,
                        depth + 1,
                    )?;
                    group.children.push(TestNode::Group(g));
                }
                Entry::Case(input) => {
                    let answer_link = input.with_extension("ans");
                    let input = self.inside(&input)?;
                    if !answer_link.exists() && std::fs::symlink_metadata(&answer_link).is_err() {
                        return Err(invalid(
                            &answer_link,
                            "missing answer file for this test case",
                        ));
                    }
                    let answer = self.inside(&answer_link)?;
                    let mut validator_args = self.validator_flags.to_vec();
                    validator_args.extend(group.settings.output_validator_args.iter().cloned());
                    self.tests.push(TestCase {
                        name: child_name,
                        input,
                        answer,
                        is_sample: name == "sample" || name.starts_with("sample/"),
                        validator_args,
                    });
                    group.children.push(TestNode::Case(self.tests.len() - 1));
                }
            }
        }
        Ok(group)
    }

    fn resolve(
        &self,
        name: &str,
        own: Option<&RawGroupFile>,
        inherited: Option<&RawGroupFile>,
        parent: &GroupSettings,
    ) -> GroupSettings {
        let mut s = GroupSettings::default();
        match self.format {
            FormatVersion::Legacy => {
                // Legacy: a group without testdata.yaml uses the closest ancestor's file.
                if let Some(raw) = own.or(inherited) {
                    apply_legacy(&mut s, raw);
                }
            }
            FormatVersion::V2023 => {
                // 2023-07: output_validator_args inherited key by key; scoring not inherited.
                s.output_validator_args = parent.output_validator_args.clone();
                if let Some(raw) = own {
                    apply_legacy(&mut s, raw);
                    if raw.output_validator_args.is_none() {
                        s.output_validator_args = parent.output_validator_args.clone();
                    }
                }
                s.max_score = own.and_then(|r| r.max_score);
                s.aggregation = own
                    .and_then(|r| r.aggregation)
                    .unwrap_or(if name == "secret" {
                        Aggregation::Sum
                    } else {
                        Aggregation::PassFail
                    });
                if self.scoring && name == "secret" && s.max_score.is_none() {
                    s.max_score = Some(100.0);
                }
            }
        }
        s
    }

    /// Resolves `p` (possibly a symlink) and checks it stays inside the package.
    fn inside(&self, p: &Path) -> Result<PathBuf, ProblemError> {
        let real = p.canonicalize().map_err(io_err(p))?;
        if !real.starts_with(self.pkg) {
            return Err(ProblemError::SymlinkEscape {
                path: p.to_path_buf(),
            });
        }
        if !real.is_file() {
            return Err(invalid(p, "not a regular file"));
        }
        Ok(real)
    }
}

fn apply_legacy(s: &mut GroupSettings, raw: &RawGroupFile) {
    if let Some(x) = raw.on_reject {
        s.on_reject = x;
    }
    if let Some(x) = raw.grader_flags {
        s.grader = x;
    }
    if let Some(x) = raw.accept_score {
        s.accept_score = x;
    }
    if let Some(x) = raw.reject_score {
        s.reject_score = x;
    }
    if let Some(x) = raw.range {
        s.range = x;
    }
    if let Some(x) = &raw.output_validator_args {
        s.output_validator_args = x.clone();
    }
    let _ = &raw.path;
}

enum Entry {
    Case(PathBuf),
    Group(PathBuf),
}

/// Derives a time limit in ms from the slowest accepted run `t_ac_ms` and the fastest
/// time-limit-exceeded run `t_tle_ms` (if any), as `2023-07` "Problem Timing" says: the
/// smallest positive multiple of the resolution `tl` with `t_ac × ac_to_time_limit ≤ tl`
/// and `tl × time_limit_to_tle ≤ t_tle`. Legacy packages use the same rule with
/// `time_multiplier`, `time_safety_margin` and a one-second resolution.
///
/// Errors with a message when no such multiple exists.
pub fn derive_time_limit_ms(
    t_ac_ms: u64,
    t_tle_ms: Option<u64>,
    m: &TimeMultipliers,
) -> Result<u64, String> {
    let res = m.resolution_ms.max(1);
    let lower = t_ac_ms as f64 * m.ac_to_time_limit;
    // Smallest k ≥ 1 with k·res ≥ lower (tolerating float noise).
    let mut k = ((lower / res as f64) - 1e-9).ceil().max(1.0) as u64;
    if (k * res) as f64 + 1e-9 < lower {
        k += 1;
    }
    let tl = k * res;
    if let Some(tle) = t_tle_ms {
        if tl as f64 * m.time_limit_to_tle > tle as f64 + 1e-9 {
            return Err(format!(
                "no time limit fits: slowest accepted {t_ac_ms} ms × {} needs ≥ {tl} ms, but the fastest time-limit-exceeded run ({tle} ms) must be ≥ time limit × {}",
                m.ac_to_time_limit, m.time_limit_to_tle
            ));
        }
    }
    Ok(tl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// `judge test --problem /missing` said "No such file or directory" twice: the I/O
    /// error was both in the message and the `source()` that `{:#}` appends.
    #[test]
    fn missing_package_error_names_the_io_error_once() {
        let t = tempfile::tempdir().unwrap();
        let missing = t.path().join("missing");
        let err = Problem::load(&missing).unwrap_err();
        let chain = format!("{:#}", anyhow::Error::new(err));
        assert_eq!(
            chain.matches("No such file or directory").count(),
            1,
            "{chain}"
        );
        assert!(chain.contains(&missing.display().to_string()), "{chain}");
    }

    fn pkg(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::Builder::new().prefix("prob").tempdir().unwrap();
        for (rel, c) in files {
            write(t.path(), rel, c);
        }
        t
    }

    #[test]
    fn legacy_package_with_groups_in_lexicographic_order() {
        let t = pkg(&[
            ("problem.yaml", "name: Hello\nlimits:\n  memory: 64\n  time_limit: 2.5\nvalidator_flags: float_tolerance 1e-6\n"),
            ("data/sample/1.in", "1\n"),
            ("data/sample/1.ans", "1\n"),
            ("data/secret/b.in", "b"),
            ("data/secret/b.ans", "b"),
            ("data/secret/a/02.in", ""),
            ("data/secret/a/02.ans", ""),
            ("data/secret/a/01.in", ""),
            ("data/secret/a/01.ans", ""),
            ("data/secret/a/testdata.yaml", "output_validator_flags: case_sensitive\non_reject: continue\n"),
            ("data/invalid_input/x.in", ""),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert_eq!(p.name, "Hello");
        assert_eq!(p.format, FormatVersion::Legacy);
        assert_eq!(p.time_limit_ms(), 2500);
        assert_eq!(p.time_limit_source, TimeLimitSource::ProblemYaml);
        assert_eq!(p.memory_limit_bytes(), 64 << 20);
        assert_eq!(p.output_bytes, DEFAULT_OUTPUT_BYTES);
        let names: Vec<&str> = p.tests.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["sample/1", "secret/a/01", "secret/a/02", "secret/b"]
        );
        assert!(p.tests[0].is_sample && !p.tests[1].is_sample);
        assert_eq!(
            p.tests[1].validator_args,
            ["float_tolerance", "1e-6", "case_sensitive"]
        );
        assert_eq!(p.tests[3].validator_args, ["float_tolerance", "1e-6"]);
        assert_eq!(p.validator, ValidatorKind::Default);
        assert!(!p.is_interactive() && !p.is_scoring());
        assert_eq!(p.test_count(), 4);
        // Tree: root → sample, secret → (a → 01, 02), b
        let secret = match &p.root.children[1] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        assert_eq!(secret.name, "secret");
        assert_eq!(secret.settings.on_reject, OnReject::Break);
        let a = match &secret.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        assert_eq!(a.settings.on_reject, OnReject::Continue);
        assert_eq!(a.case_indices(), [1, 2]);
    }

    #[test]
    fn legacy_testdata_yaml_is_inherited_as_a_whole_file() {
        let t = pkg(&[
            ("problem.yaml", "type: scoring\n"),
            (
                "data/testdata.yaml",
                "on_reject: continue\ngrader_flags: ignore_sample accept_if_any_accepted\n",
            ),
            (
                "data/secret/testdata.yaml",
                "on_reject: continue\ngrader_flags: sum accept_if_any_accepted\n",
            ),
            (
                "data/secret/g1/testdata.yaml",
                "grader_flags: min\naccept_score: 30\nrange: 0 30\n",
            ),
            ("data/secret/g1/sub/1.in", ""),
            ("data/secret/g1/sub/1.ans", ""),
            ("data/secret/g2/1.in", ""),
            ("data/secret/g2/1.ans", ""),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert!(p.is_scoring());
        assert!(p.root.settings.grader.ignore_sample);
        let secret = match &p.root.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        let g1 = match &secret.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        let sub = match &g1.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        let g2 = match &secret.children[1] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        assert_eq!(g1.settings.accept_score, 30.0);
        assert_eq!(g1.settings.grader.score, ScoreMode::Min);
        assert_eq!(
            g1.settings.on_reject,
            OnReject::Break,
            "g1's own file has no on_reject: default"
        );
        assert_eq!(g1.settings.range, (0.0, 30.0));
        // sub has no file: it uses g1's whole file.
        assert_eq!(sub.settings, g1.settings);
        // g2 has no file: it uses secret's.
        assert_eq!(g2.settings.grader.score, ScoreMode::Sum);
        assert_eq!(g2.settings.on_reject, OnReject::Continue);
        assert!(g2.settings.grader.accept_if_any_accepted);
    }

    #[test]
    fn v2023_scoring_defaults_and_key_inheritance() {
        let t = pkg(&[
            ("problem.yaml", "problem_format_version: 2023-07-draft\nname: {en: Sub, de: Unter}\ntype: [scoring]\nlimits: {time_multipliers: {ac_to_time_limit: 3}}\n"),
            ("data/secret/test_group.yaml", "output_validator_args: [space_change_sensitive]\n"),
            ("data/secret/g1/test_group.yaml", "scoring: {score: 40}\n"),
            ("data/secret/g1/1.in", ""),
            ("data/secret/g1/1.ans", ""),
            ("data/secret/g2/1.in", ""),
            ("data/secret/g2/1.ans", ""),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert_eq!(p.format, FormatVersion::V2023);
        assert_eq!(p.name, "Sub");
        assert_eq!(p.time_multipliers.ac_to_time_limit, 3.0);
        assert_eq!(p.time_multipliers.time_limit_to_tle, 1.5);
        assert_eq!(p.time_limit_source, TimeLimitSource::Default);
        assert_eq!(p.time_limit_ms(), DEFAULT_TIME_LIMIT_MS);
        let secret = match &p.root.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        assert_eq!(secret.settings.aggregation, Aggregation::Sum);
        assert_eq!(secret.settings.max_score, Some(100.0));
        let g1 = match &secret.children[0] {
            TestNode::Group(g) => g,
            _ => panic!(),
        };
        assert_eq!(g1.settings.aggregation, Aggregation::PassFail);
        assert_eq!(g1.settings.max_score, Some(40.0));
        assert_eq!(p.tests[0].validator_args, ["space_change_sensitive"]);
        assert_eq!(p.tests[1].validator_args, ["space_change_sensitive"]);
    }

    #[test]
    fn symlinks_inside_are_followed_and_outside_refused() {
        let t = pkg(&[
            ("data/secret/1.in", "1"),
            ("data/secret/1.ans", "1"),
            ("shared/x.in", "x"),
        ]);
        std::os::unix::fs::symlink("../../shared/x.in", t.path().join("data/secret/2.in")).unwrap();
        std::os::unix::fs::symlink("1.ans", t.path().join("data/secret/2.ans")).unwrap();
        let p = Problem::load(t.path()).unwrap();
        assert_eq!(p.tests.len(), 2);
        assert!(p.tests[1].input.ends_with("shared/x.in"));

        let outside = tempfile::NamedTempFile::new().unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("data/secret/3.in")).unwrap();
        fs::write(t.path().join("data/secret/3.ans"), "").unwrap();
        match Problem::load(t.path()) {
            Err(ProblemError::SymlinkEscape { path }) => assert!(path.ends_with("3.in")),
            other => panic!("expected SymlinkEscape, got {other:?}"),
        }
    }

    #[test]
    fn missing_answer_and_bad_yaml_are_errors() {
        let t = pkg(&[("data/secret/1.in", "1")]);
        assert!(matches!(
            Problem::load(t.path()),
            Err(ProblemError::Invalid { .. })
        ));
        let t = pkg(&[
            ("problem.yaml", "type: [pass-fail\n"),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
        ]);
        assert!(matches!(
            Problem::load(t.path()),
            Err(ProblemError::Invalid { .. })
        ));
        let t = pkg(&[
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
            ("data/secret/testdata.yaml", "on_reject: maybe\n"),
        ]);
        assert!(matches!(
            Problem::load(t.path()),
            Err(ProblemError::Invalid { .. })
        ));
        let t = pkg(&[("problem.yaml", "name: x\n")]);
        assert!(matches!(
            Problem::load(t.path()),
            Err(ProblemError::NoTests(_))
        ));
    }

    #[test]
    fn custom_and_interactive_validators_are_located() {
        let t = pkg(&[
            ("problem.yaml", "validation: custom interactive\n"),
            ("output_validators/guess/validate.cpp", "int main(){}"),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert!(p.is_interactive());
        match &p.validator {
            ValidatorKind::Custom { path } => assert!(path.ends_with("output_validators/guess")),
            v => panic!("{v:?}"),
        }
        let t = pkg(&[
            ("problem.yaml", "validation: custom\n"),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
        ]);
        assert!(
            Problem::load(t.path()).is_err(),
            "custom validation without a validator"
        );
        let t = pkg(&[
            (
                "problem.yaml",
                "problem_format_version: 2023-07-draft\ntype: interactive\n",
            ),
            ("output_validator/validator.py", "print()"),
            ("output_validator/helper.py", ""),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert!(p.is_interactive());
        assert!(
            matches!(&p.validator, ValidatorKind::Custom { path } if path.ends_with("output_validator"))
        );
    }

    #[test]
    fn time_limit_derivation_follows_the_spec() {
        let m = TimeMultipliers {
            ac_to_time_limit: 2.0,
            time_limit_to_tle: 1.5,
            resolution_ms: 1000,
        };
        assert_eq!(derive_time_limit_ms(10, None, &m), Ok(1000));
        assert_eq!(
            derive_time_limit_ms(500, None, &m),
            Ok(1000),
            "exactly at the multiple"
        );
        assert_eq!(derive_time_limit_ms(501, None, &m), Ok(2000));
        assert_eq!(derive_time_limit_ms(1200, Some(4500), &m), Ok(3000));
        assert!(derive_time_limit_ms(1200, Some(4499), &m).is_err());
        let fine = TimeMultipliers {
            resolution_ms: 100,
            ..m
        };
        assert_eq!(derive_time_limit_ms(260, None, &fine), Ok(600));
        assert_eq!(derive_time_limit_ms(0, None, &fine), Ok(100));
    }

    #[test]
    fn timelimit_file_is_read() {
        let t = pkg(&[
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
            (".timelimit", "3\n"),
        ]);
        let p = Problem::load(t.path()).unwrap();
        assert_eq!(p.time_limit_ms(), 3000);
        assert_eq!(p.time_limit_source, TimeLimitSource::TimelimitFile);
    }
}
