//! Name resolution, checks and lowering of the syntax tree to [`dataplane::script::ir`].
//!
//! Order: `loadmodule` lines, then global options and `modparam`s, then every route block is given a
//! [`RouteId`] (so `route(n)` and `t_on_failure("n")` resolve whatever the order of the blocks), then
//! each block is lowered to a flat instruction vector, then the route-kind restrictions are checked
//! through `route(n)` calls (an action reached from a failure_route must be allowed there).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use dataplane::modules;
use dataplane::script::ir::{
    AddrFamily, Arg as IrArg, CmpOp, CoreAction, CoreOptions, HostArg, Insn, IpNet, ListenAddr,
    LoadedModule, ModuleCall, Operand, ParamValue, PortArg, Program, Proto, RouteBlock, RouteId,
    RouteKind, RouteLabel, Test, Value, BUF_SIZE,
};
use dataplane::script::{
    ArgKind, FunctionDecl, FunctionId, ModuleId, ParamDefault, ParamType, RouteKinds,
};

use super::ast::{Arg, Call, Expr, Item, RouteDef, Stmt, Val};
use super::check::{arity_message, compile_regex, core_action, describe, int, text, CORE};
use super::diag::{did_you_mean, Pos, Sink};

/// Global option names (for did-you-mean).
pub(crate) const OPTION_NAMES: &[&str] = &[
    "debug",
    "fork",
    "log_stderror",
    "listen",
    "alias",
    "dns",
    "rev_dns",
    "port",
    "maxbuffer",
    "children",
    "check_via",
    "syn_branch",
    "memlog",
    "sip_warning",
    "fifo",
    "fifo_mode",
    "server_signature",
    "reply_to_via",
    "user",
    "uid",
    "group",
    "gid",
    "mhomed",
];

/// One use of an action, for the route-kind check.
struct Use {
    name: String,
    allowed: RouteKinds,
    reason: Option<&'static str>,
    pos: Pos,
}

struct Lower<'k, 's> {
    sink: &'k mut Sink<'s>,
    options: CoreOptions,
    loaded: Vec<LoadedModule>,
    route_index: HashMap<(RouteKind, RouteLabel), RouteId>,
    load_pos: HashMap<ModuleId, Pos>,
    reported_unloaded: HashSet<ModuleId>,
    // per-block emitter state
    code: Vec<Insn>,
    labels: Vec<u32>,
    patches: Vec<usize>,
    uses: Vec<Use>,
    calls: Vec<RouteId>,
    referenced: HashSet<RouteId>,
}

/// Lower parsed items. Errors and warnings go to `sink`; the program is meaningful only if there
/// are no errors.
pub(crate) fn lower(items: &[Item], sink: &mut Sink<'_>) -> Program {
    let mut l = Lower {
        sink,
        options: CoreOptions::default(),
        loaded: Vec::new(),
        route_index: HashMap::new(),
        load_pos: HashMap::new(),
        reported_unloaded: HashSet::new(),
        code: Vec::new(),
        labels: Vec::new(),
        patches: Vec::new(),
        uses: Vec::new(),
        calls: Vec::new(),
        referenced: HashSet::new(),
    };
    for it in items {
        if let Item::LoadModule { path, pos } = it {
            l.loadmodule(path, *pos);
        }
    }
    l.check_dependencies();
    for it in items {
        match it {
            Item::Option { name, pos, value } => l.option(name, *pos, value),
            Item::ModParam {
                module,
                param,
                value,
            } => l.modparam(module, param, value),
            _ => {}
        }
    }
    let defs: Vec<&RouteDef> = items
        .iter()
        .filter_map(|it| match it {
            Item::Route(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut first_pos: HashMap<(RouteKind, RouteLabel), Pos> = HashMap::new();
    for (i, d) in defs.iter().enumerate() {
        let key = (d.kind, d.label.clone());
        if let Some(p) = first_pos.get(&key) {
            l.sink.error(
                d.pos,
                format!(
                    "{}[{}] is defined twice (first at line {}:{})",
                    d.kind.keyword(),
                    d.label,
                    p.line,
                    p.col
                ),
            );
        } else {
            first_pos.insert(key.clone(), d.pos);
            l.route_index.insert(key, RouteId(i as u32));
        }
    }
    let mut routes = Vec::new();
    let mut uses = Vec::new();
    let mut calls = Vec::new();
    for d in &defs {
        l.stmts(&d.body);
        let mut code = std::mem::take(&mut l.code);
        for &idx in &l.patches {
            match &mut code[idx] {
                Insn::JumpIf { to, .. } | Insn::Jump(to) => *to = l.labels[*to as usize],
                _ => {}
            }
        }
        l.patches.clear();
        l.labels.clear();
        routes.push(RouteBlock {
            kind: d.kind,
            label: d.label.clone(),
            code,
        });
        uses.push(std::mem::take(&mut l.uses));
        calls.push(std::mem::take(&mut l.calls));
    }
    l.check_route_kinds(&routes, &uses, &calls);
    for (i, d) in defs.iter().enumerate() {
        let id = RouteId(i as u32);
        let is_main = d.kind == RouteKind::Request && d.label == RouteLabel::Num(0);
        if is_main || l.referenced.contains(&id) || l.sink.has_errors() {
            continue;
        }
        match d.kind {
            RouteKind::Request => l.sink.warn(
                d.pos,
                format!("route[{}] is never called", d.label),
                Some(format!("call it with route({})", d.label)),
            ),
            RouteKind::Failure => l.sink.warn(
                d.pos,
                format!("failure_route[{}] is never armed", d.label),
                Some(format!(
                    "arm it with t_on_failure(\"{}\") before t_relay",
                    d.label
                )),
            ),
            RouteKind::OnReply => {}
        }
    }
    let main_route = l
        .route_index
        .get(&(RouteKind::Request, RouteLabel::Num(0)))
        .copied();
    if main_route.is_none() && !l.sink.has_errors() {
        l.sink.warn(
            Pos::new(1, 1),
            "the script has no route{} block: requests will not be processed",
            None,
        );
    }
    Program {
        options: l.options,
        modules: l.loaded,
        routes,
        main_route,
        config_dir: None,
    }
}

fn bool_value(v: &Val) -> Option<bool> {
    match v {
        Val::Int(n) => Some(*n != 0),
        Val::Word(w) => match w.to_ascii_lowercase().as_str() {
            "yes" | "on" | "true" | "enable" => Some(true),
            "no" | "off" | "false" | "disable" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn proto_word(w: &str) -> Option<Proto> {
    match w.to_ascii_lowercase().as_str() {
        "udp" => Some(Proto::Udp),
        "tcp" => Some(Proto::Tcp),
        "tls" => Some(Proto::Tls),
        _ => None,
    }
}

impl Lower<'_, '_> {
    // ---------------------------------------------------------------- modules and options

    fn loadmodule(&mut self, path: &str, pos: Pos) {
        let file = path.rsplit('/').next().unwrap_or(path);
        let base = file.strip_suffix(".so").unwrap_or(file);
        if let Some((_, msg)) = modules::REMOVED.iter().find(|(n, _)| *n == base) {
            self.sink.error(pos, *msg);
            return;
        }
        let Some((id, _)) = modules::by_name(base) else {
            let hint = did_you_mean(base, modules::ALL.iter().map(|m| m.name))
                .map(|s| format!("did you mean `{s}`?"));
            self.sink.error_hint(
                pos,
                format!("unknown module '{base}' (loadmodule \"{path}\")"),
                hint,
            );
            return;
        };
        if self.loaded.iter().any(|m| m.id == id) {
            self.sink
                .warn(pos, format!("module {base} is loaded twice"), None);
            return;
        }
        let decl = modules::get(id);
        if !modules::is_implemented(decl) {
            self.sink.warn(
                pos,
                format!("module {base} is not implemented in this build"),
                Some(
                    "its functions fail (return false) when called and its parameters have no effect"
                        .into(),
                ),
            );
        }
        let params = decl
            .params
            .iter()
            .map(|p| match p.default {
                ParamDefault::Int(n) => ParamValue::Int(n),
                ParamDefault::Str(s) => ParamValue::Str(s.to_string()),
                ParamDefault::None => ParamValue::Unset,
            })
            .collect();
        self.load_pos.insert(id, pos);
        self.loaded.push(LoadedModule {
            id,
            path: path.to_string(),
            params,
        });
    }

    fn is_loaded(&self, id: ModuleId) -> bool {
        self.loaded.iter().any(|m| m.id == id)
    }

    fn check_dependencies(&mut self) {
        let mut warns = Vec::new();
        for m in &self.loaded {
            let decl = modules::get(m.id);
            for dep in decl.depends {
                let ok = modules::by_name(dep).is_some_and(|(d, _)| self.is_loaded(d));
                if !ok {
                    warns.push((
                        self.load_pos.get(&m.id).copied().unwrap_or_default(),
                        format!(
                            "module {} needs module {dep}, which is not loaded",
                            decl.name
                        ),
                        dep,
                    ));
                }
            }
        }
        for (pos, msg, dep) in warns {
            self.sink
                .warn(pos, msg, Some(format!("add loadmodule \"{dep}.so\"")));
        }
    }

    fn option(&mut self, name: &str, pos: Pos, value: &Arg) {
        let v = &value.val;
        let bad = |s: &mut Self, what: &str| {
            s.sink.error(
                value.pos,
                format!("{name} takes {what}, found {}", describe(v)),
            );
        };
        let o = &mut self.options;
        macro_rules! boolean {
            ($field:ident) => {
                match bool_value(v) {
                    Some(b) => o.$field = b,
                    None => bad(self, "yes or no"),
                }
            };
        }
        macro_rules! number {
            ($field:ident, $ty:ty) => {
                match v {
                    Val::Int(n) if <$ty>::try_from(*n).is_ok() => o.$field = *n as $ty,
                    _ => bad(self, "a number"),
                }
            };
        }
        match name {
            "debug" => number!(debug, i32),
            "memlog" => number!(memlog, i32),
            "port" => number!(port, u16),
            "maxbuffer" => number!(maxbuffer, u32),
            "children" => number!(children, u32),
            "fifo_mode" => number!(fifo_mode, u32),
            "fork" => boolean!(fork),
            "log_stderror" => boolean!(log_stderror),
            "dns" => boolean!(dns),
            "rev_dns" => boolean!(rev_dns),
            "check_via" => boolean!(check_via),
            "syn_branch" => boolean!(syn_branch),
            "sip_warning" => boolean!(sip_warning),
            "server_signature" => boolean!(server_signature),
            "reply_to_via" => boolean!(reply_to_via),
            "mhomed" => boolean!(mhomed),
            "fifo" => match v {
                Val::Str(s) => o.fifo = Some(s.clone()),
                _ => bad(self, "a quoted path"),
            },
            "user" | "uid" | "group" | "gid" => match text(value) {
                Some(s) if !matches!(v, Val::Ip(_)) => {
                    if name.starts_with('u') {
                        o.user = Some(s)
                    } else {
                        o.group = Some(s)
                    }
                }
                _ => bad(self, "a name or a number"),
            },
            "alias" => match v {
                Val::Str(_) | Val::Word(_) | Val::Ip(_) => {
                    if let Some(s) = text(value) {
                        o.alias.push(s)
                    }
                }
                Val::Colon(parts) => o.alias.push(
                    parts
                        .iter()
                        .map(|p| {
                            text(&Arg {
                                val: p.clone(),
                                pos,
                            })
                            .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join(":"),
                ),
                _ => bad(self, "a host name or address"),
            },
            "listen" => match listen_addr(v) {
                Some(l) => o.listen.push(l),
                None => bad(self, "[proto:]address[:port]"),
            },
            "log_stderr" => {
                self.sink.error_hint(
                    pos,
                    "unknown global parameter 'log_stderr'",
                    Some("did you mean `log_stderror`?".into()),
                );
            }
            _ => {
                let hint = did_you_mean(name, OPTION_NAMES.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"));
                self.sink
                    .error_hint(pos, format!("unknown global parameter '{name}'"), hint);
            }
        }
    }

    fn modparam(&mut self, module: &(String, Pos), param: &(String, Pos), value: &Arg) {
        let (mname, mpos) = module;
        let Some((id, decl)) = modules::by_name(mname) else {
            let hint = did_you_mean(mname, modules::ALL.iter().map(|m| m.name))
                .map(|s| format!("did you mean `{s}`?"));
            self.sink
                .error_hint(*mpos, format!("modparam: unknown module '{mname}'"), hint);
            return;
        };
        if !self.is_loaded(id) {
            self.sink.error_hint(
                *mpos,
                format!("modparam: module {} is not loaded", decl.name),
                Some(format!("add loadmodule \"{}.so\" before it", decl.name)),
            );
            return;
        }
        let (pname, ppos) = param;
        let mut name = pname.as_str();
        if let Some(r) = decl.renamed_params.iter().find(|r| r.old == name) {
            match r.new {
                Some(new) => {
                    self.sink.warn(
                        *ppos,
                        format!("parameter '{name}' of module {} is deprecated", decl.name),
                        Some(format!("{}; use '{new}'", r.note)),
                    );
                    name = new;
                }
                None => {
                    self.sink.error_hint(
                        *ppos,
                        format!("module {} has no parameter '{name}'", decl.name),
                        Some(r.note.to_string()),
                    );
                    return;
                }
            }
        }
        if modules::is_implemented(decl)
            && decl.param(name).is_some()
            && !modules::param_is_implemented(decl, name)
        {
            self.sink.warn(
                *ppos,
                format!(
                    "parameter '{name}' of module {} is not implemented in this build",
                    decl.name
                ),
                Some("it is accepted and has no effect".into()),
            );
        }
        let Some((idx, p)) = decl.param(name) else {
            let hint = did_you_mean(name, decl.params.iter().map(|p| p.name))
                .map(|s| format!("did you mean `{s}`?"));
            self.sink.error_hint(
                *ppos,
                format!("module {} has no parameter '{name}'", decl.name),
                hint,
            );
            return;
        };
        let v = match (p.ty, &value.val) {
            (ParamType::Int, Val::Int(n)) => Some(ParamValue::Int(*n)),
            (ParamType::Int, w @ Val::Word(_)) => bool_value(w).map(|b| ParamValue::Int(b.into())),
            (ParamType::Str, Val::Str(s)) => Some(ParamValue::Str(s.clone())),
            _ => None,
        };
        match v {
            Some(v) => {
                if let Some(m) = self.loaded.iter_mut().find(|m| m.id == id) {
                    m.params[idx] = v;
                }
            }
            None => {
                let want = match p.ty {
                    ParamType::Int => "an integer (or yes/no)",
                    ParamType::Str => "a quoted string",
                };
                self.sink.error(
                    value.pos,
                    format!(
                        "parameter '{name}' of module {} takes {want}, found {}",
                        decl.name,
                        describe(&value.val)
                    ),
                );
            }
        }
    }

    // ---------------------------------------------------------------- emission

    fn new_label(&mut self) -> u32 {
        self.labels.push(u32::MAX);
        (self.labels.len() - 1) as u32
    }
    fn place(&mut self, l: u32) {
        self.labels[l as usize] = self.code.len() as u32;
    }
    fn jump_if(&mut self, when: bool, l: u32) {
        self.patches.push(self.code.len());
        self.code.push(Insn::JumpIf { when, to: l });
    }
    fn jump(&mut self, l: u32) {
        self.patches.push(self.code.len());
        self.code.push(Insn::Jump(l));
    }

    fn stmts(&mut self, body: &[Stmt]) {
        let mut ended: Option<&str> = None;
        let mut warned = false;
        for s in body {
            if let (Some(kw), false) = (ended, warned) {
                if let Some(p) = s.pos() {
                    self.sink
                        .warn(p, format!("unreachable code after '{kw}'"), None);
                    warned = true;
                }
            }
            match s {
                Stmt::Break(_) => {
                    self.code.push(Insn::Break);
                    ended = Some("break");
                }
                Stmt::Drop(_) => {
                    self.code.push(Insn::Drop);
                    ended = Some("drop");
                }
                Stmt::Block(b) => self.stmts(b),
                Stmt::Call(c) => {
                    if let Some(i) = self.call(c) {
                        self.code.push(i);
                    }
                }
                Stmt::If {
                    cond, then, els, ..
                } => {
                    let else_l = self.new_label();
                    self.branch(cond, else_l, false);
                    self.stmts(then);
                    if let Some(e) = els {
                        let end = self.new_label();
                        self.jump(end);
                        self.place(else_l);
                        self.stmts(e);
                        self.place(end);
                    } else {
                        self.place(else_l);
                    }
                }
            }
        }
    }

    /// Emit code that jumps to `target` when `e` evaluates to `when`, and falls through otherwise.
    fn branch(&mut self, e: &Expr, target: u32, when: bool) {
        match e {
            Expr::Not(a) => self.branch(a, target, !when),
            Expr::And(a, b) => {
                if when {
                    let skip = self.new_label();
                    self.branch(a, skip, false);
                    self.branch(b, target, true);
                    self.place(skip);
                } else {
                    self.branch(a, target, false);
                    self.branch(b, target, false);
                }
            }
            Expr::Or(a, b) => {
                if when {
                    self.branch(a, target, true);
                    self.branch(b, target, true);
                } else {
                    let skip = self.new_label();
                    self.branch(a, skip, true);
                    self.branch(b, target, false);
                    self.place(skip);
                }
            }
            Expr::Cmp { operand, op, rhs } => {
                if let Some(t) = self.test(operand, *op, rhs) {
                    self.code.push(Insn::Test(t));
                }
                self.jump_if(when, target);
            }
            Expr::Call(c) => {
                if let Some(i) = self.call(c) {
                    self.code.push(i);
                }
                self.jump_if(when, target);
            }
        }
    }

    // ---------------------------------------------------------------- conditions

    fn test(&mut self, operand: &(String, Pos), op: (CmpOp, Pos), rhs: &Arg) -> Option<Test> {
        let (name, _) = operand;
        let (op, opos) = op;
        let eq = matches!(op, CmpOp::Eq | CmpOp::Ne);
        let int_op = !matches!(op, CmpOp::Match);
        let (operand, value) = match name.as_str() {
            "method" | "uri" => {
                let o = if name == "method" {
                    Operand::Method
                } else {
                    Operand::Uri
                };
                match (&rhs.val, op) {
                    (Val::Str(s), CmpOp::Match) => {
                        (o, Value::Regex(self.regex(s, rhs.pos, false)?))
                    }
                    (Val::Word(w), _) if eq && w == "myself" && o == Operand::Uri => {
                        (o, Value::Myself)
                    }
                    (Val::Str(s), _) if eq => (o, Value::Str(s.clone())),
                    (Val::Word(w), _) if eq && o == Operand::Method => (o, Value::Str(w.clone())),
                    _ => {
                        return self.bad_cmp(
                            name,
                            op,
                            opos,
                            rhs,
                            "a quoted string (==, !=) or a regex (=~)",
                        )
                    }
                }
            }
            "src_ip" | "dst_ip" => {
                let o = if name == "src_ip" {
                    Operand::SrcIp
                } else {
                    Operand::DstIp
                };
                match (&rhs.val, op) {
                    (Val::Str(s), CmpOp::Match) => {
                        (o, Value::Regex(self.regex(s, rhs.pos, false)?))
                    }
                    (Val::Ip(a), _) if eq => (
                        o,
                        Value::Net(IpNet {
                            addr: *a,
                            prefix: if a.is_ipv4() { 32 } else { 128 },
                        }),
                    ),
                    (Val::Net(a, p), _) if eq => (
                        o,
                        Value::Net(IpNet {
                            addr: *a,
                            prefix: *p,
                        }),
                    ),
                    (Val::Str(s), _) if eq => (o, Value::Str(s.clone())),
                    (Val::Word(w), _) if eq && w == "myself" => (o, Value::Myself),
                    (Val::Word(w), _) if eq => (o, Value::Host(w.clone())),
                    _ => {
                        return self.bad_cmp(
                            name,
                            op,
                            opos,
                            rhs,
                            "an address, a network, a host name or myself",
                        )
                    }
                }
            }
            "src_port" | "dst_port" | "msg:len" => {
                let o = match name.as_str() {
                    "src_port" => Operand::SrcPort,
                    "dst_port" => Operand::DstPort,
                    _ => Operand::MsgLen,
                };
                match &rhs.val {
                    Val::Int(n) if int_op && (o == Operand::MsgLen || (0..=65535).contains(n)) => {
                        (o, Value::Int(*n))
                    }
                    Val::Word(w) if int_op && o == Operand::MsgLen && w == "max_len" => {
                        (o, Value::Int(i64::from(BUF_SIZE)))
                    }
                    _ => return self.bad_cmp(name, op, opos, rhs, "a number"),
                }
            }
            "proto" => match &rhs.val {
                Val::Word(w) if eq && proto_word(w).is_some() => {
                    (Operand::Proto, Value::Proto(proto_word(w)?))
                }
                _ => return self.bad_cmp(name, op, opos, rhs, "udp, tcp or tls"),
            },
            "af" => match &rhs.val {
                Val::Word(w) if eq && w.eq_ignore_ascii_case("inet") => {
                    (Operand::Af, Value::Af(AddrFamily::Inet))
                }
                Val::Word(w) if eq && w.eq_ignore_ascii_case("inet6") => {
                    (Operand::Af, Value::Af(AddrFamily::Inet6))
                }
                _ => return self.bad_cmp(name, op, opos, rhs, "inet or inet6"),
            },
            _ => return None,
        };
        Some(Test { operand, op, value })
    }

    fn bad_cmp(&mut self, name: &str, op: CmpOp, opos: Pos, rhs: &Arg, want: &str) -> Option<Test> {
        let ops = match op {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Match => "=~",
            CmpOp::Gt => ">",
            CmpOp::Lt => "<",
            CmpOp::Ge => ">=",
            CmpOp::Le => "<=",
        };
        self.sink.error_hint(
            opos,
            format!("cannot compare {name} {ops} {}", describe(&rhs.val)),
            Some(format!("{name} is compared with {want}")),
        );
        None
    }

    fn regex(
        &mut self,
        pattern: &str,
        pos: Pos,
        multi_line: bool,
    ) -> Option<regex_automata::meta::Regex> {
        match compile_regex(pattern, multi_line) {
            Ok(r) => Some(r),
            Err(msg) => {
                self.sink.error(pos, msg);
                None
            }
        }
    }

    // ---------------------------------------------------------------- calls

    fn call(&mut self, c: &Call) -> Option<Insn> {
        if let Some(core) = core_action(&c.name) {
            if let Some(msg) = arity_message(&c.name, core.min, core.max, c.args.len()) {
                self.sink.error(c.pos, msg);
                return None;
            }
            self.uses.push(Use {
                name: c.name.clone(),
                allowed: core.routes,
                reason: core.reason,
                pos: c.pos,
            });
            return self.core(c);
        }
        let (mid, fid, f) = self.resolve(&c.name, c.pos)?;
        if let Some(msg) = arity_message(&c.name, f.min_args as usize, f.max_args(), c.args.len()) {
            self.sink.error(c.pos, msg);
            return None;
        }
        // Only for modules that are implemented otherwise: an unimplemented module was said at
        // its loadmodule.
        if f.imp.is_none() && modules::is_implemented(dataplane::modules::get(mid)) {
            self.sink.warn(
                c.pos,
                format!("{} is not implemented in this build", f.name),
                Some("it fails (returns false) when reached".into()),
            );
        }
        self.uses.push(Use {
            name: c.name.clone(),
            allowed: f.routes,
            reason: f.restriction.map(|r| r.reason),
            pos: c.pos,
        });
        let mut args = Vec::with_capacity(c.args.len());
        let mut ok = true;
        for (a, kind) in c.args.iter().zip(f.args) {
            match self.fixup(&c.name, a, *kind) {
                Some(v) => args.push(v),
                None => ok = false,
            }
        }
        ok.then_some(Insn::Call(ModuleCall {
            module: mid,
            decl: dataplane::modules::get(mid),
            function: fid,
            args,
        }))
    }

    fn resolve(
        &mut self,
        name: &str,
        pos: Pos,
    ) -> Option<(ModuleId, FunctionId, &'static FunctionDecl)> {
        for m in &self.loaded {
            let decl = modules::get(m.id);
            if let Some((fid, f)) = decl.function(name) {
                return Some((m.id, fid, f));
            }
        }
        let loaded: Vec<ModuleId> = self.loaded.iter().map(|m| m.id).collect();
        for id in &loaded {
            let decl = modules::get(*id);
            if let Some(r) = decl.renamed_functions.iter().find(|r| r.old == name) {
                return match r.new.and_then(|n| decl.function(n)) {
                    Some((fid, f)) => {
                        self.sink.warn(
                            pos,
                            format!("{name} is deprecated: {}", r.note),
                            Some(format!("use {}", f.name)),
                        );
                        Some((*id, fid, f))
                    }
                    None => {
                        self.sink.error_hint(
                            pos,
                            format!("{name} is no longer available"),
                            Some(r.note.to_string()),
                        );
                        None
                    }
                };
            }
        }
        for (i, decl) in modules::ALL.iter().enumerate() {
            let id = ModuleId(i as u16);
            let exported = decl.function(name).is_some()
                || decl.renamed_functions.iter().any(|r| r.old == name);
            if exported {
                if self.reported_unloaded.insert(id) {
                    self.sink.error_hint(
                        pos,
                        format!(
                            "{name} is exported by module {}, which is not loaded (first use)",
                            decl.name
                        ),
                        Some(format!("add loadmodule \"{}.so\"", decl.name)),
                    );
                }
                return None;
            }
        }
        let loaded_fns = loaded
            .iter()
            .flat_map(|id| modules::get(*id).functions.iter().map(|f| f.name));
        let all_fns = modules::ALL
            .iter()
            .flat_map(|m| m.functions.iter().map(|f| f.name));
        let cands = CORE.iter().map(|c| c.name).chain(loaded_fns).chain(all_fns);
        let hint = did_you_mean(name, cands).map(|s| format!("did you mean `{s}`?"));
        self.sink
            .error_hint(pos, format!("unknown function '{name}'"), hint);
        None
    }

    fn fixup(&mut self, fname: &str, a: &Arg, kind: ArgKind) -> Option<IrArg> {
        let Some(s) = text(a) else {
            self.sink.error(
                a.pos,
                format!(
                    "{fname}: expected a quoted string, found {}",
                    describe(&a.val)
                ),
            );
            return None;
        };
        match kind {
            ArgKind::Str => Some(IrArg::Str(s)),
            ArgKind::Host => {
                if s.trim().is_empty() {
                    self.sink.error(a.pos, format!("{fname}: empty host name"));
                    return None;
                }
                Some(IrArg::Str(s))
            }
            ArgKind::Int => match int(a) {
                Some(n) => Some(IrArg::Int(n)),
                None => {
                    self.sink.error(
                        a.pos,
                        format!("{fname}: expected a number, found {}", describe(&a.val)),
                    );
                    None
                }
            },
            ArgKind::StatusCode => match int(a) {
                Some(n) if (100..=699).contains(&n) => Some(IrArg::StatusCode(n as u16)),
                _ => {
                    self.sink.error(
                        a.pos,
                        format!(
                            "{fname}: invalid status code {} (must be a number 100-699)",
                            describe(&a.val)
                        ),
                    );
                    None
                }
            },
            ArgKind::Port => match int(a) {
                Some(n) if (1..=65535).contains(&n) => Some(IrArg::Port(n as u16)),
                _ => {
                    self.sink.error(
                        a.pos,
                        format!(
                            "{fname}: invalid port {} (must be 1-65535)",
                            describe(&a.val)
                        ),
                    );
                    None
                }
            },
            ArgKind::Regex | ArgKind::RegexMultiLine => self
                .regex(&s, a.pos, kind == ArgKind::RegexMultiLine)
                .map(IrArg::Regex),
            ArgKind::FailureRoute | ArgKind::OnReplyRoute => {
                let label = match int(a) {
                    Some(n) if u32::try_from(n).is_ok() => RouteLabel::Num(n as u32),
                    _ => RouteLabel::Name(s.clone()),
                };
                let (rk, block) = if kind == ArgKind::OnReplyRoute {
                    (RouteKind::OnReply, "onreply_route")
                } else {
                    (RouteKind::Failure, "failure_route")
                };
                match self.route_index.get(&(rk, label.clone())) {
                    Some(id) => {
                        self.referenced.insert(*id);
                        Some(IrArg::Route(*id))
                    }
                    None => {
                        self.sink.error(
                            a.pos,
                            format!("{fname}({label}) arms {block}[{label}], which is not defined"),
                        );
                        None
                    }
                }
            }
        }
    }

    fn core(&mut self, c: &Call) -> Option<Insn> {
        let name = c.name.as_str();
        let a = &c.args;
        let str_arg = |s: &mut Self, i: usize| -> Option<String> {
            match &a[i].val {
                Val::Str(x) => Some(x.clone()),
                other => {
                    s.sink.error(
                        a[i].pos,
                        format!(
                            "{name}: expected a quoted string, found {}",
                            describe(other)
                        ),
                    );
                    None
                }
            }
        };
        let num_arg = |s: &mut Self, i: usize, max: i64| -> Option<i64> {
            match int(&a[i]) {
                Some(n) if (0..=max).contains(&n) => Some(n),
                _ => {
                    s.sink.error(
                        a[i].pos,
                        format!(
                            "{name}: expected a number 0-{max}, found {}",
                            describe(&a[i].val)
                        ),
                    );
                    None
                }
            }
        };
        let act = match name {
            "route" => {
                let label = match &a[0].val {
                    Val::Int(n) if u32::try_from(*n).is_ok() => RouteLabel::Num(*n as u32),
                    Val::Str(s) => match s.parse::<u32>() {
                        Ok(n) => RouteLabel::Num(n),
                        Err(_) => RouteLabel::Name(s.clone()),
                    },
                    Val::Word(w) => RouteLabel::Name(w.clone()),
                    other => {
                        self.sink.error(
                            a[0].pos,
                            format!(
                                "route: expected a route number or name, found {}",
                                describe(other)
                            ),
                        );
                        return None;
                    }
                };
                return match self.route_index.get(&(RouteKind::Request, label.clone())) {
                    Some(id) => {
                        self.calls.push(*id);
                        self.referenced.insert(*id);
                        Some(Insn::Route(*id))
                    }
                    None => {
                        self.sink.error(
                            c.pos,
                            format!("route({label}) calls route[{label}], which is not defined"),
                        );
                        None
                    }
                };
            }
            "break" => return Some(Insn::Break),
            "drop" => return Some(Insn::Drop),
            "forward" | "forward_udp" | "forward_tcp" | "send" | "send_tcp" => {
                let proto = match name {
                    "forward_udp" => Some(Proto::Udp),
                    "forward_tcp" | "send_tcp" => Some(Proto::Tcp),
                    _ => None,
                };
                let host = self.host_arg(name, &a[0])?;
                let port = match a.get(1) {
                    None => PortArg::Default,
                    Some(p) => self.port_arg(name, p)?,
                };
                if name.starts_with("send") {
                    CoreAction::Send { proto, host, port }
                } else {
                    CoreAction::Forward { proto, host, port }
                }
            }
            "log" => {
                if a.len() == 1 {
                    CoreAction::Log {
                        level: 4,
                        message: str_arg(self, 0)?,
                    }
                } else {
                    let level = match &a[0].val {
                        Val::Int(n) => *n as i32,
                        other => {
                            self.sink.error(
                                a[0].pos,
                                format!(
                                    "log: expected a log level number, found {}",
                                    describe(other)
                                ),
                            );
                            return None;
                        }
                    };
                    CoreAction::Log {
                        level,
                        message: str_arg(self, 1)?,
                    }
                }
            }
            "setflag" => CoreAction::SetFlag(num_arg(self, 0, 31)? as u32),
            "resetflag" => CoreAction::ResetFlag(num_arg(self, 0, 31)? as u32),
            "isflagset" => CoreAction::IsFlagSet(num_arg(self, 0, 31)? as u32),
            "rewritehost" | "sethost" | "seth" => CoreAction::RewriteHost(str_arg(self, 0)?),
            "rewritehostport" | "sethostport" | "sethp" => {
                CoreAction::RewriteHostPort(str_arg(self, 0)?)
            }
            "rewriteuser" | "setuser" | "setu" => CoreAction::RewriteUser(str_arg(self, 0)?),
            "rewriteuserpass" | "setuserpass" | "setup" => {
                CoreAction::RewriteUserPass(str_arg(self, 0)?)
            }
            "rewriteport" | "setport" | "setp" => {
                let s = str_arg(self, 0)?;
                if !s.is_empty() && s.parse::<u16>().is_err() {
                    self.sink
                        .error(a[0].pos, format!("{name}: invalid port \"{s}\""));
                    return None;
                }
                CoreAction::RewritePort(s)
            }
            "rewriteuri" | "seturi" => CoreAction::RewriteUri(str_arg(self, 0)?),
            "revert_uri" => CoreAction::RevertUri,
            "prefix" => CoreAction::Prefix(str_arg(self, 0)?),
            "strip" => CoreAction::Strip(num_arg(self, 0, i64::from(u16::MAX))? as u32),
            "append_branch" => CoreAction::AppendBranch(match a.first() {
                None => None,
                Some(_) => Some(str_arg(self, 0)?),
            }),
            "len_gt" => match &a[0].val {
                Val::Word(w) if w == "max_len" => CoreAction::LenGt(BUF_SIZE),
                _ => CoreAction::LenGt(num_arg(self, 0, i64::from(u32::MAX))? as u32),
            },
            _ => return None,
        };
        Some(Insn::Core(act))
    }

    fn host_arg(&mut self, fname: &str, a: &Arg) -> Option<HostArg> {
        match &a.val {
            Val::Ip(ip) => Some(HostArg::Ip(*ip)),
            Val::Word(w) => Some(HostArg::Name(w.clone())),
            Val::Str(s) => Some(match s.parse::<IpAddr>() {
                Ok(ip) => HostArg::Ip(ip),
                Err(_) => HostArg::Name(s.clone()),
            }),
            Val::Colon(p) if p == &[Val::Word("uri".into()), Val::Word("host".into())] => {
                Some(HostArg::UriHost)
            }
            other => {
                self.sink.error(
                    a.pos,
                    format!(
                        "{fname}: expected a host, an address or uri:host, found {}",
                        describe(other)
                    ),
                );
                None
            }
        }
    }

    fn port_arg(&mut self, fname: &str, a: &Arg) -> Option<PortArg> {
        match &a.val {
            Val::Colon(p) if p == &[Val::Word("uri".into()), Val::Word("port".into())] => {
                Some(PortArg::UriPort)
            }
            _ => match int(a) {
                Some(n) if (1..=65535).contains(&n) => Some(PortArg::Num(n as u16)),
                _ => {
                    self.sink.error(
                        a.pos,
                        format!(
                            "{fname}: invalid port {} (a number 1-65535 or uri:port)",
                            describe(&a.val)
                        ),
                    );
                    None
                }
            },
        }
    }

    // ---------------------------------------------------------------- route kinds

    fn check_route_kinds(
        &mut self,
        routes: &[RouteBlock],
        uses: &[Vec<Use>],
        calls: &[Vec<RouteId>],
    ) {
        let mut reported = HashSet::new();
        for (b, block) in routes.iter().enumerate() {
            let kind = block.kind.kinds();
            let mut visited = HashSet::from([b]);
            let mut stack = vec![b];
            while let Some(r) = stack.pop() {
                for u in &uses[r] {
                    if u.allowed.contains(kind) || !reported.insert((u.pos, block.kind)) {
                        continue;
                    }
                    let reason = u.reason.map(|r| format!(" ({r})")).unwrap_or_default();
                    let hint = (r != b).then(|| {
                        format!(
                            "route[{}] is called from {}[{}]",
                            routes[r].label,
                            block.kind.keyword(),
                            block.label
                        )
                    });
                    self.sink.error_hint(
                        u.pos,
                        format!(
                            "{} is not allowed in {}{reason}",
                            u.name,
                            block.kind.keyword()
                        ),
                        hint,
                    );
                }
                for c in &calls[r] {
                    let c = c.0 as usize;
                    if visited.insert(c) {
                        stack.push(c);
                    }
                }
            }
        }
    }
}

fn listen_addr(v: &Val) -> Option<ListenAddr> {
    let parts: Vec<&Val> = match v {
        Val::Colon(p) => p.iter().collect(),
        other => vec![other],
    };
    let (proto, rest) = match parts.first() {
        Some(Val::Word(w)) if parts.len() > 1 && proto_word(w).is_some() => {
            (proto_word(w), &parts[1..])
        }
        _ => (None, &parts[..]),
    };
    let host = match rest.first()? {
        Val::Ip(a) => a.to_string(),
        Val::Word(w) | Val::Str(w) => w.clone(),
        _ => return None,
    };
    let port = match rest.get(1) {
        None => None,
        Some(Val::Int(n)) => Some(u16::try_from(*n).ok()?),
        Some(_) => return None,
    };
    if rest.len() > 2 {
        return None;
    }
    Some(ListenAddr { proto, host, port })
}
