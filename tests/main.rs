//! Integration tests: one test binary with modules (links faster).
mod sandbox;
mod serve;
mod top;
