//! What the web UI tests share: `ser` started with `--http` and `--web-admins` (an admins file
//! `serctl webpasswd` wrote), an administrator's login over plain HTTP (session cookie and CSRF
//! token) and in the browser, form posts, the test's directories, and throw-away MariaDB
//! databases and PostgreSQL schemas for the backend runs.
//!
//! Include it after `net` and `webdriver` (it uses both):
//! `#[path = "support/web.rs"] mod web;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::net::{free_port, Ser};
use crate::webdriver::{form, http, input_value, Browser, Http};

pub const ADMIN: &str = "admin";
pub const ADMIN_PW: &str = "correct horse battery";
pub const EVIL: &str = "<script>alert(1)</script>";

/// A directory of the test's own (the admins file, the browser profile, screenshots of tests
/// that keep them there), empty.
pub fn test_dir(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ser-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Where screenshots are kept after the test (the temporary directory goes):
/// `target/tmp/<suite>/`.
pub fn shots_dir(suite: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(suite);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The admins file, as an operator makes it: `serctl webpasswd NAME PASSWORD`.
pub fn admins_file(dir: &Path) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_serctl"))
        .args(["webpasswd", ADMIN, ADMIN_PW])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8(o.stdout).unwrap();
    assert!(line.starts_with("admin:$argon2id$"), "{line}");
    let p = dir.join("admins");
    std::fs::write(&p, format!("# web UI administrators\n{line}")).unwrap();
    p
}

/// A running `ser` with the web UI.
pub struct Server {
    pub ser: Ser,
    pub sip: SocketAddr,
    pub http: u16,
}

impl Server {
    /// `ser` with `cfg` on 127.0.0.1: SIP on `port` (None: a free one), the web UI on a free
    /// HTTP port, `env` added (SER_DB_URL there names the database; else a SQLite file of its
    /// own), `extra` arguments after the web ones.
    pub fn start(
        dir: &Path,
        cfg: &str,
        port: Option<u16>,
        env: &[(&str, &str)],
        extra: &[String],
    ) -> Server {
        let port = port.unwrap_or_else(|| free_port("127.0.0.1"));
        let hp = free_port("127.0.0.1");
        let admins = admins_file(dir);
        let mut args = vec![
            "-l".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            format!("--http=127.0.0.1:{hp}"),
            format!("--web-admins={}", admins.display()),
        ];
        args.extend(extra.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ser = Ser::start_with_env(cfg, &args, env);
        Server {
            ser,
            sip: format!("127.0.0.1:{port}").parse().unwrap(),
            http: hp,
        }
    }

    /// The web UI's address, for the browser.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
}

pub fn post(hp: u16, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Http {
    http(
        hp,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", cookie),
        ],
        &form(fields),
    )
}

pub fn get(hp: u16, path: &str, cookie: &str) -> Http {
    http(hp, "GET", path, &[("Cookie", cookie)], "")
}

/// The CSRF token of a page (every page a session sees has the logout form).
pub fn csrf_of(page: &Http) -> String {
    input_value(&page.body, "csrf").unwrap_or_else(|| panic!("no CSRF token in {page:?}"))
}

/// A logged-in administrator over plain HTTP, as a browser does it (the login form's token
/// double-submitted in its cookie): (session cookie header, CSRF token).
pub fn admin_login(hp: u16) -> (String, String) {
    let page = http(hp, "GET", "/ui/login", &[], "");
    assert_eq!(page.status, 200);
    let token = input_value(&page.body, "csrf").unwrap();
    let r = post(
        hp,
        "/ui/login",
        &format!("ser_login={token}"),
        &[("csrf", &token), ("user", ADMIN), ("password", ADMIN_PW)],
    );
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/ui/subscribers"));
    let cookie = r
        .set_cookie("ser_session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // The console needs no database: any server has it.
    let page = get(hp, "/ui/rpc", &cookie);
    assert_eq!(page.status, 200, "{page:?}");
    (cookie, csrf_of(&page))
}

/// The administrator logs in in the browser (which is sent to the login page first).
pub fn browser_login(b: &Browser, base: &str) {
    b.goto(&format!("{base}/ui/login"));
    b.type_into("#user", ADMIN);
    b.type_into("#password", ADMIN_PW);
    b.click_on("#login");
    assert!(b.at("/ui/subscribers"), "{}", b.url());
}

pub fn have_browser() -> bool {
    crate::net::have("chromium") && crate::net::have("chromedriver")
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The MariaDB server of the backend tests (`SER_TEST_MYSQL_URL`, else the local one).
pub fn mariadb_base() -> String {
    std::env::var("SER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// Runs one statement on the MariaDB server at `base` (≤ 3 s): the error, or why it did not
/// answer.
pub fn mariadb(base: &str, q: String) -> Result<(), String> {
    use mysql_async::prelude::Queryable;
    block_on(async {
        let pool = mysql_async::Pool::new(base);
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = pool.get_conn().await?;
            c.query_drop(q).await
        })
        .await;
        let _ = pool.disconnect().await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("unreachable ({e})")),
            Err(_) => Err("did not answer".into()),
        }
    })
}

/// A new database `name` on MariaDB, dropped on drop: its URL, or why there is none.
pub struct MariaDb {
    base: String,
    name: String,
    pub url: String,
}

impl MariaDb {
    pub fn create(name: &str) -> Result<MariaDb, String> {
        let base = mariadb_base();
        mariadb(&base, format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("MariaDB at {base}: {e}; set SER_TEST_MYSQL_URL"))?;
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        Ok(MariaDb {
            base,
            name: name.to_string(),
            url,
        })
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = mariadb(&self.base, format!("DROP DATABASE {}", self.name));
    }
}

/// The PostgreSQL server of the backend tests (`SER_TEST_PG_URL`, else the local one).
pub fn postgres_base() -> String {
    std::env::var("SER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs SQL on the PostgreSQL server at `base` (connect ≤ 3 s): whether it went.
pub fn postgres(base: &str, q: String) -> bool {
    block_on(async {
        let c = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(base, tokio_postgres::NoTls),
        )
        .await;
        let Ok(Ok((client, conn))) = c else {
            return false;
        };
        tokio::spawn(conn);
        client.batch_execute(&q).await.is_ok()
    })
}

/// A new schema `name` on PostgreSQL, dropped on drop: the URL whose search_path is it.
pub struct PgSchema {
    base: String,
    name: String,
    pub url: String,
}

impl PgSchema {
    pub fn create(name: &str) -> Result<PgSchema, String> {
        let base = postgres_base();
        if !postgres(&base, format!("CREATE SCHEMA {name}")) {
            return Err(format!(
                "PostgreSQL at {base} is unreachable; set SER_TEST_PG_URL"
            ));
        }
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Ok(PgSchema {
            base,
            name: name.to_string(),
            url,
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        postgres(&self.base, format!("DROP SCHEMA {} CASCADE", self.name));
    }
}
