//! The raw socket calls std lacks: batched `recvmmsg(2)` / `sendmmsg(2)` and `sockaddr` conversion.
//! Every `unsafe` block of the epoll path lives here, each with its `SAFETY:` argument.
//!
//! Receive buffers: each of the [`BATCH`] slots is a `BytesMut` with at least [`SLOT`] bytes of spare
//! capacity. A datagram is received into the spare part, then `split()` off and frozen: the packet
//! shares the slot's allocation (no copy), and the slot goes on with what is left; when less than
//! [`SLOT`] remains it reserves a fresh [`CHUNK`] (the old allocation is freed when the last packet
//! sharing it is dropped).
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
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

/// State of one `recvmmsg` batch: the slots and the kernel-facing header arrays. Not `Send` (raw
/// pointers): each shard builds its own inside its thread.
pub struct RecvBatch {
    slots: Vec<BytesMut>,
    names: Vec<libc::sockaddr_storage>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
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
        }
    }

    /// One `recvmmsg` call on the non-blocking socket `fd`: calls `f(data, source)` for each
    /// datagram received and returns how many the kernel returned (`WouldBlock` when none was
    /// waiting). Truncated datagrams and unknown address families are dropped (but counted).
    pub fn recv(&mut self, fd: RawFd, mut f: impl FnMut(Bytes, SocketAddr)) -> io::Result<usize> {
        for i in 0..BATCH {
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
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at a live sockaddr_storage of the stated size and at one iovec
        // describing the spare (writable, unaliased) capacity of its slot; all live in `self`, which is
        // borrowed mutably for the whole call. MSG_DONTWAIT keeps the call from blocking.
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
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
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
            if let Some(src) = to_std(&self.names[i], namelen) {
                f(data, src);
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
        }
    }

    /// One `sendmmsg` call for up to [`BATCH`] of `msgs` on the non-blocking socket `fd`. Returns how
    /// many the kernel took (the first ones), or the error of the first datagram.
    pub fn send(&mut self, fd: RawFd, msgs: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        let n = msgs.len().min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        for (i, (data, dest)) in msgs.iter().take(n).enumerate() {
            let (storage, len) = from_std(*dest);
            self.names[i] = storage;
            self.iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = len;
            h.msg_hdr.msg_iov = &mut self.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: the first `n` headers point at live addresses in `self.names` and at iovecs over the
        // caller's byte slices, which outlive this call; the kernel only reads them (sendmmsg does
        // not write through iov_base). MSG_DONTWAIT keeps it from blocking.
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
            sent += sb.send(a.as_raw_fd(), &msgs[sent..]).unwrap();
        }
        let mut rb = RecvBatch::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            match rb.recv(b.as_raw_fd(), |d, s| got.push((d, s))) {
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
    fn addresses_convert_both_ways() {
        for a in ["127.0.0.1:5060", "[::1]:5061", "[fe80::1%2]:7"] {
            let a: SocketAddr = a.parse().unwrap();
            let (st, len) = from_std(a);
            assert_eq!(to_std(&st, len), Some(a));
        }
    }
}
