//! Work handed to a shard from other threads: [`Inbox`] (a channel plus a doorbell that wakes the
//! shard only while it sleeps in epoll).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use mio::Waker;

/// Wakes one shard, but only when it waits in epoll: a busy shard sees new inbox work on its next
/// turn anyway, and an eventfd write per cross-shard message would cost a syscall on both sides.
pub(super) struct Doorbell {
    pub(super) waker: Waker,
    /// Set by the shard before it may sleep in epoll (and cleared after); whoever clears it rings.
    pub(super) parked: AtomicBool,
}

impl Doorbell {
    pub(super) fn ring(&self) {
        // SeqCst pairs with the shard's store-then-recheck in `Shard::run`: either the shard sees
        // the message queued before this swap, or this swap sees `parked` and wakes it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    pub(super) fn force(&self) {
        let _ = self.waker.wake();
    }
}

/// Hands work to one shard from any thread: a crossbeam channel plus a mio waker.
pub struct Inbox<M> {
    pub(super) tx: Sender<M>,
    pub(super) waker: Arc<Doorbell>,
}

impl<M> Clone for Inbox<M> {
    fn clone(&self) -> Self {
        Inbox {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<M> Inbox<M> {
    /// Queues `msg` and wakes the shard. `Err(msg)` if the shard has stopped.
    pub fn send(&self, msg: M) -> Result<(), M> {
        self.tx.send(msg).map_err(|e| e.0)?;
        self.waker.ring();
        Ok(())
    }
}
