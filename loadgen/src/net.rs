//! Sockets: a non-blocking UDP socket or TCP stream that sends whole messages and yields whole
//! received messages (datagrams as they come; stream bytes framed by `dataplane::wire::framing`).
//!
//! UDP client sockets are `connect`ed to the target, so an ICMP port unreachable surfaces as
//! `ECONNREFUSED` on the next send or receive (the caller counts it as a transport error).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::Bytes;
use dataplane::wire::framing::{next_frame, Frame};
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::Transport;

/// Largest SIP message we accept.
pub const MAX_MSG: usize = 65_535;

const SOCK_BUF: usize = 4 << 20;

fn udp_socket(bind: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: the kernel caps these at net.core.{r,w}mem_max.
    let _ = s.set_recv_buffer_size(SOCK_BUF);
    let _ = s.set_send_buffer_size(SOCK_BUF);
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&bind.into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A UDP socket for the UAS; `reuse_port` lets several threads share the address.
pub fn udp_server(bind: SocketAddr, reuse_port: bool) -> io::Result<UdpSocket> {
    udp_socket(bind, reuse_port)
}

/// A TCP listener for the UAS.
pub fn tcp_listener(bind: SocketAddr, reuse_port: bool) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    s.bind(&bind.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Bytes buffered on a stream: what was read but not yet framed, what is waiting to be written.
#[derive(Default)]
pub struct StreamBuf {
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

impl StreamBuf {
    /// Appends `data` to the write queue and writes what the socket takes now.
    pub fn send(&mut self, s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
        if self.wbuf.len() + data.len() > 64 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "TCP send queue full",
            ));
        }
        self.wbuf.extend_from_slice(data);
        self.flush(s)
    }

    pub fn flush(&mut self, s: &mut TcpStream) -> io::Result<()> {
        let mut off = 0;
        while off < self.wbuf.len() {
            match s.write(&self.wbuf[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.drain(..off);
        Ok(())
    }

    pub fn wants_write(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Reads what is available and pushes every complete message. `Err` on EOF, a read error or a
    /// framing error (the connection is then unusable).
    pub fn recv(
        &mut self,
        s: &mut TcpStream,
        scratch: &mut [u8],
        out: &mut Vec<Bytes>,
    ) -> io::Result<()> {
        loop {
            match s.read(scratch) {
                Ok(0) => {
                    self.frame(out)?;
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "connection closed by peer",
                    ));
                }
                Ok(n) => self.rbuf.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.rbuf.len() > 4 * MAX_MSG {
                break;
            }
        }
        self.frame(out)
    }

    fn frame(&mut self, out: &mut Vec<Bytes>) -> io::Result<()> {
        let mut off = 0;
        loop {
            match next_frame(&self.rbuf[off..], MAX_MSG) {
                Ok(Frame::Partial) => break,
                Ok(Frame::KeepAlive(n)) => off += n,
                Ok(Frame::Complete { skip, end }) => {
                    out.push(Bytes::copy_from_slice(&self.rbuf[off + skip..off + end]));
                    off += end;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("TCP framing error: {e:?}"),
                    ))
                }
            }
        }
        self.rbuf.drain(..off);
        Ok(())
    }
}

/// A client connection to the target.
pub enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream, StreamBuf),
}

impl Conn {
    /// Binds to `bind` and connects to `target`.
    pub fn open(transport: Transport, bind: SocketAddr, target: SocketAddr) -> io::Result<Conn> {
        match transport {
            Transport::Udp => {
                let s = udp_socket(bind, false)?;
                s.connect(target)?;
                Ok(Conn::Udp(s))
            }
            Transport::Tcp => {
                let s = Socket::new(Domain::for_address(bind), Type::STREAM, Some(Protocol::TCP))?;
                if bind.port() != 0 || !bind.ip().is_unspecified() {
                    s.bind(&bind.into())?;
                }
                s.connect_timeout(&target.into(), Duration::from_secs(3))?;
                s.set_nodelay(true)?;
                s.set_nonblocking(true)?;
                Ok(Conn::Tcp(s.into(), StreamBuf::default()))
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Conn::Udp(s) => s.local_addr(),
            Conn::Tcp(s, _) => s.local_addr(),
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Conn::Udp(s) => s.as_raw_fd(),
            Conn::Tcp(s, _) => s.as_raw_fd(),
        }
    }

    pub fn wants_write(&self) -> bool {
        match self {
            Conn::Udp(_) => false,
            Conn::Tcp(_, b) => b.wants_write(),
        }
    }

    /// Sends one message. UDP `WouldBlock` means the datagram was dropped locally.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => loop {
                match s.send(data) {
                    Ok(_) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Conn::Tcp(s, b) => b.send(s, data),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Udp(_) => Ok(()),
            Conn::Tcp(s, b) => b.flush(s),
        }
    }

    /// Receives up to `max` messages without blocking.
    pub fn recv(&mut self, scratch: &mut [u8], out: &mut Vec<Bytes>, max: usize) -> io::Result<()> {
        match self {
            Conn::Udp(s) => {
                for _ in 0..max {
                    match s.recv(scratch) {
                        Ok(n) => out.push(Bytes::copy_from_slice(&scratch[..n])),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Conn::Tcp(s, b) => b.recv(s, scratch, out),
        }
    }
}

/// `ip:port` as it appears in a Via sent-by or a URI host (IPv6 in brackets).
pub fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}
