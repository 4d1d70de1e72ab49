//! What an edge's and an agent's specs share: both are `kokoa` processes that pull their config
//! from the replicas, with a name, a data dir, logs beside it, the replicas' URLs and a token.

use std::path::{Path, PathBuf};

use crate::process::{with_token, KokoaProcess};

/// The part of an edge's or agent's spec that does not depend on its role.
#[derive(Debug, Clone)]
pub struct PullerSpec {
    /// `--name`, also the file names of its data dir and logs.
    pub name: String,
    pub data_dir: PathBuf,
    /// The child's stderr (appended to across restarts).
    pub log_path: PathBuf,
    pub stdout_path: PathBuf,
    /// `--control URL,...`: the replicas' API URLs.
    pub control: Vec<String>,
    /// The registration token (`KOKOA_TOKEN`); needed on the first start only.
    pub token: Option<String>,
    /// Passed on every start, e.g. `--rate-limit 5`.
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl PullerSpec {
    /// `name` living in `root/NAME` with its logs beside it, pulling from `control` and
    /// registering with `token`.
    pub fn new(name: &str, root: &Path, control: Vec<String>, token: &str) -> PullerSpec {
        PullerSpec {
            name: name.to_string(),
            data_dir: root.join(name),
            log_path: root.join(format!("{name}.log")),
            stdout_path: root.join(format!("{name}.stdout")),
            control,
            token: Some(token.to_string()),
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `ROLE --control ... --data-dir ... --name ...`, then `role_args`, then the extra ones.
    pub fn args(&self, role: &str, role_args: Vec<String>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            role.into(),
            "--control".into(),
            self.control.join(","),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--name".into(),
            self.name.clone(),
        ];
        args.extend(role_args);
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The child's environment: the spec's, plus the token as `KOKOA_TOKEN`.
    pub fn environment(&self) -> Vec<(String, String)> {
        with_token(&self.env, self.token.as_deref())
    }

    /// The (not yet started) process, labelled `ROLE NAME`.
    pub fn process(&self, role: &str) -> KokoaProcess {
        KokoaProcess::new(
            format!("{role} {}", self.name),
            self.log_path.clone(),
            self.stdout_path.clone(),
        )
    }
}
