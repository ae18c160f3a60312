//! The HTTP API (`/api/v1`) and its gateway: authentication, rate limiting, validation.

pub mod ratelimit;
