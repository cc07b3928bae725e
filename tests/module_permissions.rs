//! Module `permissions` end to end: the real `ser` binary with allow/deny files in a temporary
//! directory, SIP requests over loopback UDP, and the replies the script sends for each verdict
//! (200 when `allow_routing`/`allow_register` is true, 403 otherwise).
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use net::*;

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-perm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(d: &Path, name: &str, text: &str) {
    std::fs::write(d.join(name), text).unwrap();
}

fn cfg(d: &Path) -> String {
    let d = d.display();
    format!(
        r#"loadmodule "sl.so"
loadmodule "permissions.so"
modparam("permissions", "default_allow_file", "{d}/permissions.allow")
modparam("permissions", "default_deny_file", "{d}/permissions.deny")
route {{
	if (method == "REGISTER") {{
		if (allow_register("{d}/register")) {{
			sl_send_reply("200", "Registration allowed");
		}} else {{
			sl_send_reply("403", "Registration forbidden");
		}};
		break;
	}};
	if (uri =~ "^sip:pair") {{
		if (allow_routing("{d}/pair.allow", "{d}/pair.deny")) {{
			sl_send_reply("200", "Routing allowed");
		}} else {{
			sl_send_reply("403", "Routing forbidden");
		}};
		break;
	}};
	if (uri =~ "^sip:fork") {{
		append_branch("sip:19005550000@gw.example.com");
	}};
	if (allow_routing()) {{
		sl_send_reply("200", "Routing allowed");
	}} else {{
		sl_send_reply("403", "Routing forbidden");
	}};
}}
"#
    )
}

fn start(d: &Path, port: u16) -> Ser {
    Ser::start_with_cfg(&cfg(d), &["-l", "127.0.0.1", "-p", &port.to_string()])
}

/// The status line of the answer to `method` for `ruri` from `from` (a URI).
fn ask(port: u16, method: &str, ruri: &str, from: &str, extra: &str, n: u32) -> String {
    let sock = udp_client("127.0.0.1");
    let local = sock.local_addr().unwrap();
    let req = request(
        method,
        ruri,
        &local.to_string(),
        "UDP",
        &format!("perm-{n}@t"),
    )
    .replace(
        "From: \"Alice\" <sip:alice@example.com>",
        &format!("From: <{from}>"),
    )
    // A REGISTER's AOR is its To (the user registering himself).
    .replace(
        "To: <sip:bob@example.com>",
        &format!(
            "To: <{}>",
            if method == "REGISTER" {
                from
            } else {
                "sip:bob@example.com"
            }
        ),
    )
    .replace(
        "Content-Length: 0\r\n",
        &format!("{extra}Content-Length: 0\r\n"),
    );
    let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let reply = udp_exchange(&sock, to, req.as_bytes()).expect("a reply");
    status_line(&reply).to_string()
}

const ALLOWED: &str = "SIP/2.0 200 Routing allowed";
const FORBIDDEN: &str = "SIP/2.0 403 Routing forbidden";

#[test]
fn allow_routing_follows_the_allow_then_deny_files() {
    let d = dir("routing");
    write(
        &d,
        "permissions.allow",
        "# the boss may call anything\n\"^sip:boss@example\\.com$\" : ALL\n",
    );
    write(
        &d,
        "permissions.deny",
        "ALL : \"^sip:1900.*\"   # premium rate\n\"^sip:.*@evil\\.com$\" : ALL\n",
    );
    write(&d, "pair.allow", "");
    write(&d, "pair.deny", "ALL : ALL EXCEPT \"^sip:pair-open@\"\n");
    let port = free_port("127.0.0.1");
    let _ser = start(&d, port);
    let alice = "sip:alice@example.com";
    // No rule matches: allowed.
    assert_eq!(
        ask(port, "OPTIONS", "sip:123@gw.example.com", alice, "", 1),
        ALLOWED
    );
    // The deny file matches the Request-URI.
    assert_eq!(
        ask(port, "OPTIONS", "sip:19001234@gw.example.com", alice, "", 2),
        FORBIDDEN
    );
    // The allow file wins over the deny file.
    let boss = "sip:boss@example.com";
    assert_eq!(
        ask(port, "OPTIONS", "sip:19001234@gw.example.com", boss, "", 3),
        ALLOWED
    );
    // The deny file matches the From URI (regexes are case-insensitive).
    let evil = "sip:mallory@EVIL.com";
    assert_eq!(
        ask(port, "OPTIONS", "sip:123@gw.example.com", evil, "", 4),
        FORBIDDEN
    );
    // check_all_branches (default 1): an appended branch to a premium number is denied too.
    assert_eq!(
        ask(port, "OPTIONS", "sip:fork@gw.example.com", alice, "", 5),
        FORBIDDEN
    );
    // allow_routing(allow_file, deny_file): that pair, with EXCEPT.
    assert_eq!(
        ask(port, "OPTIONS", "sip:pair-closed@x", alice, "", 6),
        FORBIDDEN
    );
    assert_eq!(
        ask(port, "OPTIONS", "sip:pair-open@x", alice, "", 7),
        ALLOWED
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn allow_register_checks_every_contact_against_the_aor() {
    let d = dir("register");
    write(
        &d,
        "register.allow",
        "\"^sip:alice@example\\.com$\" : \"^sip:alice@192\\.0\\.2\\.[0-9]+(:[0-9]+)?$\"\n",
    );
    write(&d, "register.deny", "ALL : ALL\n");
    let port = free_port("127.0.0.1");
    let ser = start(&d, port);
    let aor = "sip:alice@example.com";
    let reg = |contact: &str, n| {
        ask(
            port,
            "REGISTER",
            "sip:example.com",
            aor,
            &format!("Contact: {contact}\r\n"),
            n,
        )
    };
    assert_eq!(
        reg("<sip:alice@192.0.2.7:5060>", 10),
        "SIP/2.0 200 Registration allowed",
        "{}",
        ser.log_text()
    );
    assert_eq!(
        reg("<sip:alice@10.1.1.1>", 11),
        "SIP/2.0 403 Registration forbidden"
    );
    // Every Contact must be allowed.
    assert_eq!(
        reg("<sip:alice@192.0.2.7>, <sip:alice@10.1.1.1>", 12),
        "SIP/2.0 403 Registration forbidden"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_broken_file_is_reported_with_its_position_and_denies() {
    let d = dir("broken");
    write(&d, "permissions.allow", "");
    write(&d, "permissions.deny", "ALL : ALL\n\"^sip:(\" : ALL\n");
    let port = free_port("127.0.0.1");
    let ser = start(&d, port);
    let want = format!("{}:2:1:", d.join("permissions.deny").display());
    assert!(
        ser.wait_log(&want, Duration::from_secs(5)),
        "no error naming {want}; log:\n{}",
        ser.log_text()
    );
    // Fails closed: nothing is allowed through a list that cannot be read.
    assert_eq!(
        ask(
            port,
            "OPTIONS",
            "sip:123@gw.example.com",
            "sip:alice@example.com",
            "",
            20
        ),
        FORBIDDEN
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn missing_files_allow_everything() {
    let d = dir("missing");
    let port = free_port("127.0.0.1");
    let _ser = start(&d, port);
    assert_eq!(
        ask(
            port,
            "OPTIONS",
            "sip:19001234@gw.example.com",
            "sip:alice@example.com",
            "",
            30
        ),
        ALLOWED
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// SER's `get_pathname`: relative allow/deny names — the defaults, a basename with its suffixes,
/// an explicit pair — are read from the config file's directory, whatever ser's working
/// directory is (here `/`, which has no such files).
#[test]
fn relative_file_names_are_read_next_to_the_config_file() {
    use std::io::{BufRead, BufReader};
    let d = dir("relative");
    write(&d, "permissions.allow", "");
    write(&d, "permissions.deny", "ALL : \"^sip:1900.*\"\n");
    write(&d, "pair.allow", "");
    write(&d, "pair.deny", "ALL : ALL EXCEPT \"^sip:pair-open@\"\n");
    write(
        &d,
        "register.allow",
        "\"^sip:alice@example\\.com$\" : ALL\n",
    );
    write(&d, "register.deny", "ALL : ALL\n");
    // The test's config with every file name relative.
    let text = cfg(&d)
        .replace(&format!("{}/", d.display()), "")
        .replace(
            "modparam(\"permissions\", \"default_allow_file\", \"permissions.allow\")\n",
            "",
        )
        .replace(
            "modparam(\"permissions\", \"default_deny_file\", \"permissions.deny\")\n",
            "",
        );
    assert!(!text.contains(&d.display().to_string()), "{text}");
    assert!(
        text.contains("allow_routing(\"pair.allow\", \"pair.deny\")"),
        "{text}"
    );
    let file = d.join("ser.cfg");
    std::fs::write(&file, text).unwrap();
    let port = free_port("127.0.0.1");
    let mut child = std::process::Command::new(ser_bin())
        .current_dir("/")
        .env(
            "SER_DB_URL",
            format!("sqlite://{}", d.join("ser.db").display()),
        )
        .arg("-f")
        .arg(&file)
        .args([
            "-D",
            "-E",
            "-dd",
            "-n",
            "1",
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _ser = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("started")) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => log.push(l),
            Err(_) => panic!("ser did not start:\n{}", log.join("\n")),
        }
    }
    let alice = "sip:alice@example.com";
    // Default files (their default names are relative too).
    assert_eq!(
        ask(port, "OPTIONS", "sip:123@gw.example.com", alice, "", 30),
        ALLOWED
    );
    assert_eq!(
        ask(
            port,
            "OPTIONS",
            "sip:19001234@gw.example.com",
            alice,
            "",
            31
        ),
        FORBIDDEN
    );
    // An explicit pair.
    assert_eq!(
        ask(
            port,
            "OPTIONS",
            "sip:pair-closed@gw.example.com",
            alice,
            "",
            32
        ),
        FORBIDDEN
    );
    assert_eq!(
        ask(
            port,
            "OPTIONS",
            "sip:pair-open@gw.example.com",
            alice,
            "",
            33
        ),
        ALLOWED
    );
    // A basename with the suffixes.
    let reg = |from: &str, n| {
        ask(
            port,
            "REGISTER",
            "sip:example.com",
            from,
            "Contact: <sip:x@192.0.2.1>\r\n",
            n,
        )
    };
    assert_eq!(reg(alice, 34), "SIP/2.0 200 Registration allowed");
    assert_eq!(
        reg("sip:mallory@example.com", 35),
        "SIP/2.0 403 Registration forbidden"
    );
    while let Ok(l) = rx.try_recv() {
        log.push(l);
    }
    assert!(
        !log.iter().any(|l| l.contains("does not exist")),
        "{}",
        log.join("\n")
    );
    let _ = std::fs::remove_dir_all(&d);
}
