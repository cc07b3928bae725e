//! Script module `exec`: execute external programs.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `exec_msg` | Str | request, failure | run a shell command with the request on standard input; false on non-zero exit |
//! | `exec_dset` | Str | request, failure | run a command with the URI appended; its output replaces the destination set |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `time_to_kill` | int | `0` |
//! | `setvars` | int | `1` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `exec`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "exec",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "exec_msg",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "run a shell command with the request on standard input; false on non-zero exit",
        ),
        FunctionDecl::new(
            "exec_dset",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "run a command with the URI appended; its output replaces the destination set",
        ),
    ],
    params: &[
        ParamDecl::int("time_to_kill", 0),
        ParamDecl::int("setvars", 1),
    ],
    renamed_functions: &[
        Renamed {
            old: "exec_uri",
            new: None,
            note: "exec_uri was obsoleted by exec_dset",
        },
        Renamed {
            old: "exec_user",
            new: None,
            note: "exec_user was obsoleted by exec_dset (use the user variable)",
        },
    ],
    renamed_params: &[],
    doc: "execute external programs",
    config: None,
    commands: &[],
};
