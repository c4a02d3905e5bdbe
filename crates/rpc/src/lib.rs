//! `dotdo-rpc` speaks Cap'n Web, the JSON RPC protocol of the npm `capnweb` package, with
//! promise pipelining: a call can be made on the result of a call that has not returned yet,
//! so a chain of dependent calls costs one round trip.
//!
//! - [`RpcValue`] and [`RpcError`]: what crosses the wire.
//! - [`RpcTarget`] and [`Stub`]: how Rust values expose methods, and references to them.
//! - [`Session`]: one session's tables and message handling, fed by any transport;
//!   [`serve_batch`] runs one HTTP batch.
//!
//! The crate knows nothing of objects or HTTP servers.

mod codec;
mod eval;
mod session;
mod stub;
mod value;

pub use async_trait::async_trait;
pub use codec::{Message, ProtocolError, parse_message};
pub use session::{Session, SessionLimits, Transport, live_sessions, serve_batch};
pub use stub::{Args, RpcResult, RpcTarget, Stub};
pub use value::{RpcError, RpcValue};
