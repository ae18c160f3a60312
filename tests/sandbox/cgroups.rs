//! Run cgroups made ahead and removed behind (`sandbox::cgroup_keeper`): a stocked
//! cgroup is made with the limits of the run before, so each run must still get its
//! own limits — raised or lowered on a real hierarchy, where v1 refuses any moment
//! with memory+swap below memory — and nothing an earlier run charged may count
//! against the next one.

use judge::sandbox::{Limits, Status};

use super::{compile, prog_spec, require_root, Harness};

/// Touches 100 MiB, then prints "ok".
const ALLOC_100M: &str = r#"
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    size_t n = 100u << 20;
    volatile char *p = malloc(n);
    if (!p) return 3;
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    printf("ok %d\n", p[n - 4096]);
    return 0;
}
"#;

fn limits(mem_mb: u64) -> Limits {
    Limits {
        cpu_ms: 5000,
        wall_ms: 10_000,
        memory_bytes: mem_mb << 20,
        ..Limits::default()
    }
}

/// Memory limits going up and down between runs: every run is held to its own.
#[test]
fn each_run_gets_its_own_limits_from_the_stock() {
    require_root!();
    let h = Harness::new();
    let alloc = compile("alloc100mtouch", ALLOC_100M, false, &["-static"]);
    let trivial = compile("trivial", "int main(void){return 0;}", false, &["-static"]);
    for (round, (mem_mb, fits)) in [
        (512, true),
        (512, true),
        (64, false),
        (64, false),
        (512, true),
        (48, false),
        (1024, true),
    ]
    .into_iter()
    .enumerate()
    {
        let o = h.run(&prog_spec(alloc.clone(), limits(mem_mb)));
        if fits {
            assert_eq!(o.status, Status::Ok, "round {round} ({mem_mb} MiB): {o:?}");
            assert!(o.memory_kib > 100 << 10, "round {round}: {o:?}");
        } else {
            assert_eq!(
                o.status,
                Status::MemoryLimit,
                "round {round} ({mem_mb} MiB): {o:?}"
            );
            assert!(o.memory_kib <= mem_mb << 10, "round {round}: {o:?}");
        }
        // A fresh cgroup per run: the 100 MiB above do not count against this one.
        let o = h.run(&prog_spec(trivial.clone(), limits(mem_mb)));
        assert_eq!(o.status, Status::Ok, "round {round}: {o:?}");
        assert!(
            o.memory_kib < 8 << 10,
            "round {round}: earlier memory counted: {o:?}"
        );
    }
}
