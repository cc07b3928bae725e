//! Output shapes of the module commands (SER 0.8.11's tm, sl and usrloc FIFO commands) as pure
//! functions over plain structs, and the parsers of their parameter lines. The data plumbing
//! (reading the transaction tables, the location store) is the caller's; these give the exact text
//! serctl and serweb parse, and the same data as JSON for JSON-RPC.
//!
//! | command | parameters | reply |
//! |---|---|---|
//! | `sl_stats` | — | [`sl_stats_reply`] |
//! | `t_stats` | — | [`t_stats_reply`]: `Current: n (n waiting) Total: n (n local) `, `Replied localy: n`, `Completion status 6xx: n, 5xx: n, 4xx: n, 3xx: n,2xx: n` |
//! | `t_hash` | — | [`t_hash_reply`]: a header line, then `<i>.\t<current>\t<total>` per table slot (here: per shard) |
//! | `t_uac_dlg` | method, request URI, outbound URI or `.`, headers `.`, body `.` | [`parse_t_uac_dlg`] then [`UacDlg::request_text`]; the final reply's status is the command's status |
//! | `ul_stats` | — | [`ul_stats_reply`]: `Domain Registered Expired`, `'<table>' <n> <n>` |
//! | `ul_rm` | table, user | [`ul_rm_reply`] |
//! | `ul_rm_contact` | table, user, contact | [`ul_rm_contact_reply`] |
//! | `ul_dump` | — | [`ul_dump_reply`] |
//! | `ul_flush` | — | `200 ul_flush completed` |
//! | `ul_add` | table, user, contact, expires, q | [`parse_ul_add`], [`ul_add_reply`] |
//! | `ul_show_contact` | table, user | [`ul_show_contact_reply`]: `<uri>;q=0.00;expires=1012` lines, or `404 AOR not found` |

use dataplane::proxy::sl::SlTotals;
use serde_json::json;

use super::core::{number_param, text_param};
use super::{bad_params, Reply};

/// SER ended some lines with blanks (`CLEANUP_EOL`); serweb's monitor parsers do not mind either
/// way, so ser keeps the visible text and drops the padding.
/// Transaction statistics (tm).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TStats {
    pub current: u64,
    pub waiting: u64,
    pub total: u64,
    pub total_local: u64,
    pub replied_locally: u64,
    /// Transactions completed with a final reply of class 2xx … 6xx (index 0 = 2xx).
    pub completed: [u64; 5],
}

/// `t_stats`.
pub fn t_stats_reply(s: &TStats) -> Reply {
    let c = &s.completed;
    Reply::ok(vec![
        format!(
            "Current: {} ({} waiting) Total: {} ({} local) ",
            s.current, s.waiting, s.total, s.total_local
        ),
        format!("Replied localy: {}", s.replied_locally),
        format!(
            "Completion status 6xx: {}, 5xx: {}, 4xx: {}, 3xx: {},2xx: {}",
            c[4], c[3], c[2], c[1], c[0]
        ),
    ])
    .with_data(json!({
        "current": s.current, "waiting": s.waiting, "total": s.total,
        "total_local": s.total_local, "replied_locally": s.replied_locally,
        "completed": {"2xx": c[0], "3xx": c[1], "4xx": c[2], "5xx": c[3], "6xx": c[4]},
    }))
}

/// One slot of the transaction table (ser: one shard's table).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HashSlot {
    pub current: u64,
    pub total: u64,
}

/// `t_hash`.
pub fn t_hash_reply(slots: &[HashSlot]) -> Reply {
    let mut lines = vec!["\tcurrent\ttotal".to_string()];
    lines.extend(
        slots
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{i}.\t{}\t{}", s.current, s.total)),
    );
    let data: Vec<_> = slots
        .iter()
        .map(|s| json!({"current": s.current, "total": s.total}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

/// `sl_stats`: SER printed per-code counters and the rest of each class (`2xx` = 2xx other than
/// those listed); ser counts 200 apart and the other codes by class.
pub fn sl_stats_reply(t: &SlTotals) -> Reply {
    let c = &t.by_class;
    Reply::ok(vec![
        format!("200: {} 2xx: {}", t.ok_200, c[1].saturating_sub(t.ok_200)),
        format!("3xx: {}", c[2]),
        format!("4xx: {}", c[3]),
        format!("5xx: {}", c[4]),
        format!("6xx: {}", c[5]),
        format!("xxx: {}", c[0]),
    ])
    .with_data(json!({
        "200": t.ok_200, "1xx": c[0], "2xx": c[1], "3xx": c[2], "4xx": c[3], "5xx": c[4],
        "6xx": c[5], "acks_absorbed": t.acks_absorbed,
    }))
}

/// One contact of a location record.
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub uri: String,
    pub q: f32,
    /// Seconds until it expires (negative: expired, awaiting removal); None: permanent.
    pub expires_in: Option<i64>,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
    pub received: String,
    pub flags: u32,
}

/// One table's statistics (`ul_stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    pub table: String,
    pub registered: u64,
    pub expired: u64,
}

/// `ul_stats`.
pub fn ul_stats_reply(tables: &[TableStats]) -> Reply {
    let mut lines = vec!["Domain Registered Expired".to_string()];
    lines.extend(
        tables
            .iter()
            .map(|t| format!("'{}' {} {}", t.table, t.registered, t.expired)),
    );
    let data: Vec<_> = tables
        .iter()
        .map(|t| json!({"table": t.table, "registered": t.registered, "expired": t.expired}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

fn q2str(q: f32) -> String {
    format!("{q:.2}")
}

/// `ul_show_contact` (Admin Guide Example 4-9): None = the user has no record.
pub fn ul_show_contact_reply(contacts: Option<&[Contact]>) -> Reply {
    let Some(cs) = contacts.filter(|c| !c.is_empty()) else {
        return Reply::status(404, "AOR not found");
    };
    let lines = cs
        .iter()
        .map(|c| {
            format!(
                "<{}>;q={};expires={}",
                c.uri,
                q2str(c.q),
                c.expires_in.unwrap_or(0)
            )
        })
        .collect();
    let data: Vec<_> = cs
        .iter()
        .map(|c| json!({"contact": c.uri, "q": q2str(c.q), "expires": c.expires_in}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

/// One record (address of record and its contacts) for `ul_dump`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub aor: String,
    pub contacts: Vec<Contact>,
}

/// `ul_dump`: SER's `print_udomain` layout (HowTo 3.5), memory addresses left out.
pub fn ul_dump_reply(tables: &[(String, Vec<Record>)]) -> Reply {
    let mut l = Vec::new();
    let mut data = Vec::new();
    for (table, records) in tables {
        l.push("---Domain---".to_string());
        l.push(format!("name : '{table}'"));
        l.push(format!("users: {}", records.len()));
        let mut recs = Vec::new();
        for r in records {
            l.push("...Record...".to_string());
            l.push(format!("domain: '{table}'"));
            l.push(format!("aor   : '{}'", r.aor));
            let mut cs = Vec::new();
            for c in &r.contacts {
                l.push("~~~Contact~~~".to_string());
                l.push(format!("domain    : '{table}'"));
                l.push(format!("aor       : '{}'", r.aor));
                l.push(format!("Contact   : '{}'", c.uri));
                l.push(match c.expires_in {
                    None => "Expires   : Permanent".to_string(),
                    Some(e) if e < 0 => "Expires   : Expired".to_string(),
                    Some(e) => format!("Expires   : {e}"),
                });
                l.push(format!("q         : {}", q2str(c.q)));
                l.push(format!("Call-ID   : '{}'", c.call_id));
                l.push(format!("CSeq      : {}", c.cseq));
                l.push(format!("User-Agent: '{}'", c.user_agent));
                l.push(format!("received  : '{}'", c.received));
                l.push(format!("Flags     : {}", c.flags));
                l.push("~~~/Contact~~~~".to_string());
                cs.push(json!({
                    "contact": c.uri, "expires": c.expires_in, "q": q2str(c.q),
                    "call_id": c.call_id, "cseq": c.cseq, "user_agent": c.user_agent,
                    "received": c.received, "flags": c.flags,
                }));
            }
            l.push(".../Record...".to_string());
            recs.push(json!({"aor": r.aor, "contacts": cs}));
        }
        l.push("---/Domain---".to_string());
        data.push(json!({"table": table, "records": recs}));
    }
    Reply::ok(l).with_data(json!(data))
}

/// What a removal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NoTable,
    NoUser,
    NoContact,
}

/// `ul_rm`.
pub fn ul_rm_reply(table: &str, user: &str, r: Removal) -> Reply {
    match r {
        Removal::Removed => Reply::status(200, format!("user ({table}, {user}) deleted")),
        Removal::NoTable => Reply::status(400, format!("table ({table}) not found")),
        Removal::NoUser | Removal::NoContact => {
            Reply::status(404, format!("user ({table}, {user}) not found"))
        }
    }
}

/// `ul_rm_contact`.
pub fn ul_rm_contact_reply(table: &str, user: &str, contact: &str, r: Removal) -> Reply {
    match r {
        Removal::Removed => Reply::status(
            200,
            format!("contact ({user}, {contact}) deleted from table {table}"),
        ),
        Removal::NoTable => Reply::status(400, format!("table ({table}) not found")),
        Removal::NoUser => Reply::status(404, format!("user ({table}, {user}) not found")),
        Removal::NoContact => Reply::status(404, "Contact not found"),
    }
}

/// `table, user` (ul_rm, ul_show_contact).
pub fn parse_table_user(p: &[String]) -> Result<(String, String), Reply> {
    Ok((
        text_param(p, 0, "table name")?.to_string(),
        text_param(p, 1, "username")?.to_string(),
    ))
}

/// `table, user, contact` (ul_rm_contact).
pub fn parse_table_user_contact(p: &[String]) -> Result<(String, String, String), Reply> {
    let (t, u) = parse_table_user(p)?;
    Ok((t, u, text_param(p, 2, "contact")?.to_string()))
}

/// `ul_add`'s parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct UlAdd {
    pub table: String,
    pub user: String,
    pub contact: String,
    /// Seconds; 0 = permanent (serweb's permanent contacts).
    pub expires: u32,
    pub q: f32,
}

/// `table, user, contact, expires, q` (extra lines, e.g. replicate/flags of later SERs, ignored).
pub fn parse_ul_add(p: &[String]) -> Result<UlAdd, Reply> {
    let (table, user, contact) = parse_table_user_contact(p)?;
    let expires = number_param::<u32>(p, 3, "expires")?;
    let q = number_param::<f32>(p, 4, "q")?;
    if !(0.0..=1.0).contains(&q) {
        return Err(bad_params(format!("bad q: '{q}' (0 … 1)")));
    }
    Ok(UlAdd {
        table,
        user,
        contact,
        expires,
        q,
    })
}

/// `ul_add`'s answer on success.
pub fn ul_add_reply(a: &UlAdd) -> Reply {
    Reply::status(200, "Added to table").with_body(vec![format!(
        "('{}','{}') to '{}'",
        a.user, a.contact, a.table
    )])
}

impl Reply {
    /// Replaces the body lines.
    pub fn with_body(mut self, body: Vec<String>) -> Reply {
        self.body = body;
        self
    }
}

/// A `t_uac_dlg` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UacDlg {
    pub method: String,
    pub ruri: String,
    /// Outbound proxy URI; None for `.` (send to the request URI).
    pub next_hop: Option<String>,
    /// Header lines as given (`Name: value`).
    pub headers: Vec<String>,
    /// Body (lines joined with CRLF, each line CRLF-terminated, as SER's `read_body`); empty: none.
    pub body: String,
}

fn header_name(line: &str) -> &str {
    line.split_once(':').map_or(line, |(n, _)| n).trim()
}

fn is_header(line: &str, long: &str, short: &str) -> bool {
    let n = header_name(line);
    n.eq_ignore_ascii_case(long) || (!short.is_empty() && n.eq_ignore_ascii_case(short))
}

/// Parses `t_uac_dlg`'s lines (as [`super::Framing::UacDlg`] delivers them: method, request URI,
/// next hop, headers, `.`, body lines). From and To are required, Content-Type with a body.
pub fn parse_t_uac_dlg(p: &[String]) -> Result<UacDlg, Reply> {
    let method = text_param(p, 0, "method")?.to_string();
    if !method
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c))
    {
        return Err(bad_params(format!("bad method: '{method}'")));
    }
    let ruri = text_param(p, 1, "request URI")?.to_string();
    if !ruri.contains(':') || ruri.contains(char::is_whitespace) {
        return Err(bad_params(format!("bad request URI: '{ruri}'")));
    }
    let hop = text_param(p, 2, "outbound URI")?;
    let next_hop = (hop != ".").then(|| hop.to_string());
    let rest = p.get(3..).unwrap_or(&[]);
    let split = rest.iter().position(|l| l == ".").unwrap_or(rest.len());
    let headers: Vec<String> = rest
        .get(..split)
        .unwrap_or(&[])
        .iter()
        .filter(|l| !l.is_empty())
        .cloned()
        .collect();
    for h in &headers {
        if !h.contains(':') || header_name(h).is_empty() {
            return Err(bad_params(format!("bad header line: '{h}'")));
        }
    }
    let body_lines = rest.get(split + 1..).unwrap_or(&[]);
    let body: String = body_lines.iter().map(|l| format!("{l}\r\n")).collect();
    let has = |long, short| headers.iter().any(|h| is_header(h, long, short));
    if !has("From", "f") {
        return Err(bad_params("From header missing"));
    }
    if !has("To", "t") {
        return Err(bad_params("To header missing"));
    }
    if !body.is_empty() && !has("Content-Type", "c") {
        return Err(bad_params("Content-Type missing for a body"));
    }
    Ok(UacDlg {
        method,
        ruri,
        next_hop,
        headers,
        body,
    })
}

impl UacDlg {
    /// The request without Via (the transaction layer puts its own on top): the given headers,
    /// with a From tag, Call-ID, CSeq and Max-Forwards added where missing and Content-Length
    /// computed (a given one is replaced).
    pub fn request_text(&self, from_tag: &str, call_id: &str, cseq: u32) -> String {
        let mut out = format!("{} {} SIP/2.0\r\n", self.method, self.ruri);
        let mut has_callid = false;
        let mut has_cseq = false;
        let mut has_mf = false;
        for h in &self.headers {
            if is_header(h, "Content-Length", "l") {
                continue;
            }
            if is_header(h, "From", "f") && !h.to_ascii_lowercase().contains(";tag=") {
                out.push_str(&format!("{h};tag={from_tag}\r\n"));
                continue;
            }
            has_callid |= is_header(h, "Call-ID", "i");
            has_cseq |= is_header(h, "CSeq", "");
            has_mf |= is_header(h, "Max-Forwards", "");
            out.push_str(h);
            out.push_str("\r\n");
        }
        if !has_callid {
            out.push_str(&format!("Call-ID: {call_id}\r\n"));
        }
        if !has_cseq {
            out.push_str(&format!("CSeq: {cseq} {}\r\n", self.method));
        }
        if !has_mf {
            out.push_str("Max-Forwards: 70\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        out.push_str(&self.body);
        out
    }
}

/// The command's answer once the transaction ends: its final reply's status (a local timeout is
/// `408 Request Timeout`).
pub fn t_uac_dlg_reply(code: u16, reason: &str) -> Reply {
    Reply::status(code, reason).with_data(json!({"code": code, "reason": reason}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn t_stats_shape_parsed_by_serweb() {
        let r = t_stats_reply(&TStats {
            current: 2,
            waiting: 1,
            total: 10,
            total_local: 3,
            replied_locally: 4,
            completed: [5, 0, 2, 1, 1],
        });
        assert_eq!(
            r.to_fifo(),
            "200 ok\nCurrent: 2 (1 waiting) Total: 10 (3 local) \nReplied localy: 4\nCompletion status 6xx: 1, 5xx: 1, 4xx: 2, 3xx: 0,2xx: 5\n"
        );
        assert_eq!(r.to_json()["completed"]["2xx"], json!(5));
    }

    #[test]
    fn t_hash_lists_slots() {
        let r = t_hash_reply(&[
            HashSlot {
                current: 1,
                total: 9,
            },
            HashSlot::default(),
        ]);
        assert_eq!(
            r.to_fifo(),
            "200 ok\n\tcurrent\ttotal\n0.\t1\t9\n1.\t0\t0\n"
        );
    }

    #[test]
    fn sl_stats_lines() {
        let r = sl_stats_reply(&SlTotals {
            by_class: [0, 3, 0, 2, 1, 0],
            ok_200: 2,
            acks_absorbed: 0,
        });
        assert_eq!(
            r.to_fifo(),
            "200 ok\n200: 2 2xx: 1\n3xx: 0\n4xx: 2\n5xx: 1\n6xx: 0\nxxx: 0\n"
        );
    }

    fn contact(uri: &str, q: f32, e: Option<i64>) -> Contact {
        Contact {
            uri: uri.into(),
            q,
            expires_in: e,
            call_id: "c1".into(),
            cseq: 7,
            user_agent: "ua".into(),
            received: String::new(),
            flags: 0,
        }
    }

    #[test]
    fn ul_show_contact_as_example_4_9() {
        let cs = [contact("sip:195.37.78.160:14519", 0.0, Some(1012))];
        assert_eq!(
            ul_show_contact_reply(Some(&cs)).to_fifo(),
            "200 ok\n<sip:195.37.78.160:14519>;q=0.00;expires=1012\n"
        );
        assert_eq!(ul_show_contact_reply(None).to_fifo(), "404 AOR not found\n");
    }

    #[test]
    fn ul_stats_dump_rm_add() {
        let r = ul_stats_reply(&[TableStats {
            table: "location".into(),
            registered: 2,
            expired: 1,
        }]);
        assert_eq!(
            r.to_fifo(),
            "200 ok\nDomain Registered Expired\n'location' 2 1\n"
        );
        let d = ul_dump_reply(&[(
            "location".into(),
            vec![Record {
                aor: "jiri".into(),
                contacts: vec![contact("sip:jiri@1.2.3.4", 0.5, None)],
            }],
        )]);
        let text = d.to_fifo();
        assert!(text.contains("aor       : 'jiri'\nContact   : 'sip:jiri@1.2.3.4'\nExpires   : Permanent\nq         : 0.50\n"), "{text}");
        assert_eq!(
            ul_rm_reply("location", "jiri", Removal::NoUser).to_fifo(),
            "404 user (location, jiri) not found\n"
        );
        let a = parse_ul_add(&s(&["location", "jiri", "sip:jiri@gw", "0", "0.5"])).unwrap();
        assert_eq!((a.expires, a.q), (0, 0.5));
        assert_eq!(
            ul_add_reply(&a).to_fifo(),
            "200 Added to table\n('jiri','sip:jiri@gw') to 'location'\n"
        );
        assert_eq!(
            parse_ul_add(&s(&["location", "jiri"])).unwrap_err().code,
            400
        );
        assert_eq!(
            parse_ul_add(&s(&["l", "j", "c", "x", "1"]))
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn t_uac_dlg_of_example_4_10() {
        let p = s(&[
            "NOTIFY",
            "sip:receiver@127.0.0.1",
            ".",
            "From: sip:originator@foo.bar",
            "To: sip:receiver@127.0.0.1",
            "foo: bar_special_header",
            "Content-Type: text/plain; charset=UTF-8",
            ".",
            "Hello world!!!! x",
        ]);
        let u = parse_t_uac_dlg(&p).unwrap();
        assert_eq!(u.next_hop, None);
        assert_eq!(u.body, "Hello world!!!! x\r\n");
        let text = u.request_text("ft1", "cid1@ser", 1);
        assert_eq!(
            text,
            "NOTIFY sip:receiver@127.0.0.1 SIP/2.0\r\nFrom: sip:originator@foo.bar;tag=ft1\r\nTo: sip:receiver@127.0.0.1\r\nfoo: bar_special_header\r\nContent-Type: text/plain; charset=UTF-8\r\nCall-ID: cid1@ser\r\nCSeq: 1 NOTIFY\r\nMax-Forwards: 70\r\nContent-Length: 19\r\n\r\nHello world!!!! x\r\n"
        );
        // Missing To; body without Content-Type.
        assert_eq!(
            parse_t_uac_dlg(&s(&["MESSAGE", "sip:a@b", ".", "From: sip:x@y", "."]))
                .unwrap_err()
                .reason,
            "To header missing"
        );
        assert_eq!(
            parse_t_uac_dlg(&s(&[
                "MESSAGE",
                "sip:a@b",
                ".",
                "f: sip:x@y",
                "t: sip:a@b",
                ".",
                "hi"
            ]))
            .unwrap_err()
            .reason,
            "Content-Type missing for a body"
        );
    }
}
