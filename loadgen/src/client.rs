//! The client side: worker threads that start calls open-loop at the target rate, run the RFC 3261
//! client transactions of each call over their own sockets, and count the outcome; and the main
//! thread's controller (duration, `--max`, ramp steps, progress line, drain, summary).
//!
//! A "call" is one unit of the scenario: one OPTIONS or MESSAGE transaction, one registration
//! (REGISTER, answered challenge, REGISTER), or one INVITE dialog (INVITE, ACK, hold, BYE).
//!
//! Timers over UDP (RFC 3261 §17.1): a request is retransmitted after T1, doubling — capped at T2
//! for non-INVITE (and T2 flat once a provisional arrived), uncapped for INVITE until a provisional
//! arrives — and the transaction fails with `timeout` at 64*T1 after it was first sent. Deviation:
//! an INVITE that got a provisional times out 64*T1 after that provisional (Timer B restarted, not
//! stopped), so a callee that rings forever cannot hold a slot forever. Over TCP nothing is retransmitted.
//! Responses that match no live transaction (late duplicates, retransmitted 200s) are absorbed and
//! counted as stray; a retransmitted 200 to an INVITE we already acknowledged is acknowledged again.
//!
//! Each worker owns its sockets, its call table and its timers: no locks on the hot path. The
//! only shared state is the target rate, the stop flags, the `--max` budget and per-worker counters.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataplane::wire::{HeaderId, Limits, Message, Method, RequestBuilder};
use hdrhistogram::Histogram;

use crate::auth;
use crate::cli::{ClientConfig, Scenario, Transport};
use crate::net::{host_port, Conn};
use crate::report::{self, bump, Counters, RampStep, Summary};
use crate::sys;
use crate::timers::Timers;

/// Fibonacci hashing for the sequential call numbers.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// State shared between the controller and the workers.
pub struct Shared {
    /// The total target rate, in calls per 1000 s.
    rate_milli: AtomicU64,
    stop_starting: AtomicBool,
    abandon: AtomicBool,
    /// Calls claimed against `--max`.
    claimed: AtomicU64,
}

impl Shared {
    fn set_rate(&self, r: f64) {
        self.rate_milli.store((r * 1000.0) as u64, Relaxed);
    }
}

#[derive(Clone, Copy, Debug)]
enum Reason {
    Timeout,
    Transport,
    Parse,
    Status(u16),
}

struct Sock {
    conn: Conn,
    sent_by: String,
    dead: bool,
    /// UDP datagrams queued for the next `sendmmsg`: bytes, and the end offset of each.
    out: Vec<u8>,
    out_ends: Vec<usize>,
    /// ECONNREFUSED reports not yet charged to a call.
    refused: u64,
}

/// Datagrams per `recvmmsg`, and how many of those a loop turn takes per socket at most.
const RECV_BATCH: usize = 32;
const RECV_ROUNDS: usize = 8;

/// Datagrams queued per socket before a flush is forced.
const SEND_BATCH: usize = 32;

/// One call in flight. The current client transaction is `method`/`cseq`/`branch`.
struct Call {
    sock: usize,
    user: usize,
    method: Method,
    cseq: u32,
    branch: u32,
    started: Instant,
    deadline: Instant,
    interval: Duration,
    proceeding: bool,
    got_response: bool,
    authed: bool,
    gen: u32,
    /// The request of the current transaction, for retransmission.
    msg: Vec<u8>,
    /// Dialog state (calls only).
    to_tag: String,
    remote_target: String,
    routes: Vec<String>,
    ack: Vec<u8>,
    /// Authorization header to repeat on later requests of the dialog.
    auth_hdr: Option<(&'static [u8], String)>,
    holding: bool,
}

struct WorkerResult {
    hist: Histogram<u64>,
    by_status: BTreeMap<u16, u64>,
    abandoned: u64,
}

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 h, 3 significant digits; the bounds are constants that are valid.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
    })
}

struct Worker {
    id: usize,
    /// The message replies are parsed into (see `on_datagram`).
    spare_msg: Option<Box<Message>>,
    /// `sendmmsg` headers kept between flushes.
    sender: sys::SendBatch,
    /// Request buffers of finished calls, reused by `build` (no allocation per request).
    spare_bufs: Vec<Vec<u8>>,
    run: u32,
    cfg: Arc<ClientConfig>,
    sh: Arc<Shared>,
    c: Arc<Counters>,
    socks: Vec<Sock>,
    calls: SeqMap<Call>,
    timers: Timers,
    next_seq: u64,
    concurrency: usize,
    hist: Histogram<u64>,
    by_status: BTreeMap<u16, u64>,
    limits: Limits,
    tport: &'static str,
    start: Instant,
    scratch: String,
    /// `--reuse-nonce`: per user, the last challenge (status 401/407, its value) and the
    /// nonce-count used with it.
    nonces: HashMap<usize, (u16, Vec<u8>, u32)>,
}

fn ok_status(method: Method, code: u16) -> bool {
    match method {
        Method::Message => code == 200 || code == 202,
        Method::Options | Method::Register | Method::Bye => code == 200,
        _ => (200..300).contains(&code),
    }
}

/// The call number encoded at the start of our Call-IDs (`{seq}-{worker}-{run}@loadgen`).
fn seq_of(call_id: &[u8]) -> Option<u64> {
    if !call_id.ends_with(b"@loadgen") {
        return None;
    }
    // The decimal number before the first '-' (no str round trip: it showed in profiles).
    let mut n: u64 = 0;
    let mut digits = 0;
    for &b in call_id {
        match b {
            b'0'..=b'9' => {
                n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'-' if digits > 0 => return Some(n),
            _ => return None,
        }
    }
    None
}

/// What loadgen needs of most replies, read by one scan of the header lines.
struct QuickReply<'a> {
    code: u16,
    call_id: &'a [u8],
    cseq: u32,
    method: &'a [u8],
}

/// A reply's status, Call-ID and CSeq, when the reply is a plain one: `SIP/2.0 NNN`, header lines
/// that are not folded, exactly one Call-ID and one CSeq, and the empty line that ends the header
/// section. `None` sends it to the full parse.
fn quick_reply(b: &[u8]) -> Option<QuickReply<'_>> {
    let rest = b.strip_prefix(b"SIP/2.0 ")?;
    let d = rest.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), Some(b' ' | b'\r')) {
        return None;
    }
    let code = d.iter().fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
    if !(100..700).contains(&code) {
        return None;
    }
    let mut pos = memchr::memchr(b'\n', b)? + 1;
    let (mut call_id, mut cseq) = (None, None);
    loop {
        let end = pos + memchr::memchr(b'\n', b.get(pos..)?)?;
        let line = b.get(pos..end)?;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = end + 1;
        match line.first() {
            None => break,
            Some(b' ' | b'\t') => return None,
            // Only Call-ID, its compact `i` and CSeq are read.
            Some(b'c' | b'C' | b'i' | b'I') => {}
            Some(_) => continue,
        }
        // Names are short: a byte loop beats a memchr call here.
        let colon = line.iter().position(|&c| c == b':')?;
        let name = line.get(..colon)?.trim_ascii_end();
        let value = line.get(colon + 1..)?.trim_ascii();
        let is = |n: &[u8]| name.len() == n.len() && name.eq_ignore_ascii_case(n);
        if is(b"call-id") || is(b"i") {
            if call_id.replace(value).is_some() {
                return None;
            }
        } else if is(b"cseq") {
            let sp = memchr::memchr(b' ', value)?;
            let num = std::str::from_utf8(value.get(..sp)?).ok()?.parse().ok()?;
            let method = value.get(sp + 1..)?.trim_ascii();
            if cseq.replace((num, method)).is_some() {
                return None;
            }
        }
    }
    let (cseq, method) = cseq?;
    Some(QuickReply {
        code,
        call_id: call_id?,
        cseq,
        method,
    })
}

/// Finds a Call-ID in bytes that did not parse as a message.
fn raw_call_id(b: &[u8]) -> Option<&[u8]> {
    for line in b.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return Some(line[colon + 1..].trim_ascii());
        }
    }
    None
}

impl Worker {
    /// Arms the call's timer `d` after `now` (replacing any armed one).
    fn schedule_in(&mut self, seq: u64, call: &mut Call, now: Instant, d: Duration) {
        call.gen = call.gen.wrapping_add(1);
        self.timers.after(now, d, seq, call.gen);
    }

    /// Arms the call's timer at `at` (replacing any armed one).
    fn schedule_at(&mut self, seq: u64, call: &mut Call, at: Instant) {
        call.gen = call.gen.wrapping_add(1);
        self.timers.at(at, seq, call.gen);
    }

    fn ruri(&self, call: &Call) -> String {
        match self.cfg.scenario {
            Scenario::Register => format!("sip:{}", self.cfg.users[call.user].domain),
            _ => format!("sip:{}", self.cfg.to),
        }
    }

    /// Writes a request of this call into a new buffer.
    fn build(
        &mut self,
        seq: u64,
        call: &Call,
        method: Method,
        branch: u32,
        in_dialog: bool,
    ) -> Vec<u8> {
        // Every per-request string goes into one reused buffer (no allocation but `out`), by
        // pieces and itoa: `write!` through core::fmt cost ~3,200 instructions per request, the
        // largest part of loadgen's own work.
        let mut sc = std::mem::take(&mut self.scratch);
        sc.clear();
        let cfg = &*self.cfg;
        let user = &cfg.users[call.user];
        let sent_by = &self.socks[call.sock].sent_by;
        let at = sc.len();
        if in_dialog && !call.remote_target.is_empty() {
            sc.push_str(&call.remote_target);
        } else if cfg.scenario == Scenario::Register {
            cat(&mut sc, &["sip:", &user.domain]);
        } else {
            cat(&mut sc, &["sip:", &cfg.to]);
        }
        let ruri = at..sc.len();
        let at = sc.len();
        cat(&mut sc, &["sip:", &user.user, "@", &user.domain]);
        let aor = at..sc.len();
        let to = if cfg.scenario == Scenario::Register {
            aor.clone()
        } else {
            let at = sc.len();
            cat(&mut sc, &["sip:", &cfg.to]);
            at..sc.len()
        };
        let at = sc.len();
        sc.push_str("z9hG4bK-");
        num(&mut sc, seq);
        sc.push('.');
        num(&mut sc, u64::from(branch));
        sc.push('.');
        num(&mut sc, self.id as u64);
        sc.push('x');
        num(&mut sc, u64::from(self.run));
        let branch = at..sc.len();
        let at = sc.len();
        sc.push_str("lg");
        num(&mut sc, seq);
        let tag = at..sc.len();
        let at = sc.len();
        num(&mut sc, seq);
        sc.push('-');
        num(&mut sc, self.id as u64);
        sc.push('-');
        num(&mut sc, u64::from(self.run));
        sc.push_str("@loadgen");
        let call_id = at..sc.len();
        let at = sc.len();
        cat(&mut sc, &["sip:", &user.user, "@", sent_by]);
        let contact = at..sc.len();
        let at = sc.len();
        match method {
            Method::Message => {
                sc.push_str("loadgen ");
                num(&mut sc, seq);
            }
            Method::Invite => {
                let host = sent_by
                    .rsplit_once(':')
                    .map_or(sent_by.as_str(), |(h, _)| h);
                let (ip, fam) = if host.starts_with('[') {
                    (host.trim_matches(|c| c == '[' || c == ']'), "IP6")
                } else {
                    (host, "IP4")
                };
                sc.push_str("v=0\r\no=loadgen ");
                num(&mut sc, seq);
                cat(
                    &mut sc,
                    &[" 1 IN ", fam, " ", ip, "\r\ns=-\r\nc=IN ", fam, " ", ip],
                );
                sc.push_str("\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n");
            }
            _ => {}
        }
        let body = at..sc.len();
        let s = sc.as_bytes();

        let mut out = self.spare_bufs.pop().unwrap_or_default();
        out.clear();
        out.reserve(512 + body.len());
        let m = method.as_str().as_bytes();
        let mut b = RequestBuilder::new(&mut out, m, &s[ruri]);
        b.via_params(
            self.tport.as_bytes(),
            sent_by.as_bytes(),
            &s[branch],
            b";rport",
        );
        if in_dialog {
            for r in &call.routes {
                b.header(b"Route", r.as_bytes());
            }
        }
        b.max_forwards(70)
            .from(b"", &s[aor], &s[tag])
            .to(b"", &s[to], call.to_tag.as_bytes())
            .call_id(&s[call_id]);
        let cseq_method = if method == Method::Ack && !in_dialog {
            b"ACK".as_slice()
        } else {
            m
        };
        b.cseq(call.cseq, cseq_method);
        if matches!(method, Method::Register | Method::Invite) {
            b.contact(&s[contact]);
        }
        if method == Method::Register {
            b.header_num(b"Expires", cfg.expires as usize);
        }
        if let Some((name, value)) = &call.auth_hdr {
            if method != Method::Ack {
                b.header(name, value.as_bytes());
            }
        }
        b.header(b"User-Agent", b"loadgen");
        match method {
            Method::Message => b.finish(Some(b"text/plain"), &s[body]),
            Method::Invite => b.finish(Some(b"application/sdp"), &s[body]),
            _ => b.finish(None, b""),
        }
        self.scratch = sc;
        out
    }

    /// Sends on the call's socket. `Err` when the call has to fail with a transport error.
    fn send(&mut self, sock: usize, data: &[u8]) -> Result<(), ()> {
        let s = &mut self.socks[sock];
        if s.dead {
            return Err(());
        }
        if let Conn::Udp(_) = s.conn {
            s.out.extend_from_slice(data);
            s.out_ends.push(s.out.len());
            if s.out_ends.len() >= SEND_BATCH {
                self.flush_udp(sock);
            }
            return Ok(());
        }
        match s.conn.send(data) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                bump(&self.c.send_drops);
                Ok(())
            }
            Err(e) => {
                if self.cfg.transport == Transport::Tcp {
                    s.dead = true;
                }
                if e.kind() != io::ErrorKind::ConnectionRefused {
                    bump(&self.c.send_drops);
                }
                Err(())
            }
        }
    }

    /// Sends what is queued on a UDP socket with `sendmmsg`. A full socket buffer drops the rest
    /// (retransmission recovers); an error (ECONNREFUSED from an earlier ICMP) costs the datagram
    /// it was reported on and is handled like a receive error.
    fn flush_udp(&mut self, sock: usize) {
        let mut sent = 0;
        let total = self.socks[sock].out_ends.len();
        while sent < total {
            let s = &self.socks[sock];
            let mut start = if sent == 0 { 0 } else { s.out_ends[sent - 1] };
            let slices = s.out_ends[sent..total.min(sent + 64)].iter().map(|&end| {
                let m = &s.out[start..end];
                start = end;
                m
            });
            match self.sender.send(s.conn.fd(), slices, &[]) {
                Ok(0) => {
                    self.c.send_drops.fetch_add((total - sent) as u64, Relaxed);
                    break;
                }
                Ok(n) => sent += n,
                Err(e) => {
                    sent += 1;
                    self.on_sock_error(sock, &e);
                }
            }
        }
        let s = &mut self.socks[sock];
        s.out.clear();
        s.out_ends.clear();
    }

    /// Keeps a request buffer for the next `build` (a bounded number of them).
    fn recycle(&mut self, buf: Vec<u8>) {
        if buf.capacity() > 0 && self.spare_bufs.len() < 1024 {
            self.spare_bufs.push(buf);
        }
    }

    fn finish(&mut self, mut call: Call, outcome: Result<(), Reason>) {
        let (msg, ack) = (std::mem::take(&mut call.msg), std::mem::take(&mut call.ack));
        self.recycle(msg);
        self.recycle(ack);
        drop(call);
        match outcome {
            Ok(()) => bump(&self.c.ok),
            Err(Reason::Timeout) => bump(&self.c.timeout),
            Err(Reason::Transport) => bump(&self.c.transport),
            Err(Reason::Parse) => bump(&self.c.parse),
            Err(Reason::Status(code)) => {
                bump(&self.c.status);
                *self.by_status.entry(code).or_insert(0) += 1;
            }
        }
    }

    /// Sends the first request of a new transaction of `call` and arms its timers.
    fn begin_txn(&mut self, seq: u64, mut call: Call, method: Method, now: Instant) {
        call.method = method;
        call.branch += 1;
        call.proceeding = false;
        call.interval = self.cfg.t1;
        call.deadline = now + self.cfg.timeout();
        let old = std::mem::take(&mut call.msg);
        self.recycle(old);
        call.msg = self.build(seq, &call, method, call.branch, method == Method::Bye);
        let msg = std::mem::take(&mut call.msg);
        let sent = self.send(call.sock, &msg);
        call.msg = msg;
        if sent.is_err() {
            return self.finish(call, Err(Reason::Transport));
        }
        let d = if self.cfg.transport == Transport::Udp {
            call.interval
        } else {
            self.cfg.timeout()
        };
        self.schedule_in(seq, &mut call, now, d);
        self.calls.insert(seq, call);
    }

    fn start_call(&mut self, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let n_users = self.cfg.users.len() as u64;
        let global = seq * self.cfg.threads as u64 + self.id as u64;
        let call = Call {
            sock: (seq % self.socks.len() as u64) as usize,
            user: (global % n_users) as usize,
            method: Method::Options,
            cseq: 1,
            branch: 0,
            started: now,
            deadline: now,
            interval: self.cfg.t1,
            proceeding: false,
            got_response: false,
            authed: false,
            gen: 0,
            msg: Vec::new(),
            to_tag: String::new(),
            remote_target: String::new(),
            routes: Vec::new(),
            ack: Vec::new(),
            auth_hdr: None,
            holding: false,
        };
        bump(&self.c.started);
        self.c
            .last_start_us
            .store(now.duration_since(self.start).as_micros() as u64, Relaxed);
        let method = match self.cfg.scenario {
            Scenario::Options => Method::Options,
            Scenario::Message => Method::Message,
            Scenario::Register => Method::Register,
            Scenario::Call => Method::Invite,
        };
        let mut call = call;
        if method == Method::Register && self.cfg.reuse_nonce {
            call.auth_hdr = self.cached_answer(seq, &call, method);
        }
        self.begin_txn(seq, call, method, now);
    }

    /// `--reuse-nonce`: credentials for a new request of `call`'s user from its last challenge,
    /// with the next nonce-count.
    fn cached_answer(
        &mut self,
        seq: u64,
        call: &Call,
        method: Method,
    ) -> Option<(&'static [u8], String)> {
        let uri = self.ruri(call);
        let user = &self.cfg.users[call.user];
        let password = user.password.as_deref().or(self.cfg.password.as_deref())?;
        let (code, ch, nc) = self.nonces.get_mut(&call.user)?;
        *nc += 1;
        let answer = auth::answer_nc(
            ch,
            &user.user,
            password,
            method.as_str(),
            &uri,
            &format!("{seq:x}{}", self.run),
            *nc,
        )?;
        let name: &'static [u8] = if *code == 401 {
            b"Authorization"
        } else {
            b"Proxy-Authorization"
        };
        Some((name, answer))
    }

    fn on_timer(&mut self, seq: u64, gen: u32, now: Instant) {
        let Some(mut call) = self.calls.remove(&seq) else {
            return;
        };
        if call.gen != gen {
            self.calls.insert(seq, call);
            return;
        }
        if call.holding {
            call.holding = false;
            call.cseq += 1;
            return self.begin_txn(seq, call, Method::Bye, now);
        }
        if !call.got_response && self.socks[call.sock].refused > 0 {
            self.socks[call.sock].refused -= 1;
            return self.finish(call, Err(Reason::Transport));
        }
        if now >= call.deadline {
            return self.finish(call, Err(Reason::Timeout));
        }
        // Retransmit (UDP only: over TCP the only timer is the deadline).
        let invite = call.method == Method::Invite;
        if !(invite && call.proceeding) {
            let msg = std::mem::take(&mut call.msg);
            let sent = self.send(call.sock, &msg);
            call.msg = msg;
            if sent.is_err() {
                return self.finish(call, Err(Reason::Transport));
            }
            bump(&self.c.retrans);
            call.interval = if invite {
                call.interval * 2
            } else {
                (call.interval * 2).min(self.cfg.t2)
            };
        }
        if now + call.interval <= call.deadline {
            let d = call.interval;
            self.schedule_in(seq, &mut call, now, d);
        } else {
            let at = call.deadline;
            self.schedule_at(seq, &mut call, at);
        }
        self.calls.insert(seq, call);
    }

    /// Most replies end a non-INVITE transaction (OPTIONS, REGISTER, MESSAGE, BYE): they need only
    /// the status, Call-ID and CSeq, read by one scan of the lines, straight from the receive
    /// buffer. Indexing every header of every reply was a third of loadgen's instructions per
    /// transaction. False: the reply needs [`Worker::on_datagram`] (nothing was counted).
    fn on_quick(&mut self, data: &[u8]) -> bool {
        let Some(q) = quick_reply(data) else {
            return false;
        };
        let seq = seq_of(q.call_id);
        let plain = q.code != 401
            && q.code != 407
            && seq
                .and_then(|s| self.calls.get(&s))
                .is_some_and(|c| c.method != Method::Invite);
        match (plain, seq) {
            (true, Some(seq)) => {
                bump(&self.c.responses);
                self.on_reply(seq, q.cseq, q.method, q.code, None);
                true
            }
            _ => false,
        }
    }

    fn on_datagram(&mut self, sock: usize, buf: Bytes) {
        if !self.on_quick(&buf) {
            self.on_full(sock, buf);
        }
    }

    /// A datagram [`Worker::on_quick`] did not take.
    fn on_full(&mut self, sock: usize, buf: Bytes) {
        bump(&self.c.responses);
        // Parsed into a message kept between datagrams: a fresh one per reply was moved out of
        // the parser (2 KB, three copies) and dropped each time.
        let mut msg = self
            .spare_msg
            .take()
            .unwrap_or_else(|| Box::new(Message::empty()));
        let parsed = msg.parse_with_into(buf.clone(), &self.limits).is_ok();
        if parsed && msg.is_response() {
            self.on_response(sock, &msg);
        } else {
            let seq = raw_call_id(&buf).and_then(seq_of);
            match seq.and_then(|s| self.calls.remove(&s)) {
                Some(call) => self.finish(call, Err(Reason::Parse)),
                None => bump(&self.c.stray),
            }
        }
        msg.release();
        self.spare_msg = Some(msg);
    }

    fn on_response(&mut self, sock: usize, msg: &Message) {
        let _ = sock;
        let (Some(seq), Ok(cseq), Some(code)) = (
            msg.call_id().ok().and_then(seq_of),
            msg.cseq(),
            msg.status(),
        ) else {
            return bump(&self.c.stray);
        };
        self.on_reply(seq, cseq.num, cseq.method, code, Some(msg));
    }

    /// A reply to call `seq`. `msg` is `None` only for what [`quick_reply`] served: a reply to a
    /// non-INVITE that is no challenge, which needs nothing more than these fields.
    fn on_reply(
        &mut self,
        seq: u64,
        cseq_num: u32,
        cseq_method: &[u8],
        code: u16,
        msg: Option<&Message>,
    ) {
        let now = Instant::now();
        let Some(mut call) = self.calls.remove(&seq) else {
            return bump(&self.c.stray);
        };
        call.got_response = true;
        let current = cseq_num == call.cseq
            && cseq_method == call.method.as_str().as_bytes()
            && !call.holding;
        if !current {
            // A retransmitted 2xx to our INVITE: acknowledge it again (RFC 3261 §13.2.2.4).
            if cseq_method == b"INVITE" && (200..300).contains(&code) && !call.ack.is_empty() {
                let ack = std::mem::take(&mut call.ack);
                let _ = self.send(call.sock, &ack);
                call.ack = ack;
            }
            bump(&self.c.stray);
            self.calls.insert(seq, call);
            return;
        }
        if code < 200 {
            if !call.proceeding {
                call.proceeding = true;
                if call.method == Method::Invite {
                    // Timer B restarts at the provisional (see the module doc).
                    let d = self.cfg.timeout();
                    call.deadline = now + d;
                    self.schedule_in(seq, &mut call, now, d);
                } else {
                    call.interval = self.cfg.t2;
                }
            }
            self.calls.insert(seq, call);
            return;
        }
        let method = call.method;
        // Quick replies (no `msg`) are neither challenges nor replies to INVITE: the branches
        // below that read the message have one.
        let Some(msg) = msg.filter(|_| method == Method::Invite || code == 401 || code == 407)
        else {
            let good = ok_status(method, code);
            if good && method != Method::Bye {
                let lat = now.duration_since(call.started).as_micros() as u64;
                let _ = self.hist.record(lat.max(1));
            }
            return self.finish(
                call,
                if good {
                    Ok(())
                } else {
                    Err(Reason::Status(code))
                },
            );
        };
        // Challenge: answer once.
        if (code == 401 || code == 407) && !call.authed && method != Method::Bye {
            let user = &self.cfg.users[call.user];
            let password = user.password.as_deref().or(self.cfg.password.as_deref());
            let hdr = if code == 401 {
                HeaderId::WwwAuthenticate
            } else {
                HeaderId::ProxyAuthenticate
            };
            let answer = match (password, msg.header_value(hdr)) {
                (Some(pw), Some(ch)) => auth::answer(
                    ch,
                    &user.user,
                    pw,
                    method.as_str(),
                    &self.ruri(&call),
                    &format!("{seq:x}{}", self.run),
                ),
                _ => None,
            };
            if let Some(answer) = answer {
                if self.cfg.reuse_nonce {
                    if let Some(ch) = msg.header_value(hdr) {
                        self.nonces.insert(call.user, (code, ch.to_vec(), 1));
                    }
                }
                if method == Method::Invite {
                    self.ack_non_2xx(seq, &mut call, msg);
                }
                call.authed = true;
                call.auth_hdr = Some((
                    if code == 401 {
                        b"Authorization"
                    } else {
                        b"Proxy-Authorization"
                    },
                    answer,
                ));
                call.cseq += 1;
                return self.begin_txn(seq, call, method, now);
            }
        }
        let good = ok_status(method, code);
        match method {
            Method::Invite if good => {
                let lat = now.duration_since(call.started).as_micros() as u64;
                let _ = self.hist.record(lat.max(1));
                self.dialog_from_2xx(&mut call, msg);
                call.ack = self.build(seq, &call, Method::Ack, call.branch + 1000, true);
                let ack = std::mem::take(&mut call.ack);
                let sent = self.send(call.sock, &ack);
                call.ack = ack;
                if sent.is_err() {
                    return self.finish(call, Err(Reason::Transport));
                }
                if self.cfg.hold.is_zero() {
                    call.cseq += 1;
                    self.begin_txn(seq, call, Method::Bye, now);
                } else {
                    call.holding = true;
                    let d = self.cfg.hold;
                    self.schedule_in(seq, &mut call, now, d);
                    self.calls.insert(seq, call);
                }
            }
            Method::Invite => {
                self.ack_non_2xx(seq, &mut call, msg);
                self.finish(call, Err(Reason::Status(code)));
            }
            _ if good => {
                if method != Method::Bye {
                    let lat = now.duration_since(call.started).as_micros() as u64;
                    let _ = self.hist.record(lat.max(1));
                }
                self.finish(call, Ok(()));
            }
            _ => self.finish(call, Err(Reason::Status(code))),
        }
    }

    /// ACK for a non-2xx final response: same branch and CSeq number, To with the response's tag.
    fn ack_non_2xx(&mut self, seq: u64, call: &mut Call, resp: &Message) {
        let saved = std::mem::take(&mut call.to_tag);
        call.to_tag = resp
            .to()
            .ok()
            .and_then(|t| t.tag())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .unwrap_or_default();
        let ack = self.build(seq, call, Method::Ack, call.branch, false);
        let _ = self.send(call.sock, &ack);
        self.recycle(ack);
        call.to_tag = saved;
    }

    /// Takes the To-tag, remote target and route set from a 2xx to INVITE (RFC 3261 §12.1.2).
    fn dialog_from_2xx(&self, call: &mut Call, resp: &Message) {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        call.to_tag = resp
            .to()
            .ok()
            .and_then(|t| t.tag())
            .map(lossy)
            .unwrap_or_default();
        if let Some(Ok(c)) = resp.contacts().next() {
            call.remote_target = lossy(c.value.addr.uri_raw);
        }
        let mut rr: Vec<String> = resp
            .record_routes()
            .filter_map(|r| r.ok())
            .map(|r| lossy(resp.slice(r.span)))
            .collect();
        rr.reverse();
        call.routes = rr;
    }

    /// A socket error: ECONNREFUSED on UDP fails the next unanswered call on that socket whose
    /// timer fires; any error on TCP kills the connection and every call on it.
    fn on_sock_error(&mut self, sock: usize, e: &io::Error) {
        if self.cfg.transport == Transport::Udp {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                // Charged to the next unanswered call on this socket whose timer fires (O(1) here;
                // scanning the call table per ICMP error would be quadratic under a dead target).
                self.socks[sock].refused += 1;
            }
            return;
        }
        self.socks[sock].dead = true;
        let doomed: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.sock == sock)
            .map(|(s, _)| *s)
            .collect();
        for s in doomed {
            if let Some(call) = self.calls.remove(&s) {
                self.finish(call, Err(Reason::Transport));
            }
        }
    }

    fn claim(&self) -> bool {
        match self.cfg.max {
            None => true,
            Some(max) => {
                let n = self.sh.claimed.fetch_add(1, Relaxed);
                if n >= max {
                    self.sh.stop_starting.store(true, Relaxed);
                    false
                } else {
                    true
                }
            }
        }
    }

    fn run(mut self, start: Instant) -> WorkerResult {
        let mut last = start;
        let mut credit = 0.0f64;
        let mut scratch = vec![0u8; 65_536];
        let mut rx: Vec<Bytes> = Vec::with_capacity(64);
        let mut batch = sys::RecvBatch::new(RECV_BATCH, 9000);
        let mut pollfds = Vec::new();
        let mut spans: Vec<std::ops::Range<usize>> = Vec::with_capacity(RECV_BATCH);
        // Set when a turn could not drain the answers: the next turn starts no new call (the
        // shortfall shows as "started only …/s" rather than as a retransmission storm).
        let mut behind = false;
        let threads = self.cfg.threads as f64;
        loop {
            let now = Instant::now();
            if self.sh.abandon.load(Relaxed) {
                break;
            }
            let starting = !self.sh.stop_starting.load(Relaxed);
            let rate = self.sh.rate_milli.load(Relaxed) as f64 / 1000.0 / threads;
            if starting && std::mem::take(&mut behind) {
                credit += now.duration_since(last).as_secs_f64() * rate;
                credit = credit.min(rate * 0.02 + 1.0);
            } else if starting {
                credit += now.duration_since(last).as_secs_f64() * rate;
                // Never bunch up more than 20 ms of calls after a stall.
                credit = credit.min(rate * 0.02 + 1.0);
                while credit >= 1.0 && self.calls.len() < self.concurrency {
                    if !self.claim() {
                        break;
                    }
                    self.start_call(now);
                    credit -= 1.0;
                }
            } else if self.calls.is_empty() {
                break;
            }
            last = now;
            let mut busy = false;
            for i in 0..self.socks.len() {
                if self.socks[i].dead {
                    continue;
                }
                if let Conn::Udp(_) = self.socks[i].conn {
                    // Answers first: draining them completes calls before their timers fire.
                    for round in 0..RECV_ROUNDS {
                        match batch.recv(self.socks[i].conn.fd()) {
                            Ok(n) => {
                                // Quick replies are read in place; the others get one copy (one
                                // allocation) per batch, each answer a slice of it.
                                let mut cat = Vec::new();
                                spans.clear();
                                for k in 0..n {
                                    busy = true;
                                    let (data, truncated) = batch.get(k);
                                    if truncated {
                                        bump(&self.c.responses);
                                        bump(&self.c.stray);
                                        continue;
                                    }
                                    if self.on_quick(data) {
                                        continue;
                                    }
                                    spans.push(cat.len()..cat.len() + data.len());
                                    cat.extend_from_slice(data);
                                }
                                if !spans.is_empty() {
                                    let all = Bytes::from(cat);
                                    for r in spans.drain(..) {
                                        self.on_full(i, all.slice(r));
                                    }
                                }
                                if n < RECV_BATCH {
                                    break;
                                }
                                if round == RECV_ROUNDS - 1 {
                                    behind = true;
                                }
                            }
                            Err(e) => {
                                busy = true;
                                self.on_sock_error(i, &e);
                                break;
                            }
                        }
                    }
                    continue;
                }
                let r = self.socks[i].conn.recv(&mut scratch, &mut rx, 64);
                if let Err(e) = self.socks[i].conn.flush() {
                    self.on_sock_error(i, &e);
                }
                for b in rx.drain(..) {
                    busy = true;
                    self.on_datagram(i, b);
                }
                if let Err(e) = r {
                    busy = true;
                    self.on_sock_error(i, &e);
                }
            }
            let now = Instant::now();
            while let Some((seq, gen)) = self.timers.pop_due(now) {
                self.on_timer(seq, gen, now);
            }
            for i in 0..self.socks.len() {
                if !self.socks[i].out_ends.is_empty() {
                    self.flush_udp(i);
                }
            }
            self.c.inflight.store(self.calls.len() as u64, Relaxed);
            if self.socks.iter().all(|s| s.dead) {
                self.sh.stop_starting.store(true, Relaxed);
            }
            if busy {
                continue;
            }
            // Idle: sleep until the next call is due, the next timer, or 10 ms.
            let mut wait = Duration::from_millis(10);
            if starting && rate > 0.0 && self.calls.len() < self.concurrency {
                wait = wait.min(Duration::from_secs_f64(((1.0 - credit) / rate).max(0.0)));
            }
            if let Some(at) = self.timers.next() {
                wait = wait.min(at.saturating_duration_since(now));
            }
            if wait > Duration::from_micros(50) {
                let watch = self.socks.iter().filter(|s| !s.dead).map(|s| sys::Watch {
                    fd: s.conn.fd(),
                    write: s.conn.wants_write(),
                });
                let _ = sys::wait(&mut pollfds, watch, wait);
            }
        }
        self.c.inflight.store(0, Relaxed);
        WorkerResult {
            hist: self.hist,
            by_status: self.by_status,
            abandoned: self.calls.len() as u64,
        }
    }
}

/// Runs a client scenario; returns the exit code.
pub fn run(cfg: ClientConfig) -> i32 {
    let cfg = Arc::new(cfg);
    let mut per_worker: Vec<Vec<Sock>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.sockets {
        let conn = match Conn::open(cfg.transport, cfg.bind, cfg.target) {
            Ok(c) => c,
            Err(e) => {
                let what = if e.kind() == io::ErrorKind::ConnectionRefused {
                    format!("connection refused by {}", cfg.target_text)
                } else {
                    format!(
                        "cannot open a socket from {} to {}: {e}",
                        cfg.bind, cfg.target_text
                    )
                };
                eprintln!("loadgen: {what}");
                return if e.kind() == io::ErrorKind::ConnectionRefused {
                    1
                } else {
                    255
                };
            }
        };
        let local = match conn.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("loadgen: cannot read the local address: {e}");
                return 255;
            }
        };
        per_worker[i % cfg.threads].push(Sock {
            conn,
            sent_by: host_port(local),
            dead: false,
            out: Vec::with_capacity(SEND_BATCH * 1024),
            out_ends: Vec::with_capacity(SEND_BATCH),
            refused: 0,
        });
    }
    sys::install_stop_handlers();
    let sh = Arc::new(Shared {
        rate_milli: AtomicU64::new(0),
        stop_starting: AtomicBool::new(false),
        abandon: AtomicBool::new(false),
        claimed: AtomicU64::new(0),
    });
    sh.set_rate(cfg.rate);
    let run_id = std::process::id() ^ (Instant::now().elapsed().subsec_nanos() << 8);
    let start = Instant::now();
    let mut counters = Vec::new();
    let mut handles = Vec::new();
    let per_conc = (cfg.concurrency as usize).div_ceil(cfg.threads).max(1);
    for (id, socks) in per_worker.into_iter().enumerate() {
        let c = Arc::new(Counters::default());
        counters.push(c.clone());
        let w = Worker {
            id,
            spare_msg: None,
            sender: sys::SendBatch::default(),
            spare_bufs: Vec::new(),
            run: run_id,
            cfg: cfg.clone(),
            sh: sh.clone(),
            c,
            socks,
            calls: SeqMap::default(),
            timers: Timers::default(),
            next_seq: 1,
            concurrency: per_conc,
            hist: new_hist(),
            by_status: BTreeMap::new(),
            limits: Limits {
                stream: cfg.transport == Transport::Tcp,
                ..Limits::default()
            },
            tport: cfg.transport.via_token(),
            start,
            scratch: String::with_capacity(1024),
            nonces: HashMap::new(),
        };
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{id}"))
            .spawn(move || w.run(start));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("loadgen: cannot start a worker thread: {e}");
                sh.abandon.store(true, Relaxed);
                return 255;
            }
        }
    }

    // The controller.
    let mut rate = cfg.rate;
    let mut prev = report::snap(&counters);
    let mut prev_t = start;
    let mut sending_end: Option<Instant> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut ramp_steps: Vec<RampStep> = Vec::new();
    let mut ramp_best = 0.0;
    let mut ramp_why = String::from("duration or --max reached");
    let mut ramp_prev = prev;
    let mut ramp_next = cfg.ramp.map(|r| start + r.interval);
    let mut ramp_retry = false;
    let drain_for = if cfg.ramp.is_some() {
        Duration::from_secs(2)
    } else {
        cfg.timeout() + cfg.hold + Duration::from_secs(1)
    };
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if handles.iter().all(|h| h.is_finished()) {
            break;
        }
        if sending_end.is_none() {
            let stop = sys::stop_requested()
                || now.duration_since(start) >= cfg.duration
                || sh.stop_starting.load(Relaxed);
            if stop {
                sh.stop_starting.store(true, Relaxed);
                sending_end = Some(now);
                drain_deadline = Some(now + drain_for);
            }
        } else if drain_deadline.is_some_and(|d| now >= d) || sys::stop_requested() {
            // Drain over, or interrupted (SIGINT/SIGTERM): give up on the calls still in flight;
            // they are reported as abandoned.
            sh.abandon.store(true, Relaxed);
        }
        if let (Some(r), Some(at)) = (cfg.ramp, ramp_next) {
            if now >= at && sending_end.is_none() {
                let s = report::snap(&counters);
                let secs = r.interval.as_secs_f64();
                let d_ok = (s.ok - ramp_prev.ok) as f64;
                let d_fail = (s.failed() - ramp_prev.failed()) as f64;
                let d_started = (s.started - ramp_prev.started) as f64;
                let fail_pct = if d_ok + d_fail > 0.0 {
                    100.0 * d_fail / (d_ok + d_fail)
                } else {
                    0.0
                };
                let ok_per_s = d_ok / secs;
                let good = fail_pct <= cfg.max_failure_pct
                    && ok_per_s >= cfg.min_achieved * rate
                    && d_started / secs >= cfg.min_achieved * rate;
                ramp_steps.push(RampStep {
                    rate,
                    started_per_s: d_started / secs,
                    ok_per_s,
                    fail_pct,
                    good,
                });
                ramp_prev = s;
                ramp_next = Some(now + r.interval);
                if good {
                    ramp_best = rate;
                    ramp_retry = false;
                    rate += r.step;
                    sh.set_rate(rate);
                } else if !ramp_retry {
                    // One more interval at the same rate before concluding (noise on a shared box).
                    ramp_retry = true;
                } else {
                    let started_per_s = d_started / secs;
                    ramp_why = if fail_pct > cfg.max_failure_pct {
                        format!(
                            "failures {fail_pct:.2}% > {}% at {rate:.0}/s",
                            cfg.max_failure_pct
                        )
                    } else if started_per_s < cfg.min_achieved * rate {
                        format!("loadgen started only {started_per_s:.0}/s of {rate:.0}/s")
                    } else {
                        format!("only {ok_per_s:.0}/s succeeded of {rate:.0}/s offered")
                    };
                    sh.stop_starting.store(true, Relaxed);
                    sending_end = Some(now);
                    drain_deadline = Some(now + drain_for);
                }
            }
        }
        if now.duration_since(prev_t) >= Duration::from_secs(1) {
            let s = report::snap(&counters);
            if !cfg.quiet {
                let shown = if sending_end.is_some() { 0.0 } else { rate };
                report::progress(
                    now.duration_since(start),
                    shown,
                    &s,
                    &prev,
                    now.duration_since(prev_t),
                );
            }
            prev = s;
            prev_t = now;
        }
    }
    let end = Instant::now();
    let mut hist = new_hist();
    let mut by_status = BTreeMap::new();
    let mut abandoned = 0;
    for h in handles {
        match h.join() {
            Ok(r) => {
                let _ = hist.add(&r.hist);
                for (k, v) in r.by_status {
                    *by_status.entry(k).or_insert(0) += v;
                }
                abandoned += r.abandoned;
            }
            Err(_) => {
                eprintln!("loadgen: a worker thread panicked");
                return 255;
            }
        }
    }
    let totals = report::snap(&counters);
    // The sending phase ends with the last call started (plus one interval), not when the
    // controller noticed.
    let last_start = counters
        .iter()
        .map(|c| c.last_start_us.load(Relaxed))
        .max()
        .unwrap_or(0);
    let last_start =
        start + Duration::from_micros(last_start) + Duration::from_secs_f64(1.0 / rate);
    let note = if totals.started > 0 && totals.responses == 0 {
        Some(if totals.transport > 0 {
            format!(
                "no response from {}: connection refused (ICMP port unreachable)",
                cfg.target_text
            )
        } else {
            format!("no response from {}", cfg.target_text)
        })
    } else {
        None
    };
    let summary = Summary {
        scenario: cfg.scenario.name(),
        target: cfg.target_text.clone(),
        transport: cfg.transport.via_token(),
        elapsed: end.duration_since(start),
        sending: sending_end
            .unwrap_or(end)
            .min(last_start)
            .duration_since(start),
        totals,
        by_status,
        abandoned,
        latency: hist,
        latency_what: match cfg.scenario {
            Scenario::Call => "INVITE->200",
            _ => "request->final",
        },
        ramp: cfg.ramp.map(|_| (ramp_steps, ramp_best, ramp_why)),
        note,
    };
    if cfg.json {
        println!("{}", summary.to_json());
        if let Some(n) = &summary.note {
            eprintln!("loadgen: {n}");
        }
    } else {
        summary.print_text();
    }
    if cfg.ramp.is_some() {
        return if ramp_best > 0.0 { 0 } else { 1 };
    }
    if totals.failed() > 0 || abandoned > 0 || totals.ok == 0 {
        1
    } else {
        0
    }
}

/// Appends every piece to `s`.
fn cat(s: &mut String, parts: &[&str]) {
    for p in parts {
        s.push_str(p);
    }
}

/// Appends `n` in decimal.
fn num(s: &mut String, n: u64) {
    s.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quick_replies_read_what_the_full_parse_reads_or_step_aside() {
        let r = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\ni: 7-0-1@loadgen\r\n\
CSeq:  3 OPTIONS \r\nContent-Length: 0\r\n\r\n";
        let q = quick_reply(r).unwrap();
        let m = Message::parse(Bytes::from_static(r)).unwrap();
        assert_eq!(
            (q.code, q.call_id, q.cseq, q.method),
            (
                m.status().unwrap(),
                m.call_id().unwrap(),
                m.cseq().unwrap().num,
                m.cseq().unwrap().method
            )
        );
        for bad in [
            &b"SIP/2.0 200 OK\r\nCall-ID: a\r\n folded\r\nCSeq: 1 X\r\n\r\n"[..],
            b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCall-ID: b\r\nCSeq: 1 X\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: 1 X\r\n",
            b"SIP/2.0 200 OK\r\nCSeq: 1 X\r\n\r\n",
            b"SIP/2.0 2x0 OK\r\nCall-ID: a\r\nCSeq: 1 X\r\n\r\n",
            b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: x X\r\n\r\n",
            b"INVITE sip:a SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 X\r\n\r\n",
        ] {
            assert!(
                quick_reply(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn call_ids_round_trip() {
        assert_eq!(seq_of(b"42-0-7@loadgen"), Some(42));
        assert_eq!(seq_of(b"42-0-7@elsewhere"), None);
        assert_eq!(seq_of(b"x-0-7@loadgen"), None);
        assert_eq!(seq_of(b"42@loadgen"), None);
        assert_eq!(seq_of(b"-1-0@loadgen"), None);
        assert_eq!(seq_of(b"99999999999999999999-0@loadgen"), None);
        assert_eq!(
            raw_call_id(b"SIP/2.0 200 OK\r\ni: 5-0-1@loadgen\r\n\r\n"),
            Some(&b"5-0-1@loadgen"[..])
        );
    }
}
