//! `serctl` (SER's `sc`): subscribers, ACLs and the database through the same storage layer as the
//! server (`controlplane::db`), contacts and server health through the server's FIFO.
//!
//! | command | talks to | prints |
//! |---|---|---|
//! | `add <user> <password> <email>` (*) | DB `subscriber` | `new user added` |
//! | `passwd <user> <password>` (*) (also `password`) | DB | `password change succeeded` |
//! | `rm <user>` (*) | DB `subscriber`, `grp`; FIFO `ul_rm` | `user removed` |
//! | `mail <user>` | DB, then `mail(1)` | `Write email to …` |
//! | `alias show [<alias>]`, `alias rm <alias>`, `alias add <alias> <uri>` | FIFO, table `aliases` | the server's reply |
//! | `acl show [<user>]`, `acl grant <user> <group>…` (*), `acl revoke <user> [<group>]` (*) | DB `grp` | the rows |
//! | `ul show [<user>]`, `ul rm <user>`, `ul add <user> <uri>` | FIFO, table `location` | the server's reply |
//! | `showdb [<user>]` (also `userdb`) | DB `location`, `subscriber` | the rows |
//! | `monitor` (also `moni`, `console`, `con`) | FIFO | Example 5-2's screen every `WATCH_PERIOD` s |
//! | `ps`, `fifo <command> [<param>…]`, `online` | FIFO | the server's reply |
//! | `start`, `stop`, `restart` | `ser -P $PID_FILE $STARTOPTIONS`, `kill` | `started pid(N)`, `stopped` |
//! | `version` | — | serctl's version |
//!
//! (*) SER prompted for the MySQL password unless `PW` was set; ser does the same when the DB is
//! MySQL named by SER's variables (`SQL_HOST`, `SQL_USER`, `SQL_DB`), see [`db::url`]. With
//! `SER_DB_URL` or the default SQLite file there is no password.
//!
//! `SIP_DOMAIN` is the realm: HA1 = MD5(user:SIP_DOMAIN:password), HA1B =
//! MD5(user@SIP_DOMAIN:SIP_DOMAIN:password). Unlike SER's `sc`, commands that do not need it (FIFO
//! commands, `acl show`…) run without it.
//!
//! Errors are one line on standard error (`serctl: …`) and exit status 1; a FIFO reply that is not
//! 2xx also exits 1. `ping <uri>` (OPTIONS) and `cisco_restart <uri>` (NOTIFY with
//! `Event: check-sync`) ask the server to send the request with FIFO `t_uac_dlg` (method, request
//! URI, `.` for no outbound proxy, header lines, `.`, an empty body ended by `.`); From is
//! `sip:daemon@$SIP_DOMAIN` (or this host's name).
//!
//! `start` runs the `ser` next to serctl (else the one on PATH; `SER` env overrides) with
//! `-P $PID_FILE` (default: `/run/ser/ser.pid` when it exists, else `/var/run/ser.pid`) and
//! `$STARTOPTIONS`; its output goes to syslog
//! unless `SYSLOG=0` (then `-E`, on the terminal), as in SER's `sc`.

pub mod db;
pub mod fifo;

use std::time::Duration;

use controlplane::subscriber;
use db::{Access, Conn};

/// ACL groups SER's `sc` accepted (`VERIFY_ACL=1`); `ACL_GROUPS` overrides, `VERIFY_ACL=0` skips.
const ACL_GROUPS: &str = "local ld int voicemail free-pstn";

/// Expiry `ul add`/`alias add` give a permanent contact (SER's `FOREVER_REL`).
const FOREVER_REL: &str = "1073741823";

const FIFO_TIMEOUT: Duration = Duration::from_secs(10);

/// The usage text (SER's `sc` layout).
pub fn usage() -> String {
    let cmd = "serctl";
    format!(
        "usage:
           * subscribers *
 {cmd} add <username> <password> <email> .. add a new subscriber (*)
 {cmd} passwd <username> <passwd> ......... change user's password (*)
 {cmd} rm <username> ...................... delete a user (*)
 {cmd} mail <username> .................... send an email to a user
 {cmd} alias show [<alias>] ............... show aliases
 {cmd} alias rm <alias> ................... remove an alias
 {cmd} alias add <alias> <uri> ............ add an alias

           * access control lists *
 {cmd} acl show [<username>] .............. show user membership
 {cmd} acl grant <username> <group> ....... grant user membership (*)
 {cmd} acl revoke <username> [<group>] .... revoke user membership(s) (*)

           * usrloc *
 {cmd} ul show [<username>]................ show in-RAM online users
 {cmd} ul rm <username> ................... delete user's UsrLoc entries
 {cmd} ul add <username> <uri> ............ introduce a permanent UsrLoc entry
 {cmd} showdb [<username>] ................ show online users flushed in DB

           * server health *
 {cmd} monitor ............................ show internal status
 {cmd} ps ................................. show running processes
 {cmd} fifo ............................... send raw commands to FIFO
 {cmd} ping <uri> ......................... ping a URI (OPTIONS)
 {cmd} cisco_restart <uri> ................ restart a Cisco phone (NOTIFY)

           * server control *
 {cmd} start .............................. start ser
 {cmd} stop ............................... stop ser
 {cmd} restart ............................ restart ser

           * web UI *
 {cmd} webpasswd <name> [<password>] ...... print an admins-file line (password from stdin when not given)

   Commands labeled with (*) will prompt for a MySQL password when the database
   is MySQL given by SQL_HOST/SQL_USER/SQL_DB; if the variable PW is set, the
   password will not be prompted. The database is SER_DB_URL when set.
   SIP_DOMAIN must be set to the realm for add and passwd.

     ACL privileges are: {}
",
        acl_groups().join(" ")
    )
}

/// Why a command failed: a message for standard error, or a usage error.
enum Fail {
    Msg(String),
    Usage(&'static str),
    /// Already reported on standard output (a FIFO reply that is not 2xx): exit status only.
    Quiet,
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Msg(s)
    }
}

type Out = Result<(), Fail>;

/// Runs serctl with `args` (without the program name); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    // The storage layer logs for the server; serctl reports its own errors, one line each.
    dataplane::shard::log::set_level(dataplane::shard::log::L_ALERT - 1);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = match a.as_slice() {
        [] | ["help" | "-h" | "--help"] => {
            print!("{}", usage());
            return if a.is_empty() { 1 } else { 0 };
        }
        ["version" | "-V"] => {
            println!("serctl {} (ser)", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        ["add", rest @ ..] => add(rest),
        ["passwd" | "password", rest @ ..] => passwd(rest),
        ["rm", rest @ ..] => rm(rest),
        ["mail", rest @ ..] => mail(rest),
        ["alias", rest @ ..] => usrloc("aliases", rest),
        ["ul", rest @ ..] => usrloc("location", rest),
        ["acl", rest @ ..] => acl(rest),
        ["showdb" | "userdb", rest @ ..] => showdb(rest),
        ["monitor" | "moni" | "console" | "con"] => monitor(),
        ["ps"] => fifo_print("ps", &[]),
        ["ping", uri] => uac("OPTIONS", uri, &[]),
        ["cisco_restart", uri] => uac("NOTIFY", uri, &["Event: check-sync"]),
        ["ping" | "cisco_restart", ..] => Err(Fail::Usage("ping <uri> | cisco_restart <uri>")),
        ["start"] => start(),
        ["stop"] => stop(),
        ["restart"] => stop().and_then(|()| {
            std::thread::sleep(Duration::from_secs(2));
            start()
        }),
        ["online"] => online(),
        ["webpasswd", rest @ ..] => webpasswd(rest),
        ["fifo", cmd, params @ ..] => fifo_print(cmd, params),
        ["fifo"] => Err(Fail::Usage("fifo <command> [<param> ...]")),
        [other, ..] => Err(Fail::Msg(format!(
            "unknown command {other:?} (run serctl without arguments for the list)"
        ))),
    };
    match r {
        Ok(()) => 0,
        Err(Fail::Msg(m)) => {
            eprintln!("serctl: {m}");
            1
        }
        Err(Fail::Usage(u)) => {
            eprintln!("serctl: usage: serctl {u}");
            1
        }
        Err(Fail::Quiet) => 1,
    }
}

fn sip_domain() -> Result<String, Fail> {
    std::env::var("SIP_DOMAIN")
        .ok()
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            Fail::Msg(
                "You need to set environment variable SIP_DOMAIN (e.g. to 'foobar.com') first"
                    .into(),
            )
        })
}

fn acl_groups() -> Vec<String> {
    std::env::var("ACL_GROUPS")
        .ok()
        .filter(|g| !g.trim().is_empty())
        .unwrap_or_else(|| ACL_GROUPS.to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn is_user(db: &Conn, user: &str, domain: &str) -> Result<bool, Fail> {
    Ok(!db
        .select(
            "subscriber",
            &[("username", user), ("domain", domain)],
            &["username"],
        )?
        .is_empty())
}

/// A row of owned columns as serctl's `Conn` takes it (NULL never occurs in these rows).
fn pairs(row: &[(String, Option<String>)]) -> Vec<(&str, &str)> {
    row.iter()
        .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or("")))
        .collect()
}

fn add(a: &[&str]) -> Out {
    let [user, password, email] = a else {
        return Err(Fail::Usage("add <username> <password> <email>"));
    };
    let domain = sip_domain()?;
    let db = Conn::open(Access::Write)?;
    if is_user(&db, user, &domain)? {
        return Err(Fail::Msg("user already exists".into()));
    }
    // SER's sc stored the plain password too (serctl keeps that; the web UI asks auth_db).
    let row = subscriber::new_row(user, &domain, password, true, &[("email_address", email)]);
    db.insert("subscriber", &pairs(&row))
        .map_err(|e| format!("introducing a new user to the database failed: {e}"))?;
    println!("new user added");
    tell_server(user, &domain);
    Ok(())
}

/// Tells a running server that a subscriber changed, so its credential cache does not answer with
/// the old password for up to `cache_ttl` (ser's `auth_flush`; best effort: no server, no error).
fn tell_server(user: &str, domain: &str) {
    let _ = fifo::call(
        &fifo::server_fifo(),
        "auth_flush",
        &[user, domain],
        Duration::from_secs(2),
    );
}

fn passwd(a: &[&str]) -> Out {
    let [user, password] = a else {
        return Err(Fail::Usage("passwd <username> <passwd>"));
    };
    let domain = sip_domain()?;
    let db = Conn::open(Access::Write)?;
    if !is_user(&db, user, &domain)? {
        return Err(Fail::Msg("non-existent user".into()));
    }
    let row = subscriber::password_columns(user, &domain, password, true);
    db.upsert(
        "subscriber",
        &[("username", user), ("domain", &domain)],
        &pairs(&row),
    )
    .map_err(|e| format!("password change failed: {e}"))?;
    println!("password change succeeded");
    tell_server(user, &domain);
    Ok(())
}

/// `webpasswd NAME [PASSWORD]`: a line for ser's `--web-admins` file (argon2id hash). The
/// password is read from standard input when not given (so it stays out of `ps` and the history).
fn webpasswd(a: &[&str]) -> Out {
    let (name, password) = match a {
        [name, password] => (*name, password.to_string()),
        [name] => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| format!("reading the password: {e}"))?;
            (*name, line.trim_end_matches(['\r', '\n']).to_string())
        }
        _ => return Err(Fail::Usage("webpasswd <name> [<password>]")),
    };
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(Fail::Msg(
            "the name may not be empty or hold ':' or spaces".into(),
        ));
    }
    if password.is_empty() {
        return Err(Fail::Msg("empty password".into()));
    }
    println!("{name}:{}", controlplane::web::hash_password(&password)?);
    Ok(())
}

fn rm(a: &[&str]) -> Out {
    let [user] = a else {
        return Err(Fail::Usage("rm <username>"));
    };
    let domain = sip_domain()?;
    let db = Conn::open(Access::Write)?;
    if !is_user(&db, user, &domain)? {
        return Err(Fail::Msg("non-existent user".into()));
    }
    db.delete("subscriber", &[("username", user), ("domain", &domain)])?;
    // As SER's sc: the user's ACL entries and registered contacts go too.
    db.delete("grp", &[("username", user), ("domain", &domain)])?;
    let _ = fifo::call(
        &fifo::server_fifo(),
        "ul_rm",
        &["location", user],
        FIFO_TIMEOUT,
    );
    println!("user removed");
    tell_server(user, &domain);
    Ok(())
}

fn mail(a: &[&str]) -> Out {
    let [user] = a else {
        return Err(Fail::Usage("mail <username>"));
    };
    let domain = std::env::var("SIP_DOMAIN").unwrap_or_default();
    let db = Conn::open(Access::Read)?;
    let keys: Vec<(&str, &str)> = if domain.is_empty() {
        vec![("username", user)]
    } else {
        vec![("username", user), ("domain", &domain)]
    };
    let rows = db.select("subscriber", &keys, &["email_address"])?;
    let Some(email) = rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .find(|e| !e.is_empty())
    else {
        return Err(Fail::Msg(format!("no email address for user {user}")));
    };
    println!("Write email to {user}: {email} now ...");
    let status = std::process::Command::new("mail")
        .arg("-s")
        .arg(format!("Message from {domain} SIP admin"))
        .arg(&email)
        .status();
    match status {
        Ok(s) if s.success() => {
            println!("message sent");
            Ok(())
        }
        Ok(s) => Err(Fail::Msg(format!(
            "sending message failed (mail exited with {s})"
        ))),
        Err(e) => Err(Fail::Msg(format!(
            "sending message failed: cannot run mail: {e}"
        ))),
    }
}

/// `ul …` and `alias …`: the server's in-memory location tables through the FIFO.
fn usrloc(table: &str, a: &[&str]) -> Out {
    let what = if table == "aliases" { "alias" } else { "ul" };
    match a {
        ["show"] => fifo_print("ul_dump", &[]),
        ["show", user] => fifo_print("ul_show_contact", &[table, user]),
        ["rm", user] => fifo_print("ul_rm", &[table, user]),
        ["add", user, uri] => {
            if !uri_ok(uri) {
                return Err(Fail::Msg(format!("{uri} is not a valid URI")));
            }
            fifo_print("ul_add", &[table, user, uri, FOREVER_REL, "1.00"])
        }
        _ => Err(Fail::Msg(format!(
            "usage: serctl {what} show [<username>] | {what} rm <username> | {what} add <username> <uri>"
        ))),
    }
}

/// SER's `check_uri`: `sip:` with an optional simple user part and a dotted host.
fn uri_ok(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return false;
    };
    let host = match rest.split_once('@') {
        Some((user, host)) => {
            if user.is_empty() {
                return false;
            }
            host
        }
        None => rest,
    };
    host.contains('.') || host.starts_with('[')
}

fn acl(a: &[&str]) -> Out {
    match a {
        ["show"] => acl_show(None),
        ["show", user] => acl_show(Some(user)),
        ["grant", user, groups @ ..] if !groups.is_empty() => {
            let domain = sip_domain()?;
            let db = Conn::open(Access::Write)?;
            if !is_user(&db, user, &domain)? {
                return Err(Fail::Msg("non-existent user".into()));
            }
            let verify = std::env::var("VERIFY_ACL").map_or(true, |v| v != "0");
            let known = acl_groups();
            for g in groups {
                if verify && !known.iter().any(|k| k == g) {
                    println!("Invalid privilege: {g} ignored");
                    continue;
                }
                db.upsert(
                    "grp",
                    &[("username", user), ("domain", &domain), ("grp", g)],
                    &[("last_modified", &db::now())],
                )
                .map_err(|e| format!("SQL Error: {e}"))?;
            }
            tell_server(user, &domain);
            acl_print(&db, Some(user))
        }
        ["revoke", user] | ["revoke", user, _] => {
            let domain = sip_domain()?;
            let db = Conn::open(Access::Write)?;
            let mut keys = vec![("username", *user), ("domain", domain.as_str())];
            if let [_, _, g] = a {
                keys.push(("grp", g));
            }
            db.delete("grp", &keys)?;
            tell_server(user, &domain);
            acl_print(&db, Some(user))
        }
        _ => Err(Fail::Usage(
            "acl show [<username>] | acl grant <username> <group> | acl revoke <username> [<group>]",
        )),
    }
}

fn acl_show(user: Option<&str>) -> Out {
    let db = Conn::open(Access::Read)?;
    if let Some(u) = user {
        let domain = std::env::var("SIP_DOMAIN").unwrap_or_default();
        if !domain.is_empty() && !is_user(&db, u, &domain)? {
            return Err(Fail::Msg("non-existent user".into()));
        }
    }
    acl_print(&db, user)
}

fn acl_print(db: &Conn, user: Option<&str>) -> Out {
    let cols = ["username", "domain", "grp", "last_modified"];
    let keys: Vec<(&str, &str)> = user.map(|u| ("username", u)).into_iter().collect();
    let mut rows = db.select("grp", &keys, &cols)?;
    rows.sort();
    print!("{}", db::table(&cols, &rows));
    Ok(())
}

fn showdb(a: &[&str]) -> Out {
    let db = Conn::open(Access::Read)?;
    let loc_cols: Vec<&str> = controlplane::db::schema::table("location")
        .map(|t| t.columns.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    match a {
        [user] => {
            let domain = std::env::var("SIP_DOMAIN").unwrap_or_default();
            if !domain.is_empty() && !is_user(&db, user, &domain)? {
                return Err(Fail::Msg("non-existent user".into()));
            }
            let email = db.select("subscriber", &[("username", user)], &["email_address"])?;
            print!("{}", db::table(&["email_address"], &email));
            let mut loc = db.select("location", &[("username", user)], &loc_cols)?;
            // SER: "order by expires desc".
            let e = loc_cols.iter().position(|c| *c == "expires").unwrap_or(0);
            loc.sort_by(|x, y| y.get(e).cmp(&x.get(e)));
            print!("{}", db::table(&loc_cols, &loc));
        }
        [] => {
            let loc = db.select("location", &[], &["username", "callid"])?;
            let subs = db.select("subscriber", &[], &["username", "email_address"])?;
            let mut rows: Vec<Vec<Option<String>>> = Vec::new();
            for l in &loc {
                for s in subs.iter().filter(|s| s.first() == l.first()) {
                    rows.push(vec![
                        l.first().cloned().flatten(),
                        s.get(1).cloned().flatten(),
                        l.get(1).cloned().flatten(),
                    ]);
                }
            }
            rows.sort();
            print!(
                "{}",
                db::table(&["username", "email_address", "callid"], &rows)
            );
        }
        _ => return Err(Fail::Usage("showdb [<username>]")),
    }
    println!("Note: Due to usage of cache, server's list may differ from DB list.");
    Ok(())
}

fn fifo_call(cmd: &str, params: &[&str]) -> Result<fifo::Reply, Fail> {
    Ok(fifo::call(&fifo::server_fifo(), cmd, params, FIFO_TIMEOUT)?)
}

/// Sends a FIFO command and prints the reply as SER's `sc` did; non-2xx exits 1.
fn fifo_print(cmd: &str, params: &[&str]) -> Out {
    let r = fifo_call(cmd, params)?;
    print!("{}", r.printable());
    if r.ok() {
        Ok(())
    } else {
        Err(Fail::Quiet)
    }
}

/// A request sent by the server (`t_uac_dlg`) to `uri`.
fn uac(method: &str, uri: &str, extra: &[&str]) -> Out {
    if !uri_ok(uri) {
        return Err(Fail::Msg(format!("{uri} is not a valid URI")));
    }
    let host = std::env::var("SIP_DOMAIN")
        .ok()
        .filter(|d| !d.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into());
    let from = format!("From: <sip:daemon@{host}>");
    let to = format!("To: <{uri}>");
    let contact = format!("Contact: <sip:daemon@{host}>");
    let mut params: Vec<&str> = vec![method, uri, ".", &from, &to, &contact];
    params.extend_from_slice(extra);
    params.extend_from_slice(&[".", "."]);
    // ser sends the request and answers with the final reply's status: a failure here is the
    // contact's (or the transaction timer's), not ser's — ser answered the FIFO.
    let r = fifo_call("t_uac_dlg", &params)?;
    print!("{}", r.printable());
    if r.ok() {
        return Ok(());
    }
    Err(Fail::Msg(match r.code {
        408 => format!(
            "{uri} did not answer {method} (ser's transaction timed out: {}); ser itself is running",
            r.status
        ),
        500 if r.status.contains("transaction lost") || r.status.contains("no shard") => {
            format!("ser could not send {method} to {uri}: {}", r.status)
        }
        _ => format!(
            "{uri} answered {method} with {} (ser is running and relayed it)",
            r.status
        ),
    }))
}

/// Where ser's pid file is: `PID_FILE`, else the first that exists of the systemd unit's
/// `/run/ser/ser.pid` and SER's `/var/run/ser.pid` (`start` writes the latter when neither does).
fn pid_file() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("PID_FILE").filter(|p| !p.is_empty()) {
        return p.into();
    }
    [PACKAGE_PID_FILE, SER_PID_FILE]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| SER_PID_FILE.into())
}

/// The pid file of the packaged systemd unit.
const PACKAGE_PID_FILE: &str = "/run/ser/ser.pid";
/// SER's `sc` default.
const SER_PID_FILE: &str = "/var/run/ser.pid";

fn ser_binary() -> std::path::PathBuf {
    if let Some(s) = std::env::var_os("SER").filter(|s| !s.is_empty()) {
        return s.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("ser")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| "ser".into())
}

fn start() -> Out {
    use std::io::Write;
    print!("Starting SER : ");
    let _ = std::io::stdout().flush();
    let pid_file = pid_file();
    if pid_file.exists() {
        println!();
        return Err(Fail::Msg(format!(
            "PID file exists! ({}) already running?",
            pid_file.display()
        )));
    }
    let mut cmd = std::process::Command::new(ser_binary());
    cmd.arg("-P").arg(&pid_file);
    let to_terminal = std::env::var("SYSLOG").is_ok_and(|v| v == "0");
    if to_terminal {
        cmd.arg("-E");
    } else {
        // ser's parent prints on stderr why the daemon did not start (or where it listens); that
        // is read through a pipe and passed on, and the pipe is closed when serctl exits: a
        // daemon that keeps its stderr (no syslog here) must not keep our caller waiting.
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
    }
    if let Ok(opts) = std::env::var("STARTOPTIONS") {
        cmd.args(opts.split_whitespace());
    }
    // ser daemonises (fork=yes): the command returns once the daemon runs, or failed.
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", ser_binary().display()))?;
    let lines = child.stderr.take().map(|err| {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", ser_binary().display()))?;
    if let Some(rx) = lines {
        // What the parent wrote before it exited is in the pipe already; a daemon logging to
        // the same pipe is cut off after a moment.
        let end = std::time::Instant::now() + Duration::from_millis(500);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            eprintln!("{line}");
            if std::time::Instant::now() > end {
                break;
            }
        }
    }
    if !status.success() {
        println!();
        return Err(Fail::Msg(format!(
            "ser did not start ({status}; its reason is printed above)"
        )));
    }
    let pid = std::fs::read_to_string(&pid_file).unwrap_or_default();
    println!("started pid({})", pid.trim());
    Ok(())
}

fn stop() -> Out {
    print!("Stopping SER : ");
    let pid_file = pid_file();
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        println!();
        return Err(Fail::Msg(format!(
            "No PID file found! ({})",
            pid_file.display()
        )));
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        println!();
        return Err(Fail::Msg(format!("{} holds no pid", pid_file.display())));
    };
    let ok = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!();
        return Err(Fail::Msg(format!("cannot signal ser (pid {pid})")));
    }
    println!("stopped");
    Ok(())
}

/// Users with contacts in memory (`ul_dump`'s `aor` lines), sorted, once each.
fn online() -> Out {
    let r = fifo_call("ul_dump", &[])?;
    if !r.ok() {
        return Err(Fail::Msg(r.status));
    }
    let mut users: Vec<&str> = r
        .body
        .lines()
        // SER's usrloc printed "aor   : 'jiri'" (sc took the third word); take what follows
        // the colon so spacing does not matter.
        .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("aor"))
        .filter_map(|l| l.split_once(':').map(|(_, v)| v.trim().trim_matches('\'')))
        .filter(|u| !u.is_empty())
        .collect();
    users.sort_unstable();
    users.dedup();
    for u in users {
        println!("{u}");
    }
    Ok(())
}

/// Admin Guide Example 5-2: version, uptime, then transaction, stateless and usrloc statistics,
/// refreshed every `WATCH_PERIOD` seconds (default 2) until interrupted, or `MONITOR_CYCLES` times.
fn monitor() -> Out {
    use std::io::{IsTerminal, Write};
    let period = std::env::var("WATCH_PERIOD")
        .ok()
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(2);
    let cycles = std::env::var("MONITOR_CYCLES")
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .unwrap_or(0);
    let tty = std::io::stdout().is_terminal();
    // Fails here, once, when there is no server to monitor.
    fifo_call("version", &[])?;
    if tty {
        print!("\x1b[2J");
    }
    let mut n = 0u64;
    loop {
        n += 1;
        let mut s = String::new();
        if tty {
            s.push_str("\x1b[H");
        }
        s.push_str(&format!(
            "[cycle #: {n}; if constant make sure server lives and fifo is on]\n"
        ));
        let part = |cmd: &str| match fifo_call(cmd, &[]) {
            Ok(r) => r.printable(),
            Err(Fail::Msg(m)) => format!("{m}\n"),
            Err(Fail::Usage(u)) => format!("{u}\n"),
            Err(Fail::Quiet) => String::new(),
        };
        s.push_str(&part("version"));
        s.push_str(&part("uptime"));
        s.push('\n');
        s.push_str("Transaction Statistics\n");
        s.push_str(&part("t_stats"));
        s.push('\n');
        s.push_str("Stateless Server Statistics\n");
        s.push_str(&part("sl_stats"));
        s.push('\n');
        s.push_str("UsrLoc Stats\n");
        s.push_str(&part("ul_stats"));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
        drop(out);
        if cycles != 0 && n >= cycles {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(period));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_uri_like_sc() {
        assert!(uri_ok("sip:666@gateway.foo.bar"));
        assert!(uri_ok("sip:john.doe@foo.bar"));
        assert!(uri_ok("sip:foo.bar"));
        assert!(!uri_ok("john@foo.bar"));
        assert!(!uri_ok("sip:@foo.bar"));
        assert!(!uri_ok("sip:x@localhost"));
    }
}
