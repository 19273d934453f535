//! Redaction rules: what is removed or transformed before a document (or a cached value)
//! is stored, so the raw value is nowhere in Redis or SQLite.
//!
//! - `drop`: the field is removed.
//! - `hash`: the value becomes `h:` + 32 hex digits of an HMAC-SHA256 under the
//!   deployment's redaction key, so equal values still link (and can be queried by
//!   hashing the value the same way) while the raw value cannot be read back.
//! - `mask`: a string keeps its last `keep_last` characters, the rest become `*`.
//! - `scrub`: e-mail addresses, IP addresses and bearer tokens inside strings (nested
//!   anywhere in the value) are replaced by `[email]`, `[ip]` and `Bearer [token]`.
//!
//! A rule names a top-level field, or `*` for every field (`scrub` only).

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::{Error, Result};

/// What a rule does to its field.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedactAction {
    /// Remove the field.
    Drop,
    /// Replace the value by a keyed hash (HMAC-SHA256), so equal values still link.
    Hash,
    /// Keep the last `keep_last` characters of the string; the rest become `*`.
    Mask,
    /// Replace e-mail addresses, IP addresses and bearer tokens inside strings.
    Scrub,
}

/// A pattern `scrub` looks for.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScrubPattern {
    /// `name@example.com` → `[email]`.
    Email,
    /// IPv4 and IPv6 addresses → `[ip]`.
    Ip,
    /// `Bearer <token>` → `Bearer [token]`.
    Bearer,
}

/// One redaction rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactRule {
    /// A top-level field, or `*` for every field (`scrub` only).
    pub field: String,
    /// What to do.
    pub action: RedactAction,
    /// `mask`: characters kept at the end (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
    /// `scrub`: which patterns (default all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patterns: Option<Vec<ScrubPattern>>,
}

/// Most rules per collection.
pub const MAX_RULES: usize = 64;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}").expect("email pattern")
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b").expect("ipv4 pattern")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5})?\b|::1\b")
        .expect("ipv6 pattern")
});
static BEARER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*").expect("bearer pattern"));

/// Checks rules as given by a user; `has_key` says whether a redaction key is configured.
pub fn validate(rules: &[RedactRule], has_key: bool) -> Result<()> {
    if rules.len() > MAX_RULES {
        return Err(Error::invalid("redact", format!("at most {MAX_RULES} rules")));
    }
    for (i, r) in rules.iter().enumerate() {
        let at = format!("redact[{i}]");
        if r.field == "*" {
            if r.action != RedactAction::Scrub {
                return Err(Error::invalid(
                    format!("{at}.field"),
                    "`*` is allowed with action scrub only",
                ));
            }
        } else {
            super::collection::check_field(&r.field).map_err(|_| {
                Error::invalid(
                    format!("{at}.field"),
                    "a field name: 1 to 128 bytes, no control characters, not starting with $",
                )
            })?;
        }
        if r.keep_last.is_some() && r.action != RedactAction::Mask {
            return Err(Error::invalid(format!("{at}.keep_last"), "only with action mask"));
        }
        if r.keep_last.is_some_and(|n| n > 64) {
            return Err(Error::invalid(format!("{at}.keep_last"), "at most 64"));
        }
        if r.patterns.is_some() && r.action != RedactAction::Scrub {
            return Err(Error::invalid(format!("{at}.patterns"), "only with action scrub"));
        }
        if r.action == RedactAction::Hash && !has_key {
            return Err(Error::invalid(
                format!("{at}.action"),
                "hash needs a redaction key (records.redact_key, REDKIT_REDACT_KEY): without one, equal values would not link across instances and restarts",
            ));
        }
    }
    Ok(())
}

/// Applies `rules` to a document's top-level fields, in order.
pub fn apply(rules: &[RedactRule], key: Option<&[u8]>, doc: &mut Map<String, Value>) {
    for r in rules {
        if r.field == "*" {
            for v in doc.values_mut() {
                scrub(v, r.patterns.as_deref());
            }
            continue;
        }
        match r.action {
            RedactAction::Drop => {
                doc.remove(&r.field);
            }
            _ => {
                if let Some(v) = doc.get_mut(&r.field) {
                    apply_one(r, key, v);
                }
            }
        }
    }
}

/// Rules with the key they hash with, for a cache.
#[derive(Clone)]
pub struct Redaction {
    rules: Vec<RedactRule>,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Redaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redaction")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Redaction {
    /// `rules`, hashing with `key`.
    pub fn new(rules: Vec<RedactRule>, key: Option<&[u8]>) -> Self {
        Redaction {
            rules,
            key: key.map(<[u8]>::to_vec),
        }
    }

    /// Checks the rules (and that `hash` rules have a key of at least 16 bytes).
    pub fn validate(&self) -> Result<()> {
        if self.key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(Error::invalid("redact_key", "at least 16 bytes"));
        }
        validate(&self.rules, self.key.is_some())
    }

    /// `value` with the rules applied, read back as `T`.
    pub fn apply_typed<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: &T) -> Result<T> {
        let mut v = serde_json::to_value(value)?;
        apply_value(&self.rules, self.key.as_deref(), &mut v);
        serde_json::from_value(v).map_err(|e| {
            Error::invalid(
                "value",
                format!("after redaction it no longer fits the cache's type: {e}"),
            )
        })
    }
}

/// Applies `rules` to a whole value (a cached value): `*` rules to all of it, field rules
/// to its top-level fields when it is an object.
pub fn apply_value(rules: &[RedactRule], key: Option<&[u8]>, value: &mut Value) {
    match value {
        Value::Object(map) => apply(rules, key, map),
        other => {
            for r in rules.iter().filter(|r| r.field == "*") {
                scrub(other, r.patterns.as_deref());
            }
        }
    }
}

fn apply_one(rule: &RedactRule, key: Option<&[u8]>, v: &mut Value) {
    if v.is_null() {
        return;
    }
    match rule.action {
        RedactAction::Drop => {}
        RedactAction::Hash => *v = Value::String(keyed_hash(key.unwrap_or_default(), v)),
        RedactAction::Mask => {
            let s = match &mut *v {
                Value::String(s) => std::mem::take(s),
                other => other.to_string(),
            };
            *v = Value::String(mask(&s, rule.keep_last.unwrap_or(4)));
        }
        RedactAction::Scrub => scrub(v, rule.patterns.as_deref()),
    }
}

/// `h:` + 32 hex digits of HMAC-SHA256(key, the value's JSON text; a string's own text).
pub fn keyed_hash(key: &[u8], v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(text.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(34);
    out.push_str("h:");
    for b in &digest[..16] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn mask(s: &str, keep_last: usize) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + keep_last >= n { c } else { '*' })
        .collect()
}

fn scrub(v: &mut Value, patterns: Option<&[ScrubPattern]>) {
    match v {
        Value::String(s) => {
            let wanted = |p| patterns.is_none_or(|ps| ps.contains(&p));
            let mut out = std::borrow::Cow::Borrowed(s.as_str());
            if wanted(ScrubPattern::Bearer) {
                out = BEARER.replace_all(&out, "Bearer [token]").into_owned().into();
            }
            if wanted(ScrubPattern::Email) {
                out = EMAIL.replace_all(&out, "[email]").into_owned().into();
            }
            if wanted(ScrubPattern::Ip) {
                out = IPV4.replace_all(&out, "[ip]").into_owned().into();
                out = IPV6.replace_all(&out, "[ip]").into_owned().into();
            }
            if out != s.as_str() {
                *s = out.into_owned();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| scrub(i, patterns)),
        Value::Object(map) => map.values_mut().for_each(|i| scrub(i, patterns)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(field: &str, action: RedactAction) -> RedactRule {
        RedactRule {
            field: field.into(),
            action,
            keep_last: None,
            patterns: None,
        }
    }

    #[test]
    fn every_action_removes_the_raw_value() {
        let rules = vec![
            rule("password", RedactAction::Drop),
            rule("email", RedactAction::Hash),
            RedactRule {
                keep_last: Some(4),
                ..rule("card", RedactAction::Mask)
            },
            rule("*", RedactAction::Scrub),
        ];
        let mut doc = json!({
            "password": "hunter2", "email": "ann@example.com", "card": "4111111111111111",
            "note": "mail bob@example.org from 10.1.2.3 or fe80::1:2, auth: Bearer abc.def-ghi",
            "nested": {"list": ["carol@example.net"]}
        });
        apply(&rules, Some(b"k"), doc.as_object_mut().unwrap());
        let text = doc.to_string();
        for raw in [
            "hunter2",
            "ann@example.com",
            "411111111111",
            "bob@",
            "10.1.2.3",
            "fe80::1:2",
            "abc.def-ghi",
            "carol@",
        ] {
            assert!(!text.contains(raw), "{raw} survived in {text}");
        }
        assert_eq!(doc["card"], "************1111");
        assert!(doc["email"].as_str().unwrap().starts_with("h:"));
        assert!(
            doc["note"].as_str().unwrap().contains("[email]")
                && text.contains("[ip]")
                && text.contains("Bearer [token]")
        );
    }

    #[test]
    fn equal_values_hash_equal_under_one_key_only() {
        let v = json!("ann@example.com");
        assert_eq!(keyed_hash(b"k", &v), keyed_hash(b"k", &v));
        assert_ne!(keyed_hash(b"k", &v), keyed_hash(b"other", &v));
        assert_ne!(keyed_hash(b"k", &v), keyed_hash(b"k", &json!("bob@example.com")));
    }

    #[test]
    fn bad_rules_name_their_field() {
        let e = validate(&[rule("*", RedactAction::Drop)], true).unwrap_err();
        assert!(e.to_string().contains("redact[0].field"), "{e}");
        let e = validate(&[rule("email", RedactAction::Hash)], false).unwrap_err();
        assert!(e.to_string().contains("redaction key"), "{e}");
    }
}
