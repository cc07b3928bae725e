//! Work a shard must not do itself: [`Job`]s sent to the controlplane, and their [`JobResult`]s.
//!
//! A script action that needs DNS, an external process or the database does not block: it returns
//! `ActionResult::Suspend(job)` (see [`crate::script::env`]). The shard parks the message context,
//! hands the job to the controlplane, and when the answer comes back calls
//! [`crate::script::exec::resume`] with the [`JobResult`]; the script continues after the instruction
//! that suspended.
//!
//! Invariants: a job owns everything it needs (no borrow of the message or the program), so it can
//! cross threads; a job always gets exactly one result (a failure is [`JobResult::Failed`]).
//!
//! The variants are deliberately small: DNS (RFC 3263 resolution, `src_ip==name` tests), `exec`
//! (the exec module), and database access (auth_db, usrloc, acc…). The issues that implement the
//! controlplane halves of those modules grow the payloads they need.

use std::net::IpAddr;

use bytes::Bytes;

/// What a DNS job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsQuery {
    /// A and AAAA records of a name (`src_ip == host.name`, `forward(host.name)`).
    Addrs,
    /// SRV records (`_sip._udp.name`) as RFC 3263 §4.2 uses them.
    Srv,
    /// NAPTR records of a domain (RFC 3263 §4.1).
    Naptr,
    /// Reverse lookup (PTR) of an address (`src_ip == "name"` with `rev_dns=yes`).
    Reverse(IpAddr),
}

/// One unit of blocking work, answered by the controlplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// RFC 3263 server location for a SIP destination (NAPTR → SRV → A/AAAA, or less when a port
    /// or transport is given); the answer also fills the shared DNS cache.
    Resolve {
        /// Host name.
        name: String,
        /// Port given in the URI or action, if any.
        port: Option<u16>,
        /// Transport given (`;transport=`), if any.
        transport: Option<crate::wire::via::Transport>,
        /// A `sips:` destination.
        secure: bool,
    },
    /// A DNS lookup.
    Dns {
        /// Name to resolve (for [`DnsQuery::Reverse`], the address as text, for messages).
        name: String,
        /// Record kind.
        query: DnsQuery,
    },
    /// Run an external command (module `exec`), with the message's data in its environment and,
    /// for `exec_msg`, the message on its standard input.
    Exec {
        /// Command line, run by `/bin/sh -c`.
        command: String,
        /// Extra environment variables (`SIP_HF_*`, `SIP_SRCIP`… for `exec_*` with `setvars`).
        env: Vec<(String, String)>,
        /// Standard input (the request for `exec_msg`), if any.
        stdin: Option<Bytes>,
        /// Kill the program after this long (exec's `time_to_kill`); `None`: the runner's bound.
        time_to_kill: Option<std::time::Duration>,
    },
    /// A database select (auth_db credentials, usrloc in db_mode 3, group/domain checks…): `columns`
    /// of the rows of `table` where every `keys` column equals its value (no keys: every row),
    /// answered with [`JobResult::Rows`].
    Db {
        /// Database URL (`db_url` of the asking module; empty = the server's default database).
        url: String,
        /// Table name (SER's schema: `subscriber`, `location`, `acc`…).
        table: String,
        /// `column = value` conditions.
        keys: Vec<(String, String)>,
        /// Columns wanted.
        columns: Vec<String>,
    },
    /// Write `data` in one go to the FIFO at `path`, which an application must have open for
    /// reading (module vm hands a transaction to a media server this way); answered
    /// `Rows(vec![])` when written, `Failed` when nobody reads the FIFO or it cannot be written.
    WriteFifo {
        /// The FIFO.
        path: String,
        /// What to write.
        data: Bytes,
    },
    /// A database write whose completion the script waits for (db_mode 3 `save`, `acc` with
    /// guaranteed delivery); answered `Rows(vec![])` when done, `Failed` when the DB refused it.
    DbWrite(DbWrite),
    /// ENUM (RFC 3761, module enum): the NAPTR records of `domain`, the `E2U+sip` ones with flag
    /// `u` in order/preference order, the first whose regexp matches `number` gives the URI;
    /// answered `Names(vec![uri])`, or `Failed` (no record, no match, DNS error).
    EnumQuery {
        /// The E.164 number as dialled (`+` and digits): the regexps' input.
        number: String,
        /// The ENUM domain (`4.3.2.1.e164.arpa.`).
        domain: String,
    },
    /// A RADIUS exchange (auth_radius, group_radius, uri_radius, `acc_rad_request`): answered
    /// [`JobResult::Radius`] with the server's verified reply, `Failed` when no server answered.
    Radius(crate::radius::RadiusRequest),
    /// One command to the RTP relay of module nathelper: `command` (without a cookie) sent to
    /// `sock` (`unix:/path`, `udp:host:port` — the rtpproxy protocol — or `ng:host:port`,
    /// rtpengine's NG), its answer awaited at most `timeout`; answered [`JobResult::Relay`] (the
    /// answer without its cookie) or `Failed` (no answer in time, unreachable).
    RtpRelay {
        /// The relay's control socket, as `rtpproxy_sock` names it.
        sock: String,
        /// The command.
        command: Bytes,
        /// How long to wait for the answer.
        timeout: std::time::Duration,
    },
    /// A command to the SIP-XMPP gateway of module jabber (a message to send, a presence to
    /// change, a room to join): answered `Rows(vec![])` when done, `Failed` when not.
    Jabber(Box<crate::modules::jabber::JabberJob>),
}

/// One database change. Column values are text (`None` = NULL): every backend converts, and SER's
/// schema has no binary columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbWrite {
    /// Insert a row.
    Insert {
        /// Database URL (empty = default).
        url: String,
        /// Table.
        table: String,
        /// `column = value` of the new row.
        row: Vec<(String, Option<String>)>,
    },
    /// Update the row(s) matching `keys` with `row`, inserting `keys` + `row` when none matches
    /// (usrloc's "replace" of a binding).
    Upsert {
        /// Database URL (empty = default).
        url: String,
        /// Table.
        table: String,
        /// `column = value` identifying the row.
        keys: Vec<(String, String)>,
        /// Other columns.
        row: Vec<(String, Option<String>)>,
    },
    /// Delete the rows matching `keys` (every `keys` column equal to its value).
    Delete {
        /// Database URL (empty = default).
        url: String,
        /// Table.
        table: String,
        /// `column = value` conditions (never empty: a whole-table delete is not a SIP operation).
        keys: Vec<(String, String)>,
    },
}

/// The queue of database writes that nobody waits for (usrloc db_mode 1/2 persistence, acc): shards
/// post, the controlplane's writer persists them in order, retrying while the DB is down, and
/// drains the queue before a clean shutdown. Posting never blocks; when the bound is reached the
/// write is refused and counted (and the caller logs it).
pub struct DbSink {
    tx: Option<crossbeam_channel::Sender<DbWrite>>,
    refused: std::sync::atomic::AtomicU64,
}

impl Default for DbSink {
    /// A sink with no database behind it: every post is refused (memory-only operation).
    fn default() -> Self {
        DbSink {
            tx: None,
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl DbSink {
    /// A sink feeding `tx` (a bounded channel whose receiver is the controlplane's DB writer).
    pub fn new(tx: crossbeam_channel::Sender<DbWrite>) -> DbSink {
        DbSink {
            tx: Some(tx),
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Queues `w`; false when there is no database or the queue is full.
    pub fn post(&self, w: DbWrite) -> bool {
        let ok = self.tx.as_ref().is_some_and(|tx| tx.try_send(w).is_ok());
        if !ok {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        ok
    }

    /// Whether a database is behind this sink.
    pub fn is_connected(&self) -> bool {
        self.tx.is_some()
    }

    /// Writes waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
    }

    /// Writes refused so far (queue full or no database).
    pub fn refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Job {
    /// A short name for logs and statistics.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::Dns { .. } | Job::Resolve { .. } => "dns",
            Job::Exec { .. } => "exec",
            Job::WriteFifo { .. } => "fifo",
            Job::Db { .. } | Job::DbWrite(_) => "db",
            Job::EnumQuery { .. } => "enum",
            Job::Radius(_) => "radius",
            Job::RtpRelay { .. } => "rtp",
            Job::Jabber(_) => "jabber",
        }
    }
}

/// The answer to a [`Job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    /// Where to send, best first (a [`Job::Resolve`] answer).
    Targets(Vec<crate::dns::SipTarget>),
    /// Addresses (a [`DnsQuery::Addrs`] answer; targets of SRV/NAPTR resolution flattened).
    Addrs(Vec<IpAddr>),
    /// Names (a [`DnsQuery::Reverse`] answer).
    Names(Vec<String>),
    /// A finished command: its exit status and standard output.
    Exec {
        /// Exit status (0 = success).
        status: i32,
        /// Standard output.
        stdout: Bytes,
    },
    /// Database rows, one `Vec` per row, in the order of the job's `columns` (`None` = NULL).
    Rows(Vec<Vec<Option<String>>>),
    /// The job could not be done (name not found, command not started, DB down…).
    Failed(String),
    /// A RADIUS server's verified reply: its code (Access-Accept…) and attributes.
    Radius {
        /// Reply code.
        code: u8,
        /// Attributes (type, value).
        attrs: Vec<(u8, Vec<u8>)>,
    },
    /// The RTP relay's answer to a [`Job::RtpRelay`] (without the cookie).
    Relay(Bytes),
}

impl JobResult {
    /// The script value of the result when the suspending action has no resume function of its own:
    /// `1` for a non-empty answer or exit status 0, `-1` otherwise. Never `0` (which would stop the
    /// script).
    pub fn ret(&self) -> i32 {
        let ok = match self {
            JobResult::Addrs(a) => !a.is_empty(),
            JobResult::Targets(t) => !t.is_empty(),
            JobResult::Names(n) => !n.is_empty(),
            JobResult::Exec { status, .. } => *status == 0,
            JobResult::Rows(r) => !r.is_empty(),
            JobResult::Failed(_) => false,
            JobResult::Radius { code, .. } => {
                matches!(
                    *code,
                    crate::radius::ACCESS_ACCEPT | crate::radius::ACCOUNTING_RESPONSE
                )
            }
            JobResult::Relay(r) => !r.is_empty(),
        };
        if ok {
            1
        } else {
            -1
        }
    }
}
