//! `satchel-sync`: run the relay. A thin shell over
//! [`satchel_sync_server::serve`]: parse flags, bind, print the bound
//! address as the first stdout line, wait for SIGTERM / SIGINT.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use satchel_sync_server::replication::upstream::UpstreamTrust;
use satchel_sync_server::{
    Config, ConnectionLimits, Limits, RateLimit, RelayIdentityFile, StorageConfig, TlsFiles,
    UpstreamConfig,
};

/// The Satchel blind relay: stores only signed ciphertext.
#[derive(Debug, Parser)]
#[command(name = "satchel-sync", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port; see the first
    /// stdout line).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The embedded SQLite database file (created if missing).
    #[arg(
        long,
        default_value = "satchel-sync.db",
        conflicts_with = "database_url"
    )]
    db: PathBuf,
    /// SQLite page cache of the writer connection, in MiB (each reader
    /// connection keeps an eighth). Default: 128, or 24 for an edge relay
    /// (with --upstream).
    #[arg(long, conflicts_with = "database_url")]
    sqlite_cache_mib: Option<u32>,
    /// Use PostgreSQL instead of SQLite (postgres://user@host:port/db).
    #[arg(long, env = "SATCHEL_DATABASE_URL")]
    database_url: Option<String>,
    /// PostgreSQL schema to use (created if missing).
    #[arg(long, requires = "database_url")]
    pg_schema: Option<String>,
    /// The relay's identity file (made on first start; keep it like a TLS
    /// key). Default with SQLite: the database path plus `.identity`;
    /// with PostgreSQL, every instance must be given the same file.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The name on the relay's identity card, when it is made ("Riverside
    /// clinic relay"): what patients see when they name it a replica.
    #[arg(long, default_value = "Satchel relay")]
    relay_name: String,
    /// Replicate, in both directions, every record that names this relay a
    /// replica with this upstream relay (repeatable; https://, or http://
    /// to this machine).
    #[arg(long, value_name = "URL")]
    upstream: Vec<satchel_protocol::relay_url::RelayUrl>,
    /// Trust only this CA (PEM) for the upstream relays' certificates
    /// (default: Mozilla's roots).
    #[arg(long, value_name = "PEM", requires = "upstream")]
    upstream_ca: Option<PathBuf>,
    /// Seconds between replication rounds when nothing changes here (a
    /// change here starts a round at once).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    replication_interval: f64,
    /// Sustained requests per second per identity (0 = no rate limit).
    #[arg(long, default_value_t = RateLimit::default().per_second)]
    rate_per_sec: u32,
    /// Burst size of the per-identity token bucket.
    #[arg(long, default_value_t = RateLimit::default().burst)]
    rate_burst: u32,
    /// Sustained auth requests (challenge, token) per second per client IP
    /// (0 = no limit).
    #[arg(long, default_value_t = RateLimit::default().auth_per_second)]
    auth_rate_per_sec: u32,
    /// Burst size of the per-IP auth token bucket.
    #[arg(long, default_value_t = RateLimit::default().auth_burst)]
    auth_rate_burst: u32,
    /// Sustained requests per second to one share link (public `/shl/...`
    /// routes; 0 = no limit).
    #[arg(long, default_value_t = RateLimit::default().share_link_per_second)]
    share_link_rate_per_sec: u32,
    /// Burst size of the per-share-link token bucket.
    #[arg(long, default_value_t = RateLimit::default().share_link_burst)]
    share_link_rate_burst: u32,
    /// Sustained requests per second from one client IP to the public
    /// share-link routes (0 = no limit; behind a reverse proxy every
    /// client has the proxy's address: raise this).
    #[arg(long, default_value_t = RateLimit::default().share_ip_per_second)]
    share_ip_rate_per_sec: u32,
    /// Burst size of the per-IP share-link token bucket.
    #[arg(long, default_value_t = RateLimit::default().share_ip_burst)]
    share_ip_rate_burst: u32,
    /// The relay's public base URL (e.g. https://relay.example), from which
    /// share links' `location` URLs are made. Default: the request's Host
    /// header, with https when the relay serves TLS itself (give this flag
    /// behind a TLS reverse proxy).
    #[arg(long, value_name = "URL")]
    public_url: Option<satchel_protocol::relay_url::RelayUrl>,
    /// Tests only: how long a share link's `location` URL works (ms).
    #[arg(long, hide = true, default_value_t = Limits::default().share_location_lifetime_ms)]
    share_location_lifetime_ms: i64,
    /// Largest envelope, bytes.
    #[arg(long, default_value_t = Limits::default().max_envelope_bytes)]
    max_envelope_bytes: usize,
    /// Most envelopes per upload.
    #[arg(long, default_value_t = Limits::default().max_batch_envelopes)]
    max_batch_envelopes: usize,
    /// Largest upload batch, bytes (sum of envelopes).
    #[arg(long, default_value_t = Limits::default().max_batch_bytes)]
    max_batch_bytes: usize,
    /// Largest snapshot, bytes.
    #[arg(long, default_value_t = Limits::default().max_snapshot_bytes)]
    max_snapshot_bytes: usize,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only when something
    /// else, e.g. a VPN, already encrypts the network; a TLS reverse proxy
    /// should reach the relay on 127.0.0.1 instead).
    #[arg(long, conflicts_with = "tls_cert")]
    insecure_plain_http: bool,
    /// Seconds a client has to send its request headers (and to finish
    /// the TLS handshake); also how long an idle connection is kept.
    #[arg(long, value_name = "SECS", default_value_t = ConnectionLimits::default().header_read_timeout.as_secs_f64())]
    header_read_timeout: f64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, value_name = "SECS", default_value_t = ConnectionLimits::default().body_timeout.as_secs_f64())]
    body_timeout: f64,
    /// Most open client connections (lowered to fit the file-descriptor
    /// limit); idle and slow ones are closed first to admit new ones.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Most open connections from one client IP address (behind a reverse
    /// proxy every client has the proxy's address: raise this).
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Extra connections kept for `GET /v1/health` when every slot is busy.
    #[arg(long, default_value_t = ConnectionLimits::default().health_reserve)]
    health_reserve: usize,
    /// Keep the file-descriptor soft limit as it is (by default it is
    /// raised to the hard limit at start-up).
    #[arg(long)]
    keep_fd_limit: bool,
    /// Benchmarks only: the fan-out before the subscriber index (every
    /// WebSocket reads every change and skips other records').
    #[arg(long, hide = true)]
    fanout_scan: bool,
    /// Records whose verified access log is cached (default 4096, 512 for
    /// an edge relay); hidden, for the replication benchmark's comparison.
    #[arg(long, hide = true)]
    verified_log_cache: Option<usize>,
    /// Log filter (tracing EnvFilter syntax), e.g. `warn` for benchmarks.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&args.log).unwrap_or_else(|_| "info".into()),
        )
        .init();
    let identity = match (&args.identity, &args.database_url) {
        (Some(path), _) => Some(RelayIdentityFile {
            path: path.clone(),
            name: args.relay_name.clone(),
        }),
        (None, None) => Some(RelayIdentityFile::beside(&args.db, &args.relay_name)),
        (None, Some(_)) => None,
    };
    let storage = match args.database_url.clone() {
        Some(url) => StorageConfig::Postgres {
            url,
            schema: args.pg_schema,
        },
        None => StorageConfig::Sqlite {
            path: args.db,
            cache_mib: args
                .sqlite_cache_mib
                .unwrap_or(if args.upstream.is_empty() {
                    satchel_sync_server::config::SQLITE_CACHE_MIB
                } else {
                    satchel_sync_server::config::EDGE_SQLITE_CACHE_MIB
                }),
        },
    };
    let config = Config {
        storage,
        limits: Limits {
            max_envelope_bytes: args.max_envelope_bytes,
            max_batch_envelopes: args.max_batch_envelopes,
            max_batch_bytes: args.max_batch_bytes,
            max_snapshot_bytes: args.max_snapshot_bytes,
            share_location_lifetime_ms: args.share_location_lifetime_ms,
            ..Limits::default()
        },
        rate: RateLimit {
            per_second: args.rate_per_sec,
            burst: args.rate_burst,
            auth_per_second: args.auth_rate_per_sec,
            auth_burst: args.auth_rate_burst,
            share_link_per_second: args.share_link_rate_per_sec,
            share_link_burst: args.share_link_rate_burst,
            share_ip_per_second: args.share_ip_rate_per_sec,
            share_ip_burst: args.share_ip_rate_burst,
        },
        connections: ConnectionLimits {
            header_read_timeout: seconds(args.header_read_timeout, "--header-read-timeout")?,
            body_timeout: seconds(args.body_timeout, "--body-timeout")?,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            health_reserve: args.health_reserve,
            raise_fd_limit: !args.keep_fd_limit,
        },
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        insecure_plain_http: args.insecure_plain_http,
        identity,
        upstreams: Vec::new(),
        fanout_index: !args.fanout_scan,
        verified_log_cache: args.verified_log_cache,
        public_url: args.public_url.map(|u| u.to_string()),
    };
    let mut config = config;
    if !args.upstream.is_empty() {
        let trust = match &args.upstream_ca {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read --upstream-ca {}", path.display()))?;
                UpstreamTrust::pinned_pem(&pem)?
            }
            None => UpstreamTrust::WebPki,
        };
        let interval = seconds(args.replication_interval, "--replication-interval")?;
        config.upstreams = args
            .upstream
            .iter()
            .map(|url| UpstreamConfig {
                url: url.clone(),
                trust: trust.clone(),
                interval,
            })
            .collect();
    }
    satchel_sync_server::net::check_listen(
        args.listen,
        config.tls.is_some(),
        config.insecure_plain_http,
    )?;
    let storage = satchel_sync_server::open_storage(&config.storage)
        .await
        .context("cannot open storage")?;
    let listener = satchel_sync_server::net::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, scheme, storage = storage.kind(), "satchel-sync listening");
    satchel_sync_server::serve_with_storage(storage, config, listener, shutdown).await?;
    tracing::info!("satchel-sync stopped");
    Ok(())
}

/// A positive, finite number of seconds.
fn seconds(secs: f64, flag: &str) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} takes a positive number of seconds, e.g. 10 or 0.5"))
}

/// The shutdown future: SIGTERM or SIGINT. The SIGTERM handler is
/// installed here, before the relay announces its address, so a SIGTERM
/// sent right after start-up is a clean shutdown, not the default death.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        async move {
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
