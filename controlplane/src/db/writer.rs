//! The writer of queued database writes: the consumer of the bounded channel behind
//! `dataplane::offload::DbSink` (usrloc persistence, acc records — writes nobody waits for).
//!
//! Invariants:
//! - Order: writes are applied one at a time in the order they were posted. A write that fails
//!   because the DB is unavailable stays at the head and is retried with backoff (50 ms doubling to
//!   5 s); nothing behind it overtakes it. (One queue for every URL: a dead DB also holds back
//!   writes for another one. SER had one DB per module, so this is rarely more than one URL.)
//! - A write the DB refuses (bad column, constraint) is logged and dropped: retrying cannot help,
//!   and it must not block the queue.
//! - Bounded: the channel's capacity is the bound; when full, `DbSink::post` refuses and counts.
//! - The outage is logged once when it starts and once when it ends, with the queue depth.
//! - [`Writer::drain`] (clean shutdown) writes everything queued, waiting up to a timeout; what is
//!   still unwritten then is counted and logged.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use dataplane::offload::DbWrite;
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE};

use super::{write_table, Databases};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Default)]
struct State {
    draining: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    written: AtomicU64,
    refused: AtomicU64,
    down: AtomicBool,
}

/// The running writer.
pub struct Writer {
    thread: Option<JoinHandle<()>>,
    state: Arc<State>,
    rx: Receiver<DbWrite>,
}

/// Starts the writer thread, taking writes from `rx` and applying them through `dbs` on `rt`.
pub fn start(
    rx: Receiver<DbWrite>,
    dbs: Databases,
    rt: tokio::runtime::Handle,
) -> std::io::Result<Writer> {
    let state = Arc::new(State::default());
    let (s2, rx2) = (Arc::clone(&state), rx.clone());
    let thread = std::thread::Builder::new()
        .name("ser-db-writer".into())
        .spawn(move || run(&rx2, &dbs, &rt, &s2))?;
    Ok(Writer {
        thread: Some(thread),
        state,
        rx,
    })
}

fn run(rx: &Receiver<DbWrite>, dbs: &Databases, rt: &tokio::runtime::Handle, st: &State) {
    let mut head: Option<DbWrite> = None;
    let mut backoff = BACKOFF_MIN;
    let mut down_since: Option<Instant> = None;
    while !st.stop.load(Ordering::Acquire) {
        let w = match head.take() {
            Some(w) => w,
            None if st.draining.load(Ordering::Acquire) => match rx.try_recv() {
                Ok(w) => w,
                Err(_) => break,
            },
            None => match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(w) => w,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
        };
        st.in_flight.store(1, Ordering::Release);
        match rt.block_on(dbs.write(&w)) {
            Ok(()) => {
                st.written.fetch_add(1, Ordering::Relaxed);
                st.in_flight.store(0, Ordering::Release);
                backoff = BACKOFF_MIN;
                if let Some(since) = down_since.take() {
                    st.down.store(false, Ordering::Release);
                    ser_log!(
                        L_NOTICE,
                        "database writes resume after {:.1}s: flushing {} queued writes in order",
                        since.elapsed().as_secs_f64(),
                        rx.len()
                    );
                }
            }
            Err(e) if e.is_transient() => {
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                    st.down.store(true, Ordering::Release);
                    ser_log!(
                        L_ERR,
                        "database writes stalled ({e}); queueing them in order ({} queued, bound {}) and retrying",
                        rx.len() + 1,
                        rx.capacity().map_or_else(|| "none".to_string(), |c| c.to_string())
                    );
                }
                head = Some(w);
                sleep_unless_stopped(backoff, st);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                st.refused.fetch_add(1, Ordering::Relaxed);
                st.in_flight.store(0, Ordering::Release);
                ser_log!(L_ERR, "database write to {} dropped: {e}", write_table(&w));
            }
        }
    }
}

fn sleep_unless_stopped(d: Duration, st: &State) {
    let until = Instant::now() + d;
    while !st.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

impl Writer {
    /// Writes queued or being retried (the queue depth, for metrics).
    pub fn depth(&self) -> usize {
        self.rx.len() + self.state.in_flight.load(Ordering::Acquire)
    }

    /// Writes done so far.
    pub fn written(&self) -> u64 {
        self.state.written.load(Ordering::Relaxed)
    }

    /// Writes the DB refused (dropped) so far.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Whether the writer is currently waiting for the DB to come back.
    pub fn is_stalled(&self) -> bool {
        self.state.down.load(Ordering::Acquire)
    }

    /// Clean shutdown: writes everything queued (in order), waiting at most `timeout`, then stops.
    /// Returns how many writes were left unwritten (logged when not zero).
    pub fn drain(mut self, timeout: Duration) -> usize {
        self.state.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.state.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // Bounded: the current statement has OP_TIMEOUT, the backoff sleep checks `stop`.
            let _ = t.join();
        }
        let left = self.depth();
        if left > 0 {
            ser_log!(
                L_ERR,
                "database writer stopped after {:.1}s with {left} writes unwritten (the database did not come back)",
                timeout.as_secs_f64()
            );
        }
        left
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Dropped without drain (error paths): stop the thread, do not wait for the queue.
        self.state.stop.store(true, Ordering::Release);
    }
}
