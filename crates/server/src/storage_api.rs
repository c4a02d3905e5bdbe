//! The raw storage API of every object (SPEC §4):
//!
//! ```text
//! GET|PUT|DELETE /{object}/_storage/kv/{key}
//! GET            /{object}/_storage/kv?prefix=&start=&end=&limit=&reverse=&cursor=
//! POST           /{object}/_storage/sql     { sql, params }
//! GET|PUT|DELETE /{object}/_storage/alarm   { at, lastFiredAt }
//! ```
//! Each request is one turn of the object.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Target, body_bytes, is_octet_stream, parse_json};
use crate::values::{json_to_sql, kv_to_json, sql_result_json};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dotdo_runtime::storage_api::{KvValue, ListOptions};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// Largest page of a KV listing.
pub const MAX_LIST_LIMIT: usize = 10_000;
/// Page size of a KV listing when no limit is given.
pub const DEFAULT_LIST_LIMIT: usize = 1_000;

pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/_storage/kv"), get(kv_list))
        .route(
            &format!("{prefix}/_storage/kv/{{*key}}"),
            get(kv_get).put(kv_put).delete(kv_delete),
        )
        .route(&format!("{prefix}/_storage/sql"), post(sql))
        .route(
            &format!("{prefix}/_storage/alarm"),
            get(alarm_get).put(alarm_put).delete(alarm_delete),
        )
}

fn key_param(params: &HashMap<String, String>) -> Result<String, ApiError> {
    params
        .get("key")
        .cloned()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing key"))
}

async fn kv_get(
    State(app): State<AppState>,
    target: Target,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let key = key_param(&params)?;
    let k = key.clone();
    let value = app
        .host
        .storage(&target.ns, &target.name, move |s| s.get(&k))
        .await?;
    match value {
        None => Err(ApiError::not_found(format!(
            "no value stored under `{key}`"
        ))),
        Some(KvValue::Json(v)) => Ok(Json(v).into_response()),
        Some(KvValue::Bytes(b)) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], b).into_response())
        }
    }
}

async fn kv_put(
    State(app): State<AppState>,
    target: Target,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let key = key_param(&params)?;
    let (parts, body) = body_bytes(req).await?;
    let value = if is_octet_stream(&parts.headers) {
        KvValue::Bytes(body.to_vec())
    } else {
        KvValue::Json(parse_json(&body)?)
    };
    app.host
        .storage(&target.ns, &target.name, move |s| s.put(&key, &value))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn kv_delete(
    State(app): State<AppState>,
    target: Target,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let key = key_param(&params)?;
    let existed = app
        .host
        .storage(&target.ns, &target.name, move |s| s.delete(&key))
        .await?;
    Ok(Json(json!({ "deleted": existed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<usize>,
    reverse: Option<bool>,
    cursor: Option<String>,
}

async fn kv_list(
    State(app): State<AppState>,
    target: Target,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIST_LIMIT}"
        )));
    }
    let reverse = q.reverse.unwrap_or(false);
    let mut opts = ListOptions {
        prefix: q.prefix,
        start: q.start,
        end: q.end,
        reverse,
        limit: Some(limit),
    };
    if let Some(c) = q.cursor {
        let last = URL_SAFE_NO_PAD
            .decode(&c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("invalid cursor"))?;
        // Continue strictly after (or, reversed, before) the last key of the previous page.
        if reverse {
            opts.end = Some(last);
        } else {
            opts.start = Some(format!("{last}\u{0}"));
        }
    }
    let items = app
        .host
        .storage(&target.ns, &target.name, move |s| s.list(&opts))
        .await?;
    let cursor = (items.len() == limit)
        .then(|| items.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)))
        .flatten();
    let items: Vec<Value> = items
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": kv_to_json(v) }))
        .collect();
    let mut body = json!({ "items": items });
    if let Some(c) = cursor {
        body["cursor"] = json!(c);
    }
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    params: Vec<Value>,
}

async fn sql(
    State(app): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<SqlRequest>,
) -> Result<Response, ApiError> {
    let params = req
        .params
        .iter()
        .enumerate()
        .map(|(i, v)| json_to_sql(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    let sql = req.sql;
    let r = app
        .host
        .storage(&target.ns, &target.name, move |s| s.exec(&sql, &params))
        .await?;
    Ok(Json(sql_result_json(&r)).into_response())
}

fn alarm_json(at: Option<i64>, last: Option<i64>) -> Json<Value> {
    Json(json!({ "at": at, "lastFiredAt": last }))
}

async fn alarm_get(State(app): State<AppState>, target: Target) -> Result<Response, ApiError> {
    let st = app
        .host
        .storage(&target.ns, &target.name, |s| s.alarm_state())
        .await?;
    Ok(alarm_json(st.at, st.last_fired_at).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmRequest {
    at: Option<i64>,
}

async fn alarm_put(
    State(app): State<AppState>,
    target: Target,
    JsonBody(req): JsonBody<AlarmRequest>,
) -> Result<Response, ApiError> {
    let st = app
        .host
        .storage(&target.ns, &target.name, move |s| {
            match req.at {
                Some(at) => s.set_alarm(at)?,
                None => s.delete_alarm()?,
            }
            s.alarm_state()
        })
        .await?;
    Ok(alarm_json(st.at, st.last_fired_at).into_response())
}

async fn alarm_delete(State(app): State<AppState>, target: Target) -> Result<Response, ApiError> {
    let st = app
        .host
        .storage(&target.ns, &target.name, |s| {
            s.delete_alarm()?;
            s.alarm_state()
        })
        .await?;
    Ok(alarm_json(st.at, st.last_fired_at).into_response())
}
