//! A client of the replicas for one [`Role`]: the list of replica URLs (starting at a random
//! one, moving to the next on errors), registering with a bootstrap token, and one long-poll
//! for a newer config. What is done with the configs is in [`crate::follow`].

use std::marker::PhantomData;
use std::time::Duration;

use kokoa_store::pulled::Pulled;
use rand::Rng;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::identity::Registration;
use crate::role::Role;
use crate::saved::SavedError;

/// How long a replica may hold a pull open when nothing changes.
pub const PULL_WAIT: Duration = Duration::from_secs(30);
/// Time to connect to a replica.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for a request beyond the long-poll's own wait.
const REQUEST_SLACK: Duration = Duration::from_secs(15);

/// Why talking to the control plane failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    Saved(#[from] SavedError),
}

impl ControlError {
    /// Whether another attempt (at another replica) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ControlError::Failed { .. })
    }
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
pub(crate) enum Pull<C> {
    Config(Box<Pulled<C>>),
    NoChange,
}

/// A client of the replicas for role `R`, moving to the next replica on errors.
#[derive(Debug)]
pub struct Control<R> {
    urls: Vec<String>,
    current: usize,
    http: reqwest::Client,
    role: PhantomData<fn() -> R>,
}

impl<R> Clone for Control<R> {
    fn clone(&self) -> Self {
        Control {
            urls: self.urls.clone(),
            current: self.current,
            http: self.http.clone(),
            role: PhantomData,
        }
    }
}

impl<R: Role> Control<R> {
    /// A client for these replica URLs (`http://HOST:PORT`), starting at a random one so that
    /// edges and agents spread over the replicas.
    pub fn new(urls: &[String]) -> Result<Control<R>, ControlError> {
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
            role: PhantomData,
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

    pub(crate) fn failed(&self, message: impl std::fmt::Display) -> ControlError {
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
        req: &R::Register,
    ) -> Result<Registration, ControlError> {
        let resp = self
            .http
            .post(format!("{}{}", self.url(), R::REGISTER_PATH))
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
        req: &R::Register,
        shutdown: &CancellationToken,
    ) -> Result<Registration, ControlError> {
        let mut backoff = Backoff::default();
        loop {
            match self.try_register(bootstrap, req).await {
                Ok(r) => return Ok(r),
                Err(e) if !e.is_retryable() => return Err(e),
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

    /// One long-poll for a config newer than `after` (0: any config, answered at once).
    pub(crate) async fn pull(
        &self,
        token: &str,
        after: u64,
    ) -> Result<Pull<R::Config>, ControlError> {
        let mut url = format!("{}{}", self.url(), R::CONFIG_PATH);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeReplica;
    use crate::role::{AgentRole, EdgeRole, RegisterAgent};

    fn agent_request() -> RegisterAgent {
        RegisterAgent {
            name: "pi".into(),
            wg_public_key: "K".into(),
        }
    }

    #[tokio::test]
    async fn an_agent_registers_at_its_path_with_its_bootstrap_token() {
        let answer = r#"{"id":"a_1","origin_id":"o_1","name":"pi","wg_public_key":"K",
            "tunnel_ip":"10.64.0.2","created_at":1,"token":"kokoa.own"}"#;
        let fake = FakeReplica::start(vec![(201, answer.into())]).await;
        let mut control = Control::<AgentRole>::new(&fake.urls()).expect("urls");
        let r = control
            .register("boot", &agent_request(), &CancellationToken::new())
            .await
            .expect("register");
        assert_eq!((r.id.as_str(), r.name.as_str()), ("a_1", "pi"));
        assert_eq!(r.token, "kokoa.own");
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].uri, "/api/v1/agents/register");
        assert_eq!(seen[0].bearer.as_deref(), Some("boot"));
        let body: serde_json::Value = serde_json::from_str(&seen[0].body).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"name": "pi", "wg_public_key": "K"})
        );
    }

    #[tokio::test]
    async fn a_refusal_carries_the_servers_message_and_is_not_retried() {
        let refusal = r#"{"error":{"code":"forbidden","message":"wrong token","details":null,"retryable":false}}"#;
        let fake = FakeReplica::start(vec![(403, refusal.into())]).await;
        let mut control = Control::<AgentRole>::new(&fake.urls()).expect("urls");
        let err = control
            .register("boot", &agent_request(), &CancellationToken::new())
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, ControlError::Refused { status: 403, message, .. } if message == "wrong token"),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_and_shutdown_stops_the_retries() {
        let unavailable = r#"{"error":{"code":"no_leader","message":"no leader","details":null,"retryable":true}}"#;
        let answer = r#"{"id":"e_1","name":"edge-1","token":"kokoa.edge"}"#;
        let fake = FakeReplica::start(vec![(503, unavailable.into()), (201, answer.into())]).await;
        let mut control = Control::<EdgeRole>::new(&fake.urls()).expect("urls");
        let req = crate::role::RegisterEdge {
            name: "edge-1".into(),
            public_ip: "192.0.2.1".into(),
            wg_public_key: "K".into(),
            wg_port: 51820,
            http_port: 80,
        };
        let r = control
            .register("boot", &req, &CancellationToken::new())
            .await
            .expect("register");
        assert_eq!(r.id, "e_1");
        let seen = fake.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|s| s.uri == "/api/v1/edge-nodes/register"));

        let down = FakeReplica::start(vec![(503, unavailable.into()); 10]).await;
        let mut control = Control::<EdgeRole>::new(&down.urls()).expect("urls");
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let err = control.register("boot", &req, &shutdown).await;
        assert!(matches!(err, Err(ControlError::Stopped)));
    }

    #[test]
    fn urls_are_checked_and_rotated() {
        assert!(matches!(
            Control::<EdgeRole>::new(&[]),
            Err(ControlError::NoUrls)
        ));
        assert!(matches!(
            Control::<AgentRole>::new(&["ftp://x".into()]),
            Err(ControlError::BadUrl(_))
        ));
        let mut c =
            Control::<EdgeRole>::new(&["http://a:1/".into(), "http://b:2".into()]).expect("urls");
        let first = c.url().to_string();
        c.rotate();
        assert_ne!(c.url(), first);
        c.rotate();
        assert_eq!(c.url(), first);
        assert!(!first.ends_with('/'));
    }
}
