//! # satchel-sync-server: the Satchel relay
//!
//! A blind sync relay for Satchel's patient-held health record. Devices
//! meet here to exchange **signed, encrypted envelopes**; the relay checks
//! signatures and membership, stores the bytes, numbers them, and pushes
//! change notices. It holds no keys and can decrypt nothing. The wire
//! contract is `docs/protocol.md` (served as OpenAPI at `/v1/openapi.json`).
//!
//! ## Running
//!
//! ```text
//! satchel-sync --listen 127.0.0.1:8787 --db satchel-sync.db          # SQLite (default)
//! satchel-sync --listen 0.0.0.0:8787 --database-url postgres://user@host/db [--pg-schema S]
//! ```
//!
//! The first line on stdout is `listening on ADDR` (the bound address, so
//! `--listen 127.0.0.1:0` works for tests). Limits and the rate limit are
//! flags (`satchel-sync --help`), and so are the connection defences
//! (header-read and body timeouts, caps on open connections overall and
//! per client address, the file-descriptor limit) and TLS
//! (`--tls-cert`, `--tls-key`; plain HTTP is refused off loopback unless
//! `--insecure-plain-http`). Operating it: `docs/operations.md`.
//! SIGTERM / SIGINT stop accepting, finish in-flight requests, close
//! WebSockets with 1012 (service restart: reconnect elsewhere) and flush
//! the SQLite writer. `/v1/health` says the process is alive, `/v1/ready`
//! whether it should get traffic (database, migrations, `LISTEN`, not
//! draining). Several instances on PostgreSQL start together safely
//! (migrations under an advisory lock), honour session revocations within
//! a second (each polls them), and hand each change only to its record's
//! subscribers (`api::fanout`).
//!
//! ## Layout
//!
//! - [`storage`]: the [`storage::Storage`] trait and its SQLite
//!   (group-committing writer thread) and PostgreSQL (LISTEN/NOTIFY)
//!   backends, with numbered SQL migrations.
//! - [`api`]: axum handlers for every route, auth and rate limiting,
//!   envelope verification, WebSocket push, metrics, OpenAPI.
//! - [`net`]: the accept loop below the API: HTTP/1.1 over TCP or TLS,
//!   timeouts, connection caps with eviction of slow connections.
//! - [`config`]: [`Config`] (storage, limits, rate, connections, TLS,
//!   the identity file).
//! - [`identity`]: the relay's own identity (role `relay`), which access
//!   logs name to make the relay a replica of a record.
//! - [`replication`]: replication with upstream relays (`--upstream`): the
//!   relay's client of an upstream and the replication loop.
//! - [`serve`]: run the relay on a listener until a shutdown future
//!   resolves (used by the binary, the CLI's `serve`, and tests).
//!
//! ## Privacy
//!
//! Logs carry method, route template, status, latency, the caller's short
//! identity id and item counts; never bodies. Error messages never echo
//! payload content. Stored rows are ids, public cards and signatures, and
//! ciphertext.

pub mod api;
pub mod config;
pub mod identity;
pub mod net;
pub mod replication;
pub mod storage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use api::ops::Health;
pub use config::{
    Config, ConnectionLimits, Limits, RateLimit, RelayIdentityFile, StorageConfig, TlsFiles,
    UpstreamConfig,
};
use storage::Storage;

/// How often expired links, tokens and challenges are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Open the configured storage (creating the schema if needed).
pub async fn open_storage(config: &StorageConfig) -> anyhow::Result<Arc<dyn Storage>> {
    match config {
        StorageConfig::Sqlite { path, cache_mib } => {
            let (path, cache_mib) = (path.clone(), *cache_mib);
            let storage = tokio::task::spawn_blocking(move || {
                storage::sqlite::SqliteStorage::open_with_cache(&path, cache_mib)
            })
            .await??;
            Ok(Arc::new(storage))
        }
        StorageConfig::Postgres { url, schema } => Ok(Arc::new(
            storage::postgres::PostgresStorage::open(url, schema.as_deref()).await?,
        )),
    }
}

/// Run the relay on `listener` until `shutdown` resolves, then finish
/// in-flight requests, close subscribers and flush storage. Plain HTTP on
/// an address other than loopback is refused unless
/// `config.insecure_plain_http` ([`net::check_listen`]).
pub async fn serve<F>(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    net::check_listen(
        listener.local_addr()?,
        config.tls.is_some(),
        config.insecure_plain_http,
    )?;
    let storage = open_storage(&config.storage).await?;
    serve_with_storage(storage, config, listener, shutdown).await
}

/// [`serve`] over an already opened storage.
pub async fn serve_with_storage<F>(
    storage: Arc<dyn Storage>,
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    net::check_listen(
        listener.local_addr()?,
        config.tls.is_some(),
        config.insecure_plain_http,
    )?;
    let tls = config.tls.as_ref().map(net::tls::acceptor).transpose()?;
    let identity = match &config.identity {
        Some(file) => Some(Arc::new(identity::load_or_create(&file.path, &file.name)?)),
        None => None,
    };
    if !config.upstreams.is_empty() && identity.is_none() {
        anyhow::bail!(
            "--upstream needs the relay's own identity (--identity FILE): upstream relays know a replica by it"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let replicator_stop = stop_rx.clone();
    let members = api::records::MembersCache::with_capacity(config.verified_log_cache.unwrap_or(
        if config.upstreams.is_empty() {
            api::records::MembersCache::CAPACITY
        } else {
            api::records::MembersCache::EDGE_CAPACITY
        },
    ));
    let state = api::AppState::new(
        Arc::clone(&storage),
        config.limits,
        config.rate,
        stop_rx,
        config.fanout_index,
        members,
    );
    if let Some(identity) = &identity {
        state.set_identity(identity.card().clone());
    }
    let _ = state.public_base.set(match &config.public_url {
        Some(url) => api::share_links::PublicBase::Fixed(url.trim_end_matches('/').to_owned()),
        None => api::share_links::PublicBase::FromHost {
            tls: config.tls.is_some(),
        },
    });
    let fanout = tokio::spawn(api::fanout::run(
        Arc::clone(&state.fanout),
        storage.subscribe(),
    ));
    let app = api::router(state.clone());

    let mut replicators = Vec::new();
    if !config.upstreams.is_empty() {
        let _ = state
            .upstream_contact
            .set(Arc::new(replication::contact::UpstreamContact::default()));
    }
    if let Some(identity) = &identity {
        for upstream in &config.upstreams {
            let client =
                replication::upstream::Upstream::new(upstream.url.clone(), &upstream.trust)?;
            let replicator = replication::replicator::Replicator::new(
                state.clone(),
                Arc::clone(identity),
                client,
            );
            tracing::info!(upstream = %upstream.url, "replicating with upstream relay");
            replicators.push(tokio::spawn(
                replicator.run(upstream.interval, replicator_stop.clone()),
            ));
        }
    }

    let purge_state = state.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            let now = storage::now_ms();
            if let Err(e) = purge_state.storage.purge_expired(now).await {
                tracing::warn!(error = %e, "purge of expired rows failed");
            }
            purge_state.tokens.prune(now);
            purge_state.limiters.prune();
            purge_state.fanout.prune();
        }
    });

    let revocations = tokio::spawn(api::auth::watch_revocations(state.clone()));

    net::serve(listener, app, state, config.connections, tls, async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stop_tx.send(true);
    })
    .await;
    purge.abort();
    revocations.abort();
    fanout.abort();
    for r in replicators {
        let _ = r.await;
    }
    storage.close().await;
    tracing::info!("storage closed");
    Ok(())
}
