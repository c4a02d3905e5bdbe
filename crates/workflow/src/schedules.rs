//! `$.every`: an object's schedules, stored in `_do_schedules`, and turning due ones into runs.
//!
//! Each schedule keeps the time of its next run (`next_at`, indexed), so the object's next
//! alarm is one index lookup however many schedules it has. When the pump finds schedules due
//! it plans their runs (see [`Timetable::plan`] for missed runs), records each run as a
//! durable action keyed by schedule and run time (or appends the event, for `emit`), and
//! moves `next_at` on, all in one transaction: a run happens once, even across crashes.

use crate::context::WebhookAction;
use crate::model::{NewAction, NewEvent, kind, new_id};
use crate::retry::RetryPolicy;
use crate::store;
use crate::timetable::{self, CatchUp, Timetable};
use dotdo_storage::rusqlite::{self, Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Most schedules one object may have.
pub const MAX_SCHEDULES: i64 = 100_000;

/// What a run of a schedule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ScheduleAction {
    /// An HTTP call, made as a durable action (retried; `Idempotency-Key` is the run's key).
    Webhook(WebhookAction),
    /// An event appended to the object's log, in the transaction that plans the run.
    Emit(EmitSpec),
    /// A function registered on the class, run as a durable action. Its input is
    /// `{ schedule, scheduledAt, input }`.
    Function(FunctionSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

/// A schedule as asked for: `every` (natural form) or `cron`, in `tz`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSchedule {
    /// Letters, digits, `-`, `_`, `.`; 1 to 128. Generated when absent.
    pub id: Option<String>,
    pub every: Option<String>,
    pub cron: Option<String>,
    pub tz: Option<String>,
    pub catch_up: Option<String>,
    /// Most missed runs `catch_up` makes after one stretch of downtime.
    pub catch_up_limit: Option<u32>,
    pub action: Option<ScheduleAction>,
}

impl NewSchedule {
    /// A schedule in a natural form: `NewSchedule::every("every day at 9am", action)`.
    pub fn every(text: &str, action: ScheduleAction) -> Self {
        NewSchedule {
            every: Some(text.to_string()),
            action: Some(action),
            ..Default::default()
        }
    }

    /// A schedule on a cron pattern (5 fields, or 6 with seconds first).
    pub fn cron(pattern: &str, action: ScheduleAction) -> Self {
        NewSchedule {
            cron: Some(pattern.to_string()),
            action: Some(action),
            ..Default::default()
        }
    }

    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_string());
        self
    }

    /// The IANA time zone the pattern is read in (default UTC).
    pub fn tz(mut self, tz: &str) -> Self {
        self.tz = Some(tz.to_string());
        self
    }

    pub fn catch_up(mut self, policy: CatchUp, limit: Option<u32>) -> Self {
        self.catch_up = Some(policy.as_str().to_string());
        self.catch_up_limit = limit;
        self
    }
}

/// A stored schedule. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// The cron pattern it runs on (6 fields, seconds first, for natural forms).
    pub cron: String,
    pub tz: String,
    pub catch_up: CatchUp,
    pub catch_up_limit: u32,
    pub action: ScheduleAction,
    pub next_run_at: Option<i64>,
    pub last_run_at: Option<i64>,
    pub run_count: i64,
    pub created_at: i64,
    #[serde(skip)]
    pub seq: i64,
}

impl Schedule {
    /// Checks a request and builds the schedule it describes, first due after `now`.
    pub fn build(req: NewSchedule, now: i64) -> Result<Schedule, String> {
        let tz = timetable::parse_tz(req.tz.as_deref())?;
        let table = match (&req.every, &req.cron) {
            (Some(e), None) => Timetable::from_every(e, tz)?,
            (None, Some(c)) => Timetable::from_cron(c, tz)?,
            (Some(_), Some(_)) => return Err("give `every` or `cron`, not both".into()),
            (None, None) => {
                return Err(
                    "a schedule needs `every` (e.g. \"every day at 9am\") or `cron`".into(),
                );
            }
        };
        let id = match req.id {
            Some(id) => {
                crate::flow_def::check_name(&id).map_err(|e| format!("schedule id {e}"))?;
                id
            }
            None => new_id("sch"),
        };
        let catch_up = req
            .catch_up
            .as_deref()
            .map(CatchUp::parse)
            .transpose()?
            .unwrap_or_default();
        let limit = req
            .catch_up_limit
            .unwrap_or(timetable::DEFAULT_CATCH_UP_CAP);
        if !(1..=timetable::MAX_CATCH_UP_CAP).contains(&limit) {
            return Err(format!(
                "catchUpLimit must be 1 to {}",
                timetable::MAX_CATCH_UP_CAP
            ));
        }
        let action = req
            .action
            .ok_or("a schedule needs an `action`: { webhook } or { emit }")?;
        match &action {
            ScheduleAction::Webhook(w) => w.check().map_err(|e| format!("action.webhook: {e}"))?,
            ScheduleAction::Emit(e) => crate::pattern::check_event_type(&e.kind)
                .map_err(|e| format!("action.emit.type: {e}"))?,
            ScheduleAction::Function(f) => {
                if f.name.is_empty() || f.name.len() > 256 {
                    return Err("action.function.name must be 1 to 256 bytes".into());
                }
            }
        }
        let next_run_at = table.next_after(now);
        if next_run_at.is_none() {
            return Err(format!(
                "`{}` never comes round again (check the day and month)",
                table.pattern()
            ));
        }
        Ok(Schedule {
            id,
            every: req.every,
            cron: table.pattern().to_string(),
            tz: tz.name().to_string(),
            catch_up,
            catch_up_limit: limit,
            action,
            next_run_at,
            last_run_at: None,
            run_count: 0,
            created_at: now,
            seq: 0,
        })
    }

    fn timetable(&self) -> Result<Timetable, String> {
        Timetable::stored(&self.cron, &self.tz)
    }

    /// Same definition (what it runs and when), whatever its progress.
    pub fn same_definition(&self, other: &Schedule) -> bool {
        self.every == other.every
            && self.cron == other.cron
            && self.tz == other.tz
            && self.catch_up == other.catch_up
            && self.catch_up_limit == other.catch_up_limit
            && self.action == other.action
    }
}

// ---- storage ----

const COLS: &str = "seq, id, every, cron, tz, catch_up, catch_up_limit, action, next_at, \
                    last_run_at, run_count, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Schedule> {
    let action: String = r.get(7)?;
    let catch_up: String = r.get(5)?;
    Ok(Schedule {
        seq: r.get(0)?,
        id: r.get(1)?,
        every: r.get(2)?,
        cron: r.get(3)?,
        tz: r.get(4)?,
        catch_up: CatchUp::parse(&catch_up).unwrap_or_default(),
        catch_up_limit: r.get(6)?,
        action: serde_json::from_str(&action).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
        })?,
        next_run_at: r.get(8)?,
        last_run_at: r.get(9)?,
        run_count: r.get(10)?,
        created_at: r.get(11)?,
    })
}

pub fn get(c: &Connection, id: &str) -> rusqlite::Result<Option<Schedule>> {
    c.prepare_cached(&format!("SELECT {COLS} FROM _do_schedules WHERE id = ?1"))?
        .query_row([id], row)
        .optional()
}

pub fn count(c: &Connection) -> rusqlite::Result<i64> {
    c.prepare_cached("SELECT count(*) FROM _do_schedules")?
        .query_row([], |r| r.get(0))
}

/// Stores a new schedule (the caller checked its id is free).
pub fn insert(c: &Connection, s: &Schedule) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_schedules(id, every, cron, tz, catch_up, catch_up_limit, action, \
         next_at, run_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)",
    )?
    .execute(params![
        s.id,
        s.every,
        s.cron,
        s.tz,
        s.catch_up.as_str(),
        s.catch_up_limit,
        serde_json::to_string(&s.action).unwrap_or_default(),
        s.next_run_at,
        s.created_at
    ])?;
    Ok(())
}

/// Replaces a schedule's definition, keeping its history; due next per the new definition.
pub fn replace(c: &Connection, s: &Schedule) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE _do_schedules SET every = ?2, cron = ?3, tz = ?4, catch_up = ?5, \
         catch_up_limit = ?6, action = ?7, next_at = ?8 WHERE id = ?1",
    )?
    .execute(params![
        s.id,
        s.every,
        s.cron,
        s.tz,
        s.catch_up.as_str(),
        s.catch_up_limit,
        serde_json::to_string(&s.action).unwrap_or_default(),
        s.next_run_at
    ])? > 0)
}

pub fn delete(c: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(c.prepare_cached("DELETE FROM _do_schedules WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub fn list(c: &Connection, after: i64, limit: usize) -> rusqlite::Result<Vec<Schedule>> {
    c.prepare_cached(&format!(
        "SELECT {COLS} FROM _do_schedules WHERE seq > ?1 ORDER BY seq"
    ))?
    .query_map([after], row)?
    .take(limit)
    .collect()
}

/// When the earliest schedule is due.
pub fn next_due(c: &Connection) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT min(next_at) FROM _do_schedules")?
        .query_row([], |r| r.get(0))
}

/// The idempotency key of one run of a schedule.
pub fn run_key(schedule: &str, at: i64) -> String {
    format!("schedule:{schedule}:{at}")
}

/// Runs one pump step records at most (about: one schedule's catch-up is never split).
const RUNS_PER_STEP: usize = 1_000;

/// Plans the runs of up to `limit` due schedules, oldest due first: records each run and
/// moves the schedules on. Returns true if more may be due (the next step takes them).
pub fn fire_due(c: &Connection, now: i64, epoch: i64, limit: usize) -> rusqlite::Result<bool> {
    let due: Vec<Schedule> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM _do_schedules WHERE next_at <= ?1 ORDER BY next_at"
        ))?
        .query_map([now], row)?
        .take(limit)
        .collect::<rusqlite::Result<_>>()?;
    let mut runs = 0;
    for s in &due {
        if runs >= RUNS_PER_STEP {
            return Ok(true);
        }
        let Some(due_at) = s.next_run_at else {
            continue;
        };
        let plan = match s.timetable() {
            Ok(t) => t.plan(due_at, now, s.catch_up, s.catch_up_limit),
            Err(e) => {
                tracing::error!(schedule = %s.id, error = %e, "stored schedule is unreadable; stopped");
                c.prepare_cached("UPDATE _do_schedules SET next_at = NULL WHERE id = ?1")?
                    .execute([&s.id])?;
                continue;
            }
        };
        if plan.runs.first().is_some_and(|first| *first > due_at) || plan.runs.is_empty() {
            tracing::info!(schedule = %s.id, from = %timetable::iso(due_at), policy = s.catch_up.as_str(),
                "runs missed while the object was down");
        }
        for &at in &plan.runs {
            start_run(c, s, at, now, epoch)?;
        }
        runs += plan.runs.len();
        c.prepare_cached(
            "UPDATE _do_schedules SET next_at = ?2, last_run_at = coalesce(?3, last_run_at), \
             run_count = run_count + ?4 WHERE id = ?1",
        )?
        .execute(params![
            s.id,
            plan.next_at,
            plan.runs.last(),
            plan.runs.len() as i64
        ])?;
    }
    Ok(due.len() == limit)
}

fn start_run(c: &Connection, s: &Schedule, at: i64, now: i64, epoch: i64) -> rusqlite::Result<()> {
    let key = run_key(&s.id, at);
    let name = format!("schedule:{}", s.id);
    match &s.action {
        ScheduleAction::Emit(e) => {
            store::append_event(
                c,
                &NewEvent {
                    id: new_id("evt"),
                    kind: e.kind.clone(),
                    subject: Some(key),
                    data: e.data.clone(),
                    ts: now,
                    source: None,
                    hops: 0,
                },
                epoch,
            )?;
        }
        ScheduleAction::Webhook(w) => {
            let mut w = w.clone();
            w.headers.insert("x-dotdo-schedule".into(), s.id.clone());
            w.headers
                .insert("x-dotdo-scheduled-at".into(), timetable::iso(at));
            let action = NewAction {
                key,
                name,
                kind: kind::WEBHOOK.to_string(),
                input: serde_json::to_value(&w).unwrap_or(Value::Null),
                retry: RetryPolicy::default(),
            };
            store::enqueue_action(c, &action, &new_id("act"), now, epoch)?;
        }
        ScheduleAction::Function(f) => {
            let action = NewAction {
                key,
                name: f.name.clone(),
                kind: kind::FUNCTION.to_string(),
                input: json!({ "schedule": s.id, "scheduledAt": at, "input": f.input }),
                retry: RetryPolicy::default(),
            };
            store::enqueue_action(c, &action, &new_id("act"), now, epoch)?;
        }
    }
    Ok(())
}
