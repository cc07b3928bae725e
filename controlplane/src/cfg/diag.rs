//! Diagnostics: `file:line:col: error: message`, the source line, a caret, and an optional hint.
//!
//! Rendered by hand rather than with annotate-snippets: the first line must be the
//! `file:line:col: severity: message` form that editors and `ser -c` users grep for, and one caret
//! under one character is all we ever draw.

use std::fmt;

/// A position in the script: 1-based line and column; the column counts characters (a tab is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
}

impl Pos {
    /// A position.
    pub const fn new(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }
}

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The config is rejected.
    Error,
    /// The config loads; the user should look.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One message about the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to the compiler.
    pub file: String,
    /// Line, from 1 (0 when the message is about the file as a whole).
    pub line: u32,
    /// Column in characters, from 1.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// How to fix it, e.g. "did you mean `t_relay`?".
    pub hint: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// The text of line `line` (without its newline), for the caret.
    pub source_line: String,
}

impl Diagnostic {
    /// `file:line:col: error: message`, then the source line with a caret under `col`, then the hint.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.line == 0 {
            out.push_str(&format!(
                "{}: {}: {}\n",
                self.file, self.severity, self.message
            ));
        } else {
            out.push_str(&format!(
                "{}:{}:{}: {}: {}\n",
                self.file, self.line, self.col, self.severity, self.message
            ));
            let num = self.line.to_string();
            let pad = " ".repeat(num.len());
            out.push_str(&format!("{pad} |\n{num} | {}\n{pad} | ", self.source_line));
            // Keep tabs so the caret lines up whatever the terminal's tab width is.
            for c in self
                .source_line
                .chars()
                .take(self.col.saturating_sub(1) as usize)
            {
                out.push(if c == '\t' { '\t' } else { ' ' });
            }
            out.push_str("^\n");
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("  = hint: {h}\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Everything wrong with a script that failed to compile (errors sorted by position).
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    /// At least one error.
    pub errors: Vec<Diagnostic>,
    /// Warnings found on the way.
    pub warnings: Vec<Diagnostic>,
}

impl Diagnostics {
    /// All errors, then all warnings, rendered.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for d in self.errors.iter().chain(&self.warnings) {
            s.push_str(&d.render());
        }
        s
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics for one source file.
#[derive(Debug)]
pub(crate) struct Sink<'s> {
    file: String,
    lines: Vec<&'s str>,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(file: &str, src: &'s str) -> Sink<'s> {
        Sink {
            file: file.to_string(),
            lines: src
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn make(&self, pos: Pos, sev: Severity, msg: String, hint: Option<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message: msg,
            hint,
            severity: sev,
            source_line: self
                .lines
                .get((pos.line as usize).wrapping_sub(1))
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, msg: impl Into<String>) {
        let d = self.make(pos, Severity::Error, msg.into(), None);
        self.errors.push(d);
    }

    pub(crate) fn error_hint(&mut self, pos: Pos, msg: impl Into<String>, hint: Option<String>) {
        let d = self.make(pos, Severity::Error, msg.into(), hint);
        self.errors.push(d);
    }

    pub(crate) fn warn(&mut self, pos: Pos, msg: impl Into<String>, hint: Option<String>) {
        let d = self.make(pos, Severity::Warning, msg.into(), hint);
        self.warnings.push(d);
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// Levenshtein distance (for did-you-mean hints).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `name`, if close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    let lower = name.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let d = if c.eq_ignore_ascii_case(name) {
                0
            } else {
                edit_distance(&lower, &c.to_ascii_lowercase())
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_and_suggestion() {
        assert_eq!(edit_distance("sl_send_replay", "sl_send_reply"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(
            did_you_mean("t_rellay", ["t_relay", "t_reply", "sl_send_reply"]),
            Some("t_relay")
        );
        assert_eq!(did_you_mean("xyz", ["t_relay"]), None);
    }

    #[test]
    fn render_has_caret_under_column_with_tabs_kept() {
        let mut s = Sink::new("a.cfg", "route{\n\tfoo();\n}\n");
        s.error_hint(
            Pos::new(2, 2),
            "unknown function 'foo'",
            Some("did you mean `log`?".into()),
        );
        let r = s.errors[0].render();
        assert!(
            r.starts_with("a.cfg:2:2: error: unknown function 'foo'\n"),
            "{r}"
        );
        assert!(r.contains("2 | \tfoo();\n  | \t^\n"), "{r}");
        assert!(r.contains("= hint: did you mean `log`?"), "{r}");
    }
}
