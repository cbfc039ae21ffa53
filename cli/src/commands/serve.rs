//! `satchel serve`: run a relay in this process (the same code as
//! `satchel-sync`, embedded SQLite), for trying Satchel on one machine.
//! Plain HTTP is served on loopback only; elsewhere give a certificate
//! (or, knowingly, `--insecure-plain-http`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel serve\n  satchel serve --listen 0.0.0.0:8443 --tls-cert relay.pem --tls-key relay.key --db ~/satchel-relay.db"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The relay's SQLite database (created if missing).
    #[arg(long, default_value = "satchel-relay.db")]
    pub db: PathBuf,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only when something
    /// else already encrypts the network).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_plain_http: bool,
}

pub fn run(args: Args) -> Result<()> {
    let mut config = satchel_sync_server::Config::sqlite(&args.db);
    config.tls = args
        .tls_cert
        .zip(args.tls_key)
        .map(|(cert, key)| satchel_sync_server::TlsFiles { cert, key });
    config.insecure_plain_http = args.insecure_plain_http;
    config.identity = Some(satchel_sync_server::RelayIdentityFile::beside(
        &args.db,
        "Satchel relay",
    ));
    satchel_sync_server::net::check_listen(
        args.listen,
        config.tls.is_some(),
        config.insecure_plain_http,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = satchel_sync_server::net::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        outln!("listening on {}", listener.local_addr()?);
        satchel_sync_server::serve(config, listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
