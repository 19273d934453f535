//! Random identifiers and jittered delays, shared by every capability.

use std::time::Duration;

use rand::Rng;

/// 128 random bits as 32 hex digits: owner tokens, permit ids, instance ids.
pub fn token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `delay` spread uniformly over [delay/2, delay], so retrying clients do not march in step.
pub fn jittered(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}
