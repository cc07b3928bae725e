//! The RADIUS client behind auth_radius, group_radius, uri_radius and acc's RADIUS accounting
//! ([`dataplane::offload::Job::Radius`], and the fire-and-forget [`dataplane::radius::AcctSink`]).
//!
//! - One thread (`ser-radius`) runs every exchange as a task: a slow or dead server delays only
//!   its own requests. At most [`MAX_OUTSTANDING`] exchanges are in flight and [`QUEUE`] wait;
//!   one more is answered `Failed` at once (the script's branch), never queued without bound.
//! - An exchange tries the servers in order; each gets `tries` transmissions of the same packet
//!   (RFC 2865 §2.5: a retransmission keeps its identifier and authenticator), `timeout` apart.
//!   A server that refuses (ICMP port unreachable) is left at once for the next one.
//! - Each exchange has its own socket (ephemeral port) and a random identifier and Request
//!   Authenticator; a reply is taken only when [`dataplane::radius::codec::decode_reply`] verifies it
//!   (identifier, Response Authenticator, Message-Authenticator when present, well-formed
//!   attributes). Anything else (forged, truncated, for another request) is logged and
//!   ignored, and the wait goes on until the timeout.
//! - Access-Requests carry a Message-Authenticator (RFC 3579, the Blast-RADIUS advice).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dataplane::offload::JobResult;
use dataplane::radius::{RadiusRequest, ACCESS_REQUEST};
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_WARN};
use tokio::net::UdpSocket;

use dataplane::radius::codec::{decode_reply, encode};

/// Exchanges in flight at once.
pub const MAX_OUTSTANDING: usize = 256;
/// Requests waiting for a free slot; beyond this a request fails at once.
pub const QUEUE: usize = 1024;
/// Accounting records waiting to be sent (acc's queue).
pub const ACCT_QUEUE: usize = 4096;

type Done = Box<dyn FnOnce(JobResult) + Send>;

struct Pending {
    req: RadiusRequest,
    done: Option<Done>,
}

struct Client {
    tx: tokio::sync::mpsc::Sender<Pending>,
}

static CLIENT: OnceLock<Option<Client>> = OnceLock::new();

/// The client, its thread started on first use (`None` when no thread could be made).
fn client() -> Option<&'static Client> {
    CLIENT
        .get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Pending>(QUEUE);
            let started = std::thread::Builder::new()
                .name("ser-radius".into())
                .spawn(move || run_client(rx));
            match started {
                Ok(_) => Some(Client { tx }),
                Err(e) => {
                    ser_log!(L_ERR, "radius: cannot start the client thread: {e}");
                    None
                }
            }
        })
        .as_ref()
}

fn run_client(mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Every request still gets an answer.
            while let Some(p) = rx.blocking_recv() {
                if let Some(d) = p.done {
                    d(JobResult::Failed(format!("radius: no runtime: {e}")));
                }
            }
            return;
        }
    };
    rt.block_on(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_OUTSTANDING));
        while let Some(p) = rx.recv().await {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            tokio::spawn(async move {
                let result = exchange(&p.req).await;
                drop(permit);
                match (p.done, &result) {
                    (Some(d), _) => d(result),
                    (None, JobResult::Failed(e)) => {
                        ser_log!(L_ERR, "radius: accounting record lost: {e}")
                    }
                    (None, _) => {}
                }
            });
        }
    });
}

/// Runs `req` and hands the answer to `done` (at once with `Failed` when the client is full).
pub fn submit(req: RadiusRequest, done: impl FnOnce(JobResult) + Send + 'static) {
    let Some(c) = client() else {
        done(JobResult::Failed("radius: no client".into()));
        return;
    };
    let p = Pending {
        req,
        done: Some(Box::new(done)),
    };
    if let Err(e) = c.tx.try_send(p) {
        let p = match e {
            tokio::sync::mpsc::error::TrySendError::Full(p)
            | tokio::sync::mpsc::error::TrySendError::Closed(p) => p,
        };
        if let Some(d) = p.done {
            d(JobResult::Failed(
                "radius: too many requests outstanding".into(),
            ));
        }
    }
}

/// Starts the sender of acc's records: a bounded queue whose sending end goes to
/// [`dataplane::radius::AcctSink::connect`].
pub fn start_accounting() -> std::io::Result<crossbeam_channel::Sender<RadiusRequest>> {
    let (tx, rx) = crossbeam_channel::bounded::<RadiusRequest>(ACCT_QUEUE);
    std::thread::Builder::new()
        .name("ser-radius-acct".into())
        .spawn(move || {
            // This thread may wait for a slot; the shards never do (they see a full queue).
            // The client starts with the first record (a server without RADIUS never has one).
            for req in rx {
                let Some(c) = client() else {
                    ser_log!(L_ERR, "radius: no client: accounting record lost");
                    continue;
                };
                if c.tx.blocking_send(Pending { req, done: None }).is_err() {
                    return;
                }
            }
        })?;
    Ok(tx)
}

/// One exchange, blocking the calling thread (for the job runner's fallback path).
pub fn run_blocking(req: &RadiusRequest) -> JobResult {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(exchange(req)),
        Err(e) => JobResult::Failed(format!("radius: no runtime: {e}")),
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness: fall back to the clock (the authenticator is then guessable, which
        // the log says).
        ser_log!(
            L_WARN,
            "radius: no random numbers from the OS: authenticator from the clock"
        );
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t >> ((i % 16) * 8)) as u8;
        }
    }
    b
}

/// Tries the servers of `req` in order until one answers with a verified reply.
pub async fn exchange(req: &RadiusRequest) -> JobResult {
    let mut last = String::from("no server configured");
    for server in req.servers.iter() {
        let [id] = random::<1>();
        let packet = match encode(req.code, id, &req.attrs, &server.secret, random::<16>()) {
            Ok(p) => p,
            Err(e) => return JobResult::Failed(format!("radius: cannot build the request: {e:?}")),
        };
        let bind = if server.addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = match UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return JobResult::Failed(format!("radius: no socket: {e}")),
        };
        if let Err(e) = sock.connect(server.addr).await {
            last = format!("{}: {e}", server.addr);
            continue;
        }
        match with_server(&sock, &packet, server, req).await {
            Ok(r) => return r,
            Err(e) => {
                ser_log!(
                    L_WARN,
                    "radius: server {} did not answer ({e}); trying the next one if any",
                    server.addr
                );
                last = format!("{}: {e}", server.addr);
            }
        }
    }
    JobResult::Failed(format!("radius: no server answered (last: {last})"))
}

/// `tries` transmissions to one server; the verified reply, or why there is none.
async fn with_server(
    sock: &UdpSocket,
    packet: &[u8],
    server: &dataplane::radius::Server,
    req: &RadiusRequest,
) -> Result<JobResult, String> {
    let mut buf = vec![0u8; 4096];
    let timeout = req.timeout.max(Duration::from_millis(10));
    for _ in 0..req.tries.max(1) {
        sock.send(packet).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let n = match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e.to_string()),
                Ok(Ok(n)) => n,
            };
            // Access-Request replies are verified for Message-Authenticator when they carry
            // one; a server that sends none (FreeRADIUS before 3.2.5) is still understood.
            match decode_reply(&buf[..n], packet, &server.secret, false) {
                Ok((code, attrs)) => return Ok(JobResult::Radius { code, attrs }),
                Err(e) => ser_log!(
                    L_WARN,
                    "radius: reply from {} refused ({e:?}): ignored",
                    server.addr
                ),
            }
        }
    }
    let what = if req.code == ACCESS_REQUEST {
        "Access-Request"
    } else {
        "Accounting-Request"
    };
    Err(format!("{what} timed out after {} tries", req.tries.max(1)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dataplane::radius::Server;

    fn request(addr: std::net::SocketAddr, tries: u32) -> RadiusRequest {
        RadiusRequest {
            servers: vec![Server {
                addr,
                secret: b"k".to_vec(),
            }]
            .into(),
            timeout: Duration::from_millis(150),
            tries,
            code: ACCESS_REQUEST,
            attrs: vec![(1, b"alice".to_vec())],
        }
    }

    /// A reply as a server signs it, for `req` (no Message-Authenticator).
    fn sign(code: u8, req: &[u8], secret: &[u8]) -> Vec<u8> {
        use md5::{Digest, Md5};
        let mut p = vec![code, req[1], 0, 20];
        p.extend_from_slice(&req[4..20]);
        let mut h = Md5::new();
        h.update(&p);
        h.update(secret);
        let a: [u8; 16] = h.finalize().into();
        p[4..20].copy_from_slice(&a);
        p
    }

    #[test]
    fn a_forged_reply_is_ignored_and_the_real_one_taken() {
        let srv = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = srv.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            let (n, from) = srv.recv_from(&mut b).unwrap();
            // First a reply signed with the wrong secret, then a truncated one, then the real one.
            srv.send_to(&sign(2, &b[..n], b"wrong"), from).unwrap();
            srv.send_to(&sign(2, &b[..n], b"k")[..10], from).unwrap();
            srv.send_to(&sign(3, &b[..n], b"k"), from).unwrap();
        });
        let r = run_blocking(&request(addr, 1));
        t.join().unwrap();
        assert_eq!(
            r,
            JobResult::Radius {
                code: 3,
                attrs: vec![]
            }
        );
    }

    #[test]
    fn a_silent_server_is_retried_then_fails_over() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let good = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut req = request(silent.local_addr().unwrap(), 2);
        req.servers = vec![
            Server {
                addr: silent.local_addr().unwrap(),
                secret: b"k".to_vec(),
            },
            Server {
                addr: good.local_addr().unwrap(),
                secret: b"k".to_vec(),
            },
        ]
        .into();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 4096];
            let (n, from) = good.recv_from(&mut b).unwrap();
            good.send_to(&sign(2, &b[..n], b"k"), from).unwrap();
        });
        let start = std::time::Instant::now();
        let r = run_blocking(&req);
        t.join().unwrap();
        assert!(matches!(r, JobResult::Radius { code: 2, .. }), "{r:?}");
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "two tries waited"
        );
        silent.set_nonblocking(true).unwrap();
        let mut b = [0u8; 4096];
        let first = silent.recv_from(&mut b).unwrap().0;
        let p1 = b[..first].to_vec();
        let second = silent.recv_from(&mut b).unwrap().0;
        assert_eq!(p1, b[..second], "a retransmission is the same packet");
    }

    #[test]
    fn nobody_listening_fails_quickly() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let start = std::time::Instant::now();
        let r = run_blocking(&request(port, 3));
        assert!(matches!(r, JobResult::Failed(_)), "{r:?}");
        assert!(start.elapsed() < Duration::from_millis(400));
    }
}
