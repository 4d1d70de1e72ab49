//! The newest config, kept on disk (`config.json`, mode 0600, replaced atomically) so that an
//! edge restarted while no replica answers serves what it had.

use std::path::{Path, PathBuf};

use kokoa_store::private_file;
use kokoa_store::pulled::{EdgeConfig, Pulled};

const CONFIG_FILE: &str = "config.json";

/// A problem with the saved config.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({why}); delete it to start from the control plane")]
    Damaged { path: PathBuf, why: String },
}

/// The config saved in `dir`, if any.
pub fn load(dir: &Path) -> Result<Option<Pulled<EdgeConfig>>, SavedError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = private_file::read(&path).map_err(|source| SavedError::Io {
        path: path.clone(),
        source,
    })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SavedError::Damaged {
            path,
            why: e.to_string(),
        })
}

/// Saves `config` in `dir`, replacing the previous one.
pub fn save(dir: &Path, config: &Pulled<EdgeConfig>) -> Result<(), SavedError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = serde_json::to_vec(config).map_err(|e| SavedError::Damaged {
        path: path.clone(),
        why: e.to_string(),
    })?;
    private_file::write(&path, &bytes).map_err(|source| SavedError::Io { path, source })
}
