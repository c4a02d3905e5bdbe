//! `GET /{object}/sync`: an object's committed changes, live. A WebSocket (one JSON text
//! frame per event: `{ seq, event }`) or, without an upgrade, `text/event-stream` (each event
//! with `id: <seq>`). Query: `after` (a sequence number; the stream starts after it),
//! `collection` (only that collection's things) or `type` (an event type pattern). SSE
//! clients reconnect with `Last-Event-ID`. Resuming from the last sequence number seen loses
//! nothing and repeats nothing: the stream is the object's event log in order.

use crate::AppState;
use crate::builtin_stores::type_name;
use crate::error::ApiError;
use crate::extract::Target;
use crate::workflow_api::call;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

/// How often a quiet stream looks for events written outside the API (the `$` pump).
const POLL: Duration = Duration::from_millis(500);
const PAGE: usize = 1000;

pub(crate) struct Feed {
    pub(crate) app: AppState,
    pub(crate) t: Target,
    pub(crate) after: i64,
    pub(crate) pattern: Option<dotdo_workflow::Pattern>,
    /// `collection/` for a collection's stream.
    pub(crate) subject_prefix: Option<String>,
}

/// The event pattern and subject prefix of a stream of one collection's changes or of
/// events of a type pattern (not both).
pub(crate) fn filter(
    collection: Option<&str>,
    kind: Option<&str>,
) -> Result<(Option<dotdo_workflow::Pattern>, Option<String>), ApiError> {
    Ok(match (collection, kind) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `collection` or `type`, not both",
            ));
        }
        (Some(c), None) => {
            dotdo_stores::ids::check_collection(c)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            let p = dotdo_workflow::Pattern::parse(&format!("{}.*", type_name(c)))
                .map_err(ApiError::bad_request)?;
            (Some(p), Some(format!("{c}/")))
        }
        (None, Some(p)) => (
            Some(dotdo_workflow::Pattern::parse(p).map_err(ApiError::bad_request)?),
            None,
        ),
        (None, None) => (None, None),
    })
}

impl Feed {
    /// The next events after the position, waiting until there are some.
    pub(crate) async fn next(
        &mut self,
        changes: &mut tokio::sync::watch::Receiver<u64>,
    ) -> Result<Vec<Value>, ApiError> {
        loop {
            changes.borrow_and_update();
            // Unfiltered, so the position moves past everything read, matching or not.
            let args = json!({ "after": self.after, "limit": PAGE });
            let page = call(&self.app, &self.t, "events.list", args).await?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            if let Some(last) = items.last().and_then(|e| e["seq"].as_i64()) {
                self.after = last;
            }
            let wanted: Vec<Value> = items
                .into_iter()
                .filter(|e| {
                    let kind = e["type"].as_str().unwrap_or_default();
                    let subject = e["subject"].as_str().unwrap_or_default();
                    self.pattern.as_ref().is_none_or(|p| p.matches(kind))
                        && self
                            .subject_prefix
                            .as_deref()
                            .is_none_or(|p| subject.starts_with(p))
                })
                .collect();
            if !wanted.is_empty() {
                return Ok(wanted);
            }
            if !page["cursor"].is_null() {
                continue;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

pub async fn sync(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !["after", "collection", "type"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}` (expected after, collection, type)"
        )));
    }
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    // A reconnecting EventSource repeats the URL's `after` but names where it really got to.
    let after = match last_id.or(q.get("after").map(String::as_str)) {
        None => 0,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::bad_request("`after` must be a sequence number ≥ 0"))?,
    };
    let (pattern, subject_prefix) = filter(
        q.get("collection").map(String::as_str),
        q.get("type").map(String::as_str),
    )?;
    // Activate the object now, so a bad name fails before the stream starts.
    call(&app, &t, "workflow.counts", Value::Null).await?;
    let feed = Feed {
        app: app.clone(),
        t,
        after,
        pattern,
        subject_prefix,
    };
    match ws {
        Ok(upgrade) => Ok(upgrade
            .read_buffer_size(crate::rpc_api::WS_READ_BUFFER)
            .on_upgrade(move |socket| websocket(socket, feed))),
        Err(_) => Ok(sse(feed).into_response()),
    }
}

async fn websocket(socket: WebSocket, mut feed: Feed) {
    let (mut tx, mut rx) = socket.split();
    let mut changes = feed.app.changes.subscribe();
    loop {
        tokio::select! {
            batch = feed.next(&mut changes) => {
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Message::Text(json!({ "error": e.message.clone() }).to_string().into())).await;
                        return;
                    }
                };
                for ev in batch {
                    let frame = json!({ "seq": ev["seq"], "event": ev }).to_string();
                    if tx.send(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
            }
            msg = rx.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn sse(mut feed: Feed) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(PAGE);
    tokio::spawn(async move {
        let mut changes = feed.app.changes.subscribe();
        loop {
            let batch = match feed.next(&mut changes).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx
                        .send(SseEvent::default().event("error").data(e.message.clone()))
                        .await;
                    return;
                }
            };
            for ev in batch {
                let id = ev["seq"].to_string();
                let kind = ev["type"].as_str().unwrap_or("event").to_string();
                let out = SseEvent::default().id(id).event(kind).data(ev.to_string());
                if tx.send(out).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
