//! `serctl`: manage subscribers, aliases, ACLs and locations (issue 9).

fn main() {
    eprintln!("serctl: no command is implemented yet (tracked by issue 9)");
    std::process::exit(2);
}
