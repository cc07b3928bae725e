//! Locating SIP servers (RFC 3263 §4) with `hickory-resolver`, and filling the dataplane's
//! [`DnsCache`].
//!
//! [`SipResolver::resolve`] turns (name, port, transport, secure) into an ordered list of
//! [`SipTarget`]s to try, and the TTL for which that list may be cached:
//!
//! 1. a numeric address needs no query: itself, on the given port or the transport's default (5060,
//!    5061 for TLS); the transport is the given one, else UDP (TLS for `sips:`);
//! 2. a port given: A/AAAA of the name only, no NAPTR/SRV (§4.2);
//! 3. a transport given but no port: SRV of `_sip._udp`/`_sip._tcp`/`_sips._tcp`/`_sip._sctp`, falling
//!    back to A/AAAA on the default port (WebSocket transports have no SRV: straight to A/AAAA);
//! 4. neither: NAPTR; records with flag `s` and a service we support (`SIP+D2U`, `SIP+D2T`,
//!    `SIPS+D2T`; only `SIPS+D2T` for `sips:`), in order of (order, preference), each followed through
//!    its SRV; with no usable NAPTR, SRV of `_sip._udp` then `_sip._tcp` (`_sips._tcp` only for
//!    `sips:`); with no SRV either, A/AAAA on 5060 over UDP (5061 over TLS for `sips:`).
//!
//! Choices worth knowing:
//! - SRV records are ordered by priority ascending, then **weight descending** (then target name):
//!   deterministic, so tests and failover are repeatable, instead of RFC 2782's weighted random pick.
//!   A target of `.` ("service not offered") is skipped. Once SRV records exist for a lookup (even only
//!   `.`), the name's own A/AAAA records are no longer a fallback (RFC 3263 §4.2).
//! - NAPTR records that are all unusable (other services or flags) count as no NAPTR: the SRV step
//!   follows.
//! - Every target of every usable NAPTR/SRV record is returned, in order, with duplicates removed: the
//!   list doubles as the failover order. A/AAAA results come IPv4 first.
//! - `sips:` forces TLS: a `transport=tcp`/`udp`/none becomes TLS, `ws` becomes `wss`.
//! - The TTL returned is the smallest TTL of all the records used (an address literal: one hour).
//! - Lookups at one level run at once on the calling task (the SRV sets of all NAPTR records, the
//!   A/AAAA of all SRV targets), so a chain costs about three round trips, not one per record.
//! - Errors: a name with no usable records is [`DnsError::NotFound`]; a server that does not answer
//!   in time is [`DnsError::Timeout`] (a timeout is never mistaken for "no records", so it never falls
//!   through to the next step — no A/AAAA fallback because the NAPTR query timed out); anything else
//!   (refused, server failure, socket error) is [`DnsError::Io`].
//! - Every query of one `resolve` shares one deadline, `timeout × attempts` from the start: a whole
//!   `resolve` never takes (much) longer. If one branch fails (say one SRV target's A lookup times out)
//!   while others found targets, those targets are returned with a **zero TTL**, so the cache keeps
//!   the degraded answer only for its minimum time; with no target at all, the error is returned.
//! - A name server on a closed port usually shows up as `Timeout` (the UDP socket is not connected,
//!   so ICMP errors are not seen).
//! - Names are queried as fully qualified (no search-list expansion).

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use dataplane::dns::{
    base_transport, default_port, effective_transport, literal_target, DnsCache, DnsKey, DnsKeyRef,
    Lookup, SipTarget,
};
use dataplane::wire::via::Transport;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::rdata::{NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use tokio::time::timeout_at;

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// DNS answered, but there is no usable record for the name (NXDOMAIN, no data, or an invalid name).
    NotFound,
    /// The DNS server did not answer within the configured time.
    Timeout,
    /// Anything else: the server refused or failed, a socket error, a malformed answer.
    Io(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NotFound => f.write_str("DNS: no SIP server found for this name"),
            DnsError::Timeout => f.write_str("DNS: timed out waiting for the name server"),
            DnsError::Io(e) => write!(f, "DNS: lookup failed: {e}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// Timeouts of a [`SipResolver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsOptions {
    /// How long to wait for one answer. Default 2 s.
    pub timeout: Duration,
    /// How many times to send a query before giving up. Default 2. A whole `resolve` is bounded by
    /// `timeout × attempts`.
    pub attempts: usize,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl DnsOptions {
    fn budget(&self) -> Duration {
        self.timeout
            .saturating_mul(u32::try_from(self.attempts.max(1)).unwrap_or(u32::MAX))
    }
}

/// How long an answer for an address literal may be cached.
const LITERAL_TTL: Duration = Duration::from_secs(3600);

/// An RFC 3263 resolver. Cheap to clone; needs a tokio runtime to resolve.
#[derive(Clone)]
pub struct SipResolver {
    inner: TokioResolver,
    opts: DnsOptions,
}

impl fmt::Debug for SipResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipResolver")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn net_error(e: NetError) -> DnsError {
    match e {
        NetError::Timeout => DnsError::Timeout,
        e if e.is_no_records_found() => DnsError::NotFound,
        NetError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => DnsError::Timeout,
        e => DnsError::Io(e.to_string()),
    }
}

fn apply(opts: &mut ResolverOpts, o: DnsOptions) {
    opts.timeout = o.timeout;
    opts.attempts = o.attempts.max(1);
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // Names are made fully qualified by us; never expand them with the search list.
    opts.ndots = 0;
}

impl SipResolver {
    /// A resolver using the system's configuration (`/etc/resolv.conf`, and the hosts file), with the
    /// default [`DnsOptions`].
    pub fn system() -> Result<Self, DnsError> {
        Self::system_with(DnsOptions::default())
    }

    /// A resolver using the system's configuration, with these timeouts.
    pub fn system_with(opts: DnsOptions) -> Result<Self, DnsError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::Io(e.to_string()))?;
        apply(builder.options_mut(), opts);
        let inner = builder.build().map_err(|e| DnsError::Io(e.to_string()))?;
        Ok(SipResolver { inner, opts })
    }

    /// A resolver asking only the name server at `addr` (UDP, TCP on truncation), with the default
    /// [`DnsOptions`]. The hosts file is not consulted. Meant for tests and fixed deployments.
    pub fn with_nameserver(addr: SocketAddr) -> Self {
        Self::with_nameserver_opts(addr, DnsOptions::default())
    }

    /// [`SipResolver::with_nameserver`] with these timeouts.
    pub fn with_nameserver_opts(addr: SocketAddr, opts: DnsOptions) -> Self {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        let mut ns = NameServerConfig::udp(addr.ip());
        ns.connections = vec![udp, tcp];
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::new());
        apply(builder.options_mut(), opts);
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        // Building only fails when setting up DNS-over-TLS, which this configuration does not use.
        #[allow(clippy::expect_used)]
        let inner = builder
            .build()
            .expect("a plain UDP/TCP resolver always builds");
        SipResolver { inner, opts }
    }

    /// The timeouts in use.
    pub fn options(&self) -> DnsOptions {
        self.opts
    }

    /// Resolves per RFC 3263 §4 (see the module docs): the targets in the order to try them, and how
    /// long they may be cached.
    pub async fn resolve(
        &self,
        name: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<(Vec<SipTarget>, Duration), DnsError> {
        let deadline = tokio::time::Instant::now() + self.opts.budget();
        let r = Run {
            resolver: self,
            deadline,
        };
        r.resolve(name, port, transport, secure).await
    }

    /// The names of `ip` (PTR records; SER's `rev_dns`), bounded by the same deadline as a resolve.
    pub async fn reverse(&self, ip: std::net::IpAddr) -> Result<Vec<String>, DnsError> {
        let deadline = tokio::time::Instant::now()
            + self.opts.timeout * u32::try_from(self.opts.attempts.max(1)).unwrap_or(1);
        let name = Name::from(ip);
        match timeout_at(deadline, self.inner.lookup(name, RecordType::PTR))
            .await
            .unwrap_or(Err(NetError::Timeout))
        {
            Ok(lookup) => {
                let names: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::PTR(p) => Some(p.0.to_ascii().trim_end_matches('.').to_string()),
                        _ => None,
                    })
                    .collect();
                if names.is_empty() {
                    Err(DnsError::NotFound)
                } else {
                    Ok(names)
                }
            }
            Err(e) => Err(net_error(e)),
        }
    }

    /// The NAPTR records of `name` as DNS gives them (ENUM, RFC 3761), bounded like a resolve.
    pub async fn naptr_records(&self, name: &str) -> Result<Vec<NAPTR>, DnsError> {
        let deadline = tokio::time::Instant::now() + self.opts.budget();
        let name = fqdn(name)?;
        match timeout_at(deadline, self.inner.lookup(name, RecordType::NAPTR))
            .await
            .unwrap_or(Err(NetError::Timeout))
        {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(n.clone()),
                    _ => None,
                })
                .collect()),
            Err(e) => Err(net_error(e)),
        }
    }

    /// Answers from `cache` if it holds a live entry; otherwise resolves and caches the result —
    /// targets for their TTL, `NotFound` as a negative entry. Timeouts and other errors are not cached
    /// (the next attempt asks again). A cached negative entry reads as `NotFound`.
    ///
    /// Concurrent misses for one key each run `resolve`, but hickory shares identical queries in
    /// flight, so the name server sees one set of queries.
    pub async fn resolve_cached(
        &self,
        cache: &DnsCache,
        name: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<Arc<[SipTarget]>, DnsError> {
        let key = DnsKeyRef::new(name, port, transport, secure);
        match cache.get(&key, Instant::now()) {
            Lookup::Hit(t) => return Ok(t),
            Lookup::Negative => return Err(DnsError::NotFound),
            Lookup::Miss => {}
        }
        self.fill_cache(cache, key.to_owned()).await
    }

    /// Resolves `key` and stores the result in `cache` (positive or negative), whatever the cache held.
    /// Returns what was resolved.
    pub async fn fill_cache(
        &self,
        cache: &DnsCache,
        key: DnsKey,
    ) -> Result<Arc<[SipTarget]>, DnsError> {
        let r = self
            .resolve(key.name(), key.port(), key.transport(), key.secure())
            .await;
        let now = Instant::now();
        match r {
            Ok((targets, ttl)) => {
                let targets: Arc<[SipTarget]> = targets.into();
                cache.insert(key, targets.clone(), ttl, now);
                Ok(targets)
            }
            Err(DnsError::NotFound) => {
                cache.insert_negative(key, now);
                Err(DnsError::NotFound)
            }
            Err(e) => Err(e),
        }
    }
}

/// One `resolve`: every query is bounded by the same deadline, so a branch that runs out of time
/// becomes a `Timeout` in its own result and does not take the others' answers with it.
struct Run<'a> {
    resolver: &'a SipResolver,
    deadline: tokio::time::Instant,
}

impl Run<'_> {
    async fn resolve(
        &self,
        name: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<(Vec<SipTarget>, Duration), DnsError> {
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let target = literal_target(ip, port, transport, secure);
            return Ok((vec![target], LITERAL_TTL));
        }
        let transport = transport.map(|t| effective_transport(t, secure));
        let fqdn = fqdn(name)?;
        if let Some(port) = port {
            let t = transport.unwrap_or(base_transport(secure));
            return self.addresses(&fqdn, port, t).await.finish();
        }
        if let Some(t) = transport {
            let mut acc = match srv_prefix(t) {
                Some(prefix) => self.srv(prefixed(prefix, &fqdn)?, t).await,
                None => Acc::default(),
            };
            if acc.is_empty_answer() {
                acc.merge(self.addresses(&fqdn, default_port(t), t).await);
            }
            return acc.finish();
        }
        // NAPTR, then the SRV records it points to (all at once, merged in NAPTR order).
        let (naptrs, mut acc) = self.naptr(&fqdn, secure).await;
        if acc.error.is_some() {
            return acc.finish();
        }
        let found = join_all(naptrs.into_iter().map(|(n, t)| self.srv(n, t)).collect()).await;
        found.into_iter().for_each(|a| acc.merge(a));
        if !acc.is_empty_answer() {
            return acc.finish();
        }
        // No usable NAPTR: SRV per transport we support.
        let services: &[Transport] = if secure {
            &[Transport::Tls]
        } else {
            &[Transport::Udp, Transport::Tcp]
        };
        let mut lookups = Vec::new();
        for &t in services {
            if let Some(prefix) = srv_prefix(t) {
                lookups.push(self.srv(prefixed(prefix, &fqdn)?, t));
            }
        }
        join_all(lookups)
            .await
            .into_iter()
            .for_each(|a| acc.merge(a));
        if !acc.is_empty_answer() {
            return acc.finish();
        }
        // No SRV either: the name's own addresses on the default port.
        let t = base_transport(secure);
        acc.merge(self.addresses(&fqdn, default_port(t), t).await);
        acc.finish()
    }

    /// Looks `name` up as `rtype`: the answers (`None` when DNS says there is nothing), or the error
    /// noted in `acc`.
    async fn query(&self, name: &Name, rtype: RecordType, acc: &mut Acc) -> Option<Vec<RData>> {
        match timeout_at(
            self.deadline,
            self.resolver.inner.lookup(name.clone(), rtype),
        )
        .await
        .unwrap_or(Err(NetError::Timeout))
        {
            Ok(lookup) => {
                acc.ttl_until(lookup.valid_until());
                Some(lookup.answers().iter().map(|r| r.data.clone()).collect())
            }
            Err(e) => {
                match net_error(e) {
                    DnsError::NotFound => {}
                    e => acc.fail(e),
                }
                None
            }
        }
    }

    /// Usable NAPTR records of `name`, in (order, preference) order: (SRV name, transport).
    async fn naptr(&self, name: &Name, secure: bool) -> (Vec<(Name, Transport)>, Acc) {
        let mut acc = Acc::default();
        let Some(data) = self.query(name, RecordType::NAPTR, &mut acc).await else {
            return (Vec::new(), acc);
        };
        let records: Vec<NAPTR> = data
            .into_iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => Some(n),
                _ => None,
            })
            .collect();
        (order_naptr(records, secure), acc)
    }

    /// Follows the SRV records of `name` (ordered; their targets looked up at once) to addresses over
    /// transport `t`.
    async fn srv(&self, name: Name, t: Transport) -> Acc {
        let mut acc = Acc::default();
        let Some(data) = self.query(&name, RecordType::SRV, &mut acc).await else {
            return acc;
        };
        let records: Vec<SRV> = data
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(s),
                _ => None,
            })
            .collect();
        // RFC 2782/3263: SRV records exist (even only `.`, "not offered here"), so the name's own
        // A/AAAA records are not a fallback for this lookup.
        acc.srv_found |= !records.is_empty();
        let records = order_srv(records);
        let lookups = records
            .iter()
            .map(|srv| self.addresses(&srv.target, srv.port, t))
            .collect();
        join_all(lookups)
            .await
            .into_iter()
            .for_each(|a| acc.merge(a));
        acc
    }

    /// The A/AAAA addresses of `name` (IPv4 first) on `port` over `t`.
    async fn addresses(&self, name: &Name, port: u16, t: Transport) -> Acc {
        let mut acc = Acc::default();
        match timeout_at(self.deadline, self.resolver.inner.lookup_ip(name.clone()))
            .await
            .unwrap_or(Err(NetError::Timeout))
        {
            Ok(ips) => {
                acc.ttl_until(ips.valid_until());
                for ip in ips.iter() {
                    acc.push(SipTarget {
                        addr: SocketAddr::new(ip, port),
                        transport: t,
                    });
                }
            }
            Err(e) => match net_error(e) {
                DnsError::NotFound => {}
                e => acc.fail(e),
            },
        }
        acc
    }
}

/// Polls all `futs` at once on the current task; their outputs in the same order.
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// What one branch of the lookup found: targets (in order, no duplicates), the smallest TTL of the
/// records used, and the first error met (a timeout, a server failure — not "no records").
#[derive(Default)]
struct Acc {
    targets: Vec<SipTarget>,
    ttl: Option<Duration>,
    error: Option<DnsError>,
    /// SRV records were found (perhaps only `.`, or targets without addresses).
    srv_found: bool,
}

impl Acc {
    fn ttl_until(&mut self, until: Instant) {
        self.min_ttl(until.saturating_duration_since(Instant::now()));
    }

    fn min_ttl(&mut self, ttl: Duration) {
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    fn fail(&mut self, e: DnsError) {
        self.error.get_or_insert(e);
    }

    fn push(&mut self, t: SipTarget) {
        if !self.targets.contains(&t) {
            self.targets.push(t);
        }
    }

    fn merge(&mut self, other: Acc) {
        other.targets.into_iter().for_each(|t| self.push(t));
        if let Some(ttl) = other.ttl {
            self.min_ttl(ttl);
        }
        if let Some(e) = other.error {
            self.fail(e);
        }
        self.srv_found |= other.srv_found;
    }

    /// True when DNS answered and there was nothing: the next RFC 3263 step may be tried. After an
    /// error it is not (a timeout must not turn into a fallback), nor once SRV records were found.
    fn is_empty_answer(&self) -> bool {
        self.targets.is_empty() && self.error.is_none() && !self.srv_found
    }

    /// The targets; with none, the error met, else `NotFound`. Targets found despite an error in
    /// another branch are returned with a zero TTL (cached for the minimum only).
    fn finish(self) -> Result<(Vec<SipTarget>, Duration), DnsError> {
        if self.targets.is_empty() {
            return Err(self.error.unwrap_or(DnsError::NotFound));
        }
        let ttl = match self.error {
            Some(_) => Duration::ZERO,
            None => self.ttl.unwrap_or(Duration::ZERO),
        };
        Ok((self.targets, ttl))
    }
}

/// The SRV service/protocol labels for a transport (RFC 3263 §4.1, RFC 4168 for SCTP).
fn srv_prefix(t: Transport) -> Option<&'static str> {
    match t {
        Transport::Udp => Some("_sip._udp"),
        Transport::Tcp => Some("_sip._tcp"),
        Transport::Tls => Some("_sips._tcp"),
        Transport::Sctp => Some("_sip._sctp"),
        _ => None,
    }
}

/// The NAPTR service field for a transport we can use.
fn naptr_transport(service: &[u8], secure: bool) -> Option<Transport> {
    if service.eq_ignore_ascii_case(b"SIPS+D2T") {
        Some(Transport::Tls)
    } else if secure {
        None
    } else if service.eq_ignore_ascii_case(b"SIP+D2U") {
        Some(Transport::Udp)
    } else if service.eq_ignore_ascii_case(b"SIP+D2T") {
        Some(Transport::Tcp)
    } else {
        None
    }
}

/// Keeps the usable NAPTR records (flag `s`, a supported service, a non-root replacement) in
/// (order, preference) order.
fn order_naptr(mut records: Vec<NAPTR>, secure: bool) -> Vec<(Name, Transport)> {
    records.sort_by_key(|n| (n.order, n.preference));
    records
        .into_iter()
        .filter(|n| n.flags.eq_ignore_ascii_case(b"s") && !n.replacement.is_root())
        .filter_map(|n| {
            let t = naptr_transport(&n.services, secure)?;
            let mut name = n.replacement;
            name.set_fqdn(true);
            Some((name, t))
        })
        .collect()
}

/// SRV records by priority ascending, then weight descending (deterministic; see the module docs),
/// then target; targets of `.` dropped.
fn order_srv(mut records: Vec<SRV>) -> Vec<SRV> {
    records.retain(|s| !s.target.is_root());
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.weight.cmp(&a.weight))
            .then_with(|| a.target.cmp(&b.target))
    });
    for s in &mut records {
        s.target.set_fqdn(true);
    }
    records
}

/// `name` as a fully qualified DNS name; an invalid name cannot exist, so it is `NotFound`.
fn fqdn(name: &str) -> Result<Name, DnsError> {
    if name.is_empty() {
        return Err(DnsError::NotFound);
    }
    let mut n = Name::from_ascii(name).map_err(|_| DnsError::NotFound)?;
    n.set_fqdn(true);
    Ok(n)
}

fn prefixed(prefix: &str, name: &Name) -> Result<Name, DnsError> {
    let p = Name::from_ascii(prefix).map_err(|e| DnsError::Io(e.to_string()))?;
    p.append_domain(name)
        .map_err(|e| DnsError::Io(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn naptr(order: u16, pref: u16, flags: &str, service: &str, repl: &str) -> NAPTR {
        NAPTR::new(
            order,
            pref,
            flags.as_bytes().into(),
            service.as_bytes().into(),
            Box::default(),
            Name::from_ascii(repl).unwrap(),
        )
    }

    #[test]
    fn naptr_order_and_filter() {
        let recs = vec![
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.com."),
            naptr(10, 20, "S", "SIP+D2T", "_sip._tcp.example.com."),
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.example.com."),
            naptr(5, 10, "u", "SIP+D2U", "_x.example.com."),
            naptr(5, 10, "s", "SIP+D2S", "_sip._sctp.example.com."),
            naptr(5, 10, "s", "SIP+D2U", "."),
        ];
        let got: Vec<(String, Transport)> = order_naptr(recs.clone(), false)
            .into_iter()
            .map(|(n, t)| (n.to_ascii(), t))
            .collect();
        assert_eq!(
            got,
            vec![
                ("_sips._tcp.example.com.".to_string(), Transport::Tls),
                ("_sip._tcp.example.com.".to_string(), Transport::Tcp),
                ("_sip._udp.example.com.".to_string(), Transport::Udp),
            ]
        );
        let secure = order_naptr(recs, true);
        assert_eq!(secure.len(), 1);
        assert_eq!(secure[0].1, Transport::Tls);
    }

    #[test]
    fn srv_order() {
        let s = |p, w, t: &str| SRV::new(p, w, 5060, Name::from_ascii(t).unwrap());
        let got: Vec<String> = order_srv(vec![
            s(20, 0, "d.example."),
            s(10, 5, "b.example."),
            s(10, 50, "a.example."),
            s(10, 5, "c.example."),
            s(0, 0, "."),
        ])
        .into_iter()
        .map(|r| r.target.to_ascii())
        .collect();
        assert_eq!(
            got,
            ["a.example.", "b.example.", "c.example.", "d.example."]
        );
    }

    #[test]
    fn transports() {
        assert_eq!(effective_transport(Transport::Udp, true), Transport::Tls);
        assert_eq!(srv_prefix(Transport::Tls), Some("_sips._tcp"));
        assert_eq!(srv_prefix(Transport::Ws), None);
        assert_eq!(naptr_transport(b"sip+d2u", false), Some(Transport::Udp));
        assert_eq!(naptr_transport(b"SIP+D2U", true), None);
    }

    #[test]
    fn system_config_never_panics() {
        // Depends on the machine's /etc/resolv.conf: either a resolver or a clean error.
        match SipResolver::system() {
            Ok(r) => assert_eq!(r.options(), DnsOptions::default()),
            Err(e) => assert!(matches!(e, DnsError::Io(_))),
        }
        assert_eq!(DnsOptions::default().budget(), Duration::from_secs(4));
    }

    #[test]
    fn names() {
        assert_eq!(
            prefixed("_sip._udp", &fqdn("example.com").unwrap())
                .unwrap()
                .to_ascii(),
            "_sip._udp.example.com."
        );
        assert_eq!(fqdn(""), Err(DnsError::NotFound));
        assert!(fqdn("example.com.").unwrap().is_fqdn());
        assert_eq!(
            DnsError::Timeout.to_string(),
            "DNS: timed out waiting for the name server"
        );
    }
}
