//! Script module `mysql`: MySQL database back-end.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! Exports no script functions.
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `ping_interval` | int | `300` |

use crate::script::{ModuleDecl, ParamDecl};

/// Declaration of module `mysql`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "mysql",
    aliases: &[],
    depends: &[],
    functions: &[],
    params: &[ParamDecl::int("ping_interval", 300)],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "MySQL database back-end",
    config: None,
    commands: &[],
};
