//! Via header values (RFC 3261 §20.42, §25.1; `rport` RFC 3581; IPv6 `received` RFC 5118 §4.5).
//!
//! ```text
//! via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
//! sent-protocol = protocol-name SLASH protocol-version SLASH transport   (SLASH = SWS "/" SWS)
//! sent-by       = host [ COLON port ]
//! ```
//!
//! Invariants and choices:
//! - LWS (folds included) is accepted around `/`, `:`, `;` and `=` (RFC 4475 wsinv).
//! - Any parameter error inside a Via value is reported as `BadVia` (host and port errors keep
//!   `BadHost`/`BadPort`); offsets are into the value given.
//! - Parameters are validated on parse, so the accessors cannot fail: `rport` and `ttl` values must be
//!   numbers in range; `received` must be an IPv4 or IPv6 address, with or without brackets
//!   (RFC 5118 §4.5 accepts both); `branch` and `maddr` must have values.
//! - [`parse_vias`] splits a header holding several values; an empty value (`,,`) is `BadVia`.

use std::net::IpAddr;

use super::chars::{is_token, skip_lws, split_commas, SplitCommas};
use super::error::{ErrorKind, ParseError, Result};
use super::params::Params;
use super::uri::{parse_host, parse_port, parse_v4, parse_v6, Host};

/// The transport named in a Via's sent-protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS (over TCP)
    Tls,
    /// SCTP
    Sctp,
    /// WebSocket (RFC 7118)
    Ws,
    /// Secure WebSocket (RFC 7118)
    Wss,
    /// Any other token (see [`Via::transport_raw`]).
    Other,
}

impl Transport {
    /// Classifies a transport token, case-insensitively.
    pub fn from_bytes(b: &[u8]) -> Transport {
        const TABLE: [(&[u8], Transport); 6] = [
            (b"udp", Transport::Udp),
            (b"tcp", Transport::Tcp),
            (b"tls", Transport::Tls),
            (b"sctp", Transport::Sctp),
            (b"ws", Transport::Ws),
            (b"wss", Transport::Wss),
        ];
        TABLE
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b))
            .map_or(Transport::Other, |&(_, t)| t)
    }
}

/// One parsed Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole value as given.
    pub raw: &'a [u8],
    /// The protocol name (`SIP`).
    pub protocol: &'a [u8],
    /// The protocol version (`2.0`).
    pub version: &'a [u8],
    /// The transport, classified.
    pub transport: Transport,
    /// The transport as written.
    pub transport_raw: &'a [u8],
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by host as written (an IPv6 reference with its brackets).
    pub host_raw: &'a [u8],
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The via parameters.
    pub params: Params<'a>,
    /// The parameters a proxy reads, found by the validating pass.
    pub known: ViaKnown<'a>,
}

/// The first `branch`, `received`, `rport`, `maddr` and `ttl` of a Via, found while its
/// parameters are validated, so the accessors do not scan the list again (each scan showed in
/// profiles: a request's top Via is asked for its branch and rport several times).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ViaKnown<'a> {
    /// `branch` value.
    pub branch: Option<&'a [u8]>,
    /// `received` value as written.
    pub received: Option<&'a [u8]>,
    /// `rport`: its name as written (where an edit fills in the port) and its value, if any.
    pub rport: Option<(&'a [u8], Option<&'a [u8]>)>,
    /// `maddr` value.
    pub maddr: Option<&'a [u8]>,
    /// `ttl` value (validated to 0..=255).
    pub ttl: Option<&'a [u8]>,
}

impl<'a> ViaKnown<'a> {
    /// Notes parameter `name` if it is one a proxy reads (the first of each wins) and says
    /// whether its value is valid for it (`rport` a port or none, `received` an address, `ttl`
    /// 0..=255, `branch` and `maddr` with a value).
    fn take(&mut self, name: &'a [u8], v: Option<&'a [u8]>) -> bool {
        if name.eq_ignore_ascii_case(b"branch") {
            self.branch = self.branch.or(v);
            v.is_some()
        } else if name.eq_ignore_ascii_case(b"rport") {
            self.rport = self.rport.or(Some((name, v)));
            match v {
                None => true,
                Some(v) => parse_port(v).is_ok(),
            }
        } else if name.eq_ignore_ascii_case(b"received") {
            self.received = self.received.or(v);
            v.and_then(received_addr).is_some()
        } else if name.eq_ignore_ascii_case(b"ttl") {
            self.ttl = self.ttl.or(v);
            v.is_some_and(|v| super::scalar::parse_u32(v).is_ok_and(|n| n <= 255))
        } else if name.eq_ignore_ascii_case(b"maddr") {
            self.maddr = self.maddr.or(v);
            v.is_some()
        } else {
            true
        }
    }
}

fn bad(at: usize) -> ParseError {
    ParseError::new(ErrorKind::BadVia, at)
}

/// The sent-protocol nearly every Via carries, `SIP/2.0/UDP ` (or TCP, TLS) and one space before
/// a host, read without the general token and LWS scans. `None`: ask the general path (which
/// accepts the same text, so the result is the same).
#[inline]
fn sent_protocol_fast(v: &[u8]) -> Option<SentProtocol<'_>> {
    let head = v.get(..12)?;
    if head.get(..8)? != b"SIP/2.0/" || head.get(11) != Some(&b' ') {
        return None;
    }
    let t = head.get(8..11)?;
    let transport = match t {
        b"UDP" => Transport::Udp,
        b"TCP" => Transport::Tcp,
        b"TLS" => Transport::Tls,
        _ => return None,
    };
    // More white space (or a fold) before the host: the general path skips it.
    if matches!(v.get(12), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
        return None;
    }
    Some(SentProtocol {
        protocol: v.get(..3)?,
        version: v.get(4..7)?,
        transport_raw: t,
        transport,
        host_start: 12,
    })
}

/// A Via's sent-protocol and where its sent-by starts.
struct SentProtocol<'a> {
    protocol: &'a [u8],
    version: &'a [u8],
    transport_raw: &'a [u8],
    transport: Transport,
    host_start: usize,
}

fn token_at(s: &[u8], pos: usize) -> Result<(&[u8], usize)> {
    let mut end = pos;
    while s.get(end).is_some_and(|&b| is_token(b)) {
        end += 1;
    }
    if end == pos {
        return Err(bad(pos));
    }
    Ok((s.get(pos..end).unwrap_or_default(), end))
}

fn slash(s: &[u8], pos: usize) -> Result<usize> {
    let p = skip_lws(s, pos);
    if s.get(p) != Some(&b'/') {
        return Err(bad(p));
    }
    Ok(skip_lws(s, p + 1))
}

/// Parses a `received` value: IPv4, IPv6, or bracketed IPv6.
fn received_addr(v: &[u8]) -> Option<IpAddr> {
    if let Some(inner) = v.strip_prefix(b"[").and_then(|x| x.strip_suffix(b"]")) {
        return parse_v6(inner).map(IpAddr::V6);
    }
    parse_v4(v)
        .map(IpAddr::V4)
        .or_else(|| parse_v6(v).map(IpAddr::V6))
}

impl<'a> Via<'a> {
    /// Parses one Via value (no commas). Error offsets are into `value`.
    pub fn parse(value: &'a [u8]) -> Result<Via<'a>> {
        Via::parse_with(value, true)
    }

    /// [`Via::parse`]; `fast` false: without the sent-protocol fast path (the tests hold the two
    /// to the same answers).
    #[inline]
    fn parse_with(value: &'a [u8], fast: bool) -> Result<Via<'a>> {
        let SentProtocol {
            protocol,
            version,
            transport_raw,
            transport,
            host_start: hstart,
        } = match sent_protocol_fast(value).filter(|_| fast) {
            Some(x) => x,
            None => {
                let pos = skip_lws(value, 0);
                let (protocol, pos) = token_at(value, pos)?;
                let pos = slash(value, pos)?;
                let (version, pos) = token_at(value, pos)?;
                let pos = slash(value, pos)?;
                let (transport_raw, pos) = token_at(value, pos)?;
                let hstart = skip_lws(value, pos);
                if hstart == pos {
                    return Err(bad(pos));
                }
                SentProtocol {
                    protocol,
                    version,
                    transport_raw,
                    transport: Transport::from_bytes(transport_raw),
                    host_start: hstart,
                }
            }
        };
        let (host, host_raw, hlen) =
            parse_host(value.get(hstart..).unwrap_or_default()).map_err(|e| e.offset(hstart))?;
        let mut pos = hstart + hlen;
        let mut port = None;
        let c = skip_lws(value, pos);
        if value.get(c) == Some(&b':') {
            let pstart = skip_lws(value, c + 1);
            let mut pend = pstart;
            while value.get(pend).is_some_and(u8::is_ascii_digit) {
                pend += 1;
            }
            port = Some(
                parse_port(value.get(pstart..pend).unwrap_or_default())
                    .map_err(|e| e.offset(pstart))?,
            );
            pos = pend;
        }
        let rest = value.get(pos..).unwrap_or_default();
        // One pass validates the parameters and picks out the ones a proxy reads. A bad value of
        // one of those is reported after any syntax error further on, as two passes did.
        let mut known = ViaKnown::default();
        let mut bad_value: Option<usize> = None;
        let params = Params::parse_visit(rest, |name, v, at| {
            if bad_value.is_none() && !known.take(name, v) {
                bad_value = Some(pos + at);
            }
        })
        .map_err(|e| bad(pos + e.at))?;
        if let Some(at) = bad_value {
            return Err(bad(at));
        }
        Ok(Via {
            raw: value,
            protocol,
            version,
            transport,
            transport_raw,
            host,
            host_raw,
            port,
            params,
            known,
        })
    }

    /// The `branch` parameter value.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.known.branch
    }

    /// The `received` parameter value as written (brackets kept if present).
    pub fn received(&self) -> Option<&'a [u8]> {
        self.known.received
    }

    /// The `received` parameter as an address.
    pub fn received_ip(&self) -> Option<IpAddr> {
        self.received().and_then(received_addr)
    }

    /// The `rport` parameter: `None` absent, `Some(None)` present without a value, `Some(Some(p))`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.known
            .rport
            .map(|(_, v)| v.and_then(|v| parse_port(v).ok()))
    }

    /// The `maddr` parameter value.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.known.maddr
    }

    /// The `ttl` parameter value.
    pub fn ttl(&self) -> Option<u8> {
        self.known
            .ttl
            .and_then(|v| super::scalar::parse_u32(v).ok())
            .and_then(|n| u8::try_from(n).ok())
    }

    /// `host[:port]` as written (may contain LWS around `:`, as received).
    pub fn sent_by_raw(&self) -> &'a [u8] {
        let Some(start) = super::chars::offset_in(self.raw, self.host_raw) else {
            return self.host_raw;
        };
        let mut end = start + self.host_raw.len();
        if self.port.is_some() {
            let c = skip_lws(self.raw, end);
            if self.raw.get(c) == Some(&b':') {
                end = skip_lws(self.raw, c + 1);
                while self.raw.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
            }
        }
        self.raw.get(start..end).unwrap_or(self.host_raw)
    }
}

/// Iterator returned by [`parse_vias`].
#[derive(Debug, Clone)]
pub struct Vias<'a> {
    inner: SplitCommas<'a>,
}

impl<'a> Iterator for Vias<'a> {
    type Item = Result<(Via<'a>, usize, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        let (v, start, end) = self.inner.next()?;
        if v.is_empty() {
            return Some(Err(bad(start)));
        }
        Some(
            Via::parse(v)
                .map(|via| (via, start, end))
                .map_err(|e| e.offset(start)),
        )
    }
}

/// Parses a Via header value holding one or more comma-separated values. Yields each Via with its
/// start and end offsets in `value`; error offsets are into `value` too.
pub fn parse_vias(value: &[u8]) -> Vias<'_> {
    Vias {
        inner: split_commas(value),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn p(s: &[u8]) -> Via<'_> {
        Via::parse(s).unwrap()
    }
    fn all(s: &[u8]) -> Result<Vec<Via<'_>>> {
        parse_vias(s).map(|r| r.map(|x| x.0)).collect()
    }

    #[test]
    fn simple() {
        let v = p(b"SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234");
        assert_eq!(v.protocol, b"SIP");
        assert_eq!(v.version, b"2.0");
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.host, Host::V4(Ipv4Addr::new(192, 0, 2, 59)));
        assert_eq!(v.port, Some(5050));
        assert_eq!(v.sent_by_raw(), b"192.0.2.59:5050");
        assert_eq!(v.branch(), Some(&b"z9hG4bKkdjuw39234"[..]));
        assert_eq!(v.rport(), None);
        let v = p(b"SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1");
        assert_eq!(v.rport(), Some(None));
        let v = p(b"SIP/2.0/UDP 10.0.0.1;rport=5061;received=192.0.2.1;ttl=16;maddr=239.1.1.1");
        assert_eq!(v.rport(), Some(Some(5061)));
        assert_eq!(
            v.received_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some(&b"239.1.1.1"[..]));
        // intmeth branch with odd token chars
        let v = p(b"SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~");
        assert_eq!(v.branch(), Some(&b"z9hG4bK-.!%66*_+`'~"[..]));
        assert_eq!(v.transport, Transport::Tcp);
    }

    #[test]
    fn wsinv() {
        let v = p(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw");
        assert_eq!(v.protocol, b"SIP");
        assert_eq!(v.version, b"2.0");
        assert_eq!(v.transport_raw, b"UDP");
        assert_eq!(v.host_raw, b"192.0.2.2");
        assert_eq!(v.branch(), Some(&b"390skdjuw"[..]));
        let value: &[u8] = b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239";
        let vs: Vec<_> = parse_vias(value).map(|r| r.unwrap()).collect();
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[0].0.transport, Transport::Tcp);
        assert_eq!(vs[0].0.host, Host::Name(b"spindle.example.com"));
        assert_eq!(vs[0].0.branch(), Some(&b"z9hG4bK9ikj8"[..]));
        assert_eq!(&value[vs[0].1..vs[0].2], vs[0].0.raw);
        assert_eq!(vs[1].0.transport, Transport::Udp);
        assert_eq!(vs[1].0.host, Host::V4(Ipv4Addr::new(192, 168, 255, 111)));
        assert_eq!(vs[1].0.branch(), Some(&b"z9hG4bK30239"[..]));
        assert_eq!(&value[vs[1].1..vs[1].2], vs[1].0.raw);
        assert!(vs[1].0.raw.starts_with(b"SIP  /    2.0"));
    }

    #[test]
    fn transports() {
        for (v, t, raw) in [
            (
                &b"SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw"[..],
                Transport::Udp,
                &b"UDP"[..],
            ),
            (
                b"SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
                Transport::Sctp,
                b"SCTP",
            ),
            (
                b"SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
                Transport::Tls,
                b"TLS",
            ),
            (
                b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
                Transport::Other,
                b"UNKNOWN",
            ),
            (
                b"SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
                Transport::Tcp,
                b"TCP",
            ),
            (b"SIP/2.0/ws t6.example.com", Transport::Ws, b"ws"),
            (b"SIP/2.0/WSS t7.example.com", Transport::Wss, b"WSS"),
        ] {
            let via = p(v);
            assert_eq!(via.transport, t);
            assert_eq!(via.transport_raw, raw);
        }
    }

    #[test]
    fn rfc5118() {
        let v = p(b"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111");
        assert_eq!(v.host, Host::V6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.host_raw, b"[2001:db8::9:1]");
        assert_eq!(v.received(), Some(&b"[2001:db8::9:255]"[..]));
        let a: Ipv6Addr = "2001:db8::9:255".parse().unwrap();
        assert_eq!(v.received_ip(), Some(IpAddr::V6(a)));
        let v = p(b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3");
        assert_eq!(v.received_ip(), Some(IpAddr::V6(a)));
        assert_eq!(v.branch(), Some(&b"z9hG4bKas3"[..]));
        let v = p(b"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19");
        assert_eq!(
            v.host,
            Host::V6(Ipv4Addr::new(192, 0, 2, 10).to_ipv6_mapped())
        );
        assert_eq!(v.port, Some(19823));
        assert_eq!(v.sent_by_raw(), b"[::ffff:192.0.2.10]:19823");
        // mult-ip-in-header
        let v = p(b"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111");
        assert_eq!(v.port, Some(6050));
        let v = p(b"SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200");
        assert_eq!(
            v.received_ip(),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 200)))
        );
        assert_eq!(
            Via::parse(b"SIP/2.0/UDP 2001:db8::1").unwrap_err(),
            ParseError::new(ErrorKind::BadHost, 12)
        );
    }

    #[test]
    fn bad() {
        // badinv01
        let value: &[u8] = b"SIP/2.0/UDP 192.0.2.15;;,;,,";
        let r: Vec<_> = parse_vias(value).collect();
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0].as_ref().unwrap_err(),
            &ParseError::new(ErrorKind::BadVia, 23)
        );
        assert_eq!(r[1].as_ref().unwrap_err().kind, ErrorKind::BadVia);
        assert_eq!(
            r[2].as_ref().unwrap_err(),
            &ParseError::new(ErrorKind::BadVia, 27)
        );
        assert_eq!(
            r[3].as_ref().unwrap_err(),
            &ParseError::new(ErrorKind::BadVia, 28)
        );
        assert!(all(value).is_err());
        assert!(all(b"SIP/2.0/UDP a,").is_err());
        assert!(all(b"").is_err());
        for (v, kind, at) in [
            (&b"SIP/2.0/UDP"[..], ErrorKind::BadVia, 11),
            (b"SIP/2.0 UDP h", ErrorKind::BadVia, 8),
            (b"SIP/2.0/UDPh", ErrorKind::BadVia, 12),
            (b"SIP/2.0/UDP h:", ErrorKind::BadPort, 14),
            (b"SIP/2.0/UDP h:70000", ErrorKind::BadPort, 14),
            (b"SIP/2.0/UDP <h>", ErrorKind::BadHost, 12),
            (b"SIP/2.0/UDP h;branch", ErrorKind::BadVia, 14),
            (b"SIP/2.0/UDP h;rport=x", ErrorKind::BadVia, 20),
            (b"SIP/2.0/UDP h;rport=65536", ErrorKind::BadVia, 20),
            (b"SIP/2.0/UDP h;received=example.com", ErrorKind::BadVia, 23),
            (b"SIP/2.0/UDP h;ttl=256", ErrorKind::BadVia, 18),
            (b"SIP/2.0/UDP h junk", ErrorKind::BadVia, 14),
        ] {
            assert_eq!(
                Via::parse(v).unwrap_err(),
                ParseError::new(kind, at),
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        let v = p(b"SIP/2.0/UDP h : 5060 ;branch=x");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.sent_by_raw(), b"h : 5060");
    }

    #[test]
    fn literals_are_corpus_bytes() {
        for (file, lit) in [
            ("rfc4475/wsinv.dat", &b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw"[..]),
            ("rfc4475/wsinv.dat", b"SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239"),
            ("rfc4475/intmeth.dat", b"SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~"),
            ("rfc4475/transports.dat", b"SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en"),
            ("rfc4475/transports.dat", b"SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf"),
            ("rfc4475/badinv01.dat", b"SIP/2.0/UDP 192.0.2.15;;,;,,"),
            ("rfc4475/quotbal.dat", b"SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234"),
            ("rfc5118/via-received-param-with-delim.dat", b"SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111"),
            ("rfc5118/via-received-param-no-delim.dat", b"SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3"),
            ("rfc5118/ipv4-mapped-ipv6.dat", b"SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19"),
            ("rfc5118/mult-ip-in-header.dat", b"SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"),
            ("rfc5118/mult-ip-in-header.dat", b"SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200"),
        ] {
            crate::wire::chars::corpus::assert_in(file, lit);
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_answers_as_the_general_one(
            t in prop::sample::select(vec!["UDP", "TCP", "TLS", "udp", "SCTP"]),
            sp in prop::sample::select(vec![" ", "  ", "\t", "\r\n ", ""]),
            tail in "[a-z0-9.:;=\\[\\] \t,-]{0,40}",
        ) {
            let v = format!("SIP/2.0/{t}{sp}{tail}");
            prop_assert_eq!(Via::parse_with(v.as_bytes(), true), Via::parse_with(v.as_bytes(), false));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            for (v, s, e) in parse_vias(&data).flatten() {
                {
                    prop_assert!(s <= e && e <= data.len());
                    let _ = (v.branch(), v.rport(), v.ttl(), v.received_ip(), v.sent_by_raw());
                }
            }
        }

        #[test]
        fn generated_roundtrip(
            vias in proptest::collection::vec((
                prop_oneof![Just("UDP"), Just("tcp"), Just("TLS"), Just("SCTP"), Just("WS"), Just("wss"), Just("FOO")],
                prop_oneof![
                    "[a-z]{1,8}\\.[a-z]{2,3}",
                    any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
                    any::<[u16; 8]>().prop_map(|o| format!("[{}]", Ipv6Addr::from(o))),
                ],
                proptest::option::of(any::<u16>()),
                "[a-zA-Z0-9]{1,10}",
                proptest::option::of(proptest::option::of(any::<u16>())),
                "( |\r\n |  )",
            ), 1..4),
        ) {
            let mut s = String::new();
            for (i, (t, h, port, branch, rport, sp)) in vias.iter().enumerate() {
                if i > 0 { s.push(','); s.push_str(sp); }
                s.push_str(&format!("SIP{sp}/{sp}2.0/{t}{sp}{h}"));
                if let Some(p) = port { s.push_str(&format!(":{p}")); }
                s.push_str(&format!("{sp};branch=z9hG4bK{branch}"));
                match rport {
                    None => {}
                    Some(None) => s.push_str(";rport"),
                    Some(Some(p)) => s.push_str(&format!(";rport={p}")),
                }
            }
            let got: Vec<_> = parse_vias(s.as_bytes()).map(|r| r.unwrap()).collect();
            prop_assert_eq!(got.len(), vias.len());
            for ((v, st, en), (t, h, port, branch, rport, _)) in got.iter().zip(vias.iter()) {
                prop_assert_eq!(&s.as_bytes()[*st..*en], v.raw);
                prop_assert_eq!(v.transport, Transport::from_bytes(t.as_bytes()));
                prop_assert_eq!(v.transport_raw, t.as_bytes());
                prop_assert_eq!(v.host_raw, h.as_bytes());
                prop_assert_eq!(v.port, *port);
                let b = format!("z9hG4bK{branch}");
                prop_assert_eq!(v.branch(), Some(b.as_bytes()));
                prop_assert_eq!(v.rport(), *rport);
            }
        }

        #[test]
        fn structured_never_panics(s in "SIP ?/ ?2\\.0/[A-Z]{0,4} [\\[\\]a-f0-9:.;=, ]{0,30}") {
            for r in parse_vias(s.as_bytes()) { let _ = r; }
        }
    }
}
