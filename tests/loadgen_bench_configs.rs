//! The SER-dialect configs `bench/compare.sh` starts ser with compile without errors (the
//! Kamailio ones are checked by `kamailio -c` in the script itself).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use controlplane::cfg::compile_file;

#[test]
fn bench_configs_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/configs");
    let mut n = 0;
    for scenario in ["options", "forward", "register", "register-auth", "call"] {
        let p = dir.join(format!("{scenario}.cfg"));
        let c = compile_file(&p).unwrap_or_else(|d| panic!("{}", d.render()));
        assert!(c.program.main_route.is_some(), "{scenario}: no main route");
        n += 1;
    }
    assert_eq!(n, 5);
}
