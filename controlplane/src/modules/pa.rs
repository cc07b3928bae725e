//! Module pa's blocking half: with `use_db`, the subscriptions kept in the database are read back
//! at start-up (before the shards take requests), so watchers keep getting NOTIFYs after a
//! restart. Writes go through the server's queue of database writes (see
//! `dataplane::modules::pa`).

use std::sync::Arc;
use std::time::Duration;

use dataplane::modules::pa::{restore, PaConfig, WATCHER_COLUMNS};
use dataplane::offload::{Job, JobResult};
use dataplane::proxy::server::Shared;
use dataplane::ser_log;
use dataplane::shard::log::{L_ERR, L_NOTICE};

use crate::db::Databases;

/// How long start-up waits for the database at most.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the stored subscriptions of the running program's pa (nothing without `use_db`).
pub fn load(shared: &Arc<Shared>, rt: Option<tokio::runtime::Handle>, dbs: &Databases) {
    let program = shared.program.load_full();
    let Some((url, table)) = program
        .configs
        .get::<PaConfig>()
        .and_then(|c| c.db().cloned())
    else {
        return;
    };
    let Some(rt) = rt else {
        ser_log!(
            L_ERR,
            "pa: no database runtime; stored subscriptions not loaded"
        );
        return;
    };
    let job = Job::Db {
        url,
        table: table.clone(),
        keys: Vec::new(),
        columns: WATCHER_COLUMNS.iter().map(|c| c.to_string()).collect(),
    };
    let dbs = dbs.clone();
    let r = rt.block_on(async move { tokio::time::timeout(LOAD_TIMEOUT, dbs.run(&job)).await });
    match r {
        Ok(JobResult::Rows(rows)) => {
            let n = restore(shared, &rows);
            ser_log!(
                L_NOTICE,
                "pa: {n} subscription(s) of table '{table}' loaded from the database"
            );
        }
        Ok(JobResult::Failed(why)) => {
            ser_log!(L_ERR, "pa: stored subscriptions not loaded from '{table}': {why}")
        }
        Ok(_) => {}
        Err(_) => ser_log!(
            L_ERR,
            "pa: the database did not answer within {LOAD_TIMEOUT:?}: stored subscriptions not loaded"
        ),
    }
}
