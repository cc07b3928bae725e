//! ser's log facade: SER's levels, a process-wide threshold (`debug=N`, `-d`), one sink installed by
//! the binary (stderr or syslog), and the shard id of the calling thread on every line.
//!
//! Levels are SER 0.8.11's (`dprint.h`): a line is printed when `level <= debug`. With the default
//! `debug=0` only alerts, critical errors and errors (negative levels) are printed.
//!
//! A shard never writes a line itself: network input can trigger log lines, and `syslog()` or a
//! stderr pipe nobody reads would stall the shard. A shard thread ([`set_shard`]) formats the line
//! into a fixed-size [`Record`] (no allocation up to [`INLINE`] bytes; longer lines are kept up to
//! [`MAX_LINE`]) and pushes it onto its own bounded ring ([`RING_SLOTS`]; no lock shared with other
//! shards); one logger thread drains every ring into the sink, so lines keep their order per shard.
//! A line identical to the shard's previous one is only counted: the logger prints `last message
//! repeated N times` once the shard logs something else, and at most every [`REPEAT_REPORT`] while
//! the repetition goes on. A line that finds the ring full is dropped and counted, and the logger
//! prints `log ring full: N line(s) dropped` for the shard. Other threads (main, controlplane)
//! write synchronously as before. [`flush`] waits for the rings at exit.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

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
    static PRODUCER: RefCell<Option<Producer>> = const { RefCell::new(None) };
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

/// Marks the calling thread as shard `id` (its log lines carry it). A shard's lines go through its
/// ring from now on (see the module docs); `None` goes back to synchronous writes.
pub fn set_shard(id: Option<usize>) {
    SHARD.with(|s| s.set(id));
    let producer = id.and_then(|id| {
        let ring = Arc::new(Ring::new(id, RING_SLOTS));
        logger()?.register(Arc::clone(&ring));
        Some(Producer::new(ring))
    });
    PRODUCER.with(|p| *p.borrow_mut() = producer);
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

/// Writes one line (used by [`ser_log!`](crate::ser_log)): onto the shard's ring on a shard thread,
/// else at once.
pub fn write(level: i32, args: fmt::Arguments<'_>) {
    let queued = PRODUCER.with(|p| match p.try_borrow_mut() {
        Ok(mut p) => match p.as_mut() {
            Some(p) => {
                p.push(level, args);
                true
            }
            None => false,
        },
        // A line logged while formatting a line: written directly.
        Err(_) => false,
    });
    if !queued {
        emit(level, shard(), args);
    }
}

fn emit(level: i32, shard: Option<usize>, args: fmt::Arguments<'_>) {
    match SINK.get() {
        Some(sink) => sink(level, shard, args),
        None => match shard {
            Some(id) => eprintln!("{}: shard {id}: {args}", level_name(level)),
            None => eprintln!("{}: main: {args}", level_name(level)),
        },
    }
}

/// Bytes of a line kept inside its ring record; longer lines take one allocation.
pub const INLINE: usize = 192;
/// Longest line kept; the rest is cut and marked with `...`.
pub const MAX_LINE: usize = 4096;
/// Records in each shard's ring (about 220 bytes each).
pub const RING_SLOTS: usize = 1024;
/// How often a repetition still going on is reported.
pub const REPEAT_REPORT: Duration = Duration::from_secs(1);

/// One formatted line: inline up to [`INLINE`] bytes, else on the heap (cut at [`MAX_LINE`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Line {
    inline: [u8; INLINE],
    len: u16,
    long: Option<Box<str>>,
}

impl Line {
    /// Formats `args`.
    pub fn format(args: fmt::Arguments<'_>) -> Line {
        let mut w = LineWriter {
            inline: [0; INLINE],
            len: 0,
            long: None,
        };
        let _ = fmt::write(&mut w, args);
        Line {
            inline: w.inline,
            len: w.len as u16,
            long: w.long.map(String::into_boxed_str),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.long {
            Some(l) => l,
            // Only whole `str` pieces are copied in: always UTF-8.
            None => std::str::from_utf8(&self.inline[..usize::from(self.len)]).unwrap_or(""),
        }
    }
}

struct LineWriter {
    inline: [u8; INLINE],
    len: usize,
    long: Option<String>,
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.long.is_none() {
            if self.len + s.len() <= INLINE {
                self.inline[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
                self.len += s.len();
                return Ok(());
            }
            let mut l = String::with_capacity((self.len + s.len()).min(MAX_LINE + 3));
            l.push_str(std::str::from_utf8(&self.inline[..self.len]).unwrap_or(""));
            self.long = Some(l);
        }
        let Some(l) = self.long.as_mut() else {
            return Ok(());
        };
        if l.len() >= MAX_LINE {
            return Ok(());
        }
        let room = MAX_LINE - l.len();
        if s.len() <= room {
            l.push_str(s);
        } else {
            let mut cut = room;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            l.push_str(&s[..cut]);
            l.push_str("...");
        }
        Ok(())
    }
}

/// What a shard hands the logger.
struct Record {
    level: i32,
    /// Numbers the shard's distinct lines (see [`Ring::repeats`]).
    seq: u32,
    /// Repetitions of the previous line not yet reported.
    repeated_before: u32,
    line: Line,
}

/// One shard's ring and counters; written by the shard, read by the logger.
struct Ring {
    shard: usize,
    queue: ArrayQueue<Record>,
    /// Lines that found the ring full, not yet reported.
    dropped: AtomicU64,
    /// `seq << 32 | count`: how many times the line numbered `seq` was repeated since last
    /// reported. The logger takes the count (compare-and-swap) only once it printed that line;
    /// the shard takes the rest into its next record. So a count is never printed out of place.
    repeats: AtomicU64,
}

impl Ring {
    fn new(shard: usize, slots: usize) -> Ring {
        Ring {
            shard,
            queue: ArrayQueue::new(slots.max(1)),
            dropped: AtomicU64::new(0),
            repeats: AtomicU64::new(0),
        }
    }
}

/// The shard's side: its ring and the last line it pushed.
struct Producer {
    ring: Arc<Ring>,
    last: Option<(i32, Line)>,
    seq: u32,
    wake: Option<std::thread::Thread>,
}

impl Producer {
    fn new(ring: Arc<Ring>) -> Producer {
        Producer {
            ring,
            last: None,
            seq: 0,
            wake: LOGGER
                .get()
                .and_then(Option::as_ref)
                .map(|l| l.thread.clone()),
        }
    }

    fn push(&mut self, level: i32, args: fmt::Arguments<'_>) {
        let line = Line::format(args);
        if self
            .last
            .as_ref()
            .is_some_and(|(l, t)| *l == level && *t == line)
        {
            // Saturates at u32::MAX in the low half (never carries into the sequence number).
            let _ = self
                .ring
                .repeats
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                    (w as u32 != u32::MAX).then_some(w + 1)
                });
            return;
        }
        // The shard is the only producer: a ring with room now still has room below.
        if self.ring.queue.is_full() {
            self.ring.dropped.fetch_add(1, Ordering::Relaxed);
            // The next line is pushed, not counted as a repeat of one printed before this.
            self.last = None;
            return;
        }
        self.seq = self.seq.wrapping_add(1);
        let old = self
            .ring
            .repeats
            .swap(u64::from(self.seq) << 32, Ordering::AcqRel);
        let rec = Record {
            level,
            seq: self.seq,
            repeated_before: old as u32,
            line: line.clone(),
        };
        if self.ring.queue.push(rec).is_err() {
            self.ring.dropped.fetch_add(1, Ordering::Relaxed);
            self.last = None;
            return;
        }
        self.last = Some((level, line));
        if let Some(t) = &self.wake {
            t.unpark();
        }
    }
}

/// The logger thread and the rings it drains.
struct Logger {
    rings: Mutex<Vec<Arc<Ring>>>,
    /// Bumped on every registration, so the thread re-reads `rings` only then.
    generation: AtomicU64,
    /// Set by [`flush`]: report pending repetitions at once.
    flushing: AtomicBool,
    /// The thread is inside a drain pass.
    busy: AtomicBool,
    thread: std::thread::Thread,
}

static LOGGER: OnceLock<Option<Arc<Logger>>> = OnceLock::new();

/// The logger (started with the first shard). `None` if the thread could not be started: then
/// shards write synchronously.
fn logger() -> Option<&'static Arc<Logger>> {
    LOGGER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<Logger>>();
            let handle = std::thread::Builder::new()
                .name("ser-logger".into())
                .spawn(move || {
                    if let Ok(l) = rx.recv() {
                        run_logger(&l);
                    }
                })
                .ok()?;
            let l = Arc::new(Logger {
                rings: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                flushing: AtomicBool::new(false),
                busy: AtomicBool::new(false),
                thread: handle.thread().clone(),
            });
            tx.send(Arc::clone(&l)).ok()?;
            Some(l)
        })
        .as_ref()
}

impl Logger {
    fn register(&self, ring: Arc<Ring>) {
        if let Ok(mut r) = self.rings.lock() {
            r.push(ring);
        }
        self.generation.fetch_add(1, Ordering::Release);
        self.thread.unpark();
    }
}

/// What the logger remembers per ring.
struct Drained {
    ring: Arc<Ring>,
    /// Sequence number and level of the last line printed.
    printed: Option<(u32, i32)>,
    reported_at: Instant,
}

impl Drained {
    /// Prints what the ring holds, then the drop and (every [`REPEAT_REPORT`], or when `now_too`)
    /// the repetition counts. Returns whether anything was printed.
    fn pass(
        &mut self,
        now: Instant,
        now_too: bool,
        out: &mut dyn FnMut(i32, usize, fmt::Arguments<'_>),
    ) -> bool {
        let shard = self.ring.shard;
        let mut any = false;
        while let Some(rec) = self.ring.queue.pop() {
            any = true;
            if rec.repeated_before > 0 {
                let level = self.printed.map_or(rec.level, |(_, l)| l);
                out(
                    level,
                    shard,
                    format_args!("last message repeated {} times", rec.repeated_before),
                );
            }
            out(rec.level, shard, format_args!("{}", rec.line.as_str()));
            self.printed = Some((rec.seq, rec.level));
        }
        let dropped = self.ring.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            any = true;
            out(
                L_WARN,
                shard,
                format_args!("log ring full: {dropped} line(s) dropped"),
            );
        }
        if now_too || now.duration_since(self.reported_at) >= REPEAT_REPORT {
            self.reported_at = now;
            let w = self.ring.repeats.load(Ordering::Acquire);
            if let Some((seq, level)) = self.printed {
                let n = w as u32;
                if n > 0
                    && (w >> 32) as u32 == seq
                    && self
                        .ring
                        .repeats
                        .compare_exchange(w, w & !0xffff_ffff, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                {
                    any = true;
                    out(
                        level,
                        shard,
                        format_args!("last message repeated {n} times"),
                    );
                }
            }
        }
        any
    }

    /// Nothing left to print.
    fn idle(&self) -> bool {
        self.ring.queue.is_empty()
            && self.ring.dropped.load(Ordering::Relaxed) == 0
            && self.ring.repeats.load(Ordering::Relaxed) as u32 == 0
    }
}

fn run_logger(l: &Logger) {
    let mut seen = u64::MAX;
    let mut rings: Vec<Drained> = Vec::new();
    let mut out =
        |level: i32, shard: usize, args: fmt::Arguments<'_>| emit(level, Some(shard), args);
    loop {
        l.busy.store(true, Ordering::SeqCst);
        let generation = l.generation.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            if let Ok(all) = l.rings.lock() {
                for r in all.iter() {
                    if !rings.iter().any(|d| Arc::ptr_eq(&d.ring, r)) {
                        rings.push(Drained {
                            ring: Arc::clone(r),
                            printed: None,
                            reported_at: Instant::now(),
                        });
                    }
                }
            }
        }
        let now = Instant::now();
        let flushing = l.flushing.load(Ordering::SeqCst);
        let mut any = false;
        for d in &mut rings {
            any |= d.pass(now, flushing, &mut out);
        }
        // A shard that stopped (its thread-local dropped) and whose ring is empty is forgotten.
        let before = rings.len();
        rings.retain(|d| Arc::strong_count(&d.ring) > 2 || !d.idle());
        if rings.len() != before {
            if let Ok(mut all) = l.rings.lock() {
                // Held by the registry alone: its shard and its `Drained` are gone.
                all.retain(|r| Arc::strong_count(r) > 1);
            }
        }
        l.busy.store(false, Ordering::SeqCst);
        if !any {
            std::thread::park_timeout(Duration::from_millis(200));
        }
    }
}

/// Waits (at most `timeout`) until the logger printed everything the shards queued, pending
/// repetition counts included. Called at exit.
pub fn flush(timeout: Duration) {
    let Some(Some(l)) = LOGGER.get() else {
        return;
    };
    let deadline = Instant::now() + timeout;
    l.flushing.store(true, Ordering::SeqCst);
    loop {
        l.thread.unpark();
        std::thread::sleep(Duration::from_millis(5));
        let idle = !l.busy.load(Ordering::SeqCst)
            && l.rings.lock().map_or(true, |r| {
                r.iter().all(|r| {
                    r.queue.is_empty()
                        && r.dropped.load(Ordering::Relaxed) == 0
                        && r.repeats.load(Ordering::Relaxed) as u32 == 0
                })
            });
        if idle || Instant::now() >= deadline {
            break;
        }
    }
    l.flushing.store(false, Ordering::SeqCst);
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn producer(slots: usize) -> Producer {
        Producer {
            ring: Arc::new(Ring::new(7, slots)),
            last: None,
            seq: 0,
            wake: None,
        }
    }

    fn drain(d: &mut Drained, now_too: bool) -> Vec<String> {
        let mut lines = Vec::new();
        d.pass(Instant::now(), now_too, &mut |level, shard, args| {
            lines.push(format!("{shard} {}: {args}", level_name(level)));
        });
        lines
    }

    fn drained(p: &Producer) -> Drained {
        Drained {
            ring: Arc::clone(&p.ring),
            printed: None,
            reported_at: Instant::now(),
        }
    }

    #[test]
    fn lines_are_inline_up_to_their_size_then_kept_whole_up_to_the_cap() {
        let short = Line::format(format_args!("a {} b", 42));
        assert_eq!(short.as_str(), "a 42 b");
        assert!(short.long.is_none());
        let long = "é".repeat(INLINE);
        let l = Line::format(format_args!("x{long}"));
        assert_eq!(l.as_str(), format!("x{long}"));
        let huge = "ü".repeat(MAX_LINE);
        let h = Line::format(format_args!("{huge}"));
        assert!(h.as_str().ends_with("..."));
        assert!(h.as_str().len() <= MAX_LINE + 3);
        assert!(h.as_str().starts_with("üü"));
    }

    #[test]
    fn order_is_kept_and_repeats_are_counted_not_queued() {
        let mut p = producer(64);
        let mut d = drained(&p);
        p.push(L_ERR, format_args!("first"));
        for _ in 0..1000 {
            p.push(L_ERR, format_args!("same {}", 1));
        }
        p.push(L_ERR, format_args!("third"));
        // One record each, whatever the repetitions.
        assert_eq!(p.ring.queue.len(), 3);
        assert_eq!(
            drain(&mut d, false),
            [
                "7 ERROR: first",
                "7 ERROR: same 1",
                "7 ERROR: last message repeated 999 times",
                "7 ERROR: third"
            ]
        );
        // The same level matters: a WARNING with the same text is another line.
        p.push(L_WARN, format_args!("third"));
        assert_eq!(drain(&mut d, false), ["7 WARNING: third"]);
    }

    #[test]
    fn a_repetition_going_on_is_reported_and_never_before_its_line() {
        let mut p = producer(64);
        let mut d = drained(&p);
        p.push(L_ERR, format_args!("flood"));
        p.push(L_ERR, format_args!("flood"));
        // Not printed yet: its count is not taken.
        p.push(L_ERR, format_args!("flood"));
        assert_eq!(
            drain(&mut d, true),
            ["7 ERROR: flood", "7 ERROR: last message repeated 2 times"]
        );
        for _ in 0..5 {
            p.push(L_ERR, format_args!("flood"));
        }
        assert_eq!(
            drain(&mut d, true),
            ["7 ERROR: last message repeated 5 times"]
        );
        assert!(drain(&mut d, true).is_empty());
        // The rest goes with the next line; nothing is counted twice.
        p.push(L_ERR, format_args!("flood"));
        p.push(L_ERR, format_args!("other"));
        assert_eq!(
            drain(&mut d, true),
            ["7 ERROR: last message repeated 1 times", "7 ERROR: other"]
        );
        assert!(d.idle());
    }

    #[test]
    fn a_full_ring_drops_and_counts_without_blocking() {
        let mut p = producer(4);
        let mut d = drained(&p);
        let t = Instant::now();
        for i in 0..10_000 {
            p.push(L_ERR, format_args!("line {i}"));
        }
        // Bounded: 10k pushes onto a full ring cost microseconds each at most.
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert_eq!(
            drain(&mut d, false),
            [
                "7 ERROR: line 0",
                "7 ERROR: line 1",
                "7 ERROR: line 2",
                "7 ERROR: line 3",
                "7 WARNING: log ring full: 9996 line(s) dropped"
            ]
        );
        // Room again: lines flow.
        p.push(L_ERR, format_args!("line 0"));
        assert_eq!(drain(&mut d, false), ["7 ERROR: line 0"]);
    }
}
