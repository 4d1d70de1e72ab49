//! `tunnel-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::tunnel`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::tunnel::{self, TunnelArgs};

fn main() -> ExitCode {
    let args = TunnelArgs::parse();
    kokoa_bench::bench_main("tunnel-bench", tunnel::run_until_signal(args), |r| {
        r.render()
    })
}
