//! Server mode: the far end of proxy tests and loadgen's own ceiling measurement.
//!
//! Stateless answers, one request in, its replies out, to the address the request came from (over
//! UDP, like `rport`; over TCP, on the same connection):
//!
//! | request | reply |
//! |---|---|
//! | INVITE | 100, 180, 200 (Record-Route copied, Contact, SDP) |
//! | ACK | none |
//! | REGISTER | 200 echoing every Contact with `expires` (its param, else Expires, else 3600) |
//! | BYE, OPTIONS, MESSAGE, CANCEL, anything else | 200 |
//!
//! With `--auth REALM:PASSWORD`, REGISTER and INVITE without credentials get 401 with an MD5
//! challenge (qop=auth) — 407 and Proxy-Authenticate/Proxy-Authorization with `--proxy-auth` —
//! and wrong credentials get 403. `--drop-first N` ignores the first N requests
//! (any method) to make the client retransmit. The 2xx to INVITE is not retransmitted (no Timer G):
//! a client whose 200 is lost retransmits its INVITE only until the 100 arrived, then times out.
//!
//! Counts (requests per method, replies per code, drops) are printed to stderr at exit and written
//! as JSON to `--stats-file` every 200 ms and at exit.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataplane::wire::{HeaderId, Limits, Message, Method, ReplyBuilder};
use serde_json::json;

use crate::auth;
use crate::cli::{Transport, UasConfig};
use crate::net::{self, host_port, StreamBuf};
use crate::sys;

const METHODS: [Method; 15] = [
    Method::Invite,
    Method::Ack,
    Method::Bye,
    Method::Cancel,
    Method::Register,
    Method::Options,
    Method::Info,
    Method::Prack,
    Method::Update,
    Method::Subscribe,
    Method::Notify,
    Method::Refer,
    Method::Message,
    Method::Publish,
    Method::Other,
];

fn method_index(m: Method) -> usize {
    METHODS
        .iter()
        .position(|&x| x == m)
        .unwrap_or(METHODS.len() - 1)
}

/// The UAS's counts, shared by its threads.
struct Stats {
    received: Vec<AtomicU64>,
    replies: Vec<AtomicU64>,
    requests_seen: AtomicU64,
    dropped: AtomicU64,
    parse_errors: AtomicU64,
    responses_ignored: AtomicU64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            received: (0..METHODS.len()).map(|_| AtomicU64::new(0)).collect(),
            replies: (0..700).map(|_| AtomicU64::new(0)).collect(),
            requests_seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            parse_errors: AtomicU64::new(0),
            responses_ignored: AtomicU64::new(0),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        let mut received = serde_json::Map::new();
        let mut total = 0;
        for (i, m) in METHODS.iter().enumerate() {
            let n = self.received[i].load(Relaxed);
            total += n;
            if n > 0 {
                let name = if *m == Method::Other {
                    "other"
                } else {
                    m.as_str()
                };
                received.insert(name.to_string(), json!(n));
            }
        }
        received.insert("total".into(), json!(total));
        let mut replies = serde_json::Map::new();
        for (code, n) in self.replies.iter().enumerate() {
            let n = n.load(Relaxed);
            if n > 0 {
                replies.insert(code.to_string(), json!(n));
            }
        }
        json!({
            "received": received,
            "replies": replies,
            "dropped": self.dropped.load(Relaxed),
            "parse_errors": self.parse_errors.load(Relaxed),
            "responses_ignored": self.responses_ignored.load(Relaxed),
        })
    }
}

struct Handler {
    cfg: Arc<UasConfig>,
    stats: Arc<Stats>,
    contact: String,
    limits: Limits,
    nonce_seq: AtomicU64,
}

impl Handler {
    /// Whether the request may go on; when not, the 401/403 is pushed to `out`.
    fn authorized(&self, req: &Message, out: &mut Vec<Vec<u8>>) -> bool {
        let Some((realm, password)) = &self.cfg.auth else {
            return true;
        };
        let (creds_hdr, code, reason, challenge_hdr): (_, _, &[u8], &[u8]) = if self.cfg.proxy_auth
        {
            (
                HeaderId::ProxyAuthorization,
                407,
                b"Proxy Authentication Required",
                b"Proxy-Authenticate",
            )
        } else {
            (
                HeaderId::Authorization,
                401,
                b"Unauthorized",
                b"WWW-Authenticate",
            )
        };
        let creds = req.header_value(creds_hdr);
        match creds {
            Some(c) if auth::verify(c, realm, password, req.method_bytes()) => true,
            Some(_) => {
                self.finish(out, req, 403, b"Forbidden", &[], None, b"");
                false
            }
            None => {
                let n = self.nonce_seq.fetch_add(1, Relaxed);
                let ch = format!(
                    "Digest realm=\"{realm}\", nonce=\"{:x}{n:x}\", qop=\"auth\", algorithm=MD5",
                    std::process::id()
                );
                self.finish(
                    out,
                    req,
                    code,
                    reason,
                    &[(challenge_hdr, ch.into_bytes())],
                    None,
                    b"",
                );
                false
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        out: &mut Vec<Vec<u8>>,
        req: &Message,
        code: u16,
        reason: &[u8],
        headers: &[(&[u8], Vec<u8>)],
        ctype: Option<&[u8]>,
        body: &[u8],
    ) {
        if let Some(c) = self.stats.replies.get(usize::from(code)) {
            c.fetch_add(1, Relaxed);
        }
        let mut buf = Vec::with_capacity(512 + body.len());
        let mut r = ReplyBuilder::new(&mut buf, req, code, reason, b"lguas");
        for (n, v) in headers {
            r.header(n, v);
        }
        r.header(b"Server", b"loadgen-uas");
        r.finish(ctype, body);
        out.push(buf);
    }

    /// Answers one received message; the replies are pushed to `out`.
    fn handle(&self, buf: Bytes, out: &mut Vec<Vec<u8>>) {
        let req = match Message::parse_with(buf, &self.limits) {
            Ok(m) => m,
            Err(_) => {
                self.stats.parse_errors.fetch_add(1, Relaxed);
                return;
            }
        };
        if req.is_response() {
            self.stats.responses_ignored.fetch_add(1, Relaxed);
            return;
        }
        let method = req.method();
        self.stats.received[method_index(method)].fetch_add(1, Relaxed);
        if self.stats.requests_seen.fetch_add(1, Relaxed) < self.cfg.drop_first {
            self.stats.dropped.fetch_add(1, Relaxed);
            return;
        }
        match method {
            Method::Ack => {}
            Method::Invite => {
                if !self.authorized(&req, out) {
                    return;
                }
                self.finish(out, &req, 100, b"Trying", &[], None, b"");
                // Record-Route is copied into dialog-creating responses (RFC 3261 §12.1.1).
                let mut headers: Vec<(&[u8], Vec<u8>)> = req
                    .headers_by_id(HeaderId::RecordRoute)
                    .map(|h| (&b"Record-Route"[..], h.value.to_vec()))
                    .collect();
                headers.push((b"Contact", format!("<{}>", self.contact).into_bytes()));
                self.finish(out, &req, 180, b"Ringing", &headers, None, b"");
                let sdp = b"v=0\r\no=loadgen-uas 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
                self.finish(
                    out,
                    &req,
                    200,
                    b"OK",
                    &headers,
                    Some(b"application/sdp"),
                    sdp,
                );
            }
            Method::Register => {
                if !self.authorized(&req, out) {
                    return;
                }
                let default = req.expires().and_then(|e| e.ok()).unwrap_or(3600);
                let mut headers: Vec<(&[u8], Vec<u8>)> = Vec::new();
                for c in req.contacts().filter_map(|c| c.ok()) {
                    let exp = c.value.expires().ok().flatten().unwrap_or(default);
                    let uri = String::from_utf8_lossy(c.value.addr.uri_raw);
                    headers.push((b"Contact", format!("<{uri}>;expires={exp}").into_bytes()));
                }
                self.finish(out, &req, 200, b"OK", &headers, None, b"");
            }
            Method::Options => {
                let allow = b"INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, REGISTER".to_vec();
                self.finish(out, &req, 200, b"OK", &[(b"Allow", allow)], None, b"");
            }
            _ => self.finish(out, &req, 200, b"OK", &[], None, b""),
        }
    }
}

fn udp_worker(h: Arc<Handler>, sock: UdpSocket, stop: Arc<AtomicBool>) {
    let fd = sock.as_raw_fd();
    let mut batch = sys::RecvBatch::new(32, 9000);
    let mut sender = sys::SendBatch::default();
    let mut out = Vec::with_capacity(4);
    let mut replies: Vec<Vec<u8>> = Vec::with_capacity(96);
    let mut dests: Vec<socket2::SockAddr> = Vec::with_capacity(96);
    let watch = [sys::Watch { fd, write: false }];
    let mut pollfds = Vec::with_capacity(1);
    while !stop.load(Relaxed) {
        let n = match batch.recv(fd) {
            Ok(0) => {
                let _ = sys::wait(&mut pollfds, watch, Duration::from_millis(100));
                continue;
            }
            Ok(n) => n,
            Err(_) => continue,
        };
        for i in 0..n {
            let (data, truncated) = batch.get(i);
            let Some(from) = batch.addr(i) else {
                continue;
            };
            if truncated {
                h.stats.parse_errors.fetch_add(1, Relaxed);
                continue;
            }
            h.handle(Bytes::copy_from_slice(data), &mut out);
            for r in out.drain(..) {
                replies.push(r);
                dests.push(from.into());
            }
        }
        let mut sent = 0;
        while sent < replies.len() {
            let end = replies.len().min(sent + 64);
            let slices = replies[sent..end].iter().map(Vec::as_slice);
            match sender.send(fd, slices, &dests[sent..end]) {
                Ok(0) => break, // socket buffer full: the rest is lost, as UDP may
                Ok(k) => sent += k,
                Err(_) => sent += 1,
            }
        }
        replies.clear();
        dests.clear();
    }
}

fn tcp_worker(h: Arc<Handler>, listener: TcpListener, stop: Arc<AtomicBool>) {
    let mut scratch = vec![0u8; 65_536];
    let mut conns: Vec<(TcpStream, StreamBuf)> = Vec::new();
    let mut rx = Vec::new();
    let mut out = Vec::new();
    while !stop.load(Relaxed) {
        while let Ok((s, _)) = listener.accept() {
            let _ = s.set_nodelay(true);
            if s.set_nonblocking(true).is_ok() {
                conns.push((s, StreamBuf::default()));
            }
        }
        let mut busy = false;
        conns.retain_mut(|(s, b)| {
            let r = b.recv(s, &mut scratch, &mut rx);
            let mut alive = true;
            for m in rx.drain(..) {
                busy = true;
                h.handle(m, &mut out);
                for reply in out.drain(..) {
                    if b.send(s, &reply).is_err() {
                        alive = false;
                    }
                }
            }
            if b.flush(s).is_err() {
                alive = false;
            }
            alive && r.is_ok()
        });
        if busy {
            continue;
        }
        let mut watch = vec![sys::Watch {
            fd: listener.as_raw_fd(),
            write: false,
        }];
        watch.extend(conns.iter().map(|(s, b)| sys::Watch {
            fd: s.as_raw_fd(),
            write: b.wants_write(),
        }));
        let _ = sys::wait(&mut Vec::new(), watch, Duration::from_millis(100));
    }
}

fn write_stats(path: &std::path::Path, stats: &Stats) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, stats.to_json().to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Runs the UAS until SIGINT/SIGTERM or `--duration`; returns the exit code.
pub fn run(cfg: UasConfig) -> i32 {
    let reuse = cfg.threads > 1;
    let mut bind = cfg.bind;
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    for i in 0..cfg.threads {
        let r: io::Result<SocketAddr> = match cfg.transport {
            Transport::Udp => net::udp_server(bind, reuse).and_then(|s| {
                let a = s.local_addr()?;
                udp.push(s);
                Ok(a)
            }),
            Transport::Tcp => net::tcp_listener(bind, reuse).and_then(|s| {
                let a = s.local_addr()?;
                tcp.push(s);
                Ok(a)
            }),
        };
        match r {
            Ok(a) if i == 0 => bind = a,
            Ok(_) => {}
            Err(e) => {
                eprintln!("loadgen uas: cannot listen on {bind}: {e}");
                return 255;
            }
        }
    }
    sys::install_stop_handlers();
    let cfg = Arc::new(cfg);
    let stats = Arc::new(Stats::new());
    let tport = cfg.transport.via_token().to_ascii_lowercase();
    let contact = format!("sip:uas@{};transport={tport}", host_port(bind));
    let handler = Arc::new(Handler {
        cfg: cfg.clone(),
        stats: stats.clone(),
        contact,
        limits: Limits {
            stream: cfg.transport == Transport::Tcp,
            ..Limits::default()
        },
        nonce_seq: AtomicU64::new(1),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for s in udp {
        let (h, st) = (handler.clone(), stop.clone());
        handles.push(std::thread::spawn(move || udp_worker(h, s, st)));
    }
    for s in tcp {
        let (h, st) = (handler.clone(), stop.clone());
        handles.push(std::thread::spawn(move || tcp_worker(h, s, st)));
    }
    println!(
        "loadgen uas listening on {} ({})",
        host_port(bind),
        cfg.transport.via_token()
    );
    let start = Instant::now();
    let mut last_write = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let done = sys::stop_requested() || cfg.duration.is_some_and(|d| start.elapsed() >= d);
        if let Some(p) = &cfg.stats_file {
            let now = stats.to_json().to_string();
            if now != last_write || done {
                write_stats(p, &stats);
                last_write = now;
            }
        }
        if done {
            break;
        }
    }
    stop.store(true, Relaxed);
    for h in handles {
        let _ = h.join();
    }
    if let Some(p) = &cfg.stats_file {
        write_stats(p, &stats);
    }
    if !cfg.quiet {
        eprintln!("loadgen uas: {}", stats.to_json());
    }
    0
}
