//! `serctl`: manage subscribers, aliases, ACLs and locations (SER's `sc`); see `src/serctl/`.

#[path = "../serctl/mod.rs"]
mod serctl;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(serctl::run(&args));
}
