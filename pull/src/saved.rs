//! The newest config, kept on disk (`config.json`, mode 0600, replaced atomically) so that an
//! edge or agent restarted while no replica answers serves what it had.

use std::path::{Path, PathBuf};

use kokoa_store::private_file;
use kokoa_store::pulled::Pulled;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The saved config's file name in the data dir.
pub const CONFIG_FILE: &str = "config.json";

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
pub fn load<C: DeserializeOwned>(dir: &Path) -> Result<Option<Pulled<C>>, SavedError> {
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
pub fn save<C: Serialize>(dir: &Path, config: &Pulled<C>) -> Result<(), SavedError> {
    let path = dir.join(CONFIG_FILE);
    let bytes = serde_json::to_vec(config).map_err(|e| SavedError::Damaged {
        path: path.clone(),
        why: e.to_string(),
    })?;
    private_file::write(&path, &bytes).map_err(|source| SavedError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Small {
        hello: String,
    }

    #[test]
    fn configs_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load::<Small>(dir.path()).expect("load"), None);
        let pulled = Pulled {
            version: 7,
            config_hash: "h".into(),
            stale: false,
            config: Small {
                hello: "world".into(),
            },
        };
        save(dir.path(), &pulled).expect("save");
        assert_eq!(load::<Small>(dir.path()).expect("load"), Some(pulled));
        std::fs::write(dir.path().join(CONFIG_FILE), "{").expect("damage");
        assert!(matches!(
            load::<Small>(dir.path()),
            Err(SavedError::Damaged { .. })
        ));
    }
}
