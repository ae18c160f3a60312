//! Languages: compile and run commands from `templates/languages.toml` (embedded), the
//! ids used everywhere (`c`, `cpp`, `cpp20`, `python3`, `java`, `rust`, `go`,
//! `javascript`, `ruby`, `php`), guessing from the file extension (Python 2 vs 3 by the
//! shebang), and checking that a toolchain is installed on the host.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sandbox::Mount;

/// The embedded language table.
pub const LANGUAGES_TOML: &str = include_str!("../../templates/languages.toml");

/// Errors about languages.
#[derive(Debug, thiserror::Error)]
pub enum LanguageError {
    /// The language table is malformed.
    #[error("languages.toml: {0}")]
    Invalid(String),
    /// No language has this id.
    #[error("unknown language {0:?} (known: {1})")]
    Unknown(String, String),
    /// The toolchain is not installed on this host.
    #[error("{language}: toolchain not found ({missing}); install the Debian package `{package}` (apt-get install {package})")]
    ToolchainMissing {
        /// The language's id.
        language: String,
        /// What is missing (host paths tried).
        missing: String,
        /// The Debian package that provides it.
        package: String,
    },
}

/// A read-only mount a language needs (e.g. the Rust toolchain under /root/.rustup).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LanguageMount {
    /// Host path candidates; the first that exists is mounted. `${VAR}` expands from the
    /// judge's environment; a candidate naming an unset variable is skipped.
    pub host: Vec<String>,
    /// Where it appears inside the box.
    pub target: String,
    /// Whether the language can work without it.
    #[serde(default)]
    pub optional: bool,
}

/// A host requirement: any one of `paths` must exist.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Host paths; `mount:/target` means "the mount at /target resolved to a host path".
    pub paths: Vec<String>,
    /// The Debian package providing them.
    pub package: String,
}

/// One language of the table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Language {
    /// Id used everywhere (CLI, API, config), e.g. `"cpp"`.
    pub id: String,
    /// Human name, e.g. `"C++17 (g++)"`.
    pub name: String,
    /// Extensions (no dot) that select this language when guessing.
    pub extensions: Vec<String>,
    /// Name of the main source inside the box; `{class}` is Java's public class.
    pub source: String,
    /// Compile (or syntax check) argv; `None` for none.
    #[serde(default)]
    pub compile: Option<Vec<String>>,
    /// Files the compile step leaves, carried into every run.
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// Whether each run also gets the source files (interpreted languages).
    #[serde(default)]
    pub keep_source: bool,
    /// Run argv.
    pub run: Vec<String>,
    /// Version argv (host side).
    pub version: Vec<String>,
    /// Extra environment, `[name, value]` pairs (override the defaults).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Extra read-only mounts.
    #[serde(default)]
    pub mounts: Vec<LanguageMount>,
    /// Host requirements.
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Processes + threads allowed in a run.
    pub pids: u32,
    /// Processes + threads allowed while compiling.
    pub compile_pids: u32,
    /// Substrings of stderr (or of the last 4 KiB of stdout) that make a failed run MLE.
    #[serde(default)]
    pub oom_markers: Vec<String>,
}

/// The default PATH inside boxes.
pub const BOX_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl Language {
    /// The environment of this language's compile and run steps under a memory limit of
    /// `memory_bytes`: PATH, HOME=/box, LANG=C.UTF-8, TMPDIR=/tmp, then the language's
    /// own entries (which override), their values' memory placeholders expanded
    /// ([`expand_memory_placeholders`]: e.g. Ruby's VM stack is `{vm_stack_bytes}`).
    pub fn environment(&self, memory_bytes: u64) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), BOX_PATH.into()),
            ("HOME".into(), crate::sandbox::BOX_WORK_DIR.into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), "/tmp".into()),
        ];
        for (k, v) in &self.env {
            let v = expand_memory_placeholders(v, memory_bytes);
            if let Some(e) = env.iter_mut().find(|(ek, _)| ek == k) {
                e.1 = v;
            } else {
                env.push((k.clone(), v));
            }
        }
        env
    }

    /// Resolves the language's mounts on this host. Errors with
    /// [`LanguageError::ToolchainMissing`] when a non-optional mount has no existing candidate.
    pub fn resolve_mounts(&self) -> Result<Vec<Mount>, LanguageError> {
        let mut out = Vec::new();
        for m in &self.mounts {
            match m
                .host
                .iter()
                .filter_map(|h| expand_env(h))
                .map(PathBuf::from)
                .find(|p| p.exists())
            {
                Some(host) => out.push(Mount {
                    host,
                    target: PathBuf::from(&m.target),
                    writable: false,
                }),
                None if m.optional => {}
                None => {
                    return Err(LanguageError::ToolchainMissing {
                        language: self.id.clone(),
                        missing: m.host.join(", "),
                        package: self
                            .requires
                            .first()
                            .map(|r| r.package.clone())
                            .unwrap_or_default(),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Checks that the toolchain is installed on this host. Errors with
    /// [`LanguageError::ToolchainMissing`] naming the Debian package to install.
    pub fn check_toolchain(&self) -> Result<(), LanguageError> {
        let mounts = self.resolve_mounts()?;
        for r in &self.requires {
            let found = r.paths.iter().any(|p| match p.strip_prefix("mount:") {
                Some(target) => mounts.iter().any(|m| m.target == Path::new(target)),
                None => Path::new(p).exists(),
            });
            if !found {
                return Err(LanguageError::ToolchainMissing {
                    language: self.id.clone(),
                    missing: r.paths.join(" or "),
                    package: r.package.clone(),
                });
            }
        }
        Ok(())
    }

    /// The main source file's name inside the box for `source` (Java: `{class}` is the
    /// public top-level type, else the one declaring `main`, else `Main`).
    pub fn source_name(&self, source: &[u8]) -> String {
        if self.source.contains("{class}") {
            let class = java_file_class(source).unwrap_or_else(|| "Main".to_string());
            self.source.replace("{class}", &class)
        } else {
            self.source.clone()
        }
    }

    /// The class whose `main` runs, for the `{main_class}` placeholder: for a language
    /// whose source is named after a class (Java), the top-level type declaring `main`
    /// (`java_main_class`: not the public type when that has no `main`); otherwise,
    /// or when `source` declares no type, `file_name` without its extension.
    pub fn main_class(&self, file_name: &str, source: &[u8]) -> String {
        self.source
            .contains("{class}")
            .then(|| java_main_class(source))
            .flatten()
            .unwrap_or_else(|| {
                file_name
                    .rsplit_once('.')
                    .map_or(file_name, |(stem, _)| stem)
                    .to_string()
            })
    }

    /// Whether `file_name` has one of this language's extensions.
    pub fn matches_extension(&self, file_name: &str) -> bool {
        match file_name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => self.extensions.iter().any(|e| e == ext),
            _ => false,
        }
    }
}

/// Memory a garbage-collected runtime keeps for itself beside its heap, at least (bytes):
/// its code, the JIT's, stacks, a young generation, I/O buffers (`node -e ''` alone is
/// ~40 MiB resident).
pub const RUNTIME_HEADROOM_BYTES: u64 = 64 << 20;

/// The heap size, in MiB, for a runtime whose heap limit must sit below a memory limit
/// of `memory_bytes` (the `{heap_mib}` placeholder): the limit less 1/8 of it, at least
/// [`RUNTIME_HEADROOM_BYTES`], never below half the limit (1 MiB at least). The runtime
/// then collects its garbage before the cgroup's limit instead of sizing its heap from
/// the host's RAM (the box hides the cgroup), which turned ~100 MiB of live data plus
/// garbage under 256 MiB into MLE (QA). 256 MiB → 192, 1 GiB → 896.
pub fn heap_mib(memory_bytes: u64) -> u64 {
    let headroom = (memory_bytes / 8)
        .max(RUNTIME_HEADROOM_BYTES)
        .min(memory_bytes / 2);
    ((memory_bytes - headroom) >> 20).max(1)
}

/// The box's stack rlimit under a memory limit of `memory_bytes` (bytes): the
/// sandbox's own rule ([`crate::sandbox::stack_bytes`], the limit less max(1/16 of it,
/// 8 MiB), never below half of it), which a runtime's own stack size must stay below.
fn box_stack_rlimit(memory_bytes: u64) -> u64 {
    crate::sandbox::stack_bytes(memory_bytes)
}

/// A runtime's own stack limit, in KiB, under a memory limit of `memory_bytes` (the
/// `{stack_kib}` placeholder): the limit less 128 MiB (a runtime's own memory and some
/// data beside a deep recursion), at least a quarter of the limit, and at most half the
/// box's stack rlimit ([`crate::sandbox::stack_bytes`]), 1 MiB at least. V8's `--stack-size` must
/// stay well below the real stack, or a deep recursion crashes with SIGSEGV instead of
/// throwing a RangeError; an endless recursion touches the whole stack, so under a small
/// limit it stays a quarter of it (Node alone is ~40 MiB resident) and the RangeError
/// comes before the memory limit. 64 MiB → 16 MiB, 128 MiB → 32 MiB, 256 MiB → 120 MiB
/// (~1,300,000 frames of a simple JavaScript recursion; a quarter, 64 MiB, made one 1e6
/// deep a RangeError, QA), 1 GiB → 480 MiB.
pub fn stack_kib(memory_bytes: u64) -> u64 {
    let stack = memory_bytes
        .saturating_sub(128 << 20)
        .max(memory_bytes / 4)
        .min(box_stack_rlimit(memory_bytes) / 2);
    (stack >> 10).max(1024)
}

/// The size, in bytes, of an interpreter's own VM stack kept in its heap (Ruby's,
/// RUBY_THREAD_VM_STACK_SIZE) under a memory limit of `memory_bytes` (the
/// `{vm_stack_bytes}` placeholder): a quarter of the limit, at most 128 MiB, 1 MiB at
/// least. Memory is touched only as deep as a recursion goes; an endless one touches it
/// all, and Ruby then builds the SystemStackError's backtrace (about as large again and,
/// uncaught, ~0.5 s of CPU at 128 MiB): a quarter keeps that under the memory limit, and
/// the cap keeps it a runtime error, not a time limit. 64 MiB → 16 MiB (~150,000 frames
/// of a simple Ruby recursion), 256 MiB → 64 MiB (~600,000), 512 MiB and more → 128 MiB
/// (~1,200,000: a fixed 64 MiB made one 1e6 deep a SystemStackError even under 1 GiB, QA).
pub fn vm_stack_bytes(memory_bytes: u64) -> u64 {
    (memory_bytes / 4).clamp(1 << 20, 128 << 20)
}

/// Expands the memory placeholders of one argv element or `env` value for a memory
/// limit of `memory_bytes`: `{memory_mib}` (the limit in MiB, at least 1), `{heap_mib}`
/// ([`heap_mib`]), `{stack_kib}` ([`stack_kib`]) and `{vm_stack_bytes}`
/// ([`vm_stack_bytes`]).
pub fn expand_memory_placeholders(arg: &str, memory_bytes: u64) -> String {
    if !arg.contains('{') {
        return arg.to_string();
    }
    arg.replace("{memory_mib}", &(memory_bytes >> 20).max(1).to_string())
        .replace("{heap_mib}", &heap_mib(memory_bytes).to_string())
        .replace("{stack_kib}", &stack_kib(memory_bytes).to_string())
        .replace(
            "{vm_stack_bytes}",
            &vm_stack_bytes(memory_bytes).to_string(),
        )
}

/// Expands `${VAR}` from the environment; `None` when a variable is unset or empty.
fn expand_env(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find('}')?;
        let val = std::env::var(&after[..j]).ok().filter(|v| !v.is_empty())?;
        out.push_str(&val);
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A token of Java source that matters for finding the main class: a word (identifier,
/// keyword or number) or one punctuation character. Comments, string and character
/// literals and text blocks produce no tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JavaToken<'a> {
    Word(&'a str),
    Punct(char),
}

/// Splits Java source into [`JavaToken`]s (JLS §3: `//` and `/* */` comments, `"…"`
/// strings, `'…'` characters and `"""…"""` text blocks, with their `\` escapes, are
/// skipped). Unterminated comments and literals run to the end of the line (literals) or
/// the source (comments, text blocks): javac reports those, not this.
fn java_tokens(s: &str) -> Vec<JavaToken<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Skips a literal opened at `i` (after its opening `quote`); `stop_at_newline` for
    // one-line literals. Returns the index after the closing quote.
    let skip_literal = |mut i: usize, quote: &[u8], stop_at_newline: bool| -> usize {
        while i < b.len() {
            if b[i] == b'\\' {
                i += 2;
            } else if b[i..].starts_with(quote) {
                return i + quote.len();
            } else if stop_at_newline && b[i] == b'\n' {
                return i;
            } else {
                i += 1;
            }
        }
        b.len()
    };
    let is_word = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            i = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |n| i + n);
        } else if rest.starts_with(b"/*") {
            i = rest[2..]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(b.len(), |n| i + 2 + n + 2);
        } else if rest.starts_with(b"\"\"\"") {
            i = skip_literal(i + 3, b"\"\"\"", false);
        } else if rest[0] == b'"' || rest[0] == b'\'' {
            i = skip_literal(i + 1, &rest[..1], true);
        } else {
            // `i` is on a char boundary: every skip above stops on an ASCII byte.
            let c = s[i..].chars().next().unwrap_or(' ');
            if is_word(c) {
                let len = s[i..].find(|c: char| !is_word(c)).unwrap_or(s.len() - i);
                out.push(JavaToken::Word(&s[i..i + len]));
                i += len;
            } else {
                if !c.is_whitespace() {
                    out.push(JavaToken::Punct(c));
                }
                i += c.len_utf8();
            }
        }
    }
    out
}

/// A top-level type declaration of a Java source.
#[derive(Debug)]
struct JavaType {
    name: String,
    public: bool,
    has_main: bool,
}

/// The top-level types (classes, interfaces, enums, records) of Java source, in order,
/// with whether each is `public` and declares a method `void main(`.
fn java_top_level_types(src: &str) -> Vec<JavaType> {
    use JavaToken::{Punct, Word};
    let src = java_unescape(src);
    let toks = java_tokens(&src);
    let mut types: Vec<JavaType> = Vec::new();
    let mut depth = 0usize;
    // Whether `public` was seen since the last top-level declaration boundary.
    let mut public = false;
    for (k, t) in toks.iter().enumerate() {
        let prev = k.checked_sub(1).map(|p| toks[p]);
        match *t {
            Punct('{') => depth += 1,
            Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    public = false;
                }
            }
            Punct(';') if depth == 0 => public = false,
            Word("public") if depth == 0 => public = true,
            // A declaration, not `Foo.class` (in a top-level annotation) nor `@interface`.
            Word("class" | "interface" | "enum" | "record")
                if depth == 0 && !matches!(prev, Some(Punct('.' | '@'))) =>
            {
                if let Some(Word(name)) = toks.get(k + 1) {
                    types.push(JavaType {
                        name: name.to_string(),
                        public,
                        has_main: false,
                    });
                }
                public = false;
            }
            // A member `… void main(` of the current top-level type.
            Word("main")
                if depth == 1
                    && prev == Some(Word("void"))
                    && toks.get(k + 1) == Some(&Punct('(')) =>
            {
                if let Some(ty) = types.last_mut() {
                    ty.has_main = true;
                }
            }
            _ => {}
        }
    }
    types
}

/// The Java type a source's file must be named after: its public top-level type (javac
/// requires the file to carry that name), else [`java_main_class`]. Comments and
/// literals are ignored. `None` when the source declares no type.
fn java_file_class(src: &[u8]) -> Option<String> {
    let types = java_top_level_types(&String::from_utf8_lossy(src));
    types
        .iter()
        .find(|t| t.public)
        .map(|t| t.name.clone())
        .or_else(|| main_of(&types))
}

/// The Java type whose `main` runs (the jar's main class): the top-level type declaring
/// `main(` (the public one when several do), else the public type, else the first one.
/// A public type without `main` beside a class with it (`public class Helper {}` and
/// `class Main { main }`, or a `public sealed interface`) is not the main class (QA).
/// `None` when the source declares no type.
fn java_main_class(src: &[u8]) -> Option<String> {
    main_of(&java_top_level_types(&String::from_utf8_lossy(src)))
}

/// [`java_main_class`] of parsed top-level types.
fn main_of(types: &[JavaType]) -> Option<String> {
    let with_main = || types.iter().filter(|t| t.has_main);
    with_main()
        .find(|t| t.public)
        .or_else(|| with_main().next())
        .or_else(|| types.iter().find(|t| t.public))
        .or_else(|| types.first())
        .map(|t| t.name.clone())
}

/// Translates Java's Unicode escapes (JLS §3.3: `\uXXXX`, with one or more `u`, where
/// the `\` is not itself escaped by an odd run of backslashes), as javac does before
/// anything else: `public class \u0053ol` declares `Sol`. A UTF-16 surrogate pair of
/// escapes becomes one character; a malformed or lone-surrogate escape is left as
/// written (javac reports it).
fn java_unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains("\\u") {
        return std::borrow::Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    // The code unit of an escape at `i` (on a `\`) and the index after it.
    let unit = |i: usize| -> Option<(u32, usize)> {
        let mut j = i + 1;
        while b.get(j) == Some(&b'u') {
            j += 1;
        }
        let hex = s.get(j..j + 4).filter(|_| j > i + 1)?;
        let v = u32::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.bytes().all(|c| c.is_ascii_hexdigit()))?;
        Some((v, j + 4))
    };
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied, mut backslashes) = (0, 0, 0usize);
    while i < b.len() {
        if b[i] != b'\\' {
            backslashes = 0;
            i += 1;
            continue;
        }
        let escape = if backslashes % 2 == 0 { unit(i) } else { None };
        let decoded = escape.and_then(|(hi, next)| match hi {
            0xD800..=0xDBFF => {
                let (lo, end) = unit(next).filter(|(lo, _)| (0xDC00..=0xDFFF).contains(lo))?;
                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).map(|c| (c, end))
            }
            _ => char::from_u32(hi).map(|c| (c, next)),
        });
        match decoded {
            Some((c, end)) => {
                out.push_str(&s[copied..i]);
                out.push(c);
                (i, copied, backslashes) = (end, end, 0);
            }
            None => {
                backslashes += 1;
                i += 1;
            }
        }
    }
    out.push_str(&s[copied..]);
    std::borrow::Cow::Owned(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    language: Vec<Language>,
}

/// The language table.
#[derive(Debug, Clone)]
pub struct Languages {
    langs: Vec<Language>,
}

impl Languages {
    /// The embedded `templates/languages.toml`.
    pub fn builtin() -> Languages {
        static TABLE: std::sync::OnceLock<Languages> = std::sync::OnceLock::new();
        TABLE
            .get_or_init(|| {
                Languages::parse(LANGUAGES_TOML)
                    .expect("the embedded templates/languages.toml is valid (tested)")
            })
            .clone()
    }

    /// Parses a language table. Errors on malformed TOML, a duplicate id or an empty argv.
    pub fn parse(text: &str) -> Result<Languages, LanguageError> {
        let t: Table = toml::from_str(text).map_err(|e| LanguageError::Invalid(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for l in &t.language {
            if !seen.insert(l.id.clone()) {
                return Err(LanguageError::Invalid(format!(
                    "duplicate language id {:?}",
                    l.id
                )));
            }
            if l.run.is_empty() || l.compile.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(LanguageError::Invalid(format!("{}: empty command", l.id)));
            }
            if l.pids == 0 || l.compile_pids == 0 {
                return Err(LanguageError::Invalid(format!(
                    "{}: pids must be positive",
                    l.id
                )));
            }
        }
        Ok(Languages { langs: t.language })
    }

    /// Every language, in table order.
    pub fn all(&self) -> &[Language] {
        &self.langs
    }

    /// The language with this id.
    pub fn get(&self, id: &str) -> Option<&Language> {
        self.langs.iter().find(|l| l.id == id)
    }

    /// The language with this id, or [`LanguageError::Unknown`] listing the known ids.
    pub fn require(&self, id: &str) -> Result<&Language, LanguageError> {
        self.get(id).ok_or_else(|| {
            LanguageError::Unknown(
                id.to_string(),
                self.langs
                    .iter()
                    .map(|l| l.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
    }

    /// Guesses the language of `path` from its extension; `.py` files whose shebang names
    /// Python 2 get `None` (Python 2 is not supported), as does an unknown extension.
    pub fn guess(&self, path: &Path, source: &[u8]) -> Option<&Language> {
        let name = path.file_name()?.to_str()?;
        let ext = name.rsplit_once('.')?.1;
        if ext == "py" {
            let first = source.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = String::from_utf8_lossy(first);
            if first.starts_with("#!") && first.contains("python2") {
                return None;
            }
        }
        self.langs
            .iter()
            .find(|l| l.extensions.iter().any(|e| e == ext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_has_every_language_id() {
        let l = Languages::builtin();
        let ids: Vec<&str> = l.all().iter().map(|x| x.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "c",
                "cpp",
                "cpp20",
                "python3",
                "java",
                "rust",
                "go",
                "javascript",
                "ruby",
                "php"
            ]
        );
        for lang in l.all() {
            assert!(!lang.requires.is_empty(), "{} names its package", lang.id);
            assert!(!lang.version.is_empty());
            // Compiled languages leave artifacts; interpreted ones keep the source.
            assert!(
                lang.keep_source || !lang.artifacts.is_empty(),
                "{} runs something",
                lang.id
            );
        }
    }

    #[test]
    fn guessing() {
        let l = Languages::builtin();
        let g = |name: &str, src: &str| {
            l.guess(Path::new(name), src.as_bytes())
                .map(|x| x.id.clone())
        };
        assert_eq!(g("a.cpp", ""), Some("cpp".into()));
        assert_eq!(g("dir/a.cc", ""), Some("cpp".into()));
        assert_eq!(g("a.c", ""), Some("c".into()));
        assert_eq!(g("a.py", "print(1)"), Some("python3".into()));
        assert_eq!(
            g("a.py", "#!/usr/bin/env python3\n"),
            Some("python3".into())
        );
        assert_eq!(g("a.py", "#!/usr/bin/python2\nprint 1\n"), None);
        assert_eq!(g("Main.java", ""), Some("java".into()));
        assert_eq!(g("a.rs", ""), Some("rust".into()));
        assert_eq!(g("a.go", ""), Some("go".into()));
        assert_eq!(g("a.js", ""), Some("javascript".into()));
        assert_eq!(g("a.rb", ""), Some("ruby".into()));
        assert_eq!(g("a.php", ""), Some("php".into()));
        assert_eq!(g("a.txt", ""), None);
        assert_eq!(g("Makefile", ""), None);
        assert_eq!(l.get("cpp20").unwrap().name, "C++20 (g++)");
        assert!(l
            .require("cobol")
            .unwrap_err()
            .to_string()
            .contains("python3"));
    }

    #[test]
    fn java_source_name_follows_the_public_class() {
        let l = Languages::builtin();
        let j = l.get("java").unwrap();
        assert_eq!(j.source_name(b"import java.util.*;\npublic class AplusB {\n public static void main(String[] a){}}"), "AplusB.java");
        assert_eq!(
            j.source_name(b"class Sol { public static void main(String[] a){} }"),
            "Sol.java"
        );
        assert_eq!(j.source_name(b"// nothing"), "Main.java");
        assert_eq!(l.get("cpp").unwrap().source_name(b""), "main.cpp");
    }

    #[test]
    fn java_main_class_ignores_comments_and_literals() {
        // The file's class and the main class agree on each of these.
        let class = |src: &str| {
            let file = java_file_class(src.as_bytes());
            assert_eq!(file, java_main_class(src.as_bytes()), "{src}");
            file
        };
        let main = "public class Main { public static void main(String[] a) {} }\n";
        // Comments and literals naming another class (QA: `with.java`, `Helper.java`).
        for noise in [
            "/* Solution for A+B.\n * Uses a public class with a static main. */\n",
            "// Note: the helper is not a public class Helper\nimport java.util.*;\n",
            "/** public class Doc { */\n",
            "/* a // b */ // public class X\n",
            "@SuppressWarnings(\"public class Str\")\n",
            "@Deprecated(since = \"public \\\" class Esc\")\n",
            "package foo; // public class Pkg\n",
        ] {
            assert_eq!(
                class(&format!("{noise}{main}")).as_deref(),
                Some("Main"),
                "{noise}"
            );
        }
        // Inside a string or a text block, in the body.
        assert_eq!(
            class("class A { String s = \"public class S {\"; char c = '\"'; String t = \"\"\"\n  public class T { \\\"\"\" \n\"\"\"; }\npublic class B { public static void main(String[] a) {} }\n").as_deref(),
            Some("B")
        );
        // No public type: the one declaring main, not the first one.
        assert_eq!(
            class(
                "class Helper { int x; }\nclass Sol { public static void main(String[] a) {} }\n"
            )
            .as_deref(),
            Some("Sol")
        );
        // Nested types and `X.class` are not top-level declarations.
        assert_eq!(
            class("@Ann(Foo.class)\nfinal class Outer { static class Inner { public static void main(String[] a) {} } }\n").as_deref(),
            Some("Outer")
        );
        // Other kinds of public types, generics, modifiers, odd spacing.
        assert_eq!(
            class("public   final\nclass\tP<T> {}").as_deref(),
            Some("P")
        );
        assert_eq!(
            class("public enum E { A { void f() {} }; public static void main(String[] a) {} }")
                .as_deref(),
            Some("E")
        );
        assert_eq!(
            class("public interface I { static void main(String[] a) {} }").as_deref(),
            Some("I")
        );
        assert_eq!(
            class("public record R(int x) { public static void main(String[] a) {} }").as_deref(),
            Some("R")
        );
        assert_eq!(
            class("@interface Marker {}\nclass C {}").as_deref(),
            Some("C")
        );
        assert_eq!(class("public class Ünï { }").as_deref(), Some("Ünï"));
        assert_eq!(class("/* unterminated public class U"), None);
        assert_eq!(class(""), None);
    }

    #[test]
    fn java_main_class_is_the_type_declaring_main() {
        let main = "public static void main(String[] a) {}";
        let both = |src: &str| {
            (
                java_file_class(src.as_bytes()),
                java_main_class(src.as_bytes()),
            )
        };
        let some = |f: &str, m: &str| (Some(f.to_string()), Some(m.to_string()));
        // A public type without main beside the class with it (QA j1, j17): the file is
        // named after the public type, main runs from the other class.
        assert_eq!(
            both(&format!("public class Helper {{ static int two() {{ return 2; }} }}\nclass Main {{ {main} }}\n")),
            some("Helper", "Main")
        );
        assert_eq!(
            both(&format!("public sealed interface Shape permits Circle {{}}\nfinal class Circle implements Shape {{}}\nclass Main {{ {main} }}\n")),
            some("Shape", "Main")
        );
        // Several types with main: the public one; none public: the first with main.
        assert_eq!(
            both(&format!(
                "class A {{ {main} }}\npublic class B {{ {main} }}\n"
            )),
            some("B", "B")
        );
        assert_eq!(
            both(&format!(
                "class A {{ }}\nclass B {{ {main} }}\nclass C {{ {main} }}\n"
            )),
            some("B", "B")
        );
        // No main anywhere: the public type, else the first.
        assert_eq!(both("class A {}\npublic class B {}\n"), some("B", "B"));
        assert_eq!(both("class A {}\nclass B {}\n"), some("A", "A"));
        assert_eq!(both("// none"), (None, None));
        // Unicode escapes in identifiers (QA j18), not when the backslash is escaped.
        assert_eq!(
            both(&format!("public class \\u0053ol {{ {main} }}")),
            some("Sol", "Sol")
        );
        assert_eq!(
            both(&format!("public class X\\uuu0031\\u00e9 {{ {main} }}")),
            some("X1é", "X1é")
        );
        assert_eq!(
            java_unescape(r"a\\u0041 \u0041 \\\u0041 \ud83d\ude00"),
            "a\\\\u0041 A \\\\A 😀"
        );
        assert_eq!(
            java_unescape(r"\u00 \ud83d x \uZZZZ"),
            r"\u00 \ud83d x \uZZZZ"
        );
        let j = Languages::builtin().get("java").unwrap().clone();
        let helper = format!("public class Helper {{}}\nclass Main {{ {main} }}\n");
        assert_eq!(j.source_name(helper.as_bytes()), "Helper.java");
        assert_eq!(j.main_class("Helper.java", helper.as_bytes()), "Main");
        assert_eq!(j.main_class("Foo.java", b"// no type"), "Foo");
        let c = Languages::builtin().get("c").unwrap().clone();
        assert_eq!(c.main_class("main.c", b"class X {}"), "main");
    }

    #[test]
    fn missing_toolchain_names_the_package() {
        let t = Languages::parse(
            r#"
[[language]]
id = "x"
name = "X"
extensions = ["x"]
source = "main.x"
run = ["./main"]
version = ["x", "--version"]
requires = [{ paths = ["/nonexistent/xc"], package = "x-compiler" }]
pids = 1
compile_pids = 1
"#,
        )
        .unwrap();
        let e = t.get("x").unwrap().check_toolchain().unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x-compiler") && msg.contains("/nonexistent/xc"),
            "{msg}"
        );
    }

    #[test]
    fn mounts_take_the_first_existing_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let lang = Language {
            mounts: vec![LanguageMount {
                host: vec![
                    "${JUDGE_TEST_SURELY_UNSET_VAR}/x".into(),
                    "/nonexistent".into(),
                    dir.path().display().to_string(),
                ],
                target: "/opt/x".into(),
                optional: false,
            }],
            ..Languages::builtin().get("c").unwrap().clone()
        };
        let m = lang.resolve_mounts().unwrap();
        assert_eq!(
            m,
            [Mount {
                host: dir.path().to_path_buf(),
                target: "/opt/x".into(),
                writable: false
            }]
        );
        let bad = Language {
            mounts: vec![LanguageMount {
                host: vec!["/nonexistent".into()],
                target: "/opt/x".into(),
                optional: false,
            }],
            ..lang
        };
        assert!(matches!(
            bad.resolve_mounts(),
            Err(LanguageError::ToolchainMissing { .. })
        ));
    }

    #[test]
    fn environment_overrides_defaults() {
        let l = Languages::builtin();
        let env = l.get("rust").unwrap().environment(256 << 20);
        let path = env.iter().find(|(k, _)| k == "PATH").unwrap();
        assert!(path.1.starts_with("/opt/rust/bin:"));
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(env.iter().any(|(k, v)| k == "HOME" && v == "/box"));
        // Values take the memory placeholders (Ruby's VM stack follows the limit).
        let ruby = |mib: u64| {
            l.get("ruby")
                .unwrap()
                .environment(mib << 20)
                .into_iter()
                .find(|(k, _)| k == "RUBY_THREAD_VM_STACK_SIZE")
                .map(|(_, v)| v)
        };
        assert_eq!(ruby(64).as_deref(), Some("16777216"));
        assert_eq!(ruby(256).as_deref(), Some("67108864"));
        assert_eq!(ruby(1024).as_deref(), Some("134217728"));
        assert_eq!(vm_stack_bytes(512 << 20), 128 << 20);
        assert_eq!(vm_stack_bytes(1 << 20), 1 << 20);
        let custom = Language {
            env: vec![
                (
                    "X".into(),
                    "{memory_mib}:{heap_mib}:{stack_kib}:{vm_stack_bytes}".into(),
                ),
                ("Y".into(), "{source} {unknown}".into()),
            ],
            ..l.get("c").unwrap().clone()
        };
        let env = custom.environment(256 << 20);
        assert!(env.contains(&("X".into(), "256:192:122880:67108864".into())));
        assert!(env.contains(&("Y".into(), "{source} {unknown}".into())));
    }

    #[test]
    fn memory_placeholders() {
        let mib = 1u64 << 20;
        assert_eq!(heap_mib(256 * mib), 192);
        assert_eq!(heap_mib(1024 * mib), 896);
        assert_eq!(heap_mib(2048 * mib), 1792);
        assert_eq!(heap_mib(64 * mib), 32);
        assert_eq!(heap_mib(0), 1);
        assert_eq!(stack_kib(64 * mib), 16 << 10);
        assert_eq!(stack_kib(128 * mib), 32 << 10);
        assert_eq!(stack_kib(256 * mib), 120 << 10);
        assert_eq!(stack_kib(1024 * mib), 480 << 10);
        assert_eq!(stack_kib(mib), 1024);
        // The stack stays at most half the box's stack rlimit (the memory limit less
        // max(1/16, 8 MiB), never below half the limit), from 16 MiB to 64 GiB, and
        // leaves room for the runtime itself.
        for m in (16..=65536u64).map(|m| m * mib) {
            let rlimit = m - (m / 16).max(8 * mib).min(m / 2);
            assert_eq!(box_stack_rlimit(m), rlimit);
            assert!(stack_kib(m) << 10 <= rlimit / 2, "{m}");
            assert!(stack_kib(m) << 10 >= m / 4, "{m}");
            assert!((stack_kib(m) << 10) + 40 * mib <= m || m < 64 * mib, "{m}");
            assert!(
                heap_mib(m) * mib + RUNTIME_HEADROOM_BYTES.min(m / 2) <= m,
                "{m}"
            );
        }
        assert_eq!(
            expand_memory_placeholders(
                "--max-old-space-size={heap_mib}/{stack_kib}/{memory_mib}",
                256 * mib
            ),
            "--max-old-space-size=192/122880/256"
        );
        assert_eq!(
            expand_memory_placeholders("{source}", 256 * mib),
            "{source}"
        );
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert!(Languages::parse("[[language]]\nid = 1\n").is_err());
        let dup = format!("{0}\n{0}", "[[language]]\nid='a'\nname='A'\nextensions=[]\nsource='a'\nrun=['a']\nversion=['a']\npids=1\ncompile_pids=1\n");
        assert!(Languages::parse(&dup)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }
}
