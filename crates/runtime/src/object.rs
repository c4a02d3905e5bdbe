//! The contract between the runtime and an object class.

use crate::clock::Clock;
use crate::id::ObjectId;
use crate::storage::ObjectStorage;
use crate::stub::Stub;
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;

/// An HTTP request delivered to an object's `fetch`.
pub type Request = http::Request<Bytes>;
/// An object's HTTP response.
pub type Response = http::Response<Bytes>;

/// What kind of failure an [`ObjectError`] is; transports map it to their status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    NotFound,
    Conflict,
    PayloadTooLarge,
    StorageFull,
    Unavailable,
    Internal,
}

/// An error returned by an object (or by the runtime on its behalf).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ObjectError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ObjectError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ObjectError {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl From<dotdo_storage::StorageError> for ObjectError {
    fn from(e: dotdo_storage::StorageError) -> Self {
        use dotdo_storage::StorageError as S;
        let kind = match &e {
            S::ValueTooLarge { .. } | S::KeyTooLarge { .. } => ErrorKind::PayloadTooLarge,
            S::SizeLimit { .. } => ErrorKind::StorageFull,
            e if e.is_client_error() => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        };
        if kind == ErrorKind::Internal {
            tracing::error!(error = %e, "storage failure");
        }
        ObjectError::new(kind, e.to_string())
    }
}

/// Passed to `alarm`: how many times this alarm has failed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlarmInfo {
    pub retry_count: u32,
    pub is_retry: bool,
    /// When the alarm was due, epoch milliseconds.
    pub scheduled_at: i64,
}

/// A durable object class written in Rust.
///
/// Methods take `&self`: turns of one object interleave only where they await something other
/// than storage (another object, a timer), exactly like Durable Objects, so in-memory state
/// needs interior mutability. Storage calls are synchronous and never yield (the input gate).
#[async_trait]
pub trait DurableObject: Send + Sync + 'static {
    /// Runs once after activation, before any event is delivered (`blockConcurrencyWhile`).
    async fn init(&self) -> Result<(), ObjectError> {
        Ok(())
    }

    /// Handles an HTTP request.
    async fn fetch(&self, _req: Request) -> Result<Response, ObjectError> {
        Err(ObjectError::not_found(
            "this object does not handle HTTP requests",
        ))
    }

    /// Handles a named method call (RPC) with JSON arguments.
    async fn call(
        &self,
        method: &str,
        _args: serde_json::Value,
    ) -> Result<serde_json::Value, ObjectError> {
        Err(ObjectError::not_found(format!(
            "no method named `{method}`"
        )))
    }

    /// Runs when the object's alarm is due. An error schedules a retry (2 s, doubling, 6 times).
    async fn alarm(&self, _info: AlarmInfo) -> Result<(), ObjectError> {
        Ok(())
    }
}

/// Everything an object instance can reach: its identity, storage, clock and other objects.
#[derive(Clone)]
pub struct ObjectState {
    pub(crate) id: ObjectId,
    pub(crate) namespace: Arc<str>,
    pub(crate) name: Option<Arc<str>>,
    pub(crate) storage: ObjectStorage,
    pub(crate) host: Arc<crate::host::HostInner>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) gate: crate::turn::GateRef,
}

impl ObjectState {
    pub fn id(&self) -> ObjectId {
        self.id
    }
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The name the object was addressed by, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    pub fn storage(&self) -> &ObjectStorage {
        &self.storage
    }
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    /// Commits this turn's writes so far and waits until they are durable: call it inside a
    /// turn before an effect leaves the object by a path the runtime does not see (a webhook).
    pub async fn flush(&self) -> Result<(), ObjectError> {
        self.gate.barrier().await
    }

    /// Waits until the object's finished turns that wait for their shared commit have been
    /// committed (at once if none wait). A turn that reacts to other turns' writes (an event
    /// pump) calls it after being woken, so it handles a whole batch at once instead of
    /// splitting every batch with a commit of its own.
    pub async fn settled(&self) {
        self.gate.settled().await;
    }

    /// Runs `f` as a new turn of this same object and waits for its result. The new turn
    /// commits or rolls back on its own, so work that must fail alone (one retried action
    /// among many) runs in a turn of its own. Safe to call from inside a turn: the caller
    /// awaits, so the new turn can run.
    pub async fn run_turn<T, F>(&self, f: F) -> Result<T, ObjectError>
    where
        F: FnOnce(ObjectState) -> futures::future::BoxFuture<'static, Result<T, ObjectError>>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let key = self.gate.key.clone();
        self.host
            .run(key, self.name.clone(), move |_, state| f(state))
            .await
    }

    /// A stub of another (or this same) object. Calls through it wait until this object's
    /// writes so far are committed (output gate), then run in the target object.
    pub fn stub(&self, namespace: &str, name: &str) -> Stub {
        Stub::new(self.host.clone(), namespace, name, Some(self.gate.clone()))
    }
}

/// Creates instances of one class of objects; registered on the host for a namespace.
pub trait ObjectClass: Send + Sync + 'static {
    /// The class name, shown in logs and the catalog.
    fn name(&self) -> &str;
    fn create(&self, state: ObjectState) -> Result<Arc<dyn DurableObject>, ObjectError>;
}

/// An [`ObjectClass`] made from a name and a constructor function.
pub struct FnClass<F> {
    name: String,
    make: F,
}

impl<F, T> FnClass<F>
where
    F: Fn(ObjectState) -> T + Send + Sync + 'static,
    T: DurableObject,
{
    pub fn new(name: impl Into<String>, make: F) -> Arc<Self> {
        Arc::new(FnClass {
            name: name.into(),
            make,
        })
    }
}

impl<F, T> ObjectClass for FnClass<F>
where
    F: Fn(ObjectState) -> T + Send + Sync + 'static,
    T: DurableObject,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn create(&self, state: ObjectState) -> Result<Arc<dyn DurableObject>, ObjectError> {
        Ok(Arc::new((self.make)(state)))
    }
}
