//! `tunnel-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in `kokoa_bench::tunnel`; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::tunnel::{self, TunnelArgs};

fn main() -> ExitCode {
    let args = TunnelArgs::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tunnel-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(tunnel::run_until_signal(args));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tunnel-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
