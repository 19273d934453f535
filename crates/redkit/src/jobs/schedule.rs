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
    /// A cron expression (UTC), as one or two schedules of the `cron` crate: when both
    /// day fields are restricted, standard cron fires on either, so each gets its own.
    Cron(Vec<cron::Schedule>),
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
    /// seconds first, evaluated in UTC, with standard cron semantics: weekdays `0`–`7`
    /// (`0` and `7` are Sunday, `1` Monday) or `SUN`–`SAT`, and when both the day of month
    /// and the weekday are restricted, a day matching either fires.
    pub fn cron(expr: &str) -> Result<Self> {
        let bad = |why: String| Error::invalid("cron", format!("{expr:?}: {why}"));
        let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
        match fields.len() {
            5 => fields.insert(0, "0".into()),
            6 => {}
            _ => return Err(bad("needs 5 fields (or 6 with seconds first)".into())),
        }
        fields[5] = weekdays(&fields[5]).map_err(bad)?;
        let (day, weekday) = (fields[3].clone(), fields[5].clone());
        let restricted = |f: &str| f != "*" && f != "?";
        let variants: Vec<[String; 2]> = if restricted(&day) && restricted(&weekday) {
            vec![[day, "*".into()], ["*".into(), weekday]]
        } else {
            vec![[day, weekday]]
        };
        let schedules = variants
            .into_iter()
            .map(|[d, w]| {
                let text = format!("{} {} {} {d} {} {w}", fields[0], fields[1], fields[2], fields[4]);
                cron::Schedule::from_str(&text).map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Schedule::Cron(schedules))
    }

    /// The first tick strictly after `now_ms` (Unix ms), if there is one.
    pub fn next_after(&self, now_ms: u64) -> Option<u64> {
        match self {
            Schedule::Every(every) => {
                let every = every.as_millis() as u64;
                Some((now_ms / every + 1) * every)
            }
            Schedule::Cron(schedules) => {
                let now = chrono::DateTime::from_timestamp_millis(now_ms as i64)?;
                schedules
                    .iter()
                    .filter_map(|c| c.after(&now).next())
                    .map(|t| t.timestamp_millis() as u64)
                    .min()
            }
        }
    }
}

/// A standard weekday field (`0`–`7`, Sunday `0` or `7`, names, lists, ranges, steps)
/// as the `cron` crate reads it (`1` is Sunday): the set of days, spelled out.
fn weekdays(field: &str) -> std::result::Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let day = |t: &str| -> std::result::Result<u32, String> {
        const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32);
        }
        match t.parse::<u32>() {
            Ok(d) if d <= 7 => Ok(d),
            _ => Err(format!("weekday {t:?} is not 0-7 or SUN-SAT")),
        }
    };
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or(format!("bad step in {item:?}"))?,
            ),
            None => (item, 1),
        };
        let (from, to) = match range {
            "*" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(r)?, 6),
                None => (day(r)?, day(r)?),
            },
        };
        if from > to {
            return Err(format!("weekday range {range:?} runs backwards"));
        }
        for d in (from..=to).step_by(step as usize) {
            days[(d % 7) as usize] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".into());
    }
    let listed: Vec<String> = (0..7)
        .filter(|d| days[*d as usize])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(listed.join(","))
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

    /// The weekday of a Unix-ms instant, 0 = Sunday.
    fn weekday(ms: u64) -> u32 {
        use chrono::Datelike;
        chrono::DateTime::from_timestamp_millis(ms as i64)
            .unwrap()
            .weekday()
            .num_days_from_sunday()
    }

    #[test]
    fn weekdays_are_standard_cron_weekdays() {
        // 2026-01-04 was a Sunday; walk two weeks of ticks.
        let sunday = 1_767_484_800_000;
        let weekdays_at_nine = Schedule::cron("0 9 * * 1-5").unwrap();
        let mut t = sunday;
        let mut seen = Vec::new();
        for _ in 0..10 {
            t = weekdays_at_nine.next_after(t).unwrap();
            seen.push(weekday(t));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 1, 2, 3, 4, 5], "Monday to Friday");
        for (expr, day) in [
            ("0 0 * * 0", 0),
            ("0 0 * * 7", 0),
            ("0 0 * * SUN", 0),
            ("0 0 * * sat", 6),
        ] {
            let s = Schedule::cron(expr).unwrap();
            assert_eq!(weekday(s.next_after(sunday).unwrap()), day, "{expr}");
        }
        let weekend = Schedule::cron("0 0 * * 6-7").unwrap();
        let first = weekend.next_after(sunday).unwrap();
        assert_eq!((weekday(first), weekday(weekend.next_after(first).unwrap())), (6, 0));
    }

    #[test]
    fn restricted_day_of_month_and_weekday_fire_on_either() {
        // The 1st of the month, or any Monday.
        let s = Schedule::cron("0 0 1 * 1").unwrap();
        let sunday_jan_4 = 1_767_484_800_000;
        let next = s.next_after(sunday_jan_4).unwrap();
        assert_eq!(weekday(next), 1, "Monday Jan 5th, not waiting for Feb 1st");
    }

    #[test]
    fn bad_cron_names_the_field() {
        let e = Schedule::cron("every day").unwrap_err().to_string();
        assert!(e.contains("cron"), "{e}");
        assert!(Schedule::cron("61 * * * *").is_err());
        assert!(Schedule::cron("0 0 * * 8").unwrap_err().to_string().contains("weekday"));
        assert!(Schedule::cron("0 0 * * 5-1").is_err());
        assert!(Schedule::every(Duration::from_millis(10)).is_err());
    }
}
