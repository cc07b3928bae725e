//! Every `broken/*.cfg` fails to compile, and its first error is the one line 1 announces:
//! `# expect: LINE:COL MESSAGE`.
#![allow(clippy::unwrap_used)]

#[path = "support/seed.rs"]
mod seed;

use controlplane::cfg::compile_file;

#[test]
fn broken_configs_report_the_expected_first_error() {
    let dir = seed::seed_dir().join("broken");
    let files = seed::cfg_files(&dir);
    assert_eq!(files.len(), 10, "broken configs");
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
