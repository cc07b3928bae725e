//! Storage: one interface over SQLite (embedded default), MariaDB/MySQL (SER's own schema, so an
//! old SER database works) and PostgreSQL, chosen by the URL.
//!
//! | URL | backend |
//! |---|---|
//! | `sqlite:///abs/path`, `sqlite://rel/path` | SQLite file, created with the schema on first use |
//! | `mysql://user:pw@host[:port]/db`, SER's `sql://…` | MariaDB/MySQL |
//! | `postgres://…`, `postgresql://…` | PostgreSQL |
//! | `dbtext:///abs/dir`, `dbtext://rel/dir`, or a plain directory path (SER's dbtext `db_url`) | [`dbtext`]: SER's flat-text tables, one file per table |
//! | `""` | the server's default: env `SER_DB_URL`, else [`DEFAULT_DB_URL`] |
//!
//! - [`Db`]: one database. `select(table, keys, columns)` → rows of `Option<String>` (NULL =
//!   `None`), the writes of [`DbWrite`] (insert, upsert, delete), [`Db::ensure_schema`] (create
//!   what is missing, then check the `version` table).
//! - [`Databases`]: one [`Db`] per distinct URL; the first use of a URL runs `ensure_schema`, so a
//!   version mismatch is reported once, clearly, naming the table and both versions.
//! - [`DbService`]: the tokio runtime all database work runs on (2 threads), shared by the job
//!   runner (awaited selects and writes) and the [`writer`] (queued writes).
//!
//! Invariants: values are always bound parameters; table and column names reach SQL text only after
//! [`schema::column_ok`]. Every statement is bounded in time ([`OP_TIMEOUT`]), so a slow or dead DB
//! turns into [`DbError::Unavailable`], never into a stuck script or a stuck shard. Errors say
//! whether retrying can help ([`DbError::is_transient`]).

pub mod dbtext;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::offload::{DbWrite, Job, JobResult};
use dataplane::ser_log;
use dataplane::shard::log::{L_DBG, L_ERR, L_NOTICE, L_WARN};

use self::sql::Dialect;

/// Rows of a select, columns in the order asked (`None` = NULL).
pub type Rows = Vec<Vec<Option<String>>>;

/// Longest time one statement (including connecting) may take before the DB counts as unavailable.
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a select job (auth_db credentials, group/domain/uri checks, usrloc db_mode 3)
/// unless `SER_DB_TIMEOUT_MS` says otherwise.
pub const SELECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Environment variable bounding a select job, in milliseconds.
pub const DB_TIMEOUT_ENV: &str = "SER_DB_TIMEOUT_MS";

/// The bound of a select job: `SER_DB_TIMEOUT_MS` (read once; 0 or unparsable: the default).
pub fn select_timeout() -> Duration {
    static T: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::env::var(DB_TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map_or(SELECT_TIMEOUT, Duration::from_millis)
    })
}

/// The server's database when neither the script nor `SER_DB_URL` names one.
pub const DEFAULT_DB_URL: &str = "sqlite:///var/lib/ser/ser.db";

/// Environment variable naming the server's default database.
pub const DB_URL_ENV: &str = "SER_DB_URL";

/// After a failed open, further uses of that URL fail at once for this long (no connect storm).
const RETRY_OPEN: Duration = Duration::from_secs(1);

/// The default database URL: `SER_DB_URL` if set and not empty, else [`DEFAULT_DB_URL`].
pub fn default_url() -> String {
    std::env::var(DB_URL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_DB_URL.to_string())
}

/// Why a database operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// Cannot reach or use the DB now (connection refused, timeout, file not writable…): retrying
    /// later may succeed.
    Unavailable(String),
    /// The DB (or ser, before sending) refused this statement: retrying will not help.
    Rejected(String),
    /// The tables are of another schema version than this ser's.
    Version(String),
}

impl DbError {
    /// Whether retrying the same operation later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unavailable(s) => write!(f, "database unavailable: {s}"),
            DbError::Rejected(s) => write!(f, "database refused: {s}"),
            DbError::Version(s) => write!(f, "database schema version mismatch: {s}"),
        }
    }
}

impl std::error::Error for DbError {}

/// `url` with its password replaced by `***` (for logs and messages).
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let auth = &rest[..auth_end];
    match (auth.rfind('@'), auth.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &auth[..colon],
            &rest[at..]
        ),
        _ => url.to_string(),
    }
}

enum Backend {
    Sqlite(sqlite::Sqlite),
    Dbtext(dbtext::Dbtext),
    #[cfg(feature = "mysql")]
    Mysql(mysql::Mysql),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
}

/// One database.
pub struct Db {
    url: String,
    /// The SQL of the backend (dbtext, which speaks none, never reaches the SQL paths).
    dialect: Dialect,
    backend: Backend,
}

/// The URL of a write (empty = default).
pub fn write_url(w: &DbWrite) -> &str {
    match w {
        DbWrite::Insert { url, .. } | DbWrite::Upsert { url, .. } | DbWrite::Delete { url, .. } => {
            url
        }
    }
}

/// The table of a write.
pub fn write_table(w: &DbWrite) -> &str {
    match w {
        DbWrite::Insert { table, .. }
        | DbWrite::Upsert { table, .. }
        | DbWrite::Delete { table, .. } => table,
    }
}

impl Db {
    /// A handle for `url` (not empty). Nothing is connected yet: the first statement connects
    /// (SQLite: creates the file), and reconnects happen by themselves.
    pub fn open(url: &str) -> Result<Db, DbError> {
        let (dialect, backend) = if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError::Rejected(format!(
                    "{url}: no file name (use sqlite:///absolute/path)"
                )));
            }
            (
                Dialect::Sqlite,
                Backend::Sqlite(sqlite::Sqlite::new(PathBuf::from(path))),
            )
        } else if let Some(dir) = dbtext_dir(url) {
            // The dialect is never used: every operation of dbtext is dispatched before SQL.
            (
                Dialect::Sqlite,
                Backend::Dbtext(dbtext::Dbtext::new(PathBuf::from(dir))),
            )
        } else if url.starts_with("mysql://") || url.starts_with("sql://") {
            #[cfg(feature = "mysql")]
            {
                (Dialect::Mysql, Backend::Mysql(mysql::Mysql::new(url)?))
            }
            #[cfg(not(feature = "mysql"))]
            return Err(DbError::Rejected(format!(
                "{}: this ser was built without MySQL/MariaDB support (cargo feature \"mysql\")",
                redact(url)
            )));
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                (
                    Dialect::Postgres,
                    Backend::Postgres(postgres::Postgres::new(url)?),
                )
            }
            #[cfg(not(feature = "postgres"))]
            return Err(DbError::Rejected(format!(
                "{}: this ser was built without PostgreSQL support (cargo feature \"postgres\")",
                redact(url)
            )));
        } else {
            return Err(DbError::Rejected(format!(
                "{}: unknown database URL (use sqlite:///path, dbtext:///dir, mysql://, sql:// or postgres://)",
                redact(url)
            )));
        };
        Ok(Db {
            url: redact(url),
            dialect,
            backend,
        })
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The SQL dialect of the backend (`None`: dbtext, no SQL).
    pub fn dialect(&self) -> Option<Dialect> {
        match self.backend {
            Backend::Dbtext(_) => None,
            _ => Some(self.dialect),
        }
    }

    async fn query(&self, sql: String, params: Vec<Option<String>>) -> Result<Rows, DbError> {
        match &self.backend {
            Backend::Sqlite(b) => b.query(sql, params).await,
            Backend::Dbtext(_) => Err(DbError::Rejected(format!("dbtext runs no SQL ({sql})"))),
            #[cfg(feature = "mysql")]
            Backend::Mysql(b) => b.query(sql, params).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.query(sql, params).await,
        }
    }

    async fn execute(&self, sql: String, params: Vec<Option<String>>) -> Result<u64, DbError> {
        match &self.backend {
            Backend::Sqlite(b) => b.execute(sql, params).await,
            Backend::Dbtext(_) => Err(DbError::Rejected(format!("dbtext runs no SQL ({sql})"))),
            #[cfg(feature = "mysql")]
            Backend::Mysql(b) => b.execute(sql, params).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(b) => b.execute(sql, params).await,
        }
    }

    /// `columns` of the rows of `table` where every key column equals its value (no keys: all
    /// rows), in the order asked.
    pub async fn select(
        &self,
        table: &str,
        keys: &[(String, String)],
        columns: &[String],
    ) -> Result<Rows, DbError> {
        if columns.is_empty() {
            return Err(DbError::Rejected(format!(
                "select from {table}: no columns"
            )));
        }
        schema::column_ok(
            table,
            keys.iter()
                .map(|(k, _)| k.as_str())
                .chain(columns.iter().map(String::as_str)),
        )
        .map_err(DbError::Rejected)?;
        if let Backend::Dbtext(b) = &self.backend {
            return b.select(table, keys, columns).await;
        }
        let k: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let c: Vec<&str> = columns.iter().map(String::as_str).collect();
        let sql = self.dialect.select(table, &k, &c);
        self.query(sql, keys.iter().map(|(_, v)| Some(v.clone())).collect())
            .await
    }

    /// One page of `table` (see [`sql::PageQuery`]): `key_values` for its keys, `search` the text
    /// any search column must contain.
    pub async fn select_page(
        &self,
        table: &str,
        q: &sql::PageQuery<'_>,
        key_values: &[String],
        search: &str,
    ) -> Result<Rows, DbError> {
        if q.columns.is_empty() || q.keys.len() != key_values.len() {
            return Err(DbError::Rejected(format!(
                "select from {table}: no columns, or keys without values"
            )));
        }
        schema::column_ok(
            table,
            q.columns
                .iter()
                .chain(q.keys)
                .chain(q.search)
                .chain(q.order_by)
                .copied(),
        )
        .map_err(DbError::Rejected)?;
        if let Backend::Dbtext(b) = &self.backend {
            return dbtext_page(b, table, q, key_values, search).await;
        }
        let pattern = sql::like_pattern(search);
        let params = key_values
            .iter()
            .map(|v| Some(v.clone()))
            .chain(q.search.iter().map(|_| Some(pattern.clone())))
            .collect();
        self.query(self.dialect.select_page(table, q), params).await
    }

    /// Inserts one row.
    pub async fn insert(
        &self,
        table: &str,
        row: &[(String, Option<String>)],
    ) -> Result<(), DbError> {
        if row.is_empty() {
            return Err(DbError::Rejected(format!(
                "insert into {table}: no columns"
            )));
        }
        schema::column_ok(table, row.iter().map(|(c, _)| c.as_str())).map_err(DbError::Rejected)?;
        if let Backend::Dbtext(b) = &self.backend {
            return b.insert(table, row).await;
        }
        let c: Vec<&str> = row.iter().map(|(c, _)| c.as_str()).collect();
        let sql = self.dialect.insert(table, &c);
        self.execute(sql, row.iter().map(|(_, v)| v.clone()).collect())
            .await
            .map(drop)
    }

    /// Updates the rows matching `keys` with `row`; inserts `keys` + `row` when none matches.
    pub async fn upsert(
        &self,
        table: &str,
        keys: &[(String, String)],
        row: &[(String, Option<String>)],
    ) -> Result<(), DbError> {
        if keys.is_empty() {
            return Err(DbError::Rejected(format!("upsert into {table}: no keys")));
        }
        schema::column_ok(
            table,
            keys.iter()
                .map(|(k, _)| k.as_str())
                .chain(row.iter().map(|(c, _)| c.as_str())),
        )
        .map_err(DbError::Rejected)?;
        if let Backend::Dbtext(b) = &self.backend {
            return b.upsert(table, keys, row).await;
        }
        let k: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let found = if row.is_empty() {
            let sql = self.dialect.select(table, &k, &k[..1]);
            !self
                .query(sql, keys.iter().map(|(_, v)| Some(v.clone())).collect())
                .await?
                .is_empty()
        } else {
            let c: Vec<&str> = row.iter().map(|(c, _)| c.as_str()).collect();
            let sql = self.dialect.update(table, &c, &k);
            let params = row
                .iter()
                .map(|(_, v)| v.clone())
                .chain(keys.iter().map(|(_, v)| Some(v.clone())))
                .collect();
            self.execute(sql, params).await? > 0
        };
        if found {
            return Ok(());
        }
        let all: Vec<(String, Option<String>)> = keys
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .chain(row.iter().cloned())
            .collect();
        self.insert(table, &all).await
    }

    /// Deletes the rows matching `keys` (never all rows); returns how many went.
    pub async fn delete(&self, table: &str, keys: &[(String, String)]) -> Result<u64, DbError> {
        if keys.is_empty() {
            return Err(DbError::Rejected(format!(
                "delete from {table}: no keys (a whole-table delete is refused)"
            )));
        }
        schema::column_ok(table, keys.iter().map(|(k, _)| k.as_str()))
            .map_err(DbError::Rejected)?;
        if let Backend::Dbtext(b) = &self.backend {
            return b.delete(table, keys).await;
        }
        let k: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let sql = self.dialect.delete(table, &k);
        self.execute(sql, keys.iter().map(|(_, v)| Some(v.clone())).collect())
            .await
    }

    /// Does one write (its `url` is not looked at: this is the database).
    pub async fn write(&self, w: &DbWrite) -> Result<(), DbError> {
        match w {
            DbWrite::Insert { table, row, .. } => self.insert(table, row).await,
            DbWrite::Upsert {
                table, keys, row, ..
            } => self.upsert(table, keys, row).await,
            DbWrite::Delete { table, keys, .. } => self.delete(table, keys).await.map(drop),
        }
    }

    /// Names of the tables that exist.
    pub async fn tables(&self) -> Result<HashSet<String>, DbError> {
        if let Backend::Dbtext(b) = &self.backend {
            return b.tables().await;
        }
        let rows = self
            .query(self.dialect.list_tables().to_string(), vec![])
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .map(|s| s.to_ascii_lowercase())
            .collect())
    }

    /// Creates every table of [`schema::TABLES`] that is missing (and `version`), records their
    /// versions, then checks the versions of the tables that were already there.
    pub async fn ensure_schema(&self) -> Result<(), DbError> {
        // Several ser nodes starting on one empty database race to create the same tables
        // (PostgreSQL then refuses the loser's CREATE with a duplicate type name): the loser
        // looks again and finds what the winner made.
        let mut attempt = 0u64;
        loop {
            match self.ensure_schema_once().await {
                Err(DbError::Rejected(e)) if attempt < 5 => {
                    attempt += 1;
                    ser_log!(
                        L_DBG,
                        "database {}: schema creation raced ({e}); looking again",
                        self.url
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                r => return r,
            }
        }
    }

    async fn ensure_schema_once(&self) -> Result<(), DbError> {
        let existing = self.tables().await?;
        for t in schema::TABLES.iter().chain([&schema::VERSION]) {
            if !existing.contains(t.name) {
                let made = match &self.backend {
                    Backend::Dbtext(b) => b.create(t).await,
                    _ => self
                        .execute(self.dialect.create_table(t), vec![])
                        .await
                        .map(drop),
                };
                if let Err(e) = made {
                    // Another node created it meanwhile (PostgreSQL reports that race as a
                    // duplicate type name, MySQL and SQLite as "already exists"): fine.
                    if !self.tables().await?.contains(t.name) {
                        return Err(e);
                    }
                }
            }
        }
        let (column, versions) = self.read_versions().await?;
        for t in schema::TABLES {
            if versions.contains_key(t.name) {
                continue;
            }
            if existing.contains(t.name) {
                ser_log!(
                    L_WARN,
                    "database {}: table {} has no row in the version table; recording version {}",
                    self.url,
                    t.name,
                    t.version
                );
            }
            self.insert(
                "version",
                &[
                    ("table_name".into(), Some(t.name.to_string())),
                    (column.clone(), Some(t.version.to_string())),
                ],
            )
            .await?;
        }
        self.check_versions().await
    }

    /// Compares the `version` table with this ser's schema; a mismatch names every table and both
    /// versions. Tables without a version row are not checked.
    pub async fn check_versions(&self) -> Result<(), DbError> {
        let (_, versions) = self.read_versions().await?;
        let mut bad = Vec::new();
        for t in schema::TABLES {
            if let Some(found) = versions.get(t.name) {
                if found.trim().parse::<u32>().ok() != Some(t.version) {
                    bad.push(format!(
                        "table {} is version {} but this ser needs version {}",
                        t.name, found, t.version
                    ));
                }
            }
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(DbError::Version(format!(
                "database {}: {}; update those tables (and their rows in the version table) to SER's schema or point db_url at a new database",
                self.url,
                bad.join("; ")
            )))
        }
    }

    /// The version table's column holding the version (`table_version`; SER 0.8 called it
    /// `version`) and the rows.
    async fn read_versions(&self) -> Result<(String, HashMap<String, String>), DbError> {
        let mut last = None;
        for column in ["table_version", "version"] {
            let read = match &self.backend {
                Backend::Dbtext(b) => {
                    b.select("version", &[], &["table_name".into(), column.into()])
                        .await
                }
                _ => {
                    let sql = self.dialect.select("version", &[], &["table_name", column]);
                    self.query(sql, vec![]).await
                }
            };
            match read {
                Ok(rows) => {
                    let map = rows
                        .into_iter()
                        .filter_map(|r| {
                            let mut it = r.into_iter();
                            Some((it.next()??, it.next().flatten().unwrap_or_default()))
                        })
                        .collect();
                    return Ok((column.to_string(), map));
                }
                Err(e @ DbError::Rejected(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| DbError::Rejected("version table unreadable".into())))
    }
}

/// The directory of a dbtext URL: `dbtext://dir`, or a plain path (SER gave its dbtext module a
/// directory as `db_url`). `None` for any other URL.
pub fn dbtext_dir(url: &str) -> Option<&str> {
    if let Some(dir) = url.strip_prefix("dbtext://") {
        return Some(dir).filter(|d| !d.is_empty());
    }
    (!url.is_empty() && !url.contains("://")).then_some(url)
}

struct Slot {
    db: Result<Arc<Db>, DbError>,
    ready: tokio::sync::OnceCell<()>,
    failed: Mutex<Option<(Instant, DbError)>>,
    reported: AtomicBool,
}

struct Inner {
    default_url: String,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

/// The databases the server uses, one [`Db`] (and its connection pool) per distinct URL.
/// Cloning is cheap; all clones share the pools.
#[derive(Clone)]
pub struct Databases {
    inner: Arc<Inner>,
}

impl Databases {
    /// A registry whose default database (URL `""`) is `default_url`.
    pub fn new(default_url: impl Into<String>) -> Databases {
        Databases {
            inner: Arc::new(Inner {
                default_url: default_url.into(),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A registry whose default database comes from `SER_DB_URL` (else [`DEFAULT_DB_URL`]).
    pub fn from_env() -> Databases {
        Databases::new(default_url())
    }

    /// The default database's URL.
    pub fn default_url(&self) -> &str {
        &self.inner.default_url
    }

    /// The database at `url` (`""` = default), with its schema ensured and versions checked on
    /// first use. After a failure, uses within a second fail at once with the same error.
    pub async fn get(&self, url: &str) -> Result<Arc<Db>, DbError> {
        let url = if url.is_empty() {
            self.inner.default_url.as_str()
        } else {
            url
        };
        let slot = {
            let mut slots = self.inner.slots.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(slots.entry(url.to_string()).or_insert_with(|| {
                Arc::new(Slot {
                    db: Db::open(url).map(Arc::new),
                    ready: tokio::sync::OnceCell::new(),
                    failed: Mutex::new(None),
                    reported: AtomicBool::new(false),
                })
            }))
        };
        let db = slot.db.clone()?;
        if slot.ready.initialized() {
            return Ok(db);
        }
        if let Some((at, e)) = slot
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if at.elapsed() < RETRY_OPEN {
                return Err(e.clone());
            }
        }
        match slot.ready.get_or_try_init(|| db.ensure_schema()).await {
            Ok(()) => {
                *slot.failed.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if slot.reported.swap(false, Ordering::Relaxed) {
                    ser_log!(L_NOTICE, "database {} is usable again", db.url());
                } else {
                    ser_log!(
                        L_NOTICE,
                        "database {}: schema and versions checked",
                        db.url()
                    );
                }
                Ok(db)
            }
            Err(e) => {
                if !slot.reported.swap(true, Ordering::Relaxed) {
                    ser_log!(L_ERR, "database {}: {e}", db.url());
                }
                *slot.failed.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// [`Db::select`] on the database at `url`.
    pub async fn select(
        &self,
        url: &str,
        table: &str,
        keys: &[(String, String)],
        columns: &[String],
    ) -> Result<Rows, DbError> {
        self.get(url).await?.select(table, keys, columns).await
    }

    /// Start-up load (usrloc's bindings, cached credentials): every row's `columns` of `table`, or
    /// — when the database cannot be read — no rows, with the error logged. A DB that is down never
    /// stops the server from starting.
    pub async fn load_or_empty(&self, url: &str, table: &str, columns: &[String]) -> Rows {
        match self.select(url, table, &[], columns).await {
            Ok(rows) => rows,
            Err(e) => {
                ser_log!(
                    L_ERR,
                    "{table}: cannot load from the database ({e}); starting with no rows"
                );
                Vec::new()
            }
        }
    }

    /// [`Db::write`] on the write's database.
    pub async fn write(&self, w: &DbWrite) -> Result<(), DbError> {
        self.get(write_url(w)).await?.write(w).await
    }

    /// Answers a [`Job::Db`] or [`Job::DbWrite`].
    pub async fn run(&self, job: &Job) -> JobResult {
        match job {
            Job::Db {
                url,
                table,
                keys,
                columns,
            } => {
                // One bound for the whole lookup (opening the database, schema check, the
                // select): the script waiting for it answers 500 instead of hoarding the request.
                let bound = select_timeout();
                match tokio::time::timeout(bound, self.select(url, table, keys, columns)).await {
                    Ok(Ok(rows)) => JobResult::Rows(rows),
                    Ok(Err(e)) => JobResult::Failed(format!("{table}: {e}")),
                    Err(_) => JobResult::Failed(format!(
                        "{table}: no answer from the database within {} ms",
                        bound.as_millis()
                    )),
                }
            }
            Job::DbWrite(w) => match self.write(w).await {
                Ok(()) => JobResult::Rows(Vec::new()),
                Err(e) => JobResult::Failed(format!("{}: {e}", write_table(w))),
            },
            other => JobResult::Failed(format!("not a database job ({})", other.kind())),
        }
    }
}

/// The runtime database work runs on, and the [`Databases`] it serves.
pub struct DbService {
    rt: Option<tokio::runtime::Runtime>,
    dbs: Databases,
}

impl DbService {
    /// Starts the runtime (two worker threads named `ser-db`).
    pub fn start(dbs: Databases) -> std::io::Result<DbService> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("ser-db")
            .enable_all()
            .build()?;
        Ok(DbService { rt: Some(rt), dbs })
    }

    /// A handle to spawn database tasks on.
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.rt.as_ref().map(|r| r.handle().clone())
    }

    /// The databases served.
    pub fn databases(&self) -> &Databases {
        &self.dbs
    }

    /// Runs `f` to completion on the database runtime (start-up loads: usrloc's bindings). Must be
    /// called from outside any tokio runtime.
    pub fn block_on<F: Future>(&self, f: F) -> Option<F::Output> {
        self.rt.as_ref().map(|r| r.block_on(f))
    }
}

impl Drop for DbService {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// [`Db::select_page`] on a dbtext directory, which runs no SQL: the rows matching the keys, then
/// the search (case-insensitive substring of any search column), order and page done here, with
/// SQL's meaning (NULLs first when ascending, as SQLite and MariaDB sort them).
async fn dbtext_page(
    b: &dbtext::Dbtext,
    table: &str,
    q: &sql::PageQuery<'_>,
    key_values: &[String],
    search: &str,
) -> Result<Rows, DbError> {
    let mut cols: Vec<String> = q.columns.iter().map(|c| c.to_string()).collect();
    let at = |name: &str, cols: &mut Vec<String>| match cols.iter().position(|c| c == name) {
        Some(i) => i,
        None => {
            cols.push(name.to_string());
            cols.len() - 1
        }
    };
    let search_at: Vec<usize> = q.search.iter().map(|c| at(c, &mut cols)).collect();
    let order_at: Vec<usize> = q.order_by.iter().map(|c| at(c, &mut cols)).collect();
    let keys: Vec<(String, String)> = q
        .keys
        .iter()
        .zip(key_values)
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let mut rows = b.select(table, &keys, &cols).await?;
    if !search.is_empty() && !search_at.is_empty() {
        let needle = search.to_lowercase();
        rows.retain(|r| {
            search_at.iter().any(|&i| {
                r.get(i)
                    .and_then(|v| v.as_deref())
                    .is_some_and(|v| v.to_lowercase().contains(&needle))
            })
        });
    }
    rows.sort_by(|a, b| {
        let ord = order_at
            .iter()
            .map(|&i| a.get(i).cmp(&b.get(i)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal);
        if q.descending {
            ord.reverse()
        } else {
            ord
        }
    });
    let width = q.columns.len();
    Ok(rows
        .into_iter()
        .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
        .take(q.limit as usize)
        .map(|mut r| {
            r.truncate(width);
            r
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redact("mysql://ser:heslo@localhost/ser"),
            "mysql://ser:***@localhost/ser"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert!(matches!(Db::open("oracle://x"), Err(DbError::Rejected(_))));
        assert!(matches!(Db::open("sqlite://"), Err(DbError::Rejected(_))));
        assert!(Db::open("sql://ser:heslo@localhost/ser")
            .is_ok_and(|d| d.dialect() == Some(Dialect::Mysql)));
        assert!(Db::open("postgresql://u@127.0.0.1/db")
            .is_ok_and(|d| d.dialect() == Some(Dialect::Postgres)));
        assert!(Db::open("dbtext:///var/lib/ser/db").is_ok_and(|d| d.dialect().is_none()));
        assert!(Db::open("vm/db").is_ok_and(|d| d.dialect().is_none()));
        assert!(matches!(Db::open("dbtext://"), Err(DbError::Rejected(_))));
    }
}
