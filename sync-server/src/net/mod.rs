//! The relay's connection handling, below the HTTP API: the accept loop,
//! HTTP/1.1 over plain TCP or TLS, and the defences against slow and
//! abusive clients.
//!
//! - [`registry`]: the overall and per-address connection caps, the
//!   health reserve, eviction of idle or slow connections.
//! - [`body`]: the request-body deadline.
//! - [`tls`]: HTTPS with rustls (ring provider).
//! - [`fdlimit`]: raising RLIMIT_NOFILE and fitting the caps under it.
//! - [`check_listen`]: plain HTTP only on loopback unless the operator
//!   insists.
//!
//! Every connection must send its request headers within the header-read
//! timeout (also the TLS handshake and keep-alive idle bound) and each
//! body within the body timeout. Accepting never stops: a connection over
//! a cap either evicts an idle or slow one, takes a health-only reserve
//! slot, or is closed at once. SIGTERM stops accepting, lets in-flight
//! requests finish, closes idle connections and tells WebSockets to close.

pub mod body;
pub mod fdlimit;
pub mod registry;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::api::AppState;
use crate::config::ConnectionLimits;
use registry::{Admission, Caps, Registry, Ticket};

/// Header-read timeout of a health-only reserve connection.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections the kernel queues before the relay accepts them (capped by
/// the OS, e.g. `net.core.somaxconn`): a burst of connections must not
/// overflow the queue, or every client waits for a SYN retransmission (1 s
/// or more), health checks included.
const LISTEN_BACKLOG: u32 = 4096;
/// Pause after an accept error (e.g. out of descriptors) before retrying.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Plain HTTP was asked for on an address other than loopback.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to serve plain HTTP on {0}: bearer tokens, access logs and metadata would cross the network in the clear. \
     Give --tls-cert and --tls-key (see docs/operations.md), or listen on 127.0.0.1 behind a TLS reverse proxy, \
     or pass --insecure-plain-http if something else already encrypts this network"
)]
pub struct PlainHttpRefused(pub SocketAddr);

/// Plain HTTP is served on loopback only, unless TLS is configured or the
/// operator passed `--insecure-plain-http`.
pub fn check_listen(
    addr: SocketAddr,
    tls: bool,
    insecure_plain_http: bool,
) -> Result<(), PlainHttpRefused> {
    if tls || insecure_plain_http || addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(PlainHttpRefused(addr))
    }
}

/// Listen on `addr` with a deep accept queue ([`LISTEN_BACKLOG`]).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The caps actually used: `limits`, lowered to fit the descriptor limit
/// (raised first if `limits.raise_fd_limit`).
pub fn effective_caps(limits: &ConnectionLimits) -> Caps {
    let nofile = if limits.raise_fd_limit {
        fdlimit::raise()
    } else {
        fdlimit::current()
    };
    let total = fdlimit::fit(limits.max_connections, limits.health_reserve, nofile);
    let caps = Caps {
        total,
        per_ip: limits.max_connections_per_ip.clamp(1, total),
        health_reserve: limits.health_reserve,
    };
    tracing::info!(
        max_connections = caps.total,
        max_connections_per_ip = caps.per_ip,
        health_reserve = caps.health_reserve,
        fd_limit = nofile.unwrap_or(0),
        header_read_timeout_ms =
            u64::try_from(limits.header_read_timeout.as_millis()).unwrap_or(u64::MAX),
        body_timeout_ms = u64::try_from(limits.body_timeout.as_millis()).unwrap_or(u64::MAX),
        "connection limits"
    );
    caps
}

/// What every connection task shares.
struct Shared {
    app: Router,
    state: AppState,
    registry: Arc<Registry>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
}

/// Serve `app` on `listener` until `shutdown` resolves, then stop
/// accepting, let in-flight requests finish and return when every
/// connection has closed.
pub async fn serve<F>(
    listener: TcpListener,
    app: Router,
    state: AppState,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let shared = Arc::new(Shared {
        app,
        state,
        registry: Registry::new(effective_caps(&limits)),
        limits,
        tls,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = Arc::clone(&shared);
                    let stop = stop_rx.clone();
                    let alive = alive_tx.clone();
                    tokio::spawn(async move {
                        connection(stream, peer, shared, stop).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    // Per-connection errors (reset before accept) are the
                    // client's; anything else (out of descriptors) gets a
                    // pause so the loop does not spin.
                    if !is_connection_error(&e) {
                        tracing::warn!(error = %e, "accept error");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One client connection, from admission to close.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) {
    let metrics = &shared.state.metrics;
    let ticket = match shared.registry.admit(peer.ip()) {
        Admission::Admitted { ticket, evicted } => {
            for _ in 0..evicted {
                metrics.connection_evicted();
            }
            ticket
        }
        Admission::HealthOnly(ticket) => ticket,
        Admission::Refused => {
            metrics.connection_shed();
            return;
        }
    };
    metrics.connections(1);
    let _ = stream.set_nodelay(true);
    let header_timeout = header_timeout(&shared.limits, &ticket);
    match &shared.tls {
        None => serve_io(stream, peer, &shared, ticket, stop).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(header_timeout, acceptor.accept(stream));
            let tls = tokio::select! {
                done = handshake => done.ok().and_then(Result::ok),
                () = ticket.evicted() => None,
            };
            if let Some(tls) = tls {
                serve_io(tls, peer, &shared, ticket, stop).await;
            }
        }
    }
    metrics.connections(-1);
}

fn header_timeout(limits: &ConnectionLimits, ticket: &Ticket) -> Duration {
    if ticket.health_only() {
        limits.header_read_timeout.min(RESERVE_HEADER_TIMEOUT)
    } else {
        limits.header_read_timeout
    }
}

/// HTTP/1.1 (with upgrades, for WebSockets) over `io` until the client or
/// a timeout closes it, the registry evicts it, or the relay stops.
async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    ticket: Ticket,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let shared = Arc::clone(shared);
        let ticket = ticket.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            let ticket = ticket.clone();
            async move { Ok::<_, Infallible>(handle(req, peer, &shared, ticket).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout(&shared.limits, &ticket))
        .keep_alive(!ticket.health_only());
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut stopping = false;
    if *stop.borrow_and_update() {
        stopping = true;
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed with an error");
                }
                break;
            }
            () = ticket.evicted() => {
                tracing::debug!("idle or slow connection evicted for a new one");
                break;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// One request: health-only connections get `/v1/health` and nothing
/// else; every other request reaches the API with its body under the
/// deadline, the client's address, and the connection's ticket (held by a
/// WebSocket for as long as it is open).
async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    shared: &Shared,
    ticket: Ticket,
) -> Response<axum::body::Body> {
    use satchel_protocol::wire::{Endpoint, Health, Ready};
    let probe = req.uri().path() == Health::PATH || req.uri().path() == Ready::PATH;
    if ticket.health_only() && !(req.method() == Method::GET && probe) {
        return busy();
    }
    let _handling = ticket.request();
    let (mut parts, body) = req.into_parts();
    let state = shared.state.clone();
    let body = body::DeadlineBody::new(
        body,
        shared.limits.body_timeout,
        ticket.receiving(),
        move || state.metrics.body_timeout(),
    );
    parts.extensions.insert(ConnectInfo(peer));
    parts.extensions.insert(ticket.clone());
    let req = Request::from_parts(parts, axum::body::Body::new(body));
    let response = match shared.app.clone().oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        ticket.upgraded();
    }
    response
}

/// 503 for anything but a health check on a reserve connection.
fn busy() -> Response<axum::body::Body> {
    let body = serde_json::json!({
        "error": "unavailable",
        "message": "the relay is at its connection limit; retry shortly",
        "retry_after_ms": 1000
    })
    .to_string();
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_unless_insisted() {
        let lo: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8787".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8787".parse().unwrap();
        let lan: SocketAddr = "192.0.2.1:8787".parse().unwrap();
        assert!(check_listen(lo, false, false).is_ok());
        assert!(check_listen(lo6, false, false).is_ok());
        assert!(check_listen(any, false, false).is_err());
        assert!(check_listen(lan, false, false).is_err());
        assert!(check_listen(lan, true, false).is_ok());
        assert!(check_listen(any, false, true).is_ok());
        let msg = check_listen(any, false, false).unwrap_err().to_string();
        assert!(msg.contains("--tls-cert") && msg.contains("--insecure-plain-http"));
    }
}
