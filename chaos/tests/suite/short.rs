//! The short chaos run, as CI runs it: every fault kind once (the leader killed three times)
//! under load. It fails on any violation and names the seed to replay it with
//! (`KOKOA_CHAOS_SEED=N`, or `kokoa-chaos --seed N`).

use kokoa_chaos::run::{clock_seed, run, RunOptions};
use kokoa_chaos::schedule::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_short_chaos_run_finds_no_violation() {
    let _alone = crate::ONE_DEPLOYMENT_AT_A_TIME.lock().await;
    let seed = std::env::var("KOKOA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(clock_seed);
    eprintln!("chaos seed {seed} (replay with KOKOA_CHAOS_SEED={seed})");
    let report = run(RunOptions {
        seed,
        mode: Mode::Short,
    })
    .await
    .unwrap_or_else(|e| panic!("seed {seed}: the deployment could not be set up: {e}"));
    println!("{}", report.summary());
    let path = std::env::temp_dir().join(format!("kokoa-chaos-{seed}.json"));
    let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    std::fs::write(&path, json).expect("write the report");
    assert!(
        report.passed(),
        "{} violations (report {}); replay with KOKOA_CHAOS_SEED={seed}:\n{}",
        report.violations.len(),
        path.display(),
        report.summary()
    );
}
