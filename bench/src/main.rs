//! `cp-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in the `kokoa_bench` library; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    kokoa_bench::bench_main("cp-bench", kokoa_bench::run_until_signal(args), |r| {
        r.render()
    })
}
