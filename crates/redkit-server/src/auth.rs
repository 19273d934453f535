//! API keys: `Authorization: Bearer KEY`, scoped to areas, names and access levels.
//!
//! A scope reads `AREA[:NAME[:ACCESS]]`:
//! - `AREA` is `cache`, `ratelimit`, `locks`, `sessions`, `queues`, `channels`, `ops` (operations:
//!   the details of `/health`, and `/metrics`), or `*` for all;
//! - `NAME` is the namespace, policy, lock, queue or channel, exact or a prefix ending in `*`
//!   (default `*`; sessions and ops have no names, so theirs is always `*`);
//! - `ACCESS` is `read` (look), `write` (use: set, check, acquire, enqueue, fetch…) or
//!   `admin` (manage: define policies, clear caches, pause queues, retry dead jobs; see
//!   session ids in listings); each includes the ones before it. Default `admin`. `ops`
//!   needs only `read`.
//!
//! Keys from `REDKIT_API_KEYS` get `*`. Keys are kept as SHA-256 digests and every
//! presented key is compared with every stored digest in constant time, so neither the
//! comparison nor which key matched leaks through timing. No key → 401; a known key
//! without the scope → 403.
//!
//! **Without keys** the server listens on loopback only, and [`keyless_refusal`] closes the
//! two ways a web page in the user's browser could still reach it: DNS rebinding (a name
//! the attacker controls, re-pointed at 127.0.0.1 — refused unless the `Host` is a loopback
//! name) and cross-site requests (a form or `fetch` from another origin — state changes
//! refused unless `Origin` is absent or the server's own; WebSocket upgrades too, since
//! no browser rule keeps another origin's page from reading a WebSocket). With keys neither check is
//! made: a browser never attaches a bearer key by itself, so a page cannot use one it was
//! not given, and a server with keys may be reached under any name (a load balancer's).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What part of the API a scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Cache,
    Ratelimit,
    Locks,
    Sessions,
    Queues,
    Channels,
    /// Collections of records.
    Records,
    /// Capped lists.
    Lists,
    /// Time-bucketed counters.
    Counters,
    /// Operations: `/health` details and `/metrics`.
    Ops,
}

impl Area {
    fn parse(s: &str) -> Option<Option<Area>> {
        Some(Some(match s {
            "*" => return Some(None),
            "cache" => Area::Cache,
            "ratelimit" => Area::Ratelimit,
            "locks" => Area::Locks,
            "sessions" => Area::Sessions,
            "queues" => Area::Queues,
            "channels" => Area::Channels,
            "records" => Area::Records,
            "lists" => Area::Lists,
            "counters" => Area::Counters,
            "ops" => Area::Ops,
            _ => return None,
        }))
    }

    fn as_str(self) -> &'static str {
        match self {
            Area::Cache => "cache",
            Area::Ratelimit => "ratelimit",
            Area::Locks => "locks",
            Area::Sessions => "sessions",
            Area::Queues => "queues",
            Area::Channels => "channels",
            Area::Records => "records",
            Area::Lists => "lists",
            Area::Counters => "counters",
            Area::Ops => "ops",
        }
    }
}

/// How much a scope allows; each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
struct Scope {
    area: Option<Area>,
    /// Exact name, or a prefix when `prefix` is set.
    name: String,
    prefix: bool,
    access: Access,
}

impl Scope {
    fn parse(s: &str) -> Result<Scope, String> {
        let mut parts = s.split(':');
        let area = parts.next().unwrap_or_default();
        let area = Area::parse(area).ok_or_else(|| {
            format!(
                "scope {s:?}: area {area:?} is not one of *, cache, ratelimit, locks, sessions, queues, channels, records, lists, counters, ops"
            )
        })?;
        let name = parts.next().unwrap_or("*");
        let access = match parts.next().unwrap_or("admin") {
            "read" => Access::Read,
            "write" => Access::Write,
            "admin" => Access::Admin,
            other => return Err(format!("scope {s:?}: access {other:?} is not read, write or admin")),
        };
        if parts.next().is_some() {
            return Err(format!("scope {s:?}: expected AREA[:NAME[:ACCESS]]"));
        }
        // By characters, not bytes: a name ending in a multi-byte character is fine.
        if name.is_empty() || name.strip_suffix('*').unwrap_or(name).contains('*') {
            return Err(format!(
                "scope {s:?}: the name must be exact or end in a single * (a prefix)"
            ));
        }
        let prefix = name.ends_with('*');
        Ok(Scope {
            area,
            name: name.trim_end_matches('*').to_string(),
            prefix,
            access,
        })
    }

    fn allows(&self, area: Area, name: &str, access: Access) -> bool {
        self.area.is_none_or(|a| a == area)
            && access <= self.access
            && if self.prefix {
                name.starts_with(&self.name)
            } else {
                name == self.name
            }
    }
}

/// A scope as `(area, name, prefix, access)`; area `None`: every area.
pub type ScopeParts = (Option<&'static str>, String, bool, &'static str);

/// One configured key.
#[derive(Debug)]
pub struct ApiKey {
    /// Shown in logs instead of the key.
    pub label: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

impl ApiKey {
    /// A key with these scopes (see the module doc for the grammar).
    pub fn new(label: &str, key: &str, scopes: &[String]) -> Result<ApiKey, String> {
        if key.len() < 16 {
            return Err(format!("key {label:?} is too short: at least 16 characters"));
        }
        if scopes.is_empty() {
            return Err(format!("key {label:?} has no scopes"));
        }
        Ok(ApiKey {
            label: label.to_string(),
            digest: Sha256::digest(key.as_bytes()).into(),
            scopes: scopes.iter().map(|s| Scope::parse(s)).collect::<Result<_, _>>()?,
        })
    }

    fn allows(&self, area: Area, name: &str, access: Access) -> bool {
        self.scopes.iter().any(|s| s.allows(area, name, access))
    }
}

/// The configured keys; empty means no authentication (loopback only).
#[derive(Debug, Default)]
pub struct Keys {
    keys: Vec<Arc<ApiKey>>,
}

impl Keys {
    pub fn new(keys: Vec<ApiKey>) -> Self {
        Keys {
            keys: keys.into_iter().map(Arc::new).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller presenting `key` (sent in a message rather than a header), if it is one.
    pub fn caller(&self, key: &str) -> Option<Caller> {
        self.identify(key.trim()).map(|k| Caller(Some(k)))
    }

    fn identify(&self, presented: &str) -> Option<Arc<ApiKey>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        // No early exit: every stored digest is compared.
        for k in &self.keys {
            if bool::from(k.digest.ct_eq(&digest)) {
                found = Some(k.clone());
            }
        }
        found
    }
}

/// Who is calling: a key, or anyone when no keys are configured.
pub struct Caller(Option<Arc<ApiKey>>);

/// Gives the extractor access to the keys.
pub trait HasKeys {
    fn keys(&self) -> &Keys;
}

impl<S: HasKeys + Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let keys = state.keys();
        if keys.is_empty() {
            return Ok(Caller(None));
        }
        let unauthorized = |msg: &str| {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
                .with_header("www-authenticate", "Bearer realm=\"redkit\"")
        };
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer API key"))?;
        let presented = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be \"Bearer <API key>\""))?;
        let key = keys
            .identify(presented.trim())
            .ok_or_else(|| unauthorized("unknown API key"))?;
        Ok(Caller(Some(key)))
    }
}

/// The caller when it presented a key (or when no keys are configured); `None` for an
/// anonymous call to a server with keys. A key presented but unknown is still a 401.
pub struct OptionalCaller(pub Option<Caller>);

impl<S: HasKeys + Send + Sync> FromRequestParts<S> for OptionalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if !state.keys().is_empty() && !parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Ok(OptionalCaller(None));
        }
        Caller::from_request_parts(parts, state)
            .await
            .map(|c| OptionalCaller(Some(c)))
    }
}

impl Caller {
    /// Anyone: for a server without keys.
    pub fn anyone() -> Self {
        Caller(None)
    }

    /// The bearer of a channel token: may read the channels `patterns` name (exact names,
    /// or prefixes ending in `*`), nothing else.
    pub fn channel_reader(patterns: &[String]) -> Self {
        let scopes = patterns
            .iter()
            .map(|p| Scope {
                area: Some(Area::Channels),
                name: p.strip_suffix('*').unwrap_or(p).to_string(),
                prefix: p.ends_with('*'),
                access: Access::Read,
            })
            .collect();
        Caller(Some(Arc::new(ApiKey {
            label: "channel token".to_string(),
            // Matches no presented key: this caller exists only for the request that
            // carried the token.
            digest: [0; 32],
            scopes,
        })))
    }

    /// The caller's scopes as `(area, name, prefix, access)` (`None`: every area); `None`
    /// for a server without keys (everything is allowed).
    pub fn scopes(&self) -> Option<Vec<ScopeParts>> {
        self.0.as_ref().map(|k| {
            k.scopes
                .iter()
                .map(|s| (s.area.map(Area::as_str), s.name.clone(), s.prefix, s.access.as_str()))
                .collect()
        })
    }

    /// The key's label, if the caller presented one.
    pub fn label(&self) -> Option<&str> {
        self.0.as_ref().map(|k| k.label.as_str())
    }

    /// Whether the caller may do `access` on `name` in `area`.
    pub fn may(&self, area: Area, name: &str, access: Access) -> bool {
        self.0.as_ref().is_none_or(|k| k.allows(area, name, access))
    }

    /// Refuses with 403 unless the caller may do `access` on `name` in `area`.
    pub fn require(&self, area: Area, name: &str, access: Access) -> Result<(), ApiError> {
        match &self.0 {
            None => Ok(()),
            Some(k) if k.allows(area, name, access) => Ok(()),
            Some(k) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key {:?} has no scope allowing {}:{name}:{}",
                    k.label,
                    area.as_str(),
                    access.as_str()
                ),
            )),
        }
    }
}

/// Whether `host` (a `Host` header: name or address, and maybe a port) names this machine's
/// loopback: `localhost`, an address in 127.0.0.0/8, or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    // (the name, unless an IPv6 literal that was checked already; ":port" or nothing)
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let Some((v6, port)) = rest.split_once(']') else {
                return false;
            };
            if !v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback()) {
                return false;
            }
            (None, port)
        }
        None => match host.find(':') {
            Some(i) => (Some(&host[..i]), &host[i..]),
            None => (Some(host), ""),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = name
        .is_none_or(|n| n.eq_ignore_ascii_case("localhost") || n.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback()));
    port_ok && name_ok
}

/// The keyless guard, applied by [`crate::front`] only when no keys are configured (see
/// the module doc): a request whose `Host` is not a loopback name is answered 421, and a
/// state-changing request (anything but GET, HEAD, OPTIONS) whose `Origin` is present and
/// not this server's own (`http://` or `https://` and the `Host` it was sent to) 403.
/// `None`: the request may go on.
pub fn keyless_refusal(req: &axum::extract::Request) -> Option<axum::response::Response> {
    use axum::http::header::{HOST, ORIGIN};
    use axum::response::IntoResponse;
    // Borrowed from the request (no copy per request) unless it comes from the URI.
    let host: Option<std::borrow::Cow<str>> = match req.headers().get(HOST) {
        Some(h) => Some(h.to_str().unwrap_or("(not text)").into()),
        None => req.uri().authority().map(|a| a.to_string().into()),
    };
    if let Some(host) = &host
        && !is_loopback_host(host)
    {
        let shown: String = host.chars().take(100).collect();
        return Some(
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                format!(
                    "Host {shown:?} is not served: without API keys this server answers only loopback host names \
                 (localhost, 127.0.0.1, [::1]), so that a web page cannot reach it through a name it controls; \
                 configure API keys to serve other names"
                ),
            )
            .into_response(),
        );
    }
    // A WebSocket upgrade is a GET, but no browser rule keeps a page of another origin
    // from reading what it answers: checked like a state change.
    let upgrade = req.headers().contains_key(axum::http::header::UPGRADE);
    if (!req.method().is_safe() || upgrade)
        && let Some(origin) = req.headers().get(ORIGIN)
    {
        let own = |scheme: &str| {
            host.as_deref().is_some_and(|h| {
                origin
                    .as_bytes()
                    .eq_ignore_ascii_case(format!("{scheme}://{h}").as_bytes())
            })
        };
        if !own("http") && !own("https") {
            let shown: String = String::from_utf8_lossy(origin.as_bytes()).chars().take(100).collect();
            return Some(
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "{} from origin {shown:?} refused: without API keys this server takes state changes only \
                     from its own origin or from clients that send no Origin (not a browser page)",
                        req.method()
                    ),
                )
                .into_response(),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[&str]) -> ApiKey {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        ApiKey::new("k", "0123456789abcdef", &scopes).unwrap()
    }

    #[test]
    fn scope_names_may_end_in_any_character() {
        // Sliced by bytes this panicked at start.
        let k = key(&["cache:café", "cache:naïve*:read"]);
        assert!(k.allows(Area::Cache, "café", Access::Admin));
        assert!(k.allows(Area::Cache, "naïve-1", Access::Read));
        assert!(ApiKey::new("k", "0123456789abcdef", &["cache:a*b*".to_string()]).is_err());
    }

    #[test]
    fn scopes_match_area_name_and_access_level() {
        let k = key(&["cache:users:read", "queues:mail-*:write", "ratelimit"]);
        assert!(k.allows(Area::Cache, "users", Access::Read));
        assert!(!k.allows(Area::Cache, "users", Access::Write));
        assert!(!k.allows(Area::Cache, "users2", Access::Read));
        assert!(k.allows(Area::Queues, "mail-eu", Access::Write));
        assert!(!k.allows(Area::Queues, "mail-eu", Access::Admin));
        assert!(!k.allows(Area::Queues, "sms", Access::Read));
        assert!(k.allows(Area::Ratelimit, "anything", Access::Admin));
        assert!(!k.allows(Area::Locks, "x", Access::Read));
        assert!(key(&["*"]).allows(Area::Sessions, "*", Access::Admin));
    }

    #[test]
    fn bad_scopes_and_keys_are_refused_with_the_reason() {
        for (scope, part) in [
            ("files", "area"),
            ("cache:x:own", "access"),
            ("cache:a*b", "single *"),
            ("cache:x:read:more", "AREA[:NAME[:ACCESS]]"),
        ] {
            let e = ApiKey::new("k", "0123456789abcdef", &[scope.to_string()]).unwrap_err();
            assert!(e.contains(part), "{scope}: {e}");
        }
        assert!(ApiKey::new("k", "short", &["*".into()]).unwrap_err().contains("16"));
    }

    #[test]
    fn loopback_host_names() {
        for host in [
            "localhost",
            "LOCALHOST:7070",
            "127.0.0.1",
            "127.9.9.9:1",
            "[::1]",
            "[::1]:7070",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "attacker.example",
            "localhost.attacker.example",
            "localhost:",
            "localhost:x",
            "localhost:7070:1",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]",
            "[::1",
            "[::1]x",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn keys_are_identified_by_digest() {
        let keys = Keys::new(vec![key(&["*"])]);
        assert!(keys.identify("0123456789abcdef").is_some());
        assert!(keys.identify("0123456789abcdeF").is_none());
        assert!(keys.identify("").is_none());
    }
}
