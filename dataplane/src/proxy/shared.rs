//! What every proxy shard shares, and what it is told: the current program with what is derived
//! from it once per load ([`Loaded`]), the proxy's settings, the caches and services all shards
//! read, the jobs they hand to the controlplane ([`JobRequest`]) and the messages their inboxes
//! take ([`ShardMsg`]: job answers, replies for another shard's transaction, `t_uac` requests).
//!
//! Invariants: written at start-up (or swapped whole on reload, `program`); on the hot path only
//! read, except the per-shard counters each shard writes for itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use arc_swap::ArcSwap;

use super::sl::{self, SlTagger};
use crate::dns::DnsCache;
use crate::offload::{Job, JobResult};
use crate::script::ir::Program;
use crate::script::myself::Myself;
use crate::shard::Inbox;
use crate::transport::{Packet, Proto};
use crate::txn::table::{LocalReplies, UacRequest};
use crate::txn::{TmCounters, TmTotals};

/// A job handed to the controlplane, with where its answer goes.
#[derive(Debug)]
pub struct JobRequest {
    pub shard: usize,
    pub id: u64,
    pub job: Job,
}

/// Messages a proxy shard receives in its inbox.
#[derive(Debug)]
pub enum ShardMsg {
    /// The answer to job `id`.
    JobDone { id: u64, result: JobResult },
    /// A reply that arrived on another shard for a transaction of this one.
    Reply(Packet),
    /// `t_uac`: send this request statefully.
    Uac(Box<UacRequest>),
    /// The FIFO's `t_reply`: answer a transaction of this shard.
    TReply(Box<ExternalReply>),
    /// Send `data` over UDP to `dest` from this shard's socket (nathelper's keep-alives, which
    /// must come from the address the UA registered with).
    Datagram {
        data: bytes::Bytes,
        dest: SocketAddr,
    },
}

/// A reply to a transaction written outside the script (the FIFO's `t_reply`, what a media server
/// behind module vm answers with), addressed by the transaction's [`trans_id`].
pub struct ExternalReply {
    pub shard: usize,
    pub txn: crate::txn::TxnHandle,
    pub code: u16,
    pub reason: String,
    /// `""`: ser's own tag.
    pub to_tag: String,
    /// Header lines, each ended by CRLF.
    pub headers: String,
    pub body: Vec<u8>,
    /// Told whether the reply went out.
    pub done: Box<dyn FnOnce(Result<(), String>) + Send>,
}

impl std::fmt::Debug for ExternalReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalReply")
            .field("shard", &self.shard)
            .field("txn", &self.txn)
            .field("code", &self.code)
            .finish()
    }
}

/// The `hash:label` a transaction is named by outside ser (SER's `t_get_trans_ident`): the
/// shard and slot as "hash", the slot's generation as "label".
pub fn trans_id(shard: usize, h: crate::txn::TxnHandle) -> String {
    format!("{}:{}", u64::from(h.slot) * 256 + shard as u64 % 256, h.gen)
}

/// The shard and handle of a [`trans_id`]; `None` when it is not one.
pub fn parse_trans_id(s: &str) -> Option<(usize, crate::txn::TxnHandle)> {
    let (hash, label) = s.trim().split_once(':')?;
    let hash: u64 = hash.parse().ok()?;
    let gen: u32 = label.parse().ok()?;
    let slot = u32::try_from(hash / 256).ok()?;
    Some(((hash % 256) as usize, crate::txn::TxnHandle { slot, gen }))
}

/// Settings of the proxy taken from the core options.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub reply_to_via: bool,
    pub check_via: bool,
    pub sip_warning: bool,
    pub server_signature: bool,
    /// The `Server:` value.
    pub server_header: String,
    /// Answer Max-Forwards 0 with 483 before the script (when the script does not load maxfwd).
    pub enforce_max_forwards: bool,
    /// SER's `dns`: a Via sent-by name that resolves (in the DNS cache) to the source address gets
    /// no `received`.
    pub dns: bool,
    /// SER's `rev_dns`: the same decision by the source address's reverse (PTR) names.
    pub rev_dns: bool,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            reply_to_via: false,
            check_via: false,
            sip_warning: false,
            server_signature: true,
            server_header: format!(
                "Sip EXpress router ({} ({}/{}))",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            enforce_max_forwards: true,
            dns: false,
            rev_dns: false,
        }
    }
}

/// A compiled program with what is derived from it for the shards.
pub struct Loaded {
    pub program: Program,
    /// `myself`: the program's listen/alias options plus the addresses actually bound.
    pub myself: Myself,
    /// tm's timers from the program's parameters (read once per load).
    pub timers: crate::txn::TimerConfig,
    /// Every loaded module's settings, resolved once per load.
    pub configs: crate::script::ModuleConfigs,
}

impl Loaded {
    /// `program` with `myself` built from its options and the `local` addresses bound.
    pub fn new(program: Program, local: &[(SocketAddr, Proto)]) -> Loaded {
        let mut myself = Myself::from_options(&program.options);
        for (a, _) in local {
            if a.ip().is_unspecified() {
                // Every interface: the loopback addresses and this host's name are ours too.
                myself.add_addr(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), Some(a.port()));
                myself.add_addr(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST), Some(a.port()));
                if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                    myself.add_name(h.trim(), Some(a.port()));
                }
            } else {
                myself.add_addr(a.ip(), Some(a.port()));
            }
        }
        Loaded {
            timers: crate::modules::tm::timer_config(&program),
            configs: crate::modules::resolve_configs(&program),
            program,
            myself,
        }
    }
}

/// What every shard's handler shares.
pub struct Shared {
    /// The current program; swapped on reload.
    pub program: ArcSwap<Loaded>,
    pub settings: ProxySettings,
    pub sl: SlTagger,
    /// Salt of stateless branches (per server).
    pub salt: u64,
    /// Our listen addresses with their transport.
    pub local: Vec<(SocketAddr, Proto)>,
    /// Reverse DNS answers for `rev_dns` (names of a source address, until when they are valid).
    pub rev_dns: papaya::HashMap<IpAddr, (Arc<[String]>, Instant)>,
    /// RFC 3263 answers, filled by the controlplane, read here without blocking.
    pub dns: Arc<DnsCache>,
    /// Where jobs go (the controlplane's job runner).
    pub jobs: crossbeam_channel::Sender<JobRequest>,
    /// Stateless reply counters, one per shard (`sl_stats`).
    pub sl_stats: Vec<sl::SlStats>,
    /// Locations, credentials, the DB write queue: what module functions share.
    pub services: Arc<crate::services::Services>,
    /// Transaction statistics, table sizes, the shards' inboxes (module tm).
    pub tm: TmShared,
}

/// How often expired DNS and reverse-DNS entries are swept (by the controlplane's timer thread,
/// `ser`'s `locations::Timer`: a full scan of up to 65k entries per map does not belong on a
/// shard).
pub const DNS_PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Removes the entries of the DNS cache and of the reverse-DNS map that expired at `now` (reads
/// already treat them as misses: this frees their memory). Returns how many went.
pub fn purge_dns(
    dns: &DnsCache,
    rev_dns: &papaya::HashMap<IpAddr, (Arc<[String]>, Instant)>,
    now: Instant,
) -> usize {
    let rev = rev_dns.pin();
    let before = rev.len();
    rev.retain(|_, (_, until)| *until > now);
    dns.purge_expired(now) + before.saturating_sub(rev.len())
}

impl Shared {
    /// [`purge_dns`] over this server's caches.
    pub fn purge_dns(&self, now: Instant) -> usize {
        purge_dns(&self.dns, &self.rev_dns, now)
    }

    /// How the transaction table writes its own replies: sl's To-tags and our `Server:` header.
    pub fn local_replies(&self) -> LocalReplies {
        let s = &self.settings;
        LocalReplies {
            tagger: self.sl.clone(),
            server: s
                .server_signature
                .then(|| bytes::Bytes::copy_from_slice(s.server_header.as_bytes())),
        }
    }
}

/// What the shards share about transactions: counters for `t_stats`, table sizes for `t_hash`, and
/// the shards' inboxes (replies handed to their owner, `t_uac` requests).
pub struct TmShared {
    counters: Arc<TmCounters>,
    inboxes: OnceLock<Vec<Inbox<ShardMsg>>>,
    next_uac: AtomicUsize,
}

impl TmShared {
    /// Counters for `shards` shards.
    pub fn new(shards: usize) -> TmShared {
        TmShared {
            counters: Arc::new(TmCounters::new(shards)),
            inboxes: OnceLock::new(),
            next_uac: AtomicUsize::new(0),
        }
    }

    /// Gives the shards' inboxes (once, after the runtime started). Without them, replies that
    /// arrive on the wrong shard are forwarded statelessly and `t_uac` fails.
    pub fn set_inboxes(&self, inboxes: Vec<Inbox<ShardMsg>>) {
        let _ = self.inboxes.set(inboxes);
    }

    /// The counters the shards' tables write.
    pub fn counters(&self) -> &Arc<TmCounters> {
        &self.counters
    }

    /// `t_stats`: the counters summed over the shards.
    pub fn totals(&self) -> TmTotals {
        self.counters.totals()
    }

    /// The counters of one shard (`t_hash`'s per-table totals).
    pub fn shard_totals(&self, shard: usize) -> TmTotals {
        self.counters.shard_totals(shard)
    }

    /// `t_hash`: transactions in each shard's table.
    pub fn table_sizes(&self) -> Vec<u64> {
        self.counters.table_sizes()
    }

    pub(super) fn inbox(&self, shard: usize) -> Option<&Inbox<ShardMsg>> {
        self.inboxes.get().and_then(|v| v.get(shard))
    }

    /// Has shard 0 send `data` to `dest` over UDP from its socket ([`ShardMsg::Datagram`]);
    /// false when there is no shard or its inbox is full.
    pub fn datagram(&self, data: bytes::Bytes, dest: SocketAddr) -> bool {
        self.inbox(0)
            .is_some_and(|i| i.send(ShardMsg::Datagram { data, dest }).is_ok())
    }

    /// `t_reply` from outside: hands `r` to the shard owning its transaction. `Err` (the reply
    /// back) when there is no such shard.
    pub fn reply(&self, r: ExternalReply) -> Result<(), Box<ExternalReply>> {
        let Some(inbox) = self.inbox(r.shard) else {
            return Err(Box::new(r));
        };
        match inbox.send(ShardMsg::TReply(Box::new(r))) {
            Ok(()) => Ok(()),
            Err(ShardMsg::TReply(r)) => Err(r),
            // `send` hands back the message it was given; never another kind.
            Err(_) => Ok(()),
        }
    }

    /// `t_uac`: starts a transaction for `req` on one of the shards (round robin). `Err(req)` when
    /// no shard can take it (not started, or stopped).
    pub fn uac(&self, req: UacRequest) -> Result<(), Box<UacRequest>> {
        let Some(all) = self.inboxes.get().filter(|v| !v.is_empty()) else {
            return Err(Box::new(req));
        };
        let i = self.next_uac.fetch_add(1, Ordering::Relaxed) % all.len();
        match all[i].send(ShardMsg::Uac(Box::new(req))) {
            Ok(()) => Ok(()),
            Err(ShardMsg::Uac(r)) => Err(r),
            Err(_) => Err(Box::new(UacRequest {
                // `send` hands back the message it was given: always a Uac; never reached.
                method: String::new(),
                ruri: String::new(),
                headers: String::new(),
                body: Vec::new(),
                next_hop: None,
                done: Box::new(|_| {}),
            })),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dns::DnsKey;
    use std::time::Duration;

    #[test]
    fn purge_dns_removes_expired_entries_of_both_maps_and_keeps_fresh_ones() {
        let dns = DnsCache::new();
        let rev = papaya::HashMap::new();
        let now = Instant::now();
        for i in 0..100u32 {
            let ttl = if i % 2 == 0 { 1 } else { 3600 };
            dns.insert_negative(DnsKey::new(&format!("h{i}"), None, None, false), now);
            let ip = IpAddr::from([192, 0, 2, i as u8]);
            rev.pin()
                .insert(ip, (Arc::from(Vec::new()), now + Duration::from_secs(ttl)));
        }
        // Negative DNS entries live NEGATIVE_TTL; half the reverse entries 1 s.
        let later = now + DnsCache::NEGATIVE_TTL + Duration::from_secs(1);
        assert_eq!(purge_dns(&dns, &rev, later), 100 + 50);
        assert!(dns.is_empty());
        assert_eq!(rev.pin().len(), 50);
        assert!(rev.pin().iter().all(|(_, (_, until))| *until > later));
        // Nothing more to do.
        assert_eq!(purge_dns(&dns, &rev, later), 0);
    }
}
