//! A collection's definition (indexes, TTL, size limit, redaction) and the checks every
//! document, field, id and query value goes through before it reaches a store.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::redact::{self, RedactRule};
use crate::error::{Error, Result};

/// Default time to live of a record: 90 days, refreshed on every write.
pub const DEFAULT_TTL_S: u64 = 90 * 86_400;
/// Default largest document, in bytes of JSON.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;
/// Largest `max_bytes` a collection may declare.
pub const MAX_DOC_BYTES: usize = 1 << 20;
/// Most indexes per collection.
pub const MAX_INDEXES: usize = 16;
/// Longest JSON text of a value in a field with an `equal` index.
pub const MAX_INDEXED_VALUE: usize = 512;

/// How a field is indexed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexKind {
    /// Equality on a string, number or boolean.
    Equal,
    /// Numeric range and order.
    Range,
}

/// Whether an index answers queries yet.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IndexState {
    /// Every record is in it.
    #[default]
    Ready,
    /// Added to a collection that had records; they are being indexed. Writes maintain it
    /// already; queries through it are refused until it is ready.
    Building,
}

/// One declared index.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    /// A top-level field.
    pub field: String,
    /// `equal` or `range`.
    pub kind: IndexKind,
    /// Set by redkit (ignored when defining).
    #[serde(default)]
    pub state: IndexState,
}

/// A collection's definition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// Declared indexes; queries go through them only.
    #[serde(default)]
    pub indexes: Vec<IndexSpec>,
    /// Time to live of a record in seconds, refreshed on every write (default 90 days;
    /// `0`: none).
    #[serde(default = "default_ttl")]
    pub ttl_s: u64,
    /// Largest document in bytes of JSON (default 64 KiB, at most 1 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Applied to every document before it is stored.
    #[serde(default)]
    pub redact: Vec<RedactRule>,
}

fn default_ttl() -> u64 {
    DEFAULT_TTL_S
}
fn default_max_bytes() -> usize {
    DEFAULT_MAX_BYTES
}

impl Default for CollectionSpec {
    fn default() -> Self {
        CollectionSpec {
            indexes: Vec::new(),
            ttl_s: DEFAULT_TTL_S,
            max_bytes: DEFAULT_MAX_BYTES,
            redact: Vec::new(),
        }
    }
}

impl CollectionSpec {
    /// Adds an index.
    pub fn index(mut self, field: &str, kind: IndexKind) -> Self {
        self.indexes.push(IndexSpec {
            field: field.into(),
            kind,
            state: IndexState::Ready,
        });
        self
    }

    /// Sets the time to live in seconds (`0`: none).
    pub fn ttl_s(mut self, ttl_s: u64) -> Self {
        self.ttl_s = ttl_s;
        self
    }

    /// Sets the largest document.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Adds a redaction rule.
    pub fn redact(mut self, rule: RedactRule) -> Self {
        self.redact.push(rule);
        self
    }

    /// Checks every limit, naming the field that breaks one.
    pub fn validate(&self, has_redact_key: bool) -> Result<()> {
        if self.indexes.len() > MAX_INDEXES {
            return Err(Error::invalid("indexes", format!("at most {MAX_INDEXES}")));
        }
        for (i, ix) in self.indexes.iter().enumerate() {
            check_field(&ix.field).map_err(|e| Error::invalid(format!("indexes[{i}].field"), reason(e)))?;
            if self.indexes[..i].iter().any(|o| o.field == ix.field) {
                return Err(Error::invalid(
                    format!("indexes[{i}].field"),
                    "a field may have one index",
                ));
            }
        }
        if self.ttl_s > 10 * 366 * 86_400 {
            return Err(Error::invalid("ttl_s", "at most 10 years (0: no TTL)"));
        }
        if !(2..=MAX_DOC_BYTES).contains(&self.max_bytes) {
            return Err(Error::invalid("max_bytes", format!("2 to {MAX_DOC_BYTES}")));
        }
        redact::validate(&self.redact, has_redact_key)
    }

    /// The index on `field`, if declared.
    pub fn index_of(&self, field: &str) -> Option<&IndexSpec> {
        self.indexes.iter().find(|i| i.field == field)
    }
}

fn reason(e: Error) -> String {
    match e {
        Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// A collection as the stores use it: its name, definition and the stamp that changes
/// with every definition (a write made under an older stamp is refused and retried, so
/// no write maintains an outdated set of indexes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// The collection.
    pub name: String,
    /// Its definition.
    pub spec: CollectionSpec,
    /// Changes with every definition.
    pub stamp: String,
}

impl Schema {
    /// Fields with an index of `kind`, in declaration order.
    pub fn fields(&self, kind: IndexKind) -> impl Iterator<Item = &str> {
        self.spec
            .indexes
            .iter()
            .filter(move |i| i.kind == kind)
            .map(|i| i.field.as_str())
    }
}

/// Collection names: 1–64 of `A-Za-z0-9_.-`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(Error::invalid(what, "1 to 64 of A-Z a-z 0-9 _ . -"));
    }
    Ok(())
}

/// Record ids: 1–256 bytes without control characters.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Error::invalid("id", "1 to 256 bytes without control characters"));
    }
    Ok(())
}

/// Field names: 1–128 bytes, no control characters, not starting with `$` (redkit's own).
pub fn check_field(field: &str) -> Result<()> {
    if field.is_empty() || field.len() > 128 || field.starts_with('$') || field.chars().any(char::is_control) {
        return Err(Error::invalid(
            "field",
            "1 to 128 bytes, no control characters, not starting with $",
        ));
    }
    Ok(())
}

/// The JSON text an `equal` index files `value` under, or why it cannot be indexed.
pub fn equal_key(field: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            let text = value.to_string();
            if text.len() > MAX_INDEXED_VALUE {
                return Err(Error::invalid(
                    field,
                    format!("has an equal index: its value may be at most {MAX_INDEXED_VALUE} bytes of JSON"),
                ));
            }
            Ok(text)
        }
        _ => Err(Error::invalid(
            field,
            "has an equal index: a string, number or boolean (or absent)",
        )),
    }
}

/// The score a `range` index files `value` under.
pub fn range_score(field: &str, value: &Value) -> Result<f64> {
    value
        .as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| Error::invalid(field, "has a range index: a number (or absent)"))
}

/// Checks a document's (or patch's) fields against `schema`: field names, indexed values,
/// size. `null` values are allowed in patches only (they remove the field).
pub fn check_fields(schema: &Schema, fields: &Map<String, Value>, patch: bool) -> Result<()> {
    for (name, v) in fields {
        check_field(name).map_err(|e| Error::invalid(format!("data.{name}"), reason(e)))?;
        if v.is_null() {
            if patch {
                continue;
            }
            return Err(Error::invalid(
                format!("data.{name}"),
                "null is only for removing a field in a patch",
            ));
        }
        match schema.spec.index_of(name).map(|i| i.kind) {
            Some(IndexKind::Equal) => {
                equal_key(&format!("data.{name}"), v)?;
            }
            Some(IndexKind::Range) => {
                range_score(&format!("data.{name}"), v)?;
            }
            None => {}
        }
    }
    let size = serde_json::to_string(fields)?.len();
    if size > schema.spec.max_bytes {
        return Err(Error::TooLarge {
            field: "data".into(),
            size,
            limit: schema.spec.max_bytes,
        });
    }
    Ok(())
}
