//! Talking to the control plane: registering once with a bootstrap token, then long-polling the
//! edge's config from any replica. On an error the edge moves to the next replica and waits with
//! exponential backoff and jitter (1 s to 30 s). An answer older than the config being served is
//! refused; a newer one is saved to disk before it is served.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kokoa_store::pulled::{EdgeConfig, Pulled};
use rand::Rng;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::identity::Registration;
use crate::live::Live;
use crate::saved;

/// First wait after an error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a replica may hold a pull open when nothing changes.
pub const PULL_WAIT: Duration = Duration::from_secs(30);
/// Time to connect to a replica.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for a request beyond the long-poll's own wait.
const REQUEST_SLACK: Duration = Duration::from_secs(15);

/// Why talking to the control plane failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no control-plane URL given")]
    NoUrls,
    #[error("invalid control-plane URL {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// The control plane refused for good (bad token, bad input): retrying will not help.
    #[error("{url} refused: {status} {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// Transient: a network error, a replica without a leader, an unreadable answer.
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error("stopped")]
    Stopped,
    #[error(transparent)]
    Saved(#[from] saved::SavedError),
}

/// Exponential backoff with jitter between [`BACKOFF_MIN`] and [`BACKOFF_MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The next wait: a random point in the upper half of the current step, which then doubles.
    pub fn next_wait(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let low = step / 2;
        low + rand::thread_rng().gen_range(Duration::ZERO..=step - low)
    }

    /// Back to the shortest wait, after a success.
    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// What an edge registers.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterEdge {
    pub name: String,
    pub public_ip: String,
    pub wg_public_key: String,
    pub wg_port: u16,
    /// The plain HTTP listener's port, where the control plane probes `/health`.
    pub http_port: u16,
}

#[derive(Debug, Deserialize)]
struct Registered {
    id: String,
    name: String,
    token: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    message: String,
}

/// One answer to a pull.
enum Pull {
    Config(Box<Pulled<EdgeConfig>>),
    NoChange,
}

/// A client of the replicas, moving to the next one on errors.
#[derive(Debug, Clone)]
pub struct Control {
    urls: Vec<String>,
    current: usize,
    http: reqwest::Client,
}

impl Control {
    /// A client for these replica URLs (`http://HOST:PORT`), starting at a random one so that
    /// edges spread over the replicas.
    pub fn new(urls: &[String]) -> Result<Control, ControlError> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ControlError::NoUrls);
        }
        for url in &urls {
            let parsed = reqwest::Url::parse(url).map_err(|_| ControlError::BadUrl(url.clone()))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err(ControlError::BadUrl(url.clone()));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ControlError::Failed {
                url: urls[0].clone(),
                message: e.to_string(),
            })?;
        let current = rand::thread_rng().gen_range(0..urls.len());
        Ok(Control {
            urls,
            current,
            http,
        })
    }

    /// The replica being used.
    pub fn url(&self) -> &str {
        &self.urls[self.current]
    }

    /// Moves to the next replica.
    pub fn rotate(&mut self) {
        self.current = (self.current + 1) % self.urls.len();
    }

    fn failed(&self, message: impl std::fmt::Display) -> ControlError {
        ControlError::Failed {
            url: self.url().to_string(),
            message: message.to_string(),
        }
    }

    /// Turns an error answer into a [`ControlError`]: 4xx other than 408/429 are refusals.
    async fn error_from(&self, resp: reqwest::Response) -> ControlError {
        let status = resp.status();
        let message = match resp.json::<ErrorBody>().await {
            Ok(body) => body.error.message,
            Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
        };
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS;
        if transient {
            self.failed(format!("{status}: {message}"))
        } else {
            ControlError::Refused {
                url: self.url().to_string(),
                status: status.as_u16(),
                message,
            }
        }
    }

    async fn try_register(
        &self,
        bootstrap: &str,
        req: &RegisterEdge,
    ) -> Result<Registration, ControlError> {
        let resp = self
            .http
            .post(format!("{}/api/v1/edge-nodes/register", self.url()))
            .bearer_auth(bootstrap)
            .timeout(CONNECT_TIMEOUT + REQUEST_SLACK)
            .json(req)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        if !resp.status().is_success() {
            return Err(self.error_from(resp).await);
        }
        let r: Registered = resp.json().await.map_err(|e| self.failed(e))?;
        Ok(Registration {
            id: r.id,
            token: r.token,
            name: r.name,
        })
    }

    /// Registers with bootstrap token `bootstrap`, trying the replicas in turn until one
    /// answers. A refusal (bad token, bad input) is returned at once.
    pub async fn register(
        &mut self,
        bootstrap: &str,
        req: &RegisterEdge,
        shutdown: &CancellationToken,
    ) -> Result<Registration, ControlError> {
        let mut backoff = Backoff::default();
        loop {
            match self.try_register(bootstrap, req).await {
                Ok(r) => return Ok(r),
                Err(e @ ControlError::Refused { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "registration failed; trying the next replica");
                    self.rotate();
                    let wait = backoff.next_wait();
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.cancelled() => return Err(ControlError::Stopped),
                    }
                }
            }
        }
    }

    /// One long-poll for a config newer than `after`.
    async fn pull(&self, token: &str, after: u64) -> Result<Pull, ControlError> {
        let mut url = format!("{}/api/v1/edge-nodes/me/config", self.url());
        if after > 0 {
            url.push_str(&format!("?after={after}&wait={}", PULL_WAIT.as_secs()));
        }
        let resp = self
            .http
            .get(url)
            .bearer_auth(token)
            .timeout(PULL_WAIT + REQUEST_SLACK)
            .send()
            .await
            .map_err(|e| self.failed(e))?;
        match resp.status() {
            StatusCode::OK => {
                let bytes = resp.bytes().await.map_err(|e| self.failed(e))?;
                let pulled = serde_json::from_slice(&bytes)
                    .map_err(|e| self.failed(format!("unreadable config: {e}")))?;
                Ok(Pull::Config(Box::new(pulled)))
            }
            StatusCode::NOT_MODIFIED => Ok(Pull::NoChange),
            _ => Err(self.error_from(resp).await),
        }
    }

    /// Pulls configs until `shutdown`: each newer one is saved in `data_dir` and then served.
    pub async fn follow(
        mut self,
        token: String,
        live: Arc<Live>,
        data_dir: PathBuf,
        shutdown: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        loop {
            let outcome = tokio::select! {
                r = self.pull(&token, live.version()) => r,
                _ = shutdown.cancelled() => return,
            };
            let result = match outcome {
                Ok(Pull::NoChange) => Ok(()),
                Ok(Pull::Config(pulled)) => self.accept(*pulled, &live, &data_dir).await,
                Err(e) => Err(e),
            };
            let url = self.url().to_string();
            match result {
                Ok(()) => {
                    backoff.reset();
                    live.update_status(|s| {
                        s.last_pulled = unix_now();
                        s.control = Some(url);
                        s.last_error = None;
                    });
                }
                Err(e) => {
                    match &e {
                        ControlError::Refused { .. } => tracing::error!(
                            error = %e,
                            "the control plane refused this edge (removed, or its token revoked?); \
                             serving the last config"
                        ),
                        _ => {
                            tracing::warn!(error = %e, "config pull failed; trying the next replica")
                        }
                    }
                    live.update_status(|s| s.last_error = Some(e.to_string()));
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

    /// Saves and serves `pulled` if it is newer than what is served; refuses an older one.
    async fn accept(
        &self,
        pulled: Pulled<EdgeConfig>,
        live: &Live,
        data_dir: &std::path::Path,
    ) -> Result<(), ControlError> {
        let have = live.version();
        if pulled.version < have {
            return Err(self.failed(format!(
                "answered version {}, older than the {have} being served",
                pulled.version
            )));
        }
        if pulled.version == have {
            live.update_status(|s| s.from_disk = false);
            return Ok(());
        }
        let dir = data_dir.to_path_buf();
        let pulled = Arc::new(pulled);
        let to_save = pulled.clone();
        tokio::task::spawn_blocking(move || saved::save(&dir, &to_save))
            .await
            .map_err(|e| self.failed(e))??;
        if live.install(&pulled) {
            tracing::info!(
                version = pulled.version,
                routes = pulled.config.routes.len(),
                certificates = pulled.config.certificates.len(),
                from = self.url(),
                "serving a new config"
            );
        }
        live.update_status(|s| s.from_disk = false);
        Ok(())
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.next_wait()).collect();
        assert!(waits[0] >= BACKOFF_MIN / 2 && waits[0] <= BACKOFF_MIN);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX));
        assert!(waits[7] >= BACKOFF_MAX / 2);
        b.reset();
        assert!(b.next_wait() <= BACKOFF_MIN);
    }

    #[test]
    fn urls_are_checked_and_rotated() {
        assert!(matches!(Control::new(&[]), Err(ControlError::NoUrls)));
        assert!(matches!(
            Control::new(&["ftp://x".into()]),
            Err(ControlError::BadUrl(_))
        ));
        let mut c = Control::new(&["http://a:1/".into(), "http://b:2".into()]).expect("urls");
        let first = c.url().to_string();
        c.rotate();
        assert_ne!(c.url(), first);
        c.rotate();
        assert_eq!(c.url(), first);
        assert!(!first.ends_with('/'));
    }
}
