//! Script module `nathelper`: NAT traversal for symmetric phones, with an RTP relay.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `nat_uac_test` | Int | any | true if any test of `flags` says the UA is behind NAT |
//! | `fix_nated_contact` | - | any | the first Contact's host:port becomes the source address |
//! | `fix_nated_sdp` | Int | any | `1`: add `a=direction:active`; `2`: `c=` lines name the source address |
//! | `force_rtp_proxy` | - | any | route the media through the RTP relay (offer/answer by message) |
//! | `unforce_rtp_proxy` | - | any | end the relay's session of this call |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `rtpproxy_sock` | string | `"unix:/var/run/rtpproxy.sock"`: the relay's control socket — `unix:/path` or `udp:host:port` (rtpproxy protocol), `ng:host:port` (rtpengine's NG protocol) |
//! | `rtpproxy_disable` | int | `0`: 1 = no relay; force/unforce_rtp_proxy are false |
//! | `rtpproxy_tout` | int | `1`: seconds to wait for the relay's answer (then the call is false) |
//! | `natping_interval` | int | `0`: seconds between keep-alives to registered contacts (0: none) |
//! | `ping_nated_only` | int | `0`: 1 = ping only bindings registered from behind NAT |
//! | `natping_method` | string | `""`: the keep-alive is 4 bytes (CRLF CRLF, which SIP stacks ignore, RFC 5626 §4.4.1); `"OPTIONS"`: an OPTIONS request |
//!
//! NAT state and keep-alives: a REGISTER marked as coming from behind NAT — `fix_nated_contact()`
//! ran on it, or it has registrar's `nat_flag` set — keeps its source address with its bindings
//! (usrloc's `received`), and `lookup` sends to that address (the request URI stays the
//! registered contact). Every `natping_interval` seconds the controlplane walks the location
//! table and has shard 0 send a keep-alive from its own socket (the address the UA registered
//! with, so the NAT lets it in) to each binding's received address — or, unless
//! `ping_nated_only`, to the contact's own address (UDP contacts with an IP address only).
//!
//! `nat_uac_test` flags (SER's bits): `1` the Contact's host is an RFC 1918 address; `2` the top
//! Via's sent-by address is not the source address; `4` the top Via's host is an RFC 1918
//! address; `8` an SDP `c=` line names an RFC 1918 address; `16` the source port is not the Via's
//! port (Kamailio's later bit, for NATs that keep the address but change the port).
//!
//! The relay: a message with SDP gets `force_rtp_proxy()`'s rewrite — an INVITE (or re-INVITE)
//! request is the *offer*, a reply to it the *answer*; where the INVITE had no SDP (late offer)
//! the 2xx is the offer (the NG answer fails, the offer is sent with the tags swapped) and the
//! ACK the answer. Teardown is the script's: `unforce_rtp_proxy()` on BYE, CANCEL and in
//! failure_route. The relay is asked through the controlplane (a job, never a shard's socket):
//! the script waits for its answer at most `rtpproxy_tout`, and a relay that does not answer
//! makes the function false, so the script can reply 500 or relay without it.
//!
//! Over the rtpproxy protocol the SDP's first media stream is relayed (as SER's nathelper did):
//! `U` for an INVITE, `L` for its reply and the ACK, `D` to end; the `c=` addresses and the first
//! `m=` port become the relay's. Over NG the relay rewrites the whole SDP itself.

use bytes::Bytes;

use crate::offload::{Job, JobResult};
use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR};
use crate::wire::{HeaderId, Message, Method, Span};

/// Declaration of module `nathelper`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "nathelper",
    aliases: &[],
    depends: &["usrloc"],
    functions: &[
        FunctionDecl::new(
            "fix_nated_contact",
            &[],
            RouteKinds::ANY,
            "rewrite Contact with the source address",
        )
        .implemented_by(fix_nated_contact),
        FunctionDecl::new(
            "fix_nated_sdp",
            &[Int],
            RouteKinds::ANY,
            "rewrite the SDP: flags",
        )
        .implemented_by(fix_nated_sdp),
        FunctionDecl::new(
            "force_rtp_proxy",
            &[],
            RouteKinds::ANY,
            "route the media through rtpproxy",
        )
        .implemented_by(force_rtp_proxy),
        FunctionDecl::new(
            "unforce_rtp_proxy",
            &[],
            RouteKinds::ANY,
            "release the rtpproxy session",
        )
        .implemented_by(unforce_rtp_proxy),
        FunctionDecl::new(
            "nat_uac_test",
            &[Int],
            RouteKinds::ANY,
            "true if the UA is behind NAT: tests",
        )
        .implemented_by(nat_uac_test),
    ],
    params: &[
        ParamDecl::int("natping_interval", 0),
        ParamDecl::int("ping_nated_only", 0),
        ParamDecl::str("rtpproxy_sock", "unix:/var/run/rtpproxy.sock"),
        ParamDecl::int("rtpproxy_disable", 0),
        ParamDecl::int("rtpproxy_tout", 1),
        ParamDecl::str("natping_method", ""),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "NAT traversal helper for symmetric phones, with an RTP relay (rtpproxy or rtpengine)",
    config: Some(resolve_config),
    commands: &[],
};

// ------------------------------------------------------------------------------------- settings

/// Where the relay listens, and which protocol it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelaySock {
    /// rtpproxy protocol over a unix stream socket.
    Unix(String),
    /// rtpproxy protocol over UDP (`host:port`).
    Udp(String),
    /// rtpengine's NG protocol (bencode) over UDP (`host:port`).
    Ng(String),
}

impl RelaySock {
    /// `unix:/path`, `udp:host:port`, `ng:host:port` (also `udp-ng:`); a bare path is a unix socket.
    pub fn parse(s: &str) -> Result<RelaySock, String> {
        let s = s.trim();
        let hostport = |rest: &str| -> Result<String, String> {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
                    Ok(rest.to_string())
                }
                _ => Err(format!("rtpproxy_sock {s:?}: expected host:port")),
            }
        };
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("rtpproxy_sock {s:?}: empty path"));
            }
            Ok(RelaySock::Unix(p.to_string()))
        } else if let Some(r) = s.strip_prefix("udp-ng:").or_else(|| s.strip_prefix("ng:")) {
            hostport(r).map(RelaySock::Ng)
        } else if let Some(r) = s.strip_prefix("udp:") {
            hostport(r).map(RelaySock::Udp)
        } else if s.starts_with('/') {
            Ok(RelaySock::Unix(s.to_string()))
        } else {
            Err(format!(
                "rtpproxy_sock {s:?}: expected unix:/path, udp:host:port or ng:host:port"
            ))
        }
    }

    fn is_ng(&self) -> bool {
        matches!(self, RelaySock::Ng(_))
    }
}

/// nathelper's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct NatConfig {
    /// The relay's control socket (text as configured, and parsed).
    pub sock_text: String,
    pub sock: Result<RelaySock, String>,
    pub disabled: bool,
    pub timeout: std::time::Duration,
    pub natping_interval: u32,
    pub ping_nated_only: bool,
    /// Keep-alives as OPTIONS requests (`natping_method "OPTIONS"`) instead of 4 bytes.
    pub natping_options: bool,
}

impl NatConfig {
    pub fn resolve(program: Option<&Program>) -> NatConfig {
        let param = |n| super::param(program, &MODULE, n);
        let int = |n, d: i64| param(n).and_then(|p| p.int()).unwrap_or(d);
        let sock_text = param("rtpproxy_sock")
            .and_then(|p| p.str())
            .unwrap_or("unix:/var/run/rtpproxy.sock")
            .to_string();
        NatConfig {
            sock: RelaySock::parse(&sock_text),
            sock_text,
            disabled: int("rtpproxy_disable", 0) != 0,
            timeout: std::time::Duration::from_millis(
                (int("rtpproxy_tout", 1).clamp(1, 60) as u64) * 1000,
            ),
            natping_interval: int("natping_interval", 0).clamp(0, 86_400) as u32,
            ping_nated_only: int("ping_nated_only", 0) != 0,
            natping_options: param("natping_method")
                .and_then(|p| p.str())
                .is_some_and(|m| m.eq_ignore_ascii_case("OPTIONS")),
        }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    std::sync::Arc::new(NatConfig::resolve(Some(program)))
}

// -------------------------------------------------------------------------------------- bencode

/// A bencoded value (rtpengine's NG protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// Keys in the order given (encoding sorts them, as bencode requires).
    Dict(Vec<(Vec<u8>, Bencode)>),
}

impl Bencode {
    pub fn str(s: &[u8]) -> Bencode {
        Bencode::Bytes(s.to_vec())
    }

    /// Appends the encoding to `out` (dictionary keys sorted).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Bencode::Bytes(b) => {
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(b);
            }
            Bencode::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(d) => {
                let mut keys: Vec<&(Vec<u8>, Bencode)> = d.iter().collect();
                keys.sort_by(|a, b| a.0.cmp(&b.0));
                out.push(b'd');
                for (k, v) in keys {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value that must fill `input`.
    pub fn decode(input: &[u8]) -> Result<Bencode, String> {
        let mut pos = 0;
        let v = Self::decode_at(input, &mut pos, 0)?;
        if pos != input.len() {
            return Err(format!(
                "bencode: {} bytes after the value",
                input.len() - pos
            ));
        }
        Ok(v)
    }

    fn decode_at(b: &[u8], pos: &mut usize, depth: usize) -> Result<Bencode, String> {
        if depth > 32 {
            return Err("bencode: nested too deeply".into());
        }
        let Some(&c) = b.get(*pos) else {
            return Err("bencode: truncated".into());
        };
        match c {
            b'i' => {
                let end = b[*pos..]
                    .iter()
                    .position(|&x| x == b'e')
                    .ok_or("bencode: unterminated integer")?
                    + *pos;
                let n = std::str::from_utf8(&b[*pos + 1..end])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or("bencode: bad integer")?;
                *pos = end + 1;
                Ok(Bencode::Int(n))
            }
            b'l' => {
                *pos += 1;
                let mut l = Vec::new();
                while b.get(*pos) != Some(&b'e') {
                    l.push(Self::decode_at(b, pos, depth + 1)?);
                }
                *pos += 1;
                Ok(Bencode::List(l))
            }
            b'd' => {
                *pos += 1;
                let mut d = Vec::new();
                while b.get(*pos) != Some(&b'e') {
                    let Bencode::Bytes(k) = Self::decode_at(b, pos, depth + 1)? else {
                        return Err("bencode: dictionary key is not a string".into());
                    };
                    let v = Self::decode_at(b, pos, depth + 1)?;
                    d.push((k, v));
                }
                *pos += 1;
                Ok(Bencode::Dict(d))
            }
            b'0'..=b'9' => {
                let colon = b[*pos..]
                    .iter()
                    .position(|&x| x == b':')
                    .ok_or("bencode: string without length")?
                    + *pos;
                let len = std::str::from_utf8(&b[*pos..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or("bencode: bad string length")?;
                let start = colon + 1;
                let end = start.checked_add(len).filter(|&e| e <= b.len());
                let end = end.ok_or("bencode: string runs past the end")?;
                *pos = end;
                Ok(Bencode::Bytes(b[start..end].to_vec()))
            }
            _ => Err(format!("bencode: unexpected byte {c:#04x}")),
        }
    }

    /// The value of `key` in a dictionary.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(d) => d.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The bytes of a string value.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Bencode::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// An NG command: `{"command": name, ...pairs}` encoded (without the cookie).
pub fn ng_command(name: &str, pairs: Vec<(&str, Bencode)>) -> Vec<u8> {
    let mut d = vec![(b"command".to_vec(), Bencode::str(name.as_bytes()))];
    d.extend(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)));
    let mut out = Vec::with_capacity(256);
    Bencode::Dict(d).encode(&mut out);
    out
}

/// An NG answer: the dictionary when `result` is `ok` (or `pong`), else the relay's reason.
pub fn ng_result(reply: &[u8]) -> Result<Bencode, String> {
    let v = Bencode::decode(reply)?;
    match v.get("result").and_then(Bencode::as_bytes) {
        Some(b"ok") | Some(b"pong") => Ok(v),
        Some(other) => {
            let why = v
                .get("error-reason")
                .and_then(Bencode::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(|| String::from_utf8_lossy(other).into_owned());
            Err(why)
        }
        None => Err("NG answer without a result".into()),
    }
}

// ------------------------------------------------------------------------------ rtpproxy protocol

/// An rtpproxy `U`/`L` command: `U callid addr port fromtag;1 [totag;1]` (the tags carry the
/// stream number, which rtpengine's emulation of the protocol requires).
pub fn rtpproxy_update(
    lookup: bool,
    callid: &[u8],
    addr: &[u8],
    port: u16,
    from_tag: &[u8],
    to_tag: Option<&[u8]>,
) -> Vec<u8> {
    let mut c = Vec::with_capacity(96);
    c.push(if lookup { b'L' } else { b'U' });
    for part in [callid, addr, port.to_string().as_bytes(), from_tag] {
        c.push(b' ');
        c.extend_from_slice(part);
    }
    c.extend_from_slice(b";1");
    if let Some(t) = to_tag.filter(|t| !t.is_empty()) {
        c.push(b' ');
        c.extend_from_slice(t);
        c.extend_from_slice(b";1");
    }
    c
}

/// An rtpproxy `D callid fromtag [totag]` command.
pub fn rtpproxy_delete(callid: &[u8], from_tag: &[u8], to_tag: Option<&[u8]>) -> Vec<u8> {
    let mut c = Vec::with_capacity(64);
    c.push(b'D');
    for part in [callid, from_tag] {
        c.push(b' ');
        c.extend_from_slice(part);
    }
    if let Some(t) = to_tag.filter(|t| !t.is_empty()) {
        c.push(b' ');
        c.extend_from_slice(t);
    }
    c
}

/// The relay's `port [address [family]]` answer to `U`/`L`; `Err` for `E<n>` or garbage.
pub fn rtpproxy_port_reply(reply: &[u8]) -> Result<(u16, Option<String>), String> {
    let text = String::from_utf8_lossy(reply);
    let mut it = text.split_ascii_whitespace();
    let first = it.next().ok_or("empty answer")?;
    if first.starts_with('E') {
        return Err(format!("relay error {first}"));
    }
    let port: u16 = first
        .parse()
        .map_err(|_| format!("bad answer {:?}", text.trim()))?;
    if port == 0 {
        return Err("relay has no port free".into());
    }
    let addr = it
        .next()
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .map(str::to_string);
    Ok((port, addr))
}

// ------------------------------------------------------------------------------------------ SDP

/// Lines of an SDP body with their byte ranges (without the line end).
fn sdp_lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= body.len() {
            return None;
        }
        let rest = &body[start..];
        let (line, adv) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let at = start;
        start += adv;
        Some((at, line))
    })
}

/// The address ranges of every `c=IN IP4|IP6 addr[/ttl]` line (absolute offsets in `body`).
fn connection_addrs(body: &[u8]) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for (at, line) in sdp_lines(body) {
        let Some(rest) = line.strip_prefix(b"c=") else {
            continue;
        };
        // The address is the third field: after the second space.
        let Some(first) = memchr::memchr(b' ', rest) else {
            continue;
        };
        let Some(second) = memchr::memchr(b' ', &rest[first + 1..]).map(|i| i + first + 1) else {
            continue;
        };
        let addr = &rest[second + 1..];
        let len = memchr::memchr(b'/', addr).unwrap_or(addr.len());
        if len == 0 {
            continue;
        }
        let start = at + 2 + second + 1;
        v.push((start, start + len));
    }
    v
}

/// The port range of the first `m=` line (absolute offsets in `body`).
fn first_media_port(body: &[u8]) -> Option<(usize, usize)> {
    for (at, line) in sdp_lines(body) {
        let Some(rest) = line.strip_prefix(b"m=") else {
            continue;
        };
        let sp = memchr::memchr(b' ', rest)?;
        let port = &rest[sp + 1..];
        let len = port.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        let start = at + 2 + sp + 1;
        return Some((start, start + len));
    }
    None
}

/// `body` with the ranges replaced (ranges sorted, not overlapping).
fn splice(body: &[u8], mut edits: Vec<(usize, usize, Vec<u8>)>) -> Vec<u8> {
    edits.sort_by_key(|e| e.0);
    let mut out = Vec::with_capacity(body.len() + 32);
    let mut cur = 0;
    for (s, e, new) in edits {
        if s < cur || e > body.len() {
            continue;
        }
        out.extend_from_slice(&body[cur..s]);
        out.extend_from_slice(&new);
        cur = e;
    }
    out.extend_from_slice(&body[cur..]);
    out
}

/// The first `c=` address of the SDP.
fn sdp_address(body: &[u8]) -> Option<&[u8]> {
    connection_addrs(body).first().map(|&(s, e)| &body[s..e])
}

/// Whether `addr` is an RFC 1918 private IPv4 address.
pub fn is_rfc1918(addr: &[u8]) -> bool {
    let Some(ip) = std::str::from_utf8(addr)
        .ok()
        .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
    else {
        return false;
    };
    let o = ip.octets();
    o[0] == 10 || (o[0] == 172 && (16..=31).contains(&o[1])) || (o[0] == 192 && o[1] == 168)
}

/// The SDP as this run of nathelper left it (its earlier rewrites of this message).
#[derive(Debug, Clone, Default)]
struct NatBody(Option<Vec<u8>>);

fn current_body(ctx: &Ctx) -> Vec<u8> {
    match ctx.module_state.get::<NatBody>() {
        Some(NatBody(Some(b))) => b.clone(),
        _ => ctx.msg.body().to_vec(),
    }
}

fn set_body(ctx: &mut Ctx, body: Vec<u8>) {
    ctx.msg.set_body(&body);
    ctx.module_state.set(NatBody(Some(body)));
}

fn has_sdp(ctx: &Ctx) -> bool {
    let ct_sdp = ctx
        .msg
        .header_value(HeaderId::ContentType)
        .is_some_and(|v| v.len() >= 15 && v[..15].eq_ignore_ascii_case(b"application/sdp"));
    ct_sdp && !current_body(ctx).is_empty()
}

// ------------------------------------------------------------------------------------ the tests

/// `nat_uac_test(flags)` on a message from `src`.
pub fn nat_test(msg: &Message, src: std::net::SocketAddr, body: &[u8], flags: i64) -> bool {
    use crate::wire::uri::Host;
    if flags & 1 != 0 {
        let hit = msg.contacts().next().and_then(Result::ok).is_some_and(|c| {
            matches!(c.value.addr.uri.host, Host::V4(_)) && is_rfc1918(c.value.addr.uri.host_raw)
        });
        if hit {
            return true;
        }
    }
    if flags & (2 | 4 | 16) != 0 {
        if let Ok(v) = msg.top_via() {
            let via_ip: Option<std::net::IpAddr> = match v.host {
                Host::V4(a) => Some(a.into()),
                Host::V6(a) => Some(a.into()),
                Host::Name(_) => None,
            };
            // A name is not the source address (SER compared it textually too).
            if flags & 2 != 0 && via_ip != Some(src.ip()) {
                return true;
            }
            if flags & 4 != 0 && is_rfc1918(v.host_raw) {
                return true;
            }
            if flags & 16 != 0 && v.port.unwrap_or(5060) != src.port() {
                return true;
            }
        }
    }
    if flags & 8 != 0
        && connection_addrs(body)
            .iter()
            .any(|&(s, e)| is_rfc1918(&body[s..e]))
    {
        return true;
    }
    false
}

fn int_arg(args: &[Arg]) -> i64 {
    match args.first() {
        Some(Arg::Int(i)) => *i,
        _ => 0,
    }
}

fn nat_uac_test(ctx: &mut Ctx, _env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let body = current_body(ctx);
    ActionResult::from_bool(nat_test(&ctx.msg, ctx.src, &body, int_arg(args)))
}

/// `host:port` of the source, IPv6 in brackets.
fn src_hostport(src: std::net::SocketAddr) -> String {
    match src {
        std::net::SocketAddr::V4(a) => a.to_string(),
        std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Set on a message whose Contact `fix_nated_contact` rewrote: registrar's `save` then keeps the
/// source address with the bindings (they are behind NAT), as SER's save stored the fixed Contact.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedContact;

/// `sip:ip:port` of a source address: what a binding behind NAT is reached at.
pub fn received_uri(src: std::net::SocketAddr) -> String {
    format!("sip:{}", src_hostport(src))
}

fn fix_nated_contact(ctx: &mut Ctx, _env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let hostport = src_hostport(ctx.src);
    let span = {
        let Some(Ok(c)) = ctx.msg.contacts().next() else {
            return ActionResult::Ret(-1);
        };
        let uri = &c.value.addr.uri;
        let host = uri.host_raw;
        let Some(hs) = ctx.msg.span_of(host) else {
            return ActionResult::Ret(-1);
        };
        // The port (if any) follows the host: ":5060".
        let after = hs.end as usize;
        let b = ctx.msg.as_bytes();
        let end = if uri.port.is_some() && b.get(after) == Some(&b':') {
            after
                + 1
                + b[after + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .count()
        } else {
            after
        };
        Span::new(hs.start as usize, end)
    };
    ctx.msg.replace_span(span, hostport.as_bytes());
    ctx.module_state.set(FixedContact);
    ActionResult::Ret(1)
}

fn fix_nated_sdp(ctx: &mut Ctx, _env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let flags = int_arg(args);
    if !has_sdp(ctx) {
        return ActionResult::Ret(-1);
    }
    let body = current_body(ctx);
    let mut edits = Vec::new();
    if flags & 2 != 0 {
        let ip = ctx.src.ip().to_string();
        let family = if ctx.src.is_ipv4() { "IP4" } else { "IP6" };
        for (at, line) in sdp_lines(&body) {
            if line.starts_with(b"c=") {
                edits.push((
                    at,
                    at + line.len(),
                    format!("c=IN {family} {ip}").into_bytes(),
                ));
            }
        }
        if edits.is_empty() {
            return ActionResult::Ret(-1);
        }
    }
    if flags & 1 != 0 && memchr::memmem::find(&body, b"a=direction:").is_none() {
        // After the session-level c= line (or at the end), as SER added it.
        let line_end =
            |at: usize| memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i + 1);
        let pos = sdp_lines(&body)
            .find(|(_, l)| l.starts_with(b"c="))
            .map_or(body.len(), |(at, _)| line_end(at));
        let mut add = Vec::new();
        if pos == body.len() && !body.ends_with(b"\n") {
            add.extend_from_slice(b"\r\n");
        }
        add.extend_from_slice(b"a=direction:active\r\n");
        edits.push((pos, pos, add));
    }
    if edits.is_empty() {
        return ActionResult::Ret(-1);
    }
    let new = splice(&body, edits);
    set_body(ctx, new);
    ActionResult::Ret(1)
}

// ------------------------------------------------------------------------------------ the relay

/// What a relay job was for: read back when the answer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Offer,
    Answer,
    Delete,
}

#[derive(Debug, Clone)]
struct Pending {
    op: Op,
    ng: bool,
    /// The tags were given the other way round (the offer came from the callee).
    swapped: bool,
    /// An NG answer that may turn into a late offer.
    may_be_late_offer: bool,
    sock: String,
    timeout: std::time::Duration,
}

/// Call-ID, From tag, To tag of the message.
fn dialog_ids(msg: &Message) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let callid = msg.call_id().ok()?.to_vec();
    let from = msg.from().ok()?.tag()?.to_vec();
    let to = msg
        .to()
        .ok()
        .and_then(|t| t.tag().map(<[u8]>::to_vec))
        .unwrap_or_default();
    Some((callid, from, to))
}

fn relay_settings(env: &dyn Env, fname: &str) -> Option<(RelaySock, String, std::time::Duration)> {
    let cfg = crate::script::config(env, NatConfig::resolve);
    if cfg.disabled {
        ser_log!(L_DBG, "{fname}: rtpproxy_disable is set");
        return None;
    }
    match &cfg.sock {
        Ok(s) => Some((s.clone(), cfg.sock_text.clone(), cfg.timeout)),
        Err(e) => {
            ser_log!(L_ERR, "ERROR: {fname}: {e}");
            None
        }
    }
}

/// The NG request for `op` on this message.
fn ng_request(ctx: &Ctx, p: &Pending, sdp: &[u8]) -> Option<Vec<u8>> {
    let (callid, from, to) = dialog_ids(&ctx.msg)?;
    let (ftag, ttag) = if p.swapped { (to, from) } else { (from, to) };
    let mut pairs = vec![
        ("call-id", Bencode::Bytes(callid)),
        ("from-tag", Bencode::Bytes(ftag)),
    ];
    match p.op {
        Op::Offer => {
            pairs.push(("sdp", Bencode::str(sdp)));
            // The relay rewrites the session's origin and connection addresses as well.
            pairs.push((
                "replace",
                Bencode::List(vec![
                    Bencode::str(b"origin"),
                    Bencode::str(b"session-connection"),
                ]),
            ));
            Some(ng_command("offer", pairs))
        }
        Op::Answer => {
            if ttag.is_empty() {
                return None;
            }
            pairs.push(("to-tag", Bencode::Bytes(ttag)));
            pairs.push(("sdp", Bencode::str(sdp)));
            pairs.push((
                "replace",
                Bencode::List(vec![
                    Bencode::str(b"origin"),
                    Bencode::str(b"session-connection"),
                ]),
            ));
            Some(ng_command("answer", pairs))
        }
        Op::Delete => {
            if !ttag.is_empty() {
                pairs.push(("to-tag", Bencode::Bytes(ttag)));
            }
            Some(ng_command("delete", pairs))
        }
    }
}

/// The rtpproxy request for `op` on this message (the SDP's first stream).
fn rtpproxy_request(ctx: &Ctx, op: Op, sdp: &[u8]) -> Option<Vec<u8>> {
    let (callid, from, to) = dialog_ids(&ctx.msg)?;
    let to = (!to.is_empty()).then_some(&to[..]);
    match op {
        Op::Delete => Some(rtpproxy_delete(&callid, &from, to)),
        Op::Offer | Op::Answer => {
            let addr = sdp_address(sdp)?;
            let (ps, pe) = first_media_port(sdp)?;
            let port: u16 = std::str::from_utf8(&sdp[ps..pe]).ok()?.parse().ok()?;
            Some(rtpproxy_update(
                op == Op::Answer,
                &callid,
                addr,
                port,
                &from,
                to,
            ))
        }
    }
}

fn relay_job(p: &Pending, command: Vec<u8>) -> Job {
    Job::RtpRelay {
        sock: p.sock.clone(),
        command: Bytes::from(command),
        timeout: p.timeout,
    }
}

fn force_rtp_proxy(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let Some((sock, sock_text, timeout)) = relay_settings(&*env, "force_rtp_proxy") else {
        return ActionResult::Ret(-1);
    };
    if !has_sdp(ctx) {
        ser_log!(L_DBG, "force_rtp_proxy: no SDP in the message");
        return ActionResult::Ret(-1);
    }
    let invite = if ctx.msg.is_request() {
        ctx.msg.method() == Method::Invite
    } else {
        ctx.msg.cseq().is_ok_and(|c| c.method == b"INVITE")
    };
    let ack = ctx.msg.is_request() && ctx.msg.method() == Method::Ack;
    let (op, swapped, late) = match (ctx.msg.is_request(), invite, ack) {
        (true, true, _) => (Op::Offer, false, false),
        // An ACK with SDP answers a late offer made by the callee's 2xx.
        (true, _, true) => (Op::Answer, true, false),
        (false, true, _) => (Op::Answer, false, true),
        _ => {
            ser_log!(L_DBG, "force_rtp_proxy: not an INVITE, its reply or an ACK");
            return ActionResult::Ret(-1);
        }
    };
    let p = Pending {
        op,
        ng: sock.is_ng(),
        swapped,
        may_be_late_offer: late && sock.is_ng(),
        sock: sock_text,
        timeout,
    };
    let sdp = current_body(ctx);
    let cmd = if p.ng {
        ng_request(ctx, &p, &sdp)
    } else {
        rtpproxy_request(ctx, op, &sdp)
    };
    let Some(cmd) = cmd else {
        ser_log!(
            L_ERR,
            "ERROR: force_rtp_proxy: no Call-ID/tags, or an SDP without c=/m="
        );
        return ActionResult::Ret(-1);
    };
    let job = relay_job(&p, cmd);
    ctx.module_state.set(p);
    ctx.suspend_with(job, force_done)
}

fn force_done(ctx: &mut Ctx, _env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let Some(p) = ctx.module_state.take::<Pending>() else {
        return ActionResult::Ret(-1);
    };
    let reply = match r {
        JobResult::Relay(b) => b,
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: force_rtp_proxy: {why}");
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    let sdp = current_body(ctx);
    if p.ng {
        match ng_result(&reply) {
            Ok(v) => match v.get("sdp").and_then(Bencode::as_bytes) {
                Some(new) => {
                    set_body(ctx, new.to_vec());
                    ActionResult::Ret(1)
                }
                None => {
                    ser_log!(
                        L_ERR,
                        "ERROR: force_rtp_proxy: the relay's answer has no SDP"
                    );
                    ActionResult::Ret(-1)
                }
            },
            Err(why) if p.may_be_late_offer => {
                // No offer known for this call: the 2xx is the offer (the INVITE had no SDP).
                ser_log!(
                    L_DBG,
                    "force_rtp_proxy: answer refused ({why}); sending the 2xx as an offer"
                );
                let late = Pending {
                    op: Op::Offer,
                    swapped: true,
                    may_be_late_offer: false,
                    ..p
                };
                let Some(cmd) = ng_request(ctx, &late, &sdp) else {
                    return ActionResult::Ret(-1);
                };
                let job = relay_job(&late, cmd);
                ctx.module_state.set(late);
                ctx.suspend_with(job, force_done)
            }
            Err(why) => {
                ser_log!(L_ERR, "ERROR: force_rtp_proxy: the relay refused: {why}");
                ActionResult::Ret(-1)
            }
        }
    } else {
        match rtpproxy_port_reply(&reply) {
            Ok((port, addr)) => {
                let addr = addr.unwrap_or_else(|| ctx.dst.ip().to_string());
                let mut edits: Vec<(usize, usize, Vec<u8>)> = connection_addrs(&sdp)
                    .into_iter()
                    .map(|(s, e)| (s, e, addr.clone().into_bytes()))
                    .collect();
                if let Some((s, e)) = first_media_port(&sdp) {
                    edits.push((s, e, port.to_string().into_bytes()));
                }
                let new = splice(&sdp, edits);
                set_body(ctx, new);
                ActionResult::Ret(1)
            }
            Err(why) => {
                ser_log!(L_ERR, "ERROR: force_rtp_proxy: {why}");
                ActionResult::Ret(-1)
            }
        }
    }
}

fn unforce_rtp_proxy(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let Some((sock, sock_text, timeout)) = relay_settings(&*env, "unforce_rtp_proxy") else {
        return ActionResult::Ret(-1);
    };
    let p = Pending {
        op: Op::Delete,
        ng: sock.is_ng(),
        swapped: false,
        may_be_late_offer: false,
        sock: sock_text,
        timeout,
    };
    let cmd = if p.ng {
        ng_request(ctx, &p, &[])
    } else {
        rtpproxy_request(ctx, Op::Delete, &[])
    };
    let Some(cmd) = cmd else {
        ser_log!(L_ERR, "ERROR: unforce_rtp_proxy: no Call-ID or From tag");
        return ActionResult::Ret(-1);
    };
    let job = relay_job(&p, cmd);
    ctx.module_state.set(p);
    ctx.suspend_with(job, unforce_done)
}

fn unforce_done(ctx: &mut Ctx, _env: &mut dyn Env, _args: &[Arg], r: JobResult) -> ActionResult {
    let ng = ctx.module_state.take::<Pending>().is_some_and(|p| p.ng);
    let reply = match r {
        JobResult::Relay(b) => b,
        JobResult::Failed(why) => {
            ser_log!(L_ERR, "ERROR: unforce_rtp_proxy: {why}");
            return ActionResult::Ret(-1);
        }
        _ => return ActionResult::Ret(-1),
    };
    let ok = if ng {
        ng_result(&reply).map(|_| ())
    } else {
        let t = String::from_utf8_lossy(&reply);
        if t.trim_start().starts_with('E') {
            Err(format!("relay error {}", t.trim()))
        } else {
            Ok(())
        }
    };
    match ok {
        Ok(()) => ActionResult::Ret(1),
        Err(why) => {
            ser_log!(L_ERR, "ERROR: unforce_rtp_proxy: {why}");
            ActionResult::Ret(-1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip_and_sorted_keys() {
        let cmd = ng_command(
            "offer",
            vec![
                ("sdp", Bencode::str(b"v=0\r\n")),
                ("call-id", Bencode::str(b"c1")),
                ("flags", Bencode::List(vec![Bencode::str(b"trust-address")])),
                ("n", Bencode::Int(-3)),
            ],
        );
        assert_eq!(
            cmd,
            b"d7:call-id2:c17:command5:offer5:flagsl13:trust-addresse1:ni-3e3:sdp5:v=0\r\ne"
                .to_vec()
        );
        let back = Bencode::decode(&cmd).unwrap();
        assert_eq!(
            back.get("command").and_then(Bencode::as_bytes),
            Some(&b"offer"[..])
        );
        assert_eq!(back.get("n"), Some(&Bencode::Int(-3)));
    }

    #[test]
    fn bencode_rejects_bad_input() {
        for bad in [
            &b""[..],
            b"d",
            b"i12",
            b"5:abc",
            b"d3:keyi1e",
            b"di1ei2ee",
            b"x",
            b"4:abcdextra",
            b"99999999999999999999:x",
        ] {
            assert!(
                Bencode::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = [b'l'; 100];
        assert!(Bencode::decode(&deep).is_err());
    }

    #[test]
    fn ng_results() {
        assert!(ng_result(b"d6:result2:ok3:sdp3:v=0e").is_ok());
        assert!(ng_result(b"d6:result4:ponge").is_ok());
        assert_eq!(
            ng_result(b"d6:result5:error12:error-reason15:Unknown call-ide").unwrap_err(),
            "Unknown call-id"
        );
        assert!(ng_result(b"garbage").is_err());
    }

    #[test]
    fn rtpproxy_commands_and_replies() {
        assert_eq!(
            rtpproxy_update(false, b"cid", b"10.0.0.1", 4000, b"ft", None),
            b"U cid 10.0.0.1 4000 ft;1".to_vec()
        );
        assert_eq!(
            rtpproxy_update(true, b"cid", b"10.0.0.1", 4000, b"ft", Some(b"tt")),
            b"L cid 10.0.0.1 4000 ft;1 tt;1".to_vec()
        );
        assert_eq!(
            rtpproxy_delete(b"cid", b"ft", Some(b"tt")),
            b"D cid ft tt".to_vec()
        );
        assert_eq!(rtpproxy_delete(b"cid", b"ft", None), b"D cid ft".to_vec());
        assert_eq!(
            rtpproxy_port_reply(b"30000 127.0.0.1 4\n").unwrap(),
            (30000, Some("127.0.0.1".into()))
        );
        assert_eq!(rtpproxy_port_reply(b"30002\n").unwrap(), (30002, None));
        assert!(rtpproxy_port_reply(b"E8\n").is_err());
        assert!(rtpproxy_port_reply(b"0\n").is_err());
        assert!(rtpproxy_port_reply(b"").is_err());
        assert!(rtpproxy_port_reply(b"hello").is_err());
    }

    #[test]
    fn relay_sockets() {
        assert_eq!(
            RelaySock::parse("unix:/var/run/rtpproxy.sock").unwrap(),
            RelaySock::Unix("/var/run/rtpproxy.sock".into())
        );
        assert_eq!(
            RelaySock::parse("udp:127.0.0.1:22222").unwrap(),
            RelaySock::Udp("127.0.0.1:22222".into())
        );
        assert_eq!(
            RelaySock::parse("ng:localhost:2223").unwrap(),
            RelaySock::Ng("localhost:2223".into())
        );
        assert!(RelaySock::parse("udp:127.0.0.1").is_err());
        assert!(RelaySock::parse("tcp:1.2.3.4:5").is_err());
        assert!(RelaySock::parse("unix:").is_err());
    }

    const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 192.168.1.5\r\ns=-\r\nc=IN IP4 192.168.1.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.168.1.6/127\r\n";

    #[test]
    fn sdp_fields() {
        let c = connection_addrs(SDP);
        assert_eq!(c.len(), 2);
        assert_eq!(&SDP[c[0].0..c[0].1], b"192.168.1.5");
        assert_eq!(&SDP[c[1].0..c[1].1], b"192.168.1.6");
        let (s, e) = first_media_port(SDP).unwrap();
        assert_eq!(&SDP[s..e], b"4000");
        let edits = vec![
            (s, e, b"30000".to_vec()),
            (c[0].0, c[0].1, b"1.2.3.4".to_vec()),
        ];
        let out = splice(SDP, edits);
        assert!(out.windows(16).any(|w| w == b"c=IN IP4 1.2.3.4"));
        assert!(out.windows(13).any(|w| w == b"m=audio 30000"));
    }

    fn msg(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_string())).unwrap()
    }

    #[test]
    fn nat_uac_test_flags() {
        let m = msg("INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5:5062;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.168.1.5:5062>\r\nContent-Length: 0\r\n\r\n");
        let public: std::net::SocketAddr = "203.0.113.7:40000".parse().unwrap();
        let same: std::net::SocketAddr = "192.168.1.5:5062".parse().unwrap();
        assert!(nat_test(&m, public, b"", 1));
        assert!(nat_test(&m, public, b"", 2));
        assert!(nat_test(&m, public, b"", 4));
        assert!(nat_test(&m, public, b"", 16));
        assert!(!nat_test(&m, same, b"", 2 | 16));
        // The private-address tests do not depend on where it came from.
        assert!(nat_test(&m, same, b"", 1));
        assert!(nat_test(&m, same, b"", 4));
        assert!(!nat_test(&m, public, b"", 0));
        assert!(nat_test(&m, public, SDP, 8));
        assert!(!nat_test(
            &m,
            public,
            b"v=0\r\nc=IN IP4 198.51.100.1\r\n",
            8
        ));
        let open = msg("OPTIONS sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.2;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContact: <sip:a@198.51.100.2>\r\nContent-Length: 0\r\n\r\n");
        let from: std::net::SocketAddr = "198.51.100.2:5060".parse().unwrap();
        assert!(!nat_test(&open, from, b"", 1 | 2 | 4 | 8 | 16));
        assert!(nat_test(
            &open,
            "198.51.100.2:6000".parse().unwrap(),
            b"",
            16
        ));
        assert!(is_rfc1918(b"172.31.0.1") && !is_rfc1918(b"172.32.0.1"));
        assert!(is_rfc1918(b"10.1.2.3") && !is_rfc1918(b"11.0.0.1") && !is_rfc1918(b"x"));
    }
}
