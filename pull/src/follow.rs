//! Following the control plane: long-polling a role's config until shutdown, refusing an answer
//! older than what is served, saving each newer one to disk before it is installed in the
//! role's [`ConfigSink`]; and, at start, serving the config saved by an earlier run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kokoa_store::pulled::Pulled;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::control::{Control, ControlError, Pull};
use crate::role::Role;
use crate::saved::{self, SavedError};
use crate::sink::ConfigSink;
use crate::unix_now;

/// Installs the config saved in `dir` by an earlier run, if any, and marks it as coming from
/// disk; returns its version.
pub fn serve_saved<C, S>(dir: &Path, sink: &S) -> Result<Option<u64>, SavedError>
where
    C: serde::de::DeserializeOwned,
    S: ConfigSink<C>,
{
    let Some(saved) = saved::load::<C>(dir)? else {
        return Ok(None);
    };
    sink.install(&saved);
    sink.update_status(|s| s.from_disk = true);
    tracing::info!(version = saved.version, "serving the config saved on disk");
    Ok(Some(saved.version))
}

impl<R: Role> Control<R> {
    /// Pulls configs with the role's own `token` until `shutdown`: each newer one is saved in
    /// `data_dir` and then installed in `sink`. Errors (including refusals, after which the
    /// last config keeps being served) move to the next replica after a backoff.
    pub async fn follow<S>(
        mut self,
        token: String,
        sink: Arc<S>,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) where
        S: ConfigSink<R::Config> + 'static,
    {
        let mut backoff = Backoff::default();
        loop {
            let outcome = tokio::select! {
                r = self.pull(&token, sink.version()) => r,
                _ = shutdown.cancelled() => return,
            };
            let result = match outcome {
                Ok(Pull::NoChange) => Ok(()),
                Ok(Pull::Config(pulled)) => self.accept(*pulled, sink.as_ref(), &data_dir).await,
                Err(e) => Err(e),
            };
            let url = self.url().to_string();
            match result {
                Ok(()) => {
                    backoff.reset();
                    sink.update_status(|s| {
                        s.last_pulled = unix_now();
                        s.control = Some(url);
                        s.last_error = None;
                    });
                }
                Err(e) => {
                    match &e {
                        ControlError::Refused { .. } => tracing::error!(
                            error = %e,
                            "the control plane refused this {} (removed, or its token revoked?); \
                             serving the last config",
                            R::NAME
                        ),
                        _ => {
                            tracing::warn!(error = %e, "config pull failed; trying the next replica")
                        }
                    }
                    sink.update_status(|s| s.last_error = Some(e.to_string()));
                    self.rotate();
                    let wait = backoff.next_wait();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Saves and installs `pulled` if it is newer than what is served; refuses an older one.
    async fn accept<S>(
        &self,
        pulled: Pulled<R::Config>,
        sink: &S,
        data_dir: &Path,
    ) -> Result<(), ControlError>
    where
        S: ConfigSink<R::Config>,
    {
        let have = sink.version();
        if pulled.version < have {
            return Err(self.failed(format!(
                "answered version {}, older than the {have} being served",
                pulled.version
            )));
        }
        if pulled.version == have {
            sink.update_status(|s| s.from_disk = false);
            return Ok(());
        }
        let dir = data_dir.to_path_buf();
        let pulled = Arc::new(pulled);
        let to_save = pulled.clone();
        tokio::task::spawn_blocking(move || saved::save(&dir, &to_save))
            .await
            .map_err(|e| self.failed(e))??;
        if sink.install(&pulled) {
            tracing::debug!(
                version = pulled.version,
                from = self.url(),
                "new config saved"
            );
        }
        sink.update_status(|s| s.from_disk = false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kokoa_store::pulled::AgentConfig;

    use super::*;
    use crate::fake::FakeReplica;
    use crate::role::AgentRole;
    use crate::sink::PullStatus;

    /// Records installs, and checks that each was saved on disk first.
    struct Recorder {
        dir: PathBuf,
        version: Mutex<u64>,
        installs: Mutex<Vec<u64>>,
        status: Mutex<PullStatus>,
    }

    impl ConfigSink<AgentConfig> for Recorder {
        fn version(&self) -> u64 {
            *self.version.lock().expect("lock")
        }

        fn install(&self, pulled: &Pulled<AgentConfig>) -> bool {
            let mut version = self.version.lock().expect("lock");
            if pulled.version <= *version {
                return false;
            }
            let on_disk = saved::load::<AgentConfig>(&self.dir).expect("load");
            assert_eq!(
                on_disk.as_ref(),
                Some(pulled),
                "installed before it was saved"
            );
            *version = pulled.version;
            self.installs.lock().expect("lock").push(pulled.version);
            true
        }

        fn update_status(&self, f: impl FnOnce(&mut PullStatus)) {
            f(&mut self.status.lock().expect("lock"))
        }
    }

    fn config(version: u64) -> String {
        serde_json::json!({
            "version": version,
            "config_hash": format!("h{version}"),
            "stale": false,
            "agent": {"agent_id": "a_1", "origin_id": "o_1", "wg_public_key": "K",
                      "tunnel_ip": "10.64.0.2", "allowed_ips": ["10.64.0.2/32"]},
            "origin": {"id": "o_1", "name": "home", "subnet": "10.64.0.0/24"},
            "edges": [],
            "routes": {"app.example.com": "localhost:8080"},
            "targets": ["localhost:8080"],
        })
        .to_string()
    }

    #[tokio::test]
    async fn newer_configs_are_saved_then_installed_and_older_ones_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeReplica::start(vec![
            (200, config(5)),
            (200, config(3)),
            (304, String::new()),
            (200, config(7)),
        ])
        .await;
        let sink = Arc::new(Recorder {
            dir: dir.path().to_path_buf(),
            version: Mutex::new(0),
            installs: Mutex::new(Vec::new()),
            status: Mutex::new(PullStatus::default()),
        });
        let control = Control::<AgentRole>::new(&fake.urls()).expect("urls");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(control.follow(
            "own".into(),
            sink.clone(),
            dir.path().to_path_buf(),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while fake.seen().len() < 5 {
            assert!(tokio::time::Instant::now() < deadline, "{:?}", fake.seen());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        task.await.expect("follow stops on shutdown");

        assert_eq!(*sink.installs.lock().expect("lock"), vec![5, 7]);
        let uris: Vec<String> = fake.seen().into_iter().map(|s| s.uri).collect();
        let path = "/api/v1/agents/me/config";
        assert_eq!(uris[0], path);
        for uri in &uris[1..4] {
            assert_eq!(*uri, format!("{path}?after=5&wait=30"));
        }
        assert_eq!(uris[4], format!("{path}?after=7&wait=30"));
        assert!(fake
            .seen()
            .iter()
            .all(|s| s.bearer.as_deref() == Some("own")));
        let status = sink.status.lock().expect("lock").clone();
        assert_eq!(
            status.last_error, None,
            "cleared by the answers after the refusal"
        );
        assert_eq!(status.control.as_deref(), Some(fake.url.as_str()));
        let saved = saved::load::<AgentConfig>(dir.path()).expect("load");
        assert_eq!(saved.map(|p| p.version), Some(7));
    }

    #[test]
    fn a_saved_config_is_served_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = Recorder {
            dir: dir.path().to_path_buf(),
            version: Mutex::new(0),
            installs: Mutex::new(Vec::new()),
            status: Mutex::new(PullStatus::default()),
        };
        assert_eq!(serve_saved(dir.path(), &sink).expect("nothing saved"), None);
        let pulled: Pulled<AgentConfig> = serde_json::from_str(&config(4)).expect("config");
        saved::save(dir.path(), &pulled).expect("save");
        assert_eq!(serve_saved(dir.path(), &sink).expect("saved"), Some(4));
        assert_eq!(*sink.installs.lock().expect("lock"), vec![4]);
        assert!(sink.status.lock().expect("lock").from_disk);
    }
}
