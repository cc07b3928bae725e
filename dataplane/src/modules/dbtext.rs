//! Script module `dbtext`: flat-text-file database back-end.
//!
//! A driver: loading it changes nothing by itself; every `db_url` of the form `dbtext:///dir` (or
//! a plain directory path, as SER's dbtext took) is served by the controlplane's dbtext backend
//! (`controlplane::db::dbtext`: SER's file format, one file per table, atomic writes), whether or
//! not this module is loaded.
//!
//! Exports no script functions and no parameters.

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
