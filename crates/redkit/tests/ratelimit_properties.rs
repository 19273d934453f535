//! Property tests of the limiting algorithms on a controlled clock (the embedded backend
//! runs exactly these functions; the Redis scripts mirror them and are checked against the
//! same scenarios in `ratelimit.rs`).
//!
//! For random histories of requests: `remaining` is exact (that many unit requests pass at
//! the same instant, one more does not), `retry_after` is honoured (the same request passes
//! after waiting it) and tight where the algorithm allows (1 µs earlier it does not), and
//! fixed window and sliding log match naive reference models.

use std::sync::Arc;

use proptest::prelude::*;
use redkit::ratelimit::algorithms::{self, Spec, State, Verdict};
use redkit::ratelimit::{Algorithm, EmbeddedRateLimits, ManualClock, Policy, RateLimitBackend, Step};

type Step_ = fn(Option<&State>, u64, &Spec, u64) -> (Option<State>, Verdict);

fn algorithm(a: Algorithm) -> Step_ {
    match a {
        Algorithm::Gcra => algorithms::gcra,
        Algorithm::TokenBucket => algorithms::token_bucket,
        Algorithm::SlidingWindow => algorithms::sliding_window,
        Algorithm::SlidingLog => algorithms::sliding_log,
        Algorithm::FixedWindow => algorithms::fixed_window,
        Algorithm::Concurrency => unreachable!(),
    }
}

fn counting() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Gcra),
        Just(Algorithm::TokenBucket),
        Just(Algorithm::SlidingWindow),
        Just(Algorithm::SlidingLog),
        Just(Algorithm::FixedWindow),
    ]
}

fn spec_for(a: Algorithm) -> impl Strategy<Value = Spec> {
    (1u64..30, 1_000u64..5_000_000, 0u64..20).prop_map(move |(limit, period_us, extra)| Spec {
        limit,
        period_us,
        burst: match a {
            Algorithm::Gcra | Algorithm::TokenBucket => limit + extra,
            _ => limit,
        },
    })
}

/// A history: (microseconds to advance, cost) pairs.
fn history(spec: Spec) -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0..spec.period_us / 4 + 1, 1..=spec.burst.min(3)), 1..60)
}

const START: u64 = 1_700_000_000_000_000;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn remaining_is_exact_and_retry_after_is_honoured(
        (a, spec, hist) in counting().prop_flat_map(|a| spec_for(a).prop_map(move |s| (a, s)))
            .prop_flat_map(|(a, s)| history(s).prop_map(move |h| (a, s, h)))
    ) {
        let step = algorithm(a);
        let mut state: Option<State> = None;
        let mut now = START;
        for (advance, cost) in hist {
            now += advance;
            let (next, v) = step(state.as_ref(), now, &spec, cost);
            // Exact remaining: that many unit requests pass now, and one more does not.
            let mut probe = if v.allowed { next.clone() } else { state.clone() };
            for i in 0..v.remaining {
                let (s, pv) = step(probe.as_ref(), now, &spec, 1);
                prop_assert!(pv.allowed, "{a:?}: unit request {i} of remaining {} refused ({v:?})", v.remaining);
                probe = s;
            }
            let (_, over) = step(probe.as_ref(), now, &spec, 1);
            prop_assert!(!over.allowed, "{a:?}: more than remaining={} allowed ({v:?})", v.remaining);
            if !v.allowed {
                // From the state the refusal left behind, which is what the next call sees.
                let after = next.clone();
                prop_assert!(v.retry_after_us > 0, "{a:?}: refused with no retry time");
                let (_, later) = step(after.as_ref(), now + v.retry_after_us, &spec, cost);
                prop_assert!(later.allowed, "{a:?}: still refused after retry_after {} µs", v.retry_after_us);
                if a != Algorithm::SlidingWindow && v.retry_after_us > 1 {
                    let (_, early) = step(after.as_ref(), now + v.retry_after_us - 1, &spec, cost);
                    prop_assert!(!early.allowed, "{a:?}: retry_after {} µs is not tight", v.retry_after_us);
                }
            }
            state = next;
        }
    }

    #[test]
    fn fixed_window_sliding_window_and_sliding_log_match_reference_models(
        (spec, hist) in spec_for(Algorithm::FixedWindow).prop_flat_map(|s| history(s).prop_map(move |h| (s, h)))
    ) {
        let (mut fixed, mut log, mut sliding): (Option<State>, Option<State>, Option<State>) = (None, None, None);
        let mut windows = std::collections::HashMap::<u64, u64>::new();
        let mut slid = std::collections::HashMap::<u64, u64>::new();
        let mut admitted: Vec<u64> = Vec::new();
        let mut now = START;
        for (advance, cost) in hist {
            now += advance;
            let (s, v) = algorithms::fixed_window(fixed.as_ref(), now, &spec, cost);
            fixed = s;
            let used = windows.entry(now / spec.period_us).or_default();
            let expect = *used + cost <= spec.limit;
            if expect { *used += cost; }
            prop_assert_eq!(v.allowed, expect, "fixed window");

            // Sliding window counter: the previous window's admitted count, weighted by its
            // overlap with the window ending now (rounded up), plus the current window's.
            let (s, v) = algorithms::sliding_window(sliding.as_ref(), now, &spec, cost);
            sliding = s;
            let index = now / spec.period_us;
            let elapsed = now - index * spec.period_us;
            let previous = index.checked_sub(1).and_then(|p| slid.get(&p)).copied().unwrap_or(0);
            let current = slid.get(&index).copied().unwrap_or(0);
            let weighted = (previous * (spec.period_us - elapsed)).div_ceil(spec.period_us);
            let expect = weighted + current + cost <= spec.limit;
            if expect { *slid.entry(index).or_default() += cost; }
            prop_assert_eq!(v.allowed, expect, "sliding window");

            let (s, v) = algorithms::sliding_log(log.as_ref(), now, &spec, cost);
            log = s;
            let in_window = admitted.iter().filter(|t| **t + spec.period_us > now).count() as u64;
            let expect = in_window + cost <= spec.limit;
            if expect { admitted.extend(std::iter::repeat_n(now, cost as usize)); }
            prop_assert_eq!(v.allowed, expect, "sliding log");
        }
    }

    /// GCRA and the token bucket against the textbook continuous token bucket they both
    /// implement: `burst` tokens, one back every `period / limit`. The model counts tokens
    /// scaled by that emission interval, so it is exact in integers; intervals dividing
    /// 10⁶ µs keep the bucket's micro-token arithmetic exact too.
    #[test]
    fn gcra_and_token_bucket_match_a_continuous_token_bucket_model(
        (a, limit, interval, extra, hist) in (
            prop_oneof![Just(Algorithm::Gcra), Just(Algorithm::TokenBucket)],
            1u64..30,
            prop::sample::select(vec![1u64, 2, 5, 8, 10, 40, 125, 1_000, 3_125, 20_000, 62_500, 200_000]),
            0u64..20,
        )
            .prop_flat_map(|(a, l, i, e)| {
                prop::collection::vec((0..(l * i) / 4 + 1, 1..=(l + e).min(3)), 1..60)
                    .prop_map(move |h| (a, l, i, e, h))
            })
    ) {
        let spec = Spec { limit, period_us: limit * interval, burst: limit + extra };
        let step = algorithm(a);
        let capacity = spec.burst * interval; // scaled tokens
        let (mut tokens, mut last) = (capacity, START);
        let mut state = None;
        let mut now = START;
        for (advance, cost) in hist {
            now += advance;
            tokens = (tokens + (now - last)).min(capacity);
            last = now;
            let expect = tokens >= cost * interval;
            if expect { tokens -= cost * interval; }
            let (s, v) = step(state.as_ref(), now, &spec, cost);
            state = s;
            prop_assert_eq!(v.allowed, expect, "{:?} at +{} µs, cost {}", a, now - START, cost);
            prop_assert_eq!(v.remaining, tokens / interval, "{:?} remaining", a);
        }
    }

    #[test]
    fn gcra_never_admits_more_than_burst_plus_rate(
        (spec, hist) in spec_for(Algorithm::Gcra).prop_flat_map(|s| history(s).prop_map(move |h| (s, h)))
    ) {
        let interval = (spec.period_us / spec.limit).max(1);
        let mut state = None;
        let mut now = START;
        let mut admitted = 0;
        for (advance, cost) in hist {
            now += advance;
            let (s, v) = algorithms::gcra(state.as_ref(), now, &spec, cost);
            state = s;
            if v.allowed { admitted += cost; }
            prop_assert!(admitted <= spec.burst + (now - START) / interval);
        }
    }
}

#[tokio::test]
async fn embedded_backend_runs_the_algorithms_on_its_clock_and_fallback_share() {
    let clock = Arc::new(ManualClock::new(START));
    let policy = Policy::new("p", Algorithm::FixedWindow, 10, std::time::Duration::from_secs(1)).fallback_share(0.3);
    let step = Step {
        policy: "p",
        algorithm: policy.algorithm,
        spec: Spec {
            limit: 10,
            period_us: 1_000_000,
            burst: 10,
        },
        fallback_spec: Spec {
            limit: 3,
            period_us: 1_000_000,
            burst: 3,
        },
    };
    for (fallback, expected) in [(false, 10), (true, 3)] {
        let limiter = EmbeddedRateLimits::new(clock.clone(), fallback);
        let mut allowed = 0;
        for _ in 0..20 {
            let o = limiter.check(&step, "k", 1).await.unwrap();
            assert_eq!(o.local_fallback, fallback);
            allowed += u64::from(o.verdict.allowed);
        }
        assert_eq!(allowed, expected);
        clock.advance_us(1_000_000);
        assert!(
            limiter.check(&step, "k", 1).await.unwrap().verdict.allowed,
            "a new window"
        );
    }
}
