//! Errors of the storage layer.

/// A failure to read or write the on-disk state or log.
///
/// Every variant means the replica's disk (or the data on it) cannot be trusted; the caller
/// should stop serving rather than carry on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error (I/O, corruption, a transaction that could not commit).
    #[error("storage: {0}")]
    Db(Box<redb::Error>),
    /// A stored value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The data on disk breaks an invariant (for example a hole in the log).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Db(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
