//! Tokens already read from the state, kept in memory so that checking a bearer token does not
//! read redb on every request. The whole cache is dropped whenever the state machine's
//! `auth_epoch` moves (an applied entry created, used or revoked a token, or a snapshot was
//! installed), so a revocation takes effect at once.

use std::collections::HashMap;
use std::sync::Mutex;

use kokoa_store::Token;

/// Most tokens kept; beyond it the cache starts over.
const MAX_CACHED: usize = 10_000;

#[derive(Debug, Default)]
pub struct TokenCache {
    inner: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    epoch: u64,
    tokens: HashMap<String, Token>,
}

impl TokenCache {
    /// The cached token `id`, if it was read at `epoch`.
    pub fn get(&self, id: &str, epoch: u64) -> Option<Token> {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.epoch != epoch {
            c.tokens.clear();
            c.epoch = epoch;
            return None;
        }
        c.tokens.get(id).cloned()
    }

    /// Remembers `token` as read at `epoch`.
    pub fn put(&self, token: Token, epoch: u64) {
        let mut c = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if c.epoch != epoch || c.tokens.len() >= MAX_CACHED {
            c.tokens.clear();
            c.epoch = epoch;
        }
        c.tokens.insert(token.id.clone(), token);
    }
}
