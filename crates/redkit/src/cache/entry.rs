//! The bytes an entry is stored as in L2, and the typed value they carry.
//!
//! Layout: `[format: u8][ttl ms: u64 BE][stale window ms: u64 BE][tag count: u16][tags…][payload]`, where the payload is
//! the codec's encoding of the value, encrypted when the cache has a keyring. The physical
//! TTL in L2 is the entry's TTL plus its stale window, so "fresh" is decided from the
//! store's own remaining TTL (no client clocks compared across hosts).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::crypto::Keyring;
use super::options::Codec;
use crate::error::{Error, Result};

const FORMAT_PLAIN: u8 = 1;
const FORMAT_SEALED: u8 = 2;

/// Encodes and decodes values of one cache.
#[derive(Clone, Debug)]
pub(crate) struct Packer {
    pub codec: Codec,
    pub keyring: Option<Keyring>,
    pub max_value_bytes: usize,
}

/// An entry read back from L2.
pub(crate) struct Unpacked<T> {
    pub value: T,
    pub ttl: Duration,
    pub stale_window: Duration,
    pub tags: Vec<String>,
    pub encoded_len: usize,
}

impl Packer {
    /// The codec's bytes for `value` (before encryption); checks the size limit.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Vec<u8>> {
        let bytes = match self.codec {
            Codec::Json => serde_json::to_vec(value)?,
            Codec::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| Error::Codec(e.to_string()))?,
        };
        if bytes.len() > self.max_value_bytes {
            return Err(Error::TooLarge {
                field: "value".into(),
                size: bytes.len(),
                limit: self.max_value_bytes,
            });
        }
        Ok(bytes)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        match self.codec {
            Codec::Json => Ok(serde_json::from_slice(bytes)?),
            Codec::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| Error::Codec(e.to_string())),
        }
    }

    /// The full L2 record.
    pub fn pack(
        &self,
        aad: &[u8],
        encoded: &[u8],
        ttl: Duration,
        stale_window: Duration,
        tags: &[String],
    ) -> Result<Vec<u8>> {
        let (format, payload) = match &self.keyring {
            Some(k) => (FORMAT_SEALED, k.encrypt(aad, encoded)?),
            None => (FORMAT_PLAIN, encoded.to_vec()),
        };
        let tag_bytes: usize = tags.iter().map(|t| 2 + t.len()).sum();
        let mut out = Vec::with_capacity(1 + 16 + 2 + tag_bytes + payload.len());
        out.push(format);
        out.extend_from_slice(&(ttl.as_millis() as u64).to_be_bytes());
        out.extend_from_slice(&(stale_window.as_millis() as u64).to_be_bytes());
        out.extend_from_slice(&(tags.len() as u16).to_be_bytes());
        for t in tags {
            out.extend_from_slice(&(t.len() as u16).to_be_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(&payload);
        Ok(out)
    }

    pub fn unpack<T: DeserializeOwned>(&self, aad: &[u8], record: &[u8]) -> Result<Unpacked<T>> {
        let bad = || Error::Codec("cache record is malformed".into());
        let (&format, rest) = record.split_first().ok_or_else(bad)?;
        let (ttl, rest) = rest.split_at_checked(8).ok_or_else(bad)?;
        let ttl = Duration::from_millis(u64::from_be_bytes(ttl.try_into().expect("8 bytes")));
        let (window, rest) = rest.split_at_checked(8).ok_or_else(bad)?;
        let stale_window = Duration::from_millis(u64::from_be_bytes(window.try_into().expect("8 bytes")));
        let (count, mut rest) = rest.split_at_checked(2).ok_or_else(bad)?;
        let count = u16::from_be_bytes(count.try_into().expect("2 bytes"));
        let mut tags = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (len, r) = rest.split_at_checked(2).ok_or_else(bad)?;
            let len = u16::from_be_bytes(len.try_into().expect("2 bytes")) as usize;
            let (tag, r) = r.split_at_checked(len).ok_or_else(bad)?;
            tags.push(String::from_utf8(tag.to_vec()).map_err(|_| bad())?);
            rest = r;
        }
        let opened;
        let payload = match (format, &self.keyring) {
            (FORMAT_PLAIN, _) => rest,
            (FORMAT_SEALED, Some(k)) => {
                opened = k.decrypt(aad, rest)?;
                &opened
            }
            (FORMAT_SEALED, None) => {
                return Err(Error::Codec("value is encrypted but the cache has no keyring".into()));
            }
            _ => return Err(bad()),
        };
        Ok(Unpacked {
            value: self.decode(payload)?,
            ttl,
            stale_window,
            tags,
            encoded_len: payload.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_both_codecs_and_sealed() {
        for codec in [Codec::Json, Codec::MessagePack] {
            for keyring in [None, Some(Keyring::new(1, [3; 32]))] {
                let p = Packer {
                    codec,
                    keyring,
                    max_value_bytes: 1 << 20,
                };
                let enc = p.encode(&vec!["a".to_string(), "b".to_string()]).unwrap();
                let rec = p
                    .pack(
                        b"aad",
                        &enc,
                        Duration::from_secs(3),
                        Duration::from_secs(9),
                        &["t1".into()],
                    )
                    .unwrap();
                let u: Unpacked<Vec<String>> = p.unpack(b"aad", &rec).unwrap();
                assert_eq!(u.value, vec!["a", "b"]);
                assert_eq!(u.stale_window, Duration::from_secs(9));
                assert_eq!(u.ttl, Duration::from_secs(3));
                assert_eq!(u.tags, vec!["t1"]);
            }
        }
    }

    #[test]
    fn oversized_and_malformed_are_clear_errors() {
        let p = Packer {
            codec: Codec::Json,
            keyring: None,
            max_value_bytes: 4,
        };
        assert!(matches!(p.encode(&"too long"), Err(Error::TooLarge { limit: 4, .. })));
        assert!(p.unpack::<String>(b"", &[1, 0]).is_err());
        assert!(p.unpack::<String>(b"", &[]).is_err());
    }
}
