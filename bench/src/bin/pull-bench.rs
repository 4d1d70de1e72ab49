//! `pull-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::pull`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::pull::{self, PullArgs};

fn main() -> ExitCode {
    let args = PullArgs::parse();
    kokoa_bench::bench_main("pull-bench", pull::run_until_signal(args), |r| r.render())
}
