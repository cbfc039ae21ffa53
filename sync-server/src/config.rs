//! Relay configuration: where to store, size limits, rate limits,
//! connection limits, TLS, the relay's identity and its upstream relays. The CLI (`main.rs`) fills it from flags;
//! tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// Everything [`crate::serve`] needs besides the listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// Storage backend.
    pub storage: StorageConfig,
    /// Size and count limits.
    pub limits: Limits,
    /// Per-identity (and, for the auth endpoints, per-IP) rate limit.
    pub rate: RateLimit,
    /// Timeouts and caps on client connections.
    pub connections: ConnectionLimits,
    /// Serve HTTPS with this certificate and key (`None`: plain HTTP,
    /// which [`crate::net::check_listen`] allows on loopback only unless
    /// the operator insists).
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP on a non-loopback address anyway
    /// (`--insecure-plain-http`: something else encrypts the network).
    pub insecure_plain_http: bool,
    /// The relay's identity file ([`crate::identity`]), created on first
    /// start (`None`: the relay has no identity and cannot be a replica).
    pub identity: Option<RelayIdentityFile>,
    /// Upstream relays to replicate with (`--upstream`; needs an
    /// identity).
    pub upstreams: Vec<UpstreamConfig>,
    /// Hand each change only to its record's subscribers (default). `false`
    /// (`--fanout-scan`) is the earlier path, kept for benchmarks: every
    /// subscriber reads every change.
    pub fanout_index: bool,
    /// How many records' verified access logs are cached; `None`: 4,096,
    /// or 512 on an edge relay (`api::records::MembersCache`).
    pub verified_log_cache: Option<usize>,
    /// The relay's public base URL (`--public-url https://relay.example`),
    /// from which share links' `location` URLs are made; `None`: from the
    /// request's `Host` header, `https` when the relay serves TLS itself.
    pub public_url: Option<String>,
}

/// One upstream relay: its address and the certificates its must chain to.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: satchel_protocol::relay_url::RelayUrl,
    pub trust: crate::replication::upstream::UpstreamTrust,
    /// Time between rounds when nothing changes here.
    pub interval: Duration,
}

/// Where the relay keeps its identity, and the name its card shows when it
/// is made.
#[derive(Debug, Clone)]
pub struct RelayIdentityFile {
    pub path: PathBuf,
    pub name: String,
}

impl RelayIdentityFile {
    /// The default place beside a SQLite database: its path plus
    /// `.identity`.
    pub fn beside(db: &std::path::Path, name: impl Into<String>) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push(".identity");
        RelayIdentityFile {
            path: PathBuf::from(path),
            name: name.into(),
        }
    }
}

/// The SQLite writer's page cache by default (MiB): the hot index pages of
/// a busy cloud relay.
pub const SQLITE_CACHE_MIB: u32 = 128;
/// The default for an edge relay (`--upstream`): a small machine serving
/// one site, whose resident memory stays under 100 MB replicating 10,000
/// records (docs/benchmarks.md, "Edge relays").
pub const EDGE_SQLITE_CACHE_MIB: u32 = 24;

impl Config {
    /// Defaults (the documented protocol limits) over a SQLite file.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Config {
            storage: StorageConfig::Sqlite {
                path: path.into(),
                cache_mib: SQLITE_CACHE_MIB,
            },
            limits: Limits::default(),
            rate: RateLimit::default(),
            connections: ConnectionLimits::default(),
            tls: None,
            insecure_plain_http: false,
            identity: None,
            upstreams: Vec::new(),
            fanout_index: true,
            verified_log_cache: None,
            public_url: None,
        }
    }
}

/// PEM files of the relay's TLS certificate chain and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
}

/// How slow clients are cut off and how many connections are kept open.
///
/// A connection must deliver its request headers within
/// `header_read_timeout` (this also closes idle keep-alive connections and
/// bounds the TLS handshake), and each request body within
/// `body_timeout`. At most `max_connections` are open, at most
/// `max_connections_per_ip` from one client address; when a cap is reached
/// the oldest connection that is idle or still sending its request is
/// closed to admit the new one, and only if there is none is the new one
/// closed at once. `health_reserve` more connections are kept for
/// `GET /v1/health` alone, so a health check gets through even when every
/// slot is busy.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed to receive a request's headers (and for the TLS
    /// handshake); also the idle keep-alive timeout.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a whole request body once its headers are in.
    pub body_timeout: Duration,
    /// Most open connections (lowered at start-up to fit the process's
    /// file-descriptor limit).
    pub max_connections: usize,
    /// Most open connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Extra connections admitted only for `GET /v1/health` when every
    /// other slot is busy.
    pub health_reserve: usize,
    /// Raise the soft RLIMIT_NOFILE to the hard limit at start-up.
    pub raise_fd_limit: bool,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            // The client's own request timeout is 60 s.
            body_timeout: Duration::from_secs(60),
            max_connections: 8192,
            max_connections_per_ip: 512,
            health_reserve: 32,
            raise_fd_limit: true,
        }
    }
}

/// Which database.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// Embedded SQLite file (created if missing).
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Page cache of the writer connection (MiB); each reader keeps an
        /// eighth (at least 2 MiB). Default [`SQLITE_CACHE_MIB`].
        cache_mib: u32,
    },
    /// PostgreSQL (`postgres://user@host:port/db`, no TLS).
    Postgres {
        /// Connection URL.
        url: String,
        /// Schema to use (created if missing); `None` = the server default
        /// search path.
        schema: Option<String>,
    },
}

/// Size, count and time limits (protocol version 1 defaults).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest envelope (bytes, decoded).
    pub max_envelope_bytes: usize,
    /// Most envelopes in one upload.
    pub max_batch_envelopes: usize,
    /// Largest upload batch (sum of decoded envelope bytes).
    pub max_batch_bytes: usize,
    /// Largest snapshot envelope (bytes, decoded).
    pub max_snapshot_bytes: usize,
    /// Largest link payload or access statement (bytes, decoded).
    pub max_payload_bytes: usize,
    /// Most envelopes one pull returns.
    pub max_pull_limit: u32,
    /// Envelopes one pull returns without `limit`.
    pub default_pull_limit: u32,
    /// Token lifetime (seconds).
    pub token_ttl_secs: u64,
    /// Challenge lifetime (seconds).
    pub challenge_ttl_secs: u64,
    /// Link lifetime when the creator gives none (seconds).
    pub link_default_ttl_secs: u64,
    /// Longest link lifetime (seconds).
    pub link_max_ttl_secs: u64,
    /// How long a share link's `location` URL works (ms; default
    /// [`satchel_protocol::wire::share_links::LOCATION_LIFETIME_MS`], the
    /// specification allows at most an hour).
    pub share_location_lifetime_ms: i64,
    /// Files up to this many bytes come `embedded` in a manifest answer
    /// whose request names no `embeddedLengthMax`; larger ones by
    /// `location`.
    pub share_embed_default_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: satchel_protocol::wire::MAX_ENVELOPE_BYTES,
            max_batch_envelopes: 1000,
            max_batch_bytes: 16 * MIB,
            max_snapshot_bytes: 32 * MIB,
            max_payload_bytes: 256 * 1024,
            max_pull_limit: 1000,
            default_pull_limit: 500,
            token_ttl_secs: 900,
            challenge_ttl_secs: 60,
            link_default_ttl_secs: 600,
            link_max_ttl_secs: 7 * 24 * 3600,
            share_location_lifetime_ms: satchel_protocol::wire::share_links::LOCATION_LIFETIME_MS,
            share_embed_default_max: MIB as u64,
        }
    }
}

/// Base64 (with padding) length of `n` bytes.
fn b64_len(n: usize) -> usize {
    n.div_ceil(3).saturating_mul(4)
}

/// Slack for JSON syntax and small fields around the base64 values.
const JSON_SLACK: usize = 64 * 1024;

impl Limits {
    /// Largest HTTP body of an envelope upload.
    pub fn upload_body_bytes(&self) -> usize {
        b64_len(self.max_batch_bytes)
            .saturating_add(self.max_batch_envelopes.saturating_mul(8))
            .saturating_add(JSON_SLACK)
    }

    /// Largest HTTP body of a snapshot upload.
    pub fn snapshot_body_bytes(&self) -> usize {
        b64_len(self.max_snapshot_bytes).saturating_add(JSON_SLACK)
    }

    /// Largest HTTP body of any other request.
    pub fn small_body_bytes(&self) -> usize {
        b64_len(self.max_payload_bytes)
            .saturating_mul(2)
            .saturating_add(JSON_SLACK)
    }

    /// Largest body any route accepts (the global body-limit layer).
    pub fn max_body_bytes(&self) -> usize {
        self.upload_body_bytes()
            .max(self.snapshot_body_bytes())
            .max(self.small_body_bytes())
    }
}

/// Token buckets: one per authenticated identity (every authenticated
/// request), one per client IP address for the unauthenticated auth
/// endpoints. A rate of 0 disables that limiter.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    /// Sustained requests per second per identity.
    pub per_second: u32,
    /// Bucket size per identity.
    pub burst: u32,
    /// Sustained auth requests (challenge, token) per second per IP.
    pub auth_per_second: u32,
    /// Bucket size per IP for the auth endpoints.
    pub auth_burst: u32,
    /// Sustained requests per second to one share link (the public
    /// `/shl/...` routes, keyed by the link's handle).
    pub share_link_per_second: u32,
    /// Bucket size per share link.
    pub share_link_burst: u32,
    /// Sustained requests per second from one client IP to the public
    /// share-link routes (all links together).
    pub share_ip_per_second: u32,
    /// Bucket size per client IP for the public share-link routes.
    pub share_ip_burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 50,
            burst: 200,
            auth_per_second: 20,
            auth_burst: 200,
            share_link_per_second: 30,
            share_link_burst: 100,
            share_ip_per_second: 60,
            share_ip_burst: 300,
        }
    }
}
