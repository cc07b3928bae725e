//! The client side of SER's FIFO protocol (Admin Guide 4.2).
//!
//! A request is written into the server's FIFO (`SER_FIFO`, default `/tmp/ser_fifo`) in one write:
//! `:command:reply_fifo\n`, one line per parameter, then an empty line. The server opens
//! `/tmp/<reply_fifo>` for writing, writes the reply (first line `<code> <reason>`, e.g.
//! `200 ok`, then the data lines) and closes it. The reply FIFO is created (mkfifo) before the
//! request is sent and removed afterwards.
//!
//! Invariants: nothing waits forever — opening the server FIFO does not block when no server reads
//! it (ENXIO → "is ser running?"), and a reply that does not come within the timeout unblocks the
//! reader by opening the reply FIFO ourselves.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where SER's FIFO is when `SER_FIFO` is not set.
pub const DEFAULT_FIFO: &str = "/tmp/ser_fifo";

/// The server's FIFO path.
pub fn server_fifo() -> PathBuf {
    std::env::var_os("SER_FIFO")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_FIFO), PathBuf::from)
}

/// A FIFO reply: the status line's code, its reason, and the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: String,
    pub body: String,
}

impl Reply {
    /// 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// What SER's `sc` printed: the body when the status line is `200 ok`, else everything.
    pub fn printable(&self) -> String {
        if self.status.eq_ignore_ascii_case("200 ok") {
            self.body.clone()
        } else if self.body.is_empty() {
            format!("{}\n", self.status)
        } else {
            format!("{}\n{}", self.status, self.body)
        }
    }
}

/// Removes the reply FIFO when the call ends, whatever happens.
struct Unlink(PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends `command` with `params` to the server FIFO `fifo` and returns its reply.
pub fn call(
    fifo: &Path,
    command: &str,
    params: &[&str],
    timeout: Duration,
) -> Result<Reply, String> {
    if command.is_empty() || command.contains([':', '\n']) {
        return Err(format!("invalid FIFO command name {command:?}"));
    }
    if let Some(p) = params.iter().find(|p| p.contains('\n') || p.is_empty()) {
        return Err(format!(
            "invalid FIFO parameter {p:?} (empty or containing a line break)"
        ));
    }
    match std::fs::metadata(fifo) {
        Ok(m) if m.file_type().is_fifo() => {}
        Ok(_) => return Err(format!("{} is not a FIFO", fifo.display())),
        Err(e) => {
            return Err(format!(
                "cannot open ser's FIFO {}: {e}; make sure the config has fifo=\"{}\" (or set SER_FIFO)",
                fifo.display(),
                fifo.display()
            ))
        }
    }
    let name = format!(
        "ser_receiver_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let reply_path = Path::new("/tmp").join(&name);
    let status = std::process::Command::new("mkfifo")
        .arg("-m")
        .arg("0622")
        .arg(&reply_path)
        .status()
        .map_err(|e| format!("cannot run mkfifo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cannot create the reply FIFO {}",
            reply_path.display()
        ));
    }
    let _unlink = Unlink(reply_path.clone());

    // The reader waits for the server to open the reply FIFO; started before the request is sent
    // so the reply can never be missed.
    let (tx, rx) = crossbeam_channel::bounded::<std::io::Result<Vec<u8>>>(1);
    let rp = reply_path.clone();
    let reader = std::thread::spawn(move || {
        let r = std::fs::File::open(&rp).and_then(|mut f| {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map(|_| buf)
        });
        let _ = tx.send(r);
    });

    let mut req = format!(":{command}:{name}\n");
    for p in params {
        req.push_str(p);
        req.push('\n');
    }
    req.push('\n');
    let sent = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fifo)
        .and_then(|mut f| f.write_all(req.as_bytes()));
    let outcome = match sent {
        Err(e) => Err(if e.raw_os_error() == Some(libc::ENXIO) {
            format!(
                "nobody reads ser's FIFO {}: is ser running with fifo=\"{}\"?",
                fifo.display(),
                fifo.display()
            )
        } else {
            format!("cannot write to ser's FIFO {}: {e}", fifo.display())
        }),
        Ok(()) => match rx.recv_timeout(timeout) {
            Ok(Ok(bytes)) => parse(&bytes),
            Ok(Err(e)) => Err(format!("reading the reply FIFO: {e}")),
            Err(_) => Err(format!(
                "no reply from ser within {}s (command {command})",
                timeout.as_secs()
            )),
        },
    };
    if outcome.is_err() {
        // Unblock the reader if it waits for a writer: open (and close) the write end. It may not
        // have reached its open yet, so try for a while; a reader still stuck then is left behind
        // (the process is about to exit).
        for _ in 0..100 {
            if reader.is_finished() {
                break;
            }
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&reply_path);
            std::thread::sleep(Duration::from_millis(10));
        }
        if !reader.is_finished() {
            return outcome;
        }
    }
    let _ = reader.join();
    outcome
}

fn parse(bytes: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(bytes);
    let (status, body) = match text.split_once('\n') {
        Some((s, b)) => (s.trim_end_matches('\r'), b),
        None => (text.trim_end_matches(['\r', '\n']), ""),
    };
    if status.is_empty() {
        return Err("empty reply from ser".into());
    }
    let code = status
        .split_whitespace()
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("malformed reply status line {status:?}"))?;
    Ok(Reply {
        code,
        status: status.to_string(),
        body: body.to_string(),
    })
}
