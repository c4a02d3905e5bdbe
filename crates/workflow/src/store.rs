//! The workflow's tables in an object's database and every statement on them: events, the
//! inbox (receiver-side dedup), subscriptions, the outbox, the action log and the DLQ. The
//! schema also holds the tables of schedules (`schedules.rs`) and workflow runs
//! (`flow_store.rs`), whose statements live with them.
//!
//! Plain synchronous functions on a connection, so they run inside whatever transaction the
//! caller's turn has open (one transaction per durable fact) and tests call them directly.
//! The tables are named `_do_*`, so user SQL cannot touch them. No statement binds its
//! LIMIT: SQLite re-prepares such a statement on every run; readers stop early instead.

use crate::model::{
    Action, ActionStatus, DeliveryTarget, DlqEntry, Event, NewAction, NewEvent, Subscription,
};
use crate::retry::RetryPolicy;
use dotdo_storage::rusqlite::{self, Connection, OptionalExtension, Row, params};
use serde_json::Value;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _do_wf (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL,
  type TEXT NOT NULL,
  subject TEXT,
  data TEXT NOT NULL,
  ts INTEGER NOT NULL,
  source TEXT,
  hops INTEGER NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _do_events_id ON _do_events(id);
CREATE TABLE IF NOT EXISTS _do_inbox (sender TEXT PRIMARY KEY, last_seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_subscriptions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  pattern TEXT NOT NULL,
  target TEXT NOT NULL,
  retry TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _do_outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  dest TEXT NOT NULL,
  target TEXT NOT NULL,
  subscription TEXT NOT NULL,
  event TEXT NOT NULL,
  retry TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL,
  claimed_by INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  epoch INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _do_outbox_queue ON _do_outbox(dest, seq);
CREATE INDEX IF NOT EXISTS _do_outbox_due ON _do_outbox(dest, next_at);
CREATE TABLE IF NOT EXISTS _do_actions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  key TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  input TEXT NOT NULL,
  retry TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER,
  claimed_by INTEGER,
  result TEXT,
  error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  completed_at INTEGER,
  epoch INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _do_actions_due ON _do_actions(next_at);
CREATE TABLE IF NOT EXISTS _do_dlq (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  ref TEXT NOT NULL,
  payload TEXT NOT NULL,
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS _do_schedules (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  every TEXT,
  cron TEXT NOT NULL,
  tz TEXT NOT NULL,
  catch_up TEXT NOT NULL,
  catch_up_limit INTEGER NOT NULL,
  action TEXT NOT NULL,
  next_at INTEGER,
  last_run_at INTEGER,
  run_count INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _do_schedules_due ON _do_schedules(next_at);
CREATE TABLE IF NOT EXISTS _do_workflows (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_runs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  workflow TEXT NOT NULL,
  status TEXT NOT NULL,
  input TEXT NOT NULL,
  definition TEXT,
  next_at INTEGER,
  claimed_by INTEGER,
  result TEXT,
  error TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  completed_at INTEGER,
  crashes INTEGER NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _do_runs_due ON _do_runs(next_at);
CREATE INDEX IF NOT EXISTS _do_runs_status ON _do_runs(status);
CREATE INDEX IF NOT EXISTS _do_runs_claimed ON _do_runs(claimed_by) WHERE claimed_by IS NOT NULL;
CREATE INDEX IF NOT EXISTS _do_runs_workflow ON _do_runs(workflow, seq);
CREATE TABLE IF NOT EXISTS _do_steps (
  run_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  result TEXT,
  error TEXT,
  wake_at INTEGER,
  started_at INTEGER NOT NULL,
  completed_at INTEGER,
  log_seq INTEGER NOT NULL,
  PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _do_waits (
  run_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  pattern TEXT NOT NULL,
  filter TEXT,
  after_seq INTEGER NOT NULL,
  PRIMARY KEY (run_id, idx)
) WITHOUT ROWID;
INSERT OR IGNORE INTO _do_wf(key, value) VALUES ('epoch', 0), ('dispatched', 0);
";

type Result<T> = rusqlite::Result<T>;

/// Creates the tables if this object has none yet.
pub fn ensure_schema(c: &Connection) -> Result<()> {
    // The newest table: objects made by an older version get the tables added since (every
    // statement of the schema is idempotent). Every write checks, so the check is a prepared
    // statement that reads nothing; it fails when the table is missing.
    let present = c
        .prepare_cached("SELECT 1 FROM _do_waits LIMIT 0")
        .and_then(|mut probe| probe.exists([]))
        .is_ok();
    if !present {
        c.execute_batch(SCHEMA)?;
    }
    Ok(())
}

fn wf_get(c: &Connection, key: &str) -> Result<i64> {
    c.prepare_cached("SELECT value FROM _do_wf WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

fn wf_set(c: &Connection, key: &str, value: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_wf(key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Records `epoch` as the object's newest activation (its fencing token).
pub fn set_epoch(c: &Connection, epoch: i64) -> Result<()> {
    wf_set(c, "epoch", epoch)
}

/// The epoch of the newest activation.
pub fn current_epoch(c: &Connection) -> Result<i64> {
    wf_get(c, "epoch")
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn parse_retry(s: &str) -> RetryPolicy {
    serde_json::from_str(s).unwrap_or_default()
}

fn retry_text(p: &RetryPolicy) -> String {
    serde_json::to_string(p).unwrap_or_default()
}

// ---- events ----

pub(crate) const EVENT_COLS: &str = "seq, id, type, subject, data, ts, source, hops";

pub(crate) fn event_row(r: &Row<'_>) -> Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        subject: r.get(3)?,
        data: parse_json(&r.get::<_, String>(4)?),
        ts: r.get(5)?,
        source: r.get(6)?,
        hops: r.get(7)?,
    })
}

/// Appends an event to the object's log; returns it with its sequence number.
pub fn append_event(c: &Connection, ev: &NewEvent, epoch: i64) -> Result<Event> {
    c.prepare_cached(
        "INSERT INTO _do_events(id, type, subject, data, ts, source, hops, epoch) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        ev.id,
        ev.kind,
        ev.subject,
        json_text(&ev.data),
        ev.ts,
        ev.source,
        ev.hops,
        epoch
    ])?;
    Ok(Event {
        seq: c.last_insert_rowid(),
        id: ev.id.clone(),
        kind: ev.kind.clone(),
        subject: ev.subject.clone(),
        data: ev.data.clone(),
        ts: ev.ts,
        source: ev.source.clone(),
        hops: ev.hops,
    })
}

/// Events after `after` in log order, at most `limit`, optionally only those `keep` accepts.
pub fn list_events(
    c: &Connection,
    after: i64,
    limit: usize,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Event>, bool)> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM _do_events WHERE seq > ?1 ORDER BY seq LIMIT 1000"
    ))?;
    let mut out = Vec::new();
    let mut cursor = after;
    // Filtering happens here (wildcards are not SQL), so read in chunks until the page fills.
    loop {
        let chunk: Vec<Event> = stmt
            .query_map(params![cursor], event_row)?
            .collect::<Result<_>>()?;
        let Some(last) = chunk.last() else {
            return Ok((out, false));
        };
        cursor = last.seq;
        for ev in chunk {
            if keep(&ev.kind) {
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(ev);
            }
        }
    }
}

pub fn event_count(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT count(*) FROM _do_events")?
        .query_row([], |r| r.get(0))
}

/// The sequence number of the newest event (0 when there is none).
pub fn last_event_seq(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT coalesce(max(seq), 0) FROM _do_events")?
        .query_row([], |r| r.get(0))
}

/// Events not yet handed to handlers and subscriptions, at most `limit`.
pub fn undispatched(c: &Connection, limit: usize) -> Result<Vec<Event>> {
    let from = wf_get(c, "dispatched")?;
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {EVENT_COLS} FROM _do_events WHERE seq > ?1 ORDER BY seq"
    ))?;
    stmt.query_map(params![from], event_row)?
        .take(limit)
        .collect()
}

pub fn has_undispatched(c: &Connection) -> Result<bool> {
    let from = wf_get(c, "dispatched")?;
    c.prepare_cached("SELECT 1 FROM _do_events WHERE seq > ?1 LIMIT 1")?
        .exists([from])
}

pub fn mark_dispatched(c: &Connection, seq: i64) -> Result<()> {
    wf_set(c, "dispatched", seq)
}

/// Takes events from another object: each `(sender_seq, event)` is appended unless this
/// object has already taken `sender_seq` from `sender` (deliveries from one sender arrive in
/// order, so the last sequence number seen is the whole dedup state). Returns how many were
/// new.
pub fn receive(
    c: &Connection,
    sender: &str,
    batch: &[(i64, NewEvent)],
    epoch: i64,
) -> Result<usize> {
    let mut last: i64 = c
        .prepare_cached("SELECT last_seq FROM _do_inbox WHERE sender = ?1")?
        .query_row([sender], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut taken = 0;
    for (seq, ev) in batch {
        if *seq <= last {
            continue;
        }
        append_event(c, ev, epoch)?;
        last = *seq;
        taken += 1;
    }
    if taken > 0 {
        c.prepare_cached(
            "INSERT INTO _do_inbox(sender, last_seq) VALUES (?1, ?2) \
             ON CONFLICT(sender) DO UPDATE SET last_seq = excluded.last_seq",
        )?
        .execute(params![sender, last])?;
    }
    Ok(taken)
}

// ---- subscriptions ----

fn subscription_row(r: &Row<'_>) -> Result<Subscription> {
    let target: String = r.get(2)?;
    Ok(Subscription {
        id: r.get(0)?,
        on: r.get(1)?,
        deliver: serde_json::from_str(&target).unwrap_or(DeliveryTarget::Object(String::new())),
        retry: parse_retry(&r.get::<_, String>(3)?),
        created_at: r.get(4)?,
    })
}

pub fn add_subscription(c: &Connection, s: &Subscription) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_subscriptions(id, pattern, target, retry, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        s.id,
        s.on,
        serde_json::to_string(&s.deliver).unwrap_or_default(),
        retry_text(&s.retry),
        s.created_at
    ])?;
    Ok(())
}

pub fn subscriptions(c: &Connection) -> Result<Vec<Subscription>> {
    c.prepare_cached(
        "SELECT id, pattern, target, retry, created_at FROM _do_subscriptions ORDER BY seq",
    )?
    .query_map([], subscription_row)?
    .collect()
}

pub fn subscription_count(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT count(*) FROM _do_subscriptions")?
        .query_row([], |r| r.get(0))
}

pub fn delete_subscription(c: &Connection, id: &str) -> Result<bool> {
    Ok(
        c.prepare_cached("DELETE FROM _do_subscriptions WHERE id = ?1")?
            .execute([id])?
            > 0,
    )
}

// ---- outbox ----

/// One message waiting to leave the object.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: i64,
    /// `object:<name>` for deliveries that must keep their order, `webhook` otherwise.
    pub dest: String,
    pub target: DeliveryTarget,
    pub subscription: String,
    pub event: Event,
    pub retry: RetryPolicy,
    pub attempts: u32,
    pub next_at: i64,
}

pub fn dest_of(target: &DeliveryTarget) -> String {
    match target {
        DeliveryTarget::Object(object) => format!("object:{object}"),
        DeliveryTarget::Webhook(_) => "webhook".into(),
    }
}

pub fn enqueue_delivery(
    c: &Connection,
    target: &DeliveryTarget,
    subscription: &str,
    event: &Event,
    retry: &RetryPolicy,
    now: i64,
    epoch: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_outbox(dest, target, subscription, event, retry, next_at, created_at, epoch) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![
        dest_of(target),
        serde_json::to_string(target).unwrap_or_default(),
        subscription,
        serde_json::to_string(event).unwrap_or_default(),
        retry_text(retry),
        now,
        epoch
    ])?;
    Ok(())
}

const OUTGOING_COLS: &str = "seq, dest, target, subscription, event, retry, attempts, next_at";

fn outgoing_row(r: &Row<'_>) -> Result<Outgoing> {
    Ok(Outgoing {
        seq: r.get(0)?,
        dest: r.get(1)?,
        target: serde_json::from_str(&r.get::<_, String>(2)?)
            .unwrap_or(DeliveryTarget::Object(String::new())),
        subscription: r.get(3)?,
        event: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
        retry: parse_retry(&r.get::<_, String>(5)?),
        attempts: r.get(6)?,
        next_at: r.get(7)?,
    })
}

/// The object destinations with messages waiting.
pub fn object_dests(c: &Connection) -> Result<Vec<String>> {
    c.prepare_cached("SELECT DISTINCT dest FROM _do_outbox WHERE dest != 'webhook'")?
        .query_map([], |r| r.get(0))?
        .collect()
}

/// The oldest messages for one destination, in order.
pub fn outbox_queue(c: &Connection, dest: &str, limit: usize) -> Result<Vec<Outgoing>> {
    c.prepare_cached(&format!(
        "SELECT {OUTGOING_COLS} FROM _do_outbox WHERE dest = ?1 ORDER BY seq"
    ))?
    .query_map([dest], outgoing_row)?
    .take(limit)
    .collect()
}

/// Webhook messages due now, earliest first.
pub fn due_webhooks(c: &Connection, now: i64, limit: usize) -> Result<Vec<Outgoing>> {
    c.prepare_cached(&format!(
        "SELECT {OUTGOING_COLS} FROM _do_outbox WHERE dest = 'webhook' AND next_at <= ?1 \
         ORDER BY next_at"
    ))?
    .query_map([now], outgoing_row)?
    .take(limit)
    .collect()
}

/// Hands work claimed by earlier activations (gone: the object restarted) back, due now.
/// Runs once when an activation first pumps.
pub fn release_stale_claims(c: &Connection, epoch: i64, now: i64) -> Result<usize> {
    let outbox = c
        .prepare_cached(
            "UPDATE _do_outbox SET next_at = ?2, claimed_by = NULL \
             WHERE claimed_by IS NOT NULL AND claimed_by < ?1",
        )?
        .execute(params![epoch, now])?;
    let actions = c
        .prepare_cached(
            "UPDATE _do_actions SET status = 'pending', next_at = ?2, claimed_by = NULL \
             WHERE status = 'running' AND claimed_by < ?1",
        )?
        .execute(params![epoch, now])?;
    Ok(outbox + actions)
}

/// Marks a message as being delivered by the activation `epoch` until `lease_until`.
pub fn claim_delivery(c: &Connection, seq: i64, lease_until: i64, epoch: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_outbox SET attempts = attempts + 1, next_at = ?2, claimed_by = ?3 \
         WHERE seq = ?1",
    )?
    .execute(params![seq, lease_until, epoch])?;
    Ok(())
}

/// Gives a claimed message back without counting its attempt (the host is shutting down).
pub fn release_delivery(c: &Connection, seq: i64, retry_at: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_outbox SET attempts = max(attempts - 1, 0), next_at = ?2, claimed_by = NULL \
         WHERE seq = ?1",
    )?
    .execute(params![seq, retry_at])?;
    Ok(())
}

/// Gives a claimed action back without counting its attempt (the host is shutting down).
pub fn release_action(c: &Connection, id: &str, retry_at: i64) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_actions SET status = 'pending', attempts = max(attempts - 1, 0), \
         next_at = ?2, claimed_by = NULL WHERE id = ?1 AND status = 'running'",
    )?
    .execute(params![id, retry_at])?;
    Ok(())
}

/// The receiver has the message: it leaves the outbox.
pub fn delivered(c: &Connection, seq: i64) -> Result<()> {
    c.prepare_cached("DELETE FROM _do_outbox WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

/// A delivery failed: schedule the next attempt, or move the message to the DLQ when its
/// attempts are spent. Returns true if it went to the DLQ.
pub fn delivery_failed(
    c: &Connection,
    msg: &Outgoing,
    error: &str,
    now: i64,
    jitter: f64,
) -> Result<bool> {
    let attempts: u32 = c
        .prepare_cached("SELECT attempts FROM _do_outbox WHERE seq = ?1")?
        .query_row([msg.seq], |r| r.get(0))
        .optional()?
        .unwrap_or(msg.attempts);
    match msg.retry.delay_after(attempts, jitter) {
        Some(delay) => {
            c.prepare_cached(
                "UPDATE _do_outbox SET next_at = ?2, claimed_by = NULL, last_error = ?3 \
                 WHERE seq = ?1",
            )?
            .execute(params![msg.seq, now + delay as i64, error])?;
            Ok(false)
        }
        None => {
            let payload = serde_json::json!({
                "target": msg.target,
                "subscription": msg.subscription,
                "event": msg.event,
                "retry": msg.retry,
            });
            dlq_add(
                c,
                "delivery",
                &msg.subscription,
                &payload,
                error,
                attempts,
                now,
            )?;
            delivered(c, msg.seq)?;
            Ok(true)
        }
    }
}

pub fn outbox_len(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT count(*) FROM _do_outbox")?
        .query_row([], |r| r.get(0))
}

// ---- actions ----

const ACTION_COLS: &str = "id, key, name, kind, input, retry, status, attempts, next_at, \
     result, error, created_at, updated_at, completed_at, seq";

fn action_row(r: &Row<'_>) -> Result<Action> {
    Ok(Action {
        id: r.get(0)?,
        key: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        input: parse_json(&r.get::<_, String>(4)?),
        retry: parse_retry(&r.get::<_, String>(5)?),
        status: ActionStatus::parse(&r.get::<_, String>(6)?),
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        result: r.get::<_, Option<String>>(9)?.map(|s| parse_json(&s)),
        error: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        completed_at: r.get(13)?,
        seq: r.get(14)?,
    })
}

pub fn action_by_id(c: &Connection, id: &str) -> Result<Option<Action>> {
    c.prepare_cached(&format!(
        "SELECT {ACTION_COLS} FROM _do_actions WHERE id = ?1"
    ))?
    .query_row([id], action_row)
    .optional()
}

pub fn action_by_key(c: &Connection, key: &str) -> Result<Option<Action>> {
    c.prepare_cached(&format!(
        "SELECT {ACTION_COLS} FROM _do_actions WHERE key = ?1"
    ))?
    .query_row([key], action_row)
    .optional()
}

/// Records an action to run now, unless one with its key exists: then that one is returned
/// and nothing changes. The flag says whether it was created.
pub fn enqueue_action(
    c: &Connection,
    a: &NewAction,
    id: &str,
    now: i64,
    epoch: i64,
) -> Result<(Action, bool)> {
    if let Some(existing) = action_by_key(c, &a.key)? {
        return Ok((existing, false));
    }
    c.prepare_cached(
        "INSERT INTO _do_actions(id, key, name, kind, input, retry, status, next_at, \
         created_at, updated_at, epoch) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?7, ?8)",
    )?
    .execute(params![
        id,
        a.key,
        a.name,
        a.kind,
        json_text(&a.input),
        retry_text(&a.retry),
        now,
        epoch
    ])?;
    let created = action_by_id(c, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok((created, true))
}

/// Actions due to run: pending ones whose time has come, and running ones whose lease ran
/// out.
pub fn due_actions(c: &Connection, now: i64, limit: usize) -> Result<Vec<Action>> {
    c.prepare_cached(&format!(
        "SELECT {ACTION_COLS} FROM _do_actions WHERE next_at <= ?1 ORDER BY next_at"
    ))?
    .query_map(params![now], action_row)?
    .take(limit)
    .collect()
}

/// Starts an attempt: the action is running for this activation until `lease_until`.
pub fn claim_action(
    c: &Connection,
    id: &str,
    now: i64,
    lease_until: i64,
    epoch: i64,
) -> Result<()> {
    c.prepare_cached(
        "UPDATE _do_actions SET status = 'running', attempts = attempts + 1, next_at = ?3, \
         claimed_by = ?4, updated_at = ?2 WHERE id = ?1",
    )?
    .execute(params![id, now, lease_until, epoch])?;
    Ok(())
}

/// Records success. Only a running action completes, so a late duplicate attempt cannot
/// overwrite the first result. Returns false if the action was not running.
pub fn complete_action(c: &Connection, id: &str, result: &Value, now: i64) -> Result<bool> {
    let key: Option<String> = c
        .prepare_cached(
            "UPDATE _do_actions SET status = 'completed', result = ?2, error = NULL, next_at = NULL, \
             claimed_by = NULL, updated_at = ?3, completed_at = ?3 WHERE id = ?1 AND status = 'running' \
             RETURNING key",
        )?
        .query_row(params![id, json_text(result), now], |r| r.get(0))
        .optional()?;
    if let Some(k) = &key {
        wake_run_of_action(c, k, now)?;
    }
    Ok(key.is_some())
}

/// A workflow step waits on the action with this key (`wf:<run>:<step>`): its run goes on.
fn wake_run_of_action(c: &Connection, key: &str, now: i64) -> Result<()> {
    if let Some((run, _)) = key.strip_prefix("wf:").and_then(|k| k.rsplit_once(':')) {
        crate::flow_store::wake_run(c, run, now)?;
    }
    Ok(())
}

/// What became of a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    RetryAt(i64),
    /// No attempt left (or the error said not to retry): failed for good, in the DLQ.
    Dead,
    /// The action was not running (already completed or reset): nothing recorded.
    Ignored,
}

/// Records a failed attempt: schedules a retry, or fails the action for good and puts it in
/// the DLQ.
pub fn action_failed(
    c: &Connection,
    id: &str,
    error: &str,
    retryable: bool,
    now: i64,
    jitter: f64,
) -> Result<AfterFailure> {
    let Some(a) = action_by_id(c, id)? else {
        return Ok(AfterFailure::Ignored);
    };
    if a.status != ActionStatus::Running {
        return Ok(AfterFailure::Ignored);
    }
    let delay = if retryable {
        a.retry.delay_after(a.attempts, jitter)
    } else {
        None
    };
    match delay {
        Some(d) => {
            let at = now + d as i64;
            c.prepare_cached(
                "UPDATE _do_actions SET status = 'pending', error = ?2, next_at = ?3, \
                 claimed_by = NULL, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![id, error, at, now])?;
            Ok(AfterFailure::RetryAt(at))
        }
        None => {
            c.prepare_cached(
                "UPDATE _do_actions SET status = 'failed', error = ?2, next_at = NULL, \
                 claimed_by = NULL, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![id, error, now])?;
            let payload = serde_json::json!({ "actionId": a.id, "key": a.key, "name": a.name });
            dlq_add(c, &a.kind, &a.id, &payload, error, a.attempts, now)?;
            wake_run_of_action(c, &a.key, now)?;
            Ok(AfterFailure::Dead)
        }
    }
}

pub fn list_actions(
    c: &Connection,
    status: Option<ActionStatus>,
    after: i64,
    limit: usize,
) -> Result<Vec<Action>> {
    match status {
        Some(st) => c
            .prepare_cached(&format!(
                "SELECT {ACTION_COLS} FROM _do_actions WHERE status = ?1 AND seq > ?2 ORDER BY seq"
            ))?
            .query_map(params![st.as_str(), after], action_row)?
            .take(limit)
            .collect(),
        None => c
            .prepare_cached(&format!(
                "SELECT {ACTION_COLS} FROM _do_actions WHERE seq > ?1 ORDER BY seq"
            ))?
            .query_map(params![after], action_row)?
            .take(limit)
            .collect(),
    }
}

/// When the pump has work next: now if events wait for dispatch, else [`next_due`].
pub fn next_work(c: &Connection, now: i64) -> Result<Option<i64>> {
    if has_undispatched(c)? {
        Ok(Some(now))
    } else {
        next_due(c)
    }
}

/// When the earliest pending or leased work is due, if any.
pub fn next_due(c: &Connection) -> Result<Option<i64>> {
    let mut at: Option<i64> = c
        .prepare_cached("SELECT min(next_at) FROM _do_actions")?
        .query_row([], |r| r.get(0))?;
    let mut earliest = |t: Option<i64>| {
        if let Some(t) = t {
            at = Some(at.map_or(t, |a| a.min(t)));
        }
    };
    earliest(
        c.prepare_cached("SELECT min(next_at) FROM _do_outbox WHERE dest = 'webhook'")?
            .query_row([], |r| r.get(0))?,
    );
    earliest(crate::schedules::next_due(c)?);
    earliest(crate::flow_store::next_due(c)?);
    // A queue to an object moves when its head is due.
    for dest in object_dests(c)? {
        earliest(
            c.prepare_cached(
                "SELECT next_at FROM _do_outbox WHERE dest = ?1 ORDER BY seq LIMIT 1",
            )?
            .query_row([&dest], |r| r.get(0))
            .optional()?,
        );
    }
    Ok(at)
}

// ---- dead-letter queue ----

fn dlq_add(
    c: &Connection,
    kind: &str,
    reference: &str,
    payload: &Value,
    error: &str,
    attempts: u32,
    now: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO _do_dlq(id, kind, ref, payload, error, attempts, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        crate::model::new_id("dlq"),
        kind,
        reference,
        json_text(payload),
        error,
        attempts,
        now
    ])?;
    Ok(())
}

fn dlq_row(r: &Row<'_>) -> Result<DlqEntry> {
    Ok(DlqEntry {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        reference: r.get(3)?,
        payload: parse_json(&r.get::<_, String>(4)?),
        error: r.get(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const DLQ_COLS: &str = "seq, id, kind, ref, payload, error, attempts, created_at";

pub fn dlq_list(c: &Connection, after: i64, limit: usize) -> Result<Vec<DlqEntry>> {
    c.prepare_cached(&format!(
        "SELECT {DLQ_COLS} FROM _do_dlq WHERE seq > ?1 ORDER BY seq"
    ))?
    .query_map(params![after], dlq_row)?
    .take(limit)
    .collect()
}

pub fn dlq_get(c: &Connection, id: &str) -> Result<Option<DlqEntry>> {
    c.prepare_cached(&format!("SELECT {DLQ_COLS} FROM _do_dlq WHERE id = ?1"))?
        .query_row([id], dlq_row)
        .optional()
}

pub fn dlq_delete(c: &Connection, id: &str) -> Result<bool> {
    Ok(c.prepare_cached("DELETE FROM _do_dlq WHERE id = ?1")?
        .execute([id])?
        > 0)
}

pub fn dlq_count(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT count(*) FROM _do_dlq")?
        .query_row([], |r| r.get(0))
}

/// Puts a failed action back in line with fresh attempts.
pub fn reset_action(c: &Connection, id: &str, now: i64) -> Result<bool> {
    Ok(c.prepare_cached(
        "UPDATE _do_actions SET status = 'pending', attempts = 0, error = NULL, next_at = ?2, \
         claimed_by = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'failed'",
    )?
    .execute(params![id, now])?
        > 0)
}
