//! Durable workflows' tables: definitions (`_do_workflows`), runs (`_do_runs`), each run's
//! step journal (`_do_steps`) and the event waits of runs (`_do_waits`).

use crate::model::Event;
use crate::pattern::Pattern;
use dotdo_storage::rusqlite::{self, Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde_json::Value;

type Result<T> = rusqlite::Result<T>;

/// What a run is doing.
pub mod status {
    /// Due to execute, executing, or waiting to retry a step.
    pub const RUNNING: &str = "running";
    pub const SLEEPING: &str = "sleeping";
    /// Waiting for an event or a durable action.
    pub const WAITING: &str = "waiting";
    /// A step failed for good; compensations are running.
    pub const COMPENSATING: &str = "compensating";
    pub const COMPLETED: &str = "completed";
    /// Failed, and any compensation failed too (or there was none).
    pub const FAILED: &str = "failed";
    /// Failed, and every compensation ran.
    pub const COMPENSATED: &str = "compensated";
    pub const CANCELLED: &str = "cancelled";

    pub fn is_final(s: &str) -> bool {
        matches!(s, COMPLETED | FAILED | COMPENSATED | CANCELLED)
    }
}

/// One entry of a run's journal. Times are epoch milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub index: u32,
    pub name: String,
    /// `step`, `sleep`, `waitForEvent`, `action`, `emit`, `compensate`.
    pub kind: String,
    /// `running`, `retrying`, `sleeping`, `waiting`, `completed`, `failed`.
    pub status: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a sleep ends, a wait times out, or a retry is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    pub started_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    /// The event log's position when the step was first journaled.
    #[serde(skip)]
    pub log_seq: i64,
}

/// A workflow run. `journal` is filled only when one run is read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub id: String,
    pub workflow: String,
    pub status: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The step it is at (the last one journaled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    /// When it is due to go on (sleep end, retry, wait timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<Vec<StepRecord>>,
    /// The declarative definition it runs (copied at start), if any.
    #[serde(skip)]
    pub definition: Option<Value>,
    #[serde(skip)]
    pub seq: i64,
}

fn json(s: Option<String>) -> Option<Value> {
    s.map(|s| serde_json::from_str(&s).unwrap_or(Value::Null))
}

// ---- definitions ----

pub fn put_definition(c: &Connection, name: &str, def: &Value, now: i64) -> Result<bool> {
    let existed = definition(c, name)?.is_some();
    c.prepare_cached(
        "INSERT INTO _do_workflows(name, definition, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) \
         ON CONFLICT(name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
    )?
    .execute(params![name, def.to_string(), now])?;
    Ok(!existed)
}

pub fn definition(c: &Connection, name: &str) -> Result<Option<Value>> {
    Ok(json(
        c.prepare_cached("SELECT definition FROM _do_workflows WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?,
    ))
}

pub fn definitions(c: &Connection) -> Result<Vec<Value>> {
    c.prepare_cached("SELECT definition FROM _do_workflows ORDER BY name")?
        .query_map([], |r| r.get::<_, String>(0))?
        .map(|s| s.map(|s| serde_json::from_str(&s).unwrap_or(Value::Null)))
        .collect()
}

pub fn delete_definition(c: &Connection, name: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM _do_workflows WHERE name = ?1")?
            .execute([name])?
            > 0,
    )
}

// ---- runs ----

const RUN_COLS: &str = "seq, id, workflow, status, input, result, error, next_at, created_at, \
                        updated_at, completed_at, definition";

fn run_row(r: &Row<'_>) -> Result<Run> {
    Ok(Run {
        seq: r.get(0)?,
        id: r.get(1)?,
        workflow: r.get(2)?,
        status: r.get(3)?,
        input: json(r.get(4)?).unwrap_or(Value::Null),
        result: json(r.get(5)?),
        error: r.get(6)?,
        next_at: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
        completed_at: r.get(10)?,
        definition: json(r.get(11)?),
        current_step: None,
        journal: None,
    })
}

pub fn insert_run(
    c: &Connection,
    id: &str,
    workflow: &str,
    input: &Value,
    definition: Option<&Value>,
    now: i64,
    epoch: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_runs(id, workflow, status, input, definition, next_at, created_at, \
         updated_at, epoch) VALUES (?1, ?2, 'running', ?3, ?4, ?5, ?5, ?5, ?6)",
    )?
    .execute(params![
        id,
        workflow,
        input.to_string(),
        definition.map(Value::to_string),
        now,
        epoch
    ])?;
    Ok(())
}

pub fn run(c: &Connection, id: &str) -> Result<Option<Run>> {
    let Some(mut run) = c
        .prepare_cached(&format!("SELECT {RUN_COLS} FROM _do_runs WHERE id = ?1"))?
        .query_row([id], run_row)
        .optional()?
    else {
        return Ok(None);
    };
    run.current_step = current_step(c, id)?;
    Ok(Some(run))
}

pub fn run_status(c: &Connection, id: &str) -> Result<Option<String>> {
    c.prepare_cached("SELECT status FROM _do_runs WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

fn current_step(c: &Connection, id: &str) -> Result<Option<String>> {
    c.prepare_cached("SELECT name FROM _do_steps WHERE run_id = ?1 ORDER BY idx DESC LIMIT 1")?
        .query_row([id], |r| r.get(0))
        .optional()
}

pub fn runs(c: &Connection, workflow: Option<&str>, after: i64, limit: usize) -> Result<Vec<Run>> {
    let mut out: Vec<Run> = match workflow {
        Some(w) => c
            .prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM _do_runs WHERE workflow = ?1 AND seq > ?2 ORDER BY seq"
            ))?
            .query_map(params![w, after], run_row)?
            .take(limit)
            .collect::<Result<_>>()?,
        None => c
            .prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM _do_runs WHERE seq > ?1 ORDER BY seq"
            ))?
            .query_map(params![after], run_row)?
            .take(limit)
            .collect::<Result<_>>()?,
    };
    for r in &mut out {
        r.current_step = current_step(c, &r.id)?;
    }
    Ok(out)
}

pub fn run_count(c: &Connection) -> Result<i64> {
    c.prepare_cached(
        "SELECT count(*) FROM _do_runs \
         WHERE status IN ('running', 'sleeping', 'waiting', 'compensating')",
    )?
    .query_row([], |r| r.get(0))
}

/// Runs due to execute.
pub fn due_runs(c: &Connection, now: i64, limit: usize) -> Result<Vec<Run>> {
    c.prepare_cached(&format!(
        "SELECT {RUN_COLS} FROM _do_runs WHERE next_at <= ?1 ORDER BY next_at"
    ))?
    .query_map([now], run_row)?
    .take(limit)
    .collect()
}

/// The run executes for activation `epoch`; `lease_until` keeps it from being due meanwhile.
pub fn claim_run(c: &Connection, id: &str, lease_until: i64, epoch: i64) -> Result<()> {
    c.prepare_cached("UPDATE _do_runs SET next_at = ?2, claimed_by = ?3 WHERE id = ?1")?
        .execute(params![id, lease_until, epoch])?;
    Ok(())
}

/// Records where a run stands after an execution. A cancelled or finished run stays so.
pub fn settle_run(
    c: &Connection,
    id: &str,
    status: &str,
    next_at: Option<i64>,
    result: Option<&Value>,
    error: Option<&str>,
    now: i64,
) -> Result<bool> {
    let done = status::is_final(status).then_some(now);
    if done.is_some() {
        c.prepare_cached("DELETE FROM _do_waits WHERE run_id = ?1")?
            .execute([id])?;
    }
    Ok(c.prepare_cached(
        "UPDATE _do_runs SET status = ?2, next_at = ?3, result = ?4, error = coalesce(?5, error), \
         claimed_by = NULL, updated_at = ?6, completed_at = ?7 \
         WHERE id = ?1 AND status NOT IN ('completed', 'failed', 'compensated', 'cancelled')",
    )?
    .execute(params![
        id,
        status,
        next_at,
        result.map(Value::to_string),
        error,
        now,
        done
    ])? > 0)
}

/// Puts an interrupted execution back in line.
pub fn release_run(c: &Connection, id: &str, at: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_runs SET next_at = ?2, claimed_by = NULL WHERE id = ?1 \
         AND status NOT IN ('completed', 'failed', 'compensated', 'cancelled')",
    )?
    .execute(params![id, at])?;
    Ok(())
}

/// Makes a run due now (an event or action it waits for arrived).
pub fn wake_run(c: &Connection, id: &str, now: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_runs SET next_at = ?2 WHERE id = ?1 \
         AND status IN ('waiting', 'sleeping', 'running', 'compensating')",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Cancels a run that has not finished; its waits go. Returns false if it had finished.
pub fn cancel_run(c: &Connection, id: &str, now: i64) -> Result<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE _do_runs SET status = 'cancelled', next_at = NULL, claimed_by = NULL, \
             updated_at = ?2, completed_at = ?2 WHERE id = ?1 \
             AND status NOT IN ('completed', 'failed', 'compensated', 'cancelled')",
        )?
        .execute(params![id, now])?;
    c.prepare_cached("DELETE FROM _do_waits WHERE run_id = ?1")?
        .execute([id])?;
    if changed > 0 {
        // Durable actions the run started and that have not begun an attempt stop too.
        c.prepare_cached(
            "UPDATE _do_actions SET status = 'failed', error = 'the workflow run was cancelled', \
             next_at = NULL, updated_at = ?3 WHERE key >= ?1 AND key < ?2 AND status = 'pending'",
        )?
        .execute(params![format!("wf:{id}:"), format!("wf:{id};"), now])?;
    }
    Ok(changed > 0)
}

/// Executions of one run that may crash (an error or panic outside its steps) before the
/// run fails.
pub const MAX_CRASHES: i64 = 3;

/// Records a crashed execution: the run is tried again after a backoff, or fails once it
/// crashed [`MAX_CRASHES`] times. Returns true if it failed.
pub fn crashed(c: &Connection, id: &str, error: &str, now: i64) -> Result<bool> {
    let crashes: i64 = c
        .prepare_cached(
            "UPDATE _do_runs SET crashes = crashes + 1 WHERE id = ?1 RETURNING crashes",
        )?
        .query_row([id], |r| r.get(0))
        .optional()?
        .unwrap_or(MAX_CRASHES);
    if crashes >= MAX_CRASHES {
        let msg = format!("the run's execution crashed {crashes} times; last: {error}");
        settle_run(c, id, status::FAILED, None, None, Some(&msg), now)?;
        return Ok(true);
    }
    release_run(c, id, now + 1_000 * (1 << crashes))?;
    Ok(false)
}

/// Hands runs claimed by earlier activations back, due now.
pub fn release_stale_runs(c: &Connection, epoch: i64, now: i64) -> Result<usize> {
    c.prepare_cached(
        "UPDATE _do_runs SET next_at = ?2, claimed_by = NULL \
         WHERE claimed_by IS NOT NULL AND claimed_by < ?1",
    )?
    .execute(params![epoch, now])
}

pub fn next_due(c: &Connection) -> Result<Option<i64>> {
    c.prepare_cached("SELECT min(next_at) FROM _do_runs")?
        .query_row([], |r| r.get(0))
}

// ---- the journal ----

const STEP_COLS: &str =
    "idx, name, kind, status, attempts, result, error, wake_at, started_at, completed_at, log_seq";

fn step_row(r: &Row<'_>) -> Result<StepRecord> {
    Ok(StepRecord {
        index: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        attempts: r.get(4)?,
        result: json(r.get(5)?),
        error: r.get(6)?,
        until: r.get(7)?,
        started_at: r.get(8)?,
        completed_at: r.get(9)?,
        log_seq: r.get(10)?,
    })
}

pub fn step(c: &Connection, run: &str, idx: u32) -> Result<Option<StepRecord>> {
    c.prepare_cached(&format!(
        "SELECT {STEP_COLS} FROM _do_steps WHERE run_id = ?1 AND idx = ?2"
    ))?
    .query_row(params![run, idx], step_row)
    .optional()
}

pub fn journal(c: &Connection, run: &str) -> Result<Vec<StepRecord>> {
    c.prepare_cached(&format!(
        "SELECT {STEP_COLS} FROM _do_steps WHERE run_id = ?1 ORDER BY idx"
    ))?
    .query_map([run], step_row)?
    .collect()
}

/// Writes a journal entry (insert or update).
pub fn put_step(c: &Connection, run: &str, s: &StepRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_steps(run_id, idx, name, kind, status, attempts, result, error, wake_at, \
         started_at, completed_at, log_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
         (SELECT coalesce(max(seq), 0) FROM _do_events)) \
         ON CONFLICT(run_id, idx) DO UPDATE SET status = excluded.status, \
         attempts = excluded.attempts, result = excluded.result, error = excluded.error, \
         wake_at = excluded.wake_at, completed_at = excluded.completed_at",
    )?
    .execute(params![
        run,
        s.index,
        s.name,
        s.kind,
        s.status,
        s.attempts,
        s.result.as_ref().map(Value::to_string),
        s.error,
        s.until,
        s.started_at,
        s.completed_at
    ])?;
    Ok(())
}

// ---- event waits ----

/// A run waiting for an event that matches `pattern` and `filter`, logged after `after_seq`.
#[derive(Debug, Clone)]
pub struct Wait {
    pub run: String,
    pub idx: u32,
    pub pattern: String,
    pub filter: Option<Value>,
    pub after_seq: i64,
}

pub fn add_wait(c: &Connection, w: &Wait) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO _do_waits(run_id, idx, pattern, filter, after_seq) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        w.run,
        w.idx,
        w.pattern,
        w.filter.as_ref().map(Value::to_string),
        w.after_seq
    ])?;
    Ok(())
}

pub fn remove_wait(c: &Connection, run: &str, idx: u32) -> Result<()> {
    c.prepare_cached("DELETE FROM _do_waits WHERE run_id = ?1 AND idx = ?2")?
        .execute(params![run, idx])?;
    Ok(())
}

pub fn waits(c: &Connection) -> Result<Vec<Wait>> {
    c.prepare_cached("SELECT run_id, idx, pattern, filter, after_seq FROM _do_waits")?
        .query_map([], |r| {
            Ok(Wait {
                run: r.get(0)?,
                idx: r.get(1)?,
                pattern: r.get(2)?,
                filter: json(r.get(3)?),
                after_seq: r.get(4)?,
            })
        })?
        .collect()
}

/// The newest event's sequence number (0 for an empty log).
pub fn last_event_seq(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT coalesce(max(seq), 0) FROM _do_events")?
        .query_row([], |r| r.get(0))
}

/// The first event after `after` whose type matches and whose data contains `filter`.
pub fn find_event(
    c: &Connection,
    after: i64,
    pattern: &Pattern,
    filter: Option<&Value>,
) -> Result<Option<Event>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {} FROM _do_events WHERE seq > ?1 ORDER BY seq",
        crate::store::EVENT_COLS
    ))?;
    let mut rows = stmt.query([after])?;
    while let Some(r) = rows.next()? {
        let ev = crate::store::event_row(r)?;
        if pattern.matches(&ev.kind) && filter.is_none_or(|f| contains(&ev.data, f)) {
            return Ok(Some(ev));
        }
    }
    Ok(None)
}

/// Hands events to the runs waiting for them: the wait's step completes with the event and
/// the run is due now, in the transaction that dispatches the events.
pub fn resolve_waits(c: &Connection, events: &[Event], now: i64) -> Result<()> {
    let mut waits: Vec<(Wait, Option<Pattern>)> = waits(c)?
        .into_iter()
        .map(|w| {
            let p = Pattern::parse(&w.pattern).ok();
            (w, p)
        })
        .collect();
    if waits.is_empty() {
        return Ok(());
    }
    for ev in events {
        let mut i = 0;
        while i < waits.len() {
            let (w, pattern) = &waits[i];
            let hit = ev.seq > w.after_seq
                && pattern.as_ref().is_some_and(|p| p.matches(&ev.kind))
                && w.filter.as_ref().is_none_or(|f| contains(&ev.data, f));
            if !hit {
                i += 1;
                continue;
            }
            if let Some(mut s) = step(c, &w.run, w.idx)?
                && s.status == "waiting"
            {
                s.status = "completed".into();
                s.result = Some(serde_json::to_value(ev).unwrap_or(Value::Null));
                s.completed_at = Some(now);
                put_step(c, &w.run, &s)?;
                wake_run(c, &w.run, now)?;
            }
            remove_wait(c, &w.run, w.idx)?;
            waits.swap_remove(i);
        }
        if waits.is_empty() {
            break;
        }
    }
    Ok(())
}

/// Whether `value` has everything `filter` has: objects key by key (recursively), anything
/// else equal.
pub fn contains(value: &Value, filter: &Value) -> bool {
    match (value, filter) {
        (Value::Object(v), Value::Object(f)) => f
            .iter()
            .all(|(k, fv)| v.get(k).is_some_and(|vv| contains(vv, fv))),
        _ => value == filter,
    }
}

#[cfg(test)]
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn filters_match_subsets() {
        let ev = json!({"order": {"id": "o1", "total": 5}, "ok": true});
        assert!(contains(&ev, &json!({})));
        assert!(contains(&ev, &json!({"order": {"id": "o1"}})));
        assert!(!contains(&ev, &json!({"order": {"id": "o2"}})));
        assert!(!contains(&ev, &json!({"missing": 1})));
        assert!(contains(&ev, &json!({"ok": true})));
    }
}
