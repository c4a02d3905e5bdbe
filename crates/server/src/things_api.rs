//! The clickable REST surface of a business object's stores (SPEC §4): linked JSON where every
//! `$id`, `$type`, `$context` and link is an absolute URL built from the request's origin
//! (`Host`, `X-Forwarded-Proto`, `X-Forwarded-Host`).
//!
//! ```text
//! GET|POST            /{object}/{collection}                 page (filters ?field=value, ?sort=, ?after=|?before=, ?limit=) | create
//! GET|PUT|PATCH|DELETE /{object}/{collection}/{id}           item (ETag: its version; If-Match on writes)
//! GET                 /{object}/{collection}/{id}/history    every version
//! GET                 /{object}/{collection}/{id}/edit       an HTML editor that PUTs the JSON back
//! GET                 /{object}/{collection}/{id}/{verb}     related things
//! GET                 /{object}/_search?q=&type=&limit=
//! POST|GET            /{object}/_relationships, DELETE /{object}/_relationships/{id}
//! POST|GET            /{object}/_indexes
//! POST|GET            /{object}/_objects, DELETE /{object}/_objects/{name}
//! ```

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{JsonBody, Target};
use crate::workflow_api::call;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The routes, with bodies up to `max_body` bytes (`--max-thing-bytes`).
pub fn routes(prefix: &str, max_body: usize) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/_search"), get(search))
        .route(
            &format!("{prefix}/_relationships"),
            get(list_links).post(link),
        )
        .route(&format!("{prefix}/_relationships/{{id}}"), delete(unlink))
        .route(
            &format!("{prefix}/_indexes"),
            get(list_indexes).post(create_index),
        )
        .route(
            &format!("{prefix}/_objects"),
            get(list_objects).post(register_object),
        )
        .route(
            &format!("{prefix}/_objects/{{name}}"),
            delete(forget_object),
        )
        .route(&format!("{prefix}/{{collection}}"), get(list).post(create))
        .route(
            &format!("{prefix}/{{collection}}/{{id}}"),
            get(get_item).put(replace).patch(merge).delete(remove),
        )
        .route(
            &format!("{prefix}/{{collection}}/{{id}}/history"),
            get(history),
        )
        .route(&format!("{prefix}/{{collection}}/{{id}}/edit"), get(edit))
        .route(
            &format!("{prefix}/{{collection}}/{{id}}/{{verb}}"),
            get(related),
        )
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
}

/// The URLs of one object, from the request's origin.
pub(crate) struct Urls {
    origin: String,
    pub object: String,
    /// The object's name, decoded.
    name: String,
}

impl Urls {
    pub fn new(headers: &HeaderMap, t: &Target) -> Urls {
        Urls::at(&crate::origin(headers), &t.name)
    }

    /// The URLs of the object `name` on the server at `origin` (`scheme://host`).
    pub fn at(origin: &str, name: &str) -> Urls {
        Urls {
            object: path(&[origin, &crate::names::encode(name)]),
            origin: origin.to_string(),
            name: name.to_string(),
        }
    }
    pub fn collection(&self, c: &str) -> String {
        path(&[&self.object, c])
    }
    pub fn item(&self, c: &str, id: &str) -> String {
        path(&[&self.object, c, id])
    }
    /// A relationship end as a URL: local `collection/id` refs become item URLs.
    pub fn reference(&self, r: &str) -> String {
        if r.contains("://") {
            r.to_string()
        } else {
            format!("{}/{r}", self.object)
        }
    }
    /// An item URL of this object (however its name is encoded) back to `collection/id`;
    /// anything else as given.
    pub fn local_ref(&self, r: &str) -> String {
        let Some(path) = r
            .strip_prefix(&self.origin)
            .and_then(|p| p.strip_prefix('/'))
        else {
            return r.to_string();
        };
        match path.split('/').collect::<Vec<_>>().as_slice() {
            [object, collection, id]
                if crate::names::decode(object).as_deref() == Some(self.name.as_str()) =>
            {
                format!("{collection}/{id}")
            }
            _ => r.to_string(),
        }
    }
}

/// `a/b/…`: URLs are joined without the formatting machinery, which costs more than the
/// copying on a read that renders a thing.
fn path(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(part);
    }
    out
}

/// A tree linked JSON is built as: JSON for REST and MCP, RPC values for Cap'n Web. Reads over
/// RPC answer mostly with things, so they are built as RPC values directly, not converted.
pub(crate) trait Linked: Sized {
    fn text(s: String) -> Self;
    fn json(v: Value) -> Self;
    fn object(fields: Vec<(String, Self)>) -> Self;
}

impl Linked for Value {
    fn text(s: String) -> Self {
        Value::String(s)
    }
    fn json(v: Value) -> Self {
        v
    }
    fn object(fields: Vec<(String, Self)>) -> Self {
        Value::Object(fields.into_iter().collect())
    }
}

impl Linked for dotdo_rpc::RpcValue {
    fn text(s: String) -> Self {
        dotdo_rpc::RpcValue::String(s)
    }
    fn json(v: Value) -> Self {
        dotdo_rpc::RpcValue::from_json(v)
    }
    fn object(fields: Vec<(String, Self)>) -> Self {
        dotdo_rpc::RpcValue::Object(fields)
    }
}

/// A thing record as linked JSON: its URLs, its data, its versions, its links and actions.
/// A data field named like one of those (only possible in rows not written through the stores)
/// is left out rather than shadow it.
pub(crate) fn render<T: Linked>(u: &Urls, rec: Value) -> T {
    let Value::Object(rec) = rec else {
        return T::object(Vec::new());
    };
    let (mut c, mut id, mut data, mut verbs) = (String::new(), String::new(), Map::new(), vec![]);
    let mut versions = Vec::with_capacity(3);
    // One pass, moving the parts out (and the keys of those that keep their names).
    for (k, v) in rec {
        match (k.as_str(), v) {
            ("collection", Value::String(s)) => c = s,
            ("id", Value::String(s)) => id = s,
            ("data", Value::Object(d)) => data = d,
            ("verbs", Value::Array(v)) => verbs = v,
            ("version" | "createdAt" | "updatedAt", v) => versions.push((k, T::json(v))),
            _ => {}
        }
    }
    let item = u.item(&c, &id);
    let collection = u.collection(&c);
    let action = |method: &str, href: String| {
        T::object(vec![
            ("method".into(), T::text(method.into())),
            ("href".into(), T::text(href)),
        ])
    };

    let mut links = Vec::with_capacity(3 + verbs.len());
    links.push(("collection".into(), T::text(collection.clone())));
    links.push(("history".into(), T::text(path(&[&item, "history"]))));
    links.push(("edit".into(), T::text(path(&[&item, "edit"]))));
    for verb in verbs {
        // A verb named like a fixed link would replace it (and `history` and `edit` are
        // routes of their own, so its link would lead elsewhere): it gets none.
        if let Value::String(v) = verb
            && !["collection", "history", "edit"].contains(&v.as_str())
        {
            let href = path(&[&item, &v]);
            links.push((v, T::text(href)));
        }
    }

    let mut out = Vec::with_capacity(9 + data.len());
    out.push(("$context".into(), T::text(u.object.clone())));
    out.push(("$type".into(), T::text(collection)));
    out.push(("$id".into(), T::text(item.clone())));
    out.push(("id".into(), T::text(id)));
    for (k, v) in data {
        if !k.starts_with('$') && !dotdo_stores::things::META_KEYS.contains(&k.as_str()) {
            out.push((k, T::json(v)));
        }
    }
    out.extend(versions);
    out.push(("links".into(), T::object(links)));
    let actions = vec![
        ("update".into(), action("PUT", item.clone())),
        ("patch".into(), action("PATCH", item.clone())),
        ("delete".into(), action("DELETE", item)),
    ];
    out.push(("actions".into(), T::object(actions)));
    T::object(out)
}

/// Renders the `thing` of each of a page's items (search hits, related things) in place.
pub(crate) fn render_things_in(u: &Urls, page: &mut Value) {
    for item in page["items"].as_array_mut().into_iter().flatten() {
        if item["thing"].is_object() {
            item["thing"] = render(u, item["thing"].take());
        }
    }
}

/// The version an `If-Match` header asks for (`"3"`, `W/"3"` or `3`).
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse::<i64>().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match `{text}` is not a version this API gave out (an ETag like \"3\")"
        ))
    })
}

fn etag(rec: &Value) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{}\"", rec["version"].as_i64()?)).ok()
}

fn param(p: &HashMap<String, String>, k: &str) -> Result<String, ApiError> {
    p.get(k)
        .cloned()
        .ok_or_else(|| ApiError::bad_request(format!("missing {k}")))
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

async fn list(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let collection = param(&p, "collection")?;
    let u = Urls::new(&headers, &t);
    let mut args = json!({ "collection": collection });
    let mut filters = Vec::new();
    let mut limit = None;
    for (k, v) in &q {
        match k.as_str() {
            "sort" | "after" | "before" => args[k.as_str()] = json!(v),
            "limit" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| ApiError::bad_request("`limit` must be a whole number"))?;
                limit = Some(n);
                args["limit"] = json!(n);
            }
            _ => filters.push((k.clone(), v.clone())),
        }
    }
    args["filters"] = json!(filters);
    let mut page = call(&app, &t, "things.list", args).await?;
    let base = u.collection(&collection);
    let sort = page["sort"].as_str().unwrap_or("createdAt").to_string();
    let mut common = format!("sort={}", enc(&sort));
    if let Some(n) = limit {
        common.push_str(&format!("&limit={n}"));
    }
    for (k, v) in &filters {
        common.push_str(&format!("&{}={}", enc(k), enc(v)));
    }
    let url = |extra: Option<String>| match extra {
        Some(e) => format!("{base}?{common}&{e}"),
        None => format!("{base}?{common}"),
    };
    let mut links = json!({
        "home": u.object,
        "first": url(None),
        "last": url(page["last"].as_str().map(|c| format!("before={c}"))),
    });
    if let Some(c) = page["prev"].as_str() {
        links["prev"] = json!(url(Some(format!("before={c}"))));
    }
    if let Some(c) = page["next"].as_str() {
        links["next"] = json!(url(Some(format!("after={c}"))));
    }
    let this = if q.is_empty() {
        base.clone()
    } else {
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        format!("{base}?{}", query.join("&"))
    };
    let sort_options: Map<String, Value> = [
        "createdAt",
        "-createdAt",
        "updatedAt",
        "-updatedAt",
        "id",
        "-id",
    ]
    .iter()
    .map(|s| (s.to_string(), json!(format!("{base}?sort={}", enc(s)))))
    .collect();
    let items: Vec<Value> = match page["items"].take() {
        Value::Array(items) => items.into_iter().map(|r| render(&u, r)).collect(),
        _ => Vec::new(),
    };
    Ok(Json(json!({
        "$context": u.object,
        "$type": base,
        "$id": this,
        "count": page["count"],
        "items": items,
        "links": links,
        "facets": {
            "sort": { "current": sort, "options": sort_options },
            "filter": {
                "fields": "any data field: ?field=value (numbers and true/false match JSON values); nested fields with dots",
                "current": filters.iter().map(|(k, v)| json!({ "field": k, "value": v })).collect::<Vec<_>>(),
            },
        },
        "actions": { "create": { "method": "POST", "href": base } },
    })))
}

async fn create(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let collection = param(&p, "collection")?;
    let rec = call(
        &app,
        &t,
        "things.create",
        json!({ "collection": collection, "body": body }),
    )
    .await?;
    let u = Urls::new(&headers, &t);
    let etag = etag(&rec);
    let out: Value = render(&u, rec);
    let location = out["$id"]
        .as_str()
        .and_then(|s| HeaderValue::from_str(s).ok());
    let mut res = (StatusCode::CREATED, Json(out)).into_response();
    if let Some(v) = location {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(e) = etag {
        res.headers_mut().insert(header::ETAG, e);
    }
    Ok(res)
}

fn item_response(u: &Urls, rec: Value) -> Response {
    let etag = etag(&rec);
    let mut res = Json(render::<Value>(u, rec)).into_response();
    if let Some(e) = etag {
        res.headers_mut().insert(header::ETAG, e);
    }
    res
}

async fn get_item(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let args = json!({ "collection": param(&p, "collection")?, "id": param(&p, "id")? });
    let rec = call(&app, &t, "things.get", args).await?;
    Ok(item_response(&Urls::new(&headers, &t), rec))
}

async fn write(
    app: &AppState,
    t: &Target,
    headers: &HeaderMap,
    p: &HashMap<String, String>,
    method: &str,
    body: Value,
) -> Result<Response, ApiError> {
    let mut args =
        json!({ "collection": param(p, "collection")?, "id": param(p, "id")?, "body": body });
    if let Some(v) = if_match(headers)? {
        args["version"] = json!(v);
    }
    let rec = call(app, t, method, args).await?;
    Ok(item_response(&Urls::new(headers, t), rec))
}

async fn replace(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    write(&app, &t, &headers, &p, "things.replace", body).await
}

async fn merge(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    write(&app, &t, &headers, &p, "things.merge", body).await
}

async fn remove(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let mut args = json!({ "collection": param(&p, "collection")?, "id": param(&p, "id")? });
    if let Some(v) = if_match(&headers)? {
        args["version"] = json!(v);
    }
    call(&app, &t, "things.delete", args).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn history(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (collection, id) = (param(&p, "collection")?, param(&p, "id")?);
    let mut args = json!({ "collection": collection, "id": id });
    for k in ["after", "limit"] {
        if let Some(v) = q.get(k) {
            let n: i64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("`{k}` must be a whole number")))?;
            args[k] = json!(n);
        }
    }
    if let Some(k) = q.keys().find(|k| *k != "after" && *k != "limit") {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}` (expected after, limit)"
        )));
    }
    let page = call(&app, &t, "things.history", args).await?;
    let u = Urls::new(&headers, &t);
    let item = u.item(&collection, &id);
    let mut links = json!({ "thing": item, "collection": u.collection(&collection) });
    if let Some(c) = page["cursor"].as_i64() {
        links["next"] = json!(format!("{item}/history?after={c}"));
    }
    Ok(Json(json!({
        "$context": item,
        "$type": u.collection(&collection),
        "$id": format!("{item}/history"),
        "items": page["items"],
        "links": links,
    })))
}

async fn related(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let (collection, id, verb) = (
        param(&p, "collection")?,
        param(&p, "id")?,
        param(&p, "verb")?,
    );
    let mut args = json!({ "collection": collection, "id": id, "verb": verb });
    if let Some(a) = q.get("after") {
        args["after"] = json!(
            a.parse::<i64>()
                .map_err(|_| ApiError::bad_request("`after` must be a whole number"))?
        );
    }
    let mut page = call(&app, &t, "things.related", args).await?;
    let u = Urls::new(&headers, &t);
    let item = u.item(&collection, &id);
    let items: Vec<Value> = page["items"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .map(|x| match x["thing"].is_object() {
            true => render(&u, x["thing"].take()),
            false => {
                json!({ "$id": u.reference(x["relationship"]["to"].as_str().unwrap_or_default()) })
            }
        })
        .collect();
    let mut links = json!({ "thing": item });
    if let Some(c) = page["cursor"].as_i64() {
        links["next"] = json!(format!("{item}/{verb}?after={c}"));
    }
    Ok(Json(json!({
        "$context": item,
        "$type": u.collection(&collection),
        "$id": format!("{item}/{verb}"),
        "verb": verb,
        "items": items,
        "links": links,
    })))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn edit(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Path(p): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let args = json!({ "collection": param(&p, "collection")?, "id": param(&p, "id")? });
    let rec = call(&app, &t, "things.get", args).await?;
    let u = Urls::new(&headers, &t);
    let str_of = |k: &str| rec[k].as_str().unwrap_or_default();
    let href = u.item(str_of("collection"), str_of("id"));
    let data = serde_json::to_string_pretty(&rec["data"]).unwrap_or_default();
    let version = rec["version"].as_i64().unwrap_or(0);
    let page = format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Edit {title}</title>
<style>body{{font:15px system-ui;margin:2em;max-width:60em}}textarea{{width:100%;height:60vh;font:13px ui-monospace,monospace}}#out{{white-space:pre-wrap}}</style></head>
<body><h1>Edit <a href="{href}">{title}</a></h1>
<p>Version <span id="v">{version}</span>. Saving replaces the data (PUT) if nobody changed it since.</p>
<textarea id="data">{data}</textarea>
<p><button id="save">Save</button> <a href="{href}/history">history</a></p>
<pre id="out"></pre>
<script>
const href = {href_js}; let version = {version};
document.getElementById('save').onclick = async () => {{
  const out = document.getElementById('out');
  let body;
  try {{ body = JSON.parse(document.getElementById('data').value); }} catch (e) {{ out.textContent = 'Not JSON: ' + e.message; return; }}
  const res = await fetch(href, {{ method: 'PUT', headers: {{ 'content-type': 'application/json', 'if-match': '"' + version + '"' }}, body: JSON.stringify(body) }});
  const json = await res.json();
  if (res.ok) {{ version = json.version; document.getElementById('v').textContent = version; out.textContent = 'Saved.'; }}
  else {{ out.textContent = res.status + ' ' + (json.error ? json.error.message : ''); }}
}};
</script></body></html>"#,
        title = escape_html(&format!(
            "{}/{}",
            rec["collection"].as_str().unwrap_or_default(),
            rec["id"].as_str().unwrap_or_default()
        )),
        href = escape_html(&href),
        href_js = serde_json::to_string(&href)
            .unwrap_or_default()
            .replace('<', "\\u003c"),
        data = escape_html(&data),
    );
    Ok(Html(page).into_response())
}

async fn search(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !["q", "type", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter `{k}` (expected q, type, limit)"
        )));
    }
    let text = q.get("q").cloned().unwrap_or_default();
    let limit = q
        .get("limit")
        .map(|l| l.parse::<usize>())
        .transpose()
        .map_err(|_| ApiError::bad_request("`limit` must be a whole number"))?;
    if limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(ApiError::bad_request("limit must be 1 to 100"));
    }
    let u = Urls::new(&headers, &t);
    let query: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let this = format!("{}/_search?{}", u.object, query.join("&"));
    if text.trim().is_empty() {
        // Nothing asked, nothing found (the root links here with an empty `q`).
        return Ok(Json(
            json!({ "$context": u.object, "$id": this, "q": text, "items": [] }),
        ));
    }
    let mut args = json!({ "q": text });
    if let Some(c) = q.get("type") {
        args["type"] = json!(c);
    }
    if let Some(l) = limit {
        args["limit"] = json!(l);
    }
    let mut out = call(&app, &t, "search", args).await?;
    let items: Vec<Value> = out["items"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .map(|h| {
            let mut r: Value = render(&u, h["thing"].take());
            r["$rank"] = h["rank"].take();
            r
        })
        .collect();
    Ok(Json(json!({
        "$context": u.object,
        "$id": this,
        "q": text,
        "items": items,
    })))
}

async fn link(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    JsonBody(mut body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let u = Urls::new(&headers, &t);
    for k in ["from", "to"] {
        if let Some(s) = body[k].as_str() {
            body[k] = json!(u.local_ref(s));
        }
    }
    let r = call(&app, &t, "relationships.create", body).await?;
    Ok((StatusCode::CREATED, Json(render_link(&u, &r))).into_response())
}

fn render_link(u: &Urls, r: &Value) -> Value {
    let mut out = r.clone();
    out["$id"] = json!(format!("{}/_relationships/{}", u.object, r["id"]));
    out["links"] = json!({
        "from": u.reference(r["from"].as_str().unwrap_or_default()),
        "to": u.reference(r["to"].as_str().unwrap_or_default()),
    });
    out
}

async fn list_links(
    State(app): State<AppState>,
    t: Target,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let u = Urls::new(&headers, &t);
    let mut args = json!({});
    for (k, v) in &q {
        match k.as_str() {
            "from" | "to" => args[k.as_str()] = json!(u.local_ref(v)),
            "verb" => args["verb"] = json!(v),
            "after" | "limit" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("`{k}` must be a whole number")))?;
                args[k.as_str()] = json!(n);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}` (expected from, to, verb, after, limit)"
                )));
            }
        }
    }
    let page = call(&app, &t, "relationships.list", args).await?;
    let items: Vec<Value> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| render_link(&u, r))
        .collect();
    Ok(Json(
        json!({ "$context": u.object, "items": items, "cursor": page["cursor"] }),
    ))
}

async fn unlink(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = param(&p, "id")?
        .parse()
        .map_err(|_| ApiError::not_found("no such relationship"))?;
    call(&app, &t, "relationships.delete", json!({ "id": id })).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_indexes(State(app): State<AppState>, t: Target) -> Result<Json<Value>, ApiError> {
    Ok(Json(call(&app, &t, "indexes.list", Value::Null).await?))
}

async fn create_index(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let out = call(&app, &t, "indexes.create", body).await?;
    let status = if out["created"] == true {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)).into_response())
}

async fn list_objects(
    State(app): State<AppState>,
    t: Target,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let mut args = json!({});
    if let Some(a) = q.get("after") {
        args["after"] = json!(a);
    }
    if let Some(l) = q.get("limit") {
        args["limit"] = json!(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("`limit` must be a whole number"))?
        );
    }
    Ok(Json(call(&app, &t, "objects.list", args).await?))
}

async fn register_object(
    State(app): State<AppState>,
    t: Target,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let out = call(&app, &t, "objects.register", body).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn forget_object(
    State(app): State<AppState>,
    t: Target,
    Path(p): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    call(
        &app,
        &t,
        "objects.delete",
        json!({ "name": param(&p, "name")? }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dotdo_rpc::RpcValue;

    fn record() -> Value {
        json!({
            "collection": "contacts", "id": "ada", "version": 3, "createdAt": 1, "updatedAt": 2,
            "deletedAt": null,
            // Rows written around the stores could hold meta names in their data.
            "data": { "name": "Ada", "$id": "elsewhere", "links": "none", "version": 9 },
            "verbs": ["manages", "history"],
        })
    }

    #[test]
    fn a_thing_renders_alike_as_json_and_as_an_rpc_value() {
        let u = Urls::at("http://h", "acme");
        let item = "http://h/acme/contacts/ada";
        let expected = json!({
            "$context": "http://h/acme",
            "$type": "http://h/acme/contacts",
            "$id": item,
            "id": "ada",
            "name": "Ada",
            "version": 3, "createdAt": 1, "updatedAt": 2,
            "links": {
                "collection": "http://h/acme/contacts",
                "history": format!("{item}/history"),
                "edit": format!("{item}/edit"),
                "manages": format!("{item}/manages"),
            },
            "actions": {
                "update": { "method": "PUT", "href": item },
                "patch": { "method": "PATCH", "href": item },
                "delete": { "method": "DELETE", "href": item },
            },
        });
        let as_json: Value = render(&u, record());
        assert_eq!(as_json, expected);
        let as_rpc: RpcValue = render(&u, record());
        assert_eq!(as_rpc.to_json().unwrap(), expected);
        // No key twice (an RPC object is a list of fields).
        let RpcValue::Object(fields) = as_rpc else {
            panic!("not an object")
        };
        let mut keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), fields.len());
    }

    #[test]
    fn things_in_a_page_are_rendered_in_place() {
        let u = Urls::at("http://h", "acme");
        let mut page = json!({ "items": [{ "thing": record(), "rank": 1.5 }, { "thing": null }] });
        render_things_in(&u, &mut page);
        assert_eq!(
            page["items"][0]["thing"]["$id"],
            "http://h/acme/contacts/ada"
        );
        assert_eq!(page["items"][0]["rank"], 1.5);
        assert_eq!(page["items"][1]["thing"], Value::Null);
    }
}
