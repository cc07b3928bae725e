//! The only file of loadgen with `unsafe`: thin wrappers over `ppoll(2)` and `signal(2)`.
//!
//! Everything else uses std sockets in non-blocking mode; waiting for several of them with a
//! sub-millisecond timeout needs `ppoll`, and stopping cleanly on SIGINT/SIGTERM needs a handler
//! that only stores to an atomic.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the SIGINT/SIGTERM handler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Installs SIGINT and SIGTERM handlers that set the flag read by [`stop_requested`].
pub fn install_stop_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `on_signal` is async-signal-safe (one relaxed atomic store) and has the C ABI
    // `signal` expects; replacing the default disposition of these two signals is process-wide
    // and wanted.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether SIGINT or SIGTERM arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// One descriptor to wait on.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub fd: RawFd,
    pub write: bool,
}

/// Waits until one of `watch` is readable (or writable when asked), at most `timeout`. Returns
/// the number of ready descriptors (0 on timeout or EINTR).
pub fn wait(watch: &[Watch], timeout: Duration) -> io::Result<usize> {
    let mut fds: Vec<libc::pollfd> = watch
        .iter()
        .map(|w| libc::pollfd {
            fd: w.fd,
            events: libc::POLLIN | if w.write { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(3600) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` pollfd structs; `ts` is a
    // valid timespec living across the call; a null sigmask means "do not change the mask".
    let n = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(n as usize)
}

/// A batch of receive slots for `recvmmsg(2)`: `n` buffers of `slot` bytes, with the source
/// addresses. Pointers into the buffers are rebuilt on every call, so the batch may move freely.
pub struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    count: usize,
    /// Scratch for the call, rebuilt each time (no allocation after the first).
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        RecvBatch {
            bufs: vec![0; n * slot],
            slot,
            lens: vec![0; n],
            truncated: vec![false; n],
            addrs: vec![zero; n],
            addr_lens: vec![0; n],
            count: 0,
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        }
    }

    /// Receives up to the batch size without blocking. `Ok(0)` when nothing is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.lens.len();
        let mut iov = std::mem::take(&mut self.iov);
        let mut hdrs = std::mem::take(&mut self.hdrs);
        iov.clear();
        hdrs.clear();
        iov.extend(self.bufs.chunks_mut(self.slot).map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        }));
        for (addr, v) in self.addrs.iter_mut().zip(iov.iter_mut()) {
            // SAFETY: msghdr is plain old data; zeroed is a valid empty header, filled below.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = std::ptr::addr_of_mut!(*addr).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::addr_of_mut!(*v);
            h.msg_iovlen = 1;
            hdrs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: `hdrs` holds `n` headers whose name and iovec pointers point into `self.addrs`,
        // `iov` and `self.bufs`, all alive and not otherwise borrowed for the duration of the call;
        // a null timeout with MSG_DONTWAIT never blocks.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            self.iov = iov;
            self.hdrs = hdrs;
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = got as usize;
        for (i, h) in hdrs.iter().take(got).enumerate() {
            self.lens[i] = (h.msg_len as usize).min(self.slot);
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.addr_lens[i] = h.msg_hdr.msg_namelen;
        }
        self.count = got;
        self.iov = iov;
        self.hdrs = hdrs;
        Ok(got)
    }

    /// Datagram `i` of the last receive: its bytes and whether it was cut to the slot size.
    pub fn get(&self, i: usize) -> (&[u8], bool) {
        let start = i * self.slot;
        (&self.bufs[start..start + self.lens[i]], self.truncated[i])
    }

    /// The source address of datagram `i` of the last receive.
    pub fn addr(&self, i: usize) -> Option<std::net::SocketAddr> {
        let len = self.addr_lens[i];
        // SAFETY: the kernel wrote a sockaddr of `len` bytes into `addrs[i]`, a sockaddr_storage,
        // which is large enough for any address family.
        let sa = unsafe { socket2::SockAddr::new(self.addrs[i], len) };
        sa.as_socket()
    }
}

/// Sends `msgs` (to `dests`, or on a connected socket when `dests` is empty) with one
/// `sendmmsg(2)`, without blocking. Returns how many were sent; `Ok(0)` when the socket buffer
/// is full.
pub fn send_batch(fd: RawFd, msgs: &[&[u8]], dests: &[socket2::SockAddr]) -> io::Result<usize> {
    if msgs.is_empty() {
        return Ok(0);
    }
    let mut iov: Vec<libc::iovec> = msgs
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = Vec::with_capacity(msgs.len());
    for (i, v) in iov.iter_mut().enumerate() {
        // SAFETY: msghdr is plain old data; zeroed is a valid empty header, filled below.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(d) = dests.get(i) {
            h.msg_name = d.as_ptr() as *mut libc::c_void;
            h.msg_namelen = d.len();
        }
        h.msg_iov = std::ptr::addr_of_mut!(*v);
        h.msg_iovlen = 1;
        hdrs.push(libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        });
    }
    // SAFETY: every header points at an iovec in `iov` describing a live, borrowed message, and
    // at a live SockAddr (or none); the kernel only reads them. MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}
