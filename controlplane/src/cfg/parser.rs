//! Recursive-descent parser: tokens to [`ast::Item`]s, with error recovery so that one run reports
//! every syntax error.
//!
//! Grammar (SER 0.8.11, with the leniencies the documents need):
//! ```text
//! config    := item*
//! item      := WORD '=' value [';']                       global option
//!            | 'loadmodule' STRING
//!            | 'modparam' '(' STRING ',' STRING ',' value ')' [';']
//!            | ('route'|'failure_route'|'onreply_route') ['[' (INT|WORD) ']'] '{' stmt* '}' [';']
//! stmt      := ';' | '{' stmt* '}' [';'] | cmd ';'        (';' optional when cmd ends with '}')
//! cmd       := 'if' expr branch ['else' branch] | 'break' | 'drop' | WORD '(' [value (',' value)*] ')'
//! branch    := '{' stmt* '}' | cmd
//! expr      := and (('||'|'|'|'or') and)*
//! and       := unary (('&&'|'&'|'and') unary)*
//! unary     := ('!'|'not') unary | '(' expr ')' | operand cmpop value | WORD '(' args ')'
//! operand   := method | uri | src_ip | dst_ip | src_port | dst_port | proto | af | msg:len
//! cmpop     := '==' | '!=' | '=~' | '<' | '>' | '<=' | '>='
//! value     := atom (':' atom)*
//! atom      := STRING | ['-'] INT | IPV4 ['/' (INT|IPV4)] | IPV6 ['/' INT] | '[' IPV6 ']' | WORD
//! ```

use std::net::IpAddr;

use dataplane::script::ir::{CmpOp, RouteKind, RouteLabel};

use super::ast::{Arg, Call, Expr, Item, RouteDef, Stmt, Val};
use super::diag::{Pos, Sink};
use super::lexer::{Lexed, Tok, Token};

/// Operand keywords of conditions.
pub const OPERANDS: &[&str] = &[
    "method", "uri", "src_ip", "dst_ip", "src_port", "dst_port", "proto", "af",
];

struct Parser<'t, 'k, 's> {
    toks: &'t [Token],
    i: usize,
    sink: &'k mut Sink<'s>,
    truncated: bool,
    eof_reported: bool,
}

/// Parse a lexed file. Errors go to `sink`; the items parsed (possibly partial) are returned.
pub(crate) fn parse(lexed: &Lexed, sink: &mut Sink<'_>) -> Vec<Item> {
    let mut p = Parser {
        toks: &lexed.tokens,
        i: 0,
        sink,
        truncated: lexed.truncated,
        eof_reported: false,
    };
    p.config()
}

impl Parser<'_, '_, '_> {
    fn tok(&self) -> &Tok {
        &self.toks[self.i].tok
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].pos
    }
    fn peek(&self, n: usize) -> &Tok {
        let j = (self.i + n).min(self.toks.len() - 1);
        &self.toks[j].tok
    }
    fn advance(&mut self) {
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
    }
    fn prev(&self) -> Option<&Tok> {
        self.i.checked_sub(1).map(|j| &self.toks[j].tok)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.tok(), Tok::Word(x) if x == w)
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.tok() == t {
            self.advance();
            true
        } else {
            false
        }
    }
    /// Report "expected X, found Y" at the current token (quietly at EOF after a truncating error).
    fn expected(&mut self, what: &str) {
        if *self.tok() == Tok::Eof && (self.truncated || self.eof_reported) {
            return;
        }
        let found = self.tok().describe();
        let pos = self.pos();
        self.sink
            .error(pos, format!("expected {what}, found {found}"));
    }
    fn expect(&mut self, t: &Tok, what: &str) -> Option<()> {
        if self.eat(t) {
            Some(())
        } else {
            self.expected(what);
            None
        }
    }

    fn config(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        loop {
            let start = self.i;
            let pos = self.pos();
            let res = match self.tok().clone() {
                Tok::Eof => break,
                Tok::Semi => {
                    self.advance();
                    continue;
                }
                Tok::RBrace => {
                    self.sink.error(pos, "unexpected '}' (no block is open)");
                    self.advance();
                    continue;
                }
                Tok::Word(w) => match w.as_str() {
                    "loadmodule" => self.loadmodule(),
                    "modparam" => self.modparam(),
                    "route" | "failure_route" | "onreply_route" | "reply_route" => {
                        self.route_def(&w)
                    }
                    _ if *self.peek(1) == Tok::Assign => self.option(w),
                    _ => {
                        self.sink.error(
                            pos,
                            format!(
                                "expected a global parameter, loadmodule, modparam or a route block, found '{w}'"
                            ),
                        );
                        None
                    }
                },
                other => {
                    self.sink.error(
                        pos,
                        format!(
                            "expected a global parameter, loadmodule, modparam or a route block, found {}",
                            other.describe()
                        ),
                    );
                    None
                }
            };
            match res {
                Some(item) => items.push(item),
                None => {
                    // Skip the rest of the line the error is on.
                    if self.i == start {
                        self.advance();
                    }
                    while *self.tok() != Tok::Eof && self.pos().line == pos.line {
                        self.advance();
                    }
                }
            }
        }
        items
    }

    fn option(&mut self, name: String) -> Option<Item> {
        let pos = self.pos();
        self.advance();
        self.advance(); // '='
        let value = self.value()?;
        self.eat(&Tok::Semi);
        Some(Item::Option { name, pos, value })
    }

    fn loadmodule(&mut self) -> Option<Item> {
        self.advance();
        let paren = self.eat(&Tok::LParen);
        let pos = self.pos();
        let Tok::Str(path) = self.tok().clone() else {
            self.expected("the module path as a quoted string");
            return None;
        };
        self.advance();
        if paren {
            self.sink.error_hint(
                pos,
                "loadmodule takes no parentheses",
                Some(format!("write: loadmodule \"{path}\"")),
            );
            self.eat(&Tok::RParen);
        }
        self.eat(&Tok::Semi);
        Some(Item::LoadModule { path, pos })
    }

    fn modparam(&mut self) -> Option<Item> {
        self.advance();
        self.expect(&Tok::LParen, "'(' after modparam")?;
        let mpos = self.pos();
        let Tok::Str(module) = self.tok().clone() else {
            self.expected("the module name as a quoted string");
            return None;
        };
        self.advance();
        self.expect(&Tok::Comma, "','")?;
        let ppos = self.pos();
        let Tok::Str(param) = self.tok().clone() else {
            self.expected("the parameter name as a quoted string");
            return None;
        };
        self.advance();
        self.expect(&Tok::Comma, "','")?;
        let value = self.value()?;
        self.expect(&Tok::RParen, "')' closing modparam")?;
        self.eat(&Tok::Semi);
        Some(Item::ModParam {
            module: (module, mpos),
            param: (param, ppos),
            value,
        })
    }

    fn route_def(&mut self, kw: &str) -> Option<Item> {
        let pos = self.pos();
        self.advance();
        let kind = match kw {
            "route" => RouteKind::Request,
            "onreply_route" => RouteKind::OnReply,
            "reply_route" => {
                self.sink.error_hint(
                    pos,
                    "reply_route was renamed failure_route in 0.8.11",
                    Some(
                        "write failure_route[n] (and t_on_failure instead of t_on_negative)".into(),
                    ),
                );
                RouteKind::Failure
            }
            _ => RouteKind::Failure,
        };
        let mut label = RouteLabel::Num(0);
        if self.eat(&Tok::LBracket) {
            match self.tok().clone() {
                Tok::Int(n) if n >= 0 && n <= i64::from(u32::MAX) => {
                    label = RouteLabel::Num(n as u32)
                }
                Tok::Word(w) => label = RouteLabel::Name(w),
                _ => {
                    self.expected("a route number or name");
                    return None;
                }
            }
            self.advance();
            self.expect(&Tok::RBracket, "']'")?;
        } else if kind != RouteKind::Request {
            self.expected(&format!("'[' (a {kw} needs a number)"));
            return None;
        }
        let open = self.pos();
        self.expect(&Tok::LBrace, "'{'")?;
        let what = format!("{} block", kind.keyword());
        let body = self.block_body(open, &what);
        self.eat(&Tok::Semi);
        Some(Item::Route(RouteDef {
            kind,
            label,
            pos,
            body,
        }))
    }

    /// Statements up to the matching `}` (consumed).
    fn block_body(&mut self, open: Pos, what: &str) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            match self.tok() {
                Tok::RBrace => {
                    self.advance();
                    return out;
                }
                Tok::Eof => {
                    if !self.truncated && !self.eof_reported {
                        self.sink.error(
                            open,
                            format!("unclosed '{{' of the {what} (end of file reached)"),
                        );
                    }
                    self.eof_reported = true;
                    return out;
                }
                _ => {
                    if let Some(s) = self.stmt() {
                        out.push(s);
                    }
                }
            }
        }
    }

    fn stmt(&mut self) -> Option<Stmt> {
        match self.tok() {
            Tok::Semi => {
                self.advance();
                return None;
            }
            Tok::LBrace => {
                let open = self.pos();
                self.advance();
                let b = self.block_body(open, "block");
                self.eat(&Tok::Semi);
                return Some(Stmt::Block(b));
            }
            _ => {}
        }
        let Some(cmd) = self.cmd() else {
            self.recover();
            return None;
        };
        if !self.eat(&Tok::Semi) && self.prev() != Some(&Tok::RBrace) {
            let what = match &cmd {
                Stmt::Call(c) => format!("';' after {}(...)", c.name),
                Stmt::Break(_) => "';' after break".into(),
                Stmt::Drop(_) => "';' after drop".into(),
                _ => "';'".into(),
            };
            self.expected(&what);
        }
        Some(cmd)
    }

    /// Skip to the end of the broken statement: past the next `;`, or up to a `}` closing the block.
    fn recover(&mut self) {
        let mut depth = 0usize;
        loop {
            match self.tok() {
                Tok::Eof => return,
                Tok::Semi if depth == 0 => {
                    self.advance();
                    return;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace => {
                    if depth == 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.advance();
                        self.eat(&Tok::Semi);
                        return;
                    }
                }
                _ => {}
            }
            self.advance();
        }
    }

    fn cmd(&mut self) -> Option<Stmt> {
        let pos = self.pos();
        let Tok::Word(w) = self.tok().clone() else {
            self.expected("an action");
            return None;
        };
        match w.as_str() {
            "if" => self.if_cmd(),
            "break" | "drop" => {
                self.advance();
                if *self.tok() == Tok::LParen && *self.peek(1) == Tok::RParen {
                    self.advance();
                    self.advance();
                }
                Some(if w == "break" {
                    Stmt::Break(pos)
                } else {
                    Stmt::Drop(pos)
                })
            }
            "else" => {
                self.sink.error(pos, "'else' without a matching 'if'");
                None
            }
            _ => {
                if *self.peek(1) != Tok::LParen {
                    self.advance();
                    self.expected(&format!("'(' after '{w}'"));
                    return None;
                }
                self.call().map(Stmt::Call)
            }
        }
    }

    fn call(&mut self) -> Option<Call> {
        let pos = self.pos();
        let Tok::Word(name) = self.tok().clone() else {
            self.expected("a function name");
            return None;
        };
        self.advance();
        self.expect(&Tok::LParen, "'('")?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.value()?);
                if self.eat(&Tok::Comma) {
                    continue;
                }
                self.expect(
                    &Tok::RParen,
                    &format!("',' or ')' in the arguments of {name}"),
                )?;
                break;
            }
        }
        Some(Call { name, pos, args })
    }

    fn if_cmd(&mut self) -> Option<Stmt> {
        let pos = self.pos();
        self.advance();
        let cond = self.expr()?;
        let then = self.branch("if block")?;
        // Lenient: `if (c) a(); else b();` (C style) as well as SER's `if (c) a() else b();`.
        if *self.tok() == Tok::Semi && matches!(self.peek(1), Tok::Word(w) if w == "else") {
            self.advance();
        }
        let els = if self.is_word("else") {
            self.advance();
            Some(self.branch("else block")?)
        } else {
            None
        };
        Some(Stmt::If {
            pos,
            cond,
            then,
            els,
        })
    }

    fn branch(&mut self, what: &str) -> Option<Vec<Stmt>> {
        if *self.tok() == Tok::LBrace {
            let open = self.pos();
            self.advance();
            Some(self.block_body(open, what))
        } else {
            self.cmd().map(|c| vec![c])
        }
    }

    fn expr(&mut self) -> Option<Expr> {
        let mut lhs = self.and_expr()?;
        while matches!(self.tok(), Tok::OrOr | Tok::Or) || self.is_word("or") {
            self.advance();
            let rhs = self.and_expr()?;
            lhs = Expr::Or(Box::new(lhs), Box::new(rhs));
        }
        Some(lhs)
    }

    fn and_expr(&mut self) -> Option<Expr> {
        let mut lhs = self.unary()?;
        while matches!(self.tok(), Tok::AndAnd | Tok::And) || self.is_word("and") {
            self.advance();
            let rhs = self.unary()?;
            lhs = Expr::And(Box::new(lhs), Box::new(rhs));
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<Expr> {
        if *self.tok() == Tok::Not || self.is_word("not") {
            self.advance();
            return Some(Expr::Not(Box::new(self.unary()?)));
        }
        if self.eat(&Tok::LParen) {
            let e = self.expr()?;
            self.expect(&Tok::RParen, "')'")?;
            return Some(e);
        }
        let pos = self.pos();
        let Tok::Word(w) = self.tok().clone() else {
            self.expected("a condition");
            return None;
        };
        let operand = if w == "msg"
            && *self.peek(1) == Tok::Colon
            && matches!(self.peek(2), Tok::Word(l) if l == "len")
        {
            self.advance();
            self.advance();
            Some("msg:len".to_string())
        } else if OPERANDS.contains(&w.as_str()) && *self.peek(1) != Tok::LParen {
            Some(w.clone())
        } else {
            None
        };
        if let Some(operand) = operand {
            self.advance();
            let opos = self.pos();
            let op = match self.tok() {
                Tok::EqEq => CmpOp::Eq,
                Tok::Ne => CmpOp::Ne,
                Tok::Match => CmpOp::Match,
                Tok::Lt => CmpOp::Lt,
                Tok::Gt => CmpOp::Gt,
                Tok::Le => CmpOp::Le,
                Tok::Ge => CmpOp::Ge,
                _ => {
                    self.expected(&format!("a comparison operator after {operand}"));
                    return None;
                }
            };
            self.advance();
            let rhs = self.value()?;
            return Some(Expr::Cmp {
                operand: (operand, pos),
                op: (op, opos),
                rhs,
            });
        }
        if *self.peek(1) == Tok::LParen {
            return self.call().map(Expr::Call);
        }
        self.sink.error(
            pos,
            format!("expected a condition, found '{w}' (an operand like method or uri, or a function call)"),
        );
        None
    }

    fn value(&mut self) -> Option<Arg> {
        let pos = self.pos();
        let first = self.atom()?;
        if *self.tok() != Tok::Colon {
            return Some(Arg { val: first, pos });
        }
        let mut parts = vec![first];
        while self.eat(&Tok::Colon) {
            parts.push(self.atom()?);
        }
        Some(Arg {
            val: Val::Colon(parts),
            pos,
        })
    }

    fn atom(&mut self) -> Option<Val> {
        let pos = self.pos();
        let v = match self.tok().clone() {
            Tok::Str(s) => Val::Str(s),
            Tok::Int(n) => Val::Int(n),
            Tok::Minus => {
                self.advance();
                let Tok::Int(n) = self.tok().clone() else {
                    self.expected("a number after '-'");
                    return None;
                };
                Val::Int(-n)
            }
            Tok::Word(w) => Val::Word(w),
            Tok::LBracket
                if matches!(self.peek(1), Tok::Ipv6(_)) && *self.peek(2) == Tok::RBracket =>
            {
                self.advance();
                let Tok::Ipv6(a) = self.tok().clone() else {
                    return None;
                };
                self.advance();
                Val::Ip(IpAddr::V6(a))
            }
            Tok::Ipv4(a) => {
                self.advance();
                return self.net(IpAddr::V4(a), pos);
            }
            Tok::Ipv6(a) => {
                self.advance();
                return self.net(IpAddr::V6(a), pos);
            }
            _ => {
                self.expected("a value");
                return None;
            }
        };
        self.advance();
        Some(v)
    }

    /// Optional `/len` or `/mask` after an address.
    fn net(&mut self, addr: IpAddr, pos: Pos) -> Option<Val> {
        if !self.eat(&Tok::Slash) {
            return Some(Val::Ip(addr));
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let mpos = self.pos();
        let len = match (self.tok().clone(), addr) {
            (Tok::Int(n), _) if (0..=max).contains(&n) => n as u8,
            (Tok::Int(n), _) => {
                self.sink.error(
                    mpos,
                    format!("invalid prefix length /{n} (must be 0-{max})"),
                );
                max as u8
            }
            (Tok::Ipv4(m), IpAddr::V4(_)) => {
                let bits = u32::from(m);
                let ones = bits.leading_ones();
                if bits.checked_shl(ones).unwrap_or(0) != 0 {
                    self.sink.error(
                        mpos,
                        format!("invalid network mask {m} (ones must be contiguous)"),
                    );
                }
                ones as u8
            }
            _ => {
                self.expected("a prefix length or network mask after '/'");
                let _ = pos;
                return None;
            }
        };
        self.advance();
        Some(Val::Net(addr, len))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn parse_src(src: &str) -> (Vec<Item>, Vec<String>) {
        let mut sink = Sink::new("t.cfg", src);
        let l = lex(src, &mut sink);
        let items = parse(&l, &mut sink);
        let errs = sink
            .errors
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
            .collect();
        (items, errs)
    }

    fn cond(src: &str) -> Expr {
        let (items, errs) = parse_src(&format!("route {{ if ({src}) {{ break; }}; }}"));
        assert!(errs.is_empty(), "{errs:?}");
        let Item::Route(r) = &items[0] else { panic!() };
        let Stmt::If { cond, .. } = &r.body[0] else {
            panic!()
        };
        cond.clone()
    }

    fn show(e: &Expr) -> String {
        match e {
            Expr::And(a, b) => format!("({} && {})", show(a), show(b)),
            Expr::Or(a, b) => format!("({} || {})", show(a), show(b)),
            Expr::Not(a) => format!("!{}", show(a)),
            Expr::Cmp { operand, .. } => operand.0.clone(),
            Expr::Call(c) => c.name.clone(),
        }
    }

    #[test]
    fn precedence_not_and_or() {
        assert_eq!(
            show(&cond("method==\"A\" || uri==myself && f()")),
            "(method || (uri && f))"
        );
        assert_eq!(show(&cond("!uri==myself && g()")), "(!uri && g)");
        assert_eq!(show(&cond("not a() or b() and c()")), "(!a || (b && c))");
        assert_eq!(show(&cond("(a() | b()) & c()")), "((a || b) && c)");
        assert_eq!(show(&cond("!(a() || b())")), "!(a || b)");
        assert_eq!(
            show(&cond("msg:len > 100 && src_port != 5060")),
            "(msg:len && src_port)"
        );
    }

    #[test]
    fn networks_and_masks() {
        let Expr::Cmp { rhs, .. } = cond("src_ip==192.168.0.0/255.255.0.0") else {
            panic!()
        };
        assert_eq!(rhs.val, Val::Net("192.168.0.0".parse().unwrap(), 16));
        let Expr::Cmp { rhs, .. } = cond("src_ip==fe80::/10") else {
            panic!()
        };
        assert_eq!(rhs.val, Val::Net("fe80::".parse().unwrap(), 10));
        let (_, errs) = parse_src("route { if (src_ip==10.0.0.0/255.0.255.0) { break; }; }");
        assert_eq!(errs.len(), 1);
    }

    #[test]
    fn braceless_if_else_and_else_if() {
        let (items, errs) = parse_src(
            "route {\n if (method==\"INVITE\") route(1)\n else sl_send_reply(\"404\", \"x\");\n if (a()) { b(); } else if (c()) { d(); } else { e(); }\n if (a()) b(); else c();\n}",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let Item::Route(r) = &items[0] else { panic!() };
        assert_eq!(r.body.len(), 3);
    }

    #[test]
    fn several_errors_in_one_run() {
        let (_, errs) = parse_src("route {\n a(\n b();\n c() d();\n}\n}\n");
        assert!(errs.len() >= 3, "{errs:?}");
        assert!(
            errs.iter().any(|e| e.starts_with("6:1 unexpected '}'")),
            "{errs:?}"
        );
    }

    #[test]
    fn unclosed_block_points_at_its_brace() {
        let (_, errs) = parse_src("route {\n  if (a()) {\n    b();\n  };\n");
        assert_eq!(
            errs,
            vec!["1:7 unclosed '{' of the route block (end of file reached)"]
        );
    }
}
