//! Lexer for SER 0.8.11 scripts.
//!
//! Tokens carry the [`Pos`] of their first character (1-based line and column, columns count
//! characters). Comments are `#` to end of line and `/* ... */` (not nested). Strings are `"..."`
//! with the escapes `\n \r \t \\ \"` (any other backslash is kept, so regexes like `"a\.b"` work) or
//! `'...'` taken literally; both may span lines. Words are identifiers and dotted host names
//! (`backup.foo.bar`); dotted quads are IPv4 addresses; a run of hex digits and colons that parses as
//! an IPv6 address is one (`::1`, `fe80::1`), otherwise `:` is a token of its own (`uri:host`).
//! A lexical error is reported and lexing goes on, except for an unterminated string or comment,
//! which swallow the rest of the file ([`Lexed::truncated`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::diag::{Pos, Sink};

/// Token kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier, keyword or dotted host name.
    Word(String),
    /// Unsigned decimal integer.
    Int(i64),
    /// String literal (escapes applied).
    Str(String),
    /// Dotted-quad address.
    Ipv4(Ipv4Addr),
    /// IPv6 address.
    Ipv6(Ipv6Addr),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `;`
    Semi,
    /// `,`
    Comma,
    /// `=`
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `=~`
    Match,
    /// `!`
    Not,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `&`
    And,
    /// `|`
    Or,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `/`
    Slash,
    /// `:`
    Colon,
    /// `-`
    Minus,
    /// End of input.
    Eof,
}

impl Tok {
    /// How the token is shown in messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Int(n) => format!("number {n}"),
            Tok::Str(_) => "a string".into(),
            Tok::Ipv4(a) => format!("address {a}"),
            Tok::Ipv6(a) => format!("address {a}"),
            Tok::Eof => "end of file".into(),
            other => format!("'{}'", other.punct()),
        }
    }

    fn punct(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Semi => ";",
            Tok::Comma => ",",
            Tok::Assign => "=",
            Tok::EqEq => "==",
            Tok::Ne => "!=",
            Tok::Match => "=~",
            Tok::Not => "!",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
            Tok::And => "&",
            Tok::Or => "|",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::Slash => "/",
            Tok::Colon => ":",
            Tok::Minus => "-",
            _ => "?",
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Kind and value.
    pub tok: Tok,
    /// Position of the first character.
    pub pos: Pos,
}

/// Result of lexing one file.
#[derive(Debug)]
pub struct Lexed {
    /// Tokens, ending with [`Tok::Eof`].
    pub tokens: Vec<Token>,
    /// An unterminated string or comment ran to the end of the file: "end of file" errors after it
    /// are consequences, not news.
    pub truncated: bool,
}

struct Cursor<'a> {
    chars: Vec<char>,
    i: usize,
    line: u32,
    col: u32,
    _src: &'a str,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }
    fn peek_at(&self, n: usize) -> Option<char> {
        self.chars.get(self.i + n).copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }
    fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Lex a whole file. Errors go to `sink`.
pub(crate) fn lex(src: &str, sink: &mut Sink<'_>) -> Lexed {
    let mut cur = Cursor {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        col: 1,
        _src: src,
    };
    let mut tokens = Vec::new();
    let mut truncated = false;
    while let Some(c) = cur.peek() {
        let pos = cur.pos();
        if c.is_whitespace() {
            cur.bump();
            continue;
        }
        if c == '#' {
            while let Some(c) = cur.peek() {
                if c == '\n' {
                    break;
                }
                cur.bump();
            }
            continue;
        }
        if c == '/' && cur.peek_at(1) == Some('*') {
            cur.bump();
            cur.bump();
            let mut closed = false;
            while let Some(c) = cur.bump() {
                if c == '*' && cur.peek() == Some('/') {
                    cur.bump();
                    closed = true;
                    break;
                }
            }
            if !closed {
                sink.error(
                    pos,
                    "unterminated comment (no closing '*/' before end of file)",
                );
                truncated = true;
            }
            continue;
        }
        if c == '"' || c == '\'' {
            cur.bump();
            let mut s = String::new();
            let mut closed = false;
            while let Some(ch) = cur.bump() {
                if ch == c {
                    closed = true;
                    break;
                }
                if ch == '\\' && c == '"' {
                    match cur.peek() {
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some('t') => s.push('\t'),
                        Some('\\') => s.push('\\'),
                        Some('"') => s.push('"'),
                        _ => {
                            s.push('\\');
                            continue;
                        }
                    }
                    cur.bump();
                    continue;
                }
                s.push(ch);
            }
            if !closed {
                sink.error(
                    pos,
                    format!("unterminated string (no closing '{c}' before end of file)"),
                );
                truncated = true;
                break;
            }
            tokens.push(Token {
                tok: Tok::Str(s),
                pos,
            });
            continue;
        }
        // IPv6: a run of hex digits, colons (and dots for a trailing IPv4 part) with at least two colons.
        if c.is_ascii_hexdigit() || c == ':' {
            let mut j = cur.i;
            let mut colons = 0;
            while let Some(&ch) = cur.chars.get(j) {
                if ch.is_ascii_hexdigit() || ch == ':' || ch == '.' {
                    colons += usize::from(ch == ':');
                    j += 1;
                } else {
                    break;
                }
            }
            let next_is_word = cur.chars.get(j).is_some_and(|&ch| is_word_char(ch));
            if colons >= 2 && !next_is_word {
                let text: String = cur.chars[cur.i..j].iter().collect();
                if let Ok(a) = text.parse::<Ipv6Addr>() {
                    for _ in cur.i..j {
                        cur.bump();
                    }
                    tokens.push(Token {
                        tok: Tok::Ipv6(a),
                        pos,
                    });
                    continue;
                }
            }
        }
        if is_word_char(c) && c != '-' {
            let mut w = String::new();
            while let Some(ch) = cur.peek() {
                if is_word_char(ch) || (ch == '.' && cur.peek_at(1).is_some_and(is_word_char)) {
                    w.push(ch);
                    cur.bump();
                } else {
                    break;
                }
            }
            tokens.push(Token {
                tok: classify_word(w, pos, sink),
                pos,
            });
            continue;
        }
        cur.bump();
        let two = |cur: &mut Cursor<'_>, next: char, yes: Tok, no: Tok| {
            if cur.peek() == Some(next) {
                cur.bump();
                yes
            } else {
                no
            }
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '{' => Tok::LBrace,
            '}' => Tok::RBrace,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ';' => Tok::Semi,
            ',' => Tok::Comma,
            '/' => Tok::Slash,
            ':' => Tok::Colon,
            '-' => Tok::Minus,
            '=' => match cur.peek() {
                Some('=') => {
                    cur.bump();
                    Tok::EqEq
                }
                Some('~') => {
                    cur.bump();
                    Tok::Match
                }
                _ => Tok::Assign,
            },
            '!' => two(&mut cur, '=', Tok::Ne, Tok::Not),
            '&' => two(&mut cur, '&', Tok::AndAnd, Tok::And),
            '|' => two(&mut cur, '|', Tok::OrOr, Tok::Or),
            '<' => two(&mut cur, '=', Tok::Le, Tok::Lt),
            '>' => two(&mut cur, '=', Tok::Ge, Tok::Gt),
            other => {
                sink.error(pos, format!("unexpected character '{other}'"));
                continue;
            }
        };
        tokens.push(Token { tok, pos });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        pos: cur.pos(),
    });
    Lexed { tokens, truncated }
}

fn classify_word(w: String, pos: Pos, sink: &mut Sink<'_>) -> Tok {
    if w.bytes().all(|b| b.is_ascii_digit()) {
        // A leading 0 means octal, as operators write permission bits (`fifo_mode=0600`) and C
        // and Kamailio read them; SER's atoi() read 0600 as six hundred.
        if w.len() > 1 && w.starts_with('0') && w.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            if let Ok(n) = i64::from_str_radix(&w[1..], 8) {
                return Tok::Int(n);
            }
        }
        return match w.parse::<i64>() {
            Ok(n) => Tok::Int(n),
            Err(_) => {
                sink.error(pos, format!("number {w} is too large"));
                Tok::Int(0)
            }
        };
    }
    if w.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if w.split('.').count() == 4 {
            if let Ok(a) = w.parse::<Ipv4Addr>() {
                return Tok::Ipv4(a);
            }
        }
        sink.error(pos, format!("invalid IPv4 address '{w}'"));
        return Tok::Ipv4(Ipv4Addr::UNSPECIFIED);
    }
    Tok::Word(w)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn toks(src: &str) -> (Vec<Tok>, usize) {
        let mut sink = Sink::new("t", src);
        let l = lex(src, &mut sink);
        (
            l.tokens.into_iter().map(|t| t.tok).collect(),
            sink.errors.len(),
        )
    }

    #[test]
    fn leading_zero_numbers_are_octal() {
        let (t, e) = toks("0600 600 0 09 0666");
        assert_eq!(e, 0);
        assert_eq!(
            t[..5],
            [
                Tok::Int(0o600),
                Tok::Int(600),
                Tok::Int(0),
                Tok::Int(9),
                Tok::Int(0o666)
            ]
        );
    }

    #[test]
    fn string_escapes() {
        let (t, e) = toks(r#""a\nb\tc\\d\"e\.f\r""#);
        assert_eq!(e, 0);
        assert_eq!(t[0], Tok::Str("a\nb\tc\\d\"e\\.f\r".into()));
        let (t, _) = toks("'x\\n \"y\"\nz'");
        assert_eq!(t[0], Tok::Str("x\\n \"y\"\nz".into()));
    }

    #[test]
    fn comments_and_positions() {
        let src = "# c\n/* a\n b */ route { \t x(); }";
        let mut sink = Sink::new("t", src);
        let l = lex(src, &mut sink);
        assert_eq!(l.tokens[0].tok, Tok::Word("route".into()));
        assert_eq!(l.tokens[0].pos, Pos::new(3, 7));
        assert_eq!(l.tokens[2].pos, Pos::new(3, 17));
    }

    #[test]
    fn addresses_hosts_and_colons() {
        let (t, e) = toks("192.168.0.1/24 ::1 fe80::1/64 uri:host backup.foo.bar 5060 -1 ::");
        assert_eq!(e, 0);
        assert_eq!(
            t,
            vec![
                Tok::Ipv4("192.168.0.1".parse().unwrap()),
                Tok::Slash,
                Tok::Int(24),
                Tok::Ipv6("::1".parse().unwrap()),
                Tok::Ipv6("fe80::1".parse().unwrap()),
                Tok::Slash,
                Tok::Int(64),
                Tok::Word("uri".into()),
                Tok::Colon,
                Tok::Word("host".into()),
                Tok::Word("backup.foo.bar".into()),
                Tok::Int(5060),
                Tok::Minus,
                Tok::Int(1),
                Tok::Ipv6(Ipv6Addr::UNSPECIFIED),
                Tok::Eof
            ]
        );
        let (t, _) = toks("udp:10.0.0.1:5060 msg:len");
        assert_eq!(t[0], Tok::Word("udp".into()));
        assert_eq!(t[1], Tok::Colon);
        assert_eq!(t[2], Tok::Ipv4("10.0.0.1".parse().unwrap()));
        assert_eq!(t[3], Tok::Colon);
        assert_eq!(t[6], Tok::Colon);
        let (_, e) = toks("300.1.1.1");
        assert_eq!(e, 1);
    }

    #[test]
    fn operators() {
        let (t, _) = toks("== != =~ = ! && || & | < > <= >=");
        assert_eq!(
            t,
            vec![
                Tok::EqEq,
                Tok::Ne,
                Tok::Match,
                Tok::Assign,
                Tok::Not,
                Tok::AndAnd,
                Tok::OrOr,
                Tok::And,
                Tok::Or,
                Tok::Lt,
                Tok::Gt,
                Tok::Le,
                Tok::Ge,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn unterminated_comment_and_stray_characters() {
        let src = "route { @ x(); } /* open\n";
        let mut sink = Sink::new("t", src);
        let l = lex(src, &mut sink);
        assert!(l.truncated);
        let msgs: Vec<_> = sink
            .errors
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.col, d.message))
            .collect();
        assert_eq!(
            msgs,
            [
                "1:9 unexpected character '@'",
                "1:18 unterminated comment (no closing '*/' before end of file)"
            ]
        );
    }

    #[test]
    fn ipv6_needs_two_colons_and_no_trailing_word() {
        let (t, _) = toks("dead:beef fe80::1 abc::x");
        assert_eq!(t[0], Tok::Word("dead".into()));
        assert_eq!(t[1], Tok::Colon);
        assert_eq!(t[3], Tok::Ipv6("fe80::1".parse().unwrap()));
        assert_eq!(t[4], Tok::Word("abc".into()));
    }

    #[test]
    fn unterminated_string_reports_opening_quote() {
        let src = "route {\n  log(1, \"abc);\n}\n";
        let mut sink = Sink::new("t", src);
        let l = lex(src, &mut sink);
        assert!(l.truncated);
        assert_eq!(sink.errors[0].line, 2);
        assert_eq!(sink.errors[0].col, 10);
        assert_eq!(
            sink.errors[0].message,
            "unterminated string (no closing '\"' before end of file)"
        );
    }
}
