//! Named policies: what is limited, how much, and how it behaves.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::algorithms::Spec;
use crate::error::{Error, Result};

/// How a policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Generic cell rate algorithm: smooth, one timestamp per key, bursts up to `burst`.
    /// The default.
    Gcra,
    /// Token bucket of `burst` tokens refilled at `limit` per `period`.
    TokenBucket,
    /// Sliding window counter: two fixed windows, the older weighted by overlap.
    SlidingWindow,
    /// Sliding log: exact, one entry per admitted unit (memory grows with `limit`).
    SlidingLog,
    /// Fixed window aligned to `period`.
    FixedWindow,
    /// At most `limit` permits held at once, each leased for `period`.
    Concurrency,
}

/// A named limit. Build with [`Policy::new`] and the builder methods.
///
/// ```
/// use std::time::Duration;
/// use redkit::ratelimit::{Algorithm, Policy};
/// let api = Policy::new("api", Algorithm::Gcra, 100, Duration::from_secs(60))
///     .burst(20)
///     .allow(["internal-batch"])
///     .fallback_share(0.25); // 4 instances: each takes a quarter while Redis is away
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Policy {
    /// Its name (keys are scoped per policy).
    pub name: String,
    /// How it counts.
    pub algorithm: Algorithm,
    /// Requests per period (permits for [`Algorithm::Concurrency`]).
    pub limit: u64,
    /// The period (the lease for [`Algorithm::Concurrency`]).
    #[serde(with = "duration_ms")]
    pub period: Duration,
    /// Largest burst (GCRA, token bucket); defaults to `limit`.
    pub burst: Option<u64>,
    /// Decide and count, but never refuse.
    pub shadow: bool,
    /// Keys that are never limited.
    pub allow: HashSet<String>,
    /// Keys that are always refused.
    pub deny: HashSet<String>,
    /// Share of the limit each instance enforces locally while Redis is away (0–1].
    pub fallback_share: f64,
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// The largest limit, burst or cost accepted.
pub const MAX_LIMIT: u64 = 1_000_000_000;
/// The longest period accepted.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// Longest time a full burst may take to refill (100 years, in µs).
const MAX_REFILL_US: u128 = 100 * 366 * 24 * 3600 * 1_000_000;
/// The largest limit of a sliding-log policy (it stores one entry per unit).
pub const MAX_LOG_LIMIT: u64 = 100_000;

impl Policy {
    /// `limit` requests per `period`, counted by `algorithm`.
    pub fn new(name: impl Into<String>, algorithm: Algorithm, limit: u64, period: Duration) -> Self {
        Policy {
            name: name.into(),
            algorithm,
            limit,
            period,
            burst: None,
            shadow: false,
            allow: HashSet::new(),
            deny: HashSet::new(),
            fallback_share: 1.0,
        }
    }

    /// Largest burst (GCRA and token bucket).
    pub fn burst(mut self, burst: u64) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Shadow mode: decide and count, never refuse.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }

    /// Keys never limited.
    pub fn allow<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.allow.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Keys always refused.
    pub fn deny<S: Into<String>>(mut self, keys: impl IntoIterator<Item = S>) -> Self {
        self.deny.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Share of the limit enforced per instance while Redis is away, e.g. `1.0 / instances`.
    pub fn fallback_share(mut self, share: f64) -> Self {
        self.fallback_share = share;
        self
    }

    /// The effective burst.
    pub fn effective_burst(&self) -> u64 {
        match self.algorithm {
            Algorithm::Gcra | Algorithm::TokenBucket => self.burst.unwrap_or(self.limit),
            _ => self.limit,
        }
    }

    /// Checks every field; the error names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        let n = &self.name;
        let name_ok =
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                "name",
                "1 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.', ':'",
            ));
        }
        if self.limit == 0 {
            return Err(Error::invalid(
                "limit",
                "must be at least 1 (a limit of 0 refuses everything: put keys on the deny list instead)",
            ));
        }
        if self.limit > MAX_LIMIT {
            return Err(Error::invalid("limit", format!("must be at most {MAX_LIMIT}")));
        }
        if self.period < Duration::from_millis(1) {
            return Err(Error::invalid("period", "must be at least 1 ms"));
        }
        if self.period > MAX_PERIOD {
            return Err(Error::invalid("period", "must be at most 366 days"));
        }
        match (self.algorithm, self.burst) {
            (Algorithm::Gcra | Algorithm::TokenBucket, Some(b)) if b == 0 || b > MAX_LIMIT => {
                return Err(Error::invalid("burst", format!("must be 1 to {MAX_LIMIT}")));
            }
            (Algorithm::Gcra | Algorithm::TokenBucket, _) => {}
            (_, Some(_)) => {
                return Err(Error::invalid(
                    "burst",
                    "applies only to the gcra and token_bucket algorithms",
                ));
            }
            _ => {}
        }
        if self.algorithm == Algorithm::Gcra && self.period.as_micros() < self.limit as u128 {
            return Err(Error::invalid(
                "limit",
                "more than one request per microsecond cannot be scheduled by gcra; lengthen the period",
            ));
        }
        if matches!(self.algorithm, Algorithm::Gcra | Algorithm::TokenBucket) {
            // The time a full burst takes to refill: beyond it the arithmetic (in u64 here,
            // in Lua's doubles, exact to 2^53, on Redis) would overflow or round, and the two
            // backends would disagree.
            let refill_us = self.period.as_micros() * u128::from(self.effective_burst()) / u128::from(self.limit);
            if refill_us > MAX_REFILL_US {
                return Err(Error::invalid(
                    "burst",
                    format!(
                        "a burst of {} at {} per {:?} takes over 100 years to refill; lower the burst or the period",
                        self.effective_burst(),
                        self.limit,
                        self.period
                    ),
                ));
            }
        }
        if self.algorithm == Algorithm::SlidingLog && self.limit > MAX_LOG_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("sliding_log keeps one entry per request; at most {MAX_LOG_LIMIT} (use sliding_window)"),
            ));
        }
        if !(self.fallback_share > 0.0 && self.fallback_share <= 1.0) {
            return Err(Error::invalid("fallback_share", "must be > 0 and <= 1"));
        }
        if let Some(k) = self.allow.intersection(&self.deny).next() {
            return Err(Error::invalid(
                "allow",
                format!("key {k:?} is on both the allow and the deny list"),
            ));
        }
        Ok(())
    }

    /// Checks a request's cost against this policy.
    pub fn check_cost(&self, cost: u64) -> Result<()> {
        if cost == 0 {
            return Err(Error::invalid("cost", "must be at least 1"));
        }
        let most = self.effective_burst();
        if cost > most {
            return Err(Error::invalid(
                "cost",
                format!(
                    "{cost} can never be allowed by policy {}: it exceeds the burst of {most}",
                    self.name
                ),
            ));
        }
        Ok(())
    }

    /// The numbers the algorithms run on, scaled by `share` (at least 1).
    pub(crate) fn spec(&self, share: f64) -> Spec {
        let scale = |n: u64| ((n as f64 * share).floor() as u64).max(1);
        Spec {
            limit: scale(self.limit),
            period_us: self.period.as_micros() as u64,
            burst: scale(self.effective_burst()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_whose_arithmetic_would_overflow_is_refused_by_name() {
        let huge = Policy::new("p", Algorithm::Gcra, 1, MAX_PERIOD).burst(MAX_LIMIT);
        let e = huge.validate().unwrap_err().to_string();
        assert!(e.contains("burst") && e.contains("100 years"), "{e}");
        assert!(
            Policy::new("p", Algorithm::TokenBucket, 1, MAX_PERIOD)
                .burst(MAX_LIMIT)
                .validate()
                .is_err()
        );
        // Large but sound: a million per day with a burst of a million.
        Policy::new("p", Algorithm::Gcra, 1_000_000, Duration::from_secs(86_400))
            .validate()
            .unwrap();
    }
}
