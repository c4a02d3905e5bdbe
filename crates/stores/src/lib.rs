//! `dotdo-stores`: the stores of the built-in business object, as tables in the object's own
//! SQLite database — versioned **things** in collections, **relationships** between them,
//! full-text **search** over them (FTS5, kept in the writing transaction) and the registry of
//! **objects** this one knows.
//!
//! Like the workflow's store, everything is a synchronous function on a connection, run inside
//! the caller's turn, so a write, its version row, its search row and the event the caller
//! appends commit together. Tables are `_do_*`, out of reach of user SQL.

mod error;
pub mod ids;
pub mod objects;
pub mod query;
pub mod relationships;
pub mod schema;
pub mod search;
pub mod things;

pub use error::StoreError;
pub use query::{Cursor, ListQuery, Page, Sort, SortField};
pub use relationships::Relationship;
pub use things::{Thing, Version};

/// Largest thing the store takes (its data as JSON), whatever the server's body limit.
pub const MAX_THING_BYTES: usize = 16 << 20;
