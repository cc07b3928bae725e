//! serctl against a live ser (the shipped ser.cfg with its digest-authentication lines switched on,
//! SQLite storage, the FIFO): the Admin Guide's flow of section 3.2 — `serctl add` a subscriber,
//! then a SIPp REGISTER with that password succeeds (and a wrong one gets 401), `serctl ul show`
//! lists the binding, `serctl passwd` takes effect at once (no stale cached password), `serctl ul
//! add/rm`, `serctl ps`, `serctl moni` one cycle, `serctl rm`.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;
#[path = "support/net.rs"]
mod net;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use net::*;

const REALM: &str = "test.example";

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ser_live_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The shipped ser.cfg with the Admin Guide's auth lines uncommented, our realm and FIFO.
fn auth_cfg(fifo: &Path) -> String {
    let cfg = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ser.cfg")).unwrap();
    let mut out = String::new();
    for line in cfg.lines() {
        let t = line.trim_start();
        let uncomment = t.starts_with("#loadmodule \"/usr/local/lib/ser/modules/auth")
            || t.starts_with("#modparam(\"auth_db\", \"calculate_ha1\"")
            || t.starts_with("#modparam(\"auth_db\", \"password_column\"")
            || t.starts_with("#\t\t\tif (!www_authorize")
            || t.starts_with("#\t\t\t\twww_challenge")
            || t.starts_with("#\t\t\t\tbreak;")
            || t.starts_with("#\t\t\t};");
        let l = if uncomment {
            line.replacen('#', "", 1)
        } else {
            line.to_string()
        };
        out.push_str(&l.replace("iptel.org", REALM));
        out.push('\n');
    }
    out.replace("/tmp/ser_fifo", fifo.to_str().unwrap())
}

struct Live {
    ser: Ser,
    addr: SocketAddr,
    fifo: PathBuf,
    db_url: String,
    dir: PathBuf,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> Live {
    let dir = std::env::temp_dir().join(unique("dir"));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = PathBuf::from("/tmp").join(unique("fifo"));
    let db_url = format!("sqlite://{}", dir.join("ser.db").display());
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_env(
        &auth_cfg(&fifo),
        &["-l", "127.0.0.1", "-p", &port.to_string()],
        &[("SER_DB_URL", &db_url)],
    );
    Live {
        ser,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        fifo,
        db_url,
        dir,
    }
}

impl Live {
    fn serctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_serctl"))
            .args(args)
            .env("SER_DB_URL", &self.db_url)
            .env("SER_FIFO", &self.fifo)
            .env("SIP_DOMAIN", REALM)
            .env("MONITOR_CYCLES", "1")
            .env("WATCH_PERIOD", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn serctl_ok(&self, args: &[&str]) -> String {
        let o = self.serctl(args);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "serctl {args:?} failed: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    }

    /// A SIPp REGISTER of alice with `password`; true when it ends with `expect`.
    fn sipp_register(&self, password: &str, expect: u16) -> (bool, String) {
        let sc = self.dir.join(format!("reg-{expect}.xml"));
        std::fs::write(&sc, scenario(self.addr.port(), expect)).unwrap();
        let out = Command::new("timeout")
            .args(["30", "sipp", &self.addr.to_string(), "-sf"])
            .arg(&sc)
            .args(["-i", "127.0.0.1", "-p", &free_port("127.0.0.1").to_string()])
            .args([
                "-au", "alice", "-ap", password, "-m", "1", "-timeout", "20s",
            ])
            .arg("-nostdin")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code() == Some(0),
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                self.ser.log_text()
            ),
        )
    }
}

fn scenario(port: u16, final_status: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register with auth">
  <send retrans="500">
    <![CDATA[
REGISTER sip:127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@{REALM}>;tag=[call_number]
To: <sip:alice@{REALM}>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[
REGISTER sip:127.0.0.1:{port} SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@{REALM}>;tag=[call_number]
To: <sip:alice@{REALM}>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:alice@[local_ip]:[local_port]>
[authentication]
Max-Forwards: 70
Expires: 300
Content-Length: 0

    ]]>
  </send>
  <recv response="{final_status}"/>
</scenario>
"#
    )
}

#[test]
fn serctl_add_then_register_with_that_password_and_manage_the_live_server() {
    if !have("sipp") {
        skip!("sipp is not installed (apt-get install sip-tester)");
    }
    let live = start();
    // 3.2.1: a new subscriber.
    let out = live.serctl_ok(&["add", "alice", "wonderland", "alice@example.com"]);
    assert!(out.contains("new user added"), "{out}");
    let (ok, text) = live.sipp_register("wonderland", 200);
    assert!(ok, "REGISTER with serctl's password:\n{text}");
    let (ok, text) = live.sipp_register("guess", 401);
    assert!(ok, "a wrong password must get 401:\n{text}");
    // The binding is on the live server.
    let ul = live.serctl_ok(&["ul", "show", "alice"]);
    assert!(ul.contains("<sip:alice@127.0.0.1:"), "{ul}");
    // 3.2.2: a new password works at once, the old one no longer does.
    let out = live.serctl_ok(&["passwd", "alice", "looking-glass"]);
    assert!(out.contains("password change succeeded"), "{out}");
    let (ok, text) = live.sipp_register("looking-glass", 200);
    assert!(ok, "the new password:\n{text}");
    let (ok, text) = live.sipp_register("wonderland", 401);
    assert!(ok, "the old password must fail now:\n{text}");
    // ul add / rm through the FIFO; ps; one monitor screen.
    live.serctl_ok(&["ul", "add", "bob", "sip:bob@192.0.2.7"]);
    let ul = live.serctl_ok(&["ul", "show", "bob"]);
    assert!(ul.contains("<sip:bob@192.0.2.7>"), "{ul}");
    live.serctl_ok(&["ul", "rm", "bob"]);
    assert!(!live.serctl(&["ul", "show", "bob"]).status.success());
    let ps = live.serctl_ok(&["ps"]);
    assert!(ps.contains("receiver"), "{ps}");
    let moni = live.serctl_ok(&["moni"]);
    assert!(moni.contains("Transaction Statistics"), "{moni}");
    assert!(moni.contains("Current: "), "{moni}");
    // 3.2.3: removal.
    let out = live.serctl_ok(&["rm", "alice"]);
    assert!(out.contains("user removed"), "{out}");
    let (ok, text) = live.sipp_register("looking-glass", 401);
    assert!(ok, "a removed user must fail:\n{text}");
}
