//! Corpus sweep: runs every value parser over the header values of every message in
//! `tests/data/sip-corpus` (RFC 4475, RFC 5118, SER's legacy inputs) and checks the verdicts of
//! `INDEX.md` that concern single header values. `SER_SIP_CORPUS` points elsewhere.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::wire::contact::{parse_contacts, Contacts};
use crate::wire::cseq::CSeq;
use crate::wire::digest::Credentials;
use crate::wire::name_addr::NameAddr;
use crate::wire::scalar;
use crate::wire::uri::Uri;
use crate::wire::via::parse_vias;
use std::path::PathBuf;

/// The corpus directory (part of the repository, so a missing one is a failure, not a skip).
pub(crate) fn dir() -> Option<PathBuf> {
    let d = std::env::var_os("SER_SIP_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/data/sip-corpus"
            ))
        });
    assert!(d.is_dir(), "sip-corpus not found at {}", d.display());
    Some(d)
}

/// Reads a corpus file byte-exact (`rfc4475/wsinv.dat`…).
pub(crate) fn read(rel: &str) -> Option<Vec<u8>> {
    Some(std::fs::read(dir()?.join(rel)).expect("corpus file"))
}

/// Asserts that `lit` (a value copied into a unit test) occurs byte-exact in corpus file `rel`.
pub(crate) fn assert_in(rel: &str, lit: &[u8]) {
    if let Some(data) = read(rel) {
        assert!(
            memchr::memmem::find(&data, lit).is_some(),
            "{rel} does not contain {:?}",
            String::from_utf8_lossy(lit)
        );
    }
}

/// Splits a message head into its start line and `(name, value)` pairs; values keep internal
/// folds and are trimmed. Accepts CRLF and bare LF.
/// A start line and its `(name, value)` pairs.
type Head<'a> = (&'a [u8], Vec<(&'a [u8], &'a [u8])>);

fn head(msg: &[u8]) -> Head<'_> {
    let end = memchr::memmem::find(msg, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(msg, b"\n\n"))
        .unwrap_or(msg.len());
    let head = &msg[..end];
    let mut lines: Vec<(usize, usize)> = Vec::new();
    let mut s = 0;
    for i in memchr::memchr_iter(b'\n', head).chain(std::iter::once(head.len())) {
        lines.push((s, i));
        s = i + 1;
    }
    let start_line = trim_lws(&head[lines[0].0..lines[0].1]);
    let mut out = Vec::new();
    let mut k = 1;
    while k < lines.len() {
        let (ls, mut le) = lines[k];
        k += 1;
        while k < lines.len() && matches!(head.get(lines[k].0), Some(b' ' | b'\t')) {
            le = lines[k].1;
            k += 1;
        }
        let line = &head[ls..le.min(head.len())];
        if let Some(c) = memchr::memchr(b':', line) {
            out.push((trim_lws(&line[..c]), trim_lws(&line[c + 1..])));
        }
    }
    (start_line, out)
}

/// Runs the parser that owns header `name` over `value`; `None` for headers no parser here owns.
fn check(name: &[u8], value: &[u8]) -> Option<Vec<Result<()>>> {
    let n = name.to_ascii_lowercase();
    let one = |r: Result<()>| Some(vec![r]);
    match &n[..] {
        b"via" | b"v" => Some(parse_vias(value).map(|r| r.map(|_| ())).collect()),
        b"from" | b"f" | b"to" | b"t" => one(NameAddr::parse(value).map(|_| ())),
        b"contact" | b"m" => match parse_contacts(value) {
            Ok(Contacts::Star) => one(Ok(())),
            Ok(Contacts::List(l)) => Some(
                l.iter()
                    .map(|c| c.expires().and(c.q()).map(|_| ()))
                    .collect(),
            ),
            Err(e) => one(Err(e)),
        },
        b"route" | b"record-route" => Some(
            split_commas(value)
                .map(|(v, s, _)| NameAddr::parse(v).map(|_| ()).map_err(|e| e.offset(s)))
                .collect(),
        ),
        b"cseq" => one(CSeq::parse(value).map(|_| ())),
        b"call-id" | b"i" => one(scalar::call_id(value).map(|_| ())),
        b"max-forwards" => one(scalar::max_forwards(value).map(|_| ())),
        b"expires" => one(scalar::expires(value).map(|_| ())),
        b"content-length" | b"l" => one(scalar::content_length(value).map(|_| ())),
        b"content-type" | b"c" => one(scalar::media_type(value).map(|_| ())),
        b"require" | b"proxy-require" | b"supported" | b"k" | b"unsupported" | b"allow" => {
            Some(scalar::token_list(value).map(|r| r.map(|_| ())).collect())
        }
        b"authorization" | b"proxy-authorization" | b"www-authenticate" | b"proxy-authenticate" => {
            one(Credentials::parse(value).map(|_| ()))
        }
        _ => None,
    }
}

/// All parse results of one message: the request-URI (if a request) and every known header.
fn sweep(msg: &[u8]) -> Vec<(String, Result<()>)> {
    let (start, hdrs) = head(msg);
    let mut out = Vec::new();
    if !start.starts_with(b"SIP/") {
        let mut parts = start.split(|&b| b == b' ').filter(|p| !p.is_empty());
        if let Some(uri) = parts.nth(1) {
            out.push(("R-URI".into(), Uri::parse(uri).map(|_| ())));
        }
    }
    for (n, v) in hdrs {
        for r in check(n, v).unwrap_or_default() {
            out.push((String::from_utf8_lossy(n).into_owned(), r));
        }
    }
    out
}

fn files(sub: &str, ext: &str) -> Vec<(String, Vec<u8>)> {
    let Some(d) = dir() else { return Vec::new() };
    let mut v: Vec<_> = std::fs::read_dir(d.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// RFC 4475 messages whose every header value (and R-URI) must parse.
const VALID_4475: &[&str] = &[
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
    "badbranch",
    "insuf",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "multi01",
    "mcl01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
];

fn errors(results: &[(String, Result<()>)]) -> Vec<(String, ErrorKind)> {
    results
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| (n.to_ascii_lowercase(), e.kind)))
        .collect()
}

#[test]
fn rfc4475_header_values() {
    let all = files("rfc4475", "dat");
    if all.is_empty() {
        return;
    }
    assert_eq!(all.len(), 49);
    for (name, msg) in &all {
        let res = sweep(msg);
        let errs = errors(&res);
        if VALID_4475.contains(&name.as_str()) {
            assert!(errs.is_empty(), "{name}: {errs:?}");
            continue;
        }
        let want: &[(&str, ErrorKind)] = match name.as_str() {
            "badinv01" => &[
                ("via", ErrorKind::BadVia),
                ("via", ErrorKind::BadVia),
                ("via", ErrorKind::BadVia),
                ("via", ErrorKind::BadVia),
                ("contact", ErrorKind::BadParam),
            ],
            "scalar02" => &[
                ("cseq", ErrorKind::BadCSeq),
                ("max-forwards", ErrorKind::BadMaxForwards),
                ("expires", ErrorKind::BadExpires),
                ("contact", ErrorKind::BadExpires),
            ],
            "scalarlg" => &[("cseq", ErrorKind::BadCSeq)],
            "quotbal" => &[("to", ErrorKind::UnterminatedQuote)],
            "regbadct" => &[("contact", ErrorKind::BadNameAddr)],
            "badaspec" => &[("to", ErrorKind::BadNameAddr)],
            "baddn" => &[
                ("from", ErrorKind::BadNameAddr),
                ("to", ErrorKind::BadNameAddr),
            ],
            "ncl" => &[("content-length", ErrorKind::BadContentLength)],
            // request-line defects: the URI is cut at spaces by the start-line parser
            "ltgtruri" => &[("r-uri", ErrorKind::BadUri)],
            "lwsruri" => &[("r-uri", ErrorKind::BadParam)],
            // framing, version, method and start-line verdicts belong to the message core
            _ => &[],
        };
        let want: Vec<_> = want.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        assert_eq!(errs, want, "{name}");
    }
    let baddn = read("rfc4475/variants/baddn.terminated.dat").unwrap();
    let errs = errors(&sweep(&baddn));
    assert_eq!(
        errs,
        vec![
            ("from".into(), ErrorKind::BadNameAddr),
            ("to".into(), ErrorKind::BadNameAddr)
        ]
    );
}

#[test]
fn rfc5118_header_values() {
    for sub in ["rfc5118", "rfc5118/wire"] {
        for (name, msg) in files(sub, "dat") {
            let errs = errors(&sweep(&msg));
            let want: Vec<(String, ErrorKind)> = match name.as_str() {
                "ipv6-bad" => vec![("r-uri".into(), ErrorKind::BadHost)],
                _ => vec![],
            };
            assert_eq!(errs, want, "{sub}/{name}");
        }
    }
}

/// Every header value of every corpus message, with its header name (loaded once).
fn corpus_values() -> &'static [(Vec<u8>, Vec<u8>)] {
    static V: std::sync::OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        let mut out = Vec::new();
        for (sub, ext) in [
            ("rfc4475", "dat"),
            ("rfc5118", "dat"),
            ("ser-legacy", "sip"),
        ] {
            for (_, msg) in files(sub, ext) {
                let (start, hdrs) = head(&msg);
                out.push((b"r-uri".to_vec(), start.to_vec()));
                for (n, v) in hdrs {
                    out.push((n.to_vec(), v.to_vec()));
                }
            }
        }
        out
    })
}

proptest::proptest! {
    /// Corpus values with a few random byte edits never make a parser panic.
    #[test]
    fn mutated_corpus_values_never_panic(
        pick in proptest::prelude::any::<proptest::sample::Index>(),
        edits in proptest::collection::vec(
            (proptest::prelude::any::<proptest::sample::Index>(), 0u8..3,
             proptest::prop_oneof![proptest::prelude::any::<u8>(),
                 proptest::sample::select(b"\"<>;,:@[]%\\ \r\n=?/".to_vec())]),
            1..4),
    ) {
        let all = corpus_values();
        if all.is_empty() {
            return Ok(());
        }
        let (name, value) = pick.get(all);
        let mut v = value.clone();
        for (at, op, b) in edits {
            let i = if v.is_empty() { 0 } else { at.index(v.len()) };
            match op {
                0 if i < v.len() => v[i] = b,
                1 => v.insert(i, b),
                _ if i < v.len() => {
                    v.remove(i);
                }
                _ => v.push(b),
            }
        }
        let v = trim_lws(&v);
        let _ = Uri::parse(v);
        let _ = NameAddr::parse(v);
        for r in parse_vias(v) { let _ = r; }
        let _ = parse_contacts(v);
        let _ = CSeq::parse(v);
        let _ = Credentials::parse(v);
        let _ = scalar::media_type(v);
        let _ = check(name, v);
    }
}

#[test]
fn ser_legacy_header_values() {
    // No recorded verdicts in the corpus; these are the defects each file really has.
    for (name, msg) in files("ser-legacy", "sip") {
        let errs = errors(&sweep(&msg));
        let want: &[(&str, ErrorKind)] = match name.as_str() {
            // ` Call-ID: …` folded into To
            "invite3-callid" => &[("to", ErrorKind::BadParam)],
            // `CSeq:101` (no method)
            "invite4-cseq" => &[("cseq", ErrorKind::BadCSeq)],
            // `branch=` with no value
            "invite6-badbranch-via" => &[("via", ErrorKind::BadVia)],
            // `tag=7618c7618^` and `tag=`
            "pingtel" => &[("from", ErrorKind::BadParam), ("to", ErrorKind::BadParam)],
            // `To:poo <bear@iptel.org>` (no scheme)
            "register04" => &[("to", ErrorKind::BadUri)],
            // `rport=` with no value
            "rport" => &[("via", ErrorKind::BadVia)],
            // Authorization cut inside the nonce
            "short_nonce" => &[("authorization", ErrorKind::BadCredentials)],
            _ => &[],
        };
        let want: Vec<_> = want.iter().map(|(n, k)| (n.to_string(), *k)).collect();
        assert_eq!(errs, want, "ser-legacy/{name}");
    }
}
