//! Integration tests: one test binary with modules (links faster).
mod judge;
mod sandbox;
mod scale;
mod serve;
mod top;
mod util;
