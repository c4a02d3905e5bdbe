//! Cap'n Web RPC endpoints (SPEC §4): `/rpc` (the root: `object(name)`), `/{object}/rpc` (a
//! built-in object's API) and `/{mount}/{object}/rpc` (a class's named methods). POST is one
//! HTTP batch; a GET with `Upgrade: websocket` is a long-lived session.
//!
//! The targets here translate calls to the built-in class's named methods, so RPC, REST and
//! MCP share one implementation. Every call is a turn of the object through the runtime.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Target, body_only};
use crate::metrics::LiveTarget;
use crate::values::{json_to_sql, sql_result_json};
use crate::workflow_api::call;
use axum::Extension;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dotdo_rpc::{
    Args, RpcError, RpcResult, RpcTarget, RpcValue, Session, SessionLimits, Stub, Transport,
    async_trait, serve_batch,
};
use dotdo_runtime::ObjectError;
use dotdo_runtime::storage_api::{KvValue, ListOptions};
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Read buffer of a WebSocket, in bytes.
pub(crate) const WS_READ_BUFFER: usize = 4 * 1024;

/// Close code of a session the server ends (the reference implementation's).
const CLOSE_ABORT: u16 = 3000;

/// `/rpc`: the root API.
pub(crate) async fn root_rpc(State(app): State<AppState>, req: Request) -> Response {
    let root = Stub::new(RootApi {
        app: app.clone(),
        origin: crate::LazyOrigin::new(req.headers()),
    });
    serve(app, root, req).await
}

/// `/{object}/rpc` on the built-in class.
pub(crate) async fn object_rpc(
    State(app): State<AppState>,
    target: Target,
    req: Request,
) -> Response {
    let main = Stub::new(ObjectApi::new(
        app.clone(),
        target,
        &crate::origin(req.headers()),
    ));
    serve(app, main, req).await
}

/// The RPC surface of a mount, if it has one.
#[derive(Clone)]
pub(crate) struct MountRpc(pub(crate) Option<crate::RpcSurface>);

/// `/{mount}/{object}/rpc`: the class's RPC surface, or else its named methods
/// (`DurableObject::call`).
pub(crate) async fn class_rpc(
    State(app): State<AppState>,
    Extension(surface): Extension<MountRpc>,
    target: Target,
    req: Request,
) -> Response {
    let main = match surface.0 {
        Some(make) => make(&app.host, &target.ns, &target.name),
        None => Stub::new(ClassApi {
            app: app.clone(),
            target,
        }),
    };
    serve(app, main, req).await
}

fn limits(app: &AppState) -> SessionLimits {
    SessionLimits {
        max_message_bytes: app.config.max_body_bytes,
        ..SessionLimits::default()
    }
}

async fn serve(app: AppState, main: Stub, req: Request) -> Response {
    let is_upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let limits = limits(&app);
    let metrics = app.metrics.clone();
    if is_upgrade {
        let (mut parts, _) = req.into_parts();
        return match <WebSocketUpgrade as axum::extract::FromRequestParts<()>>::from_request_parts(
            &mut parts,
            &(),
        )
        .await
        {
            Ok(ws) => {
                ws.max_message_size(limits.max_message_bytes)
                    // The default 128 KiB read buffer is zeroed before every read: most of
                    // the CPU of small messages. Larger messages take several reads.
                    .read_buffer_size(WS_READ_BUFFER)
                    .on_upgrade(move |socket| async move {
                        metrics
                            .rpc_websocket_sessions
                            .fetch_add(1, Ordering::Relaxed);
                        metrics.rpc_websocket_open.fetch_add(1, Ordering::Relaxed);
                        websocket(socket, main, limits).await;
                        metrics.rpc_websocket_open.fetch_sub(1, Ordering::Relaxed);
                    })
            }
            Err(e) => e.into_response(),
        };
    }
    if req.method() != Method::POST {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "RPC takes a POST (one HTTP batch) or a WebSocket upgrade",
        )
        .into_response();
    }
    let body = match body_only(req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return ApiError::bad_request("an RPC batch is UTF-8 text").into_response();
    };
    metrics.rpc_batches.fetch_add(1, Ordering::Relaxed);
    let reply = serve_batch(main, text, limits).await;
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        reply,
    )
        .into_response()
}

async fn websocket(socket: WebSocket, main: Stub, limits: SessionLimits) {
    let (session, mut out) = Session::new(main, Transport::WebSocket, limits);
    let (mut tx, mut rx) = socket.split();
    let close = |reason: &str| {
        // A close reason is at most 123 bytes.
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        WsMessage::Close(Some(CloseFrame {
            code: CLOSE_ABORT,
            reason: reason[..end].to_string().into(),
        }))
    };
    loop {
        tokio::select! {
            msg = out.recv() => match msg {
                Some(text) => {
                    // Everything queued goes out in one write.
                    let mut sent = tx.feed(WsMessage::Text(text.into())).await;
                    while let (Ok(()), Ok(more)) = (&sent, out.try_recv()) {
                        sent = tx.feed(WsMessage::Text(more.into())).await;
                    }
                    if sent.is_err() || tx.flush().await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            frame = rx.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => {
                    if let Err(e) = session.receive(text.as_str()) {
                        let abort = session.abort(&e);
                        let _ = tx.send(WsMessage::Text(abort.into())).await;
                        let _ = tx.send(close(&e.to_string())).await;
                        break;
                    }
                }
                Some(Ok(WsMessage::Binary(_))) => {
                    let e = dotdo_rpc::ProtocolError("messages are text frames".into());
                    let abort = session.abort(&e);
                    let _ = tx.send(WsMessage::Text(abort.into())).await;
                    let _ = tx.send(close(&e.to_string())).await;
                    break;
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break,
            },
        }
    }
    session.close(RpcError::error("the WebSocket closed"));
}

/// An object error as the client sees it: the message, with `code` and `status` as in REST.
fn rpc_error(e: ObjectError) -> RpcError {
    api_error(ApiError::from(e))
}

fn api_error(e: ApiError) -> RpcError {
    RpcError::error(e.message)
        .with_prop("code", e.code)
        .with_prop("status", e.status.as_u16())
}

/// The root: `object(name)` gives an object's API.
struct RootApi {
    app: AppState,
    origin: crate::LazyOrigin,
}

#[async_trait]
impl RpcTarget for RootApi {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        match method {
            "object" => {
                let name = a.string(0, "name")?;
                crate::names::check_object_name(&name, true).map_err(api_error)?;
                let target = Target {
                    ns: Arc::from(self.app.config.builtin_namespace.as_str()),
                    name,
                };
                Ok(RpcValue::Stub(Stub::new(ObjectApi::new(
                    self.app.clone(),
                    target,
                    self.origin.get(),
                ))))
            }
            // Returns its argument: a check of the connection and of value encoding.
            "echo" => Ok(a.value(0)),
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

/// What the object targets share: the app, the object and its URL.
#[derive(Clone)]
struct ObjectRef {
    app: AppState,
    target: Arc<Target>,
    /// The object's URLs, for the `$id` of things.
    urls: Arc<crate::things_api::Urls>,
}

impl ObjectRef {
    fn live(&self) -> LiveTarget {
        LiveTarget::new(&self.app.metrics)
    }

    async fn call(&self, method: &str, args: Value) -> Result<Value, RpcError> {
        call(&self.app, &self.target, method, args)
            .await
            .map_err(api_error)
    }

    /// A thing record as the client sees it: the same linked JSON as REST.
    fn thing(&self, rec: Value) -> RpcValue {
        crate::things_api::render(&self.urls, rec)
    }

    fn things(&self, items: Value) -> RpcValue {
        match items {
            Value::Array(items) => {
                RpcValue::Array(items.into_iter().map(|r| self.thing(r)).collect())
            }
            _ => RpcValue::Array(Vec::new()),
        }
    }
}

/// Copies the named options into `out`, refusing any other.
fn options_into(
    method: &str,
    opts: Map<String, Value>,
    allowed: &[&str],
    out: &mut Map<String, Value>,
) -> Result<(), RpcError> {
    for (k, v) in opts {
        if !allowed.contains(&k.as_str()) {
            return Err(RpcError::type_error(format!(
                "{method}: unknown option `{k}` (options are {})",
                allowed.join(", ")
            )));
        }
        out.insert(k, v);
    }
    Ok(())
}

/// A built-in object's API.
struct ObjectApi {
    o: ObjectRef,
    _live: LiveTarget,
}

impl ObjectApi {
    fn new(app: AppState, target: Target, origin: &str) -> ObjectApi {
        let urls = crate::things_api::Urls::at(origin, &target.name);
        let live = LiveTarget::new(&app.metrics);
        ObjectApi {
            o: ObjectRef {
                app,
                target: Arc::new(target),
                urls: Arc::new(urls),
            },
            _live: live,
        }
    }

    fn member(&self, name: &str) -> Option<RpcValue> {
        let o = self.o.clone();
        let live = o.live();
        Some(RpcValue::Stub(match name {
            "relationships" => Stub::new(RelationshipsApi { o, _live: live }),
            "storage" => Stub::new(StorageApi { o, _live: live }),
            _ => return None,
        }))
    }
}

impl ObjectApi {
    /// `subscribe(callback, { after?, type?, collection? })`: calls `callback(event)` for each
    /// event committed after `after` (default: now), in order, until the returned handle's
    /// `cancel()` or its release, or until the callback fails (its session ended).
    async fn subscribe(&self, a: Args<'_>) -> RpcResult {
        let o = &self.o;
        let callback = a.stub(0, "callback")?;
        let mut after = None;
        let (mut collection, mut kind) = (None, None);
        for (k, v) in a.options(1, "options")? {
            match k.as_str() {
                "after" => {
                    after = Some(v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                        RpcError::range_error("subscribe: `after` is a sequence number ≥ 0")
                    })?)
                }
                "type" => kind = v.as_str().map(str::to_string),
                "collection" => collection = v.as_str().map(str::to_string),
                other => {
                    return Err(RpcError::type_error(format!(
                        "subscribe: unknown option `{other}` (options are after, type, collection)"
                    )));
                }
            }
        }
        let (pattern, subject_prefix) =
            crate::sync::filter(collection.as_deref(), kind.as_deref()).map_err(api_error)?;
        let after = match after {
            Some(n) => n,
            None => o.call("workflow.counts", Value::Null).await?["lastEventSeq"]
                .as_i64()
                .unwrap_or(0),
        };
        let mut feed = crate::sync::Feed {
            app: o.app.clone(),
            t: Target {
                ns: o.target.ns.clone(),
                name: o.target.name.clone(),
            },
            after,
            pattern,
            subject_prefix,
        };
        let (cancel, mut cancelled) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut changes = feed.app.changes.subscribe();
            loop {
                let batch = tokio::select! {
                    b = feed.next(&mut changes) => b,
                    _ = &mut cancelled => return,
                };
                let Ok(batch) = batch else { return };
                for ev in batch {
                    if callback.invoke(vec![RpcValue::from(ev)]).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(RpcValue::Stub(Stub::new(Subscription {
            cancel: parking_lot::Mutex::new(Some(cancel)),
            _live: o.live(),
        })))
    }
}

/// A running `subscribe`; releasing it also cancels it.
struct Subscription {
    cancel: parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    _live: LiveTarget,
}

#[async_trait]
impl RpcTarget for Subscription {
    async fn call(&self, method: &str, _args: Vec<RpcValue>) -> RpcResult {
        match method {
            "cancel" => Ok(RpcValue::Bool(self.cancel.lock().take().is_some())),
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

#[async_trait]
impl RpcTarget for ObjectApi {
    async fn get(&self, property: &str) -> RpcResult {
        Ok(match property {
            "name" => RpcValue::str(self.o.target.name.clone()),
            "$id" => RpcValue::str(self.o.urls.object.clone()),
            other => self.member(other).unwrap_or(RpcValue::Undefined),
        })
    }

    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        let o = &self.o;
        match method {
            "things" => {
                let collection = a.string(0, "collection")?;
                dotdo_stores::ids::check_collection(&collection)
                    .map_err(|e| RpcError::type_error(e.to_string()))?;
                Ok(RpcValue::Stub(Stub::new(CollectionApi {
                    o: o.clone(),
                    collection,
                    _live: o.live(),
                })))
            }
            "relationships" | "storage" => Ok(self.member(method).unwrap_or(RpcValue::Undefined)),
            "search" => {
                let mut q = Map::new();
                q.insert("q".into(), json!(a.string(0, "q")?));
                options_into(method, a.options(1, "options")?, &["type", "limit"], &mut q)?;
                let mut out = o.call("search", Value::Object(q)).await?;
                crate::things_api::render_things_in(&o.urls, &mut out);
                Ok(RpcValue::from(out))
            }
            "emit" => {
                let kind = a.string(0, "type")?;
                let data = a.json(1, "data")?;
                let r = o
                    .call("events.emit", json!({ "type": kind, "data": data }))
                    .await?;
                Ok(RpcValue::from(r))
            }
            "subscribe" => self.subscribe(a).await,
            "events" => {
                let mut q = Map::new();
                options_into(
                    method,
                    a.options(0, "options")?,
                    &["after", "type", "limit"],
                    &mut q,
                )?;
                Ok(RpcValue::from(
                    o.call("events.list", Value::Object(q)).await?,
                ))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

/// One collection of things.
struct CollectionApi {
    o: ObjectRef,
    collection: String,
    _live: LiveTarget,
}

impl CollectionApi {
    async fn write(&self, method: &str, id: Option<String>, body: Value) -> RpcResult {
        if !body.is_object() {
            return Err(RpcError::type_error(format!(
                "{}: a thing is an object",
                method.trim_start_matches("things.")
            )));
        }
        let r = self
            .o
            .call(
                method,
                json!({ "collection": self.collection, "id": id, "body": body }),
            )
            .await?;
        Ok(self.o.thing(r))
    }
}

#[async_trait]
impl RpcTarget for CollectionApi {
    async fn get(&self, property: &str) -> RpcResult {
        Ok(match property {
            "name" => RpcValue::str(self.collection.clone()),
            _ => RpcValue::Undefined,
        })
    }

    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        let c = &self.collection;
        match method {
            "list" => {
                let opts = a.options(0, "options")?;
                let mut q = Map::new();
                q.insert("collection".into(), json!(c));
                let mut filters = Vec::new();
                for (k, v) in opts {
                    match k.as_str() {
                        "sort" | "after" | "before" | "limit" => {
                            q.insert(k, v);
                        }
                        "where" | "filter" => {
                            for (field, value) in v.as_object().into_iter().flatten() {
                                let text = match value {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                filters.push(json!([field, text]));
                            }
                        }
                        other => {
                            return Err(RpcError::type_error(format!(
                                "list: unknown option `{other}` (options are where, sort, after, before, limit)"
                            )));
                        }
                    }
                }
                q.insert("filters".into(), Value::Array(filters));
                let mut r = self.o.call("things.list", Value::Object(q)).await?;
                Ok(RpcValue::Object(vec![
                    ("items".into(), self.o.things(r["items"].take())),
                    ("count".into(), RpcValue::from(r["count"].clone())),
                    ("next".into(), RpcValue::from(r["next"].clone())),
                    ("prev".into(), RpcValue::from(r["prev"].clone())),
                ]))
            }
            "get" => {
                let id = a.string(0, "id")?;
                let r = self
                    .o
                    .call("things.get", json!({ "collection": c, "id": id }))
                    .await?;
                Ok(self.o.thing(r))
            }
            "create" => self.write("things.create", None, a.json(0, "data")?).await,
            "update" => {
                self.write(
                    "things.merge",
                    Some(a.string(0, "id")?),
                    a.json(1, "patch")?,
                )
                .await
            }
            "replace" => {
                self.write(
                    "things.replace",
                    Some(a.string(0, "id")?),
                    a.json(1, "data")?,
                )
                .await
            }
            "delete" => {
                let id = a.string(0, "id")?;
                let r = self
                    .o
                    .call("things.delete", json!({ "collection": c, "id": id }))
                    .await?;
                Ok(RpcValue::number(
                    r["deleted"].as_array().map_or(0, Vec::len) as f64,
                ))
            }
            "history" => {
                let id = a.string(0, "id")?;
                let mut q = Map::new();
                q.insert("collection".into(), json!(c));
                q.insert("id".into(), json!(id));
                options_into(
                    method,
                    a.options(1, "options")?,
                    &["after", "limit"],
                    &mut q,
                )?;
                Ok(RpcValue::from(
                    self.o.call("things.history", Value::Object(q)).await?,
                ))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

/// Relationships between things (`from` and `to` are `collection/id`).
struct RelationshipsApi {
    o: ObjectRef,
    _live: LiveTarget,
}

#[async_trait]
impl RpcTarget for RelationshipsApi {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        let o = &self.o;
        match method {
            "create" => {
                let mut q = Map::new();
                q.insert("from".into(), json!(a.string(0, "from")?));
                q.insert("verb".into(), json!(a.string(1, "verb")?));
                q.insert("to".into(), json!(a.string(2, "to")?));
                let data = a.json(3, "data")?;
                if !data.is_null() {
                    q.insert("data".into(), data);
                }
                Ok(RpcValue::from(
                    o.call("relationships.create", Value::Object(q)).await?,
                ))
            }
            "delete" => {
                let id = a.number(0, "id")?;
                Ok(RpcValue::from(
                    o.call("relationships.delete", json!({ "id": id as i64 }))
                        .await?,
                ))
            }
            "list" => {
                let mut q = Map::new();
                options_into(
                    method,
                    a.options(0, "options")?,
                    &["from", "to", "verb", "after", "limit"],
                    &mut q,
                )?;
                Ok(RpcValue::from(
                    o.call("relationships.list", Value::Object(q)).await?,
                ))
            }
            "related" => {
                let from = a.string(0, "thing")?;
                let Some((collection, id)) = from.split_once('/') else {
                    return Err(RpcError::type_error("related: `thing` is `collection/id`"));
                };
                let mut q = Map::new();
                q.insert("collection".into(), json!(collection));
                q.insert("id".into(), json!(id));
                q.insert("verb".into(), json!(a.string(1, "verb")?));
                options_into(
                    method,
                    a.options(2, "options")?,
                    &["after", "limit"],
                    &mut q,
                )?;
                let mut out = o.call("things.related", Value::Object(q)).await?;
                crate::things_api::render_things_in(&o.urls, &mut out);
                Ok(RpcValue::from(out))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

/// The object's raw storage: KV and SQL.
struct StorageApi {
    o: ObjectRef,
    _live: LiveTarget,
}

impl StorageApi {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dotdo_storage::Storage) -> Result<T, dotdo_storage::StorageError>
        + Send
        + 'static,
    ) -> Result<T, RpcError> {
        let t = &self.o.target;
        self.o
            .app
            .host
            .storage(&t.ns, &t.name, f)
            .await
            .map_err(rpc_error)
    }
}

fn kv_value(v: KvValue) -> RpcValue {
    match v {
        KvValue::Json(j) => RpcValue::from(j),
        KvValue::Bytes(b) => RpcValue::Bytes(b, None),
    }
}

#[async_trait]
impl RpcTarget for StorageApi {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let a = Args::new(method, args);
        match method {
            "get" => {
                let key = a.string(0, "key")?;
                Ok(self
                    .run(move |s| s.get(&key))
                    .await?
                    .map_or(RpcValue::Undefined, kv_value))
            }
            "put" => {
                let key = a.string(0, "key")?;
                let value = match a.value(1) {
                    RpcValue::Bytes(b, _) => KvValue::Bytes(b),
                    RpcValue::Undefined => {
                        return Err(RpcError::type_error("put: `value` is required"));
                    }
                    _ => KvValue::Json(a.json(1, "value")?),
                };
                self.run(move |s| s.put(&key, &value)).await?;
                Ok(RpcValue::Undefined)
            }
            "delete" => {
                let key = a.string(0, "key")?;
                Ok(RpcValue::Bool(self.run(move |s| s.delete(&key)).await?))
            }
            "list" => {
                let mut opts = ListOptions::default();
                for (k, v) in a.options(0, "options")? {
                    let text = || v.as_str().map(str::to_string);
                    match k.as_str() {
                        "prefix" => opts.prefix = text(),
                        "start" => opts.start = text(),
                        "end" => opts.end = text(),
                        "reverse" => opts.reverse = v.as_bool().unwrap_or(false),
                        "limit" => {
                            let n = v.as_u64().filter(|n| (1..=10_000).contains(n)).ok_or_else(
                                || RpcError::range_error("list: `limit` is 1 to 10000"),
                            )?;
                            opts.limit = Some(n as usize);
                        }
                        other => {
                            return Err(RpcError::type_error(format!(
                                "list: unknown option `{other}` (options are prefix, start, end, reverse, limit)"
                            )));
                        }
                    }
                }
                if opts.limit.is_none() {
                    opts.limit = Some(1000);
                }
                let items = self.run(move |s| s.list(&opts)).await?;
                Ok(RpcValue::Array(
                    items
                        .into_iter()
                        .map(|(k, v)| {
                            RpcValue::Object(vec![
                                ("key".into(), RpcValue::String(k)),
                                ("value".into(), kv_value(v)),
                            ])
                        })
                        .collect(),
                ))
            }
            "sql" => {
                let sql = a.string(0, "query")?;
                let params = (1..a.len())
                    .map(|i| {
                        let v = match a.value(i) {
                            RpcValue::Bytes(b, _) => {
                                return Ok(dotdo_runtime::storage_api::SqlValue::Blob(b));
                            }
                            v => v.to_json()?,
                        };
                        json_to_sql(&v, i - 1).map_err(api_error)
                    })
                    .collect::<Result<Vec<_>, RpcError>>()?;
                let r = self.run(move |s| s.exec(&sql, &params)).await?;
                Ok(RpcValue::from(sql_result_json(&r)))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}

/// A mounted class's object: each method is its `DurableObject::call`. No argument is `null`,
/// one is itself, several are an array.
struct ClassApi {
    app: AppState,
    target: Target,
}

#[async_trait]
impl RpcTarget for ClassApi {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        let mut json = args
            .iter()
            .map(RpcValue::to_json)
            .collect::<Result<Vec<_>, _>>()?;
        let arg = match json.len() {
            0 => Value::Null,
            1 => json.remove(0),
            _ => Value::Array(json),
        };
        let t = &self.target;
        let r = self
            .app
            .host
            .call(&t.ns, &t.name, method, arg)
            .await
            .map_err(rpc_error)?;
        Ok(RpcValue::from(r))
    }
}
