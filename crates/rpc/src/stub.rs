//! Stubs and targets. A [`Stub`] is a reference to something that can be called: a local
//! [`RpcTarget`] or a target the peer exported to us. Either way a call is a path of property
//! names and, for a method call, arguments.

use crate::value::{RpcError, RpcValue};
use async_trait::async_trait;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;

/// The result of a call.
pub type RpcResult = Result<RpcValue, RpcError>;

/// A Rust value whose methods can be called over RPC.
///
/// `call` gets the method name and the arguments in order; it returns a value, another
/// target (`RpcValue::Stub(Stub::new(..))`) or an error, which the caller sees as a rejected
/// promise. Methods that are not there should return [`RpcError::not_a_function`].
///
/// Calls on one target from one session start in the order they were sent; the body of `call`
/// up to its first `.await` runs in that order.
#[async_trait]
pub trait RpcTarget: Send + Sync + 'static {
    async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult;

    /// A property read (`stub.name`). The default has no properties, so reads give `undefined`.
    async fn get(&self, _property: &str) -> RpcResult {
        Ok(RpcValue::Undefined)
    }

    /// Calling the target itself, as a function.
    async fn invoke(&self, _args: Vec<RpcValue>) -> RpcResult {
        Err(RpcError::type_error("this target is not a function."))
    }
}

/// What a stub forwards to. Implemented by local targets and by the session's imports.
pub(crate) trait StubHook: Send + Sync + 'static {
    /// Calls the method at `path` (or the target itself when `path` is empty).
    fn call(&self, path: Vec<String>, args: Vec<RpcValue>) -> BoxFuture<'static, RpcResult>;
    /// Reads the property at `path`.
    fn get(&self, path: Vec<String>) -> BoxFuture<'static, RpcResult>;
    /// `(session id, import id)` when this is an import of a session.
    fn import_of(&self) -> Option<(u64, i64)> {
        None
    }
}

/// A callable reference. Cheap to clone; the target is dropped (disposed) with the last clone.
#[derive(Clone)]
pub struct Stub(pub(crate) Arc<dyn StubHook>);

impl fmt::Debug for Stub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.import_of() {
            Some((session, id)) => write!(f, "Stub(import {id} of session {session})"),
            None => f.write_str("Stub(local)"),
        }
    }
}

impl Stub {
    /// A stub of a local target.
    pub fn new(target: impl RpcTarget) -> Stub {
        Stub(Arc::new(Local(Arc::new(target))))
    }

    /// A stub of a shared local target.
    pub fn from_arc(target: Arc<dyn RpcTarget>) -> Stub {
        Stub(Arc::new(Local(target)))
    }

    /// Calls `method` with `args`.
    pub async fn call(&self, method: &str, args: Vec<RpcValue>) -> RpcResult {
        self.0.call(vec![method.to_string()], args).await
    }

    /// Calls the target itself (a function or callback).
    pub async fn invoke(&self, args: Vec<RpcValue>) -> RpcResult {
        self.0.call(Vec::new(), args).await
    }

    /// Reads a property.
    pub async fn get(&self, property: &str) -> RpcResult {
        self.0.get(vec![property.to_string()]).await
    }

    /// Calls along a path: `path[..n-1]` are property reads, the last is the method.
    pub async fn call_path(&self, path: Vec<String>, args: Vec<RpcValue>) -> RpcResult {
        self.0.call(path, args).await
    }

    /// Reads along a path.
    pub async fn get_path(&self, path: Vec<String>) -> RpcResult {
        self.0.get(path).await
    }

    pub(crate) fn import_of(&self) -> Option<(u64, i64)> {
        self.0.import_of()
    }
}

struct Local(Arc<dyn RpcTarget>);

impl StubHook for Local {
    fn call(&self, mut path: Vec<String>, args: Vec<RpcValue>) -> BoxFuture<'static, RpcResult> {
        let target = self.0.clone();
        Box::pin(async move {
            match path.len() {
                0 => target.invoke(args).await,
                1 => {
                    let method = path.pop().unwrap_or_default();
                    target.call(&method, args).await
                }
                _ => {
                    let first = path.remove(0);
                    let v = target.get(&first).await?;
                    crate::eval::apply(v, path, Some(args)).await
                }
            }
        })
    }

    fn get(&self, mut path: Vec<String>) -> BoxFuture<'static, RpcResult> {
        let target = self.0.clone();
        Box::pin(async move {
            if path.is_empty() {
                return Ok(RpcValue::Stub(Stub(Arc::new(Local(target)))));
            }
            let first = path.remove(0);
            let v = target.get(&first).await?;
            crate::eval::apply(v, path, None).await
        })
    }
}

/// Typed access to a call's arguments, with errors that name the method and argument.
pub struct Args<'a> {
    method: &'a str,
    args: Vec<RpcValue>,
}

impl<'a> Args<'a> {
    pub fn new(method: &'a str, args: Vec<RpcValue>) -> Self {
        Args { method, args }
    }

    pub fn len(&self) -> usize {
        self.args.len()
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }

    /// Argument `i`, or `undefined` when it was not given.
    pub fn value(&self, i: usize) -> RpcValue {
        self.args.get(i).cloned().unwrap_or(RpcValue::Undefined)
    }

    /// Argument `i` as a string.
    pub fn string(&self, i: usize, name: &str) -> Result<String, RpcError> {
        match self.args.get(i) {
            Some(RpcValue::String(s)) => Ok(s.clone()),
            _ => Err(self.wrong(i, name, "a string")),
        }
    }

    /// Argument `i` as a number.
    pub fn number(&self, i: usize, name: &str) -> Result<f64, RpcError> {
        self.args
            .get(i)
            .and_then(RpcValue::as_f64)
            .ok_or_else(|| self.wrong(i, name, "a number"))
    }

    /// Argument `i` as a stub (a target or callback).
    pub fn stub(&self, i: usize, name: &str) -> Result<Stub, RpcError> {
        match self.args.get(i) {
            Some(RpcValue::Stub(s)) => Ok(s.clone()),
            _ => Err(self.wrong(i, name, "a stub or function")),
        }
    }

    /// Argument `i` as plain JSON; `undefined` (or a missing argument) is `null`.
    pub fn json(&self, i: usize, name: &str) -> Result<serde_json::Value, RpcError> {
        match self.args.get(i) {
            None | Some(RpcValue::Undefined) => Ok(serde_json::Value::Null),
            Some(v) => v.to_json().map_err(|e| {
                RpcError::type_error(format!("{}: {name}: {}", self.method, e.message))
            }),
        }
    }

    /// Argument `i` as a JSON object (or `{}` when left out).
    pub fn options(
        &self,
        i: usize,
        name: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, RpcError> {
        match self.json(i, name)? {
            serde_json::Value::Null => Ok(serde_json::Map::new()),
            serde_json::Value::Object(m) => Ok(m),
            _ => Err(self.wrong(i, name, "an object")),
        }
    }

    fn wrong(&self, i: usize, name: &str, what: &str) -> RpcError {
        RpcError::type_error(format!(
            "{}: argument {} (`{name}`) must be {what}",
            self.method,
            i + 1
        ))
    }
}
