//! The server: API, store, blob store, queues, router, pools, workers, autoscaling,
//! backpressure, metrics and alerts. Every backend sits behind a trait; only the
//! code that builds the engine from its config names a concrete one.

pub mod alerts;
pub mod api;
pub mod autoscale;
pub mod backpressure;
pub mod blob;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod events;
pub mod metrics;
pub mod model;
pub mod package;
pub mod pool;
pub mod queue;
pub mod router;
pub mod serve;
pub mod store;
pub mod worker;

pub use serve::{serve, serve_with, Engine, ServeError};
