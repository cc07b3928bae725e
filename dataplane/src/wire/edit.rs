//! Edits to a parsed [`Message`]: recorded as byte-range operations on the received buffer, applied
//! once by the writer (`write.rs`).
//!
//! Every edit is "replace `start..end` of the original buffer with these bytes" (an insertion has
//! `start == end`, a deletion has no bytes). New bytes live in one per-message scratch buffer that
//! stays inline for the common proxy case (a Via, a Record-Route, a new Max-Forwards), so recording
//! edits does not allocate.
//!
//! Rules the writer relies on:
//! - Offsets refer to the buffer as received; later edits never see earlier ones' output.
//! - Insertions at one position come out in the order they were recorded, before any replacement
//!   or deletion starting at that position.
//! - Replacing the same range twice keeps the last bytes. Any other edit that overlaps a range
//!   already replaced or deleted is ignored (the first one wins) — e.g. deleting a header and then
//!   editing its value leaves the header deleted.

use smallvec::SmallVec;

use super::header::HeaderId;
use super::message::{Message, Span, StartLine};

/// What went wrong with an edit request (a caller error, not a message error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditError {
    /// No header field at that index.
    NoSuchHeader,
    /// The slice given is not part of the header field's value.
    NotInValue,
    /// The message is a response (it has no Request-URI).
    NotARequest,
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EditError::NoSuchHeader => "no such header field",
            EditError::NotInValue => "slice is not part of the header value",
            EditError::NotARequest => "not a request",
        })
    }
}

impl std::error::Error for EditError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Op {
    pub start: u32,
    pub end: u32,
    /// The new bytes: `scratch[data_start..data_end]`.
    pub data_start: u32,
    pub data_end: u32,
}

/// The edit list of one message.
#[derive(Debug, Clone, Default)]
pub struct Edits {
    pub(super) ops: SmallVec<[Op; 6]>,
    pub(super) scratch: SmallVec<[u8; 256]>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn clear(&mut self) {
        self.ops.clear();
        self.scratch.clear();
    }

    pub(super) fn data(&self, op: &Op) -> &[u8] {
        self.scratch
            .get(op.data_start as usize..op.data_end as usize)
            .unwrap_or(&[])
    }

    /// Records "replace `span` with the concatenation of `parts`".
    fn push(&mut self, span: Span, parts: &[&[u8]]) {
        let data_start = self.scratch.len() as u32;
        for p in parts {
            self.scratch.extend_from_slice(p);
        }
        let data_end = self.scratch.len() as u32;
        // Replacing the very same (non-empty) range again: the last bytes win.
        if span.end > span.start {
            if let Some(op) = self
                .ops
                .iter_mut()
                .find(|o| o.start == span.start && o.end == span.end)
            {
                op.data_start = data_start;
                op.data_end = data_end;
                return;
            }
        }
        self.ops.push(Op {
            start: span.start,
            end: span.end,
            data_start,
            data_end,
        });
    }

    /// The ops in application order: by position; at one position, insertions first (in recording
    /// order), then the replacement/deletion.
    pub(super) fn ordered(&self) -> SmallVec<[Op; 8]> {
        let mut v: SmallVec<[Op; 8]> = self.ops.iter().copied().collect();
        // Stable: equal keys keep recording order.
        v.sort_by_key(|o| (o.start, o.end > o.start));
        v
    }
}

/// Where the edit list stood ([`Message::edits_mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditsMark {
    ops: usize,
    scratch: usize,
}

impl Message {
    /// The edits recorded so far.
    pub fn edits(&self) -> &Edits {
        &self.edits
    }

    /// A mark to return to with [`Message::rollback_edits`]: a stateless forward inserts its Via
    /// (and Record-Route), writes the message and takes them back, instead of copying the whole
    /// message (index, cache and edits) per forward.
    pub fn edits_mark(&self) -> EditsMark {
        EditsMark {
            ops: self.edits.ops.len(),
            scratch: self.edits.scratch.len(),
        }
    }

    /// Forgets every edit recorded since `mark`. Exact for insertions (`insert_header_top`…),
    /// which is what the callers record in between; a replacement of a range already replaced
    /// before the mark would be made in place and not be undone.
    pub fn rollback_edits(&mut self, mark: EditsMark) {
        self.edits.ops.truncate(mark.ops);
        self.edits.scratch.truncate(mark.scratch);
    }

    /// Whether any edit has been recorded.
    pub fn has_edits(&self) -> bool {
        !self.edits.is_empty()
    }

    /// Whether an edit inserted a header field with this name (e.g. a Max-Forwards added earlier in
    /// the script, so that forwarding does not add a second one). Looks only at inserted lines.
    pub fn inserted_header(&self, name: &[u8]) -> bool {
        self.edits.ops.iter().any(|op| {
            op.start == op.end && {
                let d = self.edits.data(op);
                d.len() > name.len()
                    && d[..name.len()].eq_ignore_ascii_case(name)
                    && d[name.len()] == b':'
            }
        })
    }

    /// Forgets every recorded edit.
    pub fn clear_edits(&mut self) {
        self.edits.clear();
    }

    /// Replaces an arbitrary span of the received message (low-level; prefer the header functions).
    pub fn replace_span(&mut self, span: Span, bytes: &[u8]) {
        let end = self.end;
        let span = Span {
            start: span.start.min(end),
            end: span.end.min(end).max(span.start.min(end)),
        };
        self.edits.push(span, &[bytes]);
    }

    /// Inserts raw bytes (e.g. a complete `Name: value\r\n` line) at offset `at`.
    pub fn insert_raw(&mut self, at: usize, bytes: &[u8]) {
        let at = at.min(self.end as usize);
        self.edits.push(Span::new(at, at), &[bytes]);
    }

    /// Inserts `name: value` as the first header field (where a proxy puts its Via).
    pub fn insert_header_top(&mut self, name: &[u8], value: &[u8]) {
        let at = self.headers_start();
        self.insert_field(at, name, value);
    }

    /// Inserts `name: value` just before header field `index`.
    pub fn insert_header_before(
        &mut self,
        index: usize,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), EditError> {
        let h = self.headers.get(index).ok_or(EditError::NoSuchHeader)?;
        let at = h.line.start as usize;
        self.insert_field(at, name, value);
        Ok(())
    }

    /// Inserts `name: value` just after header field `index`.
    pub fn insert_header_after(
        &mut self,
        index: usize,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), EditError> {
        let h = self.headers.get(index).ok_or(EditError::NoSuchHeader)?;
        let at = h.line.end as usize;
        self.insert_field(at, name, value);
        Ok(())
    }

    /// Appends `name: value` after the last header field.
    pub fn append_header(&mut self, name: &[u8], value: &[u8]) {
        let at = self.headers_end as usize;
        self.insert_field(at, name, value);
    }

    fn insert_field(&mut self, at: usize, name: &[u8], value: &[u8]) {
        self.edits
            .push(Span::new(at, at), &[name, b": ", value, b"\r\n"]);
    }

    /// Deletes header field `index` (the whole line, with its continuation lines).
    pub fn delete_header(&mut self, index: usize) -> Result<(), EditError> {
        let h = self.headers.get(index).ok_or(EditError::NoSuchHeader)?;
        let line = h.line;
        self.edits.push(line, &[]);
        Ok(())
    }

    /// Deletes every header field with this id; returns how many.
    pub fn delete_headers(&mut self, id: HeaderId) -> usize {
        let lines: SmallVec<[Span; 8]> = self
            .headers
            .iter()
            .filter(|h| h.id == id && id != HeaderId::Other)
            .map(|h| h.line)
            .collect();
        for l in &lines {
            self.edits.push(*l, &[]);
        }
        lines.len()
    }

    /// Replaces the value of header field `index` (the name and line end are kept).
    pub fn replace_header_value(&mut self, index: usize, value: &[u8]) -> Result<(), EditError> {
        let h = self.headers.get(index).ok_or(EditError::NoSuchHeader)?;
        let span = h.value;
        self.edits.push(span, &[value]);
        Ok(())
    }

    /// Deletes one value of a comma-separated header field. `value` is the span of that value
    /// inside the field (get it with [`Message::span_of`] from a slice an accessor handed out, e.g.
    /// one Via of a multi-value Via line). When it is the only value, the whole field is deleted.
    pub fn delete_header_value(&mut self, index: usize, value: Span) -> Result<(), EditError> {
        let h = *self.headers.get(index).ok_or(EditError::NoSuchHeader)?;
        let span = value;
        if span.start < h.value.start || span.end > h.value.end {
            return Err(EditError::NotInValue);
        }
        let b = &self.buf[..];
        let is_ws = |c: u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n');
        // Walk back over white space to a comma before the value…
        let mut s = span.start as usize;
        while s > h.value.start as usize && is_ws(b[s - 1]) {
            s -= 1;
        }
        if s > h.value.start as usize && b[s - 1] == b',' {
            // "a, b" deleting b → "a": remove from the comma to the end of the value.
            let del = Span::new(s - 1, span.end as usize);
            self.edits.push(del, &[]);
            return Ok(());
        }
        // …otherwise forward over white space to a comma after it.
        let mut e = span.end as usize;
        while e < h.value.end as usize && is_ws(b[e]) {
            e += 1;
        }
        if e < h.value.end as usize && b[e] == b',' {
            e += 1;
            while e < h.value.end as usize && is_ws(b[e]) {
                e += 1;
            }
            self.edits.push(Span::new(span.start as usize, e), &[]);
            return Ok(());
        }
        // The only value: the field goes.
        self.edits.push(h.line, &[]);
        Ok(())
    }

    /// Rewrites the Request-URI (SER's `rewriteuri` and friends end here). The rest of the request
    /// line is kept as received.
    pub fn set_request_uri(&mut self, uri: &[u8]) -> Result<(), EditError> {
        match self.start {
            StartLine::Request { uri: span, .. } => {
                self.edits.push(span, &[uri]);
                Ok(())
            }
            StartLine::Response { .. } => Err(EditError::NotARequest),
        }
    }

    /// The Request-URI the message will be written with: the last `set_request_uri`, else the
    /// received one.
    pub fn current_request_uri(&self) -> Option<&[u8]> {
        let span = self.request_uri_span()?;
        match self
            .edits
            .ops
            .iter()
            .find(|o| o.start == span.start && o.end == span.end)
        {
            Some(op) => Some(self.edits.data(op)),
            None => self.request_uri_bytes(),
        }
    }

    /// The body as the edits so far leave it: the last [`Message::set_body`], else as received
    /// (so that several body rewrites of one message build on each other).
    pub fn current_body(&self) -> &[u8] {
        let span = self.body;
        if span.start == span.end {
            return self.body();
        }
        match self
            .edits
            .ops
            .iter()
            .rev()
            .find(|o| o.start == span.start && o.end == span.end)
        {
            Some(op) => self.edits.data(op),
            None => self.body(),
        }
    }

    /// Replaces the body and keeps Content-Length right (rewriting its value, or adding the header
    /// when the message had none).
    pub fn set_body(&mut self, body: &[u8]) {
        let span = self.body;
        self.edits.push(span, &[body]);
        let mut num = itoa::Buffer::new();
        let len_str = num.format(body.len());
        // Every Content-Length field gets the new value: a message may repeat the header with the
        // same value (the parser allows that), and a stale copy would make the output unparseable.
        let lines: SmallVec<[Span; 2]> = self
            .headers
            .iter()
            .filter(|h| h.id == HeaderId::ContentLength)
            .map(|h| h.value)
            .collect();
        if lines.is_empty() {
            let at = self.headers_end as usize;
            self.edits.push(
                Span::new(at, at),
                &[b"Content-Length: ", len_str.as_bytes(), b"\r\n"],
            );
        }
        for v in lines {
            self.edits.push(v, &[len_str.as_bytes()]);
        }
    }
}
