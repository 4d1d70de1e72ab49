//! `dns-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::dns`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::dns::{self, DnsArgs};

fn main() -> ExitCode {
    let args = DnsArgs::parse();
    kokoa_bench::bench_main("dns-bench", dns::run_until_signal(args), |r| r.render())
}
