//! The built-in business class `DO`, served in the default namespace with zero user code.
//!
//! Its capabilities are named methods taking and returning JSON (`events.emit`,
//! `actions.create`, …), so every transport (REST today; RPC and MCP later) reaches one
//! implementation through `Host::call`. Its alarm drives the `$` context's pump.

use dotdo_runtime::{AlarmInfo, DurableObject, FnClass, ObjectClass, ObjectError, async_trait};
use dotdo_workflow::{
    ActionStatus, Context, DeliveryTarget, NewAction, NewSchedule, Pattern, Registry, RetryPolicy,
    WebhookAction, WorkflowEnv, kind,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::Arc;

/// The default namespace of the built-in class.
pub const BUILTIN_NAMESPACE: &str = "do";

/// Largest page of events, actions or DLQ entries.
pub const MAX_PAGE: usize = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

pub struct BusinessObject {
    pub(crate) cx: Context,
}

pub fn class(env: Arc<WorkflowEnv>) -> Arc<dyn ObjectClass> {
    let registry = Arc::new(Registry::new());
    FnClass::new("DO", move |state| BusinessObject {
        cx: Context::new(state, registry.clone(), env.clone()),
    })
}

pub(crate) fn args<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, ObjectError> {
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v).map_err(|e| ObjectError::bad_request(format!("{method}: {e}")))
}

pub(crate) fn page(limit: Option<usize>) -> Result<usize, ObjectError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ObjectError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Emit {
    #[serde(rename = "type")]
    kind: String,
    subject: Option<String>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListEvents {
    after: Option<i64>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    on: String,
    deliver: DeliveryTarget,
    retry: Option<RetryPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ById {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAction {
    name: String,
    key: Option<String>,
    webhook: WebhookAction,
    retry: Option<RetryPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListActions {
    status: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Paged {
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ByName {
    pub(crate) name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    workflow: String,
    #[serde(default)]
    input: Value,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRuns {
    workflow: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunOf {
    workflow: Option<String>,
    id: String,
}

/// A page of `items` with the cursor of the next page, if it may have more.
fn paged<T: serde::Serialize>(items: Vec<T>, limit: usize, seq: impl Fn(&T) -> i64) -> Value {
    let cursor = (items.len() == limit)
        .then(|| items.last().map(&seq))
        .flatten();
    json!({ "items": items, "cursor": cursor })
}

impl BusinessObject {
    /// A run, if it exists and (when given) belongs to `workflow`.
    fn run_of(&self, q: &RunOf) -> Result<dotdo_workflow::Run, ObjectError> {
        self.cx
            .workflow_run(&q.id)?
            .filter(|r| q.workflow.as_deref().is_none_or(|w| w == r.workflow))
            .ok_or_else(|| ObjectError::not_found(format!("no run `{}`", q.id)))
    }

    fn dispatch_durable(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let cx = &self.cx;
        match method {
            "schedules.create" => {
                let req: NewSchedule = args(method, a)?;
                let (schedule, created) = cx.schedule(req, false)?;
                Ok(json!({ "schedule": schedule, "created": created }))
            }
            "schedules.list" => {
                let q: Paged = args(method, a)?;
                let limit = page(q.limit)?;
                let items = cx.schedules(q.after.unwrap_or(0), limit)?;
                Ok(paged(items, limit, |s| s.seq))
            }
            "schedules.get" => {
                let q: ById = args(method, a)?;
                cx.schedule_by_id(&q.id)?
                    .map(|s| json!(s))
                    .ok_or_else(|| ObjectError::not_found(format!("no schedule `{}`", q.id)))
            }
            "schedules.delete" => {
                let q: ById = args(method, a)?;
                if cx.unschedule(&q.id)? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!("no schedule `{}`", q.id)))
                }
            }
            "workflows.define" => {
                let (definition, created) = cx.define_workflow(a)?;
                Ok(json!({ "definition": definition, "created": created }))
            }
            "workflows.list" => Ok(json!({ "items": cx.workflow_definitions()?, "cursor": null })),
            "workflows.get" => {
                let q: ByName = args(method, a)?;
                cx.workflow_definition(&q.name)?
                    .ok_or_else(|| ObjectError::not_found(format!("no workflow `{}`", q.name)))
            }
            "workflows.delete" => {
                let q: ByName = args(method, a)?;
                if cx.delete_workflow(&q.name)? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!("no workflow `{}`", q.name)))
                }
            }
            "runs.start" => {
                let q: StartRun = args(method, a)?;
                let (run, created) = cx.start_workflow(&q.workflow, q.input, q.id)?;
                Ok(json!({ "run": run, "created": created }))
            }
            "runs.list" => {
                let q: ListRuns = args(method, a)?;
                let limit = page(q.limit)?;
                let items = cx.workflow_runs(q.workflow.as_deref(), q.after.unwrap_or(0), limit)?;
                Ok(paged(items, limit, |r| r.seq))
            }
            "runs.get" => {
                let q: RunOf = args(method, a)?;
                Ok(json!(self.run_of(&q)?))
            }
            "runs.cancel" => {
                let q: RunOf = args(method, a)?;
                self.run_of(&q)?;
                Ok(json!(cx.cancel_run(&q.id)?))
            }
            other => self.dispatch_stores(other, a),
        }
    }

    fn dispatch(&self, method: &str, a: Value) -> Result<Value, ObjectError> {
        let cx = &self.cx;
        match method {
            "events.emit" => {
                let e: Emit = args(method, a)?;
                Ok(json!(cx.send(&e.kind, e.subject.as_deref(), e.data)?))
            }
            "events.list" => {
                let q: ListEvents = args(method, a)?;
                let pattern = q
                    .kind
                    .as_deref()
                    .map(Pattern::parse)
                    .transpose()
                    .map_err(ObjectError::bad_request)?;
                let (items, more) =
                    cx.events(q.after.unwrap_or(0), pattern.as_ref(), page(q.limit)?)?;
                let cursor = more.then(|| items.last().map(|e| e.seq)).flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "subscriptions.create" => {
                let s: Subscribe = args(method, a)?;
                if let DeliveryTarget::Object(name) = &s.deliver {
                    crate::names::check_object_name(name, true).map_err(|e| {
                        ObjectError::bad_request(format!("deliver.object: {}", e.message))
                    })?;
                }
                Ok(json!(cx.subscribe(&s.on, s.deliver, s.retry)?))
            }
            "subscriptions.list" => Ok(json!({ "items": cx.subscriptions()? })),
            "subscriptions.delete" => {
                let q: ById = args(method, a)?;
                if cx.unsubscribe(&q.id)? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!(
                        "no subscription `{}`",
                        q.id
                    )))
                }
            }
            "actions.create" => {
                let q: CreateAction = args(method, a)?;
                if q.name.is_empty() || q.name.len() > 256 {
                    return Err(ObjectError::bad_request("name must be 1 to 256 bytes"));
                }
                q.webhook.check().map_err(ObjectError::bad_request)?;
                let key = q.key.unwrap_or_else(|| dotdo_workflow::new_id("key"));
                let (action, created) = cx.enqueue(NewAction {
                    key,
                    name: q.name,
                    kind: kind::WEBHOOK.to_string(),
                    input: serde_json::to_value(&q.webhook).unwrap_or(Value::Null),
                    retry: q.retry.unwrap_or_default(),
                })?;
                Ok(json!({ "action": action, "created": created }))
            }
            "actions.get" => {
                let q: ById = args(method, a)?;
                cx.action(&q.id)?
                    .map(|a| json!(a))
                    .ok_or_else(|| ObjectError::not_found(format!("no action `{}`", q.id)))
            }
            "actions.list" => {
                let q: ListActions = args(method, a)?;
                let status = q
                    .status
                    .as_deref()
                    .map(|s| {
                        ActionStatus::from_name(s).ok_or_else(|| {
                            ObjectError::bad_request(format!(
                                "status `{s}` is not pending, running, completed or failed"
                            ))
                        })
                    })
                    .transpose()?;
                let limit = page(q.limit)?;
                let items = cx.actions(status, q.after.unwrap_or(0), limit)?;
                let cursor = (items.len() == limit)
                    .then(|| items.last().map(|a| a.seq))
                    .flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "dlq.list" => {
                let q: Paged = args(method, a)?;
                let limit = page(q.limit)?;
                let items = cx.dlq(q.after.unwrap_or(0), limit)?;
                let cursor = (items.len() == limit)
                    .then(|| items.last().map(|e| e.seq))
                    .flatten();
                Ok(json!({ "items": items, "cursor": cursor }))
            }
            "dlq.replay" => {
                let q: ById = args(method, a)?;
                Ok(json!(cx.dlq_replay(&q.id)?))
            }
            "dlq.delete" => {
                let q: ById = args(method, a)?;
                if cx.dlq_delete(&q.id)? {
                    Ok(json!({ "deleted": true }))
                } else {
                    Err(ObjectError::not_found(format!("no DLQ entry `{}`", q.id)))
                }
            }
            "workflow.counts" => cx.counts(),
            other => self.dispatch_durable(other, a),
        }
    }
}

#[async_trait]
impl DurableObject for BusinessObject {
    async fn call(&self, method: &str, args: Value) -> Result<Value, ObjectError> {
        self.dispatch(method, args)
    }

    async fn alarm(&self, _info: AlarmInfo) -> Result<(), ObjectError> {
        self.cx.on_alarm().await
    }
}
