//! TLS for the HTTPS listener: certificates picked by SNI from the live [`CertTable`] (exact
//! names, then `*.` wildcards), and a self-signed fallback for names the edge has no
//! certificate for. ALPN offers HTTP/2 and HTTP/1.1.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use kokoa_store::pulled::EdgeCertificate;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::live::Live;
use crate::routing::normalize_host;

/// Most self-signed fallback certificates kept (one per unknown SNI name); beyond it they are
/// made afresh.
const MAX_FALLBACKS: usize = 1024;
/// The name on the certificate served without SNI or for names the edge does not route.
const DEFAULT_NAME: &str = "kokoa-edge.invalid";

/// Name -> certificate, for one config version.
#[derive(Default)]
pub struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `example.com` for a `*.example.com` name.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// The ids of the certificates it was built from (an id names one upload, never reused).
    ids: Vec<String>,
}

impl fmt::Debug for CertTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertTable")
            .field("exact", &self.exact.keys().collect::<Vec<_>>())
            .field("wildcard", &self.wildcard.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CertTable {
    /// Loads every usable certificate; one that does not parse is skipped with a warning (the
    /// replicas check certificates on upload, so this is corruption, not user error). Where
    /// two certificates cover a name, the one that expires last wins.
    pub fn new(certs: &[EdgeCertificate]) -> Self {
        let mut sorted: Vec<&EdgeCertificate> = certs.iter().collect();
        sorted.sort_by_key(|c| c.not_after);
        let mut table = CertTable {
            ids: certs.iter().map(|c| c.id.clone()).collect(),
            ..CertTable::default()
        };
        for cert in sorted {
            let key = match certified_key(&cert.chain_pem, &cert.key_pem) {
                Ok(key) => Arc::new(key),
                Err(e) => {
                    tracing::warn!(id = %cert.id, error = %e, "skipping a certificate");
                    continue;
                }
            };
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => table.wildcard.insert(parent.to_string(), key.clone()),
                    None => table.exact.insert(name.clone(), key.clone()),
                };
            }
        }
        table
    }

    /// Whether it was built from exactly `certs` (then it need not be built again).
    pub fn built_from(&self, certs: &[EdgeCertificate]) -> bool {
        self.ids.len() == certs.len() && self.ids.iter().zip(certs).all(|(id, c)| *id == c.id)
    }

    /// The certificate for SNI name `name`, if there is one.
    pub fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = normalize_host(name)?;
        if let Some(key) = self.exact.get(name.as_ref()) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).cloned()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no certificate in the chain PEM")]
    NoCertificate,
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error("unusable key: {0}")]
    Key(String),
    #[error("could not make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// A chain and its key, ready for rustls; the key must match the leaf.
pub fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, CertError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| CertError::Pem(e.to_string()))?;
    let signer = any_supported_type(&key).map_err(|e| CertError::Key(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|e| CertError::Key(e.to_string()))?;
    Ok(certified)
}

/// A self-signed certificate for `name` (fresh key, valid from now on for a year).
fn self_signed(name: &str) -> Result<CertifiedKey, CertError> {
    let bad = |e: rcgen::Error| CertError::SelfSigned(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(bad)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(bad)?;
    certified_key(&cert.pem(), &key.serialize_pem())
}

/// Picks the certificate by SNI from the live table, falling back to a self-signed one.
pub struct Resolver {
    live: Arc<Live>,
    /// For clients that send no SNI and for names that are not routed: made once, so the
    /// handshake path takes no lock.
    default: Option<Arc<CertifiedKey>>,
    /// Self-signed certificates of routed names that have no certificate, made on first use.
    fallbacks: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

impl Resolver {
    pub fn new(live: Arc<Live>) -> Self {
        let default = match self_signed(DEFAULT_NAME) {
            Ok(key) => Some(Arc::new(key)),
            Err(e) => {
                tracing::error!(error = %e, "no default certificate");
                None
            }
        };
        Resolver {
            live,
            default,
            fallbacks: RwLock::new(HashMap::new()),
        }
    }

    /// The self-signed certificate for `name`. Names that are not routed share the default one,
    /// so random SNI values cannot make the edge generate keys without bound.
    fn fallback(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let routed = name.filter(|n| self.live.routes().lookup(n).is_some());
        let Some(name) = routed.and_then(normalize_host).map(|n| n.into_owned()) else {
            return self.default.clone();
        };
        if let Some(key) = self
            .fallbacks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            return Some(key.clone());
        }
        let mut cache = self.fallbacks.write().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = cache.get(&name) {
            return Some(key.clone());
        }
        let key = match self_signed(&name) {
            Ok(key) => Arc::new(key),
            Err(e) => {
                tracing::error!(error = %e, "no fallback certificate");
                return None;
            }
        };
        if cache.len() >= MAX_FALLBACKS {
            cache.clear();
        }
        cache.insert(name, key.clone());
        Some(key)
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        name.and_then(|n| self.live.certs().lookup(n))
            .or_else(|| self.fallback(name))
    }
}

/// The HTTPS listener's rustls config: SNI resolver over `live`, ALPN h2 and http/1.1.
pub fn server_config(live: Arc<Live>) -> Arc<ServerConfig> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver::new(live)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str], not_after: u64) -> EdgeCertificate {
        let key = rcgen::KeyPair::generate().expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        let c = params.self_signed(&key).expect("cert");
        EdgeCertificate {
            id: format!("c{not_after}"),
            names: names.iter().map(|n| n.to_string()).collect(),
            chain_pem: c.pem(),
            key_pem: key.serialize_pem(),
            not_after,
        }
    }

    #[test]
    fn lookup_by_exact_name_then_wildcard() {
        let a = cert(&["a.example.com"], 1);
        let w = cert(&["*.example.com"], 2);
        let t = CertTable::new(&[a, w]);
        let leaf = |n: &str| t.lookup(n).map(|k| k.cert[0].clone());
        assert!(leaf("a.example.com").is_some());
        assert_ne!(leaf("a.example.com"), leaf("b.example.com"));
        assert!(leaf("b.example.com").is_some());
        assert!(leaf("example.com").is_none());
        assert!(leaf("x.b.example.com").is_none());
    }

    #[test]
    fn a_key_that_does_not_match_is_refused() {
        let a = cert(&["a.example.com"], 1);
        let b = cert(&["b.example.com"], 1);
        assert!(certified_key(&a.chain_pem, &b.key_pem).is_err());
        assert!(certified_key(&a.chain_pem, &a.key_pem).is_ok());
        assert!(certified_key("", &a.key_pem).is_err());
        // A broken certificate is skipped, the others still load.
        let mut broken = b.clone();
        broken.key_pem = a.key_pem.clone();
        assert_eq!(CertTable::new(&[broken, a]).len(), 1);
    }

    #[test]
    fn the_later_expiry_wins() {
        let old = cert(&["a.example.com"], 1);
        let new = cert(&["a.example.com"], 2);
        let t = CertTable::new(&[new.clone(), old]);
        let expected = certified_key(&new.chain_pem, &new.key_pem).expect("key");
        assert_eq!(
            t.lookup("a.example.com").expect("cert").cert[0],
            expected.cert[0]
        );
    }

    #[test]
    fn a_table_knows_the_certificates_it_was_built_from() {
        let a = cert(&["a.example.com"], 1);
        let b = cert(&["b.example.com"], 2);
        let t = CertTable::new(&[a.clone(), b.clone()]);
        assert!(t.built_from(&[a.clone(), b.clone()]));
        assert!(!t.built_from(&[b, a.clone()]));
        assert!(!t.built_from(&[a]));
        assert!(CertTable::default().built_from(&[]));
    }
}
