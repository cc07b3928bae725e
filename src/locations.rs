//! The location store's life around the shards (module usrloc): bindings loaded from the database
//! at start (db_mode 1 and 2), the periodic timer (expiry every `timer_interval`; db_mode 2's
//! write-back), and the last write-back at a clean stop.
//!
//! Invariants: none of this runs on a shard. The start-up load waits at most [`LOAD_WAIT`] for the
//! database; if it is down or slow, ser starts with what it has (an error is logged) and keeps
//! trying in the background, merging the rows when they come (a contact registered meanwhile is
//! newer than its stored row and is kept). The retry holds only a weak reference to the shared
//! state, so it never delays a stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use controlplane::db::{Databases, DbService};
use dataplane::modules::usrloc::start_jobs;
use dataplane::offload::JobResult;
use dataplane::proxy::server::Shared;
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE};
use dataplane::usrloc::time::now_unix;
use dataplane::usrloc::UsrlocConfig;

/// How long start-up waits for the stored bindings.
const LOAD_WAIT: Duration = Duration::from_secs(5);
/// Retry period of a start-up load the database did not answer.
const LOAD_RETRY: Duration = Duration::from_secs(5);

/// Loads the bindings of every location table the script uses (db_mode 1/2), waiting up to
/// [`LOAD_WAIT`]; what fails is retried in the background until it succeeds.
pub fn load(shared: &Arc<Shared>, db: &DbService, dbs: &Databases) {
    let program = shared.program.load_full();
    let jobs = start_jobs(&program.program);
    if jobs.is_empty() {
        return;
    }
    let cfg = UsrlocConfig::from_program(Some(&program.program));
    let Some(rt) = db.handle() else {
        ser_log!(
            L_ERR,
            "usrloc: no database runtime; starting with no bindings"
        );
        return;
    };
    for (table, job) in jobs {
        // A weak reference: a retry that never succeeds (the database stays down) must not keep
        // the proxy's shared state — and with it the job channel the job threads wait on — alive
        // past a stop.
        let (shared, dbs, cfg) = (Arc::downgrade(shared), dbs.clone(), cfg.clone());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        rt.spawn(async move {
            let mut warned = false;
            loop {
                let result = dbs.run(&job).await;
                let Some(shared) = shared.upgrade() else {
                    return; // stopped meanwhile
                };
                match result {
                    JobResult::Rows(rows) => {
                        let n = shared.services.usrloc.load_rows(&table, &cfg, &rows, now_unix());
                        ser_log!(
                            L_NOTICE,
                            "usrloc: {n} binding(s) of table '{table}' loaded from the database"
                        );
                        let _ = tx.send(());
                        return;
                    }
                    other => {
                        if !warned {
                            ser_log!(
                                L_ERR,
                                "usrloc: cannot load table '{table}' ({other:?}); serving without its stored bindings and retrying every {}s",
                                LOAD_RETRY.as_secs()
                            );
                            warned = true;
                            let _ = tx.send(());
                        }
                        drop(shared);
                        tokio::time::sleep(LOAD_RETRY).await;
                    }
                }
            }
        });
        let _ = rx.recv_timeout(LOAD_WAIT);
    }
}

/// The usrloc timer thread; it also sweeps the DNS caches every
/// [`DNS_PURGE_EVERY`](dataplane::proxy::shared::DNS_PURGE_EVERY).
pub struct Timer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    /// Runs the store's timer every `timer_interval` seconds of the current program (re-read each
    /// round, so a reload's new interval applies).
    pub fn start(shared: Arc<Shared>) -> Result<Timer, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ser-usrloc".into())
            .spawn(move || {
                let mut last = Instant::now();
                let mut last_dns = Instant::now();
                while !s2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    // The DNS caches' sweep lives here too, off the shards.
                    if last_dns.elapsed() >= dataplane::proxy::shared::DNS_PURGE_EVERY {
                        last_dns = Instant::now();
                        let n = shared.purge_dns(last_dns);
                        if n > 0 {
                            ser_log!(
                                dataplane::shard::log::L_DBG,
                                "DNS cache: {n} expired entries removed"
                            );
                        }
                    }
                    let program = shared.program.load();
                    let interval = dataplane::modules::param(
                        Some(&program.program),
                        &dataplane::modules::usrloc::MODULE,
                        "timer_interval",
                    )
                    .and_then(|p| p.int())
                    .unwrap_or(60);
                    if last.elapsed() < Duration::from_secs(interval.max(1) as u64) {
                        continue;
                    }
                    last = Instant::now();
                    let cfg = UsrlocConfig::from_program(Some(&program.program));
                    let s = &shared.services;
                    let n = s.usrloc.timer(now_unix(), &cfg, &s.db);
                    if n > 0 {
                        ser_log!(
                            dataplane::shard::log::L_DBG,
                            "usrloc: {n} expired binding(s) removed"
                        );
                    }
                }
            })
            .map_err(|e| format!("cannot start the usrloc timer: {e}"))?;
        Ok(Timer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the timer and, in db_mode 2, writes back what changed since its last run (before the
    /// DB queue is drained, so a clean stop loses no binding).
    pub fn stop(mut self, shared: &Shared) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let program = shared.program.load();
        let cfg = UsrlocConfig::from_program(Some(&program.program));
        if cfg.db_mode == 2 {
            let s = &shared.services;
            let n = s.usrloc.flush(&cfg, &s.db);
            if n > 0 {
                ser_log!(
                    L_NOTICE,
                    "usrloc: {n} changed record(s) written back at exit"
                );
            }
        }
    }
}
