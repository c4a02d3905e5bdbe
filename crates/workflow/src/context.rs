//! The `$` context of one object activation, and the pump that moves its durable work along.
//!
//! Everything durable is a row written in the caller's turn: an event (`send`), an action
//! (`do_`), a subscription. The *pump* does the rest. It runs inside the object's alarm turn:
//! it hands new events to handlers and subscriptions (as actions and outbox rows, in one
//! transaction with the dispatch cursor), delivers the outbox, runs due actions, records
//! outcomes, and finally sets the object's alarm to the next due retry. Anything that creates
//! work due now also sets the alarm to now, so work survives eviction and restarts: after a
//! crash the host fires the alarm and the pump picks up where the log says it stopped.
//!
//! Rows being worked on are *claimed* with the activation's epoch (its fencing token) and a
//! lease. A newer activation takes over claims of older ones at once; an activation whose
//! epoch is no longer the newest cannot write.

use crate::flow::{self, Flow, WorkflowFn};
use crate::flow_store::{self, Run};
use crate::model::{
    Action, ActionStatus, DeliveryTarget, DlqEntry, Event, NewAction, NewEvent, Subscription, kind,
    new_id,
};
use crate::outbound::{HttpCall, Outbound, check_url};
use crate::pattern::{Pattern, check_event_type};
use crate::registry::{ActionError, Registry};
use crate::retry::RetryPolicy;
use crate::schedules::{self, NewSchedule, Schedule, ScheduleAction};
use crate::store::{self, AfterFailure, Outgoing};
use dotdo_runtime::storage_api::rusqlite::{self, Connection};
use dotdo_runtime::storage_api::{Storage, StorageError};
use dotdo_runtime::{ErrorKind, ObjectError, ObjectState};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};

/// Events one object passes on before a chain of subscriptions is cut (a loop between
/// objects would otherwise never end).
pub const MAX_HOPS: u32 = 16;
/// Largest batch of events delivered to one object in one turn.
const DELIVERY_BATCH: usize = 256;
/// Events handed to handlers and subscriptions per pump step.
const DISPATCH_BATCH: usize = 256;
/// How long an idle pump waits for more work before handing over to the alarm. A
/// performance heuristic in real time, not part of any schedule.
const PUMP_LINGER: Duration = Duration::from_millis(50);
/// How long a busy pump lets new work gather before taking it (real time, a heuristic).
const COALESCE: Duration = Duration::from_millis(2);
/// Delay before work cut short by a shutdown is tried again (no attempt is counted).
const INTERRUPTED_RETRY_MS: i64 = 1_000;
/// Extra time a claim is held beyond the attempt's own timeout.
const LEASE_GRACE_MS: i64 = 5_000;

/// Settings shared by every object of a host.
pub struct WorkflowEnv {
    pub outbound: Arc<dyn Outbound>,
    /// How long a webhook may take before the attempt counts as failed.
    pub webhook_timeout: Duration,
    /// How long a registered action function may take per attempt.
    pub action_timeout: Duration,
    /// Deliveries and actions one object runs at the same time.
    pub max_in_flight: usize,
}

impl WorkflowEnv {
    pub fn new(outbound: Arc<dyn Outbound>) -> Self {
        WorkflowEnv {
            outbound,
            webhook_timeout: Duration::from_secs(10),
            action_timeout: Duration::from_secs(30),
            max_in_flight: 64,
        }
    }
}

impl std::fmt::Debug for WorkflowEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowEnv")
            .field("webhook_timeout", &self.webhook_timeout)
            .field("action_timeout", &self.action_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// Options of one `$.do`.
#[derive(Debug, Clone, Default)]
pub struct DoOptions {
    /// The idempotency key; derived from the name and input when absent.
    pub key: Option<String>,
    pub retry: Option<RetryPolicy>,
}

type Waiter = oneshot::Sender<Result<Value, ActionError>>;

/// What recording an action found or did.
enum Recorded {
    /// An action with the key was there already; nothing changed.
    Existing(Action),
    /// Recorded for the pump to run.
    Queued(Action),
    /// Recorded and claimed for an attempt by the caller.
    Claimed(Action),
}

/// Final outcomes of actions, by id.
type Finished = Vec<(String, Result<Value, ActionError>)>;

struct Inner {
    state: ObjectState,
    registry: Arc<Registry>,
    env: Arc<WorkflowEnv>,
    /// This activation's epoch, once it has written.
    epoch: Mutex<Option<i64>>,
    pumping: AtomicBool,
    /// Claims of earlier activations have been released.
    recovered: AtomicBool,
    /// New work for a running pump.
    work: Notify,
    /// Callers of `do_` waiting for an action's final outcome.
    waiters: Mutex<HashMap<String, Vec<Waiter>>>,
}

/// `$`: the workflow context of one object activation. Cheap to clone.
///
/// | TypeScript | Rust |
/// | --- | --- |
/// | `$.send(type, data)` | [`Context::send`] |
/// | `$.try(action, input)` | [`Context::try_`] |
/// | `$.do(action, input)` | [`Context::do_`] |
/// | `$.on.Noun.verb(h)` | [`Registry::on`] |
/// | `$.every('every day at 9am', h)` | [`Context::schedule`] with a registered action |
/// | `Workflow(name, fn).run(input)` | [`Registry::workflow`], [`Context::start_workflow`] |
///
/// A class that uses it must call [`Context::on_alarm`] from its `alarm`: the context owns the
/// object's alarm and multiplexes its retries and deliveries onto it.
#[derive(Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("object", &self.inner.state.id())
            .finish()
    }
}

/// The writer is not the newest activation of its object.
#[derive(Debug)]
struct Fenced {
    stored: i64,
    mine: i64,
}

fn fenced_error(f: &Fenced) -> ObjectError {
    tracing::error!(
        stored = f.stored,
        mine = f.mine,
        "write by a stale activation refused"
    );
    ObjectError::new(
        ErrorKind::Unavailable,
        "this activation of the object has been superseded; retry the request",
    )
}

/// What a finished delivery or attempt reports to the pump.
enum Outcome {
    ObjectBatch {
        dest: String,
        msgs: Vec<Outgoing>,
        result: Result<usize, ActionError>,
    },
    Webhook {
        msg: Box<Outgoing>,
        result: Result<(), String>,
    },
    Action {
        id: String,
        kind: String,
        result: Result<Value, ActionError>,
    },
    Run {
        id: String,
        result: Result<(), ActionError>,
    },
}

impl Context {
    pub fn new(state: ObjectState, registry: Arc<Registry>, env: Arc<WorkflowEnv>) -> Context {
        Context {
            inner: Arc::new(Inner {
                state,
                registry,
                env,
                epoch: Mutex::new(None),
                pumping: AtomicBool::new(false),
                recovered: AtomicBool::new(false),
                work: Notify::new(),
                waiters: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn state(&self) -> &ObjectState {
        &self.inner.state
    }

    fn now(&self) -> i64 {
        self.inner.state.now_ms()
    }

    /// The object's clock, epoch milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        self.now()
    }

    pub(crate) fn action_timeout(&self) -> Duration {
        self.inner.env.action_timeout
    }

    pub(crate) fn read_internal<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ObjectError> {
        self.read(f)
    }

    pub(crate) fn write_internal<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ObjectError> {
        self.write(|c, _| f(c))
    }

    /// Runs `f` in the current turn's transaction after checking this activation is still
    /// the object's newest (taking a new epoch on its first write).
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection, i64) -> rusqlite::Result<T>,
    ) -> Result<T, ObjectError> {
        self.with_storage(|s, epoch| s.internal(|c| f(c, epoch)))
    }

    /// Like [`Context::write`], also handing over the storage for the alarm slot.
    fn with_storage<T>(
        &self,
        f: impl FnOnce(&mut Storage, i64) -> Result<T, StorageError>,
    ) -> Result<T, ObjectError> {
        let mut mine = self.inner.epoch.lock();
        let out = self.inner.state.storage().with(|s| {
            let stored = s.internal(|c| {
                store::ensure_schema(c)?;
                store::current_epoch(c)
            })?;
            let epoch = match *mine {
                Some(e) if stored > e => return Ok(Err(Fenced { stored, mine: e })),
                Some(e) => e,
                None => stored + 1,
            };
            if stored < epoch {
                // First write of this activation (or its first write was rolled back).
                s.internal(|c| store::set_epoch(c, epoch))?;
                // Pending work must have an alarm to drive it, even if something cleared it
                // (an abandoned alarm, a raw alarm write).
                if s.get_alarm()?.is_none() {
                    let now = self.now();
                    let due = s.internal(|c| store::next_work(c, now))?;
                    if let Some(at) = due {
                        s.set_alarm(at)?;
                    }
                }
            }
            *mine = Some(epoch);
            f(s, epoch).map(Ok)
        })?;
        out.map_err(|f| fenced_error(&f))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, ObjectError> {
        Ok(self.inner.state.storage().with(|s| {
            s.internal_read(|c| {
                store::ensure_schema(c)?;
                f(c)
            })
        })?)
    }

    /// Makes sure the alarm (the durable trigger of the pump) is due by `at`.
    fn wake_at(s: &mut Storage, at: i64) -> Result<(), StorageError> {
        if s.get_alarm()?.is_none_or(|cur| cur > at) {
            s.set_alarm(at)?;
        }
        Ok(())
    }

    // ---- $.send and the event log ----

    /// `$.send`: appends an event to this object's log in the current turn's transaction.
    /// Handlers and subscriptions get it after the turn commits, at least once; receivers
    /// deduplicate, so it takes effect once.
    pub fn send(
        &self,
        event_type: &str,
        subject: Option<&str>,
        data: Value,
    ) -> Result<Event, ObjectError> {
        check_event_type(event_type).map_err(ObjectError::bad_request)?;
        if let Some(s) = subject
            && (s.is_empty() || s.len() > 1024)
        {
            return Err(ObjectError::bad_request("subject must be 1 to 1024 bytes"));
        }
        let now = self.now();
        let ev = NewEvent {
            id: new_id("evt"),
            kind: event_type.to_string(),
            subject: subject.map(str::to_string),
            data,
            ts: now,
            source: None,
            hops: 0,
        };
        let event = self.with_storage(|s, epoch| {
            let e = s.internal(|c| store::append_event(c, &ev, epoch))?;
            Self::wake_at(s, now)?;
            Ok(e)
        })?;
        self.inner.work.notify_one();
        Ok(event)
    }

    /// Events of this object's log after `after`, oldest first, optionally only the types
    /// matching `pattern`. The flag says whether more follow.
    pub fn events(
        &self,
        after: i64,
        pattern: Option<&Pattern>,
        limit: usize,
    ) -> Result<(Vec<Event>, bool), ObjectError> {
        self.read(|c| {
            store::list_events(c, after, limit, &|t| pattern.is_none_or(|p| p.matches(t)))
        })
    }

    // ---- subscriptions ----

    /// Delivers the events matching `on` to a webhook or another object, from now on.
    pub fn subscribe(
        &self,
        on: &str,
        deliver: DeliveryTarget,
        retry: Option<RetryPolicy>,
    ) -> Result<Subscription, ObjectError> {
        Pattern::parse(on).map_err(ObjectError::bad_request)?;
        match &deliver {
            DeliveryTarget::Webhook(w) => check_url(&w.url).map_err(ObjectError::bad_request)?,
            DeliveryTarget::Object(name) => {
                if !dotdo_runtime::valid_name(name) {
                    return Err(ObjectError::bad_request(
                        "deliver.object must be an object name of 1 to 1024 bytes",
                    ));
                }
                if Some(name.as_str()) == self.inner.state.name() {
                    return Err(ObjectError::bad_request(
                        "an object cannot subscribe itself to its own events",
                    ));
                }
            }
        }
        let retry = retry.unwrap_or_else(RetryPolicy::delivery);
        retry.check().map_err(ObjectError::bad_request)?;
        let sub = Subscription {
            id: new_id("sub"),
            on: on.to_string(),
            deliver,
            retry,
            created_at: self.now(),
        };
        self.write(|c, _| store::add_subscription(c, &sub))?;
        Ok(sub)
    }

    pub fn subscriptions(&self) -> Result<Vec<Subscription>, ObjectError> {
        self.read(store::subscriptions)
    }

    /// Removes a subscription; messages already in the outbox are still delivered.
    pub fn unsubscribe(&self, id: &str) -> Result<bool, ObjectError> {
        self.write(|c, _| store::delete_subscription(c, id))
    }

    // ---- $.do, $.try and the action log ----

    /// Records an action and returns at once; the pump runs it. If an action with the same
    /// key exists, that one is returned unchanged (flag false).
    pub fn enqueue(&self, action: NewAction) -> Result<(Action, bool), ObjectError> {
        Ok(match self.record_new(action, false)? {
            Recorded::Existing(a) => (a, false),
            Recorded::Queued(a) | Recorded::Claimed(a) => (a, true),
        })
    }

    /// Records an action for [`Context::enqueue`] or [`Context::do_`]; with `claim`, a new
    /// one is claimed for an attempt its caller starts at once.
    fn record_new(&self, action: NewAction, claim: bool) -> Result<Recorded, ObjectError> {
        action.retry.check().map_err(ObjectError::bad_request)?;
        if action.key.is_empty() || action.key.len() > 512 {
            return Err(ObjectError::bad_request("an action key is 1 to 512 bytes"));
        }
        let now = self.now();
        let lease = now + self.lease_ms(self.inner.env.action_timeout);
        let recorded = self.with_storage(|s, epoch| {
            let (mut a, fresh) =
                s.internal(|c| store::enqueue_action(c, &action, &new_id("act"), now, epoch))?;
            if !fresh {
                if !a.status.is_final() {
                    // A caller waits for it: have the pump look now. (A claim an activation
                    // lost in a crash is released then, not at its lease's end.)
                    Self::wake_at(s, now)?;
                }
                return Ok(Recorded::Existing(a));
            }
            if !claim {
                Self::wake_at(s, now)?;
                return Ok(Recorded::Queued(a));
            }
            s.internal(|c| store::claim_action(c, &a.id, now, lease, epoch))?;
            a.status = ActionStatus::Running;
            a.attempts += 1;
            // Should this process die during the attempt, the alarm retries it once the
            // lease is over.
            Self::wake_at(s, lease)?;
            Ok(Recorded::Claimed(a))
        })?;
        let for_the_pump = match &recorded {
            Recorded::Queued(_) => true,
            Recorded::Existing(a) => !a.status.is_final(),
            Recorded::Claimed(_) => false,
        };
        if for_the_pump {
            self.inner.work.notify_one();
        }
        Ok(recorded)
    }

    /// How long a claim holds for work of this timeout.
    fn lease_ms(&self, timeout: Duration) -> i64 {
        i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 4) + LEASE_GRACE_MS
    }

    /// `$.do`: runs the action registered as `name` durably and returns its result. It is
    /// recorded with an idempotency key (given, or derived from name and input); once it
    /// completed, calling again with the key returns the stored result without running it.
    /// Failed attempts are retried per policy, driven by the object's alarm, so they go on
    /// after eviction or a restart even if this caller is gone.
    ///
    /// A new action's first attempt starts at once, claimed in the caller's write that
    /// records it, in a turn of its own as the pump's attempts are: a `$.do` that succeeds
    /// the first time so takes two commits and no trip through the pump.
    pub async fn do_(
        &self,
        name: &str,
        input: Value,
        opts: DoOptions,
    ) -> Result<Value, ActionError> {
        let key = opts.key.unwrap_or_else(|| derive_key(name, &input));
        let new = NewAction {
            key,
            name: name.to_string(),
            kind: kind::FUNCTION.to_string(),
            input,
            retry: opts.retry.unwrap_or_default(),
        };
        let registered = self.inner.registry.actions.contains_key(name);
        let (action, claimed) = match self.record_new(new, registered)? {
            Recorded::Claimed(a) => (a, true),
            Recorded::Existing(a) | Recorded::Queued(a) => (a, false),
        };
        match action.status {
            ActionStatus::Completed => return Ok(action.result.unwrap_or(Value::Null)),
            ActionStatus::Failed => {
                return Err(ActionError::fatal(action.error.unwrap_or_default()));
            }
            _ => {}
        }
        let id = action.id.clone();
        if claimed {
            let kind = action.kind.clone();
            let result = self.attempt(action).await;
            if let Ok(value) = &result {
                // Completed in the attempt's own turn; other callers of the key hear it too.
                self.finish(&id, Ok(value.clone()));
                return result;
            }
            let now = self.now();
            let jitter: f64 = rand::random();
            let outcome = self.with_storage(|s, _| {
                let outcome = s.internal(|c| record_action(c, &id, &kind, &result, now, jitter))?;
                if outcome.is_none() {
                    // The pump takes over from here: retried when the alarm says.
                    if let Some(at) = s.internal(store::next_due)? {
                        Self::wake_at(s, at)?;
                    }
                }
                Ok(outcome)
            })?;
            if let Some(outcome) = outcome {
                // Other callers of the same key wait for this attempt too.
                self.finish(&id, outcome.clone());
                return outcome;
            }
            self.inner.work.notify_one();
        }
        // No await between the write above and this: the pump cannot finish the action
        // before the waiter is in place.
        let (tx, rx) = oneshot::channel();
        self.inner.waiters.lock().entry(id).or_default().push(tx);
        rx.await.unwrap_or_else(|_| {
            Err(ActionError::retry(
                "the object stopped before the action finished",
            ))
        })
    }

    /// `$.try`: one attempt of the action registered as `name`, not recorded.
    pub async fn try_(&self, name: &str, input: Value) -> Result<Value, ActionError> {
        let f = self
            .inner
            .registry
            .actions
            .get(name)
            .cloned()
            .ok_or_else(|| ActionError::fatal(format!("no action named `{name}` is registered")))?;
        self.with_timeout(self.inner.env.action_timeout, f(self.clone(), input))
            .await
    }

    pub(crate) async fn with_timeout<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, ActionError>>,
    ) -> Result<T, ActionError> {
        let ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        let deadline = self
            .inner
            .state
            .clock()
            .sleep_until(self.now().saturating_add(ms));
        tokio::select! {
            r = fut => r,
            () = deadline => Err(ActionError::retry(format!("timed out after {} ms", limit.as_millis()))),
        }
    }

    pub fn action(&self, id: &str) -> Result<Option<Action>, ObjectError> {
        self.read(|c| store::action_by_id(c, id))
    }

    pub fn action_by_key(&self, key: &str) -> Result<Option<Action>, ObjectError> {
        self.read(|c| store::action_by_key(c, key))
    }

    pub fn actions(
        &self,
        status: Option<ActionStatus>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Action>, ObjectError> {
        self.read(|c| store::list_actions(c, status, after, limit))
    }

    // ---- dead-letter queue ----

    pub fn dlq(&self, after: i64, limit: usize) -> Result<Vec<DlqEntry>, ObjectError> {
        self.read(|c| store::dlq_list(c, after, limit))
    }

    /// Puts a dead entry back to work with fresh attempts and removes it from the DLQ.
    pub fn dlq_replay(&self, id: &str) -> Result<DlqEntry, ObjectError> {
        let now = self.now();
        let entry = self.with_storage(|s, epoch| {
            let found = s.internal(|c| {
                let Some(entry) = store::dlq_get(c, id)? else {
                    return Ok(None);
                };
                if entry.kind == "delivery" {
                    let p = &entry.payload;
                    let target: DeliveryTarget = serde_json::from_value(p["target"].clone())
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    let event: Event = serde_json::from_value(p["event"].clone())
                        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                    let retry: RetryPolicy = serde_json::from_value(p["retry"].clone())
                        .unwrap_or_else(|_| RetryPolicy::delivery());
                    let sub = p["subscription"].as_str().unwrap_or_default();
                    store::enqueue_delivery(c, &target, sub, &event, &retry, now, epoch)?;
                } else {
                    store::reset_action(c, &entry.reference, now)?;
                }
                store::dlq_delete(c, id)?;
                Ok(Some(entry))
            })?;
            if found.is_some() {
                Self::wake_at(s, now)?;
            }
            Ok(found)
        })?;
        self.inner.work.notify_one();
        entry.ok_or_else(|| ObjectError::not_found(format!("no DLQ entry `{id}`")))
    }

    /// Drops a dead entry for good.
    pub fn dlq_delete(&self, id: &str) -> Result<bool, ObjectError> {
        self.write(|c, _| store::dlq_delete(c, id))
    }

    /// Counts for status pages: events, outbox, DLQ, subscriptions.
    pub fn counts(&self) -> Result<Value, ObjectError> {
        self.read(|c| {
            Ok(json!({
                "events": store::event_count(c)?,
                "lastEventSeq": store::last_event_seq(c)?,
                "outbox": store::outbox_len(c)?,
                "dlq": store::dlq_count(c)?,
                "subscriptions": store::subscription_count(c)?,
                "schedules": schedules::count(c)?,
                "activeRuns": flow_store::run_count(c)?,
            }))
        })
    }

    // ---- $.every: schedules ----

    /// Adds a schedule, first due at its next time after now. With an `id` that exists:
    /// the same definition returns the stored schedule (flag false); another definition is
    /// a conflict unless `replace`, which takes the new definition and keeps the history.
    pub fn schedule(
        &self,
        req: NewSchedule,
        replace: bool,
    ) -> Result<(Schedule, bool), ObjectError> {
        let now = self.now();
        let new = Schedule::build(req, now).map_err(ObjectError::bad_request)?;
        if let ScheduleAction::Function(f) = &new.action
            && !self.inner.registry.actions.contains_key(&f.name)
        {
            return Err(ObjectError::bad_request(format!(
                "action.function: no action named `{}` is registered",
                f.name
            )));
        }
        self.with_storage(|s, _| {
            let existing = s.internal(|c| schedules::get(c, &new.id))?;
            let created = match existing {
                Some(old) if old.same_definition(&new) => return Ok(Ok((old, false))),
                Some(_) if !replace => {
                    return Ok(Err(ObjectError::new(
                        ErrorKind::Conflict,
                        format!(
                            "a schedule `{}` exists with another definition; delete it first",
                            new.id
                        ),
                    )));
                }
                Some(_) => {
                    s.internal(|c| schedules::replace(c, &new))?;
                    false
                }
                None => {
                    if s.internal(schedules::count)? >= schedules::MAX_SCHEDULES {
                        return Ok(Err(ObjectError::bad_request(format!(
                            "an object may have at most {} schedules",
                            schedules::MAX_SCHEDULES
                        ))));
                    }
                    s.internal(|c| schedules::insert(c, &new))?;
                    true
                }
            };
            if let Some(at) = new.next_run_at {
                Self::wake_at(s, at)?;
            }
            let stored = s.internal(|c| schedules::get(c, &new.id))?;
            Ok(Ok((stored.unwrap_or(new), created)))
        })?
    }

    pub fn schedules(&self, after: i64, limit: usize) -> Result<Vec<Schedule>, ObjectError> {
        self.read(|c| schedules::list(c, after, limit))
    }

    pub fn schedule_by_id(&self, id: &str) -> Result<Option<Schedule>, ObjectError> {
        self.read(|c| schedules::get(c, id))
    }

    /// Deletes a schedule; runs already started go on. The alarm moves to the next work.
    pub fn unschedule(&self, id: &str) -> Result<bool, ObjectError> {
        let now = self.now();
        self.with_storage(|s, _| {
            if !s.internal(|c| schedules::delete(c, id))? {
                return Ok(false);
            }
            match s.internal(|c| store::next_work(c, now))? {
                Some(at) if s.get_alarm()? != Some(at) => s.set_alarm(at)?,
                Some(_) => {}
                None => s.delete_alarm()?,
            }
            Ok(true)
        })
    }

    // ---- durable workflows ----

    /// Stores a declarative workflow definition (see `flow_def`). The flag says whether it
    /// is new; runs already started keep the definition they started with.
    pub fn define_workflow(&self, def: Value) -> Result<(Value, bool), ObjectError> {
        let parsed = crate::flow_def::parse(&def).map_err(ObjectError::bad_request)?;
        for step in &parsed.steps {
            if let crate::flow_def::Op::Action { kind: k, name, .. } = &step.op
                && *k == kind::FUNCTION
                && !self.inner.registry.actions.contains_key(name)
            {
                return Err(ObjectError::bad_request(format!(
                    "step `{}`: no action named `{name}` is registered",
                    step.name
                )));
            }
        }
        if self.inner.registry.workflows.contains_key(&parsed.name) {
            return Err(ObjectError::new(
                ErrorKind::Conflict,
                format!("`{}` is a workflow of the class's code", parsed.name),
            ));
        }
        let now = self.now();
        let created = self.write(|c, _| flow_store::put_definition(c, &parsed.name, &def, now))?;
        Ok((def, created))
    }

    pub fn workflow_definitions(&self) -> Result<Vec<Value>, ObjectError> {
        self.read(flow_store::definitions)
    }

    pub fn workflow_definition(&self, name: &str) -> Result<Option<Value>, ObjectError> {
        self.read(|c| flow_store::definition(c, name))
    }

    pub fn delete_workflow(&self, name: &str) -> Result<bool, ObjectError> {
        self.write(|c, _| flow_store::delete_definition(c, name))
    }

    /// Starts a run of the workflow `name` (one of the class's, or a stored definition).
    /// With an `id` that exists, that run is returned (flag false) and nothing starts.
    pub fn start_workflow(
        &self,
        name: &str,
        input: Value,
        id: Option<String>,
    ) -> Result<(Run, bool), ObjectError> {
        if input.to_string().len() > flow::MAX_STEP_RESULT {
            return Err(ObjectError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "a run's input is at most {} bytes of JSON",
                    flow::MAX_STEP_RESULT
                ),
            ));
        }
        let id = match id {
            Some(id) => {
                crate::flow_def::check_name(&id)
                    .map_err(|e| ObjectError::bad_request(format!("run id: {e}")))?;
                id
            }
            None => new_id("run"),
        };
        let in_code = self.inner.registry.workflows.contains_key(name);
        let now = self.now();
        let out = self.with_storage(|s, epoch| {
            let found = s.internal(|c| {
                if let Some(run) = flow_store::run(c, &id)? {
                    return Ok(Err(Some(run)));
                }
                let def = if in_code {
                    None
                } else {
                    match flow_store::definition(c, name)? {
                        Some(d) => Some(d),
                        None => return Ok(Err(None)),
                    }
                };
                flow_store::insert_run(c, &id, name, &input, def.as_ref(), now, epoch)?;
                Ok(Ok(flow_store::run(c, &id)?))
            })?;
            if found.is_ok() {
                Self::wake_at(s, now)?;
            }
            Ok(found)
        })?;
        self.inner.work.notify_one();
        match out {
            Ok(Some(run)) => Ok((run, true)),
            Ok(None) => Err(ObjectError::internal("the new run was not stored")),
            Err(Some(run)) if run.workflow == name => Ok((run, false)),
            Err(Some(run)) => Err(ObjectError::new(
                ErrorKind::Conflict,
                format!(
                    "run `{id}` exists and belongs to workflow `{}`",
                    run.workflow
                ),
            )),
            Err(None) => Err(ObjectError::not_found(format!(
                "no workflow named `{name}`"
            ))),
        }
    }

    /// A run with its journal.
    pub fn workflow_run(&self, id: &str) -> Result<Option<Run>, ObjectError> {
        self.read(|c| {
            let Some(mut run) = flow_store::run(c, id)? else {
                return Ok(None);
            };
            run.journal = Some(flow_store::journal(c, id)?);
            Ok(Some(run))
        })
    }

    pub fn workflow_runs(
        &self,
        workflow: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Run>, ObjectError> {
        self.read(|c| flow_store::runs(c, workflow, after, limit))
    }

    /// Cancels a run: it stops at its next step (no compensation runs).
    pub fn cancel_run(&self, id: &str) -> Result<Run, ObjectError> {
        let now = self.now();
        let out = self.write(|c, _| {
            let Some(run) = flow_store::run(c, id)? else {
                return Ok(None);
            };
            let cancelled = flow_store::cancel_run(c, id, now)?;
            Ok(Some((cancelled, flow_store::run(c, id)?.unwrap_or(run))))
        })?;
        match out {
            None => Err(ObjectError::not_found(format!("no run `{id}`"))),
            Some((true, run)) => Ok(run),
            Some((false, run)) => Err(ObjectError::new(
                ErrorKind::Conflict,
                format!("run `{id}` already ended ({})", run.status),
            )),
        }
    }

    /// One execution of a run, in a turn of its own: its steps' writes commit as they go
    /// and where the run stands commits with the last of them.
    async fn execute_run(&self, run: Run) -> Result<(), ActionError> {
        let f: Option<WorkflowFn> = match self.inner.registry.workflows.get(&run.workflow) {
            Some(f) => Some(f.clone()),
            None => match run.definition.as_ref().map(crate::flow_def::parse) {
                Some(Ok(def)) => Some(Arc::new(move |flow: Flow| {
                    Box::pin(crate::flow_def::run(flow, def.clone())) as BoxFuture<'static, _>
                })),
                Some(Err(e)) => {
                    tracing::error!(run = %run.id, error = %e, "stored workflow definition is unreadable");
                    None
                }
                None => None,
            },
        };
        let cx = self.clone();
        self.inner
            .state
            .run_turn(move |_| {
                Box::pin(async move {
                    let now = cx.now();
                    let Some(f) = f else {
                        let msg = format!("no workflow named `{}` is registered", run.workflow);
                        cx.write(|c, _| {
                            flow_store::settle_run(c, &run.id, flow_store::status::FAILED, None, None, Some(&msg), now)
                        })?;
                        return Ok(Value::Null);
                    };
                    let flow = Flow::new(cx.clone(), run.id.clone(), run.workflow.clone(), run.input.clone());
                    let settled = flow::execute(flow, f).await;
                    let now = cx.now();
                    cx.write(|c, _| {
                        flow_store::settle_run(
                            c,
                            &run.id,
                            settled.status,
                            settled.next_at,
                            settled.result.as_ref(),
                            settled.error.as_deref(),
                            now,
                        )
                    })?;
                    if flow_store::status::is_final(settled.status) {
                        tracing::debug!(run = %run.id, status = settled.status, "workflow run ended");
                    }
                    Ok(Value::Null)
                })
            })
            .await
            .map(|_| ())
            .map_err(ActionError::from)
    }

    // ---- the pump ----

    /// Moves the object's durable work along; call it from the class's `alarm`. Returns
    /// once nothing is due now, with the alarm set for whatever is due later.
    pub async fn on_alarm(&self) -> Result<(), ObjectError> {
        if self.inner.pumping.swap(true, Ordering::AcqRel) {
            // A pump is running in this activation: it will see the work.
            self.inner.work.notify_one();
            return Ok(());
        }
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _done = Done(&self.inner.pumping);
        self.pump().await
    }

    async fn pump(&self) -> Result<(), ObjectError> {
        let mut running: FuturesUnordered<BoxFuture<'static, Outcome>> = FuturesUnordered::new();
        let mut busy = Busy::default();
        if !self.inner.recovered.load(Ordering::Acquire) {
            let now = self.now();
            let released = self.write(|c, epoch| {
                Ok(store::release_stale_claims(c, epoch, now)?
                    + flow_store::release_stale_runs(c, epoch, now)?)
            })?;
            self.inner.recovered.store(true, Ordering::Release);
            if released > 0 {
                tracing::info!(released, "took over work left by an earlier activation");
            }
        }
        loop {
            let now = self.now();
            let capacity = self.inner.env.max_in_flight.saturating_sub(running.len());
            let (claimed, more, next) = self.write(|c, epoch| {
                let more_due = schedules::fire_due(c, now, epoch, DISPATCH_BATCH)?;
                let dispatched = self.dispatch(c, epoch, now)?;
                let claimed = self.claim(c, epoch, now, capacity, &mut busy)?;
                let more = dispatched == DISPATCH_BATCH || more_due;
                Ok((claimed, more, store::next_due(c)?))
            })?;
            if claimed.iter().any(|w| w.leaves_by_http()) {
                // Output gate: what preceded a webhook is durable before it leaves.
                self.inner.state.flush().await?;
            }
            for work in claimed {
                running.push(self.start(work));
            }
            if running.is_empty() {
                if more {
                    continue;
                }
                // Idle. Under steady load more work comes within moments: waiting a little
                // spares clearing and re-arming the alarm (a catalog write each) per item.
                let linger = tokio::time::sleep(PUMP_LINGER);
                tokio::select! {
                    () = self.inner.work.notified() => {
                        // Let the turns that made the work finish their shared commit first,
                        // so their events are dispatched in one batch.
                        self.inner.state.settled().await;
                        continue;
                    }
                    () = linger => {}
                }
                if self.hand_over_to_alarm()? {
                    return Ok(());
                }
                continue;
            }
            // Wake for the next retry; work already due but not claimable (all slots busy,
            // or in flight) is picked up when something finishes.
            let wake_at = next.filter(|t| *t > now).unwrap_or(i64::MAX);
            let sleep = self.inner.state.clock().sleep_until(wake_at);
            tokio::select! {
                Some(first) = running.next() => {
                    // Record everything finished by now in one transaction.
                    let mut done = vec![first];
                    while let Some(Some(o)) = running.next().now_or_never() {
                        done.push(o);
                    }
                    let finished = self.record(done, &mut busy)?;
                    if !finished.is_empty() {
                        // Output gate: callers hear of an outcome once it is durable.
                        self.inner.state.flush().await?;
                        for (id, result) in finished {
                            self.finish(&id, result);
                        }
                    }
                }
                () = self.inner.work.notified() => {
                    // New work while other work runs: let a little more gather, so a burst
                    // of events is dispatched in one transaction rather than one each.
                    tokio::time::sleep(COALESCE).await;
                }
                () = sleep => {}
            }
        }
    }

    /// Ends the pump if nothing is due now, leaving what is due later to the alarm, in one
    /// transaction. Returns false if work is due (it arrived without a nudge: deliveries from
    /// other objects write directly), so the pump goes on.
    fn hand_over_to_alarm(&self) -> Result<bool, ObjectError> {
        let now = self.now();
        self.with_storage(|s, _| {
            let next = s.internal(|c| store::next_work(c, now))?;
            match next {
                Some(at) if at <= now => Ok(false),
                // Later than the alarm being handled, which the host clears after.
                Some(at) => s.set_alarm(at).map(|()| true),
                None => s.delete_alarm().map(|()| true),
            }
        })
    }

    /// Hands new events to matching handlers (as actions) and subscriptions (as outbox
    /// rows), in the same transaction that moves the dispatch cursor. Returns how many.
    fn dispatch(&self, c: &Connection, epoch: i64, now: i64) -> rusqlite::Result<usize> {
        let events = store::undispatched(c, DISPATCH_BATCH)?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(0);
        };
        let subs = store::subscriptions(c)?;
        let patterns: Vec<Option<Pattern>> =
            subs.iter().map(|s| Pattern::parse(&s.on).ok()).collect();
        for ev in &events {
            for (sub, pattern) in subs.iter().zip(&patterns) {
                if !pattern.as_ref().is_some_and(|p| p.matches(&ev.kind)) {
                    continue;
                }
                if matches!(sub.deliver, DeliveryTarget::Object(_)) && ev.hops >= MAX_HOPS {
                    tracing::warn!(event = %ev.id, subscription = %sub.id,
                        "event passed {MAX_HOPS} objects; not delivered further");
                    continue;
                }
                store::enqueue_delivery(c, &sub.deliver, &sub.id, ev, &sub.retry, now, epoch)?;
            }
            for h in &self.inner.registry.handlers {
                if h.pattern.matches(&ev.kind) {
                    let action = NewAction {
                        key: format!("on:{}:{}:{}", h.name, ev.id, ev.seq),
                        name: h.name.clone(),
                        kind: kind::HANDLER.to_string(),
                        input: serde_json::to_value(ev).unwrap_or(Value::Null),
                        retry: h.retry,
                    };
                    store::enqueue_action(c, &action, &new_id("act"), now, epoch)?;
                }
            }
        }
        flow_store::resolve_waits(c, &events, now)?;
        store::mark_dispatched(c, last)?;
        Ok(events.len())
    }

    /// Picks the work that is due and claims it for this activation.
    fn claim(
        &self,
        c: &Connection,
        epoch: i64,
        now: i64,
        capacity: usize,
        busy: &mut Busy,
    ) -> rusqlite::Result<Vec<Work>> {
        let mut out = Vec::new();
        if capacity == 0 {
            return Ok(out);
        }
        // Webhooks: any due message, in any order.
        for m in store::due_webhooks(c, now, capacity)? {
            if !busy.webhooks.contains(&m.seq) {
                busy.webhooks.insert(m.seq);
                out.push(Work::Webhook(m));
            }
        }
        // Objects: one batch per destination at a time, in order, when its head is due.
        for dest in store::object_dests(c)? {
            if out.len() >= capacity {
                break;
            }
            if busy.dests.contains(&dest) {
                continue;
            }
            let batch = store::outbox_queue(c, &dest, DELIVERY_BATCH)?;
            if batch.first().is_some_and(|head| head.next_at <= now) {
                busy.dests.insert(dest.clone());
                out.push(Work::ObjectBatch(dest, batch));
            }
        }
        let lease = |timeout: Duration| now + self.lease_ms(timeout);
        for w in &out {
            match w {
                Work::Webhook(m) => {
                    store::claim_delivery(c, m.seq, lease(self.inner.env.webhook_timeout), epoch)?;
                }
                Work::ObjectBatch(_, batch) => {
                    for m in batch {
                        store::claim_delivery(
                            c,
                            m.seq,
                            lease(self.inner.env.action_timeout),
                            epoch,
                        )?;
                    }
                }
                Work::Action(_) | Work::Run(_) => {}
            }
        }
        let room = capacity.saturating_sub(out.len());
        if room > 0 {
            for a in store::due_actions(c, now, room + busy.actions.len())? {
                if out.len() >= capacity {
                    break;
                }
                if busy.actions.contains(&a.id) {
                    continue;
                }
                let timeout = if a.kind == kind::WEBHOOK {
                    self.inner.env.webhook_timeout
                } else {
                    self.inner.env.action_timeout
                };
                store::claim_action(c, &a.id, now, lease(timeout), epoch)?;
                busy.actions.insert(a.id.clone());
                out.push(Work::Action(a));
            }
        }
        let room = capacity.saturating_sub(out.len());
        if room > 0 {
            for run in flow_store::due_runs(c, now, room + busy.runs.len())? {
                if out.len() >= capacity {
                    break;
                }
                if busy.runs.contains(&run.id) {
                    continue;
                }
                // An execution is one time budget of steps, each at most an action's timeout.
                flow_store::claim_run(c, &run.id, lease(self.inner.env.action_timeout * 2), epoch)?;
                busy.runs.insert(run.id.clone());
                out.push(Work::Run(run));
            }
        }
        Ok(out)
    }

    /// Starts one piece of claimed work.
    fn start(&self, work: Work) -> BoxFuture<'static, Outcome> {
        let cx = self.clone();
        match work {
            Work::ObjectBatch(dest, msgs) => Box::pin(async move {
                let limit = cx.inner.env.action_timeout;
                let result = cx
                    .with_timeout(limit, cx.deliver_to_object(&dest, &msgs))
                    .await;
                Outcome::ObjectBatch { dest, msgs, result }
            }),
            Work::Webhook(msg) => Box::pin(async move {
                let result = cx.deliver_webhook(&msg).await;
                Outcome::Webhook {
                    msg: Box::new(msg),
                    result,
                }
            }),
            Work::Action(a) => Box::pin(async move {
                let id = a.id.clone();
                let kind = a.kind.clone();
                let result = cx.attempt(a).await;
                Outcome::Action { id, kind, result }
            }),
            Work::Run(run) => Box::pin(async move {
                let id = run.id.clone();
                let result = cx.execute_run(run).await;
                Outcome::Run { id, result }
            }),
        }
    }

    async fn deliver_to_object(&self, dest: &str, msgs: &[Outgoing]) -> Result<usize, ActionError> {
        let name = dest.strip_prefix("object:").unwrap_or(dest);
        let state = &self.inner.state;
        let sender = format!("{}/{}", state.namespace(), state.id());
        let source = state
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| state.id().to_string());
        let batch: Vec<(i64, NewEvent)> = msgs
            .iter()
            .map(|m| {
                (
                    m.seq,
                    NewEvent {
                        id: m.event.id.clone(),
                        kind: m.event.kind.clone(),
                        subject: m.event.subject.clone(),
                        data: m.event.data.clone(),
                        ts: m.event.ts,
                        source: Some(source.clone()),
                        hops: m.event.hops + 1,
                    },
                )
            })
            .collect();
        let now = self.now();
        state
            .stub(state.namespace(), name)
            .storage(move |s| receive_into(s, &sender, &batch, now))
            .await
            .map_err(ActionError::from)
    }

    async fn deliver_webhook(&self, msg: &Outgoing) -> Result<(), String> {
        let DeliveryTarget::Webhook(hook) = &msg.target else {
            return Err("not a webhook".into());
        };
        let mut headers: Vec<(String, String)> = hook.headers.clone().into_iter().collect();
        headers.push(("content-type".into(), "application/json".into()));
        headers.push((
            "idempotency-key".into(),
            format!("{}:{}", msg.event.id, msg.subscription),
        ));
        headers.push(("x-dotdo-event-type".into(), msg.event.kind.clone()));
        let body = serde_json::to_vec(&msg.event).unwrap_or_default();
        let call = HttpCall {
            method: http::Method::POST,
            url: hook.url.clone(),
            headers,
            body,
            timeout: self.inner.env.webhook_timeout,
        };
        let reply = self.inner.env.outbound.send(call).await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}: {}", reply.status, snippet(&reply.body)))
        }
    }

    /// One attempt of an action.
    async fn attempt(&self, a: Action) -> Result<Value, ActionError> {
        match a.kind.as_str() {
            kind::WEBHOOK => self.webhook_action(&a).await,
            kind::FUNCTION | kind::HANDLER => {
                let cx = self.clone();
                let failure = Arc::new(Mutex::new(None::<ActionError>));
                let slot = failure.clone();
                // A turn of its own: its writes and its completion commit together, or roll
                // back together when it fails (the turn fails with it).
                let outcome = self
                    .inner
                    .state
                    .run_turn(move |_| {
                        Box::pin(async move {
                            cx.run_in_turn(a).await.map_err(|e| {
                                let err = ObjectError::internal(e.message.clone());
                                *slot.lock() = Some(e);
                                err
                            })
                        })
                    })
                    .await;
                match outcome {
                    Ok(v) => Ok(v),
                    Err(e) => Err(failure
                        .lock()
                        .take()
                        .unwrap_or_else(|| ActionError::from(e))),
                }
            }
            other => Err(ActionError::fatal(format!("unknown action kind `{other}`"))),
        }
    }

    async fn run_in_turn(&self, a: Action) -> Result<Value, ActionError> {
        let reg = &self.inner.registry;
        let fut: BoxFuture<'static, Result<Value, ActionError>> = if a.kind == kind::HANDLER {
            let h = reg
                .handlers
                .iter()
                .find(|h| h.name == a.name)
                .ok_or_else(|| {
                    ActionError::fatal(format!("no event handler named `{}`", a.name))
                })?;
            let ev: Event = serde_json::from_value(a.input.clone())
                .map_err(|e| ActionError::fatal(format!("stored event is unreadable: {e}")))?;
            let f = h.run.clone();
            let cx = self.clone();
            Box::pin(async move { f(cx, ev).await.map(|()| Value::Null) })
        } else {
            let f = reg.actions.get(&a.name).cloned().ok_or_else(|| {
                ActionError::fatal(format!("no action named `{}` is registered", a.name))
            })?;
            f(self.clone(), a.input.clone())
        };
        let value = self
            .with_timeout(self.inner.env.action_timeout, fut)
            .await?;
        let now = self.now();
        // Completion commits with the action's last writes.
        let done = self.write(|c, _| store::complete_action(c, &a.id, &value, now))?;
        if !done {
            // Completed (or reset) meanwhile by another attempt: this one's writes go.
            return Err(ActionError::fatal(
                "the action was no longer running; attempt dropped",
            ));
        }
        Ok(value)
    }

    async fn webhook_action(&self, a: &Action) -> Result<Value, ActionError> {
        let spec: WebhookAction = serde_json::from_value(a.input.clone())
            .map_err(|e| ActionError::fatal(format!("stored webhook is unreadable: {e}")))?;
        self.send_webhook(spec, &a.key).await
    }

    /// Makes an HTTP call from inside a turn (a workflow step), after the turn's writes so
    /// far are durable (the output gate). Non-2xx replies are retryable errors.
    pub async fn call_webhook(&self, w: &WebhookAction, key: &str) -> Result<Value, ActionError> {
        self.inner.state.flush().await?;
        self.send_webhook(w.clone(), key).await
    }

    async fn send_webhook(&self, spec: WebhookAction, key: &str) -> Result<Value, ActionError> {
        let method = http::Method::from_bytes(spec.method.as_deref().unwrap_or("POST").as_bytes())
            .map_err(|_| ActionError::fatal("invalid HTTP method"))?;
        let mut headers: Vec<(String, String)> = spec.headers.into_iter().collect();
        headers.push(("idempotency-key".into(), key.to_string()));
        let body = match spec.body {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.into_bytes(),
            Some(v) => {
                headers.push(("content-type".into(), "application/json".into()));
                serde_json::to_vec(&v).unwrap_or_default()
            }
        };
        let call = HttpCall {
            method,
            url: spec.url,
            headers,
            body,
            timeout: self.inner.env.webhook_timeout,
        };
        let reply = self
            .inner
            .env
            .outbound
            .send(call)
            .await
            .map_err(ActionError::retry)?;
        if !reply.is_success() {
            return Err(ActionError::retry(format!(
                "HTTP {}: {}",
                reply.status,
                snippet(&reply.body)
            )));
        }
        let body = if reply.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice::<Value>(&reply.body)
                .unwrap_or_else(|_| Value::String(snippet(&reply.body)))
        };
        Ok(json!({ "status": reply.status, "body": body }))
    }

    /// Records finished work, all of it in one transaction. Returns the final outcomes for
    /// `do_` callers, to be answered once the transaction is durable.
    fn record(&self, outcomes: Vec<Outcome>, busy: &mut Busy) -> Result<Finished, ObjectError> {
        let now = self.now();
        let mut finished: Finished = Vec::new();
        self.write(|c, _| {
            for outcome in &outcomes {
                let jitter: f64 = rand::random();
                match outcome {
                    Outcome::ObjectBatch { msgs, result, .. } => {
                        for m in msgs {
                            match result {
                                Ok(_) => store::delivered(c, m.seq)?,
                                Err(e) if e.interrupted => {
                                    store::release_delivery(c, m.seq, now + INTERRUPTED_RETRY_MS)?;
                                }
                                Err(e) => {
                                    store::delivery_failed(c, m, &e.message, now, jitter)?;
                                }
                            }
                        }
                    }
                    Outcome::Webhook { msg, result } => match result {
                        Ok(()) => store::delivered(c, msg.seq)?,
                        Err(e) => {
                            store::delivery_failed(c, msg, e, now, jitter)?;
                        }
                    },
                    Outcome::Action { id, kind, result } => {
                        if let Some(fin) = record_action(c, id, kind, result, now, jitter)? {
                            finished.push((id.clone(), fin));
                        }
                    }
                    Outcome::Run { id, result } => match result {
                        Ok(()) => {}
                        Err(e) if e.interrupted => {
                            flow_store::release_run(c, id, now + INTERRUPTED_RETRY_MS)?;
                        }
                        Err(e) => {
                            let failed = flow_store::crashed(c, id, &e.message, now)?;
                            tracing::error!(run = %id, error = %e, failed, "a workflow run's execution crashed");
                        }
                    },
                }
            }
            Ok(())
        })?;
        for outcome in outcomes {
            match outcome {
                Outcome::ObjectBatch { dest, result, .. } => {
                    busy.dests.remove(&dest);
                    if let Err(e) = result {
                        tracing::warn!(dest, error = %e, "delivery to an object failed");
                    }
                }
                Outcome::Webhook { msg, .. } => {
                    busy.webhooks.remove(&msg.seq);
                }
                Outcome::Action { id, .. } => {
                    busy.actions.remove(&id);
                }
                Outcome::Run { id, .. } => {
                    busy.runs.remove(&id);
                }
            }
        }
        Ok(finished)
    }

    fn finish(&self, id: &str, result: Result<Value, ActionError>) {
        let waiters = self.inner.waiters.lock().remove(id).unwrap_or_default();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

/// Records one attempt of an action: completion of a webhook action (a function action
/// completes in its own turn), a retry, or the end in the DLQ. Returns the action's final
/// outcome, if it has one now.
fn record_action(
    c: &Connection,
    id: &str,
    kind: &str,
    result: &Result<Value, ActionError>,
    now: i64,
    jitter: f64,
) -> rusqlite::Result<Option<Result<Value, ActionError>>> {
    match result {
        Ok(value) => {
            if kind == kind::WEBHOOK {
                store::complete_action(c, id, value, now)?;
            }
            Ok(Some(Ok(value.clone())))
        }
        // Cut short by shutdown: not the action's failure.
        Err(e) if e.interrupted => {
            store::release_action(c, id, now + INTERRUPTED_RETRY_MS)?;
            Ok(None)
        }
        Err(e) => {
            let after = store::action_failed(c, id, &e.message, e.retryable, now, jitter)?;
            tracing::debug!(action = %id, error = %e, ?after, "action attempt failed");
            match after {
                AfterFailure::Dead => {
                    tracing::warn!(action = %id, error = %e, "action failed for good; moved to the DLQ");
                    Ok(Some(Err(ActionError::fatal(e.message.clone()))))
                }
                // Already final (another attempt finished it): answer with that.
                AfterFailure::Ignored => {
                    Ok(store::action_by_id(c, id)?.and_then(|a| match a.status {
                        ActionStatus::Completed => Some(Ok(a.result.unwrap_or(Value::Null))),
                        ActionStatus::Failed => {
                            Some(Err(ActionError::fatal(a.error.unwrap_or_default())))
                        }
                        _ => None,
                    }))
                }
                AfterFailure::RetryAt(_) => Ok(None),
            }
        }
    }
}

/// Takes a batch of events from another object into this one's log, in the receiving
/// object's turn, and wakes its pump so its handlers and subscriptions see them.
fn receive_into(
    s: &mut Storage,
    sender: &str,
    batch: &[(i64, NewEvent)],
    now: i64,
) -> Result<usize, StorageError> {
    let taken = s.internal(|c| {
        store::ensure_schema(c)?;
        let epoch = store::current_epoch(c)?;
        store::receive(c, sender, batch, epoch)
    })?;
    if taken > 0 {
        Context::wake_at(s, now)?;
    }
    Ok(taken)
}

/// The idempotency key of a `$.do` without one: the action's name and a hash of its input.
pub fn derive_key(name: &str, input: &Value) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(input.to_string().as_bytes());
    format!("{name}:{}", hex::encode(&digest[..16]))
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(512).collect();
    if text.chars().count() > 512 {
        s.push('…');
    }
    s
}

/// The input of a webhook action (the built-in class's `POST /_actions`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookAction {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

impl WebhookAction {
    pub fn check(&self) -> Result<(), String> {
        check_url(&self.url)?;
        if let Some(m) = &self.method {
            match m.to_ascii_uppercase().as_str() {
                "GET" | "POST" | "PUT" | "PATCH" | "DELETE" => {}
                _ => {
                    return Err(format!(
                        "webhook.method `{m}` is not GET, POST, PUT, PATCH or DELETE"
                    ));
                }
            }
        }
        for (k, v) in &self.headers {
            http::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("webhook header name `{k}` is invalid"))?;
            http::HeaderValue::from_str(v)
                .map_err(|_| format!("webhook header `{k}` has an invalid value"))?;
        }
        Ok(())
    }
}

/// Work claimed by the pump.
enum Work {
    ObjectBatch(String, Vec<Outgoing>),
    Webhook(Outgoing),
    Action(Action),
    Run(Run),
}

impl Work {
    fn leaves_by_http(&self) -> bool {
        match self {
            Work::Webhook(_) => true,
            Work::Action(a) => a.kind == kind::WEBHOOK,
            Work::ObjectBatch(..) | Work::Run(_) => false,
        }
    }
}

/// What the running pump has in flight, so it is not claimed twice.
#[derive(Default)]
struct Busy {
    dests: HashSet<String>,
    webhooks: HashSet<i64>,
    actions: HashSet<String>,
    runs: HashSet<String>,
}
