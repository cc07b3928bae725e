//! Building new messages: replies to a received request (RFC 3261 §8.2.6) and requests (for the
//! transaction layer's ACK/CANCEL, `t_uac`, and loadgen).
//!
//! Both builders stream into a caller-supplied `BufMut` (a pooled `BytesMut` on the hot path): the
//! start line and mandatory headers are written at construction, extra headers as they are added,
//! and `finish` writes Content-Length, the empty line and the body. Nothing is allocated by the
//! builders themselves.

use bytes::BufMut;

use super::chars::trim_lws;
use super::header::HeaderId;
use super::message::Message;

fn put_header<B: BufMut>(out: &mut B, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

fn put_num<B: BufMut>(out: &mut B, n: usize) {
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn finish_body<B: BufMut>(out: &mut B, content_type: Option<&[u8]>, body: &[u8]) {
    if let Some(ct) = content_type {
        put_header(out, b"Content-Type", ct);
    }
    out.put_slice(b"Content-Length: ");
    put_num(out, body.len());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

/// Whether a From/To value carries a `tag` header parameter (outside the `<…>` URI and quotes).
pub fn has_tag(value: &[u8]) -> bool {
    tag_of(value).is_some()
}

/// The `tag` parameter of a From/To value, if any. Looks only at header parameters: those after
/// `>` for name-addr, after the first `;` for addr-spec; quoted display names are skipped.
pub fn tag_of(value: &[u8]) -> Option<&[u8]> {
    // Find where header params start.
    let mut i = 0;
    let mut in_quote = false;
    let mut params_at = None;
    while i < value.len() {
        let c = value[i];
        if in_quote {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_quote = false;
            }
        } else if c == b'"' {
            in_quote = true;
        } else if c == b'<' {
            let close = memchr::memchr(b'>', &value[i..])? + i;
            params_at = Some(close + 1);
            break;
        } else if c == b';' {
            params_at = Some(i);
            break;
        }
        i += 1;
    }
    let params = value.get(params_at?..)?;
    for p in params.split(|&c| c == b';') {
        let p = trim_lws(p);
        let (name, val) = match memchr::memchr(b'=', p) {
            Some(eq) => (trim_lws(&p[..eq]), Some(trim_lws(&p[eq + 1..]))),
            None => (p, None),
        };
        if name.eq_ignore_ascii_case(b"tag") {
            return val;
        }
    }
    None
}

/// A reply to a received request, built as RFC 3261 §8.2.6 says: the status line, then every Via
/// (in order), From, To (with a To-tag added unless it has one or the code is 100), Call-ID and CSeq
/// copied from the request; Timestamp too for 100 (§8.2.6.1). Edits recorded on the request's Via
/// values (the `received`/`rport` of §18.2.1 / RFC 3581) are applied to the copies.
pub struct ReplyBuilder<'o, B: BufMut> {
    out: &'o mut B,
}

impl<'o, B: BufMut> ReplyBuilder<'o, B> {
    /// Writes the status line and the copied headers. `to_tag` is used only when the request's To
    /// has no tag and `code` is not 100.
    pub fn new(out: &'o mut B, req: &Message, code: u16, reason: &[u8], to_tag: &[u8]) -> Self {
        out.put_slice(b"SIP/2.0 ");
        put_num(out, usize::from(code));
        out.put_u8(b' ');
        out.put_slice(reason);
        out.put_slice(b"\r\n");
        for h in req.headers() {
            match h.id {
                // The Vias as the proxy left them: `received`/`rport` recorded on the request
                // (forward::mark_received) come back to the sender (RFC 3261 §18.2.1, RFC 3581).
                HeaderId::Via if req.has_edits() => match req.span_of(h.value) {
                    Some(span) => {
                        out.put_slice(b"Via: ");
                        req.write_span_edited(span, out);
                        out.put_slice(b"\r\n");
                    }
                    None => put_header(out, b"Via", h.value),
                },
                HeaderId::Via | HeaderId::From | HeaderId::CallId | HeaderId::CSeq => {
                    put_header(out, h.id.name().as_bytes(), h.value)
                }
                HeaderId::To => {
                    out.put_slice(b"To: ");
                    out.put_slice(h.value);
                    // The To the gate parsed knows its tag; a To it could not parse (a 400's
                    // request) is scanned.
                    let tagged = || match req.cache.to.get() {
                        Some(Ok(t)) => t.has_tag(),
                        _ => has_tag(h.value),
                    };
                    if code != 100 && !to_tag.is_empty() && !tagged() {
                        out.put_slice(b";tag=");
                        out.put_slice(to_tag);
                    }
                    out.put_slice(b"\r\n");
                }
                HeaderId::Timestamp if code == 100 => put_header(out, b"Timestamp", h.value),
                _ => {}
            }
        }
        ReplyBuilder { out }
    }

    /// Adds a header line.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        put_header(self.out, name, value);
        self
    }

    /// Adds a header line whose value is a number.
    pub fn header_num(&mut self, name: &[u8], value: usize) -> &mut Self {
        self.out.put_slice(name);
        self.out.put_slice(b": ");
        put_num(self.out, value);
        self.out.put_slice(b"\r\n");
        self
    }

    /// Adds complete header lines (`Name: value\r\n` each), as `append_to_reply` and modules
    /// (registrar's Contacts, auth's challenges) collect them.
    pub fn raw_lines(&mut self, lines: &[u8]) -> &mut Self {
        self.out.put_slice(lines);
        self
    }

    /// Ends the reply: Content-Type (when given), Content-Length, the empty line and the body.
    pub fn finish(self, content_type: Option<&[u8]>, body: &[u8]) {
        finish_body(self.out, content_type, body);
    }
}

/// A new request. The request line is written at construction; add the headers (the `via`, `from`,
/// … helpers write the mandatory ones in RFC 3261 §8.1.1 form), then `finish`.
pub struct RequestBuilder<'o, B: BufMut> {
    out: &'o mut B,
}

impl<'o, B: BufMut> RequestBuilder<'o, B> {
    pub fn new(out: &'o mut B, method: &[u8], request_uri: &[u8]) -> Self {
        out.put_slice(method);
        out.put_u8(b' ');
        out.put_slice(request_uri);
        out.put_slice(b" SIP/2.0\r\n");
        RequestBuilder { out }
    }

    /// `Via: SIP/2.0/<transport> <sent_by>;branch=<branch>` (add `;rport` via `via_params`).
    pub fn via(&mut self, transport: &[u8], sent_by: &[u8], branch: &[u8]) -> &mut Self {
        self.via_params(transport, sent_by, branch, b"")
    }

    /// A Via with extra parameters appended verbatim (`;rport`, `;received=…`).
    pub fn via_params(
        &mut self,
        transport: &[u8],
        sent_by: &[u8],
        branch: &[u8],
        params: &[u8],
    ) -> &mut Self {
        let o = &mut *self.out;
        o.put_slice(b"Via: SIP/2.0/");
        o.put_slice(transport);
        o.put_u8(b' ');
        o.put_slice(sent_by);
        o.put_slice(b";branch=");
        o.put_slice(branch);
        o.put_slice(params);
        o.put_slice(b"\r\n");
        self
    }

    /// `Max-Forwards: n`.
    pub fn max_forwards(&mut self, n: u8) -> &mut Self {
        self.header_num(b"Max-Forwards", usize::from(n))
    }

    /// `From: <uri>;tag=…` (display name and tag optional).
    pub fn from(&mut self, display: &[u8], uri: &[u8], tag: &[u8]) -> &mut Self {
        self.name_addr(b"From", display, uri, tag)
    }

    /// `To: <uri>[;tag=…]`.
    pub fn to(&mut self, display: &[u8], uri: &[u8], tag: &[u8]) -> &mut Self {
        self.name_addr(b"To", display, uri, tag)
    }

    fn name_addr(&mut self, name: &[u8], display: &[u8], uri: &[u8], tag: &[u8]) -> &mut Self {
        let o = &mut *self.out;
        o.put_slice(name);
        o.put_slice(b": ");
        if !display.is_empty() {
            o.put_slice(display);
            o.put_u8(b' ');
        }
        o.put_u8(b'<');
        o.put_slice(uri);
        o.put_u8(b'>');
        if !tag.is_empty() {
            o.put_slice(b";tag=");
            o.put_slice(tag);
        }
        o.put_slice(b"\r\n");
        self
    }

    /// `Call-ID: …`.
    pub fn call_id(&mut self, id: &[u8]) -> &mut Self {
        self.header(b"Call-ID", id)
    }

    /// `CSeq: <n> <method>`.
    pub fn cseq(&mut self, n: u32, method: &[u8]) -> &mut Self {
        let o = &mut *self.out;
        o.put_slice(b"CSeq: ");
        put_num(o, n as usize);
        o.put_u8(b' ');
        o.put_slice(method);
        o.put_slice(b"\r\n");
        self
    }

    /// `Contact: <uri>`.
    pub fn contact(&mut self, uri: &[u8]) -> &mut Self {
        let o = &mut *self.out;
        o.put_slice(b"Contact: <");
        o.put_slice(uri);
        o.put_slice(b">\r\n");
        self
    }

    /// Any header line.
    pub fn header(&mut self, name: &[u8], value: &[u8]) -> &mut Self {
        put_header(self.out, name, value);
        self
    }

    /// A header line whose value is a number.
    pub fn header_num(&mut self, name: &[u8], value: usize) -> &mut Self {
        self.out.put_slice(name);
        self.out.put_slice(b": ");
        put_num(self.out, value);
        self.out.put_slice(b"\r\n");
        self
    }

    /// Ends the request: Content-Type (when given), Content-Length, the empty line and the body.
    pub fn finish(self, content_type: Option<&[u8]>, body: &[u8]) {
        finish_body(self.out, content_type, body);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP p1.example;branch=z9hG4bK1\r\n\
v: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=10.0.0.1\r\n\
Max-Forwards: 70\r\n\
t: Bob <sip:bob@biloxi.com>\r\n\
From: \"A;tag=no\" <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Timestamp: 54\r\n\
Content-Length: 0\r\n\
\r\n";

    #[test]
    fn reply_copies_what_8_2_6_says() {
        let req = Message::parse(Bytes::from_static(REQ)).unwrap();
        let mut out = Vec::new();
        let mut r = ReplyBuilder::new(&mut out, &req, 486, b"Busy Here", b"ser-1");
        r.header(b"Server", b"ser");
        r.finish(None, b"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP p1.example;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds;received=10.0.0.1\r\n\
To: Bob <sip:bob@biloxi.com>;tag=ser-1\r\n\
From: \"A;tag=no\" <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Server: ser\r\n\
Content-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn reply_carries_the_edits_recorded_on_the_vias() {
        let mut req = Message::parse(Bytes::from_static(REQ)).unwrap();
        let top = req.header(HeaderId::Via).unwrap().value;
        let end = req.span_of(top).unwrap().end as usize;
        req.replace_span(crate::wire::Span::new(end, end), b";received=192.0.2.1");
        // An edit elsewhere (a new header line) stays out of the reply.
        req.append_header(b"X-Script", b"1");
        let mut out = Vec::new();
        ReplyBuilder::new(&mut out, &req, 200, b"OK", b"t").finish(None, b"");
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("\r\nVia: SIP/2.0/UDP p1.example;branch=z9hG4bK1;received=192.0.2.1\r\nVia: SIP/2.0/UDP pc33"),
            "{s}"
        );
        assert!(!s.contains("X-Script"), "{s}");
    }

    #[test]
    fn trying_has_no_to_tag_and_copies_timestamp() {
        let req = Message::parse(Bytes::from_static(REQ)).unwrap();
        let mut out = Vec::new();
        ReplyBuilder::new(&mut out, &req, 100, b"Trying", b"ser-1").finish(None, b"");
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\r\nTo: Bob <sip:bob@biloxi.com>\r\n"));
        assert!(s.contains("\r\nTimestamp: 54\r\n"));
        let reply = Message::parse(Bytes::from(s.into_bytes())).unwrap();
        assert_eq!(reply.status(), Some(100));
    }

    #[test]
    fn existing_to_tag_is_kept() {
        assert_eq!(tag_of(b"<sip:a@b>;tag=x"), Some(&b"x"[..]));
        assert_eq!(tag_of(b"sip:a@b ; TAG = y ;foo"), Some(&b"y"[..]));
        assert_eq!(tag_of(b"\"x;tag=no\" <sip:a@b;tag=inuri>"), None);
        assert_eq!(tag_of(b"<sip:a@b>"), None);
    }

    #[test]
    fn request_builder_writes_a_parseable_request() {
        let mut out = Vec::new();
        let mut b = RequestBuilder::new(&mut out, b"OPTIONS", b"sip:ser@127.0.0.1:5060");
        b.via_params(b"UDP", b"127.0.0.1:40000", b"z9hG4bK-lg-1", b";rport")
            .max_forwards(70)
            .from(b"", b"sip:lg@127.0.0.1", b"t1")
            .to(b"", b"sip:ser@127.0.0.1", b"")
            .call_id(b"c-1@lg")
            .cseq(1, b"OPTIONS")
            .contact(b"sip:lg@127.0.0.1:40000");
        b.finish(Some(b"text/plain"), b"hi");
        let m = Message::parse(Bytes::from(out)).unwrap();
        assert_eq!(m.method(), crate::wire::Method::Options);
        assert_eq!(m.header_value(HeaderId::CSeq), Some(&b"1 OPTIONS"[..]));
        assert_eq!(
            m.header_value(HeaderId::Via),
            Some(&b"SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-lg-1;rport"[..])
        );
        assert_eq!(m.body(), b"hi");
        assert_eq!(m.content_length(), Some(2));
    }
}
