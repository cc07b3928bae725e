//! Script module `mangler`: NAT traversal utility: SDP and Contact mangling (experimental).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `sdp_mangle_ip` | Str, Str | request | rewrite IPs in SDP: network, new ip |
//! | `sdp_mangle_port` | Int | request | shift ports in SDP: offset |
//! | `encode_contact` | Str, Str | request | encode Contact: prefix, public ip |
//! | `decode_contact` | - | request | decode an encoded request URI |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `contact_flds_separator` | string | `"*"` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `mangler`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "mangler",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "sdp_mangle_ip",
            &[Str, Str],
            RouteKinds::REQUEST,
            "rewrite IPs in SDP: network, new ip",
        ),
        FunctionDecl::new(
            "sdp_mangle_port",
            &[Int],
            RouteKinds::REQUEST,
            "shift ports in SDP: offset",
        ),
        FunctionDecl::new(
            "encode_contact",
            &[Str, Str],
            RouteKinds::REQUEST,
            "encode Contact: prefix, public ip",
        ),
        FunctionDecl::new(
            "decode_contact",
            &[],
            RouteKinds::REQUEST,
            "decode an encoded request URI",
        ),
    ],
    params: &[ParamDecl::str("contact_flds_separator", "*")],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "NAT traversal utility: SDP and Contact mangling (experimental)",
    config: None,
    commands: &[],
};
