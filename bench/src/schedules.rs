//! Schedules: computing an object's next alarm with 10,000 schedules (in process, on the
//! object's own SQLite tables), and alarm lateness with 1,000 schedules due at once across
//! 100 objects (the real binary over HTTP).

use crate::stats::Line;
use dotdo_runtime::storage_api::rusqlite::Connection;
use dotdo_workflow::{NewSchedule, Schedule, Timetable, schedules, store, timetable};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const T0: i64 = 1_767_225_600_000;

fn schedule(i: usize) -> anyhow::Result<Schedule> {
    let every = [
        "every 5 minutes",
        "every hour",
        "every day at 9am",
        "every Monday at 09:00",
        "every weekday at 17:30",
        "every 1st of the month at 08:00",
    ];
    let req: NewSchedule = serde_json::from_value(json!({
        "id": format!("s{i}"),
        "every": every[i % every.len()],
        "tz": if i.is_multiple_of(2) { "Europe/Berlin" } else { "America/New_York" },
        "action": { "emit": { "type": "Tick.fired" } },
    }))?;
    Schedule::build(req, T0 + i as i64 * 7_919).map_err(anyhow::Error::msg)
}

fn time(n: usize, mut f: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<Line> {
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        f(i)?;
        lat.push(t.elapsed());
    }
    Ok(Line::new(lat, started.elapsed()))
}

/// The next alarm of an object with 10,000 schedules: the query the pump makes after every
/// step (all queues, schedules included), and the next-run computation of one schedule.
pub fn next_alarm_10k() -> anyhow::Result<Vec<Line>> {
    let dir = tempfile::tempdir()?;
    let c = Connection::open(dir.path().join("o.sqlite"))?;
    // As an object's database is opened (commits do not wait for the disk).
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    store::ensure_schema(&c)?;
    let n = 10_000;
    let built: Vec<Schedule> = (0..n).map(schedule).collect::<anyhow::Result<_>>()?;
    c.execute_batch("BEGIN")?;
    for s in &built {
        schedules::insert(&c, s)?;
    }
    c.execute_batch("COMMIT")?;
    let mut out = Vec::new();
    out.push(
        time(20_000, |_| {
            store::next_due(&c)?;
            Ok(())
        })?
        .with_name("schedules_next_alarm_10k")
        .with("schedules", json!(n)),
    );
    let tables: Vec<Timetable> = built
        .iter()
        .map(|s| {
            timetable::parse_tz(Some(&s.tz))
                .and_then(|tz| Timetable::from_cron(&s.cron, tz))
                .map_err(anyhow::Error::msg)
        })
        .collect::<anyhow::Result<_>>()?;
    out.push(
        time(20_000, |i| {
            tables[i % tables.len()].next_after(T0 + i as i64 * 1_000);
            Ok(())
        })?
        .with_name("schedule_next_run_computation"),
    );
    // Firing one due schedule among 10,000 (plan, run, move on) in one transaction.
    out.push(
        time(2_000, |i| {
            let id = format!("s{}", i * 5);
            c.execute(
                "UPDATE _do_schedules SET next_at = ?1 WHERE id = ?2",
                (T0, &id),
            )?;
            c.execute_batch("BEGIN")?;
            schedules::fire_due(&c, T0 + 1, 1, 16)?;
            c.execute_batch("COMMIT")?;
            Ok(())
        })?
        .with_name("schedule_fire_one_of_10k")
        .with("schedules", json!(n)),
    );
    Ok(out)
}

/// 1,000 schedules (10 in each of 100 objects), all due every 5 seconds, for `rounds`
/// rounds. Lateness is the emitted event's time minus the run's scheduled time.
pub async fn alarm_lateness(dotdo: &Path, durability: &str, rounds: u32) -> anyhow::Result<Line> {
    let server = crate::http_load::start(dotdo, durability)?;
    let c = reqwest::Client::new();
    let objects = 100;
    for o in 0..objects {
        for k in 0..10 {
            let res = c
                .post(format!("{}/o{o}/_schedules", server.base))
                .json(&json!({
                    "id": format!("k{k}"),
                    "cron": "*/5 * * * * *",
                    "action": { "emit": { "type": "Tick.fired" } },
                }))
                .send()
                .await?;
            anyhow::ensure!(res.status().is_success(), "schedule: {}", res.text().await?);
        }
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(5_000 * u64::from(rounds) + 1_000)).await;
    let mut lat = Vec::new();
    for o in 0..objects {
        let page: Value = c
            .get(format!("{}/o{o}/_events?limit=1000", server.base))
            .send()
            .await?
            .json()
            .await?;
        for e in page["items"].as_array().into_iter().flatten() {
            let scheduled = e["subject"]
                .as_str()
                .and_then(|s| s.rsplit(':').next())
                .and_then(|t| t.parse::<i64>().ok());
            if let (Some(at), Some(ts)) = (scheduled, e["ts"].as_i64()) {
                lat.push(Duration::from_millis(u64::try_from(ts - at).unwrap_or(0)));
            }
        }
    }
    Ok(Line::new(lat, started.elapsed())
        .with_name("schedule_alarm_lateness_1000_due_100_objects")
        .with("durability", json!(durability))
        .with("objects", json!(objects))
        .with("schedules", json!(objects * 10)))
}
