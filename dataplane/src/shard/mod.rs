//! Shards: one thread per core, each pinned, each running its own mio event loop over its own
//! sockets. The only code of the dataplane that waits.
//!
//! One turn of a shard's loop:
//! 1. wait for readiness (or the next tick, or a wake-up from [`Inbox::send`]);
//! 2. receive: drain every ready UDP socket in `recvmmsg` batches and every ready TCP connection
//!    (framed messages), up to [`RuntimeConfig::drain_max`] packets per turn;
//! 3. if the oldest packet of the batch waited [`RuntimeConfig::overload_delay`] or more (the time
//!    since the last turn, when the shard came straight back to a socket that was still
//!    delivering: the turn clock, no clock read per packet), or more than
//!    [`RuntimeConfig::overload_backlog`] packets were waiting, in every turn for
//!    [`RuntimeConfig::overload_after`], the shard sheds: responses, ACKs and CANCELs go to the
//!    handler first, then requests while the turn has spent less than 3/4 of `overload_delay` (and
//!    at most `overload_backlog` of them); further requests get a stateless
//!    `503 Service Unavailable` with `Retry-After` without touching the handler for another
//!    quarter, and what is left is dropped (counted in `dropped`): the turn stays near the target
//!    however much waited. It sheds until a turn's oldest packet waited less than a quarter of
//!    `overload_delay`;
//! 4. otherwise every packet goes to [`Handler::on_packet`] in arrival order;
//! 5. the [`Outbox`] is flushed: UDP with `sendmmsg` per socket, TCP over the peer's connection;
//! 6. messages from the [`Inbox`] go to [`Handler::on_message`]; every `tick`, [`Handler::on_tick`]
//!    and the TCP timeout sweep run, and the shard publishes its overload state: overloaded in
//!    that tick if it shed, if the kernel dropped datagrams on its sockets (`SO_MEMINFO`, one
//!    `getsockopt` per socket per tick) or if a bounded queue behind it refused a request (job
//!    queue, scripts waiting, transaction table: their 503s count in the same `overload_503`).
//!
//! Shutdown ([`Runtime::stop`]): each shard stops receiving, flushes its outbox and TCP write queues,
//! and its thread ends; [`Runtime::join`] waits for all of them.

mod inbox;
pub mod log;
mod outbox;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::ser_log;
use crate::transport::tcp::{ConnDirectory, SendOutcome, Tcp, TcpLimits, TcpToken};
use crate::transport::{self, IoBackend, Outgoing, Packet, Proto, UdpSocket};
use crate::wire::{Limits, Message, ReplyBuilder};
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

pub use outbox::{reply_address, Outbox};

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
    /// More packets than this waiting in one turn = backlog; requests beyond it get 503 once the
    /// backlog has lasted [`RuntimeConfig::overload_after`].
    pub overload_backlog: usize,
    /// Queueing delay (how long the oldest packet of a turn waited) that is a backlog; requests
    /// beyond what 3/4 of it lets a turn serve get 503 once it has lasted `overload_after`.
    pub overload_delay: Duration,
    /// How long a backlog must last (every turn since over `overload_backlog`) before requests
    /// are refused: a burst the shard drains within it (a pause of the shard, a microburst) is
    /// answered late, as a server without overload control would, instead of refused by the
    /// thousand; a backlog that persists is overload. Zero: refuse in the first such turn.
    pub overload_after: Duration,
    /// Packets received per turn at most (the rest wait in the kernel for the next turn).
    pub drain_max: usize,
    /// `Retry-After` of the overload 503, seconds.
    pub retry_after: u32,
    /// Timer period.
    pub tick: Duration,
    /// Receive coalescing: after a turn that received a few packets (fewer than
    /// [`COALESCE_BELOW`]), the shard sleeps this long before reading again, so that one wake-up
    /// and one `recvmmsg` serve the packets of the whole interval instead of one or two each (the
    /// network card's interrupt moderation, in the shard). Zero: read again at once. A turn that
    /// finds nothing ends it (the next wait blocks in epoll); a busy shard never sleeps.
    pub rx_coalesce: Duration,
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
            overload_after: Duration::from_millis(200),
            overload_delay: Duration::from_millis(50),
            drain_max: 8192,
            retry_after: 5,
            tick: Duration::from_millis(100),
            rx_coalesce: Duration::from_micros(RX_COALESCE_US),
            tcp: TcpLimits::default(),
            stats: None,
        }
    }
}

use inbox::Doorbell;
pub use inbox::{inbox_bound, Inbox};

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
            // Bounded, and filled with `try_send` only: a shard never waits on another.
            let (tx, rx) = crossbeam_channel::bounded(inbox::inbox_bound());
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
            let (tx, rx) = crossbeam_channel::bounded(inbox::inbox_bound());
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
    overload_after: Duration,
    overload_delay: Duration,
    /// Since when every turn found a backlog (see the module doc, step 3).
    backlog_since: Option<Instant>,
    /// Shedding: entered after `overload_after` of backlog, left at the first calm turn.
    shedding: bool,
    /// The last turn's clock, and the longest queueing delay seen since the last tick.
    last_turn: Instant,
    max_wait: Duration,
    /// What the last tick saw: this shard's overload 503s (every cause) and kernel drops.
    seen_503: u64,
    seen_drops: u64,
    /// Whether the last tick window was overloaded.
    overloaded: bool,
    drain_max: usize,
    retry_after: u32,
    tick: Duration,
    sl_tag: String,
    overloaded_turns: u64,
    handler_panics: u64,
    /// See `Shard::run` (SER_POLL_EVERY overrides [`POLL_EVERY`], for measurements).
    poll_every: u32,
    /// See [`RuntimeConfig::rx_coalesce`] (SER_RX_COALESCE_US overrides it, for measurements).
    rx_coalesce: Duration,
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
            overload_after: cfg.overload_after,
            overload_delay: cfg.overload_delay.max(Duration::from_millis(1)),
            backlog_since: None,
            shedding: false,
            last_turn: Instant::now(),
            max_wait: Duration::ZERO,
            seen_503: 0,
            seen_drops: 0,
            overloaded: false,
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
            rx_coalesce: std::env::var("SER_RX_COALESCE_US")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(cfg.rx_coalesce, Duration::from_micros),
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
        // Packets the last turn received (see `rx_coalesce`).
        let mut last_rx = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            if last_rx > 0 && last_rx < COALESCE_BELOW && !inbox_busy && !self.rx_coalesce.is_zero()
            {
                // Measured at 70k OPTIONS/s: a wake-up per one or two packets cost more kernel
                // time (scheduler, epoll, an EAGAIN read) than the packets themselves.
                let until = next_tick.saturating_duration_since(Instant::now());
                std::thread::sleep(self.rx_coalesce.min(until));
            }
            // While a socket keeps yielding datagrams, read it again at once: an epoll_wait per
            // small batch cost more than the batch (measured: 3 syscalls per turn of ~2 packets
            // at 70k/s). epoll is still asked every POLL_EVERY turns for the other sources.
            if !self.again.is_empty() && unpolled < self.poll_every {
                unpolled += 1;
                events.clear();
            } else {
                unpolled = 0;
                let mut timeout = if self.again.is_empty() && !inbox_busy {
                    next_tick.saturating_duration_since(Instant::now())
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
            // Straight back to a socket that was delivering: what it holds waited since then.
            let reread = !self.again.is_empty();
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
            let before = self.pending.len();
            self.receive(&ready, now);
            last_rx = self.pending.len() - before;
            ready_buf = ready;
            self.dispatch(now, reread);
            self.flush(now);
            inbox_busy = self.inbox(now);
            self.flush(now);
            if now >= next_tick {
                self.guarded(|h, out| h.on_tick(now, out));
                self.tcp.sweep(self.poll.registry(), now);
                self.flush(now);
                self.overload_tick();
                next_tick = now + self.tick;
            }
        }
        // Stop receiving; hand out what is queued; close connections after a last flush.
        while self.inbox(Instant::now()) {
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

    /// `now`: the turn's clock; `reread`: the turn came straight back to a delivering socket.
    fn dispatch(&mut self, now: Instant, reread: bool) {
        let last = std::mem::replace(&mut self.last_turn, now);
        if self.pending.is_empty() {
            // Nothing waited this turn: whatever backlog there was is gone.
            self.backlog_since = None;
            self.shedding = false;
            return;
        }
        // The oldest packet arrived after the last turn read its socket: it waited at most this.
        let wait = if reread {
            now.saturating_duration_since(last)
        } else {
            Duration::ZERO
        };
        self.max_wait = self.max_wait.max(wait);
        let mut batch = std::mem::take(&mut self.pending);
        let overloaded = if self.shedding {
            // Hysteresis: shed until a turn is clearly calm, not at the first one under target.
            self.shedding = wait >= self.overload_delay / 4 || batch.len() > self.overload_backlog;
            if !self.shedding {
                self.backlog_since = None;
            }
            self.shedding
        } else if batch.len() <= self.overload_backlog && wait < self.overload_delay {
            self.backlog_since = None;
            false
        } else {
            let since = *self.backlog_since.get_or_insert(now);
            self.shedding = now.duration_since(since) >= self.overload_after;
            self.shedding
        };
        if !overloaded {
            for pkt in batch.drain(..) {
                self.stats.received(self.id, &pkt.data);
                self.guarded(|h, out| h.on_packet(pkt, out));
            }
        } else {
            self.shed(&mut batch, now);
        }
        self.pending = batch;
    }

    /// An overloaded turn: priority messages, then requests while the turn has time (3/4 of
    /// `overload_delay`, the clock read every 16), then 503 for the rest.
    #[cold]
    fn shed(&mut self, batch: &mut Vec<Packet>, now: Instant) {
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
        // Serving is what the shard is for: three quarters of the target; refusing the rest.
        let serve = self.overload_delay * 3 / 4;
        let refuse = self.overload_delay / 4;
        let keep = self.overload_backlog.min(requests.len());
        let (mut served, mut refused, mut dropped) = (0usize, 0usize, 0usize);
        // 0: serve for 3/4 of the target; 1: refuse with 503 for 1/4; 2: drop (counted),
        // which keeps the turn near the target however much waited. The clock every 16.
        let mut phase = 0u8;
        let mut refuse_until = Duration::MAX;
        for (i, pkt) in requests.into_iter().enumerate() {
            if (i % 16 == 0 || (phase == 0 && served >= keep)) && phase < 2 {
                let spent = now.elapsed();
                if phase == 0 && (spent >= serve || served >= keep) {
                    phase = 1;
                    refuse_until = spent + refuse;
                }
                if phase == 1 && spent >= refuse_until {
                    phase = 2;
                }
            }
            if phase == 0 {
                served += 1;
                self.stats.received(self.id, &pkt.data);
                self.guarded(|h, out| h.on_packet(pkt, out));
            } else if phase == 1 && self.reject_overload(&pkt) {
                refused += 1;
                self.stats.overloaded(self.id);
            } else {
                // Junk, or no time left even to refuse.
                dropped += 1;
                self.stats.dropped(self.id);
            }
        }
        ser_log!(
            L_DBG,
            "overload: {served} request(s) served, {refused} refused with 503, {dropped} dropped"
        );
    }

    /// Every tick: publishes the queueing delay, the kernel's drops, and whether this tick window
    /// was overloaded (shed, dropped by the kernel, or a bounded queue refused: see the module doc).
    #[cold]
    fn overload_tick(&mut self) {
        let drops: u64 = self.udp.iter().filter_map(|u| u.rcv_drops()).sum();
        let c = self.stats.shard(self.id);
        let refused = c.overload_503.load(Ordering::Relaxed);
        let now_overloaded = self.shedding || drops > self.seen_drops || refused > self.seen_503;
        if drops > self.seen_drops {
            c.rcvbuf_drops
                .fetch_add(drops - self.seen_drops, Ordering::Relaxed);
        }
        self.seen_drops = drops;
        self.seen_503 = refused;
        c.queue_delay_us.store(
            u64::try_from(self.max_wait.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.max_wait = Duration::ZERO;
        if now_overloaded && !self.overloaded {
            c.overload_entered.fetch_add(1, Ordering::Relaxed);
            ser_log!(L_WARN, "shard {}: overloaded", self.id);
        } else if !now_overloaded && self.overloaded {
            ser_log!(L_INFO, "shard {}: no longer overloaded", self.id);
        }
        c.overloaded
            .store(u64::from(now_overloaded), Ordering::Relaxed);
        self.overloaded = now_overloaded;
    }

    /// A stateless 503 with Retry-After; false (nothing sent) for what is not a SIP request.
    fn reject_overload(&mut self, pkt: &Packet) -> bool {
        let limits = Limits {
            stream: pkt.proto == Proto::Tcp,
            ..Limits::default()
        };
        let Ok(msg) = Message::parse_with(pkt.data.clone(), &limits) else {
            return false;
        };
        if !msg.is_request() {
            return false;
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
        true
    }

    /// Hands inbox messages to the handler (at most 4096 per turn) and sends what other shards
    /// handed over for this shard's TCP connections; true if more are waiting.
    /// Handles what other threads sent; `now` is the turn's clock (read once per turn).
    fn inbox(&mut self, now: Instant) -> bool {
        self.out.now = now;
        // Both queues are empty on nearly every turn: asking `is_empty` first is a couple of
        // loads, a failed `try_recv` ~90 instructions each (callgrind, one OPTIONS per turn).
        if self.xfer_rx.is_empty() && self.rx.is_empty() {
            return false;
        }
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
        let sockets = if single {
            self.udp[0].send_all(&queue[..]);
            0
        } else {
            self.udp.len()
        };
        for k in 0..sockets {
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
                            if p.tx.try_send(o).is_ok() {
                                p.waker.ring();
                            } else {
                                // The owner is that far behind: dropped, as a lost segment
                                // would be, and counted.
                                self.stats.dropped(self.id);
                            }
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

/// Default of [`RuntimeConfig::rx_coalesce`], microseconds.
pub const RX_COALESCE_US: u64 = 100;

/// A turn that received this many packets or more does not sleep before the next: the shard is
/// busy and batches are already large.
const COALESCE_BELOW: usize = 16;

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

#[cfg(test)]
mod tests;
