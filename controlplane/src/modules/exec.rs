//! Module exec's blocking half: runs `/bin/sh -c command` for [`Job::Exec`](dataplane::offload::Job)
//! in a bounded pool of its own threads, so a program that hangs holds one slot and nothing else
//! (DNS, database and other jobs go on; the shard only waits for its own parked script).
//!
//! - **Pool**: at most [`POOL`] programs at once; one more is refused at once (`Failed`, the call
//!   returns false and says so in the log) instead of queueing behind the hung ones.
//! - **Time**: the job's `time_to_kill` (module exec's parameter), else [`DEFAULT_LIMIT`]. The
//!   program runs in a process group of its own and the whole group is killed at the limit (a
//!   shell's children too, and whatever holds its output pipe open).
//! - **Output**: standard output is kept up to [`STDOUT_MAX`] bytes (exec_dset reads it), standard
//!   error up to [`STDERR_MAX`] (logged); the rest is read and dropped so the program never blocks
//!   on a full pipe.
//! - Standard input (the request for `exec_msg`) is written from a thread of its own: a program
//!   that does not read it neither blocks us nor fails the call.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dataplane::offload::JobResult;
use dataplane::ser_log;
use dataplane::shard::log::{L_INFO, L_WARN};

/// Most programs running at once.
pub const POOL: usize = 32;
/// How long a program may run when the script set no `time_to_kill` (SER let it run forever; a
/// bound keeps a forgotten program from holding its pool slot for good).
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(60);
/// Standard output kept.
pub const STDOUT_MAX: usize = 64 * 1024;
/// Standard error kept (for the log).
pub const STDERR_MAX: usize = 4 * 1024;

/// The pool: how many programs run now.
#[derive(Clone, Default)]
pub struct ExecPool {
    running: Arc<AtomicUsize>,
}

/// What one job asks for.
pub struct ExecJob {
    pub command: String,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Bytes>,
    pub limit: Option<Duration>,
}

impl ExecPool {
    /// Programs running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Runs `job` on a thread of the pool and calls `done` with its result; a full pool (or no
    /// thread to be had) is answered `Failed` at once.
    pub fn spawn(&self, job: ExecJob, done: impl FnOnce(JobResult) + Send + 'static) {
        let running = Arc::clone(&self.running);
        let taken = running.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < POOL).then_some(n + 1)
        });
        if taken.is_err() {
            ser_log!(
                L_WARN,
                "exec: {POOL} programs are running already: {:?} not started",
                job.command
            );
            done(JobResult::Failed(format!(
                "exec: pool full ({POOL} programs running)"
            )));
            return;
        }
        let r2 = Arc::clone(&running);
        let done = std::sync::Mutex::new(Some(done));
        let done = Arc::new(done);
        let d2 = Arc::clone(&done);
        let spawned = std::thread::Builder::new()
            .name("ser-exec".into())
            .spawn(move || {
                let result = run(&job);
                r2.fetch_sub(1, Ordering::AcqRel);
                if let Some(f) = d2.lock().ok().and_then(|mut g| g.take()) {
                    f(result);
                }
            });
        if let Err(e) = spawned {
            running.fetch_sub(1, Ordering::AcqRel);
            if let Some(f) = done.lock().ok().and_then(|mut g| g.take()) {
                f(JobResult::Failed(format!("exec: no thread: {e}")));
            }
        }
    }
}

/// Reads `r` to its end, keeping at most `max` bytes (the rest is drained and dropped).
fn read_bounded(mut r: impl Read, max: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn kill_group(child: &Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Runs one program to its end or its time limit (blocking).
pub fn run(job: &ExecJob) -> JobResult {
    let limit = job.limit.unwrap_or(DEFAULT_LIMIT);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&job.command)
        .stdin(if job.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in &job.env {
        cmd.env(k, v);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return JobResult::Failed(format!("exec {:?}: {e}", job.command)),
    };
    if let (Some(data), Some(mut pipe)) = (job.stdin.clone(), child.stdin.take()) {
        // A program that does not read its input closes the pipe: not an error for us.
        let _ = std::thread::Builder::new()
            .name("ser-exec-in".into())
            .spawn(move || {
                let _ = pipe.write_all(&data);
            });
    }
    let (otx, orx) = crossbeam_channel::bounded(1);
    if let Some(out) = child.stdout.take() {
        let _ = std::thread::Builder::new()
            .name("ser-exec-out".into())
            .spawn(move || {
                let _ = otx.send(read_bounded(out, STDOUT_MAX));
            });
    }
    let (etx, erx) = crossbeam_channel::bounded(1);
    if let Some(err) = child.stderr.take() {
        let _ = std::thread::Builder::new()
            .name("ser-exec-err".into())
            .spawn(move || {
                let _ = etx.send(read_bounded(err, STDERR_MAX));
            });
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() >= deadline => {
                kill_group(&child);
                let _ = child.wait();
                ser_log!(
                    L_WARN,
                    "exec: {:?} ran longer than {} s (time_to_kill): killed",
                    job.command,
                    limit.as_secs_f64()
                );
                return JobResult::Failed(format!(
                    "exec {:?}: killed after {limit:?}",
                    job.command
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return JobResult::Failed(format!("exec {:?}: {e}", job.command)),
        }
    };
    // The shell is done; a child it left behind may still hold the pipes: wait for the output
    // until the deadline, then kill what is left of the group.
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let stdout = match orx.recv_timeout(wait) {
        Ok(o) => o,
        Err(_) => {
            kill_group(&child);
            orx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
        }
    };
    if let Ok(err) = erx.recv_timeout(Duration::from_millis(100)) {
        if !err.is_empty() {
            ser_log!(
                L_INFO,
                "exec: {:?} wrote on stderr: {}",
                job.command,
                String::from_utf8_lossy(&err).trim_end()
            );
        }
    }
    JobResult::Exec {
        // Killed by a signal: no exit code, and not a success.
        status: status.code().unwrap_or(-1),
        stdout: Bytes::from(stdout),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(command: &str, limit: Option<Duration>) -> ExecJob {
        ExecJob {
            command: command.into(),
            env: vec![("X".into(), "y".into())],
            stdin: Some(Bytes::from_static(b"hello\n")),
            limit,
        }
    }

    #[test]
    fn runs_with_env_and_stdin_and_reports_the_status() {
        assert_eq!(
            run(&job("read line; echo \"$X:$line\"", None)),
            JobResult::Exec {
                status: 0,
                stdout: Bytes::from_static(b"y:hello\n")
            }
        );
        assert!(matches!(
            run(&job("exit 3", None)),
            JobResult::Exec { status: 3, .. }
        ));
    }

    #[test]
    fn a_program_over_its_time_is_killed_with_its_children() {
        let t = Instant::now();
        let r = run(&job(
            "sleep 30; echo late",
            Some(Duration::from_millis(300)),
        ));
        assert!(matches!(r, JobResult::Failed(_)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // A background child holding stdout open does not keep us waiting past the limit.
        let t = Instant::now();
        let r = run(&job(
            "(sleep 30 &) ; echo early",
            Some(Duration::from_millis(500)),
        ));
        assert!(t.elapsed() < Duration::from_secs(5), "{r:?}");
    }

    #[test]
    fn output_is_bounded_and_a_program_ignoring_stdin_is_fine() {
        let r = run(&ExecJob {
            stdin: Some(Bytes::from(vec![b'x'; 1 << 20])),
            ..job("head -c 200000 /dev/zero", None)
        });
        let JobResult::Exec { status: 0, stdout } = r else {
            panic!("{r:?}")
        };
        assert_eq!(stdout.len(), STDOUT_MAX);
    }

    #[test]
    fn a_full_pool_refuses_at_once() {
        let pool = ExecPool::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        for _ in 0..POOL {
            let tx = tx.clone();
            pool.spawn(job("sleep 2", Some(Duration::from_secs(5))), move |r| {
                let _ = tx.send(r);
            });
        }
        let tx2 = tx.clone();
        pool.spawn(job("true", None), move |r| {
            let _ = tx2.send(r);
        });
        let first = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        assert!(
            matches!(first, JobResult::Failed(ref e) if e.contains("pool full")),
            "{first:?}"
        );
        for _ in 0..POOL {
            assert!(matches!(
                rx.recv_timeout(Duration::from_secs(10)).unwrap(),
                JobResult::Exec { status: 0, .. }
            ));
        }
        assert_eq!(pool.running(), 0);
    }
}
