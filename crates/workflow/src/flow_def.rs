//! Declarative workflows (JSON), so the built-in class runs workflows with zero code:
//!
//! ```json
//! { "name": "onboarding", "steps": [
//!   { "name": "welcome", "webhook": { "url": "https://…", "body": { "to": "{{input.email}}" } },
//!     "compensate": { "webhook": { "url": "https://…/undo" } } },
//!   { "name": "pause", "sleep": "2s" },
//!   { "name": "approval", "waitForEvent": { "type": "Approval.granted",
//!                                            "filter": { "user": "{{input.user}}" }, "timeout": "1h" } },
//!   { "name": "done", "emit": { "type": "Customer.onboarded", "data": { "user": "{{input.user}}" } } },
//!   { "name": "charge", "action": { "webhook": { "url": "https://…" } }, "retry": { … } } ] }
//! ```
//!
//! Strings may refer to the run's input and to earlier steps' results: a string that is one
//! `{{path}}` becomes the value there (`input.user`, `steps.welcome.body.id`, `run.id`);
//! `{{path}}` inside a longer string is replaced by the value's text.

use crate::context::WebhookAction;
use crate::flow::{Flow, FlowError};
use crate::model::kind;
use crate::pattern::{Pattern, check_event_type};
use crate::registry::ActionError;
use crate::retry::RetryPolicy;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// Most steps a definition may have (each may add a compensation).
pub const MAX_DEFINED_STEPS: usize = 500;
/// Longest sleep or wait a definition may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(366 * 24 * 3600);

/// A checked workflow definition.
#[derive(Debug, Clone)]
pub struct WorkflowDef {
    pub name: String,
    pub steps: Vec<StepDef>,
}

#[derive(Debug, Clone)]
pub struct StepDef {
    pub name: String,
    pub op: Op,
    pub retry: Option<RetryPolicy>,
    pub compensate: Option<Op>,
}

#[derive(Debug, Clone)]
pub enum Op {
    /// An HTTP call made in the step (`Idempotency-Key`: the step's key).
    Webhook(Value),
    Emit {
        kind: String,
        data: Value,
    },
    Sleep(Duration),
    WaitForEvent {
        pattern: String,
        filter: Option<Value>,
        timeout: Duration,
    },
    /// A durable action (`$.do`): `{ webhook }` or `{ function: { name, input } }`.
    Action {
        kind: &'static str,
        name: String,
        input: Value,
    },
}

const KINDS: [&str; 5] = ["webhook", "emit", "sleep", "waitForEvent", "action"];

/// Checks a definition and names the first problem found.
pub fn parse(def: &Value) -> Result<WorkflowDef, String> {
    let obj = def
        .as_object()
        .ok_or("a workflow definition is a JSON object")?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "name" | "description" | "steps") {
            return Err(format!(
                "unknown field `{k}` (a definition has name, description, steps)"
            ));
        }
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or("`name` (a string) is required")?;
    check_name(name).map_err(|e| format!("name: {e}"))?;
    let steps = obj
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("`steps` (an array) is required")?;
    if steps.is_empty() || steps.len() > MAX_DEFINED_STEPS {
        return Err(format!("`steps` must have 1 to {MAX_DEFINED_STEPS} steps"));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        let step = parse_step(s).map_err(|e| format!("steps[{i}]: {e}"))?;
        if out.iter().any(|o: &StepDef| o.name == step.name) {
            return Err(format!(
                "steps[{i}]: a step named `{}` comes earlier",
                step.name
            ));
        }
        out.push(step);
    }
    Ok(WorkflowDef {
        name: name.to_string(),
        steps: out,
    })
}

/// A workflow, step, run or schedule name: 1 to 128 letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1 to 128 letters, digits, `-`, `_` or `.`"
        ))
    }
}

fn parse_step(s: &Value) -> Result<StepDef, String> {
    let obj = s.as_object().ok_or("a step is a JSON object")?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or("`name` (a string) is required")?;
    check_name(name)?;
    let mut op = None;
    for (k, v) in obj {
        match k.as_str() {
            "name" | "retry" | "compensate" => {}
            k if KINDS.contains(&k) => {
                if op.is_some() {
                    return Err(format!(
                        "step `{name}` has more than one of {}",
                        KINDS.join(", ")
                    ));
                }
                op = Some(parse_op(k, v).map_err(|e| format!("{k}: {e}"))?);
            }
            other => {
                return Err(format!(
                    "unknown field `{other}` (a step has name, one of {}, retry, compensate)",
                    KINDS.join(", ")
                ));
            }
        }
    }
    let op = op.ok_or_else(|| format!("step `{name}` needs one of {}", KINDS.join(", ")))?;
    let retry = obj
        .get("retry")
        .map(|r| {
            serde_json::from_value::<RetryPolicy>(r.clone()).map_err(|e| format!("retry: {e}"))
        })
        .transpose()?;
    if let Some(r) = &retry {
        r.check().map_err(|e| format!("retry: {e}"))?;
    }
    let compensate =
        obj.get("compensate")
            .map(|c| {
                let o = c.as_object().filter(|o| o.len() == 1).ok_or(
                    "compensate: one of webhook, emit (e.g. { \"webhook\": { \"url\": … } })",
                )?;
                let (k, v) = o.iter().next().ok_or("compensate is empty")?;
                if !matches!(k.as_str(), "webhook" | "emit") {
                    return Err(format!(
                        "compensate: `{k}` cannot undo a step (use webhook or emit)"
                    ));
                }
                parse_op(k, v).map_err(|e| format!("compensate.{k}: {e}"))
            })
            .transpose()?;
    Ok(StepDef {
        name: name.to_string(),
        op,
        retry,
        compensate,
    })
}

fn parse_op(kind: &str, v: &Value) -> Result<Op, String> {
    match kind {
        "webhook" => {
            let w: WebhookAction = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            if !w.url.contains("{{") {
                w.check()?;
            }
            Ok(Op::Webhook(v.clone()))
        }
        "emit" => {
            let t = v
                .get("type")
                .and_then(Value::as_str)
                .ok_or("`type` (Noun.verb) is required")?;
            check_event_type(t)?;
            for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
                if k != "type" && k != "data" {
                    return Err(format!("unknown field `{k}` (emit has type, data)"));
                }
            }
            Ok(Op::Emit {
                kind: t.to_string(),
                data: v.get("data").cloned().unwrap_or(Value::Null),
            })
        }
        "sleep" => Ok(Op::Sleep(parse_duration(v)?)),
        "waitForEvent" => {
            let pattern = v
                .get("type")
                .and_then(Value::as_str)
                .ok_or("`type` (an event type or pattern) is required")?;
            Pattern::parse(pattern)?;
            for k in v.as_object().into_iter().flat_map(|o| o.keys()) {
                if !matches!(k.as_str(), "type" | "filter" | "timeout") {
                    return Err(format!(
                        "unknown field `{k}` (waitForEvent has type, filter, timeout)"
                    ));
                }
            }
            let timeout = v
                .get("timeout")
                .ok_or_else(|| "`timeout` is required (e.g. \"1h\")".to_string())
                .and_then(parse_duration)?;
            Ok(Op::WaitForEvent {
                pattern: pattern.to_string(),
                filter: v.get("filter").cloned(),
                timeout,
            })
        }
        "action" => {
            if let Some(w) = v.get("webhook") {
                let parsed: WebhookAction =
                    serde_json::from_value(w.clone()).map_err(|e| format!("webhook: {e}"))?;
                if !parsed.url.contains("{{") {
                    parsed.check().map_err(|e| format!("webhook: {e}"))?;
                }
                Ok(Op::Action {
                    kind: kind::WEBHOOK,
                    name: "webhook".into(),
                    input: w.clone(),
                })
            } else if let Some(f) = v.get("function") {
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or("function.name is required")?;
                Ok(Op::Action {
                    kind: kind::FUNCTION,
                    name: name.to_string(),
                    input: f.get("input").cloned().unwrap_or(Value::Null),
                })
            } else {
                Err(
                    "an action is { \"webhook\": { … } } or { \"function\": { \"name\": … } }"
                        .into(),
                )
            }
        }
        other => Err(format!("unknown step kind `{other}`")),
    }
}

/// `"2s"`, `"500ms"`, `"5 minutes"`, `"1h"`, `"7 days"`, or a number of milliseconds.
pub fn parse_duration(v: &Value) -> Result<Duration, String> {
    let ms: u64 = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or("a duration in milliseconds is a whole number ≥ 0")?,
        Value::String(s) => {
            let t = s.trim().to_ascii_lowercase();
            let split = t
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: f64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a duration (e.g. 30s, 5 minutes, 2h)"))?;
            let scale = match unit.trim() {
                "ms" | "millisecond" | "milliseconds" => 1.0,
                "s" | "sec" | "secs" | "second" | "seconds" => 1e3,
                "m" | "min" | "mins" | "minute" | "minutes" => 60e3,
                "h" | "hr" | "hour" | "hours" => 3600e3,
                "d" | "day" | "days" => 86_400e3,
                "w" | "week" | "weeks" => 604_800e3,
                u => {
                    return Err(format!(
                        "`{s}`: unknown unit `{u}` (use ms, s, m, h, d or w)"
                    ));
                }
            };
            (n * scale).round() as u64
        }
        _ => return Err("a duration is a string like \"30s\" or milliseconds".into()),
    };
    let d = Duration::from_millis(ms);
    if d > MAX_WAIT {
        return Err(format!("{v} is longer than a year"));
    }
    Ok(d)
}

// ---- running a definition ----

/// The workflow function of a declarative definition.
pub(crate) async fn run(flow: Flow, def: WorkflowDef) -> Result<Value, FlowError> {
    let mut scope = json!({
        "input": flow.input().clone(),
        "run": { "id": flow.run_id() },
        "steps": {},
    });
    for step in def.steps {
        let result = run_op(&flow, &step.name, &step.op, step.retry, &scope).await?;
        if let Some(undo) = step.compensate.clone() {
            let mut undo_scope = scope.clone();
            undo_scope["result"] = result.clone();
            let name = step.name.clone();
            flow.remember(
                &step.name,
                result.clone(),
                Some(Box::new(move |flow: Flow, _result: Value| {
                    Box::pin(async move { undo_op(&flow, &name, &undo, &undo_scope).await })
                })),
            );
        }
        scope["steps"][&step.name] = result;
    }
    Ok(scope["steps"].take())
}

async fn run_op(
    flow: &Flow,
    name: &str,
    op: &Op,
    retry: Option<RetryPolicy>,
    scope: &Value,
) -> Result<Value, FlowError> {
    match op {
        Op::Webhook(spec) => {
            let spec = render(spec, scope);
            let cx = flow.context().clone();
            let opts = match retry {
                Some(r) => crate::flow::StepOptions::new().retry(r),
                None => crate::flow::StepOptions::new(),
            };
            let flow2 = flow.clone();
            flow.step_with(name, opts, move || async move {
                let w: WebhookAction = serde_json::from_value(spec)
                    .map_err(|e| ActionError::fatal(format!("webhook: {e}")))?;
                w.check().map_err(ActionError::fatal)?;
                let key = flow2.current_key();
                cx.call_webhook(&w, &key).await
            })
            .await
        }
        Op::Emit { kind, data } => {
            let ev = flow.emit(name, kind, render(data, scope)).await?;
            Ok(serde_json::to_value(ev).unwrap_or(Value::Null))
        }
        Op::Sleep(d) => flow.sleep(name, *d).await.map(|()| Value::Null),
        Op::WaitForEvent {
            pattern,
            filter,
            timeout,
        } => {
            let filter = filter.as_ref().map(|f| render(f, scope));
            let ev = flow.wait_for_event(name, pattern, filter, *timeout).await?;
            Ok(serde_json::to_value(ev).unwrap_or(Value::Null))
        }
        Op::Action {
            kind,
            name: action,
            input,
        } => {
            let input = render(input, scope);
            if *kind == crate::model::kind::WEBHOOK {
                let w: WebhookAction = serde_json::from_value(input.clone())
                    .map_err(|e| FlowError::fail(format!("action.webhook: {e}")))?;
                w.check().map_err(FlowError::fail)?;
            }
            let action_name = if *kind == crate::model::kind::WEBHOOK {
                format!("{}:{name}", flow.workflow())
            } else {
                action.clone()
            };
            flow.action(name, &action_name, kind, input, retry).await
        }
    }
}

async fn undo_op(flow: &Flow, name: &str, op: &Op, scope: &Value) -> Result<Value, ActionError> {
    match op {
        Op::Webhook(spec) => {
            let w: WebhookAction = serde_json::from_value(render(spec, scope))
                .map_err(|e| ActionError::fatal(format!("webhook: {e}")))?;
            w.check().map_err(ActionError::fatal)?;
            let key = flow.current_key();
            flow.context().call_webhook(&w, &key).await
        }
        Op::Emit { kind, data } => {
            let ev = flow
                .context()
                .send(kind, Some(flow.run_id()), render(data, scope))
                .map_err(ActionError::from)?;
            Ok(serde_json::to_value(ev).unwrap_or(Value::Null))
        }
        // Refused when the definition is checked.
        Op::Action { .. } | Op::Sleep(_) | Op::WaitForEvent { .. } => Err(ActionError::fatal(
            format!("`{name}` has a compensation that cannot run"),
        )),
    }
}

/// Fills `{{path}}` references from `scope`.
pub fn render(v: &Value, scope: &Value) -> Value {
    match v {
        Value::String(s) => render_str(s, scope),
        Value::Array(a) => Value::Array(a.iter().map(|x| render(x, scope)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), render(x, scope)))
                .collect::<Map<_, _>>(),
        ),
        other => other.clone(),
    }
}

fn lookup<'a>(scope: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(scope, |at, part| match at {
        Value::Object(o) => o.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn render_str(s: &str, scope: &Value) -> Value {
    if !s.contains("{{") {
        return Value::String(s.to_string());
    }
    let t = s.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}"))
        && !inner.contains("{{")
    {
        return lookup(scope, inner.trim()).cloned().unwrap_or(Value::Null);
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return Value::String(out);
        };
        let path = rest[start + 2..start + end].trim();
        match lookup(scope, path) {
            Some(Value::String(x)) => out.push_str(x),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Value::String(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn templates_fill_from_scope() {
        let scope = json!({"input": {"user": "ann", "n": 3}, "steps": {"a": {"body": {"id": 7}}}});
        assert_eq!(render(&json!("{{input.user}}"), &scope), json!("ann"));
        assert_eq!(render(&json!("{{ input.n }}"), &scope), json!(3));
        assert_eq!(
            render(
                &json!({"x": "id={{steps.a.body.id}}/{{input.user}}"}),
                &scope
            ),
            json!({"x": "id=7/ann"})
        );
        assert_eq!(render(&json!("{{input.missing}}"), &scope), Value::Null);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration(&json!("2s")).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            parse_duration(&json!("5 minutes")).unwrap(),
            Duration::from_secs(300)
        );
        assert_eq!(
            parse_duration(&json!(1500)).unwrap(),
            Duration::from_millis(1500)
        );
        assert!(
            parse_duration(&json!("5 fortnights"))
                .unwrap_err()
                .contains("fortnights")
        );
        assert!(parse_duration(&json!("400d")).is_err());
    }

    #[test]
    fn definitions_are_checked() {
        let ok = json!({"name": "w", "steps": [
            {"name": "a", "sleep": "1s"},
            {"name": "b", "emit": {"type": "A.b"}, "compensate": {"emit": {"type": "A.undone"}}},
            {"name": "c", "waitForEvent": {"type": "X.y", "timeout": "1h"}},
        ]});
        assert_eq!(parse(&ok).unwrap().steps.len(), 3);
        for (bad, msg) in [
            (json!({"steps": []}), "`name`"),
            (json!({"name": "w", "steps": []}), "1 to"),
            (
                json!({"name": "w", "steps": [{"name": "a"}]}),
                "needs one of",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "sleep": "1s", "emit": {"type": "A.b"}}]}),
                "more than one",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "sleep": "1s"}, {"name": "a", "sleep": "1s"}]}),
                "comes earlier",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "waitForEvent": {"type": "X.y"}}]}),
                "timeout",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "webhook": {"url": "ftp://x"}}]}),
                "steps[0]",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "sleep": "1s", "compensate": {"sleep": "1s"}}]}),
                "cannot undo",
            ),
            (
                json!({"name": "w", "steps": [{"name": "a", "sleep": "1s",
                    "compensate": {"action": {"webhook": {"url": "http://x"}}}}]}),
                "cannot undo",
            ),
            (
                json!({"name": "w", "extra": 1, "steps": []}),
                "unknown field `extra`",
            ),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
