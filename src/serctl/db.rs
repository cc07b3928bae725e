//! serctl's database side: which database (the server's `SER_DB_URL`, or SER's serctl variables
//! `SQL_HOST`/`SQL_USER`/`SQL_DB` with `PW` for MySQL), the subscriber credentials, and the
//! MySQL-client-like table printing SER's `sc` showed.

use std::io::{BufRead, Write};

use controlplane::db::{Databases, DbError, DbService, Rows};

/// How a command uses the database: (*) commands write and may prompt for the password.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The database URL serctl uses, in this order: `SER_DB_URL` (the server's own); SER's serctl
/// variables (`SQL_HOST`, `SQL_USER`, `SQL_DB`, with `PW` — prompted for when unset — for writes,
/// `RO_USER`/`RO_PW` for reads) meaning MySQL; else the server's default SQLite file.
pub fn url(access: Access) -> Result<String, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(u) = var(controlplane::db::DB_URL_ENV) {
        return Ok(u);
    }
    if var("SQL_HOST").is_none() && var("SQL_USER").is_none() && var("SQL_DB").is_none() {
        return Ok(controlplane::db::DEFAULT_DB_URL.to_string());
    }
    let host = var("SQL_HOST").unwrap_or_else(|| "localhost".into());
    let db = var("SQL_DB").unwrap_or_else(|| "ser".into());
    let (user, pw) = match access {
        Access::Write => (
            var("SQL_USER").unwrap_or_else(|| "ser".into()),
            match var("PW") {
                Some(pw) => pw,
                None => prompt_password()?,
            },
        ),
        // RO_PW set but empty means an empty password (PW empty means "prompt", as in SER).
        Access::Read => (
            var("RO_USER").unwrap_or_else(|| "serro".into()),
            std::env::var("RO_PW").unwrap_or_else(|_| "47serro11".into()),
        ),
    };
    Ok(format!("mysql://{}:{}@{host}/{db}", pct(&user), pct(&pw)))
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SER's prompt ("MySql password: "), without echo when a terminal is there.
fn prompt_password() -> Result<String, String> {
    eprint!("MySql password: ");
    let _ = std::io::stderr().flush();
    let stty = |arg: &str| {
        std::fs::File::open("/dev/tty")
            .ok()
            .and_then(|tty| {
                std::process::Command::new("stty")
                    .arg(arg)
                    .stdin(tty)
                    .status()
                    .ok()
            })
            .is_some_and(|s| s.success())
    };
    let echo_off = stty("-echo");
    let mut line = String::new();
    let r = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        stty("echo");
    }
    eprintln!();
    match r {
        Ok(0) => Err("no password given (set PW or type it at the prompt)".into()),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => Err(format!("reading the password: {e}")),
    }
}

/// An open database for one serctl run.
pub struct Conn {
    svc: DbService,
    url: String,
}

impl Conn {
    pub fn open(access: Access) -> Result<Conn, String> {
        let url = url(access)?;
        // Reading must not create: a mistyped SQLite path would otherwise become a new, empty
        // database (and its directories) and the command would print nothing and succeed.
        if access == Access::Read {
            if let Some(path) = url.strip_prefix("sqlite://") {
                if !path.is_empty() && !std::path::Path::new(path).exists() {
                    return Err(format!(
                        "the SQLite database {path} does not exist (check SER_DB_URL)"
                    ));
                }
            }
            if let Some(dir) = controlplane::db::dbtext_dir(&url) {
                if !std::path::Path::new(dir).is_dir() {
                    return Err(format!(
                        "the dbtext directory {dir} does not exist (check SER_DB_URL)"
                    ));
                }
            }
        }
        let svc = DbService::start(Databases::new(url.clone()))
            .map_err(|e| format!("cannot start the database runtime: {e}"))?;
        Ok(Conn { svc, url })
    }

    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, String> {
        match self.svc.block_on(f) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(format!("{} ({})", e, controlplane::db::redact(&self.url))),
            None => Err("database runtime is gone".into()),
        }
    }

    pub fn select(
        &self,
        table: &str,
        keys: &[(&str, &str)],
        columns: &[&str],
    ) -> Result<Rows, String> {
        let dbs = self.svc.databases().clone();
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        self.run(async move { dbs.select("", table, &keys, &columns).await })
    }

    pub fn insert(&self, table: &str, row: &[(&str, &str)]) -> Result<(), String> {
        let dbs = self.svc.databases().clone();
        let row: Vec<(String, Option<String>)> = row
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        self.run(async move { dbs.get("").await?.insert(table, &row).await })
    }

    pub fn upsert(
        &self,
        table: &str,
        keys: &[(&str, &str)],
        row: &[(&str, &str)],
    ) -> Result<(), String> {
        let dbs = self.svc.databases().clone();
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let row: Vec<(String, Option<String>)> = row
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        self.run(async move { dbs.get("").await?.upsert(table, &keys, &row).await })
    }

    pub fn delete(&self, table: &str, keys: &[(&str, &str)]) -> Result<u64, String> {
        let dbs = self.svc.databases().clone();
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.run(async move { dbs.get("").await?.delete(table, &keys).await })
    }
}

// The subscriber columns are computed where every provisioning front end (serctl, the web UI)
// gets them.
pub use controlplane::subscriber::now;

/// Rows printed as the mysql client prints them (SER's `sc` piped mysql's output).
pub fn table(headers: &[&str], rows: &Rows) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, v) in r.iter().enumerate() {
            if let Some(w) = width.get_mut(i) {
                *w = (*w).max(cell(v).chars().count());
            }
        }
    }
    let rule: String = width
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("| {c:<w$} "))
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone();
    out.push_str(&line(headers.iter().map(|h| h.to_string()).collect()));
    out.push_str(&rule);
    for r in rows {
        out.push_str(&line(r.iter().map(cell).collect()));
    }
    out.push_str(&rule);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shape() {
        let t = table(&["a", "bb"], &vec![vec![Some("x".into()), None]]);
        assert_eq!(
            t,
            "+---+------+\n| a | bb   |\n+---+------+\n| x | NULL |\n+---+------+\n"
        );
    }
}
