//! One error type for the whole library.
//!
//! Every fallible redkit call returns [`Error`]. Its [`ErrorKind`] is what callers (and
//! the HTTP server, which maps kinds to status codes) branch on; the message is for humans
//! and always names the field, limit or operation involved.

use std::time::Duration;

use crate::config::ConfigError;

/// Result alias used throughout redkit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something redkit refuses: names the field and the rule.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which argument or field.
        field: String,
        /// Which rule it broke, with the limit.
        reason: String,
    },
    /// A value is larger than its configured limit.
    #[error("{field} is too large: {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Which argument or field.
        field: String,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The operation conflicts with the current state (a held lock, a duplicate id).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A limit refused the call (rate limit, quota).
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// The store needed for this call is not reachable, or the call timed out, or the
    /// capability fails closed while Redis is away.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer a command it may have run (a timeout, or the connection broke
    /// after it was sent): whether a write took effect is unknown. Retry it — redkit's
    /// writes are idempotent.
    #[error("unavailable: {0}; it may or may not have taken effect")]
    Indeterminate(String),
    /// A cache factory (the caller's loader) failed or timed out and no stale value could
    /// be served instead.
    #[error("loading {key} failed: {reason}")]
    Factory {
        /// The cache key being loaded.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A setting was refused at start-up.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis answered with an error that is not about reachability (a script error,
    /// WRONGTYPE, NOPERM, …).
    #[error("redis refused {op}: {source}")]
    Redis {
        /// The redkit operation that sent the command.
        op: String,
        /// The error Redis returned.
        source: redis::RedisError,
    },
    /// The embedded store (SQLite, the data dir) failed.
    #[error("embedded store: {0}")]
    Storage(String),
    /// Encoding or decoding a stored value failed.
    #[error("codec: {0}")]
    Codec(String),
}

/// The category of an [`Error`]; stable across messages, used for HTTP status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// → 400
    InvalidInput,
    /// → 413
    TooLarge,
    /// → 404
    NotFound,
    /// → 409
    Conflict,
    /// → 429
    LimitExceeded,
    /// → 503
    Unavailable,
    /// → 500 (start-up only in practice)
    Config,
    /// → 500
    Internal,
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInput { .. } => ErrorKind::InvalidInput,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Error::Unavailable(_) | Error::Indeterminate(_) | Error::Factory { .. } => ErrorKind::Unavailable,
            Error::Config(_) => ErrorKind::Config,
            Error::Redis { .. } | Error::Storage(_) | Error::Codec(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn timeout(op: &str, after: Duration) -> Self {
        Error::Indeterminate(format!("redis did not answer {op} within {after:?}"))
    }

    /// Whether the call may have taken effect although it failed ([`Error::Indeterminate`]).
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate(_))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Codec(e.to_string())
    }
}
