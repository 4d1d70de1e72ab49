//! Certificates as the replicas keep them: an uploaded chain is checked (PEM, a key that
//! matches the leaf, names, validity) and its private key is sealed with the cluster key
//! (ChaCha20-Poly1305, key derived from the cluster secret) before it enters the raft log, so
//! the log, snapshots and state files never hold a certificate key in clear. Only the config
//! pulled by edges carries keys opened again.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ApiError;

/// Largest chain PEM accepted (a leaf and a few intermediates).
pub const MAX_CHAIN_PEM: usize = 32 * 1024;
/// Largest key PEM accepted.
pub const MAX_KEY_PEM: usize = 8 * 1024;
/// Most names one certificate may carry.
pub const MAX_NAMES: usize = 100;

const NONCE_LEN: usize = 12;

/// Seals and opens certificate keys with the cluster key.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<cluster key>)")
    }
}

/// A sealed value could not be opened: it was sealed under another cluster secret, or damaged.
#[derive(Debug, thiserror::Error)]
#[error("a sealed certificate key could not be opened (another cluster secret, or damaged)")]
pub struct OpenError;

impl Sealer {
    /// The sealer of the cluster whose secret is `cluster_secret`.
    pub fn new(cluster_secret: &str) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cluster_secret.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"kokoa certificate keys v1");
        let key = mac.finalize().into_bytes();
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// `plaintext` sealed under a fresh random nonce: base64(nonce || ciphertext).
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("ChaCha20-Poly1305 seals any message under 256 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        B64.encode(out)
    }

    /// What [`Sealer::seal`] sealed.
    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let raw = B64.decode(sealed).map_err(|_| OpenError)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain).map_err(|_| OpenError)
    }
}

/// What an uploaded certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The leaf's DNS names, normalised.
    pub names: Vec<String>,
    pub not_before: u64,
    pub not_after: u64,
    /// SHA-256 of the leaf (DER), hex.
    pub fingerprint: String,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_certificate", message)
}

/// Checks an uploaded chain and key at time `now`: both parse, the key matches the leaf, the
/// leaf names at least one valid DNS name, and it has not expired.
pub fn check(chain_pem: &str, key_pem: &str, now: u64) -> Result<Checked, ApiError> {
    if chain_pem.len() > MAX_CHAIN_PEM || key_pem.len() > MAX_KEY_PEM {
        return Err(invalid(format!(
            "the chain may be at most {MAX_CHAIN_PEM} bytes and the key {MAX_KEY_PEM}"
        )));
    }
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("chain_pem is not PEM certificates: {e}")))?;
    let leaf = chain
        .first()
        .ok_or_else(|| invalid("chain_pem holds no certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(format!("key_pem is not a PEM private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(format!("unsupported private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signer)
        .keys_match()
        .map_err(|_| invalid("the private key does not belong to the first certificate"))?;

    let (_, x509) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| invalid(format!("the first certificate does not parse: {e}")))?;
    let validity = x509.validity();
    let not_before = validity.not_before.timestamp().max(0) as u64;
    let not_after = validity.not_after.timestamp().max(0) as u64;
    if not_after <= now {
        return Err(invalid("the certificate has expired"));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                let normal = kokoa_store::validate::normalize_hostname(dns).map_err(|e| {
                    invalid(format!(
                        "the certificate names {dns:?}, not a hostname: {e}"
                    ))
                })?;
                if !names.contains(&normal) {
                    names.push(normal);
                }
            }
        }
    }
    if names.is_empty() {
        return Err(invalid(
            "the certificate names no DNS host (subject alternative names)",
        ));
    }
    if names.len() > MAX_NAMES {
        return Err(invalid(format!(
            "the certificate names more than {MAX_NAMES} hosts"
        )));
    }
    Ok(Checked {
        names,
        not_before,
        not_after,
        fingerprint: hex::encode(Sha256::digest(leaf.as_ref())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        (
            params.self_signed(&key).expect("cert").pem(),
            key.serialize_pem(),
        )
    }

    #[test]
    fn sealing_round_trips_and_needs_the_same_secret() {
        let a = Sealer::new("secret-a");
        let sealed = a.seal("the key");
        assert_ne!(sealed, a.seal("the key"), "fresh nonce each time");
        assert_eq!(a.open(&sealed).expect("open"), "the key");
        assert!(Sealer::new("secret-b").open(&sealed).is_err());
        assert!(a.open("AAAA").is_err());
        assert!(a.open("not base64!").is_err());
    }

    #[test]
    fn a_good_upload_yields_its_names() {
        let (chain, key) = make(&["App.Example.com", "*.example.org"]);
        let checked = check(&chain, &key, 0).expect("valid");
        assert_eq!(checked.names, vec!["app.example.com", "*.example.org"]);
        assert!(checked.not_after > checked.not_before);
        assert_eq!(checked.fingerprint.len(), 64);
    }

    #[test]
    fn bad_uploads_are_refused() {
        let (chain, key) = make(&["a.example.com"]);
        let (_, other_key) = make(&["a.example.com"]);
        let code = |r: Result<Checked, ApiError>| r.expect_err("refused").code;
        assert_eq!(code(check(&chain, &other_key, 0)), "invalid_certificate");
        assert_eq!(code(check("", &key, 0)), "invalid_certificate");
        assert_eq!(code(check(&chain, "", 0)), "invalid_certificate");
        assert_eq!(code(check(&chain, &key, u64::MAX)), "invalid_certificate");
        let (no_dns, no_dns_key) = make(&["192.0.2.1"]);
        assert_eq!(code(check(&no_dns, &no_dns_key, 0)), "invalid_certificate");
    }
}
