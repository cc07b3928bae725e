//! Module `enum`'s blocking half: the NAPTR lookup of an ENUM domain and the RFC 3761 / RFC 3402
//! rewrite of the number into a SIP URI (`Job::EnumQuery`, on the DNS thread).
//!
//! - Records used: service `E2U+sip` (RFC 3761; also `E2U+sip:…` subtypes and RFC 2916's
//!   `sip+E2U`, which SER 0.8.11 looked for), flag `u` (terminal), in (order, preference) order;
//!   the first whose regexp matches the number gives the URI. Non-terminal records (empty flags,
//!   a replacement to look up next) are skipped.
//! - Regexp: `<delim>ERE<delim>replacement<delim>[i]`; `\1`…`\9` in the replacement are the
//!   groups, `\\` and `\<delim>` the characters. The expression comes from the network: its
//!   compiled size is bounded and a bad one skips the record (with its reason in the answer).
//! - The result must be a `sip:`/`sips:` URI, checked again by the shard before it is used.

use dataplane::offload::JobResult;
use hickory_resolver::proto::rr::rdata::NAPTR;
use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use crate::dns::{DnsError, SipResolver};

/// Largest compiled regexp a DNS answer may make us build.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Answers a `Job::EnumQuery`: `Names(vec![uri])` or `Failed(why)`.
pub async fn query(resolver: &SipResolver, number: &str, domain: &str) -> JobResult {
    match resolver.naptr_records(domain).await {
        Ok(records) => match choose(records, number) {
            Ok(uri) => JobResult::Names(vec![uri]),
            Err(e) => JobResult::Failed(format!("{domain}: {e}")),
        },
        Err(DnsError::NotFound) => JobResult::Failed(format!("{domain}: no NAPTR records")),
        Err(e) => JobResult::Failed(format!("{domain}: {e}")),
    }
}

fn is_sip_service(services: &[u8]) -> bool {
    let s = String::from_utf8_lossy(services).to_ascii_lowercase();
    s == "e2u+sip" || s.starts_with("e2u+sip:") || s == "sip+e2u"
}

/// The URI from the first usable record, in (order, preference) order.
pub fn choose(mut records: Vec<NAPTR>, number: &str) -> Result<String, String> {
    records.sort_by_key(|r| (r.order, r.preference));
    let mut why = "no E2U+sip record with flag u".to_string();
    for r in records
        .iter()
        .filter(|r| is_sip_service(&r.services) && r.flags.eq_ignore_ascii_case(b"u"))
    {
        match rewrite(&String::from_utf8_lossy(&r.regexp), number) {
            Ok(Some(uri)) => {
                let lower = uri.to_ascii_lowercase();
                if lower.starts_with("sip:") || lower.starts_with("sips:") {
                    return Ok(uri);
                }
                why = format!("the rewrite gives {uri:?}, not a SIP URI");
            }
            Ok(None) => why = format!("no regexp matches {number}"),
            Err(e) => why = e,
        }
    }
    Err(why)
}

/// Applies an RFC 3402 substitution expression to `input`: `Ok(None)` when it does not match.
pub fn rewrite(expr: &str, input: &str) -> Result<Option<String>, String> {
    let mut chars = expr.chars();
    let delim = chars.next().ok_or("empty regexp")?;
    if delim == '\\' || delim.is_ascii_digit() || delim == 'i' {
        return Err(format!("regexp {expr:?}: bad delimiter {delim:?}"));
    }
    // Split at unescaped delimiters; `\<delim>` becomes the delimiter itself.
    let mut parts = vec![String::new()];
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) if n == delim => {
                    let in_pattern = parts.len() == 1;
                    if let Some(p) = parts.last_mut() {
                        if in_pattern {
                            p.push_str(&regex_syntax::escape(&n.to_string()));
                        } else {
                            p.push(n);
                        }
                    }
                }
                Some(n) => {
                    if let Some(p) = parts.last_mut() {
                        p.push('\\');
                        p.push(n);
                    }
                }
                None => return Err(format!("regexp {expr:?} ends with '\\'")),
            },
            c if c == delim => parts.push(String::new()),
            c => {
                if let Some(p) = parts.last_mut() {
                    p.push(c)
                }
            }
        }
    }
    let [pattern, replacement, flags] = &parts[..] else {
        return Err(format!(
            "regexp {expr:?}: expected {delim}pattern{delim}replacement{delim}[flags]"
        ));
    };
    let insensitive = match flags.as_str() {
        "" => false,
        "i" => true,
        f => return Err(format!("regexp {expr:?}: unknown flags {f:?}")),
    };
    let re = Regex::builder()
        .configure(Regex::config().nfa_size_limit(Some(REGEX_SIZE_LIMIT)))
        .syntax(syntax::Config::new().case_insensitive(insensitive))
        .build(pattern)
        .map_err(|e| format!("regexp {expr:?}: {e}"))?;
    let mut caps = re.create_captures();
    re.captures(input, &mut caps);
    if !caps.is_match() {
        return Ok(None);
    }
    let mut out = String::new();
    let mut rc = replacement.chars();
    while let Some(c) = rc.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match rc.next() {
            Some(d @ '1'..='9') => {
                let group = d as usize - '0' as usize;
                if let Some(sp) = caps.get_group(group) {
                    out.push_str(&input[sp.start..sp.end]);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::Name;

    fn rec(order: u16, pref: u16, flags: &str, service: &str, re: &str) -> NAPTR {
        NAPTR::new(
            order,
            pref,
            flags.as_bytes().into(),
            service.as_bytes().into(),
            re.as_bytes().into(),
            Name::root(),
        )
    }

    #[test]
    fn rewrites() {
        assert_eq!(
            rewrite("!^.*$!sip:info@example.com!", "+4412345").unwrap(),
            Some("sip:info@example.com".into())
        );
        assert_eq!(
            rewrite("!^\\+44(.*)$!sip:\\1@uk.example!", "+4412345").unwrap(),
            Some("sip:12345@uk.example".into())
        );
        assert_eq!(rewrite("!^\\+1(.*)$!sip:\\1@x!", "+4412345").unwrap(), None);
        assert_eq!(
            rewrite("/^(.*)$/sip:\\1@a\\/b/", "+1").unwrap(),
            Some("sip:+1@a/b".into())
        );
        assert!(rewrite("!^(.*$!x!", "+1").is_err());
        assert!(rewrite("!a!b", "+1").is_err());
        assert!(rewrite("!a!b!q", "+1").is_err());
    }

    #[test]
    fn order_then_preference_then_service() {
        let recs = vec![
            rec(20, 10, "u", "E2U+sip", "!^.*$!sip:late@x!"),
            rec(10, 20, "u", "E2U+sip", "!^.*$!sip:second@x!"),
            rec(10, 10, "u", "E2U+mailto", "!^.*$!mailto:a@x!"),
            rec(10, 15, "u", "E2U+sip", "!^\\+9.*$!sip:nomatch@x!"),
            rec(10, 5, "", "E2U+sip", "!^.*$!sip:nonterminal@x!"),
        ];
        assert_eq!(choose(recs, "+4412345").unwrap(), "sip:second@x");
        let e = choose(vec![rec(1, 1, "u", "E2U+sip", "!^.*$!mailto:a@x!")], "+1").unwrap_err();
        assert!(e.contains("not a SIP URI"), "{e}");
    }
}
