//! The MCP tools: their names, descriptions (written for a model), input schemas, and what
//! each runs. Every tool is one of the built-in class's named methods (the same code path as
//! REST and RPC), except `sql_query`, which runs read-only SQL on the object's storage.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Target;
use crate::things_api::{Urls, render, render_things_in};
use crate::values::{json_to_sql, sql_result_json};
use crate::workflow_api::call;
use serde_json::{Map, Value, json};

/// One tool: its name, description and the properties of its input (besides `object`).
pub(crate) struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub read_only: bool,
    properties: fn() -> Value,
    required: &'static [&'static str],
}

const COLLECTION: &str = "A collection name: lower-case letters, digits, `-` and `_`, usually a plural noun such as `contacts` or `orders`.";
const REF: &str = "A thing as `collection/id`, e.g. `contacts/john`.";

fn collection() -> Value {
    json!({ "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$", "description": COLLECTION })
}
fn id() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 256, "description": "The thing's id." })
}
fn limit(max: u64) -> Value {
    json!({ "type": "integer", "minimum": 1, "maximum": max, "description": format!("Page size, 1 to {max}.") })
}
fn after_seq() -> Value {
    json!({ "type": "integer", "minimum": 0, "description": "Start after this position (the `cursor` of the previous page)." })
}
fn thing_ref() -> Value {
    json!({ "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}/.+$", "description": REF })
}
fn record_id(what: &str) -> Value {
    json!({ "type": "string", "minLength": 1, "description": format!("The {what}'s id.") })
}

pub(crate) const TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "collections_list",
        description: "List the object's collections of things with how many each holds. Start here to see what data the object has.",
        read_only: true,
        properties: || json!({}),
        required: &[],
    },
    ToolDef {
        name: "things_list",
        description: "List things in a collection, one page at a time. Filter with `where` (exact matches on fields, dotted paths allowed), order with `sort` (a field, `-field` for descending; default `createdAt`), and pass the returned `next` cursor as `after` to get the next page.",
        read_only: true,
        properties: || {
            json!({
                "collection": collection(),
                "where": { "type": "object", "description": "Fields and the values they must equal, e.g. {\"status\": \"open\"}.", "additionalProperties": { "type": ["string", "number", "boolean"] } },
                "sort": { "type": "string", "pattern": "^[-+]?[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$", "description": "A field to sort by; prefix `-` for descending." },
                "after": { "type": "string", "description": "The `next` cursor of the previous page." },
                "limit": limit(1000),
            })
        },
        required: &["collection"],
    },
    ToolDef {
        name: "things_get",
        description: "Get one thing by collection and id: its fields, version, timestamps and URL.",
        read_only: true,
        properties: || json!({ "collection": collection(), "id": id() }),
        required: &["collection", "id"],
    },
    ToolDef {
        name: "things_create",
        description: "Create a thing in a collection. `data` holds its fields; include `id` in it to choose the id (otherwise one is generated). Fails with CONFLICT if the id exists. Emits `<Type>.created`.",
        read_only: false,
        properties: || {
            json!({
                "collection": collection(),
                "data": { "type": "object", "description": "The thing's fields (JSON). An `id` field sets its id." },
            })
        },
        required: &["collection", "data"],
    },
    ToolDef {
        name: "things_update",
        description: "Change some fields of a thing (JSON merge patch: fields given are set, fields set to null are removed, others stay). Give `version` to update only if nobody changed it since you read it (else CONFLICT). Emits `<Type>.updated`.",
        read_only: false,
        properties: || {
            json!({
                "collection": collection(),
                "id": id(),
                "patch": { "type": "object", "description": "Fields to set; null removes a field." },
                "version": { "type": "integer", "minimum": 1, "description": "The version you read; the update fails if it moved on." },
            })
        },
        required: &["collection", "id", "patch"],
    },
    ToolDef {
        name: "things_delete",
        description: "Delete a thing (soft delete: its history stays). Things linked from it with a cascading relationship are deleted too. Emits `<Type>.deleted`.",
        read_only: false,
        properties: || json!({ "collection": collection(), "id": id() }),
        required: &["collection", "id"],
    },
    ToolDef {
        name: "things_history",
        description: "The versions of a thing, oldest first: what each write set and when.",
        read_only: true,
        properties: || json!({ "collection": collection(), "id": id(), "after": after_seq(), "limit": limit(1000) }),
        required: &["collection", "id"],
    },
    ToolDef {
        name: "relationships_link",
        description: "Link two things with a verb, e.g. from `contacts/john` verb `worksAt` to `companies/acme`. `cascade: true` deletes the target when the source is deleted.",
        read_only: false,
        properties: || {
            json!({
                "from": thing_ref(),
                "verb": { "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]{0,63}$", "description": "The relationship, a word such as `worksAt` or `owns`." },
                "to": { "type": "string", "minLength": 1, "description": "The target: `collection/id`, or a URL of a thing elsewhere." },
                "data": { "type": "object", "description": "Optional fields on the link itself." },
                "cascade": { "type": "boolean", "description": "Delete the target when the source is deleted." },
            })
        },
        required: &["from", "verb", "to"],
    },
    ToolDef {
        name: "relationships_unlink",
        description: "Remove a relationship by its id (from `relationships_list` or `relationships_link`).",
        read_only: false,
        properties: || json!({ "id": { "type": "integer", "minimum": 1, "description": "The relationship's id." } }),
        required: &["id"],
    },
    ToolDef {
        name: "relationships_list",
        description: "List relationships, filtered by source (`from`), target (`to`) and/or `verb`.",
        read_only: true,
        properties: || {
            json!({
                "from": thing_ref(),
                "to": { "type": "string", "minLength": 1, "description": "The target: `collection/id` or a URL." },
                "verb": { "type": "string", "minLength": 1, "description": "Only this verb." },
                "after": after_seq(),
                "limit": limit(1000),
            })
        },
        required: &[],
    },
    ToolDef {
        name: "relationships_related",
        description: "The things a thing links to with a verb, e.g. what `contacts/john` `worksAt`.",
        read_only: true,
        properties: || {
            json!({
                "thing": thing_ref(),
                "verb": { "type": "string", "minLength": 1, "description": "The relationship verb." },
                "after": after_seq(),
                "limit": limit(1000),
            })
        },
        required: &["thing", "verb"],
    },
    ToolDef {
        name: "search",
        description: "Full-text search over the object's things (every string field, nested ones too), best matches first. Words are matched as given; quote phrases.",
        read_only: true,
        properties: || {
            json!({
                "q": { "type": "string", "minLength": 1, "description": "The words to find." },
                "type": { "type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$", "description": "Only this collection." },
                "limit": limit(100),
            })
        },
        required: &["q"],
    },
    ToolDef {
        name: "events_emit",
        description: "Record an event in the object's log, e.g. `Invoice.paid` with its data. Handlers and subscriptions on matching patterns run after it commits.",
        read_only: false,
        properties: || {
            json!({
                "type": { "type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*\\.[A-Za-z][A-Za-z0-9_]*$", "description": "`Noun.verb`, e.g. `Order.shipped`." },
                "subject": { "type": "string", "description": "What the event is about, e.g. `orders/o-1`." },
                "data": { "description": "The event's data (any JSON)." },
            })
        },
        required: &["type"],
    },
    ToolDef {
        name: "events_list",
        description: "Read the object's event log in order, optionally only types matching a pattern (`Order.*`, `*.created`). Pass the returned `cursor` as `after` for the next page.",
        read_only: true,
        properties: || {
            json!({
                "after": after_seq(),
                "type": { "type": "string", "description": "A type pattern: `Noun.verb`, `Noun.*` or `*.verb`." },
                "limit": limit(1000),
            })
        },
        required: &[],
    },
    ToolDef {
        name: "actions_run",
        description: "Run a durable action: a webhook call that is recorded, retried with backoff on failure, and done at most once per `key` (give a key to make retries of your own request safe). Returns the action; check it with `actions_status`.",
        read_only: false,
        properties: || {
            json!({
                "name": { "type": "string", "minLength": 1, "maxLength": 256, "description": "What the action does, e.g. `send-invoice`." },
                "key": { "type": "string", "minLength": 1, "description": "Idempotency key: the same key never runs twice." },
                "webhook": {
                    "type": "object",
                    "description": "The HTTP call to make.",
                    "properties": {
                        "url": { "type": "string", "pattern": "^https?://", "description": "http(s) URL." },
                        "method": { "type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"] },
                        "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                        "body": { "description": "JSON body." },
                    },
                    "required": ["url"],
                    "additionalProperties": false,
                },
                "retry": { "type": "object", "description": "Retry policy: `{ maxAttempts, initialDelayMs, maxDelayMs }`." },
            })
        },
        required: &["name", "webhook"],
    },
    ToolDef {
        name: "actions_status",
        description: "The status of a durable action (pending, running, completed, failed), its attempts, last error and result.",
        read_only: true,
        properties: || json!({ "id": record_id("action") }),
        required: &["id"],
    },
    ToolDef {
        name: "schedules_create",
        description: "Schedule recurring work in the object's time zone: `every` in words (`every day at 9am`, `every weekday at 17:30`, `every 15 minutes`) or a `cron` expression, with an `action`: `{ \"emit\": { \"type\": \"Report.due\" } }` or `{ \"webhook\": { \"url\": … } }`. Runs missed while down are skipped unless `catchUp` says otherwise.",
        read_only: false,
        properties: || {
            json!({
                "id": { "type": "string", "description": "A name for the schedule (generated if left out)." },
                "every": { "type": "string", "description": "When, in words." },
                "cron": { "type": "string", "description": "When, as cron (5 fields, or 6 with seconds first)." },
                "tz": { "type": "string", "description": "IANA time zone, e.g. `Europe/Berlin` (default UTC)." },
                "action": { "type": "object", "description": "What to do each time: `{ emit: { type, data? } }` or `{ webhook: { url, method?, headers?, body? } }`." },
                "catchUp": { "type": "string", "enum": ["skip", "catch_up", "coalesce"], "description": "What to do with runs missed while the server was down." },
                "catchUpLimit": { "type": "integer", "minimum": 1, "maximum": 1000 },
            })
        },
        required: &["action"],
    },
    ToolDef {
        name: "schedules_list",
        description: "List the object's schedules with their next and last run times.",
        read_only: true,
        properties: || json!({ "after": after_seq(), "limit": limit(1000) }),
        required: &[],
    },
    ToolDef {
        name: "schedules_delete",
        description: "Delete a schedule by id; its future runs stop.",
        read_only: false,
        properties: || json!({ "id": record_id("schedule") }),
        required: &["id"],
    },
    ToolDef {
        name: "dlq_list",
        description: "List the dead-letter queue: deliveries and actions that failed every retry, with their last error.",
        read_only: true,
        properties: || json!({ "after": after_seq(), "limit": limit(1000) }),
        required: &[],
    },
    ToolDef {
        name: "dlq_replay",
        description: "Retry a dead-lettered entry by id (after fixing its cause); it leaves the queue.",
        read_only: false,
        properties: || json!({ "id": record_id("DLQ entry") }),
        required: &["id"],
    },
    ToolDef {
        name: "sql_query",
        description: "Run read-only SQL (SELECT, WITH … SELECT, read-only PRAGMA) on the object's own SQLite tables and get columns and rows. Statements that write are refused. Bind values with `?` and `params`.",
        read_only: true,
        properties: || {
            json!({
                "sql": { "type": "string", "minLength": 1, "description": "The query." },
                "params": { "type": "array", "description": "Values for the `?` placeholders.", "items": { "type": ["string", "number", "boolean", "null"] } },
            })
        },
        required: &["sql"],
    },
];

impl ToolDef {
    /// The input schema. At `/mcp` every tool also takes `object`, the object's name.
    pub fn schema(&self, scoped: bool) -> Map<String, Value> {
        let mut properties = match (self.properties)() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut required: Vec<Value> = self.required.iter().map(|r| json!(r)).collect();
        if !scoped {
            properties.insert(
                "object".into(),
                json!({ "type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[^_.]", "description": "The object (business, tenant, agent…) to act on, e.g. `acme`." }),
            );
            required.insert(0, json!("object"));
        }
        let mut out = Map::new();
        out.insert("type".into(), json!("object"));
        out.insert("properties".into(), Value::Object(properties));
        out.insert("required".into(), Value::Array(required));
        out.insert("additionalProperties".into(), json!(false));
        out
    }
}

/// Runs a tool whose arguments passed its schema.
pub(crate) async fn run(
    app: &AppState,
    urls: &Urls,
    t: &Target,
    tool: &str,
    mut a: Map<String, Value>,
) -> Result<Value, ApiError> {
    a.remove("object");
    let args = Value::Object(a.clone());
    let get = |k: &str| a.get(k).cloned().unwrap_or(Value::Null);
    let thing = |rec: Value| render::<Value>(urls, rec);
    let things = |list: Value| match list {
        Value::Array(list) => list.into_iter().map(thing).collect(),
        _ => Vec::new(),
    };
    Ok(match tool {
        "collections_list" => call(app, t, "collections.list", Value::Null).await?,
        "things_list" => {
            let filters: Vec<Value> = a
                .get("where")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    json!([k, text])
                })
                .collect();
            let mut r = call(
                app,
                t,
                "things.list",
                json!({ "collection": get("collection"), "filters": filters, "sort": get("sort"), "after": get("after"), "limit": get("limit") }),
            )
            .await?;
            let items = things(r["items"].take());
            json!({ "count": r["count"], "items": items, "next": r["next"] })
        }
        "things_get" => thing(call(app, t, "things.get", args).await?),
        "things_create" => thing(
            call(app, t, "things.create", json!({ "collection": get("collection"), "body": get("data") })).await?,
        ),
        "things_update" => thing(
            call(
                app,
                t,
                "things.merge",
                json!({ "collection": get("collection"), "id": get("id"), "body": get("patch"), "version": get("version") }),
            )
            .await?,
        ),
        "things_delete" => {
            let mut r = call(app, t, "things.delete", args).await?;
            json!({ "deleted": things(r["deleted"].take()) })
        }
        "things_history" => call(app, t, "things.history", args).await?,
        "relationships_link" => call(app, t, "relationships.create", args).await?,
        "relationships_unlink" => call(app, t, "relationships.delete", args).await?,
        "relationships_list" => call(app, t, "relationships.list", args).await?,
        "relationships_related" => {
            let r = get("thing");
            let (c, id) = r.as_str().and_then(|r| r.split_once('/')).unwrap_or_default();
            let mut q = json!({ "collection": c, "id": id, "verb": get("verb") });
            for k in ["after", "limit"] {
                if let Some(v) = a.get(k) {
                    q[k] = v.clone();
                }
            }
            let mut page = call(app, t, "things.related", q).await?;
            render_things_in(urls, &mut page);
            page
        }
        "search" => {
            let mut hits = call(app, t, "search", args).await?;
            render_things_in(urls, &mut hits);
            hits
        }
        "events_emit" => call(app, t, "events.emit", args).await?,
        "events_list" => call(app, t, "events.list", args).await?,
        "actions_run" => call(app, t, "actions.create", args).await?,
        "actions_status" => call(app, t, "actions.get", args).await?,
        "schedules_create" => call(app, t, "schedules.create", args).await?,
        "schedules_list" => call(app, t, "schedules.list", args).await?,
        "schedules_delete" => call(app, t, "schedules.delete", args).await?,
        "dlq_list" => call(app, t, "dlq.list", args).await?,
        "dlq_replay" => call(app, t, "dlq.replay", args).await?,
        "sql_query" => {
            let sql = get("sql").as_str().unwrap_or_default().to_string();
            let params = a
                .get("params")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, v)| json_to_sql(v, i))
                .collect::<Result<Vec<_>, _>>()?;
            let r = app
                .host
                .storage(&t.ns, &t.name, move |s| s.exec_read_only(&sql, &params))
                .await?;
sql_result_json(&r)
        }
        other => return Err(ApiError::bad_request(format!("no tool `{other}`"))),
    })
}
