//! What a proxy must answer before routing (RFC 3261 §16.3 "Request Validation"), decided without
//! running the script.
//!
//! | condition | verdict |
//! |---|---|
//! | request fails the syntax gate (`Message::check`) | 400 with the error's reason (505 for the version; 513 for size) |
//! | CSeq method differs and the method is unknown to us | 501 (RFC 4475 §3.1.2.18 prefers it at proxies) |
//! | Request-URI scheme not sip/sips/tel | 416 Unsupported URI Scheme |
//! | Proxy-Require tags we do not support | 420 Bad Extension + `Unsupported:` listing them |
//! | Max-Forwards: 0 (when enforced) | 483 Too Many Hops (OPTIONS may be answered by the caller instead) |
//! | any of the above on an ACK | dropped: ACKs are never answered (§17.1.1.3) |
//! | a response that fails the gate | dropped (RFC 4475 scalarlg, bigcode) |

use smallvec::SmallVec;

use crate::wire::uri::Scheme;
use crate::wire::{ErrorKind, HeaderId, Message, Method, ParseError};

/// The option tags this build supports as a proxy (a Proxy-Require naming any other gets 420).
/// None yet: the extensions a proxy must understand (e.g. RFC 3327 `path`) come with the modules
/// that implement them.
pub const SUPPORTED: &[&[u8]] = &[];

/// The outcome of the pre-routing checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Route it.
    Pass,
    /// Answer statelessly with this status and reason; `unsupported` lists option tags for a 420.
    Reply {
        code: u16,
        reason: &'static str,
        unsupported: SmallVec<[&'a [u8]; 4]>,
    },
    /// Drop it silently (with this reason for the log).
    Drop(&'static str),
}

impl Verdict<'_> {
    fn reply(code: u16, reason: &'static str) -> Self {
        Verdict::Reply {
            code,
            reason,
            unsupported: SmallVec::new(),
        }
    }
}

/// Options of the checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions<'s> {
    /// Option tags this proxy supports (Proxy-Require tags outside the list get 420).
    pub supported: &'s [&'s [u8]],
    /// Answer Max-Forwards: 0 with 483 here (SER left it to `mf_process_maxfwd_header`; set this
    /// when the script does not load maxfwd, so the RFC's rule still holds).
    pub enforce_max_forwards: bool,
}

/// The verdict for a message that failed to parse at all (`Message::parse` error). `is_request` is a
/// guess from the first bytes: responses (starting `SIP/`) are dropped.
pub fn parse_failure(raw: &[u8], err: &ParseError) -> Verdict<'static> {
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    let head = raw.get(start..).unwrap_or_default();
    let looks_like_response = head.len() >= 4 && head[..4].eq_ignore_ascii_case(b"SIP/");
    let ack = head.starts_with(b"ACK ");
    if looks_like_response {
        return Verdict::Drop("malformed response");
    }
    if ack {
        return Verdict::Drop("malformed ACK");
    }
    if err.kind == ErrorKind::Empty {
        return Verdict::Drop("empty datagram");
    }
    Verdict::reply(err.kind.status(), err.kind.reason())
}

/// The pre-routing verdict for a parsed message.
pub fn check<'a>(msg: &'a Message, opts: &CheckOptions<'_>) -> Verdict<'a> {
    let is_ack = msg.method() == Method::Ack;
    let checked = if msg.is_response() {
        msg.check_response()
    } else {
        msg.check()
    };
    if let Err(e) = checked {
        if msg.is_response() {
            return Verdict::Drop("malformed response");
        }
        if is_ack {
            return Verdict::Drop("malformed ACK");
        }
        if e.kind == ErrorKind::CSeqMethodMismatch && msg.method() == Method::Other {
            return Verdict::reply(501, "Not Implemented");
        }
        return Verdict::reply(e.kind.status(), e.kind.reason());
    }
    if msg.is_response() {
        return Verdict::Pass;
    }
    if let Some(Ok(uri)) = msg.request_uri() {
        if uri.scheme == Scheme::Other {
            return if is_ack {
                Verdict::Drop("ACK with unsupported URI scheme")
            } else {
                Verdict::reply(416, "Unsupported URI Scheme")
            };
        }
    }
    let mut unsupported: SmallVec<[&[u8]; 4]> = SmallVec::new();
    for tag in msg.proxy_require() {
        match tag {
            Ok(t) if opts.supported.iter().any(|s| s.eq_ignore_ascii_case(t)) => {}
            Ok(t) => unsupported.push(t),
            Err(e) => return Verdict::reply(400, e.kind.reason()),
        }
    }
    if !unsupported.is_empty() && !is_ack && msg.method() != Method::Cancel {
        return Verdict::Reply {
            code: 420,
            reason: "Bad Extension",
            unsupported,
        };
    }
    if opts.enforce_max_forwards {
        if let Some(Ok(0)) = msg.max_forwards() {
            return if is_ack {
                Verdict::Drop("ACK with Max-Forwards 0")
            } else {
                Verdict::reply(483, "Too Many Hops")
            };
        }
    }
    Verdict::Pass
}

/// Whether a reply to `msg` can be matched by its client (RFC 3261 §17.1.3: the top Via's branch
/// and sent-by, the CSeq method): it has a Via and a CSeq. Both are copied verbatim, so even
/// malformed ones are the client's own (RFC 4475 badinv01 is answered). A refusal that would carry
/// neither is dropped (and counted) instead of being sent to no one's transaction.
pub fn answerable(msg: &Message) -> bool {
    msg.has_header(HeaderId::Via) && msg.has_header(HeaderId::CSeq)
}

/// For a request the full parser refused (bad version, a malformed header line, a datagram cut
/// in the middle of its header section…): a minimal copy holding the request line (version forced
/// to `SIP/2.0`) and the *complete* Via, From, To, Call-ID and CSeq lines, so the error can still
/// be answered with a reply that matches the request. A line the datagram cut short is never
/// copied (a truncated CSeq or Call-ID would match nothing). `None` when the copy is not
/// [`answerable`] (or it is a response).
pub fn salvage(data: &[u8]) -> Option<Message> {
    let start = data.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let data = &data[start..];
    if data.starts_with(b"SIP/") {
        return None;
    }
    // Only lines ended by LF: whatever follows the last one was cut off.
    let complete = &data[..memchr::memrchr(b'\n', data).map_or(0, |i| i + 1)];
    let mut lines = complete
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next()?;
    let sp = first.iter().rposition(|&c| c == b' ')?;
    let mut out = Vec::with_capacity(data.len().min(8192));
    out.extend_from_slice(&first[..sp]);
    out.extend_from_slice(b" SIP/2.0\r\n");
    for l in lines {
        if l.is_empty() {
            break;
        }
        let Some(colon) = memchr::memchr(b':', l) else {
            continue;
        };
        let name = l[..colon].trim_ascii();
        let keep = [
            &b"via"[..],
            b"v",
            b"from",
            b"f",
            b"to",
            b"t",
            b"call-id",
            b"i",
            b"cseq",
        ]
        .iter()
        .any(|k| name.eq_ignore_ascii_case(k));
        if keep {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let m = Message::parse(bytes::Bytes::from(out)).ok()?;
    answerable(&m).then_some(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn req(extra: &str, method: &str, uri: &str) -> Message {
        let s = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(Bytes::from(s)).unwrap()
    }

    #[test]
    fn verdicts() {
        let o = CheckOptions {
            supported: &[b"path"],
            enforce_max_forwards: true,
        };
        assert_eq!(check(&req("", "OPTIONS", "sip:a@b"), &o), Verdict::Pass);
        assert_eq!(
            check(&req("", "OPTIONS", "nobodyKnowsThisScheme:x"), &o),
            Verdict::reply(416, "Unsupported URI Scheme")
        );
        assert_eq!(
            check(
                &req("Proxy-Require: Path, foo, bar\r\n", "INVITE", "sip:a@b"),
                &o
            ),
            Verdict::Reply {
                code: 420,
                reason: "Bad Extension",
                unsupported: SmallVec::from_slice(&[&b"foo"[..], &b"bar"[..]])
            }
        );
        assert_eq!(
            check(&req("Max-Forwards: 0\r\n", "OPTIONS", "sip:a@b"), &o),
            Verdict::reply(483, "Too Many Hops")
        );
        assert_eq!(
            check(&req("Max-Forwards: 0\r\n", "ACK", "sip:a@b"), &o),
            Verdict::Drop("ACK with Max-Forwards 0")
        );
        let o2 = CheckOptions::default();
        assert_eq!(
            check(&req("Max-Forwards: 0\r\n", "OPTIONS", "sip:a@b"), &o2),
            Verdict::Pass
        );
        let bad = Message::parse(Bytes::from_static(
            b"NEWMETHOD sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(check(&bad, &o), Verdict::reply(501, "Not Implemented"));
    }

    #[test]
    fn salvage_keeps_what_a_reply_copies() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards 70\r\nTo: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(Message::parse(bytes::Bytes::from_static(raw)).is_err());
        let m = salvage(raw).unwrap();
        assert_eq!(m.call_id().unwrap(), b"c");
        assert_eq!(m.cseq().unwrap().num, 1);
        assert!(salvage(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n").is_none());
        assert!(
            salvage(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: c\r\n\r\n").is_none(),
            "no Via: nowhere to answer"
        );
        // A datagram cut inside its CSeq: the partial line is not copied, so nothing matches.
        let cut = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 OPT";
        assert!(salvage(cut).is_none());
        // Cut after the headers a reply needs: answerable, with those headers intact.
        let cut = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nX-Lo";
        assert_eq!(salvage(cut).unwrap().cseq().unwrap().method, b"OPTIONS");
    }

    #[test]
    fn unparseable() {
        let e = Message::parse(Bytes::from_static(b"INVITE sip:a SIP/7.0\r\n\r\n")).unwrap_err();
        assert_eq!(
            parse_failure(b"INVITE sip:a SIP/7.0\r\n\r\n", &e),
            Verdict::reply(505, "Version Not Supported")
        );
        let e = Message::parse(Bytes::from_static(b"SIP/2.0 4294967301 x\r\n\r\n")).unwrap_err();
        assert_eq!(
            parse_failure(b"SIP/2.0 4294967301 x\r\n\r\n", &e),
            Verdict::Drop("malformed response")
        );
    }
}
