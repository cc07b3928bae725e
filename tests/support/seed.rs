//! Locating the shared seed configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `../shared/seed-configs` next to the workspace.
pub fn seed_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/seed-configs"
    ))
}

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
