//! Sandbox backend module `process` (see the module docs of `crate::sandbox`).
