//! Fuzz the script compiler (`controlplane::cfg::compile_str`: lexer, parser with recovery,
//! lowering against the module tables) on arbitrary bytes, read as `ser -c` reads a file (lossy
//! UTF-8). Asserts: no panic; a refused script has at least one error, every diagnostic points
//! inside the text (line 1.., within the line count) and renders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data);
    let lines = src.lines().count().max(1) + 1;
    match controlplane::cfg::compile_str("fuzz.cfg", &src) {
        Ok(c) => {
            for w in &c.warnings {
                assert!(w.line as usize <= lines, "warning past the end: {w:?}");
                let _ = w.render();
            }
        }
        Err(d) => {
            assert!(!d.errors.is_empty(), "refused without an error");
            for e in d.errors.iter().chain(&d.warnings) {
                assert!(e.line as usize <= lines, "diagnostic past the end: {e:?}");
            }
            let _ = d.render();
        }
    }
});
