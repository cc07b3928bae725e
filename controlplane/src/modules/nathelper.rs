//! Module nathelper's blocking half: talking to the RTP relay ([`Job::RtpRelay`]) — rtpproxy's
//! control protocol over a unix stream socket or UDP, rtpengine's NG protocol over UDP.
//!
//! Every exchange is a task on one relay thread (its own small runtime), so a relay that does
//! not answer holds neither a job worker nor a shard: the task gives up after the job's timeout
//! (one retransmission half-way, UDP being UDP) and the script gets `Failed`. The queue in front
//! of the thread is bounded; a full one fails the job at once.
//!
//! Over UDP each command carries a cookie (`<pid>_<n> `) and only the answer with the same cookie
//! is taken, as rtpproxy and rtpengine echo it; over a unix socket the command is written as is
//! and the answer is what comes back before the relay closes or the time is up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dataplane::modules::nathelper::RelaySock;
use dataplane::offload::{Job, JobResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Relay exchanges waiting for the relay thread at most.
pub const QUEUE: usize = 1024;

type Done = Box<dyn FnOnce(JobResult) + Send>;

/// The relay thread: takes [`Job::RtpRelay`]s and answers each.
#[derive(Clone)]
pub struct RelayRunner {
    tx: tokio::sync::mpsc::Sender<(Job, Done)>,
}

impl RelayRunner {
    /// Starts the thread; `None` when the OS refuses one (jobs then fail at once).
    pub fn start() -> Option<RelayRunner> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Job, Done)>(QUEUE);
        std::thread::Builder::new()
            .name("ser-rtprelay".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        while let Some((_, done)) = rx.blocking_recv() {
                            done(JobResult::Failed(format!("rtp relay: {e}")));
                        }
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    while let Some((job, done)) = rx.recv().await {
                        tasks.spawn(async move { done(answer(&job).await) });
                        while tasks.try_join_next().is_some() {}
                    }
                    while tasks.join_next().await.is_some() {}
                });
            })
            .ok()?;
        Some(RelayRunner { tx })
    }

    /// Hands `job` to the relay thread; `done` gets the answer (at once when the queue is full).
    pub fn submit(&self, job: Job, done: Done) {
        if let Err(e) = self.tx.try_send((job, done)) {
            let (_, done) = match e {
                tokio::sync::mpsc::error::TrySendError::Full(x)
                | tokio::sync::mpsc::error::TrySendError::Closed(x) => x,
            };
            done(JobResult::Failed(
                "rtp relay: too many commands waiting".into(),
            ));
        }
    }
}

/// Answers one relay job (blocking: for callers without the relay thread).
pub fn run(job: &Job) -> JobResult {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(answer(job)),
        Err(e) => JobResult::Failed(format!("rtp relay: {e}")),
    }
}

async fn answer(job: &Job) -> JobResult {
    let Job::RtpRelay {
        sock,
        command,
        timeout,
    } = job
    else {
        return JobResult::Failed(format!("not a relay job ({})", job.kind()));
    };
    match tokio::time::timeout(*timeout, exchange(sock, command, *timeout)).await {
        Ok(Ok(b)) => JobResult::Relay(b),
        Ok(Err(e)) => JobResult::Failed(format!("rtp relay {sock}: {e}")),
        Err(_) => JobResult::Failed(format!(
            "rtp relay {sock}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

static COOKIE: AtomicU64 = AtomicU64::new(1);

/// Sends `command` to `sock` and returns its answer (the caller bounds the time).
pub async fn exchange(sock: &str, command: &[u8], timeout: Duration) -> Result<Bytes, String> {
    match RelaySock::parse(sock)? {
        RelaySock::Unix(path) => {
            let mut s = tokio::net::UnixStream::connect(&path)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            s.write_all(command)
                .await
                .map_err(|e| format!("write: {e}"))?;
            let mut buf = vec![0u8; 8192];
            let n = s.read(&mut buf).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed without an answer".into());
            }
            buf.truncate(n);
            Ok(Bytes::from(buf))
        }
        RelaySock::Udp(hp) | RelaySock::Ng(hp) => {
            let addr = tokio::net::lookup_host(hp.as_str())
                .await
                .map_err(|e| format!("{hp}: {e}"))?
                .next()
                .ok_or_else(|| format!("{hp}: no address"))?;
            let bind = if addr.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = tokio::net::UdpSocket::bind(bind)
                .await
                .map_err(|e| format!("bind: {e}"))?;
            s.connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let cookie = format!(
                "{}_{}",
                std::process::id(),
                COOKIE.fetch_add(1, Ordering::Relaxed)
            );
            let mut pkt = Vec::with_capacity(cookie.len() + 1 + command.len());
            pkt.extend_from_slice(cookie.as_bytes());
            pkt.push(b' ');
            pkt.extend_from_slice(command);
            let mut buf = vec![0u8; 65536];
            // One retransmission half-way through the wait.
            for _ in 0..2 {
                s.send(&pkt).await.map_err(|e| format!("send: {e}"))?;
                let wait = tokio::time::sleep(timeout / 2);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        r = s.recv(&mut buf) => {
                            // A refused port (nothing listens) is an error on a connected socket.
                            let n = r.map_err(|e| format!("receive: {e}"))?;
                            if let Some(rest) = strip_cookie(&buf[..n], cookie.as_bytes()) {
                                return Ok(Bytes::copy_from_slice(rest));
                            }
                        }
                    }
                }
            }
            Err(format!("no answer within {} ms", timeout.as_millis()))
        }
    }
}

/// The answer after `cookie ` when it is the one for `cookie`.
fn strip_cookie<'a>(pkt: &'a [u8], cookie: &[u8]) -> Option<&'a [u8]> {
    let rest = pkt.strip_prefix(cookie)?;
    rest.strip_prefix(b" ")
}

// ------------------------------------------------------------------------------------- natping

/// The keep-alive of SER's nathelper: 4 bytes a SIP stack ignores.
pub const KEEPALIVE: &[u8] = b"\r\n\r\n";

/// Most keep-alives in one round (a bound on what one round queues at shard 0).
pub const MAX_PINGS: usize = 100_000;

/// Starts the keep-alive thread: every second it looks at the running program's nathelper
/// settings and, every `natping_interval` seconds, pings the registered bindings. It ends when
/// the proxy is gone (it holds only a weak reference).
pub fn start_natping(
    shared: std::sync::Weak<dataplane::proxy::server::Shared>,
) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ser-natping".into())
        .spawn(move || {
            let mut last: Option<std::time::Instant> = None;
            let mut round = 0u64;
            loop {
                std::thread::sleep(Duration::from_millis(250));
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let program = shared.program.load();
                let Some(cfg) = program
                    .configs
                    .get::<dataplane::modules::nathelper::NatConfig>()
                else {
                    continue;
                };
                if cfg.natping_interval == 0 {
                    continue;
                }
                let now = std::time::Instant::now();
                let due = last.is_none_or(|l| {
                    now.duration_since(l) >= Duration::from_secs(u64::from(cfg.natping_interval))
                });
                if !due {
                    continue;
                }
                last = Some(now);
                round += 1;
                let targets = ping_targets(&shared.services.usrloc, cfg.ping_nated_only);
                let local = shared
                    .local
                    .iter()
                    .find(|(_, p)| *p == dataplane::transport::Proto::Udp)
                    .map(|(a, _)| *a);
                let mut sent = 0usize;
                for (i, (dest, contact)) in targets.iter().enumerate() {
                    let data = match (cfg.natping_options, local) {
                        (true, Some(l)) => Bytes::from(options_ping(contact, l, round, i)),
                        _ => Bytes::from_static(KEEPALIVE),
                    };
                    if shared.tm.datagram(data, *dest) {
                        sent += 1;
                    }
                }
                dataplane::ser_log!(
                    dataplane::shard::log::L_DBG,
                    "natping: {sent} keep-alives sent"
                );
            }
        })
        .ok()
}

/// Where to ping: (address, contact URI) of every binding in force — its received address when
/// it has one (registered from behind NAT), else the contact's own address unless `nated_only`.
/// UDP contacts with an IP address only (no DNS here), each address once.
pub fn ping_targets(
    usrloc: &dataplane::usrloc::Usrloc,
    nated_only: bool,
) -> Vec<(std::net::SocketAddr, String)> {
    let now = dataplane::usrloc::time::now_unix();
    let mut out: Vec<(std::net::SocketAddr, String)> = Vec::new();
    for t in usrloc.dump(now) {
        for (_, bindings) in t.aors {
            for b in bindings {
                let target = match (&b.received, nated_only) {
                    (Some(r), _) => r.to_string(),
                    (None, false) => b.contact.to_string(),
                    (None, true) => continue,
                };
                if let Some(a) = udp_addr(&target) {
                    if out.len() < MAX_PINGS && !out.iter().any(|(d, _)| *d == a) {
                        out.push((a, b.contact.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// The UDP address of a `sip:` URI naming an IP address (port 5060 when none).
fn udp_addr(uri: &str) -> Option<std::net::SocketAddr> {
    use dataplane::wire::uri::{Host, Uri};
    let u = Uri::parse(uri.as_bytes()).ok()?;
    let tcp = u
        .params
        .value(b"transport")
        .is_some_and(|v| !v.eq_ignore_ascii_case(b"udp"));
    if tcp || u.scheme != dataplane::wire::uri::Scheme::Sip {
        return None;
    }
    let ip: std::net::IpAddr = match u.host {
        Host::V4(a) => a.into(),
        Host::V6(a) => a.into(),
        Host::Name(_) => return None,
    };
    Some(std::net::SocketAddr::new(ip, u.port.unwrap_or(5060)))
}

/// An OPTIONS keep-alive to `contact`, from `local`.
fn options_ping(contact: &str, local: std::net::SocketAddr, round: u64, i: usize) -> Vec<u8> {
    let pid = std::process::id();
    format!(
        "OPTIONS {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-np{pid}-{round}-{i}\r\nMax-Forwards: 70\r\nFrom: <sip:natping@{local}>;tag=np{pid}\r\nTo: <{contact}>\r\nCall-ID: np{pid}-{round}-{i}@{local}\r\nCSeq: {round} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ping_addresses() {
        assert_eq!(
            udp_addr("sip:a@1.2.3.4"),
            Some("1.2.3.4:5060".parse().unwrap())
        );
        assert_eq!(
            udp_addr("sip:1.2.3.4:5070;transport=udp"),
            Some("1.2.3.4:5070".parse().unwrap())
        );
        assert_eq!(udp_addr("sip:a@1.2.3.4;transport=tcp"), None);
        assert_eq!(udp_addr("sip:a@host.example"), None);
        assert_eq!(udp_addr("sips:a@1.2.3.4"), None);
        let o = String::from_utf8(options_ping(
            "sip:a@1.2.3.4",
            "127.0.0.1:5060".parse().unwrap(),
            3,
            1,
        ))
        .unwrap();
        assert!(o.starts_with(
            "OPTIONS sip:a@1.2.3.4 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-np"
        ));
        assert!(dataplane::wire::Message::parse(Bytes::from(o)).is_ok());
    }

    #[test]
    fn cookies_must_match() {
        assert_eq!(
            strip_cookie(b"12_3 30000 1.2.3.4", b"12_3"),
            Some(&b"30000 1.2.3.4"[..])
        );
        assert_eq!(strip_cookie(b"12_34 30000", b"12_3"), None);
        assert_eq!(strip_cookie(b"x", b"12_3"), None);
    }

    #[test]
    fn udp_exchange_with_a_peer_and_without_one() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = peer.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 1500];
            let (n, from) = peer.recv_from(&mut b).unwrap();
            let text = String::from_utf8_lossy(&b[..n]).into_owned();
            let (cookie, cmd) = text.split_once(' ').unwrap();
            assert_eq!(cmd, "V");
            // A stray answer first: ignored.
            peer.send_to(b"other 1", from).unwrap();
            peer.send_to(format!("{cookie} 20040107\n").as_bytes(), from)
                .unwrap();
        });
        let r = run(&Job::RtpRelay {
            sock: format!("udp:{addr}"),
            command: Bytes::from_static(b"V"),
            timeout: Duration::from_secs(2),
        });
        assert_eq!(r, JobResult::Relay(Bytes::from_static(b"20040107\n")));
        t.join().unwrap();
        // Nobody listens: an error, quickly.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let started = std::time::Instant::now();
        let r = run(&Job::RtpRelay {
            sock: format!("ng:{dead_addr}"),
            command: Bytes::from_static(b"d7:command4:pinge"),
            timeout: Duration::from_millis(400),
        });
        assert!(matches!(r, JobResult::Failed(_)), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn unix_exchange() {
        let dir = std::env::temp_dir().join(format!("ser-rtpp-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("rtpproxy.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 256];
            let n = c.read(&mut b).unwrap();
            assert_eq!(&b[..n], b"D cid ft");
            c.write_all(b"0\n").unwrap();
        });
        let r = run(&Job::RtpRelay {
            sock: format!("unix:{}", path.display()),
            command: Bytes::from_static(b"D cid ft"),
            timeout: Duration::from_secs(2),
        });
        assert_eq!(r, JobResult::Relay(Bytes::from_static(b"0\n")));
        t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(
            run(&Job::RtpRelay {
                sock: "unix:/nonexistent/rtpproxy.sock".into(),
                command: Bytes::from_static(b"V"),
                timeout: Duration::from_millis(300),
            }),
            JobResult::Failed(_)
        ));
    }
}
