//! tm's management commands (SER 0.8.11's tm FIFO commands, same output): the handlers over the
//! shards' transaction counters and `t_uac`, and the shapes serctl and serweb parse.
//!
//! | command | parameters | reply |
//! |---|---|---|
//! | `t_stats` | — | [`t_stats_reply`]: `Current: n (n waiting) Total: n (n local) `, `Replied localy: n`, `Completion status 6xx: n, 5xx: n, 4xx: n, 3xx: n,2xx: n` |
//! | `t_hash` | — | [`t_hash_reply`]: a header line, then `<i>.\t<current>\t<total>` per table slot (here: per shard) |
//! | `t_reply`, `vm_reply` | code, reason, hash:label, To tag, headers `.`, body `.` | [`parse_t_reply`]; the answer goes out on the transaction's shard |
//! | `t_uac_dlg` | method, request URI, outbound URI or `.`, headers `.`, body `.` | [`parse_t_uac_dlg`] then [`UacDlg::request_text`]; the final reply's status is the command's status |

use std::sync::Arc;

use serde_json::json;

use crate::command::{
    bad_params, text_param, CommandDecl, Framing, Handler, Host, Reply, ReplyFuture,
};
use crate::txn::table::UacRequest;
use crate::txn::TmTotals;

/// tm's commands.
pub const COMMANDS: &[CommandDecl] = &[
    CommandDecl::sync("t_stats", "", "transaction statistics", t_stats),
    CommandDecl::sync("t_hash", "", "transaction table sizes", t_hash),
    CommandDecl {
        name: "t_uac_dlg",
        args: "method, request URI, outbound URI or ., header lines, ., body lines, .",
        help: "send a request statefully; answers with its final reply's status",
        framing: Framing::UacDlg,
        handler: Handler::Async(t_uac_dlg),
    },
    CommandDecl {
        name: "t_reply",
        args: "code, reason, hash:label, To tag or ., header lines, ., body lines, .",
        help: "answer a transaction by its hash:label (a media server behind module vm)",
        framing: Framing::TReply,
        handler: Handler::Async(t_reply),
    },
    // SER's vm module answered through this name.
    CommandDecl {
        name: "vm_reply",
        args: "code, reason, hash:label, To tag or ., header lines, ., body lines, .",
        help: "t_reply under the name SER's vm module used",
        framing: Framing::TReply,
        handler: Handler::Async(t_reply),
    },
];

fn t_reply(host: Arc<dyn Host>, p: Vec<String>) -> ReplyFuture {
    Box::pin(async move {
        let r = match parse_t_reply(&p) {
            Ok(r) => r,
            Err(e) => return e,
        };
        match host.t_reply(r).await {
            Ok(()) => Reply::status(200, "reply sent"),
            Err((code, why)) => Reply::status(code, why),
        }
    })
}

/// `t_reply`'s lines (as [`Framing::TReply`] delivers them): code, reason, `hash:label`, To tag
/// (`.` or empty: ser's own), header lines, `.`, body lines.
pub fn parse_t_reply(p: &[String]) -> Result<crate::proxy::shared::ExternalReply, Reply> {
    let line = |i: usize| p.get(i).map(String::as_str).unwrap_or("");
    let code: u16 = match line(0).trim().parse() {
        Ok(c) if (100..700).contains(&c) => c,
        _ => return Err(bad_params(format!("bad status code: '{}'", line(0)))),
    };
    let Some((shard, txn)) = crate::proxy::shared::parse_trans_id(line(2)) else {
        return Err(bad_params(format!(
            "bad transaction id (hash:label): '{}'",
            line(2)
        )));
    };
    let to_tag = match line(3).trim() {
        "." => String::new(),
        t => t.to_string(),
    };
    let rest = p.get(4..).unwrap_or(&[]);
    let split = rest.iter().position(|l| l == ".").unwrap_or(rest.len());
    let mut headers = String::new();
    for h in rest
        .get(..split)
        .unwrap_or(&[])
        .iter()
        .filter(|l| !l.is_empty())
    {
        if !h.contains(':') {
            return Err(bad_params(format!("bad header line: '{h}'")));
        }
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    let body: String = rest
        .get(split + 1..)
        .unwrap_or(&[])
        .iter()
        .map(|l| format!("{l}\r\n"))
        .collect();
    Ok(crate::proxy::shared::ExternalReply {
        shard,
        txn,
        code,
        reason: line(1).to_string(),
        to_tag,
        headers,
        body: body.into_bytes(),
        done: Box::new(|_| {}),
    })
}

fn t_stats(host: &dyn Host, _: &[String]) -> Reply {
    t_stats_reply(&TStats::from(&host.shared().tm.totals()))
}

fn t_hash(host: &dyn Host, _: &[String]) -> Reply {
    let tm = &host.shared().tm;
    let slots: Vec<HashSlot> = tm
        .table_sizes()
        .iter()
        .enumerate()
        .map(|(i, &current)| HashSlot {
            current,
            total: tm.shard_totals(i).total,
        })
        .collect();
    t_hash_reply(&slots)
}

fn t_uac_dlg(host: Arc<dyn Host>, p: Vec<String>) -> ReplyFuture {
    Box::pin(async move {
        let u = match parse_t_uac_dlg(&p) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let mut headers = String::new();
        for h in &u.headers {
            headers.push_str(h);
            headers.push_str("\r\n");
        }
        // The shards send only to addresses: a host name is located first (RFC 3263, by the
        // host, off the hot path) and the request goes to what it resolved to.
        let hop = u.next_hop.clone().unwrap_or_else(|| u.ruri.clone());
        let next_hop = match host.resolve_hop(hop).await {
            Ok(Some(h)) => Some(h),
            Ok(None) => u.next_hop.clone(),
            Err(e) => return t_uac_dlg_reply(478, &format!("Unresolvable destination ({e})")),
        };
        let req = UacRequest {
            method: u.method,
            ruri: u.ruri,
            headers,
            body: u.body.into_bytes(),
            next_hop,
            done: Box::new(|_| {}),
        };
        match host.t_uac(req).await {
            Ok(r) => t_uac_dlg_reply(r.code, &r.reason),
            Err(why) => Reply::status(500, why),
        }
    })
}

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

impl From<&TmTotals> for TStats {
    fn from(t: &TmTotals) -> TStats {
        TStats {
            current: t.current,
            waiting: t.waiting,
            total: t.total,
            total_local: t.total_local,
            replied_locally: t.replied_locally,
            completed: t.completed,
        }
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

/// Parses `t_uac_dlg`'s lines (as [`Framing::UacDlg`] delivers them: method, request URI,
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
