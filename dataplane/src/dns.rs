//! DNS results for SIP (RFC 3263) as the dataplane sees them: resolved targets, a shared read-mostly
//! cache of them, and what a SIP URI asks DNS for. No I/O here — the controlplane (`controlplane::dns`)
//! does the queries and fills the cache; shards only read it.
//!
//! The cache:
//! - is a [`papaya`] map, so [`DnsCache::get`] never blocks and never takes a lock; it is safe to call
//!   from every shard at once while the controlplane inserts;
//! - is keyed by (name lower-cased and without a trailing dot, port, transport, secure) — the four inputs
//!   of an RFC 3263 lookup; [`DnsKeyRef`] looks up without allocating;
//! - holds either the ordered targets (`Arc<[SipTarget]>`, cheap to hand out) or a negative entry;
//! - expires entries by the records' TTL: positive entries live for the minimum TTL of the records used,
//!   clamped to [`DnsCache::MIN_TTL`]..=[`DnsCache::MAX_TTL`]; negative entries live
//!   [`DnsCache::NEGATIVE_TTL`]. An expired entry reads as [`Lookup::Miss`];
//! - is bounded: at [`DnsCache::capacity`] entries an insert of a new key first purges expired entries,
//!   and if the cache is still full the insert is **refused** (returns `false`; the caller just goes
//!   without caching). Live entries are never evicted early, so a flood of distinct names cannot push
//!   out the entries in use; they make room as they expire. Replacing an existing key is always allowed.
//!   The bound is checked before inserting, so concurrent inserters may overshoot it by a few entries.
//! - expired entries stay in memory (reading as misses) until replaced or [`DnsCache::purge_expired`]
//!   runs (the controlplane calls it periodically; a full cache also calls it).

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use papaya::Equivalent;

use crate::wire::uri::{Host, Scheme, Uri};
use crate::wire::via::Transport;

/// One place to send a SIP message: an address and the transport to reach it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SipTarget {
    /// The address and port.
    pub addr: SocketAddr,
    /// The transport (UDP, TCP, TLS…).
    pub transport: Transport,
}

/// The default port for a transport: 5061 for TLS (and secure WebSocket), 5060 otherwise.
pub fn default_port(transport: Transport) -> u16 {
    match transport {
        Transport::Tls | Transport::Wss => 5061,
        _ => 5060,
    }
}

/// The transport a lookup uses for `transport` when `secure` (a `sips:` URI): UDP, TCP → TLS,
/// WS → WSS; others unchanged.
pub fn effective_transport(transport: Transport, secure: bool) -> Transport {
    match (secure, transport) {
        (true, Transport::Udp | Transport::Tcp) => Transport::Tls,
        (true, Transport::Ws) => Transport::Wss,
        (_, t) => t,
    }
}

/// The transport when none is given or found: UDP, or TLS when `secure`.
pub fn base_transport(secure: bool) -> Transport {
    if secure {
        Transport::Tls
    } else {
        Transport::Udp
    }
}

/// The target for a numeric host (RFC 3263 §4: no DNS): the given port or the transport's default,
/// the given transport (made secure for `sips:`) or UDP/TLS.
pub fn literal_target(
    ip: IpAddr,
    port: Option<u16>,
    transport: Option<Transport>,
    secure: bool,
) -> SipTarget {
    let t = transport.map_or(base_transport(secure), |t| effective_transport(t, secure));
    SipTarget {
        addr: SocketAddr::new(ip, port.unwrap_or(default_port(t))),
        transport: t,
    }
}

/// A name as the cache compares it: without one trailing dot.
fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// The one hash function for [`DnsKey`] and [`DnsKeyRef`]: the name's bytes lower-cased, then the rest.
fn hash_key<H: Hasher>(
    name: &str,
    port: Option<u16>,
    transport: Option<Transport>,
    secure: bool,
    state: &mut H,
) {
    let name = trim_dot(name);
    for b in name.bytes() {
        state.write_u8(b.to_ascii_lowercase());
    }
    state.write_usize(name.len());
    port.hash(state);
    transport.hash(state);
    secure.hash(state);
}

/// An owned cache key: the inputs of one RFC 3263 lookup. The name is stored lower-cased, without a
/// trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsKey {
    name: Box<str>,
    port: Option<u16>,
    transport: Option<Transport>,
    secure: bool,
}

impl DnsKey {
    /// Builds a key (lower-cases the name and drops one trailing dot).
    pub fn new(name: &str, port: Option<u16>, transport: Option<Transport>, secure: bool) -> Self {
        DnsKey {
            name: trim_dot(name).to_ascii_lowercase().into_boxed_str(),
            port,
            transport,
            secure,
        }
    }

    /// The name, lower-cased.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port asked for, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The transport asked for, if any.
    pub fn transport(&self) -> Option<Transport> {
        self.transport
    }

    /// True for a `sips:` lookup.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The borrowed form of this key.
    pub fn as_ref(&self) -> DnsKeyRef<'_> {
        DnsKeyRef {
            name: &self.name,
            port: self.port,
            transport: self.transport,
            secure: self.secure,
        }
    }
}

impl Hash for DnsKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(&self.name, self.port, self.transport, self.secure, state);
    }
}

/// A borrowed cache key, for lookups without allocating. The name is compared case-insensitively and
/// one trailing dot is ignored.
#[derive(Debug, Clone, Copy)]
pub struct DnsKeyRef<'a> {
    /// The host name (any case).
    pub name: &'a str,
    /// The port asked for, if any.
    pub port: Option<u16>,
    /// The transport asked for, if any.
    pub transport: Option<Transport>,
    /// True for a `sips:` lookup.
    pub secure: bool,
}

impl<'a> DnsKeyRef<'a> {
    /// Builds a borrowed key.
    pub fn new(
        name: &'a str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Self {
        DnsKeyRef {
            name,
            port,
            transport,
            secure,
        }
    }

    /// The owned form of this key.
    pub fn to_owned(&self) -> DnsKey {
        DnsKey::new(self.name, self.port, self.transport, self.secure)
    }
}

impl Hash for DnsKeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_key(self.name, self.port, self.transport, self.secure, state);
    }
}

impl Equivalent<DnsKey> for DnsKeyRef<'_> {
    fn equivalent(&self, key: &DnsKey) -> bool {
        self.port == key.port
            && self.transport == key.transport
            && self.secure == key.secure
            && trim_dot(self.name).eq_ignore_ascii_case(&key.name)
    }
}

/// What the cache knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Resolved: the targets, in the order to try them.
    Hit(Arc<[SipTarget]>),
    /// DNS said there is nothing (cached failure).
    Negative,
    /// Not cached, or expired: ask the controlplane.
    Miss,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None` is a negative entry.
    targets: Option<Arc<[SipTarget]>>,
    expires: Instant,
}

/// The shared DNS cache (see the module docs for the rules).
#[derive(Debug)]
pub struct DnsCache {
    map: papaya::HashMap<DnsKey, Entry>,
    capacity: usize,
}

impl Default for DnsCache {
    fn default() -> Self {
        DnsCache::new()
    }
}

impl DnsCache {
    /// Shortest life of a positive entry, whatever the TTL says.
    pub const MIN_TTL: Duration = Duration::from_secs(5);
    /// Longest life of a positive entry, whatever the TTL says.
    pub const MAX_TTL: Duration = Duration::from_secs(3600);
    /// Life of a negative entry.
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
    /// Default bound on the number of entries.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// An empty cache holding at most [`DnsCache::DEFAULT_CAPACITY`] entries.
    pub fn new() -> Self {
        DnsCache::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty cache holding at most `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        DnsCache {
            map: papaya::HashMap::builder()
                .capacity(capacity.min(1024))
                .build(),
            capacity,
        }
    }

    /// The bound on the number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held now, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Looks a key up. Never blocks; an entry expired at `now` is a [`Lookup::Miss`].
    pub fn get(&self, key: &DnsKeyRef<'_>, now: Instant) -> Lookup {
        let guard = self.map.guard();
        match self.map.get(key, &guard) {
            Some(e) if now < e.expires => match &e.targets {
                Some(t) => Lookup::Hit(t.clone()),
                None => Lookup::Negative,
            },
            _ => Lookup::Miss,
        }
    }

    /// Caches targets for `ttl` (clamped to [`DnsCache::MIN_TTL`]..=[`DnsCache::MAX_TTL`]) from `now`.
    /// An empty target list is cached as a negative entry. Returns `false` if the cache is full (see the
    /// module docs).
    pub fn insert(
        &self,
        key: DnsKey,
        targets: Arc<[SipTarget]>,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        if targets.is_empty() {
            return self.insert_negative(key, now);
        }
        let ttl = ttl.clamp(Self::MIN_TTL, Self::MAX_TTL);
        self.put(
            key,
            Entry {
                targets: Some(targets),
                expires: now + ttl,
            },
            now,
        )
    }

    /// Caches a failure for [`DnsCache::NEGATIVE_TTL`] from `now`. Returns `false` if the cache is full.
    pub fn insert_negative(&self, key: DnsKey, now: Instant) -> bool {
        self.put(
            key,
            Entry {
                targets: None,
                expires: now + Self::NEGATIVE_TTL,
            },
            now,
        )
    }

    fn put(&self, key: DnsKey, entry: Entry, now: Instant) -> bool {
        let guard = self.map.guard();
        if self.map.len() >= self.capacity && !self.map.contains_key(&key, &guard) {
            self.purge_expired(now);
            if self.map.len() >= self.capacity {
                return false;
            }
        }
        self.map.insert(key, entry, &guard);
        true
    }

    /// Removes one key.
    pub fn remove(&self, key: &DnsKeyRef<'_>) {
        let guard = self.map.guard();
        self.map.remove(key, &guard);
    }

    /// Removes every entry expired at `now`; returns how many were removed.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let guard = self.map.guard();
        let mut removed = 0;
        self.map.retain(
            |_, e| {
                let keep = now < e.expires;
                if !keep {
                    removed += 1;
                }
                keep
            },
            &guard,
        );
        removed
    }
}

/// The host part of an RFC 3263 lookup: an address (no DNS needed) or a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetHost<'a> {
    /// A numeric IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A host name to resolve.
    Name(&'a str),
}

/// What RFC 3263 needs from a SIP or SIPS URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriTarget<'a> {
    /// `maddr` if present and well-formed, else the host.
    pub host: TargetHost<'a>,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The `transport=` parameter, classified, if any.
    pub transport: Option<Transport>,
    /// True for `sips:` (TLS is required).
    pub secure: bool,
}

impl<'a> UriTarget<'a> {
    /// For a numeric host, the one target (no DNS needed); `None` for a name.
    pub fn literal(&self) -> Option<SipTarget> {
        match self.host {
            TargetHost::Ip(ip) => Some(literal_target(ip, self.port, self.transport, self.secure)),
            TargetHost::Name(_) => None,
        }
    }

    /// For a host name, the [`DnsCache`] key to look up; `None` for a numeric host.
    pub fn key(&self) -> Option<DnsKeyRef<'a>> {
        match self.host {
            TargetHost::Name(n) => Some(DnsKeyRef::new(n, self.port, self.transport, self.secure)),
            TargetHost::Ip(_) => None,
        }
    }
}

fn is_host_name(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && s.first() != Some(&b'.')
        && s.first() != Some(&b'-')
}

/// Parses a `maddr` value: an IPv4 address, an IPv6 address with or without brackets, or a host name.
fn parse_maddr(m: &[u8]) -> Option<TargetHost<'_>> {
    let s = std::str::from_utf8(m).ok()?;
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = inner.parse::<IpAddr>() {
        return Some(TargetHost::Ip(ip));
    }
    is_host_name(m).then_some(TargetHost::Name(s))
}

/// Extracts what RFC 3263 needs from a SIP or SIPS URI: the host (`maddr` overriding it, RFC 3261
/// §19.1.1), the port, the `transport=` parameter and whether the scheme is `sips:` (which means TLS).
/// Returns `None` for other schemes. A `maddr` that is neither an address nor a host name is ignored.
pub fn host_port_of_uri<'a>(uri: &Uri<'a>) -> Option<UriTarget<'a>> {
    let secure = match uri.scheme {
        Scheme::Sip => false,
        Scheme::Sips => true,
        _ => return None,
    };
    let host = match uri.maddr().and_then(parse_maddr) {
        Some(h) => h,
        None => match uri.host {
            Host::V4(a) => TargetHost::Ip(IpAddr::V4(a)),
            Host::V6(a) => TargetHost::Ip(IpAddr::V6(a)),
            Host::Name(n) => TargetHost::Name(std::str::from_utf8(n).ok()?),
        },
    };
    Some(UriTarget {
        host,
        port: uri.port,
        transport: uri.transport().map(Transport::from_bytes),
        secure,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn t(addr: &str, transport: Transport) -> SipTarget {
        SipTarget {
            addr: addr.parse().unwrap(),
            transport,
        }
    }

    #[test]
    fn hit_miss_negative_and_expiry() {
        let cache = DnsCache::new();
        let now = Instant::now();
        let key = DnsKeyRef::new("Example.COM.", None, None, false);
        assert_eq!(cache.get(&key, now), Lookup::Miss);
        let targets: Arc<[SipTarget]> = vec![t("192.0.2.1:5060", Transport::Udp)].into();
        assert!(cache.insert(
            key.to_owned(),
            targets.clone(),
            Duration::from_secs(60),
            now
        ));
        let lower = DnsKeyRef::new("example.com", None, None, false);
        assert_eq!(cache.get(&lower, now), Lookup::Hit(targets.clone()));
        assert_eq!(
            cache.get(&lower, now + Duration::from_secs(59)),
            Lookup::Hit(targets)
        );
        assert_eq!(
            cache.get(&lower, now + Duration::from_secs(60)),
            Lookup::Miss
        );
        // Other key fields are part of the key.
        assert_eq!(
            cache.get(&DnsKeyRef::new("example.com", Some(5060), None, false), now),
            Lookup::Miss
        );
        assert_eq!(
            cache.get(&DnsKeyRef::new("example.com", None, None, true), now),
            Lookup::Miss
        );

        let neg = DnsKey::new("nx.example.com", None, Some(Transport::Tcp), false);
        assert!(cache.insert_negative(neg.clone(), now));
        assert_eq!(cache.get(&neg.as_ref(), now), Lookup::Negative);
        assert_eq!(
            cache.get(&neg.as_ref(), now + DnsCache::NEGATIVE_TTL),
            Lookup::Miss
        );
    }

    #[test]
    fn ttl_is_clamped() {
        let cache = DnsCache::new();
        let now = Instant::now();
        let k = DnsKey::new("a.example", None, None, false);
        let targets: Arc<[SipTarget]> = vec![t("192.0.2.1:5060", Transport::Udp)].into();
        cache.insert(k.clone(), targets.clone(), Duration::ZERO, now);
        assert!(matches!(
            cache.get(&k.as_ref(), now + Duration::from_secs(4)),
            Lookup::Hit(_)
        ));
        assert_eq!(
            cache.get(&k.as_ref(), now + DnsCache::MIN_TTL),
            Lookup::Miss
        );
        cache.insert(k.clone(), targets, Duration::from_secs(86_400), now);
        assert_eq!(
            cache.get(&k.as_ref(), now + DnsCache::MAX_TTL),
            Lookup::Miss
        );
        // Empty targets are a negative entry.
        cache.insert(
            k.clone(),
            Arc::from(Vec::new()),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(cache.get(&k.as_ref(), now), Lookup::Negative);
    }

    #[test]
    fn bounded_purges_expired_then_refuses() {
        let cache = DnsCache::with_capacity(2);
        let now = Instant::now();
        let targets: Arc<[SipTarget]> = vec![t("192.0.2.1:5060", Transport::Udp)].into();
        let k = |n: &str| DnsKey::new(n, None, None, false);
        assert!(cache.insert(k("a"), targets.clone(), Duration::from_secs(10), now));
        assert!(cache.insert(k("b"), targets.clone(), Duration::from_secs(100), now));
        // Full, nothing expired: refused. Replacing an existing key is fine.
        assert!(!cache.insert(k("c"), targets.clone(), Duration::from_secs(10), now));
        assert!(cache.insert(k("a"), targets.clone(), Duration::from_secs(10), now));
        // Once "a" expired, it makes room.
        let later = now + Duration::from_secs(20);
        assert!(cache.insert(k("c"), targets.clone(), Duration::from_secs(10), later));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&k("a").as_ref(), later), Lookup::Miss);
        assert!(matches!(cache.get(&k("b").as_ref(), later), Lookup::Hit(_)));
        assert_eq!(cache.purge_expired(now + Duration::from_secs(1000)), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn uri_targets() {
        let u = |s: &'static str| Uri::parse(s.as_bytes()).unwrap();
        let r = host_port_of_uri(&u("sip:alice@Example.com")).unwrap();
        assert_eq!(r.host, TargetHost::Name("Example.com"));
        assert_eq!((r.port, r.transport, r.secure), (None, None, false));

        let r = host_port_of_uri(&u("sips:bob@example.com:5071;transport=tcp")).unwrap();
        assert_eq!(r.host, TargetHost::Name("example.com"));
        assert_eq!(
            (r.port, r.transport, r.secure),
            (Some(5071), Some(Transport::Tcp), true)
        );

        let r = host_port_of_uri(&u("sip:192.0.2.4;transport=UDP")).unwrap();
        assert_eq!(r.host, TargetHost::Ip("192.0.2.4".parse().unwrap()));
        assert_eq!(r.transport, Some(Transport::Udp));

        let r = host_port_of_uri(&u("sip:[2001:db8::1]:5080")).unwrap();
        assert_eq!(r.host, TargetHost::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(r.port, Some(5080));

        let r = host_port_of_uri(&u("sip:a@example.com;maddr=239.255.255.1")).unwrap();
        assert_eq!(r.host, TargetHost::Ip("239.255.255.1".parse().unwrap()));
        let r = host_port_of_uri(&u("sip:a@example.com;maddr=proxy.example.net")).unwrap();
        assert_eq!(r.host, TargetHost::Name("proxy.example.net"));
        let r = host_port_of_uri(&u("sip:a@example.com;maddr=[2001:db8::2]")).unwrap();
        assert_eq!(r.host, TargetHost::Ip("2001:db8::2".parse().unwrap()));

        assert!(host_port_of_uri(&u("tel:+1-201-555-0123")).is_none());
    }

    #[test]
    fn shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<DnsCache>();
        let cache = Arc::new(DnsCache::new());
        let now = Instant::now();
        let targets: Arc<[SipTarget]> = vec![t("192.0.2.1:5060", Transport::Udp)].into();
        let writer = {
            let cache = cache.clone();
            let targets = targets.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let name = format!("h{i}.example");
                    cache.insert(
                        DnsKey::new(&name, None, None, false),
                        targets.clone(),
                        Duration::from_secs(60),
                        now,
                    );
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    let mut hits = 0;
                    for i in 0..500 {
                        let name = format!("h{i}.example");
                        if let Lookup::Hit(_) =
                            cache.get(&DnsKeyRef::new(&name, None, None, false), now)
                        {
                            hits += 1;
                        }
                    }
                    hits
                })
            })
            .collect();
        writer.join().unwrap();
        for r in readers {
            assert!(r.join().unwrap() <= 500);
        }
        assert_eq!(cache.len(), 500);
        assert!(matches!(
            cache.get(&DnsKeyRef::new("H499.example", None, None, false), now),
            Lookup::Hit(_)
        ));
    }

    #[test]
    fn literal_and_key() {
        let uri = Uri::parse(b"sips:[2001:db8::1];transport=tcp").unwrap();
        let u = host_port_of_uri(&uri).unwrap();
        assert_eq!(u.literal(), Some(t("[2001:db8::1]:5061", Transport::Tls)));
        assert!(u.key().is_none());
        let uri = Uri::parse(b"sip:192.0.2.1:5070").unwrap();
        let u = host_port_of_uri(&uri).unwrap();
        assert_eq!(u.literal(), Some(t("192.0.2.1:5070", Transport::Udp)));
        let uri = Uri::parse(b"sip:bob@Example.com;transport=tcp").unwrap();
        let u = host_port_of_uri(&uri).unwrap();
        assert!(u.literal().is_none());
        let key = u.key().unwrap();
        let cache = DnsCache::new();
        let now = Instant::now();
        let targets: Arc<[SipTarget]> = vec![t("192.0.2.9:5060", Transport::Tcp)].into();
        cache.insert(
            DnsKey::new("example.com", None, Some(Transport::Tcp), false),
            targets.clone(),
            Duration::from_secs(60),
            now,
        );
        assert_eq!(cache.get(&key, now), Lookup::Hit(targets));
        assert_eq!(effective_transport(Transport::Ws, true), Transport::Wss);
        assert_eq!(effective_transport(Transport::Tcp, false), Transport::Tcp);
        assert_eq!(base_transport(true), Transport::Tls);
    }

    #[test]
    fn default_ports() {
        assert_eq!(default_port(Transport::Udp), 5060);
        assert_eq!(default_port(Transport::Tcp), 5060);
        assert_eq!(default_port(Transport::Tls), 5061);
    }
}
