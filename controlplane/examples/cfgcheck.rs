//! `cargo run -p controlplane --example cfgcheck -- FILE...`: compile scripts and print diagnostics.
fn main() {
    for a in std::env::args().skip(1) {
        match controlplane::cfg::compile_file(std::path::Path::new(&a)) {
            Ok(c) => {
                for w in &c.warnings {
                    print!("{}", w.render());
                }
                println!("{a}: ok ({} route blocks)", c.program.routes.len());
            }
            Err(d) => print!("{}", d.render()),
        }
    }
}
