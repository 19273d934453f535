//! A cheap clock for the L1 hit path: the kernel's coarse monotonic clock, read without
//! the timer arithmetic of a precise one (`CLOCK_MONOTONIC_COARSE`; a precise read per hit
//! was a tenth of an L1 hit's time, `bench/PROFILES.md`).
//!
//! It lags real time by up to its resolution (a kernel tick, 1–10 ms), so deadlines on it
//! are set one resolution early ([`deadline`]): a value is never served as fresh past its
//! precise deadline, and at worst a tick before it goes to L2 instead.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Nanoseconds on the coarse clock.
pub(crate) fn now_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime only writes the timespec passed.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) } == 0 {
            return t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
        }
    }
    precise_ns()
}

/// The precise clock on the same scale, where the coarse one is not available.
fn precise_ns() -> u64 {
    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
    BASE.elapsed().as_nanos() as u64
}

/// How far the coarse clock may lag.
fn resolution_ns() -> u64 {
    static RESOLUTION: LazyLock<u64> = LazyLock::new(|| {
        #[cfg(target_os = "linux")]
        {
            let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_getres only writes the timespec passed.
            if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut t) } == 0 {
                return t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64;
            }
        }
        0
    });
    *RESOLUTION
}

/// The coarse-clock deadline of `until` (a precise instant, `now` being the precise time
/// of the same moment): reached no later than `until` itself.
pub(crate) fn deadline(now: Instant, until: Instant) -> u64 {
    let left = until
        .saturating_duration_since(now)
        .min(Duration::from_secs(100 * 365 * 86_400));
    (now_ns() + left.as_nanos() as u64).saturating_sub(resolution_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_later_than_the_precise_one() {
        for ms in [0u64, 1, 5, 20] {
            let now = Instant::now();
            let until = now + Duration::from_millis(ms);
            let coarse = deadline(now, until);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            assert!(
                now_ns() >= coarse,
                "{ms} ms: still fresh on the coarse clock after the precise deadline"
            );
        }
    }

    #[test]
    fn the_clock_moves_on() {
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(30));
        assert!(now_ns() >= a + 10_000_000);
    }
}
