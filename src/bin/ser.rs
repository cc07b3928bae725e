//! `ser`: the SIP server binary. Everything lives in the `ser` library (`src/lib.rs`).

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(ser::run(&args));
}
