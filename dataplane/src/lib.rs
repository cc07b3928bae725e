//! ser's dataplane: everything a shard runs per message.
//!
//! - [`wire`]: the SIP message model — zero-copy parse into a header index, lazy typed accessors,
//!   edits recorded and applied once at write time, builders for replies and requests.
//! - [`script`]: the compiled routing script (IR), its interpreter and the module declarations.
//! - [`services`]: state shared by all shards (locations, credentials, the DB write queue).
//! - [`auth`]: digest authentication (RFC 2617 / RFC 7616), stateless nonces, the credential,
//!   group and domain caches, replay and failure tracking.
//! - [`stats`]: per-shard traffic counters, summed on demand for management.
//! - [`usrloc`]: the user location store (bindings per table and AOR) behind registrar.
//! - [`command`]: the management commands modules export (FIFO, JSON-RPC) and what their
//!   handlers reach.
//! - [`offload`]: [`offload::Job`]s a script hands to the controlplane instead of blocking.
//!
//! - [`proxy`]: the stateless proxy's RFC 3261 decisions (pre-routing checks, Via handling,
//!   stateless branches, response routing, sl replies) as pure functions.
//!
//! The dataplane does no blocking I/O of its own: protocol logic takes bytes (and `now`) and returns
//! what to do. Only the shard event loop and the transports touch sockets.

pub mod auth;
pub mod command;
pub mod dns;
pub mod modules;
pub mod offload;
pub mod proxy;
pub mod radius;
pub mod script;
pub mod services;
pub mod shard;
pub mod stats;
pub mod transport;
pub mod txn;
pub mod usrloc;
pub mod wire;
