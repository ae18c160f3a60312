//! `judge top`: app state, pure draw functions and the event loop.
//!
//! - [`app`]: the state and its pure updates (apply a fetch result, handle a key).
//! - [`ui`]: pure draw functions, state in, frame out.
//! - [`fetch`]: polling the server on its own thread; only the newest result is kept.
//! - [`run`]: the event loop and the terminal guard.

pub mod app;
pub mod fetch;
pub mod run;
pub mod ui;

#[cfg(test)]
mod ui_tests;
