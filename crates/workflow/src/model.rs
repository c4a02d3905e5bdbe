//! The records of the workflow stores, as they are stored and as transports show them (JSON,
//! camelCase).

use crate::retry::RetryPolicy;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// A new random id: `prefix_` and 20 characters of `[0-9a-z]`.
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{prefix}_{tail}")
}

/// An event in an object's log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    /// Position in this object's log.
    pub seq: i64,
    /// `Noun.verb`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default)]
    pub data: Value,
    /// When it was first emitted, epoch milliseconds.
    pub ts: i64,
    /// The object it came from, for events received from another object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// How many objects it passed through before this one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hops: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub kind: String,
    pub subject: Option<String>,
    pub data: Value,
    pub ts: i64,
    pub source: Option<String>,
    pub hops: u32,
}

/// A webhook: where an event or action is POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTarget {
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Where a subscription delivers: `{ "webhook": { url, headers? } }` or `{ "object": name }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryTarget {
    Webhook(WebhookTarget),
    /// An object of the same namespace, by name: the event is appended to its log.
    Object(String),
}

/// A standing order to deliver the events matching `on`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub on: String,
    pub deliver: DeliveryTarget,
    pub retry: RetryPolicy,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Pending => "pending",
            ActionStatus::Running => "running",
            ActionStatus::Completed => "completed",
            ActionStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> ActionStatus {
        Self::from_name(s).unwrap_or(ActionStatus::Failed)
    }

    pub fn from_name(s: &str) -> Option<ActionStatus> {
        Some(match s {
            "pending" => ActionStatus::Pending,
            "running" => ActionStatus::Running,
            "completed" => ActionStatus::Completed,
            "failed" => ActionStatus::Failed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, ActionStatus::Completed | ActionStatus::Failed)
    }
}

/// What runs an action.
pub mod kind {
    /// An HTTP call described by the action's input (the built-in class).
    pub const WEBHOOK: &str = "webhook";
    /// A function registered on the class under the action's name.
    pub const FUNCTION: &str = "function";
    /// An event handler registered on the class; the input is the event.
    pub const HANDLER: &str = "handler";
}

/// An entry of the action log (`$.do`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub id: String,
    pub key: String,
    pub name: String,
    pub kind: String,
    pub status: ActionStatus,
    pub attempts: u32,
    pub input: Value,
    pub retry: RetryPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the next attempt is due (pending) or the running attempt's lease ends.
    #[serde(rename = "nextAttemptAt", skip_serializing_if = "Option::is_none")]
    pub next_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    #[serde(skip)]
    pub seq: i64,
}

/// An action about to be recorded.
#[derive(Debug, Clone)]
pub struct NewAction {
    pub key: String,
    pub name: String,
    pub kind: String,
    pub input: Value,
    pub retry: RetryPolicy,
}

/// Something that failed for good: a delivery, an action or an event handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqEntry {
    pub id: String,
    /// `delivery`, or the kind of the failed action (`webhook`, `function`, `handler`).
    pub kind: String,
    /// The subscription (deliveries) or the action id.
    #[serde(rename = "ref")]
    pub reference: String,
    pub payload: Value,
    pub error: String,
    pub attempts: u32,
    pub created_at: i64,
    #[serde(skip)]
    pub seq: i64,
}
