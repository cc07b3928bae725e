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
//!   A target of `.` ("service not offered") is skipped.
//! - Every target of every usable NAPTR/SRV record is returned, in order, with duplicates removed: the
//!   list doubles as the failover order. A/AAAA results come IPv4 first.
//! - `sips:` forces TLS: a `transport=tcp`/`udp`/none becomes TLS, `ws` becomes `wss`.
//! - The TTL returned is the smallest TTL of all the records used (an address literal: one hour).
//! - Errors: a name with no usable records is [`DnsError::NotFound`]; a server that does not answer
//!   in time is [`DnsError::Timeout`] (a timeout is never mistaken for "no records", so it never falls
//!   through to the next step); anything else (refused, server failure, socket error) is
//!   [`DnsError::Io`]. One whole `resolve` never takes longer than `timeout × attempts`.
//! - Names are queried as fully qualified (no search-list expansion).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::dns::{default_port, DnsCache, DnsKey, DnsKeyRef, Lookup, SipTarget};
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
        match tokio::time::timeout(
            self.opts.budget(),
            self.resolve_inner(name, port, transport, secure),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(DnsError::Timeout),
        }
    }

    /// Answers from `cache` if it holds a live entry; otherwise resolves and caches the result —
    /// targets for their TTL, `NotFound` as a negative entry. Timeouts and other errors are not cached
    /// (the next attempt asks again). A cached negative entry reads as `NotFound`.
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

    async fn resolve_inner(
        &self,
        name: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<(Vec<SipTarget>, Duration), DnsError> {
        let transport = transport.map(|t| secure_transport(t, secure));
        let literal = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        if let Ok(ip) = literal.parse::<IpAddr>() {
            let t = transport.unwrap_or(base_transport(secure));
            let addr = SocketAddr::new(ip, port.unwrap_or(default_port(t)));
            return Ok((vec![SipTarget { addr, transport: t }], LITERAL_TTL));
        }
        let fqdn = fqdn(name)?;
        let mut acc = Acc::default();
        if let Some(port) = port {
            let t = transport.unwrap_or(base_transport(secure));
            self.addresses(&fqdn, port, t, &mut acc).await?;
            return acc.finish();
        }
        if let Some(t) = transport {
            if let Some(prefix) = srv_prefix(t) {
                self.srv(&prefixed(prefix, &fqdn)?, t, &mut acc).await?;
            }
            if acc.targets.is_empty() {
                self.addresses(&fqdn, default_port(t), t, &mut acc).await?;
            }
            return acc.finish();
        }
        // NAPTR.
        let naptrs = self.naptr(&fqdn, secure, &mut acc).await?;
        for (replacement, t) in naptrs {
            self.srv(&replacement, t, &mut acc).await?;
        }
        if !acc.targets.is_empty() {
            return acc.finish();
        }
        // No (usable) NAPTR: SRV per transport we support.
        let services: &[Transport] = if secure {
            &[Transport::Tls]
        } else {
            &[Transport::Udp, Transport::Tcp]
        };
        for &t in services {
            if let Some(prefix) = srv_prefix(t) {
                self.srv(&prefixed(prefix, &fqdn)?, t, &mut acc).await?;
            }
        }
        if !acc.targets.is_empty() {
            return acc.finish();
        }
        let t = base_transport(secure);
        self.addresses(&fqdn, default_port(t), t, &mut acc).await?;
        acc.finish()
    }

    /// Looks `name` up as `rtype`; `Ok(None)` when DNS says there is nothing.
    async fn query(
        &self,
        name: &Name,
        rtype: RecordType,
        acc: &mut Acc,
    ) -> Result<Option<Vec<RData>>, DnsError> {
        match self.inner.lookup(name.clone(), rtype).await {
            Ok(lookup) => {
                acc.ttl_until(lookup.valid_until());
                Ok(Some(
                    lookup.answers().iter().map(|r| r.data.clone()).collect(),
                ))
            }
            Err(e) => match net_error(e) {
                DnsError::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Usable NAPTR records of `name`, in (order, preference) order: (SRV name, transport).
    async fn naptr(
        &self,
        name: &Name,
        secure: bool,
        acc: &mut Acc,
    ) -> Result<Vec<(Name, Transport)>, DnsError> {
        let Some(data) = self.query(name, RecordType::NAPTR, acc).await? else {
            return Ok(Vec::new());
        };
        let records: Vec<NAPTR> = data
            .into_iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => Some(n),
                _ => None,
            })
            .collect();
        Ok(order_naptr(records, secure))
    }

    /// Follows the SRV records of `name` (ordered) to addresses, adding them over transport `t`.
    async fn srv(&self, name: &Name, t: Transport, acc: &mut Acc) -> Result<(), DnsError> {
        let Some(data) = self.query(name, RecordType::SRV, acc).await? else {
            return Ok(());
        };
        let records: Vec<SRV> = data
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(s),
                _ => None,
            })
            .collect();
        for srv in order_srv(records) {
            self.addresses(&srv.target, srv.port, t, acc).await?;
        }
        Ok(())
    }

    /// Adds the A/AAAA addresses of `name` (IPv4 first) on `port` over `t`.
    async fn addresses(
        &self,
        name: &Name,
        port: u16,
        t: Transport,
        acc: &mut Acc,
    ) -> Result<(), DnsError> {
        match self.inner.lookup_ip(name.clone()).await {
            Ok(ips) => {
                acc.ttl_until(ips.valid_until());
                for ip in ips.iter() {
                    acc.push(SipTarget {
                        addr: SocketAddr::new(ip, port),
                        transport: t,
                    });
                }
                Ok(())
            }
            Err(e) => match net_error(e) {
                DnsError::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }
}

/// Targets found so far, and the smallest TTL of the records used.
#[derive(Default)]
struct Acc {
    targets: Vec<SipTarget>,
    ttl: Option<Duration>,
}

impl Acc {
    fn ttl_until(&mut self, until: Instant) {
        let ttl = until.saturating_duration_since(Instant::now());
        self.ttl = Some(self.ttl.map_or(ttl, |t| t.min(ttl)));
    }

    fn push(&mut self, t: SipTarget) {
        if !self.targets.contains(&t) {
            self.targets.push(t);
        }
    }

    fn finish(self) -> Result<(Vec<SipTarget>, Duration), DnsError> {
        if self.targets.is_empty() {
            return Err(DnsError::NotFound);
        }
        Ok((self.targets, self.ttl.unwrap_or(Duration::ZERO)))
    }
}

/// The transport a `sips:` URI forces.
fn secure_transport(t: Transport, secure: bool) -> Transport {
    match (secure, t) {
        (true, Transport::Udp | Transport::Tcp) => Transport::Tls,
        (true, Transport::Ws) => Transport::Wss,
        (_, t) => t,
    }
}

/// The transport when none is given or found.
fn base_transport(secure: bool) -> Transport {
    if secure {
        Transport::Tls
    } else {
        Transport::Udp
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
        assert_eq!(secure_transport(Transport::Tcp, true), Transport::Tls);
        assert_eq!(secure_transport(Transport::Udp, true), Transport::Tls);
        assert_eq!(secure_transport(Transport::Ws, true), Transport::Wss);
        assert_eq!(secure_transport(Transport::Tcp, false), Transport::Tcp);
        assert_eq!(srv_prefix(Transport::Tls), Some("_sips._tcp"));
        assert_eq!(srv_prefix(Transport::Ws), None);
        assert_eq!(naptr_transport(b"sip+d2u", false), Some(Transport::Udp));
        assert_eq!(naptr_transport(b"SIP+D2U", true), None);
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
