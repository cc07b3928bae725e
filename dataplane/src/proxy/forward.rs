//! Stateless forwarding decisions (RFC 3261 §16.6, §16.11, §18.2; RFC 3581).
//!
//! Requests: [`stateless_branch`] computes a Via branch that is the same for every retransmission of
//! a request (and for the CANCEL or non-2xx ACK of an INVITE, whose top Via equals the INVITE's), as
//! §16.11 requires of a stateless proxy; [`add_via`] puts our Via on top; [`mark_received`] adds
//! `received`/`rport` to the sender's Via; [`process_max_forwards`] decrements Max-Forwards or adds it.
//!
//! Responses: [`route_response`] checks the top Via is ours, and says where the next Via sends the
//! response (maddr, received, rport as §18.2.2 and RFC 3581 say), dropping broadcast destinations
//! (RFC 4475 bcast).

use std::hash::{DefaultHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use crate::wire::uri::Host;
use crate::wire::via::{Transport, Via};
use crate::wire::{Message, ParseError, Span};

/// The RFC 3261 magic cookie that starts every RFC 3261 branch.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A branch value held inline: `z9hG4bK` + `sl` + 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    buf: [u8; 25],
}

impl Branch {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl std::fmt::Debug for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.buf))
    }
}

fn hex16(n: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, o) in out.iter_mut().take(16).enumerate() {
        *o = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
}

/// The §16.11 branch for forwarding `msg` statelessly. `salt` distinguishes this proxy (e.g. a hash
/// of its address) so that two proxies forwarding the same request do not produce the same branch.
///
/// When the top Via carries an RFC 3261 branch, the hash covers that branch and the sent-by; for
/// RFC 2543 senders (no cookie) it covers the Request-URI, To and From tags, Call-ID, CSeq number and
/// the top Via — never the method, so CANCEL and ACK hash like their INVITE.
pub fn stateless_branch(msg: &Message, salt: u64) -> Branch {
    let mut h = DefaultHasher::new();
    h.write_u64(salt);
    let top = msg.top_via().ok();
    match top.and_then(|v| v.branch().map(|b| (v, b))) {
        Some((v, b)) if b.len() > MAGIC_COOKIE.len() && b.starts_with(MAGIC_COOKIE) => {
            h.write(b);
            h.write_u8(0);
            h.write(v.sent_by_raw());
        }
        _ => {
            h.write(msg.request_uri_bytes().unwrap_or_default());
            h.write_u8(0);
            h.write(msg.to_tag().unwrap_or_default());
            h.write_u8(0);
            h.write(msg.from_tag().unwrap_or_default());
            h.write_u8(0);
            h.write(msg.call_id().unwrap_or_default());
            h.write_u32(msg.cseq().map_or(0, |c| c.num));
            h.write(top.map_or(&[][..], |v| v.raw));
        }
    }
    let mut buf = [0u8; 25];
    buf[..7].copy_from_slice(MAGIC_COOKIE);
    buf[7..9].copy_from_slice(b"sl");
    hex16(h.finish(), &mut buf[9..]);
    Branch { buf }
}

/// Puts `Via: SIP/2.0/<transport> <sent_by>;branch=<branch>` on top of the message.
pub fn add_via(msg: &mut Message, transport: &[u8], sent_by: &[u8], branch: &[u8]) {
    let mut v: SmallVec<[u8; 128]> = SmallVec::new();
    v.extend_from_slice(b"SIP/2.0/");
    v.extend_from_slice(transport);
    v.push(b' ');
    v.extend_from_slice(sent_by);
    v.extend_from_slice(b";branch=");
    v.extend_from_slice(branch);
    msg.insert_header_top(b"Via", &v);
}

// Max-Forwards (§16.6 item 3) is module maxfwd's; the forward paths use it too.
pub use crate::modules::maxfwd::{process_max_forwards, MaxForwards};

/// RFC 3261 §18.2.1 and RFC 3581 §4: on the sender's (top) Via, add `received=<source IP>` when the
/// sent-by host is not that IP, and fill in `rport=<source port>` (with `received`) when the sender
/// asked for it. Returns whether the Via was changed.
pub fn mark_received(msg: &mut Message, src: SocketAddr) -> Result<bool, ParseError> {
    mark_received_with(msg, src, |_| false)
}

/// As [`mark_received`], with `name_is_src(host)` telling whether a sent-by *name* resolves to the
/// source address (SER's `dns=yes`: then no `received` is needed). It must not block: answer from a
/// cache, `false` when unknown (adding `received` is always allowed).
pub fn mark_received_with(
    msg: &mut Message,
    src: SocketAddr,
    mut name_is_src: impl FnMut(&[u8]) -> bool,
) -> Result<bool, ParseError> {
    let (via_index, edits) = {
        let top = msg.top_via_value()?;
        let via = &top.via;
        let same_ip = match via.host {
            Host::V4(a) => IpAddr::V4(a) == src.ip(),
            Host::V6(a) => IpAddr::V6(a) == src.ip(),
            Host::Name(n) => name_is_src(n),
        };
        let rport = via.rport();
        if same_ip && rport.is_none() {
            return Ok(false);
        }
        let mut edits: SmallVec<[(Span, SmallVec<[u8; 64]>); 2]> = SmallVec::new();
        let mut ip = itoa_ip(src.ip());
        // rport: a flag asks for the port; a value is left as it is.
        if rport == Some(None) {
            if let Some((name, _)) = via.known.rport {
                if let Some(span) = msg.span_of(name) {
                    let mut v: SmallVec<[u8; 64]> = SmallVec::from_slice(b"rport=");
                    v.extend_from_slice(itoa::Buffer::new().format(src.port()).as_bytes());
                    edits.push((span, v));
                }
            }
        }
        match via.known.received {
            Some(v) => {
                if let Some(span) = msg.span_of(v) {
                    edits.push((span, std::mem::take(&mut ip)));
                }
            }
            None => {
                let end = top.span.end as usize;
                let mut v: SmallVec<[u8; 64]> = SmallVec::from_slice(b";received=");
                v.extend_from_slice(&ip);
                edits.push((Span::new(end, end), v));
            }
        }
        (top.index, edits)
    };
    let _ = via_index;
    for (span, bytes) in edits {
        msg.replace_span(span, &bytes);
    }
    Ok(true)
}

pub(crate) fn itoa_ip(ip: IpAddr) -> SmallVec<[u8; 64]> {
    let mut v: SmallVec<[u8; 64]> = SmallVec::new();
    match ip {
        // The common case without the formatting machinery (it showed in profiles).
        IpAddr::V4(a) => {
            let mut b = itoa::Buffer::new();
            for (i, o) in a.octets().iter().enumerate() {
                if i > 0 {
                    v.push(b'.');
                }
                v.extend_from_slice(b.format(*o).as_bytes());
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            // Writing into a SmallVec cannot fail; IPv6 is written without brackets (RFC 3261 ABNF).
            let _ = write!(v, "{ip}");
        }
    }
    v
}

/// Where a response goes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HopHost {
    Ip(IpAddr),
    /// A host name to resolve (maddr or sent-by without `received`).
    Name(SmallVec<[u8; 64]>),
}

/// The next hop of a response, from the Via below ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: HopHost,
    pub port: u16,
    pub transport: Transport,
}

/// The decision for a response received by a stateless proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseRoute {
    /// Remove our Via (header `index`, value `span`) and send to `hop`.
    Forward {
        index: usize,
        span: Span,
        hop: NextHop,
    },
    /// Drop it, with the reason for the log.
    Drop(&'static str),
}

/// The address RFC 3261 §18.2.2 and RFC 3581 send a response to, for a Via value.
pub fn via_destination(via: &Via<'_>) -> NextHop {
    let default_port = if via.transport == Transport::Tls {
        5061
    } else {
        5060
    };
    let rport = via.rport().flatten();
    if let Some(m) = via.maddr() {
        let host = match std::str::from_utf8(m)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            Some(ip) => HopHost::Ip(ip),
            None => HopHost::Name(SmallVec::from_slice(m)),
        };
        return NextHop {
            host,
            port: via.port.unwrap_or(default_port),
            transport: via.transport,
        };
    }
    let host = match via.received_ip() {
        Some(ip) => HopHost::Ip(ip),
        None => match via.host {
            Host::V4(a) => HopHost::Ip(IpAddr::V4(a)),
            Host::V6(a) => HopHost::Ip(IpAddr::V6(a)),
            Host::Name(n) => HopHost::Name(SmallVec::from_slice(n)),
        },
    };
    NextHop {
        host,
        port: rport.or(via.port).unwrap_or(default_port),
        transport: via.transport,
    }
}

/// Routes a response back (stateless): the top Via must be ours (`is_local`, applied only when
/// `check_via` is on, as SER's `check_via` option), and there must be a next Via; its destination must
/// not be a broadcast address.
pub fn route_response(
    msg: &Message,
    check_via: bool,
    is_local: impl Fn(&Via<'_>) -> bool,
) -> ResponseRoute {
    // Both Vias come from the parse-once cache when the §16.3 gate saw them.
    let top = match msg.top_via_value() {
        Ok(v) => v,
        Err(e) if e.kind == crate::wire::ErrorKind::MissingHeader => {
            return ResponseRoute::Drop("no Via")
        }
        Err(_) => return ResponseRoute::Drop("malformed top Via"),
    };
    if check_via && !is_local(&top.via) {
        return ResponseRoute::Drop("top Via is not ours (check_via)");
    }
    let next = match msg.second_via_value() {
        Some(Ok(v)) => v,
        Some(Err(_)) => return ResponseRoute::Drop("malformed second Via"),
        None => return ResponseRoute::Drop("response for us: no second Via"),
    };
    let hop = via_destination(&next.via);
    if let HopHost::Ip(ip) = hop.host {
        let broadcast = match ip {
            IpAddr::V4(a) => a.is_broadcast() || a.is_unspecified(),
            IpAddr::V6(a) => a.is_unspecified(),
        };
        if broadcast {
            return ResponseRoute::Drop("response to a broadcast address");
        }
    }
    ResponseRoute::Forward {
        index: top.index,
        span: top.span,
        hop,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(s: &str) -> Message {
        Message::parse(Bytes::from(s.to_string())).unwrap()
    }

    const INV: &str = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport\r\nMax-Forwards: 70\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn branch_is_stable_and_matches_cancel() {
        let inv = parse(INV);
        let again = parse(INV);
        let cancel = parse(
            &INV.replace("INVITE sip", "CANCEL sip")
                .replace("1 INVITE", "1 CANCEL"),
        );
        let b = stateless_branch(&inv, 7);
        assert!(b.as_bytes().starts_with(b"z9hG4bKsl"));
        assert_eq!(b, stateless_branch(&again, 7));
        assert_eq!(b, stateless_branch(&cancel, 7));
        assert_ne!(b, stateless_branch(&inv, 8), "salted per proxy");
        let other = parse(&INV.replace("z9hG4bKabc", "z9hG4bKabd"));
        assert_ne!(b, stateless_branch(&other, 7));
        // RFC 2543: no cookie; still stable and method-independent.
        let old = INV.replace(";branch=z9hG4bKabc", "");
        let old_cancel = old
            .replace("INVITE sip", "CANCEL sip")
            .replace("1 INVITE", "1 CANCEL");
        assert_eq!(
            stateless_branch(&parse(&old), 1),
            stateless_branch(&parse(&old_cancel), 1)
        );
    }

    #[test]
    fn forward_edits() {
        let mut m = parse(INV);
        assert!(mark_received(&mut m, "192.0.2.9:40000".parse().unwrap()).unwrap());
        assert_eq!(
            process_max_forwards(&mut m, 70).unwrap(),
            MaxForwards::Decremented(69)
        );
        let b = stateless_branch(&m, 1);
        add_via(&mut m, b"UDP", b"192.0.2.1:5060", b.as_bytes());
        let out = m.to_bytes();
        let f = Message::parse(out).unwrap();
        // Processing twice (script, then forward) decrements once: the same span is rewritten.
        let mut twice = parse(INV);
        process_max_forwards(&mut twice, 70).unwrap();
        process_max_forwards(&mut twice, 70).unwrap();
        assert_eq!(
            Message::parse(twice.to_bytes())
                .unwrap()
                .max_forwards()
                .unwrap()
                .unwrap(),
            69
        );
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().via.raw.to_vec()).collect();
        assert_eq!(
            vias[0],
            format!("SIP/2.0/UDP 192.0.2.1:5060;branch={b:?}").into_bytes()
        );
        assert_eq!(
            vias[1],
            b"SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport=40000;received=192.0.2.9".to_vec()
        );
        assert_eq!(f.max_forwards().unwrap().unwrap(), 69);

        let mut m = parse(&INV.replace("Max-Forwards: 70\r\n", ""));
        assert_eq!(
            process_max_forwards(&mut m, 10).unwrap(),
            MaxForwards::Added(10)
        );
        assert_eq!(
            Message::parse(m.to_bytes())
                .unwrap()
                .max_forwards()
                .unwrap()
                .unwrap(),
            10
        );
        let mut m = parse(&INV.replace("Max-Forwards: 70", "Max-Forwards: 0"));
        assert_eq!(
            process_max_forwards(&mut m, 10).unwrap(),
            MaxForwards::Exhausted
        );

        // dns=yes: a sent-by name known to resolve to the source needs no received.
        let named = INV.replace(
            "10.0.0.1:5070;branch=z9hG4bKabc;rport",
            "pc.example.com;branch=z9hG4bKabc",
        );
        let mut m = parse(&named);
        assert!(
            !mark_received_with(&mut m, "10.0.0.1:5070".parse().unwrap(), |n| n
                == b"pc.example.com")
            .unwrap()
        );
        let mut m = parse(&named);
        assert!(mark_received(&mut m, "10.0.0.1:5070".parse().unwrap()).unwrap());
        // Same IP, no rport: nothing to add.
        let mut m = parse(&INV.replace(";rport", ""));
        assert!(!mark_received(&mut m, "10.0.0.1:5070".parse().unwrap()).unwrap());
        assert!(!m.has_edits());
    }

    #[test]
    fn responses_go_back_by_via() {
        let r = parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsl1\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport=40000;received=192.0.2.9\r\nTo: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n");
        match route_response(&r, true, |v| v.host_raw == b"192.0.2.1") {
            ResponseRoute::Forward { hop, span, .. } => {
                assert_eq!(hop.host, HopHost::Ip("192.0.2.9".parse().unwrap()));
                assert_eq!(hop.port, 40000);
                assert_eq!(
                    r.slice(span),
                    b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsl1"
                );
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(
            route_response(&r, true, |_| false),
            ResponseRoute::Drop("top Via is not ours (check_via)")
        );
        let bcast = parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsl1\r\nVia: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1\r\nTo: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!(
            route_response(&bcast, false, |_| true),
            ResponseRoute::Drop("response to a broadcast address")
        );
        let named = parse("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsl1\r\nVia: SIP/2.0/TLS pc.example.com;branch=z9hG4bK1\r\nTo: <sip:b@x>;tag=2\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n");
        match route_response(&named, false, |_| true) {
            ResponseRoute::Forward { hop, .. } => {
                assert_eq!(
                    hop.host,
                    HopHost::Name(SmallVec::from_slice(b"pc.example.com"))
                );
                assert_eq!((hop.port, hop.transport), (5061, Transport::Tls));
            }
            d => panic!("{d:?}"),
        }
    }
}
