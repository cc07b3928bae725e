//! Script module `pdt`: prefix-to-domain translation. A number dialled as the Request-URI's user
//! (`sip:0049301234@gw`) names, by its longest known prefix, the domain the request goes to.
//!
//! `prefix2domain([mode])`: when the module's `prefix` is set, the user must start with it (else
//! nothing changes, true). The digits after it (the characters of `char_list`) are matched against
//! the prefixes of the `pdt` table, longest first; no match is false. The host (and port) of the
//! Request-URI become the prefix's domain, and the user loses `prefix` and the matched prefix
//! (mode 0, the default), only `prefix` (mode 1), or nothing (mode 2). A user without digits, or a
//! URI without user, is left alone (true).
//!
//! The table (`prefix`, `domain` columns; each prefix and each domain once) is read from the
//! database on first use, through a job (the shard never waits), and kept in memory shared by all
//! shards. The management commands change memory and database together: a change is visible to
//! the next request and persisted.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `prefix2domain` | [Int] | request, failure | rewrite the URI host from the number prefix: mode 0, 1 or 2 |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_table` | string | `"pdt"` |
//! | `prefix_column` | string | `"prefix"` |
//! | `domain_column` | string | `"domain"` |
//! | `prefix` | string | `""` (every user is looked up) |
//! | `char_list` | string | `"0123456789"` (what a prefix is made of) |
//! | `start_range` | int | `2000` (0.8.11's code generator; accepted, no effect) |
//! | `hsize_2pow`, `sync_time`, `clean_time` | int | accepted, no effect (one shared table: changes need no sync) |
//!
//! | command | parameters | reply |
//! |---|---|---|
//! | `pdt_add` | prefix, domain | `200 ok`; `400 Prefix Or Domain Exists`, `400 Bad Prefix` |
//! | `pdt_delete` | domain | `200 ok`; `404 Domain Not Found` |
//! | `pdt_list` | [prefix], [domain] (`.` = any) | `<prefix> <domain>` per pair whose prefix or domain starts with the ones given |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use serde_json::json;

use crate::command::{text_param, CommandDecl, Host, Reply};
use crate::offload::{DbWrite, Job, JobResult};
use crate::script::env::{level, ActionResult, Env};
use crate::script::ir::{Arg, Program};
use crate::script::uri_ops::{rewrite, strip_user, UriPart};
use crate::script::{
    ArgKind::*, Ctx, FunctionDecl, ModuleConfig, ModuleDecl, ParamDecl, RouteKinds,
};
use crate::wire::uri::Uri;

/// Declaration of module `pdt`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "pdt",
    aliases: &[],
    depends: &[],
    functions: &[FunctionDecl::new(
        "prefix2domain",
        &[Int],
        RouteKinds::REQUEST_FAILURE,
        "rewrite the URI host from the number prefix: mode 0, 1 or 2",
    )
    .min(0)
    .implemented_by(prefix2domain)],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("db_table", "pdt"),
        ParamDecl::str("prefix_column", "prefix"),
        ParamDecl::str("domain_column", "domain"),
        ParamDecl::str("prefix", ""),
        ParamDecl::str("char_list", "0123456789"),
        ParamDecl::int("start_range", 2000),
        ParamDecl::int("hsize_2pow", 4),
        ParamDecl::int("sync_time", 600),
        ParamDecl::int("clean_time", 900),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "prefix-to-domain translation",
    config: Some(resolve_config),
    commands: &[
        CommandDecl::sync(
            "pdt_add",
            "prefix, domain",
            "add a prefix-domain pair",
            pdt_add,
        ),
        CommandDecl::sync(
            "pdt_delete",
            "domain",
            "remove a domain and its prefix",
            pdt_delete,
        ),
        CommandDecl::sync(
            "pdt_list",
            "[prefix], [domain] (. = any)",
            "list the prefix-domain pairs",
            pdt_list,
        ),
    ],
};

// ------------------------------------------------------------------------------------- settings

/// pdt's settings, resolved once per loaded program.
#[derive(Debug, Clone)]
pub struct PdtConfig {
    db_url: String,
    table: String,
    prefix_col: String,
    domain_col: String,
    prefix: String,
    /// Bytes a prefix is made of.
    chars: [bool; 256],
}

impl PdtConfig {
    /// The settings of `program` (defaults without one).
    pub fn resolve(program: Option<&Program>) -> PdtConfig {
        let text = |name, d: &str| {
            super::param(program, &MODULE, name)
                .and_then(|p| p.str())
                .unwrap_or(d)
                .to_owned()
        };
        let mut chars = [false; 256];
        for b in text("char_list", "0123456789").bytes() {
            chars[usize::from(b)] = true;
        }
        PdtConfig {
            db_url: text("db_url", ""),
            table: text("db_table", "pdt"),
            prefix_col: text("prefix_column", "prefix"),
            domain_col: text("domain_column", "domain"),
            prefix: text("prefix", ""),
            chars,
        }
    }

    fn is_prefix(&self, s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| self.chars[usize::from(b)])
    }

    fn select(&self) -> Job {
        Job::Db {
            url: self.db_url.clone(),
            table: self.table.clone(),
            keys: Vec::new(),
            columns: vec![self.prefix_col.clone(), self.domain_col.clone()],
        }
    }
}

fn resolve_config(program: &Program) -> ModuleConfig {
    Arc::new(PdtConfig::resolve(Some(program)))
}

// ------------------------------------------------------------------------------------- the table

/// The pairs of one table (prefix → domain), as loaded and changed since.
#[derive(Debug, Clone, Default)]
struct Pairs {
    /// Where they come from: (db_url, table).
    source: (String, String),
    by_prefix: BTreeMap<String, String>,
    longest: usize,
}

impl Pairs {
    fn of_rows(source: (String, String), rows: &[Vec<Option<String>>]) -> Pairs {
        let mut p = Pairs {
            source,
            ..Pairs::default()
        };
        for r in rows {
            if let (Some(Some(prefix)), Some(Some(domain))) = (r.first(), r.get(1)) {
                p.insert(prefix, domain);
            }
        }
        p
    }

    fn insert(&mut self, prefix: &str, domain: &str) {
        self.longest = self.longest.max(prefix.len());
        self.by_prefix.insert(prefix.to_owned(), domain.to_owned());
    }

    fn prefix_of_domain(&self, domain: &str) -> Option<&str> {
        self.by_prefix
            .iter()
            .find(|(_, d)| d.eq_ignore_ascii_case(domain))
            .map(|(p, _)| p.as_str())
    }

    /// The longest prefix of `digits` in the table, and its domain.
    fn longest_match<'a>(&'a self, digits: &str) -> Option<(usize, &'a str)> {
        (1..=digits.len().min(self.longest)).rev().find_map(|n| {
            let p = digits.get(..n)?;
            self.by_prefix.get(p).map(|d| (n, d.as_str()))
        })
    }
}

/// pdt's shared state ([`crate::services::Services::store`]): the pairs every shard reads without
/// a lock, swapped whole when management changes them; `None` until loaded.
#[derive(Default)]
pub struct PdtStore {
    pairs: ArcSwapOption<Pairs>,
    /// Serialises management's changes (never taken by a shard).
    writer: Mutex<()>,
}

impl PdtStore {
    /// The pairs loaded from `cfg`'s table, if they are.
    fn current(&self, cfg: &PdtConfig) -> Option<Arc<Pairs>> {
        self.pairs
            .load_full()
            .filter(|p| p.source.0 == cfg.db_url && p.source.1 == cfg.table)
    }

    /// Installs a load's answer unless someone installed pairs of the same table meanwhile;
    /// what is current after.
    fn install(&self, pairs: Pairs) -> Arc<Pairs> {
        let new = Arc::new(pairs);
        let seen = self.pairs.load_full();
        if let Some(p) = seen.as_ref().filter(|p| p.source == new.source) {
            return Arc::clone(p);
        }
        let prev = self.pairs.compare_and_swap(&seen, Some(Arc::clone(&new)));
        let prev: Option<Arc<Pairs>> = (*prev).clone();
        let ours = match (&prev, &seen) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        match prev {
            // Someone else's went in first: theirs stands.
            Some(p) if !ours => p,
            _ => new,
        }
    }
}

// ------------------------------------------------------------------------------------- function

fn log(ctx: &Ctx, env: &mut dyn Env, lvl: i32, msg: &str) {
    if ctx.log_enabled(lvl) {
        env.log(lvl, msg.as_bytes());
    }
}

/// `prefix2domain([mode])`.
fn prefix2domain(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg]) -> ActionResult {
    let cfg = crate::script::config(env, PdtConfig::resolve).into_owned();
    let Some(store) = env.services().map(|s| s.store::<PdtStore>()) else {
        return ActionResult::Ret(-1);
    };
    match store.current(&cfg) {
        Some(pairs) => translate(ctx, env, &cfg, &pairs, args),
        // The table is read once, off the shard; the call finishes when it is in.
        None => ctx.suspend_with(cfg.select(), loaded),
    }
}

/// Resumes `prefix2domain` with the table's rows.
fn loaded(ctx: &mut Ctx, env: &mut dyn Env, args: &[Arg], result: JobResult) -> ActionResult {
    let cfg = crate::script::config(env, PdtConfig::resolve).into_owned();
    let Some(store) = env.services().map(|s| s.store::<PdtStore>()) else {
        return ActionResult::Ret(-1);
    };
    let pairs = match result {
        JobResult::Rows(rows) => store.install(Pairs::of_rows(
            (cfg.db_url.clone(), cfg.table.clone()),
            &rows,
        )),
        other => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("prefix2domain: cannot read table {}: {other:?}", cfg.table),
            );
            return ActionResult::Ret(-1);
        }
    };
    translate(ctx, env, &cfg, &pairs, args)
}

fn translate(
    ctx: &mut Ctx,
    env: &mut dyn Env,
    cfg: &PdtConfig,
    pairs: &Pairs,
    args: &[Arg],
) -> ActionResult {
    let mode = match args.first() {
        Some(Arg::Int(m)) => *m,
        _ => 0,
    };
    let uri: crate::script::ctx::UriBuf = smallvec::SmallVec::from_slice(ctx.uri());
    let Ok(parsed) = Uri::parse(&uri) else {
        log(ctx, env, level::ERR, "prefix2domain: bad Request-URI");
        return ActionResult::Ret(-1);
    };
    let user = std::str::from_utf8(parsed.user.unwrap_or_default()).unwrap_or("");
    if user.is_empty() {
        return ActionResult::Ret(1);
    }
    let pre = cfg.prefix.as_str();
    let rest = match user.get(..pre.len()) {
        Some(head) if head.eq_ignore_ascii_case(pre) => &user[pre.len()..],
        // A shorter user cannot carry the prefix and a number.
        None => return ActionResult::Ret(-1),
        Some(_) => return ActionResult::Ret(1),
    };
    let digits_end = rest
        .bytes()
        .position(|b| !cfg.chars[usize::from(b)])
        .unwrap_or(rest.len());
    let Some((plen, domain)) = pairs.longest_match(&rest[..digits_end]) else {
        log(
            ctx,
            env,
            level::INFO,
            &format!("prefix2domain: no prefix found in [{rest}]"),
        );
        return ActionResult::Ret(-1);
    };
    let strip = match mode {
        1 => pre.len(),
        2 => 0,
        _ => pre.len() + plen,
    };
    let stripped = match strip_user(&uri, strip) {
        Ok((u, _)) => u,
        Err(_) => return ActionResult::Ret(-1),
    };
    match rewrite(&stripped, UriPart::HostPort, domain.as_bytes()) {
        Ok(u) => {
            ctx.set_uri(&u);
            ActionResult::Ret(1)
        }
        Err(_) => {
            log(
                ctx,
                env,
                level::ERR,
                &format!("prefix2domain: cannot set domain {domain}"),
            );
            ActionResult::Ret(-1)
        }
    }
}

// ------------------------------------------------------------------------------------- commands

/// The running program's settings and the pairs, loaded (from the database, waiting) if they are
/// not yet.
fn loaded_now(host: &dyn Host) -> Result<(PdtConfig, Arc<PdtStore>, Arc<Pairs>), Reply> {
    let program = host.shared().program.load();
    let cfg = program
        .configs
        .get::<PdtConfig>()
        .cloned()
        .unwrap_or_else(|| PdtConfig::resolve(Some(&program.program)));
    let store = host.shared().services.store::<PdtStore>();
    if let Some(p) = store.current(&cfg) {
        return Ok((cfg, store, p));
    }
    match host.db_job(cfg.select()) {
        JobResult::Rows(rows) => {
            let p = store.install(Pairs::of_rows(
                (cfg.db_url.clone(), cfg.table.clone()),
                &rows,
            ));
            Ok((cfg, store, p))
        }
        other => Err(Reply::status(
            500,
            format!("cannot read table {}: {other:?}", cfg.table),
        )),
    }
}

fn written(r: JobResult) -> Result<(), String> {
    match r {
        JobResult::Failed(e) => Err(e),
        _ => Ok(()),
    }
}

fn pdt_add(host: &dyn Host, p: &[String]) -> Reply {
    let (prefix, domain) = match (text_param(p, 0, "prefix"), text_param(p, 1, "domain")) {
        (Ok(a), Ok(b)) => (a.to_owned(), b.to_owned()),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let (cfg, store, _) = match loaded_now(host) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !cfg.is_prefix(&prefix) {
        return Reply::status(400, "Bad Prefix");
    }
    let _w = store.writer.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cur) = store.current(&cfg) else {
        return Reply::status(500, "table not loaded");
    };
    if cur.by_prefix.contains_key(&prefix) || cur.prefix_of_domain(&domain).is_some() {
        return Reply::status(400, "Prefix Or Domain Exists");
    }
    let insert = DbWrite::Insert {
        url: cfg.db_url.clone(),
        table: cfg.table.clone(),
        row: vec![
            (cfg.prefix_col.clone(), Some(prefix.clone())),
            (cfg.domain_col.clone(), Some(domain.clone())),
        ],
    };
    if let Err(e) = written(host.db_job(Job::DbWrite(insert))) {
        return Reply::status(500, format!("Cannot Store Prefix/domain ({e})"));
    }
    let mut next = (*cur).clone();
    next.insert(&prefix, &domain);
    store.pairs.store(Some(Arc::new(next)));
    Reply::status(200, "ok").with_data(json!({"prefix": prefix, "domain": domain}))
}

fn pdt_delete(host: &dyn Host, p: &[String]) -> Reply {
    let domain = match text_param(p, 0, "domain") {
        Ok(d) => d.to_owned(),
        Err(r) => return r,
    };
    let (cfg, store, _) = match loaded_now(host) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let _w = store.writer.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cur) = store.current(&cfg) else {
        return Reply::status(500, "table not loaded");
    };
    let Some(prefix) = cur.prefix_of_domain(&domain).map(str::to_owned) else {
        return Reply::status(404, "Domain Not Found");
    };
    let delete = DbWrite::Delete {
        url: cfg.db_url.clone(),
        table: cfg.table.clone(),
        keys: vec![(cfg.prefix_col.clone(), prefix.clone())],
    };
    if let Err(e) = written(host.db_job(Job::DbWrite(delete))) {
        return Reply::status(500, format!("Cannot Delete Prefix/domain ({e})"));
    }
    let mut next = (*cur).clone();
    next.by_prefix.remove(&prefix);
    store.pairs.store(Some(Arc::new(next)));
    Reply::status(200, "ok").with_data(json!({"prefix": prefix, "domain": domain}))
}

fn pdt_list(host: &dyn Host, p: &[String]) -> Reply {
    let filter = |i: usize| {
        p.get(i)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_owned)
    };
    let (sp, sd) = (filter(0), filter(1));
    let (cfg, _, pairs) = match loaded_now(host) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if sp.as_deref().is_some_and(|s| !cfg.is_prefix(s)) {
        return Reply::status(400, "Bad Prefix");
    }
    let starts = |s: &str, with: &str| {
        s.get(..with.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(with))
    };
    let shown: Vec<(&String, &String)> = pairs
        .by_prefix
        .iter()
        .filter(|(pf, d)| match (&sp, &sd) {
            (None, None) => true,
            (a, b) => {
                a.as_deref().is_some_and(|a| pf.starts_with(a))
                    || b.as_deref().is_some_and(|b| starts(d, b))
            }
        })
        .collect();
    let lines = shown.iter().map(|(p, d)| format!("{p} {d}")).collect();
    let data: Vec<_> = shown
        .iter()
        .map(|(p, d)| json!({"prefix": p, "domain": d}))
        .collect();
    Reply::ok(lines).with_data(json!(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_wins() {
        let mut p = Pairs::default();
        p.insert("49", "de.example");
        p.insert("4930", "berlin.example");
        assert_eq!(p.longest_match("4930123"), Some((4, "berlin.example")));
        assert_eq!(p.longest_match("4989"), Some((2, "de.example")));
        assert_eq!(p.longest_match("33"), None);
        assert_eq!(p.prefix_of_domain("DE.example"), Some("49"));
    }

    #[test]
    fn a_load_does_not_replace_what_management_installed() {
        let store = PdtStore::default();
        let cfg = PdtConfig::resolve(None);
        let src = (cfg.db_url.clone(), cfg.table.clone());
        let mut first = Pairs {
            source: src.clone(),
            ..Pairs::default()
        };
        first.insert("1", "one.example");
        let got = store.install(first);
        assert_eq!(got.by_prefix.len(), 1);
        let late = Pairs {
            source: src,
            ..Pairs::default()
        };
        assert_eq!(store.install(late).by_prefix.len(), 1);
        assert!(store.current(&cfg).is_some());
    }
}
