//! `katib`: the katib-rs command line. Each subcommand's flags and logic live in its
//! crate (or in `run.rs` for the in-process composition); this file only dispatches.

mod cli;
mod launch;
mod progress;
mod record;
mod run;
mod ui;

fn main() -> std::process::ExitCode {
    cli::main()
}
