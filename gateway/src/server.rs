//! Running the gateway: the records, the upload worker, the token issuer
//! and the routes, served over TLS (rustls, the relay's own certificate
//! loading) or plain HTTP on loopback only (the relay's own rule).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use satchel_core::sync::{RelayTrust, RelayUrl};
use satchel_sync_server::config::TlsFiles;
use satchel_sync_server::net;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

use crate::auth::{self, ClientRegistry, TokenIssuer};
use crate::http::{self, AppState};
use crate::records::RecordPool;
use crate::service::Service;
use crate::upload::Uploader;

/// How the gateway runs.
pub struct GatewayConfig {
    /// The provider home (its identity and the records shared with it).
    pub home: PathBuf,
    pub passphrase: Zeroizing<String>,
    pub relay: RelayUrl,
    pub trust: RelayTrust,
    pub listen: SocketAddr,
    /// The base URL clients use (default: from `listen`).
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    /// Registered backend clients (`satchel provider clients`).
    pub clients_file: PathBuf,
    /// Records kept open at once.
    pub max_open_records: usize,
    /// How often every record is synced even with nothing written.
    pub refresh: Duration,
    /// How long access tokens live (SMART: short; default five minutes).
    pub token_lifetime: Duration,
}

/// Where the registered clients of a provider home are kept.
pub fn clients_file(home: &std::path::Path) -> PathBuf {
    home.join("gateway-clients.json")
}

/// The gateway, ready to serve.
pub struct Gateway {
    pub listener: TcpListener,
    pub router: Router,
    pub uploads: Arc<Uploader>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub base: String,
}

impl Gateway {
    /// Open the records, load the clients, bind the listener.
    pub fn start(config: GatewayConfig) -> anyhow::Result<Self> {
        net::check_listen(config.listen, config.tls.is_some(), false)?;
        let tls = config.tls.as_ref().map(net::tls::acceptor).transpose()?;
        let listener = net::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .to_owned();
        let pool = Arc::new(RecordPool::open(
            config.home.clone(),
            config.passphrase,
            config.max_open_records,
        )?);
        let registry = ClientRegistry::load(&config.clients_file)?;
        let issuer = Arc::new(
            TokenIssuer::new(registry, format!("{base}/auth/token")).with_token_lifetime_ms(
                i64::try_from(config.token_lifetime.as_millis()).unwrap_or(i64::MAX),
            ),
        );
        let uploads = Arc::new(Uploader::new(
            config.relay,
            config.trust,
            pool.clone(),
            config.refresh,
        ));
        let service = Arc::new(Service {
            pool,
            uploads: uploads.clone(),
        });
        let router = http::router(AppState {
            service,
            auth: issuer.clone(),
            base: base.clone(),
        })
        .merge(auth::routes(issuer));
        Ok(Self {
            listener,
            router,
            uploads,
            tls,
            base,
        })
    }

    /// Serve until `shutdown` resolves (the upload worker runs alongside).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let worker = tokio::spawn(self.uploads.clone().run());
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let router = self.router.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => connection(s, router, peer).await,
                            _ => tracing::debug!("TLS handshake failed or timed out"),
                        }
                    }
                    None => connection(stream, router, peer).await,
                }
            });
        }
        worker.abort();
        Ok(())
    }
}

async fn connection<IO>(io: IO, router: Router, peer: SocketAddr)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let req = req.map(axum::body::Body::new);
            Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {}))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    if let Err(e) = builder.serve_connection(TokioIo::new(io), service).await {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}
