//! Script module `mangler`: NAT traversal utility: SDP and Contact mangling (SER 0.8.11's
//! experimental mangler).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sdp_mangle_ip` | Str, Str | request | rewrite SDP `c=IN IP4` addresses inside a network: `"10.0.0.0/255.0.0.0"` (or `/8`), new ip |
//! | `sdp_mangle_port` | Str | request | SDP `m=` ports: `"+N"`/`"-N"` shift them, `"N"` sets them |
//! | `encode_contact` | Str, Str | request | encode the first Contact URI: prefix, public ip |
//! | `decode_contact` | - | request | decode an encoded Request-URI |
//! | `decode_contact_header` | - | request | decode the first Contact URI |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `contact_flds_separator` | string | `"*"` (its first character separates the encoded fields) |
//!
//! Encoding (SER's): `sip:user:pass@host:port;transport=t` becomes
//! `sip:<prefix>*user*pass*host*port*t@<public ip>`; decoding turns it back (an empty field is left
//! out). The SDP functions rewrite the body as the earlier edits of the script left it and keep
//! Content-Length right; they return true also when nothing matched (as SER: the count of changes
//! plus one). A port or address that would not be valid after the change is left alone with a
//! warning.
//!
//! Where this differs from SER 0.8.11, on purpose:
//! - `sdp_mangle_port` changes every media line's port (`m=audio`, `m=video`, …); SER's regex only
//!   saw `m=audio`.
//! - `encode_contact` keeps the URI's other parameters (after the public address), which
//!   `decode_contact` then restores; SER dropped them on encoding.
//! - A URI that cannot be encoded or decoded (a field containing the separator, a URI that is not
//!   encoded) makes the function return false; SER logged and returned true unless built with
//!   `STRICT_CHECK`.

use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::wire::uri::Uri;
use crate::wire::HeaderId;

/// Declaration of module `mangler`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "mangler",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "sdp_mangle_ip",
            &[Str, Str],
            RouteKinds::REQUEST,
            "rewrite IPs in SDP: network, new ip",
        )
        .implemented_by(sdp_mangle_ip),
        FunctionDecl::new(
            "sdp_mangle_port",
            &[Str],
            RouteKinds::REQUEST,
            "shift ports in SDP: offset",
        )
        .implemented_by(sdp_mangle_port),
        FunctionDecl::new(
            "encode_contact",
            &[Str, Str],
            RouteKinds::REQUEST,
            "encode Contact: prefix, public ip",
        )
        .implemented_by(encode_contact),
        FunctionDecl::new(
            "decode_contact",
            &[],
            RouteKinds::REQUEST,
            "decode an encoded request URI",
        )
        .implemented_by(decode_contact),
        FunctionDecl::new(
            "decode_contact_header",
            &[],
            RouteKinds::REQUEST,
            "decode an encoded Contact URI",
        )
        .implemented_by(decode_contact_header),
    ],
    params: &[ParamDecl::str("contact_flds_separator", "*")],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "NAT traversal utility: SDP and Contact mangling (experimental)",
    config: Some(resolve_config),
    commands: &[],
};

/// mangler's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
struct ManglerConfig {
    separator: u8,
}

impl ManglerConfig {
    fn resolve(program: Option<&Program>) -> ManglerConfig {
        let sep = super::param(program, &MODULE, "contact_flds_separator")
            .and_then(|p| p.str())
            .and_then(|s| s.bytes().next())
            .unwrap_or(b'*');
        ManglerConfig { separator: sep }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    std::sync::Arc::new(ManglerConfig::resolve(Some(program)))
}

fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, msg: String) {
    if ctx.log_enabled(lvl) {
        env.log(lvl, msg.as_bytes());
    }
}

fn fail(ctx: &Ctx, env: &mut dyn Env, msg: String) -> ActionResult {
    log(ctx, env, level::ERR, format!("mangler: {msg}"));
    ActionResult::Ret(-1)
}

fn str_arg(args: &[Arg], i: usize) -> &str {
    match args.get(i) {
        Some(Arg::Str(s)) => s,
        _ => "",
    }
}

// ---------- SDP ----------

/// `a.b.c.d/m.m.m.m`, `a.b.c.d/bits` or `a.b.c.d` → (network, mask).
fn parse_net(s: &str) -> Option<(u32, u32)> {
    let (ip, mask) = match s.split_once('/') {
        Some((ip, m)) => (ip, Some(m)),
        None => (s, None),
    };
    let ip: std::net::Ipv4Addr = ip.trim().parse().ok()?;
    let mask = match mask.map(str::trim) {
        None => u32::MAX,
        Some(m) if m.contains('.') => u32::from(m.parse::<std::net::Ipv4Addr>().ok()?),
        Some(m) => match m.parse::<u32>().ok()? {
            0 => 0,
            b @ 1..=32 => u32::MAX << (32 - b),
            _ => return None,
        },
    };
    Some((u32::from(ip) & mask, mask))
}

/// The body's lines with their line ends (`\r\n` or `\n`) kept.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split_inclusive(|&b| b == b'\n')
}

fn split_eol(line: &[u8]) -> (&[u8], &[u8]) {
    let n = line
        .iter()
        .rev()
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .count();
    line.split_at(line.len() - n)
}

/// `sdp_mangle_ip(network, newip)`: every `c=IN IP4 <addr>` whose address is in the network gets
/// `newip`.
fn sdp_mangle_ip(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let (net, newip) = (str_arg(args, 0), str_arg(args, 1));
    let Some((net, mask)) = parse_net(net) else {
        return fail(
            ctx,
            env,
            format!("sdp_mangle_ip: {net:?} is not a network (a.b.c.d/m.m.m.m or a.b.c.d/bits)"),
        );
    };
    if newip.is_empty()
        || newip
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return fail(
            ctx,
            env,
            format!("sdp_mangle_ip: bad new address {newip:?}"),
        );
    }
    let body = ctx.msg.current_body();
    if body.is_empty() {
        return fail(ctx, env, "sdp_mangle_ip: the message has no body".into());
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    let mut changed = 0usize;
    for line in lines(body) {
        let (text, eol) = split_eol(line);
        if let Some(addr) = text.strip_prefix(b"c=IN IP4 ") {
            // The address ends at a blank or `/` (a multicast TTL).
            let end = addr
                .iter()
                .position(|&b| b == b'/' || b == b' ')
                .unwrap_or(addr.len());
            let found = std::str::from_utf8(&addr[..end])
                .ok()
                .and_then(|a| a.parse::<std::net::Ipv4Addr>().ok());
            if found.is_some_and(|a| u32::from(a) & mask == net) {
                out.extend_from_slice(b"c=IN IP4 ");
                out.extend_from_slice(newip.as_bytes());
                out.extend_from_slice(&addr[end..]);
                out.extend_from_slice(eol);
                changed += 1;
                continue;
            }
        }
        out.extend_from_slice(line);
    }
    if changed > 0 {
        ctx.msg.set_body(&out);
    }
    ActionResult::Ret(changed as i32 + 1)
}

/// `sdp_mangle_port(offset)`: `"+N"`/`"-N"` add to every media port, `"N"` sets it.
fn sdp_mangle_port(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let spec = str_arg(args, 0).trim();
    let relative = spec.starts_with(['+', '-']);
    let Some(value) = spec
        .parse::<i32>()
        .ok()
        .filter(|v| (-65535..=65535).contains(v))
    else {
        return fail(
            ctx,
            env,
            format!("sdp_mangle_port: {spec:?} is not an offset (+N, -N) or a port"),
        );
    };
    let body = ctx.msg.current_body();
    if body.is_empty() {
        return fail(ctx, env, "sdp_mangle_port: the message has no body".into());
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut changed = 0usize;
    let mut warn = Vec::new();
    for line in lines(body) {
        if let Some(rest) = line.strip_prefix(b"m=") {
            // m=<media> <port>[/<count>] <proto> ...
            if let Some(sp) = rest.iter().position(|&b| b == b' ') {
                let after = &rest[sp + 1..];
                let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
                let old = std::str::from_utf8(&after[..digits])
                    .ok()
                    .and_then(|d| d.parse::<i32>().ok())
                    .filter(|p| (1..=65535).contains(p));
                if let Some(old) = old {
                    let new = if relative { old + value } else { value };
                    if (1..=65535).contains(&new) {
                        out.extend_from_slice(b"m=");
                        out.extend_from_slice(&rest[..=sp]);
                        out.extend_from_slice(new.to_string().as_bytes());
                        out.extend_from_slice(&after[digits..]);
                        changed += 1;
                        continue;
                    }
                    warn.push(format!(
                        "mangler: sdp_mangle_port: port {old} would become {new}; left alone"
                    ));
                }
            }
        }
        out.extend_from_slice(line);
    }
    if changed > 0 {
        ctx.msg.set_body(&out);
    }
    for w in warn {
        log(ctx, env, level::WARN, w);
    }
    ActionResult::Ret(changed as i32 + 1)
}

// ---------- Contact encoding ----------

/// `sip:user:pass@host:port;transport=t;other` → `sip:prefix*user*pass*host*port*t@public;other`.
pub fn encode_uri(uri: &[u8], prefix: &str, public: &str, sep: u8) -> Result<Vec<u8>, String> {
    let u = Uri::parse(uri).map_err(|e| format!("cannot parse the URI: {e}"))?;
    let mut transport: &[u8] = b"";
    let mut other: Vec<u8> = Vec::new();
    for p in u.params.iter() {
        if p.name.eq_ignore_ascii_case(b"transport") {
            transport = p.value.unwrap_or_default();
        } else {
            other.push(b';');
            other.extend_from_slice(p.name);
            if let Some(v) = p.value {
                other.push(b'=');
                other.extend_from_slice(v);
            }
        }
    }
    let port = u.port.map(|p| p.to_string()).unwrap_or_default();
    let fields: [&[u8]; 6] = [
        prefix.as_bytes(),
        u.user.unwrap_or_default(),
        u.password.unwrap_or_default(),
        u.host_raw,
        port.as_bytes(),
        transport,
    ];
    if let Some(f) = fields
        .iter()
        .find(|f| f.iter().any(|&b| b == sep || b == b'@'))
    {
        return Err(format!(
            "{:?} contains the separator {:?} or '@'",
            String::from_utf8_lossy(f),
            sep as char
        ));
    }
    let mut out = Vec::with_capacity(uri.len() + prefix.len() + public.len() + 8);
    out.extend_from_slice(u.scheme_raw);
    out.push(b':');
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(sep);
        }
        out.extend_from_slice(f);
    }
    out.push(b'@');
    out.extend_from_slice(public.as_bytes());
    out.extend_from_slice(&other);
    if let Some(h) = u.headers {
        out.push(b'?');
        out.extend_from_slice(h);
    }
    Ok(out)
}

/// The reverse of [`encode_uri`]; what follows the public address (`;params`, `>`…) is kept.
pub fn decode_uri(uri: &[u8], sep: u8) -> Result<Vec<u8>, String> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or("not a URI (no ':')")?;
    let (scheme, rest) = (&uri[..colon], &uri[colon + 1..]);
    let at = rest
        .iter()
        .position(|&b| b == b'@')
        .ok_or("not an encoded URI (no '@')")?;
    let enc = &rest[..at];
    if enc.iter().any(|&b| b == b';' || b == b'>') {
        return Err("not an encoded URI (';' or '>' before '@')".into());
    }
    let f: Vec<&[u8]> = enc.split(|&b| b == sep).collect();
    let [_prefix, user, pass, host, port, proto] = f[..] else {
        return Err(format!(
            "not an encoded URI ({} fields separated by {:?}, 6 expected)",
            f.len(),
            sep as char
        ));
    };
    if host.is_empty() {
        return Err("the encoded URI has no host".into());
    }
    if !pass.is_empty() && user.is_empty() {
        return Err("the encoded URI has a password but no user".into());
    }
    let public = &rest[at + 1..];
    let tail = public
        .iter()
        .position(|&b| matches!(b, b';' | b'>' | b'?'))
        .map_or(&b""[..], |i| &public[i..]);
    let mut out = Vec::with_capacity(uri.len());
    out.extend_from_slice(scheme);
    out.push(b':');
    if !user.is_empty() {
        out.extend_from_slice(user);
        if !pass.is_empty() {
            out.push(b':');
            out.extend_from_slice(pass);
        }
        out.push(b'@');
    }
    out.extend_from_slice(host);
    if !port.is_empty() {
        out.push(b':');
        out.extend_from_slice(port);
    }
    if !proto.is_empty() {
        out.extend_from_slice(b";transport=");
        out.extend_from_slice(proto);
    }
    out.extend_from_slice(tail);
    Uri::parse(&out).map_err(|e| format!("the decoded URI is not valid: {e}"))?;
    Ok(out)
}

/// The first Contact header field's first URI: (header index, URI span in the message).
fn first_contact(ctx: &Ctx) -> Result<crate::wire::Span, String> {
    let h = ctx
        .msg
        .header(HeaderId::Contact)
        .ok_or("no Contact header")?;
    let c = crate::wire::contact::contacts(h.value)
        .next()
        .ok_or("an empty Contact header")?
        .map_err(|e| format!("cannot parse the Contact header: {e}"))?;
    ctx.msg
        .span_of(c.addr.uri_raw)
        .ok_or_else(|| "Contact: * has no URI".to_string())
}

/// `encode_contact(prefix, public_ip)`.
fn encode_contact(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let sep = crate::script::config(&*env, ManglerConfig::resolve).separator;
    let (prefix, public) = (str_arg(args, 0), str_arg(args, 1));
    let span = match first_contact(ctx) {
        Ok(s) => s,
        Err(e) => return fail(ctx, env, format!("encode_contact: {e}")),
    };
    if ctx.msg.slice(span) == b"*" {
        return fail(ctx, env, "encode_contact: Contact: * has no URI".into());
    }
    match encode_uri(ctx.msg.slice(span), prefix, public, sep) {
        Ok(new) => {
            ctx.msg.replace_span(span, &new);
            ActionResult::Ret(1)
        }
        Err(e) => fail(ctx, env, format!("encode_contact: {e}")),
    }
}

/// `decode_contact()`: the Request-URI decoded.
fn decode_contact(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let sep = crate::script::config(&*env, ManglerConfig::resolve).separator;
    match decode_uri(ctx.uri(), sep) {
        Ok(new) => {
            ctx.set_uri(&new);
            ActionResult::Ret(1)
        }
        Err(e) => fail(ctx, env, format!("decode_contact: Request-URI: {e}")),
    }
}

/// `decode_contact_header()`: the first Contact URI decoded.
fn decode_contact_header(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    let sep = crate::script::config(&*env, ManglerConfig::resolve).separator;
    let span = match first_contact(ctx) {
        Ok(s) => s,
        Err(e) => return fail(ctx, env, format!("decode_contact_header: {e}")),
    };
    match decode_uri(ctx.msg.slice(span), sep) {
        Ok(new) => {
            ctx.msg.replace_span(span, &new);
            ActionResult::Ret(1)
        }
        Err(e) => fail(ctx, env, format!("decode_contact_header: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encode_and_decode_are_inverse() {
        let e = encode_uri(
            b"sip:alice:pw@10.0.0.7:5070;transport=tcp;lr",
            "enc",
            "203.0.113.5",
            b'*',
        )
        .unwrap();
        assert_eq!(e, b"sip:enc*alice*pw*10.0.0.7*5070*tcp@203.0.113.5;lr");
        assert_eq!(
            decode_uri(&e, b'*').unwrap(),
            b"sip:alice:pw@10.0.0.7:5070;transport=tcp;lr"
        );
        let e = encode_uri(b"sip:10.0.0.7", "p", "198.51.100.1", b'#').unwrap();
        assert_eq!(e, b"sip:p###10.0.0.7##@198.51.100.1");
        assert_eq!(decode_uri(&e, b'#').unwrap(), b"sip:10.0.0.7");
        assert!(decode_uri(b"sip:bob@example.com", b'*').is_err());
        assert!(decode_uri(b"sip:p*a*b**1*udp@x", b'*').is_err(), "no host");
        assert!(encode_uri(b"sip:a*b@10.0.0.1", "p", "x", b'*').is_err());
    }

    #[test]
    fn networks() {
        assert_eq!(
            parse_net("10.0.0.0/255.0.0.0"),
            Some((0x0a00_0000, 0xff00_0000))
        );
        assert_eq!(parse_net("10.1.2.3/8"), Some((0x0a00_0000, 0xff00_0000)));
        assert_eq!(parse_net("192.168.1.1"), Some((0xc0a8_0101, u32::MAX)));
        assert_eq!(parse_net("10.0.0.0/33"), None);
        assert_eq!(parse_net("ten/8"), None);
    }
}
