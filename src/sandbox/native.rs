//! Sandbox backend module `native` (see the module docs of `crate::sandbox`).
