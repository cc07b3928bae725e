//! Every `tests/data/broken/*.cfg` fails to compile, and its first error is the one line 1
//! announces: `# expect: LINE:COL MESSAGE`. The Admin Guide's broken variants are checked the
//! same way when a reference copy is beside the repository.
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;
#[macro_use]
#[path = "support/skip.rs"]
mod skip;

use std::path::Path;

use controlplane::cfg::compile_file;

#[test]
fn broken_configs_report_the_expected_first_error() {
    check_dir(&seed::data_dir().join("broken"));
}

#[test]
fn admin_guide_broken_configs_report_the_expected_first_error() {
    let Some(dir) = seed::admin_guide_dir() else {
        skip!(unavailable: seed::NO_ADMIN_GUIDE, "no Admin Guide scripts to check");
    };
    check_dir(&dir.join("broken"));
}

fn check_dir(dir: &Path) {
    let files = seed::cfg_files(dir);
    assert_eq!(files.len(), 10, "broken configs in {}", dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        let expect = src
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap();
        let (pos, msg) = expect.split_once(' ').unwrap();
        let (line, col) = pos.split_once(':').unwrap();
        let (line, col): (u32, u32) = (line.parse().unwrap(), col.parse().unwrap());
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let d = match compile_file(f) {
            Ok(_) => {
                failures.push(format!("{name}: compiled without errors"));
                continue;
            }
            Err(d) => d,
        };
        let first = &d.errors[0];
        if (first.line, first.col) != (line, col) || !first.message.contains(msg) {
            failures.push(format!(
                "{name}: expected {line}:{col} {msg}\n  got {}:{} {}\n{}",
                first.line,
                first.col,
                first.message,
                d.render()
            ));
            continue;
        }
        let r = first.render();
        let header = format!("{}:{line}:{col}: error: ", f.display());
        assert!(r.starts_with(&header), "{r}");
        let caret_line = r.lines().nth(3).unwrap();
        assert!(caret_line.ends_with('^'), "{name}: no caret line in\n{r}");
        assert_eq!(
            caret_line.split_once("| ").unwrap().1.chars().count(),
            col as usize,
            "{name}: caret not under column {col}\n{r}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
