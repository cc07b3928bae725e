//! JSON-RPC 2.0 (unix socket and HTTP), `/metrics`, `/health`, `/ready` and the token rule against
//! a live `ser`; JSON-RPC and the FIFO give the same data.
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use net::{free_port, request, udp_client, udp_exchange, Ser, MIN_CFG};
use serde_json::{json, Value};

fn tmp(tag: &str) -> PathBuf {
    PathBuf::from("/tmp").join(format!("ser_rpc_{tag}_{}", std::process::id()))
}

fn unix_rpc(sock: &Path, method: &str, params: Value) -> Value {
    let mut s = UnixStream::connect(sock).expect("connect rpc socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 7});
    s.write_all(format!("{req}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).expect("rpc answer");
    serde_json::from_str(&line).expect("json answer")
}

/// One HTTP/1.1 exchange; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect http");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn fifo_cmd(fifo: &Path, cmd: &str) -> String {
    let reply = format!("ser_rpc_reply_{}_{cmd}", std::process::id());
    let rp = PathBuf::from("/tmp").join(&reply);
    let _ = std::fs::remove_file(&rp);
    assert!(Command::new("mkfifo").arg(&rp).status().unwrap().success());
    std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .unwrap()
        .write_all(format!(":{cmd}:{reply}\n\n").as_bytes())
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = rp.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::open(&p).and_then(|mut f| f.read_to_string(&mut s));
        let _ = tx.send(s);
    });
    let r = rx.recv_timeout(Duration::from_secs(5)).expect("fifo reply");
    let _ = std::fs::remove_file(&rp);
    r
}

#[test]
fn jsonrpc_unix_and_http_give_the_fifos_data_and_metrics_parse() {
    let sock = tmp("sock");
    let fifo = tmp("fifo");
    let sip = free_port("127.0.0.1");
    let hp = free_port("127.0.0.1");
    let ser = Ser::start(&[
        "-l",
        &format!("127.0.0.1:{sip}"),
        "-i",
        fifo.to_str().unwrap(),
        &format!("--rpc-socket={}", sock.display()),
        &format!("--http=127.0.0.1:{hp}"),
    ]);
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    // Traffic: two OPTIONS answered 200, one INVITE answered 500 (MIN_CFG).
    let c = udp_client("127.0.0.1");
    let to = format!("127.0.0.1:{sip}").parse().unwrap();
    let via = format!("127.0.0.1:{}", c.local_addr().unwrap().port());
    let ruri = format!("sip:127.0.0.1:{sip}");
    for (m, id) in [("OPTIONS", "o1"), ("OPTIONS", "o2"), ("INVITE", "i1")] {
        assert!(udp_exchange(&c, to, request(m, &ruri, &via, "UDP", id).as_bytes()).is_some());
    }

    // Same data: which, version, sl_stats over the FIFO, the unix socket and HTTP.
    let which = unix_rpc(&sock, "which", json!([]));
    let fifo_which: Vec<String> = fifo_cmd(&fifo, "which")
        .lines()
        .skip(1)
        .map(String::from)
        .collect();
    assert_eq!(which["result"], json!(fifo_which));
    let sl = unix_rpc(&sock, "sl_stats", json!([]));
    assert_eq!(sl["result"]["200"], json!(2), "{sl}");
    assert_eq!(sl["result"]["5xx"], json!(1), "{sl}");
    let fifo_sl = fifo_cmd(&fifo, "sl_stats");
    assert!(fifo_sl.starts_with("200 ok\n200: 2 2xx: 0\n"), "{fifo_sl}");
    assert!(fifo_sl.contains("\n5xx: 1\n"), "{fifo_sl}");
    let (st, body) = http(
        hp,
        "POST",
        "/rpc",
        r#"{"jsonrpc":"2.0","method":"sl_stats","id":1}"#,
        None,
    );
    assert_eq!(st, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], sl["result"]);
    let stats = unix_rpc(&sock, "stats", json!([]));
    assert_eq!(
        stats["result"]["requests_received.OPTIONS"],
        json!(2),
        "{stats}"
    );
    assert_eq!(stats["result"]["replies_sent.5xx"], json!(1), "{stats}");
    // Errors.
    let unknown = unix_rpc(&sock, "foobar", json!([]));
    assert_eq!(unknown["error"]["code"], json!(-32601));
    let (_, body) = http(hp, "POST", "/rpc", "{oops", None);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        json!(-32700)
    );

    // /metrics parses with a Prometheus text parser and carries the counters.
    let (st, text) = http(hp, "GET", "/metrics", "", None);
    assert_eq!(st, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("prometheus text");
    let value = |name: &str, label: (&str, &str)| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
    };
    assert_eq!(
        value("ser_requests_received_total", ("method", "OPTIONS")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("ser_requests_received_total", ("method", "INVITE")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("ser_replies_sent_total", ("class", "2xx")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value("ser_shard_messages_total", ("shard", "0")),
        Some(3.0),
        "{text}"
    );
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "ser_overload_503_total"));
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "ser_db_queue_depth"));

    assert_eq!(http(hp, "GET", "/health", "", None).0, 200);
    assert_eq!(
        http(hp, "GET", "/ready", "", None),
        (200, "ready\n".to_string())
    );
    drop(ser);
}

#[test]
fn reload_over_jsonrpc_reports_errors_and_keeps_running() {
    let sock = tmp("reload");
    let sip = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let mut ser = Ser::start(&["-l", &sip, &format!("--rpc-socket={}", sock.display())]);
    let ok = unix_rpc(&sock, "reload", json!([]));
    assert!(ok["result"]["reloaded"].is_string(), "{ok}");
    std::fs::write(&ser.cfg, "route { bogus_function(); }\n").unwrap();
    let bad = unix_rpc(&sock, "reload", json!([]));
    assert_eq!(bad["error"]["data"]["status"], json!(500), "{bad}");
    assert!(
        bad["error"]["data"]["lines"]
            .to_string()
            .contains("bogus_function"),
        "{bad}"
    );
    assert!(unix_rpc(&sock, "version", json!([]))["result"].is_string());
    assert!(ser.terminate(Duration::from_secs(10)).is_some());
    // The socket file goes away with the server.
    assert!(!sock.exists());
}

/// JSON-RPC serves a module's commands only while its module is loaded: otherwise "Method not
/// found" with the reason; listed by `which` once a reload loads the module.
#[test]
fn module_methods_follow_the_loaded_modules() {
    let sock = tmp("modules");
    let sip = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let ser = Ser::start(&["-l", &sip, &format!("--rpc-socket={}", sock.display())]);
    let r = unix_rpc(&sock, "t_stats", json!([]));
    assert_eq!(r["error"]["code"], json!(-32601), "{r}");
    assert_eq!(
        r["error"]["data"]["reason"],
        json!("command 't_stats' not available: module tm is not loaded"),
        "{r}"
    );
    let unknown = unix_rpc(&sock, "no_such_method", json!([]));
    assert_eq!(unknown["error"]["code"], json!(-32601), "{unknown}");
    assert!(unknown["error"]["data"].is_null(), "{unknown}");
    std::fs::write(&ser.cfg, format!("loadmodule \"tm.so\"\n{MIN_CFG}")).unwrap();
    assert!(unix_rpc(&sock, "reload", json!([]))["result"]["reloaded"].is_string());
    let which = unix_rpc(&sock, "which", json!([]));
    assert!(
        which["result"]
            .as_array()
            .unwrap()
            .contains(&json!("t_stats")),
        "{which}"
    );
    let r = unix_rpc(&sock, "t_stats", json!([]));
    assert_eq!(r["result"]["current"], json!(0), "{r}");
}

#[test]
fn token_rules() {
    let hp = free_port("127.0.0.1");
    let sip = format!("127.0.0.1:{}", free_port("127.0.0.1"));
    let _ser = Ser::start(&[
        "-l",
        &sip,
        &format!("--http=127.0.0.1:{hp}"),
        "--http-token=s3cret",
    ]);
    let body = r#"{"jsonrpc":"2.0","method":"version","id":1}"#;
    assert_eq!(http(hp, "POST", "/rpc", body, None).0, 401);
    assert_eq!(http(hp, "POST", "/rpc", body, Some("wrong")).0, 401);
    assert_eq!(http(hp, "POST", "/rpc", body, Some("s3cret")).0, 200);
    assert_eq!(http(hp, "GET", "/metrics", "", None).0, 401);
    assert_eq!(http(hp, "GET", "/health", "", None).0, 200);

    // Off loopback without a token: ser refuses to start.
    let out = Command::new(net::ser_bin())
        .args([
            "-f",
            "/dev/null",
            "-D",
            "-E",
            "-n",
            "1",
            "-l",
            "127.0.0.1:0",
        ])
        .arg(format!("--http=0.0.0.0:{}", free_port("127.0.0.1")))
        .env_remove("SER_HTTP_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a token"));
}

/// `/metrics` carries tm's and usrloc's figures, and JSON-RPC's `t_stats`/`ul_stats` agree with
/// them: one REGISTER saved, one INVITE relayed statefully to a silent UAS (a live transaction).
#[test]
fn metrics_count_transactions_and_registered_contacts() {
    let sip = free_port("127.0.0.1");
    let hp = free_port("127.0.0.1");
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        "loadmodule \"sl.so\"\nloadmodule \"tm.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n\
         route {{\n if (method == \"REGISTER\") {{ save(\"location\"); break; }};\n \
         rewritehostport(\"{}\");\n t_relay();\n}}\n",
        silent.local_addr().unwrap()
    );
    let _ser = Ser::start_with_cfg(
        &cfg,
        &[
            "-l",
            &format!("127.0.0.1:{sip}"),
            &format!("--http=127.0.0.1:{hp}"),
        ],
    );
    let c = udp_client("127.0.0.1");
    let to = format!("127.0.0.1:{sip}").parse().unwrap();
    let via = format!("127.0.0.1:{}", c.local_addr().unwrap().port());
    let reg = request(
        "REGISTER",
        &format!("sip:127.0.0.1:{sip}"),
        &via,
        "UDP",
        "m-reg",
    )
    .replacen(
        "Content-Length: 0",
        "Contact: <sip:bob@127.0.0.1:5999>;expires=600\r\nContent-Length: 0",
        1,
    );
    let r = udp_exchange(&c, to, reg.as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let inv = request("INVITE", "sip:bob@example.com", &via, "UDP", "m-inv");
    let r = udp_exchange(&c, to, inv.as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 100"), "{r}");
    let (st, text) = http(hp, "GET", "/metrics", "", None);
    assert_eq!(st, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("prometheus text");
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => -1.0,
            })
    };
    assert_eq!(value("ser_tm_transactions_current"), Some(1.0), "{text}");
    assert_eq!(value("ser_tm_transactions_total"), Some(1.0), "{text}");
    assert_eq!(value("ser_usrloc_registered_contacts"), Some(1.0), "{text}");
    let (_, body) = http(
        hp,
        "POST",
        "/rpc",
        r#"{"jsonrpc":"2.0","method":"t_stats","id":1}"#,
        None,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"]["current"], json!(1), "{body}");
    let (_, body) = http(
        hp,
        "POST",
        "/rpc",
        r#"{"jsonrpc":"2.0","method":"ul_stats","id":2}"#,
        None,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"][0]["registered"], json!(1), "{body}");
}
