//! A durable object class written in Rust: a counter that can also tick on an alarm.
//!
//! ```text
//! GET  /counter/{name}                 → { "value": n, "ticks": t }
//! POST /counter/{name}/incr            → { "value": n + 1 }
//! POST /counter/{name}/tick?in_ms=1000 → sets the alarm; when it fires, `ticks` goes up by one
//! ```
//! The same operations are named methods (`incr`, `get`) for other objects' stubs, and
//! [`rpc_surface`] serves them over Cap'n Web at `/counter/{name}/rpc`.

use bytes::Bytes;
use dotdo_runtime::{
    AlarmInfo, DurableObject, FnClass, ObjectClass, ObjectError, ObjectState, Request, Response,
    async_trait,
};
use dotdo_server::dotdo_rpc::{Args, RpcError, RpcResult, RpcTarget, RpcValue, Stub};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct Counter {
    state: ObjectState,
}

/// The class, to register on a host.
pub fn class() -> Arc<dyn ObjectClass> {
    FnClass::new("Counter", |state| Counter { state })
}

impl Counter {
    fn read(&self, key: &str) -> Result<i64, ObjectError> {
        Ok(self
            .state
            .storage()
            .get_json(key)?
            .and_then(|v| v.as_i64())
            .unwrap_or(0))
    }

    fn incr(&self) -> Result<i64, ObjectError> {
        let n = self.read("value")? + 1;
        self.state.storage().put_json("value", json!(n))?;
        Ok(n)
    }

    fn snapshot(&self) -> Result<Value, ObjectError> {
        Ok(json!({ "value": self.read("value")?, "ticks": self.read("ticks")? }))
    }
}

fn json_response(status: u16, body: Value) -> Result<Response, ObjectError> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .map_err(|e| ObjectError::internal(e.to_string()))
}

#[async_trait]
impl DurableObject for Counter {
    async fn fetch(&self, req: Request) -> Result<Response, ObjectError> {
        let path = req.uri().path().to_string();
        let action = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let method = req.method().as_str();
        match (method, action) {
            ("POST", "incr") => json_response(200, json!({ "value": self.incr()? })),
            ("POST", "tick") => {
                let in_ms = req
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("in_ms=")))
                    .map(|v| v.parse::<i64>())
                    .transpose()
                    .map_err(|_| ObjectError::bad_request("in_ms must be an integer"))?
                    .unwrap_or(1_000);
                let at = self.state.now_ms() + in_ms;
                self.state.storage().set_alarm(at)?;
                json_response(202, json!({ "alarmAt": at }))
            }
            ("GET", _) => json_response(200, self.snapshot()?),
            _ => Err(ObjectError::not_found(format!("{method} {path}"))),
        }
    }

    async fn call(&self, method: &str, _args: Value) -> Result<Value, ObjectError> {
        match method {
            "incr" => Ok(json!(self.incr()?)),
            "get" => self.snapshot(),
            _ => Err(ObjectError::not_found(format!("no method `{method}`"))),
        }
    }

    async fn alarm(&self, _info: AlarmInfo) -> Result<(), ObjectError> {
        let ticks = self.read("ticks")? + 1;
        self.state.storage().put_json("ticks", json!(ticks))?;
        Ok(())
    }
}

/// The counter's RPC surface (mount it with `Mount::with_rpc`): `incr()`, `get()`, the
/// property `value`, and `peer(name)`, a stub of another counter, so
/// `api.peer("b").incr()` is one round trip and the call on `b` goes through the runtime
/// like any object-to-object call.
pub fn rpc_surface() -> dotdo_server::RpcSurface {
    Arc::new(|host, ns, name| {
        Stub::new(CounterApi {
            host: host.clone(),
            ns: ns.to_string(),
            name: name.to_string(),
        })
    })
}

struct CounterApi {
    host: dotdo_runtime::Host,
    ns: String,
    name: String,
}

impl CounterApi {
    async fn call(&self, method: &str) -> Result<Value, RpcError> {
        self.host
            .call(&self.ns, &self.name, method, Value::Null)
            .await
            .map_err(|e| RpcError::error(e.message).with_prop("kind", format!("{:?}", e.kind)))
    }
}

#[async_trait]
impl RpcTarget for CounterApi {
    async fn get(&self, property: &str) -> RpcResult {
        match property {
            "value" => Ok(RpcValue::from(self.call("get").await?["value"].clone())),
            "name" => Ok(RpcValue::str(self.name.clone())),
            _ => Ok(RpcValue::Undefined),
        }
    }

    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        match method {
            "incr" | "get" => Ok(RpcValue::from(self.call(method).await?)),
            "peer" => {
                let name = Args::new(method, args).string(0, "name")?;
                dotdo_server::check_object_name(&name, false)
                    .map_err(|e| RpcError::type_error(e.message))?;
                Ok(RpcValue::Stub(Stub::new(CounterApi {
                    host: self.host.clone(),
                    ns: self.ns.clone(),
                    name,
                })))
            }
            _ => Err(RpcError::not_a_function(method)),
        }
    }
}
