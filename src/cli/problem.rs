//! `judge problem verify DIR` and `judge problem new NAME`.
//!
//! `verify` exits 0 when every submission's verdict matches its folder, 1 otherwise
//! (or when the command itself failed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::judge::verify::{verify, VerifyReport};
use crate::judge::{Languages, Problem};

/// `judge problem` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Judge every program under DIR/submissions/<expected verdict>/ and list each whose verdict differs.
    Verify {
        /// The problem package folder.
        dir: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Sandbox backend: `native` or `process`.
        #[arg(long, env = "JUDGE_SANDBOX", default_value = "native")]
        sandbox: String,
    },
    /// Scaffold a new problem package from templates/.
    New {
        /// Folder to create (its last component becomes the short name).
        name: PathBuf,
    },
}

/// The scaffold of `judge problem new`, embedded from `templates/problem/`:
/// `(path, content)`; `{{name}}` and `{{uuid}}` are replaced.
pub const SCAFFOLD: &[(&str, &str)] = &[
    (
        "problem.yaml",
        include_str!("../../templates/problem/problem.yaml"),
    ),
    (
        "statement/problem.en.md",
        include_str!("../../templates/problem/statement/problem.en.md"),
    ),
    (
        "data/sample/01.in",
        include_str!("../../templates/problem/data/sample/01.in"),
    ),
    (
        "data/sample/01.ans",
        include_str!("../../templates/problem/data/sample/01.ans"),
    ),
    (
        "data/secret/01.in",
        include_str!("../../templates/problem/data/secret/01.in"),
    ),
    (
        "data/secret/01.ans",
        include_str!("../../templates/problem/data/secret/01.ans"),
    ),
    (
        "data/secret/02.in",
        include_str!("../../templates/problem/data/secret/02.in"),
    ),
    (
        "data/secret/02.ans",
        include_str!("../../templates/problem/data/secret/02.ans"),
    ),
    (
        "submissions/accepted/solution.py",
        include_str!("../../templates/problem/submissions/accepted/solution.py"),
    ),
    (
        "submissions/accepted/solution.cpp",
        include_str!("../../templates/problem/submissions/accepted/solution.cpp"),
    ),
    (
        "submissions/wrong_answer/difference.py",
        include_str!("../../templates/problem/submissions/wrong_answer/difference.py"),
    ),
    (
        "input_validators/validate.py",
        include_str!("../../templates/problem/input_validators/validate.py"),
    ),
];

/// Creates a new package at `dir` from [`SCAFFOLD`]. Errors when `dir` exists or its
/// name is not a valid short name (lowercase letters and digits, as the spec requires).
pub fn scaffold(dir: &Path) -> anyhow::Result<()> {
    let short = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("the folder needs a name")?;
    if short.is_empty()
        || !short
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        bail!("{short:?}: a problem's short name must consist of lowercase letters a-z and digits 0-9");
    }
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    for (rel, content) in SCAFFOLD {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = content
            .replace("{{name}}", short)
            .replace("{{uuid}}", &uuid);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Human-readable lines of a verification report.
pub fn report_lines(r: &VerifyReport) -> Vec<String> {
    let w = r
        .submissions
        .iter()
        .map(|s| s.path.len())
        .max()
        .unwrap_or(10)
        .max(10);
    let mut out = vec![format!(
        "problem {}: time limit {} ms{}",
        r.problem,
        r.time_limit_ms,
        if r.time_limit_derived {
            " (derived from the accepted submissions)"
        } else {
            ""
        }
    )];
    out.push(format!(
        "{:<w$}  {:<10}  {:<9}  {:>7}  result",
        "submission", "language", "verdict", "time ms"
    ));
    for s in &r.submissions {
        let verdict = s
            .verdict
            .map(|v| v.code().to_string())
            .unwrap_or_else(|| "-".into());
        let score = s
            .score
            .map(|x| format!(" ({})", crate::cli::test::format_score(x)))
            .unwrap_or_default();
        let result = match (&s.skipped, s.ok) {
            (Some(why), _) => format!("skipped: {why}"),
            (None, true) => "ok".to_string(),
            (None, false) => format!("MISMATCH: {}", crate::cli::printable(&s.message)),
        };
        out.push(format!(
            "{:<w$}  {:<10}  {:<9}  {:>7}  {result}",
            s.path,
            s.language.as_deref().unwrap_or("?"),
            format!("{verdict}{score}"),
            s.max_time_ms
        ));
    }
    for warn in &r.warnings {
        out.push(format!("warning: {warn}"));
    }
    let bad = r.submissions.iter().filter(|s| !s.ok).count();
    out.push(if r.ok {
        "verify: ok".to_string()
    } else {
        format!("verify: FAILED ({bad} submission(s) differ)")
    });
    out
}

/// Runs `judge problem ...`.
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::New { name } => {
            scaffold(&name)?;
            eprintln!("created {} (edit problem.yaml, statement/, data/, submissions/, then `judge problem verify {}`)", name.display(), name.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir, json, sandbox } => {
            let mut problem = Problem::load(&dir)
                .with_context(|| format!("loading the problem {}", dir.display()))?;
            let sb = crate::sandbox::open(&sandbox)
                .with_context(|| format!("opening the {sandbox} sandbox"))?;
            let langs = Languages::builtin();
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            let report = verify(sb.as_ref(), &mut problem, &langs, &mut |p| {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(p.current.clone());
            });
            bar.finish_and_clear();
            if report.time_limit_derived && report.ok {
                // Remember it where `judge test`, the engine, DOMjudge and BAPCtools look.
                let secs = report.time_limit_ms as f64 / 1000.0;
                let path = problem.dir.join(".timelimit");
                std::fs::write(&path, format!("{secs}\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("derived time limit {secs} s written to {}", path.display());
            }
            // A closed stdout (piped into `head`) keeps the report's exit code.
            if json {
                crate::cli::client::out(serde_json::to_string(&report)?);
            } else {
                for l in report_lines(&report) {
                    crate::cli::client::out(l);
                }
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaffold_makes_a_loadable_package() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("sum2");
        scaffold(&dir).unwrap();
        let p = Problem::load(&dir).unwrap();
        assert_eq!(p.id, "sum2");
        assert_eq!(p.name, "sum2");
        assert_eq!(p.test_count(), 3);
        assert_eq!(p.time_limit_ms(), 1000);
        assert_eq!(p.memory_limit_bytes(), 256 << 20);
        assert!(scaffold(&dir).is_err(), "refuses an existing folder");
        assert!(scaffold(&t.path().join("Bad_Name")).is_err());
        let yaml = std::fs::read_to_string(dir.join("problem.yaml")).unwrap();
        assert!(!yaml.contains("{{"), "placeholders replaced");
    }
}
