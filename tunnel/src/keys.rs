//! WireGuard keys in their base64 text form.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
pub use x25519_dalek::{PublicKey, StaticSecret};

/// A key that is not 32 bytes of base64.
#[derive(Debug, thiserror::Error)]
#[error("invalid WireGuard key {0:?}: expected 32 bytes in base64")]
pub struct KeyError(pub String);

/// Parses a public key (`wg pubkey` form).
pub fn parse_public(text: &str) -> Result<PublicKey, KeyError> {
    Ok(PublicKey::from(parse_bytes(text)?))
}

/// Parses a private key (`wg genkey` form).
pub fn parse_secret(text: &str) -> Result<StaticSecret, KeyError> {
    Ok(StaticSecret::from(parse_bytes(text)?))
}

fn parse_bytes(text: &str) -> Result<[u8; 32], KeyError> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| KeyError(text.to_string()))?;
    bytes.try_into().map_err(|_| KeyError(text.to_string()))
}

/// A public key in base64.
pub fn to_base64(key: &PublicKey) -> String {
    B64.encode(key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bad_ones_are_refused() {
        let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let public = PublicKey::from(&secret);
        assert_eq!(parse_public(&to_base64(&public)).expect("parse"), public);
        assert!(parse_public("abc").is_err());
        assert!(parse_public(&B64.encode([1u8; 31])).is_err());
    }
}
