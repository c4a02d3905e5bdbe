//! What a class brings to the workflow: named action functions (`$.do`, `$.try`) and event
//! handlers (`$.on.Noun.verb`). Built once per class, shared by all its objects.

use crate::context::Context;
use crate::flow::{Flow, FlowError, WorkflowFn};
use crate::model::Event;
use crate::pattern::Pattern;
use crate::retry::RetryPolicy;
use futures::future::BoxFuture;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// Why an action attempt failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    pub message: String,
    pub retryable: bool,
    /// The attempt was cut short by a shutdown: not counted as a failure.
    pub(crate) interrupted: bool,
}

impl ActionError {
    /// A failure worth retrying (a timeout, a 503).
    pub fn retry(message: impl Into<String>) -> Self {
        ActionError {
            message: message.into(),
            retryable: true,
            interrupted: false,
        }
    }
    /// A failure that will not go away by itself: the action fails at once.
    pub fn fatal(message: impl Into<String>) -> Self {
        ActionError {
            message: message.into(),
            retryable: false,
            interrupted: false,
        }
    }
}

impl From<dotdo_storage::StorageError> for ActionError {
    fn from(e: dotdo_storage::StorageError) -> Self {
        ActionError::from(dotdo_runtime::ObjectError::from(e))
    }
}

impl From<dotdo_runtime::ObjectError> for ActionError {
    fn from(e: dotdo_runtime::ObjectError) -> Self {
        use dotdo_runtime::ErrorKind as K;
        let retryable = !matches!(e.kind, K::BadRequest | K::NotFound | K::PayloadTooLarge);
        ActionError {
            message: e.message,
            retryable,
            interrupted: e.kind == K::Unavailable,
        }
    }
}

pub(crate) type ActionFn =
    Arc<dyn Fn(Context, Value) -> BoxFuture<'static, Result<Value, ActionError>> + Send + Sync>;
pub(crate) type HandlerFn =
    Arc<dyn Fn(Context, Event) -> BoxFuture<'static, Result<(), ActionError>> + Send + Sync>;

pub(crate) struct Handler {
    pub(crate) name: String,
    pub(crate) pattern: Pattern,
    pub(crate) retry: RetryPolicy,
    pub(crate) run: HandlerFn,
}

/// The actions and handlers of a class.
#[derive(Default)]
pub struct Registry {
    pub(crate) actions: HashMap<String, ActionFn>,
    pub(crate) handlers: Vec<Handler>,
    pub(crate) workflows: HashMap<String, WorkflowFn>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .field(
                "handlers",
                &self.handlers.iter().map(|h| &h.name).collect::<Vec<_>>(),
            )
            .field("workflows", &self.workflows.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers the function behind `$.do(name, …)` and `$.try(name, …)`. It gets the
    /// object's context and the action's input; its storage writes commit with the action's
    /// completion.
    pub fn action<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Context, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ActionError>> + Send + 'static,
    {
        self.actions.insert(
            name.to_string(),
            Arc::new(move |cx, input| Box::pin(f(cx, input))),
        );
        self
    }

    /// Registers a handler of the events matching `pattern` (`Customer.created`,
    /// `Customer.*`, `*.created`, `*`) with the default retry policy. `name` identifies the
    /// handler in the action log and must stay the same across releases.
    ///
    /// # Panics
    /// On an invalid pattern or a duplicate name: registration happens once at startup, so
    /// a mistake there should stop the program at once.
    /// A durable workflow: `f` is run (and re-run, replaying its journal) for each run
    /// started with [`Context::start_workflow`].
    pub fn workflow<F, Fut>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Flow) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, FlowError>> + Send + 'static,
    {
        if let Err(e) = crate::flow_def::check_name(name) {
            panic!("workflow name: {e}");
        }
        self.workflows
            .insert(name.to_string(), Arc::new(move |flow| Box::pin(f(flow))));
        self
    }

    pub fn on<F, Fut>(self, pattern: &str, name: &str, f: F) -> Self
    where
        F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ActionError>> + Send + 'static,
    {
        self.on_with(pattern, name, RetryPolicy::default(), f)
    }

    /// [`Registry::on`] with a retry policy of its own.
    pub fn on_with<F, Fut>(mut self, pattern: &str, name: &str, retry: RetryPolicy, f: F) -> Self
    where
        F: Fn(Context, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ActionError>> + Send + 'static,
    {
        let pattern = match Pattern::parse(pattern) {
            Ok(p) => p,
            Err(e) => panic!("handler `{name}`: {e}"),
        };
        if self.handlers.iter().any(|h| h.name == name) {
            panic!("two event handlers are named `{name}`");
        }
        self.handlers.push(Handler {
            name: name.to_string(),
            pattern,
            retry,
            run: Arc::new(move |cx, ev| Box::pin(f(cx, ev))),
        });
        self
    }
}
