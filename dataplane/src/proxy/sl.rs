//! Stateless replies, as SER's `sl` module sends them.
//!
//! - The To-tag of a reply is `<process prefix>.<hash of the request's transaction id>`: every
//!   retransmission of a request gets the same tag (so the UAC sees one reply), and an ACK whose
//!   To-tag starts with our prefix is the ACK of one of our non-2xx replies, absorbed here
//!   ([`SlTagger::is_own_ack`]) instead of being routed.
//! - A 3xx reply lists the destination set as Contact headers (redirect.cfg, Example 2-19).
//! - `sip_warning` adds SER's diagnostic Warning header (392 … "Noisy feedback tells: …");
//!   `server_signature` adds `Server:`.

use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BufMut;
use smallvec::SmallVec;

use crate::wire::builder::tag_of;
use crate::wire::{HeaderId, Message, Method, ReplyBuilder};

/// Counters of stateless replies sent (SER's `sl_stats`), one per shard so no two threads write
/// the same cache line; [`SlStats::sum`] adds them up when asked.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct SlStats {
    /// Replies by class: index 0 = 1xx … 5 = 6xx.
    pub by_class: [AtomicU64; 6],
    /// 200 replies (SER listed them apart).
    pub ok_200: AtomicU64,
    /// ACKs of our replies absorbed.
    pub acks_absorbed: AtomicU64,
}

/// A snapshot of [`SlStats`] summed over shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SlTotals {
    pub by_class: [u64; 6],
    pub ok_200: u64,
    pub acks_absorbed: u64,
}

impl SlStats {
    /// Counts one reply with this status.
    pub fn count(&self, code: u16) {
        if let Some(c) = self.by_class.get(usize::from(code / 100).wrapping_sub(1)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if code == 200 {
            self.ok_200.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sums the counters of every shard.
    pub fn sum(all: &[SlStats]) -> SlTotals {
        let mut t = SlTotals::default();
        for s in all {
            for (i, c) in s.by_class.iter().enumerate() {
                t.by_class[i] += c.load(Ordering::Relaxed);
            }
            t.ok_200 += s.ok_200.load(Ordering::Relaxed);
            t.acks_absorbed += s.acks_absorbed.load(Ordering::Relaxed);
        }
        t
    }
}

/// Makes and recognises sl To-tags.
#[derive(Debug, Clone)]
pub struct SlTagger {
    /// 16 hex digits, fixed for the life of the process (SER: an MD5 of a fixed string).
    prefix: [u8; 16],
}

/// A To-tag: 16 hex digits, '.', 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tag {
    buf: [u8; 25],
}

impl Tag {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn hex(n: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let len = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((n >> (4 * (len - 1 - i))) & 0xf) as usize];
    }
}

impl SlTagger {
    /// A tagger whose prefix derives from `seed` (e.g. the start time and pid): different servers
    /// and restarts give different prefixes.
    pub fn new(seed: u64) -> SlTagger {
        let mut h = DefaultHasher::new();
        h.write_u64(seed);
        h.write(b"ser-sl");
        let mut prefix = [0u8; 16];
        hex(h.finish(), &mut prefix);
        SlTagger { prefix }
    }

    /// The To-tag for a reply to `req`: the same for all its retransmissions.
    pub fn tag_for(&self, req: &Message) -> Tag {
        // FNV-1a: a tag needs to differ between requests, not resist an attacker (the prefix is
        // random per start); SipHash showed in profiles. From and the top Via come from the
        // message's parse-once cache (the §16.3 gate parsed them).
        let mut h = Fnv::default();
        h.write(req.call_id().unwrap_or_default());
        h.write_u8(0);
        h.write(req.from_tag().unwrap_or_default());
        h.write_u32(req.cseq().map_or(0, |c| c.num));
        h.write(req.top_via_branch().unwrap_or_default());
        let mut buf = [0u8; 25];
        buf[..16].copy_from_slice(&self.prefix);
        buf[16] = b'.';
        hex(h.finish() & 0xffff_ffff, &mut buf[17..]);
        Tag { buf }
    }

    /// Whether `req` is an ACK for a non-2xx reply we sent statelessly (its To-tag is ours).
    pub fn is_own_ack(&self, req: &Message) -> bool {
        if req.method() != Method::Ack {
            return false;
        }
        req.header_value(HeaderId::To)
            .and_then(tag_of)
            .is_some_and(|t| t.len() == 25 && t.starts_with(&self.prefix) && t[16] == b'.')
    }
}

/// 64-bit FNV-1a, word at a time, with a final mix.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit reaches the low 32 bits the tag keeps.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Eight bytes per step (a byte per step showed in profiles: ~80 bytes per request); the
        // shift folds the high bits back so later words mix with all earlier ones.
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.0 = (self.0 ^ u64::from_le_bytes(a)).wrapping_mul(0x0100_0000_01b3);
            self.0 ^= self.0 >> 29;
        }
        for &b in words.remainder() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// What goes into a stateless reply besides the copied headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SlReply<'a> {
    pub code: u16,
    pub reason: &'a [u8],
    /// For 3xx: the URIs of the destination set, written as Contact headers.
    pub contacts: &'a [&'a [u8]],
    /// Extra header lines (name, value).
    pub headers: &'a [(&'a [u8], &'a [u8])],
    /// Complete header lines added by the script and modules (`Ctx::reply_headers`).
    pub raw: &'a [u8],
    /// `Server:` value (`server_signature`), if any.
    pub server: Option<&'a [u8]>,
    /// `Warning:` value (`sip_warning`), if any; see [`warning_value`].
    pub warning: Option<&'a [u8]>,
}

/// Writes the reply to `req` into `out`.
pub fn write_reply<B: BufMut>(out: &mut B, req: &Message, r: &SlReply<'_>, tag: &Tag) {
    let mut b = ReplyBuilder::new(out, req, r.code, r.reason, tag.as_bytes());
    if (300..400).contains(&r.code) {
        for c in r.contacts {
            let mut v: SmallVec<[u8; 128]> = SmallVec::new();
            v.push(b'<');
            v.extend_from_slice(c);
            v.push(b'>');
            b.header(b"Contact", &v);
        }
    }
    for (n, v) in r.headers {
        b.header(n, v);
    }
    b.raw_lines(r.raw);
    if let Some(s) = r.server {
        b.header(b"Server", s);
    }
    if let Some(w) = r.warning {
        b.header(b"Warning", w);
    }
    b.finish(None, b"");
}

/// SER's `sip_warning` value: `392 <our ip:port> "Noisy feedback tells: pid=… req_src_ip=…
/// req_src_port=… in_uri=… out_uri=… via_cnt==…"`.
pub fn warning_value(
    local: SocketAddr,
    pid: u32,
    src: SocketAddr,
    in_uri: &[u8],
    out_uri: &[u8],
    via_count: usize,
) -> SmallVec<[u8; 256]> {
    use std::io::Write;
    let mut v: SmallVec<[u8; 256]> = SmallVec::new();
    // Writes into a SmallVec cannot fail.
    let _ = write!(
        v,
        "392 {local} \"Noisy feedback tells: pid={pid} req_src_ip={} req_src_port={} in_uri=",
        src.ip(),
        src.port()
    );
    v.extend_from_slice(in_uri);
    v.extend_from_slice(b" out_uri=");
    v.extend_from_slice(out_uri);
    let _ = write!(v, " via_cnt=={via_count}\"");
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nTo: <sip:bob@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn redirect_with_contacts_and_stable_tag() {
        let req = Message::parse(Bytes::from_static(REQ)).unwrap();
        let sl = SlTagger::new(42);
        let tag = sl.tag_for(&req);
        assert_eq!(
            tag,
            sl.tag_for(&Message::parse(Bytes::from_static(REQ)).unwrap())
        );
        let mut out = Vec::new();
        let contacts: [&[u8]; 2] = [b"sip:bob@10.0.0.2", b"sip:bob@10.0.0.3:5070"];
        write_reply(
            &mut out,
            &req,
            &SlReply {
                code: 302,
                reason: b"Moved Temporarily",
                contacts: &contacts,
                server: Some(b"Sip EXpress router (0.1.0 (x86_64/linux))"),
                ..Default::default()
            },
            &tag,
        );
        let r = Message::parse(Bytes::from(out)).unwrap();
        assert_eq!(r.status(), Some(302));
        let cs: Vec<_> = r
            .contacts()
            .map(|c| c.unwrap().value.addr.uri.raw.to_vec())
            .collect();
        assert_eq!(cs, vec![contacts[0].to_vec(), contacts[1].to_vec()]);
        assert_eq!(r.to().unwrap().tag(), Some(tag.as_bytes()));
        assert!(r.header_value(HeaderId::Server).is_some());

        // The ACK for it is recognised; another ACK is not.
        let ack = format!(
            "ACK sip:bob@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nTo: <sip:bob@x>;tag={}\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 7 ACK\r\n\r\n",
            String::from_utf8_lossy(tag.as_bytes())
        );
        assert!(sl.is_own_ack(&Message::parse(Bytes::from(ack.clone())).unwrap()));
        assert!(!SlTagger::new(43).is_own_ack(&Message::parse(Bytes::from(ack)).unwrap()));
    }

    #[test]
    fn tags_differ_when_any_byte_of_the_call_id_does() {
        // The hash takes eight bytes per step and the tag keeps 32 bits: every position counts.
        let sl = SlTagger::new(42);
        let base = std::str::from_utf8(REQ).unwrap();
        let tag_of = |cid: &str| {
            let text = base.replacen("Call-ID: ", &format!("Call-ID: {cid}"), 1);
            let m = Message::parse(Bytes::from(text)).unwrap();
            sl.tag_for(&m).as_bytes().to_vec()
        };
        let plain = tag_of("");
        let mut seen = std::collections::HashSet::new();
        seen.insert(plain.clone());
        for i in 0..16 {
            let mut id = vec![b'a'; 16];
            id[i] = b'b';
            assert!(
                seen.insert(tag_of(std::str::from_utf8(&id).unwrap())),
                "byte {i} did not change the tag"
            );
        }
        assert_eq!(plain, tag_of(""), "stable for a retransmission");
    }

    #[test]
    fn stats_sum_over_shards() {
        let shards: Vec<SlStats> = (0..3).map(|_| SlStats::default()).collect();
        shards[0].count(200);
        shards[1].count(404);
        shards[2].count(483);
        shards[2].count(302);
        shards[2].count(99); // out of range: ignored
        let t = SlStats::sum(&shards);
        assert_eq!(t.by_class, [0, 1, 1, 2, 0, 0]);
        assert_eq!(t.ok_200, 1);
    }

    #[test]
    fn warning_format() {
        let w = warning_value(
            "127.0.0.1:5060".parse().unwrap(),
            1234,
            "10.0.0.1:5070".parse().unwrap(),
            b"sip:a@b",
            b"sip:a@c",
            1,
        );
        assert_eq!(
            &w[..],
            &b"392 127.0.0.1:5060 \"Noisy feedback tells: pid=1234 req_src_ip=10.0.0.1 req_src_port=5070 in_uri=sip:a@b out_uri=sip:a@c via_cnt==1\""[..]
        );
    }
}
