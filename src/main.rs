//! `katib`: the katib-rs command line. Each subcommand's flags and logic live in its
//! crate (or in `run.rs` for the in-process composition); this file only dispatches.

// Output that never panics: `println!` and friends panic when the other end of a pipe is
// gone (`katib run ... | head`), which killed the run halfway or, from a task, left it
// waiting forever. A reader that went away gets no more output; the run goes on.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr().lock(), $($arg)*);
    }};
}
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod cli;
mod launch;
mod progress;
mod record;
mod run;
mod ui;

// mimalloc rather than glibc's malloc: `katib run` moves many small, short-lived buffers
// between threads (gRPC frames, trial snapshots, rows), where it cut the run's CPU time
// by about 8% (benches/local_trials.rs).
// Built without its transparent-huge-page request (`no_thp`): each heap region a thread
// first touched was then zeroed 2 MB at a time, 16 MB of a one-trial run's 20 MB of
// heap were such zeroed pages, and on a VM each of those faults took milliseconds; the
// heap in 4 KB pages made `katib run` about 3% faster on 500 trials. Trials are unaffected
// (it is a request on mimalloc's own memory, not a process setting the trials inherit).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
