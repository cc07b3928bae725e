//! ser's log facade: SER's levels, a process-wide threshold (`debug=N`, `-d`), one sink installed by
//! the binary (stderr or syslog), and the shard id of the calling thread on every line.
//!
//! Levels are SER 0.8.11's (`dprint.h`): a line is printed when `level <= debug`. With the default
//! `debug=0` only alerts, critical errors and errors (negative levels) are printed.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

pub const L_ALERT: i32 = -3;
pub const L_CRIT: i32 = -2;
pub const L_ERR: i32 = -1;
pub const L_WARN: i32 = 1;
pub const L_NOTICE: i32 = 2;
pub const L_INFO: i32 = 3;
pub const L_DBG: i32 = 4;

/// Where log lines go: `(level, shard id or None for the main thread, message)`.
pub type Sink = Box<dyn Fn(i32, Option<usize>, fmt::Arguments<'_>) + Send + Sync>;

static LEVEL: AtomicI32 = AtomicI32::new(0);
static SINK: OnceLock<Sink> = OnceLock::new();

thread_local! {
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Sets the threshold (`debug`).
pub fn set_level(level: i32) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// The threshold.
pub fn level() -> i32 {
    LEVEL.load(Ordering::Relaxed)
}

/// Whether a line of `level` would be printed.
#[inline]
pub fn enabled(level: i32) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Installs the sink (once; later calls are ignored). Without a sink, lines go to stderr.
pub fn set_sink(sink: Sink) {
    let _ = SINK.set(sink);
}

/// Marks the calling thread as shard `id` (its log lines carry it).
pub fn set_shard(id: Option<usize>) {
    SHARD.with(|s| s.set(id));
}

/// The shard id of the calling thread.
pub fn shard() -> Option<usize> {
    SHARD.with(Cell::get)
}

/// Name of a level as SER printed it.
pub fn level_name(level: i32) -> &'static str {
    match level {
        i32::MIN..=L_ALERT => "ALERT",
        L_CRIT => "CRITICAL",
        L_ERR => "ERROR",
        0..=L_WARN => "WARNING",
        L_NOTICE => "NOTICE",
        L_INFO => "INFO",
        _ => "DEBUG",
    }
}

/// Writes one line (used by [`ser_log!`](crate::ser_log)).
pub fn write(level: i32, args: fmt::Arguments<'_>) {
    let shard = shard();
    match SINK.get() {
        Some(sink) => sink(level, shard, args),
        None => match shard {
            Some(id) => eprintln!("{}: shard {id}: {args}", level_name(level)),
            None => eprintln!("{}: main: {args}", level_name(level)),
        },
    }
}

/// `ser_log!(L_INFO, "format", args…)`: logs when the level passes the threshold.
#[macro_export]
macro_rules! ser_log {
    ($level:expr, $($arg:tt)+) => {{
        let lvl: i32 = $level;
        if $crate::shard::log::enabled(lvl) {
            $crate::shard::log::write(lvl, format_args!($($arg)+));
        }
    }};
}
