//! The last five minutes of traffic, per second, for the dashboard's charts: requests,
//! errors (5xx) and a latency histogram. Recording is a handful of relaxed atomic adds per
//! request; nothing grows with traffic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Seconds kept.
pub const WINDOW: usize = 300;
/// Upper bounds of the latency buckets, in µs (the last one is open).
const BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

struct Slot {
    second: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BOUNDS_US.len() + 1],
}

/// The per-second ring.
pub struct Traffic {
    slots: Vec<Slot>,
}

/// One second of traffic.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Second {
    /// The second (since the Unix epoch).
    pub t: u64,
    /// Requests answered.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Median latency, ms (upper bound of its bucket).
    pub p50_ms: f64,
    /// 99th percentile latency, ms (upper bound of its bucket).
    pub p99_ms: f64,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            slots: (0..WINDOW)
                .map(|_| Slot {
                    second: AtomicU64::new(0),
                    requests: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                    latency: Default::default(),
                })
                .collect(),
        }
    }
}

impl Traffic {
    /// Counts one answered request.
    pub fn record(&self, elapsed: Duration, server_error: bool) {
        let second = now_s();
        let slot = &self.slots[second as usize % WINDOW];
        let seen = slot.second.load(Ordering::Relaxed);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // This slot held a second five minutes old: start it over. A request racing
            // the reset may be counted in either second; the charts do not mind.
            slot.requests.store(0, Ordering::Relaxed);
            slot.errors.store(0, Ordering::Relaxed);
            slot.latency.iter().for_each(|b| b.store(0, Ordering::Relaxed));
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = elapsed.as_micros() as u64;
        let bucket = BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(BOUNDS_US.len());
        slot.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The last `seconds` complete seconds, oldest first (zeros where nothing happened).
    pub fn last(&self, seconds: usize) -> Vec<Second> {
        let now = now_s();
        (1..=seconds.min(WINDOW - 1) as u64)
            .rev()
            .map(|ago| {
                let t = now - ago;
                let slot = &self.slots[t as usize % WINDOW];
                if slot.second.load(Ordering::Relaxed) != t {
                    return Second {
                        t,
                        requests: 0,
                        errors: 0,
                        p50_ms: 0.0,
                        p99_ms: 0.0,
                    };
                }
                let counts: Vec<u64> = slot.latency.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                let total: u64 = counts.iter().sum();
                let quantile = |q: f64| {
                    let rank = (q * total as f64).ceil() as u64;
                    let mut seen = 0;
                    for (i, c) in counts.iter().enumerate() {
                        seen += c;
                        if seen >= rank.max(1) {
                            return *BOUNDS_US.get(i).unwrap_or(&10_000_000) as f64 / 1000.0;
                        }
                    }
                    0.0
                };
                Second {
                    t,
                    requests: slot.requests.load(Ordering::Relaxed),
                    errors: slot.errors.load(Ordering::Relaxed),
                    p50_ms: if total == 0 { 0.0 } else { quantile(0.5) },
                    p99_ms: if total == 0 { 0.0 } else { quantile(0.99) },
                }
            })
            .collect()
    }
}

/// The process's traffic.
pub fn global() -> &'static Traffic {
    static TRAFFIC: std::sync::OnceLock<Traffic> = std::sync::OnceLock::new();
    TRAFFIC.get_or_init(Traffic::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentiles_of_the_current_second_appear_once_it_is_complete() {
        let t = Traffic::default();
        for _ in 0..98 {
            t.record(Duration::from_micros(200), false);
        }
        t.record(Duration::from_millis(40), true);
        t.record(Duration::from_millis(40), true);
        std::thread::sleep(Duration::from_millis(1100));
        let last = t.last(3);
        assert_eq!(last.len(), 3);
        let busy: Vec<&Second> = last.iter().filter(|s| s.requests > 0).collect();
        let total: u64 = busy.iter().map(|s| s.requests).sum();
        assert_eq!(total, 100, "{last:?}");
        assert_eq!(busy.iter().map(|s| s.errors).sum::<u64>(), 2);
        assert!(busy.iter().any(|s| s.p50_ms == 0.25), "{busy:?}");
    }
}
