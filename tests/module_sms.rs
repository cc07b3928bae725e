//! Module `sms` end to end: the real `ser` running tests/data/scripts/sms.cfg with its modem on
//! a pseudo-terminal, where a thread of this test plays a GSM modem (the AT command set the
//! module uses: AT, ATE0, AT+CPIN?, AT+CMGF, AT+CSCA, AT+CMGS with its `>` prompt and Ctrl-Z,
//! AT+CMGL, AT+CMGD, unsolicited +CMTI), records every SMS sent and decodes its PDU. A UDP
//! socket of the test is the SIP user agent: MESSAGE -> 202 -> SMS (PDU and text mode) with the
//! right number and text, a long message in `(i/n)` parts, an SMS injected with +CMTI -> MESSAGE at the UA, and a
//! modem that stops answering, answers garbage or reports NO CARRIER is re-initialised and the
//! SMS still goes out (or the sender is told).
#![allow(clippy::unwrap_used)]

#[path = "support/net.rs"]
mod net;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net::*;

/// How the simulated modem misbehaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// Reads everything, answers nothing.
    Silent,
    /// Answers every command with noise.
    Garbage,
    /// Answers AT+CMGS with NO CARRIER.
    NoCarrier,
}

#[derive(Default)]
struct State {
    /// PDUs of AT+CMGS.
    sent: Vec<String>,
    /// Stored SMS (index, DELIVER PDU).
    inbox: Vec<(u32, String)>,
    next_idx: u32,
    /// Every command line seen.
    commands: Vec<String>,
    /// Pending unsolicited output.
    unsolicited: Vec<String>,
    fault: Option<Fault>,
    /// `AT+CNMI=...,1,...` (ds 1): status reports go out as `+CDS` instead of being stored.
    cds: bool,
}

struct Modem {
    state: Arc<Mutex<State>>,
    path: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    _slave: OwnedFd,
}

impl Drop for Modem {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_all(fd: &OwnedFd, data: &[u8]) {
    let mut off = 0;
    let end = Instant::now() + Duration::from_secs(2);
    while off < data.len() && Instant::now() < end {
        match rustix::io::write(fd, &data[off..]) {
            Ok(n) if n > 0 => off += n,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

impl Modem {
    fn start() -> Modem {
        use rustix::fs::{Mode, OFlags};
        use rustix::pty::OpenptFlags;
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
                .unwrap();
        rustix::pty::grantpt(&master).unwrap();
        rustix::pty::unlockpt(&master).unwrap();
        let path = rustix::pty::ptsname(&master, Vec::new())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Held open so the master never sees a hang-up while ser re-opens the line.
        let slave = rustix::fs::open(
            path.as_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        rustix::fs::fcntl_setfl(&master, OFlags::NONBLOCK | OFlags::RDWR).unwrap();
        let state = Arc::new(Mutex::new(State {
            next_idx: 1,
            fault: Some(Fault::None),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || serve(master, &state, &stop))
        };
        Modem {
            state,
            path,
            stop,
            thread: Some(thread),
            _slave: slave,
        }
    }

    fn fault(&self, f: Fault) {
        self.state.lock().unwrap().fault = Some(f);
    }

    /// Stores an SMS and announces it with +CMTI.
    fn inject(&self, pdu: String) {
        let mut s = self.state.lock().unwrap();
        let i = s.next_idx;
        s.next_idx += 1;
        s.inbox.push((i, pdu));
        s.unsolicited.push(format!("\r\n+CMTI: \"SM\",{i}\r\n"));
    }

    fn sent(&self) -> Vec<String> {
        self.state.lock().unwrap().sent.clone()
    }

    fn count(&self, prefix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.commands.iter().filter(|c| c.starts_with(prefix)).count()
    }

    /// Waits (bounded) until `n` SMS were sent.
    fn wait_sent(&self, n: usize, wait: Duration) -> Vec<String> {
        let end = Instant::now() + wait;
        while Instant::now() < end {
            let s = self.sent();
            if s.len() >= n {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.sent()
    }
}

/// The modem's side of the line: one command per CR; after `AT+CMGS=` the PDU up to Ctrl-Z.
fn serve(master: OwnedFd, state: &Mutex<State>, stop: &AtomicBool) {
    let fd = &master;
    let mut buf: Vec<u8> = Vec::new();
    let mut in_pdu = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let pending: Vec<String> = std::mem::take(&mut state.lock().unwrap().unsolicited);
        for u in pending {
            write_all(fd, u.as_bytes());
        }
        let mut chunk = [0u8; 1024];
        let n = match rustix::io::read(fd, &mut chunk) {
            Ok(n) if n > 0 => n,
            _ => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let fault = state.lock().unwrap().fault.unwrap_or(Fault::None);
            if in_pdu {
                let Some(z) = buf.iter().position(|&b| b == 0x1a) else {
                    break;
                };
                let pdu = String::from_utf8_lossy(&buf[..z]).trim().to_string();
                buf.drain(..=z);
                in_pdu = false;
                let report = status_report_for(&pdu);
                let mut s = state.lock().unwrap();
                s.sent.push(pdu);
                let r = s.sent.len();
                if let (Some(st), true) = (report, s.cds) {
                    // The network's answer, handed over at once (+CDS: TPDU length, PDU).
                    let pdu = format!("0006{:02X}04919471{TS}{TS}{st}", r % 256);
                    s.unsolicited
                        .push(format!("\r\n+CDS: {}\r\n{pdu}\r\n", pdu.len() / 2 - 1));
                } else if let Some(st) = report {
                    // The network's answer, stored like a received SMS (+CMTI).
                    let i = s.next_idx;
                    s.next_idx += 1;
                    s.inbox
                        .push((i, format!("0006{:02X}04919471{TS}{TS}{st}", r % 256)));
                    s.unsolicited.push(format!("\r\n+CMTI: \"SM\",{i}\r\n"));
                }
                drop(s);
                write_all(fd, format!("\r\n+CMGS: {r}\r\n\r\nOK\r\n").as_bytes());
                continue;
            }
            let Some(cr) = buf.iter().position(|&b| b == b'\r') else {
                break;
            };
            let cmd = String::from_utf8_lossy(&buf[..cr]).trim().to_string();
            buf.drain(..=cr);
            if cmd.is_empty() {
                continue;
            }
            state.lock().unwrap().commands.push(cmd.clone());
            match fault {
                Fault::Silent => continue,
                Fault::Garbage => {
                    write_all(fd, b"\r\n#$%garbage~~\r\n");
                    continue;
                }
                _ => {}
            }
            let reply = if cmd.starts_with("AT+CMGS=") {
                if fault == Fault::NoCarrier {
                    "\r\nNO CARRIER\r\n".to_string()
                } else {
                    in_pdu = true;
                    "\r\n> ".to_string()
                }
            } else if cmd == "AT+CPIN?" {
                "\r\n+CPIN: READY\r\n\r\nOK\r\n".to_string()
            } else if cmd.starts_with("AT+CMGL") {
                let s = state.lock().unwrap();
                let mut r = String::new();
                for (i, pdu) in &s.inbox {
                    let tpdu = pdu.len() / 2 - 1 - usize::from(unhex(pdu)[0]);
                    r.push_str(&format!("\r\n+CMGL: {i},0,,{tpdu}\r\n{pdu}"));
                }
                r.push_str("\r\n\r\nOK\r\n");
                r
            } else if let Some(i) = cmd.strip_prefix("AT+CMGD=") {
                let i: u32 = i.trim().parse().unwrap_or(0);
                state.lock().unwrap().inbox.retain(|(x, _)| *x != i);
                "\r\nOK\r\n".to_string()
            } else if let Some(p) = cmd.strip_prefix("AT+CNMI=") {
                state.lock().unwrap().cds = p.split(',').nth(3) == Some("1");
                "\r\nOK\r\n".to_string()
            } else if cmd == "AT"
                || cmd == "ATE0"
                || cmd.starts_with("AT+CMGF=")
                || cmd.starts_with("AT+CSCA=")
            {
                "\r\nOK\r\n".to_string()
            } else {
                "\r\nERROR\r\n".to_string()
            };
            write_all(fd, reply.as_bytes());
        }
    }
}

/// 2026-12-03 10:20:30 +00 as an SMSC time stamp.
const TS: &str = "62213001020300";

/// The status a report for this SUBMIT says, when it asks for one: numbers ending 666 fail
/// (0x41, permanent), 555 are stored by the SMSC (0x30, temporary), others are delivered.
fn status_report_for(pdu: &str) -> Option<&'static str> {
    if pdu.is_empty() || !pdu.chars().all(|c| c.is_ascii_hexdigit()) {
        return None; // text mode
    }
    let b = unhex(pdu);
    let first = *b.get(1 + usize::from(*b.first()?))?;
    if first & 0x20 == 0 {
        return None;
    }
    let (_, to, _) = decode_submit(pdu);
    Some(if to.ends_with("666") {
        "41"
    } else if to.ends_with("555") {
        "30"
    } else {
        "00"
    })
}

// ------------------------------------------------------------- the test's own GSM 03.38 (ASCII)

fn to_gsm(c: char) -> u8 {
    match c {
        '@' => 0x00,
        '$' => 0x02,
        '_' => 0x11,
        '\n' => 0x0A,
        '\r' => 0x0D,
        c if c.is_ascii() && (' '..='Z').contains(&c) && c != '$' && c != '@' => c as u8,
        c if c.is_ascii_lowercase() => c as u8,
        _ => 0x3F,
    }
}

fn from_gsm(s: u8) -> char {
    match s {
        0x00 => '@',
        0x02 => '$',
        0x11 => '_',
        0x0A => '\n',
        0x0D => '\r',
        0x1B => '\u{1b}',
        s => s as char,
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Decodes an SMS-SUBMIT PDU with its SMSC field: (SMSC, destination, text).
fn decode_submit(pdu: &str) -> (String, String, String) {
    let b = unhex(pdu);
    let sl = b[0] as usize;
    let digits = |o: &[u8], n: usize| {
        let mut d: String = o
            .iter()
            .flat_map(|x| [char::from(b'0' + (x & 0x0F)), char::from(b'0' + (x >> 4))])
            .collect();
        d.truncate(n);
        d
    };
    let smsc = if sl > 0 {
        assert_eq!(b[1], 0x91);
        digits(&b[2..1 + sl], (sl - 1) * 2)
            .trim_end_matches('?')
            .to_string()
    } else {
        String::new()
    };
    let mut i = 1 + sl;
    let udhi = b[i] & 0x40 != 0;
    assert_eq!(b[i] & 0x03, 0x01, "SMS-SUBMIT");
    let vp = (b[i] >> 3) & 0x03;
    i += 2; // first octet, message reference
    let n = b[i] as usize;
    assert_eq!(b[i + 1], 0x91, "international number");
    let da = digits(&b[i + 2..i + 2 + n.div_ceil(2)], n);
    i += 2 + n.div_ceil(2);
    assert_eq!(b[i], 0, "PID");
    assert_eq!(b[i + 1], 0, "DCS: GSM 7-bit");
    i += 2 + if vp == 2 { 1 } else { 0 };
    let udl = b[i] as usize;
    let ud = &b[i + 1..];
    assert_eq!(ud.len(), (udl * 7).div_ceil(8), "UD length");
    // A user data header: its septets are skipped.
    let skip = if udhi {
        ((usize::from(ud[0]) + 1) * 8).div_ceil(7)
    } else {
        0
    };
    let text: String = (skip..udl)
        .map(|k| {
            let bit = k * 7;
            let lo = u16::from(ud[bit / 8]);
            let hi = u16::from(*ud.get(bit / 8 + 1).unwrap_or(&0));
            from_gsm((((hi << 8 | lo) >> (bit % 8)) & 0x7F) as u8)
        })
        .collect();
    // The extension table's brackets (escape + code).
    let text = text.replace("\u{1b}<", "[").replace("\u{1b}>", "]");
    (smsc.trim_end_matches('F').to_string(), da, text)
}

/// The concatenation element (reference, parts, part) of an SMS-SUBMIT PDU with a header.
fn submit_concat(pdu: &str) -> Option<(u8, u8, u8)> {
    let b = unhex(pdu);
    let mut i = 1 + b[0] as usize;
    if b[i] & 0x40 == 0 {
        return None;
    }
    let vp = (b[i] >> 3) & 0x03;
    i += 2;
    let n = b[i] as usize;
    i += 2 + n.div_ceil(2) + 2 + if vp == 2 { 1 } else { 0 } + 1;
    let h = &b[i..];
    (h[1] == 0 && h[2] == 3).then(|| (h[3], h[4], h[5]))
}

/// An SMS-DELIVER PDU from international `from` with `text`.
fn deliver_pdu(from: &str, text: &str) -> String {
    let mut semi = String::new();
    let d: Vec<char> = from.chars().collect();
    for p in d.chunks(2) {
        semi.push(*p.get(1).unwrap_or(&'F'));
        semi.push(p[0]);
    }
    let septets: Vec<u8> = text.chars().map(to_gsm).collect();
    let mut packed = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for s in &septets {
        acc |= u32::from(*s) << bits;
        bits += 7;
        while bits >= 8 {
            packed.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        packed.push(acc as u8);
    }
    let ud: String = packed.iter().map(|b| format!("{b:02X}")).collect();
    // SMSC +491710760000, DELIVER, OA, PID 0, DCS 0, time stamp 2026-12-03 10:20:30 +00.
    format!(
        "079194710167000004{:02X}91{semi}0000{TS}{:02X}{ud}",
        from.len(),
        septets.len()
    )
}

// ----------------------------------------------------------------------------------- SIP side

fn cfg(device: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scripts/sms.cfg"),
    )
    .unwrap()
    .replace("@DEVICE@", device)
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

fn message(ser: SocketAddr, from: &UdpSocket, to: &str, body: &str, call: &str) -> String {
    let me = from.local_addr().unwrap();
    format!(
        "MESSAGE sip:{to}@{ser} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@{me}>;tag=al-{call}\r\n\
         To: <sip:{to}@127.0.0.1>\r\nCall-ID: {call}\r\nCSeq: 1 MESSAGE\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The final reply (skipping 1xx) within `wait`.
fn final_reply(s: &UdpSocket, wait: Duration) -> Option<String> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
                return Some(m);
            }
        }
    }
    None
}

/// The MESSAGEs the UA gets within `wait` (each answered 200; retransmissions counted once).
fn messages(s: &UdpSocket, want: usize, wait: Duration) -> Vec<String> {
    let end = Instant::now() + wait;
    let mut buf = vec![0u8; 65536];
    let mut out: Vec<String> = Vec::new();
    while Instant::now() < end && out.len() < want {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !m.starts_with("MESSAGE ") {
            continue;
        }
        let mut ok = String::from("SIP/2.0 200 OK\r\n");
        for l in m.split("\r\n") {
            let low = l.to_ascii_lowercase();
            if ["via:", "from:", "call-id:", "cseq:"]
                .iter()
                .any(|p| low.starts_with(p))
            {
                ok.push_str(l);
                ok.push_str("\r\n");
            } else if low.starts_with("to:") {
                ok.push_str(l);
                ok.push_str(";tag=ua\r\n");
            }
        }
        ok.push_str("Content-Length: 0\r\n\r\n");
        s.send_to(ok.as_bytes(), from).unwrap();
        let call = header(&m, "Call-ID").unwrap_or("").to_string();
        if !out
            .iter()
            .any(|o| header(o, "Call-ID") == Some(call.as_str()))
        {
            out.push(m);
        }
    }
    out
}

fn body_of(m: &str) -> &str {
    m.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

fn start(modem: &Modem) -> (Ser, SocketAddr) {
    start_with(modem, |c| c)
}

fn start_with(modem: &Modem, edit: impl FnOnce(String) -> String) -> (Ser, SocketAddr) {
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(
        &edit(cfg(&modem.path)),
        &["-l", "127.0.0.1", "-p", &port.to_string(), "-n", "2"],
    );
    assert!(
        ser.wait_log(
            &format!("modem Nokia ({}) ready", modem.path),
            Duration::from_secs(10)
        ),
        "the modem was not initialised: {}",
        ser.log_text()
    );
    (ser, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[test]
fn message_becomes_sms_and_sms_becomes_message() {
    let modem = Modem::start();
    let (ser, addr) = start(&modem);
    let ua = sock();

    // MESSAGE -> 202 -> one SMS in PDU mode, SMSC and number as configured and dialled.
    ua.send_to(
        message(addr, &ua, "+4917612345678", "Hello from SIP", "sms-1").as_bytes(),
        addr,
    )
    .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    let sent = modem.wait_sent(1, Duration::from_secs(5));
    assert_eq!(sent.len(), 1, "{}", ser.log_text());
    let (smsc, to, text) = decode_submit(&sent[0]);
    assert_eq!(smsc, "491710760000");
    assert_eq!(to, "4917612345678");
    let me = ua.local_addr().unwrap();
    assert_eq!(
        text,
        format!("From sip:alice@{me} (if you reply DO NOT remove it)\r\n\r\nHello from SIP\r\n\r\n[SER]")
    );
    assert!(modem.count("AT+CSCA=\"+491710760000\"") >= 1);

    // A long text: parts of at most 160 characters with (i/n) markers, in order.
    let long: String = (0..20).map(|i| format!("word{i} ")).collect::<String>() + "end.";
    ua.send_to(
        message(addr, &ua, "+4917612345678", &long, "sms-2").as_bytes(),
        addr,
    )
    .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    let sent = modem.wait_sent(3, Duration::from_secs(5));
    assert_eq!(sent.len(), 3, "{}", ser.log_text());
    let p1 = decode_submit(&sent[1]).2;
    let p2 = decode_submit(&sent[2]).2;
    // 160 septets at most (the footer's brackets take two each).
    let cost = |p: &str| p.chars().count() + p.matches(['[', ']']).count();
    assert!(cost(&p1) <= 160 && cost(&p2) <= 160, "{p1:?} {p2:?}");
    assert!(p1.ends_with("(1/2)"), "{p1:?}");
    assert!(p2.starts_with("(2/2)"), "{p2:?}");
    let joined = format!(
        "{}{}",
        p1.trim_end_matches("(1/2)"),
        p2.trim_start_matches("(2/2)")
    );
    assert!(joined.contains(&long), "{joined:?}");

    // Not an international number, not text: refused (502), nothing sent.
    ua.send_to(message(addr, &ua, "0176123", "x", "sms-3").as_bytes(), addr)
        .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 502 "), "{r}");

    // An SMS naming the UA's address arrives (+CMTI): a MESSAGE from sip:+number@domain.
    modem.inject(deliver_pdu(
        "4917699999",
        &format!("From sip:bob@{me} (if you reply DO NOT remove it)\r\n\r\nHi back"),
    ));
    let got = messages(&ua, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{}", ser.log_text());
    let m = &got[0];
    assert!(
        m.starts_with(&format!("MESSAGE sip:bob@{me} SIP/2.0")),
        "{m}"
    );
    assert!(
        header(m, "From")
            .unwrap()
            .contains("sip:+4917699999@gw.example.org"),
        "{m}"
    );
    assert!(header(m, "Content-Type").unwrap().contains("text/plain"));
    assert_eq!(body_of(m), "Hi back\r\n(26/12/03,10:20:30)");
    // Read and deleted from the modem.
    let end = Instant::now() + Duration::from_secs(3);
    while modem.count("AT+CMGD=") == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(modem.state.lock().unwrap().inbox.is_empty());
}

#[test]
fn a_modem_that_fails_is_reinitialised_and_nothing_is_lost() {
    let modem = Modem::start();
    let (ser, addr) = start(&modem);
    let ua = sock();
    let me = ua.local_addr().unwrap();

    // The modem stops answering: the MESSAGE is still accepted, the modem re-initialised (logged)
    // and, once it answers again, the SMS goes out.
    modem.fault(Fault::Silent);
    ua.send_to(
        message(addr, &ua, "+4917600000001", "while silent", "f-1").as_bytes(),
        addr,
    )
    .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    assert!(
        ser.wait_log("initialisation failed", Duration::from_secs(15))
            || ser.wait_log("re-initialising", Duration::from_secs(1)),
        "{}",
        ser.log_text()
    );
    modem.fault(Fault::None);
    let sent = modem.wait_sent(1, Duration::from_secs(15));
    assert_eq!(sent.len(), 1, "{}", ser.log_text());
    assert!(decode_submit(&sent[0]).2.contains("while silent"));

    // Garbage answers: re-initialised as well, then the SMS is sent.
    modem.fault(Fault::Garbage);
    std::thread::sleep(Duration::from_millis(2500));
    modem.fault(Fault::None);
    ua.send_to(
        message(addr, &ua, "+4917600000002", "after garbage", "f-2").as_bytes(),
        addr,
    )
    .unwrap();
    let sent = modem.wait_sent(2, Duration::from_secs(15));
    assert_eq!(sent.len(), 2, "{}", ser.log_text());
    assert!(decode_submit(&sent[1]).2.contains("after garbage"));
    assert!(ser.log_text().contains("unexpected answer") || ser.log_text().contains("garbage"));

    // NO CARRIER on every attempt: the sender is told by MESSAGE, with the text it sent.
    modem.fault(Fault::NoCarrier);
    ua.send_to(
        message(addr, &ua, "+4917600000003", "never sent", "f-3").as_bytes(),
        addr,
    )
    .unwrap();
    let got = messages(&ua, 1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "{}", ser.log_text());
    let m = &got[0];
    assert!(
        m.starts_with(&format!("MESSAGE sip:alice@{me} SIP/2.0")),
        "{m}"
    );
    assert!(body_of(m).contains("temporary indisponibility"), "{m}");
    assert!(body_of(m).contains("never sent"), "{m}");
    assert!(header(m, "From")
        .unwrap()
        .contains("sip:+4917600000003@gw.example.org"));
    assert!(ser.log_text().contains("NO CARRIER"));
    assert_eq!(modem.sent().len(), 2);
}

#[test]
fn text_mode_sends_the_text_to_the_number() {
    let modem = Modem::start();
    let (ser, addr) = start_with(&modem, |c| c.replace("m=new", "m=ascii"));
    let ua = sock();
    ua.send_to(
        message(addr, &ua, "+4917612345678", "plain text", "t-1").as_bytes(),
        addr,
    )
    .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    let sent = modem.wait_sent(1, Duration::from_secs(5));
    assert_eq!(sent.len(), 1, "{}", ser.log_text());
    let me = ua.local_addr().unwrap();
    assert_eq!(
        sent[0],
        format!(
            "From sip:alice@{me} (if you reply DO NOT remove it)\r\n\r\nplain text\r\n\r\n[SER]"
        )
        .trim()
    );
    assert_eq!(modem.count("AT+CMGF=1"), 1);
    assert_eq!(modem.count("AT+CMGS=\"+4917612345678\""), 1);
}

#[test]
fn status_reports_reach_the_sender() {
    let modem = status_reports(1);
    assert!(modem.count("AT+CMGD=") >= 3, "reports read from memory");
    assert_eq!(modem.count("AT+CNMI="), 0);
}

/// sms_report_type 2: the modem is told to hand reports over as `+CDS`; the same notices.
#[test]
fn status_reports_as_cds_reach_the_sender() {
    let modem = status_reports(2);
    assert!(modem.count("AT+CNMI=1,1,0,1,0") >= 1);
    assert_eq!(modem.count("AT+CMGD="), 0, "nothing stored in the modem");
}

fn status_reports(kind: u8) -> Modem {
    let modem = Modem::start();
    let (ser, addr) = start_with(&modem, |c| {
        c.replace(
            "modparam(\"sms\", \"max_sms_parts\", 3)",
            &format!(
                "modparam(\"sms\", \"max_sms_parts\", 3)\nmodparam(\"sms\", \"sms_report_type\", {kind})"
            ),
        )
    });
    let ua = sock();
    let me = ua.local_addr().unwrap();
    if kind == 2 {
        // A garbage report first: a +CDS whose PDU is no SMS at all (logged, ignored).
        modem
            .state
            .lock()
            .unwrap()
            .unsolicited
            .push("\r\n+CDS: 2\r\n0791947101670000FF0102\r\n".into());
        // (read while the modem is idle)
        std::thread::sleep(Duration::from_millis(500));
    }
    // Delivered at once: no notice. Failed: the sender is told, with its text.
    let sms = [
        ("+4917600000001", "fine"),
        ("+4917600000666", "doomed"),
        ("+4917600000555", "later"),
    ];
    for (n, (to, text)) in sms.iter().enumerate() {
        ua.send_to(
            message(addr, &ua, to, text, &format!("r-{n}")).as_bytes(),
            addr,
        )
        .unwrap();
        let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
        assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    }
    let mut got = messages(&ua, 3, Duration::from_secs(6));
    assert_eq!(got.len(), 2, "{got:?} {}", ser.log_text());
    got.sort_by_key(|m| !m.contains("+4917600000666@"));
    // Stored by the SMSC (a temporary status): the sender gets SER's note.
    let stored = &got[1];
    assert!(
        header(stored, "From")
            .unwrap()
            .contains("sip:+4917600000555@"),
        "{stored}"
    );
    assert!(
        body_of(stored).contains("stored on the SMSCenter"),
        "{stored}"
    );
    assert!(body_of(stored).contains("later"), "{stored}");
    let m = &got[0];
    assert!(
        m.starts_with(&format!("MESSAGE sip:alice@{me} SIP/2.0")),
        "{m}"
    );
    assert!(
        header(m, "From").unwrap().contains("sip:+4917600000666@"),
        "{m}"
    );
    assert!(
        body_of(m).contains("could not be delivered (status 65)"),
        "{m}"
    );
    assert!(body_of(m).contains("doomed"), "{m}");
    assert_eq!(modem.sent().len(), 3);
    if kind == 2 {
        assert!(
            ser.log_text()
                .contains("a +CDS report cannot be decoded (not an SMS-DELIVER (type 3)): ignored"),
            "{}",
            ser.log_text()
        );
    }
    drop(ser);
    modem
}

/// Two modems linked to one network (SER's `links`, each naming D1): SMS go to them in turn;
/// when one answers NO CARRIER its SMS is handed to the other, which sends it, and the failed
/// one is tried last until it is up again.
#[test]
fn modems_of_one_network_take_turns_and_take_over() {
    let (a, b) = (Modem::start(), Modem::start());
    let text = cfg(&a.path)
        .replace(
            "modparam(\"sms\", \"modems\", \"Nokia [d=",
            &format!(
                "modparam(\"sms\", \"modems\", \"Siemens [d={};b=9600;m=new;c=+491710760000;r=2;l=1] ; Nokia [d=",
                b.path
            ),
        )
        .replace(
            "modparam(\"sms\", \"links\", \"Nokia[D1]\")",
            "modparam(\"sms\", \"links\", \"Nokia[D1] ; Siemens[D1]\")",
        );
    let port = free_port("127.0.0.1");
    let ser = Ser::start_with_cfg(
        &text,
        &["-l", "127.0.0.1", "-p", &port.to_string(), "-n", "2"],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for (name, m) in [("Nokia", &a), ("Siemens", &b)] {
        assert!(
            ser.wait_log(
                &format!("modem {name} ({}) ready", m.path),
                Duration::from_secs(10)
            ),
            "{}",
            ser.log_text()
        );
    }
    let ua = sock();
    let send = |n: usize, text: &str| {
        ua.send_to(
            message(
                addr,
                &ua,
                &format!("+49176000001{n:02}"),
                text,
                &format!("mm-{n}"),
            )
            .as_bytes(),
            addr,
        )
        .unwrap();
        let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
        assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    };
    // In turn: four SMS, two on each modem.
    for n in 0..4 {
        send(n, &format!("turn {n}"));
        let end = Instant::now() + Duration::from_secs(5);
        while a.sent().len() + b.sent().len() < n + 1 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(
        (a.sent().len(), b.sent().len()),
        (2, 2),
        "{}",
        ser.log_text()
    );

    // Nokia loses its carrier: whatever it is given goes out through Siemens.
    a.fault(Fault::NoCarrier);
    for n in 4..8 {
        send(n, &format!("failover {n}"));
    }
    let sent = b.wait_sent(6, Duration::from_secs(15));
    assert_eq!(sent.len(), 6, "{}", ser.log_text());
    assert_eq!(a.sent().len(), 2);
    let texts: Vec<String> = sent[2..].iter().map(|p| decode_submit(p).2).collect();
    for n in 4..8 {
        assert!(
            texts.iter().any(|t| t.contains(&format!("failover {n}"))),
            "{texts:?}"
        );
    }
    assert!(
        ser.log_text()
            .contains("sms: modem Nokia is down: its SMS goes to modem Siemens"),
        "{}",
        ser.log_text()
    );
    // Nobody was told of a failure.
    assert!(messages(&ua, 1, Duration::from_millis(500)).is_empty());
}

/// A part of a concatenated SMS-DELIVER (UDH with the 8-bit reference element, 3GPP TS 23.040
/// §9.2.3.24.1) from international `from`.
fn deliver_part_pdu(from: &str, text: &str, reference: u8, total: u8, seq: u8) -> String {
    let mut semi = String::new();
    let d: Vec<char> = from.chars().collect();
    for p in d.chunks(2) {
        semi.push(*p.get(1).unwrap_or(&'F'));
        semi.push(p[0]);
    }
    // Bits, least significant first: the header's octets, one fill bit, then the septets.
    let mut bits: Vec<bool> = Vec::new();
    for o in [5u8, 0, 3, reference, total, seq] {
        bits.extend((0..8).map(|k| o >> k & 1 == 1));
    }
    bits.push(false);
    let septets: Vec<u8> = text.chars().map(to_gsm).collect();
    for s in &septets {
        bits.extend((0..7).map(|k| s >> k & 1 == 1));
    }
    let ud: String = bits
        .chunks(8)
        .map(|c| {
            let b = c
                .iter()
                .enumerate()
                .fold(0u8, |a, (k, &on)| a | (u8::from(on) << k));
            format!("{b:02X}")
        })
        .collect();
    format!(
        "079194710167000044{:02X}91{semi}0000{TS}{:02X}{ud}",
        from.len(),
        7 + septets.len()
    )
}

/// A concatenated SMS (UDH) received in two parts, the second first: one MESSAGE with the
/// whole text; an SMS whose PDU is garbage is logged and deleted, nothing forwarded.
#[test]
fn a_concatenated_sms_becomes_one_message() {
    let modem = Modem::start();
    let (ser, _addr) = start(&modem);
    let ua = sock();
    let me = ua.local_addr().unwrap();
    let first = format!("From sip:bob@{me} (if you reply DO NOT remove it)\r\n\r\nThis is a long ");
    modem.inject(deliver_part_pdu(
        "4917699999",
        "message in two parts.",
        0x42,
        2,
        2,
    ));
    let end = Instant::now() + Duration::from_secs(3);
    while modem.count("AT+CMGD=") == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        messages(&ua, 1, Duration::from_millis(500)).is_empty(),
        "nothing before every part is there"
    );
    modem.inject(deliver_part_pdu("4917699999", &first, 0x42, 2, 1));
    let got = messages(&ua, 1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "{}", ser.log_text());
    let m = &got[0];
    assert!(
        m.starts_with(&format!("MESSAGE sip:bob@{me} SIP/2.0")),
        "{m}"
    );
    assert!(header(m, "From")
        .unwrap()
        .contains("sip:+4917699999@gw.example.org"));
    assert_eq!(
        body_of(m),
        "This is a long message in two parts.\r\n(26/12/03,10:20:30)"
    );
    let inbox_empty = || {
        let end = Instant::now() + Duration::from_secs(3);
        while !modem.state.lock().unwrap().inbox.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        modem.state.lock().unwrap().inbox.is_empty()
    };
    assert!(inbox_empty(), "both parts deleted from the modem");

    // Garbage in the modem's memory: logged, deleted, nothing forwarded.
    modem.inject("0791947101670000FF0102".into());
    assert!(
        ser.wait_log("cannot be decoded", Duration::from_secs(5)),
        "{}",
        ser.log_text()
    );
    assert!(messages(&ua, 1, Duration::from_millis(500)).is_empty());
    assert!(inbox_empty(), "the garbage deleted too");
}

/// `concat_udh`: a long MESSAGE goes as one concatenated SMS, parts of at most 153 septets
/// with a user data header (same reference, parts in order), no `(i/n)` markers.
#[test]
fn a_long_message_goes_as_one_concatenated_sms() {
    let modem = Modem::start();
    let (ser, addr) = start_with(&modem, |c| {
        c.replace(
            "modparam(\"sms\", \"max_sms_parts\", 3)",
            "modparam(\"sms\", \"max_sms_parts\", 3)\nmodparam(\"sms\", \"concat_udh\", 1)",
        )
    });
    let ua = sock();
    let me = ua.local_addr().unwrap();
    let long: String = (0..30).map(|i| format!("word{i} ")).collect::<String>() + "end.";
    ua.send_to(
        message(addr, &ua, "+4917612345678", &long, "udh-1").as_bytes(),
        addr,
    )
    .unwrap();
    let r = final_reply(&ua, Duration::from_secs(3)).expect("a reply");
    assert!(r.starts_with("SIP/2.0 202 "), "{r}");
    let sent = modem.wait_sent(2, Duration::from_secs(5));
    assert_eq!(sent.len(), 2, "{}", ser.log_text());
    let (c1, c2) = (
        submit_concat(&sent[0]).expect("a header"),
        submit_concat(&sent[1]).expect("a header"),
    );
    assert_eq!((c1.1, c1.2), (2, 1));
    assert_eq!((c2.1, c2.2), (2, 2));
    assert_eq!(c1.0, c2.0, "one reference");
    let (p1, p2) = (decode_submit(&sent[0]).2, decode_submit(&sent[1]).2);
    assert!(p1.chars().count() <= 153 && p2.chars().count() <= 153);
    assert_eq!(
        format!("{p1}{p2}"),
        format!("From sip:alice@{me} (if you reply DO NOT remove it)\r\n\r\n{long}\r\n\r\n[SER]")
    );
    assert!(!p1.contains("(1/2)"));
    // A short one has no header.
    ua.send_to(
        message(addr, &ua, "+4917612345678", "short", "udh-2").as_bytes(),
        addr,
    )
    .unwrap();
    let sent = modem.wait_sent(3, Duration::from_secs(5));
    assert_eq!(sent.len(), 3);
    assert_eq!(submit_concat(&sent[2]), None);
}
