//! Storage backends against real databases: SQLite (always), MariaDB and PostgreSQL (the machine's
//! services; URLs from `SER_TEST_MYSQL_URL` / `SER_TEST_PG_URL`, skipped with a visible message
//! when unreachable). Each test works in its own MariaDB database / PostgreSQL schema / SQLite
//! file, so tests run in parallel without colliding.
#![allow(clippy::unwrap_used)]

#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use controlplane::db::{schema, Databases, Db, DbError, DbService, Rows};
use controlplane::jobs::{self, DbJobs};
use dataplane::offload::{DbSink, DbWrite, Job, JobResult};
use dataplane::proxy::server::JobRequest;

static N: AtomicUsize = AtomicUsize::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn service() -> DbService {
    DbService::start(Databases::new("sqlite:///nonexistent/never-used.db")).unwrap()
}

fn sqlite_url() -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(unique("ser-dbtest"));
    let path = dir.join("ser.db");
    (format!("sqlite://{}", path.display()), path)
}

fn pg_base() -> String {
    std::env::var("SER_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn mysql_base() -> String {
    std::env::var("SER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A PostgreSQL URL whose search_path is a fresh schema (dropped by the guard), or None.
struct PgScratch {
    base: String,
    schema: String,
}

impl PgScratch {
    async fn new() -> Option<PgScratch> {
        let base = pg_base();
        let schema = unique("ser_t");
        let conn = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_postgres::connect(&base, tokio_postgres::NoTls),
        )
        .await;
        let (client, conn) = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                skip::report(
                    None,
                    &format!("PostgreSQL at {base} is unreachable ({e}); set SER_TEST_PG_URL"),
                );
                return None;
            }
            Err(_) => {
                skip::report(
                    None,
                    &format!("PostgreSQL at {base} did not answer; set SER_TEST_PG_URL"),
                );
                return None;
            }
        };
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
        Some(PgScratch { base, schema })
    }

    fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}options=-c%20search_path%3D{}",
            self.base, self.schema
        )
    }

    async fn drop_schema(self) {
        if let Ok((client, conn)) = tokio_postgres::connect(&self.base, tokio_postgres::NoTls).await
        {
            tokio::spawn(conn);
            let _ = client
                .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
                .await;
        }
    }
}

/// A fresh MariaDB database (dropped by `drop_db`), or None.
struct MyScratch {
    base: String,
    db: String,
}

impl MyScratch {
    async fn new() -> Option<MyScratch> {
        let base = mysql_base();
        let db = unique("ser_t");
        let pool = mysql_async::Pool::new(base.as_str());
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            use mysql_async::prelude::Queryable;
            let mut c = pool.get_conn().await?;
            c.query_drop(format!("CREATE DATABASE {db}")).await
        })
        .await;
        let _ = pool.disconnect().await;
        match r {
            Ok(Ok(())) => Some(MyScratch { base, db }),
            Ok(Err(e)) => {
                skip::report(
                    None,
                    &format!("MariaDB at {base} is unreachable ({e}); set SER_TEST_MYSQL_URL"),
                );
                None
            }
            Err(_) => {
                skip::report(
                    None,
                    &format!("MariaDB at {base} did not answer; set SER_TEST_MYSQL_URL"),
                );
                None
            }
        }
    }

    fn url(&self) -> String {
        let cut = self.base.rfind('/').unwrap();
        format!("{}/{}", &self.base[..cut], self.db)
    }

    async fn drop_db(self) {
        use mysql_async::prelude::Queryable;
        let pool = mysql_async::Pool::new(self.base.as_str());
        if let Ok(mut c) = pool.get_conn().await {
            let _ = c.query_drop(format!("DROP DATABASE {}", self.db)).await;
            drop(c);
        }
        let _ = pool.disconnect().await;
    }
}

fn s(v: &str) -> String {
    v.to_string()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (s(k), s(v))).collect()
}

fn row(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(k, v)| (s(k), v.map(str::to_string)))
        .collect()
}

fn cols(c: &[&str]) -> Vec<String> {
    c.iter().map(|c| s(c)).collect()
}

/// The same behaviour on every backend: schema, writes, selects, NULLs, quoting, refusals, and the
/// version check.
async fn exercise(url: &str) {
    let db = Db::open(url).unwrap();
    db.ensure_schema().await.unwrap();
    // Idempotent: a second start finds everything in place.
    db.ensure_schema().await.unwrap();
    let tables = db.tables().await.unwrap();
    for t in schema::TABLES {
        assert!(tables.contains(t.name), "{url}: table {} missing", t.name);
    }
    assert!(tables.contains("version"));
    let v = db
        .select(
            "version",
            &kv(&[("table_name", "location")]),
            &cols(&["table_version"]),
        )
        .await
        .unwrap();
    assert_eq!(v, vec![vec![Some(s("6"))]], "{url}");

    // subscriber: insert, select by key, upsert changes, upsert inserts.
    db.insert(
        "subscriber",
        &row(&[
            ("username", Some("alice")),
            ("domain", Some("example.com")),
            ("password", Some("secret")),
            ("ha1", Some("0123456789abcdef0123456789abcdef")),
            ("email_address", Some("alice@example.com")),
        ]),
    )
    .await
    .unwrap();
    let key = kv(&[("username", "alice"), ("domain", "example.com")]);
    let got = db
        .select(
            "subscriber",
            &key,
            &cols(&["password", "ha1", "rpid", "flag"]),
        )
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![vec![
            Some(s("secret")),
            Some(s("0123456789abcdef0123456789abcdef")),
            None,
            Some(s("o"))
        ]],
        "{url}"
    );
    db.upsert("subscriber", &key, &row(&[("password", Some("new"))]))
        .await
        .unwrap();
    // An upsert that changes nothing still finds its row (no duplicate insert).
    db.upsert("subscriber", &key, &row(&[("password", Some("new"))]))
        .await
        .unwrap();
    let bob = kv(&[("username", "bob"), ("domain", "example.com")]);
    db.upsert("subscriber", &bob, &row(&[("password", Some("b"))]))
        .await
        .unwrap();
    let all = db
        .select("subscriber", &[], &cols(&["username", "password"]))
        .await
        .unwrap();
    let mut all: Vec<_> = all.into_iter().collect();
    all.sort();
    assert_eq!(
        all,
        vec![
            vec![Some(s("alice")), Some(s("new"))],
            vec![Some(s("bob")), Some(s("b"))]
        ],
        "{url}"
    );

    // location: typed columns (datetime, float, int) written and read as text.
    let contact = "sip:alice@192.0.2.1:5060;transport=udp";
    let lkey = kv(&[
        ("username", "alice"),
        ("domain", "example.com"),
        ("contact", contact),
    ]);
    db.upsert(
        "location",
        &lkey,
        &row(&[
            ("expires", Some("2030-01-02 03:04:05")),
            ("q", Some("0.5")),
            ("callid", Some("c1@host")),
            ("cseq", Some("7")),
            ("received", None),
            (
                "user_agent",
                Some("o'brien \"phone\"; DROP TABLE location;--"),
            ),
        ]),
    )
    .await
    .unwrap();
    db.upsert(
        "location",
        &lkey,
        &row(&[
            ("cseq", Some("8")),
            ("expires", Some("2030-01-02 03:05:05")),
        ]),
    )
    .await
    .unwrap();
    let got = db
        .select(
            "location",
            &kv(&[("username", "alice")]),
            &cols(&[
                "contact",
                "expires",
                "q",
                "cseq",
                "received",
                "user_agent",
                "callid",
            ]),
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "{url}: {got:?}");
    let r = &got[0];
    assert_eq!(r[0].as_deref(), Some(contact));
    assert_eq!(r[1].as_deref(), Some("2030-01-02 03:05:05"), "{url}");
    let q: f64 = r[2].as_deref().unwrap().parse().unwrap();
    assert!((q - 0.5).abs() < 1e-6, "{url}: q {q}");
    assert_eq!(r[3].as_deref(), Some("8"));
    assert_eq!(r[4], None);
    assert_eq!(
        r[5].as_deref(),
        Some("o'brien \"phone\"; DROP TABLE location;--")
    );
    assert_eq!(r[6].as_deref(), Some("c1@host"));
    assert_eq!(
        db.delete("location", &lkey).await.unwrap(),
        1,
        "{url}: one binding deleted"
    );
    assert!(db
        .select(
            "location",
            &kv(&[("username", "alice")]),
            &cols(&["contact"])
        )
        .await
        .unwrap()
        .is_empty());

    // Names are checked before any SQL is written; whole-table deletes are refused.
    assert!(matches!(
        db.select("location", &[], &cols(&["contact; DROP TABLE x"]))
            .await,
        Err(DbError::Rejected(_))
    ));
    assert!(matches!(
        db.select("no such", &[], &cols(&["a"])).await,
        Err(DbError::Rejected(_))
    ));
    assert!(matches!(
        db.delete("location", &[]).await,
        Err(DbError::Rejected(_))
    ));
    // A statement the database refuses (duplicate primary key) is not "unavailable".
    let dup = row(&[("username", Some("alice")), ("domain", Some("example.com"))]);
    let e = db.insert("subscriber", &dup).await.unwrap_err();
    assert!(!e.is_transient(), "{url}: {e}");

    pages(&db, url).await;

    // Version mismatch: a clear message naming the table and both versions.
    db.upsert(
        "version",
        &kv(&[("table_name", "location")]),
        &row(&[("table_version", Some("3"))]),
    )
    .await
    .unwrap();
    let again = Db::open(url).unwrap();
    match again.ensure_schema().await {
        Err(DbError::Version(m)) => {
            assert!(
                m.contains("table location is version 3 but this ser needs version 6"),
                "{m}"
            );
        }
        other => panic!("{url}: expected a version error, got {other:?}"),
    }
}

/// The web UI's list pages (Db::select_page): key filter, case-insensitive search with LIKE's
/// own characters taken literally, order, LIMIT/OFFSET, on every backend.
async fn pages(db: &Db, url: &str) {
    use controlplane::db::sql::PageQuery;
    for u in ["Zed", "bob", "a_b", "axb", "a%b", "carol"] {
        let r = row(&[
            ("username", Some(u)),
            ("domain", Some("pages.example")),
            ("email_address", Some(&format!("{u}@mail.example"))),
        ]);
        db.insert("subscriber", &r).await.unwrap();
    }
    let users = |rows: Rows| -> Vec<String> {
        rows.into_iter()
            .map(|r| r[0].clone().unwrap_or_default())
            .collect()
    };
    let q = |search: &'static [&'static str], limit, offset| PageQuery {
        columns: &["username"],
        keys: &["domain"],
        search,
        order_by: &["username"],
        descending: false,
        limit,
        offset,
    };
    let dom = [s("pages.example")];
    let all = db
        .select_page("subscriber", &q(&[], 3, 0), &dom, "")
        .await
        .unwrap();
    assert_eq!(users(all).len(), 3, "{url}");
    let next = db
        .select_page("subscriber", &q(&[], 10, 3), &dom, "")
        .await
        .unwrap();
    assert_eq!(users(next).len(), 3, "{url}");
    let found = db
        .select_page(
            "subscriber",
            &q(&["username", "email_address"], 10, 0),
            &dom,
            "A_B",
        )
        .await
        .unwrap();
    assert_eq!(users(found), vec![s("a_b")], "{url}");
    let found = db
        .select_page("subscriber", &q(&["username"], 10, 0), &dom, "%")
        .await
        .unwrap();
    assert_eq!(users(found), vec![s("a%b")], "{url}");
    let found = db
        .select_page("subscriber", &q(&["username"], 10, 0), &dom, "zED")
        .await
        .unwrap();
    assert_eq!(users(found), vec![s("Zed")], "{url}");
    for (id, t) in [("c1", "2026-01-01 10:00:00"), ("c2", "2026-01-02 10:00:00")] {
        let r = row(&[("sip_callid", Some(id)), ("time", Some(t))]);
        db.insert("acc", &r).await.unwrap();
    }
    let newest = PageQuery {
        columns: &["sip_callid"],
        order_by: &["time"],
        descending: true,
        limit: 1,
        ..PageQuery::default()
    };
    let r = db.select_page("acc", &newest, &[], "").await.unwrap();
    assert_eq!(users(r), vec![s("c2")], "{url}");
    let bad = PageQuery {
        columns: &["username"],
        order_by: &["username; DROP TABLE x"],
        limit: 1,
        ..PageQuery::default()
    };
    assert!(matches!(
        db.select_page("subscriber", &bad, &[], "").await,
        Err(DbError::Rejected(_))
    ));
}

#[test]
fn dbtext_backend() {
    let svc = service();
    let dir = std::env::temp_dir().join(unique("ser-dbtext"));
    svc.block_on(exercise(&format!("dbtext://{}", dir.display())))
        .unwrap();
    // SER's flat-text files, one per table.
    let sub = std::fs::read_to_string(dir.join("subscriber")).unwrap();
    assert!(
        sub.starts_with("phplib_id(str) username(str) domain(str) password(str)"),
        "{sub}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sqlite_backend() {
    let svc = service();
    let (url, path) = sqlite_url();
    svc.block_on(exercise(&url)).unwrap();
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn postgres_backend() {
    let svc = service();
    svc.block_on(async {
        let Some(pg) = PgScratch::new().await else {
            return;
        };
        exercise(&pg.url()).await;
        pg.drop_schema().await;
    })
    .unwrap();
}

#[test]
fn mariadb_backend() {
    let svc = service();
    svc.block_on(async {
        let Some(my) = MyScratch::new().await else {
            return;
        };
        exercise(&my.url()).await;
        // SER's own URL form reaches the same database.
        let ser_url = my.url().replacen("mysql://", "sql://", 1);
        let db = Db::open(&ser_url).unwrap();
        assert!(db.tables().await.unwrap().contains("subscriber"));
        my.drop_db().await;
    })
    .unwrap();
}

/// A database made by SER 0.8's script names its version column `version`; ser reads it.
#[test]
fn sqlite_reads_ser08_version_column() {
    let svc = service();
    let (url, path) = sqlite_url();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE version (table_name varchar(64) NOT NULL, version smallint NOT NULL);
             INSERT INTO version VALUES ('location', '3');",
        )
        .unwrap();
    }
    let err = svc
        .block_on(async { Db::open(&url).unwrap().ensure_schema().await })
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("table location is version 3 but this ser needs version 6"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The default database (URL "") is a SQLite file created with the schema on first use.
#[test]
fn sqlite_default_file_created_with_schema() {
    let (url, path) = sqlite_url();
    assert!(!path.exists());
    let svc = DbService::start(Databases::new(url)).unwrap();
    let dbs = svc.databases().clone();
    let rows = svc
        .block_on(async move {
            dbs.select("", "version", &[], &cols(&["table_name", "table_version"]))
                .await
        })
        .unwrap()
        .unwrap();
    assert!(path.exists(), "{} not created", path.display());
    // WAL: serctl can read while ser writes.
    let mode: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(rows.len(), schema::TABLES.len());
    assert!(rows.contains(&vec![Some(s("subscriber")), Some(s("5"))]));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A directory that cannot be created gives an error naming the path and SER_DB_URL.
#[test]
fn sqlite_unwritable_directory_is_reported() {
    let blocker = std::env::temp_dir().join(unique("ser-dbblock"));
    std::fs::write(&blocker, b"a file, not a directory").unwrap();
    let url = format!("sqlite://{}/ser.db", blocker.display());
    let svc = DbService::start(Databases::new(url)).unwrap();
    let dbs = svc.databases().clone();
    let err = svc
        .block_on(async move { dbs.get("").await.map(drop) })
        .unwrap()
        .unwrap_err();
    let m = err.to_string();
    assert!(err.is_transient(), "{m}");
    assert!(
        m.contains(&blocker.display().to_string()) && m.contains("SER_DB_URL"),
        "{m}"
    );
    let _ = std::fs::remove_file(&blocker);
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// DB down → writes queue in order → DB back → flushed in order; drain leaves nothing behind.
#[test]
fn queued_writes_survive_an_outage_in_order() {
    // "Down": the database directory's place is taken by a file; "back": the file goes away.
    let base = std::env::temp_dir().join(unique("ser-dbq"));
    std::fs::write(&base, b"blocks the directory").unwrap();
    let path = base.join("ser.db");
    let svc = DbService::start(Databases::new(format!("sqlite://{}", path.display()))).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(100);
    let sink = DbSink::new(tx);
    let writer =
        controlplane::db::writer::start(rx, svc.databases().clone(), svc.handle().unwrap())
            .unwrap();
    let key = kv(&[
        ("username", "q"),
        ("domain", "d"),
        ("contact", "sip:q@192.0.2.9"),
    ]);
    for i in 1..=20 {
        assert!(sink.post(DbWrite::Insert {
            url: String::new(),
            table: s("acc"),
            row: row(&[
                ("sip_callid", Some(&format!("call-{i:02}"))),
                ("sip_method", Some("INVITE"))
            ]),
        }));
        assert!(sink.post(DbWrite::Upsert {
            url: String::new(),
            table: s("location"),
            keys: key.clone(),
            row: row(&[("cseq", Some(&i.to_string()))]),
        }));
    }
    assert!(wait_until(Duration::from_secs(5), || writer.is_stalled()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(writer.depth(), 40, "nothing written while the DB is down");
    assert_eq!(writer.written(), 0);

    std::fs::remove_file(&base).unwrap();
    assert!(
        wait_until(Duration::from_secs(15), || writer.depth() == 0),
        "queue not flushed: {} left",
        writer.depth()
    );
    assert_eq!(writer.written(), 40);
    assert!(!writer.is_stalled());
    assert_eq!(writer.drain(Duration::from_secs(5)), 0);

    let dbs = svc.databases().clone();
    let (acc, loc) = svc
        .block_on(async move {
            let acc = dbs
                .select("", "acc", &[], &cols(&["sip_callid"]))
                .await
                .unwrap();
            let loc = dbs
                .select("", "location", &key, &cols(&["cseq"]))
                .await
                .unwrap();
            (acc, loc)
        })
        .unwrap();
    let mut ids: Vec<String> = acc.into_iter().map(|r| r[0].clone().unwrap()).collect();
    ids.sort();
    assert_eq!(ids.len(), 20);
    assert_eq!(ids[0], "call-01");
    // The last upsert posted is the last applied.
    assert_eq!(loc, vec![vec![Some(s("20"))]]);
    let _ = std::fs::remove_dir_all(&base);
}

/// A refused write is dropped (logged), and the ones behind it still go through.
#[test]
fn refused_write_does_not_block_the_queue() {
    let (url, path) = sqlite_url();
    let svc = DbService::start(Databases::new(url)).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(10);
    let sink = DbSink::new(tx);
    let writer =
        controlplane::db::writer::start(rx, svc.databases().clone(), svc.handle().unwrap())
            .unwrap();
    assert!(sink.post(DbWrite::Insert {
        url: String::new(),
        table: s("acc"),
        row: row(&[("no_such_column", Some("x"))]),
    }));
    assert!(sink.post(DbWrite::Insert {
        url: String::new(),
        table: s("acc"),
        row: row(&[("sip_callid", Some("after"))]),
    }));
    assert_eq!(writer.drain(Duration::from_secs(10)), 0);
    let dbs = svc.databases().clone();
    let rows = svc
        .block_on(async move { dbs.select("", "acc", &[], &cols(&["sip_callid"])).await })
        .unwrap()
        .unwrap();
    assert_eq!(rows, vec![vec![Some(s("after"))]]);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// Shutdown while the DB never comes back is bounded, and says how much was lost.
#[test]
fn drain_is_bounded_when_the_database_stays_down() {
    // Port 1 on loopback: connection refused at once.
    let svc = DbService::start(Databases::new("postgres://postgres@127.0.0.1:1/test")).unwrap();
    let (tx, rx) = crossbeam_channel::bounded(10);
    let sink = DbSink::new(tx);
    let writer =
        controlplane::db::writer::start(rx, svc.databases().clone(), svc.handle().unwrap())
            .unwrap();
    for i in 0..3 {
        assert!(sink.post(DbWrite::Delete {
            url: String::new(),
            table: s("location"),
            keys: kv(&[("username", &format!("u{i}"))]),
        }));
    }
    // Start-up reads from a dead DB: empty, not an error that stops the server.
    let dbs = svc.databases().clone();
    let rows = svc
        .block_on(async move { dbs.load_or_empty("", "location", &cols(&["contact"])).await })
        .unwrap();
    assert!(rows.is_empty());
    let started = Instant::now();
    let left = writer.drain(Duration::from_millis(500));
    assert_eq!(left, 3);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    // The bound: a full queue refuses posts instead of blocking a shard.
    for _ in 0..20 {
        sink.post(DbWrite::Delete {
            url: String::new(),
            table: s("location"),
            keys: kv(&[("username", "x")]),
        });
    }
    assert!(sink.refused() > 0);
}

/// The job runner answers `Job::Db` selects with rows and `Job::DbWrite` with `Rows([])`.
#[test]
fn jobs_answer_database_selects_and_writes() {
    let (url, path) = sqlite_url();
    let svc = DbService::start(Databases::new(url.clone())).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let (dtx, drx) = crossbeam_channel::unbounded();
    let handles = jobs::start(
        1,
        rx,
        move |shard, id, r| {
            let _ = dtx.send((shard, id, r));
        },
        None,
        Some(DbJobs {
            rt: svc.handle().unwrap(),
            dbs: svc.databases().clone(),
        }),
    );
    let ask = |id: u64, job: Job| {
        tx.send(JobRequest { shard: 0, id, job }).unwrap();
        let (_, got, r) = drx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, id);
        r
    };
    let w = ask(
        1,
        Job::DbWrite(DbWrite::Insert {
            url: String::new(),
            table: s("subscriber"),
            row: row(&[
                ("username", Some("jiri")),
                ("domain", Some("iptel.org")),
                ("ha1", Some("abc")),
            ]),
        }),
    );
    assert_eq!(w, JobResult::Rows(vec![]));
    // The same database named by its URL (one pool per distinct URL).
    let r = ask(
        2,
        Job::Db {
            url: url.clone(),
            table: s("subscriber"),
            keys: kv(&[("username", "jiri"), ("domain", "iptel.org")]),
            columns: cols(&["ha1", "password"]),
        },
    );
    assert_eq!(r, JobResult::Rows(vec![vec![Some(s("abc")), Some(s(""))]]));
    let none = ask(
        3,
        Job::Db {
            url: String::new(),
            table: s("subscriber"),
            keys: kv(&[("username", "nobody")]),
            columns: cols(&["ha1"]),
        },
    );
    assert_eq!(none, JobResult::Rows(vec![]));
    assert_eq!(none.ret(), -1);
    match ask(
        4,
        Job::Db {
            url: "postgres://postgres@127.0.0.1:1/test".into(),
            table: s("subscriber"),
            keys: vec![],
            columns: cols(&["ha1"]),
        },
    ) {
        JobResult::Failed(m) => assert!(m.contains("unavailable"), "{m}"),
        other => panic!("{other:?}"),
    }
    drop(tx);
    for h in handles {
        h.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
