//! Leader failover, measured the same way for both systems, as `shared/peers/etcd.sh` does:
//! kill -9 the leader, then write through the survivors (alternating, each try with a short
//! timeout) until one write is acknowledged; the figure is the time from the kill to that
//! acknowledgement. Then the killed member is restarted from its data dir and the round ends
//! once the cluster is whole again and the restarted member has caught up.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::host::CpuSnap;
use crate::note;
use crate::system::Replicated;
use crate::write::{WriteKey, WriteTarget};

/// A try that fails faster than this (connection refused, 503 at once) is followed by a short
/// pause, so the loop polls instead of spinning on the shared CPUs.
const FAST_FAILURE: Duration = Duration::from_millis(5);
/// Timeout of the writes made before the kill, to check the survivors work.
const PRE_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How failover rounds are run.
#[derive(Debug, Clone)]
pub struct FailoverSpec {
    /// One write attempt waits at most this long before the next survivor is tried.
    pub try_timeout: Duration,
    /// A round fails when nothing is acknowledged for this long after the kill.
    pub give_up_after: Duration,
}

/// One round.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: u32,
    /// The killed leader.
    pub killed: String,
    /// Kill → first acknowledged write; `None` when none came before the give-up time.
    pub ack_ms: Option<f64>,
    /// The survivor that acknowledged it.
    pub acked_by: Option<String>,
    /// Write attempts until then (including the acknowledged one).
    pub attempts: u64,
    /// Kill → restarted member back, cluster whole, caught up.
    pub recovered_ms: f64,
    /// Hypervisor steal from the kill to the acknowledgement, in %.
    pub steal_pct: Option<f64>,
}

/// Runs round `round` on `system`.
pub(crate) async fn round<S: Replicated>(
    system: &mut S,
    http: &reqwest::Client,
    target: &WriteTarget,
    round: u32,
    spec: &FailoverSpec,
) -> anyhow::Result<Round> {
    let leader = system.leader().await?;
    let survivors: Vec<usize> = (0..system.size()).filter(|&i| i != leader).collect();
    let urls: Vec<String> = survivors
        .iter()
        .map(|&i| format!("{}{}", system.api_url(i), target.path()))
        .collect();
    let mut seq = 0;
    // Every survivor takes a write before the kill (and keeps a pooled connection).
    for (url, &i) in urls.iter().zip(&survivors) {
        target
            .send(
                http,
                url,
                &WriteKey::failover(round, seq),
                Some(PRE_WRITE_TIMEOUT),
            )
            .await
            .map_err(|e| {
                anyhow::anyhow!("write through {} before the kill: {e}", system.describe(i))
            })?;
        seq += 1;
    }

    let killed = system.describe(leader);
    let cpu = CpuSnap::now();
    let killed_at = Instant::now();
    system.kill9(leader);
    let mut attempts = 0;
    let mut acked = None;
    while killed_at.elapsed() < spec.give_up_after {
        let which = usize::try_from(attempts).unwrap_or(0) % urls.len();
        let tried = Instant::now();
        attempts += 1;
        let key = WriteKey::failover(round, seq);
        seq += 1;
        match target
            .send(http, &urls[which], &key, Some(spec.try_timeout))
            .await
        {
            Ok(()) => {
                acked = Some((killed_at.elapsed(), system.describe(survivors[which])));
                break;
            }
            Err(_) if tried.elapsed() < FAST_FAILURE => {
                tokio::time::sleep(FAST_FAILURE).await;
            }
            Err(_) => {}
        }
    }
    let steal_pct = cpu.and_then(|c| c.steal_pct_since());
    match &acked {
        Some((after, by)) => note!(
            "{} failover {round}: killed {killed}; first write acknowledged by {by} after {:.0} ms ({attempts} tries)",
            system.system(),
            ms(*after)
        ),
        None => note!(
            "{} failover {round}: killed {killed}; no write acknowledged within {} s",
            system.system(),
            spec.give_up_after.as_secs()
        ),
    }

    system.recover(leader).await?;
    let recovered = killed_at.elapsed();
    note!(
        "{} failover {round}: {killed} restarted, cluster whole and caught up {:.0} ms after the kill",
        system.system(),
        ms(recovered)
    );
    Ok(Round {
        round,
        killed,
        ack_ms: acked.as_ref().map(|(after, _)| ms(*after)),
        acked_by: acked.map(|(_, by)| by),
        attempts,
        recovered_ms: ms(recovered),
        steal_pct,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
