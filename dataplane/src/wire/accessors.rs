//! Typed, lazy access to a [`Message`]'s values.
//!
//! Nothing here runs at parse time: each accessor parses the header value(s) it needs when it is
//! called, with the sub-parsers (`uri`, `via`, `name_addr`, …), and returns views borrowing the
//! message buffer. They are cheap enough to call again; a caller that needs a value several times
//! keeps the result. Error offsets (`ParseError::at`) are offsets into the message.
//!
//! [`Message::check`] is the syntax gate a proxy runs before the script (RFC 3261 §16.3 item 1, and
//! the mandatory headers of §8.1.1): every value a proxy relies on parses, single headers are single,
//! and the CSeq method matches the request line.

use super::chars::split_commas;
use super::contact::{contacts, Contact};
use super::cseq::CSeq;
use super::digest::Credentials;
use super::error::{ErrorKind, ParseError, Result};
use super::header::HeaderId;
use super::message::{HeaderField, Message, Span};
use super::name_addr::NameAddr;
use super::scalar::{self, MediaType};
use super::uri::Uri;
use super::via::{parse_vias, Via};

/// One Via value with where it is: the header field holding it and its span in the message.
#[derive(Debug, Clone, Copy)]
pub struct ViaValue<'a> {
    pub index: usize,
    pub span: Span,
    pub via: Via<'a>,
}

/// One value of a list header (Contact, Route, Record-Route…) with where it is.
#[derive(Debug, Clone, Copy)]
pub struct Located<T> {
    /// Index of the header field holding it.
    pub index: usize,
    /// Its span in the message.
    pub span: Span,
    pub value: T,
}

use super::cache::{self, ContactAt, NameAddrAt, UriAt, ViaAt};

impl Message {
    fn value_offset(&self, h: &HeaderField<'_>) -> usize {
        self.headers
            .get(h.index)
            .map_or(0, |e| e.value.start as usize)
    }

    /// The one header field with this id: `MissingHeader` when absent. (Duplicates are found by
    /// [`Message::check`]; here the first one counts.)
    fn single(&self, id: HeaderId) -> Result<(HeaderField<'_>, usize)> {
        let h = self.header(id).ok_or(ParseError::new(
            ErrorKind::MissingHeader,
            self.headers_end(),
        ))?;
        let off = self.value_offset(&h);
        Ok((h, off))
    }

    /// The Request-URI, parsed (`None` for a response).
    pub fn request_uri(&self) -> Option<Result<Uri<'_>>> {
        let span = self.request_uri_span()?;
        let buf = &self.buf[..];
        Some(cache::cached(
            &self.cache.request_uri,
            buf,
            || Uri::parse(self.slice(span)).map_err(|e| e.offset(span.start as usize)),
            |u| UriAt::freeze(buf, u),
            |t, b| t.thaw(b),
        ))
    }

    /// Every Via value of every Via header field, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<ViaValue<'_>>> + '_ {
        self.headers_by_id(HeaderId::Via).flat_map(move |h| {
            let off = self.value_offset(&h);
            let index = h.index;
            parse_vias(h.value).map(move |r| match r {
                Ok((via, s, e)) => Ok(ViaValue {
                    index,
                    span: Span::new(off + s, off + e),
                    via,
                }),
                Err(e) => Err(e.offset(off)),
            })
        })
    }

    /// The topmost Via (`MissingHeader` when there is none).
    pub fn top_via(&self) -> Result<Via<'_>> {
        self.top_via_value().map(|v| v.via)
    }

    /// The top Via's `branch` (read from the parse-once cache when the Via was parsed already:
    /// the stateless reply's To-tag asks for it on every request).
    pub fn top_via_branch(&self) -> Option<&[u8]> {
        if let Some(Ok(t)) = self.cache.top_via.get() {
            return t.branch(&self.buf);
        }
        self.top_via().ok().and_then(|v| v.branch())
    }

    /// The topmost Via value with where it is (parsed once per message).
    pub fn top_via_value(&self) -> Result<ViaValue<'_>> {
        let buf = &self.buf[..];
        cache::cached(
            &self.cache.top_via,
            buf,
            || match self.vias().next() {
                Some(r) => r,
                None => Err(ParseError::new(
                    ErrorKind::MissingHeader,
                    self.headers_end(),
                )),
            },
            |v| ViaAt::freeze(buf, v.index, v.span, &v.via),
            |t, b| ViaValue {
                index: t.index,
                span: t.span,
                via: t.thaw(b),
            },
        )
    }

    /// The second Via value (where a response goes next), `None` when there is only one.
    pub fn second_via_value(&self) -> Option<Result<ViaValue<'_>>> {
        if let Some(t) = self.cache.second_via.get() {
            return Some(Ok(ViaValue {
                index: t.index,
                span: t.span,
                via: t.thaw(&self.buf[..]),
            }));
        }
        self.vias().nth(1)
    }

    /// The From header as a name-addr.
    pub fn from(&self) -> Result<NameAddr<'_>> {
        let buf = &self.buf[..];
        cache::cached(
            &self.cache.from,
            buf,
            || {
                let (h, off) = self.single(HeaderId::From)?;
                NameAddr::parse(h.value).map_err(|e| e.offset(off))
            },
            |n| NameAddrAt::freeze(buf, n),
            |t, b| t.thaw(b),
        )
    }

    /// The To header as a name-addr.
    pub fn to(&self) -> Result<NameAddr<'_>> {
        let buf = &self.buf[..];
        cache::cached(
            &self.cache.to,
            buf,
            || {
                let (h, off) = self.single(HeaderId::To)?;
                NameAddr::parse(h.value).map_err(|e| e.offset(off))
            },
            |n| NameAddrAt::freeze(buf, n),
            |t, b| t.thaw(b),
        )
    }

    /// The From tag: `None` when From has none or does not parse (as
    /// `from().ok().and_then(|f| f.tag())`, without rebuilding the name-addr once it is cached).
    pub fn from_tag(&self) -> Option<&[u8]> {
        if let Some(Ok(t)) = self.cache.from.get() {
            return t.tag(&self.buf);
        }
        self.from().ok().and_then(|f| f.tag())
    }

    /// The To tag, as [`Message::from_tag`].
    pub fn to_tag(&self) -> Option<&[u8]> {
        if let Some(Ok(t)) = self.cache.to.get() {
            return t.tag(&self.buf);
        }
        self.to().ok().and_then(|t| t.tag())
    }

    /// The Call-ID, validated.
    pub fn call_id(&self) -> Result<&[u8]> {
        let buf = &self.buf[..];
        if let Some(a) = self.cache.call_id.get() {
            return Ok(a.thaw(buf));
        }
        let (h, off) = self.single(HeaderId::CallId)?;
        let v = scalar::call_id(h.value).map_err(|e| e.offset(off))?;
        self.cache.call_id.set(cache::BytesAt::freeze(buf, v));
        Ok(v)
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Result<CSeq<'_>> {
        let buf = &self.buf[..];
        if let Some((num, m)) = self.cache.cseq.get() {
            return Ok(CSeq {
                num,
                method: m.thaw(buf),
            });
        }
        let (h, off) = self.single(HeaderId::CSeq)?;
        let c = CSeq::parse(h.value).map_err(|e| e.offset(off))?;
        self.cache
            .cseq
            .set(cache::BytesAt::freeze(buf, c.method).map(|m| (c.num, m)));
        Ok(c)
    }

    /// Max-Forwards (0..=255), when present.
    pub fn max_forwards(&self) -> Option<Result<u8>> {
        let (h, off) = self.single(HeaderId::MaxForwards).ok()?;
        Some(scalar::max_forwards(h.value).map_err(|e| e.offset(off)))
    }

    /// The Expires header in seconds, when present.
    pub fn expires(&self) -> Option<Result<u32>> {
        let (h, off) = self.single(HeaderId::Expires).ok()?;
        Some(scalar::expires(h.value).map_err(|e| e.offset(off)))
    }

    /// The Content-Type, when present.
    pub fn content_type(&self) -> Option<Result<MediaType<'_>>> {
        let (h, off) = self.single(HeaderId::ContentType).ok()?;
        Some(scalar::media_type(h.value).map_err(|e| e.offset(off)))
    }

    /// Whether the request's only Contact is `*` (remove every binding, RFC 3261 §10.2.2).
    /// `BadContact` when `*` is mixed with other contacts.
    pub fn contact_is_star(&self) -> Result<bool> {
        // Without a '*' byte no element can be one, and only a '*' makes the list bad: skip the
        // quote-aware split (it showed at ~1,100 instructions per REGISTER).
        if self
            .headers_by_id(HeaderId::Contact)
            .all(|h| memchr::memchr(b'*', h.value).is_none())
        {
            return Ok(false);
        }
        let mut star = false;
        let mut others = false;
        for h in self.headers_by_id(HeaderId::Contact) {
            for (v, s, _) in split_commas(h.value) {
                if v == b"*" {
                    if star || others {
                        return Err(ParseError::new(
                            ErrorKind::BadContact,
                            self.value_offset(&h) + s,
                        ));
                    }
                    star = true;
                } else {
                    if star {
                        return Err(ParseError::new(
                            ErrorKind::BadContact,
                            self.value_offset(&h) + s,
                        ));
                    }
                    others = true;
                }
            }
        }
        Ok(star)
    }

    /// Every contact of every Contact header field, in order (a `*` yields `BadContact`; ask
    /// [`Message::contact_is_star`] first).
    pub fn contacts(&self) -> impl Iterator<Item = Result<Located<Contact<'_>>>> + '_ {
        if let Some(c) = self.cache.only_contact.get() {
            // The gate parsed the one Contact already.
            return cache::Either::Left(std::iter::once(Ok(Located {
                index: c.index,
                span: c.span,
                value: c.thaw(&self.buf),
            })));
        }
        cache::Either::Right(self.headers_by_id(HeaderId::Contact).flat_map(move |h| {
            let off = self.value_offset(&h);
            let index = h.index;
            contacts(h.value).map(move |r| match r {
                Ok(c) => Ok(Located {
                    index,
                    span: Span::new(off + c.start, off + c.end),
                    value: c,
                }),
                Err(e) => Err(e.offset(off)),
            })
        }))
    }

    /// Every name-addr of every header field with this id (Route, Record-Route, Path…), in order.
    pub fn name_addrs(
        &self,
        id: HeaderId,
    ) -> impl Iterator<Item = Result<Located<NameAddr<'_>>>> + '_ {
        self.headers_by_id(id).flat_map(move |h| {
            let off = self.value_offset(&h);
            let index = h.index;
            split_commas(h.value).map(move |(v, s, e)| {
                if v.is_empty() {
                    return Err(ParseError::new(ErrorKind::BadNameAddr, off + s));
                }
                NameAddr::parse(v)
                    .map(|value| Located {
                        index,
                        span: Span::new(off + s, off + e),
                        value,
                    })
                    .map_err(|err| err.offset(off + s))
            })
        })
    }

    /// Route values, top first.
    pub fn routes(&self) -> impl Iterator<Item = Result<Located<NameAddr<'_>>>> + '_ {
        self.name_addrs(HeaderId::Route)
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<Located<NameAddr<'_>>>> + '_ {
        self.name_addrs(HeaderId::RecordRoute)
    }

    /// Credentials of every header field with this id (Authorization or Proxy-Authorization).
    fn credentials(
        &self,
        id: HeaderId,
    ) -> impl Iterator<Item = Result<Located<Credentials<'_>>>> + '_ {
        self.headers_by_id(id).map(move |h| {
            let off = self.value_offset(&h);
            Credentials::parse(h.value)
                .map(|value| Located {
                    index: h.index,
                    span: Span::new(off, off + h.value.len()),
                    value,
                })
                .map_err(|e| e.offset(off))
        })
    }

    /// Authorization credentials (one per header field).
    pub fn authorization(&self) -> impl Iterator<Item = Result<Located<Credentials<'_>>>> + '_ {
        self.credentials(HeaderId::Authorization)
    }

    /// Proxy-Authorization credentials (one per header field).
    pub fn proxy_authorization(
        &self,
    ) -> impl Iterator<Item = Result<Located<Credentials<'_>>>> + '_ {
        self.credentials(HeaderId::ProxyAuthorization)
    }

    /// The option tags of every header field with this id (Require, Proxy-Require, Supported…).
    pub fn option_tags(&self, id: HeaderId) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        self.headers_by_id(id).flat_map(move |h| {
            let off = self.value_offset(&h);
            scalar::token_list(h.value).map(move |r| r.map_err(|e| e.offset(off)))
        })
    }

    /// Require option tags.
    pub fn require(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        self.option_tags(HeaderId::Require)
    }

    /// Proxy-Require option tags.
    pub fn proxy_require(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        self.option_tags(HeaderId::ProxyRequire)
    }

    /// Supported option tags.
    pub fn supported(&self) -> impl Iterator<Item = Result<&[u8]>> + '_ {
        self.option_tags(HeaderId::Supported)
    }

    /// The syntax gate for a response a proxy forwards or matches to a transaction (RFC 3261
    /// §18.1.2, §17.1.3, §16.7): every Via parseable and at most `max_vias` of them, exactly one
    /// From, To, Call-ID and CSeq, a valid Call-ID and CSeq. From, To, Contact and the route sets
    /// are not the proxy's to judge in a response; they are parsed when something asks for them
    /// (an onreply_route, a dialog) and an error then is that caller's.
    pub fn check_response(&self) -> Result<()> {
        self.check_vias()?;
        self.check_single_headers()?;
        for id in [HeaderId::From, HeaderId::To] {
            self.single(id)?;
        }
        self.call_id()?;
        self.cseq()?;
        Ok(())
    }

    /// At least one Via, at most `max_vias`, each parseable; the first two are kept.
    fn check_vias(&self) -> Result<()> {
        let mut n_via = 0usize;
        for v in self.vias() {
            let v = v?;
            if n_via == 0 && self.cache.top_via.get().is_none() {
                // The top Via is asked for again by nearly every later step: keep this parse.
                if let Some(t) = ViaAt::freeze(&self.buf, v.index, v.span, &v.via) {
                    let _ = self.cache.top_via.set(Ok(t));
                }
            } else if n_via == 1 {
                // A response is routed by the second one.
                if let Some(t) = ViaAt::freeze(&self.buf, v.index, v.span, &v.via) {
                    let _ = self.cache.second_via.set(t);
                }
            }
            n_via += 1;
            if n_via > usize::from(self.max_vias) {
                return Err(ParseError::new(
                    ErrorKind::TooManyVias,
                    self.headers_start(),
                ));
            }
        }
        if n_via == 0 {
            return Err(ParseError::new(
                ErrorKind::MissingHeader,
                self.headers_end(),
            ));
        }
        Ok(())
    }

    /// From, To, Call-ID, CSeq and Max-Forwards at most once each.
    fn check_single_headers(&self) -> Result<()> {
        for id in [
            HeaderId::From,
            HeaderId::To,
            HeaderId::CallId,
            HeaderId::CSeq,
            HeaderId::MaxForwards,
        ] {
            if !self.repeats(id) {
                continue;
            }
            let mut it = self.headers_by_id(id);
            if let (Some(_), Some(second)) = (it.next(), it.next()) {
                let at = self
                    .headers
                    .get(second.index)
                    .map_or(0, |e| e.name.start as usize);
                return Err(ParseError::new(ErrorKind::DuplicateHeader, at));
            }
        }
        Ok(())
    }

    /// The syntax gate before routing (RFC 3261 §16.3 item 1, §8.1.1, §8.2.2): a message that
    /// passes has a parseable Request-URI (requests), at least one Via and every Via parseable, at
    /// most `max_vias` of them, exactly one From, To, Call-ID and CSeq, all parseable, a CSeq
    /// method equal to the request's, no `?headers` in the Request-URI, Max-Forwards (if present) in 0..=255, and parseable Contact,
    /// Route and Record-Route values. Application-level verdicts (416 for an unknown scheme, 420,
    /// 483) are the proxy's, not this check's.
    pub fn check(&self) -> Result<()> {
        if let Some(r) = self.request_uri() {
            let uri = r?;
            // RFC 3261 §19.1.1: headers are not allowed in a Request-URI; a proxy must never turn
            // them into real headers (RFC 4475 escruri), so the request is refused.
            if let Some(h) = uri.headers {
                let at = self.span_of(h).map_or(0, |s| s.start as usize);
                return Err(ParseError::new(ErrorKind::BadUri, at.saturating_sub(1)));
            }
        }
        self.check_vias()?;
        self.check_single_headers()?;
        // RFC 3261 §7.3.1: a parameter may not be repeated; two tags make the dialog ambiguous.
        for (id, na) in [(HeaderId::From, self.from()?), (HeaderId::To, self.to()?)] {
            // Two parameters need two ';': the usual single tag is not walked again.
            if memchr::memchr_iter(b';', na.params.raw()).nth(1).is_none() {
                continue;
            }
            let mut tags = na
                .params
                .iter()
                .filter(|p| p.name.eq_ignore_ascii_case(b"tag"));
            if let (Some(_), Some(second)) = (tags.next(), tags.next()) {
                let at = self.span_of(second.name).map_or_else(
                    || self.header(id).map_or(0, |h| self.value_offset(&h)),
                    |s| s.start as usize,
                );
                return Err(ParseError::new(ErrorKind::DuplicateParam, at));
            }
        }
        self.call_id()?;
        let cseq = self.cseq()?;
        if self.is_request() && cseq.method != self.method_bytes() {
            let at = self
                .header(HeaderId::CSeq)
                .map_or(0, |h| self.value_offset(&h));
            return Err(ParseError::new(ErrorKind::CSeqMethodMismatch, at));
        }
        if let Some(mf) = self.max_forwards() {
            mf?;
        }
        if self.contact_is_star()? {
            // `*` is only meaningful in REGISTER with Expires: 0 — the registrar judges that.
        } else {
            let mut only = None;
            let mut n = 0usize;
            for c in self.contacts() {
                let c = c?;
                n += 1;
                if n == 1 {
                    only = Some(c);
                }
            }
            if let (1, Some(c)) = (n, only) {
                if let Some(t) = ContactAt::freeze(&self.buf, c.index, c.span, &c.value) {
                    let _ = self.cache.only_contact.set(t);
                }
            }
        }
        for r in self.routes() {
            r?;
        }
        for r in self.record_routes() {
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::uri::{Host, Scheme};
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.com;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example:5070;branch=z9hG4bK1;received=10.0.0.1, SIP/2.0/TCP [2001:db8::1];branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP pc33.atlanta.com;rport=5060;branch=z9hG4bK3\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p2.example;lr>, <sip:p3.example;lr>\r\n\
Route: <sip:p4.example;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
f: \"Alice\" <sip:alice@atlanta.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@pc33.atlanta.com>;expires=60;q=0.5, sip:alice@10.0.0.2\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"atlanta.com\", nonce=\"n1\", uri=\"sip:bob@biloxi.com\", response=\"0123\"\r\n\
Proxy-Require: foo, bar\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

    fn msg(b: &'static [u8]) -> Message {
        Message::parse(Bytes::from_static(b)).unwrap()
    }

    #[test]
    fn a_response_is_checked_for_what_a_proxy_routes_and_matches_it_by() {
        const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p1.example;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP pc33.example;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\
Call-ID: x@y\r\nCSeq: 1 INVITE\r\nContact: <sip:c@10.0.0.1>\r\nContent-Length: 0\r\n\r\n";
        let with = |from: &str, to: &str| {
            let m = Message::parse(Bytes::from(OK.replace(from, to))).unwrap();
            (m.check_response().map_err(|e| e.kind), m.check().is_ok())
        };
        assert_eq!(with("", ""), (Ok(()), true));
        // Not the proxy's to judge in a response (the full gate refuses them).
        assert_eq!(with("<sip:c@10.0.0.1>", "<sip:c@10.0.0.1"), (Ok(()), false));
        assert_eq!(with("<sip:a@b>;tag=1", "<sip:a@b;tag=1"), (Ok(()), false));
        // What routing and transaction matching need.
        let bad = |from: &str, to: &str| with(from, to).0.unwrap_err();
        assert_eq!(
            bad("Via: SIP/2.0/UDP pc33.example", "Via: garbage"),
            ErrorKind::BadVia
        );
        assert_eq!(bad("CSeq: 1 INVITE", "CSeq: x INVITE"), ErrorKind::BadCSeq);
        assert_eq!(
            bad("Call-ID: x@y\r\n", "Call-ID: x@y\r\ni: z\r\n"),
            ErrorKind::DuplicateHeader
        );
        assert_eq!(bad("To: <sip:c@d>;tag=2\r\n", ""), ErrorKind::MissingHeader);
    }

    #[test]
    fn a_repeated_tag_fails_the_check_and_one_tag_among_others_passes() {
        let with = |from: &str| {
            let text = String::from_utf8_lossy(REQ)
                .replace("f: \"Alice\" <sip:alice@atlanta.com>;tag=1928301774", from);
            Message::parse(Bytes::from(text)).unwrap().check()
        };
        assert!(with("f: <sip:a@b>;tag=1").is_ok());
        assert!(with("f: <sip:a@b>;x=y;tag=1;z").is_ok());
        assert!(with("f: <sip:a@b;tag=u;tag=v>;tag=1").is_ok());
        for twice in ["f: <sip:a@b>;tag=1;tag=2", "f: <sip:a@b>;TAG=1 ; x ; tag=2"] {
            let e = with(twice).unwrap_err();
            assert_eq!(e.kind, ErrorKind::DuplicateParam, "{twice}");
        }
    }

    #[test]
    fn every_accessor_on_a_proxy_request() {
        let m = msg(REQ);
        m.check().unwrap();
        let ruri = m.request_uri().unwrap().unwrap();
        assert_eq!(ruri.scheme, Scheme::Sip);
        assert_eq!(ruri.user, Some(&b"bob"[..]));
        assert_eq!(ruri.transport(), Some(&b"tcp"[..]));

        let vias: Vec<_> = m.vias().map(|v| v.unwrap()).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].via.branch(), Some(&b"z9hG4bK1"[..]));
        assert_eq!(vias[0].via.port, Some(5070));
        assert_eq!(vias[0].via.received(), Some(&b"10.0.0.1"[..]));
        assert!(matches!(vias[1].via.host, Host::V6(_)));
        assert_eq!(vias[1].index, vias[0].index);
        assert_eq!(vias[2].via.rport(), Some(Some(5060)));
        assert_eq!(
            m.slice(vias[2].span),
            b"SIP/2.0/UDP pc33.atlanta.com;rport=5060;branch=z9hG4bK3"
        );
        assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK1"[..]));

        assert_eq!(m.from().unwrap().tag(), Some(&b"1928301774"[..]));
        assert_eq!(m.to().unwrap().tag(), None);
        assert_eq!(m.call_id().unwrap(), b"a84b4c76e66710@pc33.atlanta.com");
        let cseq = m.cseq().unwrap();
        assert_eq!((cseq.num, cseq.method), (314159, &b"INVITE"[..]));
        assert_eq!(m.max_forwards().unwrap().unwrap(), 70);
        assert!(m.expires().is_none());

        let routes: Vec<_> = m.routes().map(|r| r.unwrap()).collect();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[2].value.uri.host_raw, b"p4.example");
        assert!(routes[0].value.uri.lr());
        assert_eq!(m.slice(routes[1].span), b"<sip:p3.example;lr>");

        assert!(!m.contact_is_star().unwrap());
        let cs: Vec<_> = m.contacts().map(|c| c.unwrap()).collect();
        assert_eq!(cs.len(), 2);
        assert_eq!(cs[0].value.expires().unwrap(), Some(60));
        assert_eq!(cs[0].value.q().unwrap(), Some(500));
        assert_eq!(cs[1].value.addr.uri.host_raw, b"10.0.0.2");

        let pa = m.proxy_authorization().next().unwrap().unwrap();
        assert_eq!(pa.value.username(), Some(&b"alice"[..]));
        assert_eq!(pa.value.realm(), Some(&b"atlanta.com"[..]));
        let pr: Vec<_> = m.proxy_require().map(|t| t.unwrap()).collect();
        assert_eq!(pr, vec![&b"foo"[..], &b"bar"[..]]);
        assert!(m
            .content_type()
            .unwrap()
            .unwrap()
            .is(b"application", b"sdp"));
    }

    #[test]
    fn check_verdicts() {
        let kind = |b: &'static [u8]| msg(b).check().unwrap_err().kind;
        assert_eq!(
            kind(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"),
            ErrorKind::CSeqMethodMismatch
        );
        assert_eq!(
            kind(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCSeq: 1 OPTIONS\r\n\r\n"),
            ErrorKind::MissingHeader
        );
        assert_eq!(
            kind(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCall-ID: y\r\nCSeq: 1 OPTIONS\r\n\r\n"),
            ErrorKind::DuplicateHeader
        );
        assert_eq!(
            kind(b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n"),
            ErrorKind::MissingHeader
        );
        let e = msg(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;;\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n").check().unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadVia);
        assert!(
            e.at > 29 && e.at < 48,
            "offset {} points into the Via value",
            e.at
        );
    }

    #[test]
    fn contact_star() {
        let m = msg(b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nTo: <sip:a@b>\r\nFrom: <sip:a@b>;tag=1\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\n\r\n");
        assert!(m.contact_is_star().unwrap());
        m.check().unwrap();
        assert_eq!(m.expires().unwrap().unwrap(), 0);
        let m = msg(b"REGISTER sip:b SIP/2.0\r\nContact: *\r\nContact: <sip:a@b>\r\n\r\n");
        assert_eq!(m.contact_is_star().unwrap_err().kind, ErrorKind::BadContact);
    }
}
