//! The raw socket calls std lacks: batched `recvmmsg(2)` / `sendmmsg(2)` and `sockaddr` conversion.
//! Every `unsafe` block of the epoll path lives here, each with its `SAFETY:` argument.
//!
//! Receive buffers: each of the [`BATCH`] slots is a `BytesMut` with at least [`SLOT`] bytes of spare
//! capacity. A datagram is received into the spare part, then `split()` off and frozen: the packet
//! shares the slot's allocation (no copy), and the slot goes on with what is left; when less than
//! [`SLOT`] remains it reserves a fresh [`CHUNK`] (the old allocation is freed when the last packet
//! sharing it is dropped).
//!
//! Wildcard sockets (`0.0.0.0`, `::`) also carry `IP_PKTINFO` / `IPV6_PKTINFO` control messages:
//! received, they say which local address a datagram was sent to; sent, they make the reply leave
//! from that address. Sockets bound to one address use neither (no control buffers at all).
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};
use socket2::SockAddr;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 32;
/// Room guaranteed for one datagram (the largest UDP payload is 65,527 bytes over IPv6).
pub const SLOT: usize = 64 * 1024;
/// Allocation size of a receive slot (serves many small datagrams before it is replaced).
pub const CHUNK: usize = 128 * 1024;

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
    unsafe { MaybeUninit::<libc::sockaddr_storage>::zeroed().assume_init() }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain old data (null pointers and zero lengths are valid values).
    unsafe { MaybeUninit::<libc::mmsghdr>::zeroed().assume_init() }
}

/// A `sockaddr_storage` filled by the kernel (`len` bytes valid) as a std address.
pub fn to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len.min(size_of::<libc::sockaddr_storage>() as libc::socklen_t);
    // SAFETY: `storage` is a valid sockaddr_storage and `len` does not exceed its size.
    let sa = unsafe { SockAddr::new(*storage, len) };
    sa.as_socket()
}

/// A std address as a `sockaddr_storage` and its length.
pub fn from_std(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    let sa = SockAddr::from(addr);
    let mut storage = zeroed_storage();
    let len = (sa.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: both pointers are valid for `len` bytes (len <= size of either), and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    (storage, len as libc::socklen_t)
}

/// Room for one control message: a `cmsghdr` and an `in6_pktinfo` (the larger of the two).
const CTRL: usize = 64;
type CtrlBuf = [u64; CTRL / 8];

const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Asks the kernel for the destination address of each datagram (`IP_PKTINFO` /
/// `IPV6_RECVPKTINFO`); for wildcard sockets only.
pub fn enable_pktinfo(fd: RawFd, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let (level, opt) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    // SAFETY: `on` is a live c_int and its size is passed; the kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Datagrams the kernel dropped on this socket since it was opened (receive buffer full), from
/// `SO_MEMINFO`; None where the kernel does not say. One `getsockopt`, for the shard's tick.
pub fn rcv_drops(fd: RawFd) -> Option<u64> {
    /// `SO_MEMINFO` (include/uapi/asm-generic/socket.h); `SK_MEMINFO_VARS` is 9 since Linux 4.x.
    const SO_MEMINFO: libc::c_int = 55;
    let mut info = [0u32; 16];
    let mut len = size_of::<[u32; 16]>() as libc::socklen_t;
    // SAFETY: `info` is a live buffer of `len` bytes; the kernel writes at most `len` and sets it.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if r < 0 || (len as usize) < (drops + 1) * size_of::<u32>() {
        return None;
    }
    info.get(drops).map(|&d| u64::from(d))
}

/// The local address a datagram was sent to, from the control messages the kernel returned with
/// it (`ctrl`: the `msg_controllen` bytes of the control buffer).
pub fn pktinfo_dst(ctrl: &[u8]) -> Option<IpAddr> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut off = 0usize;
    while off + hdr <= ctrl.len() {
        // SAFETY: `off + hdr <= ctrl.len()`, so the read stays inside `ctrl`; cmsghdr is plain old
        // data and the read is unaligned-safe.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(ctrl.as_ptr().add(off).cast()) };
        let len = c.cmsg_len as usize;
        if len < hdr || off + len > ctrl.len() {
            return None;
        }
        let data = &ctrl[off + cmsg_align(hdr)..off + len];
        if c.cmsg_level == libc::IPPROTO_IP
            && c.cmsg_type == libc::IP_PKTINFO
            && data.len() >= size_of::<libc::in_pktinfo>()
        {
            // SAFETY: `data` holds at least one in_pktinfo (checked above); unaligned read of POD.
            let pi: libc::in_pktinfo = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            let addr = Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr));
            // A broadcast or multicast datagram: the address of the interface that took it.
            return Some(IpAddr::V4(if addr.is_multicast() || addr.is_broadcast() {
                Ipv4Addr::from(u32::from_be(pi.ipi_spec_dst.s_addr))
            } else {
                addr
            }));
        }
        if c.cmsg_level == libc::IPPROTO_IPV6
            && c.cmsg_type == libc::IPV6_PKTINFO
            && data.len() >= size_of::<libc::in6_pktinfo>()
        {
            // SAFETY: as above, for in6_pktinfo.
            let pi: libc::in6_pktinfo = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            return Some(IpAddr::V6(Ipv6Addr::from(pi.ipi6_addr.s6_addr)));
        }
        off += cmsg_align(len);
    }
    None
}

/// Writes a control message that makes a datagram leave from `src` into `buf`; returns its length.
fn put_pktinfo(buf: &mut CtrlBuf, src: IpAddr) -> usize {
    let hdr = cmsg_align(size_of::<libc::cmsghdr>());
    let (level, kind, len) = match src {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: cmsghdr is plain old data; all-zero is valid.
    let mut c: libc::cmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    c.cmsg_len = (hdr + len) as _;
    c.cmsg_level = level;
    c.cmsg_type = kind;
    let base = buf.as_mut_ptr().cast::<u8>();
    // SAFETY: `buf` is CTRL (64) bytes; the header (16) plus the larger pktinfo (20) fit, and the
    // writes are unaligned-safe.
    unsafe {
        std::ptr::write_unaligned(base.cast::<libc::cmsghdr>(), c);
        match src {
            IpAddr::V4(a) => std::ptr::write_unaligned(
                base.add(hdr).cast::<libc::in_pktinfo>(),
                libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                },
            ),
            IpAddr::V6(a) => std::ptr::write_unaligned(
                base.add(hdr).cast::<libc::in6_pktinfo>(),
                libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: 0,
                },
            ),
        }
    }
    cmsg_align(hdr + len)
}

/// State of one `recvmmsg` batch: the slots and the kernel-facing header arrays. Not `Send` (raw
/// pointers): each shard builds its own inside its thread.
pub struct RecvBatch {
    slots: Vec<BytesMut>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control buffers, only for a wildcard socket (see [`RecvBatch::with_pktinfo`]).
    ctrl: Vec<CtrlBuf>,
    /// Slots `0..stale` were filled by the last call (or never set up) and need their headers
    /// set again; the rest still describe their untouched buffers. At low rates a call fills one
    /// slot, and setting up all BATCH headers each time cost ~2,500 instructions per datagram.
    stale: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    pub fn new() -> RecvBatch {
        RecvBatch {
            slots: (0..BATCH).map(|_| BytesMut::with_capacity(CHUNK)).collect(),
            names: vec![zeroed_storage(); BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![zeroed_mmsghdr(); BATCH],
            ctrl: Vec::new(),
            stale: BATCH,
        }
    }

    /// A batch that also takes each datagram's destination address (the socket must have
    /// [`enable_pktinfo`]).
    pub fn with_pktinfo() -> RecvBatch {
        RecvBatch {
            ctrl: vec![[0u64; CTRL / 8]; BATCH],
            ..RecvBatch::new()
        }
    }

    /// One `recvmmsg` call on the non-blocking socket `fd`: calls `f(data, source, destination)`
    /// for each datagram received (the destination only with [`RecvBatch::with_pktinfo`]) and
    /// returns how many the kernel returned (`WouldBlock` when none was waiting). Truncated
    /// datagrams and unknown address families are dropped (but counted).
    pub fn recv(
        &mut self,
        fd: RawFd,
        mut f: impl FnMut(Bytes, SocketAddr, Option<IpAddr>),
    ) -> io::Result<usize> {
        for i in 0..self.stale.min(BATCH) {
            let slot = &mut self.slots[i];
            if slot.capacity() - slot.len() < SLOT {
                *slot = BytesMut::with_capacity(CHUNK);
            }
            let spare = slot.spare_capacity_mut();
            self.iovs[i] = libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            match self.ctrl.get_mut(i) {
                Some(c) => {
                    h.msg_hdr.msg_control = c.as_mut_ptr().cast();
                    h.msg_hdr.msg_controllen = CTRL as _;
                }
                None => {
                    h.msg_hdr.msg_control = std::ptr::null_mut();
                    h.msg_hdr.msg_controllen = 0;
                }
            }
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at a live sockaddr_storage of the stated size, at one iovec
        // describing the spare (writable, unaliased) capacity of its slot and (wildcard sockets) at a
        // CTRL-byte control buffer; all live in `self`, which is borrowed mutably for the whole
        // call. MSG_DONTWAIT keeps the call from blocking.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            // Nothing was written into the headers.
            self.stale = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        self.stale = n.min(BATCH);
        for i in 0..n.min(BATCH) {
            let h = &self.hdrs[i];
            let len = (h.msg_len as usize).min(self.iovs[i].iov_len);
            let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let namelen = h.msg_hdr.msg_namelen;
            let slot = &mut self.slots[i];
            // SAFETY: the kernel initialised the first `len` bytes of the spare capacity (msg_len),
            // and `len` is capped to that spare capacity.
            unsafe { slot.set_len(slot.len() + len) };
            let data = slot.split().freeze();
            if truncated {
                continue;
            }
            let dst = self.ctrl.get(i).and_then(|c| {
                // size_t on glibc, socklen_t on musl.
                #[allow(clippy::unnecessary_cast)]
                let n = (h.msg_hdr.msg_controllen as usize).min(CTRL);
                // SAFETY: the buffer is CTRL bytes of plain integers; `n` is capped to it.
                let bytes = unsafe { std::slice::from_raw_parts(c.as_ptr().cast::<u8>(), n) };
                pktinfo_dst(bytes)
            });
            if let Some(src) = to_std(&self.names[i], namelen) {
                f(data, src, dst);
            }
        }
        Ok(n)
    }
}

/// State of one `sendmmsg` batch. Not `Send`; one per shard.
pub struct SendBatch {
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Control buffers for [`SendBatch::send_from`] (wildcard sockets), made on first use.
    ctrl: Vec<CtrlBuf>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            names: vec![zeroed_storage(); BATCH],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                BATCH
            ],
            hdrs: vec![zeroed_mmsghdr(); BATCH],
            ctrl: Vec::new(),
        }
    }

    /// One `sendmmsg` call for up to [`BATCH`] of `msgs` on the non-blocking socket `fd`. Returns how
    /// many the kernel took (the first ones), or the error of the first datagram. A datagram with a
    /// source address leaves from it (`IP_PKTINFO` / `IPV6_PKTINFO`: on a wildcard socket, a reply
    /// leaves from the address the request came to); one without needs no control message.
    /// Sources are ignored unless `with_src` (a socket bound to one address sends from it).
    pub fn send<D: Datagram>(
        &mut self,
        fd: RawFd,
        msgs: &[D],
        with_src: bool,
    ) -> io::Result<usize> {
        let n = msgs.len().min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        for (i, m) in msgs.iter().take(n).enumerate() {
            let (data, dest, src) = m.parts();
            let src = src.filter(|_| with_src);
            let (storage, len) = from_std(dest);
            self.names[i] = storage;
            self.iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let clen = match src {
                Some(ip) if ip.is_ipv4() == dest.is_ipv4() => {
                    if self.ctrl.is_empty() {
                        self.ctrl = vec![[0u64; CTRL / 8]; BATCH];
                    }
                    put_pktinfo(&mut self.ctrl[i], ip)
                }
                _ => 0,
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = len;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            if clen > 0 {
                h.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = clen as _;
            } else {
                h.msg_hdr.msg_control = std::ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `n` headers point at live addresses in `self.names` and at iovecs over the
        // caller's byte slices, which outlive this call; the control pointers (when set) point at
        // `clen` initialised bytes of this batch's control buffers, which live in `self` for the
        // whole call. The kernel only reads them (sendmmsg does not write through iov_base).
        // MSG_DONTWAIT keeps it from blocking.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// What a send batch takes: the bytes, the destination and, on a wildcard socket, the source.
pub trait Datagram {
    fn parts(&self) -> (&[u8], SocketAddr, Option<IpAddr>);
}

impl Datagram for (&[u8], SocketAddr) {
    fn parts(&self) -> (&[u8], SocketAddr, Option<IpAddr>) {
        (self.0, self.1, None)
    }
}

impl Datagram for (&[u8], SocketAddr, Option<IpAddr>) {
    fn parts(&self) -> (&[u8], SocketAddr, Option<IpAddr>) {
        *self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn batch_round_trip_over_loopback() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let dest = b.local_addr().unwrap();
        let mut sb = SendBatch::new();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let msgs: Vec<(&[u8], SocketAddr)> =
            payloads.iter().map(|p| (p.as_slice(), dest)).collect();
        let mut sent = 0;
        while sent < msgs.len() {
            sent += sb.send(a.as_raw_fd(), &msgs[sent..], false).unwrap();
        }
        let mut rb = RecvBatch::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            match rb.recv(b.as_raw_fd(), |d, s, _| got.push((d, s))) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 40 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), 40);
        for (i, (d, s)) in got.iter().enumerate() {
            assert_eq!(&d[..], &payloads[i][..]);
            assert_eq!(*s, a.local_addr().unwrap());
        }
    }

    #[test]
    fn a_short_batch_then_a_full_one_keeps_every_datagram_and_its_source() {
        // Only the slots the last call filled are set up again: the others must still be right.
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        let dest = b.local_addr().unwrap();
        let mut rb = RecvBatch::new();
        let mut got = Vec::new();
        let drain = |rb: &mut RecvBatch, want: usize, got: &mut Vec<(Bytes, SocketAddr)>| {
            for _ in 0..200 {
                match rb.recv(b.as_raw_fd(), |d, s, _| got.push((d, s))) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if got.len() >= want {
                            return;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        };
        a.send_to(b"first", dest).unwrap();
        drain(&mut rb, 1, &mut got);
        assert_eq!(got.len(), 1);
        let mut want = vec![(b"first".to_vec(), a.local_addr().unwrap())];
        for i in 0..(BATCH + 5) {
            let from = if i % 2 == 0 { &a } else { &c };
            let p = vec![b'a' + (i % 26) as u8; 1 + i];
            from.send_to(&p, dest).unwrap();
            want.push((p, from.local_addr().unwrap()));
        }
        drain(&mut rb, want.len(), &mut got);
        let got: Vec<(Vec<u8>, SocketAddr)> =
            got.into_iter().map(|(d, s)| (d.to_vec(), s)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn wildcard_socket_learns_and_answers_from_the_destination_address() {
        let server = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        server.set_nonblocking(true).unwrap();
        enable_pktinfo(server.as_raw_fd(), false).unwrap();
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is local too (all of 127/8), but not what the kernel picks by itself.
        let to: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        client.send_to(b"ping", to).unwrap();
        let mut rb = RecvBatch::with_pktinfo();
        let mut got = None;
        for _ in 0..200 {
            let _ = rb.recv(server.as_raw_fd(), |d, s, dst| got = Some((d, s, dst)));
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (d, src, dst) = got.unwrap();
        assert_eq!(&d[..], b"ping");
        assert_eq!(dst, Some(to.ip()));
        let mut sb = SendBatch::new();
        let n = sb
            .send(server.as_raw_fd(), &[(&b"pong"[..], src, dst)], true)
            .unwrap();
        assert_eq!(n, 1);
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong");
        assert_eq!(
            from, to,
            "the reply leaves from the address the request went to"
        );
    }

    #[test]
    fn addresses_convert_both_ways() {
        for a in ["127.0.0.1:5060", "[::1]:5061", "[fe80::1%2]:7"] {
            let a: SocketAddr = a.parse().unwrap();
            let (st, len) = from_std(a);
            assert_eq!(to_std(&st, len), Some(a));
        }
    }
}
