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
