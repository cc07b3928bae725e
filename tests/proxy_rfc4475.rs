//! Every RFC 4475 and RFC 5118 torture message, sent as one UDP datagram to a running ser acting as
//! a stateless proxy: ser never crashes, answers what INDEX.md says must be answered with that
//! status, forwards what must be forwarded (to a test UAS), and drops the responses it must not
//! forward. Also the liberal cases' rule: nothing defective is forwarded.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use net::*;

const CFG: &str = r#"
loadmodule "sl.so"
loadmodule "maxfwd.so"
route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		break;
	};
	forward(127.0.0.1, UASPORT);
}
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A reply with this status code.
    Reply(u16),
    /// Forwarded to the UAS.
    Forwarded,
    /// Nothing: neither a reply nor a forwarded copy.
    Nothing,
}
use Expect::*;

fn corpus(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sip-corpus")
        .join(rel)
}

/// INDEX.md's verdicts, as a stateless proxy applies them.
const CASES: &[(&str, Expect)] = &[
    // 3.1.1 valid: forwarded (responses without a Via for anyone else are dropped).
    ("rfc4475/wsinv.dat", Forwarded),
    ("rfc4475/intmeth.dat", Forwarded),
    ("rfc4475/esc01.dat", Forwarded),
    ("rfc4475/escnull.dat", Forwarded),
    ("rfc4475/esc02.dat", Forwarded),
    ("rfc4475/lwsdisp.dat", Forwarded),
    ("rfc4475/longreq.dat", Forwarded),
    ("rfc4475/dblreq.dat", Forwarded),
    ("rfc4475/semiuri.dat", Forwarded),
    ("rfc4475/transports.dat", Forwarded),
    ("rfc4475/mpart01.dat", Forwarded),
    ("rfc4475/unreason.dat", Nothing),
    ("rfc4475/noreason.dat", Nothing),
    // 3.1.2 invalid.
    ("rfc4475/badinv01.dat", Reply(400)),
    ("rfc4475/clerr.dat", Reply(400)),
    ("rfc4475/ncl.dat", Reply(400)),
    ("rfc4475/scalar02.dat", Reply(400)),
    ("rfc4475/scalarlg.dat", Nothing),
    ("rfc4475/quotbal.dat", Reply(400)),
    ("rfc4475/ltgtruri.dat", Reply(400)),
    ("rfc4475/lwsruri.dat", Reply(400)),
    ("rfc4475/lwsstart.dat", Reply(400)),
    ("rfc4475/trws.dat", Reply(400)),
    ("rfc4475/escruri.dat", Reply(400)),
    ("rfc4475/baddate.dat", Forwarded),
    ("rfc4475/regbadct.dat", Reply(400)),
    ("rfc4475/badaspec.dat", Reply(400)),
    ("rfc4475/baddn.dat", Reply(400)),
    ("rfc4475/variants/baddn.terminated.dat", Reply(400)),
    ("rfc4475/badvers.dat", Reply(505)),
    ("rfc4475/mismatch01.dat", Reply(400)),
    ("rfc4475/mismatch02.dat", Reply(501)),
    ("rfc4475/bigcode.dat", Nothing),
    // 3.2
    ("rfc4475/badbranch.dat", Forwarded),
    // 3.3 application layer, as a proxy.
    ("rfc4475/insuf.dat", Reply(400)),
    ("rfc4475/unkscm.dat", Reply(416)),
    ("rfc4475/novelsc.dat", Reply(416)),
    ("rfc4475/unksm2.dat", Forwarded),
    ("rfc4475/bext01.dat", Reply(420)),
    ("rfc4475/invut.dat", Forwarded),
    ("rfc4475/regaut01.dat", Forwarded),
    ("rfc4475/multi01.dat", Reply(400)),
    ("rfc4475/mcl01.dat", Reply(400)),
    ("rfc4475/bcast.dat", Nothing),
    ("rfc4475/zeromf.dat", Reply(483)),
    ("rfc4475/cparam01.dat", Forwarded),
    ("rfc4475/cparam02.dat", Forwarded),
    ("rfc4475/regescrt.dat", Forwarded),
    ("rfc4475/sdp01.dat", Forwarded),
    // 3.4
    ("rfc4475/inv2543.dat", Forwarded),
    // RFC 5118, wire form.
    ("rfc5118/wire/ipv6-good.dat", Forwarded),
    ("rfc5118/wire/ipv6-bad.dat", Reply(400)),
    ("rfc5118/wire/port-ambiguous.dat", Forwarded),
    ("rfc5118/wire/port-unambiguous.dat", Forwarded),
    ("rfc5118/wire/via-received-param-with-delim.dat", Forwarded),
    ("rfc5118/wire/via-received-param-no-delim.dat", Forwarded),
    ("rfc5118/wire/ipv6-in-sdp.dat", Forwarded),
    ("rfc5118/wire/mult-ip-in-header.dat", Forwarded),
    ("rfc5118/wire/mult-ip-in-sdp.dat", Forwarded),
    ("rfc5118/wire/ipv4-mapped-ipv6.dat", Forwarded),
    ("rfc5118/wire/ipv6-bug-abnf-3-colons.dat", Forwarded),
    ("rfc5118/wire/ipv6-correct-abnf-2-colons.dat", Forwarded),
];

fn recv(sock: &UdpSocket, wait: Duration) -> Option<Vec<u8>> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = vec![0u8; 65536];
    sock.recv_from(&mut buf)
        .ok()
        .map(|(n, _)| buf[..n].to_vec())
}

#[test]
fn every_torture_message_gets_its_verdict() {
    let uas = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free_port("127.0.0.1");
    let cfg = CFG.replace("UASPORT", &uas.local_addr().unwrap().port().to_string());
    let p = port.to_string();
    let ser = Ser::start_with_cfg(&cfg, &["-l", "127.0.0.1", "-p", &p]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = udp_client("127.0.0.1");

    // Every .dat file of both corpora is in the table (nothing skipped silently).
    let mut listed = 0;
    for dir in ["rfc4475", "rfc5118/wire"] {
        for e in std::fs::read_dir(corpus(dir)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".dat") {
                let rel = format!("{dir}/{name}");
                assert!(
                    CASES.iter().any(|(c, _)| *c == rel),
                    "{rel} has no expectation"
                );
                listed += 1;
            }
        }
    }
    assert_eq!(listed, 49 + 12);

    let mut failures = Vec::new();
    for (rel, expect) in CASES {
        let raw = std::fs::read(corpus(rel)).unwrap();
        client.send_to(&raw, addr).unwrap();
        let wait = if *expect == Nothing {
            Duration::from_millis(150)
        } else {
            Duration::from_secs(2)
        };
        let got = match expect {
            Reply(_) => recv(&client, wait).map(|r| {
                let text = String::from_utf8_lossy(&r).into_owned();
                Reply(text[8..11].parse().unwrap_or(0))
            }),
            Forwarded => recv(&uas, wait).map(|fwd| {
                // Liberal-case rule: what is forwarded parses, and a datagram's trailing bytes
                // (dblreq) are not part of it.
                let text = String::from_utf8_lossy(&fwd).into_owned();
                assert!(
                    !(rel.contains("dblreq") && text.contains("INVITE")),
                    "dblreq tail forwarded"
                );
                Forwarded
            }),
            Nothing => recv(&client, wait)
                .map(|_| Reply(0))
                .or_else(|| recv(&uas, Duration::from_millis(50)).map(|_| Forwarded)),
        };
        let got = got.unwrap_or(Nothing);
        if got != *expect {
            failures.push(format!("{rel}: expected {expect:?}, got {got:?}"));
        }
        // Anything else that arrived for this case is drained before the next one.
        while recv(&client, Duration::from_millis(5)).is_some() {}
        while recv(&uas, Duration::from_millis(5)).is_some() {}
    }
    assert!(
        failures.is_empty(),
        "{}\n--- ser log:\n{}",
        failures.join("\n"),
        ser.log_text()
    );

    // And ser is still alive and answering.
    let me = client.local_addr().unwrap();
    let req = request(
        "OPTIONS",
        "sip:x@example.com",
        &me.to_string(),
        "UDP",
        "alive@t",
    );
    client.send_to(req.as_bytes(), addr).unwrap();
    assert!(
        recv(&uas, Duration::from_secs(2)).is_some(),
        "ser stopped forwarding"
    );
}
