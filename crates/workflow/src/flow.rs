//! Durable workflows: a run is a function of its input that calls named steps; each step's
//! outcome is journaled, so after a crash, an eviction or a sleep the function is simply run
//! again from the top and every journaled step returns its recorded result without running.
//!
//! A step that cannot finish now (a sleep, a wait for an event, a retry after a failed
//! attempt, a durable action not done yet) *suspends* the run: the step returns
//! [`FlowError::Suspended`], which the function passes up with `?`, and the run is due again
//! at the time the journal says (the object's alarm brings it back). When a step fails for
//! good and the function gives up, the compensations of the steps that completed run in
//! reverse order (a saga), each journaled like a step.
//!
//! A function must call its steps in the same order on every execution (it may branch on
//! step results, which are replayed, but not on the clock or randomness outside steps).

use crate::context::Context;
use crate::flow_store::{self, StepRecord, Wait, status};
use crate::model::{ActionStatus, Event, NewAction};
use crate::pattern::Pattern;
use crate::registry::ActionError;
use crate::retry::RetryPolicy;
use crate::store;
use dotdo_runtime::ObjectError;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Most steps (including sleeps, waits and compensations) one run may journal.
pub const MAX_STEPS: u32 = 1024;
/// Largest journaled step result, as JSON.
pub const MAX_STEP_RESULT: usize = 1 << 20;

/// Why a workflow function stopped early.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// A step is not finished yet; the run goes on later. Pass it up with `?`.
    #[error("the run is suspended until a step can go on")]
    Suspended,
    /// A step (or the function itself) failed for good.
    #[error("{0}")]
    Failed(ActionError),
    /// The run was cancelled.
    #[error("the run was cancelled")]
    Cancelled,
}

impl FlowError {
    pub fn fail(message: impl Into<String>) -> Self {
        FlowError::Failed(ActionError::fatal(message))
    }
}

impl From<ActionError> for FlowError {
    fn from(e: ActionError) -> Self {
        FlowError::Failed(e)
    }
}

impl From<ObjectError> for FlowError {
    fn from(e: ObjectError) -> Self {
        FlowError::Failed(ActionError::from(e))
    }
}

pub(crate) type WorkflowFn =
    Arc<dyn Fn(Flow) -> BoxFuture<'static, Result<Value, FlowError>> + Send + Sync>;
pub(crate) type UndoFn =
    Box<dyn FnOnce(Flow, Value) -> BoxFuture<'static, Result<Value, ActionError>> + Send>;

/// Options of one step.
#[derive(Default)]
pub struct StepOptions {
    retry: Option<RetryPolicy>,
    compensate: Option<UndoFn>,
}

impl StepOptions {
    pub fn new() -> Self {
        StepOptions::default()
    }

    /// Attempts and backoff of the step (default: 3 attempts, from 100 ms, doubling).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// What undoes the step if the run fails for good later; it gets the step's result.
    pub fn compensate<F, Fut>(mut self, undo: F) -> Self
    where
        F: FnOnce(Flow, Value) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, ActionError>> + Send + 'static,
    {
        self.compensate = Some(Box::new(move |flow, v| Box::pin(undo(flow, v))));
        self
    }
}

/// Why and until when a run waits.
#[derive(Debug, Clone)]
pub(crate) enum Suspend {
    /// Due again at this time, in this status.
    At(i64, &'static str),
    /// Waiting on the step at this index (an event or a durable action), at the latest
    /// until the deadline.
    On(u32, Option<i64>),
}

struct Compensation {
    name: String,
    result: Value,
    undo: UndoFn,
}

struct FlowInner {
    cx: Context,
    run_id: String,
    workflow: String,
    input: Value,
    /// When this execution first ran a step (rather than replaying one): the time budget
    /// counts from there, and the first new step always runs.
    began: Mutex<Option<i64>>,
    next: Mutex<u32>,
    compensations: Mutex<Vec<Compensation>>,
    suspended: Mutex<Option<Suspend>>,
}

/// The handle a workflow function gets: its input and its steps.
#[derive(Clone)]
pub struct Flow {
    inner: Arc<FlowInner>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("run", &self.inner.run_id)
            .field("workflow", &self.inner.workflow)
            .finish()
    }
}

/// What a journal entry says about a step about to run.
enum Replay {
    Fresh,
    Done(Value),
    Failed(String),
    /// Attempted `attempts` times so far; may go again at `at` (None: now).
    Again {
        attempts: u32,
        at: Option<i64>,
    },
    /// Sleeping or waiting: the kind decides.
    Pending,
}

impl Flow {
    pub(crate) fn new(cx: Context, run_id: String, workflow: String, input: Value) -> Flow {
        Flow {
            inner: Arc::new(FlowInner {
                cx,
                run_id,
                workflow,
                input,
                began: Mutex::new(None),
                next: Mutex::new(0),
                compensations: Mutex::new(Vec::new()),
                suspended: Mutex::new(None),
            }),
        }
    }

    pub fn input(&self) -> &Value {
        &self.inner.input
    }

    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The object's `$` context (its storage is `context().state().storage()`).
    pub fn context(&self) -> &Context {
        &self.inner.cx
    }

    fn now(&self) -> i64 {
        self.inner.cx.now_ms()
    }

    pub(crate) fn suspension(&self) -> Option<Suspend> {
        self.inner.suspended.lock().clone()
    }

    fn suspend(&self, why: Suspend) -> FlowError {
        *self.inner.suspended.lock() = Some(why);
        FlowError::Suspended
    }

    pub fn workflow(&self) -> &str {
        &self.inner.workflow
    }

    /// The idempotency key of the step running now (inside a step's function).
    pub fn current_key(&self) -> String {
        self.step_key(self.inner.next.lock().saturating_sub(1))
    }

    /// The idempotency key of the step at `idx` (webhooks carry it; durable actions use it).
    pub fn step_key(&self, idx: u32) -> String {
        format!("wf:{}:{idx}", self.inner.run_id)
    }

    /// Takes the next step index and reads its journal entry.
    fn enter(
        &self,
        name: &str,
        kind: &str,
    ) -> Result<(u32, Replay, Option<StepRecord>), FlowError> {
        if self.inner.suspended.lock().is_some() {
            // The function ignored a suspension; nothing more may run in this execution.
            return Err(FlowError::Suspended);
        }
        let idx = {
            let mut next = self.inner.next.lock();
            let i = *next;
            *next += 1;
            i
        };
        if idx >= MAX_STEPS {
            return Err(FlowError::fail(format!(
                "a run may have at most {MAX_STEPS} steps"
            )));
        }
        if name.is_empty() || name.len() > 256 {
            return Err(FlowError::fail("a step name is 1 to 256 bytes"));
        }
        let run = self.inner.run_id.clone();
        let (entry, run_status) = self.inner.cx.read_internal(|c| {
            let s = flow_store::step(c, &run, idx)?;
            let st = flow_store::run_status(c, &run)?;
            Ok((s, st))
        })?;
        if run_status.as_deref() == Some(status::CANCELLED) {
            return Err(FlowError::Cancelled);
        }
        let Some(e) = entry else {
            return Ok((idx, Replay::Fresh, None));
        };
        if e.name != name || e.kind != kind {
            return Err(FlowError::fail(format!(
                "step {idx} was `{}` ({}) and is now `{name}` ({kind}): a workflow must call \
                 its steps in the same order every time",
                e.name, e.kind
            )));
        }
        let replay = match e.status.as_str() {
            "completed" => Replay::Done(e.result.clone().unwrap_or(Value::Null)),
            "failed" => Replay::Failed(e.error.clone().unwrap_or_default()),
            "running" => Replay::Again {
                attempts: e.attempts,
                at: None,
            },
            "retrying" => Replay::Again {
                attempts: e.attempts,
                at: e.until,
            },
            _ => Replay::Pending,
        };
        Ok((idx, replay, Some(e)))
    }

    fn record(&self, s: &StepRecord) -> Result<(), FlowError> {
        let run = self.inner.run_id.clone();
        self.inner
            .cx
            .write_internal(|c| flow_store::put_step(c, &run, s))?;
        Ok(())
    }

    fn entry(&self, idx: u32, name: &str, kind: &str, status: &str) -> StepRecord {
        StepRecord {
            index: idx,
            name: name.to_string(),
            kind: kind.to_string(),
            status: status.to_string(),
            attempts: 0,
            result: None,
            error: None,
            until: None,
            started_at: self.now(),
            completed_at: None,
            log_seq: 0,
        }
    }

    /// Runs `f` as a journaled step: once it succeeded, its result is returned from the
    /// journal and `f` is not called again. Failed attempts are retried with backoff (the
    /// run sleeps between them); a step that fails for good returns `Failed`.
    pub async fn step<F, Fut>(&self, name: &str, f: F) -> Result<Value, FlowError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ActionError>>,
    {
        self.step_with(name, StepOptions::default(), f).await
    }

    pub async fn step_with<F, Fut>(
        &self,
        name: &str,
        opts: StepOptions,
        f: F,
    ) -> Result<Value, FlowError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ActionError>>,
    {
        self.run_step(name, "step", opts, f).await
    }

    async fn run_step<F, Fut>(
        &self,
        name: &str,
        kind: &str,
        opts: StepOptions,
        f: F,
    ) -> Result<Value, FlowError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, ActionError>>,
    {
        let (idx, replay, entry) = self.enter(name, kind)?;
        let now = self.now();
        let attempts = match replay {
            Replay::Done(v) => {
                self.remember(name, v.clone(), opts.compensate);
                return Ok(v);
            }
            Replay::Failed(e) => return Err(FlowError::fail(e)),
            Replay::Again { at: Some(t), .. } if t > now => {
                return Err(self.suspend(Suspend::At(t, status::RUNNING)));
            }
            Replay::Again { attempts, .. } => attempts,
            Replay::Fresh | Replay::Pending => 0,
        };
        // Long work is cut into executions that start no new step after an action's timeout.
        let budget = i64::try_from(self.inner.cx.action_timeout().as_millis()).unwrap_or(i64::MAX);
        let began = *self.inner.began.lock().get_or_insert(now);
        if now - began > budget {
            return Err(self.suspend(Suspend::At(now, status::RUNNING)));
        }
        let mut rec = entry.unwrap_or_else(|| self.entry(idx, name, kind, "running"));
        rec.status = "running".into();
        rec.attempts = attempts + 1;
        rec.until = None;
        self.record(&rec)?;
        let outcome = self
            .inner
            .cx
            .with_timeout(self.inner.cx.action_timeout(), f())
            .await;
        let outcome = outcome.and_then(|v| {
            if v.to_string().len() > MAX_STEP_RESULT {
                Err(ActionError::fatal(format!(
                    "step `{name}` returned more than {MAX_STEP_RESULT} bytes of JSON"
                )))
            } else {
                Ok(v)
            }
        });
        let now = self.now();
        match outcome {
            Ok(v) => {
                rec.status = "completed".into();
                rec.result = Some(v.clone());
                rec.error = None;
                rec.completed_at = Some(now);
                self.record(&rec)?;
                self.remember(name, v.clone(), opts.compensate);
                Ok(v)
            }
            Err(e) if e.interrupted => Err(FlowError::Failed(e)),
            Err(e) => {
                let retry = opts.retry.unwrap_or_default();
                let delay = e
                    .retryable
                    .then(|| retry.delay_after(rec.attempts, rand::random()))
                    .flatten();
                rec.error = Some(e.message.clone());
                match delay {
                    Some(d) => {
                        let at = now + i64::try_from(d).unwrap_or(i64::MAX / 4);
                        rec.status = "retrying".into();
                        rec.until = Some(at);
                        self.record(&rec)?;
                        Err(self.suspend(Suspend::At(at, status::RUNNING)))
                    }
                    None => {
                        rec.status = "failed".into();
                        rec.completed_at = Some(now);
                        self.record(&rec)?;
                        Err(FlowError::Failed(ActionError::fatal(e.message)))
                    }
                }
            }
        }
    }

    pub(crate) fn remember(&self, name: &str, result: Value, undo: Option<UndoFn>) {
        if let Some(undo) = undo {
            self.inner.compensations.lock().push(Compensation {
                name: name.to_string(),
                result,
                undo,
            });
        }
    }

    /// Sleeps for `d`, durably: the run is evicted, restarted or not, and goes on after.
    pub async fn sleep(&self, name: &str, d: Duration) -> Result<(), FlowError> {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        self.sleep_at(name, None, ms)
    }

    /// Sleeps until the epoch-millisecond time `at`.
    pub async fn sleep_until(&self, name: &str, at: i64) -> Result<(), FlowError> {
        self.sleep_at(name, Some(at), 0)
    }

    fn sleep_at(&self, name: &str, at: Option<i64>, ms: i64) -> Result<(), FlowError> {
        let (idx, replay, entry) = self.enter(name, "sleep")?;
        let now = self.now();
        let mut rec = match replay {
            Replay::Done(_) => return Ok(()),
            Replay::Failed(e) => return Err(FlowError::fail(e)),
            _ => match entry {
                Some(e) => e,
                None => {
                    // The wake time is fixed the first time the step is reached.
                    let mut e = self.entry(idx, name, "sleep", "sleeping");
                    e.until = Some(at.unwrap_or(now.saturating_add(ms)));
                    self.record(&e)?;
                    e
                }
            },
        };
        let until = rec.until.unwrap_or(now);
        if until > now {
            return Err(self.suspend(Suspend::At(until, status::SLEEPING)));
        }
        rec.status = "completed".into();
        rec.completed_at = Some(now);
        self.record(&rec)?;
        Ok(())
    }

    /// Waits until an event whose type matches `pattern` (`Noun.verb`, `*` wildcards) and
    /// whose data contains `filter` is logged in this object after the previous step began
    /// (so the reply to that step's call counts even if it came first). Fails when `timeout`
    /// passes first.
    pub async fn wait_for_event(
        &self,
        name: &str,
        pattern: &str,
        filter: Option<Value>,
        timeout: Duration,
    ) -> Result<Event, FlowError> {
        Pattern::parse(pattern).map_err(FlowError::fail)?;
        let (idx, replay, entry) = self.enter(name, "waitForEvent")?;
        let now = self.now();
        let run = self.inner.run_id.clone();
        match replay {
            Replay::Done(v) => {
                return serde_json::from_value(v)
                    .map_err(|e| FlowError::fail(format!("journaled event is unreadable: {e}")));
            }
            Replay::Failed(e) => return Err(FlowError::fail(e)),
            _ => {}
        }
        let Some(mut rec) = entry else {
            let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX / 4);
            let mut e = self.entry(idx, name, "waitForEvent", "waiting");
            e.until = Some(now.saturating_add(ms));
            let parsed = Pattern::parse(pattern).map_err(FlowError::fail)?;
            // Events count from when the previous step began, so a callback to that step's
            // call is not missed; ones already logged are looked for now, later ones when
            // the pump dispatches them.
            let found = self.inner.cx.write_internal(|c| {
                let from = match idx.checked_sub(1) {
                    Some(prev) => flow_store::step(c, &run, prev)?.map(|s| s.log_seq),
                    None => None,
                };
                let logged = flow_store::last_event_seq(c)?;
                if let Some(ev) =
                    flow_store::find_event(c, from.unwrap_or(logged), &parsed, filter.as_ref())?
                {
                    e.status = "completed".into();
                    e.result = Some(serde_json::to_value(&ev).unwrap_or(Value::Null));
                    e.completed_at = Some(now);
                    flow_store::put_step(c, &run, &e)?;
                    return Ok(Some(ev));
                }
                flow_store::put_step(c, &run, &e)?;
                flow_store::add_wait(
                    c,
                    &Wait {
                        run: run.clone(),
                        idx,
                        pattern: pattern.to_string(),
                        filter,
                        after_seq: logged,
                    },
                )?;
                Ok(None)
            })?;
            return match found {
                Some(ev) => Ok(ev),
                None => Err(self.suspend(Suspend::On(idx, e.until))),
            };
        };
        let deadline = rec.until.unwrap_or(now);
        if deadline > now {
            return Err(self.suspend(Suspend::On(idx, Some(deadline))));
        }
        let msg = format!("timed out waiting for an event `{pattern}`");
        rec.status = "failed".into();
        rec.error = Some(msg.clone());
        rec.completed_at = Some(now);
        self.inner.cx.write_internal(|c| {
            flow_store::put_step(c, &run, &rec)?;
            flow_store::remove_wait(c, &run, idx)
        })?;
        Err(FlowError::fail(msg))
    }

    /// Runs an action durably (`$.do`) as a step: it is recorded in the action log with the
    /// step's key, retried per its policy, and the run waits for its outcome.
    pub async fn action(
        &self,
        name: &str,
        action_name: &str,
        kind: &str,
        input: Value,
        retry: Option<RetryPolicy>,
    ) -> Result<Value, FlowError> {
        let (idx, replay, entry) = self.enter(name, "action")?;
        match replay {
            Replay::Done(v) => return Ok(v),
            Replay::Failed(e) => return Err(FlowError::fail(e)),
            _ => {}
        }
        let key = self.step_key(idx);
        let run = self.inner.run_id.clone();
        let now = self.now();
        let mut rec = entry.unwrap_or_else(|| self.entry(idx, name, "action", "waiting"));
        let new = NewAction {
            key: key.clone(),
            name: action_name.to_string(),
            kind: kind.to_string(),
            input,
            retry: retry.unwrap_or_default(),
        };
        let action = self.inner.cx.enqueue(new).map_err(FlowError::from)?.0;
        match action.status {
            ActionStatus::Completed => {
                let v = action.result.unwrap_or(Value::Null);
                rec.status = "completed".into();
                rec.result = Some(v.clone());
                rec.completed_at = Some(now);
                self.record(&rec)?;
                Ok(v)
            }
            ActionStatus::Failed => {
                let msg = action.error.unwrap_or_default();
                rec.status = "failed".into();
                rec.error = Some(msg.clone());
                rec.completed_at = Some(now);
                self.record(&rec)?;
                Err(FlowError::fail(msg))
            }
            _ => {
                rec.attempts = action.attempts;
                self.inner
                    .cx
                    .write_internal(|c| flow_store::put_step(c, &run, &rec))?;
                Err(self.suspend(Suspend::On(idx, None)))
            }
        }
    }

    /// Appends an event as a step: the event and the step's completion commit together, so
    /// it is emitted once.
    pub async fn emit(
        &self,
        name: &str,
        event_type: &str,
        data: Value,
    ) -> Result<Event, FlowError> {
        let cx = self.inner.cx.clone();
        let subject = self.inner.run_id.clone();
        let v = self
            .run_step(name, "emit", StepOptions::default(), move || async move {
                let ev = cx
                    .send(event_type, Some(&subject), data)
                    .map_err(ActionError::from)?;
                Ok(serde_json::to_value(ev).unwrap_or(Value::Null))
            })
            .await?;
        serde_json::from_value(v)
            .map_err(|e| FlowError::fail(format!("journaled event is unreadable: {e}")))
    }

    /// Runs the compensations of the completed steps, newest first, each as a journaled
    /// step. Returns the errors of those that failed for good.
    pub(crate) async fn compensate(&self) -> Result<Vec<String>, FlowError> {
        let mut failures = Vec::new();
        loop {
            let next = self.inner.compensations.lock().pop();
            let Some(comp) = next else { break };
            let flow = self.clone();
            let result = comp.result;
            let undo = comp.undo;
            let name = format!("compensate:{}", comp.name);
            match self
                .run_step(&name, "compensate", StepOptions::default(), move || {
                    undo(flow, result)
                })
                .await
            {
                Ok(_) => {}
                // Cut short (shutdown): the compensation goes on in the next execution.
                Err(FlowError::Failed(e)) if e.interrupted => return Err(FlowError::Failed(e)),
                Err(FlowError::Failed(e)) => failures.push(format!("{name}: {e}")),
                Err(other) => return Err(other),
            }
        }
        Ok(failures)
    }
}

/// Where a run stands after one execution of its function.
pub(crate) struct Settled {
    pub status: &'static str,
    pub next_at: Option<i64>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// Runs one execution of a run's function (replaying its journal), then its compensations
/// if it failed for good, and says where the run stands.
pub(crate) async fn execute(flow: Flow, f: WorkflowFn) -> Settled {
    let out = f(flow.clone()).await;
    let failed = match out {
        Ok(v) if flow.suspension().is_none() => {
            if v.to_string().len() > MAX_STEP_RESULT {
                ActionError::fatal(format!(
                    "the result is more than {MAX_STEP_RESULT} bytes of JSON"
                ))
            } else {
                return Settled {
                    status: status::COMPLETED,
                    next_at: None,
                    result: Some(v),
                    error: None,
                };
            }
        }
        Ok(_) => return suspended(&flow, status::RUNNING),
        Err(FlowError::Suspended) if flow.suspension().is_some() => {
            return suspended(&flow, status::RUNNING);
        }
        Err(FlowError::Suspended) => ActionError::fatal(
            "the workflow returned `Suspended` but no step suspended; pass up the error of a step",
        ),
        Err(FlowError::Cancelled) => {
            return Settled {
                status: status::CANCELLED,
                next_at: None,
                result: None,
                error: None,
            };
        }
        // Cut short by a shutdown or a newer activation: not the run's failure.
        Err(FlowError::Failed(e)) if e.interrupted => {
            return Settled {
                status: status::RUNNING,
                next_at: Some(flow.now() + 1_000),
                result: None,
                error: None,
            };
        }
        Err(FlowError::Failed(e)) => e,
    };
    let had_compensations = !flow.inner.compensations.lock().is_empty();
    match flow.compensate().await {
        Ok(failures) if failures.is_empty() => Settled {
            status: if had_compensations {
                status::COMPENSATED
            } else {
                status::FAILED
            },
            next_at: None,
            result: None,
            error: Some(failed.message),
        },
        Ok(failures) => Settled {
            status: status::FAILED,
            next_at: None,
            result: None,
            error: Some(format!(
                "{}; compensation failed: {}",
                failed.message,
                failures.join("; ")
            )),
        },
        Err(FlowError::Cancelled) => Settled {
            status: status::CANCELLED,
            next_at: None,
            result: None,
            error: None,
        },
        Err(_) => suspended(&flow, status::COMPENSATING),
    }
}

fn suspended(flow: &Flow, default_status: &'static str) -> Settled {
    let now = flow.now();
    let (status, next_at) = match flow.suspension() {
        Some(Suspend::At(t, st)) => (
            if default_status == status::COMPENSATING {
                default_status
            } else {
                st
            },
            Some(t),
        ),
        Some(Suspend::On(idx, deadline)) => {
            // What it waits for may have come while this execution ran.
            let run = flow.inner.run_id.clone();
            let key = flow.step_key(idx);
            let arrived = flow
                .inner
                .cx
                .read_internal(|c| {
                    let step_done =
                        flow_store::step(c, &run, idx)?.is_some_and(|s| s.status != "waiting");
                    let action_done =
                        store::action_by_key(c, &key)?.is_some_and(|a| a.status.is_final());
                    Ok(step_done || action_done)
                })
                .unwrap_or(true);
            let st = if default_status == status::COMPENSATING {
                default_status
            } else {
                status::WAITING
            };
            (st, if arrived { Some(now) } else { deadline })
        }
        // Not reached: `execute` fails a run that claims to be suspended without a reason.
        None => (default_status, Some(now + 1_000)),
    };
    Settled {
        status,
        next_at,
        result: None,
        error: None,
    }
}
