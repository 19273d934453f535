//! Get-or-set for callers that load values themselves (HTTP clients, other languages).
//!
//! [`Cache::get_or_set_with`] runs the loader in this process. A client of `redkit serve`
//! loads in its own process, so the same protection is split in steps:
//! [`Cache::lookup_or_claim`] answers a fresh value, or tells exactly one caller per key —
//! across callers *and* instances (a short lock in Redis, or in this process's store) — to
//! load it ([`Claim::Load`], with a token). That caller stores the value with
//! [`Cache::fill`] (which ends the claim), or gives up with [`Cache::release_claim`]. The
//! others are answered the stale value at once when the fail-safe window still holds one,
//! or wait (up to a bound) for the loader's value; a claim whose holder died ends with its
//! TTL, and the next caller takes it over.

use std::time::{Duration, Instant};

use super::load::LOCK_POLL;
use super::{Cache, CacheValue, EntryOptions, L2Lookup};
use crate::error::{Error, Result};

/// Longest claim or wait accepted.
const MAX_CLAIM: Duration = Duration::from_secs(300);

/// What [`Cache::lookup_or_claim`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim<T> {
    /// A fresh value.
    Fresh(T),
    /// No fresh value, and the caller is the one to load it: store it with [`Cache::fill`]
    /// and `token`, or give up with [`Cache::release_claim`]. `stale` is the value past
    /// its TTL still inside the fail-safe window, to serve if loading fails.
    Load {
        /// Proves the claim to [`Cache::fill`] and [`Cache::release_claim`].
        token: String,
        /// The stale value, if the fail-safe window keeps one.
        stale: Option<T>,
    },
    /// Another caller is loading it. `stale` is served meanwhile when there is one; without
    /// one, its value did not come within the wait.
    Busy {
        /// The stale value, if the fail-safe window keeps one.
        stale: Option<T>,
    },
}

fn check_span(field: &str, d: Duration) -> Result<()> {
    if d > MAX_CLAIM {
        return Err(Error::invalid(field, "at most 300 s"));
    }
    Ok(())
}

impl<T: CacheValue> Cache<T> {
    /// The fresh value at `key`, or a claim to load it (held for `claim_ttl`, 1 ms to
    /// 300 s); while another caller holds the claim and no stale value exists, waits up to
    /// `wait` (at most 300 s) for its value. The caller told to load ([`Claim::Load`])
    /// stores the value with [`Cache::fill`] or gives up with [`Cache::release_claim`].
    pub async fn lookup_or_claim(&self, key: &str, claim_ttl: Duration, wait: Duration) -> Result<Claim<T>> {
        self.check_key(key)?;
        if claim_ttl.is_zero() {
            return Err(Error::invalid("claim_ttl", "must be > 0"));
        }
        check_span("claim_ttl", claim_ttl)?;
        check_span("wait", wait)?;
        let now = Instant::now();
        let l1 = self.inner.l1.get(key);
        if let Some(e) = &l1
            && e.is_fresh_now()
        {
            self.inner.stats.count_l1_hit(e);
            return Ok(Claim::Fresh(e.value.clone()));
        }
        let mut stale = l1.filter(|e| e.is_usable_stale(now)).map(|e| e.value.clone());
        match self.l2_lookup(key).await? {
            L2Lookup::Fresh(e) => {
                self.inner.stats.l2_hits.add(1);
                return Ok(Claim::Fresh(e.value.clone()));
            }
            L2Lookup::Stale(e) => stale = Some(e.value.clone()),
            L2Lookup::Missing => {}
        }
        self.inner.stats.misses.add(1);
        let deadline = Instant::now() + wait;
        loop {
            if let Some(token) = self.try_claim(key, claim_ttl).await? {
                // The claim may be free because a loader just filled the key and released
                // it, after this caller's lookup: look again before loading a second time.
                if let L2Lookup::Fresh(e) = self.l2_lookup(key).await? {
                    self.release_claim(key, &token).await?;
                    self.inner.stats.l2_hits.add(1);
                    return Ok(Claim::Fresh(e.value.clone()));
                }
                self.inner.stats.factory_calls.add(1);
                return Ok(Claim::Load { token, stale });
            }
            if stale.is_some() {
                self.inner.stats.stale_served.add(1);
                return Ok(Claim::Busy { stale });
            }
            // Wait for the loader's value; if its claim ends first (it died), take it over.
            loop {
                if Instant::now() >= deadline {
                    return Ok(Claim::Busy { stale: None });
                }
                tokio::time::sleep(LOCK_POLL.min(deadline - Instant::now())).await;
                if let L2Lookup::Fresh(e) = self.l2_lookup(key).await? {
                    return Ok(Claim::Fresh(e.value.clone()));
                }
                if self.claim_is_free(key).await? {
                    break;
                }
            }
        }
    }

    /// Stores the value a [`Claim::Load`] asked for and ends the claim. A claim that ended
    /// meanwhile (its TTL passed) does not stop the store: the value is still good.
    pub async fn fill(&self, key: &str, value: &T, options: &EntryOptions, token: &str) -> Result<()> {
        self.set_with(key, value, options).await?;
        self.release_claim(key, token).await
    }

    /// Gives a claim up (the load failed), so the next caller may load at once.
    pub async fn release_claim(&self, key: &str, token: &str) -> Result<()> {
        self.check_key(key)?;
        if token.is_empty() || token.len() > 128 {
            return Err(Error::invalid("fill_token", "not a token a claim returned"));
        }
        let ns = &self.inner.ns;
        self.inner.routed.call(|b| b.unlock(ns, key, token)).await
    }

    async fn try_claim(&self, key: &str, ttl: Duration) -> Result<Option<String>> {
        let ns = &self.inner.ns;
        let token = crate::core::random::token();
        let won = self.inner.routed.call(|b| b.try_lock(ns, key, &token, ttl)).await?;
        Ok(won.then_some(token))
    }

    /// Whether nobody holds the claim of `key` now (taking and at once releasing it).
    async fn claim_is_free(&self, key: &str) -> Result<bool> {
        match self.try_claim(key, Duration::from_millis(1)).await? {
            Some(token) => {
                self.release_claim(key, &token).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}
