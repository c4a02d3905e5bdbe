//! The zero-code surface of schedules and durable workflows on built-in objects:
//!
//! ```text
//! POST|GET   /{object}/_schedules                       { id?, every | cron, tz?, catchUp?, catchUpLimit?, action: { webhook | emit } }
//! GET|DELETE /{object}/_schedules/{id}
//! POST|GET   /{object}/_workflows                       a definition { name, steps: [...] } | list
//! GET|DELETE /{object}/_workflows/{name}
//! POST|GET   /{object}/_workflows/{name}/runs           { input?, id? } → the run | ?after=&limit=
//! GET        /{object}/_workflows/{name}/runs/{id}      status, current step, journal
//! POST       /{object}/_workflows/{name}/runs/{id}/cancel
//! ```
//! Each request is one call of a built-in object method (see `builtin.rs`), one turn.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, OptionalJson, Target};
use crate::workflow_api::{call, id_param, query_args};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::HashMap;

pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("{prefix}/_schedules"),
            get(list_schedules).post(create_schedule),
        )
        .route(
            &format!("{prefix}/_schedules/{{id}}"),
            get(get_schedule).delete(delete_schedule),
        )
        .route(
            &format!("{prefix}/_workflows"),
            get(list_workflows).post(define_workflow),
        )
        .route(
            &format!("{prefix}/_workflows/{{name}}"),
            get(get_workflow).delete(delete_workflow),
        )
        .route(
            &format!("{prefix}/_workflows/{{name}}/runs"),
            get(list_runs).post(start_run),
        )
        .route(
            &format!("{prefix}/_workflows/{{name}}/runs/{{id}}"),
            get(get_run),
        )
        .route(
            &format!("{prefix}/_workflows/{{name}}/runs/{{id}}/cancel"),
            post(cancel_run),
        )
}

fn param(p: &HashMap<String, String>, k: &str) -> Result<String, ApiError> {
    p.get(k)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(format!("missing {k}")))
}

/// 201 with `Location` when created, 200 when it existed already.
fn created(t: &Target, created: bool, body: Value, path: &str) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut res = (status, Json(body)).into_response();
    let enc = crate::names::encode(&t.name);
    if let Ok(v) = HeaderValue::from_str(&format!("/{enc}/{path}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

async fn create_schedule(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let out = call(&app, &t, "schedules.create", body).await?;
    let id = out["schedule"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(created(
        &t,
        out["created"] == true,
        out["schedule"].clone(),
        &format!("_schedules/{id}"),
    ))
}

async fn list_schedules(
    State(app): State<AppState>,
    t: Target,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = query_args(q, &["after", "limit"], &["after", "limit"])?;
    Ok(Json(call(&app, &t, "schedules.list", args).await?))
}

async fn get_schedule(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = id_param(&p)?;
    Ok(Json(
        call(&app, &t, "schedules.get", json!({ "id": id })).await?,
    ))
}

async fn delete_schedule(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id = id_param(&p)?;
    call(&app, &t, "schedules.delete", json!({ "id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn define_workflow(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let out = call(&app, &t, "workflows.define", body).await?;
    let name = out["definition"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(created(
        &t,
        out["created"] == true,
        out["definition"].clone(),
        &format!("_workflows/{name}"),
    ))
}

async fn list_workflows(State(app): State<AppState>, t: Target) -> Result<Json<Value>, ApiError> {
    Ok(Json(call(&app, &t, "workflows.list", Value::Null).await?))
}

async fn get_workflow(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let name = param(&p, "name")?;
    Ok(Json(
        call(&app, &t, "workflows.get", json!({ "name": name })).await?,
    ))
}

async fn delete_workflow(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let name = param(&p, "name")?;
    call(&app, &t, "workflows.delete", json!({ "name": name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start_run(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
    OptionalJson(body): OptionalJson,
) -> Result<Response, ApiError> {
    let name = param(&p, "name")?;
    let mut args = json!({ "workflow": name });
    match body {
        Value::Null => {}
        Value::Object(o) => {
            for (k, v) in o {
                if k != "input" && k != "id" {
                    return Err(ApiError::bad_request(format!(
                        "unknown field `{k}` (a run takes input, id)"
                    )));
                }
                args[k] = v;
            }
        }
        _ => return Err(ApiError::bad_request("the body is { input?, id? }")),
    }
    let out = call(&app, &t, "runs.start", args).await?;
    let id = out["run"]["id"].as_str().unwrap_or_default().to_string();
    Ok(created(
        &t,
        out["created"] == true,
        out["run"].clone(),
        &format!("_workflows/{name}/runs/{id}"),
    ))
}

async fn list_runs(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let name = param(&p, "name")?;
    let mut args = query_args(q, &["after", "limit"], &["after", "limit"])?;
    args["workflow"] = json!(name);
    Ok(Json(call(&app, &t, "runs.list", args).await?))
}

async fn get_run(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = json!({ "workflow": param(&p, "name")?, "id": id_param(&p)? });
    Ok(Json(call(&app, &t, "runs.get", args).await?))
}

async fn cancel_run(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let args = json!({ "workflow": param(&p, "name")?, "id": id_param(&p)? });
    Ok(Json(call(&app, &t, "runs.cancel", args).await?))
}
