//! Compiles config files and prints the diagnostics, as `ser -c` will: a debugging aid.
//! Usage: cfgcheck FILE...

fn main() {
    for path in std::env::args().skip(1) {
        match controlplane::cfg::compile_file(std::path::Path::new(&path)) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("{}", w.render());
                }
                println!("{path}: ok ({} routes)", c.program.routes.len());
            }
            Err(d) => {
                eprint!("{}", d.render());
                println!("{path}: {} error(s)", d.errors.len());
            }
        }
    }
}
