//! Long-lived state that every shard's module functions reach through [`Env::services`]: what
//! outlives a config reload (location bindings, cached credentials) and the queue of database
//! writes the controlplane persists.
//!
//! Invariants: shards only read these maps and post to queues; nothing here blocks. Module
//! parameters are not here: they belong to the running program (see [`crate::script::config`]).
//!
//! [`Env::services`]: crate::script::env::Env::services

use crate::offload::DbSink;

/// What all shards and the controlplane share.
#[derive(Default)]
pub struct Services {
    /// Database writes, persisted in order by the controlplane (queued, retried, drained at stop).
    pub db: DbSink,
    /// Digest authentication state: credential, group and domain caches, nonce key, replay and
    /// failure tracking (see [`crate::auth`]).
    pub auth: crate::auth::AuthState,
    /// Traffic counters, one slot per shard (management: `stats`, `/metrics`).
    pub stats: std::sync::Arc<crate::stats::Stats>,
    /// User locations (usrloc): read by every shard, written by `save` and management commands.
    pub usrloc: crate::usrloc::Usrloc,
}
