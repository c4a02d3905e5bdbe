//! The benchmark's object class, mounted at `/counter` by `dotdo start --bench-class`. It has
//! the routes of the peers' classes in `bench/peers/` (the workerd Durable Object, the Restate
//! virtual object), so one load generator drives them all with the same requests:
//!
//! ```text
//! GET  /counter/{name}              → { "n": n }
//! POST /counter/{name}/incr         → { "n": n + 1 }   UPDATE … RETURNING in the object's SQLite
//! PUT  /counter/{name}/kv/{key}     → 204              the body stored under `key`
//! POST /counter/{name}/call/{peer}  → { "n": … }       `incr` on another object, through a stub
//! POST /counter/{name}/do           → { "ok": true }   one durable no-op step (`$.do`)
//! POST /counter/{name}/tally        → { "n": … }       a `$.do` that waits 2 ms and adds one to a table
//! GET  /counter/{name}/actions      → { "pending": …, "running": …, "completed": …, "failed": …,
//!                                       "retried": …, "tally": … }  the object's actions
//! ```
//!
//! `do` and `tally` take `?key=` as the action's idempotency key (a fresh one otherwise), so a
//! client can repeat a call it did not see answered; the crash tests count on it.

use bytes::Bytes;
use dotdo_runtime::storage_api::{KvValue, SqlResult, SqlValue};
use dotdo_runtime::{
    AlarmInfo, DurableObject, FnClass, ObjectClass, ObjectError, ObjectState, Request, Response,
    async_trait,
};
use dotdo_workflow::{ActionStatus, Context, DoOptions, Registry, WorkflowEnv};
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where `dotdo start --bench-class` mounts the class, and its namespace.
pub const SEGMENT: &str = "counter";
pub const NAMESPACE: &str = "bench";

pub fn class(env: Arc<WorkflowEnv>) -> Arc<dyn ObjectClass> {
    let registry = Arc::new(
        Registry::new()
            .action("noop", |_, _| async { Ok(Value::Null) })
            .action("tally", |cx: Context, _| async move {
                // A step that takes a moment, so that a crash test's kills land in the middle
                // of attempts.
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                // Commits with the action's completion: its count is how often it took effect.
                let out = cx.state().storage().exec(
                    "CREATE TABLE IF NOT EXISTS tally(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
                     INSERT INTO tally VALUES (1, 1) ON CONFLICT(id) DO UPDATE SET n = n + 1;
                     SELECT n FROM tally WHERE id = 1",
                    &[],
                )?;
                Ok(json!(first_integer(&out)))
            }),
    );
    FnClass::new("BenchCounter", move |state: ObjectState| BenchCounter {
        cx: Context::new(state.clone(), registry.clone(), env.clone()),
        state,
        table_ready: AtomicBool::new(false),
    })
}

struct BenchCounter {
    state: ObjectState,
    cx: Context,
    /// The table exists (checked once per activation).
    table_ready: AtomicBool,
}

impl BenchCounter {
    fn table(&self) -> Result<(), ObjectError> {
        if !self.table_ready.load(Ordering::Relaxed) {
            self.state.storage().exec(
                "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
                 INSERT OR IGNORE INTO counter VALUES (1, 0);
                 CREATE TABLE IF NOT EXISTS tally(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
                &[],
            )?;
            self.table_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn count(&self, sql: &str) -> Result<i64, ObjectError> {
        self.table()?;
        let out = self.state.storage().exec(sql, &[])?;
        first_integer(&out).ok_or_else(|| ObjectError::internal("the counter row is missing"))
    }

    fn incr(&self) -> Result<i64, ObjectError> {
        self.count("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n")
    }
}

/// The first column of the first row, if it is an integer.
fn first_integer(out: &SqlResult) -> Option<i64> {
    match out.rows.first().and_then(|r| r.first()) {
        Some(SqlValue::Integer(n)) => Some(*n),
        _ => None,
    }
}

/// The `key` query parameter, if any.
fn query_key(uri: &http::Uri) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        // Taken as it is, undecoded: the tests use plain letters, digits and `-`.
        pair.strip_prefix("key=").map(str::to_string)
    })
}

fn reply(status: StatusCode, body: Option<Value>) -> Result<Response, ObjectError> {
    let mut res = match body {
        Some(body) => {
            let json =
                serde_json::to_vec(&body).map_err(|e| ObjectError::internal(e.to_string()))?;
            let mut res = Response::new(Bytes::from(json));
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res
        }
        None => Response::new(Bytes::new()),
    };
    *res.status_mut() = status;
    Ok(res)
}

#[async_trait]
impl DurableObject for BenchCounter {
    async fn fetch(&self, req: Request) -> Result<Response, ObjectError> {
        let (parts, body) = req.into_parts();
        // `/counter/{name}/rest…`
        let path = parts.uri.path();
        let rest: Vec<&str> = path.split('/').skip(3).filter(|s| !s.is_empty()).collect();
        match (parts.method.as_str(), rest.as_slice()) {
            ("GET", []) => reply(
                StatusCode::OK,
                Some(json!({ "n": self.count("SELECT n FROM counter")? })),
            ),
            ("POST", ["incr"]) => reply(StatusCode::OK, Some(json!({ "n": self.incr()? }))),
            ("PUT", ["kv", key]) => {
                let value = body.to_vec();
                self.state.storage().put(key, KvValue::Bytes(value))?;
                reply(StatusCode::NO_CONTENT, None)
            }
            ("POST", ["call", peer]) => {
                if !dotdo_runtime::valid_name(peer) {
                    return Err(ObjectError::bad_request("bad peer name"));
                }
                let n = self
                    .state
                    .stub(self.state.namespace(), peer)
                    .call("incr", Value::Null)
                    .await?;
                reply(StatusCode::OK, Some(json!({ "n": n })))
            }
            ("POST", [action @ ("do" | "tally")]) => {
                let key = match query_key(&parts.uri) {
                    Some(k) if k.is_empty() || k.len() > 512 => {
                        return Err(ObjectError::bad_request("a key is 1 to 512 bytes"));
                    }
                    Some(k) => k,
                    None => dotdo_workflow::new_id("bench"),
                };
                let name = if *action == "do" { "noop" } else { "tally" };
                let options = DoOptions {
                    key: Some(key),
                    retry: None,
                };
                let out = self
                    .cx
                    .do_(name, Value::Null, options)
                    .await
                    .map_err(|e| ObjectError::internal(e.message))?;
                if name == "noop" {
                    reply(StatusCode::OK, Some(json!({ "ok": true })))
                } else {
                    reply(StatusCode::OK, Some(json!({ "n": out })))
                }
            }
            ("GET", ["actions"]) => {
                let mut counts = serde_json::Map::new();
                let actions = self.cx.actions(None, 0, usize::MAX)?;
                for status in [
                    ActionStatus::Pending,
                    ActionStatus::Running,
                    ActionStatus::Completed,
                    ActionStatus::Failed,
                ] {
                    let n = actions.iter().filter(|a| a.status == status).count();
                    counts.insert(status.as_str().into(), json!(n));
                }
                let retried = actions.iter().filter(|a| a.attempts > 1).count();
                counts.insert("retried".into(), json!(retried));
                counts.insert(
                    "tally".into(),
                    json!(self.count("SELECT coalesce(max(n), 0) FROM tally")?),
                );
                reply(StatusCode::OK, Some(Value::Object(counts)))
            }
            (method, _) => Err(ObjectError::not_found(format!("{method} {path}"))),
        }
    }

    async fn call(&self, method: &str, _args: Value) -> Result<Value, ObjectError> {
        match method {
            "incr" => Ok(json!(self.incr()?)),
            _ => Err(ObjectError::not_found(format!("no method `{method}`"))),
        }
    }

    async fn alarm(&self, _info: AlarmInfo) -> Result<(), ObjectError> {
        self.cx.on_alarm().await
    }
}
