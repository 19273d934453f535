//! A tower [`Layer`] that carries the session id in a signed cookie.
//!
//! The cookie value is `ID.SIGNATURE` (HMAC-SHA256 of the id under your key, URL-safe
//! base64), checked in constant time; a cookie that fails the check is ignored. The cookie
//! is `HttpOnly`, `Secure` (on by default), `SameSite=Lax` (configurable), `Path=/`, and
//! lives as long as the session's absolute timeout. Handlers get a [`SessionHandle`]
//! extension to read, create, update, rotate or destroy the session; the layer writes the
//! cookie change onto the response.
//!
//! ```no_run
//! # fn demo(sessions: redkit::session::Sessions) -> redkit::Result<()> {
//! use redkit::session::layer::{SessionHandle, SessionLayer};
//! let layer = SessionLayer::new(sessions, b"32+ bytes of secret key material!!".to_vec())?;
//! // axum::Router::new().route("/me", get(|axum::Extension(s): axum::Extension<SessionHandle>| async move { … })).layer(layer)
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, Response};
use serde_json::{Map, Value};
use sha2::Sha256;
use tokio::sync::Mutex;
use tower::{Layer, Service};

use super::{Session, Sessions};
use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `Strict`
    Strict,
    /// `Lax` (the default)
    Lax,
    /// `None` (requires `Secure`)
    None,
}

/// Puts sessions behind a signed cookie.
#[derive(Clone)]
pub struct SessionLayer {
    sessions: Sessions,
    key: Arc<[u8]>,
    name: Arc<str>,
    secure: bool,
    same_site: SameSite,
}

impl SessionLayer {
    /// `key` signs the cookie; at least 32 bytes of secret.
    pub fn new(sessions: Sessions, key: Vec<u8>) -> Result<Self> {
        if key.len() < 32 {
            return Err(Error::invalid("key", "the cookie signing key needs at least 32 bytes"));
        }
        Ok(SessionLayer {
            sessions,
            key: key.into(),
            name: Arc::from("rk_session"),
            secure: true,
            same_site: SameSite::Lax,
        })
    }

    /// The cookie's name (`rk_session` by default).
    pub fn cookie_name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Whether the cookie is `Secure` (default true; turn off only for plain-HTTP development).
    pub fn secure(mut self, on: bool) -> Self {
        self.secure = on;
        self
    }

    /// The `SameSite` attribute (default `Lax`).
    pub fn same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    fn sign(&self, id: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{id}.{sig}")
    }

    fn verify(&self, value: &str) -> Option<String> {
        let (id, sig) = value.rsplit_once('.')?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(id.as_bytes());
        mac.verify_slice(&sig).ok()?;
        Some(id.to_string())
    }

    fn cookie(&self, value: &str, max_age_s: u64) -> String {
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly{secure}; SameSite={same_site}; Max-Age={max_age_s}",
            self.name
        )
    }
}

#[derive(Default)]
struct HandleState {
    id: Option<String>,
    loaded: Option<Option<Session>>,
    /// The cookie to write: `Some(Some(id))` sets it, `Some(None)` clears it.
    cookie: Option<Option<String>>,
}

/// The request's session, for handlers (an extension the layer inserts).
#[derive(Clone)]
pub struct SessionHandle {
    sessions: Sessions,
    state: Arc<Mutex<HandleState>>,
}

impl SessionHandle {
    /// The current session, if the request carried a valid cookie for a live one.
    pub async fn get(&self) -> Result<Option<Session>> {
        let mut st = self.state.lock().await;
        if st.loaded.is_none() {
            let found = match &st.id {
                Some(id) => self.sessions.get(id).await?,
                None => None,
            };
            st.loaded = Some(found);
        }
        Ok(st.loaded.clone().flatten())
    }

    /// Starts a new session (replacing any current one) and sets the cookie.
    pub async fn create(&self, data: Map<String, Value>, user: Option<&str>) -> Result<Session> {
        let session = self.sessions.create(data, user).await?;
        let mut st = self.state.lock().await;
        if let Some(old) = st.id.take() {
            let _ = self.sessions.delete(&old).await;
        }
        st.id = Some(session.id.clone());
        st.loaded = Some(Some(session.clone()));
        st.cookie = Some(Some(session.id.clone()));
        Ok(session)
    }

    /// Merges fields into the current session.
    pub async fn update(&self, fields: Map<String, Value>) -> Result<Session> {
        let mut st = self.state.lock().await;
        let id = st
            .id
            .clone()
            .ok_or_else(|| Error::NotFound("no session on this request".into()))?;
        let session = self.sessions.update(&id, fields).await?;
        st.loaded = Some(Some(session.clone()));
        Ok(session)
    }

    /// Gives the current session a new id (after login or a privilege change).
    pub async fn rotate(&self) -> Result<Session> {
        let mut st = self.state.lock().await;
        let id = st
            .id
            .clone()
            .ok_or_else(|| Error::NotFound("no session on this request".into()))?;
        let session = self.sessions.rotate(&id).await?;
        st.id = Some(session.id.clone());
        st.loaded = Some(Some(session.clone()));
        st.cookie = Some(Some(session.id.clone()));
        Ok(session)
    }

    /// Ends the current session and clears the cookie.
    pub async fn destroy(&self) -> Result<()> {
        let mut st = self.state.lock().await;
        if let Some(id) = st.id.take() {
            self.sessions.delete(&id).await?;
        }
        st.loaded = Some(None);
        st.cookie = Some(None);
        Ok(())
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] produces.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: SessionLayer,
}

fn cookie_value(req_cookies: &http::HeaderMap, name: &str) -> Option<String> {
    req_cookies
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl<S, B, R> Service<Request<B>> for SessionService<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Send,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = std::result::Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        let id = cookie_value(req.headers(), &config.name).and_then(|v| config.verify(&v));
        let state = Arc::new(Mutex::new(HandleState {
            id,
            ..HandleState::default()
        }));
        req.extensions_mut().insert(SessionHandle {
            sessions: config.sessions.clone(),
            state: state.clone(),
        });
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            let change = state.lock().await.cookie.clone();
            let header = match change {
                Some(Some(id)) => {
                    Some(config.cookie(&config.sign(&id), config.sessions.options().absolute_ttl.as_secs()))
                }
                Some(None) => Some(config.cookie("", 0)),
                None => None,
            };
            if let Some(h) = header.and_then(|h| HeaderValue::from_str(&h).ok()) {
                response.headers_mut().append(http::header::SET_COOKIE, h);
            }
            Ok(response)
        })
    }
}
