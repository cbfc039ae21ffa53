//! The relay's client of one upstream relay: typed requests
//! ([`Endpoint`]s of the protocol's wire module) over HTTP/1.1, on TCP for
//! loopback addresses and on TLS (rustls, ring) for `https://` ones,
//! checked against a pinned CA or the webpki roots; the address rule is
//! the protocol's [`RelayUrl`] (plain HTTP to loopback only). Login is the
//! protocol's one rule ([`TokenRequest::sign`]) with the relay's identity.
//! Errors name the route and status, never a body's content.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use satchel_protocol::crypto::Identity;
use satchel_protocol::relay_url::RelayUrl;
use satchel_protocol::wire::{self, ChallengeRequest, Endpoint, ErrorBody, TokenRequest};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a rate-limited request is sent before giving up.
pub const RATE_LIMITED_ATTEMPTS: u32 = 30;
/// The largest response body read from an upstream.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why a request to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer: refused, reset, timed out, TLS failed.
    #[error("upstream {upstream} unreachable: {reason}")]
    Unreachable { upstream: String, reason: String },
    /// An HTTP error status with the upstream's error code.
    #[error("upstream {upstream} answered {route} with {status} ({code})")]
    Refused {
        upstream: String,
        route: &'static str,
        status: u16,
        code: String,
        message: String,
        /// When to ask again (a `429`), as the upstream said.
        retry_after_ms: Option<u64>,
    },
    /// A success whose body is not the endpoint's response type.
    #[error("upstream {upstream} answered {route} with a body that does not parse")]
    BadResponse {
        upstream: String,
        route: &'static str,
    },
    /// The request could not be encoded.
    #[error("a request to {route} could not be encoded")]
    Encode { route: &'static str },
    /// The TLS configuration could not be built.
    #[error("TLS to upstream relays could not be set up: {0}")]
    Tls(String),
}

impl UpstreamError {
    /// The HTTP status, for a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which certificates an upstream's must chain to.
#[derive(Clone, Debug)]
pub enum UpstreamTrust {
    /// Mozilla's roots (webpki-roots).
    WebPki,
    /// Only these (a CA's PEM, `--upstream-ca`).
    Pinned(Vec<CertificateDer<'static>>),
}

impl UpstreamTrust {
    /// Every certificate of a PEM file (at least one).
    pub fn pinned_pem(pem: &[u8]) -> Result<Self, UpstreamError> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| UpstreamError::Tls(format!("the upstream CA file: {e}")))?;
        if certs.is_empty() {
            return Err(UpstreamError::Tls(
                "the upstream CA file holds no PEM certificate".into(),
            ));
        }
        Ok(UpstreamTrust::Pinned(certs))
    }

    fn connector(&self) -> Result<TlsConnector, UpstreamError> {
        let mut roots = RootCertStore::empty();
        match self {
            UpstreamTrust::WebPki => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            UpstreamTrust::Pinned(certs) => {
                for c in certs {
                    roots
                        .add(c.clone())
                        .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                }
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// A client of one upstream relay. Keeps one HTTP/1.1 connection open and
/// makes a new one when it breaks; holds the bearer token once signed in.
pub struct Upstream {
    url: RelayUrl,
    tls: Option<TlsConnector>,
    conn: Option<SendRequest<Full<Bytes>>>,
    token: Option<String>,
}

impl Upstream {
    /// A client of `url` (not connected yet).
    pub fn new(url: RelayUrl, trust: &UpstreamTrust) -> Result<Self, UpstreamError> {
        let tls = if url.is_tls() {
            Some(trust.connector()?)
        } else {
            None
        };
        Ok(Upstream {
            url,
            tls,
            conn: None,
            token: None,
        })
    }

    /// The upstream's address.
    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Unreachable {
            upstream: self.url.to_string(),
            reason: reason.to_string(),
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamError> {
        let host = self
            .url
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tcp = TcpStream::connect((host, self.url.port()))
            .await
            .map_err(|e| self.unreachable(e.kind()))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|_| self.unreachable("not a valid TLS server name"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| self.unreachable(format!("TLS: {e}")))?;
                self.handshake(stream).await
            }
            None => self.handshake(tcp).await,
        }
    }

    async fn handshake<T>(&self, io: T) -> Result<SendRequest<Full<Bytes>>, UpstreamError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection closed");
            }
        });
        Ok(send)
    }

    /// Send one request of endpoint `E` and parse its response. A `429`
    /// (the upstream's rate limit) is waited out as the upstream asks
    /// (`retry_after_ms`, at most 10 s a time) and the request sent again,
    /// up to [`RATE_LIMITED_ATTEMPTS`] times.
    pub async fn request<E: Endpoint>(
        &mut self,
        path: &E::Path<'_>,
        query: &E::Query,
        body: Option<&E::Request>,
    ) -> Result<E::Response, UpstreamError> {
        let body = self.request_raw::<E>(path, query, body).await?;
        let text: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(text).map_err(|_| UpstreamError::BadResponse {
            upstream: self.url.to_string(),
            route: E::PATH,
        })
    }

    /// [`Upstream::request`] for an endpoint whose success body is not
    /// JSON (`POST /v1/replica/pull`): the body as it came.
    pub async fn request_raw<E: Endpoint>(
        &mut self,
        path: &E::Path<'_>,
        query: &E::Query,
        body: Option<&E::Request>,
    ) -> Result<Bytes, UpstreamError> {
        let mut attempt = 1;
        loop {
            let result =
                tokio::time::timeout(REQUEST_TIMEOUT, self.request_inner::<E>(path, query, body))
                    .await
                    .map_err(|_| self.unreachable("timed out"))?;
            match result {
                Err(UpstreamError::Refused {
                    status: 429,
                    retry_after_ms,
                    ..
                }) if attempt < RATE_LIMITED_ATTEMPTS => {
                    let wait = retry_after_ms.unwrap_or(1_000).clamp(10, 10_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn request_inner<E: Endpoint>(
        &mut self,
        path: &E::Path<'_>,
        query: &E::Query,
        body: Option<&E::Request>,
    ) -> Result<Bytes, UpstreamError> {
        let route = E::PATH;
        let uri = format!("{}{}", self.url.path_prefix(), E::uri(path, query));
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|_| UpstreamError::Encode { route })?,
            None => Vec::new(),
        };
        let mut builder = hyper::Request::builder()
            .method(E::METHOD.as_str())
            .uri(uri)
            .header(hyper::header::HOST, self.host_header())
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = builder
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|_| UpstreamError::Encode { route })?;
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        conn.ready().await.map_err(|e| self.unreachable(e))?;
        let response = conn
            .send_request(request)
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| self.unreachable(e))?
            .to_bytes();
        self.conn = Some(conn);
        if !(200..300).contains(&status) {
            let error: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            return Err(UpstreamError::Refused {
                upstream: self.url.to_string(),
                route,
                status,
                code: error.as_ref().map(|e| e.error.clone()).unwrap_or_default(),
                retry_after_ms: error.as_ref().and_then(|e| e.retry_after_ms),
                message: error.map(|e| e.message).unwrap_or_default(),
            });
        }
        Ok(body)
    }

    fn host_header(&self) -> String {
        let default = if self.url.is_tls() { 443 } else { 80 };
        if self.url.port() == default {
            self.url.host().to_owned()
        } else {
            format!("{}:{}", self.url.host(), self.url.port())
        }
    }

    /// Sign in as `identity` (the protocol's login: challenge, signature,
    /// token); later requests carry the token.
    pub async fn login(&mut self, identity: &Identity) -> Result<(), UpstreamError> {
        self.token = None;
        let challenge = self
            .request::<wire::Challenge>(
                &(),
                &(),
                Some(&ChallengeRequest {
                    identity: identity.id(),
                }),
            )
            .await?;
        let signed = TokenRequest::sign(identity, &challenge.challenge);
        let token = self.request::<wire::Token>(&(), &(), Some(&signed)).await?;
        self.token = Some(token.token);
        Ok(())
    }
}
