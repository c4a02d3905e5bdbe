//! `dotdo-server` is the HTTP face of dotdo (axum): `/health`, the API index, the raw storage
//! API of every object, the `$` context's events, subscriptions, actions and DLQ on built-in
//! objects, mounted object classes, request ids and the one JSON error shape. It
//! holds no object state of its own: every request becomes a turn of an object on the `Host`.

mod builtin;
mod builtin_stores;
mod durable_api;
mod error;
mod extract;
mod mcp;
mod mcp_tools;
mod metrics;
mod names;
pub mod openapi;
mod outbound;
mod rpc_api;
mod storage_api;
mod sync;
mod things_api;
mod values;
mod workflow_api;

pub use builtin::{BUILTIN_NAMESPACE, BusinessObject, class as builtin_class};
pub use dotdo_rpc;
pub use error::ApiError;
pub use names::{RESERVED, check_object_name, encode as encode_object_name};
pub use outbound::HttpOutbound;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use dotdo_runtime::Host;
use extract::{Namespace, Namespaces, Target, body_bytes};
use serde_json::json;
use std::sync::Arc;

/// Workflow settings for a server: webhooks leave through [`HttpOutbound`].
pub fn workflow_env() -> Result<Arc<dotdo_workflow::WorkflowEnv>, String> {
    Ok(Arc::new(dotdo_workflow::WorkflowEnv::new(Arc::new(
        HttpOutbound::new()?,
    ))))
}

/// A custom class mounted at a first path segment: `/{segment}/{name}/…` reaches its `fetch`,
/// and `/{segment}/{name}/rpc` its RPC surface.
#[derive(Clone)]
pub struct Mount {
    pub segment: String,
    pub namespace: String,
    /// The RPC main target of one object, given the host and the object's name. Without
    /// one, each RPC method is one of the class's named methods (`DurableObject::call`).
    pub rpc: Option<RpcSurface>,
}

/// Builds the RPC main target of an object of a mounted class: `(host, namespace, name)`.
/// Its methods reach the object through the host (`host.call`, `host.stub`), so every call
/// is a turn of the object, and it may hand out stubs of other objects.
pub type RpcSurface = Arc<dyn Fn(&Host, &str, &str) -> dotdo_rpc::Stub + Send + Sync>;

impl Mount {
    pub fn new(segment: &str, namespace: &str) -> Mount {
        Mount {
            segment: segment.to_string(),
            namespace: namespace.to_string(),
            rpc: None,
        }
    }

    pub fn with_rpc(mut self, surface: RpcSurface) -> Mount {
        self.rpc = Some(surface);
        self
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("segment", &self.segment)
            .field("namespace", &self.namespace)
            .field("rpc", &self.rpc.is_some())
            .finish()
    }
}

/// HTTP settings. Plain data; `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Namespace of the built-in class, whose objects are named by the first path segment.
    pub builtin_namespace: String,
    pub mounts: Vec<Mount>,
    /// Largest request body (KV values may be up to 2 MiB).
    pub max_body_bytes: usize,
    /// Largest body on the stores' routes (things, relationships, …).
    pub max_thing_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            builtin_namespace: BUILTIN_NAMESPACE.to_string(),
            mounts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            max_thing_bytes: 1024 * 1024,
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub host: Host,
    /// Where each route leads (see [`Namespaces`]).
    pub(crate) namespaces: Arc<Namespaces>,
    pub config: Arc<ServerConfig>,
    /// Bumped after every write through the API, so sync streams look for new events.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    pub metrics: Arc<metrics::Metrics>,
}

/// The whole HTTP API as a router, so tests can call it without a socket.
pub fn app(host: Host, config: ServerConfig) -> Router {
    let namespaces = Namespaces {
        builtin: Namespace {
            ns: Arc::from(config.builtin_namespace.as_str()),
            builtin: true,
        },
        mounts: config
            .mounts
            .iter()
            .map(|mount| {
                let ns = Namespace {
                    ns: Arc::from(mount.namespace.as_str()),
                    builtin: false,
                };
                (mount.segment.clone(), ns)
            })
            .collect(),
    };
    let state = AppState {
        host,
        namespaces: Arc::new(namespaces),
        config: Arc::new(config),
        changes: Arc::new(tokio::sync::watch::channel(0).0),
        metrics: Arc::default(),
    };
    let mut router = Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/rpc", axum::routing::any(rpc_api::root_rpc))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(openapi::document().clone()) }),
        );
    for mount in &state.config.mounts {
        // Object routes are registered whole (not nested under the prefix): a nested
        // router matches every request twice and rebuilds its URI, a cost every call paid.
        let at = format!("/{}/{{object}}", mount.segment);
        let object = storage_api::routes(&at)
            .route(
                &format!("{at}/rpc"),
                axum::routing::any(rpc_api::class_rpc)
                    .layer(Extension(rpc_api::MountRpc(mount.rpc.clone()))),
            )
            .route(&at, axum::routing::any(forward_fetch))
            .route(
                &format!("{at}/{{*rest}}"),
                axum::routing::any(forward_fetch),
            );
        router = router.merge(object);
    }
    let at = "/{object}";
    let object = storage_api::routes(at)
        .merge(workflow_api::routes(at))
        .merge(durable_api::routes(at))
        .merge(things_api::routes(at, state.config.max_thing_bytes))
        .route("/{object}/sync", get(sync::sync))
        .route("/{object}/rpc", axum::routing::any(rpc_api::object_rpc))
        .route(at, get(object_root))
        .route("/{object}/health", get(object_health));
    let rest = router
        .merge(object)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One layer made of all three (outermost first): each `Router::layer` call wraps every
        // route in one more boxed service, which a request clones and calls through.
        .layer(
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn(request_id))
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                    |_: Box<dyn std::any::Any + Send>| ApiError::internal().into_response(),
                ))
                .layer(axum::extract::DefaultBodyLimit::max(
                    state.config.max_body_bytes,
                )),
        )
        .with_state(state.clone());
    // MCP reads resources through the REST routes, so it is added last.
    let mcp = mcp::service(state, rest.clone());
    rest.route_service("/mcp", mcp.clone()).route_service(
        "/{object}/mcp",
        tower::ServiceBuilder::new()
            .layer(middleware::from_fn(mcp::scope))
            .service(mcp),
    )
}

const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Gives every request an id (`x-request-id`), used in error bodies and the request's span.
/// The client's id is kept when it is a short, printable one.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(new_request_id);
    let span = tracing::debug_span!(
        "request",
        id = id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut res = error::REQUEST_ID
        .scope(
            id.clone(),
            tracing::Instrument::instrument(next.run(req), span),
        )
        .await;
    res.headers_mut().insert(REQUEST_ID_HEADER, id);
    res
}

/// 16 random hex digits, written straight into the header value.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u64>();
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&digits).expect("hex digits make a valid header value")
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /`: the API index with links to objects.
async fn index(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let origin = origin(&headers);
    let ns = &app.config.builtin_namespace;
    let objects = match app.host.list_objects(ns, None, 100) {
        Ok(list) => list,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let links: Vec<_> = objects
        .iter()
        .filter_map(|o| o.name.as_deref())
        .map(|n| {
            let enc = names::encode(n);
            json!({ "name": n, "$id": format!("{origin}/{enc}") })
        })
        .collect();
    let wants_html = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        return site(&origin, &links).into_response();
    }
    Json(json!({
        "$context": origin,
        "$type": format!("{origin}/"),
        "$id": origin,
        "name": "dotdo",
        "version": env!("CARGO_PKG_VERSION"),
        "links": { "health": format!("{origin}/health") },
        "objects": links,
    }))
    .into_response()
}

/// The site surface for browsers: the objects, linked.
fn site(origin: &str, objects: &[serde_json::Value]) -> axum::response::Html<String> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let items: String = objects
        .iter()
        .map(|o| {
            format!(
                "<li><a href=\"{}\">{}</a></li>",
                esc(o["$id"].as_str().unwrap_or_default()),
                esc(o["name"].as_str().unwrap_or_default())
            )
        })
        .collect();
    axum::response::Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>dotdo</title>\
         <style>body{{font:15px system-ui;margin:2em}}</style></head><body>\
         <h1>dotdo</h1><p>Objects on <code>{}</code> (each is JSON; follow the links):</p>\
         <ul>{items}</ul><p><a href=\"{}/health\">health</a></p></body></html>",
        esc(origin),
        esc(origin)
    ))
}

/// `GET /{object}`: the object's root, with its stores and their counts.
async fn object_root(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let counts = app
        .host
        .call(
            &target.ns,
            &target.name,
            "workflow.counts",
            serde_json::Value::Null,
        )
        .await?;
    let origin = origin(&headers);
    let enc = names::encode(&target.name);
    let id = format!("{origin}/{enc}");
    let collections = app
        .host
        .call(
            &target.ns,
            &target.name,
            "collections.list",
            serde_json::Value::Null,
        )
        .await?;
    let store =
        |path: &str, key: &str| json!({ "$id": format!("{id}/{path}"), "count": counts[key] });
    let mut by_name = serde_json::Map::new();
    for c in collections["items"].as_array().into_iter().flatten() {
        if let Some(n) = c["name"].as_str() {
            by_name.insert(
                n.to_string(),
                json!({ "$id": format!("{id}/{n}"), "count": c["count"], "type": c["type"] }),
            );
        }
    }
    let mut root = json!({
        "$context": origin,
        "$type": format!("{origin}/"),
        "$id": id,
        "name": target.name,
        "collections": by_name,
        "events": store("_events", "events"),
        "subscriptions": store("_subscriptions", "subscriptions"),
        "dlq": store("_dlq", "dlq"),
        "outbox": { "count": counts["outbox"] },
        "schedules": store("_schedules", "schedules"),
        "workflows": { "$id": format!("{id}/_workflows"), "activeRuns": counts["activeRuns"] },
        "links": {
            "health": format!("{id}/health"),
            "storage": format!("{id}/_storage/kv"),
            "alarm": format!("{id}/_storage/alarm"),
            "events": format!("{id}/_events"),
            "subscriptions": format!("{id}/_subscriptions"),
            "actions": format!("{id}/_actions"),
            "dlq": format!("{id}/_dlq"),
            "schedules": format!("{id}/_schedules"),
            "workflows": format!("{id}/_workflows"),
            "search": format!("{id}/_search?q="),
            "relationships": format!("{id}/_relationships"),
            "objects": format!("{id}/_objects"),
        },
        "actions": {
            "create": { "method": "POST", "href": format!("{id}/{{collection}}"), "templated": true },
            "emit": { "method": "POST", "href": format!("{id}/_events") },
        },
    });
    // Each collection also at the top (SPEC §4), unless its name is one of the root's keys.
    for (n, v) in by_name {
        if root.get(&n).is_none() {
            root[n] = v;
        }
    }
    Ok(Json(root).into_response())
}

/// `GET /{object}/health`: activates the object and reports it.
async fn object_health(State(app): State<AppState>, target: Target) -> Result<Response, ApiError> {
    app.host
        .storage(&target.ns, &target.name, |s| s.size_bytes())
        .await?;
    Ok(Json(json!({ "status": "ok", "ns": target.name, "$type": "DO" })).into_response())
}

/// Hands a request under a mount to the object's `fetch`.
async fn forward_fetch(
    State(app): State<AppState>,
    target: Target,
    req: Request,
) -> Result<Response, ApiError> {
    // Object routes are not nested, so the URI is the one the client sent, mount included.
    let (parts, body) = body_bytes(req).await?;
    let res = app
        .host
        .fetch(&target.ns, &target.name, Request::from_parts(parts, body))
        .await?;
    let (parts, body) = res.into_parts();
    Ok(Response::from_parts(parts, axum::body::Body::from(body)))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("nothing at {}", req.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// `scheme://host` of the request, honoring `X-Forwarded-Proto` / `X-Forwarded-Host`.
pub(crate) fn origin(headers: &axum::http::HeaderMap) -> String {
    let [proto, forwarded_host, host] = ORIGIN_HEADERS.map(|name| headers.get(&name));
    origin_of(proto, forwarded_host, host)
}

/// The headers an origin is made of, in the order [`origin_of`] takes them.
/// Names, not strings: a lookup by string parses the name first, on every request.
const ORIGIN_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    axum::http::header::HOST,
];

fn origin_of(
    forwarded_proto: Option<&HeaderValue>,
    forwarded_host: Option<&HeaderValue>,
    host: Option<&HeaderValue>,
) -> String {
    // A forwarded header may list every proxy on the way: the first is the client's.
    let first = |v: Option<&HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let proto = first(forwarded_proto).unwrap_or_else(|| "http".into());
    let host = first(forwarded_host)
        .or_else(|| first(host))
        .unwrap_or_else(|| "localhost".into());
    format!("{proto}://{host}")
}

/// A request's origin, worked out when first asked for: an RPC session needs it only when
/// it hands out an object's API, not for every call.
pub(crate) struct LazyOrigin {
    /// The values of [`ORIGIN_HEADERS`].
    headers: [Option<HeaderValue>; 3],
    value: std::sync::OnceLock<String>,
}

impl LazyOrigin {
    pub(crate) fn new(headers: &axum::http::HeaderMap) -> LazyOrigin {
        LazyOrigin {
            headers: ORIGIN_HEADERS.map(|name| headers.get(&name).cloned()),
            value: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn get(&self) -> &str {
        self.value.get_or_init(|| {
            let [proto, forwarded_host, host] = &self.headers;
            origin_of(proto.as_ref(), forwarded_host.as_ref(), host.as_ref())
        })
    }
}
