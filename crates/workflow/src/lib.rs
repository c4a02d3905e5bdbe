//! `dotdo-workflow` is the `$` context of an object: `send` (events, delivered after commit
//! through an outbox), `try_` (one attempt), `do_` (durable actions with idempotency keys and
//! retries), handlers of `Noun.verb` events, subscriptions that deliver to webhooks or other
//! objects, the dead-letter queue, schedules (`$.every`) and durable workflows (journaled
//! steps, durable sleeps, waits for events, compensation). Its state is tables in the object's own database,
//! written in the caller's turn, so a state change, its action or dedup row and its outgoing
//! messages commit together. Its work is driven by the object's alarm, so it survives
//! eviction and restarts. It depends on the runtime and opens no sockets: webhooks go out
//! through an [`Outbound`] the host supplies.

mod context;
mod flow;
mod flow_def;
pub mod flow_store;
mod model;
mod outbound;
mod pattern;
mod registry;
mod retry;
pub mod schedules;
pub mod store;
pub mod timetable;

pub use context::{Context, DoOptions, MAX_HOPS, WebhookAction, WorkflowEnv, derive_key};
pub use flow::{Flow, FlowError, MAX_STEP_RESULT, MAX_STEPS, StepOptions};
pub use flow_def::{parse as parse_workflow, parse_duration};
pub use flow_store::{Run, StepRecord};
pub use model::{
    Action, ActionStatus, DeliveryTarget, DlqEntry, Event, NewAction, NewEvent, Subscription,
    WebhookTarget, kind, new_id,
};
pub use outbound::{HttpCall, HttpReply, NoOutbound, Outbound, check_url};
pub use pattern::{Pattern, check_event_type};
pub use registry::{ActionError, Registry};
pub use retry::RetryPolicy;
pub use schedules::{NewSchedule, Schedule, ScheduleAction};
pub use timetable::{CatchUp, Timetable};
