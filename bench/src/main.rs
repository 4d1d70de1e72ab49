//! `cp-bench`: parses the command line, runs the benchmark, prints the report.
//!
//! Everything else lives in the `kokoa_bench` library; see its docs for what is measured.

use std::process::ExitCode;

use clap::Parser;
use kokoa_bench::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cp-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kokoa_bench::run_until_signal(args)) {
        Ok(report) => {
            print!("{}", report.render());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cp-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
