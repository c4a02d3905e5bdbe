//! Stubs: how code reaches an object, from outside or from inside another object.

use crate::host::{HostInner, ObjectKey};
use crate::object::{ObjectError, Request, Response};
use crate::turn::GateRef;
use dotdo_storage::{Storage, StorageError};
use std::sync::Arc;

/// A handle on one object. Cheap to clone; it resolves the object on every call, so it stays
/// valid across eviction and reactivation.
#[derive(Clone)]
pub struct Stub {
    host: Arc<HostInner>,
    target: Result<ObjectKey, ObjectError>,
    name: Arc<str>,
    /// The calling object's gate, when called from inside an object: its writes are committed
    /// and made durable before the call leaves (output gate).
    caller: Option<GateRef>,
}

impl Stub {
    pub(crate) fn new(
        host: Arc<HostInner>,
        namespace: &str,
        name: &str,
        caller: Option<GateRef>,
    ) -> Stub {
        Stub {
            target: host.key_for(namespace, name),
            host,
            name: Arc::from(name),
            caller,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    async fn run<T, F>(&self, f: F) -> Result<T, ObjectError>
    where
        F: FnOnce(
                Arc<dyn crate::object::DurableObject>,
                crate::object::ObjectState,
            ) -> futures::future::BoxFuture<'static, Result<T, ObjectError>>
            + Send
            + 'static,
        T: Send + 'static,
    {
        let key = self.target.clone()?;
        if let Some(gate) = &self.caller {
            gate.barrier().await?;
        }
        self.host.run(key, Some(self.name.clone()), f).await
    }

    /// Sends an HTTP request to the object's `fetch`.
    pub async fn fetch(&self, req: Request) -> Result<Response, ObjectError> {
        self.run(move |obj, _| Box::pin(async move { obj.fetch(req).await }))
            .await
    }

    /// Calls a named method of the object.
    pub async fn call(
        &self,
        method: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, ObjectError> {
        let method = method.to_string();
        self.run(move |obj, _| Box::pin(async move { obj.call(&method, args).await }))
            .await
    }

    /// Runs `f` on the object's storage, as one turn of the object.
    pub async fn storage<T, F>(&self, f: F) -> Result<T, ObjectError>
    where
        F: FnOnce(&mut Storage) -> Result<T, StorageError> + Send + 'static,
        T: Send + 'static,
    {
        // Inside the future, so a panic in `f` fails this turn, not the object.
        self.run(move |_, state| Box::pin(async move { Ok(state.storage.with(f)?) }))
            .await
    }
}
