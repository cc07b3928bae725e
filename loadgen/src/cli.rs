//! Command line: the clap definitions and their validation into a [`ClientConfig`] / [`UasConfig`].
//!
//! Invariant: every run is bounded. A client run stops after `--duration` (default 10 s when neither
//! `--duration` nor `--max` is given) or `--max` calls, and never runs longer than [`HARD_CAP`].
//! Validation errors are one line; `main` prints them and exits with code 2.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The longest any client run may last.
pub const HARD_CAP: Duration = Duration::from_secs(3600);

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "SIP load generator bundled with ser",
    after_help = "Exit codes: 0 every call succeeded, 1 some failed, 2 bad arguments, 255 fatal error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// OPTIONS requests, each expecting 200.
    Options(ClientArgs),
    /// MESSAGE requests, each expecting 200 or 202.
    Message(ClientArgs),
    /// REGISTER of many distinct users, answering 401/407 digest challenges.
    Register(ClientArgs),
    /// INVITE → 100/180/200 → ACK → hold → BYE → 200.
    Call(ClientArgs),
    /// Server mode: answers INVITE, ACK, BYE, REGISTER, OPTIONS, MESSAGE.
    Uas(UasArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// Where to send: host:port, [v6]:port, or host (port 5060).
    #[arg(long)]
    pub target: String,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// Local address to bind: IP or IP:port (port 0 or absent: any).
    #[arg(long)]
    pub bind: Option<String>,
    /// Calls (or requests) started per second, open loop.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds to keep starting calls (default 10 unless --max is given; at most 3600).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after starting this many calls.
    #[arg(long)]
    pub max: Option<u64>,
    /// Most calls in flight at once (per run).
    #[arg(long, default_value_t = 100_000)]
    pub concurrency: u64,
    /// Ramp mode: START:STEP:INTERVAL_S — raise the rate by STEP every INTERVAL_S seconds until
    /// failures exceed --max-failure-pct or the rate is no longer achieved.
    #[arg(long)]
    pub ramp: Option<String>,
    /// Ramp mode: the failure percentage (per interval) that ends the ramp.
    #[arg(long, default_value_t = 1.0)]
    pub max_failure_pct: f64,
    /// Ramp mode: fraction of the offered rate that must complete successfully per interval.
    #[arg(long, default_value_t = 0.95)]
    pub min_achieved: f64,
    /// Client sockets (source ports), spread over the threads.
    #[arg(long, default_value_t = 1)]
    pub sockets: usize,
    /// Worker threads (one per core you give loadgen).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Users as a pattern with %d, e.g. user%d@example.com (see --range).
    #[arg(long)]
    pub users: Option<String>,
    /// The %d range of --users: FIRST-LAST.
    #[arg(long, default_value = "1-1000")]
    pub range: String,
    /// Users from a CSV file: user@domain[,password] per line.
    #[arg(long, conflicts_with = "users")]
    pub users_csv: Option<PathBuf>,
    /// Password for digest authentication (CSV passwords take precedence).
    #[arg(long)]
    pub password: Option<String>,
    /// Answer a user's later REGISTERs at once with its last challenge and the next nonce-count
    /// (RFC 2617 §3.2.2), as phones re-registering do; a refused or stale answer is challenged
    /// and answered again.
    #[arg(long)]
    pub reuse_nonce: bool,
    /// Expires of REGISTER, seconds.
    #[arg(long, default_value_t = 3600)]
    pub expires: u32,
    /// From user@domain when --users is not given.
    #[arg(long)]
    pub from: Option<String>,
    /// Request-URI / To user@domain (default service@TARGET).
    #[arg(long)]
    pub to: Option<String>,
    /// Calls: how long to hold the call between ACK and BYE, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub hold_ms: u64,
    /// RFC 3261 T1 in milliseconds (timeout is 64*T1).
    #[arg(long, default_value_t = 500)]
    pub t1_ms: u64,
    /// RFC 3261 T2 in milliseconds.
    #[arg(long, default_value_t = 4000)]
    pub t2_ms: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct UasArgs {
    /// Address to listen on (IP:port; port 0 picks one and prints it).
    #[arg(long, default_value = "127.0.0.1:5060")]
    pub bind: String,
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: Transport,
    /// Worker threads (UDP: one SO_REUSEPORT socket each).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Drop the first N requests received (to exercise retransmissions).
    #[arg(long, default_value_t = 0)]
    pub drop_first: u64,
    /// Challenge REGISTER and INVITE with digest auth: REALM:PASSWORD.
    #[arg(long)]
    pub auth: Option<String>,
    /// With --auth: challenge like a proxy (407 Proxy-Authenticate) instead of 401.
    #[arg(long, requires = "auth")]
    pub proxy_auth: bool,
    /// Write counts as JSON to this file (every 200 ms and on exit).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// Exit after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    pub duration: Option<f64>,
    /// No counts on stderr at exit.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Options,
    Message,
    Register,
    Call,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Options => "options",
            Scenario::Message => "message",
            Scenario::Register => "register",
            Scenario::Call => "call",
        }
    }
}

/// One user: the AOR's user and domain, and a password when the CSV gave one.
#[derive(Clone, Debug)]
pub struct User {
    pub user: String,
    pub domain: String,
    pub password: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub struct Ramp {
    pub start: f64,
    pub step: f64,
    pub interval: Duration,
}

/// A validated client run.
#[derive(Debug)]
pub struct ClientConfig {
    pub scenario: Scenario,
    pub target: SocketAddr,
    pub target_text: String,
    pub transport: Transport,
    pub bind: SocketAddr,
    pub rate: f64,
    pub duration: Duration,
    pub max: Option<u64>,
    pub concurrency: u64,
    pub ramp: Option<Ramp>,
    pub max_failure_pct: f64,
    pub min_achieved: f64,
    pub sockets: usize,
    pub threads: usize,
    pub users: Vec<User>,
    pub password: Option<String>,
    /// See the `--reuse-nonce` option.
    pub reuse_nonce: bool,
    pub expires: u32,
    /// Request-URI / To as user@host.
    pub to: String,
    pub hold: Duration,
    pub t1: Duration,
    pub t2: Duration,
    pub json: bool,
    pub quiet: bool,
}

impl ClientConfig {
    /// 64*T1: when a transaction gives up (Timer B / Timer F).
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// A validated UAS run.
#[derive(Debug)]
pub struct UasConfig {
    pub bind: SocketAddr,
    pub transport: Transport,
    pub threads: usize,
    pub drop_first: u64,
    pub auth: Option<(String, String)>,
    pub proxy_auth: bool,
    pub stats_file: Option<PathBuf>,
    pub duration: Option<Duration>,
    pub quiet: bool,
}

/// Resolves `host:port`, `[v6]:port`, `v4`, `v6` or `host` (port 5060).
pub fn resolve(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {s:?}: no address"))
}

fn positive_secs(v: f64, what: &str) -> Result<Duration, String> {
    if !v.is_finite() || v <= 0.0 {
        return Err(format!(
            "{what} must be a positive number of seconds, got {v}"
        ));
    }
    Ok(Duration::from_secs_f64(v.min(HARD_CAP.as_secs_f64())))
}

fn parse_ramp(s: &str) -> Result<Ramp, String> {
    let bad = || format!("--ramp wants START:STEP:INTERVAL_S (e.g. 1000:1000:2), got {s:?}");
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    let start: f64 = a.parse().map_err(|_| bad())?;
    let step: f64 = b.parse().map_err(|_| bad())?;
    let interval: f64 = c.parse().map_err(|_| bad())?;
    let valid =
        start > 0.0 && step > 0.0 && interval > 0.0 && start.is_finite() && step.is_finite();
    if !valid {
        return Err(bad());
    }
    Ok(Ramp {
        start,
        step,
        interval: positive_secs(interval, "--ramp interval")?,
    })
}

fn split_aor(aor: &str) -> Result<(String, String), String> {
    let aor = aor.strip_prefix("sip:").unwrap_or(aor);
    match aor.split_once('@') {
        Some((u, d)) if !u.is_empty() && !d.is_empty() => Ok((u.to_string(), d.to_string())),
        _ => Err(format!("expected user@domain, got {aor:?}")),
    }
}

fn users_from_pattern(pat: &str, range: &str) -> Result<Vec<User>, String> {
    if !pat.contains("%d") {
        return Err(format!("--users pattern must contain %d, got {pat:?}"));
    }
    let (a, b) = range
        .split_once('-')
        .ok_or_else(|| format!("--range wants FIRST-LAST, got {range:?}"))?;
    let first: u64 = a
        .parse()
        .map_err(|_| format!("--range wants FIRST-LAST, got {range:?}"))?;
    let last: u64 = b
        .parse()
        .map_err(|_| format!("--range wants FIRST-LAST, got {range:?}"))?;
    if last < first || last - first >= 10_000_000 {
        return Err(format!(
            "--range {range:?}: LAST must be >= FIRST, at most 10M users"
        ));
    }
    (first..=last)
        .map(|i| {
            let (user, domain) = split_aor(&pat.replace("%d", &i.to_string()))?;
            Ok(User {
                user,
                domain,
                password: None,
            })
        })
        .collect()
}

fn users_from_csv(path: &PathBuf) -> Result<Vec<User>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --users-csv {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cols = line.split([',', ';']);
        let aor = cols.next().unwrap_or_default().trim();
        let (user, domain) =
            split_aor(aor).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let password = cols
            .next()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        out.push(User {
            user,
            domain,
            password,
        });
    }
    if out.is_empty() {
        return Err(format!("--users-csv {}: no users", path.display()));
    }
    Ok(out)
}

fn host_of(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

impl ClientArgs {
    pub fn validate(self, scenario: Scenario) -> Result<ClientConfig, String> {
        let target = resolve(&self.target, 5060).map_err(|e| format!("--target: {e}"))?;
        let bind = match &self.bind {
            None if target.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
            None => SocketAddr::from(([0u16; 8], 0)),
            Some(b) => resolve(b, 0).map_err(|e| format!("--bind: {e}"))?,
        };
        if bind.is_ipv4() != target.is_ipv4() {
            return Err("--bind and --target must be the same address family".into());
        }
        let ramp = self.ramp.as_deref().map(parse_ramp).transpose()?;
        let rate = match (self.rate, ramp) {
            (_, Some(r)) => r.start,
            (Some(r), None) if r.is_finite() && r > 0.0 => r,
            (Some(r), None) => return Err(format!("--rate must be positive, got {r}")),
            (None, None) => 100.0,
        };
        let duration = match (self.duration, self.max) {
            (Some(d), _) => positive_secs(d, "--duration")?,
            (None, Some(_)) => HARD_CAP,
            (None, None) if ramp.is_some() => HARD_CAP,
            (None, None) => Duration::from_secs(10),
        };
        if self.max == Some(0) {
            return Err("--max must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if !(1..=256).contains(&self.threads) || !(1..=4096).contains(&self.sockets) {
            return Err("--threads must be 1..=256 and --sockets 1..=4096".into());
        }
        if !(0.0..=100.0).contains(&self.max_failure_pct) {
            return Err("--max-failure-pct must be within 0..=100".into());
        }
        if !(0.0..=1.0).contains(&self.min_achieved) {
            return Err("--min-achieved must be within 0..=1".into());
        }
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            return Err("--t1-ms must be positive and --t2-ms at least --t1-ms".into());
        }
        let users = match (&self.users, &self.users_csv) {
            (Some(p), _) => users_from_pattern(p, &self.range)?,
            (None, Some(path)) => users_from_csv(path)?,
            (None, None) => {
                let (user, domain) = match &self.from {
                    Some(f) => split_aor(f).map_err(|e| format!("--from: {e}"))?,
                    None => ("loadgen".to_string(), host_of(bind_or_target(bind, target))),
                };
                vec![User {
                    user,
                    domain,
                    password: None,
                }]
            }
        };
        let to = match &self.to {
            Some(t) => {
                let (u, d) = split_aor(t).map_err(|e| format!("--to: {e}"))?;
                format!("{u}@{d}")
            }
            None => format!("service@{}", host_of(target)),
        };
        Ok(ClientConfig {
            scenario,
            target,
            target_text: self.target,
            transport: self.transport,
            bind,
            rate,
            duration,
            max: self.max,
            concurrency: self.concurrency,
            ramp,
            max_failure_pct: self.max_failure_pct,
            min_achieved: self.min_achieved,
            sockets: self.sockets.max(self.threads),
            threads: self.threads,
            users,
            password: self.password,
            reuse_nonce: self.reuse_nonce,
            expires: self.expires,
            to,
            hold: Duration::from_millis(self.hold_ms),
            t1: Duration::from_millis(self.t1_ms),
            t2: Duration::from_millis(self.t2_ms),
            json: self.json,
            quiet: self.quiet,
        })
    }
}

fn bind_or_target(bind: SocketAddr, target: SocketAddr) -> SocketAddr {
    if bind.ip().is_unspecified() {
        target
    } else {
        bind
    }
}

impl UasArgs {
    pub fn validate(self) -> Result<UasConfig, String> {
        let bind = resolve(&self.bind, 5060).map_err(|e| format!("--bind: {e}"))?;
        if !(1..=256).contains(&self.threads) {
            return Err("--threads must be 1..=256".into());
        }
        let auth = match &self.auth {
            None => None,
            Some(a) => match a.split_once(':') {
                Some((r, p)) if !r.is_empty() => Some((r.to_string(), p.to_string())),
                _ => return Err(format!("--auth wants REALM:PASSWORD, got {a:?}")),
            },
        };
        let duration = self
            .duration
            .map(|d| positive_secs(d, "--duration"))
            .transpose()?;
        Ok(UasConfig {
            bind,
            transport: self.transport,
            threads: self.threads,
            drop_first: self.drop_first,
            auth,
            proxy_auth: self.proxy_auth,
            stats_file: self.stats_file,
            duration,
            quiet: self.quiet,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolves_forms() {
        assert_eq!(
            resolve("127.0.0.1:5070", 5060).unwrap(),
            "127.0.0.1:5070".parse().unwrap()
        );
        assert_eq!(
            resolve("127.0.0.1", 5060).unwrap(),
            "127.0.0.1:5060".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:5", 5060).unwrap(),
            "[::1]:5".parse().unwrap()
        );
        assert_eq!(resolve("::1", 5060).unwrap(), "[::1]:5060".parse().unwrap());
    }

    #[test]
    fn ramp_and_users() {
        let r = parse_ramp("100:50:2").unwrap();
        assert_eq!((r.start, r.step), (100.0, 50.0));
        assert!(parse_ramp("1:2").is_err());
        let u = users_from_pattern("u%d@d.example", "3-5").unwrap();
        assert_eq!(u.len(), 3);
        assert_eq!(u[2].user, "u5");
        assert_eq!(u[2].domain, "d.example");
        assert!(users_from_pattern("u@d", "1-2").is_err());
    }
}
