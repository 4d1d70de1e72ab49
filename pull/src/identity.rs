//! Who this edge or agent is, kept in its data dir: the WireGuard key pair it made itself (the
//! private key never leaves `wg.key`; only the public key is registered), and the id and
//! persistent token the control plane gave it when it registered (`registration.json`).

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kokoa_store::private_file;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

/// The WireGuard private key's file name in the data dir.
pub const KEY_FILE: &str = "wg.key";
/// The registration's file name in the data dir.
pub const REGISTRATION_FILE: &str = "registration.json";

/// A problem with the identity files.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged: {why}")]
    Damaged { path: PathBuf, why: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A WireGuard key pair.
#[derive(Clone)]
pub struct WgKeys {
    pub secret: StaticSecret,
    pub public: PublicKey,
}

impl std::fmt::Debug for WgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgKeys")
            .field("public", &self.public_base64())
            .finish_non_exhaustive()
    }
}

impl WgKeys {
    /// The public key in WireGuard's base64 form.
    pub fn public_base64(&self) -> String {
        B64.encode(self.public.as_bytes())
    }

    /// The key pair in `dir`, made (and saved, mode 0600) on first use.
    pub fn load_or_create(dir: &Path) -> Result<WgKeys, IdentityError> {
        let path = dir.join(KEY_FILE);
        let secret = match private_file::read(&path).map_err(io_error(&path))? {
            Some(text) => {
                let damaged = |why: &str| IdentityError::Damaged {
                    path: path.clone(),
                    why: why.to_string(),
                };
                let raw = B64
                    .decode(String::from_utf8_lossy(&text).trim())
                    .map_err(|_| damaged("not base64"))?;
                let bytes: [u8; 32] = raw.try_into().map_err(|_| damaged("not a 32-byte key"))?;
                StaticSecret::from(bytes)
            }
            None => {
                let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
                let text = format!("{}\n", B64.encode(secret.to_bytes()));
                private_file::write(&path, text.as_bytes()).map_err(io_error(&path))?;
                secret
            }
        };
        let public = PublicKey::from(&secret);
        Ok(WgKeys { secret, public })
    }
}

/// What registering gave this edge or agent.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Its id in the control plane.
    pub id: String,
    /// Its persistent token.
    pub token: String,
    pub name: String,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Registration {
    /// The registration saved in `dir`, if it registered before.
    pub fn load(dir: &Path) -> Result<Option<Registration>, IdentityError> {
        let path = dir.join(REGISTRATION_FILE);
        let Some(bytes) = private_file::read(&path).map_err(io_error(&path))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| IdentityError::Damaged {
                path,
                why: e.to_string(),
            })
    }

    /// Saves it in `dir` (mode 0600, atomically).
    pub fn save(&self, dir: &Path) -> Result<(), IdentityError> {
        let path = dir.join(REGISTRATION_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| IdentityError::Damaged {
            path: path.clone(),
            why: e.to_string(),
        })?;
        private_file::write(&path, &bytes).map_err(io_error(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = WgKeys::load_or_create(dir.path()).expect("make");
        let b = WgKeys::load_or_create(dir.path()).expect("load");
        assert_eq!(a.public, b.public);
        assert_eq!(a.public_base64().len(), 44);
        std::fs::write(dir.path().join(KEY_FILE), "short").expect("damage");
        assert!(matches!(
            WgKeys::load_or_create(dir.path()),
            Err(IdentityError::Damaged { .. })
        ));
    }

    #[test]
    fn registrations_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Registration::load(dir.path()).expect("load"), None);
        let r = Registration {
            id: "e_1".into(),
            token: "kokoa.x.y".into(),
            name: "edge-1".into(),
        };
        r.save(dir.path()).expect("save");
        assert_eq!(Registration::load(dir.path()).expect("load"), Some(r));
    }
}
