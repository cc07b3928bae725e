//! RADIUS packet codec (RFC 2865 / 2866 / 3579) of the RADIUS client (`controlplane::modules::radius`)
//! that auth_radius, group_radius, uri_radius and acc use.
//!
//! - [`encode`] builds an Access-Request (random Request Authenticator, with a
//!   Message-Authenticator, first, as RFC 3579 §3.2 and the Blast-RADIUS advisories want) or an
//!   Accounting-Request (authenticator = MD5 over the packet and the secret, RFC 2866 §3).
//! - [`decode_reply`] accepts a reply only when its length, identifier, Response Authenticator
//!   and (when present, or required) Message-Authenticator check out, and every attribute is
//!   well formed; anything else is an error, never a panic.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

/// Access-Request.
pub const ACCESS_REQUEST: u8 = 1;
/// Access-Accept.
pub const ACCESS_ACCEPT: u8 = 2;
/// Access-Reject.
pub const ACCESS_REJECT: u8 = 3;
/// Accounting-Request.
pub const ACCOUNTING_REQUEST: u8 = 4;
/// Accounting-Response.
pub const ACCOUNTING_RESPONSE: u8 = 5;
/// Message-Authenticator (RFC 3579).
pub const MESSAGE_AUTHENTICATOR: u8 = 80;

const HEADER: usize = 20;
const MAX_PACKET: usize = 4096;

/// One attribute: type and value (1..=253 bytes).
pub type Attr = (u8, Vec<u8>);

/// Why a packet cannot be built or a reply is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An attribute value is empty or longer than 253 bytes, or the packet exceeds 4096 bytes.
    TooLong,
    /// Shorter than its header, or its Length field disagrees with what was received.
    BadLength,
    /// Not an answer to our request (identifier or code).
    NotOurs,
    /// An attribute runs past the end of the packet or has a length below 2.
    BadAttribute,
    /// The Response Authenticator does not match (wrong secret or forged).
    BadAuthenticator,
    /// The Message-Authenticator is missing (where required) or does not match.
    BadMessageAuthenticator,
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut m = match Hmac::<Md5>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return [0; 16],
    };
    m.update(data);
    m.finalize().into_bytes().into()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A request packet: `code`, `id`, `attrs`, signed with `secret`. `random` is the Request
/// Authenticator of an Access-Request (16 random bytes; ignored for accounting).
pub fn encode(
    code: u8,
    id: u8,
    attrs: &[Attr],
    secret: &[u8],
    random: [u8; 16],
) -> Result<Vec<u8>, Error> {
    let mut p = vec![code, id, 0, 0];
    p.extend_from_slice(&if code == ACCESS_REQUEST {
        random
    } else {
        [0; 16]
    });
    // Message-Authenticator first, as the Blast-RADIUS advisories (CVE-2024-3596) ask.
    let ma_at = (code == ACCESS_REQUEST).then(|| {
        p.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
        p.extend_from_slice(&[0; 16]);
        p.len() - 16
    });
    for (t, v) in attrs {
        if v.is_empty() || v.len() > 253 {
            return Err(Error::TooLong);
        }
        p.push(*t);
        p.push(v.len() as u8 + 2);
        p.extend_from_slice(v);
    }
    if p.len() > MAX_PACKET {
        return Err(Error::TooLong);
    }
    let len = (p.len() as u16).to_be_bytes();
    p[2..4].copy_from_slice(&len);
    match ma_at {
        Some(at) => {
            let mac = hmac_md5(secret, &p);
            p[at..at + 16].copy_from_slice(&mac);
        }
        None => {
            let auth = md5(&[&p, secret]);
            p[4..HEADER].copy_from_slice(&auth);
        }
    }
    Ok(p)
}

/// An attribute seen in a packet: its offset, type and value.
type Seen<'a> = (usize, u8, &'a [u8]);

/// The attributes of a well-formed `body` (the bytes after the header).
fn attributes(body: &[u8]) -> Result<Vec<Seen<'_>>, Error> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let (Some(&t), Some(&l)) = (body.get(i), body.get(i + 1)) else {
            return Err(Error::BadAttribute);
        };
        let l = l as usize;
        if l < 2 || i + l > body.len() {
            return Err(Error::BadAttribute);
        }
        out.push((HEADER + i, t, &body[i + 2..i + l]));
        i += l;
    }
    Ok(out)
}

/// A verified reply to `request` (as [`encode`] built it): its code and attributes.
/// `require_ma`: refuse a reply without Message-Authenticator (RFC 3579 answers to
/// Access-Requests).
pub fn decode_reply(
    reply: &[u8],
    request: &[u8],
    secret: &[u8],
    require_ma: bool,
) -> Result<(u8, Vec<Attr>), Error> {
    if reply.len() < HEADER || request.len() < HEADER {
        return Err(Error::BadLength);
    }
    let len = u16::from_be_bytes([reply[2], reply[3]]) as usize;
    // Octets past Length are padding (RFC 2865 §3); fewer than Length is a truncated packet.
    if !(HEADER..=MAX_PACKET).contains(&len) || len > reply.len() {
        return Err(Error::BadLength);
    }
    let reply = &reply[..len];
    let expected = match request[0] {
        ACCESS_REQUEST => [ACCESS_ACCEPT, ACCESS_REJECT],
        _ => [ACCOUNTING_RESPONSE, ACCOUNTING_RESPONSE],
    };
    if reply[1] != request[1] || !expected.contains(&reply[0]) {
        return Err(Error::NotOurs);
    }
    let req_auth = &request[4..HEADER];
    let attrs = attributes(&reply[HEADER..])?;
    let auth = md5(&[&reply[..4], req_auth, &reply[HEADER..], secret]);
    // Constant-time enough for 16 bytes of a MAC the sender cannot adapt per try.
    if auth
        .iter()
        .zip(&reply[4..HEADER])
        .fold(0u8, |a, (x, y)| a | (x ^ y))
        != 0
    {
        return Err(Error::BadAuthenticator);
    }
    let ma = attrs.iter().find(|(_, t, _)| *t == MESSAGE_AUTHENTICATOR);
    match ma {
        Some((at, _, v)) => {
            if v.len() != 16 {
                return Err(Error::BadMessageAuthenticator);
            }
            let mut copy = reply.to_vec();
            copy[4..HEADER].copy_from_slice(req_auth);
            copy[at + 2..at + 18].fill(0);
            if hmac_md5(secret, &copy) != **v {
                return Err(Error::BadMessageAuthenticator);
            }
        }
        None if require_ma => return Err(Error::BadMessageAuthenticator),
        None => {}
    }
    Ok((
        reply[0],
        attrs
            .into_iter()
            .filter(|(_, t, _)| *t != MESSAGE_AUTHENTICATOR)
            .map(|(_, t, v)| (t, v.to_vec()))
            .collect(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A reply as a server would sign it (with a Message-Authenticator when `ma`).
    fn reply(code: u8, request: &[u8], attrs: &[Attr], secret: &[u8], ma: bool) -> Vec<u8> {
        let mut p = vec![code, request[1], 0, 0];
        p.extend_from_slice(&request[4..HEADER]);
        for (t, v) in attrs {
            p.push(*t);
            p.push(v.len() as u8 + 2);
            p.extend_from_slice(v);
        }
        let at = ma.then(|| {
            p.extend_from_slice(&[MESSAGE_AUTHENTICATOR, 18]);
            p.extend_from_slice(&[0; 16]);
            p.len() - 16
        });
        let len = (p.len() as u16).to_be_bytes();
        p[2..4].copy_from_slice(&len);
        if let Some(at) = at {
            let mac = hmac_md5(secret, &p);
            p[at..at + 16].copy_from_slice(&mac);
        }
        let auth = md5(&[&p, secret]);
        p[4..HEADER].copy_from_slice(&auth);
        p
    }

    #[test]
    fn a_signed_reply_is_accepted_and_forged_or_truncated_ones_are_not() {
        let req = encode(
            ACCESS_REQUEST,
            7,
            &[(1, b"alice".to_vec())],
            b"s3cret",
            [9; 16],
        )
        .unwrap();
        let good = reply(
            ACCESS_ACCEPT,
            &req,
            &[(18, b"hi".to_vec())],
            b"s3cret",
            true,
        );
        assert_eq!(
            decode_reply(&good, &req, b"s3cret", true),
            Ok((ACCESS_ACCEPT, vec![(18, b"hi".to_vec())]))
        );
        let wrong_secret = reply(ACCESS_ACCEPT, &req, &[], b"other", true);
        assert_eq!(
            decode_reply(&wrong_secret, &req, b"s3cret", true),
            Err(Error::BadAuthenticator)
        );
        let mut flipped = good.clone();
        flipped[HEADER + 2] ^= 1;
        assert_eq!(
            decode_reply(&flipped, &req, b"s3cret", true),
            Err(Error::BadAuthenticator)
        );
        assert_eq!(
            decode_reply(&good[..good.len() - 3], &req, b"s3cret", true),
            Err(Error::BadLength)
        );
        let no_ma = reply(ACCESS_REJECT, &req, &[], b"s3cret", false);
        assert_eq!(
            decode_reply(&no_ma, &req, b"s3cret", true),
            Err(Error::BadMessageAuthenticator)
        );
        assert!(decode_reply(&no_ma, &req, b"s3cret", false).is_ok());
        // An attribute whose length runs past the end.
        let mut bad = reply(
            ACCESS_ACCEPT,
            &req,
            &[(18, b"hi".to_vec())],
            b"s3cret",
            false,
        );
        bad[HEADER + 1] = 40;
        assert_eq!(
            decode_reply(&bad, &req, b"s3cret", false),
            Err(Error::BadAttribute)
        );
    }

    #[test]
    fn accounting_requests_carry_the_md5_authenticator() {
        let req = encode(
            ACCOUNTING_REQUEST,
            1,
            &[(40, vec![0, 0, 0, 1])],
            b"k",
            [0; 16],
        )
        .unwrap();
        let mut zeroed = req.clone();
        zeroed[4..HEADER].fill(0);
        assert_eq!(req[4..HEADER], md5(&[&zeroed, b"k"]));
        assert_eq!(u16::from_be_bytes([req[2], req[3]]) as usize, req.len());
        let resp = reply(ACCOUNTING_RESPONSE, &req, &[], b"k", false);
        assert_eq!(
            decode_reply(&resp, &req, b"k", false),
            Ok((ACCOUNTING_RESPONSE, vec![]))
        );
    }

    proptest::proptest! {
        /// A reply signed with the secret is accepted with its attributes; the same reply with
        /// any one byte changed, or cut short, is refused.
        #[test]
        fn signed_replies_round_trip_and_any_change_is_refused(
            attrs in proptest::collection::vec(
                (1u8..=255, proptest::collection::vec(proptest::num::u8::ANY, 1..40)), 0..8),
            secret in proptest::collection::vec(proptest::num::u8::ANY, 1..20),
            id in proptest::num::u8::ANY,
            ma in proptest::bool::ANY,
            at in proptest::num::usize::ANY,
            flip in 1u8..=255,
        ) {
            let attrs: Vec<Attr> =
                attrs.into_iter().filter(|(t, _)| *t != MESSAGE_AUTHENTICATOR).collect();
            let req = encode(ACCESS_REQUEST, id, &[(1, b"u".to_vec())], &secret, [id; 16]).unwrap();
            let good = reply(ACCESS_ACCEPT, &req, &attrs, &secret, ma);
            proptest::prop_assert_eq!(
                decode_reply(&good, &req, &secret, ma),
                Ok((ACCESS_ACCEPT, attrs.clone()))
            );
            let mut bad = good.clone();
            let i = at % bad.len();
            bad[i] ^= flip;
            proptest::prop_assert!(decode_reply(&bad, &req, &secret, false).is_err());
            proptest::prop_assert!(decode_reply(&good[..i.max(1) - 1], &req, &secret, false).is_err());
        }

        #[test]
        fn any_bytes_are_refused_or_accepted_without_panic(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let req = encode(ACCESS_REQUEST, 3, &[], b"k", [1; 16]).unwrap();
            let _ = decode_reply(&bytes, &req, b"k", false);
            let _ = decode_reply(&bytes, &req, b"k", true);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let req = encode(ACCESS_REQUEST, 3, &[], b"k", [1; 16]).unwrap();
        let mut x: u32 = 12345;
        for n in 0..2000usize {
            let bytes: Vec<u8> = (0..n % 64)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = decode_reply(&bytes, &req, b"k", n % 2 == 0);
        }
    }
}
