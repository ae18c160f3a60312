//! The gateway's first gate: a token bucket per user and one per IP (DESIGN.md
//! "Backpressure and scaling": 10 tokens, 2 per second, 1 per submission). A request
//! passes only when both buckets hold a token; it then takes one from each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::config::RateLimitConfig;

/// Buckets this many or more are swept of full (idle) ones, bounding memory under
/// address-spoofing floods.
const SWEEP_AT: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets per user and per IP. Thread-safe; one per server.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<Key, Bucket>>,
}

impl RateLimiter {
    /// Buckets of `cfg.burst` tokens refilled at `cfg.per_second`.
    pub fn new(cfg: RateLimitConfig) -> Self {
        RateLimiter {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `user`'s and from `ip`'s bucket at time `now`.
    ///
    /// Errors: `Err(wait)` when either bucket is empty, with the time until both hold a
    /// token again (the Retry-After); nothing is taken then.
    pub fn acquire(&self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= SWEEP_AT {
            let (burst, rate) = (self.cfg.burst as f64, self.cfg.per_second);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let keys = [Key::User(user.to_string()), Key::Ip(ip)];
        let mut levels = [0.0f64; 2];
        for (i, k) in keys.iter().enumerate() {
            levels[i] = self.level(map.get(k), now);
        }
        let wait = levels
            .iter()
            .filter(|&&t| t < 1.0)
            .map(|&t| Duration::from_secs_f64((1.0 - t) / self.cfg.per_second))
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for (k, t) in keys.into_iter().zip(levels) {
            map.insert(
                k,
                Bucket {
                    tokens: t - 1.0,
                    at: now,
                },
            );
        }
        Ok(())
    }

    fn level(&self, b: Option<&Bucket>, now: Instant) -> f64 {
        let burst = self.cfg.burst as f64;
        match b {
            None => burst,
            Some(b) => (b.tokens
                + now.saturating_duration_since(b.at).as_secs_f64() * self.cfg.per_second)
                .min(burst),
        }
    }
}

/// Whole seconds to put in a Retry-After header for `wait` (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            burst: 10,
            per_second: 2.0,
        })
    }

    const IP1: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const IP2: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn eleventh_request_of_a_burst_waits_half_a_second() {
        let rl = limiter();
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(rl.acquire("alice", IP1, t0), Ok(()), "request {}", i + 1);
        }
        let wait = rl.acquire("alice", IP1, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // 2 tokens per second: after 0.5 s one more passes, the next does not.
        assert_eq!(
            rl.acquire("alice", IP1, t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert!(rl
            .acquire("alice", IP1, t0 + Duration::from_millis(500))
            .is_err());
        // Refill caps at the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(rl.acquire("alice", IP1, later), Ok(()));
        }
        assert!(rl.acquire("alice", IP1, later).is_err());
    }

    #[test]
    fn user_and_ip_buckets_are_both_enforced() {
        let rl = limiter();
        let t0 = Instant::now();
        for _ in 0..10 {
            rl.acquire("alice", IP1, t0).unwrap();
        }
        // Same user from another address: the user bucket is empty.
        assert!(rl.acquire("alice", IP2, t0).is_err());
        // Another user from the same address: the IP bucket is empty.
        assert!(rl.acquire("bob", IP1, t0).is_err());
        // A refused request takes nothing: bob from IP2 still has all 10.
        for _ in 0..10 {
            rl.acquire("bob", IP2, t0).unwrap();
        }
        assert!(rl.acquire("bob", IP2, t0).is_err());
    }
}
