//! `$.every`: next-run times across daylight-saving changes, the catch-up policies after a
//! downtime (a host closed, the manual clock moved, the host opened again), and 10,000
//! schedules in one object.
#![allow(clippy::unwrap_used)]

mod common;
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use common::eventually;
use dotdo_runtime::{
    AlarmInfo, DurableObject, FnClass, Host, HostOptions, ManualClock, ObjectError, ObjectState,
};
use dotdo_workflow::timetable::parse_tz;
use dotdo_workflow::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp_millis()
}

/// Every run from `from` (exclusive) up to `to`, in UTC milliseconds.
fn runs(t: &Timetable, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(next) = t.next_after(at) {
        if next > to {
            break;
        }
        out.push(next);
        at = next;
    }
    out
}

fn local(t: i64, tz: &str) -> String {
    let tz = parse_tz(Some(tz)).unwrap();
    tz.timestamp_millis_opt(t)
        .unwrap()
        .format("%m-%d %H:%M %Z")
        .to_string()
}

#[test]
fn daily_fixed_time_runs_once_a_day_across_berlin_dst() {
    let tz = parse_tz(Some("Europe/Berlin")).unwrap();
    let t = Timetable::from_every("every day at 2:30am", tz).unwrap();
    // Spring: 2026-03-29 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
    let spring = runs(&t, utc(2026, 3, 27, 12, 0), utc(2026, 3, 31, 12, 0));
    let shown: Vec<String> = spring.iter().map(|r| local(*r, "Europe/Berlin")).collect();
    assert_eq!(
        shown,
        [
            "03-28 02:30 CET",
            "03-29 03:00 CEST",
            "03-30 02:30 CEST",
            "03-31 02:30 CEST"
        ],
        "the run in the gap moves to the end of the gap; none skipped"
    );
    // Autumn: 2026-10-25 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let autumn = runs(&t, utc(2026, 10, 23, 12, 0), utc(2026, 10, 27, 12, 0));
    let shown: Vec<String> = autumn.iter().map(|r| local(*r, "Europe/Berlin")).collect();
    assert_eq!(
        shown,
        [
            "10-24 02:30 CEST",
            "10-25 02:30 CEST",
            "10-26 02:30 CET",
            "10-27 02:30 CET"
        ],
        "the doubled hour runs once"
    );
}

#[test]
fn new_york_morning_schedule_keeps_local_time_across_dst() {
    let tz = parse_tz(Some("America/New_York")).unwrap();
    let t = Timetable::from_every("every day at 9am", tz).unwrap();
    for (from, to) in [
        (utc(2026, 3, 6, 0, 0), utc(2026, 3, 10, 23, 0)), // spring: 2026-03-08
        (utc(2026, 10, 30, 0, 0), utc(2026, 11, 3, 23, 0)), // autumn: 2026-11-01
    ] {
        let r = runs(&t, from, to);
        assert_eq!(r.len(), 5, "one run per day");
        for at in &r {
            assert!(
                local(*at, "America/New_York").contains(" 09:00 "),
                "{}",
                local(*at, "America/New_York")
            );
        }
    }
    // A 1:30am schedule on the autumn day: 01:30 EDT and 01:30 EST both exist; one run.
    let t = Timetable::from_cron("30 1 * * *", tz).unwrap();
    let r = runs(&t, utc(2026, 10, 31, 12, 0), utc(2026, 11, 2, 12, 0));
    let shown: Vec<String> = r.iter().map(|x| local(*x, "America/New_York")).collect();
    assert_eq!(shown, ["11-01 01:30 EDT", "11-02 01:30 EST"]);
    // And 2:30am on the spring day (02:00–03:00 is skipped) runs at 03:00 EDT.
    let t = Timetable::from_cron("30 2 * * *", tz).unwrap();
    let r = runs(&t, utc(2026, 3, 7, 12, 0), utc(2026, 3, 9, 12, 0));
    let shown: Vec<String> = r.iter().map(|x| local(*x, "America/New_York")).collect();
    assert_eq!(shown, ["03-08 03:00 EDT", "03-09 02:30 EDT"]);
}

#[test]
fn interval_schedules_keep_real_time_spacing_across_dst() {
    for zone in ["Europe/Berlin", "America/New_York"] {
        let tz = parse_tz(Some(zone)).unwrap();
        for (every, step) in [("every hour", 3_600_000), ("every 15 minutes", 900_000)] {
            let t = Timetable::from_every(every, tz).unwrap();
            for (from, to) in [
                (utc(2026, 3, 7, 0, 0), utc(2026, 3, 30, 6, 0)),
                (utc(2026, 10, 24, 0, 0), utc(2026, 11, 2, 12, 0)),
            ] {
                let r = runs(&t, from, to);
                for w in r.windows(2) {
                    assert_eq!(
                        w[1] - w[0],
                        step,
                        "{zone} {every}: {} → {}",
                        local(w[0], zone),
                        local(w[1], zone)
                    );
                }
            }
        }
    }
}

#[test]
fn plans_for_missed_runs() {
    let t = Timetable::from_every("every hour", parse_tz(None).unwrap()).unwrap();
    let h = 3_600_000;
    let t0 = utc(2026, 1, 1, 0, 0);
    // On time: every policy runs it.
    for p in [CatchUp::Skip, CatchUp::CatchUp, CatchUp::Coalesce] {
        let plan = t.plan(t0 + h, t0 + h + 50, p, 100);
        assert_eq!(plan.runs, [t0 + h]);
        assert_eq!(plan.next_at, Some(t0 + 2 * h));
    }
    // Down from 0:30 to 5:30: runs due at 1h..5h were missed.
    let now = t0 + 5 * h + h / 2;
    assert!(t.plan(t0 + h, now, CatchUp::Skip, 100).runs.is_empty());
    assert_eq!(
        t.plan(t0 + h, now, CatchUp::Coalesce, 100).runs,
        [t0 + 5 * h]
    );
    assert_eq!(
        t.plan(t0 + h, now, CatchUp::CatchUp, 100).runs,
        [t0 + h, t0 + 2 * h, t0 + 3 * h, t0 + 4 * h, t0 + 5 * h]
    );
    assert_eq!(
        t.plan(t0 + h, now, CatchUp::CatchUp, 2).runs,
        [t0 + h, t0 + 2 * h]
    );
    assert_eq!(
        t.plan(t0 + h, now, CatchUp::Skip, 100).next_at,
        Some(t0 + 6 * h)
    );
}

// ---- schedules on a host ----

struct Biz {
    cx: Context,
}

#[async_trait]
impl DurableObject for Biz {
    async fn call(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let cx = &self.cx;
        match method {
            "schedule" => {
                let req: NewSchedule = serde_json::from_value(a).unwrap();
                Ok(json!(cx.schedule(req, false)?.0))
            }
            "bulk" => {
                // Many schedules in one turn (one transaction).
                let n = a["n"].as_u64().unwrap();
                for i in 0..n {
                    let req: NewSchedule = serde_json::from_value(json!({
                        "id": format!("s{i}"),
                        "cron": format!("{} {} * * *", i % 60, (i / 60) % 24),
                        "action": { "emit": { "type": "Tick.fired", "data": { "i": i } } },
                    }))
                    .unwrap();
                    cx.schedule(req, false)?;
                }
                Ok(Value::Null)
            }
            "schedule_fn" => {
                // The Rust way: a registered action on a natural-form schedule.
                let action = ScheduleAction::Function(schedules::FunctionSpec {
                    name: "note".into(),
                    input: json!({ "memo": "hi" }),
                });
                let req = NewSchedule::every("every minute", action)
                    .id("notes")
                    .tz("Europe/Berlin");
                Ok(json!(cx.schedule(req, true)?.0))
            }
            "notes" => Ok(cx.state().storage().get_json("notes")?.unwrap_or(json!([]))),
            "schedules" => Ok(json!(cx.schedules(0, 100_000)?)),
            "unschedule" => Ok(json!(cx.unschedule(a["id"].as_str().unwrap())?)),
            "schedule_get" => Ok(json!(cx.schedule_by_id(a["id"].as_str().unwrap())?)),
            "events" => Ok(json!(cx.events(0, None, 100_000)?.0)),
            "alarm" => Ok(json!(cx.state().storage().get_alarm()?)),
            "next_due" => Ok(json!(
                cx.state()
                    .storage()
                    .with(|s| { s.internal_read(store::next_due) })?
            )),
            _ => Err(ObjectError::not_found(method)),
        }
    }

    async fn alarm(&self, _: AlarmInfo) -> Result<(), ObjectError> {
        self.cx.on_alarm().await
    }
}

fn open_host(dir: &std::path::Path, clock: &ManualClock) -> Host {
    let reg = Arc::new(
        Registry::new().action("note", |cx: Context, input: Value| async move {
            let st = cx.state().storage();
            let mut notes = st.get_json("notes")?.unwrap_or(json!([]));
            notes.as_array_mut().unwrap().push(input);
            st.put_json("notes", notes)?;
            Ok(Value::Null)
        }),
    );
    let env = Arc::new(WorkflowEnv::new(Arc::new(NoOutbound)));
    let mut o = HostOptions::new(dir).class(
        "biz",
        FnClass::new("Biz", move |state: ObjectState| Biz {
            cx: Context::new(state, reg.clone(), env.clone()),
        }),
    );
    o.clock = Arc::new(clock.clone());
    o.idle_timeout = Duration::from_secs(3600 * 24 * 365);
    Host::open(o).unwrap()
}

async fn call(host: &Host, method: &str, args: Value) -> Value {
    host.call("biz", "acme", method, args).await.unwrap()
}

async fn ticks(host: &Host) -> Vec<String> {
    call(host, "events", Value::Null)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn schedules_fire_on_the_alarm_and_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = utc(2026, 1, 1, 0, 0);
    let clock = ManualClock::new(t0 + 10);
    let host = open_host(dir.path(), &clock);
    let s = call(
        &host,
        "schedule",
        json!({ "id": "tick", "every": "every 5 minutes",
                "action": { "emit": { "type": "Tick.fired", "data": { "n": 1 } } } }),
    )
    .await;
    assert_eq!(s["nextRunAt"], t0 + 300_000);
    assert_eq!(call(&host, "alarm", Value::Null).await, t0 + 300_000);
    for k in 1..=3 {
        clock.set(t0 + k * 300_000);
        eventually("a run", || async { ticks(&host).await.len() == k as usize }).await;
    }
    assert_eq!(
        ticks(&host).await,
        (1..=3)
            .map(|k| format!("schedule:tick:{}", t0 + k * 300_000))
            .collect::<Vec<_>>()
    );
    let s = call(&host, "schedule_get", json!({ "id": "tick" })).await;
    assert_eq!(s["runCount"], 3);
    assert_eq!(s["lastRunAt"], t0 + 900_000);
    assert_eq!(s["nextRunAt"], t0 + 1_200_000);
    // The same id with another definition is a conflict; the same definition is idempotent.
    let err = host
        .call(
            "biz",
            "acme",
            "schedule",
            json!({ "id": "tick", "every": "every hour",
            "action": { "emit": { "type": "Tick.fired" } } }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, dotdo_runtime::ErrorKind::Conflict);
    // Deleting the only schedule clears the alarm; runs stop.
    eventually("the pump idle", || async {
        call(&host, "alarm", Value::Null).await == t0 + 1_200_000
    })
    .await;
    assert_eq!(
        call(&host, "unschedule", json!({ "id": "tick" })).await,
        true
    );
    assert_eq!(call(&host, "alarm", Value::Null).await, Value::Null);
    clock.set(t0 + 1_200_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ticks(&host).await.len(), 3);
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_schedule_runs_a_registered_action_durably() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = utc(2026, 1, 1, 0, 0);
    let clock = ManualClock::new(t0 + 10);
    let host = open_host(dir.path(), &clock);
    let s = call(&host, "schedule_fn", Value::Null).await;
    assert_eq!(s["nextRunAt"], t0 + 60_000);
    assert_eq!(s["tz"], "Europe/Berlin");
    clock.set(t0 + 60_000);
    eventually("the action ran", || async {
        call(&host, "notes", Value::Null)
            .await
            .as_array()
            .unwrap()
            .len()
            == 1
    })
    .await;
    let notes = call(&host, "notes", Value::Null).await;
    assert_eq!(
        notes[0],
        json!({ "schedule": "notes", "scheduledAt": t0 + 60_000, "input": { "memo": "hi" } })
    );
    host.shutdown(Duration::from_secs(5)).await;
}

/// Creates one schedule per policy, closes the host for 5.5 hours, opens it again.
#[tokio::test]
async fn catch_up_policies_after_a_downtime() {
    let dir = tempfile::tempdir().unwrap();
    let h = 3_600_000;
    let t0 = utc(2026, 1, 1, 0, 0);
    let clock = ManualClock::new(t0 + 10);
    let host = open_host(dir.path(), &clock);
    for (id, policy, limit) in [
        ("skip", "skip", None),
        ("all", "catch_up", None),
        ("capped", "catch_up", Some(2)),
        ("once", "coalesce", None),
    ] {
        let mut req = json!({ "id": id, "every": "every hour", "catchUp": policy,
            "action": { "emit": { "type": "Tick.fired" } } });
        if let Some(l) = limit {
            req["catchUpLimit"] = json!(l);
        }
        call(&host, "schedule", req).await;
    }
    host.shutdown(Duration::from_secs(5)).await;

    clock.set(t0 + 5 * h + h / 2);
    let host = open_host(dir.path(), &clock);
    // The alarm due during the downtime fires at boot.
    eventually("the missed runs", || async {
        ticks(&host).await.len() == 5 + 2 + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = ticks(&host).await;
    let count = |id: &str| {
        got.iter()
            .filter(|s| s.starts_with(&format!("schedule:{id}:")))
            .count()
    };
    assert_eq!(count("skip"), 0, "skip drops missed runs");
    assert_eq!(count("all"), 5, "catch_up runs each missed run");
    assert_eq!(count("capped"), 2, "catch_up stops at its limit");
    assert_eq!(count("once"), 1, "coalesce runs once");
    assert!(got.contains(&format!("schedule:once:{}", t0 + 5 * h)));
    assert!(got.contains(&format!("schedule:capped:{}", t0 + h)));
    for id in ["skip", "all", "capped", "once"] {
        let s = call(&host, "schedule_get", json!({ "id": id })).await;
        assert_eq!(s["nextRunAt"], t0 + 6 * h, "{id} is due at the next hour");
    }
    // And back to normal: each runs once at 6h.
    clock.set(t0 + 6 * h);
    eventually("the 6h runs", || async {
        ticks(&host).await.len() == 8 + 4
    })
    .await;
    host.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn ten_thousand_schedules_in_one_object() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = utc(2026, 1, 1, 0, 0);
    let clock = ManualClock::new(t0 + 500);
    let host = open_host(dir.path(), &clock);
    call(&host, "bulk", json!({ "n": 10_000 })).await;
    let all = call(&host, "schedules", Value::Null).await;
    assert_eq!(all.as_array().unwrap().len(), 10_000);
    // s0 runs at 00:00 (tomorrow, as today's has passed); s1 at 00:01 today is the earliest.
    assert_eq!(call(&host, "alarm", Value::Null).await, t0 + 60_000);
    assert_eq!(call(&host, "next_due", Value::Null).await, t0 + 60_000);
    // Minute by minute for an hour: ids m + 1440k (k = 0..6) run at 00:m, so 7 runs a
    // minute, and each minute's alarm is the next minute.
    for m in 1..=60i64 {
        clock.set(t0 + m * 60_000);
        let want = 7 * m as usize;
        eventually("a minute's runs", || async {
            ticks(&host).await.len() == want
        })
        .await;
    }
    eventually("the alarm at 01:01", || async {
        call(&host, "alarm", Value::Null).await == t0 + 3_660_000
    })
    .await;
    host.shutdown(Duration::from_secs(5)).await;
}
