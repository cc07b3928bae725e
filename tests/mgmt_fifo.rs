//! SER's FIFO server against a live `ser`: the Admin Guide's examples 4-6 (uptime, which), 4-7
//! (the request serctl sends), 4-8 (unknown command), the core commands, sl_stats, reload, and the
//! `fifo` core option with `fifo_mode`.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use net::{free_port, request, udp_client, udp_exchange, Ser, MIN_CFG};

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ser_test_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Sends `request` (which must name `reply` as its reply FIFO) as serctl does: create the reply
/// FIFO in /tmp, write the request in one go, read the reply to end-of-file (≤ 5 s).
fn fifo_call(server: &Path, reply: &str, request: &str) -> String {
    let reply_path = PathBuf::from("/tmp").join(reply);
    let _ = std::fs::remove_file(&reply_path);
    let st = Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&reply_path)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    std::fs::OpenOptions::new()
        .write(true)
        .open(server)
        .expect("open server fifo")
        .write_all(request.as_bytes())
        .expect("write request");
    let (tx, rx) = mpsc::channel();
    let p = reply_path.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&p) {
            let _ = f.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    let out = rx.recv_timeout(Duration::from_secs(5));
    if out.is_err() {
        // Unblock the reader thread: open the write end ourselves.
        let _ = std::fs::OpenOptions::new().write(true).open(&reply_path);
    }
    let _ = std::fs::remove_file(&reply_path);
    out.expect("no FIFO reply within 5 s")
}

/// `serctl fifo <cmd> [params]`: the request serctl writes.
fn serctl_fifo(server: &Path, cmd: &str, params: &[&str]) -> String {
    let reply = unique("reply");
    let mut req = format!(":{cmd}:{reply}\n");
    for p in params {
        req.push_str(p);
        req.push('\n');
    }
    req.push('\n');
    fifo_call(server, &reply, &req)
}

/// MIN_CFG with tm loaded: tm's commands (`t_uac_dlg`, `t_stats`, `t_hash`) are served only
/// while a program that loads tm runs, as SER's tm registered them in its `mod_init`.
fn tm_cfg() -> String {
    format!("loadmodule \"tm.so\"\n{MIN_CFG}")
}

fn start_with_fifo() -> (Ser, PathBuf, u16) {
    let fifo = PathBuf::from("/tmp").join(unique("fifo"));
    let port = free_port("127.0.0.1");
    let s = Ser::start_with_cfg(
        &tm_cfg(),
        &[
            "-i",
            fifo.to_str().expect("utf8 path"),
            "-l",
            &format!("127.0.0.1:{port}"),
        ],
    );
    (s, fifo, port)
}

#[test]
fn example_4_6_uptime_and_which() {
    let (_ser, fifo, _) = start_with_fifo();
    let up = serctl_fifo(&fifo, "uptime", &[]);
    let lines: Vec<&str> = up.lines().collect();
    assert_eq!(lines.len(), 4, "{up}");
    assert_eq!(lines[0], "200 ok");
    // "Now: Fri Dec  6 17:56:10 2002" — ctime's layout.
    let ctime = |s: &str| {
        let p: Vec<&str> = s.split_whitespace().collect();
        p.len() == 5 && p[3].len() == 8 && p[4].parse::<u32>().is_ok()
    };
    assert!(
        lines[1].starts_with("Now: ") && ctime(&lines[1][5..]),
        "{up}"
    );
    assert!(
        lines[2].starts_with("Up Since: ") && ctime(&lines[2][10..]),
        "{up}"
    );
    assert!(
        lines[3].starts_with("Up time: ") && lines[3].ends_with(" [sec]"),
        "{up}"
    );
    let which = serctl_fifo(&fifo, "which", &[]);
    let names: Vec<&str> = which.lines().collect();
    assert_eq!(names[0], "200 ok");
    // The core set ends the list in SER's order (module commands come first).
    assert_eq!(
        names[names.len() - 7..],
        ["ps", "which", "arg", "pwd", "version", "uptime", "print"],
        "{which}"
    );
    for c in ["sl_stats", "reload", "stats"] {
        assert!(names.contains(&c), "{which}");
    }
}

/// A module's commands are served while the running program loads the module: `which` lists
/// them then; otherwise a call is refused with one line naming the module. A reload that loads
/// the module brings them in.
#[test]
fn module_commands_follow_the_loaded_modules() {
    let fifo = PathBuf::from("/tmp").join(unique("fifo"));
    let port = free_port("127.0.0.1");
    let ser = Ser::start(&[
        "-i",
        fifo.to_str().unwrap(),
        "-l",
        &format!("127.0.0.1:{port}"),
    ]);
    let which = serctl_fifo(&fifo, "which", &[]);
    let names: Vec<&str> = which.lines().collect();
    assert!(names.contains(&"sl_stats"), "{which}");
    for c in ["t_stats", "t_uac_dlg", "ul_stats", "ul_add", "auth_flush"] {
        assert!(
            !names.contains(&c),
            "{c} listed without its module: {which}"
        );
    }
    assert_eq!(
        serctl_fifo(&fifo, "t_stats", &[]),
        "500 command 't_stats' not available: module tm is not loaded\n"
    );
    assert_eq!(
        serctl_fifo(&fifo, "ul_show_contact", &["location", "jiri"]),
        "500 command 'ul_show_contact' not available: module usrloc is not loaded\n"
    );
    // The same file with tm, usrloc and registrar loaded, reloaded.
    let text = format!(
        "loadmodule \"tm.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n{}",
        MIN_CFG.replace(
            "route {",
            "route {\n\tif (method == \"REGISTER\") { save(\"location\"); break; };"
        )
    );
    std::fs::write(&ser.cfg, text).unwrap();
    assert_eq!(
        serctl_fifo(&fifo, "reload", &[]),
        "200 configuration reloaded\n"
    );
    let which = serctl_fifo(&fifo, "which", &[]);
    let names: Vec<&str> = which.lines().collect();
    for c in [
        "sl_stats",
        "t_stats",
        "t_hash",
        "t_uac_dlg",
        "ul_stats",
        "ul_rm",
        "ul_rm_contact",
        "ul_dump",
        "ul_flush",
        "ul_add",
        "ul_show_contact",
    ] {
        assert!(names.contains(&c), "{c} missing: {which}");
    }
    assert!(!names.contains(&"auth_flush"), "{which}");
    let st = serctl_fifo(&fifo, "t_stats", &[]);
    assert!(st.starts_with("200 ok\nCurrent: 0 (0 waiting)"), "{st}");
    assert_eq!(
        serctl_fifo(&fifo, "ul_show_contact", &["location", "jiri"]),
        "404 AOR not found\n"
    );
}

#[test]
fn example_4_7_request_and_4_8_unknown_command() {
    let (_ser, fifo, _) = start_with_fifo();
    // Example 4-7's request, byte for byte, with the reply FIFO the guide names.
    let reply = format!("ser_receiver_{}", std::process::id());
    let out = fifo_call(&fifo, &reply, &format!(":uptime:{reply}\n\n"));
    assert!(out.starts_with("200 ok\nNow: "), "{out}");
    assert_eq!(
        serctl_fifo(&fifo, "foobar", &[]),
        "500 command 'foobar' not available\n"
    );
    // Requests after an error still work, and lookups ignore case as SER's strcasecmp did.
    assert_eq!(
        serctl_fifo(&fifo, "PRINT", &["hello world"]),
        "200 ok\nhello world\n"
    );
}

#[test]
fn core_commands_ps_arg_pwd_version() {
    let (ser, fifo, _) = start_with_fifo();
    let ps = serctl_fifo(&fifo, "ps", &[]);
    let pid = ser.child.id().to_string();
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    assert!(ps.starts_with("200 ok\n"), "{ps}");
    assert!(rows
        .iter()
        .enumerate()
        .all(|(i, r)| r.len() == 3 && r[0] == i.to_string() && r[1] == pid));
    assert!(rows.iter().any(|r| r[2] == "fifo server"), "{ps}");
    assert!(
        rows.iter().any(|r| r[2].starts_with("receiver child=0")),
        "{ps}"
    );
    let arg = serctl_fifo(&fifo, "arg", &[]);
    assert!(
        arg.starts_with("200 ok\n") && arg.contains("\n-i\n"),
        "{arg}"
    );
    let pwd = serctl_fifo(&fifo, "pwd", &[]);
    assert!(pwd.starts_with("200 ok\n/"), "{pwd}");
    let v = serctl_fifo(&fifo, "version", &[]);
    assert!(v.starts_with("200 ok\nServer: ser ("), "{v}");
}

#[test]
fn sl_stats_counts_stateless_replies_and_reload_swaps_the_config() {
    let (_ser, fifo, port) = start_with_fifo();
    let c = udp_client("127.0.0.1");
    let to = format!("127.0.0.1:{port}").parse().expect("addr");
    let via = format!("127.0.0.1:{}", c.local_addr().expect("local").port());
    let r = udp_exchange(
        &c,
        to,
        request(
            "OPTIONS",
            &format!("sip:127.0.0.1:{port}"),
            &via,
            "UDP",
            "sl1",
        )
        .as_bytes(),
    );
    assert!(r.is_some());
    let sl = serctl_fifo(&fifo, "sl_stats", &[]);
    assert!(sl.starts_with("200 ok\n200: 1 2xx: 0\n"), "{sl}");
    let rl = serctl_fifo(&fifo, "reload", &[]);
    assert_eq!(rl, "200 configuration reloaded\n");
}

#[test]
fn fifo_option_and_fifo_mode_from_the_config() {
    // Permission bits as operators write them: octal with a leading 0 (SER's atoi read 0600 as
    // decimal); a plain decimal number still works (384 = 0600).
    for mode in ["0600", "384"] {
        let fifo = PathBuf::from("/tmp").join(unique("cfgfifo"));
        let cfg = format!("fifo=\"{}\"\nfifo_mode={mode}\n{MIN_CFG}", fifo.display());
        let _ser = Ser::start_with_cfg(&cfg, &[]);
        let meta = std::fs::metadata(&fifo).expect("fifo created");
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "fifo_mode={mode}");
        assert_eq!(serctl_fifo(&fifo, "print", &["x"]), "200 ok\nx\n");
        let _ = std::fs::remove_file(&fifo);
    }
}

/// SIPp answering one NOTIFY with 200 (a scenario of its own: SIPp's built-in uas wants INVITEs).
const SIPP_NOTIFY_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="notify uas">
  <recv request="NOTIFY" />
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

/// Example 4-10: the Admin Guide's send-IM shell script writes a `t_uac_dlg` request into the FIFO;
/// ser sends the NOTIFY statefully to a SIPp UAS, and the FIFO reply is the UAS's final status.
/// Then t_stats and t_hash count the local transaction.
#[test]
fn example_4_10_t_uac_dlg_delivers_to_a_sipp_uas() {
    if Command::new("sipp").arg("-v").output().is_err() {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let (_ser, fifo, _) = start_with_fifo();
    let dir = std::env::temp_dir().join(unique("sipp"));
    std::fs::create_dir_all(&dir).unwrap();
    let xml = dir.join("notify_uas.xml");
    std::fs::write(&xml, SIPP_NOTIFY_UAS).unwrap();
    let log = dir.join("messages.log");
    let uas_port = free_port("127.0.0.1");
    let uas = Command::new("timeout")
        .args(["30", "sipp", "-sf"])
        .arg(&xml)
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-m", "1"])
        .args(["-trace_msg", "-message_file"])
        .arg(&log)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let uas = net::KillOnDrop(uas);
    std::thread::sleep(Duration::from_millis(500));
    let reply = unique("reply");
    let target = format!("sip:receiver@127.0.0.1:{uas_port}");
    let req = format!(
        ":t_uac_dlg:{reply}\nNOTIFY\n{target}\n.\nFrom: sip:originator@foo.bar\nTo: {target}\n\
         foo: bar_special_header\nx: y\np_header: p_value\nContact: <sip:devnull@192.168.0.100:9>\n\
         Content-Type: text/plain; charset=UTF-8\n.\nHello world!!!! a b\n.\n\n"
    );
    let out = fifo_call(&fifo, &reply, &req);
    assert!(out.starts_with("200 OK"), "t_uac_dlg answered: {out}");
    let status = net::wait_child(uas, Duration::from_secs(10));
    assert_eq!(status, Some(0), "sipp did not see its one NOTIFY");
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(seen.contains("NOTIFY sip:receiver@127.0.0.1"), "{seen}");
    assert!(seen.contains("foo: bar_special_header"), "{seen}");
    assert!(seen.contains("Hello world!!!! a b"), "{seen}");
    let st = serctl_fifo(&fifo, "t_stats", &[]);
    assert!(st.contains("Total: 1 (1 local)"), "{st}");
    assert!(st.contains("2xx: 1"), "{st}");
    let h = serctl_fifo(&fifo, "t_hash", &[]);
    assert!(h.starts_with("200"), "{h}");
    let _ = std::fs::remove_dir_all(&dir);
}

const REGISTRAR_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
route {
	if (method == "REGISTER") { save("location"); break; };
	if (lookup("location")) { forward(uri:host, uri:port); break; };
	sl_send_reply("404", "Not Found");
}
"#;

/// Examples 4-9 and 4-11 against usrloc: serweb's `ul_add` (with the extra newline write2fifo
/// appends), `ul_show_contact` in the guide's shape, a REGISTER seen by `ul_stats`/`ul_dump`, an
/// INVITE routed to the binding `ul_add` made, then `ul_rm_contact` and `ul_rm`.
#[test]
fn examples_4_9_and_4_11_usrloc_commands() {
    let fifo = PathBuf::from("/tmp").join(unique("fifo"));
    let port = free_port("127.0.0.1");
    let phone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    phone
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let pport = phone.local_addr().unwrap().port();
    let _ser = Ser::start_with_cfg(
        REGISTRAR_CFG,
        &[
            "-i",
            fifo.to_str().unwrap(),
            "-l",
            &format!("127.0.0.1:{port}"),
        ],
    );
    let reply = unique("serweb");
    let contact = format!("sip:jiri@127.0.0.1:{pport}");
    let out = fifo_call(
        &fifo,
        &reply,
        &format!(":ul_add:{reply}\nlocation\njiri\n{contact}\n3600\n0.5\n\n\n"),
    );
    assert!(out.starts_with("200 Added to table"), "{out}");
    let show = serctl_fifo(&fifo, "ul_show_contact", &["location", "jiri"]);
    let line = show.lines().nth(1).unwrap_or("");
    assert!(
        line.starts_with(&format!("<{contact}>;q=0.50;expires=")),
        "{show}"
    );
    // A call to jiri reaches the binding ul_add made.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = udp_client("127.0.0.1");
    let me = c.local_addr().unwrap().to_string();
    let inv = request("INVITE", "sip:jiri@127.0.0.1", &me, "UDP", "ul1@t");
    c.send_to(inv.as_bytes(), addr).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = phone
        .recv_from(&mut buf)
        .expect("the INVITE reaches the contact");
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        got.starts_with(&format!("INVITE {contact} SIP/2.0")),
        "{got}"
    );
    // A REGISTER of another user shows in ul_stats and ul_dump.
    let reg = request("REGISTER", "sip:127.0.0.1", &me, "UDP", "ul2@t")
        .replace("sip:bob@example.com", "sip:alice@127.0.0.1")
        .replacen(
            "Content-Length: 0",
            "Contact: <sip:alice@127.0.0.1:5999>\r\nExpires: 600\r\nContent-Length: 0",
            1,
        );
    let r = udp_exchange(&c, addr, reg.as_bytes()).unwrap();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let st = serctl_fifo(&fifo, "ul_stats", &[]);
    assert!(st.contains("'location' 2 0"), "{st}");
    let dump = serctl_fifo(&fifo, "ul_dump", &[]);
    assert!(dump.contains("aor   : 'alice'"), "{dump}");
    assert!(dump.contains("aor   : 'jiri'"), "{dump}");
    // Removal.
    let rm = serctl_fifo(&fifo, "ul_rm_contact", &["location", "jiri", &contact]);
    assert!(rm.starts_with("200"), "{rm}");
    let rm = serctl_fifo(&fifo, "ul_rm", &["location", "alice"]);
    assert!(rm.starts_with("200 user (location, alice) deleted"), "{rm}");
    let show = serctl_fifo(&fifo, "ul_show_contact", &["location", "alice"]);
    assert!(show.starts_with("404"), "{show}");
    let bad = serctl_fifo(&fifo, "ul_rm", &["nosuchtable", "alice"]);
    assert!(bad.starts_with("400"), "{bad}");
}

#[path = "support/dns_server.rs"]
mod dns_server;

/// t_uac_dlg to a host name: located by the controlplane's resolver (SER_NAMESERVER here), then
/// sent statefully; the FIFO reply is the far end's status. A name that does not resolve is
/// answered 478 at once.
#[test]
fn t_uac_dlg_to_a_host_name() {
    let uas = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    uas.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let uas_port = uas.local_addr().unwrap().port();
    let zone = dns_server::Zone::new().a("uas.test", std::net::Ipv4Addr::LOCALHOST, 60);
    let dns = dns_server::DnsServer::start(zone);
    let fifo = PathBuf::from("/tmp").join(unique("fifo"));
    let port = free_port("127.0.0.1");
    let ns = dns.addr().to_string();
    let _ser = net::Ser::start_with_env(
        &tm_cfg(),
        &[
            "-i",
            fifo.to_str().unwrap(),
            "-l",
            &format!("127.0.0.1:{port}"),
        ],
        &[("SER_NAMESERVER", &ns)],
    );
    // The far end answers the MESSAGE with 200 (its Vias copied).
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let (n, from) = uas.recv_from(&mut buf).expect("the MESSAGE arrives");
        let req = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut r = String::from("SIP/2.0 200 OK\r\n");
        for l in req.lines() {
            let name = l.split(':').next().unwrap_or("");
            if ["Via", "From", "To", "Call-ID", "CSeq"].contains(&name) {
                r.push_str(l);
                r.push_str("\r\n");
            }
        }
        r.push_str("Content-Length: 0\r\n\r\n");
        uas.send_to(r.as_bytes(), from).unwrap();
        req
    });
    let reply = unique("reply");
    let target = format!("sip:bob@uas.test:{uas_port}");
    let req = format!(
        ":t_uac_dlg:{reply}\nMESSAGE\n{target}\n.\nFrom: <sip:admin@ser.test>\nTo: <{target}>\n\
         Content-Type: text/plain\n.\nhello\n.\n\n"
    );
    let out = fifo_call(&fifo, &reply, &req);
    assert!(out.starts_with("200 OK"), "{out}");
    let seen = t.join().unwrap();
    assert!(
        seen.starts_with(&format!("MESSAGE {target} SIP/2.0")),
        "{seen}"
    );
    let reply = unique("reply");
    let req = format!(
        ":t_uac_dlg:{reply}\nMESSAGE\nsip:bob@nowhere.test\n.\nFrom: <sip:admin@ser.test>\n\
         To: <sip:bob@nowhere.test>\n.\n.\n\n"
    );
    let out = fifo_call(&fifo, &reply, &req);
    assert!(out.starts_with("478 "), "{out}");
}
