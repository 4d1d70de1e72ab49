//! TLS for tests against edges: a throw-away certificate authority issuing server certificates
//! (one per domain, or wildcards) to upload, and a probe that opens a TLS connection with a
//! chosen SNI and reports the certificate and ALPN protocol the server picked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A certificate authority that exists only for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("fingerprint", &sha256_hex(self.cert.der()))
            .finish_non_exhaustive()
    }
}

/// A server certificate issued by a [`TestCa`], with its key.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The names it covers (`a.example.com`, `*.example.org`).
    pub names: Vec<String>,
    /// The leaf certificate (PEM), as uploaded in `chain_pem`.
    pub chain_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The leaf certificate (DER).
    pub der: Vec<u8>,
}

impl IssuedCert {
    /// SHA-256 of the DER leaf, lowercase hex (what the API calls `fingerprint`).
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.der)
    }

    /// The body of `POST /api/v1/certificates`.
    pub fn upload_body(&self) -> serde_json::Value {
        serde_json::json!({ "chain_pem": self.chain_pem, "key_pem": self.key_pem })
    }
}

impl TestCa {
    /// A fresh CA (ECDSA P-256), valid from 2020 to 2099.
    ///
    /// # Panics
    /// If rcgen cannot make it (it always can).
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Kokoa test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 1, 1);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa { cert, key }
    }

    /// The CA certificate (PEM), to trust in clients.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `dir/ca.pem` (for `curl --cacert`) and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A server certificate for `names` (the first is also its common name).
    ///
    /// # Panics
    /// If a name is not a valid DNS name for rcgen.
    pub fn issue(&self, names: &[&str]) -> IssuedCert {
        let key = KeyPair::generate().expect("generate a leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())
            .unwrap_or_else(|e| panic!("certificate params for {names:?}: {e}"));
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 1, 1);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .unwrap_or_else(|e| panic!("sign a certificate for {names:?}: {e}"));
        IssuedCert {
            names,
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a TLS server showed a client.
#[derive(Debug, Clone)]
pub struct TlsProbe {
    /// The leaf certificate (DER).
    pub leaf: Vec<u8>,
    /// How many certificates it sent.
    pub chain_len: usize,
    /// The ALPN protocol it chose, if any (`h2`, `http/1.1`).
    pub alpn: Option<String>,
}

impl TlsProbe {
    /// SHA-256 of the leaf, lowercase hex.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.leaf)
    }
}

/// Opens a TLS connection to `addr` with SNI `server_name` offering `alpn`, trusting only `ca`
/// (the certificate must be valid for `server_name`).
pub async fn tls_connect(
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&str],
    ca: &TestCa,
) -> Result<TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert.der().clone())
        .map_err(|e| format!("trust the test CA: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls config: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    handshake(addr, server_name, config).await
}

/// Opens a TLS connection to `addr` with SNI `server_name` offering `alpn`, accepting whatever
/// certificate comes back (this is for looking at it, not for trusting it), and returns the
/// stream.
pub async fn tls_connect_any_cert(
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&str],
) -> Result<TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls config: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    handshake(addr, server_name, config).await
}

async fn handshake(
    addr: SocketAddr,
    server_name: &str,
    config: ClientConfig,
) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;
    let connect = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr} for {server_name}: {e}"))
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| format!("TLS handshake with {addr} for {server_name} timed out"))?
}

/// The certificate and ALPN protocol `addr` shows a client asking for `server_name`.
pub async fn probe_tls(
    addr: SocketAddr,
    server_name: &str,
    alpn: &[&str],
) -> Result<TlsProbe, String> {
    let stream = tls_connect_any_cert(addr, server_name, alpn).await?;
    let (_, connection) = stream.get_ref();
    let chain = connection
        .peer_certificates()
        .ok_or_else(|| format!("{addr} sent no certificate for {server_name}"))?;
    Ok(TlsProbe {
        leaf: chain
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default(),
        chain_len: chain.len(),
        alpn: connection
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    })
}

/// Accepts any server certificate, but still checks the handshake signatures.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_certificates_with_distinct_fingerprints() {
        let ca = TestCa::new();
        let a = ca.issue(&["a.example.com"]);
        let w = ca.issue(&["*.example.org"]);
        assert!(a.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(a.key_pem.contains("PRIVATE KEY"));
        assert_eq!(a.fingerprint().len(), 64);
        assert_ne!(a.fingerprint(), w.fingerprint());
        assert_eq!(w.names, ["*.example.org"]);
    }
}
