//! Judging: problem packages, languages, the runner, checkers, interactive and
//! scoring problems, verdicts. Shared by `judge test` (local) and the engine's
//! workers. Runs everything through [`crate::sandbox::Sandbox`]; knows nothing of
//! HTTP, queues or databases.
//!
//! - [`problem`]: Kattis problem packages (legacy and 2023-07), test group tree.
//! - [`language`]: the language table (`templates/languages.toml`), guessing, toolchains.
//! - [`program`]: programs (file or folder) and compilation in the sandbox.
//! - [`runner`]: [`runner::judge`]: compile once, run each test, check, aggregate.
//! - [`validator`]: the default output validator; Kattis and testlib exit codes.
//! - [`scoring`]: verdict and score aggregation over test groups.
//! - [`verify`]: `judge problem verify`.

pub mod language;
pub mod problem;
pub mod program;
pub mod runner;
pub mod scoring;
pub mod validator;
pub mod verdict;
pub mod verify;

pub use language::{Language, Languages};
pub use problem::{Problem, ProblemError};
pub use runner::{judge, JudgeOptions};
pub use verdict::*;
