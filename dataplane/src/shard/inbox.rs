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
    /// Queues `msg` and wakes the shard, never waiting: `Err(msg)` if the inbox is full (see
    /// [`inbox_bound`]) or the shard has stopped. What shards hand each other goes this way.
    pub fn send(&self, msg: M) -> Result<(), M> {
        self.tx.try_send(msg).map_err(|e| e.into_inner())?;
        self.waker.ring();
        Ok(())
    }

    /// Like [`Inbox::send`], but waits while the inbox is full: for threads that are not shards
    /// (the job runner's answers, which a parked script needs and so must not be lost). A shard
    /// empties its inbox by thousands a turn, so the wait is short.
    pub fn send_wait(&self, msg: M) -> Result<(), M> {
        self.tx.send(msg).map_err(|e| e.0)?;
        self.waker.ring();
        Ok(())
    }
}

/// Messages one shard's inbox (and, each, its queue of TCP sends handed over by other shards)
/// holds: `SER_SHARD_QUEUE` (environment, read once; unparsable: the default, 16,384).
pub fn inbox_bound() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("SER_SHARD_QUEUE")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(16_384)
    })
}
