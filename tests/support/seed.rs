//! Where the tests find their scripts: the project's own operator examples (`examples/*.cfg`),
//! the small language scripts and fixtures of `tests/data/`, and — only for the tests that also
//! check the SER Admin Guide's own scripts verbatim — a reference copy of those scripts beside
//! the repository (optional: `../shared/seed-configs`), which a fresh clone does not have.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository's `examples/` (operator starting points, also run by the tests).
pub fn examples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

/// The repository's `tests/data/`.
pub fn data_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// `examples/<name>`.
pub fn example(name: &str) -> PathBuf {
    examples_dir().join(name)
}

/// The text of `examples/<name>`.
pub fn example_text(name: &str) -> String {
    let p = example(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// `tests/data/scripts/<name>`.
pub fn script(name: &str) -> PathBuf {
    data_dir().join("scripts").join(name)
}

/// Where a reference copy of the Admin Guide's scripts may lie, outside the repository.
const ADMIN_GUIDE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/seed-configs"); // optional

/// The Admin Guide's scripts, when a reference copy lies beside the repository. Optional: a
/// fresh clone has none, and the caller skips its verbatim checks (saying so).
pub fn admin_guide_dir() -> Option<PathBuf> {
    let d = PathBuf::from(ADMIN_GUIDE);
    d.is_dir().then_some(d)
}

/// Why a verbatim Admin Guide check did not run (for `skip!(unavailable: ..)`).
pub const NO_ADMIN_GUIDE: &str =
    "the Admin Guide's scripts are a reference copy beside the repository, not part of it";

/// Sorted `.cfg` files of a directory.
pub fn cfg_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    v.sort();
    v
}

/// Every script of the repository the tests run: `examples/*.cfg`, `tests/data/scripts/*.cfg`
/// and the shipped `ser.cfg`.
pub fn own_scripts() -> Vec<PathBuf> {
    let mut v = cfg_files(&examples_dir());
    v.extend(cfg_files(&data_dir().join("scripts")));
    v.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/ser.cfg"
    )));
    v
}
