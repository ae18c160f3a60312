//! Routing a submission to a pool: the seed architecture's algorithm, verbatim, as a pure
//! function ([`select_pool`]).

use serde::{Deserialize, Serialize};

pub use crate::engine::store::Trust;

/// The three pools of the seed architecture (DESIGN.md "Pools and routing").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolName {
    /// Interpreted languages with small requests (≤256 MiB, ≤0.5 vCPU).
    Container,
    /// Compiled languages (C, C++, Java, Rust, Go) and bigger requests.
    Microvm,
    /// Verified users asking for more than 1 GiB.
    Trusted,
}

impl PoolName {
    /// All pools, in configuration order.
    pub const ALL: [PoolName; 3] = [PoolName::Container, PoolName::Microvm, PoolName::Trusted];

    /// The pool's name as used in config keys, queues and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolName::Container => "container",
            PoolName::Microvm => "microvm",
            PoolName::Trusted => "trusted",
        }
    }
}

impl std::fmt::Display for PoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PoolName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PoolName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown pool {s:?} (expected container, microvm or trusted)"))
    }
}

/// What the router looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteRequest<'a> {
    /// The submitting user's trust.
    pub trust: Trust,
    /// Language id (`c`, `cpp`, `cpp20`, `java`, `rust`, `go`, `python3`, ...).
    pub language: &'a str,
    /// Requested memory in bytes: the problem's memory limit.
    pub memory_bytes: u64,
    /// Requested CPU share in vCPUs.
    pub cpus: f64,
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Whether the language is one the seed sends to the microvm pool: C, C++, Java, Rust, Go
/// (any C++ standard, e.g. `cpp20`).
pub fn is_compiled_family(language: &str) -> bool {
    matches!(language, "c" | "java" | "rust" | "go")
        || language.starts_with("cpp")
        || language.starts_with("c++")
}

/// The seed's routing algorithm, in its order:
/// 1. verified users requesting more than 1 GiB → `trusted`;
/// 2. C, C++, Java, Rust, Go → `microvm`;
/// 3. more than 256 MiB or more than 0.5 vCPU → `microvm`;
/// 4. everything else → `container`.
// The seed lists the language rule and the size rule as separate steps; keep them so.
#[allow(clippy::if_same_then_else)]
pub fn select_pool(req: &RouteRequest<'_>) -> PoolName {
    if req.trust == Trust::Verified && req.memory_bytes > GIB {
        PoolName::Trusted
    } else if is_compiled_family(req.language) {
        PoolName::Microvm
    } else if req.memory_bytes > 256 * MIB || req.cpus > 0.5 {
        PoolName::Microvm
    } else {
        PoolName::Container
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_routing_table() {
        use PoolName::*;
        use Trust::*;
        #[rustfmt::skip]
        let table: &[(Trust, &str, u64, f64, PoolName)] = &[
            // trust     lang       memory        cpus   pool
            (Verified, "python3", 2 * GIB,       0.25, Trusted),
            (Verified, "cpp",     GIB + 1,       0.25, Trusted),   // trust+memory wins over language
            (Verified, "cpp",     GIB,           0.25, Microvm),   // exactly 1 GiB is not "more than"
            (Standard, "python3", 2 * GIB,       0.25, Microvm),   // only verified users get trusted
            (Standard, "c",       64 * MIB,      0.25, Microvm),
            (Standard, "cpp",     64 * MIB,      0.25, Microvm),
            (Standard, "cpp20",   64 * MIB,      0.25, Microvm),
            (Standard, "java",    64 * MIB,      0.25, Microvm),
            (Standard, "rust",    64 * MIB,      0.25, Microvm),
            (Standard, "go",      64 * MIB,      0.25, Microvm),
            (Standard, "python3", 256 * MIB,     0.5,  Container), // the bounds are inclusive
            (Standard, "python3", 256 * MIB + 1, 0.25, Microvm),
            (Standard, "python3", 64 * MIB,      0.51, Microvm),
            (Standard, "javascript", 128 * MIB,  0.25, Container),
            (Standard, "ruby",    128 * MIB,     0.25, Container),
            (Standard, "php",     128 * MIB,     0.25, Container),
            (Verified, "python3", 128 * MIB,     0.25, Container),
        ];
        for &(trust, language, memory_bytes, cpus, want) in table {
            let got = select_pool(&RouteRequest {
                trust,
                language,
                memory_bytes,
                cpus,
            });
            assert_eq!(
                got, want,
                "{trust:?} {language} {memory_bytes} B {cpus} vCPU"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for p in PoolName::ALL {
            assert_eq!(p.as_str().parse::<PoolName>().unwrap(), p);
        }
        assert!("gpu".parse::<PoolName>().is_err());
    }
}
