//! [`Message`]: one SIP request or response, parsed into a header index over the received buffer.
//!
//! `Message::parse` reads the start line and walks the header section once (memchr for line ends),
//! recording for every header field its id, name, value and whole-line spans; then it frames the body
//! by Content-Length. Nothing else is parsed: typed values (URI, Via, From…) are parsed when someone
//! asks for them (see `accessors.rs`), and borrow from the buffer.
//!
//! Tolerances, each one the RFC allows or SER had: leading CRLFs before the start line are skipped
//! (RFC 3261 §7.5); bare LF line ends are accepted (SER's own test messages use them); `Name :` with
//! white space before the colon is accepted (RFC 3261 §7.3.1, wsinv). Over UDP, octets after
//! Content-Length are ignored (RFC 3261 §18.3), and a request without Content-Length has the rest of
//! the datagram as its body (RFC 2543 senders, inv2543).
//!
//! Offsets are `u32`: the maximum message size (`Limits::max_size`) is far below 4 GiB.

use bytes::Bytes;
use smallvec::SmallVec;

use super::edit::Edits;
use super::error::{ErrorKind, ParseError, Result};
use super::header::HeaderId;

/// A byte range `start..end` of the message buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        // Callers only build spans inside a buffer already checked against `Limits::max_size`.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// Limits applied while parsing. The defaults fit what carriers see; `max_size` matches SER's
/// `BUF_SIZE` of 64 KiB.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in bytes (larger → `TooLarge`, answered 513).
    pub max_size: usize,
    /// Most header fields (lines) accepted.
    pub max_headers: usize,
    /// Longest Request-URI accepted.
    pub max_uri_len: usize,
    /// Most Via values accepted (checked by [`Message::check`] and the Via accessors).
    pub max_vias: usize,
    /// Framing: `false` for a datagram (body = Content-Length octets, or the rest when absent);
    /// `true` for a stream, where Content-Length is mandatory (RFC 3261 §18.3, §20.14).
    pub stream: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: 65_535,
            max_headers: 256,
            max_uri_len: 1024,
            max_vias: 64,
            stream: false,
        }
    }
}

/// SIP methods ser treats specially; any other token is `Other` (methods are case-sensitive,
/// RFC 3261 §7.1, so `invite` is `Other` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Prack,
    Update,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other,
}

impl Method {
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The method's name; empty for `Other` (use [`Message::method_bytes`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Prack => "PRACK",
            Method::Update => "UPDATE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "",
        }
    }
}

/// The first line: a request line or a status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        code: u16,
        reason: Span,
    },
}

/// One header field (one line, with its continuation lines) in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEntry {
    pub id: HeaderId,
    /// The name as received (compact or long, any case).
    pub name: Span,
    /// The value, without the leading and trailing white space and without the line end; folded
    /// continuation lines are inside it.
    pub value: Span,
    /// The whole field: from the first byte of the name to just after its (last) line end.
    pub line: Span,
}

/// A header field as handed out by the accessors: borrowed views of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// Position in the header index (what the edit functions take).
    pub index: usize,
    pub id: HeaderId,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// A parsed SIP message. Cheap to create (one pass over the header section), zero-copy, and editable
/// through [`Edits`] that are applied when it is written.
#[derive(Debug, Clone)]
pub struct Message {
    pub(super) buf: Bytes,
    pub(super) start: StartLine,
    /// The start line, without its line end.
    pub(super) start_line: Span,
    pub(super) headers: SmallVec<[HeaderEntry; 24]>,
    /// Offset of the empty line that ends the header section (where appended headers go).
    pub(super) headers_end: u32,
    pub(super) body: Span,
    /// The Content-Length value as received (None when absent).
    pub(super) content_length: Option<usize>,
    /// Where the message ends in `buf` (a datagram may carry trailing octets after it).
    pub(super) end: u32,
    /// `Limits::max_vias`, kept for the Via accessors and `check`.
    pub(super) max_vias: u16,
    pub(super) edits: Edits,
    /// Values parsed once and kept (Request-URI, top Via, From, To).
    pub(super) cache: super::cache::ParseCache,
    /// Which ids the header index holds (bit `id as u8`), which of them more than once, and
    /// where the first field of each of the first [`FIRST_IDS`] ids is: a lookup by id (a dozen
    /// per request, most for headers that are absent or single) then costs no scan of the index.
    pub(super) by_id: IdIndex,
}

/// Ids below this (Via … Content-Type: the ones the proxy asks for) remember their first field.
const FIRST_IDS: usize = 12;

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct IdIndex {
    present: u128,
    repeated: u128,
    first: [u32; FIRST_IDS],
}

impl IdIndex {
    #[inline]
    fn note(&mut self, id: HeaderId, index: usize) {
        let bit = 1u128 << (id as u8);
        if self.present & bit == 0 {
            if let Some(f) = self.first.get_mut(id as usize) {
                *f = u32::try_from(index).unwrap_or(u32::MAX);
            }
        } else {
            self.repeated |= bit;
        }
        self.present |= bit;
    }

    /// Where to start looking for `id` and how many fields there are at most (0: none).
    #[inline]
    fn range(&self, id: HeaderId) -> (usize, usize) {
        let bit = 1u128 << (id as u8);
        if id == HeaderId::Other || self.present & bit == 0 {
            (0, 0)
        } else {
            let start = self.first.get(id as usize).map_or(0, |&f| f as usize);
            (
                start,
                if self.repeated & bit != 0 {
                    usize::MAX
                } else {
                    1
                },
            )
        }
    }

    /// True if `id` occurs in more than one field.
    #[inline]
    pub(super) fn repeated(&self, id: HeaderId) -> bool {
        self.repeated & (1u128 << (id as u8)) != 0
    }
}

impl Message {
    /// Parses one message from `buf` with the default [`Limits`] (datagram framing).
    pub fn parse(buf: Bytes) -> Result<Message> {
        Message::parse_with(buf, &Limits::default())
    }

    /// Parses one message from `buf`. For stream framing, `buf` must hold at least one complete
    /// message (see `framing`); octets after it are not part of the message.
    pub fn parse_with(buf: Bytes, limits: &Limits) -> Result<Message> {
        Message::parse_inner(buf, limits, false).map(|(m, _)| m)
    }

    /// Like [`Message::parse_with`], but errors that still leave an answerable request do not stop
    /// the parse; the first one is returned beside the message:
    /// - a bad *request line*: the header section is still indexed (the start line then reads as a
    ///   request with method `Other` and an empty Request-URI) — so `SIP/7.0` gets 505 and a URI
    ///   with spaces 400, with Via, From, To, Call-ID and CSeq copied into the reply;
    /// - for datagrams, framing errors: a bad or repeated Content-Length, a body shorter than it
    ///   says, a header section not closed by an empty line before the datagram ends (the body is
    ///   then the rest of the datagram).
    ///
    /// Status lines and broken header lines fail as usual.
    pub fn parse_lenient(buf: Bytes, limits: &Limits) -> Result<(Message, Option<ParseError>)> {
        Message::parse_inner(buf, limits, true)
    }

    /// [`Message::parse_lenient`] into `self`, reusing its header index and edit list: the
    /// shard parses every request into a context it keeps, so the message (2 KB with its inline
    /// index and parse cache) is not moved from the parser to the context per request. On an
    /// error `self` is left empty.
    pub fn parse_lenient_into(
        &mut self,
        buf: Bytes,
        limits: &Limits,
    ) -> Result<Option<ParseError>> {
        let r = self.parse_into(buf, limits, true);
        if r.is_err() {
            self.release();
        }
        r
    }

    /// [`Message::parse_with`] into `self`, reusing its allocations (see
    /// [`Message::parse_lenient_into`]); on an error `self` is left empty.
    pub fn parse_with_into(&mut self, buf: Bytes, limits: &Limits) -> Result<()> {
        let r = self.parse_into(buf, limits, false).map(drop);
        if r.is_err() {
            self.release();
        }
        r
    }

    /// A message with no bytes: a placeholder for a context whose message comes later.
    pub fn empty() -> Message {
        Message {
            start: StartLine::Request {
                method: Method::Other,
                method_span: Span::new(0, 0),
                uri: Span::new(0, 0),
                version: Span::new(0, 0),
            },
            start_line: Span::new(0, 0),
            headers: SmallVec::new(),
            headers_end: 0,
            body: Span::new(0, 0),
            content_length: None,
            end: 0,
            max_vias: 0,
            edits: Edits::default(),
            cache: Default::default(),
            by_id: IdIndex::default(),
            buf: Bytes::new(),
        }
    }

    /// Makes this an [`Message::empty`] one, keeping its allocations: the received bytes are let
    /// go (a kept context must not pin a receive chunk).
    pub fn release(&mut self) {
        self.buf = Bytes::new();
        self.start = StartLine::Request {
            method: Method::Other,
            method_span: Span::new(0, 0),
            uri: Span::new(0, 0),
            version: Span::new(0, 0),
        };
        self.start_line = Span::new(0, 0);
        self.headers.clear();
        self.headers_end = 0;
        self.body = Span::new(0, 0);
        self.content_length = None;
        self.end = 0;
        self.edits.clear();
        self.cache = Default::default();
        self.by_id = IdIndex::default();
    }

    // Inlined into both callers so the message is built in place (it is large: the inline header
    // index and edit list), not moved out of a tuple.
    #[inline(always)]
    fn parse_inner(
        buf: Bytes,
        limits: &Limits,
        lenient: bool,
    ) -> Result<(Message, Option<ParseError>)> {
        let mut msg = Message::empty();
        let soft = msg.parse_into(buf, limits, lenient)?;
        Ok((msg, soft))
    }

    #[inline(always)]
    fn parse_into(
        &mut self,
        buf: Bytes,
        limits: &Limits,
        lenient: bool,
    ) -> Result<Option<ParseError>> {
        if buf.len() > limits.max_size {
            return Err(ParseError::new(ErrorKind::TooLarge, limits.max_size));
        }
        let b: &[u8] = &buf;
        // RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives, sloppy senders).
        let mut pos = 0;
        while pos < b.len() && (b[pos] == b'\r' || b[pos] == b'\n') {
            pos += 1;
        }
        if pos >= b.len() {
            return Err(ParseError::new(ErrorKind::Empty, pos));
        }
        let (line_end, next) = match line_end(b, pos) {
            Some(x) => x,
            None => return Err(ParseError::new(ErrorKind::Incomplete, b.len())),
        };
        let mut start_error = None;
        let start = match parse_start_line(b, pos, line_end, limits) {
            Ok(s) => s,
            Err(e) if lenient && !b[pos..line_end].starts_with(b"SIP/") => {
                start_error = Some(e);
                let method_end = memchr::memchr(b' ', &b[pos..line_end]).map_or(pos, |i| pos + i);
                StartLine::Request {
                    method: Method::Other,
                    method_span: Span::new(pos, method_end),
                    uri: Span::new(method_end, method_end),
                    version: Span::new(line_end, line_end),
                }
            }
            Err(e) => return Err(e),
        };
        let start_line = Span::new(pos, line_end);

        let headers = &mut self.headers;
        headers.clear();
        let mut by_id = IdIndex::default();
        let mut content_length: Option<(usize, usize)> = None; // (value, offset of the header)
        let mut pos = next;
        let headers_end;
        // Lenient (datagram) mode: framing errors after the start line are recorded, not fatal, so
        // the request can still be answered with 400 and its reason.
        let soft = lenient && !limits.stream;
        let mut soft_error: Option<ParseError> = None;
        loop {
            if pos >= b.len() {
                if soft && pos == b.len() {
                    // The datagram ends after a complete header line: no empty line (RFC 4475 baddn).
                    soft_error.get_or_insert(ParseError::new(ErrorKind::Incomplete, pos));
                    headers_end = pos;
                    break;
                }
                return Err(ParseError::new(ErrorKind::Incomplete, pos));
            }
            // Empty line: end of the header section.
            if b[pos] == b'\n' {
                headers_end = pos;
                pos += 1;
                break;
            }
            if b[pos] == b'\r' && b.get(pos + 1) == Some(&b'\n') {
                headers_end = pos;
                pos += 2;
                break;
            }
            if headers.len() >= limits.max_headers {
                return Err(ParseError::new(ErrorKind::TooManyHeaders, pos));
            }
            let entry = parse_header_line(b, pos)?;
            if entry.id == HeaderId::ContentLength {
                let v = &b[entry.value.range()];
                let parsed = parse_content_length(v).ok_or(ParseError::new(
                    ErrorKind::BadContentLength,
                    entry.value.start as usize,
                ));
                let checked = parsed.and_then(|n| match content_length {
                    Some((old, _)) if old != n => Err(ParseError::new(
                        ErrorKind::MultipleContentLength,
                        entry.name.start as usize,
                    )),
                    _ => Ok(n),
                });
                match checked {
                    Ok(n) => content_length = Some((n, entry.value.start as usize)),
                    Err(e) if soft => {
                        soft_error.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            pos = entry.line.end as usize;
            by_id.note(entry.id, headers.len());
            headers.push(entry);
        }

        let body_start = pos;
        let available = b.len() - body_start;
        if soft_error.is_some() {
            // Content-Length cannot be trusted: the body is whatever the datagram carries.
            content_length = None;
        }
        let (body_len, end) = match content_length {
            Some((n, at)) => {
                if n > available {
                    if soft {
                        soft_error.get_or_insert(ParseError::new(ErrorKind::BodyTooShort, at));
                        content_length = None;
                        (available, b.len())
                    } else {
                        return Err(ParseError::new(ErrorKind::BodyTooShort, at));
                    }
                } else {
                    (n, body_start + n)
                }
            }
            None if limits.stream => {
                return Err(ParseError::new(ErrorKind::MissingHeader, headers_end));
            }
            None => (available, b.len()),
        };
        self.start = start;
        self.start_line = start_line;
        self.headers_end = headers_end as u32;
        self.body = Span::new(body_start, body_start + body_len);
        self.content_length = content_length.map(|(n, _)| n);
        self.end = end as u32;
        self.max_vias = limits.max_vias.min(usize::from(u16::MAX)) as u16;
        self.edits.clear();
        self.cache = Default::default();
        self.by_id = by_id;
        self.buf = buf;
        Ok(start_error.or(soft_error))
    }

    // ---------- raw access ----------

    /// The received buffer (it may hold trailing octets after the message; see [`Message::len`]).
    pub fn buffer(&self) -> &Bytes {
        &self.buf
    }

    /// Gives the message a buffer of its own, when it shares one (a datagram is a slice of a
    /// shard's receive chunk): a message kept for long, e.g. by a script waiting for a job, then
    /// pins only its own octets. Spans are offsets into `buf`, so they stay valid.
    pub fn unshare(&mut self) {
        self.buf = Bytes::copy_from_slice(&self.buf);
    }

    /// The message as received, without trailing datagram octets and without edits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.end as usize]
    }

    /// Length of the message as received.
    pub fn len(&self) -> usize {
        self.end as usize
    }

    /// Never true for a parsed message (a start line is required); here for API completeness.
    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// The bytes of a span of this message.
    pub fn slice(&self, span: Span) -> &[u8] {
        self.buf.get(span.range()).unwrap_or(&[])
    }

    /// A zero-copy `Bytes` handle to a span (shares the buffer).
    pub fn bytes_of(&self, span: Span) -> Bytes {
        if span.end as usize <= self.buf.len() && span.start <= span.end {
            self.buf.slice(span.range())
        } else {
            Bytes::new()
        }
    }

    /// The span of `sub` inside the buffer, when `sub` is a view of it (as every parsed value is).
    pub fn span_of(&self, sub: &[u8]) -> Option<Span> {
        let base = self.buf.as_ptr() as usize;
        let p = sub.as_ptr() as usize;
        if p >= base && p + sub.len() <= base + self.buf.len() {
            Some(Span::new(p - base, p - base + sub.len()))
        } else {
            None
        }
    }

    // ---------- start line ----------

    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    pub fn start_line_bytes(&self) -> &[u8] {
        self.slice(self.start_line)
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request's method (`Other` for responses and unknown methods; see `method_bytes`).
    pub fn method(&self) -> Method {
        match self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => Method::Other,
        }
    }

    /// The request's method as received; empty for a response.
    pub fn method_bytes(&self) -> &[u8] {
        match self.start {
            StartLine::Request { method_span, .. } => self.slice(method_span),
            StartLine::Response { .. } => &[],
        }
    }

    /// The Request-URI as received (no edits), or `None` for a response.
    pub fn request_uri_bytes(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(self.slice(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// Span of the Request-URI (for requests).
    pub fn request_uri_span(&self) -> Option<Span> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The response's status code, or `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The response's reason phrase (may be empty or non-UTF-8), or `None` for a request.
    pub fn reason(&self) -> Option<&[u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(self.slice(reason)),
            StartLine::Request { .. } => None,
        }
    }

    // ---------- headers ----------

    /// Number of header fields (lines) in the index.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// The index entry of header field `i`.
    pub fn header_entry(&self, i: usize) -> Option<&HeaderEntry> {
        self.headers.get(i)
    }

    /// All header fields, in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.headers
            .iter()
            .enumerate()
            .map(move |(i, h)| self.field(i, h))
    }

    /// All header fields with this id, in order (several lines of a list header, or duplicates).
    pub fn headers_by_id(&self, id: HeaderId) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        let (start, n) = self.by_id.range(id);
        self.headers
            .get(start..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.id == id)
            .take(n)
            .map(move |(i, h)| self.field(start + i, h))
    }

    /// True if more than one header field has this id.
    pub fn repeats(&self, id: HeaderId) -> bool {
        self.by_id.repeated(id)
    }

    /// All header fields with this name (case-insensitive; compact forms of known names match too).
    pub fn headers_by_name<'a>(
        &'a self,
        name: &'a [u8],
    ) -> impl Iterator<Item = HeaderField<'a>> + 'a {
        let id = HeaderId::from_name(name);
        self.headers().filter(move |h| {
            if id == HeaderId::Other {
                h.id == HeaderId::Other && h.name.eq_ignore_ascii_case(name)
            } else {
                h.id == id
            }
        })
    }

    /// The first header field with this id.
    pub fn header(&self, id: HeaderId) -> Option<HeaderField<'_>> {
        self.headers_by_id(id).next()
    }

    /// The value of the first header field with this id.
    pub fn header_value(&self, id: HeaderId) -> Option<&[u8]> {
        self.header(id).map(|h| h.value)
    }

    /// The value of the first header field with this name (case-insensitive).
    pub fn header_value_by_name(&self, name: &[u8]) -> Option<&[u8]> {
        let id = HeaderId::from_name(name);
        self.headers
            .iter()
            .find(|h| {
                if id == HeaderId::Other {
                    h.id == HeaderId::Other && self.slice(h.name).eq_ignore_ascii_case(name)
                } else {
                    h.id == id
                }
            })
            .map(|h| self.slice(h.value))
    }

    /// Whether a header with this id is present.
    pub fn has_header(&self, id: HeaderId) -> bool {
        self.headers.iter().any(|h| h.id == id)
    }

    fn field<'a>(&'a self, index: usize, h: &HeaderEntry) -> HeaderField<'a> {
        HeaderField {
            index,
            id: h.id,
            name: self.slice(h.name),
            value: self.slice(h.value),
        }
    }

    /// Offset of the empty line closing the header section.
    pub fn headers_end(&self) -> usize {
        self.headers_end as usize
    }

    /// Offset where the first header field starts (just after the start line's line end).
    pub fn headers_start(&self) -> usize {
        self.headers
            .first()
            .map(|h| h.line.start as usize)
            .unwrap_or(self.headers_end as usize)
    }

    // ---------- body ----------

    /// The body: Content-Length octets (or, over UDP without Content-Length, the rest of the datagram).
    pub fn body(&self) -> &[u8] {
        self.slice(self.body)
    }

    pub fn body_span(&self) -> Span {
        self.body
    }

    /// The Content-Length value as received.
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }
}

/// Finds the end of the line starting at `from`: returns (end of content, start of next line).
/// Accepts CRLF and bare LF.
#[inline]
fn line_end(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let rel = memchr::memchr(b'\n', b.get(from..)?)?;
    let nl = from + rel;
    let end = if nl > from && b[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    Some((end, nl + 1))
}

/// RFC 3261 §25.1 `token` bytes, as a table: the header loop asks for every name byte.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};

#[inline]
fn is_token_byte(c: u8) -> bool {
    TOKEN[c as usize]
}

/// `SIP/2.0`, compared case-insensitively (RFC 3261 §7.1: "SIP" is case-insensitive).
fn is_sip_2_0(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

/// `SIP/digits.digits`: a SIP version, maybe one we don't support.
fn is_sip_version(v: &[u8]) -> bool {
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let rest = &v[4..];
    let Some(dot) = rest.iter().position(|&c| c == b'.') else {
        return false;
    };
    let (maj, min) = (&rest[..dot], &rest[dot + 1..]);
    !maj.is_empty()
        && !min.is_empty()
        && maj.iter().all(u8::is_ascii_digit)
        && min.iter().all(u8::is_ascii_digit)
}

fn parse_start_line(b: &[u8], start: usize, end: usize, limits: &Limits) -> Result<StartLine> {
    let line = &b[start..end];
    let err = |kind, off: usize| ParseError::new(kind, start + off);
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp1 = memchr::memchr(b' ', line).ok_or(err(ErrorKind::BadStartLine, line.len()))?;
        let version = &line[..sp1];
        if !is_sip_version(version) {
            return Err(err(ErrorKind::BadStartLine, 0));
        }
        if !is_sip_2_0(version) {
            return Err(err(ErrorKind::UnsupportedVersion, 0));
        }
        let rest = &line[sp1 + 1..];
        let (code_b, reason_off) = match memchr::memchr(b' ', rest) {
            Some(sp2) => (&rest[..sp2], sp1 + 1 + sp2 + 1),
            // No reason phrase and no SP: tolerated (the SP is required, but nothing is lost).
            None => (rest, line.len()),
        };
        if code_b.len() != 3 || !code_b.iter().all(u8::is_ascii_digit) {
            return Err(err(ErrorKind::BadStatusCode, sp1 + 1));
        }
        let code = code_b
            .iter()
            .fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&code) {
            return Err(err(ErrorKind::BadStatusCode, sp1 + 1));
        }
        // The reason phrase is any text except CR/LF (UTF-8 allowed, unreason).
        return Ok(StartLine::Response {
            version: Span::new(start, start + sp1),
            code,
            reason: Span::new(start + reason_off.min(line.len()), end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 = memchr::memchr(b' ', line).ok_or(err(ErrorKind::BadStartLine, line.len()))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&c| is_token_byte(c)) {
        return Err(err(ErrorKind::BadMethod, 0));
    }
    let sp2 = memchr::memrchr(b' ', line).ok_or(err(ErrorKind::BadStartLine, line.len()))?;
    if sp2 <= sp1 {
        return Err(err(ErrorKind::BadStartLine, sp1));
    }
    let uri = &line[sp1 + 1..sp2];
    let version = &line[sp2 + 1..];
    if version.is_empty() {
        // Trailing SP (trws): RFC 4475 §3.1.2.10 allows rejecting it.
        return Err(err(ErrorKind::BadStartLine, sp2));
    }
    if !is_sip_version(version) {
        return Err(err(ErrorKind::BadStartLine, sp2 + 1));
    }
    if uri.is_empty() {
        return Err(err(ErrorKind::BadUri, sp1 + 1));
    }
    // Several SPs between elements (lwsstart) or LWS inside the URI (lwsruri): the URI would contain
    // a space or tab, which no URI may. RFC 4475 §3.1.2.8/9 allow rejecting both.
    if let Some(i) = first_ctl_or_space(uri) {
        return Err(err(ErrorKind::BadUri, sp1 + 1 + i));
    }
    if uri.len() > limits.max_uri_len {
        return Err(err(ErrorKind::UriTooLong, sp1 + 1));
    }
    if !is_sip_2_0(version) {
        return Err(err(ErrorKind::UnsupportedVersion, sp2 + 1));
    }
    Ok(StartLine::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(start, start + sp1),
        uri: Span::new(start + sp1 + 1, start + sp2),
        version: Span::new(start + sp2 + 1, end),
    })
}

/// Parses the header field starting at `pos` (not an empty line), following continuation lines.
fn parse_header_line(b: &[u8], pos: usize) -> Result<HeaderEntry> {
    // A continuation line where a header should start: the previous line ended the field already,
    // so this is white space at the start of the header section or after the start line.
    if b[pos] == b' ' || b[pos] == b'\t' {
        return Err(ParseError::new(ErrorKind::BadHeaderLine, pos));
    }
    // One memchr for the physical line; the name ends at the first ':' on it.
    let Some(nl_rel) = memchr::memchr(b'\n', &b[pos..]) else {
        return Err(ParseError::new(ErrorKind::Incomplete, b.len()));
    };
    let mut nl = pos + nl_rel;
    // The name is a token, then optional white space, then ':' — one scan, no second search.
    let mut name_end = pos;
    while name_end < nl && is_token_byte(b[name_end]) {
        name_end += 1;
    }
    if name_end == pos {
        return Err(ParseError::new(ErrorKind::BadHeaderLine, pos));
    }
    let mut colon = name_end;
    while colon < nl && (b[colon] == b' ' || b[colon] == b'\t') {
        colon += 1;
    }
    if colon >= nl || b[colon] != b':' {
        return Err(ParseError::new(ErrorKind::BadHeaderLine, colon));
    }
    let name = &b[pos..name_end];
    // The field ends at a line end not followed by SP/HTAB (RFC 3261 §7.3.1 folding).
    while matches!(b.get(nl + 1), Some(b' ') | Some(b'\t')) {
        match memchr::memchr(b'\n', &b[nl + 1..]) {
            Some(i) => nl = nl + 1 + i,
            None => return Err(ParseError::new(ErrorKind::Incomplete, b.len())),
        }
    }
    let next = nl + 1;
    let value_line_end = if b[nl - 1] == b'\r' { nl - 1 } else { nl };
    // Trim LWS (including folds) on both sides of the value.
    let mut vs = colon + 1;
    while vs < value_line_end && matches!(b[vs], b' ' | b'\t' | b'\r' | b'\n') {
        vs += 1;
    }
    let mut ve = value_line_end;
    while ve > vs && matches!(b[ve - 1], b' ' | b'\t' | b'\r' | b'\n') {
        ve -= 1;
    }
    Ok(HeaderEntry {
        id: HeaderId::from_name(name),
        name: Span::new(pos, name_end),
        value: Span::new(vs, ve),
        line: Span::new(pos, next),
    })
}

/// The first space, tab, other control byte or DEL in `s`. Eight bytes per step (a byte per step
/// showed in profiles: every Request-URI is checked).
fn first_ctl_or_space(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bad = |c: u8| c <= b' ' || c == 0x7f;
    let mut chunks = s.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        // A byte below 0x21 (the high bits of bytes >= 0x80 are masked off by !x), or one equal
        // to 0x7f (zero after the xor): exact for "is there one", then the byte is found.
        let below = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
        let y = x ^ (ONES * 0x7f);
        let del = y.wrapping_sub(ONES) & !y & HIGH;
        if below | del != 0 {
            return c.iter().position(|&b| bad(b)).map(|i| base + i);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| bad(b))
        .map(|i| base + i)
}

/// Content-Length = 1*DIGIT. Negative, non-numeric or overflowing values are refused (ncl).
pub(super) fn parse_content_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() || v.len() > 10 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests;
