//! The embedded backend: one SQLite file, one connection, used on tokio's blocking threads.
//!
//! The file and its directory are created on first use. A connection that failed with an
//! "unavailable" error (cannot open, read-only, I/O, disk full, busy) is dropped and opened again on
//! the next statement, so a path that becomes writable later starts working without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};

use super::{DbError, Rows};

pub(crate) struct Sqlite {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Sqlite {
    pub(crate) fn new(path: PathBuf) -> Sqlite {
        Sqlite {
            path,
            conn: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `f` on the connection (opening it first) on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        let path = self.path.clone();
        let task = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another statement panicked; the connection is still usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                *guard = Some(open(&path)?);
            }
            let Some(c) = guard.as_ref() else {
                return Err(DbError::Unavailable("sqlite connection missing".into()));
            };
            let r = f(c);
            if matches!(r, Err(DbError::Unavailable(_))) {
                *guard = None;
            }
            r
        });
        match task.await {
            Ok(r) => r,
            Err(e) => Err(DbError::Unavailable(format!("sqlite worker: {e}"))),
        }
    }

    pub(crate) async fn query(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<Rows, DbError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(err)?;
            let ncols = stmt.column_count();
            let mut rows = stmt
                .query(rusqlite::params_from_iter(params.iter()))
                .map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let mut r = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    r.push(match row.get_ref(i).map_err(err)? {
                        ValueRef::Null => None,
                        ValueRef::Integer(n) => Some(n.to_string()),
                        ValueRef::Real(f) => Some(f.to_string()),
                        ValueRef::Text(t) | ValueRef::Blob(t) => {
                            Some(String::from_utf8_lossy(t).into_owned())
                        }
                    });
                }
                out.push(r);
            }
            Ok(out)
        })
        .await
    }

    pub(crate) async fn execute(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<u64, DbError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(&sql).map_err(err)?;
            let n = stmt
                .execute(rusqlite::params_from_iter(params.iter()))
                .map_err(err)?;
            Ok(n as u64)
        })
        .await
    }
}

fn open(path: &PathBuf) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            DbError::Unavailable(format!(
                "cannot create the database directory {}: {e} (set SER_DB_URL or the module's db_url to a writable sqlite:///path, or to a mysql:// or postgres:// server)",
                dir.display()
            ))
        })?;
    }
    let c = Connection::open(path)
        .map_err(|e| DbError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    c.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    // WAL lets serctl read while ser writes; a file system without it keeps the default journal.
    let _ = c.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()));
    Ok(c)
}

fn err(e: rusqlite::Error) -> DbError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                ErrorCode::CannotOpen
                    | ErrorCode::ReadOnly
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::DiskFull
                    | ErrorCode::PermissionDenied
                    | ErrorCode::OutOfMemory
            ) =>
        {
            DbError::Unavailable(format!("sqlite: {e}"))
        }
        _ => DbError::Rejected(format!("sqlite: {e}")),
    }
}
