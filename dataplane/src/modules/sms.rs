//! Script module `sms`: SIMPLE/SMS gateway (needs GSM modems).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sms_send_msg_to_net` | Str | request | send the MESSAGE as SMS via the named network |
//! | `sms_send_msg` | - | request | send the MESSAGE as SMS via the default network |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `modems` | string | unset |
//! | `networks` | string | unset |
//! | `links` | string | unset |
//! | `default_net` | string | unset |
//! | `max_sms_parts` | int | `4` |
//! | `domain` | string | unset |
//! | `use_contact` | int | `0` |
//! | `sms_report_type` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `sms`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "sms",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "sms_send_msg_to_net",
            &[Str],
            RouteKinds::REQUEST,
            "send the MESSAGE as SMS via the named network",
        ),
        FunctionDecl::new(
            "sms_send_msg",
            &[],
            RouteKinds::REQUEST,
            "send the MESSAGE as SMS via the default network",
        ),
    ],
    params: &[
        ParamDecl::str_unset("modems"),
        ParamDecl::str_unset("networks"),
        ParamDecl::str_unset("links"),
        ParamDecl::str_unset("default_net"),
        ParamDecl::int("max_sms_parts", 4),
        ParamDecl::str_unset("domain"),
        ParamDecl::int("use_contact", 0),
        ParamDecl::int("sms_report_type", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "SIMPLE/SMS gateway (needs GSM modems)",
    config: None,
    commands: &[],
};
