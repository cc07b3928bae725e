//! Parse errors of the wire layer.
//!
//! Every parser in `wire` returns `Result<_, ParseError>`. `at` is a byte offset into the input the
//! parser was given (for `Message::parse`, the datagram; for a sub-parser, the slice it was handed), so a
//! log line can point at the offending byte. `kind` says what was wrong and maps to the status code and
//! reason phrase a stateless reply uses (RFC 3261 §16.3 / §21.4.1).

use std::fmt;

/// What was wrong with the input. Grouped by the part of the message it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    // ---- framing and limits ----
    /// Nothing (or only whitespace) was received.
    Empty,
    /// The message is larger than the configured maximum.
    TooLarge,
    /// More header fields than the configured maximum.
    TooManyHeaders,
    /// More Via values than the configured maximum.
    TooManyVias,
    /// A Request-URI longer than the configured maximum (answered with 414).
    UriTooLong,
    /// The header section did not end with an empty line.
    Incomplete,
    /// A header line had no `:` or an empty/invalid name.
    BadHeaderLine,
    /// A header field value contained a bare CR, NUL outside a quoted string, or a similar control byte.
    BadHeaderValue,
    /// Content-Length is not a non-negative decimal number.
    BadContentLength,
    /// Content-Length appears more than once with different values.
    MultipleContentLength,
    /// Content-Length says more bytes than were received.
    BodyTooShort,

    // ---- start line ----
    /// The first line is neither a request line nor a status line.
    BadStartLine,
    /// The method is not a token.
    BadMethod,
    /// The version is not `SIP/2.0` (answered with 505).
    UnsupportedVersion,
    /// The status code is not three digits.
    BadStatusCode,

    // ---- values ----
    /// A URI does not follow RFC 3261 §25.1 (or RFC 3966 for tel:).
    BadUri,
    /// A host is not a hostname, IPv4 address or bracketed IPv6 reference.
    BadHost,
    /// A port is not a number in 0..=65535.
    BadPort,
    /// An `%HH` escape is malformed.
    BadEscape,
    /// A name-addr / addr-spec (From, To, Contact, Route…) is malformed.
    BadNameAddr,
    /// A quoted string is not terminated.
    UnterminatedQuote,
    /// A `;name=value` parameter is malformed (e.g. empty name).
    BadParam,
    /// A Via value is malformed.
    BadVia,
    /// CSeq is malformed or its number exceeds 2^32-1 (RFC 3261 §8.1.1.5).
    BadCSeq,
    /// The CSeq method differs from the request-line method.
    CSeqMethodMismatch,
    /// Max-Forwards is not a number in 0..=255.
    BadMaxForwards,
    /// Expires (header or param) is not a number.
    BadExpires,
    /// Call-ID is empty or malformed.
    BadCallId,
    /// A Contact header is malformed (or `*` mixed with other values).
    BadContact,
    /// Content-Type is not `type/subtype`.
    BadContentType,
    /// Authorization / Proxy-Authorization credentials are malformed.
    BadCredentials,
    /// A token list (Require, Supported…) is malformed.
    BadTokenList,
    /// A header that may appear once appears several times (CSeq, Call-ID, From, To, Max-Forwards).
    DuplicateHeader,
    /// A header every request must carry is missing (RFC 3261 §8.1.1).
    MissingHeader,
    /// A header parameter appears twice (RFC 3261 §7.3.1), e.g. two `tag`s in From or To.
    DuplicateParam,
}

impl ErrorKind {
    /// The status code a stateless reply to a request with this error carries.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::UnsupportedVersion => 505,
            ErrorKind::TooLarge => 513,
            ErrorKind::UriTooLong => 414,
            _ => 400,
        }
    }

    /// The reason phrase of that reply: says what was wrong, as SER's `sl_reply_error` did.
    pub fn reason(self) -> &'static str {
        use ErrorKind::*;
        match self {
            Empty => "Bad Request - Empty Message",
            TooLarge => "Message Too Large",
            TooManyHeaders => "Bad Request - Too Many Headers",
            TooManyVias => "Bad Request - Too Many Via Headers",
            UriTooLong => "Request-URI Too Long",
            Incomplete => "Bad Request - Header Section Not Terminated",
            BadHeaderLine => "Bad Request - Malformed Header Line",
            BadHeaderValue => "Bad Request - Malformed Header Value",
            BadContentLength => "Bad Request - Bad Content-Length",
            MultipleContentLength => "Bad Request - Multiple Content-Length",
            BodyTooShort => "Bad Request - Content-Length Larger Than Message",
            BadStartLine => "Bad Request - Malformed Start Line",
            BadMethod => "Bad Request - Malformed Method",
            UnsupportedVersion => "Version Not Supported",
            BadStatusCode => "Bad Request - Bad Status Code",
            BadUri => "Bad Request - Malformed URI",
            BadHost => "Bad Request - Malformed Host",
            BadPort => "Bad Request - Bad Port",
            BadEscape => "Bad Request - Bad Escape Sequence",
            BadNameAddr => "Bad Request - Malformed Address",
            UnterminatedQuote => "Bad Request - Unterminated Quoted String",
            BadParam => "Bad Request - Malformed Parameter",
            BadVia => "Bad Request - Malformed Via",
            BadCSeq => "Bad Request - Bad CSeq",
            CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            BadMaxForwards => "Bad Request - Bad Max-Forwards",
            BadExpires => "Bad Request - Bad Expires",
            BadCallId => "Bad Request - Bad Call-ID",
            BadContact => "Bad Request - Malformed Contact",
            BadContentType => "Bad Request - Bad Content-Type",
            BadCredentials => "Bad Request - Malformed Credentials",
            BadTokenList => "Bad Request - Malformed Option Tags",
            DuplicateHeader => "Bad Request - Duplicate Header",
            MissingHeader => "Bad Request - Missing Mandatory Header",
            DuplicateParam => "Bad Request - Repeated Parameter",
        }
    }
}

/// A parse failure: what (`kind`) and where (`at`, a byte offset into the parser's input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub at: usize,
}

impl ParseError {
    pub fn new(kind: ErrorKind, at: usize) -> Self {
        ParseError { kind, at }
    }

    /// The same error, with `at` moved by `base` (a sub-parser's offset turned into the message's).
    pub fn offset(self, base: usize) -> Self {
        ParseError {
            kind: self.kind,
            at: self.at.saturating_add(base),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind.reason(), self.at)
    }
}

impl std::error::Error for ParseError {}

/// Shorthand used by every parser in `wire`.
pub type Result<T> = std::result::Result<T, ParseError>;
