//! A tower [`Layer`] that rate-limits requests to any service (axum, hyper, tonic).
//!
//! Every response carries the IETF fields (draft-ietf-httpapi-ratelimit-headers):
//! `RateLimit-Policy: "api";q=100;w=60` and `RateLimit: "api";r=42;t=17`; a refused request
//! gets `429 Too Many Requests`, `Retry-After` (seconds, rounded up) and a JSON body.
//! Legacy `X-RateLimit-Limit/-Remaining/-Reset` are added on request. The key comes from
//! a [`KeyBy`]; a request with no key, or one the bypass predicate accepts, is not limited.
//! An empty key, or one longer than 256 bytes, is limited under its SHA-256 (so a client
//! cannot escape limits with a strange header value). If the store is unavailable the
//! request is let through (fail open) and that is logged; any other limiter error (an
//! unknown policy: a misconfiguration) answers 500 rather than disabling the limit.
//!
//! ```no_run
//! # fn demo(redkit: redkit::Redkit) {
//! use redkit::ratelimit::layer::{KeyBy, RateLimitLayer, TrustedProxies};
//! let layer = RateLimitLayer::new(redkit.rate_limiter(), "api")
//!     .key_by(KeyBy::ClientIp(TrustedProxies::parse(&["10.0.0.0/8"]).unwrap()))
//!     .legacy_headers(true)
//!     .bypass(|req| req.headers.contains_key("x-admin-token"));
//! // axum::Router::new().route(...).layer(layer)
//! # }
//! ```

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service};

use super::{Decision, RateLimiter};

/// The peer address of a connection, as an extension the server inserts (axum:
/// `ConnectInfo<SocketAddr>` mapped into `PeerAddr`, or any middleware of yours).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The authenticated user of a request, as an extension your auth middleware inserts.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

/// Proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges (`10.0.0.0/8`, `::1`).
    pub fn parse(ranges: &[&str]) -> crate::Result<Self> {
        let bad =
            |r: &str| crate::Error::invalid("trusted_proxies", format!("{r:?} is not an IP address or CIDR range"));
        let mut out = Vec::new();
        for r in ranges {
            let (ip, bits) = match r.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (*r, None),
            };
            let ip: IpAddr = ip.parse().map_err(|_| bad(r))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(|| bad(r))?,
                None => max,
            };
            out.push((ip, bits));
        }
        Ok(TrustedProxies(out))
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(net, bits)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (full, rest) = ((bits / 8) as usize, bits % 8);
    a[..full] == b[..full] && (rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0)
}

/// What a key extractor sees of a request.
pub struct RequestInfo<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions ([`PeerAddr`], [`AuthenticatedUser`], yours).
    pub extensions: &'a http::Extensions,
    /// The request path.
    pub path: &'a str,
}

type Extract = Arc<dyn Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync>;
type Predicate = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;

/// Where the limited key comes from.
#[derive(Clone)]
pub enum KeyBy {
    /// The client's IP: the [`PeerAddr`], or — when the peer is a trusted proxy — the
    /// right-most address in `X-Forwarded-For` that is not a trusted proxy.
    ClientIp(TrustedProxies),
    /// A header's value (e.g. an API key).
    Header(HeaderName),
    /// The [`AuthenticatedUser`] extension.
    User,
    /// Your function.
    Custom(Extract),
}

impl KeyBy {
    fn key(&self, req: &RequestInfo<'_>) -> Option<String> {
        match self {
            KeyBy::ClientIp(trusted) => client_ip(req, trusted).map(|ip| ip.to_string()),
            KeyBy::Header(name) => req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string),
            KeyBy::User => req.extensions.get::<AuthenticatedUser>().map(|u| u.0.clone()),
            KeyBy::Custom(f) => f(req),
        }
    }
}

fn client_ip(req: &RequestInfo<'_>, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = req.extensions.get::<PeerAddr>()?.0.ip();
    if !trusted.contains(peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !trusted.contains(*ip))
            .unwrap_or(peer),
    )
}

/// Rate-limits the wrapped service with one policy.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
    policy: Arc<str>,
    key_by: KeyBy,
    legacy: bool,
    bypass: Option<Predicate>,
}

impl RateLimitLayer {
    /// Limits by client IP (no trusted proxies) under `policy`.
    pub fn new(limiter: RateLimiter, policy: &str) -> Self {
        RateLimitLayer {
            limiter,
            policy: Arc::from(policy),
            key_by: KeyBy::ClientIp(TrustedProxies::default()),
            legacy: false,
            bypass: None,
        }
    }

    /// Where the key comes from.
    pub fn key_by(mut self, key_by: KeyBy) -> Self {
        self.key_by = key_by;
        self
    }

    /// Also send `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.legacy = on;
        self
    }

    /// Requests for which `f` is true are not limited (e.g. admin users).
    pub fn bypass(mut self, f: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.bypass = Some(Arc::new(f));
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] produces.
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    config: RateLimitLayer,
}

/// Sets the rate-limit fields of `decision` on `headers`.
pub fn set_headers(headers: &mut HeaderMap, d: &Decision, legacy: bool) {
    let reset_s = d.reset_after.as_secs_f64().ceil() as u64;
    let mut put = |name: &'static str, value: String| {
        // Takes the string's buffer as it is (`from_str` would copy it).
        if let Ok(v) = HeaderValue::try_from(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put(
        "ratelimit-policy",
        format!("\"{}\";q={};w={}", d.policy, d.limit, d.window_s),
    );
    put("ratelimit", format!("\"{}\";r={};t={}", d.policy, d.remaining, reset_s));
    if let Some(retry) = d.retry_after.filter(|_| !d.allowed) {
        put("retry-after", (retry.as_secs_f64().ceil() as u64).max(1).to_string());
    }
    if legacy {
        put("x-ratelimit-limit", d.limit.to_string());
        put("x-ratelimit-remaining", d.remaining.to_string());
        put("x-ratelimit-reset", reset_s.to_string());
    }
}

impl<S, B, R> Service<Request<B>> for RateLimitService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: From<String> + Send,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready clone serves this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let info = RequestInfo {
            headers: req.headers(),
            extensions: req.extensions(),
            path: req.uri().path(),
        };
        let bypass = config.bypass.as_ref().is_some_and(|f| f(&info));
        let key = if bypass { None } else { config.key_by.key(&info) };
        Box::pin(async move {
            let Some(key) = key else {
                return inner.call(req).await;
            };
            let decision = match config.limiter.check(&config.policy, &normalized(key), 1).await {
                Ok(d) => d,
                Err(e) if e.kind() == crate::ErrorKind::Unavailable => {
                    tracing::warn!(policy = %config.policy, error = %e, "rate limiter unavailable; letting the request through");
                    return inner.call(req).await;
                }
                Err(e) => {
                    tracing::error!(policy = %config.policy, error = %e, "rate limiter misconfigured; refusing the request");
                    return Ok(json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "rate limiter misconfigured".to_string(),
                    ));
                }
            };
            if !decision.allowed {
                let message = format!(
                    "rate limit {} exceeded; retry after {} s",
                    decision.policy,
                    decision.retry_after.map_or(0, |r| r.as_secs_f64().ceil() as u64)
                );
                let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, "limit_exceeded", message);
                set_headers(response.headers_mut(), &decision, config.legacy);
                return Ok(response);
            }
            let mut response = inner.call(req).await?;
            set_headers(response.headers_mut(), &decision, config.legacy);
            Ok(response)
        })
    }
}

/// Longest key used as is; longer (and empty) keys are limited under their hash.
const MAX_PLAIN_KEY: usize = 256;

/// The key the limiter sees: as is, or `#` and its SHA-256 when empty or long.
fn normalized(key: String) -> String {
    use sha2::{Digest, Sha256};
    if !key.is_empty() && key.len() <= MAX_PLAIN_KEY {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(65);
    out.push('#');
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// An error response in the JSON envelope every redkit error uses.
fn json_response<R: From<String>>(status: StatusCode, code: &str, message: String) -> Response<R> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut response = Response::new(R::from(body.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_long_keys_are_limited_under_their_hash() {
        assert_eq!(normalized("user:42".into()), "user:42");
        let empty = normalized(String::new());
        assert!(empty.starts_with('#') && empty.len() == 65);
        let long = normalized("x".repeat(10_000));
        assert_eq!(
            long,
            normalized("x".repeat(10_000)),
            "the same long key, the same counter"
        );
        assert_ne!(long, normalized("x".repeat(9_999)));
        assert!(long.len() <= MAX_PLAIN_KEY);
    }

    #[test]
    fn trusted_proxy_ranges() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]).unwrap();
        assert!(t.contains("10.200.3.4".parse().unwrap()));
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(t.contains("192.168.1.7".parse().unwrap()));
        assert!(!t.contains("192.168.1.8".parse().unwrap()));
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["nope"]).is_err());
    }
}
