//! A tiny authoritative DNS server for tests: UDP on 127.0.0.1 (a free port), answering from a fixed
//! in-memory zone of A, AAAA, SRV and NAPTR records, on its own thread, stopped on drop.
//!
//! - A name with records of the asked type: those records (AA set).
//! - A name that exists with other types only: NOERROR, no answers (NODATA).
//! - An unknown name: NXDOMAIN.
//! - Undecodable datagrams are ignored. Every decoded query is counted ([`DnsServer::queries`]).
//!
//! Built with `hickory-proto`'s message encoding only; no server framework.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, NAPTR, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record};

/// The records a [`DnsServer`] answers from.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    records: Vec<Record>,
    silent: Vec<String>,
}

fn name(n: &str) -> Name {
    let mut name = Name::from_ascii(n).expect("a valid test name");
    name.set_fqdn(true);
    name
}

/// A name as the server compares it: lower case, no trailing dot.
fn norm(n: &Name) -> String {
    let s = n.to_ascii().to_ascii_lowercase();
    s.strip_suffix('.').map(str::to_owned).unwrap_or(s)
}

impl Zone {
    /// An empty zone.
    pub fn new() -> Self {
        Zone::default()
    }

    fn push(mut self, owner: &str, ttl: u32, data: RData) -> Self {
        self.records
            .push(Record::from_rdata(name(owner), ttl, data));
        self
    }

    /// Adds a PTR record: `ip`'s reverse name points at `target`.
    pub fn ptr(self, ip: IpAddr, target: &str, ttl: u32) -> Self {
        let owner = Name::from(ip).to_ascii();
        self.push(&owner, ttl, RData::PTR(PTR(name(target))))
    }

    /// Never answers queries for `owner` (any type).
    pub fn silent(mut self, owner: &str) -> Self {
        self.silent.push(norm(&name(owner)));
        self
    }

    /// True if queries for `q` get no answer.
    fn is_silent(&self, q: &hickory_proto::op::Query) -> bool {
        self.silent.contains(&norm(q.name()))
    }

    /// Adds an A record.
    pub fn a(self, owner: &str, ip: Ipv4Addr, ttl: u32) -> Self {
        self.push(owner, ttl, RData::A(A(ip)))
    }

    /// Adds an AAAA record.
    pub fn aaaa(self, owner: &str, ip: Ipv6Addr, ttl: u32) -> Self {
        self.push(owner, ttl, RData::AAAA(AAAA(ip)))
    }

    /// Adds an SRV record.
    pub fn srv(
        self,
        owner: &str,
        priority: u16,
        weight: u16,
        port: u16,
        target: &str,
        ttl: u32,
    ) -> Self {
        self.push(
            owner,
            ttl,
            RData::SRV(SRV::new(priority, weight, port, name(target))),
        )
    }

    /// Adds a NAPTR record with an empty regexp.
    #[allow(clippy::too_many_arguments)]
    pub fn naptr(
        self,
        owner: &str,
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        replacement: &str,
        ttl: u32,
    ) -> Self {
        self.push(
            owner,
            ttl,
            RData::NAPTR(NAPTR::new(
                order,
                preference,
                flags.as_bytes().into(),
                services.as_bytes().into(),
                Box::default(),
                name(replacement),
            )),
        )
    }

    /// Adds a terminal NAPTR record with a regexp and the root as replacement (ENUM, RFC 3761).
    #[allow(clippy::too_many_arguments)]
    pub fn naptr_regexp(
        self,
        owner: &str,
        order: u16,
        preference: u16,
        flags: &str,
        services: &str,
        regexp: &str,
        ttl: u32,
    ) -> Self {
        self.push(
            owner,
            ttl,
            RData::NAPTR(NAPTR::new(
                order,
                preference,
                flags.as_bytes().into(),
                services.as_bytes().into(),
                regexp.as_bytes().into(),
                Name::root(),
            )),
        )
    }

    /// The answer to one query: records, or `None` for NXDOMAIN.
    fn answer(&self, q: &hickory_proto::op::Query) -> Option<Vec<Record>> {
        let qname = norm(q.name());
        let mut exists = false;
        let mut out = Vec::new();
        for r in &self.records {
            if norm(&r.name) == qname {
                exists = true;
                if r.record_type() == q.query_type() {
                    let mut r = r.clone();
                    r.name = q.name().clone();
                    out.push(r);
                }
            }
        }
        exists.then_some(out)
    }
}

/// A running test DNS server; stops (and joins its thread) on drop.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server for `zone` on 127.0.0.1 and a free port.
    pub fn start(zone: Zone) -> DnsServer {
        let socket = UdpSocket::bind((IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let thread = {
            let stop = stop.clone();
            let queries = queries.clone();
            std::thread::spawn(move || serve(socket, zone, &stop, &queries))
        };
        DnsServer {
            addr,
            stop,
            queries,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries it has decoded so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: UdpSocket, zone: Zone, stop: &AtomicBool, queries: &AtomicUsize) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(req) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if req.metadata.message_type != MessageType::Query {
            continue;
        }
        queries.fetch_add(1, Ordering::SeqCst);
        if req.queries.first().is_some_and(|q| zone.is_silent(q)) {
            continue;
        }
        let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.authoritative = true;
        resp.add_queries(req.queries.iter().cloned());
        match (req.metadata.op_code, req.queries.first()) {
            (OpCode::Query, Some(q)) => match zone.answer(q) {
                Some(records) => {
                    resp.add_answers(records);
                }
                None => resp.metadata.response_code = ResponseCode::NXDomain,
            },
            _ => resp.metadata.response_code = ResponseCode::FormErr,
        }
        if let Ok(bytes) = resp.to_vec() {
            let _ = socket.send_to(&bytes, peer);
        }
    }
}
