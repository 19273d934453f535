//! The limiting algorithms as pure functions of (state, now) → (state, verdict).
//!
//! The embedded backend runs these directly; the Redis backend runs Lua scripts that do
//! the same arithmetic with Redis's own clock (`TIME`). Times are integer microseconds.

use serde::{Deserialize, Serialize};

/// The decision of one algorithm step, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Requests (cost units) still allowed right now.
    pub remaining: u64,
    /// Time until the limiter is back to full capacity.
    pub reset_after_us: u64,
    /// When denied: time until a request of this cost would be allowed.
    pub retry_after_us: u64,
}

/// What a limit is, in the units the algorithms use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Requests per period (for the concurrency limiter: permits).
    pub limit: u64,
    /// The period in microseconds (for the concurrency limiter: the lease).
    pub period_us: u64,
    /// Largest burst (GCRA and token bucket); `limit` elsewhere.
    pub burst: u64,
}

/// Per-key state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum State {
    /// GCRA.
    Gcra {
        /// Theoretical arrival time (µs).
        tat: u64,
    },
    /// Token bucket.
    Bucket {
        /// Tokens × 1e6 (kept integral).
        micro_tokens: u64,
        /// When they were counted (µs).
        at: u64,
    },
    /// Sliding window counter.
    Window {
        /// Index of the current fixed window.
        index: u64,
        /// Units in the current window.
        current: u64,
        /// Units in the previous window.
        previous: u64,
    },
    /// Sliding log.
    Log {
        /// Timestamps (µs) of admitted units, oldest first.
        stamps: Vec<u64>,
    },
    /// Fixed window.
    Fixed {
        /// Index of the window.
        index: u64,
        /// Units in it.
        count: u64,
    },
    /// Concurrency limiter.
    Permits {
        /// Held permits and their lease expiries (µs).
        leases: Vec<(String, u64)>,
    },
}

/// GCRA (generic cell rate algorithm): one timestamp per key, smooth, burst-aware.
pub fn gcra(state: Option<&State>, now: u64, spec: &Spec, cost: u64) -> (Option<State>, Verdict) {
    let interval = (spec.period_us / spec.limit).max(1);
    let tolerance = interval * spec.burst;
    let tat = match state {
        Some(State::Gcra { tat }) => (*tat).max(now),
        _ => now,
    };
    let new_tat = tat + interval * cost;
    if new_tat - now <= tolerance {
        let remaining = (tolerance - (new_tat - now)) / interval;
        (
            Some(State::Gcra { tat: new_tat }),
            Verdict {
                allowed: true,
                remaining,
                reset_after_us: new_tat - now,
                retry_after_us: 0,
            },
        )
    } else {
        let remaining = (tolerance - (tat - now).min(tolerance)) / interval;
        (
            state.cloned(),
            Verdict {
                allowed: false,
                remaining,
                reset_after_us: tat - now,
                retry_after_us: new_tat - now - tolerance,
            },
        )
    }
}

const MICRO: u64 = 1_000_000;

/// Token bucket: `burst` tokens, refilled at `limit` per period.
pub fn token_bucket(state: Option<&State>, now: u64, spec: &Spec, cost: u64) -> (Option<State>, Verdict) {
    let capacity = spec.burst * MICRO;
    let (tokens, at) = match state {
        Some(State::Bucket { micro_tokens, at }) => (*micro_tokens, (*at).min(now)),
        _ => (capacity, now),
    };
    // micro-tokens gained = elapsed_us * limit * 1e6 / period_us
    let gained = ((now - at) as u128 * spec.limit as u128 * MICRO as u128 / spec.period_us as u128) as u64;
    let tokens = tokens.saturating_add(gained).min(capacity);
    let need = cost * MICRO;
    // time to gain `n` micro-tokens, rounded up
    let time_for =
        |n: u64| -> u64 { ((n as u128 * spec.period_us as u128).div_ceil(spec.limit as u128 * MICRO as u128)) as u64 };
    if tokens >= need {
        let left = tokens - need;
        (
            Some(State::Bucket {
                micro_tokens: left,
                at: now,
            }),
            Verdict {
                allowed: true,
                remaining: left / MICRO,
                reset_after_us: time_for(capacity - left),
                retry_after_us: 0,
            },
        )
    } else {
        (
            Some(State::Bucket {
                micro_tokens: tokens,
                at: now,
            }),
            Verdict {
                allowed: false,
                remaining: tokens / MICRO,
                reset_after_us: time_for(capacity - tokens),
                retry_after_us: time_for(need - tokens),
            },
        )
    }
}

/// Sliding window counter: the previous window's count, weighted by how much of it still
/// overlaps the sliding window, plus the current window's count.
pub fn sliding_window(state: Option<&State>, now: u64, spec: &Spec, cost: u64) -> (Option<State>, Verdict) {
    let period = spec.period_us;
    let index = now / period;
    let (current, previous) = match state {
        Some(State::Window {
            index: i,
            current,
            previous,
        }) if *i == index => (*current, *previous),
        Some(State::Window { index: i, current, .. }) if *i + 1 == index => (0, *current),
        _ => (0, 0),
    };
    let elapsed = now - index * period;
    // weighted previous count, rounded up so the estimate never under-counts
    let weighted = (previous as u128 * (period - elapsed) as u128).div_ceil(period as u128) as u64;
    let used = weighted + current;
    let reset_after_us = if current > 0 {
        2 * period - elapsed
    } else {
        period - elapsed
    };
    if used + cost <= spec.limit {
        let current = current + cost;
        (
            Some(State::Window {
                index,
                current,
                previous,
            }),
            Verdict {
                allowed: true,
                remaining: spec.limit - used - cost,
                reset_after_us,
                retry_after_us: 0,
            },
        )
    } else {
        // Wait until enough of the previous window has slid out, or for the next window.
        let retry_after_us = if current + cost <= spec.limit && previous > 0 {
            // need previous*(period-elapsed-t)/period <= limit-current-cost
            let room = (spec.limit - current - cost) as u128;
            let keep = (room * period as u128 / previous as u128) as u64; // overlap we can afford
            (period - elapsed).saturating_sub(keep).max(1)
        } else {
            // The current window alone is too full: in the next window it becomes "previous".
            let room = spec.limit.saturating_sub(cost) as u128;
            let keep = if current == 0 {
                period as u128
            } else {
                (room * period as u128 / current as u128).min(period as u128)
            };
            (period - elapsed) + (period - keep as u64)
        };
        (
            state.cloned(),
            Verdict {
                allowed: false,
                remaining: spec.limit.saturating_sub(used),
                reset_after_us,
                retry_after_us,
            },
        )
    }
}

/// Sliding log: exact; one timestamp per admitted unit within the last period.
pub fn sliding_log(state: Option<&State>, now: u64, spec: &Spec, cost: u64) -> (Option<State>, Verdict) {
    let period = spec.period_us;
    let mut stamps: Vec<u64> = match state {
        Some(State::Log { stamps }) => stamps.iter().copied().filter(|t| t + period > now).collect(),
        _ => Vec::new(),
    };
    let count = stamps.len() as u64;
    if count + cost <= spec.limit {
        stamps.extend(std::iter::repeat_n(now, cost as usize));
        let reset_after_us = period;
        (
            Some(State::Log { stamps }),
            Verdict {
                allowed: true,
                remaining: spec.limit - count - cost,
                reset_after_us,
                retry_after_us: 0,
            },
        )
    } else {
        // The (count + cost - limit)-th oldest stamp must expire first.
        let must_expire = (count + cost - spec.limit) as usize;
        let retry_after_us = stamps[must_expire - 1] + period - now;
        let reset_after_us = stamps.last().map_or(0, |t| t + period - now);
        (
            Some(State::Log { stamps }),
            Verdict {
                allowed: false,
                remaining: spec.limit.saturating_sub(count),
                reset_after_us,
                retry_after_us,
            },
        )
    }
}

/// Fixed window: a counter per period-aligned window.
pub fn fixed_window(state: Option<&State>, now: u64, spec: &Spec, cost: u64) -> (Option<State>, Verdict) {
    let index = now / spec.period_us;
    let count = match state {
        Some(State::Fixed { index: i, count }) if *i == index => *count,
        _ => 0,
    };
    let window_end = (index + 1) * spec.period_us - now;
    if count + cost <= spec.limit {
        let count = count + cost;
        (
            Some(State::Fixed { index, count }),
            Verdict {
                allowed: true,
                remaining: spec.limit - count,
                reset_after_us: window_end,
                retry_after_us: 0,
            },
        )
    } else {
        (
            Some(State::Fixed { index, count }),
            Verdict {
                allowed: false,
                remaining: spec.limit - count.min(spec.limit),
                reset_after_us: window_end,
                retry_after_us: window_end,
            },
        )
    }
}

/// Concurrency limiter: grants permit `id` for `spec.period_us` if fewer than `limit` are
/// held; leases that ran out (their holder vanished) are reclaimed first.
pub fn acquire(state: Option<&State>, now: u64, spec: &Spec, id: &str) -> (Option<State>, Verdict) {
    let mut leases: Vec<(String, u64)> = match state {
        Some(State::Permits { leases }) => leases.iter().filter(|(_, until)| *until > now).cloned().collect(),
        _ => Vec::new(),
    };
    let held = leases.len() as u64;
    let soonest = leases
        .iter()
        .map(|(_, until)| until - now)
        .min()
        .unwrap_or(spec.period_us);
    if held < spec.limit {
        leases.push((id.to_string(), now + spec.period_us));
        (
            Some(State::Permits { leases }),
            Verdict {
                allowed: true,
                remaining: spec.limit - held - 1,
                reset_after_us: spec.period_us,
                retry_after_us: 0,
            },
        )
    } else {
        (
            Some(State::Permits { leases }),
            Verdict {
                allowed: false,
                remaining: 0,
                reset_after_us: soonest,
                retry_after_us: soonest,
            },
        )
    }
}

/// Releases permit `id`; returns the new state and whether it was held.
pub fn release(state: Option<&State>, id: &str) -> (Option<State>, bool) {
    match state {
        Some(State::Permits { leases }) => {
            let kept: Vec<(String, u64)> = leases.iter().filter(|(p, _)| p != id).cloned().collect();
            let was_held = kept.len() != leases.len();
            (Some(State::Permits { leases: kept }), was_held)
        }
        other => (other.cloned(), false),
    }
}

/// When a key's state can be forgotten (it would be recreated identically).
pub fn expires_at(state: &State, spec: &Spec) -> u64 {
    match state {
        State::Gcra { tat } => *tat,
        State::Bucket { at, .. } => at + spec.period_us.saturating_mul(spec.burst.div_ceil(spec.limit.max(1))),
        State::Window { index, .. } => (index + 2) * spec.period_us,
        State::Log { stamps } => stamps.last().map_or(0, |t| t + spec.period_us),
        State::Fixed { index, .. } => (index + 1) * spec.period_us,
        State::Permits { leases } => leases.iter().map(|(_, until)| *until).max().unwrap_or(0),
    }
}
