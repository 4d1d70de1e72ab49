//! The Kokoa side: a cluster of real `kokoa server` processes from the `kokoa-tests` harness
//! (default flags, so fsync on; data under the system temp dir), plus the origin every
//! benchmark route points at.

use std::path::Path;

use anyhow::Context;
use kokoa_tests::Cluster;
use serde_json::Value;

use crate::system::{Replicated, System};

/// Kokoa replicas under test. Dropping it kills every replica and removes their data.
#[derive(Debug)]
pub struct KokoaCluster {
    cluster: Cluster,
    origin_id: String,
}

impl KokoaCluster {
    /// Starts `n` replicas with static `--peers` (and `extra_args` on every start), waits for a
    /// leader and `n` voters, and creates the origin `bench`.
    pub async fn start(n: usize, extra_args: &[String]) -> anyhow::Result<KokoaCluster> {
        let extra: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        let cluster = Cluster::start_with(n, &extra).await;
        let leader = cluster.wait_formed(n).await;
        let response = cluster
            .client(leader)
            .create_origin("bench")
            .await
            .context("POST /api/v1/origins")?;
        anyhow::ensure!(
            response.status.as_u16() == 201,
            "POST /api/v1/origins: want 201, got {} {}",
            response.status,
            response.json
        );
        let origin_id = response
            .id()
            .with_context(|| format!("no id in {}", response.json))?;
        Ok(KokoaCluster { cluster, origin_id })
    }

    pub fn origin_id(&self) -> &str {
        &self.origin_id
    }

    pub fn admin_token(&self) -> &str {
        self.cluster.admin_token()
    }

    /// The directory holding every replica's data dir and logs.
    pub fn root(&self) -> &Path {
        self.cluster.root()
    }
}

impl Replicated for KokoaCluster {
    fn system(&self) -> System {
        System::Kokoa
    }

    fn size(&self) -> usize {
        self.cluster.len()
    }

    fn api_url(&self, i: usize) -> String {
        self.cluster.replica(i).api_url()
    }

    fn describe(&self, i: usize) -> String {
        let replica = self.cluster.replica(i);
        format!("replica {} ({})", replica.id(), replica.api_addr())
    }

    async fn leader(&self) -> anyhow::Result<usize> {
        Ok(self.cluster.wait_formed(self.size()).await)
    }

    fn kill9(&mut self, i: usize) {
        self.cluster.replica_mut(i).kill9();
    }

    async fn recover(&mut self, i: usize) -> anyhow::Result<()> {
        self.cluster
            .replica_mut(i)
            .restart()
            .await
            .with_context(|| format!("restart {}", self.describe(i)))?;
        let leader = self.cluster.wait_formed(self.size()).await;
        let info = self
            .cluster
            .cluster_info(leader, false)
            .await
            .map_err(anyhow::Error::msg)?;
        let applied = info
            .get("applied_index")
            .and_then(Value::as_u64)
            .with_context(|| format!("no applied_index in {info}"))?;
        self.cluster.wait_applied(i, applied).await;
        Ok(())
    }

    fn dump_logs(&self) {
        self.cluster.dump_logs();
    }
}
