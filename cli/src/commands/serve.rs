//! `satchel serve`: run a relay in this process (the same code as
//! `satchel-sync`, embedded SQLite), for trying Satchel on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel serve\n  satchel serve --listen 0.0.0.0:8787 --db ~/satchel-relay.db"
)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// The relay's SQLite database (created if missing).
    #[arg(long, default_value = "satchel-relay.db")]
    pub db: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        outln!("listening on {}", listener.local_addr()?);
        let config = satchel_sync_server::Config::sqlite(&args.db);
        satchel_sync_server::serve(config, listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })
}
