#![allow(clippy::unwrap_used)]

use super::*;
use bytes::Bytes;

#[test]
fn priority_classification() {
    assert!(is_priority(b"SIP/2.0 200 OK\r\n"));
    assert!(is_priority(b"\r\nACK sip:a SIP/2.0\r\n"));
    assert!(is_priority(b"CANCEL sip:a SIP/2.0\r\n"));
    assert!(!is_priority(b"INVITE sip:a SIP/2.0\r\n"));
    assert!(!is_priority(b""));
}

struct Echo;
impl Handler for Echo {
    type Msg = Bytes;
    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        let d = pkt.data.clone();
        out.reply_to(&pkt, pkt.src, d);
    }
    fn on_message(&mut self, msg: Bytes, out: &mut Outbox) {
        let dest: SocketAddr = String::from_utf8_lossy(&msg).parse().unwrap();
        out.send(msg, dest, Proto::Udp, None);
    }
}

#[test]
fn echo_shard_over_udp_and_inbox() {
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            udp: true,
            tcp: false,
        }],
        pin: false,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(&cfg, |_| Echo).unwrap();
    let server = rt.local_addrs()[0].0;
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send_to(b"hello", server).unwrap();
    let mut buf = [0u8; 100];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, server);
    let me = c.local_addr().unwrap().to_string();
    rt.inbox(0).unwrap().send(Bytes::from(me.clone())).unwrap();
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], me.as_bytes());
    rt.stop();
    assert_eq!(rt.join(), 0);
}

/// Records what it was handed, in order; answers nothing.
struct Recorder(std::sync::mpsc::Sender<String>);
impl Handler for Recorder {
    type Msg = (Bytes, SocketAddr);
    fn on_packet(&mut self, pkt: Packet, _out: &mut Outbox) {
        let first = pkt.data.split(|&c| c == b'\r').next().unwrap_or_default();
        let _ = self.0.send(String::from_utf8_lossy(first).into_owned());
    }
    fn on_message(&mut self, (data, dest): (Bytes, SocketAddr), out: &mut Outbox) {
        out.send(data, dest, Proto::Tcp, None);
    }
}

fn req(method: &str, n: u32) -> String {
    format!(
        "{method} sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{n}\r\n\
         From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c{n}\r\n\
         CSeq: {n} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn overload_hands_responses_acks_cancels_first_and_503s_excess_requests() {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: server,
            udp: true,
            tcp: false,
        }],
        pin: false,
        overload_backlog: 1,
        overload_after: Duration::ZERO,
        ..RuntimeConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // The socket is bound before the shard runs: queue one burst so that its first turn sees
    // all of it at once.
    let rt = Runtime::start(&cfg, |_| {
        for m in [
            req("INVITE", 1),
            req("INVITE", 2),
            "SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n".to_string(),
            req("ACK", 3),
            req("INVITE", 4),
            req("CANCEL", 5),
        ] {
            client.send_to(m.as_bytes(), server).unwrap();
        }
        Recorder(tx.clone())
    })
    .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(rx.recv_timeout(Duration::from_secs(3)).unwrap());
    }
    assert_eq!(
        seen,
        [
            "SIP/2.0 180 Ringing",
            "ACK sip:x@127.0.0.1 SIP/2.0",
            "CANCEL sip:x@127.0.0.1 SIP/2.0",
            "INVITE sip:x@127.0.0.1 SIP/2.0",
        ]
    );
    let mut buf = [0u8; 2048];
    let mut rejected = Vec::new();
    for _ in 0..2 {
        let (n, _) = client.recv_from(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(
            text.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
        rejected.push(text.contains("Call-ID: c2") || text.contains("Call-ID: c4"));
    }
    assert_eq!(rejected, [true, true]);
    rt.stop();
    assert_eq!(rt.join(), 0);
}

/// Answers "ok" to every packet after 1 ms of work: a shard that serves 1,000 a second.
struct Slow;
impl Handler for Slow {
    type Msg = ();
    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        std::thread::sleep(Duration::from_millis(1));
        out.reply_to(&pkt, pkt.src, Bytes::from_static(b"ok"));
    }
}

#[test]
fn queueing_delay_sheds_with_503_and_counts_the_overload() {
    let server = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let stats = Arc::new(crate::stats::Stats::new(1));
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: server,
            udp: true,
            tcp: false,
        }],
        pin: false,
        // Far below what a turn ever holds: only the delay can make this shard shed.
        overload_backlog: 100_000,
        overload_after: Duration::ZERO,
        overload_delay: Duration::from_millis(40),
        stats: Some(stats.clone()),
        ..RuntimeConfig::default()
    };
    // 50 queued before the first turn (50 ms of work), 100 more while it works: those waited
    // ~50 ms, over the target.
    let rt = Runtime::start(&cfg, |_| {
        for i in 0..50 {
            client
                .send_to(req("OPTIONS", i).as_bytes(), server)
                .unwrap();
        }
        Slow
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    for i in 50..150 {
        client
            .send_to(req("OPTIONS", i).as_bytes(), server)
            .unwrap();
    }
    let (mut ok, mut refused) = (0, 0);
    let mut buf = [0u8; 2048];
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while let Ok((n, _)) = client.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        if text == "ok" {
            ok += 1;
        } else {
            assert!(
                text.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nRetry-After: 5\r\n"), "{text}");
            refused += 1;
        }
    }
    // The first 50 are served; of the late ones, what 3/4 of the target lets a turn serve, then
    // 503s for a quarter (none is left to drop here: refusing is quick).
    assert!(ok >= 50 && refused >= 30, "{ok} ok, {refused} refused");
    std::thread::sleep(Duration::from_millis(250));
    let t = stats.shard_totals(0);
    assert_eq!(t.overload_503, refused);
    assert_eq!(ok + refused + t.dropped, 150, "{t:?}");
    assert!(t.overload_entered >= 1, "{t:?}");
    rt.stop();
    assert_eq!(rt.join(), 0);
}

#[test]
fn tcp_outgoing_connect_is_non_blocking_and_reused() {
    let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = peer.local_addr().unwrap();
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            udp: false,
            tcp: true,
        }],
        pin: false,
        ..RuntimeConfig::default()
    };
    let (tx, _rx) = std::sync::mpsc::channel();
    let rt = Runtime::start(&cfg, |_| Recorder(tx.clone())).unwrap();
    let inbox = rt.inbox(0).unwrap();
    inbox.send((Bytes::from_static(b"one;"), dest)).unwrap();
    inbox.send((Bytes::from_static(b"two;"), dest)).unwrap();
    let (mut conn, _) = peer.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 8 {
        use std::io::Read;
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(&got, b"one;two;");
    // A third message reuses the connection: no second accept.
    inbox.send((Bytes::from_static(b"three"), dest)).unwrap();
    let mut buf = [0u8; 5];
    use std::io::Read;
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"three");
    peer.set_nonblocking(true).unwrap();
    assert!(peer.accept().is_err());
    rt.stop();
    assert_eq!(rt.join(), 0);
}

#[test]
fn shards_share_one_port_and_a_second_server_cannot_join() {
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            udp: true,
            tcp: true,
        }],
        shards: 3,
        pin: false,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(&cfg, |_| Echo).unwrap();
    assert_eq!(rt.shard_count(), 3);
    let udp = rt.local_addrs()[0].0;
    let tcp = rt.local_addrs()[1].0;
    assert_ne!(udp.port(), 0);
    // Every datagram is echoed, whichever shard the kernel picks.
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 16];
    for i in 0..20u8 {
        c.send_to(&[i], udp).unwrap();
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i]);
    }
    let again = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: udp,
            udp: true,
            tcp: false,
        }],
        ..cfg.clone()
    };
    let err = Runtime::start(&again, |_| Echo).err().unwrap();
    assert!(err.to_string().contains("cannot bind udp"), "{err}");
    let again = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: tcp,
            udp: false,
            tcp: true,
        }],
        ..cfg
    };
    assert!(Runtime::start(&again, |_| Echo).is_err());
    rt.stop();
    assert_eq!(rt.join(), 0);
}

#[test]
fn any_shard_reaches_a_peer_over_the_connection_another_shard_accepted() {
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            udp: false,
            tcp: true,
        }],
        shards: 2,
        pin: false,
        ..RuntimeConfig::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = Runtime::start(&cfg, |_| Recorder(tx.clone())).unwrap();
    let server = rt.local_addrs()[0].0;
    let mut client = std::net::TcpStream::connect(server).unwrap();
    let me = client.local_addr().unwrap();
    // Make sure the owning shard has accepted it: send a message and wait for the handler.
    use std::io::{Read, Write};
    client
        .write_all(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(3)).unwrap(),
        "OPTIONS sip:x SIP/2.0"
    );
    rt.inbox(0)
        .unwrap()
        .send((Bytes::from_static(b"from-0;"), me))
        .unwrap();
    rt.inbox(1)
        .unwrap()
        .send((Bytes::from_static(b"from-1;"), me))
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 14 {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8(got).unwrap();
    assert!(
        text.contains("from-0;") && text.contains("from-1;"),
        "{text}"
    );
    rt.stop();
    assert_eq!(rt.join(), 0);
}

struct Fragile;
impl Handler for Fragile {
    type Msg = ();
    fn on_packet(&mut self, pkt: Packet, out: &mut Outbox) {
        assert!(&pkt.data[..] != b"boom", "handler bug");
        let d = pkt.data.clone();
        out.reply_to(&pkt, pkt.src, d);
    }
}

#[test]
fn a_panicking_handler_does_not_kill_the_shard() {
    let cfg = RuntimeConfig {
        listen: vec![ListenSpec {
            addr: "127.0.0.1:0".parse().unwrap(),
            udp: true,
            tcp: false,
        }],
        pin: false,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::start(&cfg, |_| Fragile).unwrap();
    let server = rt.local_addrs()[0].0;
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.send_to(b"boom", server).unwrap();
    c.send_to(b"still alive", server).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"still alive");
    rt.stop();
    assert_eq!(rt.join(), 0);
}
