//! Sandbox backend module `cgroup` (see the module docs of `crate::sandbox`).
