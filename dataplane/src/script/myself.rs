//! `myself`: is a host (and port) one of ours? SER's `check_self`.
//!
//! Ours are: every `listen` address (with its port, or the `port` option), the local address the
//! message arrived on, and every `alias` (`name` or `name:port`; without a port any port matches).
//! Names compare case-insensitively, addresses by value (`[::1]` equals `::1`). A URI without a port
//! is compared as port 5060; `src_ip==myself`/`dst_ip==myself` ignore ports.
//!
//! [`Myself`] is the set parsed once (the shard builds it with the program and hands it out through
//! [`super::Env::myself`]); without it the interpreter reads the options directly
//! ([`host_in_options`], [`ip_in_options`]), which parses the listen/alias strings on every test.

use std::net::{IpAddr, SocketAddr};

use smallvec::SmallVec;

use super::ir::CoreOptions;
use crate::wire::uri::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Addr(IpAddr),
    /// Lower-case.
    Name(SmallVec<[u8; 32]>),
}

/// Our names and addresses, parsed from the program's options once.
#[derive(Debug, Clone, Default)]
pub struct Myself {
    /// (entry, port): `None` = any port (aliases without one).
    entries: Vec<(Entry, Option<u16>)>,
}

impl Myself {
    /// The set described by `listen`, `port` and `alias`.
    pub fn from_options(o: &CoreOptions) -> Myself {
        let mut entries = Vec::new();
        let listen = o.listen.iter().map(|l| {
            let (h, p) = split_host_port(&l.host);
            (h, Some(l.port.or(p).unwrap_or(o.port)))
        });
        let alias = o.alias.iter().map(|a| split_host_port(a));
        for (h, port) in listen.chain(alias) {
            let e = match h.parse::<IpAddr>() {
                Ok(a) => Entry::Addr(a),
                Err(_) => Entry::Name(h.bytes().map(|b| b.to_ascii_lowercase()).collect()),
            };
            entries.push((e, port));
        }
        Myself { entries }
    }

    /// Adds an address we listen on (the command line's `-l`, which overrides `listen=`).
    pub fn add_addr(&mut self, ip: IpAddr, port: Option<u16>) {
        self.entries.push((Entry::Addr(ip), port));
    }

    /// Adds a name that is ours (e.g. the host name when listening on every interface).
    pub fn add_name(&mut self, name: &str, port: Option<u16>) {
        self.entries.push((
            Entry::Name(name.bytes().map(|b| b.to_ascii_lowercase()).collect()),
            port,
        ));
    }

    /// `uri==myself`: `host:port` is ours (`local` is the address the message arrived on).
    pub fn host_is_mine(&self, host: &Host<'_>, port: u16, local: SocketAddr) -> bool {
        if on_local(host, port, local) {
            return true;
        }
        self.entries.iter().any(|(e, p)| {
            p.is_none_or(|p| p == port)
                && match (e, host) {
                    (Entry::Name(n), Host::Name(h)) => n.eq_ignore_ascii_case(h),
                    (Entry::Addr(a), Host::V4(h)) => *a == IpAddr::V4(*h),
                    (Entry::Addr(a), Host::V6(h)) => *a == IpAddr::V6(*h),
                    _ => false,
                }
        })
    }

    /// `src_ip==myself`: `ip` is one of our addresses.
    pub fn ip_is_mine(&self, ip: IpAddr, local: SocketAddr) -> bool {
        ip == local.ip()
            || self
                .entries
                .iter()
                .any(|(e, _)| matches!(e, Entry::Addr(a) if *a == ip))
    }
}

fn on_local(host: &Host<'_>, port: u16, local: SocketAddr) -> bool {
    let ip = match host {
        Host::V4(a) => IpAddr::V4(*a),
        Host::V6(a) => IpAddr::V6(*a),
        Host::Name(_) => return false,
    };
    ip == local.ip() && port == local.port()
}

/// Host and port of a listen/alias entry: `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (h, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h, Some(port)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

fn host_eq(text: &str, host: &Host<'_>) -> bool {
    match host {
        Host::Name(n) => text.as_bytes().eq_ignore_ascii_case(n),
        Host::V4(a) => text.parse::<IpAddr>().is_ok_and(|t| t == IpAddr::V4(*a)),
        Host::V6(a) => text.parse::<IpAddr>().is_ok_and(|t| t == IpAddr::V6(*a)),
    }
}

/// [`Myself::host_is_mine`] without a prepared set: reads the options as they are.
pub fn host_in_options(o: &CoreOptions, host: &Host<'_>, port: u16, local: SocketAddr) -> bool {
    if on_local(host, port, local) {
        return true;
    }
    for l in &o.listen {
        let (h, p) = split_host_port(&l.host);
        if l.port.or(p).unwrap_or(o.port) == port && host_eq(h, host) {
            return true;
        }
    }
    o.alias.iter().any(|a| {
        let (h, p) = split_host_port(a);
        p.is_none_or(|p| p == port) && host_eq(h, host)
    })
}

/// [`Myself::ip_is_mine`] without a prepared set.
pub fn ip_in_options(o: &CoreOptions, ip: IpAddr, local: SocketAddr) -> bool {
    ip == local.ip()
        || o.listen
            .iter()
            .map(|l| split_host_port(&l.host).0)
            .chain(o.alias.iter().map(|a| split_host_port(a).0))
            .any(|h| h.parse::<IpAddr>().is_ok_and(|a| a == ip))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::script::ir::ListenAddr;

    #[test]
    fn prepared_set_agrees_with_the_options() {
        let o = CoreOptions {
            listen: vec![
                ListenAddr {
                    proto: None,
                    host: "192.0.2.5".into(),
                    port: Some(5080),
                },
                ListenAddr {
                    proto: None,
                    host: "[2001:db8::5]".into(),
                    port: None,
                },
                ListenAddr {
                    proto: None,
                    host: "Proxy.Example.com:5070".into(),
                    port: None,
                },
            ],
            alias: vec![
                "foo.bar".into(),
                "sales.foo.bar:5070".into(),
                "10.9.9.9".into(),
            ],
            ..CoreOptions::default()
        };
        let m = Myself::from_options(&o);
        let local: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let hosts: [(&str, u16); 12] = [
            ("192.0.2.5", 5080),
            ("192.0.2.5", 5060),
            ("2001:db8::5", 5060),
            ("proxy.example.COM", 5070),
            ("proxy.example.com", 5060),
            ("FOO.bar", 1),
            ("sales.foo.bar", 5070),
            ("sales.foo.bar", 5060),
            ("10.9.9.9", 9),
            ("10.0.0.1", 5060),
            ("10.0.0.1", 5061),
            ("other", 5060),
        ];
        let want = [
            true, false, true, true, false, true, true, false, true, true, false, false,
        ];
        for ((h, port), want) in hosts.iter().zip(want) {
            let host = match h.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => Host::V4(a),
                Ok(IpAddr::V6(a)) => Host::V6(a),
                Err(_) => Host::Name(h.as_bytes()),
            };
            assert_eq!(m.host_is_mine(&host, *port, local), want, "{h}:{port}");
            assert_eq!(host_in_options(&o, &host, *port, local), want, "{h}:{port}");
        }
        for (ip, want) in [
            ("10.9.9.9", true),
            ("192.0.2.5", true),
            ("10.0.0.1", true),
            ("2001:db8::5", true),
            ("10.0.0.2", false),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(m.ip_is_mine(ip, local), want, "{ip}");
            assert_eq!(ip_in_options(&o, ip, local), want, "{ip}");
        }
    }
}
