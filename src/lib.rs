//! The `ser` package: the binaries `ser` and `serctl`, wiring the dataplane and the controlplane
//! together. See `README.md`.
//!
//! This library holds what `ser` does before and around the shards: SER 0.8.11's command line
//! ([`parse_args`]), logging to stderr or syslog ([`os`]), merging the command line with the
//! compiled configuration's [`CoreOptions`] into a [`RuntimeConfig`], start-up, signals and shutdown
//! ([`run`]); [`server`] starts the proxy itself (shards, job runner, reload).

pub mod locations;
pub mod mgmt;
pub mod server;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dataplane::script::ir::{CoreOptions, Program, Proto as CfgProto};
use dataplane::ser_log;
use dataplane::shard::log::{self, L_ERR, L_INFO, L_NOTICE};
use dataplane::shard::{ListenSpec, RuntimeConfig};
use dataplane::transport::{self, IoMode, Proto};
use dataplane::txn::table::MAX_SHARDS;

/// Default configuration file (SER: `./ser.cfg`).
pub const DEFAULT_CONFIG: &str = "./ser.cfg";

/// One `-l` argument: `[proto:]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenArg {
    pub proto: Option<Proto>,
    pub host: String,
    pub port: Option<u16>,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cli {
    pub config: Option<PathBuf>,
    pub check: bool,
    pub listen: Vec<ListenArg>,
    /// The last `-p` (default port for `-l` without one that follow it, and for config listens).
    pub port: Option<u16>,
    pub children: Option<u32>,
    pub foreground: bool,
    pub stderr: bool,
    pub debug: u32,
    pub version: bool,
    pub help: bool,
    pub pidfile: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub chroot: Option<PathBuf>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub maxbuffer: Option<u32>,
    pub shm_mb: Option<u32>,
    pub fifo: Option<String>,
    pub dns: bool,
    pub rev_dns: bool,
    pub check_via: bool,
    // ---- ser extensions (long options) ----
    pub io: IoMode,
    pub overload_backlog: Option<usize>,
    pub overload_after_ms: Option<u64>,
    pub overload_delay_ms: Option<u64>,
    pub tcp_idle: Option<u64>,
    pub tcp_read_timeout: Option<u64>,
    pub tcp_max_conns: Option<usize>,
    pub tcp_max_conns_per_ip: Option<usize>,
    pub no_pin: bool,
    /// `--rpc-socket=PATH`: JSON-RPC over a unix socket.
    pub rpc_socket: Option<PathBuf>,
    /// `--rpc-socket-mode=OCTAL` (default 0660).
    pub rpc_socket_mode: Option<u32>,
    /// `--http=ADDR:PORT`: JSON-RPC, /metrics, /health, /ready over HTTP.
    pub http: Option<SocketAddr>,
    /// `--http-token=TOKEN` (or env SER_HTTP_TOKEN): bearer token, required off loopback.
    pub http_token: Option<String>,
    /// `--web-admins=FILE`: enables the web UI (`/ui/` on the `--http` listener), its logins.
    pub web_admins: Option<PathBuf>,
    /// `--web-templates=DIR`: templates replacing the embedded ones.
    pub web_templates: Option<PathBuf>,
    /// `--web-selfcare`: the subscribers' own pages (`/ui/self/`).
    pub web_selfcare: bool,
    /// `--web-signup-mail=CMD`: sign-up on the self-care pages, confirmation mailed by CMD.
    pub web_signup_mail: Option<String>,
    /// `--web-url=URL`: the web UI's public base URL (links in mails).
    pub web_url: Option<String>,
    /// `--web-stats-interval=SECS`: how often the web UI's statistics page samples (default 10).
    pub web_stats_interval: Option<u64>,
}

/// Usage text (`-h`).
pub fn usage() -> String {
    format!(
        "ser {ver} -- SIP Express Router (SER 0.8.11 compatible), rebuilt in Rust
Usage: ser [options]
Options:
    -f file      Configuration file (default {DEFAULT_CONFIG})
    -c           Check the configuration file and exit (prints \"config file ok, exiting...\").
                 NOTE: in SER 0.8.11 -c meant \"perform loop checks and compute branches\";
                 ser uses it as the config check, like Kamailio and later SER
    -p port      Listen on the specified port (default 5060); applies to the last -l
                 and to all following -l without their own port
    -l address   Listen on the specified address ([udp:|tcp:]host[:port]; repeatable;
                 default: all IPv4 interfaces, udp and tcp)
    -n processes Number of shards (threads, one per core; default: number of cores)
    -r           Use dns to check if it is necessary to add a \"received=\" field to a via
    -R           Same as -r but use reverse dns
    -v           Turn on via host checking when forwarding replies
    -d           Debugging mode (multiple -d increase the level)
    -D           Do not fork into daemon mode (stay in the foreground)
    -E           Log to stderr
    -V           Version number and build
    -h           This help message
    -b nr        Maximum receive buffer size (SO_RCVBUF, bytes)
    -m nr        Size of shared memory in Mb (accepted for compatibility; ignored)
    -w dir       Change the working directory to \"dir\" (default \"/\" when daemonised)
    -t dir       Chroot to \"dir\"
    -u uid       Change uid (name or number)
    -g gid       Change gid (name or number)
    -P file      Create a pid file
    -i fifo_path Create a fifo (useful for monitoring) and serve SER's FIFO commands on it
ser extensions:
    --io=auto|epoll|uring   UDP receive backend (auto = epoll+recvmmsg; uring only if the
                            start-up probe passes, otherwise epoll with one log line)
    --overload-backlog=N    requests waiting beyond N per shard turn get 503 + Retry-After,
                            once that backlog has lasted --overload-after-ms (default 4096)
    --overload-after-ms=MS  how long a backlog must last to be overload (default 200; 0 =
                            refuse in the first turn; a shorter burst is served late instead)
    --overload-delay-ms=MS  queueing delay (the oldest datagram's wait) that is a backlog
                            (default 50); overloaded, a turn serves requests for 3/4 of it
    --tcp-idle=SECS         close idle TCP connections (default 120)
    --tcp-read-timeout=SECS close connections holding an incomplete message (default 10)
    --tcp-max-conns=N       TCP connections per shard (default 2048)
    --tcp-max-conns-per-ip=N  TCP connections per peer IP per shard (default 64)
    --no-pin                do not pin shards to cores
    --rpc-socket=PATH       JSON-RPC 2.0 on a unix socket (access: its file mode)
    --rpc-socket-mode=OCTAL file mode of the RPC socket (default 0660)
    --http=ADDR:PORT        HTTP management: POST /rpc (JSON-RPC), /metrics, /health, /ready
                            (a non-loopback address needs a token)
    --http-token=TOKEN      bearer token for /rpc and /metrics (or env SER_HTTP_TOKEN)
    --web-admins=FILE       web UI on the --http listener (/ui/), administrators from FILE
                            (name:argon2id-hash lines, as `serctl webpasswd` prints them)
    --web-templates=DIR     web UI templates in DIR replace the embedded ones
    --web-selfcare          web UI pages for subscribers (/ui/self/: SIP login, password,
                            own registrations, calls, messages, aliases); with or without
                            --web-admins
    --web-signup-mail=CMD   with --web-selfcare: sign-up (/ui/self/signup), the confirmation
                            link mailed by `CMD -s SUBJECT ADDRESS` (text on stdin)
    --web-url=URL           the web UI's public base URL for mailed links (default http://
                            and the --http address)
    --web-stats-interval=S  the web UI's statistics page reads the counters every S seconds
                            (1-3600, default 10; it keeps the last hour)
",
        ver = env!("CARGO_PKG_VERSION")
    )
}

/// `-V` text: version and build.
pub fn version_text() -> String {
    let mut features = Vec::new();
    if cfg!(feature = "mimalloc") {
        features.push("mimalloc");
    }
    if cfg!(feature = "io-uring") {
        features.push("io-uring");
    }
    let uring = match transport::probe_uring() {
        Ok(()) => "available".to_string(),
        Err(why) => format!("unavailable ({why})"),
    };
    format!(
        "ser {} (SER 0.8.11 dialect, Rust rebuild)\nbuild: {}-{}, features: {}\nio: default {}, io_uring {}\n",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        if features.is_empty() { "none".to_string() } else { features.join(" ") },
        transport::IoBackend::Epoll.as_str(),
        uring
    )
}

/// Parses `[udp:|tcp:]host[:port]` (IPv6 bare or in brackets).
pub fn parse_listen(s: &str) -> Result<ListenArg, String> {
    let (proto, rest) = if let Some(r) = s.strip_prefix("udp:") {
        (Some(Proto::Udp), r)
    } else if let Some(r) = s.strip_prefix("tcp:") {
        (Some(Proto::Tcp), r)
    } else {
        (None, s)
    };
    let bad = || format!("bad listen address '{s}'");
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let close = r.find(']').ok_or_else(bad)?;
        let host = &r[..close];
        let after = &r[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (host.to_string(), port)
    } else if rest.matches(':').count() > 1 {
        (rest.to_string(), None)
    } else if let Some((h, p)) = rest.split_once(':') {
        (h.to_string(), Some(p.parse::<u16>().map_err(|_| bad())?))
    } else {
        (rest.to_string(), None)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(ListenArg { proto, host, port })
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse::<T>()
        .map_err(|_| format!("bad value '{v}' for option {flag}"))
}

/// Parses SER's command line (getopt `f:cp:b:l:n:rRvdDEVhw:t:u:g:P:i:m:`, flags may be grouped,
/// `-ffile` and `-f file` both work) plus ser's long options. `args` excludes the program name.
pub fn parse_args(args: &[String]) -> Result<Cli, String> {
    let mut cli = Cli::default();
    let mut i = 0;
    // Index of the last -l, for -p.
    let mut last_l_without_port: Option<usize> = None;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let flag = format!("--{name}");
            let mut value = || -> Result<String, String> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                let v = args
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("option {flag} requires an argument"))?;
                i += 1;
                Ok(v)
            };
            match name {
                "io" => {
                    let v = value()?;
                    cli.io = IoMode::parse(&v)
                        .ok_or_else(|| format!("bad value '{v}' for option --io"))?;
                }
                "overload-backlog" => cli.overload_backlog = Some(num(&flag, &value()?)?),
                "overload-after-ms" => cli.overload_after_ms = Some(num(&flag, &value()?)?),
                "overload-delay-ms" => cli.overload_delay_ms = Some(num(&flag, &value()?)?),
                "tcp-idle" => cli.tcp_idle = Some(num(&flag, &value()?)?),
                "tcp-read-timeout" => cli.tcp_read_timeout = Some(num(&flag, &value()?)?),
                "tcp-max-conns" => cli.tcp_max_conns = Some(num(&flag, &value()?)?),
                "tcp-max-conns-per-ip" => cli.tcp_max_conns_per_ip = Some(num(&flag, &value()?)?),
                "no-pin" if inline.is_none() => cli.no_pin = true,
                "rpc-socket" => cli.rpc_socket = Some(PathBuf::from(value()?)),
                "rpc-socket-mode" => {
                    let v = value()?;
                    cli.rpc_socket_mode = Some(
                        u32::from_str_radix(v.trim_start_matches("0o"), 8)
                            .map_err(|_| format!("bad value '{v}' for option {flag}"))?,
                    );
                }
                "http" => {
                    let v = value()?;
                    cli.http =
                        Some(v.parse().map_err(|_| {
                            format!("bad value '{v}' for option {flag} (ADDR:PORT)")
                        })?);
                }
                "http-token" => cli.http_token = Some(value()?),
                "web-admins" => cli.web_admins = Some(PathBuf::from(value()?)),
                "web-templates" => cli.web_templates = Some(PathBuf::from(value()?)),
                "web-selfcare" if inline.is_none() => cli.web_selfcare = true,
                "web-signup-mail" => cli.web_signup_mail = Some(value()?),
                "web-url" => cli.web_url = Some(value()?.trim_end_matches('/').to_string()),
                "web-stats-interval" => {
                    let v = value()?;
                    cli.web_stats_interval = Some(
                        num(&flag, &v)
                            .ok()
                            .filter(|s| (1..=3600).contains(s))
                            .ok_or_else(|| format!("bad value '{v}' for option {flag} (1-3600)"))?,
                    );
                }
                "help" if inline.is_none() => cli.help = true,
                "version" if inline.is_none() => cli.version = true,
                _ => return Err(format!("unknown option '{a}'")),
            }
            continue;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(format!("unexpected argument '{a}'"));
        };
        for (pos, c) in flags.char_indices() {
            let takes_arg = "fpblnwtugPim".contains(c);
            let arg = if takes_arg {
                let rest = &flags[pos + c.len_utf8()..];
                let v = if !rest.is_empty() {
                    rest.to_string()
                } else {
                    let v = args
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("option -{c} requires an argument"))?;
                    i += 1;
                    v
                };
                Some(v)
            } else {
                None
            };
            let flag = format!("-{c}");
            match (c, arg) {
                ('f', Some(v)) => cli.config = Some(PathBuf::from(v)),
                ('p', Some(v)) => {
                    let p: u16 = num(&flag, &v)?;
                    if p == 0 {
                        return Err(format!("bad value '{v}' for option -p"));
                    }
                    cli.port = Some(p);
                    if let Some(k) = last_l_without_port {
                        if let Some(l) = cli.listen.get_mut(k) {
                            l.port = Some(p);
                        }
                    }
                }
                ('l', Some(v)) => {
                    let mut l = parse_listen(&v)?;
                    if l.port.is_none() {
                        l.port = cli.port;
                        last_l_without_port = Some(cli.listen.len());
                    } else {
                        last_l_without_port = None;
                    }
                    cli.listen.push(l);
                }
                ('b', Some(v)) => cli.maxbuffer = Some(num(&flag, &v)?),
                ('n', Some(v)) => {
                    let n: u32 = num(&flag, &v)?;
                    if n == 0 {
                        return Err("bad value '0' for option -n".to_string());
                    }
                    if n as usize > MAX_SHARDS {
                        return Err(too_many_shards("option -n", n));
                    }
                    cli.children = Some(n);
                }
                ('m', Some(v)) => cli.shm_mb = Some(num(&flag, &v)?),
                ('w', Some(v)) => cli.workdir = Some(PathBuf::from(v)),
                ('t', Some(v)) => cli.chroot = Some(PathBuf::from(v)),
                ('u', Some(v)) => cli.user = Some(v),
                ('g', Some(v)) => cli.group = Some(v),
                ('P', Some(v)) => cli.pidfile = Some(PathBuf::from(v)),
                ('i', Some(v)) => cli.fifo = Some(v),
                ('c', None) => cli.check = true,
                ('r', None) => cli.dns = true,
                ('R', None) => cli.rev_dns = true,
                ('v', None) => cli.check_via = true,
                ('d', None) => cli.debug += 1,
                ('D', None) => cli.foreground = true,
                ('E', None) => cli.stderr = true,
                ('V', None) => cli.version = true,
                ('h', None) => cli.help = true,
                _ => return Err(format!("unknown option '-{c}'")),
            }
            if takes_arg {
                break;
            }
        }
    }
    Ok(cli)
}

/// SER's `debug` after the command line: the config value raised by one per `-d` (SER parsed the
/// command line a second time after the config, `-d` doing `debug++`).
pub fn effective_debug(cfg: &CoreOptions, cli: &Cli) -> i32 {
    cfg.debug.saturating_add(cli.debug as i32)
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve listen address '{host}': {e}"))?
        .collect();
    // One address per name, IPv4 first (SER resolved a name to its first address).
    let first = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("listen address '{host}' resolves to nothing"))?;
    Ok(vec![first])
}

/// The listen addresses: `-l` (with `-p` as SER applied it) override `listen=` of the config; a
/// listen without port gets `-p` or `port=`; without any, all IPv4 interfaces (`0.0.0.0`) on that
/// port, udp and tcp, as SER listened on every IPv4 interface.
pub fn listen_specs(cfg: &CoreOptions, cli: &Cli) -> Result<Vec<ListenSpec>, String> {
    let default_port = cli.port.unwrap_or(cfg.port);
    let mut wanted: Vec<(Option<Proto>, String, u16)> = Vec::new();
    if !cli.listen.is_empty() {
        // `-p` was already applied by `parse_args` to the -l it covers; an -l before any -p keeps
        // the config's `port` (SER: "-l foo -l bar -p 5061" listens on foo:5060, bar:5061).
        for l in &cli.listen {
            wanted.push((l.proto, l.host.clone(), l.port.unwrap_or(cfg.port)));
        }
    } else {
        for l in &cfg.listen {
            let proto = match l.proto {
                None => None,
                Some(CfgProto::Udp) => Some(Proto::Udp),
                Some(CfgProto::Tcp) => Some(Proto::Tcp),
                Some(CfgProto::Tls) | Some(CfgProto::Sctp) => {
                    return Err(format!("listen=tls:{}: TLS is not supported yet", l.host))
                }
            };
            wanted.push((proto, l.host.clone(), l.port.unwrap_or(default_port)));
        }
    }
    if wanted.is_empty() {
        wanted.push((None, Ipv4Addr::UNSPECIFIED.to_string(), default_port));
    }
    let mut specs: Vec<ListenSpec> = Vec::new();
    for (proto, host, port) in wanted {
        for addr in resolve(&host, port)? {
            let (udp, tcp) = match proto {
                None => (true, true),
                Some(Proto::Udp) => (true, false),
                Some(Proto::Tcp) => (false, true),
            };
            if let Some(s) = specs.iter_mut().find(|s| s.addr == addr) {
                s.udp |= udp;
                s.tcp |= tcp;
            } else {
                specs.push(ListenSpec { addr, udp, tcp });
            }
        }
    }
    Ok(specs)
}

/// Number of shards: `-n`, else `children=` when set to something other than SER's default 8
/// (the compiled options cannot tell "unset" from "8"), else the number of cores.
/// Refused above [`MAX_SHARDS`] (`-n` already is at parsing); the core count is capped to it.
pub fn shard_count(cfg: &CoreOptions, cli: &Cli) -> Result<usize, String> {
    if let Some(n) = cli.children {
        return Ok(n as usize);
    }
    if cfg.children != CoreOptions::default().children && cfg.children > 0 {
        if cfg.children as usize > MAX_SHARDS {
            return Err(too_many_shards("children", cfg.children));
        }
        return Ok(cfg.children as usize);
    }
    Ok(std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SHARDS)))
}

fn too_many_shards(what: &str, n: u32) -> String {
    format!(
        "bad value '{n}' for {what}: at most {MAX_SHARDS} shards (a shard's id is one byte of every transaction's branch)"
    )
}

/// The one small unsafe room of this crate, thin libc wrappers: syslog (LOG_DAEMON), dropping
/// privileges, daemonising (double fork).
#[allow(unsafe_code)]
pub mod os {
    use std::ffi::CString;

    const IDENT: &std::ffi::CStr = c"ser";

    /// `openlog("ser", LOG_PID, LOG_DAEMON)` (no LOG_CONS: a daemon in a container has no console worth writing to).
    pub fn open() {
        // SAFETY: IDENT is a 'static NUL-terminated string (openlog keeps the pointer).
        unsafe {
            libc::openlog(
                IDENT.as_ptr(),
                libc::LOG_PID | libc::LOG_CONS,
                libc::LOG_DAEMON,
            )
        };
    }

    /// Syslog priority of a SER level.
    pub fn priority(level: i32) -> libc::c_int {
        use dataplane::shard::log::{L_ALERT, L_CRIT, L_ERR, L_INFO, L_NOTICE, L_WARN};
        match level {
            i32::MIN..=L_ALERT => libc::LOG_ALERT,
            L_CRIT => libc::LOG_CRIT,
            L_ERR => libc::LOG_ERR,
            0..=L_WARN => libc::LOG_WARNING,
            L_NOTICE => libc::LOG_NOTICE,
            L_INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        }
    }

    /// Sends one line.
    pub fn send(level: i32, line: &str) {
        let Ok(msg) = CString::new(line.replace('\0', " ")) else {
            return;
        };
        // SAFETY: both format and argument are NUL-terminated; "%s" consumes exactly one char*.
        unsafe {
            libc::syslog(
                priority(level) | libc::LOG_DAEMON,
                c"%s".as_ptr(),
                msg.as_ptr(),
            )
        };
    }

    /// Daemonises as SER did with `fork=yes`: fork (the parent waits for the daemon's "started" or
    /// "failed" byte on a pipe and exits with 0 or 1), `setsid`, fork again (so the daemon is no
    /// session leader), stdin/stdout (and stderr unless logging to it) to `/dev/null`. Must be called
    /// while the process has one thread. Returns the write end of the pipe, for [`Daemon::ready`].
    pub fn daemonize(keep_stderr: bool) -> std::io::Result<Daemon> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (rd, wr) = (fds[0], fds[1]);
        // SAFETY: the process is single-threaded here (documented precondition), so the child is a
        // faithful copy; both branches only make async-signal-safe calls before returning or exiting.
        match unsafe { libc::fork() } {
            -1 => return Err(std::io::Error::last_os_error()),
            0 => {}
            _ => {
                // Parent: wait for the daemon's verdict ('1' or '0'), then the text it sends
                // (where it listens and logs, or why it failed), to EOF.
                let mut buf = [0u8; 4096];
                let mut len = 0usize;
                // SAFETY: closing our copy of the write end once.
                unsafe { libc::close(wr) };
                while len < buf.len() {
                    // SAFETY: reading into the unused tail of a live buffer.
                    let n =
                        unsafe { libc::read(rd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
                    if n > 0 {
                        len += n as usize;
                    } else if n == 0
                        || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
                    {
                        break;
                    }
                }
                let ok = len >= 1 && buf[0] == b'1';
                let text: &[u8] = if len == 0 {
                    b"ser: start-up failed (the daemon ended before saying why; see the log)\n"
                } else {
                    &buf[1..len]
                };
                // SAFETY: writing a live buffer to stderr.
                unsafe { libc::write(2, text.as_ptr().cast(), text.len()) };
                // SAFETY: _exit does not return and runs no destructors (the daemon owns them).
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
        }
        // SAFETY: plain syscalls on our own fds, in the (single-threaded) first child.
        unsafe {
            libc::close(rd);
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => return Err(std::io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                if !keep_stderr {
                    libc::dup2(null, 2);
                }
                if null > 2 {
                    libc::close(null);
                }
            }
        }
        Ok(Daemon { fd: wr })
    }

    /// The daemon's end of the start-up pipe.
    pub struct Daemon {
        fd: libc::c_int,
    }

    impl Daemon {
        /// Tells the waiting parent whether start-up succeeded (it exits 0 or 1) and gives it
        /// `text` to print on its standard error (a line or two).
        pub fn ready(self, ok: bool, text: &str) {
            let mut msg = Vec::with_capacity(text.len() + 1);
            msg.push(if ok { b'1' } else { b'0' });
            msg.extend_from_slice(text.as_bytes());
            msg.truncate(4096);
            // SAFETY: writing a live buffer to our pipe fd (a pipe takes 4 KiB at once), then
            // closing it once.
            unsafe {
                libc::write(self.fd, msg.as_ptr().cast(), msg.len());
                libc::close(self.fd);
            }
            std::mem::forget(self);
        }
    }

    /// Whether process `pid` exists (signal 0 delivers nothing, it only checks).
    pub fn process_alive(pid: i32) -> bool {
        // SAFETY: kill(2) with signal 0 sends nothing; no pointers involved.
        pid > 0 && unsafe { libc::kill(pid, 0) } == 0
    }

    /// Whether standard error is a pipe (a reader waits for its end).
    pub fn stderr_is_pipe() -> bool {
        // SAFETY: fstat fills the zeroed stat buffer we own.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(2, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
        }
    }

    /// Whether a syslog daemon listens on `/dev/log` (the socket glibc's syslog(3) writes to).
    /// Without one every line would be lost, so ser logs to stderr instead.
    pub fn syslog_available() -> bool {
        std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect("/dev/log"))
            .is_ok()
            || std::os::unix::net::UnixStream::connect("/dev/log").is_ok()
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            // SAFETY: closing the pipe fd we own (the parent then sees EOF = failure).
            unsafe { libc::close(self.fd) };
        }
    }

    /// Raises the soft open-files limit to the hard limit (every TCP connection is a descriptor).
    /// Returns the new soft limit.
    pub fn raise_nofile_limit() -> Option<u64> {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `r` is a valid rlimit for getrlimit to fill and setrlimit to read.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
                return None;
            }
            if r.rlim_cur < r.rlim_max {
                r.rlim_cur = r.rlim_max;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return None;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        Some(r.rlim_cur as u64)
    }

    /// `setgid` then `setuid` (numeric ids).
    pub fn drop_privileges(uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
        if let Some(g) = gid {
            // SAFETY: plain syscall wrapper, no pointers.
            if unsafe { libc::setgid(g) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(u) = uid {
            // SAFETY: plain syscall wrapper, no pointers.
            if unsafe { libc::setuid(u) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Installs the log sink: stderr (`-E`, `log_stderror=yes`) or syslog. Lines carry the pid and the
/// shard id.
pub fn setup_logging(debug: i32, to_stderr: bool) {
    log::set_level(debug);
    let pid = std::process::id();
    if to_stderr {
        log::set_sink(Box::new(move |level, shard, args| {
            let who = match shard {
                Some(i) => format!("shard {i}"),
                None => "main".to_string(),
            };
            // A closed terminal must not bring the server down: write errors are ignored.
            let _ = writeln!(
                std::io::stderr(),
                "ser[{pid}] {who}: {}: {args}",
                log::level_name(level)
            );
        }));
    } else {
        os::open();
        log::set_sink(Box::new(move |level, shard, args| {
            let line = match shard {
                Some(i) => format!("shard {i}: {}: {args}", log::level_name(level)),
                None => format!("main: {}: {args}", log::level_name(level)),
            };
            os::send(level, &line);
        }));
    }
}

/// A user or group given by name or number, looked up in `/etc/passwd` or `/etc/group`.
fn lookup_id(file: &str, name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
        .and_then(|f| f.get(2).and_then(|id| id.parse().ok()))
        .ok_or_else(|| format!("unknown user or group '{name}' (in {file})"))
}

/// Runs `ser` with `args` (without the program name); returns the exit code. SIGHUP reloads the
/// configuration file.
pub fn run(args: &[String]) -> i32 {
    run_with(args, &mut || {})
}

/// `p` made absolute against the current directory (kept as given if that cannot be read). ser
/// changes to `/` when it daemonizes, and reloads read the config file again later.
pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A `sqlite://relative/path` or `dbtext://relative/dir` URL made absolute; any other URL
/// unchanged.
pub fn absolute_db_url(url: &str) -> String {
    for scheme in ["sqlite://", "dbtext://"] {
        match url.strip_prefix(scheme) {
            Some(path) if !path.is_empty() && !path.starts_with('/') => {
                return format!("{scheme}{}", absolute(Path::new(path)).display())
            }
            _ => {}
        }
    }
    url.to_string()
}

/// Where the log goes, for the start-up line.
fn log_target(to_stderr: bool) -> &'static str {
    if to_stderr {
        "stderr"
    } else {
        "syslog (facility daemon, tag ser: journalctl -t ser, or /var/log/syslog)"
    }
}

/// As [`run`], also calling `sighup` on the main thread after each SIGHUP's reload (for embedders
/// and tests).
pub fn run_with(args: &[String], sighup: &mut dyn FnMut()) -> i32 {
    let mut cli = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ser: {e} (try 'ser -h')");
            return 2;
        }
    };
    if cli.help {
        print!("{}", usage());
        return 0;
    }
    if cli.version {
        print!("{}", version_text());
        return 0;
    }
    let cfg_path = absolute(
        &cli.config
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
    );
    let compiled = match controlplane::cfg::compile_file(&cfg_path) {
        Ok(c) => c,
        Err(d) => {
            eprint!("{}", d.render());
            eprintln!("ser: errors in config file {}, exiting", cfg_path.display());
            return 1;
        }
    };
    for w in &compiled.warnings {
        eprint!("{}", w.render());
    }
    if cli.check {
        println!("config file ok, exiting...");
        return 0;
    }
    let mut program = compiled.program;
    // Every path read or created after start-up is made absolute now, before a daemon's chdir
    // to `/` (SER resolved them against `/`, which nobody meant).
    cli.config = Some(cfg_path.clone());
    cli.pidfile = cli.pidfile.as_deref().map(absolute);
    cli.rpc_socket = cli.rpc_socket.as_deref().map(absolute);
    let abs_fifo = |f: &String| {
        if f.is_empty() {
            f.clone()
        } else {
            absolute(Path::new(f)).display().to_string()
        }
    };
    cli.fifo = cli.fifo.as_ref().map(abs_fifo);
    program.options.fifo = program.options.fifo.as_ref().map(abs_fifo);
    if let Ok(url) = std::env::var(controlplane::db::DB_URL_ENV) {
        let abs = absolute_db_url(&url);
        if abs != url {
            // Single-threaded still: nothing reads the environment concurrently.
            std::env::set_var(controlplane::db::DB_URL_ENV, abs);
        }
    }
    // -r, -R, -v are the command-line forms of dns, rev_dns and check_via.
    program.options.dns |= cli.dns;
    program.options.rev_dns |= cli.rev_dns;
    program.options.check_via |= cli.check_via;
    // The script's log() compares with the same level the logger uses (`-d` raises it).
    program.options.debug = effective_debug(&program.options, &cli);
    server::CLI_DEBUG.store(cli.debug as i32, std::sync::atomic::Ordering::Relaxed);
    let opts = program.options.clone();
    let debug = opts.debug;
    let mut to_stderr = cli.stderr || opts.log_stderror;
    let mut log_to = log_target(to_stderr);
    if !to_stderr && !os::syslog_available() {
        if opts.fork && !cli.foreground && os::stderr_is_pipe() {
            // A daemon holding a pipe open would keep whoever reads it waiting for ever.
            eprintln!(
                "ser: no syslog daemon listens on /dev/log and stderr is a pipe: the daemon's log is lost (start a syslog daemon, or run ser with -D -E)"
            );
            log_to = "none (no syslog daemon on /dev/log)";
        } else {
            eprintln!("ser: no syslog daemon listens on /dev/log; logging to stderr instead");
            to_stderr = true;
            log_to = log_target(true);
        }
    }
    setup_logging(debug, to_stderr);
    let mut daemon = None;
    match start(
        &cli,
        &opts,
        program,
        &cfg_path,
        (to_stderr, log_to),
        &mut daemon,
        sighup,
    ) {
        Ok(()) => 0,
        Err(e) => {
            ser_log!(L_ERR, "{e}");
            match daemon.take() {
                // The waiting parent prints the cause on the terminal ser was started from.
                // (Logging to stderr, the daemon already printed it there.)
                Some(d) if to_stderr => d.ready(false, ""),
                Some(d) => d.ready(false, &format!("ser: {e}\n")),
                None if !to_stderr => eprintln!("ser: {e}"),
                None => {}
            }
            1
        }
    }
}

fn start(
    cli: &Cli,
    opts: &CoreOptions,
    program: Program,
    cfg_path: &Path,
    (to_stderr, log_to): (bool, &str),
    daemon: &mut Option<os::Daemon>,
    sighup: &mut dyn FnMut(),
) -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let listen = listen_specs(opts, cli)?;
    let pidfile = cli.pidfile.clone();
    // A pid file naming a live process is another ser (or a leftover whose pid was reused):
    // refuse rather than overwrite what `serctl stop` would use.
    if let Some(p) = &pidfile {
        if let Some(pid) = std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        {
            if os::process_alive(pid) && pid as u32 != std::process::id() {
                return Err(format!(
                    "pid file {} names pid {pid}, which is running (another ser? stop it or remove the file)",
                    p.display()
                ));
            }
        }
    }
    // fork=yes (SER's default) without -D: become a daemon now, while single-threaded; the parent
    // exits 0 once the daemon has bound its sockets, 1 if it failed.
    if opts.fork && !cli.foreground {
        *daemon = Some(os::daemonize(to_stderr).map_err(|e| format!("cannot daemonize: {e}"))?);
        if cli.workdir.is_none() && cli.chroot.is_none() {
            let _ = std::env::set_current_dir("/");
        }
    }
    if cli.shm_mb.is_some() {
        ser_log!(
            L_INFO,
            "-m: shared memory size ignored (ser has no shared memory pool)"
        );
    }
    if let Some(dir) = &cli.chroot {
        std::os::unix::fs::chroot(dir).map_err(|e| format!("chroot {}: {e}", dir.display()))?;
        std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    }
    if let Some(dir) = &cli.workdir {
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
    }
    let mut tcp = transport::tcp::TcpLimits::default();
    if let Some(s) = cli.tcp_idle {
        tcp.idle = Duration::from_secs(s);
    }
    if let Some(s) = cli.tcp_read_timeout {
        tcp.read_timeout = Duration::from_secs(s);
    }
    if let Some(n) = cli.tcp_max_conns {
        tcp.max_conns = n;
    }
    if let Some(n) = cli.tcp_max_conns_per_ip {
        tcp.max_per_ip = n;
    }
    let mut rc = RuntimeConfig {
        listen,
        shards: shard_count(opts, cli)?,
        pin: !cli.no_pin,
        io: cli.io,
        rcvbuf: Some(cli.maxbuffer.unwrap_or(opts.maxbuffer) as usize),
        tcp,
        ..RuntimeConfig::default()
    };
    if let Some(n) = cli.overload_backlog {
        rc.overload_backlog = n;
    }
    if let Some(ms) = cli.overload_delay_ms {
        rc.overload_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(ms) = cli.overload_after_ms {
        rc.overload_after = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = os::raise_nofile_limit() {
        ser_log!(L_INFO, "open files limit: {n}");
    }
    // Signals first, so one arriving during start-up is not lost.
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let proxy = server::Proxy::start(&rc, program, opts, cfg_path)?;
    let runtime = proxy.runtime();
    let uid = cli
        .user
        .as_deref()
        .or(opts.user.as_deref())
        .map(|u| lookup_id("/etc/passwd", u))
        .transpose()?;
    let gid = cli
        .group
        .as_deref()
        .or(opts.group.as_deref())
        .map(|g| lookup_id("/etc/group", g))
        .transpose()?;
    if uid.is_some() || gid.is_some() {
        if let Err(e) = os::drop_privileges(uid, gid) {
            proxy.stop();
            return Err(format!("cannot change uid/gid: {e}"));
        }
    }
    if let Some(p) = &pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            proxy.stop();
            return Err(format!("cannot write pid file {}: {e}", p.display()));
        }
    }
    // Management (FIFO, JSON-RPC, HTTP) after the privileges are dropped: the FIFO and the socket
    // belong to the user ser runs as.
    let mgmt = match mgmt::Mgmt::start(
        &mgmt::MgmtConfig::from_cli(cli, opts),
        proxy.control(),
        std::env::args().collect(),
    ) {
        Ok(m) => m,
        Err(e) => {
            proxy.stop();
            return Err(e);
        }
    };
    let addrs: Vec<String> = runtime
        .local_addrs()
        .iter()
        .map(|(a, p)| format!("{}:{a}", p.as_str().to_ascii_lowercase()))
        .collect();
    ser_log!(
        L_NOTICE,
        "ser {} started: {} shard(s), io {}, listening on {}",
        env!("CARGO_PKG_VERSION"),
        runtime.shard_count(),
        runtime.backend().as_str(),
        addrs.join(" ")
    );
    // One summary on the terminal that started ser (the daemon's parent prints it): where it
    // listens, where its log goes, how to stop it.
    let pid = std::process::id();
    let stop = match (&pidfile, daemon.is_some()) {
        (Some(p), true) => format!(
            "kill -TERM {pid}, or serctl stop (PID_FILE={})",
            p.display()
        ),
        (Some(p), false) => format!(
            "Ctrl-C, kill -TERM {pid}, or serctl stop (PID_FILE={})",
            p.display()
        ),
        (None, true) => format!("kill -TERM {pid}"),
        (None, false) => format!("Ctrl-C or kill -TERM {pid}"),
    };
    let summary = format!(
        "ser: pid {pid} listening on {}; log: {}; stop: {stop}\n",
        addrs.join(" "),
        log_to
    );
    match daemon.take() {
        Some(d) => d.ready(true, &summary),
        None => {
            let _ = std::io::stderr().write_all(summary.as_bytes());
        }
    }
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                ser_log!(
                    L_NOTICE,
                    "SIGHUP received: reloading {}",
                    cfg_path.display()
                );
                // Errors are logged by reload; the running configuration stays.
                let _ = proxy.reload();
                sighup();
            }
            _ => {
                ser_log!(L_NOTICE, "signal {sig} received, shutting down");
                break;
            }
        }
    }
    // Management first: it holds the proxy's shared state.
    mgmt.stop();
    let panicked = proxy.stop();
    if let Some(p) = &pidfile {
        let _ = std::fs::remove_file(p);
    }
    if panicked > 0 {
        return Err(format!("{panicked} shard(s) panicked"));
    }
    ser_log!(L_NOTICE, "ser stopped");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn p_applies_to_last_l_and_following() {
        let cli = parse_args(&args("-l foo -l bar -p 5061 -l x -l y")).unwrap();
        let ports: Vec<_> = cli
            .listen
            .iter()
            .map(|l| (l.host.as_str(), l.port))
            .collect();
        assert_eq!(
            ports,
            vec![
                ("foo", None),
                ("bar", Some(5061)),
                ("x", Some(5061)),
                ("y", Some(5061))
            ]
        );
        let specs = listen_specs(
            &CoreOptions::default(),
            &parse_args(&args("-l 127.0.0.1 -l 127.0.0.2 -p 5061 -l 127.0.0.3")).unwrap(),
        )
        .unwrap();
        let got: Vec<String> = specs.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(got, ["127.0.0.1:5060", "127.0.0.2:5061", "127.0.0.3:5061"]);
        // Without -l, -p applies to the default listen (all IPv4 interfaces).
        let specs = listen_specs(
            &CoreOptions::default(),
            &parse_args(&args("-p 5070")).unwrap(),
        )
        .unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].addr.to_string(), "0.0.0.0:5070");
        assert!(specs[0].udp && specs[0].tcp);
        // -l with its own port is not changed by a later -p.
        let cli = parse_args(&args("-l 127.0.0.1:5080 -p 5090 -l 127.0.0.2")).unwrap();
        let specs = listen_specs(&CoreOptions::default(), &cli).unwrap();
        let got: Vec<String> = specs.iter().map(|s| s.addr.to_string()).collect();
        assert_eq!(got, ["127.0.0.1:5080", "127.0.0.2:5090"]);
    }

    #[test]
    fn grouped_flags_and_attached_values() {
        let cli = parse_args(&args("-dddDE -fser.cfg -n 2 -c")).unwrap();
        assert_eq!(cli.debug, 3);
        assert!(cli.foreground && cli.stderr && cli.check);
        assert_eq!(cli.config, Some(PathBuf::from("ser.cfg")));
        assert_eq!(cli.children, Some(2));
        assert!(parse_args(&args("-x")).is_err());
        assert!(parse_args(&args("-f")).is_err());
        assert!(parse_args(&args("-p abc")).is_err());
        assert!(parse_args(&args("--io=bogus")).is_err());
        assert_eq!(parse_args(&args("--io uring")).unwrap().io, IoMode::Uring);
        let cli = parse_args(&args("--web-stats-interval=1")).unwrap();
        assert_eq!(cli.web_stats_interval, Some(1));
        for bad in ["0", "3601", "x"] {
            assert!(parse_args(&args(&format!("--web-stats-interval={bad}"))).is_err());
        }
    }

    #[test]
    fn relative_paths_become_absolute() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("ser.cfg")), cwd.join("ser.cfg"));
        assert_eq!(
            absolute(Path::new("/etc/ser/ser.cfg")),
            PathBuf::from("/etc/ser/ser.cfg")
        );
        assert_eq!(
            absolute_db_url("sqlite://var/ser.db"),
            format!("sqlite://{}", cwd.join("var/ser.db").display())
        );
        for keep in [
            "sqlite:///var/lib/ser/ser.db",
            "mysql://u:p@h/db",
            "postgres://u@h/db",
            "sqlite://",
        ] {
            assert_eq!(absolute_db_url(keep), keep);
        }
    }

    #[test]
    fn listen_forms() {
        let l = parse_listen("udp:[::1]:5070").unwrap();
        assert_eq!(
            (l.proto, l.host.as_str(), l.port),
            (Some(Proto::Udp), "::1", Some(5070))
        );
        let l = parse_listen("::1").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("::1", None));
        let l = parse_listen("tcp:10.0.0.1").unwrap();
        assert_eq!((l.proto, l.port), (Some(Proto::Tcp), None));
        assert!(parse_listen("1.2.3.4:99999").is_err());
        assert!(parse_listen("[::1").is_err());
    }
}
