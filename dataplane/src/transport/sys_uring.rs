//! io_uring UDP receive: one multishot `recvmsg` per socket drawing from a provided-buffer ring.
//! Every `unsafe` of the io_uring path lives here, each with its `SAFETY:` argument.
//!
//! Layout: the buffer ring (`ENTRIES` × 16-byte `io_uring_buf`) and the buffers (`ENTRIES` ×
//! `BUF_SIZE`) are anonymous `mmap`s, page-aligned as the kernel wants; they live as long as the
//! ring (the ring is dropped first). The kernel writes `io_uring_recvmsg_out` + source address +
//! payload into a buffer; the payload is copied once into a shard-local `BytesMut` chunk (so the
//! buffer goes back to the ring at once and a packet kept by a transaction pins no ring memory),
//! and the buffer is handed back by advancing the ring tail.
//!
//! The ring fd is registered in the shard's mio poll: it turns readable when completions are
//! waiting, so both backends share one event loop.
#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, ManuallyDrop, MaybeUninit};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use io_uring::types::{BufRingEntry, Fd, RecvMsgOut};
use io_uring::{cqueue, opcode, IoUring};

/// Buffers in the ring (power of two).
const ENTRIES: u16 = 256;
/// One buffer: the recvmsg header, a sockaddr_storage and a 64 KiB payload.
const BUF_SIZE: usize = 64 * 1024 + 256;
const BGID: u16 = 0x5e5;
const RECV_TAG: u64 = 0x5e5_0001;
const CHUNK: usize = 128 * 1024;

struct Mmap {
    ptr: *mut u8,
    len: usize,
}

impl Mmap {
    fn new(len: usize) -> io::Result<Mmap> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mmap { ptr: p.cast(), len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly one mapping made by `Mmap::new`, unmapped once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The io_uring receive side of one UDP socket.
pub struct UringRecv {
    ring: ManuallyDrop<IoUring>,
    fd: RawFd,
    /// Template for the multishot recvmsg (name and control lengths); must stay at a stable address
    /// while the request is armed, hence the box.
    msghdr: Box<libc::msghdr>,
    ring_mem: Mmap,
    bufs: Mmap,
    tail: u16,
    armed: bool,
    chunk: BytesMut,
}

impl UringRecv {
    /// Sets up the ring and arms the multishot receive on `fd` (a non-blocking UDP socket);
    /// `pktinfo`: the socket is a wildcard one with `IP_PKTINFO` on, keep room for it.
    pub fn new(fd: RawFd, pktinfo: bool) -> io::Result<UringRecv> {
        let ring = IoUring::new(256)?;
        let ring_mem = Mmap::new((usize::from(ENTRIES) * size_of::<BufRingEntry>()).max(4096))?;
        let bufs = Mmap::new(usize::from(ENTRIES) * BUF_SIZE)?;
        // SAFETY: `ring_mem` is a page-aligned mapping of ENTRIES entries, kept alive (and not
        // moved: it is a mapping) until after the ring is dropped.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ring_mem.ptr as u64, ENTRIES, BGID, 0)?;
        }
        // SAFETY: msghdr is plain old data; all-zero is valid (null name/iov/control).
        let mut msghdr: Box<libc::msghdr> =
            Box::new(unsafe { MaybeUninit::<libc::msghdr>::zeroed().assume_init() });
        msghdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if pktinfo {
            msghdr.msg_controllen = 64;
        }
        let mut u = UringRecv {
            ring: ManuallyDrop::new(ring),
            fd,
            msghdr,
            ring_mem,
            bufs,
            tail: 0,
            armed: false,
            chunk: BytesMut::with_capacity(CHUNK),
        };
        for bid in 0..ENTRIES {
            u.push_buffer(bid);
        }
        u.publish_tail();
        u.arm()?;
        Ok(u)
    }

    /// The ring's fd (readable when completions wait).
    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn entries(&self) -> *mut BufRingEntry {
        self.ring_mem.ptr.cast()
    }

    /// Puts buffer `bid` at the ring's (local) tail; visible to the kernel after `publish_tail`.
    fn push_buffer(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (ENTRIES - 1));
        // SAFETY: idx < ENTRIES, so the entry lies inside `ring_mem`; the kernel only reads entries
        // between head and the published tail, and this one is past the published tail.
        let e = unsafe { &mut *self.entries().add(idx) };
        // SAFETY: bid < ENTRIES, so the buffer lies inside `bufs`.
        let addr = unsafe { self.bufs.ptr.add(usize::from(bid) * BUF_SIZE) };
        e.set_addr(addr as u64);
        e.set_len(BUF_SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the tail field overlays `resv` of entry 0, inside `ring_mem` and 2-aligned; the
        // kernel reads it concurrently, hence the atomic release store.
        unsafe {
            let t = BufRingEntry::tail(self.entries()) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let e = opcode::RecvMsgMulti::new(Fd(self.fd), &*self.msghdr, BGID)
            .build()
            .user_data(RECV_TAG);
        // SAFETY: the msghdr template (boxed, stable address) and the registered buffer group stay
        // alive as long as the ring; the fd stays open as long as the socket that owns this ring.
        unsafe {
            if self.ring.submission().push(&e).is_err() {
                return Err(io::Error::other("submission queue full"));
            }
        }
        self.ring.submit()?;
        self.armed = true;
        Ok(())
    }

    /// Handles waiting completions: calls `f` per datagram; `Ok(0)` when none was waiting.
    pub fn recv(
        &mut self,
        mut f: impl FnMut(Bytes, SocketAddr, Option<IpAddr>),
    ) -> io::Result<usize> {
        if self.ring.completion().is_empty() {
            // Entering the kernel runs pending task work, which posts completions.
            self.ring.submit()?;
        }
        let mut done: Vec<(i32, u32)> = Vec::with_capacity(64);
        {
            let cq = self.ring.completion();
            for cqe in cq.take(256) {
                if cqe.user_data() == RECV_TAG {
                    done.push((cqe.result(), cqe.flags()));
                }
            }
        }
        let mut n = 0;
        let mut rearm = false;
        for (res, flags) in done.iter().copied() {
            n += 1;
            if !cqueue::more(flags) {
                self.armed = false;
                rearm = true;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                if res < 0 && -res != libc::ENOBUFS {
                    crate::ser_log!(
                        crate::shard::log::L_DBG,
                        "io_uring recvmsg: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                continue;
            };
            if bid < ENTRIES && res >= 0 {
                let len = (res as usize).min(BUF_SIZE);
                // SAFETY: the kernel filled `len` bytes of buffer `bid` (inside `bufs`) and gave it
                // to us; it will not touch it again until we push it back below.
                let buf = unsafe {
                    std::slice::from_raw_parts(self.bufs.ptr.add(usize::from(bid) * BUF_SIZE), len)
                };
                if let Ok(out) = RecvMsgOut::parse(buf, &self.msghdr) {
                    if !out.is_payload_truncated() && !out.is_name_data_truncated() {
                        let payload = out.payload_data();
                        let name = out.name_data();
                        let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
                        let nlen = name.len().min(size_of::<libc::sockaddr_storage>());
                        // SAFETY: copying `nlen` bytes (≤ its size) into the zeroed storage.
                        let storage = unsafe {
                            std::ptr::copy_nonoverlapping(
                                name.as_ptr(),
                                storage.as_mut_ptr().cast::<u8>(),
                                nlen,
                            );
                            storage.assume_init()
                        };
                        let src =
                            super::sys::to_std(&storage, out.incoming_name_len().min(nlen as u32));
                        if self.chunk.capacity() - self.chunk.len() < payload.len() {
                            self.chunk = BytesMut::with_capacity(CHUNK.max(payload.len()));
                        }
                        self.chunk.extend_from_slice(payload);
                        let data = self.chunk.split().freeze();
                        let dst =
                            if self.msghdr.msg_controllen > 0 && !out.is_control_data_truncated() {
                                super::sys::pktinfo_dst(out.control_data())
                            } else {
                                None
                            };
                        if let Some(src) = src {
                            f(data, src, dst);
                        }
                    }
                }
            }
            if bid < ENTRIES {
                self.push_buffer(bid);
            }
        }
        if n > 0 {
            self.publish_tail();
        }
        if rearm || !self.armed {
            self.arm()?;
        }
        Ok(n)
    }
}

impl Drop for UringRecv {
    fn drop(&mut self) {
        // SAFETY: dropped exactly once, here, before the mappings it refers to (the fields, dropped
        // after this body) are unmapped; closing the ring cancels the armed receive.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
    }
}

/// Start-up probe: a ring with multishot recvmsg and a buffer ring must actually receive a datagram
/// sent to itself over loopback within 500 ms.
pub fn probe() -> Result<(), String> {
    let sock =
        std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = sock.local_addr().map_err(|e| e.to_string())?;
    let mut u =
        UringRecv::new(sock.as_raw_fd(), false).map_err(|e| format!("io_uring setup: {e}"))?;
    sock.send_to(b"probe", addr).map_err(|e| e.to_string())?;
    // About 500 ms in 2 ms naps (counted, not timed: the clock is the shard's to read).
    let mut got = false;
    for _ in 0..250 {
        u.recv(|d, _, _| got |= &d[..] == b"probe")
            .map_err(|e| format!("io_uring recvmsg: {e}"))?;
        if got {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if got {
        Ok(())
    } else {
        Err("multishot recvmsg delivered nothing".to_string())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn probe_passes_or_says_why() {
        match super::probe() {
            Ok(()) => {}
            Err(why) => eprintln!("io_uring probe failed here (skipping): {why}"),
        }
    }
}
