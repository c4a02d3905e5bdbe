//! The zero-code surface of the `$` context on built-in objects (SPEC §2, §4):
//!
//! ```text
//! POST|GET   /{object}/_events              emit { type, subject?, data } | ?after=&type=&limit=
//! POST|GET   /{object}/_subscriptions       { on, deliver: { webhook: { url, headers? } } | { object } }
//! DELETE     /{object}/_subscriptions/{id}
//! POST|GET   /{object}/_actions             { name, key?, webhook: { url, method?, headers?, body? }, retry? } | ?status=
//! GET        /{object}/_actions/{id}
//! GET        /{object}/_dlq                 ?after=&limit=
//! POST       /{object}/_dlq/{id}/replay
//! DELETE     /{object}/_dlq/{id}
//! ```
//! Each request is one call of a built-in object method (see `builtin.rs`), one turn.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Target};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/_events"), get(list_events).post(emit))
        .route(
            &format!("{prefix}/_subscriptions"),
            get(list_subscriptions).post(subscribe),
        )
        .route(
            &format!("{prefix}/_subscriptions/{{id}}"),
            delete(unsubscribe),
        )
        .route(
            &format!("{prefix}/_actions"),
            get(list_actions).post(create_action),
        )
        .route(&format!("{prefix}/_actions/{{id}}"), get(get_action))
        .route(&format!("{prefix}/_dlq"), get(list_dlq))
        .route(&format!("{prefix}/_dlq/{{id}}"), delete(delete_dlq))
        .route(&format!("{prefix}/_dlq/{{id}}/replay"), post(replay_dlq))
}

pub(crate) async fn call(
    app: &AppState,
    t: &Target,
    method: &str,
    args: Value,
) -> Result<Value, ApiError> {
    let out = app.host.call(&t.ns, &t.name, method, args).await?;
    if !is_read(method) {
        // Sync streams look for new events (this write's commit is durable now).
        app.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
    Ok(out)
}

fn is_read(method: &str) -> bool {
    method == "search"
        || [".get", ".list", ".counts", ".history", ".related"]
            .iter()
            .any(|s| method.ends_with(s))
}

/// Query parameters as method arguments: the named integers parsed, the rest as strings.
pub(crate) fn query_args(
    q: HashMap<String, String>,
    allowed: &[&str],
    ints: &[&str],
) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for (k, v) in q {
        if !allowed.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{k}` (expected {})",
                allowed.join(", ")
            )));
        }
        if v.is_empty() {
            continue;
        }
        let value = if ints.contains(&k.as_str()) {
            let n: i64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("`{k}` must be a whole number")))?;
            if n < 0 {
                return Err(ApiError::bad_request(format!("`{k}` must not be negative")));
            }
            json!(n)
        } else {
            json!(v)
        };
        out.insert(k, value);
    }
    Ok(Value::Object(out))
}

pub(crate) fn id_param(p: &HashMap<String, String>) -> Result<String, ApiError> {
    p.get("id")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("missing id"))
}

async fn emit(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let ev = call(&app, &t, "events.emit", body).await?;
    Ok((StatusCode::CREATED, Json(ev)).into_response())
}

async fn list_events(
    State(app): State<AppState>,
    t: Target,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = query_args(q, &["after", "type", "limit"], &["after", "limit"])?;
    Ok(Json(call(&app, &t, "events.list", args).await?))
}

async fn subscribe(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let sub = call(&app, &t, "subscriptions.create", body).await?;
    Ok((StatusCode::CREATED, Json(sub)).into_response())
}

async fn list_subscriptions(
    State(app): State<AppState>,
    t: Target,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        call(&app, &t, "subscriptions.list", Value::Null).await?,
    ))
}

async fn unsubscribe(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id = id_param(&p)?;
    call(&app, &t, "subscriptions.delete", json!({ "id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_action(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    JsonBody(mut body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    // An `Idempotency-Key` header stands in for a missing `key`.
    if let (Some(obj), Some(key)) = (
        body.as_object_mut(),
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
    ) && !obj.contains_key("key")
    {
        obj.insert("key".into(), json!(key));
    }
    let out = call(&app, &t, "actions.create", body).await?;
    let created = out["created"].as_bool().unwrap_or(false);
    let action = out["action"].clone();
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut res = (status, Json(action.clone())).into_response();
    let enc = crate::names::encode(&t.name);
    if let Some(id) = action["id"].as_str()
        && let Ok(v) = HeaderValue::from_str(&format!("/{enc}/_actions/{id}"))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

async fn get_action(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(&p)?;
    Ok(Json(
        call(&app, &t, "actions.get", json!({ "id": id })).await?,
    ))
}

async fn list_actions(
    State(app): State<AppState>,
    t: Target,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = query_args(q, &["status", "after", "limit"], &["after", "limit"])?;
    Ok(Json(call(&app, &t, "actions.list", args).await?))
}

async fn list_dlq(
    State(app): State<AppState>,
    t: Target,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = query_args(q, &["after", "limit"], &["after", "limit"])?;
    Ok(Json(call(&app, &t, "dlq.list", args).await?))
}

async fn replay_dlq(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(&p)?;
    Ok(Json(
        call(&app, &t, "dlq.replay", json!({ "id": id })).await?,
    ))
}

async fn delete_dlq(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id = id_param(&p)?;
    call(&app, &t, "dlq.delete", json!({ "id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}
