//! The SIP wire layer (RFC 3261 §7, §20, §25): parse, inspect, edit and write SIP messages.
//!
//! Invariants every part of this module keeps:
//! - Nothing is copied on parse: a [`Message`] keeps one `Bytes` and records offsets; every value it
//!   hands out borrows from that buffer.
//! - Nothing panics on input: every parser returns [`Result`] with a [`ParseError`] whose
//!   [`ErrorKind`] names the 400 reason phrase (or 505/513).
//! - Header values may contain folded lines (CRLF or LF followed by SP/HTAB); sub-parsers treat such a
//!   fold as linear white space.
//! - Edits are recorded, not applied: [`Message::write`] applies them in one pass and copies untouched
//!   bytes verbatim, so a message without edits is written out byte-identical.

pub mod accessors;
pub mod builder;
mod cache;
pub mod chars;
pub mod contact;
pub mod cseq;
pub mod digest;
pub mod edit;
pub mod error;
pub mod framing;
pub mod header;
pub mod message;
pub mod name_addr;
pub mod params;
pub mod scalar;
pub mod uri;
pub mod via;
pub mod write;

pub use accessors::{Located, ViaValue};
pub use builder::{ReplyBuilder, RequestBuilder};
pub use edit::{EditError, Edits, EditsMark};
pub use error::{ErrorKind, ParseError, Result};
pub use header::HeaderId;
pub use message::{HeaderEntry, HeaderField, Limits, Message, Method, Span, StartLine};
pub use write::BufPool;
