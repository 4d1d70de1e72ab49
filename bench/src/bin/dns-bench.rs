//! `dns-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::dns`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::dns::{self, DnsArgs};

fn main() -> ExitCode {
    let args = DnsArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dns-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(dns::run_until_signal(args));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("dns-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
