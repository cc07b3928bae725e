//! Script module `auth`: digest authentication core: challenges and nonces.
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `sl` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `www_challenge` | Str, Int | request | send 401 with WWW-Authenticate: realm, qop (0|1) |
//! | `proxy_challenge` | Str, Int | request | send 407 with Proxy-Authenticate: realm, qop (0|1) |
//! | `consume_credentials` | - | request | remove the credentials used for authorization from the request |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `secret` | string | unset |
//! | `nonce_expire` | int | `300` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `auth`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "auth",
    aliases: &[],
    depends: &["sl"],
    functions: &[
        FunctionDecl::new("www_challenge", &[Str, Int], RouteKinds::REQUEST, "send 401 with WWW-Authenticate: realm, qop (0|1)").restricted("it replies statelessly"),
        FunctionDecl::new("proxy_challenge", &[Str, Int], RouteKinds::REQUEST, "send 407 with Proxy-Authenticate: realm, qop (0|1)").restricted("it replies statelessly"),
        FunctionDecl::new("consume_credentials", &[], RouteKinds::REQUEST, "remove the credentials used for authorization from the request"),
    ],
    params: &[
        ParamDecl::str_unset("secret"),
        ParamDecl::int("nonce_expire", 300),
    ],
    renamed_functions: &[
    ],
    renamed_params: &[
        Renamed { old: "db_url", new: None, note: "parameters of the former auth module moved to module auth_db in 0.8.11: use modparam(\"auth_db\", \"db_url\", ...)" },
    ],
    doc: "digest authentication core: challenges and nonces",
};
