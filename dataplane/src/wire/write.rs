//! Writing a [`Message`] with its edits: one pass over the recorded operations, copying the
//! untouched stretches of the received buffer verbatim and the new bytes from the edit scratch.
//!
//! Three forms, for three callers: [`Message::write_to`] into any `BufMut` (a pooled `BytesMut` from
//! [`BufPool`] on the hot path), [`Message::write_iov`] as an `IoSlice` gather for `sendmsg`/
//! `sendmmsg` without any copy, and [`Message::to_bytes`], which is zero-copy when nothing was edited.

use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::edit::Op;
use super::message::{Message, Span};

impl Message {
    /// Calls `f` with each piece of the output in order. The one place that walks the edit list,
    /// so the three writers cannot disagree.
    fn for_each_piece<'a>(&'a self, mut f: impl FnMut(&'a [u8])) {
        let src = &self.buf[..self.end as usize];
        let mut cursor = 0usize;
        for op in self.edits.ordered() {
            let Op { start, end, .. } = op;
            let (start, end) = (start as usize, end as usize);
            if start < cursor || end > src.len() {
                // Inside a range an earlier edit already replaced or deleted: first one wins.
                continue;
            }
            if start > cursor {
                f(&src[cursor..start]);
            }
            let data = self.edits.data(&op);
            if !data.is_empty() {
                f(data);
            }
            cursor = end;
        }
        if cursor < src.len() {
            f(&src[cursor..]);
        }
    }

    /// Whether the message's start line or its empty line ends with a bare LF (RFC 3261 §7.5 asks
    /// for CRLF; ser accepts LF, as many servers do). Two byte reads: cheap enough for every message.
    pub fn has_bare_lf(&self) -> bool {
        self.buf.get(self.start_line.end as usize) == Some(&b'\n')
            || self.buf.get(self.headers_end as usize) == Some(&b'\n')
    }

    /// Records edits that turn every bare LF of the header section (after the start line, after
    /// each header line and fold, the empty line) into CRLF, so that what ser writes from this
    /// message always uses CRLF and a strict next hop reads the lines ser wrote where they are.
    /// Each LF is *replaced*, so insertions recorded later at the same place (a `received` at the
    /// end of a Via value) still come before the line end. The body is left alone.
    pub fn crlf_line_ends(&mut self) {
        let from = self.start_line.end as usize;
        let to = (self.body.start as usize).min(self.end as usize);
        let Some(section) = self.buf.get(from..to) else {
            return;
        };
        let bare: SmallVec<[usize; 32]> = memchr::memchr_iter(b'\n', section)
            .map(|i| from + i)
            .filter(|&p| p == 0 || self.buf[p - 1] != b'\r')
            .collect();
        for p in bare {
            self.replace_span(Span::new(p, p + 1), b"\r\n");
        }
    }

    /// Appends the bytes of `span` (a stretch of the received message) with the edits that lie
    /// wholly inside it applied: how a reply copies the top Via with the `received`/`rport` the
    /// proxy recorded on the request (RFC 3261 §18.2.1, RFC 3581 §4), without parsing it again.
    pub fn write_span_edited<B: BufMut>(&self, span: Span, out: &mut B) {
        let src = &self.buf[..self.end as usize];
        let (from, to) = (span.start as usize, (span.end as usize).min(src.len()));
        if from > to {
            return;
        }
        let mut cursor = from;
        for op in self.edits.ordered() {
            let (start, end) = (op.start as usize, op.end as usize);
            if start < cursor || end > to {
                continue;
            }
            out.put_slice(&src[cursor..start]);
            out.put_slice(self.edits.data(&op));
            cursor = end;
        }
        out.put_slice(&src[cursor..to]);
    }

    /// Length of the message as it will be written.
    pub fn written_len(&self) -> usize {
        if self.edits.is_empty() {
            return self.end as usize;
        }
        let mut n = 0;
        self.for_each_piece(|p| n += p.len());
        n
    }

    /// Appends the message, edits applied, to `out`.
    pub fn write_to<B: BufMut>(&self, out: &mut B) {
        self.for_each_piece(|p| out.put_slice(p));
    }

    /// Appends the pieces of the message, edits applied, as an `IoSlice` gather (no copy at all).
    pub fn write_iov<'a, const N: usize>(&'a self, iov: &mut SmallVec<[IoSlice<'a>; N]>)
    where
        [IoSlice<'a>; N]: smallvec::Array<Item = IoSlice<'a>>,
    {
        self.for_each_piece(|p| iov.push(IoSlice::new(p)));
    }

    /// The message as `Bytes`: the received buffer itself (zero-copy) when there are no edits.
    pub fn to_bytes(&self) -> Bytes {
        if self.edits.is_empty() {
            return self.buf.slice(..self.end as usize);
        }
        let mut out = BytesMut::with_capacity(self.written_len());
        self.write_to(&mut out);
        out.freeze()
    }
}

/// A per-shard pool of output buffers, so writing a message does not allocate once the pool is warm.
/// Not shared between threads (each shard owns one).
#[derive(Debug)]
pub struct BufPool {
    free: Vec<BytesMut>,
    buf_size: usize,
    max_pooled: usize,
}

impl BufPool {
    /// A pool handing out buffers of at least `buf_size` bytes, keeping at most `max_pooled` idle.
    pub fn new(buf_size: usize, max_pooled: usize) -> BufPool {
        BufPool {
            free: Vec::with_capacity(max_pooled),
            buf_size,
            max_pooled,
        }
    }

    /// An empty buffer with room for at least `min` bytes.
    pub fn take(&mut self, min: usize) -> BytesMut {
        match self.free.pop() {
            Some(mut b) => {
                b.clear();
                b.reserve(min);
                b
            }
            None => BytesMut::with_capacity(self.buf_size.max(min)),
        }
    }

    /// Returns a buffer to the pool (dropped when the pool is full or the buffer is oversized).
    pub fn give(&mut self, mut b: BytesMut) {
        if self.free.len() < self.max_pooled && b.capacity() <= self.buf_size * 4 {
            b.clear();
            self.free.push(b);
        }
    }

    /// Takes back a sent buffer when nobody else holds a reference to it.
    pub fn reclaim(&mut self, b: Bytes) {
        if let Ok(m) = b.try_into_mut() {
            self.give(m);
        }
    }

    /// Writes `msg` (edits applied) into a pooled buffer.
    pub fn write(&mut self, msg: &Message) -> BytesMut {
        let mut out = self.take(msg.written_len());
        msg.write_to(&mut out);
        out
    }

    /// Idle buffers held.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

impl Default for BufPool {
    fn default() -> Self {
        BufPool::new(4096, 64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::header::HeaderId;

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example;lr>\r\n\
Call-ID: c1\r\n\
Content-Length: 3\r\n\
\r\n\
abc";

    fn msg() -> Message {
        Message::parse(Bytes::from_static(REQ)).unwrap()
    }

    fn out(m: &Message) -> String {
        let mut v = Vec::new();
        m.write_to(&mut v);
        assert_eq!(v.len(), m.written_len());
        let mut iov: SmallVec<[IoSlice; 16]> = SmallVec::new();
        m.write_iov(&mut iov);
        let joined: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, v, "iov and buffer writers agree");
        assert_eq!(m.to_bytes(), v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn a_rollback_forgets_the_insertions_after_its_mark() {
        let mut m = msg();
        m.insert_header_top(b"X-Before", b"1");
        let before = out(&m);
        let mark = m.edits_mark();
        m.insert_header_top(b"Record-Route", b"<sip:p;lr>");
        m.insert_header_top(b"Via", b"SIP/2.0/UDP p;branch=z9hG4bKx");
        assert!(out(&m).starts_with(
            "INVITE sip:bob@biloxi.com SIP/2.0\r\nX-Before: 1\r\nRecord-Route: <sip:p;lr>\r\nVia:"
        ));
        m.rollback_edits(mark);
        assert_eq!(out(&m), before);
        m.rollback_edits(mark);
        assert_eq!(out(&m), before);
    }

    #[test]
    fn no_edits_is_byte_identical_and_zero_copy() {
        let m = msg();
        assert_eq!(out(&m).as_bytes(), REQ);
        assert_eq!(m.to_bytes().as_ptr(), m.buffer().as_ptr());
    }

    #[test]
    fn stateless_forward_edits() {
        let mut m = msg();
        m.insert_header_top(b"Via", b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKser");
        let mf = m.header(HeaderId::MaxForwards).unwrap().index;
        m.replace_header_value(mf, b"69").unwrap();
        let s = out(&m);
        assert!(s.starts_with("INVITE sip:bob@biloxi.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKser\r\nVia: SIP/2.0/UDP a.example"));
        assert!(s.contains("\r\nMax-Forwards: 69\r\n"));
        let again = Message::parse(Bytes::from(s.into_bytes())).unwrap();
        assert_eq!(again.header_value(HeaderId::MaxForwards), Some(&b"69"[..]));
        assert_eq!(again.headers_by_id(HeaderId::Via).count(), 2);
    }

    #[test]
    fn insert_before_after_append_delete() {
        let mut m = msg();
        let route = m.header(HeaderId::Route).unwrap().index;
        m.insert_header_before(route, b"Record-Route", b"<sip:me;lr>")
            .unwrap();
        m.insert_header_after(route, b"X-After", b"1").unwrap();
        m.append_header(b"X-Last", b"2");
        m.delete_header(route).unwrap();
        // Editing a deleted header is ignored: the deletion wins.
        m.replace_header_value(route, b"<sip:other>").unwrap();
        let s = out(&m);
        assert!(
            s.contains(
                "Max-Forwards: 70\r\nRecord-Route: <sip:me;lr>\r\nX-After: 1\r\nCall-ID: c1\r\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("Content-Length: 3\r\nX-Last: 2\r\n\r\nabc"),
            "{s}"
        );
        assert!(!s.contains("Route: <sip:p1"));
    }

    #[test]
    fn delete_one_value_of_a_list() {
        let mut m = msg();
        let via = m.header(HeaderId::Via).unwrap();
        let (idx, value) = (via.index, via.value);
        let first = m
            .span_of(&value[..value.iter().position(|&c| c == b',').unwrap()])
            .unwrap();
        m.delete_header_value(idx, first).unwrap();
        let s = out(&m);
        assert!(
            s.contains("\r\nVia: SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n"),
            "{s}"
        );

        let mut m = msg();
        let via = m.header(HeaderId::Via).unwrap();
        let (idx, value) = (via.index, via.value);
        let second = m
            .span_of(&value[value.iter().position(|&c| c == b',').unwrap() + 2..])
            .unwrap();
        m.delete_header_value(idx, second).unwrap();
        assert!(out(&m).contains("\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\nMax"));

        let mut m = msg();
        let cid = m.header(HeaderId::CallId).unwrap();
        let (idx, value) = (cid.index, m.span_of(cid.value).unwrap());
        m.delete_header_value(idx, value).unwrap();
        assert!(!out(&m).contains("Call-ID"));
        let elsewhere = crate::wire::Span::new(0, 3);
        assert_eq!(
            m.delete_header_value(idx, elsewhere),
            Err(crate::wire::EditError::NotInValue)
        );
    }

    #[test]
    fn request_uri_and_body() {
        let mut m = msg();
        m.set_request_uri(b"sip:alice@10.0.0.2:5070").unwrap();
        m.set_request_uri(b"sip:carol@10.0.0.3").unwrap();
        assert_eq!(m.current_request_uri(), Some(&b"sip:carol@10.0.0.3"[..]));
        m.set_body(b"hello world");
        let s = out(&m);
        assert!(
            s.starts_with("INVITE sip:carol@10.0.0.3 SIP/2.0\r\n"),
            "{s}"
        );
        assert!(s.ends_with("Content-Length: 11\r\n\r\nhello world"), "{s}");

        let mut m = Message::parse(Bytes::from_static(
            b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n",
        ))
        .unwrap();
        m.set_body(b"hi");
        assert_eq!(
            out(&m),
            "MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn set_body_rewrites_every_content_length() {
        // Found by the `message` fuzz target: a repeated Content-Length left stale made the
        // edited message unparseable.
        let mut m = Message::parse(Bytes::from_static(
            b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 2\r\n\r\nhi",
        ))
        .unwrap();
        m.set_body(b"hello");
        let again = Message::parse(m.to_bytes()).unwrap();
        assert_eq!(again.body(), b"hello");
        assert_eq!(
            out(&m),
            "MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn bare_lf_becomes_crlf_and_later_edits_stay_before_the_line_end() {
        let raw = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: c\nContent-Length: 2\n\nx\n";
        let mut m = Message::parse(Bytes::from_static(raw)).unwrap();
        assert!(m.has_bare_lf());
        m.crlf_line_ends();
        let via = m.header(HeaderId::Via).unwrap().value;
        let end = m.span_of(via).unwrap().end as usize;
        m.insert_raw(end, b";received=10.0.0.1");
        m.insert_header_top(b"Via", b"SIP/2.0/UDP ser;branch=z9hG4bKs");
        m.set_request_uri(b"sip:a@c").unwrap();
        assert_eq!(
            out(&m),
            "OPTIONS sip:a@c SIP/2.0\r\nVia: SIP/2.0/UDP ser;branch=z9hG4bKs\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1;received=10.0.0.1\r\nCall-ID: c\r\nContent-Length: 2\r\n\r\nx\n"
        );
        assert!(!msg().has_bare_lf());
    }

    #[test]
    fn pool_reuses_buffers() {
        let mut pool = BufPool::new(1024, 2);
        let m = msg();
        let b = pool.write(&m);
        assert_eq!(&b[..], REQ);
        let ptr = b.as_ptr();
        pool.reclaim(b.freeze());
        assert_eq!(pool.idle(), 1);
        let b2 = pool.take(10);
        assert_eq!(b2.as_ptr(), ptr);
    }
}
