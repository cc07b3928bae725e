//! ser's dataplane: everything a shard runs per message.
//!
//! - [`wire`]: the SIP message model — zero-copy parse into a header index, lazy typed accessors,
//!   edits recorded and applied once at write time, builders for replies and requests.
//!
//! The dataplane does no blocking I/O of its own: protocol logic takes bytes (and `now`) and returns
//! what to do. Only the shard event loop and the transports touch sockets.

pub mod modules;
pub mod script;
pub mod shard;
pub mod transport;
pub mod wire;
