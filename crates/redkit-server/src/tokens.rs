//! Channel tokens: what a browser presents instead of an API key.
//!
//! A page cannot set `Authorization` on an `EventSource` or a WebSocket, and an API key
//! handed to a page is no longer a secret. So an app's backend, holding a key, asks
//! `POST /v1/channels/tokens` for a token that lets its bearer **read** (subscribe to, and
//! read the history of) the channels it names — exact names, or prefixes ending in `*`, each
//! within the issuing key's own read scope — until it expires (at most a day). The page
//! passes it as `?token=` on the event stream, or in the WebSocket's `auth` frame.
//!
//! A token is `v1.PAYLOAD.MAC`: the payload (base64url JSON of the channels and the expiry)
//! and its HMAC-SHA256 under the server's `channel_token_secret`. Nothing is stored, so any
//! server with the same secret accepts it; a server without one makes a random secret at
//! start, and its tokens then work on that server until it restarts.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Most channel patterns one token may name.
pub const MAX_CHANNELS: usize = 32;

/// Shortest configured secret.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token grants.
#[derive(Serialize, Deserialize)]
struct Grant {
    /// Channel names, or prefixes ending in `*`.
    c: Vec<String>,
    /// When it expires, in ms since the Unix epoch.
    e: u64,
}

/// Issues and checks tokens under one secret.
pub struct TokenSigner {
    mac: HmacSha256,
}

impl TokenSigner {
    /// Signs with `secret`, or with a random secret of this process when `None`.
    pub fn new(secret: Option<&str>) -> Self {
        let random: [u8; 32] = rand::random();
        let key = secret.map_or(&random[..], str::as_bytes);
        TokenSigner {
            mac: HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    fn mac_of(&self, signed: &str) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for reading `channels` until `expires_at_ms`.
    pub fn issue(&self, channels: &[String], expires_at_ms: u64) -> String {
        let grant = Grant {
            c: channels.to_vec(),
            e: expires_at_ms,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&grant).expect("serializes"));
        let signed = format!("v1.{payload}");
        let tag = URL_SAFE_NO_PAD.encode(self.mac_of(&signed).finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// The channel patterns `token` grants at `now_ms`, or why it grants nothing.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Vec<String>, &'static str> {
        let (signed, tag) = token.rsplit_once('.').ok_or("not a channel token")?;
        let payload = signed.strip_prefix("v1.").ok_or("not a channel token")?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| "not a channel token")?;
        // Constant time (hmac's verify_slice).
        self.mac_of(signed)
            .verify_slice(&tag)
            .map_err(|_| "channel token not signed by this server's secret")?;
        let grant: Grant = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or("not a channel token")?;
        if grant.e <= now_ms {
            return Err("channel token expired");
        }
        Ok(grant.c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_under_the_same_secret_only_and_until_they_expire() {
        let secret = "0123456789abcdef0123456789abcdef";
        let a = TokenSigner::new(Some(secret));
        let b = TokenSigner::new(Some(secret));
        let token = a.issue(&["news.*".to_string(), "orders".to_string()], 2_000);
        assert_eq!(b.verify(&token, 1_000).unwrap(), vec!["news.*", "orders"]);
        assert_eq!(b.verify(&token, 2_000).unwrap_err(), "channel token expired");
        let other = TokenSigner::new(None);
        assert!(other.verify(&token, 1_000).unwrap_err().contains("not signed"));
        // A changed payload (more channels, a later expiry) no longer matches its MAC.
        let forged = a.issue(&["*".to_string()], u64::MAX);
        let (_, forged_payload) = forged.split_once('.').unwrap();
        let (forged_payload, _) = forged_payload.split_once('.').unwrap();
        let tag = token.rsplit_once('.').unwrap().1;
        let spliced = format!("v1.{forged_payload}.{tag}");
        assert!(a.verify(&spliced, 1_000).is_err());
        for junk in ["", "v1", "v1..", "v2.a.b", "v1.a.!!"] {
            assert!(a.verify(junk, 0).is_err(), "{junk}");
        }
    }
}
