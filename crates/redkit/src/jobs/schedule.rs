//! Repeating jobs: fixed intervals and cron expressions, fired once per tick across all
//! instances.
//!
//! Every instance that runs a schedule computes the same ticks (intervals are aligned to
//! the Unix epoch; cron is evaluated in UTC) and, at each tick, enqueues the job with the
//! tick recorded in the same atomic step (`enqueue.lua` / one SQLite transaction): the
//! first instance adds it, the others find the tick taken and add nothing. The job id is
//! `NAME@TICK_MS`, so even jobs fired by several instances during an outage (each in its
//! own spool) collapse into one when the spools drain into Redis. Ticks missed while no
//! instance ran are not made up.

use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every this long, at multiples of it since the Unix epoch.
    Every(Duration),
    /// A cron expression (UTC).
    Cron(Box<cron::Schedule>),
}

impl Schedule {
    /// Fires every `interval` (1 s to 366 days).
    pub fn every(interval: Duration) -> Result<Self> {
        if interval < Duration::from_secs(1) || interval > Duration::from_secs(366 * 86_400) {
            return Err(Error::invalid("interval", "must be 1 s to 366 days"));
        }
        Ok(Schedule::Every(interval))
    }

    /// Fires per a cron expression: five fields (`min hour day month weekday`) or six with
    /// seconds first, evaluated in UTC.
    pub fn cron(expr: &str) -> Result<Self> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 | 7 => expr.to_string(),
            _ => return Err(Error::invalid("cron", format!("{expr:?} needs 5 or 6 fields"))),
        };
        let parsed = cron::Schedule::from_str(&full).map_err(|e| Error::invalid("cron", format!("{expr:?}: {e}")))?;
        Ok(Schedule::Cron(Box::new(parsed)))
    }

    /// The first tick strictly after `now_ms` (Unix ms), if there is one.
    pub fn next_after(&self, now_ms: u64) -> Option<u64> {
        match self {
            Schedule::Every(every) => {
                let every = every.as_millis() as u64;
                Some((now_ms / every + 1) * every)
            }
            Schedule::Cron(c) => {
                let now = chrono::DateTime::from_timestamp_millis(now_ms as i64)?;
                c.after(&now).next().map(|t| t.timestamp_millis() as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_align_to_the_epoch() {
        let s = Schedule::every(Duration::from_secs(10)).unwrap();
        assert_eq!(s.next_after(1_000_000_001), Some(1_000_010_000));
        assert_eq!(s.next_after(1_000_010_000), Some(1_000_020_000));
    }

    #[test]
    fn five_field_cron_fires_on_the_minute() {
        let s = Schedule::cron("*/5 * * * *").unwrap();
        // 2026-01-01T00:01:30Z -> 00:05:00Z
        assert_eq!(s.next_after(1_767_225_690_000), Some(1_767_225_900_000));
    }

    #[test]
    fn bad_cron_names_the_field() {
        let e = Schedule::cron("every day").unwrap_err().to_string();
        assert!(e.contains("cron"), "{e}");
        assert!(Schedule::cron("61 * * * *").is_err());
        assert!(Schedule::every(Duration::from_millis(10)).is_err());
    }
}
