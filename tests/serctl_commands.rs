//! `serctl` as a user runs it: the database commands against SQLite (and MariaDB/PostgreSQL when
//! reachable: `SER_TEST_MYSQL_URL`, `SER_TEST_PG_URL`), the FIFO commands against a small fake
//! FIFO server speaking SER's protocol (the real one lives in the controlplane's mgmt module).
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn md5hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs serctl with a clean environment (only what the test gives) and standard input `stdin`.
fn serctl(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serctl"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    // Bounded: every serctl command here ends by itself (FIFO replies time out after 10 s).
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Sqlite {
    dir: PathBuf,
    url: String,
}

impl Sqlite {
    fn new() -> Sqlite {
        let dir = std::env::temp_dir().join(unique("ser-serctl"));
        let url = format!("sqlite://{}/ser.db", dir.display());
        Sqlite { dir, url }
    }

    fn query(&self, sql: &str) -> Vec<Vec<String>> {
        let c = rusqlite::Connection::open(self.dir.join("ser.db")).unwrap();
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        let rows = st
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, Option<String>>(i)
                            .map(|v| v.unwrap_or_else(|| "NULL".into()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The subscriber life cycle and ACLs, on whatever database `url` names.
fn subscriber_lifecycle(url: &str) -> Vec<Vec<String>> {
    let env = [("SER_DB_URL", url), ("SIP_DOMAIN", "foo.bar")];
    let o = serctl(&["add", "john", "heslo", "john@foo.bar"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "new user added\n");

    let o = serctl(&["add", "john", "x", "y@z"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o), "serctl: user already exists\n");

    let o = serctl(&["passwd", "john", "new"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "password change succeeded\n");

    let o = serctl(&["acl", "grant", "john", "local", "bogus", "ld"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("Invalid privilege: bogus ignored\n"),
        "{text}"
    );
    assert!(
        text.contains("| username | domain  | grp   | last_modified       |"),
        "{text}"
    );
    assert!(text.contains("| john     | foo.bar | ld    |"), "{text}");
    assert!(text.contains("| john     | foo.bar | local |"), "{text}");

    let o = serctl(&["acl", "revoke", "john", "ld"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert!(!out(&o).contains("| ld "), "{}", out(&o));
    let o = serctl(&["acl", "show", "john"], &env, "");
    assert!(
        out(&o).contains("| john     | foo.bar | local |"),
        "{}",
        out(&o)
    );

    let o = serctl(&["showdb", "john"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert!(out(&o).contains("| john@foo.bar  |"), "{}", out(&o));
    assert!(
        out(&o).ends_with("Note: Due to usage of cache, server's list may differ from DB list.\n")
    );

    let o = serctl(&["passwd", "nobody", "x"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o), "serctl: non-existent user\n");

    // What the server's auth module will read.
    let o = serctl(&["add", "jane", "pw", "jane@foo.bar"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    let o = serctl(&["rm", "jane"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "user removed\n");
    vec![vec![
        md5hex("john:foo.bar:new"),
        md5hex("john@foo.bar:foo.bar:new"),
    ]]
}

#[test]
fn subscribers_and_acls_in_sqlite() {
    let db = Sqlite::new();
    let expect = subscriber_lifecycle(&db.url);
    let rows = db.query("SELECT ha1, ha1b, password, email_address, domain FROM subscriber");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][..2], expect[0][..]);
    assert_eq!(rows[0][2..], ["new", "john@foo.bar", "foo.bar"]);
    assert_eq!(
        db.query("SELECT grp FROM grp WHERE username = 'john'"),
        vec![vec!["local".to_string()]]
    );
}

#[test]
fn add_needs_sip_domain_and_right_arguments() {
    let db = Sqlite::new();
    let o = serctl(&["add", "a", "b", "c"], &[("SER_DB_URL", &db.url)], "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "serctl: You need to set environment variable SIP_DOMAIN (e.g. to 'foobar.com') first\n"
    );
    let o = serctl(
        &["add", "a"],
        &[("SER_DB_URL", &db.url), ("SIP_DOMAIN", "d")],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "serctl: usage: serctl add <username> <password> <email>\n"
    );
    let o = serctl(&["frobnicate"], &[], "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    let o = serctl(&[], &[], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("add <username> <password> <email>"));
    // A database that cannot be used: one line, exit 1.
    let o = serctl(
        &["acl", "show"],
        &[("SER_DB_URL", "postgres://postgres@127.0.0.1:1/x")],
        "",
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    assert!(err(&o).contains("unavailable"), "{}", err(&o));
}

#[test]
fn showdb_lists_bindings_flushed_to_the_db() {
    let db = Sqlite::new();
    let env = [("SER_DB_URL", db.url.as_str()), ("SIP_DOMAIN", "foo.bar")];
    assert!(serctl(&["add", "jiri", "pw", "jiri@iptel.org"], &env, "")
        .status
        .success());
    let c = rusqlite::Connection::open(db.dir.join("ser.db")).unwrap();
    c.execute(
        "INSERT INTO location (username, domain, contact, expires, callid) VALUES ('jiri', 'foo.bar', 'sip:jiri@1.2.3.4', '2030-01-01 00:00:00', 'abc@1.2.3.4')",
        [],
    )
    .unwrap();
    let o = serctl(&["showdb"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        out(&o).contains("| jiri     | jiri@iptel.org | abc@1.2.3.4 |"),
        "{}",
        out(&o)
    );
    let o = serctl(&["showdb", "jiri"], &env, "");
    assert!(out(&o).contains("sip:jiri@1.2.3.4"), "{}", out(&o));
    assert!(out(&o).contains("2030-01-01 00:00:00"), "{}", out(&o));
}

#[test]
fn mail_runs_mail_with_the_users_address() {
    let db = Sqlite::new();
    let bin = std::env::temp_dir().join(unique("ser-fakemail"));
    std::fs::create_dir_all(&bin).unwrap();
    let log = bin.join("mail.log");
    let script = bin.join("mail");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" > {}\ncat >> {}\n",
            log.display(),
            log.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [
        ("SER_DB_URL", db.url.as_str()),
        ("SIP_DOMAIN", "foo.bar"),
        ("PATH", path.as_str()),
    ];
    assert!(serctl(&["add", "john", "pw", "john@foo.bar"], &env, "")
        .status
        .success());
    let o = serctl(&["mail", "john"], &env, "Hello John\n");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "Write email to john: john@foo.bar now ...\nmessage sent\n"
    );
    let sent = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        sent,
        "-s Message from foo.bar SIP admin john@foo.bar\nHello John\n"
    );
    let _ = std::fs::remove_dir_all(&bin);
}

/// Runs `f` inside a small tokio runtime (for the MariaDB/PostgreSQL set-up).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn subscribers_in_mariadb_with_sers_variables() {
    use mysql_async::prelude::Queryable;
    let base = std::env::var("SER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let name = unique("ser_sc");
    let created = block_on(async {
        let pool = mysql_async::Pool::new(base.as_str());
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = pool.get_conn().await?;
            c.query_drop(format!("CREATE DATABASE {name}")).await
        })
        .await;
        let _ = pool.disconnect().await;
        r
    });
    match created {
        Ok(Ok(())) => {}
        Ok(Err(e)) => skip!("MariaDB at {base} is unreachable ({e})"),
        Err(_) => skip!("MariaDB at {base} did not answer"),
    }
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    subscriber_lifecycle(&url);

    // SER's own variables: SQL_HOST/SQL_USER/SQL_DB, the password prompted for (PW unset).
    let opts = mysql_async::Opts::from_url(&base).unwrap();
    let host = opts.ip_or_hostname().to_string();
    let user = opts.user().unwrap_or("root").to_string();
    let pw = opts.pass().unwrap_or("").to_string();
    let env = [
        ("SQL_HOST", host.as_str()),
        ("SQL_USER", user.as_str()),
        ("SQL_DB", name.as_str()),
        ("RO_USER", user.as_str()),
        ("RO_PW", pw.as_str()),
        ("SIP_DOMAIN", "foo.bar"),
    ];
    if opts.tcp_port() == 3306 {
        let o = serctl(
            &["add", "mary", "pw", "mary@foo.bar"],
            &env,
            &format!("{pw}\n"),
        );
        assert!(o.status.success(), "{}", err(&o));
        assert!(err(&o).starts_with("MySql password: "), "{}", err(&o));
        let o = serctl(&["acl", "show", "mary"], &env, "");
        assert!(o.status.success(), "{}", err(&o));
    }
    let rows = block_on(async {
        let pool = mysql_async::Pool::new(url.as_str());
        let mut c = pool.get_conn().await.unwrap();
        let rows: Vec<(String, String)> = c
            .query("SELECT username, ha1 FROM subscriber ORDER BY username")
            .await
            .unwrap();
        drop(c);
        let _ = pool.disconnect().await;
        rows
    });
    assert!(rows.contains(&("john".to_string(), md5hex("john:foo.bar:new"))));
    block_on(async {
        let pool = mysql_async::Pool::new(base.as_str());
        if let Ok(mut c) = pool.get_conn().await {
            let _ = c.query_drop(format!("DROP DATABASE {name}")).await;
        }
        let _ = pool.disconnect().await;
    });
}

#[test]
fn subscribers_in_postgres() {
    let base = std::env::var("SER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("ser_sc");
    let client = block_on(async {
        let c = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&base, tokio_postgres::NoTls),
        )
        .await;
        match c {
            Ok(Ok((client, conn))) => {
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".into()),
        }
    });
    if let Err(e) = client {
        skip!("PostgreSQL at {base} is unreachable ({e})");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    subscriber_lifecycle(&url);
    block_on(async {
        if let Ok((client, conn)) = tokio_postgres::connect(&base, tokio_postgres::NoTls).await {
            tokio::spawn(conn);
            let rows = client
                .query(
                    &format!("SELECT ha1 FROM {schema}.subscriber WHERE username = 'john'"),
                    &[],
                )
                .await
                .unwrap();
            let ha1: String = rows[0].get(0);
            assert_eq!(ha1, md5hex("john:foo.bar:new"));
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
                .await;
        }
    });
}

/// Requests the fake server got: command and parameter lines.
type Seen = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// A fake ser FIFO server: answers each request with `answer(command, params)`, records them.
struct FakeFifo {
    path: PathBuf,
    seen: Seen,
}

impl FakeFifo {
    fn start(answer: fn(&str, &[String]) -> String) -> FakeFifo {
        let path = std::env::temp_dir().join(unique("ser-fake-fifo"));
        assert!(Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success());
        let seen: Seen = Arc::new(Mutex::new(Vec::new()));
        let (p, s) = (path.clone(), Arc::clone(&seen));
        std::thread::spawn(move || {
            // Read and write: the FIFO always has a reader, and never reports end of file.
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap();
            let mut r = BufReader::new(f);
            for _ in 0..1000 {
                let mut head = String::new();
                if r.read_line(&mut head).unwrap_or(0) == 0 {
                    return;
                }
                let head = head.trim_end().to_string();
                let mut params = Vec::new();
                loop {
                    let mut l = String::new();
                    if r.read_line(&mut l).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = l.trim_end_matches('\n').to_string();
                    if l.is_empty() {
                        break;
                    }
                    params.push(l);
                }
                let Some((cmd, reply)) = head.strip_prefix(':').and_then(|h| h.split_once(':'))
                else {
                    continue;
                };
                s.lock().unwrap().push((cmd.to_string(), params.clone()));
                let text = answer(cmd, &params);
                let reply_path = Path::new("/tmp").join(reply);
                if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(reply_path) {
                    let _ = w.write_all(text.as_bytes());
                }
            }
        });
        FakeFifo { path, seen }
    }

    fn env(&self) -> String {
        self.path.display().to_string()
    }
}

impl Drop for FakeFifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn ser_answers(cmd: &str, params: &[String]) -> String {
    match (cmd, params) {
        ("ps", _) => "200 ok\n0\t4711\tattendant\n1\t4712\treceiver child=0 sock=0 @ 127.0.0.1::5060\n".into(),
        ("which", _) => "200 ok\nps\nwhich\nversion\nuptime\nprint\n".into(),
        ("version", _) => "200 ok\nServer: Sip EXpress router (0.8.11 (i386/linux))\n".into(),
        ("uptime", _) => "200 ok\nNow: Mon Nov 23 12:00:00 2026\nUp Since: Mon Nov 23 11:00:00 2026\nUp time: 3600 [sec]\n".into(),
        ("t_stats", _) => "200 ok\nCurrent: 0 (0 waiting) Total: 10 (0 local)\nReplied localy: 2\nCompletion status 6xx: 0, 5xx: 0, 4xx: 2, 3xx: 0,2xx: 8\n".into(),
        ("sl_stats", _) => "200 ok\n200: 5 202: 0 2xx: 0\n".into(),
        ("ul_stats", _) => "200 ok\nDomain Registered Expired\n'location' 1 0\n".into(),
        ("ul_show_contact", [_, user]) if user == "jiri" => {
            "200 OK\n<sip:jiri@195.37.78.173>;q=0.00;expires=456\n".into()
        }
        ("ul_show_contact", [table, user]) => {
            format!("404 Username {user} in table {table} not found\n")
        }
        ("ul_add", [table, user, uri, _, _]) => {
            format!("200 Added to table ('{user}','{uri}') to '{table}'\n")
        }
        ("ul_rm", [table, user]) => format!("200 user ({table}, {user}) deleted\n"),
        // A contact that never answers: ser's transaction times out.
        ("t_uac_dlg", [_, uri, ..]) if uri.contains("silent") => "408 Request Timeout\n".into(),
        ("t_uac_dlg", [method, ..]) => format!("200 {method} sent\n"),
        ("ul_dump", _) => "200 ok\nDomain: 'location'\n...Record(0x1)...\ndomain: 'location'\naor   : 'jiri'\n...Record(0x2)...\naor   : 'alice'\naor   : 'jiri'\n".into(),
        (other, _) => format!("500 command '{other}' not available\n"),
    }
}

#[test]
fn fifo_commands_speak_sers_protocol() {
    let fifo = FakeFifo::start(ser_answers);
    let env = [("SER_FIFO", fifo.env())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let o = serctl(&["ps"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "0\t4711\tattendant\n1\t4712\treceiver child=0 sock=0 @ 127.0.0.1::5060\n"
    );

    let o = serctl(&["fifo", "which"], &env, "");
    assert!(out(&o).starts_with("ps\nwhich\n"), "{}", out(&o));

    let o = serctl(&["fifo", "foobar"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(out(&o), "500 command 'foobar' not available\n");

    let o = serctl(&["ul", "show", "jiri"], &env, "");
    assert!(o.status.success());
    // As SER's sc: a "200 OK" status line is not shown, only the contacts.
    assert_eq!(out(&o), "<sip:jiri@195.37.78.173>;q=0.00;expires=456\n");
    let o = serctl(&["ul", "show", "newuser"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        out(&o),
        "404 Username newuser in table location not found\n"
    );

    let o = serctl(
        &["ul", "add", "newuser", "sip:666@gateway.foo.bar"],
        &env,
        "",
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        out(&o),
        "200 Added to table ('newuser','sip:666@gateway.foo.bar') to 'location'\n"
    );
    let o = serctl(&["alias", "add", "1234", "sip:john.doe@foo.bar"], &env, "");
    assert_eq!(
        out(&o),
        "200 Added to table ('1234','sip:john.doe@foo.bar') to 'aliases'\n"
    );
    let o = serctl(&["alias", "rm", "john"], &env, "");
    assert_eq!(out(&o), "200 user (aliases, john) deleted\n");
    let o = serctl(&["ul", "rm", "newuser"], &env, "");
    assert_eq!(out(&o), "200 user (location, newuser) deleted\n");

    let o = serctl(&["online"], &env, "");
    assert_eq!(out(&o), "alice\njiri\n");

    let mut env_d = env.clone();
    env_d.push(("SIP_DOMAIN", "foo.bar"));
    let o = serctl(&["cisco_restart", "sip:phone@10.0.0.7"], &env_d, "");
    assert!(o.status.success(), "{}", err(&o));
    let o = serctl(&["ping", "sip:phone@10.0.0.7"], &env_d, "");
    assert_eq!(out(&o), "200 OPTIONS sent\n");
    // The contact, not ser, did not answer: serctl says which.
    let o = serctl(&["ping", "sip:silent@10.0.0.8"], &env_d, "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        err(&o),
        "serctl: sip:silent@10.0.0.8 did not answer OPTIONS (ser's transaction timed out: 408 Request Timeout); ser itself is running\n"
    );

    let seen = fifo.seen.lock().unwrap().clone();
    assert!(seen.contains(&(
        "ul_add".to_string(),
        vec![
            "location".to_string(),
            "newuser".into(),
            "sip:666@gateway.foo.bar".into(),
            "1073741823".into(),
            "1.00".into()
        ]
    )));
    assert!(seen.contains(&(
        "t_uac_dlg".to_string(),
        [
            "NOTIFY",
            "sip:phone@10.0.0.7",
            ".",
            "From: <sip:daemon@foo.bar>",
            "To: <sip:phone@10.0.0.7>",
            "Contact: <sip:daemon@foo.bar>",
            "Event: check-sync",
            ".",
            "."
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    )));
    assert!(seen.contains(&(
        "ul_show_contact".to_string(),
        vec!["location".to_string(), "jiri".into()]
    )));
}

#[test]
fn monitor_prints_the_status_screen() {
    let fifo = FakeFifo::start(ser_answers);
    let f = fifo.env();
    let o = serctl(
        &["moni"],
        &[
            ("SER_FIFO", f.as_str()),
            ("MONITOR_CYCLES", "2"),
            ("WATCH_PERIOD", "0"),
        ],
        "",
    );
    assert!(o.status.success(), "{}", err(&o));
    let text = out(&o);
    assert!(text.starts_with("[cycle #: 1; if constant make sure server lives and fifo is on]\nServer: Sip EXpress router (0.8.11 (i386/linux))\nNow: "), "{text}");
    for part in [
        "Up time: 3600 [sec]\n\nTransaction Statistics\nCurrent: 0 (0 waiting) Total: 10 (0 local)\n",
        "\nStateless Server Statistics\n200: 5 202: 0 2xx: 0\n",
        "\nUsrLoc Stats\nDomain Registered Expired\n'location' 1 0\n",
        "[cycle #: 2;",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
}

#[test]
fn fifo_without_a_server_is_one_clear_error() {
    // No FIFO at all.
    let o = serctl(&["ps"], &[("SER_FIFO", "/tmp/no-such-ser-fifo")], "");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).lines().count(), 1);
    assert!(err(&o).contains("/tmp/no-such-ser-fifo"), "{}", err(&o));
    // A FIFO nobody reads (ser not running): no hang.
    let path = std::env::temp_dir().join(unique("ser-dead-fifo"));
    assert!(Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    let p = path.display().to_string();
    let started = std::time::Instant::now();
    let o = serctl(&["ps"], &[("SER_FIFO", p.as_str())], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("is ser running"), "{}", err(&o));
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn start_and_stop_a_daemon_through_its_pid_file() {
    let dir = std::env::temp_dir().join(unique("ser-sc-start"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ser.cfg");
    std::fs::write(&cfg, "route { drop; }\n").unwrap();
    let pid_file = dir.join("ser.pid");
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let opts = format!("-f {} -l 127.0.0.1:{port} -n 1", cfg.display());
    let pf = pid_file.display().to_string();
    let ser = env!("CARGO_BIN_EXE_ser");
    let env = [
        ("PID_FILE", pf.as_str()),
        ("STARTOPTIONS", opts.as_str()),
        ("SER", ser),
    ];
    let o = serctl(&["start"], &env, "");
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Kill-on-drop for the daemon this test started (by its pid), should an assertion fail.
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.to_string()).status();
        }
    }
    let _guard = Guard(pid);
    assert_eq!(out(&o), format!("Starting SER : started pid({pid})\n"));
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let o = serctl(&["start"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("already running"), "{}", err(&o));

    let o = serctl(&["stop"], &env, "");
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "Stopping SER : stopped\n");
    let mut gone = false;
    for _ in 0..100 {
        if !pid_file.exists() && !Path::new(&format!("/proc/{pid}")).exists() {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone, "ser (pid {pid}) did not stop");
    let o = serctl(&["stop"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("No PID file found!"), "{}", err(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn read_only_commands_refuse_a_sqlite_file_that_does_not_exist() {
    let dir = std::env::temp_dir().join(unique("ser-sc-nodb"));
    let db = dir.join("typo/ser.db");
    let url = format!("sqlite://{}", db.display());
    for args in [&["showdb"][..], &["acl", "show"][..]] {
        let o = serctl(args, &[("SER_DB_URL", url.as_str())], "");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", out(&o));
        assert_eq!(
            err(&o),
            format!(
                "serctl: the SQLite database {} does not exist (check SER_DB_URL)\n",
                db.display()
            ),
            "{args:?}"
        );
    }
    assert!(!dir.exists(), "nothing was created");
}

#[test]
fn start_shows_why_ser_did_not_start() {
    let dir = std::env::temp_dir().join(unique("ser-sc-fail"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("ser.cfg");
    std::fs::write(&cfg, "route { drop; }\n").unwrap();
    // The port is taken (by this test) so ser cannot bind it.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let opts = format!("-f {} -l udp:127.0.0.1:{port} -n 1", cfg.display());
    let pf = dir.join("ser.pid").display().to_string();
    let env = [
        ("PID_FILE", pf.as_str()),
        ("STARTOPTIONS", opts.as_str()),
        ("SER", env!("CARGO_BIN_EXE_ser")),
    ];
    let o = serctl(&["start"], &env, "");
    assert_eq!(o.status.code(), Some(1));
    let e = err(&o);
    assert!(
        e.contains(&format!("cannot bind udp:127.0.0.1:{port}"))
            && e.contains("Address already in use"),
        "{e}"
    );
    assert!(e.contains("ser did not start"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
