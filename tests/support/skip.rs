//! The one way a test skips: `skip!("sipp is not installed (apt-get install sip-tester)")`
//! prints `skipped: <test>: <reason>` straight to standard error (libtest does not capture it,
//! so a skip is seen even when the test passes) and returns from the test.
//!
//! With `CI=true` a skip is a failure: CI installs every tool and runs every service the tests
//! need, so a skip there means something is missing. A test may skip in CI only when it names why
//! the thing cannot be there, as `skip!(unavailable: "why", "reason")` (an IPv6 loopback the
//! kernel does not have, a reference copy that is not part of the repository).
#![allow(dead_code)]

use std::io::Write;

/// Reports a skip; panics under `CI=true` unless `unavailable` says why that is expected.
pub fn report(unavailable: Option<&str>, reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let line = match unavailable {
        Some(why) => format!("skipped: {test}: {reason} ({why})\n"),
        None => format!("skipped: {test}: {reason}\n"),
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
    if ci && unavailable.is_none() {
        panic!("CI=true and {test} was skipped: {reason}");
    }
}

/// `skip!("reason {}", x)` or `skip!(unavailable: "why it cannot be here", "reason {}", x)`:
/// report and return from the calling test. Declare the module with `#[macro_use]`.
#[allow(unused_macros)]
macro_rules! skip {
    (unavailable: $why:expr, $($fmt:tt)+) => {{
        $crate::skip::report(Some($why), &format!($($fmt)+));
        return;
    }};
    ($($fmt:tt)+) => {{
        $crate::skip::report(None, &format!($($fmt)+));
        return;
    }};
}
