//! `judge`: a self-hosted, terminal-first online-judge engine.
//!
//! Dependencies point one way: [`cli`]/[`tui`] → [`engine`] → [`judge`] → [`sandbox`].
//! See `README.md` for the user's view and `DESIGN.md` (shared) for the architecture.

pub mod cli;
pub mod engine;
pub mod judge;
pub mod sandbox;
pub mod tui;
