//! Benchmark support: the sample messages the criterion benches in `benches/` feed to ser's hot
//! functions, kept here so every bench measures the same bytes.

/// A typical INVITE as a softphone sends it through one proxy: 2 Vias, Record-Route, Route,
/// Contact, Allow/Supported lists and an SDP body; 900-odd bytes.
pub const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.101\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;rport=5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 69\r\n\
Record-Route: <sip:proxy1.atlanta.example.com;lr>\r\n\
Route: <sip:ss1.biloxi.example.com;lr>\r\n\
From: \"Alice Liddell\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 233\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n";

use dataplane::wire::Message;

/// Reads what a proxy reads; returns something derived from all of it so nothing is optimised out.
pub fn touch_proxy_headers(m: &Message) -> usize {
    let mut n = 0;
    if let Some(Ok(u)) = m.request_uri() {
        n += u.host_raw.len();
    }
    for v in m.vias().flatten() {
        n += v.via.branch().map_or(0, <[u8]>::len) + v.via.received().map_or(0, <[u8]>::len);
        n += usize::from(v.via.rport().is_some());
    }
    n += m.to().ok().and_then(|t| t.tag()).map_or(0, <[u8]>::len);
    n += m.from().ok().and_then(|f| f.tag()).map_or(0, <[u8]>::len);
    n += m.call_id().map_or(0, <[u8]>::len);
    n += m.cseq().map_or(0, |c| c.num as usize + c.method.len());
    n += m.max_forwards().and_then(Result::ok).map_or(0, usize::from);
    n += m
        .routes()
        .flatten()
        .map(|r| r.value.uri.host_raw.len())
        .sum::<usize>();
    n += m
        .contacts()
        .flatten()
        .map(|c| c.value.addr.uri.raw.len())
        .sum::<usize>();
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn sample_invite_is_well_formed() {
        let m = dataplane::wire::Message::parse(bytes::Bytes::from_static(super::INVITE))
            .expect("sample parses");
        assert_eq!(m.body().len(), 233);
        assert!(
            (850..1000).contains(&super::INVITE.len()),
            "{}",
            super::INVITE.len()
        );
    }
}
