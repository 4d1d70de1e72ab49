//! `kokoa-chaos`: one chaos run against a whole deployment of real processes (needs root for
//! nftables and tmpfs, and `kokoa` built: it is found beside this binary or at `$KOKOA_BIN`).
//! Prints a summary, writes the JSON report, and exits 1 when an invariant was violated.

use std::path::PathBuf;

use clap::Parser;
use kokoa_chaos::run::{run, RunOptions};
use kokoa_chaos::schedule::Mode;

#[derive(Debug, Parser)]
#[command(
    name = "kokoa-chaos",
    about = "Start a Kokoa deployment, inject seeded faults under load, check invariants"
)]
struct Args {
    /// The seed of the fault schedule and choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Rounds of every fault kind: 1 is the short mode CI runs (a few minutes).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Where the JSON report goes.
    #[arg(long, default_value = "chaos-report.json")]
    report: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(kokoa_chaos::run::clock_seed);
    let mode = if args.rounds <= 1 {
        Mode::Short
    } else {
        Mode::Long {
            rounds: args.rounds,
        }
    };
    let report = run(RunOptions { seed, mode })
        .await
        .map_err(|e| anyhow::anyhow!("the deployment could not be set up (seed {seed}): {e}"))?;
    println!("{}", report.summary());
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)?;
    println!("report: {}", args.report.display());
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}
