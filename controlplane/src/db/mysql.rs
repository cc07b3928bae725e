//! MariaDB/MySQL through `mysql_async` (no TLS: SER's deployments talk to the DB on a trusted
//! network or localhost). SER's URLs `sql://user:pw@host/db` and `mysql://…` both land here.
//!
//! Statements are prepared and bound (the binary protocol); the pool reconnects by itself. Every
//! call is bounded by [`super::OP_TIMEOUT`], so a DB that does not answer is "unavailable", never
//! a hang. `CLIENT_FOUND_ROWS` is on so an UPDATE that changes nothing still counts its row
//! (the upsert relies on it).

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Params, Pool, Value};

use super::{DbError, Rows, OP_TIMEOUT};

pub(crate) struct Mysql {
    pool: Pool,
}

impl Mysql {
    pub(crate) fn new(url: &str) -> Result<Mysql, DbError> {
        let url = match url.strip_prefix("sql://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_string(),
        };
        let opts = Opts::from_url(&url)
            .map_err(|e| DbError::Rejected(format!("invalid MySQL URL: {e}")))?;
        let opts = OptsBuilder::from_opts(opts).client_found_rows(true);
        Ok(Mysql {
            pool: Pool::new(opts),
        })
    }

    pub(crate) async fn query(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<Rows, DbError> {
        let fut = async {
            let mut conn = self.pool.get_conn().await.map_err(err)?;
            let rows: Vec<mysql_async::Row> = conn
                .exec(sql.as_str(), to_params(params))
                .await
                .map_err(err)?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    r.unwrap_raw()
                        .into_iter()
                        .map(|v| v.and_then(text))
                        .collect()
                })
                .collect())
        };
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable("mysql: timed out".into())),
        }
    }

    pub(crate) async fn execute(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<u64, DbError> {
        let fut = async {
            let mut conn = self.pool.get_conn().await.map_err(err)?;
            conn.exec_drop(sql.as_str(), to_params(params))
                .await
                .map_err(err)?;
            Ok(conn.affected_rows())
        };
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable("mysql: timed out".into())),
        }
    }
}

fn to_params(params: Vec<Option<String>>) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .into_iter()
            .map(|p| p.map_or(Value::NULL, |s| Value::Bytes(s.into_bytes())))
            .collect(),
    )
}

/// A column value as SER's text form (`'YYYY-MM-DD HH:MM:SS'` for dates).
fn text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(f) => Some(f.to_string()),
        Value::Date(y, mo, d, h, mi, s, _) => {
            Some(format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
        }
        Value::Time(neg, days, h, mi, s, _) => Some(format!(
            "{}{:02}:{mi:02}:{s:02}",
            if neg { "-" } else { "" },
            u32::from(h) + days * 24
        )),
    }
}

fn err(e: mysql_async::Error) -> DbError {
    match &e {
        // Too many connections, server shutting down, lock wait timeout, deadlock: try again later.
        mysql_async::Error::Server(s) if matches!(s.code, 1040 | 1053 | 1205 | 1213) => {
            DbError::Unavailable(format!("mysql: {e}"))
        }
        mysql_async::Error::Server(_) => DbError::Rejected(format!("mysql: {e}")),
        _ => DbError::Unavailable(format!("mysql: {e}")),
    }
}
