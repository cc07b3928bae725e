//! Script module `dbtext`: flat-text-file database back-end.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! Exports no script functions.

use crate::script::ModuleDecl;

/// Declaration of module `dbtext`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "dbtext",
    aliases: &[],
    depends: &[],
    functions: &[],
    params: &[],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "flat-text-file database back-end",
    config: None,
    commands: &[],
};
