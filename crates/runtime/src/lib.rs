//! `dotdo-runtime` runs durable objects: identity (`ObjectId`), the `DurableObject` contract for
//! Rust classes, the `Host` that activates objects on demand and runs one turn at a time per
//! object with input and output gates, eviction of idle and least recently used objects, the
//! host catalog, the alarm scheduler, group commit, the `Clock`, and stubs for calls between
//! objects. It depends on `dotdo-storage` and must not parse HTTP or know a store's schema.

mod alarms;
mod catalog;
mod clock;
mod flusher;
mod host;
mod id;
mod object;
mod storage;
mod stub;
mod turn;
mod writeback;

pub use catalog::CatalogEntry;
pub use clock::{Clock, ManualClock, SystemClock};
pub use host::{
    ALARM_MAX_RETRIES, ALARM_RETRY_BASE_MS, DEFAULT_IDLE_TIMEOUT, Durability, Host, HostError,
    HostOptions, HostStats, ObjectKey, default_max_open_objects,
};
pub use id::{InvalidObjectId, MAX_NAME_BYTES, ObjectId, valid_name, valid_namespace};
pub use object::{
    AlarmInfo, DurableObject, ErrorKind, FnClass, ObjectClass, ObjectError, ObjectState, Request,
    Response,
};
pub use storage::ObjectStorage;
pub use stub::Stub;

pub use async_trait::async_trait;
pub use dotdo_storage as storage_api;
