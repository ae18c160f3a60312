//! Helpers shared by the integration test modules.

use std::sync::{Mutex, MutexGuard};

/// One lock for every test that runs the native sandbox in this process: runs are
/// serialised so timing assertions get the CPUs, and so a health check looking for
/// leftover run cgroups of this process never sees another test's run in flight.
pub fn sandbox_lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|p| p.into_inner())
}
