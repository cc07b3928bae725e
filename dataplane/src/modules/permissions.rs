//! Script module `permissions`: access control lists in the style of tcpd's hosts.allow /
//! hosts.deny, over SIP URIs (SER 0.8.11's permissions module).
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `allow_routing` | - | request | may From reach the Request-URI? (`default_allow_file`, `default_deny_file`) |
//! | `allow_routing` | Str | request | the same with `basename` + `allow_suffix` / `deny_suffix` |
//! | `allow_routing` | Str, Str | request | the same with an allow file and a deny file |
//! | `allow_register` | Str | request | may To register each Contact? (`basename` + suffixes) |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_allow_file` | string | `"permissions.allow"` |
//! | `default_deny_file` | string | `"permissions.deny"` |
//! | `check_all_branches` | int | `1` (every branch of the destination set must be allowed too) |
//! | `allow_suffix` | string | `".allow"` |
//! | `deny_suffix` | string | `".deny"` |
//!
//! Each line of a file is a rule `LEFT : RIGHT`; each side is a list of POSIX extended regular
//! expressions in double quotes (matched case-insensitively against the whole URI), or `ALL`,
//! separated by commas or blanks, optionally followed by `EXCEPT` and a list of exceptions. `#`
//! starts a comment; a `\` at the end of a line continues it. For `allow_routing` LEFT is matched
//! against the From URI and RIGHT against the Request-URI; for `allow_register` LEFT is the To URI
//! (the AOR) and RIGHT each Contact URI.
//!
//! ```text
//! # anybody may call the gateway's numbers, except premium-rate ones
//! ALL : "^sip:[0-9]+@gw\.example\.com$" EXCEPT "^sip:1900.*"
//! "^sip:.*@example\.com$" : ALL
//! ```
//!
//! The decision, as tcpd's: allowed when a rule of the allow file matches; else denied when a rule
//! of the deny file matches; else allowed. `allow_routing` checks the Request-URI and, with
//! `check_all_branches`, every branch appended to the destination set (all must be allowed);
//! `allow_register` checks every Contact of the REGISTER (`Contact: *` and a REGISTER without
//! Contact are allowed: they add nothing).
//!
//! The files are read once, when the program is loaded (start and every reload): the default pair
//! and every pair a call in the script names. A file that does not exist is empty (SER did the
//! same). A file with a syntax error is logged with `path:line:col` and makes every check that
//! uses it fail (false): an access list that cannot be read is not read as "allow". Relative
//! file names (also `basename` + suffix) are taken from the config file's directory, as SER
//! did.

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Insn, Program};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::ser_log;
use crate::shard::log::{L_ERR, L_WARN};

/// Declaration of module `permissions`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "permissions",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "allow_routing",
            &[Str, Str],
            RouteKinds::REQUEST,
            "true if From may reach the Request-URI: default files, basename, or allow and deny files",
        )
        .min(0)
        .implemented_by(allow_routing),
        FunctionDecl::new(
            "allow_register",
            &[Str],
            RouteKinds::REQUEST,
            "true if the REGISTER is allowed: basename of allow/deny files",
        )
        .implemented_by(allow_register),
    ],
    params: &[
        ParamDecl::str("default_allow_file", "permissions.allow"),
        ParamDecl::str("default_deny_file", "permissions.deny"),
        ParamDecl::int("check_all_branches", 1),
        ParamDecl::str("allow_suffix", ".allow"),
        ParamDecl::str("deny_suffix", ".deny"),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "access control lists (allow/deny files)",
    config: Some(resolve_config),
    commands: &[],
};

// ------------------------------------------------------------------------------------- rules

/// One side of a rule: `ALL` or regexes, minus the exceptions.
#[derive(Debug, Clone)]
struct Side {
    all: bool,
    items: Vec<Regex>,
    except: Vec<Regex>,
}

impl Side {
    fn matches(&self, s: &[u8]) -> bool {
        (self.all || self.items.iter().any(|r| r.is_match(s)))
            && !self.except.iter().any(|r| r.is_match(s))
    }
}

/// `LEFT : RIGHT`.
#[derive(Debug, Clone)]
struct Rule {
    left: Side,
    right: Side,
}

/// The rules of one file, or why it could not be read.
#[derive(Debug, Clone)]
struct RuleFile {
    path: String,
    rules: Result<Vec<Rule>, String>,
}

impl RuleFile {
    fn load(path: &str) -> RuleFile {
        let rules = match std::fs::read(path) {
            Ok(bytes) => parse(path, &String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ser_log!(L_WARN, "permissions: {path} does not exist: no rules in it");
                Ok(Vec::new())
            }
            Err(e) => Err(format!("{path}: cannot read: {e}")),
        };
        if let Err(e) = &rules {
            ser_log!(L_ERR, "permissions: {e} (checks using it will fail)");
        }
        RuleFile {
            path: path.to_string(),
            rules,
        }
    }

    /// Whether a rule matches; `Err` when the file is unusable.
    fn matches(&self, left: &[u8], right: &[u8]) -> Result<bool, &str> {
        match &self.rules {
            Ok(rules) => Ok(rules
                .iter()
                .any(|r| r.left.matches(left) && r.right.matches(right))),
            Err(e) => Err(e),
        }
    }
}

/// An allow file and a deny file.
#[derive(Debug, Clone)]
struct FilePair {
    allow: RuleFile,
    deny: RuleFile,
}

impl FilePair {
    /// Reads `allow` and `deny`, relative names from `dir` (the config file's directory).
    fn load(dir: Option<&Path>, allow: &str, deny: &str) -> FilePair {
        let path = |name: &str| file_path(dir, name).display().to_string();
        FilePair {
            allow: RuleFile::load(&path(allow)),
            deny: RuleFile::load(&path(deny)),
        }
    }

    /// tcpd's decision for one (left, right) pair; `Err` when a file is unusable.
    fn allows(&self, left: &[u8], right: &[u8]) -> Result<bool, &str> {
        if self.allow.matches(left, right)? {
            return Ok(true);
        }
        Ok(!self.deny.matches(left, right)?)
    }
}

/// Where a file named `name` is: relative names from `dir` (the config file's directory).
fn file_path(dir: Option<&Path>, name: &str) -> PathBuf {
    match dir {
        Some(d) if !Path::new(name).is_absolute() => d.join(name),
        _ => PathBuf::from(name),
    }
}

/// A token of a rule line, with its column (1-based).
#[derive(Debug, PartialEq, Eq)]
enum Token {
    All,
    Except,
    Colon,
    Regex(String),
}

fn tokens(line: &str) -> Result<Vec<(Token, usize)>, (usize, String)> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b',' | b'\r' => i += 1,
            b'#' => break,
            b':' => {
                out.push((Token::Colon, i + 1));
                i += 1;
            }
            b'"' => {
                let start = i;
                let mut s = String::new();
                i += 1;
                let mut closed = false;
                while i < b.len() {
                    match b[i] {
                        b'\\' if b.get(i + 1) == Some(&b'"') => {
                            s.push('"');
                            i += 2;
                        }
                        b'"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => {
                            // Multi-byte characters are copied whole (the line is valid UTF-8).
                            let ch = line[i..].chars().next().unwrap_or('\u{fffd}');
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                if !closed {
                    return Err((start + 1, "unterminated \"".into()));
                }
                out.push((Token::Regex(s), start + 1));
            }
            _ => {
                let start = i;
                while i < b.len() && !matches!(b[i], b' ' | b'\t' | b',' | b':' | b'"' | b'#') {
                    i += 1;
                }
                let word = &line[start..i];
                let t = if word.eq_ignore_ascii_case("ALL") {
                    Token::All
                } else if word.eq_ignore_ascii_case("EXCEPT") {
                    Token::Except
                } else {
                    return Err((
                        start + 1,
                        format!("unexpected '{word}' (expected ALL, EXCEPT, ':' or a \"regex\")"),
                    ));
                };
                out.push((t, start + 1));
            }
        }
    }
    Ok(out)
}

fn compile(pattern: &str) -> Result<Regex, String> {
    // As SER: POSIX extended, case-insensitive, over bytes.
    let cfg = syntax::Config::new()
        .case_insensitive(true)
        .unicode(false)
        .utf8(false);
    Regex::builder()
        .syntax(cfg)
        .build(pattern)
        .map_err(|e| format!("invalid regular expression \"{pattern}\": {e}"))
}

fn side(toks: &[(Token, usize)], end_col: usize) -> Result<Side, (usize, String)> {
    let mut s = Side {
        all: false,
        items: Vec::new(),
        except: Vec::new(),
    };
    let mut in_except = false;
    for (t, col) in toks {
        match t {
            Token::All if !in_except => s.all = true,
            Token::All => return Err((*col, "ALL after EXCEPT".into())),
            Token::Except if in_except => return Err((*col, "EXCEPT twice".into())),
            Token::Except => in_except = true,
            Token::Regex(r) => {
                let re = compile(r).map_err(|e| (*col, e))?;
                if in_except {
                    s.except.push(re);
                } else {
                    s.items.push(re);
                }
            }
            Token::Colon => return Err((*col, "':' twice".into())),
        }
    }
    if !s.all && s.items.is_empty() {
        return Err((end_col, "empty list (give ALL or a \"regex\")".into()));
    }
    if in_except && s.except.is_empty() {
        return Err((end_col, "nothing after EXCEPT".into()));
    }
    Ok(s)
}

/// The rules of a file's text; the first error as `path:line:col: what`.
fn parse(path: &str, text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    let mut logical = String::new();
    let mut first_line = 0;
    for (n, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            first_line = n + 1;
        }
        let raw = raw.trim_end_matches('\r');
        // A `\` at the end (outside a comment) continues the rule on the next line.
        if let Some(head) = raw.strip_suffix('\\').filter(|h| !h.contains('#')) {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let at = |(col, why): (usize, String)| format!("{path}:{first_line}:{col}: {why}");
        let toks = tokens(&line).map_err(at)?;
        if toks.is_empty() {
            continue;
        }
        let Some(colon) = toks.iter().position(|(t, _)| *t == Token::Colon) else {
            return Err(at((
                line.len().max(1),
                "missing ':' between the two lists".into(),
            )));
        };
        let colon_col = toks[colon].1;
        let left = side(&toks[..colon], colon_col).map_err(at)?;
        let right = side(&toks[colon + 1..], line.len().max(1)).map_err(at)?;
        rules.push(Rule { left, right });
    }
    if !logical.is_empty() {
        return Err(format!(
            "{path}:{first_line}:1: the file ends inside a continued line"
        ));
    }
    Ok(rules)
}

/// Checks a rule file's text with the parser the module loads it with: the number of rules, or
/// the first error as `path:line:col: what` (the web UI checks before it writes a file).
pub fn check(path: &str, text: &str) -> Result<usize, String> {
    parse(path, text).map(|r| r.len())
}

/// The rule files `program` reads when it is loaded, allow file before deny file: the default
/// pair and every pair its calls name, each once. None when the program does not load the module.
pub fn rule_files(program: &Program) -> Vec<PathBuf> {
    let Some(id) = super::ALL.iter().position(|m| std::ptr::eq(*m, &MODULE)) else {
        return Vec::new();
    };
    let id = crate::script::ModuleId(id as u16);
    if program.module(id).is_none() {
        return Vec::new();
    }
    let p = Some(program);
    let text = |name, d: &'static str| {
        super::param(p, &MODULE, name)
            .and_then(|v| v.str())
            .unwrap_or(d)
            .to_owned()
    };
    let dir = program.config_dir.as_deref();
    let (allow_suffix, deny_suffix) =
        (text("allow_suffix", ".allow"), text("deny_suffix", ".deny"));
    let mut names = vec![
        text("default_allow_file", "permissions.allow"),
        text("default_deny_file", "permissions.deny"),
    ];
    for block in &program.routes {
        for insn in &block.code {
            let Insn::Call(c) = insn else { continue };
            if !std::ptr::eq(c.decl, &MODULE) {
                continue;
            }
            match (arg_str(&c.args, 0), arg_str(&c.args, 1)) {
                (Some(a), Some(b)) => names.extend([a.to_string(), b.to_string()]),
                (Some(a), None) => {
                    names.extend([format!("{a}{allow_suffix}"), format!("{a}{deny_suffix}")])
                }
                _ => {}
            }
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    for n in names {
        let f = file_path(dir, &n);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

// ------------------------------------------------------------------------------------- settings

/// permissions' settings, resolved (files read) once per loaded program.
#[derive(Debug, Clone)]
pub struct PermissionsConfig {
    check_all_branches: bool,
    allow_suffix: String,
    deny_suffix: String,
    /// Where relative file names are read from (the config file's directory).
    dir: Option<PathBuf>,
    default: FilePair,
    /// The pairs the script's calls name, by the call's arguments.
    named: Vec<(String, Option<String>, Arc<FilePair>)>,
}

impl PermissionsConfig {
    /// The settings of `program`, with every file its calls name read (defaults without one).
    pub fn resolve(program: Option<&Program>) -> PermissionsConfig {
        let param = |name| super::param(program, &MODULE, name);
        let text = |name, d: &str| param(name).and_then(|p| p.str()).unwrap_or(d).to_owned();
        let dir = program.and_then(|p| p.config_dir.clone());
        let mut cfg = PermissionsConfig {
            check_all_branches: param("check_all_branches")
                .and_then(|p| p.int())
                .unwrap_or(1)
                != 0,
            allow_suffix: text("allow_suffix", ".allow"),
            deny_suffix: text("deny_suffix", ".deny"),
            default: FilePair::load(
                dir.as_deref(),
                &text("default_allow_file", "permissions.allow"),
                &text("default_deny_file", "permissions.deny"),
            ),
            named: Vec::new(),
            dir,
        };
        let Some(program) = program else { return cfg };
        for block in &program.routes {
            for insn in &block.code {
                let Insn::Call(c) = insn else { continue };
                if !std::ptr::eq(c.decl, &MODULE) {
                    continue;
                }
                let (a, b) = (arg_str(&c.args, 0), arg_str(&c.args, 1));
                let Some(a) = a else { continue };
                if cfg.find(a, b).is_some() {
                    continue;
                }
                let pair = match b {
                    Some(deny) => FilePair::load(cfg.dir.as_deref(), a, deny),
                    None => FilePair::load(
                        cfg.dir.as_deref(),
                        &format!("{a}{}", cfg.allow_suffix),
                        &format!("{a}{}", cfg.deny_suffix),
                    ),
                };
                cfg.named
                    .push((a.to_string(), b.map(str::to_string), Arc::new(pair)));
            }
        }
        cfg
    }

    fn find(&self, a: &str, b: Option<&str>) -> Option<&FilePair> {
        self.named
            .iter()
            .find(|(x, y, _)| x == a && y.as_deref() == b)
            .map(|(_, _, p)| &**p)
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(PermissionsConfig::resolve(Some(program)))
}

fn arg_str(args: &[Arg], i: usize) -> Option<&str> {
    match args.get(i) {
        Some(Arg::Str(s)) => Some(s),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------- functions

fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, msg: &str) {
    if ctx.log_enabled(lvl) {
        env.log(lvl, msg.as_bytes());
    }
}

/// The file pair of a call: named by its arguments, else the default one. A pair the load did not
/// see (a mock environment resolving per call) is read now.
fn pair_of<'c>(cfg: &'c PermissionsConfig, args: &[Arg]) -> std::borrow::Cow<'c, FilePair> {
    match arg_str(args, 0) {
        None => std::borrow::Cow::Borrowed(&cfg.default),
        Some(a) => {
            let b = arg_str(args, 1);
            match cfg.find(a, b) {
                Some(p) => std::borrow::Cow::Borrowed(p),
                None => std::borrow::Cow::Owned(match b {
                    Some(d) => FilePair::load(cfg.dir.as_deref(), a, d),
                    None => FilePair::load(
                        cfg.dir.as_deref(),
                        &format!("{a}{}", cfg.allow_suffix),
                        &format!("{a}{}", cfg.deny_suffix),
                    ),
                }),
            }
        }
    }
}

/// `allow_routing()`, `allow_routing(basename)`, `allow_routing(allow_file, deny_file)`.
fn allow_routing(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    // Ok(None): allowed; Ok(Some(file)): denied by that deny file.
    let verdict: Result<Option<String>, String> = match ctx.msg.from() {
        Err(_) => Err("cannot parse the From header".into()),
        Ok(f) => {
            let cfg = crate::script::config(&*env, PermissionsConfig::resolve);
            let pair = pair_of(&cfg, args);
            let mut v = pair.allows(f.uri_raw, ctx.uri());
            if cfg.check_all_branches {
                for b in ctx.dset().iter() {
                    if !matches!(v, Ok(true)) {
                        break;
                    }
                    v = pair.allows(f.uri_raw, b);
                }
            }
            match v {
                Ok(true) => Ok(None),
                Ok(false) => Ok(Some(pair.deny.path.clone())),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match verdict {
        Ok(None) => ActionResult::Ret(1),
        Ok(Some(file)) => {
            log(
                ctx,
                env,
                level::INFO,
                &format!("allow_routing: denied by {file}"),
            );
            ActionResult::Ret(-1)
        }
        Err(e) => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("ERROR: allow_routing: {e}: denied"),
            );
            ActionResult::Ret(-1)
        }
    }
}

/// `allow_register(basename)`.
fn allow_register(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    if ctx.msg.method() != crate::wire::Method::Register {
        log(
            ctx,
            env,
            level::ERR,
            "ERROR: allow_register: the request is not a REGISTER",
        );
        return ActionResult::Ret(-1);
    }
    // Ok(None): allowed; Ok(Some(file)): a Contact is denied by that deny file.
    let verdict: Result<Option<String>, String> = {
        let cfg = crate::script::config(&*env, PermissionsConfig::resolve);
        let pair = pair_of(&cfg, args);
        match ctx.msg.to() {
            Err(_) => Err("cannot parse the To header".into()),
            Ok(_) if ctx.msg.contact_is_star().unwrap_or(false) => Ok(None),
            Ok(to) => {
                let mut v = Ok(None);
                for c in ctx.msg.contacts() {
                    match c {
                        Ok(c) => match pair.allows(to.uri_raw, c.value.addr.uri_raw) {
                            Ok(true) => {}
                            Ok(false) => {
                                v = Ok(Some(pair.deny.path.clone()));
                                break;
                            }
                            Err(e) => {
                                v = Err(e.to_string());
                                break;
                            }
                        },
                        Err(_) => {
                            v = Err("cannot parse a Contact header".into());
                            break;
                        }
                    }
                }
                v
            }
        }
    };
    match verdict {
        Ok(None) => ActionResult::Ret(1),
        Ok(Some(file)) => {
            log(
                ctx,
                env,
                level::INFO,
                &format!("allow_register: a Contact is denied by {file}"),
            );
            ActionResult::Ret(-1)
        }
        Err(e) => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("ERROR: allow_register: {e}: denied"),
            );
            ActionResult::Ret(-1)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Vec<Rule>, String> {
        parse("t.allow", text)
    }

    #[test]
    fn rules_parse_with_all_except_comments_and_continuations() {
        let r = rules(
            "# comment\n\nALL : \"^sip:[0-9]+@gw$\" EXCEPT \"^sip:1900\"\n\
             \"^sip:a@x$\", \"^sip:b@x$\" : \\\n  ALL # trailing\n",
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].left.matches(b"sip:anyone@anywhere"));
        assert!(r[0].right.matches(b"sip:123@gw"));
        assert!(r[0].right.matches(b"SIP:123@GW"), "case-insensitive");
        assert!(!r[0].right.matches(b"sip:1900123@gw"), "EXCEPT");
        assert!(r[1].left.matches(b"sip:b@x") && !r[1].left.matches(b"sip:c@x"));
        assert!(r[1].right.matches(b"sip:whatever"));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        assert_eq!(
            rules("ALL : ALL\n\"^sip:(\" : ALL\n")
                .unwrap_err()
                .split(": invalid")
                .next(),
            Some("t.allow:2:1")
        );
        assert_eq!(
            rules("ALL \"x\"\n").unwrap_err(),
            "t.allow:1:7: missing ':' between the two lists"
        );
        assert_eq!(
            rules("ALL : allow\n").unwrap_err(),
            "t.allow:1:7: unexpected 'allow' (expected ALL, EXCEPT, ':' or a \"regex\")"
        );
        assert_eq!(
            rules(" : ALL\n").unwrap_err(),
            "t.allow:1:2: empty list (give ALL or a \"regex\")"
        );
        assert!(rules("ALL : \"unterminated\n")
            .unwrap_err()
            .starts_with("t.allow:1:7:"));
        assert!(
            rules("ALL : EXCEPT \"x\"\n").is_err(),
            "EXCEPT without items"
        );
    }

    #[test]
    fn allow_wins_then_deny_then_default_allow() {
        let pair = FilePair {
            allow: RuleFile {
                path: "a".into(),
                rules: rules("\"^sip:boss@\" : ALL\n"),
            },
            deny: RuleFile {
                path: "d".into(),
                rules: rules("ALL : \"^sip:900\"\n"),
            },
        };
        assert_eq!(pair.allows(b"sip:boss@x", b"sip:900@gw"), Ok(true));
        assert_eq!(pair.allows(b"sip:joe@x", b"sip:900@gw"), Ok(false));
        assert_eq!(pair.allows(b"sip:joe@x", b"sip:123@gw"), Ok(true));
        let broken = FilePair {
            allow: RuleFile {
                path: "a".into(),
                rules: Err("a:1:1: broken".into()),
            },
            deny: pair.deny.clone(),
        };
        assert!(
            broken.allows(b"sip:joe@x", b"sip:123@gw").is_err(),
            "fails closed"
        );
    }
}
