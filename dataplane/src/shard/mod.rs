//! Shards: one thread per core, each pinned, each running its own mio event loop over its own
//! sockets. The only code of the dataplane that waits.
//!
//! One turn of a shard's loop:
//! 1. wait for readiness (or the next tick, or a wake-up from [`Inbox::send`]);
//! 2. receive: drain every ready UDP socket in `recvmmsg` batches and every ready TCP connection
//!    (framed messages), up to [`RuntimeConfig::drain_max`] packets per turn;
//! 3. if more than [`RuntimeConfig::overload_backlog`] packets were waiting, the shard is overloaded:
//!    responses, ACKs and CANCELs go to the handler first, then the first `overload_backlog`
//!    requests; every further request gets a stateless `503 Service Unavailable` with `Retry-After`
//!    without touching the handler;
//! 4. otherwise every packet goes to [`Handler::on_packet`] in arrival order;
//! 5. the [`Outbox`] is flushed: UDP with `sendmmsg` per socket, TCP over the peer's connection;
//! 6. messages from the [`Inbox`] go to [`Handler::on_message`]; every `tick`, [`Handler::on_tick`]
//!    and the TCP timeout sweep run.
//!
//! Shutdown ([`Runtime::stop`]): each shard stops receiving, flushes its outbox and TCP write queues,
//! and its thread ends; [`Runtime::join`] waits for all of them.

pub mod log;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::ser_log;
use crate::transport::tcp::{ConnDirectory, SendOutcome, Tcp, TcpLimits, TcpToken};
use crate::transport::{self, IoBackend, Outgoing, Packet, Proto, UdpSocket};
use crate::wire::{BufPool, Limits, Message, ReplyBuilder};
use log::{L_CRIT, L_DBG, L_ERR, L_INFO, L_WARN};

pub use crate::transport::IoMode;

/// What a shard runs for every packet. One value per shard, used only by that shard's thread.
pub trait Handler: Send + 'static {
    /// Work handed to the shard by another shard or the controlplane (see [`Inbox`]).
    type Msg: Send + 'static;

    /// A received message. Queue sends on `out`; they are flushed at the end of the batch.
    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox);

    /// Called every [`RuntimeConfig::tick`] (timers).
    fn on_tick(&mut self, _now: Instant, _out: &mut Outbox) {}

    /// A message from the inbox.
    fn on_message(&mut self, _msg: Self::Msg, _out: &mut Outbox) {}
}

/// Sends queued by a handler during one batch, and the shard's output buffer pool.
pub struct Outbox {
    queue: Vec<Outgoing>,
    pool: BufPool,
    shard: usize,
    /// The time of the current turn: the shard's one clock read, what handlers use as `now`.
    now: Instant,
    /// This shard's wildcard listens (`0.0.0.0`/`::`), empty with explicit `listen=` addresses.
    wildcards: Vec<(SocketAddr, Proto)>,
    /// The source address the routing table picks toward a destination, learned once per
    /// destination (a `connect()` probe) and kept [`ROUTE_TTL`]; only used with wildcard listens.
    routes: std::collections::HashMap<std::net::IpAddr, (std::net::IpAddr, Instant)>,
}

/// How long a learned route source is used before it is probed again (interfaces change).
const ROUTE_TTL: Duration = Duration::from_secs(60);
/// Most destinations whose route source is kept.
const ROUTES_MAX: usize = 4096;

impl Outbox {
    fn new(shard: usize) -> Outbox {
        Outbox {
            queue: Vec::with_capacity(64),
            pool: BufPool::new(2048, 256),
            shard,
            now: Instant::now(),
            wildcards: Vec::new(),
            routes: std::collections::HashMap::new(),
        }
    }

    /// The address to name ourselves by (Via sent-by, Record-Route) in a request that leaves from
    /// listen address `local` over `proto` toward `dest`: `local` itself, unless it belongs to a
    /// wildcard listen — then the source address the kernel's route toward `dest` uses, with
    /// `local`'s port. Costs nothing without wildcard listens; with them, one probe per
    /// destination per [`ROUTE_TTL`], never one per message.
    pub fn local_for(&mut self, local: SocketAddr, proto: Proto, dest: SocketAddr) -> SocketAddr {
        if self.wildcards.is_empty() {
            return local;
        }
        let wild = local.ip().is_unspecified()
            || self.wildcards.iter().any(|(w, p)| {
                *p == proto && w.port() == local.port() && w.is_ipv4() == local.is_ipv4()
            });
        if !wild || local.is_ipv4() != dest.is_ipv4() {
            return local;
        }
        let now = self.now;
        if let Some((ip, at)) = self.routes.get(&dest.ip()) {
            if now.duration_since(*at) < ROUTE_TTL {
                return SocketAddr::new(*ip, local.port());
            }
        }
        match route_source(dest) {
            Some(ip) => {
                if self.routes.len() >= ROUTES_MAX {
                    self.routes
                        .retain(|_, (_, at)| now.duration_since(*at) < ROUTE_TTL);
                    if self.routes.len() >= ROUTES_MAX {
                        self.routes.clear();
                    }
                }
                self.routes.insert(dest.ip(), (ip, now));
                SocketAddr::new(ip, local.port())
            }
            None => {
                ser_log!(L_DBG, "no route toward {dest}: naming ourselves {local}");
                local
            }
        }
    }

    /// The time of the shard's current turn (handlers read no clock of their own).
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This shard's id.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Queues `data` to `dest` over `proto`, from local address `local` (None: the first listen
    /// address of the destination's family).
    pub fn send(&mut self, data: Bytes, dest: SocketAddr, proto: Proto, local: Option<SocketAddr>) {
        self.queue.push(Outgoing {
            data,
            dest,
            proto,
            local,
        });
    }

    /// Queues `data` back over the transport `pkt` came in on, to `dest` (the reply address).
    pub fn reply_to(&mut self, pkt: &Packet, dest: SocketAddr, data: Bytes) {
        let dest = if pkt.proto == Proto::Tcp {
            pkt.src
        } else {
            dest
        };
        self.send(data, dest, pkt.proto, Some(pkt.local));
    }

    /// An empty pooled buffer with room for `min` bytes (for building a reply).
    pub fn buffer(&mut self, min: usize) -> BytesMut {
        self.pool.take(min)
    }

    /// Sends queued and not yet flushed.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The source address the kernel would use toward `dest`: a UDP socket `connect`ed there (which
/// sends nothing) and asked for its own address.
fn route_source(dest: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if dest.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any).ok()?;
    probe.connect(dest).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// One listen address and the transports to open on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSpec {
    pub addr: SocketAddr,
    pub udp: bool,
    pub tcp: bool,
}

/// Everything the runtime needs to start.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub listen: Vec<ListenSpec>,
    /// Number of shards (threads).
    pub shards: usize,
    /// Pin shard `i` to core `i % cores`.
    pub pin: bool,
    pub io: IoMode,
    /// `SO_RCVBUF` to ask for (SER's `maxbuffer`).
    pub rcvbuf: Option<usize>,
    /// More packets than this waiting in one turn = overload (requests beyond it get 503).
    pub overload_backlog: usize,
    /// Packets received per turn at most (the rest wait in the kernel for the next turn).
    pub drain_max: usize,
    /// `Retry-After` of the overload 503, seconds.
    pub retry_after: u32,
    /// Timer period.
    pub tick: Duration,
    pub tcp: TcpLimits,
    /// Traffic counters the shards update (None: each runtime keeps its own, unread).
    pub stats: Option<Arc<crate::stats::Stats>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            listen: Vec::new(),
            shards: 1,
            pin: true,
            io: IoMode::Auto,
            rcvbuf: None,
            overload_backlog: 4096,
            drain_max: 8192,
            retry_after: 5,
            tick: Duration::from_millis(100),
            tcp: TcpLimits::default(),
            stats: None,
        }
    }
}

/// Wakes one shard, but only when it waits in epoll: a busy shard sees new inbox work on its next
/// turn anyway, and an eventfd write per cross-shard message would cost a syscall on both sides.
struct Doorbell {
    waker: Waker,
    /// Set by the shard before it may sleep in epoll (and cleared after); whoever clears it rings.
    parked: AtomicBool,
}

impl Doorbell {
    fn ring(&self) {
        // SeqCst pairs with the shard's store-then-recheck in `Shard::run`: either the shard sees
        // the message queued before this swap, or this swap sees `parked` and wakes it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.parked.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }

    fn force(&self) {
        let _ = self.waker.wake();
    }
}

/// Hands work to one shard from any thread: a crossbeam channel plus a mio waker.
pub struct Inbox<M> {
    tx: Sender<M>,
    waker: Arc<Doorbell>,
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

struct ShardHandle<M> {
    thread: JoinHandle<()>,
    inbox: Inbox<M>,
}

/// The running shards.
pub struct Runtime<M> {
    shards: Vec<ShardHandle<M>>,
    stop: Arc<AtomicBool>,
    backend: IoBackend,
    local: Vec<(SocketAddr, Proto)>,
}

const WAKER: Token = Token(0);
const UDP_BASE: usize = 1;
const LISTEN_BASE: usize = 1 << 16;
const CONN_BASE: usize = 1 << 20;

/// The sockets of one shard, bound on the main thread (so start-up errors are reported there).
struct ShardSockets {
    udp: Vec<std::net::UdpSocket>,
    tcp: Vec<std::net::TcpListener>,
}

impl<M: Send + 'static> Runtime<M> {
    /// Binds every shard's sockets, then starts the shard threads; `make(i)` builds shard `i`'s
    /// handler. Fails (nothing started) when a socket cannot be bound.
    pub fn start<H: Handler<Msg = M>>(
        cfg: &RuntimeConfig,
        mut make: impl FnMut(usize) -> H,
    ) -> io::Result<Runtime<M>> {
        let n = cfg.shards.max(1);
        let (backend, note) = transport::select_backend(cfg.io);
        if let Some(note) = note {
            // The operator asked for io_uring and does not get it: visible even at debug=0.
            ser_log!(L_ERR, "{note}");
        }
        let mut per_shard = Vec::with_capacity(n);
        let mut local = Vec::new();
        // SO_REUSEPORT would let a second server of the same user share (and silently split) our
        // ports: first make sure each address is free, with a plain bind.
        for l in &cfg.listen {
            if l.addr.port() == 0 {
                continue;
            }
            let in_use = |e: io::Error, proto: &str| {
                io::Error::new(e.kind(), format!("cannot bind {proto}:{}: {e}", l.addr))
            };
            if l.udp {
                drop(std::net::UdpSocket::bind(l.addr).map_err(|e| in_use(e, "udp"))?);
            }
            if l.tcp {
                drop(std::net::TcpListener::bind(l.addr).map_err(|e| in_use(e, "tcp"))?);
            }
        }
        // Shard 0 binds first; the others bind the address it got (port 0 resolved once).
        let mut udp_addrs: Vec<SocketAddr> = Vec::new();
        let mut tcp_addrs: Vec<SocketAddr> = Vec::new();
        for i in 0..n {
            let mut s = ShardSockets {
                udp: Vec::new(),
                tcp: Vec::new(),
            };
            let (mut ku, mut kt) = (0, 0);
            for l in &cfg.listen {
                if l.udp {
                    let addr = udp_addrs.get(ku).copied().unwrap_or(l.addr);
                    let sock = transport::bind_udp(addr, cfg.rcvbuf).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind udp:{addr}: {e}"))
                    })?;
                    if i == 0 {
                        let a = sock.local_addr()?;
                        udp_addrs.push(a);
                        local.push((a, Proto::Udp));
                    }
                    ku += 1;
                    s.udp.push(sock);
                }
                if l.tcp {
                    let addr = tcp_addrs.get(kt).copied().unwrap_or(l.addr);
                    let sock = transport::bind_tcp(addr).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind tcp:{addr}: {e}"))
                    })?;
                    if i == 0 {
                        let a = sock.local_addr()?;
                        tcp_addrs.push(a);
                        local.push((a, Proto::Tcp));
                    }
                    kt += 1;
                    s.tcp.push(sock);
                }
            }
            per_shard.push(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let directory = ConnDirectory::default();
        // Polls, wakers and the cross-shard send channels first: every shard knows every other.
        let mut polls = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        let mut xfer_rxs = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Doorbell {
                waker: Waker::new(poll.registry(), WAKER)?,
                parked: AtomicBool::new(false),
            });
            let (tx, rx) = crossbeam_channel::unbounded();
            polls.push(poll);
            peers.push(Peer { tx, waker });
            xfer_rxs.push(rx);
        }
        let peers = Arc::new(peers);
        let mut shards = Vec::with_capacity(n);
        for (i, ((socks, poll), xfer_rx)) in
            per_shard.into_iter().zip(polls).zip(xfer_rxs).enumerate()
        {
            let waker = peers[i].waker.clone();
            let (tx, rx) = crossbeam_channel::unbounded();
            let handler = make(i);
            let stop = stop.clone();
            let core = if cfg.pin && !cores.is_empty() {
                Some(cores[i % cores.len()])
            } else {
                None
            };
            let cfg = cfg.clone();
            let links = Links {
                rx,
                xfer_rx,
                peers: peers.clone(),
                directory: directory.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("ser-shard-{i}"))
                .spawn(move || {
                    log::set_shard(Some(i));
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            ser_log!(L_INFO, "could not pin to core {}", core.id);
                        }
                    }
                    match Shard::new(i, &cfg, backend, poll, socks, links, handler, stop) {
                        Ok(mut shard) => shard.run(),
                        Err(e) => ser_log!(L_ERR, "shard setup failed: {e}"),
                    }
                })?;
            shards.push(ShardHandle {
                thread,
                inbox: Inbox { tx, waker },
            });
        }
        Ok(Runtime {
            shards,
            stop,
            backend,
            local,
        })
    }

    /// The UDP receive backend selected at start.
    pub fn backend(&self) -> IoBackend {
        self.backend
    }

    /// The bound addresses (port 0 resolved), one per listen address and protocol.
    pub fn local_addrs(&self) -> &[(SocketAddr, Proto)] {
        &self.local
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The inbox of shard `i`.
    pub fn inbox(&self, i: usize) -> Option<Inbox<M>> {
        self.shards.get(i).map(|s| s.inbox.clone())
    }

    /// Asks every shard to stop (returns at once).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in &self.shards {
            s.inbox.waker.force();
        }
    }

    /// Waits for every shard to finish (after [`Runtime::stop`]). Returns how many panicked.
    pub fn join(self) -> usize {
        let mut panicked = 0;
        for s in self.shards {
            if s.thread.join().is_err() {
                panicked += 1;
            }
        }
        panicked
    }
}

/// Another shard, as seen from one shard: where to hand a TCP send for a connection it owns.
struct Peer {
    tx: Sender<Outgoing>,
    waker: Arc<Doorbell>,
}

/// A shard's channels: its inbox, the TCP sends other shards hand it, and the other shards.
struct Links<M> {
    rx: Receiver<M>,
    xfer_rx: Receiver<Outgoing>,
    peers: Arc<Vec<Peer>>,
    directory: ConnDirectory,
}

struct Shard<H: Handler> {
    id: usize,
    poll: Poll,
    udp: Vec<UdpSocket>,
    tcp: Tcp,
    rx: Receiver<H::Msg>,
    xfer_rx: Receiver<Outgoing>,
    peers: Arc<Vec<Peer>>,
    handler: H,
    stop: Arc<AtomicBool>,
    out: Outbox,
    pending: Vec<Packet>,
    /// Tokens that were not drained in the last turn (edge-triggered: must be read again).
    again: Vec<(Token, bool, bool)>,
    overload_backlog: usize,
    drain_max: usize,
    retry_after: u32,
    tick: Duration,
    sl_tag: String,
    overloaded_turns: u64,
    handler_panics: u64,
    /// See `Shard::run` (SER_POLL_EVERY overrides [`POLL_EVERY`], for measurements).
    poll_every: u32,
    stats: Arc<crate::stats::Stats>,
}

impl<H: Handler> Shard<H> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        id: usize,
        cfg: &RuntimeConfig,
        backend: IoBackend,
        poll: Poll,
        socks: ShardSockets,
        links: Links<H::Msg>,
        handler: H,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Shard<H>> {
        let mut udp = Vec::new();
        for (k, s) in socks.udp.into_iter().enumerate() {
            let (u, note) = UdpSocket::new(s, backend)?;
            if let Some(note) = note {
                ser_log!(L_WARN, "{note}");
            }
            let fd = u.poll_fd();
            poll.registry().register(
                &mut SourceFd(&fd),
                Token(UDP_BASE + k),
                Interest::READABLE,
            )?;
            udp.push(u);
        }
        let mut tcp = Tcp::new(cfg.tcp, LISTEN_BASE, CONN_BASE, id, links.directory);
        let mut out = Outbox::new(id);
        for u in &udp {
            if u.wildcard {
                out.wildcards.push((u.local, Proto::Udp));
            }
        }
        for l in socks.tcp {
            let a = tcp.add_listener(poll.registry(), l)?;
            if a.ip().is_unspecified() {
                out.wildcards.push((a, Proto::Tcp));
            }
        }
        let sl_tag = format!(
            "{:x}{:x}.{id}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        // Every socket may already hold data that arrived before registration.
        let again = (0..udp.len())
            .map(|k| (Token(UDP_BASE + k), true, false))
            .collect();
        Ok(Shard {
            id,
            poll,
            udp,
            tcp,
            rx: links.rx,
            xfer_rx: links.xfer_rx,
            peers: links.peers,
            handler,
            stop,
            out,
            pending: Vec::with_capacity(256),
            again,
            overload_backlog: cfg.overload_backlog,
            drain_max: cfg.drain_max.max(sys_batch()),
            retry_after: cfg.retry_after,
            tick: cfg.tick,
            sl_tag,
            overloaded_turns: 0,
            handler_panics: 0,
            poll_every: std::env::var("SER_POLL_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(POLL_EVERY),
            stats: cfg
                .stats
                .clone()
                .unwrap_or_else(|| Arc::new(crate::stats::Stats::new(1))),
        })
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut ready_buf: Vec<(Token, bool, bool)> = Vec::with_capacity(256);
        let mut inbox_busy = false;
        let mut next_tick = Instant::now() + self.tick;
        ser_log!(
            L_INFO,
            "shard {} running ({} udp socket(s), backend {})",
            self.id,
            self.udp.len(),
            self.udp.first().map_or("none", |u| u.backend().as_str())
        );
        // Turns in a row that went straight back to the sockets without asking epoll.
        let mut unpolled = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            // While a socket keeps yielding datagrams, read it again at once: an epoll_wait per
            // small batch cost more than the batch (measured: 3 syscalls per turn of ~2 packets
            // at 70k/s). epoll is still asked every POLL_EVERY turns for the other sources.
            if !self.again.is_empty() && unpolled < self.poll_every {
                unpolled += 1;
                events.clear();
            } else {
                unpolled = 0;
                let mut timeout = if self.again.is_empty() && !inbox_busy {
                    next_tick.saturating_duration_since(now)
                } else {
                    Duration::ZERO
                };
                let parked = self.peers.get(self.id).map(|p| &p.waker.parked);
                if let Some(parked) = parked.filter(|_| !timeout.is_zero()) {
                    parked.store(true, Ordering::SeqCst);
                    std::sync::atomic::fence(Ordering::SeqCst);
                    if !self.rx.is_empty() || !self.xfer_rx.is_empty() {
                        timeout = Duration::ZERO;
                    }
                }
                let polled = self.poll.poll(&mut events, Some(timeout));
                if let Some(parked) = parked {
                    parked.store(false, Ordering::Relaxed);
                }
                if let Err(e) = polled {
                    if e.kind() != io::ErrorKind::Interrupted {
                        ser_log!(L_ERR, "poll failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    continue;
                }
            }
            let mut ready = std::mem::take(&mut ready_buf);
            ready.clear();
            ready.append(&mut self.again);
            for ev in events.iter() {
                ready.push((
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                ));
            }
            let now = Instant::now();
            self.out.now = now;
            self.receive(&ready, now);
            ready_buf = ready;
            self.dispatch();
            self.flush(now);
            inbox_busy = self.inbox();
            self.flush(now);
            if now >= next_tick {
                self.guarded(|h, out| h.on_tick(now, out));
                self.tcp.sweep(self.poll.registry(), now);
                self.flush(now);
                next_tick = now + self.tick;
            }
        }
        // Stop receiving; hand out what is queued; close connections after a last flush.
        while self.inbox() {
            self.out.now = Instant::now();
            self.flush(self.out.now);
        }
        self.flush(Instant::now());
        self.tcp.shutdown(self.poll.registry());
        if self.overloaded_turns > 0 {
            ser_log!(
                L_INFO,
                "shard {}: overloaded in {} turn(s)",
                self.id,
                self.overloaded_turns
            );
        }
        ser_log!(L_INFO, "shard {} stopped", self.id);
    }

    /// Runs handler code; a panic in it is logged and the shard goes on with the next message (a
    /// dead shard would black-hole the share of traffic SO_REUSEPORT hashes to its sockets).
    fn guarded(&mut self, f: impl FnOnce(&mut H, &mut Outbox)) {
        let (h, out) = (&mut self.handler, &mut self.out);
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(h, out))).is_err() {
            self.handler_panics += 1;
            self.stats.dropped(self.id);
            ser_log!(
                L_CRIT,
                "handler panicked (shard {}, {} so far); message dropped",
                self.id,
                self.handler_panics
            );
        }
    }

    fn receive(&mut self, ready: &[(Token, bool, bool)], now: Instant) {
        let registry = self.poll.registry();
        for &(tok, readable, writable) in ready {
            if tok == WAKER {
                continue;
            }
            if tok.0 >= UDP_BASE && tok.0 < UDP_BASE + self.udp.len() {
                let k = tok.0 - UDP_BASE;
                let sock = &mut self.udp[k];
                let local = sock.local;
                let mut drained = false;
                let mut errors = 0;
                let poll_every = self.poll_every;
                while self.pending.len() < self.drain_max && errors < 8 {
                    let pending = &mut self.pending;
                    match sock.recv_batch(|data, src, dst| {
                        pending.push(Packet {
                            data,
                            src,
                            // A wildcard socket: the address the sender used.
                            local: dst.map_or(local, |ip| SocketAddr::new(ip, local.port())),
                            proto: Proto::Udp,
                        })
                    }) {
                        Ok(0) => {
                            drained = true;
                            break;
                        }
                        // A short batch: the queue was empty a moment ago. Handle what came and
                        // read again next turn (without epoll, see `run`); only EAGAIN means
                        // drained, which keeps the edge-triggered registration armed.
                        Ok(n) if n < transport::sys::BATCH => {
                            // With re-reading off (poll_every 0), trust the edge instead.
                            drained = poll_every == 0;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            drained = true;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // ICMP errors (ECONNREFUSED) surface here, once each; the socket stays
                            // usable. Anything persistent is retried next turn, not spun on.
                            errors += 1;
                            ser_log!(L_DBG, "udp recv on {local}: {e}");
                        }
                    }
                }
                if !drained {
                    self.again.push((tok, true, false));
                }
                continue;
            }
            match self.tcp.token(tok) {
                Some(TcpToken::Listener(j)) => self.tcp.accept(registry, j, now),
                Some(TcpToken::Conn(slot))
                    if self.tcp.ready(
                        registry,
                        slot,
                        readable,
                        writable,
                        now,
                        &mut self.pending,
                    ) =>
                {
                    self.again.push((tok, true, false));
                }
                _ => {}
            }
        }
    }

    fn dispatch(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut batch = std::mem::take(&mut self.pending);
        if batch.len() <= self.overload_backlog {
            for pkt in batch.drain(..) {
                self.stats.received(self.id, &pkt.data);
                self.guarded(|h, out| h.on_packet(pkt, out));
            }
        } else {
            self.overloaded_turns += 1;
            // Priority: responses, ACK and CANCEL first (they finish work already accepted).
            let mut requests = Vec::with_capacity(batch.len());
            for pkt in batch.drain(..) {
                if is_priority(&pkt.data) {
                    self.stats.received(self.id, &pkt.data);
                    self.guarded(|h, out| h.on_packet(pkt, out));
                } else {
                    requests.push(pkt);
                }
            }
            let keep = self.overload_backlog.min(requests.len());
            let rejected = requests.split_off(keep);
            for pkt in requests {
                self.stats.received(self.id, &pkt.data);
                self.guarded(|h, out| h.on_packet(pkt, out));
            }
            ser_log!(
                L_DBG,
                "overload: {} request(s) rejected with 503",
                rejected.len()
            );
            for pkt in rejected {
                self.stats.overloaded(self.id);
                self.reject_overload(&pkt);
            }
        }
        self.pending = batch;
    }

    fn reject_overload(&mut self, pkt: &Packet) {
        let limits = Limits {
            stream: pkt.proto == Proto::Tcp,
            ..Limits::default()
        };
        let Ok(msg) = Message::parse_with(pkt.data.clone(), &limits) else {
            return;
        };
        if !msg.is_request() {
            return;
        }
        let mut buf = self.out.buffer(512);
        let mut r = ReplyBuilder::new(
            &mut buf,
            &msg,
            503,
            b"Service Unavailable",
            self.sl_tag.as_bytes(),
        );
        r.header_num(b"Retry-After", self.retry_after as usize);
        r.finish(None, b"");
        let dest = reply_address(&msg, pkt, false);
        self.out.reply_to(pkt, dest, buf.freeze());
    }

    /// Hands inbox messages to the handler (at most 4096 per turn) and sends what other shards
    /// handed over for this shard's TCP connections; true if more are waiting.
    fn inbox(&mut self) -> bool {
        let now = Instant::now();
        self.out.now = now;
        for _ in 0..4096 {
            let Ok(o) = self.xfer_rx.try_recv() else {
                break;
            };
            // Never forwarded twice: if the connection is gone, open a new one here.
            if self
                .tcp
                .send(self.poll.registry(), o.data, o.dest, now, false)
                == SendOutcome::Failed
            {
                ser_log!(L_DBG, "tcp send to {} dropped", o.dest);
            }
        }
        for _ in 0..4096 {
            match self.rx.try_recv() {
                Ok(m) => self.guarded(|h, out| h.on_message(m, out)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn flush(&mut self, now: Instant) {
        if self.out.queue.is_empty() {
            return;
        }
        let mut queue = std::mem::take(&mut self.out.queue);
        for o in &queue {
            self.stats.sent(self.id, &o.data);
        }
        // UDP: one sendmmsg run per socket, in queue order. The usual turn (one socket, all UDP)
        // sends the queue as it is: building a list per socket moved ~300 bytes per reply.
        let single = self.udp.len() == 1 && queue.iter().all(|o| o.proto == Proto::Udp);
        if single {
            self.udp[0].send_all(&queue[..]);
        }
        for k in 0..self.udp.len() {
            if single {
                break;
            }
            let first_of_family = |d: &SocketAddr, udp: &[UdpSocket]| {
                udp.iter()
                    .position(|u| u.local.is_ipv4() == d.is_ipv4())
                    .unwrap_or(0)
            };
            let on_k = |o: &&Outgoing| {
                let idx = match o.local {
                    // A concrete address of a wildcard socket is sent from that socket.
                    Some(l) => self
                        .udp
                        .iter()
                        .position(|u| {
                            u.local == l
                                || (u.wildcard
                                    && u.local.port() == l.port()
                                    && u.local.is_ipv4() == l.is_ipv4())
                        })
                        .unwrap_or_else(|| first_of_family(&o.dest, &self.udp)),
                    None => first_of_family(&o.dest, &self.udp),
                };
                idx == k
            };
            let udp = queue.iter().filter(|o| o.proto == Proto::Udp);
            if self.udp[k].wildcard {
                #[allow(clippy::type_complexity)]
                let msgs: smallvec::SmallVec<
                    [(&[u8], SocketAddr, Option<std::net::IpAddr>); 64],
                > = udp
                    .filter(on_k)
                    .map(|o| {
                        let src = o.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
                        (&o.data[..], o.dest, src)
                    })
                    .collect();
                if !msgs.is_empty() {
                    self.udp[k].send_all(&msgs);
                }
                continue;
            }
            // On the stack for the usual turn (no allocation per socket per turn).
            let msgs: smallvec::SmallVec<[(&[u8], SocketAddr); 64]> =
                udp.filter(on_k).map(|o| (&o.data[..], o.dest)).collect();
            if !msgs.is_empty() {
                self.udp[k].send_all(&msgs);
            }
        }
        let registry = self.poll.registry();
        for o in queue.drain(..) {
            match o.proto {
                Proto::Udp => {
                    self.out.pool.reclaim(o.data);
                }
                Proto::Tcp => match self.tcp.send(registry, o.data.clone(), o.dest, now, true) {
                    SendOutcome::Queued => {}
                    SendOutcome::Failed => ser_log!(L_DBG, "tcp send to {} dropped", o.dest),
                    SendOutcome::Elsewhere(k) => {
                        if let Some(p) = self.peers.get(k) {
                            let _ = p.tx.send(o);
                            p.waker.ring();
                        }
                    }
                },
            }
        }
        self.out.queue = queue;
    }
}

/// See `Shard::run`: at most this many turns in a row skip epoll while a socket keeps delivering.
const POLL_EVERY: u32 = 16;

fn sys_batch() -> usize {
    transport::sys::BATCH
}

/// Responses, ACKs and CANCELs: work already accepted, handed to the handler even under overload.
fn is_priority(data: &[u8]) -> bool {
    let d = data
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .and_then(|p| data.get(p..))
        .unwrap_or(data);
    d.starts_with(b"SIP/") || d.starts_with(b"ACK ") || d.starts_with(b"CANCEL ")
}

/// Where a reply to `msg` (received as `pkt`) goes. Over TCP: back over the same connection (the
/// source). Over UDP (RFC 3261 §18.2.2, RFC 3581): with `rport` in the top Via, the source address
/// and port; with `reply_to_via` (SER's option, default off), the Via's `received` (or sent-by) host
/// and its port; otherwise the source address, as SER did.
pub fn reply_address(msg: &Message, pkt: &Packet, reply_to_via: bool) -> SocketAddr {
    if pkt.proto == Proto::Tcp || !reply_to_via {
        return pkt.src;
    }
    let Ok(via) = msg.top_via() else {
        return pkt.src;
    };
    if via.rport().is_some() {
        return pkt.src;
    }
    let ip = via.received_ip().or(match via.host {
        crate::wire::uri::Host::V4(a) => Some(a.into()),
        crate::wire::uri::Host::V6(a) => Some(a.into()),
        crate::wire::uri::Host::Name(_) => None,
    });
    match ip {
        Some(ip) => SocketAddr::new(ip, via.port.unwrap_or(5060)),
        None => pkt.src,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn priority_classification() {
        assert!(is_priority(b"SIP/2.0 200 OK\r\n"));
        assert!(is_priority(b"\r\nACK sip:a SIP/2.0\r\n"));
        assert!(is_priority(b"CANCEL sip:a SIP/2.0\r\n"));
        assert!(!is_priority(b"INVITE sip:a SIP/2.0\r\n"));
        assert!(!is_priority(b""));
    }

    struct Echo;
    impl Handler for Echo {
        type Msg = Bytes;
        fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
            let d = pkt.data.clone();
            out.reply_to(&pkt, pkt.src, d);
        }
        fn on_message(&mut self, msg: Bytes, out: &mut Outbox) {
            let dest: SocketAddr = String::from_utf8_lossy(&msg).parse().unwrap();
            out.send(msg, dest, Proto::Udp, None);
        }
    }

    #[test]
    fn echo_shard_over_udp_and_inbox() {
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                udp: true,
                tcp: false,
            }],
            pin: false,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(&cfg, |_| Echo).unwrap();
        let server = rt.local_addrs()[0].0;
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(b"hello", server).unwrap();
        let mut buf = [0u8; 100];
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, server);
        let me = c.local_addr().unwrap().to_string();
        rt.inbox(0).unwrap().send(Bytes::from(me.clone())).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], me.as_bytes());
        rt.stop();
        assert_eq!(rt.join(), 0);
    }

    /// Records what it was handed, in order; answers nothing.
    struct Recorder(std::sync::mpsc::Sender<String>);
    impl Handler for Recorder {
        type Msg = (Bytes, SocketAddr);
        fn on_packet(&mut self, pkt: Packet, _out: &mut Outbox) {
            let first = pkt.data.split(|&c| c == b'\r').next().unwrap_or_default();
            let _ = self.0.send(String::from_utf8_lossy(first).into_owned());
        }
        fn on_message(&mut self, (data, dest): (Bytes, SocketAddr), out: &mut Outbox) {
            out.send(data, dest, Proto::Tcp, None);
        }
    }

    fn req(method: &str, n: u32) -> String {
        format!(
            "{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{n}\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c{n}\r\n\
             CSeq: {n} {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn overload_hands_responses_acks_cancels_first_and_503s_excess_requests() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: server,
                udp: true,
                tcp: false,
            }],
            pin: false,
            overload_backlog: 1,
            ..RuntimeConfig::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // The socket is bound before the shard runs: queue one burst so that its first turn sees
        // all of it at once.
        let rt = Runtime::start(&cfg, |_| {
            for m in [
                req("INVITE", 1),
                req("INVITE", 2),
                "SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n".to_string(),
                req("ACK", 3),
                req("INVITE", 4),
                req("CANCEL", 5),
            ] {
                client.send_to(m.as_bytes(), server).unwrap();
            }
            Recorder(tx.clone())
        })
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(rx.recv_timeout(Duration::from_secs(3)).unwrap());
        }
        assert_eq!(
            seen,
            [
                "SIP/2.0 180 Ringing",
                "ACK sip:x@127.0.0.1 SIP/2.0",
                "CANCEL sip:x@127.0.0.1 SIP/2.0",
                "INVITE sip:x@127.0.0.1 SIP/2.0",
            ]
        );
        let mut buf = [0u8; 2048];
        let mut rejected = Vec::new();
        for _ in 0..2 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                text.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
            rejected.push(text.contains("Call-ID: c2") || text.contains("Call-ID: c4"));
        }
        assert_eq!(rejected, [true, true]);
        rt.stop();
        assert_eq!(rt.join(), 0);
    }

    #[test]
    fn tcp_outgoing_connect_is_non_blocking_and_reused() {
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dest = peer.local_addr().unwrap();
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                udp: false,
                tcp: true,
            }],
            pin: false,
            ..RuntimeConfig::default()
        };
        let (tx, _rx) = std::sync::mpsc::channel();
        let rt = Runtime::start(&cfg, |_| Recorder(tx.clone())).unwrap();
        let inbox = rt.inbox(0).unwrap();
        inbox.send((Bytes::from_static(b"one;"), dest)).unwrap();
        inbox.send((Bytes::from_static(b"two;"), dest)).unwrap();
        let (mut conn, _) = peer.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 8 {
            use std::io::Read;
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&got, b"one;two;");
        // A third message reuses the connection: no second accept.
        inbox.send((Bytes::from_static(b"three"), dest)).unwrap();
        let mut buf = [0u8; 5];
        use std::io::Read;
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"three");
        peer.set_nonblocking(true).unwrap();
        assert!(peer.accept().is_err());
        rt.stop();
        assert_eq!(rt.join(), 0);
    }

    #[test]
    fn shards_share_one_port_and_a_second_server_cannot_join() {
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                udp: true,
                tcp: true,
            }],
            shards: 3,
            pin: false,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(&cfg, |_| Echo).unwrap();
        assert_eq!(rt.shard_count(), 3);
        let udp = rt.local_addrs()[0].0;
        let tcp = rt.local_addrs()[1].0;
        assert_ne!(udp.port(), 0);
        // Every datagram is echoed, whichever shard the kernel picks.
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 16];
        for i in 0..20u8 {
            c.send_to(&[i], udp).unwrap();
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i]);
        }
        let again = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: udp,
                udp: true,
                tcp: false,
            }],
            ..cfg.clone()
        };
        let err = Runtime::start(&again, |_| Echo).err().unwrap();
        assert!(err.to_string().contains("cannot bind udp"), "{err}");
        let again = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: tcp,
                udp: false,
                tcp: true,
            }],
            ..cfg
        };
        assert!(Runtime::start(&again, |_| Echo).is_err());
        rt.stop();
        assert_eq!(rt.join(), 0);
    }

    #[test]
    fn any_shard_reaches_a_peer_over_the_connection_another_shard_accepted() {
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                udp: false,
                tcp: true,
            }],
            shards: 2,
            pin: false,
            ..RuntimeConfig::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = Runtime::start(&cfg, |_| Recorder(tx.clone())).unwrap();
        let server = rt.local_addrs()[0].0;
        let mut client = std::net::TcpStream::connect(server).unwrap();
        let me = client.local_addr().unwrap();
        // Make sure the owning shard has accepted it: send a message and wait for the handler.
        use std::io::{Read, Write};
        client
            .write_all(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(3)).unwrap(),
            "OPTIONS sip:x SIP/2.0"
        );
        rt.inbox(0)
            .unwrap()
            .send((Bytes::from_static(b"from-0;"), me))
            .unwrap();
        rt.inbox(1)
            .unwrap()
            .send((Bytes::from_static(b"from-1;"), me))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 14 {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.contains("from-0;") && text.contains("from-1;"),
            "{text}"
        );
        rt.stop();
        assert_eq!(rt.join(), 0);
    }

    struct Fragile;
    impl Handler for Fragile {
        type Msg = ();
        fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
            assert!(&pkt.data[..] != b"boom", "handler bug");
            let d = pkt.data.clone();
            out.reply_to(&pkt, pkt.src, d);
        }
    }

    #[test]
    fn a_panicking_handler_does_not_kill_the_shard() {
        let cfg = RuntimeConfig {
            listen: vec![ListenSpec {
                addr: "127.0.0.1:0".parse().unwrap(),
                udp: true,
                tcp: false,
            }],
            pin: false,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(&cfg, |_| Fragile).unwrap();
        let server = rt.local_addrs()[0].0;
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.send_to(b"boom", server).unwrap();
        c.send_to(b"still alive", server).unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"still alive");
        rt.stop();
        assert_eq!(rt.join(), 0);
    }
}
