//! Load-time checks shared by the lowering pass: the core action table, argument fix-up helpers,
//! regex compilation with POSIX-style error wording, arity messages.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use dataplane::script::RouteKinds;

use super::ast::{Arg, Val};

/// A built-in action: name, arity, where it may be used.
pub(crate) struct CoreDecl {
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
    pub routes: RouteKinds,
    pub reason: Option<&'static str>,
}

const fn core(name: &'static str, min: usize, max: usize) -> CoreDecl {
    CoreDecl {
        name,
        min,
        max,
        routes: RouteKinds::ANY,
        reason: None,
    }
}

const fn stateless(name: &'static str, reason: &'static str) -> CoreDecl {
    CoreDecl {
        name,
        min: 1,
        max: 2,
        routes: RouteKinds::REQUEST,
        reason: Some(reason),
    }
}

/// Every core action of SER 0.8.11 (Admin Guide 6.2), synonyms included.
pub(crate) static CORE: &[CoreDecl] = &[
    stateless("forward", "stateless forwarding; use t_relay"),
    stateless("forward_udp", "stateless forwarding; use t_relay_to_udp"),
    stateless("forward_tcp", "stateless forwarding; use t_relay_to_tcp"),
    stateless("send", "stateless sending; use t_relay"),
    stateless("send_tcp", "stateless sending; use t_relay_to_tcp"),
    core("log", 1, 2),
    core("setflag", 1, 1),
    core("resetflag", 1, 1),
    core("isflagset", 1, 1),
    core("rewritehost", 1, 1),
    core("sethost", 1, 1),
    core("seth", 1, 1),
    core("rewritehostport", 1, 1),
    core("sethostport", 1, 1),
    core("sethp", 1, 1),
    core("rewriteuser", 1, 1),
    core("setuser", 1, 1),
    core("setu", 1, 1),
    core("rewriteuserpass", 1, 1),
    core("setuserpass", 1, 1),
    core("setup", 1, 1),
    core("rewriteport", 1, 1),
    core("setport", 1, 1),
    core("setp", 1, 1),
    core("rewriteuri", 1, 1),
    core("seturi", 1, 1),
    core("revert_uri", 0, 0),
    core("prefix", 1, 1),
    core("strip", 1, 1),
    core("append_branch", 0, 1),
    core("len_gt", 1, 1),
    core("route", 1, 1),
    core("break", 0, 0),
    core("drop", 0, 0),
];

/// Core action by name.
pub(crate) fn core_action(name: &str) -> Option<&'static CoreDecl> {
    CORE.iter().find(|c| c.name == name)
}

/// "takes 2 arguments, 1 given" and friends; `None` if the count is fine.
pub(crate) fn arity_message(name: &str, min: usize, max: usize, given: usize) -> Option<String> {
    if (min..=max).contains(&given) {
        return None;
    }
    let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
    let takes = if max == 0 {
        "takes no arguments".to_string()
    } else if min == max {
        format!("takes {min} {}", plural(min))
    } else if max == min + 1 {
        format!("takes {min} or {max} arguments")
    } else {
        format!("takes {min} to {max} arguments")
    };
    Some(format!("{name} {takes}, {given} given"))
}

/// A value as text, if it is text-like (strings, numbers, words, addresses).
pub(crate) fn text(arg: &Arg) -> Option<String> {
    match &arg.val {
        Val::Str(s) | Val::Word(s) => Some(s.clone()),
        Val::Int(n) => Some(n.to_string()),
        Val::Ip(a) => Some(a.to_string()),
        Val::Net(..) | Val::Colon(_) => None,
    }
}

/// A value as an integer: a number, or a string holding one (module arguments are quoted).
pub(crate) fn int(arg: &Arg) -> Option<i64> {
    match &arg.val {
        Val::Int(n) => Some(*n),
        Val::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// How a value is shown in messages.
pub(crate) fn describe(v: &Val) -> String {
    match v {
        Val::Int(n) => format!("number {n}"),
        Val::Str(s) => format!("\"{s}\""),
        Val::Word(w) => format!("'{w}'"),
        Val::Ip(a) => format!("address {a}"),
        Val::Net(a, l) => format!("network {a}/{l}"),
        Val::Colon(parts) => parts.iter().map(describe).collect::<Vec<_>>().join(":"),
    }
}

/// Compile a script regex as SER did: POSIX extended, case-insensitive (REG_ICASE), matching bytes.
/// `multi_line` is REG_NEWLINE (textops): `^`/`$` at line ends and `.` not crossing a newline.
/// The error text follows the POSIX/glibc wording users know ("unterminated '[' bracket expression").
pub(crate) fn compile_regex(pattern: &str, multi_line: bool) -> Result<Regex, String> {
    let cfg = syntax::Config::new()
        .case_insensitive(true)
        .unicode(false)
        .utf8(false)
        .multi_line(multi_line)
        .dot_matches_new_line(!multi_line);
    Regex::builder().syntax(cfg).build(pattern).map_err(|e| {
        let why = match e.syntax_error() {
            Some(regex_syntax::Error::Parse(pe)) => posix_wording(pe.kind()),
            Some(other) => other.to_string(),
            None => e.to_string(),
        };
        format!("invalid regular expression: {why}")
    })
}

fn posix_wording(kind: &regex_syntax::ast::ErrorKind) -> String {
    use regex_syntax::ast::ErrorKind as K;
    match kind {
        K::ClassUnclosed => "unterminated '[' bracket expression".into(),
        K::GroupUnclosed => "unmatched '(' (parenthesis not closed)".into(),
        K::GroupUnopened => "unmatched ')' (no '(' before it)".into(),
        K::RepetitionMissing => {
            "repetition operator ('*', '+', '?' or '{') has nothing to repeat".into()
        }
        K::RepetitionCountUnclosed
        | K::RepetitionCountInvalid
        | K::RepetitionCountDecimalEmpty
        | K::DecimalEmpty
        | K::DecimalInvalid => "invalid contents of '{}' repetition count".into(),
        K::ClassRangeInvalid | K::ClassRangeLiteral => {
            "invalid range end in bracket expression".into()
        }
        K::EscapeUnexpectedEof => "trailing backslash".into(),
        K::EscapeUnrecognized
        | K::EscapeHexEmpty
        | K::EscapeHexInvalid
        | K::EscapeHexInvalidDigit => "invalid escape sequence".into(),
        K::ClassEscapeInvalid => "invalid escape sequence in bracket expression".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_case_insensitive_posix_like() {
        let re = compile_regex(
            r"^sip:(.+@)?(192\.168\.0\.10|(sip\.)?foo\.bar)([:;\?].*)?$",
            false,
        )
        .unwrap();
        assert!(re.is_match("sip:a@FoO.bAr"));
        assert!(re.is_match("sip:foo.bar:5060"));
        let re = compile_regex("[@:\\.]domain.foo", false).unwrap();
        assert!(re.is_match("sip:x@DOMAIN.foo"));
        let re = compile_regex("^(f|From):.*foo.bar", true).unwrap();
        assert!(re.is_match("Via: x\r\nFrom: <sip:a@foo.bar>\r\n"));
    }

    #[test]
    fn regex_errors_use_posix_wording() {
        assert_eq!(
            compile_regex("sip:.*[@:iptel.org", false).unwrap_err(),
            "invalid regular expression: unterminated '[' bracket expression"
        );
        assert!(compile_regex("(a", false)
            .unwrap_err()
            .contains("unmatched '('"));
        assert!(compile_regex("a)", false)
            .unwrap_err()
            .contains("unmatched ')'"));
        assert!(compile_regex("*a", false)
            .unwrap_err()
            .contains("nothing to repeat"));
    }

    #[test]
    fn arity_wording() {
        assert_eq!(
            arity_message("sl_send_reply", 2, 2, 1).unwrap(),
            "sl_send_reply takes 2 arguments, 1 given"
        );
        assert_eq!(
            arity_message("t_relay", 0, 0, 1).unwrap(),
            "t_relay takes no arguments, 1 given"
        );
        assert_eq!(
            arity_message("log", 1, 2, 3).unwrap(),
            "log takes 1 or 2 arguments, 3 given"
        );
        assert_eq!(
            arity_message("strip", 1, 1, 0).unwrap(),
            "strip takes 1 argument, 0 given"
        );
        assert!(arity_message("log", 1, 2, 2).is_none());
    }
}
