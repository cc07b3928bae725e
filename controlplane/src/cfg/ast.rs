//! Syntax tree of a script, as parsed; names are not resolved yet.

use std::net::IpAddr;

use dataplane::script::ir::{CmpOp, RouteKind, RouteLabel};

use super::diag::Pos;

/// A value: an option value, a function argument, or the right side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// Integer (possibly negative).
    Int(i64),
    /// String literal.
    Str(String),
    /// Bare word: keyword, host name, `myself`, `yes`…
    Word(String),
    /// Address.
    Ip(IpAddr),
    /// `addr/len` or `addr/mask`: address and prefix length.
    Net(IpAddr, u8),
    /// `a:b[:c]` (`uri:host`, `udp:1.2.3.4:5060`).
    Colon(Vec<Val>),
}

/// A value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    /// The value.
    pub val: Val,
    /// First character.
    pub pos: Pos,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    /// `name = value`.
    Option {
        /// Option name.
        name: String,
        /// Position of the name.
        pos: Pos,
        /// Value.
        value: Arg,
    },
    /// `loadmodule "path"`.
    LoadModule {
        /// Path.
        path: String,
        /// Position of the string.
        pos: Pos,
    },
    /// `modparam("module", "param", value)`.
    ModParam {
        /// Module name and position.
        module: (String, Pos),
        /// Parameter name and position.
        param: (String, Pos),
        /// Value.
        value: Arg,
    },
    /// A route block.
    Route(RouteDef),
}

/// `route[n] { ... }` and friends.
#[derive(Debug, Clone)]
pub struct RouteDef {
    /// Kind.
    pub kind: RouteKind,
    /// Label (`route{}` is 0).
    pub label: RouteLabel,
    /// Position of the keyword.
    pub pos: Pos,
    /// Statements.
    pub body: Vec<Stmt>,
}

/// A statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `name(args)` — core action or module function (`route(n)` included).
    Call(Call),
    /// `if (cond) then [else els]`.
    If {
        /// Position of `if`.
        pos: Pos,
        /// Condition.
        cond: Expr,
        /// Then branch.
        then: Vec<Stmt>,
        /// Else branch.
        els: Option<Vec<Stmt>>,
    },
    /// `{ ... }`.
    Block(Vec<Stmt>),
    /// `break`.
    Break(Pos),
    /// `drop`.
    Drop(Pos),
}

impl Stmt {
    /// Position of the first token.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            Stmt::Call(c) => Some(c.pos),
            Stmt::If { pos, .. } | Stmt::Break(pos) | Stmt::Drop(pos) => Some(*pos),
            Stmt::Block(b) => b.first().and_then(Stmt::pos),
        }
    }
}

/// A call `name(args)`.
#[derive(Debug, Clone)]
pub struct Call {
    /// Function name.
    pub name: String,
    /// Position of the name.
    pub pos: Pos,
    /// Arguments.
    pub args: Vec<Arg>,
}

/// A condition.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `a && b`, `a and b`, `a & b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`, `a or b`, `a | b`.
    Or(Box<Expr>, Box<Expr>),
    /// `!a`, `not a`.
    Not(Box<Expr>),
    /// `operand op value`.
    Cmp {
        /// Operand keyword (`method`, `uri`, `msg:len`…) and its position.
        operand: (String, Pos),
        /// Operator and its position.
        op: (CmpOp, Pos),
        /// Right side.
        rhs: Arg,
    },
    /// An action used as a condition.
    Call(Call),
}
