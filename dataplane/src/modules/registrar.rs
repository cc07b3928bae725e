//! Script module `registrar`: registrar (save, lookup) on top of usrloc.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `usrloc`, `sl` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `save` | Str | request | store the Contacts of a REGISTER in the table and reply |
//! | `lookup` | Str | request | rewrite the request URI with the registered contacts; false if none |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `default_expires` | int | `3600` |
//! | `default_q` | int | `0` |
//! | `append_branches` | int | `1` |
//! | `desc_time_order` | int | `0` |
//! | `use_domain` | int | `0` |
//! | `case_sensitive` | int | `0` |
//! | `min_expires` | int | `60` |
//! | `max_expires` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `registrar`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "registrar",
    aliases: &[],
    depends: &["usrloc", "sl"],
    functions: &[
        FunctionDecl::new(
            "save",
            &[Str],
            RouteKinds::REQUEST,
            "store the Contacts of a REGISTER in the table and reply",
        )
        .restricted("it replies statelessly to the REGISTER"),
        FunctionDecl::new(
            "lookup",
            &[Str],
            RouteKinds::REQUEST,
            "rewrite the request URI with the registered contacts; false if none",
        ),
    ],
    params: &[
        ParamDecl::int("default_expires", 3600),
        ParamDecl::int("default_q", 0),
        ParamDecl::int("append_branches", 1),
        ParamDecl::int("desc_time_order", 0),
        ParamDecl::int("use_domain", 0),
        ParamDecl::int("case_sensitive", 0),
        ParamDecl::int("min_expires", 60),
        ParamDecl::int("max_expires", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "registrar (save, lookup) on top of usrloc",
};
