//! Script module `sms`: SIP MESSAGE <-> SMS gateway through GSM modems on serial lines (SER
//! 0.8.11's sms module). Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sms_send_msg_to_net` | Str | request | queue the MESSAGE as SMS on the named network |
//! | `sms_send_msg` | - | request | queue the MESSAGE as SMS on `default_net` |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `modems` | string | unset: `name [d=/dev/ttyS0;b=9600;p=1234;m=new;c=+49...;r=2;l=5]; name2 [...]` |
//! | `networks` | string | unset: `D1 [m=10]; D2 [m=20]` (m = SMS sent per loop) |
//! | `links` | string | unset: `modem [D1;D2]; modem2 [D3]` |
//! | `default_net` | string | unset (the first network) |
//! | `max_sms_parts` | int | `4` |
//! | `domain` | string | unset (this server's first listen address): the host of the `sip:+number@domain` From of SMS turned into MESSAGE |
//! | `use_contact` | int | `0` (1: those MESSAGEs carry a Contact) |
//! | `concat_udh` | int | `0` (not SER's; 1: a long SMS goes as one concatenated SMS — parts of 153 septets with a user data header in PDU mode, plain parts in text mode — instead of SER's `(i/n)` parts) |
//! | `sms_report_type` | int | `0` (none); 1: status reports are asked for and read from the modem's memory (SER: "as SMS reports") — a failed delivery, an SMS only stored by the SMSC, and its later delivery are told to the sender by MESSAGE; 2: the same, the modem told (`AT+CNMI=1,1,0,1,0`) to hand each report over at once as an unsolicited `+CDS` (SER: "async. CDS responses") |
//!
//! Modem keys: `d` device, `b` baud rate (default 9600), `p` SIM PIN, `m` mode (`new`/`old`:
//! PDU with/without the SMSC field, `ascii`/`digicom`: text mode), `c` SMSC number, `r` send
//! attempts (default 2), `l` seconds between polls for received SMS (default 5).
//!
//! `sms_send_msg*` (SER's rules): the MESSAGE needs a `text/plain` (or `message/cpim`) body; the
//! number is the user part of the new request URI, else the request URI, else the To URI, and must
//! be international (`+` then a digit 1-9). The SMS text is `From <from-uri> (if you reply DO NOT
//! remove it)\r\n\r\n<body>\r\n\r\n[SER]`, split into 160-character parts at a word edge with
//! `(i/n)` part markers, at most `max_sms_parts` (the last one ends `(truncated)` and the sender is
//! told by MESSAGE what was not sent). The function returns true once the job is queued to the
//! network's modem (the script answers 202, as SER's examples do) and false when the network is
//! unknown, the request unfit or the queue (100 messages, SER's bound) full — the script answers an
//! error, the sender keeps the message. The modem side is `controlplane::modules::sms`: it sends in
//! PDU or text mode, retries a failed send after re-initialising the modem, and tells the sender
//! by MESSAGE when the SMS could not be sent; received SMS become MESSAGEs to the `sip:` address
//! the SMS text names (SER's body scan), sent statefully through tm.

use std::sync::Arc;

use crate::script::env::{ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_DBG, L_ERR};
use crate::wire::message::Method;
use crate::wire::uri::Uri;
use crate::wire::HeaderId;

/// Declaration of module `sms`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "sms",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "sms_send_msg_to_net",
            &[Str],
            RouteKinds::REQUEST,
            "send the MESSAGE as SMS via the named network",
        )
        .implemented_by(sms_send_msg_to_net),
        FunctionDecl::new(
            "sms_send_msg",
            &[],
            RouteKinds::REQUEST,
            "send the MESSAGE as SMS via the default network",
        )
        .implemented_by(sms_send_msg),
    ],
    params: &[
        ParamDecl::str_unset("modems"),
        ParamDecl::str_unset("networks"),
        ParamDecl::str_unset("links"),
        ParamDecl::str_unset("default_net"),
        ParamDecl::int("max_sms_parts", 4),
        ParamDecl::str_unset("domain"),
        ParamDecl::int("use_contact", 0),
        ParamDecl::int("sms_report_type", 0),
        ParamDecl::int("concat_udh", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "SIMPLE/SMS gateway (GSM modems on serial lines)",
    config: Some(resolve_config),
    commands: &[],
};

/// One SMS (the `max_sms_parts` limit applied) is at most this many characters.
pub const MAX_SMS_LENGTH: usize = 160;
/// Septets of one part of a concatenated SMS (160 less the 7 its user data header takes).
pub const UDH_PART_SEPTETS: usize = 153;
/// Messages queued for the modems at most (SER's `MAX_QUEUED_MESSAGES`).
pub const MAX_QUEUED: usize = 100;
/// What precedes the sender's address in the SMS text; a reply keeps it, so the gateway finds
/// the SIP address to answer to.
pub const HDR_BEFORE_ADDR: &str = "From ";
/// What follows the sender's address.
pub const HDR_AFTER_ADDR: &str = " (if you reply DO NOT remove it)\r\n\r\n";
/// The end of every SMS text.
pub const FOOTER: &str = "\r\n\r\n[SER]";
/// The part marker (`(2/3)`), as long as SER's `( / )`.
const EDGE_PART_LEN: usize = 5;
/// The end of the last part when the text did not fit.
pub const TRUNCATED: &str = "(truncated)";

/// How a modem talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemMode {
    /// PDU mode with the SMSC field (`m=new`, the default).
    New,
    /// PDU mode without the SMSC field (`m=old`).
    Old,
    /// Text mode (`m=ascii`, `m=digicom`).
    Text,
}

/// One modem of `modems`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemCfg {
    /// Its name (what `links` refers to).
    pub name: String,
    /// The serial device.
    pub device: String,
    /// Baud rate.
    pub baud: u32,
    /// SIM PIN, if the SIM needs one.
    pub pin: Option<String>,
    /// PDU or text mode.
    pub mode: ModemMode,
    /// SMSC number (`AT+CSCA`, and in the PDU), if given.
    pub smsc: Option<String>,
    /// Attempts per SMS before the sender is told it failed.
    pub retry: u32,
    /// Seconds between polls for received SMS.
    pub looping: u64,
    /// The networks whose SMS this modem sends (`links`).
    pub nets: Vec<String>,
}

/// The module's settings, resolved once per loaded program.
#[derive(Debug, Clone, Default)]
pub struct SmsConfig {
    /// The modems, each with its networks.
    pub modems: Vec<ModemCfg>,
    /// Network names (with `m=`, SMS per loop).
    pub networks: Vec<(String, u32)>,
    /// `default_net`, else the first network.
    pub default_net: Option<String>,
    /// `max_sms_parts` (at least 1).
    pub max_sms_parts: usize,
    /// The host of the From of MESSAGEs made of SMS (empty: the server's address).
    pub domain: String,
    /// Whether those MESSAGEs carry a Contact.
    pub use_contact: bool,
    /// Whether status reports are asked for (`sms_report_type` != 0).
    pub reports: bool,
    /// `sms_report_type` 2: the modem hands status reports over at once as `+CDS`.
    pub cds_reports: bool,
    /// `concat_udh` (not SER's): a long SMS goes as one concatenated SMS (parts of
    /// [`UDH_PART_SEPTETS`] with a user data header) instead of `(i/n)` parts.
    pub concat_udh: bool,
    /// Parse errors of the parameters, logged once at load.
    pub errors: Vec<String>,
}

/// `name [k=v;k=v]; name2 [...]` as (name, items).
fn groups(s: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([';', ' ', '\t', '\r', '\n']);
        if rest.is_empty() {
            break;
        }
        let open = rest
            .find('[')
            .ok_or_else(|| format!("`{rest}`: `[` expected after the name"))?;
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| format!("`{rest}`: `]` missing"))?;
        let name = rest[..open].trim();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ';') {
            return Err(format!("`{}`: bad name", &rest[..open]));
        }
        let items = rest[open + 1..close]
            .split(';')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .collect();
        out.push((name.to_string(), items));
        rest = &rest[close + 1..];
    }
    Ok(out)
}

fn key_value(item: &str) -> Result<(char, &str), String> {
    let mut it = item.splitn(2, '=');
    let k = it.next().unwrap_or("").trim();
    let v = it.next().map(str::trim);
    match (k.len(), v) {
        (1, Some(v)) if !v.is_empty() => Ok((k.chars().next().unwrap_or('?'), v)),
        _ => Err(format!("`{item}`: `key=value` expected")),
    }
}

fn parse_modem(name: &str, items: &[String]) -> Result<ModemCfg, String> {
    let mut m = ModemCfg {
        name: name.to_string(),
        device: String::new(),
        baud: 9600,
        pin: None,
        mode: ModemMode::New,
        smsc: None,
        retry: 2,
        looping: 5,
        nets: Vec::new(),
    };
    for item in items {
        let (k, v) = key_value(item).map_err(|e| format!("modem {name}: {e}"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("modem {name}: `{item}`: a number expected"))
        };
        match k {
            'd' => m.device = v.to_string(),
            'b' => {
                m.baud = u32::try_from(num(v)?)
                    .ok()
                    .filter(|b| BAUDS.contains(b))
                    .ok_or_else(|| format!("modem {name}: unsupported baud rate {v}"))?
            }
            'p' => m.pin = Some(v.to_string()),
            'm' => {
                m.mode = match v.to_ascii_lowercase().as_str() {
                    "new" => ModemMode::New,
                    "old" => ModemMode::Old,
                    "ascii" | "digicom" => ModemMode::Text,
                    _ => return Err(format!("modem {name}: unknown mode {v}")),
                }
            }
            'c' => m.smsc = Some(v.to_string()),
            'r' => m.retry = u32::try_from(num(v)?).unwrap_or(u32::MAX).max(1),
            'l' => m.looping = num(v)?.max(1),
            _ => return Err(format!("modem {name}: unknown key `{k}`")),
        }
    }
    if m.device.is_empty() {
        return Err(format!("modem {name}: no device (d=)"));
    }
    Ok(m)
}

/// Baud rates a serial line takes.
pub const BAUDS: &[u32] = &[300, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200];

impl SmsConfig {
    /// The settings of `program`.
    pub fn resolve(program: Option<&Program>) -> SmsConfig {
        let s = |n: &str| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.str())
                .map(str::to_string)
                .unwrap_or_default()
        };
        let i = |n: &str, d: i64| {
            super::param(program, &MODULE, n)
                .and_then(|p| p.int())
                .unwrap_or(d)
        };
        let mut cfg = SmsConfig {
            max_sms_parts: usize::try_from(i("max_sms_parts", 4))
                .unwrap_or(1)
                .clamp(1, 9),
            domain: s("domain").trim().to_string(),
            use_contact: i("use_contact", 0) != 0,
            reports: i("sms_report_type", 0) != 0,
            cds_reports: i("sms_report_type", 0) == 2,
            concat_udh: i("concat_udh", 0) != 0,
            ..SmsConfig::default()
        };
        match groups(&s("networks")) {
            Ok(g) => {
                for (name, items) in g {
                    let mut per = 10;
                    for item in &items {
                        match key_value(item) {
                            Ok(('m', v)) => per = v.parse().unwrap_or(10),
                            _ => cfg.errors.push(format!("network {name}: bad `{item}`")),
                        }
                    }
                    cfg.networks.push((name, per));
                }
            }
            Err(e) => cfg.errors.push(format!("networks: {e}")),
        }
        match groups(&s("modems")) {
            Ok(g) => {
                for (name, items) in g {
                    match parse_modem(&name, &items) {
                        Ok(m) => cfg.modems.push(m),
                        Err(e) => cfg.errors.push(e),
                    }
                }
            }
            Err(e) => cfg.errors.push(format!("modems: {e}")),
        }
        match groups(&s("links")) {
            Ok(g) => {
                for (modem, nets) in g {
                    let Some(m) = cfg.modems.iter_mut().find(|m| m.name == modem) else {
                        cfg.errors.push(format!("links: unknown modem {modem}"));
                        continue;
                    };
                    for n in nets {
                        if cfg.networks.iter().any(|(x, _)| *x == n) {
                            m.nets.push(n);
                        } else {
                            cfg.errors.push(format!("links: unknown network {n}"));
                        }
                    }
                }
            }
            Err(e) => cfg.errors.push(format!("links: {e}")),
        }
        let default = s("default_net");
        cfg.default_net = if default.trim().is_empty() {
            cfg.networks.first().map(|(n, _)| n.clone())
        } else {
            Some(default.trim().to_string())
        };
        cfg
    }

    /// The modem that sends for network `net`.
    pub fn modem_for(&self, net: &str) -> Option<&ModemCfg> {
        self.modems.iter().find(|m| m.nets.iter().any(|n| n == net))
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    let cfg = SmsConfig::resolve(Some(program));
    for e in &cfg.errors {
        ser_log!(L_ERR, "ERROR: sms: {e}");
    }
    Arc::new(cfg)
}

/// One accepted MESSAGE on its way to a modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsJob {
    /// The network (`links` names the modem).
    pub net: String,
    /// The number, international, without `+`.
    pub to: String,
    /// The SIP sender (From URI), told when the SMS cannot be sent.
    pub from: String,
    /// The SMS parts, each at most [`MAX_SMS_LENGTH`] characters.
    pub parts: Vec<String>,
    /// What did not fit into `max_sms_parts` (the sender is told), if anything.
    pub truncated: Option<String>,
    /// The body the user sent (for the failure notice).
    pub body: String,
    /// The parts are those of one concatenated SMS (`concat_udh`): sent with a user data
    /// header in PDU mode.
    pub concat: bool,
}

/// The queue from the shards to the modems (`services.store`): bounded, never blocking a shard.
pub struct SmsQueue {
    /// Shards post here.
    pub tx: crossbeam_channel::Sender<SmsJob>,
    /// The controlplane's dispatcher takes from here.
    pub rx: crossbeam_channel::Receiver<SmsJob>,
}

impl Default for SmsQueue {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::bounded(MAX_QUEUED);
        SmsQueue { tx, rx }
    }
}

/// Where `text` may be cut (SER's list): after one of these.
fn is_edge(c: char) -> bool {
    matches!(
        c,
        '.' | ' ' | ';' | '\r' | '\n' | '-' | '!' | '?' | '+' | '=' | '\t' | '\''
    )
}

/// Septets a character takes in the GSM 7-bit alphabet (the extension table's take two).
pub fn septets(c: char) -> usize {
    if matches!(
        c,
        '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' | '\u{c}'
    ) {
        2
    } else {
        1
    }
}

/// How many characters of `text` fit into `budget` septets.
fn fit(text: &[char], budget: usize) -> usize {
    let mut used = 0;
    for (i, &c) in text.iter().enumerate() {
        used += septets(c);
        if used > budget {
            return i;
        }
    }
    text.len()
}

/// Lengths (in characters) of the pieces of `text` (SER's split: 160 characters, minus room for
/// the part marker when `nice`, cut after a word edge unless that wastes over half a part).
fn split_lens(text: &[char], nice: bool) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut done = 0;
    loop {
        let room = MAX_SMS_LENGTH - if nice { EDGE_PART_LEN } else { 0 };
        let whole = fit(
            &text[done..],
            MAX_SMS_LENGTH
                - if nice && !lens.is_empty() {
                    EDGE_PART_LEN
                } else {
                    0
                },
        );
        let mut k = whole;
        if done + k < text.len() {
            if nice && lens.is_empty() {
                k = fit(&text[done..], room);
            }
            if text.len() - done - k <= FOOTER.len() + 4 {
                k = (text.len() - done) / 2;
            }
            let k1 = k;
            while k > 0 && !is_edge(text[done + k - 1]) {
                k -= 1;
            }
            if k < k1 / 2 {
                k = k1;
            }
            let k = k.max(1);
            done += k;
            lens.push(k);
        } else {
            lens.push(text.len() - done);
            break;
        }
    }
    lens
}

/// The parts of one concatenated SMS of `text` (at most `max_parts` of [`UDH_PART_SEPTETS`]
/// septets, cut at a word edge unless that wastes over half a part, no markers) and what did
/// not fit (the last part allowed then ends with the truncation mark and the footer).
pub fn split_concat(text: &str, max_parts: usize) -> (Vec<String>, Option<String>) {
    let chars: Vec<char> = text.chars().collect();
    let max_parts = max_parts.max(1);
    let mut parts = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let rest = &chars[at..];
        let whole = fit(rest, UDH_PART_SEPTETS);
        if parts.len() + 1 == max_parts && whole < rest.len() {
            let tail = format!("{TRUNCATED}{FOOTER}");
            let tail_cost: usize = tail.chars().map(septets).sum();
            let keep = fit(rest, UDH_PART_SEPTETS.saturating_sub(tail_cost));
            parts.push(rest[..keep].iter().collect::<String>() + &tail);
            let end = chars
                .len()
                .saturating_sub(FOOTER.chars().count())
                .max(at + keep);
            return (parts, Some(chars[at + keep..end].iter().collect()));
        }
        let mut k = whole;
        if k < rest.len() {
            while k > 0 && !is_edge(rest[k - 1]) {
                k -= 1;
            }
            if k < whole / 2 {
                k = whole;
            }
        }
        let k = k.max(1);
        parts.push(rest[..k].iter().collect());
        at += k;
    }
    (parts, None)
}

/// The SMS parts of `text` (at most `max_parts`; SER's `(i/n)` markers: after the first part's
/// text, before the others') and what did not fit.
pub fn split_text(text: &str, max_parts: usize) -> (Vec<String>, Option<String>) {
    let chars: Vec<char> = text.chars().collect();
    let plain = split_lens(&chars, false);
    let nice_lens = split_lens(&chars, true);
    let nice = plain.len() == nice_lens.len() && nice_lens.len() < 10;
    let lens = if nice { nice_lens } else { plain };
    let n = lens.len();
    let max_parts = max_parts.max(1);
    let mut parts = Vec::new();
    let mut at = 0;
    for (i, &len) in lens.iter().enumerate().take(max_parts) {
        let piece: String = chars[at..at + len].iter().collect();
        at += len;
        let marker = format!("({}/{n})", i + 1);
        let mut part = match (nice && n > 1, i) {
            (false, _) => piece,
            (true, 0) => piece + &marker,
            (true, _) => marker + &piece,
        };
        if i + 1 == max_parts && i + 1 < n {
            // The last part allowed ends with the truncation mark and the footer.
            let tail = format!("{TRUNCATED}{FOOTER}");
            let tail_cost: usize = tail.chars().map(septets).sum();
            let part_chars: Vec<char> = part.chars().collect();
            let keep = fit(&part_chars, MAX_SMS_LENGTH.saturating_sub(tail_cost));
            let kept: String = part_chars[..keep].iter().collect();
            let dropped_in_part = part.chars().count().saturating_sub(keep);
            part = kept + &tail;
            // What the user loses: the end of this part and every later one, without footer.
            let from = at.saturating_sub(dropped_in_part);
            let end = chars.len().saturating_sub(FOOTER.chars().count()).max(from);
            parts.push(part);
            let lost: String = chars[from.min(end)..end].iter().collect();
            return (parts, Some(lost));
        }
        parts.push(part);
    }
    (parts, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The user part of `uri`, if it has one.
fn uri_user(uri: &[u8]) -> Option<String> {
    let u = Uri::parse(uri).ok()?;
    u.user.filter(|u| !u.is_empty()).map(text)
}

/// The job of the MESSAGE in `ctx` for network `net`, or why there is none.
fn job(ctx: &Ctx, cfg: &SmsConfig, net: &str) -> Result<SmsJob, String> {
    let msg = &ctx.msg;
    if msg.method() != Method::Message {
        return Err("not a MESSAGE request".into());
    }
    if !cfg.networks.iter().any(|(n, _)| n == net) {
        return Err(format!("unknown network {net}"));
    }
    if cfg.modem_for(net).is_none() {
        return Err(format!("no modem is linked to network {net}"));
    }
    let body = msg.body();
    if body.is_empty() {
        return Err("the MESSAGE has no body".into());
    }
    let ctype = msg
        .header_value(HeaderId::ContentType)
        .map(|v| text(v).to_ascii_lowercase())
        .ok_or_else(|| "no Content-Type header".to_string())?;
    let mime = ctype.split(';').next().unwrap_or("").trim().to_string();
    if mime != "text/plain" && mime != "message/cpim" {
        return Err(format!("invalid content type {mime} for an SMS"));
    }
    let body = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8 text".to_string())?
        .to_string();
    let mut user = None;
    if ctx.uri_rewritten() {
        user = uri_user(ctx.uri());
    }
    if user.is_none() {
        user = uri_user(ctx.original_uri());
    }
    if user.is_none() {
        user = msg.to().ok().and_then(|t| uri_user(t.uri_raw));
    }
    let user = user.ok_or("no user in the request URI or To")?;
    let b = user.as_bytes();
    if b.len() < 2 || b[0] != b'+' || !(b'1'..=b'9').contains(&b[1]) {
        return Err(format!(
            "user tel number [{user}] does not respect international format"
        ));
    }
    let number: String = user[1..].chars().take_while(char::is_ascii_digit).collect();
    if number.len() + 1 != user.len() || number.len() > 20 {
        return Err(format!("user tel number [{user}] is not a number"));
    }
    let from = msg
        .from()
        .map_err(|_| "no usable From header".to_string())?;
    let from = text(from.uri_raw);
    let sms_text = format!("{HDR_BEFORE_ADDR}{from}{HDR_AFTER_ADDR}{body}{FOOTER}");
    let (parts, truncated) = if cfg.concat_udh {
        split_concat(&sms_text, cfg.max_sms_parts)
    } else {
        split_text(&sms_text, cfg.max_sms_parts)
    };
    Ok(SmsJob {
        net: net.to_string(),
        to: number,
        from,
        concat: cfg.concat_udh && parts.len() > 1,
        parts,
        truncated,
        body,
    })
}

fn queue(ctx: &mut Ctx, env: &mut dyn Env, net: Option<String>) -> ActionResult {
    let cfg = crate::script::config(&*env, SmsConfig::resolve);
    let Some(net) = net.or_else(|| cfg.default_net.clone()) else {
        ser_log!(L_ERR, "ERROR: sms: no network configured");
        return ActionResult::Ret(-1);
    };
    let j = match job(ctx, &cfg, &net) {
        Ok(j) => j,
        Err(why) => {
            ser_log!(L_ERR, "ERROR: sms: {why}");
            return ActionResult::Ret(-1);
        }
    };
    let Some(services) = env.services() else {
        ser_log!(L_ERR, "ERROR: sms: no modem side in this process");
        return ActionResult::Ret(-1);
    };
    let q = services.store::<SmsQueue>();
    let (to, parts) = (j.to.clone(), j.parts.len());
    match q.tx.try_send(j) {
        Ok(()) => {
            ser_log!(L_DBG, "sms: SMS to +{to} queued on {net} ({parts} parts)");
            ActionResult::Ret(1)
        }
        Err(_) => {
            ser_log!(
                L_ERR,
                "ERROR: sms: the queue to the modems is full ({MAX_QUEUED}): SMS to +{to} refused"
            );
            ActionResult::Ret(-1)
        }
    }
}

fn sms_send_msg_to_net(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let net = match args.first() {
        Some(Arg::Str(s)) => s.to_string(),
        _ => String::new(),
    };
    queue(ctx, env, Some(net))
}

fn sms_send_msg(ctx: &mut Ctx, env: &mut dyn Env, _args: &[Arg]) -> ActionResult {
    queue(ctx, env, None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cost(p: &str) -> usize {
        p.chars().map(septets).sum()
    }

    #[test]
    fn short_text_is_one_part() {
        let (parts, lost) = split_text("hello", 4);
        assert_eq!(parts, vec!["hello".to_string()]);
        assert!(lost.is_none());
    }

    #[test]
    fn long_text_gets_part_markers_at_word_edges() {
        let text: String = (0..60).map(|i| format!("w{i} ")).collect::<String>() + FOOTER;
        let (parts, lost) = split_text(&text, 4);
        assert!(lost.is_none());
        assert_eq!(parts.len(), 2);
        assert!(parts[0].ends_with("(1/2)") && parts[1].starts_with("(2/2)"));
        assert!(parts.iter().all(|p| cost(p) <= MAX_SMS_LENGTH));
        // Cut after a space, never inside a word.
        assert!(parts[0].trim_end_matches("(1/2)").ends_with(' '));
        let joined =
            parts[0].trim_end_matches("(1/2)").to_string() + parts[1].trim_start_matches("(2/2)");
        assert_eq!(joined, text);
    }

    #[test]
    fn concatenated_parts_fit_and_join() {
        let text: String = (0..60).map(|i| format!("w{i} ")).collect();
        let (parts, lost) = split_concat(&text, 4);
        assert!(lost.is_none());
        assert!(parts.len() > 1);
        assert!(parts
            .iter()
            .all(|p| p.chars().map(septets).sum::<usize>() <= UDH_PART_SEPTETS));
        assert_eq!(parts.concat(), text);
        let (parts, lost) = split_concat(&format!("{text}{FOOTER}"), 1);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].ends_with(&format!("{TRUNCATED}{FOOTER}")));
        assert!(parts[0].chars().map(septets).sum::<usize>() <= UDH_PART_SEPTETS);
        let lost = lost.unwrap();
        assert!(text.ends_with(&lost), "{lost:?}");
        assert_eq!(split_concat("", 3), (vec![], None));
    }

    #[test]
    fn too_long_is_truncated_and_the_rest_reported() {
        let text: String = (0..200).map(|i| format!("w{i} ")).collect::<String>() + FOOTER;
        let (parts, lost) = split_text(&text, 2);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].ends_with(&format!("{TRUNCATED}{FOOTER}")));
        assert!(parts.iter().all(|p| cost(p) <= MAX_SMS_LENGTH));
        let lost = lost.unwrap();
        assert!(lost.ends_with("w199 "), "{lost:?}");
    }

    #[test]
    fn the_parameters_parse() {
        let g =
            groups("Nokia [d=/dev/ttyS0;b=9600;p=1234;m=new;c=+49171;r=3;l=2]; Sie[d=/dev/ttyS1]")
                .unwrap();
        assert_eq!(g.len(), 2);
        let m = parse_modem(&g[0].0, &g[0].1).unwrap();
        assert_eq!(m.device, "/dev/ttyS0");
        assert_eq!(m.pin.as_deref(), Some("1234"));
        assert_eq!(m.smsc.as_deref(), Some("+49171"));
        assert_eq!(
            (m.baud, m.retry, m.looping, m.mode),
            (9600, 3, 2, ModemMode::New)
        );
        assert!(parse_modem("x", &["b=1234".into()]).is_err());
        assert!(parse_modem("x", &["m=ascii".into()]).is_err()); // no device
        assert!(groups("Nokia d=/dev/ttyS0").is_err());
        assert!(groups("Nokia [d=/dev/ttyS0").is_err());
    }
}
