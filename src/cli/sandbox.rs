//! `judge sandbox run [limits] -- CMD ARGS...`: one command in a box, isolate-style meta output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::sandbox::{Limits, Mount, Output, RunOutcome, RunSpec, Status, Stdin, BOX_WORK_DIR};

/// `judge sandbox` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run one command in a box and print its outcome.
    Run(RunArgs),
}

/// Arguments of `judge sandbox run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// CPU time limit, e.g. `1s`, `500ms`.
    #[arg(long, default_value = "1s")]
    pub time: String,
    /// Wall-clock limit, e.g. `3s`.
    #[arg(long, default_value = "3s")]
    pub wall: String,
    /// Memory limit, e.g. `256M`, `1G` (binary units).
    #[arg(long, default_value = "256M")]
    pub memory: String,
    /// Maximum processes plus threads.
    #[arg(long, default_value_t = 64)]
    pub pids: u32,
    /// Output (and file size) limit, e.g. `64M`.
    #[arg(long, default_value = "64M")]
    pub output: String,
    /// Standard input from this host file.
    #[arg(long)]
    pub stdin: Option<PathBuf>,
    /// Bind a host folder at the same path inside, read-only unless suffixed `:rw`. Repeatable.
    #[arg(long = "dir")]
    pub dirs: Vec<String>,
    /// Use this backend (`native` or `process`).
    #[arg(long, default_value = "native")]
    pub backend: String,
    /// Print one JSON object (keys status, exit_code, signal, time_ms, wall_ms,
    /// memory_kib) instead of isolate-style meta lines. Either goes to standard error
    /// as its last line(s); the command's own output passes through (stdout to stdout).
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Parses a size with an optional binary unit: `65536`, `64K`, `256M`, `1G` (also `KiB`, `MB`…).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("bad size {s:?}: expected e.g. 256M"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => anyhow::bail!("bad size unit in {s:?}: use K, M or G"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("size {s:?} is too large"))
}

/// Parses a duration such as `1s`, `500ms`, `2.5s` into ms.
pub fn parse_ms(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    if let Some(x) = t.strip_suffix("ms") {
        return Ok(x.trim().parse()?);
    }
    if let Some(x) = t.strip_suffix('s') {
        let v: f64 = x.trim().parse()?;
        anyhow::ensure!(v >= 0.0, "negative duration {s:?}");
        return Ok((v * 1000.0).round() as u64);
    }
    Ok(humantime::parse_duration(t)
        .map_err(|e| anyhow::anyhow!("bad duration {s:?}: {e}"))?
        .as_millis() as u64)
}

/// The `--json` object of `judge sandbox run`.
#[derive(Debug, serde::Serialize)]
pub struct JsonOutcome {
    /// One of ok, nonzero_exit, signaled, time_limit, wall_limit, memory_limit, output_limit, sandbox_error.
    pub status: String,
    /// Exit code, when the program exited.
    pub exit_code: Option<i32>,
    /// Terminating signal, when killed by one.
    pub signal: Option<i32>,
    /// CPU time in ms.
    pub time_ms: u64,
    /// Wall time in ms.
    pub wall_ms: u64,
    /// Peak memory in KiB.
    pub memory_kib: u64,
}

fn status_name(s: Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Builds the run spec of `judge sandbox run`.
pub fn spec_from_args(a: &RunArgs) -> anyhow::Result<RunSpec> {
    let output = parse_size(&a.output)?;
    let limits = Limits {
        cpu_ms: parse_ms(&a.time)?,
        wall_ms: parse_ms(&a.wall)?,
        memory_bytes: parse_size(&a.memory)?,
        pids: a.pids,
        file_size_bytes: output,
        ..Limits::default()
    };
    let mut mounts = Vec::new();
    for d in &a.dirs {
        let (path, writable) = match d.strip_suffix(":rw") {
            Some(p) => (p, true),
            None => (d.strip_suffix(":ro").unwrap_or(d), false),
        };
        let p = std::path::PathBuf::from(path);
        anyhow::ensure!(p.is_absolute(), "--dir {d:?}: the path must be absolute");
        mounts.push(Mount {
            host: p.clone(),
            target: p,
            writable,
        });
    }
    Ok(RunSpec {
        argv: a.command.clone(),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), BOX_WORK_DIR.into()),
            ("LANG".into(), "C.UTF-8".into()),
        ],
        stdin: match &a.stdin {
            Some(p) => Stdin::HostFile(p.clone()),
            None => Stdin::Null,
        },
        stdout: Output::Capture {
            limit: output,
            kill_on_overflow: true,
        },
        stderr: Output::Capture {
            limit: output,
            kill_on_overflow: false,
        },
        mounts,
        limits,
        ..RunSpec::default()
    })
}

/// Runs `judge sandbox ...`. Exit code 0 when the sandbox itself worked (whatever the
/// command did), 1 when it failed (the outcome is then `sandbox_error`).
pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Run(a) = cmd;
    let spec = spec_from_args(&a)?;
    let result = crate::sandbox::open(&a.backend).and_then(|sb| sb.run(&spec));
    let mut out = std::io::stdout().lock();
    match result {
        Ok(o) => {
            out.write_all(&o.stdout)?;
            std::io::stderr().write_all(&o.stderr)?;
            if o.stderr.last().is_some_and(|&b| b != b'\n') {
                // The meta lines start on a line of their own.
                eprintln!();
            }
            out.flush()?;
            if a.json {
                let j = JsonOutcome {
                    status: status_name(o.status),
                    exit_code: o.exit_code,
                    signal: o.signal,
                    time_ms: o.time_ms,
                    wall_ms: o.wall_ms,
                    memory_kib: o.memory_kib,
                };
                eprintln!("{}", serde_json::to_string(&j)?);
            } else {
                eprint!("{}", meta(&o));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            if a.json {
                let j = JsonOutcome {
                    status: "sandbox_error".into(),
                    exit_code: None,
                    signal: None,
                    time_ms: 0,
                    wall_ms: 0,
                    memory_kib: 0,
                };
                eprintln!("{}", serde_json::to_string(&j)?);
            } else {
                eprintln!("status:XX\nmessage:{e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// isolate-style meta lines: `status:` (OK, RE, SG, TO, XX as isolate, plus ML and OL),
/// `exitcode:`, `exitsig:`, `time:` and `time-wall:` in seconds with 3 decimals,
/// `cg-mem:` and `max-rss:` in KiB, `killed:1` when a limit ended the run.
pub fn meta(o: &RunOutcome) -> String {
    let code = match o.status {
        Status::Ok => "OK",
        Status::NonzeroExit => "RE",
        Status::Signaled => "SG",
        Status::TimeLimit | Status::WallLimit => "TO",
        Status::MemoryLimit => "ML",
        Status::OutputLimit => "OL",
    };
    let mut s = format!("status:{code}\n");
    if let Some(c) = o.exit_code {
        s += &format!("exitcode:{c}\n");
    }
    if let Some(g) = o.signal {
        s += &format!("exitsig:{g}\n");
    }
    s += &format!(
        "time:{:.3}\ntime-wall:{:.3}\ncg-mem:{}\nmax-rss:{}\n",
        o.time_ms as f64 / 1000.0,
        o.wall_ms as f64 / 1000.0,
        o.memory_kib,
        o.memory_kib
    );
    if matches!(
        o.status,
        Status::TimeLimit | Status::WallLimit | Status::MemoryLimit | Status::OutputLimit
    ) {
        s += "killed:1\n";
    }
    s += &format!("outcome:{}\n", status_name(o.status));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("64KiB").unwrap(), 64 << 10);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("M").is_err());
        assert_eq!(parse_ms("1s").unwrap(), 1000);
        assert_eq!(parse_ms("2.5s").unwrap(), 2500);
        assert_eq!(parse_ms("500ms").unwrap(), 500);
        assert_eq!(parse_ms("1m").unwrap(), 60_000);
        assert!(parse_ms("fast").is_err());
    }

    #[test]
    fn meta_lines_as_isolate() {
        let o = RunOutcome {
            status: Status::TimeLimit,
            signal: Some(9),
            time_ms: 1003,
            wall_ms: 1250,
            memory_kib: 2048,
            ..RunOutcome::default()
        };
        assert_eq!(
            meta(&o),
            "status:TO\nexitsig:9\ntime:1.003\ntime-wall:1.250\ncg-mem:2048\nmax-rss:2048\nkilled:1\noutcome:time_limit\n"
        );
        let o = RunOutcome {
            status: Status::NonzeroExit,
            exit_code: Some(3),
            ..RunOutcome::default()
        };
        assert!(meta(&o).starts_with("status:RE\nexitcode:3\ntime:0.000\n"));
    }

    #[test]
    fn dirs_become_same_path_mounts() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct T {
            #[command(subcommand)]
            c: Command,
        }
        let t = T::parse_from([
            "t",
            "run",
            "--time",
            "2s",
            "--memory",
            "64M",
            "--dir",
            "/opt/x:rw",
            "--dir",
            "/srv",
            "--",
            "cmd",
        ]);
        let Command::Run(a) = t.c;
        let spec = spec_from_args(&a).unwrap();
        assert_eq!(spec.limits.cpu_ms, 2000);
        assert_eq!(spec.limits.memory_bytes, 64 << 20);
        assert_eq!(
            spec.mounts,
            vec![
                Mount {
                    host: "/opt/x".into(),
                    target: "/opt/x".into(),
                    writable: true
                },
                Mount {
                    host: "/srv".into(),
                    target: "/srv".into(),
                    writable: false
                },
            ]
        );
        assert_eq!(spec.argv, ["cmd"]);
    }
}
