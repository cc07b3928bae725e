//! `ser`: the SIP server binary.

fn main() {
    println!("ser {}", env!("CARGO_PKG_VERSION"));
}
