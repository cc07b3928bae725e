//! Module `pdt` end to end: the real `ser` with a SQLite `pdt` table made before it starts, SIP
//! requests over loopback UDP whose dialled number picks the domain they are forwarded to, and the
//! FIFO commands `pdt_add`, `pdt_delete`, `pdt_list` — their changes seen by the next request and
//! in the table's rows.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use net::*;

/// Numbers dialled with the `00` access code; the script forwards to what `prefix2domain` chose.
const CFG: &str = r#"loadmodule "sl.so"
loadmodule "pdt.so"
modparam("pdt", "prefix", "00")
route {
	if (uri =~ "@mode2") {
		if (prefix2domain("2")) { forward(uri:host, uri:port); break; };
	} else {
		if (prefix2domain()) { forward(uri:host, uri:port); break; };
	};
	sl_send_reply("404", "No Such Prefix");
}
"#;

fn db_rows(db: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT prefix, domain FROM pdt ORDER BY prefix")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn uas() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let p = s.local_addr().unwrap().port();
    (s, p)
}

/// The request line the UAS `s` receives.
fn received(s: &UdpSocket) -> String {
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf).expect("the forwarded request");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or("").to_string()
}

/// Sends a MESSAGE to `ruri`; the reply's status line when ser answers itself.
fn send(port: u16, ruri: &str, id: &str, want_reply: bool) -> Option<String> {
    let c = udp_client("127.0.0.1");
    let via = c.local_addr().unwrap().to_string();
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let req = request("MESSAGE", ruri, &via, "UDP", id);
    if want_reply {
        udp_exchange(&c, to, req.as_bytes()).map(|r| status_line(&r).to_string())
    } else {
        c.send_to(req.as_bytes(), to).unwrap();
        None
    }
}

#[test]
fn prefixes_pick_the_domain_and_fifo_changes_are_seen_at_once_and_stored() {
    let dir = std::env::temp_dir().join(format!("ser-pdt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db: PathBuf = dir.join("pdt.db");
    let (berlin, bport) = uas();
    let (munich, mport) = uas();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE pdt (prefix VARCHAR(32) NOT NULL PRIMARY KEY, domain VARCHAR(128) NOT NULL);
             INSERT INTO pdt VALUES ('49', 'de.invalid'), ('4930', '127.0.0.1:{bport}');"
        ))
        .unwrap();
    }
    let fifo = dir.join("fifo");
    let port = free_port("127.0.0.1");
    let url = format!("sqlite://{}", db.display());
    let ser = Ser::start_with_env(
        CFG,
        &[
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-i",
            fifo.to_str().unwrap(),
        ],
        &[("SER_DB_URL", &url)],
    );

    // The longest prefix wins: 4930 (Berlin) over 49; the access code and the prefix go.
    send(port, "sip:0049301234@ser.invalid", "p1", false);
    assert_eq!(
        received(&berlin),
        format!("MESSAGE sip:1234@127.0.0.1:{bport} SIP/2.0"),
        "{}",
        ser.log_text()
    );
    // Mode 2 keeps the user as dialled.
    send(port, "sip:0049301234@mode2.invalid", "p0", false);
    assert_eq!(
        received(&berlin),
        format!("MESSAGE sip:0049301234@127.0.0.1:{bport} SIP/2.0")
    );
    // No known prefix: false, and the script answers.
    assert_eq!(
        send(port, "sip:00331234@ser.invalid", "p2", true).as_deref(),
        Some("SIP/2.0 404 No Such Prefix")
    );
    // Without the access code the URI is left alone (true) and goes to its own host.
    send(port, &format!("sip:4930555@127.0.0.1:{bport}"), "p3", false);
    assert_eq!(
        received(&berlin),
        format!("MESSAGE sip:4930555@127.0.0.1:{bport} SIP/2.0")
    );

    // pdt_add: visible to the next request, and stored.
    let add = fifo_command(&fifo, "pdt_add", &["4989", &format!("127.0.0.1:{mport}")]);
    assert_eq!(add, "200 ok\n");
    send(port, "sip:00498955@ser.invalid", "p4", false);
    assert_eq!(
        received(&munich),
        format!("MESSAGE sip:55@127.0.0.1:{mport} SIP/2.0")
    );
    assert!(db_rows(&db).contains(&("4989".into(), format!("127.0.0.1:{mport}"))));
    // Each prefix and each domain once; a prefix is digits.
    assert_eq!(
        fifo_command(&fifo, "pdt_add", &["4989", "other.invalid"]),
        "400 Prefix Or Domain Exists\n"
    );
    assert_eq!(
        fifo_command(&fifo, "pdt_add", &["44", &format!("127.0.0.1:{mport}")]),
        "400 Prefix Or Domain Exists\n"
    );
    assert_eq!(
        fifo_command(&fifo, "pdt_add", &["4x", "x.invalid"]),
        "400 Bad Prefix\n"
    );

    // pdt_list: all pairs, or those whose prefix / domain starts with what is given.
    let all = fifo_command(&fifo, "pdt_list", &[".", "."]);
    assert_eq!(
        all,
        format!("200 ok\n49 de.invalid\n4930 127.0.0.1:{bport}\n4989 127.0.0.1:{mport}\n")
    );
    assert_eq!(
        fifo_command(&fifo, "pdt_list", &["498", "."]),
        format!("200 ok\n4989 127.0.0.1:{mport}\n")
    );
    assert_eq!(
        fifo_command(&fifo, "pdt_list", &[".", "DE."]),
        "200 ok\n49 de.invalid\n"
    );

    // pdt_delete by domain: the next request falls back to 49, and the row is gone.
    assert_eq!(
        fifo_command(&fifo, "pdt_delete", &[&format!("127.0.0.1:{mport}")]),
        "200 ok\n"
    );
    assert!(!db_rows(&db).iter().any(|(p, _)| p == "4989"));
    assert_eq!(
        fifo_command(&fifo, "pdt_delete", &["nowhere.invalid"]),
        "404 Domain Not Found\n"
    );
    let which = fifo_command(&fifo, "which", &[]);
    for c in ["pdt_add", "pdt_delete", "pdt_list"] {
        assert!(which.lines().any(|l| l == c), "{which}");
    }
    drop(ser);
    let _ = std::fs::remove_dir_all(&dir);
}
