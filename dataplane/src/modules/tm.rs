//! Script module `tm`: transaction manager: stateful processing.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `t_newtran` | - | request | create the transaction; retransmissions are absorbed |
//! | `t_lookup_request` | - | request | true if the request belongs to a known transaction |
//! | `t_reply` | StatusCode, Str | request, failure | stateful reply: code, reason |
//! | `t_retransmit_reply` | - | request | retransmit the last reply of the transaction |
//! | `t_release` | - | request | remove the transaction from memory |
//! | `t_relay` | - | request, failure | stateful forward to the whole destination set |
//! | `t_relay_to_udp` | Host, Port | request, failure | stateful forward to host, port over UDP |
//! | `t_relay_to_tcp` | Host, Port | request, failure | stateful forward to host, port over TCP |
//! | `t_replicate` | Host, Port | request | replicate the request to host, port |
//! | `t_replicate_udp` | Host, Port | request | replicate over UDP |
//! | `t_replicate_tcp` | Host, Port | request | replicate over TCP |
//! | `t_forward_nonack` | Host, Port | request | stateful forward of a non-ACK request to host, port |
//! | `t_forward_nonack_udp` | Host, Port | request | as t_forward_nonack over UDP |
//! | `t_forward_nonack_tcp` | Host, Port | request | as t_forward_nonack over TCP |
//! | `t_on_failure` | FailureRoute | request, failure | enter failure_route[n] if the transaction fails |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `fr_timer` | int | `30` |
//! | `fr_inv_timer` | int | `120` |
//! | `wt_timer` | int | `5` |
//! | `delete_timer` | int | `2` |
//! | `retr_timer1p1` | int | `1` |
//! | `retr_timer1p2` | int | `2` |
//! | `retr_timer1p3` | int | `4` |
//! | `retr_timer2` | int | `4` |
//! | `noisy_ctimer` | int | `0` |
//! | `uac_from` | string | `"sip:foo@foo.bar"` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `tm`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "tm",
    aliases: &[],
    depends: &[],
    functions: &[
        FunctionDecl::new(
            "t_newtran",
            &[],
            RouteKinds::REQUEST,
            "create the transaction; retransmissions are absorbed",
        )
        .restricted("the transaction already exists there"),
        FunctionDecl::new(
            "t_lookup_request",
            &[],
            RouteKinds::REQUEST,
            "true if the request belongs to a known transaction",
        ),
        FunctionDecl::new(
            "t_reply",
            &[StatusCode, Str],
            RouteKinds::REQUEST_FAILURE,
            "stateful reply: code, reason",
        ),
        FunctionDecl::new(
            "t_retransmit_reply",
            &[],
            RouteKinds::REQUEST,
            "retransmit the last reply of the transaction",
        ),
        FunctionDecl::new(
            "t_release",
            &[],
            RouteKinds::REQUEST,
            "remove the transaction from memory",
        ),
        FunctionDecl::new(
            "t_relay",
            &[],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to the whole destination set",
        ),
        FunctionDecl::new(
            "t_relay_to_udp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over UDP",
        ),
        FunctionDecl::new(
            "t_relay_to_tcp",
            &[Host, Port],
            RouteKinds::REQUEST_FAILURE,
            "stateful forward to host, port over TCP",
        ),
        FunctionDecl::new(
            "t_replicate",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate the request to host, port",
        ),
        FunctionDecl::new(
            "t_replicate_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over UDP",
        ),
        FunctionDecl::new(
            "t_replicate_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "replicate over TCP",
        ),
        FunctionDecl::new(
            "t_forward_nonack",
            &[Host, Port],
            RouteKinds::REQUEST,
            "stateful forward of a non-ACK request to host, port",
        ),
        FunctionDecl::new(
            "t_forward_nonack_udp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over UDP",
        ),
        FunctionDecl::new(
            "t_forward_nonack_tcp",
            &[Host, Port],
            RouteKinds::REQUEST,
            "as t_forward_nonack over TCP",
        ),
        FunctionDecl::new(
            "t_on_failure",
            &[FailureRoute],
            RouteKinds::REQUEST_FAILURE,
            "enter failure_route[n] if the transaction fails",
        ),
    ],
    params: &[
        ParamDecl::int("fr_timer", 30),
        ParamDecl::int("fr_inv_timer", 120),
        ParamDecl::int("wt_timer", 5),
        ParamDecl::int("delete_timer", 2),
        ParamDecl::int("retr_timer1p1", 1),
        ParamDecl::int("retr_timer1p2", 2),
        ParamDecl::int("retr_timer1p3", 4),
        ParamDecl::int("retr_timer2", 4),
        ParamDecl::int("noisy_ctimer", 0),
        ParamDecl::str("uac_from", "sip:foo@foo.bar"),
    ],
    renamed_functions: &[
        Renamed {
            old: "t_relay_to",
            new: Some("t_relay_to_udp"),
            note: "t_relay_to was replaced by t_relay_to_udp and t_relay_to_tcp in 0.8.11",
        },
        Renamed {
            old: "t_reply_unsafe",
            new: Some("t_reply"),
            note: "t_reply_unsafe is deprecated; t_reply is now used from any place in the script",
        },
        Renamed {
            old: "t_on_negative",
            new: Some("t_on_failure"),
            note: "t_on_negative was renamed t_on_failure",
        },
    ],
    renamed_params: &[],
    doc: "transaction manager: stateful processing",
};
