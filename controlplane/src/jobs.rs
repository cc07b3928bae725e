//! The job runner: the controlplane side of `offload`. Shards hand over blocking work ([`Job`]) and
//! carry on; a small pool of controlplane threads does it and delivers each [`JobResult`] back to the
//! shard that asked, which resumes the parked script.
//!
//! - `Dns`: address lookups (A/AAAA through the system resolver; reverse lookups are answered
//!   "not found" until the RFC 3263 resolver is wired in).
//! - `Exec`: `/bin/sh -c command` with the given environment and standard input, bounded in time.
//! - `Db`: answered `Failed` until the storage layer exists (issue 6).
//!
//! Every job gets an answer, so no script stays parked forever.

use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use dataplane::offload::{DnsQuery, Job, JobResult};
use dataplane::proxy::server::JobRequest;

/// How long an `exec` command may run before it is killed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `threads` workers taking jobs from `rx`; `deliver(shard, id, result)` hands each answer
/// back. The workers stop when every sender of `rx` is gone.
pub fn start<F>(threads: usize, rx: Receiver<JobRequest>, deliver: F) -> Vec<JoinHandle<()>>
where
    F: Fn(usize, u64, JobResult) + Send + Sync + Clone + 'static,
{
    (0..threads.max(1))
        .map(|i| {
            let rx = rx.clone();
            let deliver = deliver.clone();
            std::thread::Builder::new()
                .name(format!("ser-jobs-{i}"))
                .spawn(move || {
                    while let Ok(req) = rx.recv() {
                        let result = run(&req.job);
                        deliver(req.shard, req.id, result);
                    }
                })
                // Spawning fails only when the OS is out of threads: run without this worker.
                .ok()
        })
        .flatten()
        .collect()
}

/// Does one job (blocking).
pub fn run(job: &Job) -> JobResult {
    match job {
        Job::Dns { name, query } => dns(name, query),
        Job::Exec {
            command,
            env,
            stdin,
        } => exec(command, env, stdin.as_ref()),
        Job::Db { table, .. } => {
            JobResult::Failed(format!("no database layer yet (table {table})"))
        }
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

fn exec(command: &str, env: &[(String, String)], stdin: Option<&Bytes>) -> JobResult {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return JobResult::Failed(format!("exec {command:?}: {e}")),
    };
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A command that does not read its input closes the pipe: not an error for us.
        let _ = pipe.write_all(data);
    }
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > EXEC_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return JobResult::Failed(format!("exec {command:?}: timed out"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return JobResult::Failed(format!("exec {command:?}: {e}")),
        }
    }
    match child.wait_with_output() {
        Ok(out) => JobResult::Exec {
            status: out.status.code().unwrap_or(-1),
            stdout: Bytes::from(out.stdout),
        },
        Err(e) => JobResult::Failed(format!("exec {command:?}: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exec_runs_with_env_and_stdin() {
        let r = run(&Job::Exec {
            command: "read line; echo \"$X:$line\"".into(),
            env: vec![("X".into(), "y".into())],
            stdin: Some(Bytes::from_static(b"hello\n")),
        });
        assert_eq!(
            r,
            JobResult::Exec {
                status: 0,
                stdout: Bytes::from_static(b"y:hello\n")
            }
        );
        assert!(matches!(
            run(&Job::Exec {
                command: "exit 3".into(),
                env: vec![],
                stdin: None
            }),
            JobResult::Exec { status: 3, .. }
        ));
    }

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
        let handles = start(2, rx, move |shard, id, r| {
            let _ = dtx.send((shard, id, r));
        });
        for id in 0..4 {
            tx.send(JobRequest {
                shard: 1,
                id,
                job: Job::Exec {
                    command: "true".into(),
                    env: vec![],
                    stdin: None,
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
