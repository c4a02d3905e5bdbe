//! When a schedule runs: a cron pattern (5 fields, or 6 with seconds) read in an IANA time
//! zone, written directly or in a small natural language (`every day at 9am`), and the plan
//! for runs missed while the object was down.
//!
//! Times are epoch milliseconds. Occurrences are whole seconds. Daylight-saving changes follow
//! croner's rules: a fixed-time schedule whose time falls in a spring-forward gap runs at the
//! first moment after the gap, and once (the first time) in an autumn overlap; an interval
//! schedule runs by the clock on both sides.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};

/// How long after its time a run still counts as on time rather than missed.
pub const MISFIRE_GRACE_MS: i64 = 60_000;
/// Most runs `catch_up` makes for one stretch of downtime, unless the schedule says.
pub const DEFAULT_CATCH_UP_CAP: u32 = 100;
/// Largest cap a schedule may ask for.
pub const MAX_CATCH_UP_CAP: u32 = 1_000;

/// What to do with runs missed while the object was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Drop them; run again at the next time on the schedule.
    #[default]
    Skip,
    /// Run each one, oldest first, up to the schedule's cap.
    CatchUp,
    /// Run once for all of them.
    Coalesce,
}

impl CatchUp {
    pub fn parse(s: &str) -> Result<CatchUp, String> {
        match s {
            "skip" => Ok(CatchUp::Skip),
            "catch_up" | "catchUp" => Ok(CatchUp::CatchUp),
            "coalesce" => Ok(CatchUp::Coalesce),
            other => Err(format!(
                "catchUp `{other}` is not skip, catch_up or coalesce"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Skip => "skip",
            CatchUp::CatchUp => "catch_up",
            CatchUp::Coalesce => "coalesce",
        }
    }
}

/// A parsed schedule: the cron pattern and the zone it is read in.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: Cron,
    tz: Tz,
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses an IANA time zone name (`Europe/Berlin`); `UTC` when absent.
pub fn parse_tz(tz: Option<&str>) -> Result<Tz, String> {
    match tz {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| {
            format!("`{name}` is not an IANA time zone (for example Europe/Berlin or UTC)")
        }),
    }
}

impl Timetable {
    /// A cron pattern of 5 fields (minute precision) or 6 (seconds first).
    pub fn from_cron(pattern: &str, tz: Tz) -> Result<Timetable, String> {
        let fields = pattern.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(format!(
                "cron `{pattern}` has {fields} fields; use 5 (minute hour day month weekday) \
                 or 6 (with seconds first)"
            ));
        }
        let cron = parser()
            .parse(pattern)
            .map_err(|e| format!("cron `{pattern}`: {e}"))?;
        Ok(Timetable { cron, tz })
    }

    /// A stored schedule's timetable. Parsed patterns are kept (most schedules share a few
    /// patterns), since parsing costs more than finding the next run.
    pub fn stored(pattern: &str, tz: &str) -> Result<Timetable, String> {
        use parking_lot::Mutex;
        use std::collections::HashMap;
        use std::sync::OnceLock;
        const KEEP: usize = 4096;
        static PARSED: OnceLock<Mutex<HashMap<(String, String), Timetable>>> = OnceLock::new();
        let parsed = PARSED.get_or_init(Default::default);
        let key = (pattern.to_string(), tz.to_string());
        if let Some(t) = parsed.lock().get(&key) {
            return Ok(t.clone());
        }
        let t = Timetable::from_cron(pattern, parse_tz(Some(tz))?)?;
        let mut map = parsed.lock();
        if map.len() >= KEEP {
            map.clear();
        }
        map.insert(key, t.clone());
        Ok(t)
    }

    /// A natural form (`every 5 minutes`, `every Monday at 09:00`).
    pub fn from_every(text: &str, tz: Tz) -> Result<Timetable, String> {
        let pattern = every_to_cron(text)?;
        Timetable::from_cron(&pattern, tz)
    }

    pub fn pattern(&self) -> &str {
        self.cron.pattern.as_str()
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        self.tz.timestamp_millis_opt(ms).single()
    }

    /// The first run strictly after `ms`.
    pub fn next_after(&self, ms: i64) -> Option<i64> {
        // Occurrences are whole seconds: search from the second holding `ms`, exclusive.
        let from = self.at(ms.div_euclid(1000) * 1000)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.with_timezone(&Utc).timestamp_millis())
    }

    /// The latest run at or before `ms`.
    pub fn latest_at_or_before(&self, ms: i64) -> Option<i64> {
        let from = self.at(ms.div_euclid(1000) * 1000)?;
        let prev = self.cron.find_previous_occurrence(&from, true).ok()?;
        Some(prev.with_timezone(&Utc).timestamp_millis())
    }

    /// The runs to make now for a schedule due at `due` (a run time, at or before `now`), and
    /// when it is due next (strictly after `now`).
    pub fn plan(&self, due: i64, now: i64, policy: CatchUp, cap: u32) -> Plan {
        let next_at = self.next_after(now);
        if due > now {
            return Plan {
                runs: Vec::new(),
                next_at: Some(due),
            };
        }
        let latest = self.latest_at_or_before(now).unwrap_or(due).max(due);
        let on_time = now - latest <= MISFIRE_GRACE_MS;
        let runs = match policy {
            CatchUp::Skip if on_time => vec![latest],
            CatchUp::Skip => Vec::new(),
            CatchUp::Coalesce => vec![latest],
            CatchUp::CatchUp => {
                let mut runs = Vec::new();
                let mut t = Some(due);
                while let Some(at) = t {
                    if at > now || runs.len() >= cap as usize {
                        break;
                    }
                    runs.push(at);
                    t = self.next_after(at);
                }
                // The run due now is never crowded out by old ones.
                if runs.last().is_some_and(|l| *l < latest) && on_time {
                    runs.push(latest);
                }
                runs
            }
        };
        Plan { runs, next_at }
    }
}

/// What a due schedule does now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The run times to make, oldest first.
    pub runs: Vec<i64>,
    /// The next run after these, if the pattern has one.
    pub next_at: Option<i64>,
}

/// RFC 3339 in UTC, for records and webhooks.
pub fn iso(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

// ---- the natural forms ----

const FORMS: &str = "every N seconds|minutes|hours, every minute, every hour, every day [at TIME], \
every weekday [at TIME], every weekend [at TIME], every Monday…Sunday [at TIME], every week, \
every month, every 1st…31st of the month [at TIME], every last day of the month [at TIME]";

/// Turns a natural form into a 6-field cron pattern (seconds first).
pub fn every_to_cron(text: &str) -> Result<String, String> {
    let lower = text.trim().to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let unsupported = |part: &str| {
        format!("unsupported schedule `{text}`: `{part}` is not understood; the forms are: {FORMS}")
    };
    let Some((&"every", rest)) = words.split_first() else {
        return Err(unsupported(words.first().copied().unwrap_or("")));
    };
    // Split off `at TIME`.
    let (what, time) = match rest.iter().position(|w| *w == "at") {
        Some(i) => {
            let t = rest[i + 1..].join(" ");
            if t.is_empty() {
                return Err(format!(
                    "schedule `{text}`: `at` needs a time such as 9am or 17:30"
                ));
            }
            (
                &rest[..i],
                Some(parse_time(&t).map_err(|e| format!("schedule `{text}`: {e}"))?),
            )
        }
        None => (rest, None),
    };
    let (h, m) = time.unwrap_or((0, 0));
    let no_time = |unit: &str| -> Result<(), String> {
        if time.is_some() {
            Err(format!(
                "schedule `{text}`: `every {unit}` repeats within the day and takes no `at` time"
            ))
        } else {
            Ok(())
        }
    };
    match what {
        [] => Err(unsupported("every")),
        ["second"] => no_time("second").map(|()| "* * * * * *".into()),
        ["minute"] => no_time("minute").map(|()| "0 * * * * *".into()),
        ["hour"] => no_time("hour").map(|()| "0 0 * * * *".into()),
        [n, unit] if n.parse::<u32>().is_ok() => {
            let n: u32 = n.parse().unwrap_or(0);
            let (base, span, field) = match unit.trim_end_matches('s') {
                "second" => ("second", 60, 0),
                "minute" => ("minute", 60, 1),
                "hour" => ("hour", 24, 2),
                "day" if n == 1 => return Ok(format!("0 {m} {h} * * *")),
                _ => return Err(unsupported(unit)),
            };
            no_time(&format!("{n} {base}s"))?;
            if n == 0 || span % n != 0 {
                return Err(format!(
                    "schedule `{text}`: {n} does not divide {} evenly, so the runs would \
                     drift; use a divisor of {span} or a cron pattern",
                    if field == 2 {
                        "a day"
                    } else if field == 1 {
                        "an hour"
                    } else {
                        "a minute"
                    }
                ));
            }
            let step = if n == 1 {
                "*".to_string()
            } else {
                format!("*/{n}")
            };
            Ok(match field {
                0 => format!("{step} * * * * *"),
                1 => format!("0 {step} * * * *"),
                _ => format!("0 0 {step} * * *"),
            })
        }
        ["day"] => Ok(format!("0 {m} {h} * * *")),
        ["weekday"] | ["weekdays"] => Ok(format!("0 {m} {h} * * 1-5")),
        ["weekend"] | ["weekends"] => Ok(format!("0 {m} {h} * * 0,6")),
        ["week"] => no_time("week").map(|()| "0 0 0 * * 1".into()),
        ["month"] => no_time("month").map(|()| "0 0 0 1 * *".into()),
        [day] if weekday(day).is_some() => {
            Ok(format!("0 {m} {h} * * {}", weekday(day).unwrap_or(0)))
        }
        ["last", "day", "of", "the", "month"] | ["last", "day", "of", "month"] => {
            Ok(format!("0 {m} {h} L * *"))
        }
        [nth, "of", "the", "month"] | [nth, "of", "month"] | [nth, "of", "every", "month"] => {
            let d = ordinal(nth).ok_or_else(|| unsupported(nth))?;
            Ok(format!("0 {m} {h} {d} * *"))
        }
        [first, ..] => Err(unsupported(first)),
    }
}

fn weekday(w: &str) -> Option<u32> {
    let w = w.strip_suffix('s').unwrap_or(w);
    Some(match w {
        "sunday" | "sun" => 0,
        "monday" | "mon" => 1,
        "tuesday" | "tue" => 2,
        "wednesday" | "wed" => 3,
        "thursday" | "thu" => 4,
        "friday" | "fri" => 5,
        "saturday" | "sat" => 6,
        _ => return None,
    })
}

/// `1st`, `2nd`, `23rd`, `31st` (1 to 31).
fn ordinal(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &s[digits.len()..];
    let n: u32 = digits.parse().ok()?;
    let want = match (n % 100, n % 10) {
        (11..=13, _) => "th",
        (_, 1) => "st",
        (_, 2) => "nd",
        (_, 3) => "rd",
        _ => "th",
    };
    ((1..=31).contains(&n) && (suffix == want || suffix.is_empty())).then_some(n)
}

/// `9am`, `9:30 pm`, `09:00`, `17:30`, `noon`, `midnight` → (hour, minute).
fn parse_time(t: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{t}` is not a time of day (use 9am, 9:30pm, 17:30, noon or midnight)");
    let s = t.replace(' ', "");
    match s.as_str() {
        "noon" => return Ok((12, 0)),
        "midnight" => return Ok((0, 0)),
        _ => {}
    }
    let (clock, meridiem) = if let Some(c) = s.strip_suffix("am") {
        (c, Some(false))
    } else if let Some(c) = s.strip_suffix("pm") {
        (c, Some(true))
    } else {
        (s.as_str(), None)
    };
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h, m),
        Some(_) => return Err(bad()),
        None if meridiem.is_some() => (clock, "00"),
        None => return Err(bad()),
    };
    if h.is_empty() || h.len() > 2 || !h.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 {
        return Err(bad());
    }
    let h = match meridiem {
        Some(pm) => {
            if !(1..=12).contains(&h) {
                return Err(bad());
            }
            (h % 12) + if pm { 12 } else { 0 }
        }
        None if h <= 23 => h,
        None => return Err(bad()),
    };
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn natural_forms_become_cron() {
        let cases = [
            ("every 5 minutes", "0 */5 * * * *"),
            ("every minute", "0 * * * * *"),
            ("every hour", "0 0 * * * *"),
            ("every 2 hours", "0 0 */2 * * *"),
            ("every 10 seconds", "*/10 * * * * *"),
            ("every day at 9am", "0 0 9 * * *"),
            ("every day", "0 0 0 * * *"),
            ("Every Monday at 09:00", "0 0 9 * * 1"),
            ("every weekday at 17:30", "0 30 17 * * 1-5"),
            ("every weekend at 10:15am", "0 15 10 * * 0,6"),
            ("every 1st of the month at 08:00", "0 0 8 1 * *"),
            ("every 22nd of the month", "0 0 0 22 * *"),
            ("every last day of the month at noon", "0 0 12 L * *"),
            ("every friday at 12am", "0 0 0 * * 5"),
            ("every sunday at 12:30pm", "0 30 12 * * 0"),
        ];
        for (text, cron) in cases {
            assert_eq!(every_to_cron(text).unwrap(), cron, "{text}");
            Timetable::from_cron(cron, Tz::UTC).unwrap();
        }
    }

    #[test]
    fn unsupported_forms_name_the_part() {
        for (text, part) in [
            ("every fortnight", "`fortnight`"),
            ("daily", "`daily`"),
            ("every 7 minutes", "7 does not divide"),
            ("every day at 25:00", "`25:00`"),
            ("every day at 13pm", "`13pm`"),
            ("every 32nd of the month", "`32nd`"),
            ("every 5 minutes at 9am", "takes no `at`"),
            ("every 3 weeks", "`weeks`"),
        ] {
            let e = every_to_cron(text).unwrap_err();
            assert!(e.contains(part), "{text}: {e}");
        }
    }

    #[test]
    fn cron_errors_are_clear() {
        assert!(
            Timetable::from_cron("* * *", Tz::UTC)
                .unwrap_err()
                .contains("3 fields")
        );
        assert!(Timetable::from_cron("61 * * * *", Tz::UTC).is_err());
        assert!(parse_tz(Some("Mars/Olympus")).unwrap_err().contains("IANA"));
        let never = Timetable::from_cron("0 0 30 2 *", Tz::UTC).unwrap();
        assert_eq!(never.next_after(0), None, "30 February never comes");
    }
}
