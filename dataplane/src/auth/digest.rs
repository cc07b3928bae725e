//! The digest computations of RFC 2617 §3.2.2 and RFC 7616 §3.4: HA1, HA2 and the request-digest,
//! for MD5, MD5-sess, SHA-256 and SHA-256-sess, with qop `auth`, `auth-int` or none.
//!
//! Invariants: nothing here allocates (digests are fixed-size lowercase hex on the stack); the
//! comparison of a received response with the expected one is constant-time ([`response_matches`]).

use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A digest algorithm (RFC 7616 §3.3 `algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `MD5` (also what an absent `algorithm` means).
    Md5,
    /// `MD5-sess`.
    Md5Sess,
    /// `SHA-256`.
    Sha256,
    /// `SHA-256-sess`.
    Sha256Sess,
}

impl Algorithm {
    /// Every supported algorithm.
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Md5,
        Algorithm::Md5Sess,
        Algorithm::Sha256,
        Algorithm::Sha256Sess,
    ];

    /// The algorithm named `b` (case-insensitive), `None` when unsupported.
    pub fn parse(b: &[u8]) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().as_bytes().eq_ignore_ascii_case(b))
    }

    /// The name as written in challenges.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants (HA1 also covers nonce and cnonce).
    pub fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Length of a digest in hex (32 for MD5, 64 for SHA-256).
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => 32,
            Algorithm::Sha256 | Algorithm::Sha256Sess => 64,
        }
    }

    /// Index in [`Algorithm::ALL`] (a bit in [`AlgorithmSet`]).
    fn bit(self) -> u8 {
        match self {
            Algorithm::Md5 => 1,
            Algorithm::Md5Sess => 2,
            Algorithm::Sha256 => 4,
            Algorithm::Sha256Sess => 8,
        }
    }
}

/// The algorithms a server offers, in the order it offers them (RFC 8760: preferred first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmSet {
    order: [Option<Algorithm>; 4],
    bits: u8,
}

impl AlgorithmSet {
    /// MD5 only (SER's behaviour).
    pub const MD5: AlgorithmSet = AlgorithmSet {
        order: [Some(Algorithm::Md5), None, None, None],
        bits: 1,
    };

    /// Parses a comma-separated list (`"SHA-256, MD5"`); `None` when a name is unknown or the list
    /// is empty.
    pub fn parse(list: &str) -> Option<AlgorithmSet> {
        let mut set = AlgorithmSet {
            order: [None; 4],
            bits: 0,
        };
        let mut n = 0;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let a = Algorithm::parse(name.as_bytes())?;
            if set.bits & a.bit() == 0 {
                *set.order.get_mut(n)? = Some(a);
                set.bits |= a.bit();
                n += 1;
            }
        }
        (n > 0).then_some(set)
    }

    /// True when `a` is offered.
    pub fn contains(&self, a: Algorithm) -> bool {
        self.bits & a.bit() != 0
    }

    /// The algorithms in offering order.
    pub fn iter(&self) -> impl Iterator<Item = Algorithm> + '_ {
        self.order.iter().flatten().copied()
    }

    /// Number of algorithms.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Never true for a parsed set.
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }
}

/// Quality of protection used by a response (RFC 2617 §3.2.2 `qop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    /// No qop (RFC 2069 compatibility): response = H(HA1:nonce:HA2).
    None,
    /// `auth`.
    Auth,
    /// `auth-int`: HA2 covers the body too.
    AuthInt,
}

impl Qop {
    /// The qop a client used (an absent one is [`Qop::None`], the caller's choice); `None` for a
    /// value that is neither `auth` nor `auth-int`.
    pub fn parse(b: &[u8]) -> Option<Qop> {
        if b.eq_ignore_ascii_case(b"auth") {
            Some(Qop::Auth)
        } else if b.eq_ignore_ascii_case(b"auth-int") {
            Some(Qop::AuthInt)
        } else {
            None
        }
    }

    fn name(self) -> &'static [u8] {
        match self {
            Qop::None => b"",
            Qop::Auth => b"auth",
            Qop::AuthInt => b"auth-int",
        }
    }
}

/// A digest in lowercase hex (32 or 64 characters).
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 64],
    len: u8,
}

impl Hex {
    /// The hex characters.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len as usize).unwrap_or_default()
    }

    /// A digest given in hex (a stored HA1), lowercased; `None` unless 32 or 64 hex digits.
    pub fn from_hex(hex: &[u8]) -> Option<Hex> {
        if !matches!(hex.len(), 32 | 64) || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut h = Hex {
            buf: [0; 64],
            len: hex.len() as u8,
        };
        for (d, s) in h.buf.iter_mut().zip(hex) {
            *d = s.to_ascii_lowercase();
        }
        Some(h)
    }

    fn of(raw: &[u8]) -> Hex {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut h = Hex {
            buf: [0; 64],
            len: 0,
        };
        for (i, b) in raw.iter().take(32).enumerate() {
            h.buf[2 * i] = DIGITS[(b >> 4) as usize];
            h.buf[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        h.len = (raw.len().min(32) * 2) as u8;
        h
    }
}

impl std::fmt::Debug for Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// H(p1:p2:…:pn) in hex, with the hash of `alg`.
pub fn h(alg: Algorithm, parts: &[&[u8]]) -> Hex {
    fn run<D: Digest>(parts: &[&[u8]]) -> Hex {
        let mut d = D::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                d.update(b":");
            }
            d.update(p);
        }
        Hex::of(&d.finalize())
    }
    match alg {
        Algorithm::Md5 | Algorithm::Md5Sess => run::<Md5>(parts),
        Algorithm::Sha256 | Algorithm::Sha256Sess => run::<Sha256>(parts),
    }
}

/// HA1 from a plain password: H(username:realm:password) (before any `-sess` step).
pub fn ha1(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> Hex {
    h(alg, &[username, realm, password])
}

/// What a request-digest is computed over.
#[derive(Debug, Clone, Copy)]
pub struct ResponseInput<'a> {
    /// Algorithm the client named.
    pub alg: Algorithm,
    /// H(username:realm:password) in hex, as stored or computed (the `-sess` step is done here).
    pub ha1: &'a [u8],
    /// `nonce`.
    pub nonce: &'a [u8],
    /// `nc` (8 hex digits) when qop is used.
    pub nc: &'a [u8],
    /// `cnonce` when qop is used (or for `-sess`).
    pub cnonce: &'a [u8],
    /// qop used.
    pub qop: Qop,
    /// The request method.
    pub method: &'a [u8],
    /// `uri` (digest-uri) as the client sent it.
    pub uri: &'a [u8],
    /// The message body (only for `auth-int`).
    pub body: &'a [u8],
}

/// The expected `response` value.
pub fn response(i: &ResponseInput<'_>) -> Hex {
    let sess;
    let ha1 = if i.alg.is_sess() {
        sess = h(i.alg, &[i.ha1, i.nonce, i.cnonce]);
        sess.as_bytes()
    } else {
        i.ha1
    };
    let ha2 = match i.qop {
        Qop::AuthInt => {
            let body = h(i.alg, &[i.body]);
            h(i.alg, &[i.method, i.uri, body.as_bytes()])
        }
        _ => h(i.alg, &[i.method, i.uri]),
    };
    match i.qop {
        Qop::None => h(i.alg, &[ha1, i.nonce, ha2.as_bytes()]),
        q => h(
            i.alg,
            &[ha1, i.nonce, i.nc, i.cnonce, q.name(), ha2.as_bytes()],
        ),
    }
}

/// Constant-time comparison of a received response (hex, any case) with the expected one.
pub fn response_matches(expected: &Hex, received: &[u8]) -> bool {
    let want = expected.as_bytes();
    if received.len() != want.len() {
        return false;
    }
    let mut lower = [0u8; 64];
    for (d, s) in lower.iter_mut().zip(received) {
        *d = s.to_ascii_lowercase();
    }
    bool::from(lower.get(..want.len()).unwrap_or_default().ct_eq(want))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_section_3_5() {
        // RFC 2617 §3.5: Mufasa / "Circle Of Life", qop=auth, GET /dir/index.html.
        let ha1 = ha1(
            Algorithm::Md5,
            b"Mufasa",
            b"testrealm@host.com",
            b"Circle Of Life",
        );
        let r = response(&ResponseInput {
            alg: Algorithm::Md5,
            ha1: ha1.as_bytes(),
            nonce: b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
            nc: b"00000001",
            cnonce: b"0a4f113b",
            qop: Qop::Auth,
            method: b"GET",
            uri: b"/dir/index.html",
            body: b"",
        });
        assert_eq!(r.as_bytes(), b"6629fae49393a05397450978507c4ef1");
        assert!(response_matches(&r, b"6629FAE49393A05397450978507C4EF1"));
        assert!(!response_matches(&r, b"6629fae49393a05397450978507c4ef2"));
        assert!(!response_matches(&r, b"6629fae4"));
    }

    #[test]
    fn rfc7616_section_3_9_1() {
        // RFC 7616 §3.9.1: Mufasa / "Circle of Life", realm http-auth@example.org.
        let nonce = b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
        let cnonce = b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let inp = |alg, ha1: &Hex| {
            response(&ResponseInput {
                alg,
                ha1: ha1.as_bytes(),
                nonce,
                nc: b"00000001",
                cnonce,
                qop: Qop::Auth,
                method: b"GET",
                uri: b"/dir/index.html",
                body: b"",
            })
        };
        let md5 = ha1(
            Algorithm::Md5,
            b"Mufasa",
            b"http-auth@example.org",
            b"Circle of Life",
        );
        assert_eq!(
            inp(Algorithm::Md5, &md5).as_bytes(),
            b"8ca523f5e9506fed4657c9700eebdbec"
        );
        let sha = ha1(
            Algorithm::Sha256,
            b"Mufasa",
            b"http-auth@example.org",
            b"Circle of Life",
        );
        assert_eq!(
            inp(Algorithm::Sha256, &sha).as_bytes(),
            &b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"[..]
        );
    }

    #[test]
    fn rfc2069_no_qop_and_auth_int() {
        // RFC 2069 form: H(HA1:nonce:HA2), checked against a hand computation.
        let ha1 = ha1(Algorithm::Md5, b"bob", b"biloxi.com", b"zanzibar");
        let ha2 = h(Algorithm::Md5, &[b"REGISTER", b"sip:biloxi.com"]);
        let want = h(Algorithm::Md5, &[ha1.as_bytes(), b"n1", ha2.as_bytes()]);
        let base = ResponseInput {
            alg: Algorithm::Md5,
            ha1: ha1.as_bytes(),
            nonce: b"n1",
            nc: b"",
            cnonce: b"",
            qop: Qop::None,
            method: b"REGISTER",
            uri: b"sip:biloxi.com",
            body: b"v=0",
        };
        assert_eq!(response(&base).as_bytes(), want.as_bytes());
        let bh = h(Algorithm::Md5, &[b"v=0"]);
        let ha2i = h(
            Algorithm::Md5,
            &[b"REGISTER", b"sip:biloxi.com", bh.as_bytes()],
        );
        let want = h(
            Algorithm::Md5,
            &[
                ha1.as_bytes(),
                b"n1",
                b"00000001",
                b"c",
                b"auth-int",
                ha2i.as_bytes(),
            ],
        );
        let r = response(&ResponseInput {
            qop: Qop::AuthInt,
            nc: b"00000001",
            cnonce: b"c",
            ..base
        });
        assert_eq!(r.as_bytes(), want.as_bytes());
        // -sess: HA1' = H(HA1:nonce:cnonce)
        let s = response(&ResponseInput {
            alg: Algorithm::Md5Sess,
            qop: Qop::Auth,
            nc: b"00000001",
            cnonce: b"c",
            ..base
        });
        let ha1s = h(Algorithm::Md5, &[ha1.as_bytes(), b"n1", b"c"]);
        let want = h(
            Algorithm::Md5,
            &[
                ha1s.as_bytes(),
                b"n1",
                b"00000001",
                b"c",
                b"auth",
                ha2.as_bytes(),
            ],
        );
        assert_eq!(s.as_bytes(), want.as_bytes());
    }

    #[test]
    fn algorithm_sets() {
        let s = AlgorithmSet::parse("SHA-256, md5").unwrap();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Algorithm::Sha256, Algorithm::Md5]
        );
        assert!(s.contains(Algorithm::Md5) && !s.contains(Algorithm::Md5Sess));
        assert!(AlgorithmSet::parse("SHA-1").is_none());
        assert!(AlgorithmSet::parse(" , ").is_none());
        assert_eq!(AlgorithmSet::parse("MD5,MD5").unwrap().len(), 1);
        assert_eq!(
            Algorithm::parse(b"sha-256-SESS"),
            Some(Algorithm::Sha256Sess)
        );
    }
}
