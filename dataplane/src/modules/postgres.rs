//! Script module `postgres`: PostgreSQL database back-end (experimental).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! Exports no script functions.

use crate::script::ModuleDecl;

/// Declaration of module `postgres`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "postgres",
    aliases: &[],
    depends: &[],
    functions: &[],
    params: &[],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "PostgreSQL database back-end (experimental)",
    config: None,
    commands: &[],
};
