//! `edge-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::edge`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::edge::{self, EdgeArgs};

fn main() -> ExitCode {
    let args = EdgeArgs::parse();
    kokoa_bench::bench_main("edge-bench", edge::run_until_signal(args), |r| r.render())
}
