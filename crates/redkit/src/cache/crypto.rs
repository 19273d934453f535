//! Encryption at rest for cache values: XChaCha20-Poly1305 with key rotation.
//!
//! A [`Keyring`] holds keys by a one-byte id and encrypts with its current key. The id is
//! stored in front of each ciphertext, so values written under an older key stay readable
//! while that key is still in the ring. The namespace and cache key are bound in as
//! associated data, so a ciphertext copied to another key does not decrypt.

use std::collections::BTreeMap;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

/// Encryption keys by id; one of them is current.
#[derive(Clone)]
pub struct Keyring {
    current: u8,
    keys: Arc<BTreeMap<u8, XChaCha20Poly1305>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

const NONCE_LEN: usize = 24;

impl Keyring {
    /// A ring with one 32-byte key, used for encryption.
    pub fn new(id: u8, key: [u8; 32]) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(id, XChaCha20Poly1305::new(&key.into()));
        Keyring {
            current: id,
            keys: Arc::new(keys),
        }
    }

    /// Adds an older key that can still decrypt (for rotation).
    pub fn with_old_key(mut self, id: u8, key: [u8; 32]) -> Self {
        Arc::make_mut(&mut self.keys).insert(id, XChaCha20Poly1305::new(&key.into()));
        self
    }

    pub(crate) fn encrypt(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>> {
        let cipher = &self.keys[&self.current];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| Error::Codec("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(self.current);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn decrypt(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 1 + NONCE_LEN {
            return Err(Error::Codec("encrypted value is truncated".into()));
        }
        let cipher = self
            .keys
            .get(&sealed[0])
            .ok_or_else(|| Error::Codec(format!("value encrypted with unknown key id {}", sealed[0])))?;
        let nonce = XNonce::from_slice(&sealed[1..1 + NONCE_LEN]);
        cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .map_err(|_| Error::Codec("value failed authentication (wrong key or tampered)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_rotation_and_binding() {
        let old = Keyring::new(1, [7; 32]);
        let sealed = old.encrypt(b"ns/k", b"secret").unwrap();
        let rotated = Keyring::new(2, [9; 32]).with_old_key(1, [7; 32]);
        assert_eq!(rotated.decrypt(b"ns/k", &sealed).unwrap(), b"secret");
        assert_eq!(rotated.encrypt(b"ns/k", b"x").unwrap()[0], 2);
        assert!(rotated.decrypt(b"ns/other", &sealed).is_err(), "bound to its key");
        assert!(
            Keyring::new(2, [9; 32]).decrypt(b"ns/k", &sealed).is_err(),
            "dropped key"
        );
    }
}
