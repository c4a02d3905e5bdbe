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
//! ```

use bytes::Bytes;
use dotdo_runtime::storage_api::{KvValue, SqlValue};
use dotdo_runtime::{
    AlarmInfo, DurableObject, FnClass, ObjectClass, ObjectError, ObjectState, Request, Response,
    async_trait,
};
use dotdo_workflow::{Context, DoOptions, Registry, WorkflowEnv};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where `dotdo start --bench-class` mounts the class, and its namespace.
pub const SEGMENT: &str = "counter";
pub const NAMESPACE: &str = "bench";

pub fn class(env: Arc<WorkflowEnv>) -> Arc<dyn ObjectClass> {
    let registry = Arc::new(Registry::new().action("noop", |_, _| async { Ok(Value::Null) }));
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
                 INSERT OR IGNORE INTO counter VALUES (1, 0)",
                &[],
            )?;
            self.table_ready.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn count(&self, sql: &str) -> Result<i64, ObjectError> {
        self.table()?;
        let out = self.state.storage().exec(sql, &[])?;
        match out.rows.first().and_then(|r| r.first()) {
            Some(SqlValue::Integer(n)) => Ok(*n),
            _ => Err(ObjectError::internal("the counter row is missing")),
        }
    }

    fn incr(&self) -> Result<i64, ObjectError> {
        self.count("UPDATE counter SET n = n + 1 WHERE id = 1 RETURNING n")
    }
}

fn reply(status: u16, body: Option<Value>) -> Result<Response, ObjectError> {
    let mut res = http::Response::builder().status(status);
    if body.is_some() {
        res = res.header("content-type", "application/json");
    }
    res.body(body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())))
        .map_err(|e| ObjectError::internal(e.to_string()))
}

#[async_trait]
impl DurableObject for BenchCounter {
    async fn fetch(&self, req: Request) -> Result<Response, ObjectError> {
        // `/counter/{name}/rest…`
        let path = req.uri().path().to_string();
        let rest: Vec<&str> = path.split('/').skip(3).filter(|s| !s.is_empty()).collect();
        match (req.method().as_str(), rest.as_slice()) {
            ("GET", []) => reply(
                200,
                Some(json!({ "n": self.count("SELECT n FROM counter")? })),
            ),
            ("POST", ["incr"]) => reply(200, Some(json!({ "n": self.incr()? }))),
            ("PUT", ["kv", key]) => {
                let value = req.into_body().to_vec();
                self.state.storage().put(key, KvValue::Bytes(value))?;
                reply(204, None)
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
                reply(200, Some(json!({ "n": n })))
            }
            ("POST", ["do"]) => {
                let options = DoOptions {
                    key: Some(dotdo_workflow::new_id("bench")),
                    retry: None,
                };
                self.cx
                    .do_("noop", Value::Null, options)
                    .await
                    .map_err(|e| ObjectError::internal(e.message))?;
                reply(200, Some(json!({ "ok": true })))
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
