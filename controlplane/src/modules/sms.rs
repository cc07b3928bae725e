//! The modem half of module `sms` (see `dataplane::modules::sms`): one thread per configured
//! modem talks AT commands over its serial line (raw termios at the configured baud rate).
//!
//! Start-up (and after any failure): `AT`, `ATE0`, `AT+CPIN?` (`AT+CPIN=<pin>` when the SIM asks),
//! `AT+CMGF=0|1`, `AT+CSCA="<smsc>"` when one is given. Sending: `AT+CMGS=<len>` then the
//! SMS-SUBMIT PDU (GSM 7-bit, SMSC field in `new` mode, international TP-DA) or, in text mode,
//! `AT+CMGS="+number"` then the text, ended by Ctrl-Z; the modem must answer `+CMGS`/`OK`.
//! The parts of a concatenated SMS (`concat_udh`) carry a user data header in PDU mode (one
//! reference per SMS, kept when another modem takes over).
//! Receiving: every `l` seconds, and at once on `+CMTI`, `AT+CMGL=4` (`AT+CMGL="ALL"` in text
//! mode) lists the stored SMS; each SMS-DELIVER is decoded, turned into a MESSAGE sent through tm
//! to the `sip:` address its text names, and deleted with `AT+CMGD=<index>`. The parts of a
//! concatenated SMS (user data header, 8- or 16-bit reference) are held (in memory, 32 sets at
//! most, an hour each) until all are there, then forwarded as one MESSAGE in part order.
//!
//! Every answer is awaited at most a few seconds. A modem that does not answer, answers garbage
//! or reports `NO CARRIER` is closed, logged and re-initialised with back-off (0.5 s doubling to
//! 30 s); the SMS being sent is tried again (`r` attempts in all) and, when every attempt failed,
//! the SIP sender is told by MESSAGE (SER's "modem temporary indisponibility" notice). A refused
//! number (`+CMS ERROR`) is reported to the sender at once.
//!
//! Several modems may serve one network (`links` naming it for each, as in SER, where every
//! modem process took SMS from the queues of its networks): the dispatcher gives each SMS to the
//! next modem of its network in turn (round-robin), modems that are up first; a modem whose
//! sending fails (`NO CARRIER`, silence, garbage) or whose initialisation fails is marked down
//! and hands its SMS, with the parts already sent and the attempts made, to another modem of
//! that network that is up; with none, it keeps it and tries again itself as before.
//!
//! With `sms_report_type`, SMS are sent asking for a status report; the reference `+CMGS`
//! answers is remembered (an hour at most) and the SMS-STATUS-REPORT read from the modem's
//! memory decides: a permanent error is told to the sender, a temporary status ("stored by the
//! SMSC") once with SER's note, and a later delivery of such an SMS with SER's "finally
//! delivered" message. With `sms_report_type` 2 the report comes as an unsolicited `+CDS`
//! instead (`AT+CNMI=1,1,0,1,0` at initialisation), decided the same way; a `+CDS` that does
//! not decode is logged and ignored.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dataplane::modules::sms::{
    ModemCfg, ModemMode, SmsConfig, SmsJob, SmsQueue, HDR_AFTER_ADDR, HDR_BEFORE_ADDR,
};
use dataplane::proxy::server::Shared;
use dataplane::ser_log;
use dataplane::shard::log::{L_DBG, L_ERR, L_NOTICE, L_WARN};
use dataplane::txn::table::{UacRequest, UacResult};

/// How long a command's final answer is awaited.
const ANSWER: Duration = Duration::from_secs(2);
/// How long the answer to a sent SMS is awaited (the network takes its time).
const SEND_ANSWER: Duration = Duration::from_secs(10);
/// First wait before re-opening a failed modem; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// SMS waiting for one modem at most.
const PER_MODEM: usize = 100;

/// How long a sent SMS waits for its status report.
const REPORT_WAIT: Duration = Duration::from_secs(3600);

const STORED_NOTE: &str = "NOTE: Your SMS received provisional confirmation 48 \"Delivery is not yet possible\". The SMS was stored on the SMSCenter for further delivery. Our gateway cannot guarantee further information regarding your SMS delivery! Your message was: ";
const OK_MSG: &str = "Your SMS was finally successfully delivered! Your message was: ";

/// Concatenated SMS being received at most, per modem, and how long one waits for its parts.
const PARTIALS: usize = 32;
const PARTIAL_WAIT: Duration = Duration::from_secs(3600);

/// The parts of a concatenated SMS received so far.
struct Partial {
    total: u8,
    texts: std::collections::BTreeMap<u8, String>,
    /// The first part (sender, time stamp).
    first: Option<Incoming>,
    at: Instant,
}

/// An SMS whose status report is awaited.
struct Tracked {
    job: SmsJob,
    text: String,
    /// A provisional report said the SMSC stored it.
    stored: bool,
    at: Instant,
}

const ERR_MODEM_TEXT: &str =
    "Due to our modem temporary indisponibility, the following message couldn't be sent : ";
const ERR_NUMBER_TEXT: &str = " is an invalid number! Please resend your SMS using a number in +(country code)(area code)(local number) format. Thanks for using our service!";
const ERR_TRUNCATE_TEXT: &str = "We are sorry, but your message exceeded our maximum allowed length. The following part of the message wasn't sent : ";

// ------------------------------------------------------------------------------ GSM 03.38

/// The GSM 7-bit default alphabet, by code.
const GSM7: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (after the escape 0x1B).
const GSM7_EXT: [(u8, char); 10] = [
    (0x0A, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// `text` as GSM 7-bit septets (unknown characters become `?`), at most 160.
pub fn gsm7_septets(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        if let Some(i) = GSM7.iter().position(|&g| g == c && c != '\u{1b}') {
            out.push(i as u8);
        } else if let Some((code, _)) = GSM7_EXT.iter().find(|(_, g)| *g == c) {
            out.extend([0x1B, *code]);
        } else {
            out.push(0x3F);
        }
    }
    out.truncate(160);
    out
}

/// Septets as text.
pub fn gsm7_text(septets: &[u8]) -> String {
    let mut out = String::new();
    let mut esc = false;
    for &s in septets {
        let s = s & 0x7F;
        if esc {
            esc = false;
            out.push(
                GSM7_EXT
                    .iter()
                    .find(|(c, _)| *c == s)
                    .map_or(' ', |(_, ch)| *ch),
            );
        } else if s == 0x1B {
            esc = true;
        } else {
            out.push(GSM7[usize::from(s)]);
        }
    }
    out
}

/// Septets packed 8 into 7 octets (GSM 03.38 §6.1.2.1.1).
pub fn pack7(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(septets.len() * 7 / 8 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &s in septets {
        acc |= u32::from(s & 0x7F) << bits;
        bits += 7;
        while bits >= 8 {
            out.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push((acc & 0xFF) as u8);
    }
    out
}

/// `n` septets unpacked from `octets`, skipping `skip` leading bits (after a user data header).
pub fn unpack7(octets: &[u8], n: usize, skip: usize) -> Vec<u8> {
    (0..n)
        .filter_map(|i| {
            let bit = skip + i * 7;
            let (byte, off) = (bit / 8, bit % 8);
            let lo = u16::from(*octets.get(byte)?);
            let hi = u16::from(octets.get(byte + 1).copied().unwrap_or(0));
            Some((((hi << 8 | lo) >> off) & 0x7F) as u8)
        })
        .collect()
}

/// Digits as swapped semi-octets (`F` pads an odd count).
fn semi_octets(digits: &str) -> String {
    let d: Vec<char> = digits.chars().collect();
    let mut out = String::new();
    for pair in d.chunks(2) {
        out.push(pair.get(1).copied().unwrap_or('F'));
        out.push(pair[0]);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The SMS-SUBMIT PDU of `text` to international number `to` (no `+`), and the length
/// `AT+CMGS` wants (octets after the SMSC field). `smsc`: `None` = no SMSC field (old mode),
/// `Some("")` = the modem's own (`00`), else that number.
/// `concat`: (reference, parts, this part) of a concatenated SMS, sent with a user data header
/// (3GPP TS 23.040 §9.2.3.24.1) before the text, which then starts on a septet boundary.
pub fn submit_pdu(
    to: &str,
    text: &str,
    smsc: Option<&str>,
    report: bool,
    concat: Option<(u8, u8, u8)>,
) -> (String, usize) {
    let mut pdu = String::new();
    match smsc.map(|s| s.trim_start_matches('+')) {
        None => {}
        Some("") => pdu.push_str("00"),
        Some(n) => {
            let so = semi_octets(n);
            pdu.push_str(&format!("{:02X}91{so}", so.len() / 2 + 1));
        }
    }
    let smsc_len = pdu.len();
    // SMS-SUBMIT, relative validity period, status report when asked; reference 0 (the modem's).
    let udhi = if concat.is_some() { 0x40 } else { 0 };
    pdu.push_str(&format!(
        "{:02X}",
        (if report { 0x31 } else { 0x11 }) | udhi
    ));
    pdu.push_str("00");
    pdu.push_str(&format!("{:02X}91{}", to.len(), semi_octets(to)));
    // PID 0, DCS 0 (GSM 7-bit), validity 4 days.
    pdu.push_str("0000AA");
    let septets = gsm7_septets(text);
    match concat {
        None => {
            pdu.push_str(&format!("{:02X}", septets.len()));
            pdu.push_str(&hex(&pack7(&septets)));
        }
        Some((r, total, seq)) => {
            // 6 header octets are 48 bits: one fill bit makes them 7 septets.
            let header = [5u8, 0, 3, r, total, seq];
            pdu.push_str(&format!("{:02X}", 7 + septets.len()));
            let mut bits: Vec<bool> = header
                .iter()
                .flat_map(|o| (0..8).map(move |k| o >> k & 1 == 1))
                .collect();
            bits.push(false);
            bits.extend(
                septets
                    .iter()
                    .flat_map(|s| (0..7).map(move |k| s >> k & 1 == 1)),
            );
            let octets: Vec<u8> = bits
                .chunks(8)
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .fold(0u8, |a, (k, &on)| a | (u8::from(on) << k))
                })
                .collect();
            pdu.push_str(&hex(&octets));
        }
    }
    let len = (pdu.len() - smsc_len) / 2;
    (pdu, len)
}

/// A received SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender's number (`+` when international) or name.
    pub sender: String,
    /// `yy/mm/dd`, `hh:mm:ss` of the SMSC time stamp.
    pub date: String,
    /// Time of day.
    pub time: String,
    /// The text.
    pub text: String,
    /// A status report (not a message).
    pub report: bool,
    /// A status report's message reference and status (TP-MR, TP-ST).
    pub status: Option<(u8, u8)>,
    /// A part of a concatenated SMS (3GPP TS 23.040 §9.2.3.24.1/.8): reference, parts in
    /// all, this part's number (from 1).
    pub concat: Option<(u16, u8, u8)>,
}

fn swapped(b: u8) -> String {
    format!("{}{}", b & 0x0F, b >> 4)
}

/// Decodes an SMS-DELIVER (or status report) PDU with its SMSC field.
pub fn decode_deliver(pdu_hex: &str) -> Result<Incoming, String> {
    let b = unhex(pdu_hex).ok_or("the PDU is not hex")?;
    let short = || "the PDU is too short".to_string();
    let smsc = usize::from(*b.first().ok_or_else(short)?);
    let mut i = 1 + smsc;
    let first = *b.get(i).ok_or_else(short)?;
    i += 1;
    let mti = first & 0x03;
    if mti == 0x02 {
        // SMS-STATUS-REPORT: reference, recipient, two time stamps, status.
        let mr = *b.get(i).ok_or_else(short)?;
        let ra_digits = usize::from(*b.get(i + 1).ok_or_else(short)?);
        let at = i + 3 + ra_digits.div_ceil(2) + 14;
        let st = *b.get(at).ok_or_else(short)?;
        return Ok(Incoming {
            sender: String::new(),
            date: String::new(),
            time: String::new(),
            text: String::new(),
            report: true,
            status: Some((mr, st)),
            concat: None,
        });
    }
    if mti != 0x00 {
        return Err(format!("not an SMS-DELIVER (type {mti})"));
    }
    let oa_digits = usize::from(*b.get(i).ok_or_else(short)?);
    let oa_type = *b.get(i + 1).ok_or_else(short)?;
    let oa_len = oa_digits.div_ceil(2);
    let oa = b.get(i + 2..i + 2 + oa_len).ok_or_else(short)?;
    i += 2 + oa_len;
    let sender = if oa_type & 0x70 == 0x50 {
        gsm7_text(&unpack7(oa, oa_digits * 4 / 7, 0))
    } else {
        let mut d: String = oa.iter().map(|&o| swapped(o)).collect();
        d.truncate(oa_digits);
        d.retain(|c| c.is_ascii_digit());
        if oa_type & 0x70 == 0x10 {
            format!("+{d}")
        } else {
            d
        }
    };
    let dcs = *b.get(i + 1).ok_or_else(short)?;
    i += 2;
    let ts = b.get(i..i + 7).ok_or_else(short)?;
    i += 7;
    let date = format!("{}/{}/{}", swapped(ts[0]), swapped(ts[1]), swapped(ts[2]));
    let time = format!("{}:{}:{}", swapped(ts[3]), swapped(ts[4]), swapped(ts[5]));
    let udl = usize::from(*b.get(i).ok_or_else(short)?);
    let ud = b.get(i + 1..).unwrap_or(&[]);
    let udh = if first & 0x40 != 0 {
        ud.first().map_or(0, |l| usize::from(*l) + 1)
    } else {
        0
    };
    let concat = concat_of(ud.get(1..udh).unwrap_or(&[]));
    let text = match dcs & 0x0C {
        0x00 => {
            let skip_septets = (udh * 8).div_ceil(7);
            let s = unpack7(ud, udl, 0);
            gsm7_text(s.get(skip_septets..).unwrap_or(&[]))
        }
        0x08 => {
            let data = ud.get(udh..udl.min(ud.len())).unwrap_or(&[]);
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from(c[0]) << 8 | u16::from(c.get(1).copied().unwrap_or(0)))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => ud
            .get(udh..udl.min(ud.len()))
            .unwrap_or(&[])
            .iter()
            .map(|&c| char::from(c))
            .collect(),
    };
    Ok(Incoming {
        sender,
        date,
        time,
        text,
        report: false,
        status: None,
        concat,
    })
}

/// The concatenation element of a user data header (its information elements), if any.
fn concat_of(mut ies: &[u8]) -> Option<(u16, u8, u8)> {
    while let [iei, len, rest @ ..] = ies {
        let (data, next) = rest.split_at_checked(usize::from(*len))?;
        match (iei, data) {
            (0x00, [r, total, seq]) => return Some((u16::from(*r), *total, *seq)),
            (0x08, [r1, r2, total, seq]) => {
                return Some((u16::from(*r1) << 8 | u16::from(*r2), *total, *seq))
            }
            _ => {}
        }
        ies = next;
    }
    None
}

// ----------------------------------------------------------------------- SMS text → SIP

fn in_sip_addr(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\t' | '(' | '[' | '<' | '>' | ']' | ')' | '?' | '!' | ';' | ',' | '\n' | '\r' | '='
    )
}

/// The SIP address a received SMS text names and the body after it (SER's body scan: the
/// gateway's own `From <addr> (...)` header when the reply kept it, else the first `sip:` word).
pub fn sip_target(text: &str) -> Option<(String, String)> {
    let lower = text.to_ascii_lowercase();
    // The reply kept our header: the address follows it; else the first `sip:` anywhere.
    let start = match text.strip_prefix(HDR_BEFORE_ADDR) {
        Some(rest) if rest.to_ascii_lowercase().starts_with("sip:") => HDR_BEFORE_ADDR.len(),
        _ => lower.find("sip:")?,
    };
    let end = text[start..]
        .find(|c: char| !in_sip_addr(c))
        .map_or(text.len(), |e| start + e);
    let addr = text[start..end].to_string();
    if addr.len() <= 4 {
        return None;
    }
    let mut rest = &text[end..];
    if let Some(r) = rest.strip_prefix(HDR_AFTER_ADDR) {
        rest = r;
    }
    let body = rest.trim_start_matches(['\r', '\n']).to_string();
    (!body.is_empty()).then_some((addr, body))
}

// ----------------------------------------------------------------------------- the serial line

/// Why a modem exchange failed.
#[derive(Debug)]
enum Fail {
    /// No (final) answer in time.
    Timeout,
    /// An answer that is not one the command has.
    Garbage(String),
    /// `ERROR`, `+CMS ERROR`, `+CME ERROR`: the modem refused this command.
    Refused(String),
    /// `NO CARRIER`, or the line itself failed.
    Line(String),
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Timeout => write!(f, "no answer in time"),
            Fail::Garbage(s) => write!(f, "unexpected answer {s:?}"),
            Fail::Refused(s) => write!(f, "refused: {s}"),
            Fail::Line(s) => write!(f, "{s}"),
        }
    }
}

struct Line {
    file: std::fs::File,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// `+CMTI` seen: an SMS arrived.
    cmti: bool,
    /// A `+CDS:` line was read: the next line is its status report PDU.
    cds_next: bool,
    /// Status report PDUs of `+CDS` not handled yet (a few at most).
    cds: Vec<String>,
}

fn open_line(device: &str, baud: u32) -> Result<Line, String> {
    use rustix::fs::{Mode, OFlags};
    use rustix::termios::{self, OptionalActions, SpecialCodeIndex};
    let fd: OwnedFd = rustix::fs::open(
        device,
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("{device}: {e}"))?;
    let mut t = termios::tcgetattr(fd.as_fd()).map_err(|e| format!("{device}: tcgetattr: {e}"))?;
    t.make_raw();
    t.set_speed(baud)
        .map_err(|e| format!("{device}: baud rate {baud}: {e}"))?;
    // A read returns after 0.1 s without data, so every wait here is bounded.
    t.special_codes[SpecialCodeIndex::VMIN] = 0;
    t.special_codes[SpecialCodeIndex::VTIME] = 1;
    termios::tcsetattr(fd.as_fd(), OptionalActions::Now, &t)
        .map_err(|e| format!("{device}: tcsetattr: {e}"))?;
    let _ = termios::tcflush(fd.as_fd(), termios::QueueSelector::IOFlush);
    Ok(Line {
        file: std::fs::File::from(fd),
        buf: Vec::new(),
        cmti: false,
        cds_next: false,
        cds: Vec::new(),
    })
}

/// The lines of a final answer.
fn is_final(line: &str) -> bool {
    line == "OK"
        || line == "ERROR"
        || line == "NO CARRIER"
        || line.starts_with("+CMS ERROR")
        || line.starts_with("+CME ERROR")
}

impl Line {
    fn fill(&mut self) -> Result<usize, Fail> {
        let mut chunk = [0u8; 512];
        match self.file.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                if self.buf.len() > 64 * 1024 {
                    // A line that floods us: keep the end only.
                    let cut = self.buf.len() - 4096;
                    self.buf.drain(..cut);
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(0),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                Ok(0)
            }
            Err(e) => Err(Fail::Line(format!("read: {e}"))),
        }
    }

    fn send(&mut self, data: &[u8]) -> Result<(), Fail> {
        self.file
            .write_all(data)
            .and_then(|()| self.file.flush())
            .map_err(|e| Fail::Line(format!("write: {e}")))
    }

    /// Takes the complete lines read so far (unsolicited `+CMTI` noted and dropped).
    fn lines(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(p) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') {
            let raw: Vec<u8> = self.buf.drain(..=p).collect();
            let l = String::from_utf8_lossy(&raw).trim().to_string();
            if l.is_empty() {
                continue;
            }
            if l.starts_with("+CMTI:") {
                self.cmti = true;
                continue;
            }
            if std::mem::take(&mut self.cds_next) && l.bytes().all(|b| b.is_ascii_hexdigit()) {
                if self.cds.len() < 64 {
                    self.cds.push(l);
                }
                continue;
            }
            // (a `+CDS:` whose PDU line was lost: this line is read as what it is)
            if l.starts_with("+CDS:") {
                self.cds_next = true;
                continue;
            }
            out.push(l);
        }
        out
    }

    /// Drops what was read before a command (a `+CMTI` in it is still noted).
    fn discard(&mut self) {
        let _ = self.lines();
        self.buf.clear();
    }

    /// Sends `cmd` and collects the answer lines up to a final one.
    fn command(&mut self, cmd: &str, wait: Duration) -> Result<Vec<String>, Fail> {
        self.discard();
        self.send(format!("{cmd}\r").as_bytes())?;
        self.answer(wait)
    }

    fn answer(&mut self, wait: Duration) -> Result<Vec<String>, Fail> {
        let until = Instant::now() + wait;
        let mut got = Vec::new();
        while Instant::now() < until {
            self.fill()?;
            for l in self.lines() {
                if is_final(&l) {
                    return match l.as_str() {
                        "OK" => Ok(got),
                        "NO CARRIER" => Err(Fail::Line("NO CARRIER".into())),
                        _ => Err(Fail::Refused(l)),
                    };
                }
                got.push(l);
                if got.len() > 1000 {
                    return Err(Fail::Garbage("an endless answer".into()));
                }
            }
        }
        Err(if got.is_empty() {
            Fail::Timeout
        } else {
            Fail::Garbage(got.join(" | "))
        })
    }

    /// Sends `cmd`, waits for the `>` prompt, then sends `data` and Ctrl-Z.
    fn prompt_then(&mut self, cmd: &str, data: &str, wait: Duration) -> Result<Vec<String>, Fail> {
        self.discard();
        self.send(format!("{cmd}\r").as_bytes())?;
        let until = Instant::now() + ANSWER;
        loop {
            if Instant::now() >= until {
                return Err(Fail::Timeout);
            }
            self.fill()?;
            if let Some(p) = self.buf.iter().position(|&b| b == b'>') {
                self.buf.drain(..=p);
                break;
            }
            // Any line before the prompt is the end of this command.
            if let Some(l) = self.lines().into_iter().next() {
                return Err(match l.as_str() {
                    "NO CARRIER" => Fail::Line(l),
                    _ if is_final(&l) => Fail::Refused(l),
                    _ => Fail::Garbage(l),
                });
            }
        }
        self.send(format!("{data}\u{1a}").as_bytes())?;
        self.answer(wait)
    }
}

// ------------------------------------------------------------------------------- the worker

/// One modem as the dispatcher and its fellow modems see it.
struct Slot {
    nets: Vec<String>,
    tx: crossbeam_channel::Sender<Pending>,
    /// Initialised and not failed since (a modem that is down is tried last).
    up: std::sync::atomic::AtomicBool,
    name: String,
}

/// Every modem, and the round-robin counter over them.
#[derive(Default)]
struct Slots {
    all: Vec<Slot>,
    next: std::sync::atomic::AtomicUsize,
}

impl Slots {
    /// The modems serving `net`, in round-robin order, those that are up first; `except` (a
    /// modem handing its SMS over) left out, and then only modems that are up.
    fn order(&self, net: &str, except: Option<usize>) -> Vec<usize> {
        use std::sync::atomic::Ordering::Relaxed;
        let serving: Vec<usize> = (0..self.all.len())
            .filter(|&i| self.all[i].nets.iter().any(|n| n == net))
            .collect();
        if serving.is_empty() {
            return serving;
        }
        let start = self.next.fetch_add(1, Relaxed) % serving.len();
        let mut v: Vec<usize> = serving[start..]
            .iter()
            .chain(&serving[..start])
            .copied()
            .filter(|&i| Some(i) != except)
            .collect();
        v.sort_by_key(|&i| !self.all[i].up.load(Relaxed));
        if except.is_some() {
            v.retain(|&i| self.all[i].up.load(Relaxed));
        }
        v
    }

    /// Queues `p` at the first modem of [`Slots::order`] that takes it; gives it back when
    /// none does.
    fn route(&self, p: Pending, except: Option<usize>) -> Result<usize, Box<Pending>> {
        let mut p = p;
        for i in self.order(&p.job.net, except) {
            match self.all[i].tx.try_send(p) {
                Ok(()) => return Ok(i),
                Err(e) => p = e.into_inner(),
            }
        }
        Err(Box::new(p))
    }
}

/// What one modem thread needs.
struct Modem {
    /// Its place in [`Slots`].
    slot: usize,
    slots: Arc<std::sync::OnceLock<Slots>>,
    cfg: ModemCfg,
    report: bool,
    /// Status reports come as `+CDS` (`sms_report_type` 2).
    cds: bool,
    /// SMS sent with a status report asked for, by message reference (SER's report queue).
    sent: std::sync::Mutex<std::collections::HashMap<u8, Tracked>>,
    /// The next concatenated SMS reference.
    next_ref: std::sync::atomic::AtomicU8,
    /// Concatenated SMS being received, by (sender, reference).
    partial: std::sync::Mutex<std::collections::HashMap<(String, u16), Partial>>,
    shared: Weak<Shared>,
    domain: String,
    use_contact: bool,
}

impl Modem {
    fn init(&self) -> Result<Line, String> {
        let mut l = open_line(&self.cfg.device, self.cfg.baud)?;
        let step =
            |l: &mut Line, cmd: &str| l.command(cmd, ANSWER).map_err(|e| format!("{cmd}: {e}"));
        // The first AT may meet a modem still echoing or half awake: one more try.
        if l.command("AT", ANSWER).is_err() {
            step(&mut l, "AT")?;
        }
        step(&mut l, "ATE0")?;
        let pin = step(&mut l, "AT+CPIN?")?;
        if pin.iter().any(|a| a.contains("SIM PIN")) {
            let Some(p) = &self.cfg.pin else {
                return Err("the SIM wants a PIN and none is configured (p=)".into());
            };
            step(&mut l, &format!("AT+CPIN={p}"))?;
        } else if !pin.iter().any(|a| a.contains("READY")) {
            return Err(format!("AT+CPIN?: unexpected answer {pin:?}"));
        }
        let mode = if self.cfg.mode == ModemMode::Text {
            1
        } else {
            0
        };
        step(&mut l, &format!("AT+CMGF={mode}"))?;
        if let Some(c) = &self.cfg.smsc {
            step(&mut l, &format!("AT+CSCA=\"{c}\""))?;
        }
        if self.cds {
            // 3GPP TS 27.005 §3.4.1: new SMS indicated (+CMTI), status reports routed to us
            // at once (+CDS).
            step(&mut l, "AT+CNMI=1,1,0,1,0")?;
        }
        Ok(l)
    }

    fn send_sms(
        &self,
        l: &mut Line,
        to: &str,
        text: &str,
        concat: Option<(u8, u8, u8)>,
    ) -> Result<Option<u8>, Fail> {
        let ans = match self.cfg.mode {
            ModemMode::Text => l.prompt_then(&format!("AT+CMGS=\"+{to}\""), text, SEND_ANSWER)?,
            mode => {
                let smsc = match mode {
                    ModemMode::Old => None,
                    _ => Some(self.cfg.smsc.as_deref().unwrap_or("")),
                };
                let (pdu, len) = submit_pdu(to, text, smsc, self.report, concat);
                l.prompt_then(&format!("AT+CMGS={len}"), &pdu, SEND_ANSWER)?
            }
        };
        match ans.iter().find_map(|a| a.strip_prefix("+CMGS:")) {
            Some(r) => Ok(r.trim().parse::<u32>().ok().map(|r| (r % 256) as u8)),
            None => Err(Fail::Garbage(ans.join(" | "))),
        }
    }

    /// Remembers an SMS whose status report will come.
    fn track(&self, mr: Option<u8>, job: &SmsJob, text: &str) {
        let Some(mr) = mr.filter(|_| self.report) else {
            return;
        };
        if let Ok(mut m) = self.sent.lock() {
            m.retain(|_, t| t.at.elapsed() < REPORT_WAIT);
            m.insert(
                mr,
                Tracked {
                    job: job.clone(),
                    text: text.to_string(),
                    stored: false,
                    at: Instant::now(),
                },
            );
        }
    }

    /// A status report: the sender hears of a failure, of an SMS the SMSC only stored, and of
    /// its delivery after that (SER's rules; 3GPP TS 23.040 §9.2.3.15 status classes).
    fn status_report(&self, status: Option<(u8, u8)>) {
        let Some((mr, st)) = status else {
            return;
        };
        let Ok(mut m) = self.sent.lock() else {
            return;
        };
        let Some(t) = m.get_mut(&mr) else {
            ser_log!(
                L_DBG,
                "sms: modem {}: status report for unknown SMS {mr}",
                self.cfg.name
            );
            return;
        };
        match st {
            0x00..=0x1F => {
                if t.stored {
                    let (job, text) = (t.job.clone(), t.text.clone());
                    notify(self, &job, format!("{OK_MSG}{text}"));
                }
                m.remove(&mr);
            }
            0x20..=0x3F => {
                if !t.stored {
                    t.stored = true;
                    let (job, text) = (t.job.clone(), t.text.clone());
                    notify(self, &job, format!("{STORED_NOTE}{text}"));
                }
            }
            _ => {
                let (job, text) = (t.job.clone(), t.text.clone());
                m.remove(&mr);
                ser_log!(
                    L_NOTICE,
                    "sms: modem {}: SMS {mr} to +{} failed (status {st:#04x})",
                    self.cfg.name,
                    job.to
                );
                notify(
                    self,
                    &job,
                    format!(
                        "Your SMS could not be delivered (status {st}). Your message was: {text}"
                    ),
                );
            }
        }
    }

    /// Reads, forwards and deletes the stored SMS.
    fn poll(&self, l: &mut Line) -> Result<(), Fail> {
        l.cmti = false;
        let list = if self.cfg.mode == ModemMode::Text {
            "AT+CMGL=\"ALL\""
        } else {
            "AT+CMGL=4"
        };
        let ans = l.command(list, ANSWER)?;
        let mut it = ans.iter().peekable();
        let mut read = Vec::new();
        while let Some(head) = it.next() {
            let Some(rest) = head.strip_prefix("+CMGL:") else {
                return Err(Fail::Garbage(head.clone()));
            };
            let fields: Vec<&str> = rest.split(',').map(str::trim).collect();
            let Some(idx) = fields.first().and_then(|i| i.parse::<u32>().ok()) else {
                return Err(Fail::Garbage(head.clone()));
            };
            let Some(body) = it.next() else {
                return Err(Fail::Garbage(head.clone()));
            };
            let sms = if self.cfg.mode == ModemMode::Text {
                let unq = |s: Option<&&str>| s.map(|s| s.trim_matches('"').to_string());
                let stamp = unq(fields.get(4)).unwrap_or_default();
                let time = unq(fields.get(5)).unwrap_or_default();
                Ok(Incoming {
                    sender: unq(fields.get(2)).unwrap_or_default(),
                    date: stamp,
                    time: time.chars().take(8).collect(),
                    text: body.clone(),
                    report: false,
                    status: None,
                    concat: None,
                })
            } else {
                decode_deliver(body)
            };
            match sms {
                Ok(s) if s.report => self.status_report(s.status),
                Ok(s) => {
                    if let Some(whole) = self.reassemble(s) {
                        self.forward(&whole);
                    }
                }
                Err(e) => ser_log!(
                    L_WARN,
                    "sms: modem {}: SMS {idx} cannot be decoded ({e}): deleted",
                    self.cfg.name
                ),
            }
            read.push(idx);
        }
        for idx in read {
            l.command(&format!("AT+CMGD={idx}"), ANSWER)?;
        }
        Ok(())
    }

    /// A part of a concatenated SMS is kept until every part is there (bounded: [`PARTIALS`]
    /// sets, each at most [`PARTIAL_WAIT`]); then, or for an SMS of one part, the whole SMS.
    fn reassemble(&self, s: Incoming) -> Option<Incoming> {
        let Some((r, total, seq)) = s.concat.filter(|&(_, t, q)| t > 1 && q >= 1 && q <= t) else {
            return Some(s);
        };
        let Ok(mut parts) = self.partial.lock() else {
            return Some(s);
        };
        parts.retain(|(from, r), p| {
            let keep = p.at.elapsed() < PARTIAL_WAIT;
            if !keep {
                ser_log!(
                    L_WARN,
                    "sms: modem {}: concatenated SMS {r} from {from} incomplete ({} of {} parts) after {} s: dropped",
                    self.cfg.name,
                    p.texts.len(),
                    p.total,
                    PARTIAL_WAIT.as_secs()
                );
            }
            keep
        });
        let key = (s.sender.clone(), r);
        if !parts.contains_key(&key) && parts.len() >= PARTIALS {
            ser_log!(
                L_WARN,
                "sms: modem {}: {PARTIALS} concatenated SMS incomplete already: part {seq}/{total} from {} forwarded alone",
                self.cfg.name,
                s.sender
            );
            return Some(s);
        }
        let p = parts.entry(key.clone()).or_insert_with(|| Partial {
            total,
            texts: Default::default(),
            first: None,
            at: Instant::now(),
        });
        if seq == 1 || p.first.is_none() {
            p.first = Some(s.clone());
        }
        p.texts.insert(seq, s.text);
        if p.texts.len() < usize::from(p.total) {
            return None;
        }
        let p = parts.remove(&key)?;
        let mut whole = p.first?;
        whole.text = p.texts.into_values().collect();
        whole.concat = None;
        Some(whole)
    }

    /// A received SMS as a MESSAGE to the address it names.
    fn forward(&self, s: &Incoming) {
        let Some((to, body)) = sip_target(&s.text) else {
            ser_log!(
                L_WARN,
                "sms: modem {}: SMS from {} names no sip: address: dropped",
                self.cfg.name,
                s.sender
            );
            return;
        };
        let body = if s.date.is_empty() {
            body
        } else {
            format!("{body}\r\n({},{})", s.date, s.time)
        };
        let user = s.sender.trim_start_matches('+');
        send_message(
            &self.shared,
            &to,
            user,
            &self.domain,
            self.use_contact,
            body,
        );
    }
}

/// A MESSAGE from `sip:+<user>@<domain>` to `to` (through tm, straight to its host, as SER did).
fn send_message(
    shared: &Weak<Shared>,
    to: &str,
    user: &str,
    domain: &str,
    use_contact: bool,
    body: String,
) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let clean = |s: &str| s.replace(['\r', '\n', '<', '>'], "");
    let (to, user) = (clean(to), clean(user));
    let mut headers =
        format!("From: <sip:+{user}@{domain}>\r\nTo: <{to}>\r\nContent-Type: text/plain\r\n");
    if use_contact {
        headers.push_str(&format!("Contact: <sip:+{user}@{domain}>\r\n"));
    }
    let what = to.clone();
    let req = UacRequest {
        method: "MESSAGE".into(),
        ruri: to,
        headers,
        body: body.into_bytes(),
        next_hop: None,
        done: Box::new(move |r: UacResult| {
            if !(200..300).contains(&r.code) {
                ser_log!(
                    L_NOTICE,
                    "sms: the MESSAGE to {what} was not delivered ({} {})",
                    r.code,
                    r.reason
                );
            }
        }),
    };
    if shared.tm.uac(req).is_err() {
        ser_log!(L_ERR, "ERROR: sms: no shard took a MESSAGE made of an SMS");
    }
}

/// Tells the SIP sender of `job` about `text` (SER's `send_error`).
fn notify(m: &Modem, job: &SmsJob, text: String) {
    send_message(
        &m.shared,
        &job.from,
        &job.to,
        &m.domain,
        m.use_contact,
        text,
    );
}

/// An SMS that waited this long for a working modem is given up (the sender is told).
const PENDING_MAX: Duration = Duration::from_secs(120);

/// An SMS being sent: the job, the next part, send attempts made, when it was taken.
struct Pending {
    job: SmsJob,
    part: usize,
    tries: u32,
    since: Instant,
    /// The reference of a concatenated SMS, once its first part was tried (kept when another
    /// modem takes over).
    concat_ref: Option<u8>,
}

impl Pending {
    fn new(job: SmsJob) -> Pending {
        Pending {
            job,
            part: 0,
            tries: 0,
            since: Instant::now(),
            concat_ref: None,
        }
    }
}

impl Modem {
    fn set_up(&self, up: bool) {
        if let Some(s) = self.slots.get().and_then(|s| s.all.get(self.slot)) {
            s.up.store(up, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Failover: hands `p` to another modem of its network that is up; gives it back when
    /// there is none (or none has room).
    fn hand_over(&self, p: Pending) -> Option<Pending> {
        let Some(slots) = self.slots.get() else {
            return Some(p);
        };
        match slots.route(p, Some(self.slot)) {
            Ok(i) => {
                ser_log!(
                    L_NOTICE,
                    "sms: modem {} is down: its SMS goes to modem {}",
                    self.cfg.name,
                    slots.all[i].name
                );
                None
            }
            Err(p) => Some(*p),
        }
    }
}

fn run_modem(m: Modem, jobs: crossbeam_channel::Receiver<Pending>) {
    let mut backoff = BACKOFF_MIN;
    let mut pending: Option<Pending> = None;
    'outer: loop {
        if m.shared.strong_count() == 0 {
            return;
        }
        let mut line = match m.init() {
            Ok(l) => {
                ser_log!(
                    L_NOTICE,
                    "sms: modem {} ({}) ready",
                    m.cfg.name,
                    m.cfg.device
                );
                backoff = BACKOFF_MIN;
                m.set_up(true);
                l
            }
            Err(e) => {
                m.set_up(false);
                pending = pending.and_then(|p| m.hand_over(p));
                ser_log!(
                    L_ERR,
                    "ERROR: sms: modem {} ({}): initialisation failed: {e}; again in {} ms",
                    m.cfg.name,
                    m.cfg.device,
                    backoff.as_millis()
                );
                // The SMS waits for the modem, but not for ever.
                if pending
                    .as_ref()
                    .is_some_and(|p| p.since.elapsed() > PENDING_MAX)
                {
                    if let Some(p) = pending.take() {
                        give_up(&m, &p.job);
                    }
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let mut next_poll = Instant::now();
        loop {
            if m.shared.strong_count() == 0 {
                return;
            }
            for pdu in std::mem::take(&mut line.cds) {
                match decode_deliver(&pdu) {
                    Ok(s) if s.report => m.status_report(s.status),
                    Ok(_) => ser_log!(
                        L_WARN,
                        "sms: modem {}: a +CDS that is no status report: ignored",
                        m.cfg.name
                    ),
                    Err(e) => ser_log!(
                        L_WARN,
                        "sms: modem {}: a +CDS report cannot be decoded ({e}): ignored",
                        m.cfg.name
                    ),
                }
            }
            if pending.is_none() {
                pending = jobs.try_recv().ok();
            }
            if let Some(mut p) = pending.take() {
                let mut refused = false;
                while p.part < p.job.parts.len() {
                    p.tries += 1;
                    let concat = (p.job.concat && p.job.parts.len() > 1).then(|| {
                        let r = *p.concat_ref.get_or_insert_with(|| {
                            m.next_ref
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        });
                        (
                            r,
                            u8::try_from(p.job.parts.len()).unwrap_or(u8::MAX),
                            u8::try_from(p.part + 1).unwrap_or(u8::MAX),
                        )
                    });
                    match m.send_sms(&mut line, &p.job.to, &p.job.parts[p.part], concat) {
                        Ok(mr) => {
                            m.track(mr, &p.job, &p.job.parts[p.part]);
                            p.part += 1;
                            p.tries = 0;
                        }
                        Err(Fail::Refused(why)) => {
                            ser_log!(
                                L_ERR,
                                "ERROR: sms: modem {}: SMS to +{} refused: {why}",
                                m.cfg.name,
                                p.job.to
                            );
                            notify(&m, &p.job, format!("{}{ERR_NUMBER_TEXT}", p.job.to));
                            refused = true;
                            break;
                        }
                        Err(e) => {
                            ser_log!(
                                L_ERR,
                                "ERROR: sms: modem {}: sending to +{} failed ({e}): re-initialising",
                                m.cfg.name,
                                p.job.to
                            );
                            m.set_up(false);
                            if p.tries >= m.cfg.retry {
                                give_up(&m, &p.job);
                            } else {
                                pending = m.hand_over(p);
                            }
                            std::thread::sleep(backoff);
                            continue 'outer;
                        }
                    }
                }
                if !refused {
                    ser_log!(
                        L_DBG,
                        "sms: modem {}: SMS to +{} sent ({} parts)",
                        m.cfg.name,
                        p.job.to,
                        p.job.parts.len()
                    );
                    if let Some(lost) = &p.job.truncated {
                        notify(&m, &p.job, format!("{ERR_TRUNCATE_TEXT}{lost}"));
                    }
                }
                continue;
            }
            if line.cmti || Instant::now() >= next_poll {
                if let Err(e) = m.poll(&mut line) {
                    ser_log!(
                        L_ERR,
                        "ERROR: sms: modem {}: reading SMS failed ({e}): re-initialising",
                        m.cfg.name
                    );
                    std::thread::sleep(backoff);
                    continue 'outer;
                }
                next_poll = Instant::now() + Duration::from_secs(m.cfg.looping);
            }
            // Wait for a job, or until the next poll; a `+CMTI` meanwhile is read below.
            let wait = next_poll
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            if let Ok(p) = jobs.recv_timeout(wait) {
                pending = Some(p);
            }
            if line.fill().is_ok() {
                let _ = line.lines();
            }
        }
    }
}

fn give_up(m: &Modem, job: &SmsJob) {
    ser_log!(
        L_ERR,
        "ERROR: sms: modem {}: SMS to +{} not sent after {} attempts: the sender is told",
        m.cfg.name,
        job.to,
        m.cfg.retry
    );
    notify(m, job, format!("{ERR_MODEM_TEXT}{}", job.body));
}

/// Starts the gateway when the running program loads `sms` with modems: one thread per modem,
/// and a dispatcher moving the shards' jobs to the modem of their network. Reloads that change
/// the modems need a restart (they are opened once).
pub fn start(shared: Weak<Shared>) -> Option<std::thread::JoinHandle<()>> {
    let s = shared.upgrade()?;
    let program = s.program.load();
    let cfg: Arc<SmsConfig> = Arc::new(program.configs.get::<SmsConfig>()?.clone());
    if cfg.modems.is_empty() {
        ser_log!(
            L_WARN,
            "sms: no modem configured: SMS are queued but never sent"
        );
        return None;
    }
    let domain = if cfg.domain.is_empty() {
        s.local
            .first()
            .map(|(a, _)| a.to_string())
            .unwrap_or_else(|| "localhost".into())
    } else {
        cfg.domain.clone()
    };
    let queue = s.services.store::<SmsQueue>();
    drop(program);
    drop(s);
    let slots: Arc<std::sync::OnceLock<Slots>> = Arc::default();
    let mut all = Vec::new();
    for mc in &cfg.modems {
        let (tx, rx) = crossbeam_channel::bounded::<Pending>(PER_MODEM);
        let m = Modem {
            slot: all.len(),
            slots: Arc::clone(&slots),
            cfg: mc.clone(),
            report: cfg.reports,
            cds: cfg.cds_reports,
            sent: Default::default(),
            partial: Default::default(),
            next_ref: Default::default(),
            shared: shared.clone(),
            domain: domain.clone(),
            use_contact: cfg.use_contact,
        };
        let name = mc.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ser-sms-{name}"))
            .spawn(move || run_modem(m, rx));
        if let Err(e) = spawned {
            ser_log!(L_ERR, "ERROR: sms: modem {name}: no thread: {e}");
            continue;
        }
        all.push(Slot {
            nets: mc.nets.clone(),
            tx,
            up: std::sync::atomic::AtomicBool::new(false),
            name: mc.name.clone(),
        });
    }
    let _ = slots.set(Slots {
        all,
        next: Default::default(),
    });
    let rx = queue.rx.clone();
    drop(queue);
    let slots_handle = Arc::clone(&slots);
    std::thread::Builder::new()
        .name("ser-sms".into())
        .spawn(move || loop {
            if shared.strong_count() == 0 {
                return;
            }
            let Ok(job) = rx.recv_timeout(Duration::from_millis(500)) else {
                continue;
            };
            let Some(slots) = slots.get() else {
                continue;
            };
            match slots.route(Pending::new(job), None) {
                Ok(_) => {}
                Err(p) => {
                    let job = p.job;
                    ser_log!(
                        L_ERR,
                        "ERROR: sms: the modem of network {} cannot take the SMS to +{}",
                        job.net,
                        job.to
                    );
                    let m = Modem {
                        slot: 0,
                        slots: Arc::clone(&slots_handle),
                        cfg: cfg.modems[0].clone(),
                        report: false,
                        cds: false,
                        sent: Default::default(),
                        partial: Default::default(),
                        next_ref: Default::default(),
                        shared: shared.clone(),
                        domain: domain.clone(),
                        use_contact: cfg.use_contact,
                    };
                    notify(&m, &job, format!("{ERR_MODEM_TEXT}{}", job.body));
                }
            }
        })
        .ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seven_bit_round_trip() {
        let s = gsm7_septets("hellohello");
        assert_eq!(hex(&pack7(&s)), "E8329BFD4697D9EC37");
        assert_eq!(gsm7_text(&unpack7(&pack7(&s), s.len(), 0)), "hellohello");
        let odd = "a@b_[€]";
        let s = gsm7_septets(odd);
        assert_eq!(gsm7_text(&unpack7(&pack7(&s), s.len(), 0)), odd);
    }

    #[test]
    fn submit_pdu_is_the_3gpp_layout() {
        let (pdu, len) = submit_pdu("46708251358", "hellohello", Some(""), false, None);
        assert_eq!(pdu, "0011000B916407281553F80000AA0AE8329BFD4697D9EC37");
        assert_eq!(len, pdu.len() / 2 - 1);
        let (pdu, _) = submit_pdu("4917", "x", Some("+491710760000"), false, None);
        assert!(pdu.starts_with("0791947101670000"), "{pdu}");
        let (pdu, _) = submit_pdu("4917", "x", None, false, None);
        assert!(pdu.starts_with("1100"), "{pdu}");
    }

    #[test]
    fn concatenation_headers_are_read() {
        assert_eq!(concat_of(&[0, 3, 0x42, 2, 1]), Some((0x42, 2, 1)));
        assert_eq!(concat_of(&[0x08, 4, 1, 2, 3, 1]), Some((0x0102, 3, 1)));
        // Another element first (application port addressing), then the concatenation.
        assert_eq!(
            concat_of(&[0x05, 4, 1, 2, 3, 4, 0, 3, 9, 2, 2]),
            Some((9, 2, 2))
        );
        // Truncated or absent: none, never a panic.
        assert_eq!(concat_of(&[0, 9, 1]), None);
        assert_eq!(concat_of(&[0]), None);
        assert_eq!(concat_of(&[]), None);
    }

    #[test]
    fn deliver_pdu_decodes() {
        // SMSC +27381000015, from +27838890231, "Hellohello" (a published example).
        let sms = decode_deliver(
            "07917283010010F5040BC87238880900F10000993092516195800AE8329BFD4697D9EC37",
        )
        .unwrap();
        assert_eq!(sms.sender, "27838890001");
        assert_eq!(sms.text, "hellohello");
        assert_eq!(sms.date, "99/03/29");
        assert!(decode_deliver("07").is_err());
        // SMS-STATUS-REPORT: reference 7, recipient +4917, status 0x41.
        let r = decode_deliver("0006070491947162213001020300622130010203004100").unwrap();
        assert!(r.report);
        assert_eq!(r.status, Some((7, 0x41)));
        assert!(decode_deliver("zz").is_err());
    }

    #[test]
    fn the_sip_address_is_found() {
        let t = format!("{HDR_BEFORE_ADDR}sip:bob@h.org{HDR_AFTER_ADDR}hi there");
        assert_eq!(
            sip_target(&t),
            Some(("sip:bob@h.org".into(), "hi there".into()))
        );
        assert_eq!(
            sip_target("to sip:ann@x.org: yes"),
            Some(("sip:ann@x.org:".into(), " yes".into()))
        );
        assert_eq!(sip_target("no address"), None);
        assert_eq!(
            sip_target("From me: sip:c@d.org ok"),
            Some(("sip:c@d.org".into(), " ok".into()))
        );
    }
}
