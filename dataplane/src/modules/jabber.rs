//! Script module `jabber`: SIMPLE-Jabber gateway.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `jab_send_message` | - | request | send the MESSAGE to the Jabber network |
//! | `jab_join_jconf` | - | request | join a Jabber conference |
//! | `jab_exit_jconf` | - | request | leave a Jabber conference |
//! | `jab_go_online` | - | request | go online in the Jabber network |
//! | `jab_go_offline` | - | request | go offline in the Jabber network |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `db_url` | string | `""` (the server's default database) |
//! | `jaddress` | string | `"127.0.0.1"` |
//! | `jport` | int | `5222` |
//! | `workers` | int | `2` |
//! | `max_jobs` | int | `10` |
//! | `cache_time` | int | `600` |
//! | `delay_time` | int | `90` |
//! | `sleep_time` | int | `20` |
//! | `check_time` | int | `20` |
//! | `aliases` | string | unset |
//! | `proxy` | string | unset |
//! | `registrar` | string | unset |
//! | `jdomain` | string | unset |

use crate::script::{FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `jabber`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "jabber",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "jab_send_message",
            &[],
            RouteKinds::REQUEST,
            "send the MESSAGE to the Jabber network",
        ),
        FunctionDecl::new(
            "jab_join_jconf",
            &[],
            RouteKinds::REQUEST,
            "join a Jabber conference",
        ),
        FunctionDecl::new(
            "jab_exit_jconf",
            &[],
            RouteKinds::REQUEST,
            "leave a Jabber conference",
        ),
        FunctionDecl::new(
            "jab_go_online",
            &[],
            RouteKinds::REQUEST,
            "go online in the Jabber network",
        ),
        FunctionDecl::new(
            "jab_go_offline",
            &[],
            RouteKinds::REQUEST,
            "go offline in the Jabber network",
        ),
    ],
    params: &[
        ParamDecl::str("db_url", ""),
        ParamDecl::str("jaddress", "127.0.0.1"),
        ParamDecl::int("jport", 5222),
        ParamDecl::int("workers", 2),
        ParamDecl::int("max_jobs", 10),
        ParamDecl::int("cache_time", 600),
        ParamDecl::int("delay_time", 90),
        ParamDecl::int("sleep_time", 20),
        ParamDecl::int("check_time", 20),
        ParamDecl::str_unset("aliases"),
        ParamDecl::str_unset("proxy"),
        ParamDecl::str_unset("registrar"),
        ParamDecl::str_unset("jdomain"),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "SIMPLE-Jabber gateway",
    config: None,
    commands: &[],
};
