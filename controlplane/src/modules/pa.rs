//! Module pa's blocking half: with `use_db`, the subscriptions and the publications kept in the
//! database are read back at start-up (before the shards take requests), so watchers keep
//! getting NOTIFYs, with the published documents, after a restart. Writes go through the server's queue of database writes (see
//! `dataplane::modules::pa`).

use std::sync::Arc;
use std::time::Duration;

use dataplane::modules::pa::{
    restore, restore_publications, PaConfig, PUBLICATION_COLUMNS, WATCHER_COLUMNS,
};
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
    let Some(cfg) = program.configs.get::<PaConfig>() else {
        return;
    };
    let (Some((url, table)), Some((_, pub_table))) = (cfg.db().cloned(), cfg.publications_db())
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
    // Publications first: the first NOTIFY to a restored watcher carries the published state.
    let job = Job::Db {
        url: url.clone(),
        table: pub_table.clone(),
        keys: Vec::new(),
        columns: PUBLICATION_COLUMNS.iter().map(|c| c.to_string()).collect(),
    };
    let d = dbs.clone();
    let r = rt.block_on(async move { tokio::time::timeout(LOAD_TIMEOUT, d.run(&job)).await });
    match r {
        Ok(JobResult::Rows(rows)) => {
            let n = restore_publications(shared, &rows);
            ser_log!(
                L_NOTICE,
                "pa: {n} publication(s) of table '{pub_table}' loaded from the database"
            );
        }
        Ok(JobResult::Failed(why)) => {
            ser_log!(L_ERR, "pa: stored publications not loaded from '{pub_table}': {why}")
        }
        Ok(_) => {}
        Err(_) => ser_log!(
            L_ERR,
            "pa: the database did not answer within {LOAD_TIMEOUT:?}: stored publications not loaded"
        ),
    }
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
