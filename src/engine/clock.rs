//! An injectable wall clock for the store and the queue, so lease expiry and timestamps
//! are deterministic in tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// A source of wall-clock time in milliseconds since the Unix epoch (UTC).
///
/// The SQLite store and queue read every "now" from their clock: lease expiry,
/// `submitted_at`, `started_at`, `finished_at`.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> i64;

    /// The same instant as an [`OffsetDateTime`] (UTC).
    fn now(&self) -> OffsetDateTime {
        from_ms(self.now_ms())
    }
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        to_ms(OffsetDateTime::now_utc())
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    ms: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start_ms` milliseconds since the epoch.
    pub fn new(start_ms: i64) -> Self {
        Self {
            ms: Arc::new(AtomicI64::new(start_ms)),
        }
    }

    /// Moves the clock forward by `by` (all clones see it).
    pub fn advance(&self, by: Duration) {
        self.ms.fetch_add(duration_ms(by), Ordering::SeqCst);
    }

    /// Sets the clock to `ms` milliseconds since the epoch.
    pub fn set_ms(&self, ms: i64) {
        self.ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.ms.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the epoch of `t` (saturating far outside ±292 million years).
pub fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The UTC instant `ms` milliseconds after the epoch (clamped to the range `time` supports).
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(if ms < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        time::macros::datetime!(9999-12-31 23:59:59 UTC)
    })
}

/// `d` in whole milliseconds, saturating at `i64::MAX`.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// RFC 3339 text of `t` in UTC, e.g. `"2026-11-30T02:43:38.123Z"`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_round_trip_and_rfc3339() {
        let t = from_ms(1_700_000_000_123);
        assert_eq!(to_ms(t), 1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1000);
        let c2 = c.clone();
        assert_eq!(c.now_ms(), 1000);
        c.advance(Duration::from_millis(2500));
        assert_eq!(c2.now_ms(), 3500);
        c2.set_ms(7);
        assert_eq!(c.now_ms(), 7);
    }
}
