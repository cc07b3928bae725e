//! TCP for one shard: its listeners, its connections, and the table that maps a peer address to the
//! open connection so replies and new requests to that peer reuse it.
//!
//! Invariants:
//! - A connection lives in exactly one shard (the one that accepted or opened it); `by_peer` holds
//!   every open connection of this shard and nothing else. The [`ConnDirectory`], shared by all
//!   shards, says which shard owns the connection to a peer, so a send from another shard is handed
//!   to the owner (a NATed TCP client is reachable only over the connection it opened). It is
//!   touched when a connection opens or closes and when a TCP send misses the local table, never
//!   for UDP.
//! - Nothing blocks: reads and writes stop at `WouldBlock`, connects are non-blocking, writes that do
//!   not fit are queued (up to [`TcpLimits::max_queued`], then the connection is closed).
//! - A peer that sends an incomplete message and stalls is closed after `read_timeout`; a connection
//!   without traffic after `idle`; a framing error (bad Content-Length, oversized header) closes the
//!   connection (RFC 4475 ncl/mcl01). A message over the size limit is first answered
//!   `513 Message Too Large` (RFC 3261 §21.5.14) when its Via and CSeq arrived: the reply is
//!   written, our side shut down, and what the peer still sends is discarded until it closes (or
//!   `read_timeout`), so the close cannot reset the connection before the peer has read the 513.
//!   None of it stalls the shard: timeouts are checked by `sweep`.
//! - Caps: `max_conns` connections per shard, `max_per_ip` per peer IP per shard; extra accepted
//!   connections are closed at once.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use mio::{Interest, Registry, Token};

use super::{Packet, Proto};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_INFO};
use crate::wire::framing::{next_frame, Frame};

/// TCP limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Close a connection without traffic for this long (SER 2.x `tcp_connection_lifetime`: 120 s).
    pub idle: Duration,
    /// Close a connection that holds an incomplete message for this long.
    pub read_timeout: Duration,
    /// Give up an outgoing connect after this long.
    pub connect_timeout: Duration,
    /// Connections per shard.
    pub max_conns: usize,
    /// Connections per peer IP per shard.
    pub max_per_ip: usize,
    /// Largest message (framing limit).
    pub max_msg: usize,
    /// Bytes queued for writing before the connection is given up.
    pub max_queued: usize,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            idle: Duration::from_secs(120),
            read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_conns: 2048,
            max_per_ip: 64,
            max_msg: 65_535,
            max_queued: 4 << 20,
        }
    }
}

/// Which shard owns the open connection to each peer (shared by all shards of a runtime).
#[derive(Debug, Clone, Default)]
pub struct ConnDirectory(Arc<Mutex<HashMap<SocketAddr, usize>>>);

impl ConnDirectory {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<SocketAddr, usize>) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
    /// The shard owning the connection to `peer`.
    pub fn owner(&self, peer: &SocketAddr) -> Option<usize> {
        self.with(|m| m.get(peer).copied())
    }
    fn set(&self, peer: SocketAddr, shard: usize) {
        self.with(|m| m.insert(peer, shard));
    }
    fn clear(&self, peer: &SocketAddr, shard: usize) {
        self.with(|m| {
            if m.get(peer) == Some(&shard) {
                m.remove(peer);
            }
        });
    }
}

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Written or queued on a connection of this shard.
    Queued,
    /// Shard `k` owns the connection to the destination: hand the message to it.
    Elsewhere(usize),
    /// Could not be sent (cap, connect error…), already logged.
    Failed,
}

struct Conn {
    stream: mio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    rbuf: BytesMut,
    wq: VecDeque<Bytes>,
    queued: usize,
    last: Instant,
    partial_since: Option<Instant>,
    connecting: Option<Instant>,
    /// Answered 513 and shut down for writing: reads are discarded until the peer closes.
    draining: bool,
}

/// The `513 Message Too Large` for an oversized message whose start is `head`: `None` when the
/// headers a reply copies (a complete Via and CSeq) are not among what arrived.
fn too_large_reply(head: &[u8]) -> Option<Bytes> {
    let req = crate::proxy::precheck::salvage(head)?;
    let mut out = BytesMut::with_capacity(512);
    crate::wire::ReplyBuilder::new(&mut out, &req, 513, b"Message Too Large", b"ser-513")
        .finish(None, b"");
    Some(out.freeze())
}

/// A shard's TCP side. Tokens: listener `j` is `listen_base + j`, connection slot `i` is
/// `conn_base + i`.
pub struct Tcp {
    listeners: Vec<(mio::net::TcpListener, SocketAddr)>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_peer: HashMap<SocketAddr, usize>,
    per_ip: HashMap<IpAddr, usize>,
    open: usize,
    limits: TcpLimits,
    listen_base: usize,
    conn_base: usize,
    shard: usize,
    directory: ConnDirectory,
}

/// What a token means to [`Tcp`].
pub enum TcpToken {
    Listener(usize),
    Conn(usize),
}

impl Tcp {
    pub fn new(
        limits: TcpLimits,
        listen_base: usize,
        conn_base: usize,
        shard: usize,
        directory: ConnDirectory,
    ) -> Tcp {
        Tcp {
            shard,
            directory,
            listeners: Vec::new(),
            conns: Vec::new(),
            free: Vec::new(),
            by_peer: HashMap::new(),
            per_ip: HashMap::new(),
            open: 0,
            limits,
            listen_base,
            conn_base,
        }
    }

    /// Adds and registers a listener.
    pub fn add_listener(
        &mut self,
        registry: &Registry,
        l: std::net::TcpListener,
    ) -> io::Result<SocketAddr> {
        let local = l.local_addr()?;
        let mut l = mio::net::TcpListener::from_std(l);
        let tok = Token(self.listen_base + self.listeners.len());
        registry.register(&mut l, tok, Interest::READABLE)?;
        self.listeners.push((l, local));
        Ok(local)
    }

    /// Local listen addresses.
    pub fn local_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.listeners.iter().map(|(_, a)| *a)
    }

    /// Classifies a token (None: not TCP's).
    pub fn token(&self, t: Token) -> Option<TcpToken> {
        let t = t.0;
        if t >= self.conn_base {
            Some(TcpToken::Conn(t - self.conn_base))
        } else if t >= self.listen_base && t < self.listen_base + self.listeners.len() {
            Some(TcpToken::Listener(t - self.listen_base))
        } else {
            None
        }
    }

    /// Open connections.
    pub fn open_count(&self) -> usize {
        self.open
    }

    /// Accepts every pending connection of listener `j` (closing those over the caps).
    pub fn accept(&mut self, registry: &Registry, j: usize, now: Instant) {
        for _ in 0..4096 {
            let Some((l, local)) = self.listeners.get(j) else {
                return;
            };
            let local = *local;
            match l.accept() {
                Ok((stream, peer)) => {
                    let per_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
                    if self.open >= self.limits.max_conns || per_ip >= self.limits.max_per_ip {
                        ser_log!(
                            L_INFO,
                            "tcp: connection from {peer} refused (connection cap)"
                        );
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    // A wildcard listener: the connection's own address is the one the peer used
                    // (one getsockname per connection, none with an explicit listen address).
                    let local = if local.ip().is_unspecified() {
                        stream.local_addr().unwrap_or(local)
                    } else {
                        local
                    };
                    let _ = self.insert(registry, stream, peer, local, now, None);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: leave the rest in the backlog for the next round.
                    ser_log!(L_INFO, "tcp: accept on {local} failed: {e}");
                    return;
                }
            }
        }
    }

    fn insert(
        &mut self,
        registry: &Registry,
        mut stream: mio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        now: Instant,
        connecting: Option<Instant>,
    ) -> io::Result<usize> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        if let Err(e) = registry.register(
            &mut stream,
            Token(self.conn_base + slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(slot);
            return Err(e);
        }
        if let Some(old) = self.by_peer.insert(peer, slot) {
            // Two connections with the same peer address (simultaneous open): keep the newer one in
            // the table; the older one still works for what it receives.
            let _ = old;
        }
        self.directory.set(peer, self.shard);
        *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
        self.open += 1;
        self.conns[slot] = Some(Conn {
            stream,
            peer,
            local,
            rbuf: BytesMut::new(),
            wq: VecDeque::new(),
            queued: 0,
            last: now,
            partial_since: None,
            connecting,
            draining: false,
        });
        Ok(slot)
    }

    fn close(&mut self, registry: &Registry, slot: usize, why: &str) {
        let Some(mut c) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        ser_log!(L_DBG, "tcp: closing connection with {} ({why})", c.peer);
        let _ = registry.deregister(&mut c.stream);
        if self.by_peer.get(&c.peer) == Some(&slot) {
            self.by_peer.remove(&c.peer);
            self.directory.clear(&c.peer, self.shard);
        }
        if let Some(n) = self.per_ip.get_mut(&c.peer.ip()) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&c.peer.ip());
            }
        }
        self.open = self.open.saturating_sub(1);
        self.free.push(slot);
    }

    /// Handles readiness of connection `slot`: finishes a connect, flushes queued writes, reads and
    /// frames what arrived (complete messages are appended to `out`). `budget` bounds the reads;
    /// returns true when the connection may still have unread data (call again later).
    pub fn ready(
        &mut self,
        registry: &Registry,
        slot: usize,
        readable: bool,
        writable: bool,
        now: Instant,
        out: &mut Vec<Packet>,
    ) -> bool {
        let max_msg = self.limits.max_msg;
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return false;
        };
        if c.connecting.is_some() && (writable || readable) {
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    let why = format!("connect failed: {e}");
                    self.close(registry, slot, &why);
                    return false;
                }
            }
            match c.stream.peer_addr() {
                Ok(_) => c.connecting = None,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
                Err(e) => {
                    let why = format!("connect failed: {e}");
                    self.close(registry, slot, &why);
                    return false;
                }
            }
        }
        if writable || !c.wq.is_empty() {
            if let Err(e) = flush(c) {
                let why = format!("write failed: {e}");
                self.close(registry, slot, &why);
                return false;
            }
            if c.draining && c.wq.is_empty() {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
            }
        }
        if !readable {
            return false;
        }
        let mut more = false;
        let mut eof = false;
        let mut err: Option<String> = None;
        for round in 0..16 {
            let len = c.rbuf.len();
            c.rbuf.resize(len + 16 * 1024, 0);
            match c.stream.read(&mut c.rbuf[len..]) {
                Ok(0) => {
                    c.rbuf.truncate(len);
                    eof = true;
                    break;
                }
                Ok(n) => {
                    c.rbuf.truncate(len + n);
                    c.last = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.rbuf.truncate(len);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => c.rbuf.truncate(len),
                Err(e) => {
                    c.rbuf.truncate(len);
                    err = Some(format!("read failed: {e}"));
                    break;
                }
            }
            if c.draining {
                c.rbuf.clear();
                more |= round == 15;
                continue;
            }
            // Frame what we have.
            loop {
                match next_frame(&c.rbuf, max_msg) {
                    Ok(Frame::Partial) => break,
                    Ok(Frame::KeepAlive(n)) => c.rbuf.advance(n),
                    Ok(Frame::Complete { skip, end }) => {
                        let mut m = c.rbuf.split_to(end);
                        m.advance(skip);
                        out.push(Packet {
                            data: m.freeze(),
                            src: c.peer,
                            local: c.local,
                            proto: Proto::Tcp,
                        });
                    }
                    Err(e) if e.kind == crate::wire::ErrorKind::TooLarge => {
                        // Answer 513 first (from the headers that arrived), then drain and close.
                        let head = &c.rbuf[..c.rbuf.len().min(max_msg)];
                        match too_large_reply(head) {
                            Some(reply) => {
                                ser_log!(L_DBG, "tcp: message from {} too large: 513", c.peer);
                                c.queued += reply.len();
                                c.wq.push_back(reply);
                                c.rbuf.clear();
                                c.draining = true;
                                c.partial_since = Some(now);
                                if flush(c).is_ok() && c.wq.is_empty() {
                                    let _ = c.stream.shutdown(std::net::Shutdown::Write);
                                }
                            }
                            None => err = Some(format!("framing error: {e}")),
                        }
                        break;
                    }
                    Err(e) => {
                        err = Some(format!("framing error: {e}"));
                        break;
                    }
                }
            }
            if err.is_some() {
                break;
            }
            if round == 15 {
                more = true;
            }
        }
        let has_partial = c.rbuf.iter().any(|&b| b != b'\r' && b != b'\n');
        if c.draining {
            // partial_since stays: sweep closes a peer that never closes after read_timeout.
        } else if has_partial {
            c.partial_since.get_or_insert(now);
        } else {
            c.partial_since = None;
            if c.rbuf.is_empty() && c.rbuf.capacity() > 64 * 1024 {
                c.rbuf = BytesMut::new();
            }
        }
        if let Some(why) = err {
            self.close(registry, slot, &why);
            return false;
        }
        if eof {
            self.close(registry, slot, "closed by peer");
            return false;
        }
        more
    }

    /// Sends `data` to `dest` over this shard's open connection to it; else, when `may_forward`
    /// and another shard owns one, says so; else over a new non-blocking connection.
    pub fn send(
        &mut self,
        registry: &Registry,
        data: Bytes,
        dest: SocketAddr,
        now: Instant,
        may_forward: bool,
    ) -> SendOutcome {
        let slot = match self.by_peer.get(&dest) {
            Some(&s) => s,
            None => {
                if may_forward {
                    if let Some(k) = self.directory.owner(&dest).filter(|&k| k != self.shard) {
                        return SendOutcome::Elsewhere(k);
                    }
                }
                if self.open >= self.limits.max_conns {
                    ser_log!(L_INFO, "tcp: no connection to {dest}: connection cap");
                    return SendOutcome::Failed;
                }
                let stream = match mio::net::TcpStream::connect(dest) {
                    Ok(s) => s,
                    Err(e) => {
                        ser_log!(L_INFO, "tcp: connect to {dest} failed: {e}");
                        return SendOutcome::Failed;
                    }
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(dest);
                match self.insert(registry, stream, dest, local, now, Some(now)) {
                    Ok(s) => s,
                    Err(e) => {
                        ser_log!(L_INFO, "tcp: cannot register connection to {dest}: {e}");
                        return SendOutcome::Failed;
                    }
                }
            }
        };
        let max_q = self.limits.max_queued;
        let Some(c) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return SendOutcome::Failed;
        };
        c.queued += data.len();
        c.wq.push_back(data);
        c.last = now;
        if c.queued > max_q {
            self.close(registry, slot, "write queue full");
            return SendOutcome::Failed;
        }
        if c.connecting.is_none() {
            if let Err(e) = flush(c) {
                let why = format!("write failed: {e}");
                self.close(registry, slot, &why);
                return SendOutcome::Failed;
            }
        }
        SendOutcome::Queued
    }

    /// Closes idle connections, stalled incomplete messages and connects that take too long; and
    /// retries accepting on every listener (an accept that failed for lack of file descriptors left
    /// connections in the backlog, and an edge-triggered listener would not report them again).
    pub fn sweep(&mut self, registry: &Registry, now: Instant) {
        for j in 0..self.listeners.len() {
            self.accept(registry, j, now);
        }
        let l = self.limits;
        let mut doomed = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let why = if c
                .connecting
                .is_some_and(|t| now.duration_since(t) > l.connect_timeout)
            {
                "connect timeout"
            } else if c
                .partial_since
                .is_some_and(|t| now.duration_since(t) > l.read_timeout)
            {
                "incomplete message timeout"
            } else if c.wq.is_empty() && now.duration_since(c.last) > l.idle {
                "idle timeout"
            } else {
                continue;
            };
            doomed.push((i, why));
        }
        for (i, why) in doomed {
            self.close(registry, i, why);
        }
    }

    /// Closes everything (shutdown), after one last attempt to flush queued writes.
    pub fn shutdown(&mut self, registry: &Registry) {
        for i in 0..self.conns.len() {
            if let Some(c) = self.conns[i].as_mut() {
                let _ = flush(c);
            }
            self.close(registry, i, "shutdown");
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while let Some(front) = c.wq.front_mut() {
        match c.stream.write(front) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.queued = c.queued.saturating_sub(n);
                if n >= front.len() {
                    c.wq.pop_front();
                } else {
                    front.advance(n);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
