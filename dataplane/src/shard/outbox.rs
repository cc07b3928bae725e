//! The sends a handler queues during one turn ([`Outbox`]), with the shard's output buffers and
//! the source address chosen toward each destination on wildcard listens.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::log::L_DBG;
use crate::ser_log;
use crate::transport::{Outgoing, Packet, Proto};
use crate::wire::{BufPool, Message};

/// Sends queued by a handler during one batch, and the shard's output buffer pool.
pub struct Outbox {
    pub(super) queue: Vec<Outgoing>,
    pub(super) pool: BufPool,
    pub(super) shard: usize,
    /// The time of the current turn: the shard's one clock read, what handlers use as `now`.
    pub(super) now: Instant,
    /// This shard's wildcard listens (`0.0.0.0`/`::`), empty with explicit `listen=` addresses.
    pub(super) wildcards: Vec<(SocketAddr, Proto)>,
    /// The source address the routing table picks toward a destination, learned once per
    /// destination (a `connect()` probe) and kept [`ROUTE_TTL`]; only used with wildcard listens.
    pub(super) routes: std::collections::HashMap<std::net::IpAddr, (std::net::IpAddr, Instant)>,
}

/// How long a learned route source is used before it is probed again (interfaces change).
const ROUTE_TTL: Duration = Duration::from_secs(60);
/// Most destinations whose route source is kept.
const ROUTES_MAX: usize = 4096;

impl Outbox {
    pub(super) fn new(shard: usize) -> Outbox {
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
