//! Long-lived state that every shard's module functions reach through [`Env::services`]: what
//! outlives a config reload (location bindings, cached credentials) and the queue of database
//! writes the controlplane persists.
//!
//! Invariants: shards only read these maps and post to queues; nothing here blocks. Module
//! parameters are not here: they belong to the running program (see [`crate::script::config`]).
//!
//! [`Env::services`]: crate::script::env::Env::services

use std::any::{Any, TypeId};
use std::sync::Arc;

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
    /// The shared state of modules that keep their own (pdt's prefix table), one per type: see
    /// [`Services::store`].
    pub stores: papaya::HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Services {
    /// A module's shared state of type `T`, made (default) on first use. Lock-free to read; what
    /// is inside is the module's to make safe for every shard and management at once.
    pub fn store<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let stores = self.stores.pin();
        let any = stores.get_or_insert_with(TypeId::of::<T>(), || Arc::new(T::default()));
        // Invariant: the entry of `TypeId::of::<T>()` holds a `T` (made just above or before).
        Arc::clone(any)
            .downcast::<T>()
            .unwrap_or_else(|_| Arc::new(T::default()))
    }
}
