//! Management wired to the running proxy: the command registry ([`registry`]) over a
//! [`server::Control`], and the front ends (FIFO, JSON-RPC unix socket, HTTP) on one thread with a
//! tokio runtime ([`Mgmt::start`] / [`Mgmt::stop`], started after the proxy, stopped before it).
//!
//! Settings: the FIFO from `-i` or the `fifo` core option with `fifo_mode`; the rest are ser
//! extensions on the command line: `--rpc-socket=PATH`, `--rpc-socket-mode=OCTAL` (0660),
//! `--http=ADDR:PORT`, `--http-token=TOKEN` (or env `SER_HTTP_TOKEN`), and the web UI on the HTTP
//! listener with `--web-admins=FILE` (`--web-templates=DIR`; see `controlplane::web`). Nothing
//! configured: no thread is started.
//!
//! Commands registered here: SER's core set, and ser's `reload` (the SIGHUP config reload) and
//! `stats` (the traffic counters). The modules' commands (sl's `sl_stats`, tm's `t_stats`,
//! `t_hash`, `t_uac_dlg`, usrloc's `ul_*`, auth_db's `auth_flush`) are declared in their
//! `ModuleDecl`s and served through `MgmtHost` while the running program loads the module.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use controlplane::mgmt::core::{self, ServerInfo};
use controlplane::mgmt::metrics::Sources;
use controlplane::mgmt::{fifo, http, jsonrpc, Registry, Reply};
use dataplane::command::{HopFuture, Host, TReplyFuture, UacFuture};
use dataplane::modules::tm::TStats;
use dataplane::script::ir::CoreOptions;
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE};
use dataplane::stats::{Totals, CLASSES, METHODS};
use serde_json::json;

use crate::server::Control;
use crate::Cli;

/// Where management listens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MgmtConfig {
    pub fifo: Option<PathBuf>,
    pub fifo_mode: u32,
    pub rpc_socket: Option<PathBuf>,
    pub rpc_socket_mode: u32,
    pub http: Option<SocketAddr>,
    pub http_token: Option<String>,
    /// The web UI (needs `http`).
    pub web: Option<controlplane::web::WebConfig>,
}

impl MgmtConfig {
    /// `-i` before the `fifo` option (an empty path disables the FIFO, as in SER).
    pub fn from_cli(cli: &Cli, opts: &CoreOptions) -> MgmtConfig {
        MgmtConfig {
            fifo: cli
                .fifo
                .clone()
                .or_else(|| opts.fifo.clone())
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            fifo_mode: opts.fifo_mode,
            rpc_socket: cli.rpc_socket.clone(),
            rpc_socket_mode: cli.rpc_socket_mode.unwrap_or(0o660),
            http: cli.http,
            http_token: cli
                .http_token
                .clone()
                .or_else(|| std::env::var("SER_HTTP_TOKEN").ok())
                .filter(|t| !t.is_empty()),
            // The admin pages (--web-admins) or the subscribers' own (--web-selfcare), or both.
            web: (cli.web_admins.is_some() || cli.web_selfcare).then(|| {
                controlplane::web::WebConfig {
                    admins: cli.web_admins.clone(),
                    templates: cli.web_templates.clone(),
                    selfcare: cli.web_selfcare,
                    signup: cli.web_signup_mail.clone().map(|mail| {
                        controlplane::web::signup::SignupConfig {
                            mail,
                            base_url: cli.web_url.clone().unwrap_or_else(|| {
                                cli.http.map_or(String::new(), |a| format!("http://{a}"))
                            }),
                        }
                    }),
                    stats_interval: cli.web_stats_interval.map(Duration::from_secs),
                }
            }),
        }
    }

    fn any(&self) -> bool {
        self.fifo.is_some()
            || self.rpc_socket.is_some()
            || self.http.is_some()
            || self.web.is_some()
    }
}

fn stats_lines(t: &Totals, per_shard: &[u64]) -> (Vec<String>, serde_json::Value) {
    let mut lines = Vec::new();
    let mut obj = serde_json::Map::new();
    let mut put = |k: String, v: u64| {
        lines.push(format!("{k} = {v}"));
        obj.insert(k, json!(v));
    };
    for (m, v) in METHODS.iter().zip(t.requests_in) {
        put(format!("requests_received.{m}"), v);
    }
    for (c, v) in CLASSES.iter().zip(t.replies_in) {
        put(format!("replies_received.{c}"), v);
    }
    for (m, v) in METHODS.iter().zip(t.requests_out) {
        put(format!("requests_sent.{m}"), v);
    }
    for (c, v) in CLASSES.iter().zip(t.replies_out) {
        put(format!("replies_sent.{c}"), v);
    }
    put("dropped".into(), t.dropped);
    put("overload_503".into(), t.overload_503);
    put("rcvbuf_drops".into(), t.rcvbuf_drops);
    put("overload_entered".into(), t.overload_entered);
    put("overloaded_shards".into(), t.overloaded);
    put("queue_delay_us".into(), t.queue_delay_us);
    for (i, v) in per_shard.iter().enumerate() {
        put(format!("shard.{i}.messages"), *v);
    }
    (lines, serde_json::Value::Object(obj))
}

/// The process table `ps` shows: SER's descriptions for the roles ser's threads play.
fn processes(control: &Control, cfg: &MgmtConfig) -> Vec<String> {
    let mut p = vec!["attendant".to_string()];
    let socks = control.local.join(" ");
    for i in 0..control.shards {
        p.push(format!("receiver child={i} @ {socks}"));
    }
    p.push("timer".into());
    if cfg.fifo.is_some() {
        p.push("fifo server".into());
    }
    if cfg.rpc_socket.is_some() || cfg.http.is_some() {
        p.push("rpc server".into());
    }
    p
}

/// Every management command of this build.
pub fn registry(
    control: &Control,
    cfg: &MgmtConfig,
    argv: Vec<String>,
) -> Result<Registry, String> {
    let mut reg = Registry::new();
    let (c, pcfg) = (control.clone(), cfg.clone());
    core::register(
        &mut reg,
        ServerInfo {
            started: SystemTime::now(),
            argv,
            server_header: format!(
                "ser ({} ({}/{}))",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            processes: Arc::new(move || processes(&c, &pcfg)),
            ctime: core::ctime_utc,
        },
    )?;
    let c = control.clone();
    reg.register(
        "reload",
        "recompile the config file and swap it in",
        move |_| match c.reload() {
            Ok(()) => Reply::status(200, "configuration reloaded")
                .with_data(json!({"reloaded": c.config().display().to_string()})),
            Err(text) => Reply::status(500, "reload failed, the running configuration stays")
                .with_body(text.lines().map(String::from).collect()),
        },
    )?;
    let c = control.clone();
    reg.register(
        "stats",
        "traffic counters (summed over shards)",
        move |_| {
            let st = &c.services().stats;
            let per_shard: Vec<u64> = (0..c.shards).map(|i| st.shard_totals(i).handled).collect();
            let (lines, data) = stats_lines(&st.sum(), &per_shard);
            Reply::ok(lines).with_data(data)
        },
    )?;
    // The modules' own commands, served while the running program loads the module.
    let host: Arc<dyn Host> = Arc::new(MgmtHost(control.clone()));
    for m in dataplane::modules::ALL {
        reg.register_module(m.name, m.commands, &host)?;
    }
    let c = control.clone();
    reg.set_loaded(Arc::new(move |module: &str| {
        let loaded = c.shared().program.load();
        loaded
            .program
            .modules
            .iter()
            .any(|m| dataplane::modules::get(m.id).name == module)
    }));
    Ok(reg)
}

/// Where a management request to `uri` goes when its host is a name: `sip:IP:PORT;transport=…` of
/// the first RFC 3263 target (the resolver of `SER_NAMESERVER`, else the system's); `None` when the
/// URI already names an address (or is not a SIP URI: the transaction layer answers that).
async fn resolve_hop(uri: &str) -> Result<Option<String>, String> {
    use dataplane::dns::{host_port_of_uri, TargetHost};
    use dataplane::wire::via::Transport;
    let Ok(u) = dataplane::wire::uri::Uri::parse(uri.as_bytes()) else {
        return Ok(None);
    };
    let Some(t) = host_port_of_uri(&u) else {
        return Ok(None);
    };
    let name = match t.host {
        TargetHost::Name(n) if !n.eq_ignore_ascii_case("localhost") => n.to_string(),
        _ => return Ok(None),
    };
    let resolver = match std::env::var("SER_NAMESERVER")
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    {
        Some(ns) => controlplane::dns::SipResolver::with_nameserver(ns),
        None => controlplane::dns::SipResolver::system().map_err(|e| e.to_string())?,
    };
    let (targets, _) = resolver
        .resolve(&name, t.port, t.transport, t.secure)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let Some(first) = targets.first() else {
        return Err(format!("{name}: no address"));
    };
    let transport = match first.transport {
        Transport::Tcp | Transport::Tls => "tcp",
        _ => "udp",
    };
    let host = match first.addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    Ok(Some(format!("sip:{host};transport={transport}")))
}

/// What the modules' command handlers reach of the running proxy.
struct MgmtHost(Control);

impl Host for MgmtHost {
    fn shared(&self) -> &dataplane::proxy::shared::Shared {
        self.0.shared()
    }

    fn db_job(&self, job: dataplane::offload::Job) -> dataplane::offload::JobResult {
        self.0.db_job(job)
    }

    fn resolve_hop(&self, uri: String) -> HopFuture {
        Box::pin(async move { resolve_hop(&uri).await })
    }

    fn t_uac(&self, mut req: dataplane::txn::table::UacRequest) -> UacFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        req.done = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let sent = self.0.shared().tm.uac(req).is_ok();
        Box::pin(async move {
            if !sent {
                return Err("no shard to send the request".into());
            }
            // The transaction ends by itself (Timer B/F at 64·T1); the bound only guards
            // against a lost completion.
            match tokio::time::timeout(Duration::from_secs(300), rx).await {
                Ok(Ok(r)) => Ok(r),
                _ => Err("transaction lost".into()),
            }
        })
    }

    fn t_reply(&self, mut r: dataplane::proxy::shared::ExternalReply) -> TReplyFuture {
        let (tx, rx) = tokio::sync::oneshot::channel();
        r.done = Box::new(move |res| {
            let _ = tx.send(res);
        });
        let sent = self.0.shared().tm.reply(r).is_ok();
        Box::pin(async move {
            if !sent {
                return Err((481, "no such transaction (no such shard)".into()));
            }
            match tokio::time::timeout(Duration::from_secs(5), rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(why))) => Err((481, why)),
                _ => Err((500, "the shard did not answer".into())),
            }
        })
    }
}

/// Where the web UI finds subscribers and calls: the running program's auth_db, acc and usrloc
/// parameters.
fn web_settings(control: &Control) -> controlplane::web::SettingsFn {
    let c = control.clone();
    Arc::new(move || {
        use dataplane::modules::{acc, auth_db, param};
        let loaded = c.shared().program.load();
        let p = Some(&loaded.program);
        let text = |m: &'static dataplane::script::ModuleDecl, n: &str| {
            param(p, m, n)
                .and_then(|v| v.str())
                .unwrap_or("")
                .to_string()
        };
        controlplane::web::Settings {
            subscriber_db: text(&auth_db::MODULE, "db_url"),
            store_plain: param(p, &auth_db::MODULE, "calculate_ha1")
                .and_then(|v| v.int())
                .is_some_and(|v| v != 0),
            acc_db: text(&acc::MODULE, "db_url"),
            use_domain: dataplane::usrloc::UsrlocConfig::from_program(p).use_domain,
            default_domain: std::env::var("SIP_DOMAIN").unwrap_or_default(),
            tables: controlplane::web::tables::TableSettings {
                domain: (
                    text(&dataplane::modules::domain::MODULE, "db_url"),
                    text(&dataplane::modules::domain::MODULE, "domain_table"),
                ),
                grp: (
                    text(&dataplane::modules::group::MODULE, "db_url"),
                    text(&dataplane::modules::group::MODULE, "table"),
                ),
                silo: (
                    text(&dataplane::modules::msilo::MODULE, "db_url"),
                    text(&dataplane::modules::msilo::MODULE, "db_table"),
                ),
            },
            permission_files: dataplane::modules::permissions::rule_files(&loaded.program),
        }
    })
}

/// Metric sources of this build (see `controlplane::mgmt::metrics`).
pub fn sources(control: &Control) -> Sources {
    let mut s = Sources::new(Arc::clone(&control.services().stats));
    let c = control.clone();
    s.sl_by_class = Some(Arc::new(move || c.sl_stats().by_class));
    let c = control.clone();
    s.db_queue = Some(Arc::new(move || {
        let db = &c.services().db;
        (db.queued() as u64, db.refused())
    }));
    let c = control.clone();
    s.transactions = Some(Arc::new(move || TStats::from(&c.shared().tm.totals())));
    let c = control.clone();
    s.contacts = Some(Arc::new(move || {
        c.services()
            .usrloc
            .stats(dataplane::usrloc::time::now_unix())
            .iter()
            .map(|t| t.contacts as u64)
            .sum()
    }));
    s
}

/// The running management thread.
pub struct Mgmt {
    thread: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    ready: Arc<AtomicBool>,
    socket: Option<PathBuf>,
    /// The web UI's statistics sampler (it holds the proxy's state: stopped with the rest).
    sampler: Option<controlplane::web::stats::Sampler>,
}

impl Mgmt {
    /// Opens the FIFO, the socket and the HTTP listener (errors are returned, so `ser` does not
    /// start half-managed) and serves them on one thread.
    pub fn start(cfg: &MgmtConfig, control: Control, argv: Vec<String>) -> Result<Mgmt, String> {
        let ready = Arc::new(AtomicBool::new(false));
        if !cfg.any() {
            return Ok(Mgmt {
                thread: None,
                stop: None,
                ready,
                socket: None,
                sampler: None,
            });
        }
        if let Some(a) = &cfg.http {
            http::check_bind(a, cfg.http_token.as_deref())?;
        }
        let registry = Arc::new(registry(&control, cfg, argv)?);
        let sources = sources(&control);
        let (web, sampler) = match (&cfg.web, cfg.http) {
            (None, _) => (None, None),
            (Some(_), None) => {
                return Err("--web-admins and --web-selfcare need --http=ADDR:PORT".into())
            }
            (Some(w), Some(_)) => {
                use controlplane::web::stats::{Sampler, DEFAULT_INTERVAL};
                let sampler = Sampler::start(
                    sources.clone(),
                    w.stats_interval.unwrap_or(DEFAULT_INTERVAL),
                )?;
                let web = controlplane::web::Web::new(
                    w,
                    Arc::clone(&registry),
                    control.db(),
                    web_settings(&control),
                )?
                .with_stats(sampler.history())
                .with_script(control.config().to_path_buf());
                (Some(Arc::new(web)), Some(sampler))
            }
        };
        drop(control);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("management runtime: {e}"))?;
        let (fifo_path, unix, tcp) = rt.block_on(async {
            let fifo_path = match &cfg.fifo {
                Some(p) => {
                    fifo::create(p, cfg.fifo_mode)
                        .map_err(|e| format!("cannot create FIFO {}: {e}", p.display()))?;
                    Some(p.clone())
                }
                None => None,
            };
            let unix = match &cfg.rpc_socket {
                Some(p) => Some((
                    jsonrpc::bind_unix(p, cfg.rpc_socket_mode)
                        .map_err(|e| format!("cannot bind RPC socket {}: {e}", p.display()))?,
                    p.clone(),
                )),
                None => None,
            };
            let tcp = match cfg.http {
                Some(a) => Some(
                    tokio::net::TcpListener::bind(a)
                        .await
                        .map_err(|e| format!("cannot bind HTTP management on {a}: {e}"))?,
                ),
                None => None,
            };
            Ok::<_, String>((fifo_path, unix, tcp))
        })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let http_state = Arc::new(http::HttpState {
            registry: Arc::clone(&registry),
            sources,
            token: cfg.http_token.clone(),
            ready: Arc::clone(&ready),
            web,
        });
        let socket = unix.as_ref().map(|(_, p)| p.clone());
        let thread = std::thread::Builder::new()
            .name("ser-mgmt".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    if let Some(p) = fifo_path {
                        let r = Arc::clone(&registry);
                        tasks.spawn(async move {
                            if let Err(e) = fifo::serve(p.clone(), r).await {
                                ser_log!(L_ERR, "fifo server on {} stopped: {e}", p.display());
                            }
                        });
                    }
                    if let Some((l, p)) = unix {
                        let r = Arc::clone(&registry);
                        tasks.spawn(async move {
                            if let Err(e) = jsonrpc::serve_unix(l, p, r).await {
                                ser_log!(L_ERR, "RPC socket stopped: {e}");
                            }
                        });
                    }
                    if let Some(l) = tcp {
                        tasks.spawn(async move {
                            if let Err(e) = http::serve(l, http_state).await {
                                ser_log!(L_ERR, "HTTP management stopped: {e}");
                            }
                        });
                    }
                    let _ = stop_rx.await;
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    drop(registry);
                });
                // Sync commands still running on the blocking pool get a moment to finish.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| format!("cannot start the management thread: {e}"))?;
        ready.store(true, Ordering::Relaxed);
        ser_log!(L_NOTICE, "management started");
        Ok(Mgmt {
            thread: Some(thread),
            stop: Some(stop_tx),
            ready,
            socket,
            sampler,
        })
    }

    /// Stops serving and releases the proxy's shared state.
    pub fn stop(mut self) {
        self.ready.store(false, Ordering::Relaxed);
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let started = Instant::now();
            let _ = t.join();
            ser_log!(
                dataplane::shard::log::L_DBG,
                "management stopped in {:?}",
                started.elapsed()
            );
        }
        if let Some(p) = self.socket.take() {
            let _ = std::fs::remove_file(p);
        }
        drop(self.sampler.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_name_every_counter() {
        let mut t = Totals::default();
        t.requests_in[0] = 3;
        t.replies_out[3] = 2;
        let (lines, data) = stats_lines(&t, &[5, 0]);
        assert!(lines.contains(&"requests_received.INVITE = 3".to_string()));
        assert!(lines.contains(&"replies_sent.4xx = 2".to_string()));
        assert!(lines.contains(&"shard.0.messages = 5".to_string()));
        assert_eq!(data["replies_sent.4xx"], json!(2));
    }
}
