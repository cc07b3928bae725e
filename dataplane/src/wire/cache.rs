//! Parse once: the values every request asks for several times (the Request-URI, the top Via, From
//! and To) are parsed on first access and kept in the [`Message`](super::Message) as offsets into its
//! buffer, so the §16.3 gate, `received`/`rport`, the stateless reply's tag, the script and the
//! transaction layer share one parse.
//!
//! Invariants: a cached entry holds offsets into the message's own buffer (which never changes after
//! parsing) or the parse error, exactly what parsing again would give. Thawing rebuilds the borrowed
//! view (`Uri<'_>`, `Via<'_>`, `NameAddr<'_>`) from those offsets without reading the bytes again.
//! A value whose parts cannot be located in the buffer is simply not cached.

use std::cell::{Cell, OnceCell};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::chars::offset_in;
use super::contact::Contact;
use super::error::Result;
use super::message::Span;
use super::name_addr::NameAddr;
use super::params::Params;
use super::uri::{Host, Scheme, Uri};
use super::via::{Transport, Via, ViaKnown};

/// A byte range of the buffer (start, end).
#[derive(Debug, Clone, Copy)]
struct At(u32, u32);

fn at(buf: &[u8], s: &[u8]) -> Option<At> {
    if s.is_empty() {
        // Parsers hand out empty slices from anywhere (e.g. a static empty parameter list).
        return Some(At(0, 0));
    }
    let o = offset_in(buf, s)?;
    Some(At(o as u32, (o + s.len()) as u32))
}

fn opt(buf: &[u8], s: Option<&[u8]>) -> Option<Option<At>> {
    match s {
        None => Some(None),
        Some(s) => at(buf, s).map(Some),
    }
}

fn get(buf: &[u8], a: At) -> &[u8] {
    buf.get(a.0 as usize..a.1 as usize).unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
enum HostAt {
    Name(At),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl HostAt {
    fn freeze(buf: &[u8], h: &Host<'_>) -> Option<HostAt> {
        Some(match *h {
            Host::Name(n) => HostAt::Name(at(buf, n)?),
            Host::V4(a) => HostAt::V4(a),
            Host::V6(a) => HostAt::V6(a),
        })
    }

    fn thaw<'a>(&self, buf: &'a [u8]) -> Host<'a> {
        match *self {
            HostAt::Name(n) => Host::Name(get(buf, n)),
            HostAt::V4(a) => Host::V4(a),
            HostAt::V6(a) => Host::V6(a),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct UriAt {
    raw: At,
    scheme: Scheme,
    scheme_raw: At,
    user: Option<At>,
    password: Option<At>,
    host: HostAt,
    host_raw: At,
    port: Option<u16>,
    params: At,
    headers: Option<At>,
    opaque: At,
}

impl UriAt {
    pub(super) fn freeze(buf: &[u8], u: &Uri<'_>) -> Option<UriAt> {
        Some(UriAt {
            raw: at(buf, u.raw)?,
            scheme: u.scheme,
            scheme_raw: at(buf, u.scheme_raw)?,
            user: opt(buf, u.user)?,
            password: opt(buf, u.password)?,
            host: HostAt::freeze(buf, &u.host)?,
            host_raw: at(buf, u.host_raw)?,
            port: u.port,
            params: at(buf, u.params.raw())?,
            headers: opt(buf, u.headers)?,
            opaque: at(buf, u.opaque)?,
        })
    }

    pub(super) fn thaw<'a>(&self, buf: &'a [u8]) -> Uri<'a> {
        Uri {
            raw: get(buf, self.raw),
            scheme: self.scheme,
            scheme_raw: get(buf, self.scheme_raw),
            user: self.user.map(|a| get(buf, a)),
            password: self.password.map(|a| get(buf, a)),
            host: self.host.thaw(buf),
            host_raw: get(buf, self.host_raw),
            port: self.port,
            params: Params::validated(get(buf, self.params)),
            headers: self.headers.map(|a| get(buf, a)),
            opaque: get(buf, self.opaque),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ViaAt {
    /// Header index and value span of the top Via (what `ViaValue` carries).
    pub(super) index: usize,
    pub(super) span: Span,
    raw: At,
    protocol: At,
    version: At,
    transport: Transport,
    transport_raw: At,
    host: HostAt,
    host_raw: At,
    port: Option<u16>,
    params: At,
    branch: Option<At>,
    received: Option<At>,
    rport: Option<(At, Option<At>)>,
    maddr: Option<At>,
    ttl: Option<At>,
}

impl ViaAt {
    /// The `branch` value, without rebuilding the whole Via.
    pub(super) fn branch<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.branch.map(|a| get(buf, a))
    }

    pub(super) fn freeze(buf: &[u8], index: usize, span: Span, v: &Via<'_>) -> Option<ViaAt> {
        Some(ViaAt {
            index,
            span,
            raw: at(buf, v.raw)?,
            protocol: at(buf, v.protocol)?,
            version: at(buf, v.version)?,
            transport: v.transport,
            transport_raw: at(buf, v.transport_raw)?,
            host: HostAt::freeze(buf, &v.host)?,
            host_raw: at(buf, v.host_raw)?,
            port: v.port,
            params: at(buf, v.params.raw())?,
            branch: opt(buf, v.known.branch)?,
            received: opt(buf, v.known.received)?,
            rport: match v.known.rport {
                None => None,
                Some((name, value)) => Some((at(buf, name)?, opt(buf, value)?)),
            },
            maddr: opt(buf, v.known.maddr)?,
            ttl: opt(buf, v.known.ttl)?,
        })
    }

    pub(super) fn thaw<'a>(&self, buf: &'a [u8]) -> Via<'a> {
        Via {
            raw: get(buf, self.raw),
            protocol: get(buf, self.protocol),
            version: get(buf, self.version),
            transport: self.transport,
            transport_raw: get(buf, self.transport_raw),
            host: self.host.thaw(buf),
            host_raw: get(buf, self.host_raw),
            port: self.port,
            params: Params::validated(get(buf, self.params)),
            known: ViaKnown {
                branch: self.branch.map(|a| get(buf, a)),
                received: self.received.map(|a| get(buf, a)),
                rport: self
                    .rport
                    .map(|(n, v)| (get(buf, n), v.map(|a| get(buf, a)))),
                maddr: self.maddr.map(|a| get(buf, a)),
                ttl: self.ttl.map(|a| get(buf, a)),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct NameAddrAt {
    raw: At,
    display: Option<At>,
    uri: UriAt,
    uri_raw: At,
    angle: bool,
    params: At,
    /// The `tag` parameter (From/To): asked for by the stateless To-tag, transaction matching
    /// and dialog checks, each of which would otherwise walk the parameters again.
    tag: Option<At>,
}

impl NameAddrAt {
    pub(super) fn freeze(buf: &[u8], n: &NameAddr<'_>) -> Option<NameAddrAt> {
        Some(NameAddrAt {
            raw: at(buf, n.raw)?,
            display: opt(buf, n.display)?,
            uri: UriAt::freeze(buf, &n.uri)?,
            uri_raw: at(buf, n.uri_raw)?,
            angle: n.angle,
            params: at(buf, n.params.raw())?,
            tag: opt(buf, n.tag())?,
        })
    }

    pub(super) fn has_tag(&self) -> bool {
        self.tag.is_some()
    }

    pub(super) fn tag<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.tag.map(|a| get(buf, a))
    }

    pub(super) fn thaw<'a>(&self, buf: &'a [u8]) -> NameAddr<'a> {
        NameAddr {
            raw: get(buf, self.raw),
            display: self.display.map(|a| get(buf, a)),
            uri: self.uri.thaw(buf),
            uri_raw: get(buf, self.uri_raw),
            angle: self.angle,
            params: Params::validated(get(buf, self.params)),
        }
    }
}

/// The message's only Contact value (set when the §16.3 gate found exactly one).
#[derive(Debug, Clone, Copy)]
pub(super) struct ContactAt {
    pub(super) index: usize,
    pub(super) span: Span,
    addr: NameAddrAt,
    start: usize,
    end: usize,
}

impl ContactAt {
    pub(super) fn freeze(
        buf: &[u8],
        index: usize,
        span: Span,
        c: &Contact<'_>,
    ) -> Option<ContactAt> {
        Some(ContactAt {
            index,
            span,
            addr: NameAddrAt::freeze(buf, &c.addr)?,
            start: c.start,
            end: c.end,
        })
    }

    pub(super) fn thaw<'a>(&self, buf: &'a [u8]) -> Contact<'a> {
        Contact {
            addr: self.addr.thaw(buf),
            start: self.start,
            end: self.end,
        }
    }
}

/// One of two iterators (a cached single value, or the parsing one).
pub(super) enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<T, L: Iterator<Item = T>, R: Iterator<Item = T>> Iterator for Either<L, R> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match self {
            Either::Left(l) => l.next(),
            Either::Right(r) => r.next(),
        }
    }
}

/// One cached parse: not tried yet, or its outcome.
// Set once, read by reference: a `Cell` would copy the frozen value (a Via is ~200 bytes) out
// on every access.
type Slot<T> = OnceCell<Result<T>>;

/// The parse-once cache of one message.
#[derive(Debug, Default)]
pub(super) struct ParseCache {
    pub(super) request_uri: Slot<UriAt>,
    pub(super) top_via: Slot<ViaAt>,
    /// The second Via, when the gate saw one (a response is routed by it).
    pub(super) second_via: OnceCell<ViaAt>,
    pub(super) from: Slot<NameAddrAt>,
    pub(super) to: Slot<NameAddrAt>,
    /// Only ever set to the single contact of a message that has exactly one.
    pub(super) only_contact: OnceCell<ContactAt>,
    /// A valid Call-ID (errors are not kept: they are answered at once).
    pub(super) call_id: Cell<Option<BytesAt>>,
    /// A valid CSeq: number and method.
    pub(super) cseq: Cell<Option<(u32, BytesAt)>>,
}

/// A validated value kept as its place in the buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct BytesAt(At);

impl BytesAt {
    pub(super) fn freeze(buf: &[u8], s: &[u8]) -> Option<BytesAt> {
        at(buf, s).map(BytesAt)
    }

    pub(super) fn thaw<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        get(buf, self.0)
    }
}

impl Clone for ParseCache {
    fn clone(&self) -> Self {
        ParseCache {
            request_uri: self.request_uri.clone(),
            top_via: self.top_via.clone(),
            second_via: self.second_via.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            only_contact: self.only_contact.clone(),
            call_id: Cell::new(self.call_id.get()),
            cseq: Cell::new(self.cseq.get()),
        }
    }
}

/// Returns the cached outcome of `slot`, or computes it with `parse`, caching what `freeze` can
/// express as offsets (an error is always cacheable).
pub(super) fn cached<'a, T: Copy, V>(
    slot: &Slot<T>,
    buf: &'a [u8],
    parse: impl FnOnce() -> Result<V>,
    freeze: impl FnOnce(&V) -> Option<T>,
    thaw: impl FnOnce(&T, &'a [u8]) -> V,
) -> Result<V> {
    if let Some(r) = slot.get() {
        return match r {
            Ok(t) => Ok(thaw(t, buf)),
            Err(e) => Err(*e),
        };
    }
    let r = parse();
    match &r {
        Ok(v) => {
            if let Some(t) = freeze(v) {
                let _ = slot.set(Ok(t));
            }
        }
        Err(e) => {
            let _ = slot.set(Err(*e));
        }
    }
    r
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::wire::name_addr::NameAddr;
    use crate::wire::uri::Uri;
    use crate::wire::via::parse_vias;
    use crate::wire::{HeaderId, Message};
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@[2001:db8::1]:5070;transport=tcp?x=y SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example:5070;branch=z9hG4bK1;received=10.0.0.1;rport, SIP/2.0/TCP h2\r\n\
To: \"Bob B\" <sip:bob@biloxi.com;user=phone>;tag=x\r\n\
f: sips:alice:pw@192.0.2.4;tag=1928301774\r\n\
i: a84b4c76e66710\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn cached_values_are_what_a_fresh_parse_gives() {
        let m = Message::parse(Bytes::from_static(REQ)).unwrap();
        let fresh_uri = Uri::parse(b"sip:bob@[2001:db8::1]:5070;transport=tcp?x=y").unwrap();
        let via_value = m.header_value(HeaderId::Via).unwrap();
        let (fresh_via, s, e) = parse_vias(via_value).next().unwrap().unwrap();
        let fresh_to = NameAddr::parse(m.header_value(HeaderId::To).unwrap()).unwrap();
        let fresh_from = NameAddr::parse(m.header_value(HeaderId::From).unwrap()).unwrap();
        for _ in 0..3 {
            assert_eq!(m.request_uri().unwrap().unwrap(), fresh_uri);
            let top = m.top_via_value().unwrap();
            assert_eq!(top.via, fresh_via);
            assert_eq!(top.span.end - top.span.start, (e - s) as u32);
            assert_eq!(m.to().unwrap(), fresh_to);
            assert_eq!(m.from().unwrap(), fresh_from);
        }
        assert!(m.check().is_err(), "headers in the Request-URI are refused");
        // After check() (which seeds the top Via) the values are still the same.
        assert_eq!(m.top_via().unwrap(), fresh_via);
        let c = m.clone();
        assert_eq!(c.from().unwrap(), fresh_from);
    }

    #[test]
    fn errors_are_cached_as_errors() {
        let m = Message::parse(Bytes::from_static(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:@x>;tag=1\r\n\
To: <sip:b@c>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let first = m.from().unwrap_err();
        assert_eq!(m.from().unwrap_err(), first);
        assert!(m.to().is_ok());
    }

    #[test]
    fn a_single_contact_is_kept_and_several_are_parsed_each_time() {
        for (contacts, n) in [
            ("Contact: <sip:a@192.0.2.1:5060>;expires=60\r\n", 1),
            (
                "Contact: <sip:bench2@127.0.0.1:46716>\r\nExpires: 3600\r\n",
                1,
            ),
            (
                "Contact: <sip:a@192.0.2.1>, sip:b@h;q=0.5\r\nm: <sip:c@h>\r\n",
                3,
            ),
        ] {
            let text = format!(
                "REGISTER sip:h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n{contacts}\
Content-Length: 0\r\n\r\n"
            );
            let m = Message::parse(Bytes::from(text)).unwrap();
            let before: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
            m.check().unwrap();
            let after: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
            assert_eq!(before.len(), n);
            assert_eq!(after.len(), n);
            for (b, a) in before.iter().zip(&after) {
                assert_eq!((b.index, b.span), (a.index, a.span));
                assert_eq!(b.value.addr, a.value.addr);
                assert_eq!((b.value.start, b.value.end), (a.value.start, a.value.end));
            }
            assert_eq!(m.cache.only_contact.get().is_some(), n == 1, "{contacts}");
            assert!(matches!(m.cache.from.get(), Some(Ok(_))));
            assert!(matches!(m.cache.to.get(), Some(Ok(_))));
            assert!(matches!(m.cache.request_uri.get(), Some(Ok(_))));
        }
    }
}
