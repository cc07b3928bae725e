//! Running the proxy: the compiled program behind an `ArcSwap`, the shards with
//! [`ProxyHandler`]s, the controlplane's job runner answering their suspended scripts, the
//! database service (one pool per `db_url`, the ordered writer behind `Services.db`, drained on
//! [`Proxy::stop`] after the shards stop), and config reload.
//!
//! Reload ([`Proxy::reload`], on SIGHUP): the file is compiled again; on errors they are logged and
//! the running program stays; on success the new program is swapped in — new messages use it,
//! scripts already parked on a job finish on the program they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use dataplane::proxy::server::{JobRequest, Loaded, ProxyHandler, ProxySettings, ShardMsg, Shared};
use dataplane::proxy::sl::SlTagger;
use dataplane::script::exec::unimplemented_calls;
use dataplane::script::ir::{CoreOptions, Program};
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE, L_WARN};
use dataplane::shard::{Runtime, RuntimeConfig};

/// Writes that may wait in the queue for the database (usrloc, acc) before posts are refused.
pub const DB_QUEUE_BOUND: usize = 65_536;

/// Jobs (database, DNS, exec, RADIUS…) that may wait for the job runner, all shards together:
/// `SER_MAX_JOBS` (environment; unparsable or 0: 16,384). Beyond it a request that would wait is
/// answered 503 with Retry-After.
fn job_queue_bound() -> usize {
    std::env::var("SER_MAX_JOBS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(16_384)
}

/// How long a clean shutdown waits for queued database writes. Short enough that SIGTERM stops ser
/// within 5 s even when the database is unreachable (an init system's stop timeout is longer).
pub const DB_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A running proxy.
pub struct Proxy {
    shared: Arc<Shared>,
    runtime: Runtime<ShardMsg>,
    jobs: Vec<JoinHandle<()>>,
    config: PathBuf,
    db: controlplane::db::DbService,
    db_writer: Option<controlplane::db::writer::Writer>,
    usrloc_timer: Option<crate::locations::Timer>,
}

/// How much the command line's `-d` flags raise the config's `debug` (kept for reloads).
pub static CLI_DEBUG: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Settings the proxy takes from the core options.
pub fn settings(opts: &CoreOptions, program: &Program) -> ProxySettings {
    ProxySettings {
        reply_to_via: opts.reply_to_via,
        check_via: opts.check_via,
        sip_warning: opts.sip_warning,
        dns: opts.dns,
        rev_dns: opts.rev_dns,
        server_signature: opts.server_signature,
        // RFC 3261 §16.6: a proxy must not forward with Max-Forwards 0; SER left that to the script
        // (mf_process_maxfwd_header). When the script does not load maxfwd, ser enforces it.
        enforce_max_forwards: !program.modules.iter().any(|m| {
            dataplane::modules::ALL
                .get(m.id.0 as usize)
                .is_some_and(|d| d.name == "maxfwd")
        }),
        ..ProxySettings::default()
    }
}

/// Logs, once at start, the module functions the script calls that this build does not implement.
pub fn warn_unimplemented(program: &Program) {
    use dataplane::script::ir::ParamValue;
    use dataplane::script::ParamDefault;
    for m in &program.modules {
        let decl = dataplane::modules::get(m.id);
        if !dataplane::modules::is_implemented(decl) {
            ser_log!(
                L_WARN,
                "module {} is loaded but not implemented in this build: its functions fail and its parameters have no effect",
                decl.name
            );
            continue;
        }
        // Parameters the script set (differing from the default) that this build ignores.
        for (p, v) in decl.params.iter().zip(&m.params) {
            let default = match p.default {
                ParamDefault::Int(n) => ParamValue::Int(n),
                ParamDefault::Str(s) => ParamValue::Str(s.to_string()),
                ParamDefault::None => ParamValue::Unset,
            };
            if *v != default && !dataplane::modules::param_is_implemented(decl, p.name) {
                ser_log!(
                    L_WARN,
                    "parameter {} of module {} is not implemented in this build: it has no effect",
                    p.name,
                    decl.name
                );
            }
        }
    }
    let missing = unimplemented_calls(program);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(m, f)| format!("{f} ({m})")).collect();
        ser_log!(
            L_WARN,
            "the script calls functions not implemented in this build; they will fail (return false) when reached: {}",
            list.join(", ")
        );
    }
}

impl Proxy {
    /// Starts the shards and the job runner.
    pub fn start(
        rc: &RuntimeConfig,
        program: Program,
        opts: &CoreOptions,
        config: &Path,
    ) -> Result<Proxy, String> {
        warn_unimplemented(&program);
        // The database is opened lazily (first job or write) so a DB that is down or slow never
        // delays start-up; its schema and version are checked then and errors logged.
        let dbs = controlplane::db::Databases::from_env();
        let db = controlplane::db::DbService::start(dbs.clone())
            .map_err(|e| format!("database runtime: {e}"))?;
        let (db_tx, db_rx) = crossbeam_channel::bounded(DB_QUEUE_BOUND);
        let db_writer = match db.handle() {
            Some(h) => Some(
                controlplane::db::writer::start(db_rx, dbs.clone(), h)
                    .map_err(|e| format!("database writer: {e}"))?,
            ),
            None => None,
        };
        // A database named explicitly is checked now, in the background (schema created, versions
        // compared; a mismatch or an outage is logged clearly) — never holding up start-up.
        if std::env::var(controlplane::db::DB_URL_ENV).is_ok_and(|u| !u.trim().is_empty()) {
            if let Some(h) = db.handle() {
                let dbs = dbs.clone();
                h.spawn(async move {
                    let _ = dbs.get("").await;
                });
            }
        }
        // Bounded: a shard hands jobs over with `try_send` and answers 503 when this is full.
        let (tx, rx) = crossbeam_channel::bounded::<JobRequest>(job_queue_bound());
        let local = rc
            .listen
            .iter()
            .flat_map(|l| {
                let udp = l.udp.then_some((l.addr, dataplane::transport::Proto::Udp));
                let tcp = l.tcp.then_some((l.addr, dataplane::transport::Proto::Tcp));
                udp.into_iter().chain(tcp)
            })
            .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let local: Vec<_> = local;
        // Traffic counters: one slot per shard, shared by the shards and management.
        let stats = Arc::new(dataplane::stats::Stats::new(rc.shards.max(1)));
        let mut rc = rc.clone();
        rc.stats = Some(Arc::clone(&stats));
        let rc = &rc;
        let shared = Arc::new(Shared {
            settings: settings(opts, &program),
            program: ArcSwap::from_pointee(Loaded::new(program, &local)),
            sl: SlTagger::new(seed),
            salt: seed.rotate_left(17),
            local,
            jobs: tx,
            dns: Arc::new(dataplane::dns::DnsCache::new()),
            rev_dns: papaya::HashMap::new(),
            sl_stats: (0..rc.shards.max(1)).map(|_| Default::default()).collect(),
            services: Arc::new(dataplane::services::Services {
                stats,
                db: dataplane::offload::DbSink::new(db_tx),
                ..dataplane::services::Services::default()
            }),
            tm: dataplane::proxy::shared::TmShared::new(rc.shards),
        });
        // acc's RADIUS records: a bounded queue to the controlplane's RADIUS client.
        match controlplane::modules::radius::start_accounting() {
            Ok(tx) => shared
                .services
                .store::<dataplane::radius::AcctSink>()
                .connect(tx),
            Err(e) => ser_log!(
                L_WARN,
                "radius: no accounting sender ({e}): records are dropped"
            ),
        }
        // Stored bindings first, so that the first lookups after a restart find them.
        crate::locations::load(&shared, &db, &dbs);
        // pa's stored subscriptions (use_db), likewise before the first request.
        controlplane::modules::pa::load(&shared, db.handle(), &dbs);
        let usrloc_timer = Some(crate::locations::Timer::start(Arc::clone(&shared))?);
        // nathelper's keep-alives (idle unless the program sets natping_interval).
        let _ = controlplane::modules::nathelper::start_natping(Arc::downgrade(&shared));
        // jabber's gateway delivers XMPP messages as SIP (its thread starts at the first job).
        controlplane::modules::jabber::attach(Arc::downgrade(&shared));
        let s2 = Arc::clone(&shared);
        let runtime: Runtime<ShardMsg> =
            Runtime::start(rc, move |shard| ProxyHandler::new(Arc::clone(&s2), shard))
                .map_err(|e| e.to_string())?;
        let inboxes: Arc<Vec<_>> = Arc::new(
            (0..runtime.shard_count())
                .filter_map(|i| runtime.inbox(i))
                .collect(),
        );
        shared.tm.set_inboxes(inboxes.as_ref().clone());
        // sms: the modem threads (none unless the program loads sms with modems).
        let _ = controlplane::modules::sms::start(Arc::downgrade(&shared));
        // SER_NAMESERVER=ip:port points ser at one DNS server instead of resolv.conf's (tests, and
        // operators with a local resolver on a non-standard port).
        let nameserver = std::env::var("SER_NAMESERVER").ok();
        let resolver = match nameserver
            .as_deref()
            .map(str::parse::<std::net::SocketAddr>)
        {
            Some(Ok(addr)) => {
                ser_log!(
                    L_NOTICE,
                    "DNS: using the name server at {addr} (SER_NAMESERVER)"
                );
                Ok(controlplane::dns::SipResolver::with_nameserver(addr))
            }
            Some(Err(e)) => Err(format!("SER_NAMESERVER: {e}")),
            None => controlplane::dns::SipResolver::system().map_err(|e| e.to_string()),
        };
        let resolver = match resolver {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                ser_log!(
                    L_WARN,
                    "DNS: no usable resolver configuration ({e}); using the system's A/AAAA lookups without NAPTR/SRV"
                );
                None
            }
        };
        let dns = resolver.map(|resolver| controlplane::jobs::Dns {
            resolver,
            cache: Arc::clone(&shared.dns),
        });
        let jobs = controlplane::jobs::start(
            4,
            rx,
            move |shard, id, result| {
                if let Some(inbox) = inboxes.get(shard) {
                    if inbox.send_wait(ShardMsg::JobDone { id, result }).is_err() {
                        ser_log!(L_WARN, "shard {shard} is gone; job {id} answer dropped");
                    }
                }
            },
            dns,
            db.handle().map(|rt| controlplane::jobs::DbJobs { rt, dbs }),
        );
        Ok(Proxy {
            shared,
            runtime,
            jobs,
            config: config.to_path_buf(),
            db,
            db_writer,
            usrloc_timer,
        })
    }

    /// Stateless reply counters summed over the shards (`sl_stats`).
    pub fn sl_stats(&self) -> dataplane::proxy::sl::SlTotals {
        dataplane::proxy::sl::SlStats::sum(&self.shared.sl_stats)
    }

    /// Module tm: `t_stats` (`.totals()`), `t_hash` (`.table_sizes()`), `t_uac` (`.uac(..)`).
    pub fn tm(&self) -> &dataplane::proxy::shared::TmShared {
        &self.shared.tm
    }

    /// The databases (one pool per URL) and the runtime they run on; start-up loads (usrloc's
    /// bindings) use `db_service().block_on(..)`.
    pub fn db_service(&self) -> &controlplane::db::DbService {
        &self.db
    }

    /// Database writes queued and not yet written (for metrics).
    pub fn db_queue_depth(&self) -> usize {
        self.db_writer
            .as_ref()
            .map_or(self.shared.services.db.queued(), |w| w.depth())
    }

    /// The runtime (local addresses, backend, shard count).
    pub fn runtime(&self) -> &Runtime<ShardMsg> {
        &self.runtime
    }

    /// What management needs of the running proxy (see [`Control`]).
    pub fn control(&self) -> Control {
        Control {
            shared: Arc::clone(&self.shared),
            config: self.config.clone(),
            shards: self.runtime.shard_count(),
            db: self.db.handle().map(|h| (h, self.db.databases().clone())),
            local: self
                .runtime
                .local_addrs()
                .iter()
                .map(|(a, p)| format!("{}:{a}", p.as_str().to_ascii_lowercase()))
                .collect(),
        }
    }

    /// Recompiles the config file and swaps the program in; on errors keeps the running one.
    pub fn reload(&self) -> Result<(), String> {
        reload(&self.shared, &self.config)
    }

    /// Stops the shards, writes the queued database writes, then stops the job runner; returns how
    /// many shards panicked.
    pub fn stop(mut self) -> usize {
        let shared = Arc::clone(&self.shared);
        self.runtime.stop();
        let panicked = self.runtime.join();
        // The shards' last lines before anything the stop itself logs.
        dataplane::shard::log::flush(std::time::Duration::from_secs(1));
        if let Some(t) = self.usrloc_timer.take() {
            t.stop(&shared);
        }
        // Nothing posts any more: what was accepted is written before we go (bounded in time).
        if let Some(w) = self.db_writer.take() {
            let queued = w.depth();
            if queued > 0 {
                ser_log!(
                    L_NOTICE,
                    "writing {queued} queued database writes before exit"
                );
            }
            w.drain(DB_DRAIN_TIMEOUT);
        }
        let t = dataplane::proxy::sl::SlStats::sum(&shared.sl_stats);
        drop(shared);
        ser_log!(
            L_NOTICE,
            "sl_stats: 200={} 1xx={} 2xx={} 3xx={} 4xx={} 5xx={} 6xx={} absorbed_acks={}",
            t.ok_200,
            t.by_class[0],
            t.by_class[1],
            t.by_class[2],
            t.by_class[3],
            t.by_class[4],
            t.by_class[5],
            t.acks_absorbed
        );
        // The shards held the last job senders: the workers see the channel close and end.
        drop(self.shared);
        for j in self.jobs {
            let _ = j.join();
        }
        drop(self.db);
        panicked
    }
}

/// Recompiles `config` and swaps the program into `shared`; on errors keeps the running one.
fn reload(shared: &Shared, config: &Path) -> Result<(), String> {
    match controlplane::cfg::compile_file(config) {
        Ok(mut c) => {
            for w in &c.warnings {
                ser_log!(L_WARN, "{}", w.render().trim_end());
            }
            warn_unimplemented(&c.program);
            // `-d` on the command line raises the config's `debug` after a reload too.
            let boost = CLI_DEBUG.load(std::sync::atomic::Ordering::Relaxed);
            c.program.options.debug = c.program.options.debug.saturating_add(boost);
            dataplane::shard::log::set_level(c.program.options.debug);
            shared
                .program
                .store(Arc::new(Loaded::new(c.program, &shared.local)));
            ser_log!(L_NOTICE, "configuration reloaded from {}", config.display());
            Ok(())
        }
        Err(d) => {
            let text = d.render();
            ser_log!(
                L_ERR,
                "reload of {} failed, the running configuration stays:\n{}",
                config.display(),
                text.trim_end()
            );
            Err(text)
        }
    }
}

/// A handle on the running proxy for management commands: reload, counters, shared services.
/// Holds the proxy's shared state: drop every `Control` before [`Proxy::stop`] (the job runner
/// ends when the last holder of the shared state is gone).
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
    config: PathBuf,
    /// The database runtime and databases (usrloc's db_mode 3 commands read and write there).
    db: Option<(tokio::runtime::Handle, controlplane::db::Databases)>,
    /// Shards running.
    pub shards: usize,
    /// `proto:addr` of every socket.
    pub local: Vec<String>,
}

impl Control {
    /// Runs a database job on the database runtime and waits for its answer (≤ 15 s). For
    /// management threads only, never a shard.
    pub fn db_job(&self, job: dataplane::offload::Job) -> dataplane::offload::JobResult {
        use dataplane::offload::JobResult;
        let Some((h, dbs)) = self.db.clone() else {
            return JobResult::Failed("no database runtime".into());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        h.spawn(async move {
            let _ = tx.send(dbs.run(&job).await);
        });
        rx.recv_timeout(std::time::Duration::from_secs(15))
            .unwrap_or_else(|_| JobResult::Failed("the database did not answer in 15 s".into()))
    }

    /// As [`Proxy::reload`].
    pub fn reload(&self) -> Result<(), String> {
        reload(&self.shared, &self.config)
    }

    /// The database runtime and databases (the web UI's subscriber and accounting pages).
    pub fn db(&self) -> Option<(tokio::runtime::Handle, controlplane::db::Databases)> {
        self.db.clone()
    }

    /// Stateless reply counters summed over the shards (`sl_stats`).
    pub fn sl_stats(&self) -> dataplane::proxy::sl::SlTotals {
        dataplane::proxy::sl::SlStats::sum(&self.shared.sl_stats)
    }

    /// What module functions share (usrloc, DB queue, traffic counters).
    pub fn services(&self) -> &Arc<dataplane::services::Services> {
        &self.shared.services
    }

    /// The proxy's shared state (transaction tables and the like, for the integrator's commands).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The config file reloads read.
    pub fn config(&self) -> &Path {
        &self.config
    }
}
