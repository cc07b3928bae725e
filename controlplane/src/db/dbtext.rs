//! The flat-text backend: SER's `dbtext` database, a directory with one file per table.
//!
//! File format (SER's `dbt_file.c`):
//! - The first line is the header: the columns, separated by blanks, each `name(type[,flag])`
//!   with type `int`, `double`, `str`, `string`, `blob` or `time` (Unix seconds) and flag `null`
//!   (NULL allowed) or `auto` (an `int` numbered by the database).
//! - Every further line is a row: the fields in header order, separated by `:`. In text fields
//!   `\:` `\\` `\n` `\r` `\t` `\0` stand for `:`, `\`, newline, carriage return, tab and NUL. An
//!   empty field is NULL in a `null` column and the empty string in a text column without it
//!   (SER refused those rows; an empty `str` is too common in SER's own tables to refuse). Empty
//!   lines are skipped.
//!
//! The directory is created with the schema's tables on first use. A relative directory (a plain
//! `db_url` such as vm-ser.cfg's `vm/db`) is taken against ser's working directory, as SER did.
//!
//! Values cross the [`super::Db`] interface as text, as with the SQL backends: a `time` column is
//! written from and read back as `YYYY-MM-DD HH:MM:SS` (UTC), plain Unix seconds are accepted too.
//!
//! Invariants:
//! - Writes are atomic: the whole table is written to a temporary file in the same directory,
//!   flushed to disk, renamed over the table and the directory flushed; a crash leaves the old or
//!   the new file, never a half-written one. Writers (ser and serctl) take an exclusive lock on the
//!   directory's `.dbtext-lock` file for the read-modify-write; readers need no lock.
//! - A bad line is reported as `path:line: what` and the table is unusable (the error counts as
//!   "unavailable": queued writes wait until the file is fixed instead of overwriting it).
//! - Tables of ser's schema keep their primary key unique (a duplicate insert is refused, as the
//!   SQL backends refuse it).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::schema::{self, Kind};
use super::{DbError, Rows};

/// A column's type in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int,
    Double,
    Str,
    String,
    Blob,
    Time,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Double => "double",
            Type::Str => "str",
            Type::String => "string",
            Type::Blob => "blob",
            Type::Time => "time",
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Type::Str | Type::String | Type::Blob)
    }
}

/// One column of a table file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Col {
    pub name: String,
    pub ty: Type,
    pub null: bool,
    pub auto: bool,
}

/// A table file: its columns and rows (values as stored: `time` as Unix seconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableFile {
    pub cols: Vec<Col>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// Parses a table file; `path` only names it in errors (`path:line: what`).
pub fn parse(path: &str, text: &str) -> Result<TableFile, String> {
    let mut lines = text.split('\n').enumerate();
    let cols = loop {
        match lines.next() {
            Some((_, "")) => continue,
            Some((i, l)) => break parse_header(l).map_err(|e| format!("{path}:{}: {e}", i + 1))?,
            None => return Err(format!("{path}:1: no header line (name(type) columns)")),
        }
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        rows.push(parse_row(&cols, line).map_err(|e| format!("{path}:{}: {e}", i + 1))?);
    }
    Ok(TableFile { cols, rows })
}

fn parse_header(line: &str) -> Result<Vec<Col>, String> {
    let mut cols: Vec<Col> = Vec::new();
    for def in line.split([' ', '\t']).filter(|s| !s.is_empty()) {
        let (name, rest) = def
            .split_once('(')
            .ok_or_else(|| format!("column {def:?}: expected name(type)"))?;
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("column {def:?}: missing ')'"))?;
        if !schema::ident_ok(name) {
            return Err(format!("column {def:?}: bad column name"));
        }
        let mut parts = inner.split(',').map(str::trim);
        let ty = match parts.next().unwrap_or("").to_ascii_lowercase().as_str() {
            "int" | "integer" => Type::Int,
            "double" | "float" => Type::Double,
            "str" => Type::Str,
            "string" => Type::String,
            "blob" => Type::Blob,
            "time" | "datetime" => Type::Time,
            other => {
                return Err(format!(
                    "column {name}: unknown type {other:?} (int, double, str, string, blob, time)"
                ))
            }
        };
        let (mut null, mut auto) = (false, false);
        for flag in parts {
            match flag.to_ascii_lowercase().as_str() {
                "null" => null = true,
                "auto" if ty == Type::Int && !cols.iter().any(|c| c.auto) => auto = true,
                _ => return Err(format!("column {name}: bad flag {flag:?} (null, auto)")),
            }
        }
        if cols.iter().any(|c| c.name == name) {
            return Err(format!("column {name} appears twice"));
        }
        cols.push(Col {
            name: name.to_string(),
            ty,
            null,
            auto,
        });
    }
    if cols.is_empty() {
        return Err("empty header line".into());
    }
    Ok(cols)
}

fn parse_row(cols: &[Col], line: &str) -> Result<Vec<Option<String>>, String> {
    let mut fields = Vec::with_capacity(cols.len());
    let mut cur = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ':' => fields.push(std::mem::take(&mut cur)),
            '\\' => cur.push(match chars.next() {
                Some('n') => '\n',
                Some('r') => '\r',
                Some('t') => '\t',
                Some('0') => '\0',
                Some('\\') => '\\',
                Some(':') => ':',
                Some(o) => return Err(format!("bad escape \\{o} in field {}", fields.len() + 1)),
                None => return Err("a '\\' ends the line".into()),
            }),
            c => cur.push(c),
        }
    }
    fields.push(cur);
    if fields.len() != cols.len() {
        return Err(format!(
            "{} fields, but the header has {} columns",
            fields.len(),
            cols.len()
        ));
    }
    cols.iter()
        .zip(fields)
        .map(|(col, f)| check_field(col, f).map_err(|e| format!("column {}: {e}", col.name)))
        .collect()
}

fn check_field(col: &Col, f: String) -> Result<Option<String>, String> {
    if f.is_empty() {
        return if col.null {
            Ok(None)
        } else if col.ty.is_text() {
            Ok(Some(f))
        } else {
            Err(format!(
                "empty, but the column is not null ({})",
                col.ty.name()
            ))
        };
    }
    match col.ty {
        Type::Int | Type::Time if f.parse::<i64>().is_err() => {
            Err(format!("{f:?} is not an integer"))
        }
        Type::Double if f.parse::<f64>().is_err() => Err(format!("{f:?} is not a number")),
        _ => Ok(Some(f)),
    }
}

/// The file text of a table (header, then one line per row).
pub fn render(t: &TableFile) -> String {
    let mut out = String::new();
    for (i, c) in t.cols.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&c.name);
        out.push('(');
        out.push_str(c.ty.name());
        if c.null {
            out.push_str(",null");
        } else if c.auto {
            out.push_str(",auto");
        }
        out.push(')');
    }
    out.push('\n');
    for row in &t.rows {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            for ch in v.as_deref().unwrap_or("").chars() {
                match ch {
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\0' => out.push_str("\\0"),
                    '\\' => out.push_str("\\\\"),
                    ':' => out.push_str("\\:"),
                    c => out.push(c),
                }
            }
        }
        out.push('\n');
    }
    out
}

/// The header of a schema table in dbtext.
pub fn columns_of(t: &schema::Table) -> Vec<Col> {
    t.columns
        .iter()
        .map(|c| Col {
            name: c.name.to_string(),
            ty: match c.kind {
                Kind::Str(_) | Kind::Char(_) | Kind::Text => Type::Str,
                Kind::Int | Kind::UInt | Kind::Tiny | Kind::Serial => Type::Int,
                Kind::Float => Type::Double,
                Kind::DateTime | Kind::Stamp => Type::Time,
            },
            null: c.null,
            auto: c.kind == Kind::Serial,
        })
        .collect()
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) as Unix seconds (also before 1970: SER's "no date" is 1900).
fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let p = s.get(r)?;
        p.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| p.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

fn format_time(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// An interface value as stored in column `col` (`None` = NULL).
fn encode(table: &str, col: &Col, v: Option<&str>) -> Result<Option<String>, DbError> {
    let Some(v) = v else {
        return if col.null || col.ty.is_text() {
            Ok(if col.null { None } else { Some(String::new()) })
        } else {
            Err(DbError::Rejected(format!(
                "{table}.{}: NULL in a column that is not null",
                col.name
            )))
        };
    };
    let bad = |what: &str| DbError::Rejected(format!("{table}.{}: {v:?} is not {what}", col.name));
    Ok(Some(match col.ty {
        Type::Int => v
            .trim()
            .parse::<i64>()
            .map_err(|_| bad("an integer"))?
            .to_string(),
        Type::Double => {
            v.trim().parse::<f64>().map_err(|_| bad("a number"))?;
            v.trim().to_string()
        }
        Type::Time => parse_time(v).ok_or_else(|| bad("a date"))?.to_string(),
        Type::Str | Type::String | Type::Blob => v.to_string(),
    }))
}

/// A stored value as the interface hands it out.
fn decode(col: &Col, v: &Option<String>) -> Option<String> {
    match (col.ty, v) {
        (Type::Time, Some(s)) => Some(s.parse::<i64>().map_or_else(|_| s.clone(), format_time)),
        (_, v) => v.clone(),
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Identity of a file's contents as seen by the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        mtime: m.modified().ok(),
        ino: m.ino(),
    })
}

type Cache = HashMap<String, (Stamp, Arc<TableFile>)>;

/// One dbtext directory.
pub(crate) struct Dbtext {
    dir: PathBuf,
    cache: Arc<Mutex<Cache>>,
}

impl Dbtext {
    pub(crate) fn new(dir: PathBuf) -> Dbtext {
        Dbtext {
            dir,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs `f` on a blocking thread with this directory's state.
    async fn with<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Dir) -> Result<T, DbError> + Send + 'static,
    {
        let d = Dir {
            dir: self.dir.clone(),
            cache: Arc::clone(&self.cache),
        };
        match tokio::task::spawn_blocking(move || f(&d)).await {
            Ok(r) => r,
            Err(e) => Err(DbError::Unavailable(format!("dbtext worker: {e}"))),
        }
    }

    pub(crate) async fn select(
        &self,
        table: &str,
        keys: &[(String, String)],
        columns: &[String],
    ) -> Result<Rows, DbError> {
        let (table, keys, columns) = (table.to_string(), keys.to_vec(), columns.to_vec());
        self.with(move |d| d.select(&table, &keys, &columns)).await
    }

    pub(crate) async fn insert(
        &self,
        table: &str,
        row: &[(String, Option<String>)],
    ) -> Result<(), DbError> {
        let (table, row) = (table.to_string(), row.to_vec());
        self.with(move |d| d.modify(&table, |t| insert(&table, t, &row)))
            .await
    }

    pub(crate) async fn upsert(
        &self,
        table: &str,
        keys: &[(String, String)],
        row: &[(String, Option<String>)],
    ) -> Result<(), DbError> {
        let (table, keys, row) = (table.to_string(), keys.to_vec(), row.to_vec());
        self.with(move |d| {
            d.modify(&table, |t| {
                let hits = matching(&table, t, &keys)?;
                if hits.is_empty() {
                    let all: Vec<(String, Option<String>)> = keys
                        .iter()
                        .map(|(k, v)| (k.clone(), Some(v.clone())))
                        .chain(row.iter().cloned())
                        .collect();
                    return insert(&table, t, &all);
                }
                let mut set = Vec::new();
                for (name, v) in &row {
                    let i = col_index(&table, t, name)?;
                    set.push((i, encode(&table, &t.cols[i], v.as_deref())?));
                }
                let stamps = stamp_columns(&table, t, &row);
                let now = now_secs().to_string();
                for r in hits {
                    for (i, v) in &set {
                        t.rows[r][*i] = v.clone();
                    }
                    for &i in &stamps {
                        t.rows[r][i] = Some(now.clone());
                    }
                }
                Ok(())
            })
        })
        .await
    }

    pub(crate) async fn delete(
        &self,
        table: &str,
        keys: &[(String, String)],
    ) -> Result<u64, DbError> {
        let (table, keys) = (table.to_string(), keys.to_vec());
        self.with(move |d| {
            let mut gone = 0u64;
            d.modify(&table, |t| {
                let hits = matching(&table, t, &keys)?;
                gone = hits.len() as u64;
                let mut i = 0;
                t.rows.retain(|_| {
                    let keep = !hits.contains(&i);
                    i += 1;
                    keep
                });
                Ok(())
            })?;
            Ok(gone)
        })
        .await
    }

    /// The tables: the directory's regular files not starting with `.`.
    pub(crate) async fn tables(&self) -> Result<std::collections::HashSet<String>, DbError> {
        self.with(|d| {
            let rd = match std::fs::read_dir(&d.dir) {
                Ok(rd) => rd,
                // Made by the first table's creation, as SQLite makes its file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
                Err(e) => return Err(d.io("cannot list", &d.dir, e)),
            };
            Ok(rd
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .map(|n| n.to_ascii_lowercase())
                .collect())
        })
        .await
    }

    /// Creates the file of a schema table (header only) unless it exists.
    pub(crate) async fn create(&self, t: &'static schema::Table) -> Result<(), DbError> {
        self.with(move |d| {
            d.locked(|| {
                if d.path(t.name).exists() {
                    return Ok(());
                }
                let empty = TableFile {
                    cols: columns_of(t),
                    rows: Vec::new(),
                };
                d.store(t.name, empty)
            })
        })
        .await
    }
}

/// The blocking side of a [`Dbtext`].
struct Dir {
    dir: PathBuf,
    cache: Arc<Mutex<Cache>>,
}

impl Dir {
    fn path(&self, table: &str) -> PathBuf {
        self.dir.join(table)
    }

    fn io(&self, what: &str, p: &Path, e: std::io::Error) -> DbError {
        DbError::Unavailable(format!("dbtext: {what} {}: {e}", p.display()))
    }

    /// The table as it is on disk now (parsed again only when the file changed).
    fn load(&self, table: &str) -> Result<Arc<TableFile>, DbError> {
        let path = self.path(table);
        let st = match stamp(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DbError::Rejected(format!(
                    "dbtext: no table {table} (no file {})",
                    path.display()
                )))
            }
            Err(e) => return Err(self.io("cannot read", &path, e)),
        };
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((s, t)) = cache.get(table) {
                if *s == st {
                    return Ok(Arc::clone(t));
                }
            }
        }
        let text = std::fs::read(&path).map_err(|e| self.io("cannot read", &path, e))?;
        let text = String::from_utf8_lossy(&text);
        let t = Arc::new(parse(&path.display().to_string(), &text).map_err(DbError::Unavailable)?);
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(table.to_string(), (st, Arc::clone(&t)));
        Ok(t)
    }

    fn select(
        &self,
        table: &str,
        keys: &[(String, String)],
        columns: &[String],
    ) -> Result<Rows, DbError> {
        let t = self.load(table)?;
        let idx: Vec<usize> = columns
            .iter()
            .map(|c| col_index(table, &t, c))
            .collect::<Result<_, _>>()?;
        Ok(matching(table, &t, keys)?
            .into_iter()
            .map(|r| {
                idx.iter()
                    .map(|&i| decode(&t.cols[i], &t.rows[r][i]))
                    .collect()
            })
            .collect())
    }

    /// Runs `f` holding the directory's write lock (in this process and across processes).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, DbError>) -> Result<T, DbError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io("cannot create", &self.dir, e))?;
        let lock_path = self.dir.join(".dbtext-lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io("cannot open", &lock_path, e))?;
        lock.lock()
            .map_err(|e| self.io("cannot lock", &lock_path, e))?;
        let r = f();
        let _ = lock.unlock();
        r
    }

    /// Read-modify-write of one table under the lock; the file is replaced only when `f` succeeds.
    fn modify(
        &self,
        table: &str,
        f: impl FnOnce(&mut TableFile) -> Result<(), DbError>,
    ) -> Result<(), DbError> {
        self.locked(|| {
            let mut t = (*self.load(table)?).clone();
            f(&mut t)?;
            self.store(table, t)
        })
    }

    /// Writes `t` as the table's file: temporary file, fsync, rename, fsync of the directory.
    fn store(&self, table: &str, t: TableFile) -> Result<(), DbError> {
        let path = self.path(table);
        let tmp = self
            .dir
            .join(format!(".{table}.tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(render(&t).as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(self.io("cannot write", &path, e));
        }
        if let Ok(st) = stamp(&path) {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(table.to_string(), (st, Arc::new(t)));
        }
        Ok(())
    }
}

fn col_index(table: &str, t: &TableFile, name: &str) -> Result<usize, DbError> {
    t.cols
        .iter()
        .position(|c| c.name == name)
        .ok_or_else(|| DbError::Rejected(format!("dbtext: table {table} has no column {name}")))
}

/// Indexes of the rows whose key columns equal the keys' values (compared as stored).
fn matching(table: &str, t: &TableFile, keys: &[(String, String)]) -> Result<Vec<usize>, DbError> {
    let mut want = Vec::with_capacity(keys.len());
    for (k, v) in keys {
        let i = col_index(table, t, k)?;
        // A key that cannot be stored in the column (a word for an int) matches nothing.
        let enc = encode(table, &t.cols[i], Some(v)).ok().flatten();
        want.push((i, enc));
    }
    Ok(t.rows
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            want.iter().all(|(i, v)| match (&r[*i], v) {
                (Some(a), Some(b)) if t.cols[*i].ty == Type::Double => {
                    a.parse::<f64>().ok() == b.parse::<f64>().ok()
                }
                (Some(a), Some(b)) => a == b,
                // An empty text field is both "" and NULL on disk.
                (None, Some(b)) => b.is_empty() && t.cols[*i].ty.is_text(),
                (_, None) => false,
            })
        })
        .map(|(i, _)| i)
        .collect())
}

/// The schema's database-set timestamp columns of `table` not given in `row`.
fn stamp_columns(table: &str, t: &TableFile, row: &[(String, Option<String>)]) -> Vec<usize> {
    let Some(st) = schema::table(table) else {
        return Vec::new();
    };
    t.cols
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            st.column(&c.name).is_some_and(|sc| sc.kind == Kind::Stamp)
                && !row.iter().any(|(n, _)| *n == c.name)
        })
        .map(|(i, _)| i)
        .collect()
}

fn insert(table: &str, t: &mut TableFile, row: &[(String, Option<String>)]) -> Result<(), DbError> {
    for (name, _) in row {
        col_index(table, t, name)?;
    }
    let st = schema::table(table);
    let mut new = Vec::with_capacity(t.cols.len());
    for (i, c) in t.cols.iter().enumerate() {
        let given = row.iter().find(|(n, _)| *n == c.name);
        let v = match given {
            Some((_, v)) if !(c.auto && v.is_none()) => encode(table, c, v.as_deref())?,
            _ if c.auto => {
                let max = t
                    .rows
                    .iter()
                    .filter_map(|r| r[i].as_deref()?.parse::<i64>().ok())
                    .max()
                    .unwrap_or(0);
                Some((max + 1).to_string())
            }
            _ => {
                let sc = st.and_then(|s| s.column(&c.name));
                match sc {
                    Some(sc) if sc.kind == Kind::Stamp => Some(now_secs().to_string()),
                    Some(sc) if sc.default.is_some() => encode(table, c, sc.default)?,
                    _ if c.null => None,
                    _ if c.ty.is_text() => Some(String::new()),
                    _ if c.ty == Type::Double => Some("0".into()),
                    _ => Some("0".into()),
                }
            }
        };
        new.push(v);
    }
    if let Some(st) = st.filter(|s| !s.key.is_empty()) {
        let idx: Option<Vec<usize>> = st
            .key
            .iter()
            .map(|k| t.cols.iter().position(|c| c.name == *k))
            .collect();
        if let Some(idx) = idx {
            if t.rows.iter().any(|r| idx.iter().all(|&i| r[i] == new[i])) {
                return Err(DbError::Rejected(format!(
                    "dbtext: {table}: a row with this key ({}) exists",
                    st.key.join(", ")
                )));
            }
        }
    }
    t.rows.push(new);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escapes() {
        let t = TableFile {
            cols: vec![
                Col {
                    name: "id".into(),
                    ty: Type::Int,
                    null: false,
                    auto: true,
                },
                Col {
                    name: "contact".into(),
                    ty: Type::Str,
                    null: false,
                    auto: false,
                },
                Col {
                    name: "q".into(),
                    ty: Type::Double,
                    null: true,
                    auto: false,
                },
            ],
            rows: vec![
                vec![
                    Some("1".into()),
                    Some("sip:a@1.2.3.4:5060;x=\\y\n\r\t\0end".into()),
                    Some("0.5".into()),
                ],
                vec![Some("2".into()), Some(String::new()), None],
            ],
        };
        let text = render(&t);
        assert_eq!(
            text,
            "id(int,auto) contact(str) q(double,null)\n\
             1:sip\\:a@1.2.3.4\\:5060;x=\\\\y\\n\\r\\t\\0end:0.5\n\
             2::\n"
        );
        assert_eq!(parse("t", &text).unwrap(), t);
    }

    #[test]
    fn sers_own_files_parse() {
        let text = "username(str) domain(str) contact(str) expires(time) q(double) \
                    callid(str,null) cseq(int)\n\
                    jan:iptel.org:sip\\:jan@1.2.3.4:1040000000:1.00::42\n\n";
        let t = parse("location", text).unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0][2].as_deref(), Some("sip:jan@1.2.3.4"));
        assert_eq!(t.rows[0][5], None);
        assert_eq!(
            decode(&t.cols[3], &t.rows[0][3]).unwrap(),
            "2002-12-16 00:53:20"
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let hdr = "a(int) b(str)\n";
        let e = parse("db/x", &format!("{hdr}1:ok\nzwei:no\n")).unwrap_err();
        assert_eq!(e, "db/x:3: column a: \"zwei\" is not an integer");
        let e = parse("db/x", &format!("{hdr}1:ok:extra\n")).unwrap_err();
        assert_eq!(e, "db/x:2: 3 fields, but the header has 2 columns");
        let e = parse("db/x", &format!("{hdr}1:bad\\q\n")).unwrap_err();
        assert!(e.starts_with("db/x:2: bad escape \\q"), "{e}");
        let e = parse("db/x", "a(int) b(text)\n").unwrap_err();
        assert!(e.starts_with("db/x:1: column b: unknown type"), "{e}");
        let e = parse("db/x", "a(int b(str)\n").unwrap_err();
        assert!(e.starts_with("db/x:1:"), "{e}");
        assert!(parse("db/x", "").unwrap_err().contains("no header"));
    }

    #[test]
    fn times_convert_both_ways() {
        assert_eq!(parse_time("1970-01-01 00:00:10"), Some(10));
        assert_eq!(
            parse_time(schema::NO_DATE).map(format_time).unwrap(),
            schema::NO_DATE
        );
        assert_eq!(
            format_time(parse_time(schema::FOREVER).unwrap()),
            schema::FOREVER
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_whole_database_through_db_numbers_defaults_and_stamps() {
        let dir = std::env::temp_dir().join(format!("ser-dbtext-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = super::super::Db::open(&dir.display().to_string()).unwrap();
        let s = |v: &str| v.to_string();
        block(async {
            db.ensure_schema().await.unwrap();
            // Again on the same files: versions found and checked.
            db.ensure_schema().await.unwrap();
            for who in ["bob", "carol"] {
                db.insert("phonebook", &[(s("username"), Some(s(who)))])
                    .await
                    .unwrap();
            }
            let rows = db
                .select("phonebook", &[], &[s("id"), s("username"), s("sip_uri")])
                .await
                .unwrap();
            assert_eq!(
                rows,
                vec![
                    vec![Some(s("1")), Some(s("bob")), Some(s(""))],
                    vec![Some(s("2")), Some(s("carol")), Some(s(""))]
                ]
            );
            db.insert("acc", &[(s("sip_method"), Some(s("INVITE")))])
                .await
                .unwrap();
            let rows = db
                .select(
                    "acc",
                    &[(s("sip_method"), s("INVITE"))],
                    &[s("time"), s("timestamp")],
                )
                .await
                .unwrap();
            assert_eq!(rows[0][0].as_deref(), Some(schema::NO_DATE), "the default");
            let stamp = rows[0][1].clone().unwrap();
            assert!(stamp.starts_with("20"), "set on insert: {stamp}");
            // A column the table does not have is refused, not silently dropped.
            assert!(matches!(
                db.insert("phonebook", &[(s("nickname"), Some(s("x")))])
                    .await,
                Err(DbError::Rejected(_))
            ));
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_replace_the_file_and_keep_keys_unique() {
        let dir = std::env::temp_dir().join(format!("ser-dbtext-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Dbtext::new(dir.clone());
        let s = |v: &str| v.to_string();
        block(async {
            db.create(schema::table("location").unwrap()).await.unwrap();
            let keys = vec![
                (s("username"), s("jan")),
                (s("domain"), s("")),
                (s("contact"), s("sip:jan@1.2.3.4")),
            ];
            let row = vec![
                (s("expires"), Some(s("2030-01-02 03:04:05"))),
                (s("q"), Some(s("0.5"))),
            ];
            db.upsert("location", &keys, &row).await.unwrap();
            db.upsert("location", &keys, &[(s("q"), Some(s("1")))])
                .await
                .unwrap();
            let rows = db
                .select(
                    "location",
                    &keys[..1],
                    &[s("contact"), s("expires"), s("q")],
                )
                .await
                .unwrap();
            assert_eq!(
                rows,
                vec![vec![
                    Some(s("sip:jan@1.2.3.4")),
                    Some(s("2030-01-02 03:04:05")),
                    Some(s("1"))
                ]]
            );
            let all: Vec<_> = keys
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            assert!(matches!(
                db.insert("location", &all).await,
                Err(DbError::Rejected(_))
            ));
            let text = std::fs::read_to_string(dir.join("location")).unwrap();
            assert!(
                text.contains("jan::sip\\:jan@1.2.3.4::1893553445:1:"),
                "{text}"
            );
            assert_eq!(db.delete("location", &keys[..1]).await.unwrap(), 1);
            assert_eq!(
                db.select("location", &[], &[s("contact")])
                    .await
                    .unwrap()
                    .len(),
                0
            );
            // No temporary file is left behind.
            let names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.contains(".tmp"))
                .collect();
            assert!(names.is_empty(), "{names:?}");
            // A broken file is reported with its line and left alone.
            std::fs::write(dir.join("location"), "username(str)\nok\nbad\\\n").unwrap();
            let e = db
                .select("location", &[], &[s("username")])
                .await
                .unwrap_err();
            assert!(e.to_string().contains("location:3:"), "{e}");
            assert!(db.upsert("location", &keys[..1], &[]).await.is_err());
            assert_eq!(
                std::fs::read_to_string(dir.join("location")).unwrap(),
                "username(str)\nok\nbad\\\n"
            );
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
