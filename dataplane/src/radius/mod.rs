//! What the RADIUS modules (auth_radius, group_radius, uri_radius, acc) share on the dataplane
//! side: SER's `radius_config` file (a radiusclient.conf) and the dictionary it names, read at
//! load; the request a [`crate::offload::Job::Radius`] carries; and the bounded queue of
//! accounting requests nobody waits for; the packet codec ([`codec`]: building requests,
//! verifying replies). The client itself (sockets, retransmission, failover) is the
//! controlplane's (`controlplane::modules::radius`).
//!
//! radiusclient.conf lines understood (others, such as `seqfile` or `bindaddr`, are ignored):
//! `authserver` and `acctserver` (a list of `host[:port[:secret]]`, tried in order),
//! `servers` (a file of `host[:port] secret` lines, radiusclient's secrets file),
//! `dictionary`, `radius_timeout` (seconds per try), `radius_retries` (tries per server),
//! `nas_identifier` (the `NAS-Identifier` every request carries, RFC 2865 §4.1 / 2866 §4.1;
//! default: the host name).
//! Relative paths are taken from the directory of radiusclient.conf.
//!
//! Dictionary lines: `ATTRIBUTE name number type [vendor]`, `VALUE attribute name number`,
//! `VENDOR name number`, `$INCLUDE file`; `#` starts a comment. Attribute numbers 1063–1072
//! (Digest-Realm … Digest-User-Name) are the sub-attributes of Digest-Attributes (207), as
//! draft-sterman-aaa-sip and radiusclient encode them.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub mod codec;

pub use codec::{
    ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_REQUEST, ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE,
};

/// NAS-IP-Address (RFC 2865).
const NAS_IP_ADDRESS: u8 = 4;
/// NAS-Identifier (RFC 2865).
const NAS_IDENTIFIER: u8 = 32;
/// Digest-Attributes (draft-sterman-aaa-sip): holds the Digest-* sub-attributes.
const DIGEST_ATTRIBUTES: u8 = 207;
/// The first dictionary number packed into Digest-Attributes (Digest-Realm = sub-type 1).
const DIGEST_SUB_BASE: u32 = 1062;

/// One RADIUS server: where, and the secret shared with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Server {
    /// Address and port.
    pub addr: SocketAddr,
    /// Shared secret.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for Server {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({})", self.addr)
    }
}

/// One request for the controlplane's RADIUS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusRequest {
    /// Servers in order of preference (the next one is tried when one does not answer).
    pub servers: Arc<[Server]>,
    /// How long to wait for an answer to one transmission.
    pub timeout: Duration,
    /// Transmissions per server.
    pub tries: u32,
    /// [`ACCESS_REQUEST`] or [`ACCOUNTING_REQUEST`].
    pub code: u8,
    /// Attributes (type, value), already encoded (vendor ones inside 26, Digest-* inside 207).
    pub attrs: Vec<(u8, Vec<u8>)>,
}

/// An attribute's value type in the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    /// Text or octets.
    String,
    /// 32-bit big-endian number.
    Integer,
    /// IPv4 address.
    IpAddr,
    /// Seconds since 1970, 32-bit.
    Date,
}

#[derive(Debug, Clone)]
struct AttrDef {
    number: u32,
    kind: AttrType,
    vendor: Option<u32>,
}

/// A radiusclient dictionary: attribute names and named values.
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    attrs: HashMap<String, AttrDef>,
    values: HashMap<(String, String), u32>,
    vendors: HashMap<String, u32>,
}

impl Dictionary {
    /// The dictionary in `path` (and the files it includes).
    pub fn load(path: &Path) -> Result<Dictionary, String> {
        let mut d = Dictionary::default();
        d.read(path, 0)?;
        Ok(d)
    }

    /// A dictionary from text (`path` names it in errors; includes are relative to its
    /// directory).
    pub fn parse(path: &Path, text: &str) -> Result<Dictionary, String> {
        let mut d = Dictionary::default();
        d.read_text(path, text, 0)?;
        Ok(d)
    }

    fn read(&mut self, path: &Path, depth: u32) -> Result<(), String> {
        if depth > 8 {
            return Err(format!("{}: $INCLUDE nested too deeply", path.display()));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        self.read_text(path, &text, depth)
    }

    fn read_text(&mut self, path: &Path, text: &str, depth: u32) -> Result<(), String> {
        for (n, line) in text.lines().enumerate() {
            let at = |what: String| format!("{}:{}: {what}", path.display(), n + 1);
            let line = line.split('#').next().unwrap_or("");
            let w: Vec<&str> = line.split_whitespace().collect();
            let Some(first) = w.first() else { continue };
            let num = |s: &str| -> Result<u32, String> {
                let r = match s.strip_prefix("0x") {
                    Some(h) => u32::from_str_radix(h, 16),
                    None => s.parse(),
                };
                r.map_err(|_| at(format!("'{s}' is not a number")))
            };
            match first.to_ascii_uppercase().as_str() {
                "ATTRIBUTE" => {
                    let [_, name, number, kind, rest @ ..] = w.as_slice() else {
                        return Err(at("ATTRIBUTE needs a name, a number and a type".into()));
                    };
                    let kind = match kind.to_ascii_lowercase().as_str() {
                        "string" | "octets" | "text" => AttrType::String,
                        "integer" => AttrType::Integer,
                        "ipaddr" => AttrType::IpAddr,
                        "date" => AttrType::Date,
                        other => return Err(at(format!("unknown attribute type '{other}'"))),
                    };
                    let vendor = match rest.first() {
                        None => None,
                        Some(v) => match self.vendors.get(*v) {
                            Some(id) => Some(*id),
                            None => return Err(at(format!("unknown vendor '{v}'"))),
                        },
                    };
                    let number = num(number)?;
                    if vendor.is_none() && number > 255 && !is_digest_sub(number) {
                        // radiusclient's internal pseudo-attributes: never sent.
                        continue;
                    }
                    self.attrs.insert(
                        (*name).to_string(),
                        AttrDef {
                            number,
                            kind,
                            vendor,
                        },
                    );
                }
                "VALUE" => {
                    let [_, attr, name, number, ..] = w.as_slice() else {
                        return Err(at("VALUE needs an attribute, a name and a number".into()));
                    };
                    self.values
                        .insert(((*attr).to_string(), (*name).to_string()), num(number)?);
                }
                "VENDOR" => {
                    let [_, name, number, ..] = w.as_slice() else {
                        return Err(at("VENDOR needs a name and a number".into()));
                    };
                    let id = num(number)?;
                    self.vendors.insert((*name).to_string(), id);
                }
                "$INCLUDE" => {
                    let Some(file) = w.get(1) else {
                        return Err(at("$INCLUDE needs a file".into()));
                    };
                    let p = relative_to(path, file);
                    self.read(&p, depth + 1)?;
                }
                // BEGIN-VENDOR and the like: not needed by SER's dictionary.
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether `name` is defined.
    pub fn has(&self, name: &str) -> bool {
        self.attrs.contains_key(name)
    }

    /// The named value `value` of attribute `attr` (`Service-Type`, `Sip-Session`).
    pub fn value(&self, attr: &str, value: &str) -> Option<u32> {
        self.values
            .get(&(attr.to_string(), value.to_string()))
            .copied()
    }

    /// Appends attribute `name` = `value` (text, or a number for integer attributes) to `out`,
    /// encoded for the wire. An unknown name or a value that does not fit is an error.
    pub fn push(
        &self,
        out: &mut Vec<(u8, Vec<u8>)>,
        name: &str,
        value: Value,
    ) -> Result<(), String> {
        let def = self
            .attrs
            .get(name)
            .ok_or_else(|| format!("attribute {name} is not in the dictionary"))?;
        let bytes = match (def.kind, value) {
            (AttrType::Integer | AttrType::Date, Value::Int(i)) => i.to_be_bytes().to_vec(),
            (AttrType::Integer | AttrType::Date, Value::Text(t)) => t
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("{name}: '{t}' is not a number"))?
                .to_be_bytes()
                .to_vec(),
            (AttrType::IpAddr, Value::Text(t)) => match t.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => ip.octets().to_vec(),
                Err(_) => return Err(format!("{name}: '{t}' is not an IPv4 address")),
            },
            (AttrType::IpAddr, Value::Int(i)) => i.to_be_bytes().to_vec(),
            (AttrType::String, Value::Text(t)) => t.as_bytes().to_vec(),
            (AttrType::String, Value::Int(i)) => i.to_string().into_bytes(),
        };
        // RADIUS has no empty attributes; an empty field is simply left out.
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(vendor) = def.vendor {
            if bytes.len() > 247 || def.number > 255 {
                return Err(format!("{name}: value too long"));
            }
            let mut v = vendor.to_be_bytes().to_vec();
            v.push(def.number as u8);
            v.push(bytes.len() as u8 + 2);
            v.extend_from_slice(&bytes);
            out.push((26, v));
        } else if is_digest_sub(def.number) {
            if bytes.len() > 251 {
                return Err(format!("{name}: value too long"));
            }
            let mut v = vec![(def.number - DIGEST_SUB_BASE) as u8, bytes.len() as u8 + 2];
            v.extend_from_slice(&bytes);
            out.push((DIGEST_ATTRIBUTES, v));
        } else {
            if bytes.len() > 253 {
                return Err(format!("{name}: value too long"));
            }
            out.push((def.number as u8, bytes));
        }
        Ok(())
    }

    /// The first value of attribute `name` among `attrs` (vendor attributes looked for inside 26).
    pub fn find<'a>(&self, attrs: &'a [(u8, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
        let def = self.attrs.get(name)?;
        attrs.iter().find_map(|(t, v)| match def.vendor {
            None => (u32::from(*t) == def.number).then_some(&v[..]),
            Some(vendor) => {
                let (id, rest) = (v.get(..4)?, v.get(4..)?);
                let (&st, &sl) = (rest.first()?, rest.get(1)?);
                (*t == 26
                    && id == vendor.to_be_bytes()
                    && u32::from(st) == def.number
                    && sl as usize == rest.len())
                .then(|| rest.get(2..))
                .flatten()
            }
        })
    }
}

fn is_digest_sub(n: u32) -> bool {
    (DIGEST_SUB_BASE + 1..=DIGEST_SUB_BASE + 10).contains(&n)
}

/// An attribute value to encode.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Text (converted for integer and address attributes).
    Text(&'a str),
    /// A number.
    Int(u32),
}

/// `file` relative to the directory of `base` (absolute paths as they are).
fn relative_to(base: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// What a `radius_config` file says.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Access-Request servers, in order.
    pub auth: Arc<[Server]>,
    /// Accounting-Request servers, in order.
    pub acct: Arc<[Server]>,
    /// Wait per transmission.
    pub timeout: Duration,
    /// Transmissions per server.
    pub tries: u32,
    /// The dictionary it names.
    pub dict: Arc<Dictionary>,
    /// `NAS-Identifier` of every request.
    pub nas_identifier: Vec<u8>,
}

impl ClientConfig {
    /// Reads the radiusclient.conf at `path`, its secrets file and its dictionary.
    pub fn load(path: &str) -> Result<ClientConfig, String> {
        let p = Path::new(path);
        let text = std::fs::read_to_string(p).map_err(|e| format!("{path}: cannot read: {e}"))?;
        let mut auth_spec = Vec::new();
        let mut acct_spec = Vec::new();
        let (mut servers_file, mut dict_file) = (None, None);
        let (mut timeout, mut retries) = (5u64, 3u32);
        let mut nas_identifier = None;
        for (n, line) in text.lines().enumerate() {
            let at = |what: String| format!("{path}:{}: {what}", n + 1);
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(char::is_whitespace) else {
                continue;
            };
            let value = value.trim();
            match key {
                "authserver" => auth_spec.extend(
                    value
                        .split([',', ' ', '\t'])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "acctserver" => acct_spec.extend(
                    value
                        .split([',', ' ', '\t'])
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                ),
                "servers" => servers_file = Some(relative_to(p, value)),
                "dictionary" => dict_file = Some(relative_to(p, value)),
                "nas_identifier" => nas_identifier = Some(value.as_bytes().to_vec()),
                "radius_timeout" => {
                    timeout = value.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                        at(format!("radius_timeout '{value}' is not a positive number"))
                    })?
                }
                "radius_retries" => {
                    retries = value.parse().ok().filter(|t| *t > 0).ok_or_else(|| {
                        at(format!("radius_retries '{value}' is not a positive number"))
                    })?
                }
                _ => {}
            }
        }
        let dict_file = dict_file.ok_or_else(|| format!("{path}: no dictionary line"))?;
        let dict = Dictionary::load(&dict_file)?;
        let secrets = match &servers_file {
            Some(f) => read_secrets(f)?,
            None => Vec::new(),
        };
        let servers = |spec: &[String], port: u16, what: &str| -> Result<Arc<[Server]>, String> {
            let mut out = Vec::new();
            for s in spec {
                out.push(
                    server(s, port, &secrets).map_err(|e| format!("{path}: {what} {s}: {e}"))?,
                );
            }
            Ok(out.into())
        };
        let auth = servers(&auth_spec, 1812, "authserver")?;
        let acct = servers(&acct_spec, 1813, "acctserver")?;
        if auth.is_empty() && acct.is_empty() {
            return Err(format!("{path}: names no authserver and no acctserver"));
        }
        Ok(ClientConfig {
            auth,
            acct,
            timeout: Duration::from_secs(timeout),
            tries: retries,
            dict: Arc::new(dict),
            nas_identifier: nas_identifier
                .or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().as_bytes().to_vec())
                })
                .filter(|n| !n.is_empty() && n.len() <= 253)
                .unwrap_or_else(|| b"ser".to_vec()),
        })
    }

    /// A request to the auth or acct servers with `attrs` (and `NAS-Identifier` when `attrs`
    /// name neither it nor `NAS-IP-Address`).
    pub fn request(&self, code: u8, mut attrs: Vec<(u8, Vec<u8>)>) -> RadiusRequest {
        if !attrs
            .iter()
            .any(|(t, _)| *t == NAS_IP_ADDRESS || *t == NAS_IDENTIFIER)
        {
            attrs.push((NAS_IDENTIFIER, self.nas_identifier.clone()));
        }
        RadiusRequest {
            servers: if code == ACCOUNTING_REQUEST {
                Arc::clone(&self.acct)
            } else {
                Arc::clone(&self.auth)
            },
            timeout: self.timeout,
            tries: self.tries,
            code,
            attrs,
        }
    }
}

/// `host[:port]` → secret, from radiusclient's `servers` file.
fn read_secrets(path: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut w = line.split_whitespace();
        match (w.next(), w.next()) {
            (Some(h), Some(s)) => out.push((h.to_string(), s.as_bytes().to_vec())),
            _ => {
                return Err(format!(
                    "{}:{}: a line is `server secret`",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok(out)
}

/// One `host[:port[:secret]]` of authserver/acctserver; the secret from the secrets file when
/// not given inline.
fn server(spec: &str, default_port: u16, secrets: &[(String, Vec<u8>)]) -> Result<Server, String> {
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or("");
    let port = match parts.next() {
        Some(p) => p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?,
        None => default_port,
    };
    let secret = match parts.next() {
        Some(s) => s.as_bytes().to_vec(),
        None => secrets
            .iter()
            .find(|(h, _)| h == host || *h == format!("{host}:{port}"))
            .map(|(_, s)| s.clone())
            .ok_or_else(|| "no secret for it (inline or in the servers file)".to_string())?,
    };
    // Resolved once, at load: a shard never waits for DNS.
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .next()
        .ok_or_else(|| "no address".to_string())?;
    Ok(Server { addr, secret })
}

/// The loaded `radius_config` of a module: the configuration, or why it is unusable (logged at
/// load; the module's functions then fail).
pub type Loaded = Result<Arc<ClientConfig>, String>;

/// Loads `path` (at program load), checking the dictionary has `attrs`.
pub fn load(path: &str, attrs: &[&str]) -> Loaded {
    ClientConfig::load(path).and_then(|c| match attrs.iter().find(|a| !c.dict.has(a)) {
        Some(a) => Err(format!("{path}: its dictionary lacks attribute {a}")),
        None => Ok(Arc::new(c)),
    })
}

/// [`load`], a failure logged with `module`'s name.
pub fn load_logged(module: &str, path: &str, attrs: &[&str]) -> Loaded {
    let r = load(path, attrs);
    if let Err(e) = &r {
        crate::ser_log!(
            crate::shard::log::L_ERR,
            "ERROR: {module}: radius_config {e} (its RADIUS functions will fail)"
        );
    }
    r
}

/// The queue of accounting requests nobody waits for (acc's records): shards post, the
/// controlplane's RADIUS client sends them. Posting never blocks; a full queue, or no client
/// connected, refuses and counts. Lives in [`crate::services::Services::store`].
#[derive(Default)]
pub struct AcctSink {
    tx: OnceLock<crossbeam_channel::Sender<RadiusRequest>>,
    refused: AtomicU64,
}

impl AcctSink {
    /// Connects the controlplane's receiving end (once; later calls are ignored).
    pub fn connect(&self, tx: crossbeam_channel::Sender<RadiusRequest>) {
        let _ = self.tx.set(tx);
    }

    /// Queues `r`; false when the queue is full or nothing is connected.
    pub fn post(&self, r: RadiusRequest) -> bool {
        let ok = self.tx.get().is_some_and(|tx| tx.try_send(r).is_ok());
        if !ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const DICT: &str = "VENDOR Cisco 9\nATTRIBUTE Cisco-AVPair 1 string Cisco\n\
        ATTRIBUTE User-Name 1 string\nATTRIBUTE Service-Type 6 integer\n\
        ATTRIBUTE Digest-Realm 1063 string\nATTRIBUTE Auth-Type 1000 integer # internal\n\
        VALUE Service-Type Sip-Session 15\n";

    #[test]
    fn attributes_encode_plain_vendor_and_digest_sub_attributes() {
        let d = Dictionary::parse(Path::new("/d"), DICT).unwrap();
        let mut out = Vec::new();
        d.push(&mut out, "User-Name", Value::Text("alice")).unwrap();
        let st = d.value("Service-Type", "Sip-Session").unwrap();
        d.push(&mut out, "Service-Type", Value::Int(st)).unwrap();
        d.push(&mut out, "Digest-Realm", Value::Text("r")).unwrap();
        d.push(&mut out, "Cisco-AVPair", Value::Text("a=b"))
            .unwrap();
        d.push(&mut out, "User-Name", Value::Text("")).unwrap();
        assert_eq!(
            out,
            vec![
                (1, b"alice".to_vec()),
                (6, vec![0, 0, 0, 15]),
                (207, vec![1, 3, b'r']),
                (26, vec![0, 0, 0, 9, 1, 5, b'a', b'=', b'b']),
            ]
        );
        assert_eq!(d.find(&out, "Cisco-AVPair"), Some(&b"a=b"[..]));
        assert!(d.push(&mut out, "Auth-Type", Value::Int(1)).is_err());
        assert!(d.push(&mut out, "Service-Type", Value::Text("x")).is_err());
    }

    #[test]
    fn the_accounting_queue_refuses_when_full_or_unconnected() {
        let sink = AcctSink::default();
        let req = RadiusRequest {
            servers: Vec::new().into(),
            timeout: Duration::from_secs(1),
            tries: 1,
            code: ACCOUNTING_REQUEST,
            attrs: vec![],
        };
        assert!(!sink.post(req.clone()), "nothing connected");
        let (tx, rx) = crossbeam_channel::bounded(1);
        sink.connect(tx);
        assert!(sink.post(req.clone()));
        assert!(!sink.post(req.clone()), "the bound holds");
        assert_eq!(sink.refused(), 2);
        assert_eq!(rx.try_recv().ok(), Some(req));
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let e = Dictionary::parse(Path::new("/d"), "ATTRIBUTE X 1 float\n").unwrap_err();
        assert!(e.contains("/d:1: unknown attribute type 'float'"), "{e}");
        let e = ClientConfig::load("/nonexistent/radiusclient.conf").unwrap_err();
        assert!(
            e.contains("/nonexistent/radiusclient.conf: cannot read"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("ser-radius-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("dictionary"), DICT).unwrap();
        std::fs::write(dir.join("servers"), "127.0.0.1 s3cret\n").unwrap();
        let conf = dir.join("radiusclient.conf");
        std::fs::write(
            &conf,
            "authserver 127.0.0.1:1999,127.0.0.2:2000:other\nservers servers\ndictionary dictionary\nradius_retries 2\nnas_identifier proxy-1\n",
        )
        .unwrap();
        let c = ClientConfig::load(conf.to_str().unwrap()).unwrap();
        assert_eq!(c.auth.len(), 2);
        assert_eq!(c.auth[0].secret, b"s3cret");
        assert_eq!(c.auth[1].secret, b"other");
        assert_eq!(c.tries, 2);
        let r = c.request(ACCESS_REQUEST, vec![(1, b"u".to_vec())]);
        assert_eq!(r.attrs, vec![(1, b"u".to_vec()), (32, b"proxy-1".to_vec())]);
        std::fs::write(&conf, "authserver 127.0.0.9\ndictionary dictionary\n").unwrap();
        let e = ClientConfig::load(conf.to_str().unwrap()).unwrap_err();
        assert!(e.contains("no secret"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
