//! Script module `acc`: call accounting (syslog, optionally SQL and RADIUS).
//!
//! Declaration table only (names, arity, argument fix-up, allowed route kinds, parameters);
//! the implementations are added to the same table by later issues.
//! Needs `tm` loaded as well.
//!
//! | function | args | routes | what |
//! |---|---|---|---|
//! | `acc_log_request` | Str | request, failure | report the request to syslog now: comment (e.g. "404 Not Found") |
//! | `acc_db_request` | Str, Str | request, failure | report the request to the database: comment, table |
//! | `acc_rad_request` | Str | request, failure | report the request via RADIUS: comment |
//!
//! | parameter | type | default |
//! |---|---|---|
//! | `log_level` | int | `2` |
//! | `log_flag` | int | `0` |
//! | `log_missed_flag` | int | `0` |
//! | `log_fmt` | string | `"fmiosbcdrt"` |
//! | `report_ack` | int | `1` |
//! | `report_cancels` | int | `0` |
//! | `early_media` | int | `0` |
//! | `failed_transactions` | int | `0` |
//! | `db_url` | string | `""` (the server's default database) |
//! | `db_flag` | int | `0` |
//! | `db_missed_flag` | int | `0` |
//! | `radius_config` | string | `"/usr/local/etc/radiusclient/radiusclient.conf"` |
//! | `radius_flag` | int | `0` |
//! | `radius_missed_flag` | int | `0` |
//! | `service_type` | int | `15` |

use crate::script::{ArgKind::*, FunctionDecl, ModuleDecl, ParamDecl, Renamed, RouteKinds};

/// Declaration of module `acc`.
pub static MODULE: ModuleDecl = ModuleDecl {
    name: "acc",
    aliases: &[],
    depends: &["tm"],
    functions: &[
        FunctionDecl::new(
            "acc_log_request",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request to syslog now: comment (e.g. \"404 Not Found\")",
        ),
        FunctionDecl::new(
            "acc_db_request",
            &[Str, Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request to the database: comment, table",
        ),
        FunctionDecl::new(
            "acc_rad_request",
            &[Str],
            RouteKinds::REQUEST_FAILURE,
            "report the request via RADIUS: comment",
        ),
    ],
    params: &[
        ParamDecl::int("log_level", 2),
        ParamDecl::int("log_flag", 0),
        ParamDecl::int("log_missed_flag", 0),
        ParamDecl::str("log_fmt", "fmiosbcdrt"),
        ParamDecl::int("report_ack", 1),
        ParamDecl::int("report_cancels", 0),
        ParamDecl::int("early_media", 0),
        ParamDecl::int("failed_transactions", 0),
        ParamDecl::str("db_url", ""),
        ParamDecl::int("db_flag", 0),
        ParamDecl::int("db_missed_flag", 0),
        ParamDecl::str(
            "radius_config",
            "/usr/local/etc/radiusclient/radiusclient.conf",
        ),
        ParamDecl::int("radius_flag", 0),
        ParamDecl::int("radius_missed_flag", 0),
        ParamDecl::int("service_type", 15),
    ],
    renamed_functions: &[Renamed {
        old: "acc_request",
        new: Some("acc_log_request"),
        note: "acc_request is now called acc_log_request",
    }],
    renamed_params: &[
        Renamed {
            old: "acc_flag",
            new: Some("log_flag"),
            note: "acc_flag was renamed log_flag",
        },
        Renamed {
            old: "log_missed_calls",
            new: Some("log_missed_flag"),
            note: "the module's parameter is log_missed_flag",
        },
    ],
    doc: "call accounting (syslog, optionally SQL and RADIUS)",
    config: None,
    commands: &[],
};
