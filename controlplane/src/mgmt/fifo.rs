//! SER's FIFO server (Admin Guide 4.2; SER 0.8.11 `fifo_server.c`).
//!
//! Protocol, as serctl, serweb's `write2fifo` and the guide's shell scripts speak it:
//! - a request is written to the FIFO (`fifo` option / `-i`) in one write: the line
//!   `:<command>:<reply_fifo>`, the command's parameter lines, and an empty line;
//!   `t_uac_dlg`'s framing is its own (see [`Framing::UacDlg`]);
//! - `<reply_fifo>` is a file name in `/tmp/` (no `/`, `\` or `.` allowed: no directory
//!   changes); the reply is written there: `"<code> <reason>\n"` then the body lines. With an
//!   empty name (`:cmd:`) the command runs and no reply is written;
//! - an unknown command answers `500 command 'x' not available` (and its lines are skipped);
//! - lines are right-trimmed of CR, LF, blanks and tabs; empty lines between requests are skipped;
//!   a line longer than [`MAX_LINE`] spoils its request (logged, skipped up to the empty line).
//!
//! The FIFO is created with `fifo_mode` if missing (an existing FIFO is reused; an existing
//! non-FIFO file is an error) and opened read-write, so the server never sees end-of-file
//! between writers. The reading is sequential; each request then runs as its own task and its
//! reply is written by that task (open non-blocking, retried while the client has not yet
//! opened its end, for up to [`REPLY_OPEN_WAIT`]; the write itself is bounded by
//! [`REPLY_WRITE_TIMEOUT`]), so a client that never reads cannot stall the server.
//!
//! [`Parser`] is the protocol without I/O (lines in, requests out); [`serve`] does the I/O.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dataplane::ser_log;
use dataplane::shard::log::{L_DBG, L_ERR, L_INFO, L_WARN};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{Framing, Registry};

/// Longest request line accepted (SER: `MAX_FIFO_COMMAND`/`BUF_SIZE`-sized buffers).
pub const MAX_LINE: usize = 8192;
/// Most parameter lines in one request.
pub const MAX_LINES: usize = 4096;
/// Directory of reply FIFOs (SER's `FIFO_DIR`).
pub const REPLY_DIR: &str = "/tmp/";
/// How long to wait for a client to open its reply FIFO.
pub const REPLY_OPEN_WAIT: Duration = Duration::from_secs(2);
/// How long a reply write may take.
pub const REPLY_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: String,
    /// Full path of the reply FIFO; None: no reply wanted.
    pub reply_to: Option<PathBuf>,
    pub params: Vec<String>,
}

/// What one line completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A request to run.
    Request(Request),
    /// A request that cannot run; its reply file (if known) gets `reply`.
    Reject {
        reply_to: Option<PathBuf>,
        reply: super::Reply,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Idle,
    /// Plain parameter lines up to the empty line.
    Lines,
    /// t_uac_dlg, t_reply: the lines before the headers (three, four).
    UacFirst,
    UacHeaders,
    UacBody,
    /// Skipping a spoilt request up to its empty line.
    Skip,
}

/// The FIFO protocol without I/O: feed it lines, get requests.
#[derive(Debug)]
pub struct Parser {
    stage: Stage,
    current: Option<Request>,
    /// Lines before the headers of a t_uac_dlg / t_reply request.
    first: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser {
            stage: Stage::Idle,
            current: None,
            first: 3,
        }
    }
}

/// SER's `trim_filename`: a bare name under [`REPLY_DIR`].
pub fn reply_path(name: &str) -> Option<PathBuf> {
    if name.contains(['.', '/', '\\']) || name.contains(char::is_whitespace) {
        return None;
    }
    Some(Path::new(REPLY_DIR).join(name))
}

fn trim_right(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&c| !matches!(c, b'\n' | b'\r' | b' ' | b'\t'))
        .map_or(0, |p| p + 1);
    line.get(..end).unwrap_or(&[])
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feeds one line (with or without its line end). `too_long` marks a line that was cut at
    /// [`MAX_LINE`]. `framing` tells how a command's parameters are delimited.
    pub fn feed(
        &mut self,
        raw: &[u8],
        too_long: bool,
        framing: impl Fn(&str) -> Framing,
    ) -> Option<Event> {
        let line = String::from_utf8_lossy(trim_right(raw)).into_owned();
        if too_long {
            ser_log!(L_ERR, "fifo: request line too long");
            let reply_to = self.current.take().and_then(|r| r.reply_to);
            self.stage = if line.is_empty() {
                Stage::Idle
            } else {
                Stage::Skip
            };
            return Some(Event::Reject {
                reply_to,
                reply: super::Reply::status(400, "request line too long"),
            });
        }
        match self.stage {
            Stage::Idle => self.command_line(&line, framing),
            Stage::Skip => {
                if line.is_empty() {
                    self.stage = Stage::Idle;
                }
                None
            }
            Stage::Lines => {
                if line.is_empty() {
                    return self.finish();
                }
                self.push(line)
            }
            Stage::UacFirst => {
                let r = self.push(line);
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.params.len() >= self.first)
                {
                    self.stage = Stage::UacHeaders;
                }
                r
            }
            Stage::UacHeaders => {
                if line.is_empty() || line == "." {
                    self.stage = Stage::UacBody;
                    return self.push(".".into());
                }
                self.push(line)
            }
            Stage::UacBody => {
                if line == "." {
                    return self.finish();
                }
                self.push(line)
            }
        }
    }

    fn push(&mut self, line: String) -> Option<Event> {
        let cur = self.current.as_mut()?;
        if cur.params.len() >= MAX_LINES {
            let reply_to = self.current.take().and_then(|r| r.reply_to);
            self.stage = Stage::Skip;
            return Some(Event::Reject {
                reply_to,
                reply: super::Reply::status(400, "too many parameter lines"),
            });
        }
        cur.params.push(line);
        None
    }

    fn finish(&mut self) -> Option<Event> {
        self.stage = Stage::Idle;
        self.current.take().map(Event::Request)
    }

    fn command_line(&mut self, line: &str, framing: impl Fn(&str) -> Framing) -> Option<Event> {
        if line.is_empty() {
            return None;
        }
        let spoilt = |s: &mut Self, why: &str| {
            ser_log!(L_ERR, "fifo: {why}: {line:.40}");
            s.stage = Stage::Skip;
            None
        };
        let Some(rest) = line.strip_prefix(':') else {
            return spoilt(self, "command must begin with ':'");
        };
        let Some((command, file)) = rest.split_once(':') else {
            return spoilt(self, "file separator missing");
        };
        if command.is_empty() {
            return spoilt(self, "empty command");
        }
        let reply_to = if file.is_empty() {
            None
        } else {
            match reply_path(file) {
                Some(p) => Some(p),
                None => return spoilt(self, "forbidden reply file name"),
            }
        };
        let req = Request {
            command: command.to_string(),
            reply_to,
            params: Vec::new(),
        };
        self.stage = match framing(command) {
            Framing::Lines => Stage::Lines,
            Framing::UacDlg => {
                self.first = 3;
                Stage::UacFirst
            }
            Framing::TReply => {
                self.first = 4;
                Stage::UacFirst
            }
        };
        self.current = Some(req);
        None
    }
}

/// Creates the FIFO at `path` with `mode` unless a FIFO is already there.
pub fn create(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(()),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a FIFO", path.display()),
        )),
        Err(_) => {
            rustix::fs::mkfifoat(
                rustix::fs::CWD,
                path,
                rustix::fs::Mode::from_raw_mode(mode & 0o7777),
            )
            .map_err(io::Error::from)?;
            // mkfifo honours the umask; fifo_mode is meant as given.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        }
    }
}

/// Serves the FIFO at `path` until the task is dropped.
pub async fn serve(path: PathBuf, registry: Arc<Registry>) -> io::Result<()> {
    let rx = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(&path)?;
    ser_log!(L_INFO, "fifo server up at {}", path.display());
    let mut reader = BufReader::new(rx);
    let mut parser = Parser::new();
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            // Cannot happen with our own write end open; avoid spinning if it does.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let too_long = buf.len() > MAX_LINE && buf.last() != Some(&b'\n');
        if too_long {
            // Drop the rest of the long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let n = (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)
                    .await?;
                if n == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
        }
        let ev = parser.feed(&buf, too_long, |c| registry.framing(c));
        match ev {
            None => {}
            Some(Event::Reject {
                reply_to: Some(p),
                reply,
            }) => {
                tokio::spawn(async move { write_reply(&p, reply.to_fifo()).await });
            }
            Some(Event::Reject { reply_to: None, .. }) => {}
            Some(Event::Request(req)) => {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move {
                    ser_log!(L_DBG, "fifo: command {}", req.command);
                    let reply = if let Some(refused) = registry.refusal(&req.command) {
                        ser_log!(L_ERR, "fifo: command {} is not available", req.command);
                        refused
                    } else {
                        registry.call(&req.command, req.params).await
                    };
                    if let Some(p) = req.reply_to {
                        write_reply(&p, reply.to_fifo()).await;
                    }
                });
            }
        }
    }
}

/// Writes `text` to the client's reply FIFO (see the module doc for the waits).
pub async fn write_reply(path: &Path, text: String) {
    let deadline = tokio::time::Instant::now() + REPLY_OPEN_WAIT;
    let mut tx = loop {
        match tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
            Ok(tx) => break tx,
            // ENXIO (6): the client has not opened its end yet (it does so after writing the
            // request); NotFound: not created yet.
            Err(e) if e.raw_os_error() == Some(6) || e.kind() == io::ErrorKind::NotFound => {
                if tokio::time::Instant::now() >= deadline {
                    ser_log!(L_WARN, "fifo: no client at {}", path.display());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                ser_log!(
                    L_ERR,
                    "fifo: cannot open reply pipe {}: {e}",
                    path.display()
                );
                return;
            }
        }
    };
    match tokio::time::timeout(REPLY_WRITE_TIMEOUT, tx.write_all(text.as_bytes())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => ser_log!(L_ERR, "fifo: write to {} failed: {e}", path.display()),
        Err(_) => ser_log!(L_WARN, "fifo: client at {} does not read", path.display()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn framing(c: &str) -> Framing {
        match c {
            "t_uac_dlg" => Framing::UacDlg,
            "t_reply" => Framing::TReply,
            _ => Framing::Lines,
        }
    }

    #[test]
    fn t_reply_takes_four_lines_headers_and_a_body() {
        assert_eq!(
            run(":t_reply:r1\n200\nOK\n512:7\nvmtag\nContact: <sip:vm@x>\n.\nv=0\n.\n\n:uptime:r2\n\n"),
            vec![
                req(
                    "t_reply",
                    Some("r1"),
                    &["200", "OK", "512:7", "vmtag", "Contact: <sip:vm@x>", ".", "v=0"]
                ),
                req("uptime", Some("r2"), &[]),
            ]
        );
    }

    fn run(text: &str) -> Vec<Event> {
        let mut p = Parser::new();
        text.split_inclusive('\n')
            .filter_map(|l| p.feed(l.as_bytes(), false, framing))
            .collect()
    }

    fn req(cmd: &str, reply: Option<&str>, params: &[&str]) -> Event {
        Event::Request(Request {
            command: cmd.into(),
            reply_to: reply.map(|r| PathBuf::from(format!("/tmp/{r}"))),
            params: params.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn uptime_request_of_example_4_7() {
        assert_eq!(
            run(":uptime:ser_receiver_1114\n\n"),
            vec![req("uptime", Some("ser_receiver_1114"), &[])]
        );
    }

    #[test]
    fn serweb_ul_add_of_example_4_11() {
        // write2fifo appends one more "\n" to a command that already ends in "\n\n".
        let ev = run(":ul_add:serweb_fifo\nlocation\njiri\nsip:jiri@1.2.3.4\n3600\n0.5\n\n\n");
        assert_eq!(
            ev,
            vec![req(
                "ul_add",
                Some("serweb_fifo"),
                &["location", "jiri", "sip:jiri@1.2.3.4", "3600", "0.5"]
            )]
        );
    }

    #[test]
    fn send_im_script_of_example_4_10() {
        let text = ":t_uac_dlg:hh\nNOTIFY\nsip:receiver@127.0.0.1\n.\nFrom: sip:originator@foo.bar\nTo: sip:receiver@127.0.0.1\nfoo: bar_special_header\nx: y\np_header: p_value\nContact: <sip:devnull@192.168.0.100:9>\nContent-Type: text/plain; charset=UTF-8\n.\nHello world!!!! a b\n.\n";
        let ev = run(text);
        assert_eq!(
            ev,
            vec![req(
                "t_uac_dlg",
                Some("hh"),
                &[
                    "NOTIFY",
                    "sip:receiver@127.0.0.1",
                    ".",
                    "From: sip:originator@foo.bar",
                    "To: sip:receiver@127.0.0.1",
                    "foo: bar_special_header",
                    "x: y",
                    "p_header: p_value",
                    "Contact: <sip:devnull@192.168.0.100:9>",
                    "Content-Type: text/plain; charset=UTF-8",
                    ".",
                    "Hello world!!!! a b",
                ]
            )]
        );
    }

    #[test]
    fn lines_are_right_trimmed_and_blank_lines_between_requests_skipped() {
        assert_eq!(
            run("\r\n\n:print:p1 \r\nhello  \t\r\n\r\n:pwd:p2\n\n"),
            vec![
                req("print", Some("p1"), &["hello"]),
                req("pwd", Some("p2"), &[])
            ]
        );
    }

    #[test]
    fn spoilt_requests_are_skipped_to_their_empty_line() {
        // Not starting with ':', a reply file with a path, no separator: each is skipped whole and
        // the next request still runs.
        let ev = run("uptime\nx\n\n:ps:../etc/passwd\n\n:which\n\n:version:v\n\n");
        assert_eq!(ev, vec![req("version", Some("v"), &[])]);
        assert_eq!(reply_path("a/b"), None);
        assert_eq!(
            reply_path("ser_fifo_1"),
            Some(PathBuf::from("/tmp/ser_fifo_1"))
        );
    }

    #[test]
    fn no_reply_file_runs_without_reply() {
        assert_eq!(run(":print:\nx\n\n"), vec![req("print", None, &["x"])]);
    }

    #[test]
    fn too_long_line_rejects_its_request() {
        let mut p = Parser::new();
        assert_eq!(p.feed(b":print:r\n", false, framing), None);
        let ev = p.feed(b"xxxx", true, framing);
        assert!(matches!(
            ev,
            Some(Event::Reject {
                reply_to: Some(_),
                ..
            })
        ));
        assert_eq!(p.feed(b"more\n", false, framing), None);
        assert_eq!(p.feed(b"\n", false, framing), None);
        assert_eq!(
            p.feed(b":pwd:r\n", false, framing)
                .or(p.feed(b"\n", false, framing)),
            Some(req("pwd", Some("r"), &[]))
        );
    }
}
