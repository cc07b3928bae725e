//! Module vm's blocking half: writing a request's lines to the media server's FIFO
//! ([`Job::WriteFifo`](dataplane::offload::Job::WriteFifo)), as SER's vm did — open without
//! blocking (no reader: the application is not running, the call fails at once), one write.

use std::io::Write;
use std::time::{Duration, Instant};

use dataplane::offload::JobResult;
use rustix::fs::{Mode, OFlags};

/// How long a full FIFO may keep a write waiting.
pub const WRITE_WAIT: Duration = Duration::from_secs(1);

/// Writes `data` to the FIFO at `path` (blocking; a full FIFO is waited for at most a second).
pub fn write_fifo(path: &str, data: &[u8]) -> JobResult {
    let fd = match rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NXIO) => {
            return JobResult::Failed(format!(
                "{path}: nobody reads this FIFO (is the media server running?)"
            ))
        }
        Err(e) => return JobResult::Failed(format!("{path}: {e}")),
    };
    let mut f = std::fs::File::from(fd);
    match std::fs::metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()) => {}
        _ => return JobResult::Failed(format!("{path}: not a FIFO")),
    }
    let until = Instant::now() + WRITE_WAIT;
    let mut rest = data;
    while !rest.is_empty() {
        match f.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return JobResult::Failed(format!("{path}: write failed: {e}")),
        }
    }
    JobResult::Rows(Vec::new())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_to_a_reader_and_fails_without_one() {
        let dir = std::env::temp_dir().join(format!("ser-vmfifo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("am_fifo");
        let _ = std::fs::remove_file(&path);
        rustix::fs::mkfifoat(rustix::fs::CWD, &path, Mode::from_raw_mode(0o600)).unwrap();
        let p = path.to_str().unwrap().to_string();
        assert!(
            matches!(write_fifo(&p, b"x\n"), JobResult::Failed(e) if e.contains("nobody reads"))
        );
        let reader =
            rustix::fs::open(&path, OFlags::RDONLY | OFlags::NONBLOCK, Mode::empty()).unwrap();
        assert_eq!(write_fifo(&p, b"invite\nbob\n"), JobResult::Rows(vec![]));
        let mut got = String::new();
        std::fs::File::from(reader)
            .read_to_string(&mut got)
            .unwrap();
        assert_eq!(got, "invite\nbob\n");
        assert!(matches!(
            write_fifo("/nonexistent/fifo", b"x"),
            JobResult::Failed(_)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
