//! `dotdo-storage` owns one durable object's SQLite database: the KV API, SQL with bound parameters,
//! the implicit transaction of a turn and explicit nested transactions, the alarm slot and size
//! accounting. It is synchronous and knows nothing of tokio, HTTP or other objects; the runtime
//! decides when a turn's transaction commits and when its WAL must reach the disk.

mod error;
mod guard;
mod kv;
mod sql;
mod store;

pub use error::StorageError;
pub use kv::{KvValue, ListOptions, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use sql::{SqlResult, SqlValue};
pub use store::{AlarmState, Storage, StorageOptions, SyncMode};

/// The SQLite binding, for crates that keep their own tables through [`Storage::internal`].
pub use rusqlite;

/// Default per-object size limit (SPEC §1): 10 GiB.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
