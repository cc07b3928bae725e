//! The job runner: the controlplane side of `offload`. Shards hand over blocking work ([`Job`]) and
//! carry on; a small pool of controlplane threads does it and delivers each [`JobResult`] back to the
//! shard that asked, which resumes the parked script.
//!
//! - `Resolve` (RFC 3263) and `Dns` (A/AAAA): answered by the [`SipResolver`] on one DNS thread
//!   (a tokio runtime, every lookup a task), which also fills the shared [`DnsCache`] the shards
//!   read; without a resolver (no usable resolv.conf) the system resolver answers A/AAAA.
//!   Reverse (PTR) lookups go to the resolver too; without one they are answered "not found".
//! - `Exec`: `/bin/sh -c command` with the given environment and standard input, on the exec pool
//!   ([`crate::modules::exec`]: bounded in number, time and output), so a hung program holds
//!   neither a worker here nor any other job.
//! - `Radius`: the RADIUS client ([`crate::modules::radius`], its own thread and tasks).
//! - `Db`/`DbWrite`: run as tasks on the database runtime ([`crate::db::DbService`]) through
//!   [`crate::db::Databases`] (one pool per URL; `""` = the server's default database). Without a
//!   database service they are answered `Failed`.
//!
//! Every job gets an answer, so no script stays parked forever.

use std::net::{IpAddr, ToSocketAddrs};
use std::thread::JoinHandle;

use std::sync::Arc;

use crossbeam_channel::Receiver;
use dataplane::dns::{literal_target, DnsCache, SipTarget};
use dataplane::offload::{DnsQuery, Job, JobResult};
use dataplane::proxy::server::JobRequest;

use crate::db::Databases;
use crate::dns::SipResolver;

/// DNS for the job runner: the RFC 3263 resolver and the cache it fills.
#[derive(Clone)]
pub struct Dns {
    pub resolver: Arc<SipResolver>,
    pub cache: Arc<DnsCache>,
}

/// Databases for the job runner: the runtime database tasks run on and the pools.
#[derive(Clone)]
pub struct DbJobs {
    pub rt: tokio::runtime::Handle,
    pub dbs: Databases,
}

/// DNS jobs that may wait for the resolver thread, and lookups it runs at once.
const DNS_QUEUE: usize = 4096;
const DNS_IN_FLIGHT: usize = 1024;

/// Starts `threads` workers taking jobs from `rx`; `deliver(shard, id, result)` hands each answer
/// back. With `dns`, DNS jobs go to one extra thread running the resolver; with `db`, database
/// jobs become tasks on its runtime. Everything stops when every sender of `rx` is gone.
pub fn start<F>(
    threads: usize,
    rx: Receiver<JobRequest>,
    deliver: F,
    dns: Option<Dns>,
    db: Option<DbJobs>,
) -> Vec<JoinHandle<()>>
where
    F: Fn(usize, u64, JobResult) + Send + Sync + Clone + 'static,
{
    let mut handles = Vec::new();
    let dns_tx = dns.and_then(|d| {
        // Bounded queue and bounded lookups in flight: a resolver that does not answer costs
        // at most this much, and further lookups fail at once (the script sees a DNS failure).
        let (tx, mut drx) = tokio::sync::mpsc::channel::<JobRequest>(DNS_QUEUE);
        let deliver = deliver.clone();
        let h = std::thread::Builder::new()
            .name("ser-dns".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        // Without a runtime every DNS job still gets an answer.
                        while let Some(req) = drx.blocking_recv() {
                            deliver(req.shard, req.id, JobResult::Failed(format!("dns: {e}")));
                        }
                        return;
                    }
                };
                rt.block_on(async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    while let Some(req) = drx.recv().await {
                        while tasks.len() >= DNS_IN_FLIGHT {
                            let _ = tasks.join_next().await;
                        }
                        let d = d.clone();
                        let deliver = deliver.clone();
                        tasks.spawn(async move {
                            let result = resolve(&d, &req.job).await;
                            deliver(req.shard, req.id, result);
                        });
                        // Reap finished lookups so the set does not grow without bound.
                        while tasks.try_join_next().is_some() {}
                    }
                    while tasks.join_next().await.is_some() {}
                });
            })
            .ok()?;
        handles.push(h);
        Some(tx)
    });
    let exec_pool = crate::modules::exec::ExecPool::default();
    let relay = crate::modules::nathelper::RelayRunner::start();
    for i in 0..threads.max(1) {
        let exec_pool = exec_pool.clone();
        let relay = relay.clone();
        let rx = rx.clone();
        let deliver = deliver.clone();
        let dns_tx = dns_tx.clone();
        let db = db.clone();
        let h = std::thread::Builder::new()
            .name(format!("ser-jobs-{i}"))
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    if let (Some(db), Job::Db { .. } | Job::DbWrite(_)) = (&db, &req.job) {
                        // Each DB job is a task: a slow database delays only its own scripts.
                        let dbs = db.dbs.clone();
                        let deliver = deliver.clone();
                        db.rt.spawn(async move {
                            let result = dbs.run(&req.job).await;
                            deliver(req.shard, req.id, result);
                        });
                        continue;
                    }
                    if let Job::Exec {
                        command,
                        env,
                        stdin,
                        time_to_kill,
                    } = req.job
                    {
                        // The exec pool's thread answers when the program ends (or is killed).
                        let deliver = deliver.clone();
                        let (shard, id) = (req.shard, req.id);
                        exec_pool.spawn(
                            crate::modules::exec::ExecJob {
                                command,
                                env,
                                stdin,
                                limit: time_to_kill,
                            },
                            move |r| deliver(shard, id, r),
                        );
                        continue;
                    }
                    if let (Some(relay), Job::RtpRelay { .. }) = (&relay, &req.job) {
                        // nathelper: the relay thread answers, bounded by the job's timeout.
                        let deliver = deliver.clone();
                        let (shard, id) = (req.shard, req.id);
                        relay.submit(req.job, Box::new(move |r| deliver(shard, id, r)));
                        continue;
                    }
                    if let Job::Jabber(j) = req.job {
                        // The gateway's connection answers when the command is done.
                        let deliver = deliver.clone();
                        let (shard, id) = (req.shard, req.id);
                        crate::modules::jabber::submit(*j, move |r| deliver(shard, id, r));
                        continue;
                    }
                    if let Job::Radius(r) = req.job {
                        let deliver = deliver.clone();
                        let (shard, id) = (req.shard, req.id);
                        crate::modules::radius::submit(r, move |res| deliver(shard, id, res));
                        continue;
                    }
                    if let (
                        Some(tx),
                        Job::Resolve { .. } | Job::Dns { .. } | Job::EnumQuery { .. },
                    ) = (&dns_tx, &req.job)
                    {
                        // The DNS thread answers; if it is gone, answer here.
                        match tx.try_send(req) {
                            Ok(()) => continue,
                            Err(tokio::sync::mpsc::error::TrySendError::Full(req)) => {
                                // The resolver is that far behind: a failed lookup, at once.
                                let e = "dns: too many lookups in flight".to_string();
                                deliver(req.shard, req.id, JobResult::Failed(e));
                            }
                            Err(tokio::sync::mpsc::error::TrySendError::Closed(req)) => {
                                deliver(req.shard, req.id, run(&req.job));
                            }
                        }
                        continue;
                    }
                    let result = run(&req.job);
                    deliver(req.shard, req.id, result);
                }
            });
        // Spawning fails only when the OS is out of threads: run without this worker.
        if let Ok(h) = h {
            handles.push(h);
        }
    }
    handles
}

/// A DNS job through the RFC 3263 resolver (filling the cache).
async fn resolve(d: &Dns, job: &Job) -> JobResult {
    match job {
        Job::Resolve {
            name,
            port,
            transport,
            secure,
        } => match d
            .resolver
            .resolve_cached(&d.cache, name, *port, *transport, *secure)
            .await
        {
            Ok(t) => JobResult::Targets(t.to_vec()),
            Err(e) => JobResult::Failed(format!("{name}: {e}")),
        },
        // A/AAAA only: an explicit port skips NAPTR/SRV (port 0 marks "addresses only").
        Job::Dns {
            name,
            query: DnsQuery::Addrs,
        } => match d
            .resolver
            .resolve_cached(&d.cache, name, Some(0), None, false)
            .await
        {
            Ok(t) => {
                let mut ips: Vec<IpAddr> = t.iter().map(|t| t.addr.ip()).collect();
                ips.dedup();
                JobResult::Addrs(ips)
            }
            Err(e) => JobResult::Failed(format!("{name}: {e}")),
        },
        Job::Dns {
            name,
            query: DnsQuery::Reverse(ip),
        } => match d.resolver.reverse(*ip).await {
            Ok(names) => JobResult::Names(names),
            Err(e) => JobResult::Failed(format!("{name}: {e}")),
        },
        Job::EnumQuery { number, domain } => {
            crate::modules::r#enum::query(&d.resolver, number, domain).await
        }
        other => run(other),
    }
}

/// Does one job (blocking).
pub fn run(job: &Job) -> JobResult {
    match job {
        Job::Dns { name, query } => dns(name, query),
        Job::Resolve {
            name,
            port,
            transport,
            secure,
        } => match dns(name, &DnsQuery::Addrs) {
            // No RFC 3263 resolver: the system's A/AAAA answer on the default or given port.
            JobResult::Addrs(ips) => JobResult::Targets(
                ips.into_iter()
                    .map(|ip| literal_target(ip, *port, *transport, *secure))
                    .collect::<Vec<SipTarget>>(),
            ),
            other => other,
        },
        Job::Exec {
            command,
            env,
            stdin,
            time_to_kill,
        } => crate::modules::exec::run(&crate::modules::exec::ExecJob {
            command: command.clone(),
            env: env.clone(),
            stdin: stdin.clone(),
            limit: *time_to_kill,
        }),
        Job::WriteFifo { path, data } => crate::modules::vm::write_fifo(path, data),
        Job::Db { table, .. } => {
            JobResult::Failed(format!("no database service running (table {table})"))
        }
        Job::DbWrite(_) => JobResult::Failed("no database service running".into()),
        Job::EnumQuery { domain, .. } => {
            JobResult::Failed(format!("{domain}: no DNS resolver for NAPTR lookups"))
        }
        Job::Radius(r) => crate::modules::radius::run_blocking(r),
        Job::RtpRelay { .. } => crate::modules::nathelper::run(job),
        Job::Jabber(_) => JobResult::Failed("jabber: the gateway is not running".into()),
    }
}

fn dns(name: &str, query: &DnsQuery) -> JobResult {
    match query {
        DnsQuery::Addrs | DnsQuery::Srv | DnsQuery::Naptr => {
            // getaddrinfo needs a port; it is ignored.
            match (name, 0u16).to_socket_addrs() {
                Ok(it) => {
                    let mut v: Vec<IpAddr> = it.map(|a| a.ip()).collect();
                    v.dedup();
                    if v.is_empty() {
                        JobResult::Failed(format!("{name}: no addresses"))
                    } else {
                        JobResult::Addrs(v)
                    }
                }
                Err(e) => JobResult::Failed(format!("{name}: {e}")),
            }
        }
        DnsQuery::Reverse(_) => JobResult::Failed("reverse DNS is not available yet".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dns_localhost_and_failure() {
        match run(&Job::Dns {
            name: "localhost".into(),
            query: DnsQuery::Addrs,
        }) {
            JobResult::Addrs(a) => assert!(a.iter().all(|ip| ip.is_loopback())),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&Job::Dns {
                name: "no-such-name.invalid".into(),
                query: DnsQuery::Addrs
            }),
            JobResult::Failed(_)
        ));
    }

    #[test]
    fn workers_answer_every_job() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (dtx, drx) = crossbeam_channel::unbounded();
        let handles = start(
            2,
            rx,
            move |shard, id, r| {
                let _ = dtx.send((shard, id, r));
            },
            None,
            None,
        );
        for id in 0..4 {
            tx.send(JobRequest {
                shard: 1,
                id,
                job: Job::Exec {
                    command: "true".into(),
                    env: vec![],
                    stdin: None,
                    time_to_kill: None,
                },
            })
            .unwrap();
        }
        drop(tx);
        let mut ids: Vec<u64> = (0..4).map(|_| drx.recv().unwrap().1).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        for h in handles {
            h.join().unwrap();
        }
    }
}
