//! loadgen: the SIP load generator bundled with ser (issue 8).
//!
//! Scenarios (`options`, `message`, `register`, `call`) drive a target open-loop at a fixed or
//! ramping rate and report successes, failures by reason, retransmissions and latency
//! percentiles; `uas` is the far end. Builds and parses messages with `dataplane::wire`.
//!
//! Exit codes (SIPp's where they fit): 0 every call succeeded (ramp: a good rate was found), 1 some
//! calls failed, 2 bad arguments, 255 fatal error (cannot bind, thread failure).

mod auth;
mod cli;
mod client;
mod net;
mod report;
mod sys;
mod timers;
mod uas;

use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Cmd, Scenario};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprintln!("loadgen: a scenario is required: options, message, register, call or uas (see loadgen --help)");
                std::process::exit(2);
            }
            // clap's message up to its first blank line ("Usage: …" follows), folded to one line.
            let text = e.to_string();
            let msg: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            eprintln!("loadgen: {msg} (see loadgen --help)");
            std::process::exit(2);
        }
    };
    let (args, scenario) = match cli.cmd {
        Cmd::Uas(a) => {
            let code = match a.validate() {
                Ok(cfg) => uas::run(cfg),
                Err(e) => {
                    eprintln!("loadgen: {e}");
                    2
                }
            };
            std::process::exit(code);
        }
        Cmd::Options(a) => (a, Scenario::Options),
        Cmd::Message(a) => (a, Scenario::Message),
        Cmd::Register(a) => (a, Scenario::Register),
        Cmd::Call(a) => (a, Scenario::Call),
    };
    let code = match args.validate(scenario) {
        Ok(cfg) => client::run(cfg),
        Err(e) => {
            eprintln!("loadgen: {e}");
            2
        }
    };
    std::process::exit(code);
}
