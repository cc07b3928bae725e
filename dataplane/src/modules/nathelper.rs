//! Script module `nathelper`: NAT traversal helper for symmetric phones (experimental).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `usrloc` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `fix_nated_contact` | - | request | rewrite Contact with the source address |
//! | `fix_nated_sdp` | Int | request | rewrite the SDP: flags |
//! | `force_rtp_proxy` | - | request | route the media through rtpproxy |
//! | `unforce_rtp_proxy` | - | request | release the rtpproxy session |
//! | `nat_uac_test` | Int | request | true if the UA is behind NAT: tests |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `natping_interval` | int | `0` |
//! | `ping_nated_only` | int | `0` |
//! | `rtpproxy_sock` | string | `"unix:/var/run/rtpproxy.sock"` |
//! | `rtpproxy_disable` | int | `0` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, RouteKinds};

/// Declaration of module `nathelper`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "nathelper",
    aliases: &[],
    depends: &["usrloc"],
    functions: &[
        FunctionDecl::new(
            "fix_nated_contact",
            &[],
            RouteKinds::REQUEST,
            "rewrite Contact with the source address",
        ),
        FunctionDecl::new(
            "fix_nated_sdp",
            &[Int],
            RouteKinds::REQUEST,
            "rewrite the SDP: flags",
        ),
        FunctionDecl::new(
            "force_rtp_proxy",
            &[],
            RouteKinds::REQUEST,
            "route the media through rtpproxy",
        ),
        FunctionDecl::new(
            "unforce_rtp_proxy",
            &[],
            RouteKinds::REQUEST,
            "release the rtpproxy session",
        ),
        FunctionDecl::new(
            "nat_uac_test",
            &[Int],
            RouteKinds::REQUEST,
            "true if the UA is behind NAT: tests",
        ),
    ],
    params: &[
        ParamDecl::int("natping_interval", 0),
        ParamDecl::int("ping_nated_only", 0),
        ParamDecl::str("rtpproxy_sock", "unix:/var/run/rtpproxy.sock"),
        ParamDecl::int("rtpproxy_disable", 0),
    ],
    renamed_functions: &[],
    renamed_params: &[],
    doc: "NAT traversal helper for symmetric phones (experimental)",
    config: None,
    commands: &[],
};
