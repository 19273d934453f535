//! A hybrid logical clock: the timestamps that order outage operations against Redis.
//!
//! A timestamp is microseconds since the Unix epoch, made unique and monotonic per
//! process: `now()` is the wall clock, or one past the last timestamp issued or observed,
//! whichever is later. Redis-side writes are stamped by Redis's own clock (`TIME` inside
//! the scripts); when an instance sees such a stamp it [`observe`](Hlc::observe)s it, so
//! an operation it makes afterwards — during an outage, on its own clock — is stamped
//! later than anything it has seen Redis do. Replay compares these stamps: a newer stamp
//! already in Redis wins over an older replayed operation, whichever instance recovers
//! first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The clock of one process. Cheap to share by reference.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

/// Wall-clock microseconds since the Unix epoch.
pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Hlc {
    /// A clock starting at the wall clock.
    pub fn new() -> Self {
        Hlc::default()
    }

    /// A timestamp later than every one issued or observed before.
    pub fn now(&self) -> u64 {
        let wall = wall_us();
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Records a timestamp seen elsewhere (Redis), so later `now()`s are past it.
    pub fn observe(&self, remote: u64) {
        self.last.fetch_max(remote, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_past_what_it_observed() {
        let clock = Hlc::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        let far = wall_us() + 60_000_000;
        clock.observe(far);
        assert!(
            clock.now() > far,
            "a stamp after observing a later clock is later still"
        );
        clock.observe(1);
        assert!(clock.now() > far + 1, "observing an older stamp changes nothing");
    }
}
