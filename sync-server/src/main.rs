//! `satchel-sync`: run the relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// The Satchel blind relay: stores only ciphertext.
#[derive(Debug, Parser)]
#[command(name = "satchel-sync", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The embedded SQLite database file (created if missing).
    #[arg(long, default_value = "satchel-sync.db")]
    db: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let state = satchel_sync_server::AppState::open_sqlite(&args.db)
        .with_context(|| format!("cannot open {}", args.db.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(addr = %args.listen, "satchel-sync listening");
    axum::serve(listener, satchel_sync_server::router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
