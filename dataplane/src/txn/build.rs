//! Requests the transaction layer writes itself: the ACK for a non-2xx final response (§17.1.1.3,
//! hop-by-hop, so it goes to the same next hop as the INVITE with the INVITE's branch) and the
//! CANCEL of a pending branch (§9.1). Both are built from the request as it was sent on that branch.

use bytes::BufMut;

use crate::wire::{HeaderId, Message};

fn line<B: BufMut>(out: &mut B, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes `METHOD <Request-URI> SIP/2.0`, our top Via, the Route set, From, `to`, Call-ID, the CSeq
/// number with `method`, Max-Forwards and an empty body.
fn write_hop_request<B: BufMut>(out: &mut B, sent: &Message, method: &[u8], to: &[u8]) -> bool {
    let (Some(ruri), Some(via), Some(from), Ok(call_id), Ok(cseq)) = (
        sent.request_uri_bytes(),
        sent.header_value(HeaderId::Via),
        sent.header_value(HeaderId::From),
        sent.call_id(),
        sent.cseq(),
    ) else {
        return false;
    };
    // Our Via is always a header line of its own, on top (we inserted it).
    let via = match memchr::memchr(b',', via) {
        Some(i) => via.get(..i).unwrap_or(via),
        None => via,
    };
    out.put_slice(method);
    out.put_u8(b' ');
    out.put_slice(ruri);
    out.put_slice(b" SIP/2.0\r\n");
    line(out, b"Via", via);
    for r in sent.headers_by_id(HeaderId::Route) {
        line(out, b"Route", r.value);
    }
    line(out, b"From", from);
    line(out, b"To", to);
    line(out, b"Call-ID", call_id);
    let mut n = itoa::Buffer::new();
    out.put_slice(b"CSeq: ");
    out.put_slice(n.format(cseq.num).as_bytes());
    out.put_u8(b' ');
    out.put_slice(method);
    out.put_slice(b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    true
}

/// The ACK for the non-2xx final `response` to the INVITE `sent` on this branch (To from the
/// response: it carries the UAS's tag). `false` when `sent` lacks a header it needs.
pub fn ack<B: BufMut>(out: &mut B, sent: &Message, response: &Message) -> bool {
    let Some(to) = response
        .header_value(HeaderId::To)
        .or_else(|| sent.header_value(HeaderId::To))
    else {
        return false;
    };
    write_hop_request(out, sent, b"ACK", to)
}

/// The CANCEL for the request `sent` on this branch.
pub fn cancel<B: BufMut>(out: &mut B, sent: &Message) -> bool {
    let Some(to) = sent.header_value(HeaderId::To) else {
        return false;
    };
    write_hop_request(out, sent, b"CANCEL", to)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};

    fn msg(s: &str) -> Message {
        Message::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    const SENT: &str = "INVITE sip:b@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt00000001deadbeef.00\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nRoute: <sip:10.0.0.3;lr>\nMax-Forwards: 69\nFrom: A <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: c1\nCSeq: 7 INVITE\nContact: <sip:a@10.0.0.1>\nContent-Type: application/sdp\nContent-Length: 4\n\nv=0\n";

    #[test]
    fn ack_copies_the_hop_fields_and_takes_to_from_the_response() {
        let sent = msg(SENT);
        let resp = msg("SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt00000001deadbeef.00\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\nFrom: A <sip:a@h>;tag=1\nTo: <sip:b@h>;tag=uas\nCall-ID: c1\nCSeq: 7 INVITE\nContent-Length: 0\n\n");
        let mut b = BytesMut::new();
        assert!(ack(&mut b, &sent, &resp));
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            "ACK sip:b@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKt00000001deadbeef.00\r\nRoute: <sip:10.0.0.3;lr>\r\nFrom: A <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=uas\r\nCall-ID: c1\r\nCSeq: 7 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(b.freeze()).unwrap();
    }

    #[test]
    fn cancel_keeps_request_uri_branch_and_cseq_number() {
        let mut b = BytesMut::new();
        assert!(cancel(&mut b, &msg(SENT)));
        let c = Message::parse(b.freeze()).unwrap();
        assert_eq!(c.method_bytes(), b"CANCEL");
        assert_eq!(c.request_uri_bytes(), Some(&b"sip:b@10.0.0.2"[..]));
        assert_eq!(
            c.top_via().unwrap().branch(),
            Some(&b"z9hG4bKt00000001deadbeef.00"[..])
        );
        assert_eq!(c.cseq().unwrap().num, 7);
        assert_eq!(c.header_value(HeaderId::To), Some(&b"<sip:b@h>"[..]));
        assert_eq!(c.vias().count(), 1);
    }
}
