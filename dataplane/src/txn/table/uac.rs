//! `t_uac`: transactions ser starts itself (management's `t_uac_dlg`). The request is written
//! from the caller's method, URI and header lines with what RFC 3261 §8.1.1 requires added; its
//! final answer goes to the caller's completion ([`super::Action::UacDone`]) instead of upstream.
//! Destinations are literal addresses (no DNS on a shard: the controlplane resolves names first).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use smallvec::SmallVec;

use super::cell::{Branch, Cell, Client, Server};
use super::{Action, Table};
use crate::transport::Proto;
use crate::txn::client_invite::ClientInvite;
use crate::txn::client_non_invite::ClientNonInvite;
use crate::txn::BranchId;
use crate::wire::Method;

/// The final answer of a `t_uac` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UacResult {
    /// The final status (408 on timeout, 478/500 when the request could not be sent).
    pub code: u16,
    /// Its reason phrase.
    pub reason: String,
    /// The whole final reply as received (`None` when generated here).
    pub reply: Option<Bytes>,
}

/// Called once with the final answer (on the shard's thread: keep it short, e.g. send on a channel).
pub type UacDone = Box<dyn FnOnce(UacResult) + Send>;

/// A request for ser to send statefully (management's `t_uac_dlg`).
pub struct UacRequest {
    /// Method, e.g. `NOTIFY`.
    pub method: String,
    /// Request-URI.
    pub ruri: String,
    /// Header lines, each ended by CRLF (From and To should be there; Call-ID, CSeq, From tag,
    /// Max-Forwards and Content-Length are added when missing).
    pub headers: String,
    /// Body (Content-Type must be among the headers when not empty).
    pub body: Vec<u8>,
    /// Send to this URI instead of the Request-URI's host (SER's "outbound URI").
    pub next_hop: Option<String>,
    /// Completion.
    pub done: UacDone,
}

impl std::fmt::Debug for UacRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UacRequest")
            .field("method", &self.method)
            .field("ruri", &self.ruri)
            .field("next_hop", &self.next_hop)
            .finish_non_exhaustive()
    }
}

impl Table {
    /// Starts a `t_uac` transaction from one of our listen addresses `locals`; the request's
    /// completion comes out as [`Action::UacDone`].
    pub fn uac(&mut self, req: UacRequest, locals: &[(SocketAddr, Proto)], now: Instant) {
        let hop = req.next_hop.as_deref().unwrap_or(&req.ruri);
        let Some(dest) = literal_dest(hop.as_bytes()) else {
            return self.fail_uac(
                req,
                478,
                "Unresolvable destination (t_uac needs an address)",
            );
        };
        let local = locals
            .iter()
            .find(|(a, p)| a.is_ipv4() == dest.0.is_ipv4() && *p == dest.1)
            .map(|(a, _)| *a);
        let Some(local) = local else {
            return self.fail_uac(req, 500, "No socket for the destination's transport");
        };
        let method = Method::from_bytes(req.method.as_bytes());
        self.next_call = self
            .next_call
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1);
        let call = self.next_call;
        let cell = Cell {
            gen: 0,
            key: None,
            method,
            request: Bytes::new(),
            src: dest.0,
            local,
            proto: dest.1,
            reply_dest: dest.0,
            server: Server::Local(None),
            last_reply: None,
            branches: SmallVec::new(),
            failure_route: None,
            reply_route: None,
            flags: 0,
            notify: false,
            blind: false,
            canceled: false,
            replied: false,
            in_failure: false,
            lingering_queued: false,
            expires: now + self.cfg.fr + self.cfg.fr_inv,
            scheduled: None,
        };
        let h = self.insert(cell);
        let branch = BranchId {
            shard: self.shard,
            slot: h.slot,
            gen: h.gen,
            branch: 0,
        }
        .encode();
        let bytes = build_uac(&req, local, dest.1, &branch, call);
        let cfg = self.cfg;
        let reliable = dest.1 != Proto::Udp;
        let client = if method == Method::Invite {
            Client::Invite(ClientInvite::start(now, reliable, &cfg))
        } else {
            Client::NonInvite(ClientNonInvite::start(now, reliable, &cfg))
        };
        if let Some(c) = self.get(h) {
            c.server = Server::Local(Some(req.done));
            c.request = bytes.clone();
            c.branches
                .push(Branch::new(client, bytes.clone(), dest.0, dest.1, local));
        }
        self.send(bytes, dest.0, dest.1, local);
        self.schedule(h);
    }

    fn fail_uac(&mut self, req: UacRequest, code: u16, why: &str) {
        self.actions.push_back(Action::UacDone {
            done: req.done,
            result: UacResult {
                code,
                reason: why.to_string(),
                reply: None,
            },
        });
    }
}

/// A `sip:` URI with a literal address: where it goes (no DNS on the shard).
pub(crate) fn literal_dest(uri: &[u8]) -> Option<(SocketAddr, Proto)> {
    let u = crate::wire::uri::Uri::parse(uri).ok()?;
    let t = crate::dns::host_port_of_uri(&u)?;
    let ip = match t.host {
        crate::dns::TargetHost::Ip(ip) => ip,
        crate::dns::TargetHost::Name(n) if n.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        crate::dns::TargetHost::Name(_) => return None,
    };
    let lt = crate::dns::literal_target(ip, t.port, t.transport, t.secure);
    let proto = match lt.transport {
        crate::wire::via::Transport::Udp => Proto::Udp,
        _ => Proto::Tcp,
    };
    Some((lt.addr, proto))
}

fn has_header(lines: &str, name: &str, compact: Option<char>) -> bool {
    lines.lines().any(|l| {
        let n = l.split(':').next().unwrap_or("").trim();
        n.eq_ignore_ascii_case(name)
            || compact.is_some_and(|c| n.len() == 1 && n.eq_ignore_ascii_case(&c.to_string()))
    })
}

/// The request of a `t_uac`: our Via, the caller's headers, and what is missing (From tag, To,
/// Call-ID, CSeq, Max-Forwards, Content-Length).
fn build_uac(req: &UacRequest, local: SocketAddr, proto: Proto, branch: &[u8], call: u64) -> Bytes {
    use bytes::BufMut;
    use std::fmt::Write as _;
    let mut s = String::with_capacity(512 + req.headers.len());
    let _ = write!(
        s,
        "{} {} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={}\r\n",
        req.method,
        req.ruri,
        if proto == Proto::Udp { "UDP" } else { "TCP" },
        local,
        String::from_utf8_lossy(branch)
    );
    if !has_header(&req.headers, "Max-Forwards", None) {
        s.push_str("Max-Forwards: 70\r\n");
    }
    let headers = req.headers.trim_end_matches(['\r', '\n']);
    for l in headers.split("\r\n").flat_map(|l| l.split('\n')) {
        let l = l.trim_end_matches('\r');
        if l.is_empty() || l.to_ascii_lowercase().starts_with("content-length") {
            continue;
        }
        s.push_str(l);
        // RFC 3261 §8.1.1.3: a request outside a dialog carries a From tag; management scripts
        // (the Admin Guide's send-IM example) give none.
        if has_header(l, "From", Some('f')) && !l.to_ascii_lowercase().contains(";tag=") {
            let _ = write!(s, ";tag={call:016x}");
        }
        s.push_str("\r\n");
    }
    if !has_header(&req.headers, "From", Some('f')) {
        let _ = write!(s, "From: <sip:ser@{}>;tag={:016x}\r\n", local.ip(), call);
    }
    if !has_header(&req.headers, "To", Some('t')) {
        let _ = write!(s, "To: <{}>\r\n", req.ruri);
    }
    if !has_header(&req.headers, "Call-ID", Some('i')) {
        let _ = write!(s, "Call-ID: {:016x}@{}\r\n", call, local.ip());
    }
    if !has_header(&req.headers, "CSeq", None) {
        let _ = write!(s, "CSeq: 1 {}\r\n", req.method);
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n", req.body.len());
    let mut buf = bytes::BytesMut::with_capacity(s.len() + req.body.len());
    buf.put_slice(s.as_bytes());
    buf.put_slice(&req.body);
    buf.freeze()
}
