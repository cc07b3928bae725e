//! The core FIFO command set of SER 0.8.11 (`fifo_server.c`), same names, same output:
//!
//! | command | parameters | reply body |
//! |---|---|---|
//! | `print` | one line | the line |
//! | `uptime` | — | `Now: <ctime>`, `Up Since: <ctime>`, `Up time: <n> [sec]` |
//! | `version` | — | `Server: ser (<version> (<arch>/<os>))` |
//! | `pwd` | — | the working directory |
//! | `arg` | — | the command line, one argument per line |
//! | `which` | — | the commands, last registered first |
//! | `ps` | — | `<n>\t<pid>\t<description>` per process (here: per thread role) |
//!
//! ser runs one process with threads, so `ps` lists the roles (main, each shard with its sockets,
//! the management server, the job runner) with the one process id: scripts that grep it for
//! "receiver" or "fifo server" keep working.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Registry, Reply};

/// What the core commands report about the running server.
#[derive(Clone)]
pub struct ServerInfo {
    pub started: SystemTime,
    /// The command line, program name first.
    pub argv: Vec<String>,
    /// `Server:` header value (`ser (0.1.0 (x86_64/linux))`).
    pub server_header: String,
    /// The process table for `ps`: description per role.
    pub processes: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    /// Formats a time as C's `ctime()` without the newline (local time where the embedder can
    /// tell it; [`ctime_utc`] otherwise).
    pub ctime: fn(SystemTime) -> String,
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `ctime()`'s layout (`Fri Dec  6 17:56:10 2002`) in UTC.
pub fn ctime_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    ctime_from_parts(secs, 0)
}

/// `ctime()`'s layout for `secs` since the epoch shifted by `offset` seconds (a time zone).
pub fn ctime_from_parts(secs: i64, offset: i64) -> String {
    let s = secs + offset;
    let days = s.div_euclid(86_400);
    let rem = s.rem_euclid(86_400);
    let (h, m, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(mo - 1).clamp(0, 11) as usize];
    format!("{wd} {mon} {d:>2} {h:02}:{m:02}:{sec:02} {y}")
}

/// The `uptime` body at `now`.
pub fn uptime_lines(info: &ServerInfo, now: SystemTime) -> (Vec<String>, u64) {
    let up = now
        .duration_since(info.started)
        .map_or(0, |d| d.as_secs_f64().round() as u64);
    (
        vec![
            format!("Now: {}", (info.ctime)(now)),
            format!("Up Since: {}", (info.ctime)(info.started)),
            format!("Up time: {up} [sec]"),
        ],
        up,
    )
}

/// Registers SER's core set in SER's order (so `which` lists it as SER did) .
pub fn register(reg: &mut Registry, info: ServerInfo) -> Result<(), String> {
    reg.register("print", "print one line back (diagnostics)", |p| {
        // SER read exactly one line; a missing line printed an empty one.
        let line = p.first().cloned().unwrap_or_default();
        Reply::ok(vec![line.clone()]).with_data(json!(line))
    })?;
    let i = info.clone();
    reg.register("uptime", "server running time", move |_| {
        let now = SystemTime::now();
        let (lines, up) = uptime_lines(&i, now);
        let data = json!({
            "now": (i.ctime)(now),
            "up_since": (i.ctime)(i.started),
            "uptime": up,
        });
        Reply::ok(lines).with_data(data)
    })?;
    let i = info.clone();
    reg.register("version", "server version", move |_| {
        let line = format!("Server: {}", i.server_header);
        Reply::ok(vec![line]).with_data(json!(i.server_header))
    })?;
    reg.register(
        "pwd",
        "working directory",
        |_| match std::env::current_dir() {
            Ok(d) => {
                let d = d.display().to_string();
                Reply::ok(vec![d.clone()]).with_data(json!(d))
            }
            Err(_) => Reply::status(500, "getcwd failed"),
        },
    )?;
    let i = info.clone();
    reg.register("arg", "command-line arguments", move |_| {
        Reply::ok(i.argv.clone()).with_data(json!(i.argv))
    })?;
    reg.register_which()?;
    let i = info;
    reg.register("ps", "running processes (threads)", move |_| {
        let pid = std::process::id();
        let procs = (i.processes)();
        let lines = procs
            .iter()
            .enumerate()
            .map(|(n, d)| format!("{n}\t{pid}\t{d}"))
            .collect();
        let data: Vec<_> = procs
            .iter()
            .enumerate()
            .map(|(n, d)| json!({"idx": n, "pid": pid, "desc": d}))
            .collect();
        Reply::ok(lines).with_data(json!(data))
    })?;
    Ok(())
}

pub use dataplane::command::{number_param, text_param};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ctime_layout() {
        // The Admin Guide's example time (Example 4-6), taken as UTC.
        assert_eq!(
            ctime_from_parts(1_039_197_370, 0),
            "Fri Dec  6 17:56:10 2002"
        );
        assert_eq!(ctime_from_parts(0, 0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime_from_parts(951_782_400, 0), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn uptime_has_the_guides_three_lines() {
        let started = UNIX_EPOCH + Duration::from_secs(1_039_197_367);
        let info = ServerInfo {
            started,
            argv: vec![],
            server_header: "ser".into(),
            processes: Arc::new(Vec::new),
            ctime: ctime_utc,
        };
        let (lines, up) = uptime_lines(&info, started + Duration::from_secs(3));
        assert_eq!(
            lines,
            vec![
                "Now: Fri Dec  6 17:56:10 2002",
                "Up Since: Fri Dec  6 17:56:07 2002",
                "Up time: 3 [sec]"
            ]
        );
        assert_eq!(up, 3);
    }

    #[test]
    fn core_set_in_sers_which_order() {
        let mut r = Registry::new();
        register(
            &mut r,
            ServerInfo {
                started: SystemTime::now(),
                argv: vec!["ser".into(), "-f".into(), "x.cfg".into()],
                server_header: "ser".into(),
                processes: Arc::new(|| vec!["main".into()]),
                ctime: ctime_utc,
            },
        )
        .unwrap();
        assert_eq!(
            r.names(),
            vec!["ps", "which", "arg", "pwd", "version", "uptime", "print"]
        );
    }
}
