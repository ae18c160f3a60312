//! Judging: problem packages, languages, the runner, checkers, interactive and
//! scoring problems, verdicts. Shared by `judge test` (local) and the engine's
//! workers. Runs everything through [`crate::sandbox::Sandbox`]; knows nothing of
//! HTTP, queues or databases.

pub mod verdict;

pub use verdict::*;
