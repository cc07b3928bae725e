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
/// the number of ready descriptors (0 on timeout or EINTR). `fds` is the caller's scratch, kept
/// so that waiting allocates nothing.
pub fn wait(
    fds: &mut Vec<libc::pollfd>,
    watch: impl IntoIterator<Item = Watch>,
    timeout: Duration,
) -> io::Result<usize> {
    fds.clear();
    fds.extend(watch.into_iter().map(|w| libc::pollfd {
        fd: w.fd,
        events: libc::POLLIN | if w.write { libc::POLLOUT } else { 0 },
        revents: 0,
    }));
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
/// addresses. The headers point into the batch's own heap buffers (which never move), so they
/// are set up once; after a call only the slots the kernel filled are reset. Setting up all of
/// them per call cost ~1,800 instructions per reply at moderate rates (one datagram per call).
pub struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    count: usize,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl RecvBatch {
    pub fn new(n: usize, slot: usize) -> RecvBatch {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut b = RecvBatch {
            bufs: vec![0; n * slot],
            slot,
            lens: vec![0; n],
            truncated: vec![false; n],
            addrs: vec![zero; n],
            addr_lens: vec![0; n],
            count: 0,
            iov: Vec::with_capacity(n),
            hdrs: Vec::with_capacity(n),
        };
        let slot = b.slot.max(1);
        b.iov.extend(b.bufs.chunks_mut(slot).map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: c.len(),
        }));
        for (addr, v) in b.addrs.iter_mut().zip(b.iov.iter_mut()) {
            // SAFETY: msghdr is plain old data; zeroed is a valid empty header, filled below.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = std::ptr::addr_of_mut!(*addr).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::addr_of_mut!(*v);
            h.msg_iovlen = 1;
            b.hdrs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        b
    }

    /// Receives up to the batch size without blocking. `Ok(0)` when nothing is waiting.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // The kernel rewrote the name length and flags of the slots it filled last time.
        for h in self.hdrs.iter_mut().take(self.count) {
            h.msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        self.count = 0;
        // SAFETY: every header points at a live sockaddr_storage of the stated size and at one
        // iovec describing its slot of `self.bufs`; all are heap buffers owned by `self`, never
        // resized, and borrowed mutably for the call. A null timeout with MSG_DONTWAIT never blocks.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let got = got as usize;
        for (i, h) in self.hdrs.iter().take(got).enumerate() {
            self.lens[i] = (h.msg_len as usize).min(self.slot);
            self.truncated[i] = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.addr_lens[i] = h.msg_hdr.msg_namelen;
        }
        self.count = got;
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

/// `sendmmsg(2)` with its headers kept between calls (no allocation per call after the first).
#[derive(Default)]
pub struct SendBatch {
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

// SAFETY: between calls both vectors are empty (`send` clears them before returning), so a
// SendBatch holds no pointer and only its allocations move with it to another thread.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Sends `msgs` (to `dests`, or on a connected socket when `dests` is empty) with one
    /// `sendmmsg(2)`, without blocking. Returns how many were sent; `Ok(0)` when the socket
    /// buffer is full.
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        msgs: impl IntoIterator<Item = &'a [u8]>,
        dests: &[socket2::SockAddr],
    ) -> io::Result<usize> {
        self.iov.clear();
        self.hdrs.clear();
        self.iov.extend(msgs.into_iter().map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        }));
        if self.iov.is_empty() {
            return Ok(0);
        }
        for (i, v) in self.iov.iter_mut().enumerate() {
            // SAFETY: msghdr is plain old data; zeroed is a valid empty header, filled below.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            if let Some(d) = dests.get(i) {
                h.msg_name = d.as_ptr() as *mut libc::c_void;
                h.msg_namelen = d.len();
            }
            h.msg_iov = std::ptr::addr_of_mut!(*v);
            h.msg_iovlen = 1;
            self.hdrs.push(libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            });
        }
        // SAFETY: every header points at an iovec in `self.iov` describing a message borrowed for
        // the call, and at a live SockAddr (or none); the kernel only reads them. MSG_DONTWAIT
        // never blocks.
        let n = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        // The pointers into `msgs` must not outlive the borrow.
        self.iov.clear();
        self.hdrs.clear();
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }
}
