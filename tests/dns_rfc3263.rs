//! RFC 3263 server location end to end: `controlplane::dns::SipResolver` against a small in-process
//! authoritative DNS server, and the `dataplane::dns::DnsCache` it fills.
#![allow(clippy::unwrap_used)]

#[path = "support/dns_server.rs"]
mod dns_server;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use controlplane::dns::{DnsError, DnsOptions, SipResolver};
use dataplane::dns::{host_port_of_uri, DnsCache, DnsKeyRef, Lookup, SipTarget, TargetHost};
use dataplane::wire::uri::Uri;
use dataplane::wire::via::Transport;
use dns_server::{DnsServer, Zone};

fn zone() -> Zone {
    Zone::new()
        // example.com: NAPTR → SRV → A, with order/preference and priority/weight to sort out.
        .naptr(
            "example.com",
            20,
            5,
            "s",
            "SIPS+D2T",
            "_sips._tcp.example.com",
            3600,
        )
        .naptr(
            "example.com",
            10,
            20,
            "s",
            "SIP+D2U",
            "_sip._udp.example.com",
            3600,
        )
        .naptr(
            "example.com",
            10,
            10,
            "S",
            "SIP+D2T",
            "_sip._tcp.example.com",
            3600,
        )
        .naptr(
            "example.com",
            5,
            1,
            "s",
            "SIP+D2X",
            "_sip._x.example.com",
            3600,
        )
        .naptr(
            "example.com",
            5,
            1,
            "a",
            "SIP+D2U",
            "other.example.com",
            3600,
        )
        .srv(
            "_sip._tcp.example.com",
            10,
            10,
            5060,
            "tcp2.example.com",
            600,
        )
        .srv("_sip._tcp.example.com", 5, 0, 5070, "tcp1.example.com", 600)
        .srv(
            "_sip._udp.example.com",
            10,
            20,
            5062,
            "udpb.example.com",
            600,
        )
        .srv(
            "_sip._udp.example.com",
            10,
            60,
            5060,
            "udpa.example.com",
            600,
        )
        .srv("_sips._tcp.example.com", 0, 0, 5061, "tls.example.com", 600)
        .a("example.com", "192.0.2.1".parse().unwrap(), 300)
        .a("tcp1.example.com", "192.0.2.11".parse().unwrap(), 300)
        .a("tcp2.example.com", "192.0.2.12".parse().unwrap(), 300)
        .a("udpa.example.com", "192.0.2.21".parse().unwrap(), 300)
        .a("udpb.example.com", "192.0.2.22".parse().unwrap(), 120)
        .aaaa("udpb.example.com", "2001:db8::22".parse().unwrap(), 300)
        .a("tls.example.com", "192.0.2.31".parse().unwrap(), 300)
        // srv.example.net: SRV without NAPTR.
        .srv(
            "_sip._udp.srv.example.net",
            0,
            0,
            5080,
            "host.srv.example.net",
            600,
        )
        .srv(
            "_sip._tcp.srv.example.net",
            0,
            0,
            5081,
            "host.srv.example.net",
            600,
        )
        .a("host.srv.example.net", "198.51.100.5".parse().unwrap(), 300)
        // noservice.example.com: TCP explicitly not offered (SRV target "."), UDP SRV points nowhere.
        .srv("_sip._tcp.noservice.example.com", 0, 0, 0, ".", 600)
        .srv(
            "_sip._udp.noservice.example.com",
            0,
            0,
            5060,
            "nowhere.example.com",
            600,
        )
        .a("noservice.example.com", "192.0.2.70".parse().unwrap(), 600)
        // v6.example.org: AAAA only.
        .aaaa("v6.example.org", "2001:db8::66".parse().unwrap(), 300)
        // a.example.org: A only.
        .a("a.example.org", "203.0.113.7".parse().unwrap(), 300)
}

fn t(addr: &str, transport: Transport) -> SipTarget {
    SipTarget {
        addr: addr.parse().unwrap(),
        transport,
    }
}

fn resolver(server: &DnsServer) -> SipResolver {
    SipResolver::with_nameserver(server.addr())
}

#[tokio::test]
async fn naptr_srv_a_chain_in_order() {
    let server = DnsServer::start(zone());
    let (targets, ttl) = resolver(&server)
        .resolve("example.com", None, None, false)
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            // order 10, preference 10: SIP+D2T; SRV priority 5 before 10.
            t("192.0.2.11:5070", Transport::Tcp),
            t("192.0.2.12:5060", Transport::Tcp),
            // order 10, preference 20: SIP+D2U; same priority, weight 60 before 20; A before AAAA.
            t("192.0.2.21:5060", Transport::Udp),
            t("192.0.2.22:5062", Transport::Udp),
            t("[2001:db8::22]:5062", Transport::Udp),
            // order 20: SIPS+D2T.
            t("192.0.2.31:5061", Transport::Tls),
        ]
    );
    // The smallest TTL of the records used (udpb's A record, 120 s).
    assert!(ttl <= Duration::from_secs(120), "{ttl:?}");
    assert!(ttl > Duration::from_secs(100), "{ttl:?}");
}

#[tokio::test]
async fn srv_without_naptr() {
    let server = DnsServer::start(zone());
    let (targets, _) = resolver(&server)
        .resolve("srv.example.net", None, None, false)
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            t("198.51.100.5:5080", Transport::Udp),
            t("198.51.100.5:5081", Transport::Tcp),
        ]
    );
}

#[tokio::test]
async fn a_only_falls_back_to_5060() {
    let server = DnsServer::start(zone());
    let (targets, ttl) = resolver(&server)
        .resolve("A.Example.ORG", None, None, false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5060", Transport::Udp)]);
    assert!(ttl <= Duration::from_secs(300) && ttl > Duration::from_secs(200));
    let (targets, _) = resolver(&server)
        .resolve("v6.example.org", None, None, false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("[2001:db8::66]:5060", Transport::Udp)]);
}

#[tokio::test]
async fn explicit_port_skips_naptr_and_srv() {
    let server = DnsServer::start(zone());
    let (targets, _) = resolver(&server)
        .resolve("example.com", Some(5099), None, false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.1:5099", Transport::Udp)]);
    let (targets, _) = resolver(&server)
        .resolve("example.com", Some(5099), Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.1:5099", Transport::Tcp)]);
    // A name with SRV records only (no A): a port means no SRV lookup, so nothing.
    let err = resolver(&server)
        .resolve("srv.example.net", Some(5060), None, false)
        .await
        .unwrap_err();
    assert_eq!(err, DnsError::NotFound);
}

#[tokio::test]
async fn transport_param_picks_its_srv() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    let (targets, _) = r
        .resolve("srv.example.net", None, Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("198.51.100.5:5081", Transport::Tcp)]);
    // NAPTR is skipped when a transport is given.
    let (targets, _) = r
        .resolve("example.com", None, Some(Transport::Udp), false)
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            t("192.0.2.21:5060", Transport::Udp),
            t("192.0.2.22:5062", Transport::Udp),
            t("[2001:db8::22]:5062", Transport::Udp),
        ]
    );
    // No SRV for the transport: A/AAAA on the default port.
    let (targets, _) = r
        .resolve("a.example.org", None, Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5060", Transport::Tcp)]);
    // WebSocket has no SRV: A/AAAA straight away.
    let (targets, _) = r
        .resolve("a.example.org", None, Some(Transport::Ws), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5060", Transport::Ws)]);
    let (targets, _) = r
        .resolve("a.example.org", None, Some(Transport::Ws), true)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5061", Transport::Wss)]);
}

#[tokio::test]
async fn sips_uses_sips_tcp_and_5061() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    // NAPTR: only SIPS+D2T is usable.
    let (targets, _) = r.resolve("example.com", None, None, true).await.unwrap();
    assert_eq!(targets, vec![t("192.0.2.31:5061", Transport::Tls)]);
    // transport=tcp with sips: means TLS, _sips._tcp.
    let (targets, _) = r
        .resolve("example.com", None, Some(Transport::Tcp), true)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.31:5061", Transport::Tls)]);
    // No NAPTR, no _sips._tcp: A on 5061 over TLS.
    let (targets, _) = r.resolve("a.example.org", None, None, true).await.unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5061", Transport::Tls)]);
    // srv.example.net offers only _sip._udp/_sip._tcp and has no A record: nothing for sips.
    assert_eq!(
        r.resolve("srv.example.net", None, None, true).await,
        Err(DnsError::NotFound)
    );
}

#[tokio::test]
async fn numeric_host_needs_no_query() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    let (targets, _) = r.resolve("192.0.2.99", None, None, false).await.unwrap();
    assert_eq!(targets, vec![t("192.0.2.99:5060", Transport::Udp)]);
    let (targets, _) = r.resolve("[2001:db8::5]", None, None, true).await.unwrap();
    assert_eq!(targets, vec![t("[2001:db8::5]:5061", Transport::Tls)]);
    let (targets, _) = r
        .resolve("2001:db8::5", Some(5080), Some(Transport::Tcp), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("[2001:db8::5]:5080", Transport::Tcp)]);
    let (targets, _) = r
        .resolve("192.0.2.99", None, Some(Transport::Tls), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.99:5061", Transport::Tls)]);
    assert_eq!(server.queries(), 0);
}

#[tokio::test]
async fn nxdomain_is_not_found_quickly() {
    let server = DnsServer::start(zone());
    let start = Instant::now();
    let err = resolver(&server)
        .resolve("nx.example.com", None, None, false)
        .await
        .unwrap_err();
    assert_eq!(err, DnsError::NotFound);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("no SIP server"));
}

#[tokio::test]
async fn silent_server_times_out_within_bound() {
    // A socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let opts = DnsOptions {
        timeout: Duration::from_millis(150),
        attempts: 2,
    };
    let r = SipResolver::with_nameserver_opts(silent.local_addr().unwrap(), opts);
    let start = Instant::now();
    let err = r
        .resolve("example.com", None, None, false)
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert_eq!(err, DnsError::Timeout);
    // The bound is 2 × 150 ms; allow for a loaded machine.
    assert!(elapsed <= Duration::from_millis(300 + 300), "{elapsed:?}");
    assert!(err.to_string().contains("timed out"));
}

#[tokio::test]
async fn closed_port_fails_quickly() {
    // Nothing listens: ICMP port unreachable (or a timeout); either way an error within the bound.
    let addr: SocketAddr = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let opts = DnsOptions {
        timeout: Duration::from_millis(150),
        attempts: 2,
    };
    let r = SipResolver::with_nameserver_opts(addr, opts);
    let start = Instant::now();
    let err = r
        .resolve("example.com", None, None, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DnsError::Io(_) | DnsError::Timeout),
        "{err:?}"
    );
    assert!(start.elapsed() <= Duration::from_millis(300 + 300));
}

#[tokio::test]
async fn cache_hit_miss_negative_expiry() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    let cache = DnsCache::new();
    let key = DnsKeyRef::new("a.example.org", None, None, false);
    let before = Instant::now();
    assert_eq!(cache.get(&key, before), Lookup::Miss);

    let got = r
        .resolve_cached(&cache, "a.example.org", None, None, false)
        .await
        .unwrap();
    assert_eq!(&got[..], &[t("203.0.113.7:5060", Transport::Udp)]);
    let after = Instant::now();
    let asked = server.queries();
    assert!(asked > 0);

    // A hit: same targets, no query; the key is case-insensitive.
    let again = r
        .resolve_cached(&cache, "A.EXAMPLE.ORG.", None, None, false)
        .await
        .unwrap();
    assert_eq!(again, got);
    assert_eq!(server.queries(), asked);
    assert_eq!(cache.get(&key, after), Lookup::Hit(got.clone()));
    // Another transport is another key.
    assert_eq!(
        cache.get(
            &DnsKeyRef::new("a.example.org", None, Some(Transport::Tcp), false),
            after
        ),
        Lookup::Miss
    );
    // Expires with the record's TTL (300 s).
    assert_eq!(
        cache.get(&key, after + Duration::from_secs(200)),
        Lookup::Hit(got)
    );
    assert_eq!(
        cache.get(&key, before + Duration::from_secs(301)),
        Lookup::Miss
    );

    // NXDOMAIN is cached negative for 30 s.
    let nx = DnsKeyRef::new("nx.example.org", None, None, false);
    assert_eq!(
        r.resolve_cached(&cache, "nx.example.org", None, None, false)
            .await,
        Err(DnsError::NotFound)
    );
    let now = Instant::now();
    let asked = server.queries();
    assert_eq!(cache.get(&nx, now), Lookup::Negative);
    assert_eq!(
        r.resolve_cached(&cache, "nx.example.org", None, None, false)
            .await,
        Err(DnsError::NotFound)
    );
    assert_eq!(server.queries(), asked);
    assert_eq!(
        cache.get(&nx, now + Duration::from_secs(29)),
        Lookup::Negative
    );
    assert_eq!(cache.get(&nx, now + Duration::from_secs(31)), Lookup::Miss);
    assert_eq!(cache.purge_expired(now + Duration::from_secs(31)), 1);
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn timeouts_are_not_cached() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let opts = DnsOptions {
        timeout: Duration::from_millis(100),
        attempts: 1,
    };
    let r = SipResolver::with_nameserver_opts(silent.local_addr().unwrap(), opts);
    let cache = DnsCache::new();
    assert_eq!(
        r.resolve_cached(&cache, "example.com", None, None, false)
            .await,
        Err(DnsError::Timeout)
    );
    assert!(cache.is_empty());
}

#[tokio::test]
async fn uri_to_targets() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    let uri = Uri::parse(b"sip:bob@example.com;transport=tcp").unwrap();
    let u = host_port_of_uri(&uri).unwrap();
    let TargetHost::Name(name) = u.host else {
        panic!("a name")
    };
    let (targets, _) = r
        .resolve(name, u.port, u.transport, u.secure)
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            t("192.0.2.11:5070", Transport::Tcp),
            t("192.0.2.12:5060", Transport::Tcp)
        ]
    );
    // maddr overrides the host.
    let uri = Uri::parse(b"sips:bob@example.com;maddr=a.example.org").unwrap();
    let u = host_port_of_uri(&uri).unwrap();
    assert_eq!(u.host, TargetHost::Name("a.example.org"));
    let (targets, _) = r
        .resolve("a.example.org", u.port, u.transport, u.secure)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("203.0.113.7:5061", Transport::Tls)]);
}

fn partial_zone() -> Zone {
    Zone::new()
        .srv(
            "_sip._udp.part.example.com",
            0,
            0,
            5060,
            "dead.part.example.com",
            600,
        )
        .srv(
            "_sip._udp.part.example.com",
            1,
            0,
            5060,
            "live.part.example.com",
            600,
        )
        .a("live.part.example.com", "192.0.2.50".parse().unwrap(), 600)
        .silent("dead.part.example.com")
        .silent("stuck.example.com")
        .a("stuck.example.com", "192.0.2.60".parse().unwrap(), 600)
}

#[tokio::test]
async fn one_dead_srv_target_leaves_the_others_uncached_long() {
    let server = DnsServer::start(partial_zone());
    let opts = DnsOptions {
        timeout: Duration::from_millis(200),
        attempts: 2,
    };
    let r = SipResolver::with_nameserver_opts(server.addr(), opts);
    let start = Instant::now();
    let (targets, ttl) = r
        .resolve("part.example.com", None, Some(Transport::Udp), false)
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.50:5060", Transport::Udp)]);
    // Degraded: a zero TTL, so the cache keeps it for its minimum only.
    assert_eq!(ttl, Duration::ZERO);
    assert!(start.elapsed() <= Duration::from_millis(400 + 300));
    let cache = DnsCache::new();
    let now = Instant::now();
    cache.insert(
        dataplane::dns::DnsKey::new("part.example.com", None, Some(Transport::Udp), false),
        targets.into(),
        ttl,
        now,
    );
    let key = DnsKeyRef::new("part.example.com", None, Some(Transport::Udp), false);
    assert!(matches!(cache.get(&key, now), Lookup::Hit(_)));
    assert_eq!(cache.get(&key, now + DnsCache::MIN_TTL), Lookup::Miss);
}

#[tokio::test]
async fn naptr_timeout_does_not_fall_through() {
    // stuck.example.com has an A record, but its NAPTR query is never answered: the result is a
    // timeout, not a fallback to A on 5060.
    let server = DnsServer::start(partial_zone());
    let opts = DnsOptions {
        timeout: Duration::from_millis(100),
        attempts: 2,
    };
    let r = SipResolver::with_nameserver_opts(server.addr(), opts);
    assert_eq!(
        r.resolve("stuck.example.com", None, None, false).await,
        Err(DnsError::Timeout)
    );
}

#[tokio::test]
async fn srv_records_stop_the_a_fallback() {
    let server = DnsServer::start(zone());
    let r = resolver(&server);
    // "." means not offered: no fallback to the A record.
    assert_eq!(
        r.resolve("noservice.example.com", None, Some(Transport::Tcp), false)
            .await,
        Err(DnsError::NotFound)
    );
    // SRV targets without addresses: no fallback either.
    assert_eq!(
        r.resolve("noservice.example.com", None, None, false).await,
        Err(DnsError::NotFound)
    );
    // An explicit port still goes straight to A.
    let (targets, _) = r
        .resolve(
            "noservice.example.com",
            Some(5060),
            Some(Transport::Tcp),
            false,
        )
        .await
        .unwrap();
    assert_eq!(targets, vec![t("192.0.2.70:5060", Transport::Tcp)]);
}

#[tokio::test]
async fn concurrent_lookups_do_not_multiply_queries() {
    // hickory-resolver 0.26 shares identical queries in flight (its name server pool deduplicates
    // them), so a burst of jobs for one name costs one set of queries. This pins that down.
    // Queries for one lookup of a.example.org, on a fresh resolver.
    let one = {
        let server = DnsServer::start(zone());
        resolver(&server)
            .resolve("a.example.org", None, None, false)
            .await
            .unwrap();
        server.queries()
    };
    let server = DnsServer::start(zone());
    let r = std::sync::Arc::new(resolver(&server));
    let cache = std::sync::Arc::new(DnsCache::new());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (r, cache) = (r.clone(), cache.clone());
        let name = if i % 2 == 0 {
            "a.example.org"
        } else {
            "A.example.org."
        };
        tasks.spawn(async move { r.resolve_cached(&cache, name, None, None, false).await });
    }
    while let Some(res) = tasks.join_next().await {
        assert_eq!(
            &res.unwrap().unwrap()[..],
            &[t("203.0.113.7:5060", Transport::Udp)]
        );
    }
    assert_eq!(server.queries(), one);

    // Same with a silent server (and a timeout is not cached): count the datagrams it gets for one
    // lookup, then for five concurrent ones.
    let opts = DnsOptions {
        timeout: Duration::from_millis(100),
        attempts: 1,
    };
    let datagrams = |s: &UdpSocket| {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        std::iter::from_fn(|| s.recv_from(&mut buf).ok()).count()
    };
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = SipResolver::with_nameserver_opts(silent.local_addr().unwrap(), opts);
    assert_eq!(
        r.resolve_cached(&DnsCache::new(), "example.com", None, None, false)
            .await,
        Err(DnsError::Timeout)
    );
    let one = datagrams(&silent);
    assert!(one > 0);

    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = std::sync::Arc::new(SipResolver::with_nameserver_opts(
        silent.local_addr().unwrap(),
        opts,
    ));
    for _ in 0..5 {
        let (r, cache) = (r.clone(), cache.clone());
        tasks.spawn(async move {
            r.resolve_cached(&cache, "example.com", None, None, false)
                .await
        });
    }
    while let Some(res) = tasks.join_next().await {
        assert_eq!(res.unwrap(), Err(DnsError::Timeout));
    }
    assert_eq!(datagrams(&silent), one);
    assert_eq!(
        cache.get(
            &DnsKeyRef::new("example.com", None, None, false),
            Instant::now()
        ),
        Lookup::Miss
    );
}
