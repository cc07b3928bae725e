//! The script compiler: `ser.cfg` text to a [`dataplane::script::ir::Program`].
//!
//! Pipeline: [`lexer`] (tokens with file:line:col) → [`parser`] (recursive descent with recovery,
//! [`ast`]) → [`lower`] (name resolution against the module tables in `dataplane::modules`, checks
//! from [`check`], flattening to the IR). Every error of every phase is reported in one run, sorted
//! by position; warnings are kept apart. See [`diag`] for the rendering.
//!
//! ```no_run
//! match controlplane::cfg::compile_file(std::path::Path::new("/etc/ser/ser.cfg")) {
//!     Ok(c) => { for w in &c.warnings { eprint!("{}", w.render()); } println!("config file ok, exiting..."); }
//!     Err(d) => { eprint!("{}", d.render()); std::process::exit(1); }
//! }
//! ```

pub mod ast;
mod check;
pub mod diag;
pub mod lexer;
mod lower;
pub mod parser;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use std::path::Path;

use dataplane::script::ir::Program;

pub use diag::{Diagnostic, Diagnostics, Pos, Severity};

/// A script that compiled, and what the compiler would like the user to look at.
#[derive(Debug)]
pub struct Compiled {
    /// The program, ready to be put in an `Arc` and shared with the shards.
    pub program: Program,
    /// Warnings (deprecated names, unreachable code, missing module dependencies…).
    pub warnings: Vec<Diagnostic>,
}

/// Compile the script in `path`; diagnostics name the file as given.
pub fn compile_file(path: &Path) -> Result<Compiled, Diagnostics> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => compile_str(&name, &String::from_utf8_lossy(&bytes)).map(|mut c| {
            // Modules take relative file names from the config file's directory, as SER did.
            c.program.config_dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf);
            c
        }),
        Err(e) => Err(Diagnostics {
            errors: vec![Diagnostic {
                file: name,
                line: 0,
                col: 0,
                message: format!("cannot read the config file: {e}"),
                hint: None,
                severity: Severity::Error,
                source_line: String::new(),
            }],
            warnings: Vec::new(),
        }),
    }
}

/// Compile script text; `name` is used as the file name in diagnostics.
pub fn compile_str(name: &str, src: &str) -> Result<Compiled, Diagnostics> {
    let mut sink = diag::Sink::new(name, src);
    let lexed = lexer::lex(src, &mut sink);
    let items = parser::parse(&lexed, &mut sink);
    let program = lower::lower(&items, &mut sink);
    let mut errors = std::mem::take(&mut sink.errors);
    let mut warnings = std::mem::take(&mut sink.warnings);
    errors.sort_by_key(|d| (d.line, d.col));
    warnings.sort_by_key(|d| (d.line, d.col));
    if errors.is_empty() {
        Ok(Compiled { program, warnings })
    } else {
        Err(Diagnostics { errors, warnings })
    }
}
