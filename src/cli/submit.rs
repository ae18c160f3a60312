//! `judge submit FILE --problem ID`: upload, then follow the verdict test by test.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::Client;
use crate::cli::test::exit_code_for;
use crate::engine::api::wire::{event, SubmissionView, SubmitRequest, SubmitResponse};
use crate::engine::model::Priority;
use crate::judge::{CompileResult, JudgeResult, TestResult, Verdict};

/// Arguments of `judge submit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The source file.
    pub file: PathBuf,
    /// Problem id on the server.
    #[arg(long, short)]
    pub problem: String,
    /// Language id; guessed from the extension when absent.
    #[arg(long)]
    pub lang: Option<String>,
    /// Server URL (else JUDGE_SERVER, else the client config).
    #[arg(long, env = "JUDGE_SERVER")]
    pub server: Option<String>,
    /// API token (else JUDGE_TOKEN, else the client config).
    #[arg(long, env = "JUDGE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Priority: high, normal or low.
    #[arg(long)]
    pub priority: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print only the submission id and return.
    #[arg(long)]
    pub no_wait: bool,
}

/// Runs `judge submit`. Exit code: the verdict's (as `judge test`), 1 when the command failed.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let source = String::from_utf8(source)
        .map_err(|_| anyhow!("{} is not UTF-8 text", args.file.display()))?;
    let language = match args.lang {
        Some(l) => l,
        None => {
            let id = crate::judge::language::Languages::builtin()
                .guess(&args.file, source.as_bytes())
                .map(|l| l.id.clone())
                .ok_or_else(|| {
                    anyhow!(
                        "cannot tell the language of {}: pass --lang",
                        args.file.display()
                    )
                })?;
            if !args.json {
                eprintln!(
                    "{}: language {id} (guessed from the file; --lang to choose another)",
                    args.file.display()
                );
            }
            id
        }
    };
    let priority = match args.priority.as_deref() {
        None => None,
        Some("high") => Some(Priority::High),
        Some("normal") => Some(Priority::Normal),
        Some("low") => Some(Priority::Low),
        Some(p) => bail!("unknown priority {p:?} (expected high, normal or low)"),
    };
    let client = Client::resolve(args.server, args.token)?;
    let req = SubmitRequest {
        problem: args.problem,
        language,
        source,
        priority,
        cpus: None,
    };
    // The same key on every retry: a request that reached the server once is not stored twice.
    let key = uuid::Uuid::new_v4().to_string();
    let mut attempt = 0;
    let resp: SubmitResponse = loop {
        match client.post_json("/api/v1/submissions", &req, Some(&key)) {
            Ok(r) => break r,
            Err(e) if attempt < 3 && e.downcast_ref::<reqwest::Error>().is_some() => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 * attempt));
            }
            Err(e) => return Err(e),
        }
    };
    if args.no_wait {
        if args.json {
            crate::cli::client::out(format_args!("{}", serde_json::json!({ "id": resp.id })));
        } else {
            crate::cli::client::out(format_args!("{}", resp.id));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        eprintln!("submission {}", resp.id);
    }
    let (result, max_score) = follow(&client, &resp.id)?;
    if args.json {
        let mut v = serde_json::to_value(&result)?;
        v.as_object_mut()
            .expect("a JudgeResult is an object")
            .insert("id".into(), resp.id.clone().into());
        crate::cli::client::out(format_args!("{v}"));
    } else {
        print_result(&result);
    }
    Ok(ExitCode::from(exit_code_for(&result, max_score)))
}

/// Follows the submission's events with a progress bar on stderr until its final result.
/// Reconnects (the server replays what happened so far) if the stream breaks.
/// Returns the final result and the problem's full score (scoring problems).
pub fn follow(client: &Client, id: &str) -> anyhow::Result<(JudgeResult, Option<f64>)> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("queued");
    bar.enable_steady_tick(Duration::from_millis(120));
    let mut failures = 0;
    loop {
        match follow_once(client, id, &bar) {
            Ok(Some(r)) => {
                bar.finish_and_clear();
                return Ok(r);
            }
            Ok(None) | Err(_) if failures < 5 => {
                failures += 1;
                std::thread::sleep(Duration::from_millis(500 * failures));
                // The stream ended early (server restart): see whether it is done already.
                if let Ok(v) =
                    client.get_json::<SubmissionView>(&format!("/api/v1/submissions/{id}"))
                {
                    if let Some(r) = v.result() {
                        bar.finish_and_clear();
                        return Ok((r, v.max_score));
                    }
                }
            }
            Ok(None) => {
                bar.finish_and_clear();
                bail!("the event stream of submission {id} ended without a result; see `judge status {id}`")
            }
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.context(format!(
                    "following submission {id}; see `judge status {id}`"
                )));
            }
        }
    }
}

fn follow_once(
    client: &Client,
    id: &str,
    bar: &ProgressBar,
) -> anyhow::Result<Option<(JudgeResult, Option<f64>)>> {
    let mut events = client.events(&format!("/api/v1/submissions/{id}/events"))?;
    while let Some(ev) = events.next_event()? {
        let data: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or_default();
        match ev.event.as_str() {
            event::QUEUED => {
                bar.set_message(format!("queued ({})", data["pool"].as_str().unwrap_or("?")))
            }
            event::COMPILING => bar.set_message("compiling"),
            event::COMPILED => {
                let c: CompileResult =
                    serde_json::from_value(data["compile"].clone()).unwrap_or_default();
                bar.set_length(data["total_tests"].as_u64().unwrap_or(0));
                bar.set_position(0);
                bar.set_message(if c.ok {
                    "running"
                } else {
                    "compilation failed"
                });
            }
            event::TEST => {
                let t: TestResult =
                    serde_json::from_value(data["result"].clone()).context("a test event")?;
                if let Some(total) = data["total"].as_u64() {
                    bar.set_length(total);
                }
                bar.set_position(data["index"].as_u64().unwrap_or(0) + 1);
                bar.set_message(format!("{} {}", t.name, t.verdict));
            }
            event::FINAL => {
                let r: JudgeResult =
                    serde_json::from_value(data["result"].clone()).context("the final event")?;
                return Ok(Some((r, data["max_score"].as_f64())));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Prints a final result for people: verdict, time, memory, failing test, compiler message.
pub fn print_result(r: &JudgeResult) {
    let time = r.tests.iter().map(|t| t.time_ms).max().unwrap_or(0);
    let mem = r.tests.iter().map(|t| t.memory_kib).max().unwrap_or(0);
    let passed = r.tests.iter().filter(|t| t.verdict == Verdict::AC).count();
    let mut line = format!("{} {}", r.verdict, r.verdict.long_name());
    if let Some(s) = r.score {
        line.push_str(&format!("  score {s}"));
    }
    if !r.tests.is_empty() {
        line.push_str(&format!(
            "  time {time} ms  memory {mem} KiB  tests {passed}/{}",
            r.tests.len()
        ));
    }
    crate::cli::client::out(format_args!("{line}"));
    if let Some(t) = r.tests.iter().find(|t| t.verdict != Verdict::AC) {
        let msg = if t.message.is_empty() {
            String::new()
        } else {
            format!(": {}", crate::cli::printable(&t.message))
        };
        crate::cli::client::out(format_args!(
            "  first failing test {} {}{msg}",
            t.name, t.verdict
        ));
    }
    if (!r.compile.ok || r.verdict == Verdict::IE) && !r.compile.message.is_empty() {
        crate::cli::client::out(format_args!(
            "{}",
            crate::cli::printable(r.compile.message.trim_end())
        ));
    }
}
