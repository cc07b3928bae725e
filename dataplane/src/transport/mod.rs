//! Transports: UDP and TCP sockets, IPv4 and IPv6, owned by one shard each.
//!
//! - Every shard binds its own `SO_REUSEPORT` UDP socket and TCP listener per listen address, so the
//!   kernel spreads datagrams and connections over the shards and no socket is shared between threads.
//! - UDP receive has two backends behind [`UdpSocket`]: **epoll + `recvmmsg`** (batches of
//!   [`sys::BATCH`], the default) and **io_uring** multishot `recvmsg` with a provided-buffer ring
//!   (feature `io-uring`, only after [`probe_uring`] passed). Both are driven from the shard's mio
//!   loop (the ring's fd is registered like a socket), and both send with `sendmmsg`.
//! - TCP ([`tcp`]): framing by `wire::framing::next_frame`, a connection table keyed by peer address
//!   (replies and new requests to a peer reuse its open connection), idle and slow-sender timeouts,
//!   per-IP and total caps, non-blocking outgoing connects.
//!
//! Why epoll is the default (`--io=auto`): on the reference machine (DESIGN.md, "Measured…") a
//! `recvmmsg`/`sendmmsg` echo did 280–305k msgs/s per core and raw io_uring multishot 245–285k; both
//! spend ~99% in the kernel, so io_uring buys nothing there and `auto` picks epoll. `--io=uring`
//! selects io_uring when the probe passes.
//!
//! A packet's `local` address is the address it was sent to: the bound listen address, or, on a
//! wildcard listen (`0.0.0.0`/`::`, SER's default), the concrete address the kernel reports with
//! `IP_PKTINFO`/`IPV6_PKTINFO` (TCP: the accepted connection's own address). A send from such an
//! address on a wildcard socket leaves from it (the same control message). Sockets bound to one
//! address use no control messages at all.
//!
//! Invariant: nothing here panics on network input; errors of one peer close that peer's connection
//! (TCP) or drop that datagram (UDP), never the shard.

pub mod sys;
#[cfg(feature = "io-uring")]
pub mod sys_uring;
pub mod tcp;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

/// Transport protocol of a packet or a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    /// As written in a Via (`UDP`, `TCP`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }
}

/// One received message: a whole datagram, or one framed message of a TCP stream.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The bytes (a view of the pooled receive buffer; no copy).
    pub data: Bytes,
    /// Who sent it.
    pub src: SocketAddr,
    /// The local address it arrived on: the bound listen address, or on a wildcard listen the
    /// concrete address the sender used.
    pub local: SocketAddr,
    pub proto: Proto,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub data: Bytes,
    pub dest: SocketAddr,
    pub proto: Proto,
    /// Send from this local address (a listen address, or a concrete address of a wildcard
    /// listen, which the datagram then leaves from); `None`: the first of the destination's family.
    pub local: Option<SocketAddr>,
}

/// Sent as it is queued (the shard's single-socket turn needs no per-socket list): the source is
/// the concrete local address, used only on a wildcard socket (see [`UdpSocket::send_all`]).
impl sys::Datagram for Outgoing {
    fn parts(&self) -> (&[u8], SocketAddr, Option<IpAddr>) {
        let src = self.local.map(|l| l.ip()).filter(|ip| !ip.is_unspecified());
        (&self.data[..], self.dest, src)
    }
}

/// What the operator asked for (`--io=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// epoll unless io_uring is known to be faster here: epoll (see the module docs).
    #[default]
    Auto,
    Epoll,
    Uring,
}

impl IoMode {
    pub fn parse(s: &str) -> Option<IoMode> {
        match s {
            "auto" => Some(IoMode::Auto),
            "epoll" => Some(IoMode::Epoll),
            "uring" | "io_uring" | "io-uring" => Some(IoMode::Uring),
            _ => None,
        }
    }
}

/// The UDP receive backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    /// mio (epoll) readiness + `recvmmsg`/`sendmmsg`.
    Epoll,
    /// io_uring multishot `recvmsg` + provided buffer ring; `sendmmsg` for sending.
    Uring,
}

impl IoBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            IoBackend::Epoll => "epoll+recvmmsg",
            IoBackend::Uring => "io_uring-multishot",
        }
    }
}

/// Whether io_uring with multishot `recvmsg` and provided-buffer rings works here (kernel ≥ 6.0 and
/// not blocked by seccomp). `Err` says why not.
pub fn probe_uring() -> Result<(), String> {
    #[cfg(feature = "io-uring")]
    {
        sys_uring::probe()
    }
    #[cfg(not(feature = "io-uring"))]
    {
        Err("built without the io-uring feature".to_string())
    }
}

/// Picks the backend for `mode`: `(backend, note)`; the note is the one log line to print when the
/// choice differs from the request (io_uring asked for but unavailable).
pub fn select_backend(mode: IoMode) -> (IoBackend, Option<String>) {
    match mode {
        IoMode::Auto | IoMode::Epoll => (IoBackend::Epoll, None),
        IoMode::Uring => match probe_uring() {
            Ok(()) => (IoBackend::Uring, None),
            Err(why) => (
                IoBackend::Epoll,
                Some(format!(
                    "io_uring unavailable ({why}); using epoll+recvmmsg"
                )),
            ),
        },
    }
}

/// A non-blocking UDP socket bound with `SO_REUSEPORT` (one per shard and address). `rcvbuf`: the
/// `SO_RCVBUF` to ask for (SER's `maxbuffer`).
pub fn bind_udp(addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if let Some(n) = rcvbuf {
        // Best effort, as SER's probing was: the kernel caps it at net.core.rmem_max.
        let _ = s.set_recv_buffer_size(n);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A non-blocking TCP listener bound with `SO_REUSEPORT` (one per shard and address).
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// A shard's UDP socket with its receive backend.
pub struct UdpSocket {
    pub sock: mio::net::UdpSocket,
    pub local: SocketAddr,
    /// Bound to `0.0.0.0`/`::`: packets carry their destination address, sends their source.
    pub wildcard: bool,
    recv: UdpRecv,
    send: sys::SendBatch,
}

enum UdpRecv {
    Mmsg(sys::RecvBatch),
    #[cfg(feature = "io-uring")]
    Uring(Box<sys_uring::UringRecv>),
}

impl UdpSocket {
    /// Wraps a bound socket. `backend` Uring sets up the ring (falls back to recvmmsg with `Err`
    /// text when that fails). Must be called on the thread that will use it.
    pub fn new(
        std: std::net::UdpSocket,
        backend: IoBackend,
    ) -> io::Result<(UdpSocket, Option<String>)> {
        let local = std.local_addr()?;
        let wildcard = local.ip().is_unspecified();
        if wildcard {
            sys::enable_pktinfo(std.as_raw_fd(), local.is_ipv6())?;
        }
        let batch = || {
            if wildcard {
                sys::RecvBatch::with_pktinfo()
            } else {
                sys::RecvBatch::new()
            }
        };
        let sock = mio::net::UdpSocket::from_std(std);
        let mut note = None;
        let recv = match backend {
            IoBackend::Epoll => UdpRecv::Mmsg(batch()),
            IoBackend::Uring => {
                #[cfg(feature = "io-uring")]
                {
                    match sys_uring::UringRecv::new(sock.as_raw_fd(), wildcard) {
                        Ok(u) => UdpRecv::Uring(Box::new(u)),
                        Err(e) => {
                            note = Some(format!(
                                "io_uring setup failed on {local} ({e}); using recvmmsg"
                            ));
                            UdpRecv::Mmsg(batch())
                        }
                    }
                }
                #[cfg(not(feature = "io-uring"))]
                {
                    note = Some("built without io-uring; using recvmmsg".to_string());
                    UdpRecv::Mmsg(batch())
                }
            }
        };
        Ok((
            UdpSocket {
                sock,
                local,
                wildcard,
                recv,
                send: sys::SendBatch::new(),
            },
            note,
        ))
    }

    /// Datagrams the kernel dropped on this socket, receive buffer full (None: not known).
    pub fn rcv_drops(&self) -> Option<u64> {
        sys::rcv_drops(self.sock.as_raw_fd())
    }

    /// The backend actually in use.
    pub fn backend(&self) -> IoBackend {
        match self.recv {
            UdpRecv::Mmsg(_) => IoBackend::Epoll,
            #[cfg(feature = "io-uring")]
            UdpRecv::Uring(_) => IoBackend::Uring,
        }
    }

    /// The fd to register for readability: the socket, or the ring.
    pub fn poll_fd(&self) -> RawFd {
        match &self.recv {
            UdpRecv::Mmsg(_) => self.sock.as_raw_fd(),
            #[cfg(feature = "io-uring")]
            UdpRecv::Uring(u) => u.ring_fd(),
        }
    }

    /// Receives one batch, calling `f(data, source, destination)` per datagram (the destination
    /// address only on a wildcard socket). `Ok(0)` or `WouldBlock`: nothing is waiting.
    pub fn recv_batch(
        &mut self,
        f: impl FnMut(Bytes, SocketAddr, Option<IpAddr>),
    ) -> io::Result<usize> {
        match &mut self.recv {
            UdpRecv::Mmsg(b) => b.recv(self.sock.as_raw_fd(), f),
            #[cfg(feature = "io-uring")]
            UdpRecv::Uring(u) => u.recv(f),
        }
    }

    /// Sends `msgs` in `sendmmsg` batches. Returns how many were sent; the rest were dropped (a full
    /// send buffer or an error on one datagram drops that datagram, as UDP may). On a wildcard
    /// socket each datagram may name its source address (see [`sys::Datagram`]).
    pub fn send_all<D: sys::Datagram>(&mut self, msgs: &[D]) -> usize {
        let fd = self.sock.as_raw_fd();
        let mut i = 0;
        let mut sent = 0;
        let mut guard = 0;
        while i < msgs.len() && guard < msgs.len() * 2 + 4 {
            guard += 1;
            match self.send.send(fd, &msgs[i..], self.wildcard) {
                Ok(0) => i += 1,
                Ok(n) => {
                    i += n;
                    sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let (_, dest, src) = msgs[i].parts();
                    crate::ser_log!(
                        crate::shard::log::L_DBG,
                        "udp send to {dest} from {src:?} failed: {e}"
                    );
                    i += 1;
                }
            }
        }
        sent
    }
}
