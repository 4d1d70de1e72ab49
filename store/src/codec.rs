//! The one binary encoding of stored values: bincode 2 over serde, standard configuration.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// Encodes a value for storage or for the wire.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| StoreError::Codec(e.to_string()))?;
    if read != bytes.len() {
        return Err(StoreError::Codec(format!(
            "{} trailing bytes after value",
            bytes.len() - read
        )));
    }
    Ok(value)
}
