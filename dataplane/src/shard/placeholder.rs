//! **Temporary** handler until the routing-script interpreter (branch `script`) is integrated:
//! [`PlaceholderHandler`] parses every packet and answers statelessly.
//!
//! - malformed request → `400` with the parse error's reason phrase (or `505`/`513` by
//!   `ErrorKind::status`); malformed response → dropped (logged at debug);
//! - `OPTIONS` addressed to this server (Request-URI host is a listen address or an alias, or
//!   `localhost`) → `200 OK`;
//! - any other request → `500 Server Internal Error` with a `Warning` saying the routing script
//!   is not executed yet; ACKs are absorbed; responses are dropped.
//!
//! This placeholder is named as such in every reply it sends and in the log, and goes away when the
//! interpreter is wired in.

use std::net::IpAddr;

use crate::ser_log;
use crate::transport::{Packet, Proto};
use crate::wire::uri::Host;
use crate::wire::{Limits, Message, Method, ReplyBuilder};

use super::log::{L_DBG, L_WARN};
use super::{reply_address, Handler, Outbox};

/// Reason / warning text of the placeholder's 500.
pub const NOT_INTEGRATED: &str = "routing script execution not integrated yet";

/// The temporary stateless handler (see the module docs).
pub struct PlaceholderHandler {
    /// Addresses that are "myself" (listen addresses).
    pub my_ips: Vec<IpAddr>,
    /// `alias=` names (compared case-insensitively).
    pub aliases: Vec<String>,
    /// SER's `reply_to_via`.
    pub reply_to_via: bool,
    /// SER's `server_signature`: add `Server:`.
    pub server_signature: bool,
    /// Value of the `Server:` header.
    pub server_header: String,
    to_tag: String,
    warned: bool,
}

impl PlaceholderHandler {
    pub fn new(my_ips: Vec<IpAddr>, aliases: Vec<String>) -> PlaceholderHandler {
        PlaceholderHandler {
            my_ips,
            aliases,
            reply_to_via: false,
            server_signature: true,
            server_header: format!("ser ({})", env!("CARGO_PKG_VERSION")),
            to_tag: format!("{:x}-sl", std::process::id()),
            warned: false,
        }
    }

    fn is_myself(&self, host: &Host<'_>) -> bool {
        match host {
            Host::V4(a) => self.my_ips.contains(&IpAddr::V4(*a)),
            Host::V6(a) => self.my_ips.contains(&IpAddr::V6(*a)),
            Host::Name(n) => {
                n.eq_ignore_ascii_case(b"localhost")
                    || self
                        .aliases
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(n))
            }
        }
    }

    fn reply(
        &self,
        pkt: &Packet,
        msg: &Message,
        code: u16,
        reason: &str,
        warning: Option<&str>,
        out: &mut Outbox,
    ) {
        let mut buf = out.buffer(512 + msg.len().min(4096));
        let mut r = ReplyBuilder::new(
            &mut buf,
            msg,
            code,
            reason.as_bytes(),
            self.to_tag.as_bytes(),
        );
        if self.server_signature {
            r.header(b"Server", self.server_header.as_bytes());
        }
        if let Some(w) = warning {
            let v = format!("399 {} \"{w}\"", pkt.local);
            r.header(b"Warning", v.as_bytes());
        }
        r.finish(None, b"");
        let dest = reply_address(msg, pkt, self.reply_to_via);
        out.reply_to(pkt, dest, buf.freeze());
    }
}

impl Handler for PlaceholderHandler {
    type Msg = ();

    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        let limits = Limits {
            stream: pkt.proto == Proto::Tcp,
            ..Limits::default()
        };
        let parsed = Message::parse_with(pkt.data.clone(), &limits).and_then(|m| {
            m.check()?;
            Ok(m)
        });
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                // Can we answer? Only a request whose headers we can copy (Via at least) gets a reply.
                let Some(m) = Message::parse_with(pkt.data.clone(), &limits)
                    .ok()
                    .or_else(|| salvage(&pkt.data))
                else {
                    ser_log!(L_DBG, "dropping unparseable message from {}: {e}", pkt.src);
                    return;
                };
                if !m.is_request() {
                    ser_log!(L_DBG, "dropping malformed response from {}: {e}", pkt.src);
                    return;
                }
                if m.method() == Method::Ack || m.top_via().is_err() {
                    ser_log!(L_DBG, "dropping malformed request from {}: {e}", pkt.src);
                    return;
                }
                ser_log!(L_DBG, "malformed request from {}: {e}", pkt.src);
                self.reply(&pkt, &m, e.kind.status(), e.kind.reason(), None, out);
                return;
            }
        };
        if !msg.is_request() {
            ser_log!(L_DBG, "placeholder: dropping response from {}", pkt.src);
            return;
        }
        match msg.method() {
            Method::Ack => {}
            Method::Options
                if msg
                    .request_uri()
                    .and_then(Result::ok)
                    .is_some_and(|u| u.user.is_none() && self.is_myself(&u.host)) =>
            {
                self.reply(&pkt, &msg, 200, "OK", None, out);
            }
            _ => {
                if !self.warned {
                    self.warned = true;
                    ser_log!(
                        L_WARN,
                        "placeholder handler: answering requests with 500 ({NOT_INTEGRATED})"
                    );
                }
                self.reply(
                    &pkt,
                    &msg,
                    500,
                    "Server Internal Error",
                    Some(NOT_INTEGRATED),
                    out,
                );
            }
        }
    }
}

/// For a request the full parser refused (bad version, a malformed header line…): a minimal copy
/// holding the request line (version forced to `SIP/2.0`) and the Via, From, To, Call-ID and CSeq
/// lines, so the error can still be answered with a reply that matches the request. `None` when
/// even that does not parse (or it is a response).
pub fn salvage(data: &[u8]) -> Option<Message> {
    let start = data.iter().position(|&c| c != b'\r' && c != b'\n')?;
    let data = &data[start..];
    if data.starts_with(b"SIP/") {
        return None;
    }
    let mut lines = data
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
    m.top_via().ok()?;
    Some(m)
}
