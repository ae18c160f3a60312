//! Programs (a submission or a validator: one file or one folder of files) and their
//! compilation in the sandbox. Compile once, run every test from the same artifacts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::judge::language::{expand_memory_placeholders, Language, LanguageError, Languages};
use crate::sandbox::{
    InputFile, Limits, Mount, Output, RunOutcome, RunSpec, Sandbox, SandboxError, Status, Stdin,
};

/// Compiler diagnostics are capped at this many bytes, then `"\n[truncated]"` follows.
pub const COMPILE_MESSAGE_CAP: usize = 64 << 10;
/// The marker appended to capped messages.
pub const TRUNCATED_MARKER: &str = "\n[truncated]";
/// Default compile wall-clock and CPU limit, in ms.
pub const COMPILE_TIME_MS: u64 = 10_000;
/// Default compile memory limit, in bytes (1 GiB).
pub const COMPILE_MEMORY_BYTES: u64 = 1 << 30;
/// Largest file a compiler may write, in bytes.
pub const COMPILE_FILE_SIZE_BYTES: u64 = 256 << 20;
/// Largest source file or program folder accepted, in bytes.
pub const MAX_PROGRAM_BYTES: u64 = 16 << 20;

/// One source file of a program.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFile {
    /// File name inside the box (plain name, no folders).
    pub name: String,
    /// Its bytes.
    pub content: Arc<Vec<u8>>,
}

/// A program: its files and which one is the main source.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The files, sorted by name.
    pub files: Vec<SourceFile>,
    /// Index of the main source in `files`.
    pub main: usize,
}

/// Why a program could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// Reading failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The program is empty, too large, or has no file of a known language.
    #[error("{0}")]
    Invalid(String),
}

impl Program {
    /// A one-file program whose main source gets `lang`'s source name.
    pub fn single(lang: &Language, source: &[u8]) -> Program {
        Program {
            files: vec![SourceFile {
                name: lang.source_name(source),
                content: Arc::new(source.to_vec()),
            }],
            main: 0,
        }
    }

    /// Reads a program from a file or a folder (regular files directly inside it; links
    /// and subfolders are ignored). Errors when unreadable, empty or over [`MAX_PROGRAM_BYTES`].
    pub fn read(path: &Path) -> Result<Vec<SourceFile>, ProgramError> {
        let io = |e| ProgramError::Io(path.display().to_string(), e);
        let meta = std::fs::metadata(path).map_err(io)?;
        let mut files = Vec::new();
        let mut total = 0u64;
        let mut add = |p: &Path, name: String, len: u64| -> Result<(), ProgramError> {
            total += len;
            if total > MAX_PROGRAM_BYTES {
                return Err(ProgramError::Invalid(format!(
                    "{}: program larger than {} bytes",
                    path.display(),
                    MAX_PROGRAM_BYTES
                )));
            }
            let content =
                std::fs::read(p).map_err(|e| ProgramError::Io(p.display().to_string(), e))?;
            files.push(SourceFile {
                name,
                content: Arc::new(content),
            });
            Ok(())
        };
        if meta.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "main".into());
            add(path, name, meta.len())?;
        } else {
            for e in std::fs::read_dir(path).map_err(io)? {
                let e = e.map_err(io)?;
                let ft = e.file_type().map_err(io)?;
                let name = e.file_name().to_string_lossy().into_owned();
                if ft.is_file() && !name.starts_with('.') {
                    add(&e.path(), name, e.metadata().map_err(io)?.len())?;
                }
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if files.is_empty() {
            return Err(ProgramError::Invalid(format!(
                "{}: no files",
                path.display()
            )));
        }
        Ok(files)
    }

    /// Reads the program at `path` and determines its language (`lang` when given, else
    /// guessed from the extensions) and main file. A single file gets the language's
    /// source name (e.g. `main.cpp`, `Sol.java`); a folder keeps its file names and its
    /// main file is `__main__.py`, `main.*`, `Main.*`, or the first source file.
    pub fn load<'l>(
        path: &Path,
        langs: &'l Languages,
        lang: Option<&'l Language>,
    ) -> Result<(Program, &'l Language), ProgramError> {
        let files = Program::read(path)?;
        let is_file = path.is_file();
        let lang = match lang {
            Some(l) => l,
            None => files
                .iter()
                .find_map(|f| langs.guess(Path::new(&f.name), &f.content))
                .ok_or_else(|| {
                    ProgramError::Invalid(format!(
                        "{}: cannot tell the language from the file name(s); pass --lang",
                        path.display()
                    ))
                })?,
        };
        if is_file {
            let content = files[0].content.clone();
            return Ok((
                Program {
                    files: vec![SourceFile {
                        name: lang.source_name(&content),
                        content,
                    }],
                    main: 0,
                },
                lang,
            ));
        }
        let sources: Vec<usize> = (0..files.len())
            .filter(|&i| lang.matches_extension(&files[i].name))
            .collect();
        let pick =
            |pred: &dyn Fn(&str) -> bool| sources.iter().copied().find(|&i| pred(&files[i].name));
        let main = pick(&|n| n == "__main__.py")
            .or_else(|| pick(&|n| n.starts_with("main.")))
            .or_else(|| pick(&|n| n.starts_with("Main.")))
            .or_else(|| sources.first().copied())
            .ok_or_else(|| {
                ProgramError::Invalid(format!("{}: no {} source file", path.display(), lang.name))
            })?;
        Ok((Program { files, main }, lang))
    }

    /// The main source file.
    pub fn main_file(&self) -> &SourceFile {
        &self.files[self.main]
    }

    fn digest(&self, lang: &Language) -> String {
        let mut h = Sha256::new();
        h.update(lang.id.as_bytes());
        h.update([0]);
        for f in &self.files {
            h.update(f.name.as_bytes());
            h.update([0]);
            h.update((f.content.len() as u64).to_le_bytes());
            h.update(&f.content[..]);
        }
        h.update(self.main.to_le_bytes());
        hex::encode(h.finalize())
    }
}

/// The compile step's wall-clock limit as a multiple of its CPU-time limit.
pub const COMPILE_WALL_FACTOR: u64 = 3;

/// Limits of the compile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// CPU-time limit in ms (summed over every compiler process and thread). The
    /// wall-clock limit is [`COMPILE_WALL_FACTOR`] times this, so that a busy host (more
    /// slots than cores) slowing the compiler down is not blamed on the contestant,
    /// while a compiler blocked on input still ends.
    pub time_ms: u64,
    /// Memory limit in bytes.
    pub memory_bytes: u64,
}

impl Default for CompileLimits {
    fn default() -> Self {
        CompileLimits {
            time_ms: COMPILE_TIME_MS,
            memory_bytes: COMPILE_MEMORY_BYTES,
        }
    }
}

/// A compiled program, ready to run any number of times.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The language.
    pub lang: Language,
    /// Files every run gets (artifacts, plus the sources for interpreted languages).
    pub files: Vec<InputFile>,
    /// The main source's name (for `{source}` in the run argv).
    pub main_source: String,
    /// The class whose `main` runs (for `{main_class}`: [`Language::main_class`]).
    pub main_class: String,
    /// Resolved toolchain mounts.
    pub mounts: Vec<Mount>,
    /// Compiler diagnostics (warnings), capped.
    pub message: String,
}

impl Compiled {
    /// The run argv with `memory_bytes` as the memory limit (for `{memory_mib}`,
    /// `{heap_mib}`, `{stack_kib}`: see [`expand_memory_placeholders`]).
    pub fn run_argv(&self, memory_bytes: u64) -> Vec<String> {
        expand_argv(
            &self.lang.run,
            &self.main_source,
            std::slice::from_ref(&self.main_source),
            &self.main_class,
            memory_bytes,
        )
    }

    /// The run environment with `memory_bytes` as the memory limit (its values' memory
    /// placeholders expanded: see [`Language::environment`]).
    pub fn run_env(&self, memory_bytes: u64) -> Vec<(String, String)> {
        self.lang.environment(memory_bytes)
    }
}

/// Why compilation did not produce a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileFailure {
    /// The submission's fault: a compilation error (CE) with the capped diagnostics.
    Error(String),
    /// The judge's fault (toolchain missing, sandbox failure): IE with a message.
    Internal(String),
}

/// Expands an argv's placeholders (documented in templates/languages.toml): `{sources}`
/// (an element of its own) becomes every source, `{source}` the main source's name,
/// `{main_class}` the class whose `main` runs, and the memory placeholders
/// ([`expand_memory_placeholders`]) follow `memory_bytes`.
fn expand_argv(
    argv: &[String],
    source: &str,
    sources: &[String],
    main_class: &str,
    memory_bytes: u64,
) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len() + sources.len());
    for a in argv {
        if a == "{sources}" {
            out.extend(sources.iter().cloned());
        } else {
            out.push(expand_memory_placeholders(
                &a.replace("{source}", source)
                    .replace("{main_class}", main_class),
                memory_bytes,
            ));
        }
    }
    out
}

/// Caps `s` at [`COMPILE_MESSAGE_CAP`] bytes (on a char boundary) and appends
/// [`TRUNCATED_MARKER`] when it was cut (or `already_truncated`).
pub fn cap_message(s: &str, already_truncated: bool) -> String {
    if s.len() <= COMPILE_MESSAGE_CAP && !already_truncated {
        return s.to_string();
    }
    let mut end = s.len().min(COMPILE_MESSAGE_CAP);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &s[..end], TRUNCATED_MARKER)
}

fn diagnostics(out: &RunOutcome) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.stdout.is_empty() {
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    cap_message(&s, out.stderr_truncated || out.stdout_truncated)
}

/// Runs `spec` in `sandbox`, adapting it to backends without a mount namespace (the
/// `process` backend): there a toolchain mount cannot move a host folder to its box
/// path, so the mount is dropped and its box path is replaced by the host path in the
/// argv and the environment (e.g. `/opt/rust/bin` → `~/.rustup/toolchains/…/bin`).
pub fn run_spec(sandbox: &dyn Sandbox, spec: &mut RunSpec) -> Result<RunOutcome, SandboxError> {
    if sandbox.name() == "process" && !spec.mounts.is_empty() {
        for m in std::mem::take(&mut spec.mounts) {
            let (target, host) = (m.target.display().to_string(), m.host.display().to_string());
            let fix = |s: &mut String| {
                if s.contains(&target) {
                    *s = s.replace(&target, &host);
                }
            };
            spec.argv.iter_mut().for_each(fix);
            spec.env.iter_mut().for_each(|(_, v)| fix(v));
        }
    }
    sandbox.run(spec)
}

/// Compiles `program` as `lang` in `sandbox` with `limits`: every source file goes into
/// the box, the compile argv runs there (its own limits: CPU and wall `limits.time_ms`,
/// memory `limits.memory_bytes`, the language's `compile_pids`), and the artifacts come
/// back. Languages without a compile step only get their sources checked into the result.
pub fn compile(
    sandbox: &dyn Sandbox,
    lang: &Language,
    program: &Program,
    limits: CompileLimits,
) -> Result<Compiled, CompileFailure> {
    if let Err(e) = lang.check_toolchain() {
        return Err(CompileFailure::Internal(e.to_string()));
    }
    let mounts = lang
        .resolve_mounts()
        .map_err(|e: LanguageError| CompileFailure::Internal(e.to_string()))?;
    let main_source = program.main_file().name.clone();
    let main_class = lang.main_class(&main_source, &program.main_file().content);
    let sources: Vec<String> = program
        .files
        .iter()
        .filter(|f| lang.matches_extension(&f.name))
        .map(|f| f.name.clone())
        .collect();
    let sources = if sources.is_empty() {
        vec![main_source.clone()]
    } else {
        sources
    };
    let src_files: Vec<InputFile> = program
        .files
        .iter()
        .map(|f| InputFile {
            path: f.name.clone(),
            content: f.content.clone(),
            executable: false,
        })
        .collect();

    let mut run_files = Vec::new();
    let mut message = String::new();
    if let Some(cmd) = &lang.compile {
        let mut spec = RunSpec {
            argv: expand_argv(
                cmd,
                &main_source,
                &sources,
                &main_class,
                limits.memory_bytes,
            ),
            env: lang.environment(limits.memory_bytes),
            files: src_files.clone(),
            stdin: Stdin::Null,
            stdout: Output::Capture {
                limit: COMPILE_MESSAGE_CAP as u64,
                kill_on_overflow: false,
            },
            stderr: Output::Capture {
                limit: COMPILE_MESSAGE_CAP as u64,
                kill_on_overflow: false,
            },
            mounts: mounts.clone(),
            limits: Limits {
                cpu_ms: limits.time_ms,
                wall_ms: limits.time_ms.saturating_mul(COMPILE_WALL_FACTOR),
                memory_bytes: limits.memory_bytes,
                pids: lang.compile_pids,
                file_size_bytes: COMPILE_FILE_SIZE_BYTES,
                open_files: 512,
                disk_bytes: 2 * COMPILE_FILE_SIZE_BYTES,
            },
            collect: lang.artifacts.clone(),
        };
        let out = run_spec(sandbox, &mut spec).map_err(|e| {
            CompileFailure::Internal(format!("sandbox failed while compiling: {e}"))
        })?;
        message = diagnostics(&out);
        let why = match out.status {
            Status::Ok => None,
            Status::NonzeroExit => Some(String::new()),
            Status::TimeLimit => {
                Some(format!("compilation exceeded the compile time limit ({} ms of CPU time); every compiler process was killed\n", limits.time_ms))
            }
            Status::WallLimit => {
                Some(format!("compilation exceeded the compile wall-time limit ({} ms; blocked or idle?); every compiler process was killed\n", limits.time_ms.saturating_mul(COMPILE_WALL_FACTOR)))
            }
            Status::MemoryLimit => Some(format!("compilation exceeded the compile memory limit ({} MiB)\n", limits.memory_bytes >> 20)),
            Status::OutputLimit => Some(format!(
                "compilation exceeded the file size limit ({} MiB) (a huge static array?)\n",
                COMPILE_FILE_SIZE_BYTES >> 20
            )),
            Status::Signaled => Some(format!("the compiler was killed by signal {}\n", out.signal.unwrap_or(0))),
        };
        if let Some(why) = why {
            return Err(CompileFailure::Error(cap_message(
                &format!("{why}{message}"),
                false,
            )));
        }
        for a in &lang.artifacts {
            match out.files.get(a) {
                Some(bytes) => run_files.push(InputFile {
                    path: a.clone(),
                    content: Arc::new(bytes.clone()),
                    executable: true,
                }),
                None => {
                    return Err(CompileFailure::Error(cap_message(
                        &format!("the compiler did not produce {a}\n{message}"),
                        false,
                    )))
                }
            }
        }
    }
    if lang.keep_source || lang.compile.is_none() {
        run_files.extend(src_files);
    }
    Ok(Compiled {
        lang: lang.clone(),
        files: run_files,
        main_source,
        main_class,
        mounts,
        message,
    })
}

/// Like [`compile`], but remembers successful compilations (by language and content)
/// for the life of the process: output validators are compiled once, not per submission.
pub fn compile_cached(
    sandbox: &dyn Sandbox,
    lang: &Language,
    program: &Program,
    limits: CompileLimits,
) -> Result<Arc<Compiled>, CompileFailure> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    let key = program.digest(lang);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let c = Arc::new(compile(sandbox, lang, program, limits)?);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, c.clone());
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_cap_and_marker() {
        assert_eq!(cap_message("short", false), "short");
        assert_eq!(cap_message("short", true), "short\n[truncated]");
        let long = "é".repeat(COMPILE_MESSAGE_CAP);
        let c = cap_message(&long, false);
        assert!(c.ends_with(TRUNCATED_MARKER));
        assert!(c.len() <= COMPILE_MESSAGE_CAP + TRUNCATED_MARKER.len());
    }

    #[test]
    fn argv_placeholders() {
        let a: Vec<String> = [
            "g++",
            "-o",
            "main",
            "{sources}",
            "-DX={memory_mib}",
            "{source}",
            "-DM={main_class}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = expand_argv(
            &a,
            "a.cpp",
            &["a.cpp".into(), "b.cpp".into()],
            "a",
            256 << 20,
        );
        assert_eq!(
            out,
            ["g++", "-o", "main", "a.cpp", "b.cpp", "-DX=256", "a.cpp", "-DM=a"]
        );
    }

    #[test]
    fn folder_programs_pick_their_main_file() {
        let langs = Languages::builtin();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("testlib.h"), "// header").unwrap();
        std::fs::write(d.path().join("check.cpp"), "#include \"testlib.h\"").unwrap();
        let (p, l) = Program::load(d.path(), &langs, None).unwrap();
        assert_eq!(l.id, "cpp");
        assert_eq!(p.main_file().name, "check.cpp");
        assert_eq!(p.files.len(), 2);

        let f = d.path().join("Sol.java");
        std::fs::write(
            &f,
            "public class Sol { public static void main(String[] a) {} }",
        )
        .unwrap();
        let (p, l) = Program::load(&f, &langs, None).unwrap();
        assert_eq!(
            (l.id.as_str(), p.main_file().name.as_str()),
            ("java", "Sol.java")
        );

        let f = d.path().join("x.unknown");
        std::fs::write(&f, "").unwrap();
        assert!(Program::load(&f, &langs, None).is_err());
        let (p, l) = Program::load(&f, &langs, langs.get("python3")).unwrap();
        assert_eq!(
            (l.id.as_str(), p.main_file().name.as_str()),
            ("python3", "main.py")
        );
    }
}
