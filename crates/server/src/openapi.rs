//! `GET /openapi.json`: an OpenAPI 3.1 description of every route of the built-in API.
//!
//! The document is built from [`OPERATIONS`], one entry per (method, path) the router serves,
//! with its parameters, body and every status it can answer. A test sends a request for each
//! entry to the real router and checks it reaches a handler, so the table cannot name a route
//! that does not exist; routes added to the router must be added here (the test of the object
//! routes lists them).

use serde_json::{Map, Value, json};
use std::sync::OnceLock;

/// A parameter: name, where (`path`/`query`/`header`), JSON type, required, description.
type Param = (&'static str, &'static str, &'static str, bool, &'static str);

/// One operation of the API.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub params: &'static [Param],
    /// The request body's schema name in `components/schemas`, if it takes one.
    pub body: Option<&'static str>,
    /// Success status and the schema of its body (`None`: no body, or not JSON).
    pub ok: (u16, Option<&'static str>),
    /// Error statuses besides the ones every route can answer.
    pub errors: &'static [u16],
}

const OBJECT: Param = (
    "object",
    "path",
    "object-name",
    true,
    "The object's name (percent-encoded).",
);
const COLLECTION: Param = (
    "collection",
    "path",
    "collection",
    true,
    "A collection: lower-case letters, digits, `-`, `_`.",
);
const ID: Param = ("id", "path", "record-id", true, "The id.");
const THING_ID: Param = ("id", "path", "thing-id", true, "The thing's id.");
const NAME: Param = ("name", "path", "name", true, "The workflow.");
const AFTER_INT: Param = (
    "after",
    "query",
    "position",
    false,
    "Start after this position (a cursor from the previous page).",
);
const LIMIT: Param = (
    "limit",
    "query",
    "limit",
    false,
    "Page size, 1 to 1,000 (default 100).",
);
const IF_MATCH: Param = (
    "If-Match",
    "header",
    "if-match",
    false,
    "The version the write expects, as an ETag (`\"3\"`); 409 when stale.",
);

macro_rules! op {
    ($m:literal $p:literal, $tag:literal, $sum:literal, [$($param:expr),*], $body:expr, $ok:expr, [$($e:literal),*]) => {
        Operation { method: $m, path: $p, tag: $tag, summary: $sum, params: &[$($param),*], body: $body, ok: $ok, errors: &[$($e),*] }
    };
}

/// Every operation of the built-in API.
pub const OPERATIONS: &[Operation] = &[
    op!("get" "/health", "server", "Server health", [], None, (200, Some("Object")), []),
    op!("get" "/", "server", "API index (HTML for browsers)", [], None, (200, Some("Object")), []),
    op!("get" "/openapi.json", "server", "This document", [], None, (200, Some("Object")), []),
    op!("get" "/metrics", "server", "Counters in the Prometheus text format", [], None, (200, None), []),
    op!("post" "/mcp", "mcp", "MCP (Model Context Protocol) over streamable HTTP: JSON-RPC in, JSON or an event stream out (`Accept: application/json, text/event-stream`). Tools take an `object` argument; resources are this API's URLs", [], None, (200, None), [406]),
    op!("post" "/rpc", "rpc", "Cap'n Web RPC as one HTTP batch: newline-separated messages in, the answers out (a GET with `Upgrade: websocket` opens a session instead). Main object: `object(name)` (an object's API) and `echo(value)`", [], None, (200, None), []),
    op!("get" "/{object}", "objects", "The object's root: collections, stores, links", [OBJECT], None, (200, Some("Object")), []),
    op!("post" "/{object}/mcp", "mcp", "MCP scoped to one object: the same tools without the `object` argument", [OBJECT], None, (200, None), [406]),
    op!("post" "/{object}/rpc", "rpc", "Cap'n Web RPC on the object as one HTTP batch (a GET with `Upgrade: websocket` opens a session). Main object: `things(collection)`, `relationships`, `storage`, `search(q, options)`, `emit(type, data)`, `events(options)`, `subscribe(callback, options)`", [OBJECT], None, (200, None), []),
    op!("get" "/{object}/health", "objects", "Activate the object and report it", [OBJECT], None, (200, Some("Object")), []),
    // Raw storage.
    op!("get" "/{object}/_storage/kv", "storage", "List KV entries", [OBJECT, ("prefix", "query", "string", false, "Keys starting with this."), ("start", "query", "string", false, "From this key."), ("end", "query", "string", false, "Before this key."), ("limit", "query", "limit-kv", false, "1 to 10,000."), ("reverse", "query", "boolean", false, "Newest key first."), ("cursor", "query", "string", false, "From a previous page.")], None, (200, Some("Page")), []),
    op!("get" "/{object}/_storage/kv/{key}", "storage", "Read a KV entry", [OBJECT, ("key", "path", "key", true, "The key.")], None, (200, None), []),
    op!("put" "/{object}/_storage/kv/{key}", "storage", "Write a KV entry (any JSON, or bytes)", [OBJECT, ("key", "path", "key", true, "The key.")], Some("Any"), (204, None), [413]),
    op!("delete" "/{object}/_storage/kv/{key}", "storage", "Delete a KV entry", [OBJECT, ("key", "path", "key", true, "The key.")], None, (200, Some("Object")), []),
    op!("post" "/{object}/_storage/sql", "storage", "Run SQL on the object's database", [OBJECT], Some("Sql"), (200, Some("SqlResult")), [413]),
    op!("get" "/{object}/_storage/alarm", "storage", "The object's alarm", [OBJECT], None, (200, Some("Object")), []),
    op!("put" "/{object}/_storage/alarm", "storage", "Set the object's alarm", [OBJECT], Some("Alarm"), (200, Some("Object")), []),
    op!("delete" "/{object}/_storage/alarm", "storage", "Clear the object's alarm", [OBJECT], None, (200, Some("Object")), []),
    // The $ context.
    op!("post" "/{object}/_events", "events", "Emit an event", [OBJECT], Some("Emit"), (201, Some("Object")), []),
    op!("get" "/{object}/_events", "events", "The event log", [OBJECT, AFTER_INT, ("type", "query", "type-pattern", false, "A type pattern: `Order.*`, `*.created`."), LIMIT], None, (200, Some("Page")), []),
    op!("post" "/{object}/_subscriptions", "events", "Subscribe a webhook or object to events", [OBJECT], Some("Subscribe"), (201, Some("Object")), []),
    op!("get" "/{object}/_subscriptions", "events", "List subscriptions", [OBJECT], None, (200, Some("Page")), []),
    op!("delete" "/{object}/_subscriptions/{id}", "events", "Remove a subscription", [OBJECT, ID], None, (204, None), []),
    op!("post" "/{object}/_actions", "actions", "Record a durable webhook action", [OBJECT, ("Idempotency-Key", "header", "string", false, "Stands in for `key`.")], Some("CreateAction"), (202, Some("Object")), []),
    op!("get" "/{object}/_actions", "actions", "List actions", [OBJECT, ("status", "query", "action-status", false, "pending, running, completed or failed."), AFTER_INT, LIMIT], None, (200, Some("Page")), []),
    op!("get" "/{object}/_actions/{id}", "actions", "One action", [OBJECT, ID], None, (200, Some("Object")), []),
    op!("get" "/{object}/_dlq", "actions", "Dead letters", [OBJECT, AFTER_INT, LIMIT], None, (200, Some("Page")), []),
    op!("post" "/{object}/_dlq/{id}/replay", "actions", "Retry a dead letter", [OBJECT, ID], None, (200, Some("Object")), []),
    op!("delete" "/{object}/_dlq/{id}", "actions", "Drop a dead letter", [OBJECT, ID], None, (204, None), []),
    op!("post" "/{object}/_schedules", "schedules", "Add a schedule", [OBJECT], Some("Schedule"), (201, Some("Object")), [409]),
    op!("get" "/{object}/_schedules", "schedules", "List schedules", [OBJECT, AFTER_INT, LIMIT], None, (200, Some("Page")), []),
    op!("get" "/{object}/_schedules/{id}", "schedules", "One schedule", [OBJECT, ("id", "path", "name", true, "The schedule.")], None, (200, Some("Object")), []),
    op!("delete" "/{object}/_schedules/{id}", "schedules", "Delete a schedule", [OBJECT, ("id", "path", "name", true, "The schedule.")], None, (204, None), []),
    op!("post" "/{object}/_workflows", "workflows", "Define (or replace) a workflow", [OBJECT], Some("Object"), (201, Some("Object")), [409]),
    op!("get" "/{object}/_workflows", "workflows", "List workflow definitions", [OBJECT], None, (200, Some("Page")), []),
    op!("get" "/{object}/_workflows/{name}", "workflows", "One definition", [OBJECT, NAME], None, (200, Some("Object")), []),
    op!("delete" "/{object}/_workflows/{name}", "workflows", "Delete a definition", [OBJECT, NAME], None, (204, None), []),
    op!("post" "/{object}/_workflows/{name}/runs", "workflows", "Start a run", [OBJECT, NAME], Some("StartRun"), (201, Some("Object")), [409, 413]),
    op!("get" "/{object}/_workflows/{name}/runs", "workflows", "List runs", [OBJECT, NAME, AFTER_INT, LIMIT], None, (200, Some("Page")), []),
    op!("get" "/{object}/_workflows/{name}/runs/{id}", "workflows", "A run with its journal", [OBJECT, NAME, ("id", "path", "name", true, "The run.")], None, (200, Some("Object")), []),
    op!("post" "/{object}/_workflows/{name}/runs/{id}/cancel", "workflows", "Cancel a run", [OBJECT, NAME, ("id", "path", "name", true, "The run.")], None, (200, Some("Object")), [409]),
    // Stores.
    op!("get" "/{object}/_search", "things", "Full-text search over things", [OBJECT, ("q", "query", "string", false, "Words (all must match; `word*` for a prefix)."), ("type", "query", "collection", false, "Only this collection."), ("limit", "query", "limit-search", false, "1 to 100 (default 20).")], None, (200, Some("Object")), []),
    op!("post" "/{object}/_relationships", "things", "Link two things", [OBJECT], Some("Link"), (201, Some("Object")), []),
    op!("get" "/{object}/_relationships", "things", "List relationships", [OBJECT, ("from", "query", "ref", false, "Outgoing from this thing."), ("to", "query", "ref", false, "Incoming to this thing or URL."), ("verb", "query", "verb", false, "Only this verb."), AFTER_INT, LIMIT], None, (200, Some("Page")), []),
    op!("delete" "/{object}/_relationships/{id}", "things", "Unlink", [OBJECT, ("id", "path", "integer", true, "The relationship.")], None, (204, None), []),
    op!("post" "/{object}/_indexes", "things", "Declare an index on a data field", [OBJECT], Some("Index"), (201, Some("Object")), []),
    op!("get" "/{object}/_indexes", "things", "Declared indexes", [OBJECT], None, (200, Some("Object")), []),
    op!("post" "/{object}/_objects", "objects", "Register a known object", [OBJECT], Some("KnownObject"), (201, Some("Object")), []),
    op!("get" "/{object}/_objects", "objects", "Known objects", [OBJECT, ("after", "query", "text", false, "After this name."), LIMIT], None, (200, Some("Page")), []),
    op!("delete" "/{object}/_objects/{name}", "objects", "Forget a known object", [OBJECT, ("name", "path", "object-name", true, "The object.")], None, (204, None), []),
    op!("get" "/{object}/sync", "things", "Live changes (WebSocket on upgrade, else server-sent events)", [OBJECT, ("after", "query", "position", false, "Start after this sequence number."), ("collection", "query", "collection", false, "Only this collection's changes."), ("type", "query", "type-pattern", false, "Only events of this type pattern."), ("Last-Event-ID", "header", "position-text", false, "SSE: resume after this sequence number.")], None, (200, None), []),
    op!("get" "/{object}/{collection}", "things", "A page of a collection", [OBJECT, COLLECTION, ("sort", "query", "sort", false, "createdAt (default), updatedAt, id or a data field; `-` for descending."), ("after", "query", "string", false, "A cursor from `links.next`."), ("before", "query", "string", false, "A cursor from `links.prev` or `links.last`."), LIMIT], None, (200, Some("CollectionPage")), []),
    op!("post" "/{object}/{collection}", "things", "Create a thing", [OBJECT, COLLECTION], Some("Thing"), (201, Some("Thing")), [409, 413]),
    op!("get" "/{object}/{collection}/{id}", "things", "A thing", [OBJECT, COLLECTION, THING_ID], None, (200, Some("Thing")), []),
    op!("put" "/{object}/{collection}/{id}", "things", "Replace a thing's data", [OBJECT, COLLECTION, THING_ID, IF_MATCH], Some("Thing"), (200, Some("Thing")), [409, 413]),
    op!("patch" "/{object}/{collection}/{id}", "things", "Merge into a thing's data (JSON merge patch)", [OBJECT, COLLECTION, THING_ID, IF_MATCH], Some("Thing"), (200, Some("Thing")), [409, 413]),
    op!("delete" "/{object}/{collection}/{id}", "things", "Delete a thing (soft)", [OBJECT, COLLECTION, THING_ID, IF_MATCH], None, (204, None), [409]),
    op!("get" "/{object}/{collection}/{id}/history", "things", "Every version of a thing", [OBJECT, COLLECTION, THING_ID, ("after", "query", "position", false, "After this version."), LIMIT], None, (200, Some("Object")), []),
    op!("get" "/{object}/{collection}/{id}/edit", "things", "An HTML editor for the thing", [OBJECT, COLLECTION, THING_ID], None, (200, None), []),
    op!("get" "/{object}/{collection}/{id}/{verb}", "things", "Things this thing links to with `verb`", [OBJECT, COLLECTION, THING_ID, ("verb", "path", "verb", true, "A relationship verb."), ("after", "query", "position", false, "After this relationship id.")], None, (200, Some("Object")), []),
];

fn schemas() -> Value {
    let obj = |props: Value, required: &[&str]| json!({ "type": "object", "properties": props, "required": required });
    json!({
        "Any": {},
        "Object": { "type": "object" },
        "Error": obj(json!({ "error": obj(json!({
            "code": { "type": "string", "enum": ["BAD_REQUEST", "NOT_FOUND", "METHOD_NOT_ALLOWED", "CONFLICT", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "STORAGE_FULL", "UNAVAILABLE", "INTERNAL_SERVER_ERROR"] },
            "message": { "type": "string" },
            "details": { "type": "object" },
            "requestId": { "type": "string" },
        }), &["code", "message", "requestId"]) }), &["error"]),
        "Page": obj(json!({ "items": { "type": "array", "items": {} }, "cursor": {} }), &["items"]),
        "Sql": obj(json!({ "sql": { "type": "string" }, "params": { "type": "array" } }), &["sql"]),
        "SqlResult": obj(json!({ "columns": { "type": "array", "items": { "type": "string" } }, "rows": { "type": "array" }, "rowsRead": { "type": "integer" }, "rowsWritten": { "type": "integer" } }), &["columns", "rows"]),
        "Alarm": obj(json!({ "at": { "type": ["integer", "null"] } }), &["at"]),
        "Emit": obj(json!({ "type": { "type": "string", "description": "Noun.verb" }, "subject": { "type": "string" }, "data": {} }), &["type"]),
        "Subscribe": obj(json!({ "on": { "type": "string" }, "deliver": { "type": "object", "description": "{ webhook: { url, headers? } } or { object: name }" }, "retry": { "type": "object" } }), &["on", "deliver"]),
        "CreateAction": obj(json!({ "name": { "type": "string" }, "key": { "type": "string" }, "webhook": obj(json!({ "url": { "type": "string" }, "method": { "type": "string" }, "headers": { "type": "object" }, "body": {} }), &["url"]), "retry": { "type": "object" } }), &["name", "webhook"]),
        "Schedule": obj(json!({ "id": { "type": "string" }, "every": { "type": "string", "description": "every 5 minutes, every weekday at 17:30, …" }, "cron": { "type": "string" }, "tz": { "type": "string" }, "catchUp": { "type": "string", "enum": ["skip", "catch_up", "coalesce"] }, "catchUpLimit": { "type": "integer" }, "action": { "type": "object", "description": "{ webhook: {…} } or { emit: { type, data? } }" } }), &["action"]),
        "StartRun": obj(json!({ "input": {}, "id": { "type": "string" } }), &[]),
        "Link": obj(json!({ "from": { "type": "string" }, "verb": { "type": "string" }, "to": { "type": "string" }, "data": {}, "cascade": { "type": "boolean" } }), &["from", "verb", "to"]),
        "Index": obj(json!({ "collection": { "type": "string" }, "field": { "type": "string" } }), &["collection", "field"]),
        "KnownObject": obj(json!({ "name": { "type": "string" }, "relation": { "type": "string", "enum": ["child", "shard", "clone", "known"] }, "class": { "type": "string" }, "data": {} }), &["name"]),
        "Thing": { "type": "object", "description": "Any JSON object. `id` names it (on create), `version` is the expected version; `$…` keys, `links`, `actions`, `createdAt`, `updatedAt` and `deletedAt` are read-only and ignored on writes.", "properties": { "$id": { "type": "string" }, "$type": { "type": "string" }, "$context": { "type": "string" }, "id": { "type": "string" }, "version": { "type": "integer" }, "links": { "type": "object" }, "actions": { "type": "object" } } },
        "CollectionPage": obj(json!({ "$context": { "type": "string" }, "$type": { "type": "string" }, "$id": { "type": "string" }, "count": { "type": "integer" }, "items": { "type": "array", "items": { "$ref": "#/components/schemas/Thing" } }, "links": { "type": "object" }, "facets": { "type": "object" }, "actions": { "type": "object" } }), &["items", "links"]),
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No content",
        400 => "Bad request: malformed JSON, wrong types, bad names, cursors or parameters",
        404 => "Not found",
        405 => "Method not allowed",
        409 => "Conflict: a stale version, or an id taken with another definition",
        413 => "Payload too large",
        415 => "Unsupported media type",
        500 => "Internal error (details only in the server log)",
        503 => "Unavailable: the server is shutting down",
        507 => "Storage full",
        _ => "Response",
    }
}

/// The schema of a parameter kind: the constraints the server checks, so a value the schema
/// allows is one the server takes.
fn param_schema(kind: &str) -> Value {
    let pattern = |p: &str| json!({ "type": "string", "pattern": p });
    match kind {
        "object-name" => json!({
            "type": "string", "minLength": 1, "maxLength": 256,
            "pattern": "^[^_.]",
            "not": { "enum": crate::names::RESERVED },
        }),
        "text" => json!({ "type": "string" }),
        "collection" => json!({
            "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$",
            "not": { "enum": dotdo_stores::ids::RESERVED_COLLECTIONS },
        }),
        "thing-id" => pattern("^[A-Za-z0-9~-][A-Za-z0-9._~-]{0,255}$"),
        "record-id" => pattern("^[a-z]+_[0-9a-z]{20}$"),
        "name" => pattern("^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$"),
        "key" => pattern("^[A-Za-z0-9._~-]{1,512}$"),
        "verb" => pattern("^[A-Za-z][A-Za-z0-9_-]{0,63}$"),
        "ref" => pattern("^[a-z][a-z0-9_-]{0,63}/[A-Za-z0-9~-][A-Za-z0-9._~-]{0,255}$"),
        "sort" => pattern("^[-+]?[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$"),
        "type-pattern" => pattern("^$|^(\\*|[A-Za-z][A-Za-z0-9_]*)\\.(\\*|[A-Za-z][A-Za-z0-9_]*)$"),
        "action-status" => {
            json!({ "type": "string", "enum": ["pending", "running", "completed", "failed"] })
        }
        "if-match" => pattern("^(W/)?\"[0-9]{1,15}\"$"),
        "position" => {
            json!({ "type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_i64 })
        }
        "position-text" => pattern("^[0-9]{1,15}$"),
        "limit" => json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
        "limit-kv" => json!({ "type": "integer", "minimum": 1, "maximum": 10000 }),
        "limit-search" => json!({ "type": "integer", "minimum": 1, "maximum": 100 }),
        other => json!({ "type": other }),
    }
}

fn operation(op: &Operation) -> Value {
    let mut params = Vec::new();
    for (name, location, kind, required, description) in op.params {
        params.push(json!({
            "name": name, "in": location, "required": required, "description": description,
            "schema": param_schema(kind),
        }));
    }
    let error =
        json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
    let mut responses = Map::new();
    let (status, schema) = op.ok;
    let mut ok = json!({ "description": reason(status) });
    if let Some(s) = schema {
        ok["content"] = json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{s}") } } });
    } else if status != 204 {
        ok["content"] = json!({ "*/*": { "schema": {} } });
    }
    // Creates that find the same thing again answer 200.
    if status == 201 || status == 202 {
        responses.insert("200".into(), ok.clone());
    }
    responses.insert(status.to_string(), ok);
    let mut errors: Vec<u16> = vec![400, 404, 405, 500, 503];
    if op.body.is_some() {
        errors.extend([413, 415]);
    }
    if op.path.starts_with("/{object}") && op.method != "get" {
        errors.push(507);
    }
    errors.extend(op.errors);
    errors.sort_unstable();
    errors.dedup();
    for e in errors {
        responses.insert(
            e.to_string(),
            json!({ "description": reason(e), "content": error }),
        );
    }
    let mut out = json!({
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.', '_'], " ").split_whitespace().map(|w| { let mut c = w.chars(); c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default() }).collect::<String>()),
        "tags": [op.tag],
        "summary": op.summary,
        "parameters": params,
        "responses": responses,
    });
    if let Some(body) = op.body {
        out["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{body}") } } },
        });
    }
    out
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        for op in OPERATIONS {
            let entry = paths.entry(op.path).or_insert_with(|| json!({}));
            entry[op.method] = operation(op);
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "dotdo",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Durable objects over HTTP: each first path segment names an object of the built-in business class. Every error is `{ error: { code, message, requestId } }`.",
            },
            "paths": paths,
            "components": { "schemas": schemas() },
        })
    })
}
