//! Bad arguments: exit code 2 and exactly one line on stderr, nothing on stdout.
#![allow(clippy::unwrap_used)]

mod support;

fn bad(args: &[&str], needle: &str) {
    let out = support::run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(stderr.starts_with("loadgen: "), "{stderr:?}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    bad(&[], "scenario is required");
    bad(&["flood"], "unrecognized subcommand");
    bad(&["options"], "--target");
    bad(
        &["options", "--target", "127.0.0.1:5060", "--bogus"],
        "--bogus",
    );
    bad(
        &["options", "--target", "127.0.0.1:5060", "--rate", "0"],
        "--rate",
    );
    bad(
        &["options", "--target", "127.0.0.1:5060", "--rate", "x"],
        "--rate",
    );
    bad(
        &["options", "--target", "127.0.0.1:5060", "--ramp", "1:2"],
        "--ramp",
    );
    bad(
        &["options", "--target", "127.0.0.1:5060", "--duration=-1"],
        "--duration",
    );
    bad(
        &["options", "--target", "127.0.0.1:5060", "--max", "0"],
        "--max",
    );
    bad(
        &[
            "options",
            "--target",
            "127.0.0.1:5060",
            "--transport",
            "sctp",
        ],
        "sctp",
    );
    bad(
        &["options", "--target", "no such host.invalid:5060"],
        "--target",
    );
    bad(
        &[
            "register",
            "--target",
            "127.0.0.1:5060",
            "--users",
            "user@x",
        ],
        "%d",
    );
    bad(
        &[
            "register",
            "--target",
            "127.0.0.1:5060",
            "--users",
            "u%d@x",
            "--range",
            "9-1",
        ],
        "--range",
    );
    bad(
        &[
            "register",
            "--target",
            "127.0.0.1:5060",
            "--users-csv",
            "/nonexistent.csv",
        ],
        "--users-csv",
    );
    bad(
        &["options", "--target", "[::1]:5060", "--bind", "127.0.0.1"],
        "family",
    );
    bad(&["uas", "--auth", "nopassword"], "--auth");
}

#[test]
fn help_and_version_exit_0() {
    let out = support::run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("call"));
    let out = support::run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn unbindable_address_is_fatal_255() {
    for args in [
        &[
            "options",
            "--target",
            "127.0.0.1:5",
            "--bind",
            "192.0.2.1",
            "--max",
            "1",
        ][..],
        &["uas", "--bind", "192.0.2.1:5060"][..],
    ] {
        let out = support::run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(255), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
        assert!(stderr.contains("192.0.2.1"), "{stderr:?}");
    }
}
