//! loadgen: SIP load generator bundled with ser (issue 8).

fn main() {
    eprintln!("loadgen: no scenario is implemented yet (tracked by issue 8)");
    std::process::exit(2);
}
