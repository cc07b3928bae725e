//! Stream framing (TCP): where does the next message in a byte stream end? RFC 3261 §18.3: the
//! header section ends at the empty line, and Content-Length (mandatory over streams) gives the
//! body's length. CRLF keep-alives between messages (RFC 5626 §4.4.1) are skipped.
//!
//! This only frames; the framed bytes are then parsed by `Message::parse_with` with `stream: true`.

use super::chars::trim_lws;
use super::error::{ErrorKind, ParseError, Result};
use super::message::parse_content_length;

/// What the stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes (nothing complete yet).
    Partial,
    /// `skip` leading bytes are keep-alive CRLFs to discard; the message is `skip..end`.
    Complete { skip: usize, end: usize },
    /// Only keep-alive CRLFs: discard `n` bytes (a "\r\n\r\n" ping is answered with "\r\n" by
    /// RFC 5626 peers; the transport decides).
    KeepAlive(usize),
}

/// Frames the next message in `buf`. Errors are unrecoverable for the connection (RFC 4475 ncl/mcl01:
/// close it): a header section larger than `max_size`, a missing, negative or conflicting
/// Content-Length.
pub fn next_frame(buf: &[u8], max_size: usize) -> Result<Frame> {
    let skip = buf
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(buf.len());
    if skip == buf.len() {
        return Ok(if skip == 0 {
            Frame::Partial
        } else {
            Frame::KeepAlive(skip)
        });
    }
    let data = &buf[skip..];
    // End of the header section: the first empty line (CRLFCRLF, or LFLF from sloppy senders).
    let Some(hdr_end) = find_header_end(data) else {
        if data.len() > max_size {
            return Err(ParseError::new(ErrorKind::TooLarge, skip + max_size));
        }
        return Ok(Frame::Partial);
    };
    let head = &data[..hdr_end];
    let mut content_length: Option<usize> = None;
    for line in head.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            continue; // a continuation line
        }
        let name = trim_lws(&line[..colon]);
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let v = trim_lws(&line[colon + 1..]);
            let n = parse_content_length(v)
                .ok_or(ParseError::new(ErrorKind::BadContentLength, skip))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(ParseError::new(ErrorKind::MultipleContentLength, skip));
            }
            content_length = Some(n);
        }
    }
    let n = content_length.ok_or(ParseError::new(ErrorKind::MissingHeader, skip + hdr_end))?;
    let total = hdr_end
        .checked_add(n)
        .filter(|&t| t <= max_size)
        .ok_or(ParseError::new(ErrorKind::TooLarge, skip))?;
    if data.len() < total {
        return Ok(Frame::Partial);
    }
    Ok(Frame::Complete {
        skip,
        end: skip + total,
    })
}

/// Offset just after the empty line ending the header section.
fn find_header_end(data: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(rel) = memchr::memchr(b'\n', &data[from..]) {
        let nl = from + rel;
        match data.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if data.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            None => return None,
            _ => from = nl + 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn frames_complete_partial_and_pipelined() {
        assert_eq!(
            next_frame(M, 65535),
            Ok(Frame::Complete {
                skip: 0,
                end: M.len()
            })
        );
        assert_eq!(next_frame(&M[..M.len() - 1], 65535), Ok(Frame::Partial));
        assert_eq!(next_frame(&M[..20], 65535), Ok(Frame::Partial));
        let mut two = b"\r\n\r\n".to_vec();
        two.extend_from_slice(M);
        two.extend_from_slice(M);
        assert_eq!(
            next_frame(&two, 65535),
            Ok(Frame::Complete {
                skip: 4,
                end: 4 + M.len()
            })
        );
        assert_eq!(next_frame(b"\r\n\r\n", 65535), Ok(Frame::KeepAlive(4)));
        assert_eq!(next_frame(b"", 65535), Ok(Frame::Partial));
    }

    #[test]
    fn unrecoverable_framing() {
        let e = |b: &[u8]| next_frame(b, 65535).map_err(|e| e.kind);
        assert_eq!(
            e(b"BYE sip:a SIP/2.0\r\nContent-Length: -999\r\n\r\n"),
            Err(ErrorKind::BadContentLength)
        );
        assert_eq!(
            e(b"BYE sip:a SIP/2.0\r\nContent-Length: five\r\n\r\n"),
            Err(ErrorKind::BadContentLength)
        );
        assert_eq!(
            e(b"BYE sip:a SIP/2.0\r\nl: 13\r\nContent-Length: 5\r\n\r\n"),
            Err(ErrorKind::MultipleContentLength)
        );
        assert_eq!(
            e(b"BYE sip:a SIP/2.0\r\n\r\n"),
            Err(ErrorKind::MissingHeader)
        );
        assert_eq!(
            next_frame(&[b'a'; 100], 50).map_err(|e| e.kind),
            Err(ErrorKind::TooLarge)
        );
        // clerr over TCP: wait for more (the transport's read timeout closes it).
        assert_eq!(
            next_frame(
                b"INVITE sip:a SIP/2.0\r\nContent-Length: 9999\r\n\r\nv=0",
                65535
            ),
            Ok(Frame::Partial)
        );
    }
}
