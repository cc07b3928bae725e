//! PostgreSQL through `tokio-postgres` (no TLS, like the MySQL backend).
//!
//! One client per URL (a `tokio-postgres` client pipelines concurrent statements), reconnected on
//! the next statement after the connection closes. Values are sent as text parameters
//! ([`TextParam`]): the server converts them to the column's type exactly as it converts a quoted
//! literal, so SER's all-text values fit integer, real and timestamp columns. Selected columns are
//! cast to text in the SQL. Every call is bounded by [`super::OP_TIMEOUT`].

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};

use super::{DbError, Rows, OP_TIMEOUT};

pub(crate) struct Postgres {
    url: String,
    client: Mutex<Option<Arc<Client>>>,
}

/// A parameter sent in text format, whatever the column's type.
#[derive(Debug)]
struct TextParam<'a>(Option<&'a str>);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

impl Postgres {
    pub(crate) fn new(url: &str) -> Result<Postgres, DbError> {
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| DbError::Rejected(format!("invalid PostgreSQL URL: {e}")))?;
        Ok(Postgres {
            url: url.to_string(),
            client: Mutex::new(None),
        })
    }

    async fn client(&self) -> Result<Arc<Client>, DbError> {
        {
            let g = self.client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = g.as_ref().filter(|c| !c.is_closed()) {
                return Ok(Arc::clone(c));
            }
        }
        let (client, conn) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(err)?;
        // The connection task ends when the client is dropped or the server goes away.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let client = Arc::new(client);
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&client));
        Ok(client)
    }

    pub(crate) async fn query(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<Rows, DbError> {
        let fut = async {
            let client = self.client().await?;
            let ps: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p.as_deref())).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let rows = client.query(sql.as_str(), &refs).await.map_err(err)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let mut r = Vec::with_capacity(row.len());
                for i in 0..row.len() {
                    r.push(row.try_get::<_, Option<String>>(i).map_err(err)?);
                }
                out.push(r);
            }
            Ok(out)
        };
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable("postgres: timed out".into())),
        }
    }

    pub(crate) async fn execute(
        &self,
        sql: String,
        params: Vec<Option<String>>,
    ) -> Result<u64, DbError> {
        let fut = async {
            let client = self.client().await?;
            let ps: Vec<TextParam<'_>> = params.iter().map(|p| TextParam(p.as_deref())).collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                ps.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            client.execute(sql.as_str(), &refs).await.map_err(err)
        };
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable("postgres: timed out".into())),
        }
    }
}

fn err(e: tokio_postgres::Error) -> DbError {
    match e.code().map(|c| c.code()) {
        // Connection exceptions, insufficient resources, operator intervention, serialization
        // failures and deadlocks pass; everything else the server refused stays refused.
        Some(code)
            if code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01" =>
        {
            DbError::Unavailable(format!("postgres: {}", describe(&e)))
        }
        Some(_) => DbError::Rejected(format!("postgres: {}", describe(&e))),
        None => DbError::Unavailable(format!("postgres: {}", describe(&e))),
    }
}

/// The server's message (tokio-postgres' Display says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match e.source() {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}
