//! `satchel provider push`: a provider system with a write grant adds FHIR
//! to a patient's record and sends it through the relay in one step.
//! `satchel provider serve`: the provider gateway (FHIR R4 REST for
//! integration engines; `satchel-gateway`, docs/provider-gateway.md), and
//! `satchel provider clients`: the backend clients allowed to call it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use satchel_core::fhir::import::collect_resources;
use satchel_core::sync::RelayUrl;
use serde_json::json;

use crate::home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import a FHIR resource or Bundle into a patient's record shared with
    /// this home (signed by this provider) and sync it to the relay.
    #[command(
        after_help = "Example:\n  satchel --home ~/gp provider push --server http://127.0.0.1:8787 --record 3f2a... results.json"
    )]
    Push(PushArgs),
    /// Run the provider gateway: a FHIR R4 endpoint for the provider's
    /// integration engine, in front of every record shared with this home.
    #[command(
        after_help = "Example:\n  satchel --home ~/gp provider serve --server https://relay.example --listen 0.0.0.0:8443 --tls-cert gw.pem --tls-key gw.key\n  satchel --home ~/gp provider serve --server http://127.0.0.1:8787 --listen 127.0.0.1:8090\n\nClients authenticate with SMART Backend Services; register them with `satchel provider clients add`."
    )]
    Serve(ServeArgs),
    /// The backend clients (integration engines) allowed to call the gateway.
    #[command(subcommand)]
    #[command(
        after_help = "Example:\n  satchel --home ~/gp provider clients add mirth --jwks mirth.jwks.json --scope 'system/*.write'\n  satchel --home ~/gp provider clients list"
    )]
    Clients(ClientsCommand),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The relay the records sync with.
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// Where to listen (plain HTTP only on loopback; elsewhere give --tls-cert and --tls-key).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// The gateway's certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// The base URL clients use, if not the listen address (behind a proxy).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Records kept open at once (each holds its decrypted record in memory).
    #[arg(long, default_value_t = 64)]
    pub max_open_records: usize,
    /// Seconds between syncs of every record (reads see what patients wrote).
    #[arg(long, default_value_t = 300)]
    pub refresh_secs: u64,
    /// Access token lifetime in seconds (tests of expiry).
    #[arg(long, default_value_t = 300, hide = true)]
    pub token_lifetime_secs: u64,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientsCommand {
    /// Register a backend client: its id and its public keys (a JWKS).
    #[command(
        after_help = "Example:\n  satchel provider clients add mirth-st-marys --jwks mirth.jwks.json --scope 'system/*.write system/*.read'"
    )]
    Add {
        /// The client id (the `iss` and `sub` of its assertions).
        client_id: String,
        /// A JSON Web Key Set file with the client's public keys (RS384 or ES384, each with a kid).
        #[arg(long)]
        jwks: PathBuf,
        /// The most it may be granted (SMART scopes), e.g. 'system/*.write system/Observation.read'.
        #[arg(long)]
        scope: String,
    },
    /// The registered clients.
    #[command(after_help = "Example:\n  satchel --home ~/gp provider clients list --json")]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a client: its tokens stop working when the gateway restarts.
    #[command(after_help = "Example:\n  satchel --home ~/gp provider clients remove mirth")]
    Remove { client_id: String },
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// The patient's record id (or its first characters; see `satchel list`).
    #[arg(long)]
    pub record: String,
    /// The sending system's name, kept with each entry for de-duplication
    /// and provenance (default: this identity's organisation or name).
    #[arg(long)]
    pub source: Option<String>,
    /// FHIR R4 JSON file (one resource or a Bundle), or - for stdin.
    pub file: PathBuf,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    let args = match command {
        Command::Push(args) => args,
        Command::Serve(args) => return run_serve(home_dir, args),
        Command::Clients(c) => return run_clients(home_dir, c),
    };
    let mut profile = home::open_record(home_dir, Some(&args.record))?;
    if profile.is_owner_device() {
        bail!("this is the patient's own record; use `satchel add` (provider push is for records shared with a provider)");
    }
    let source = args.source.clone().unwrap_or_else(|| {
        let card = profile.identity_card();
        card.organisation
            .clone()
            .unwrap_or_else(|| card.display_name.clone())
    });
    let reader: Box<dyn std::io::Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        ))
    };
    let (_, incoming) = collect_resources(reader).context(
        "the input is not FHIR R4 JSON; nothing was imported (fix the file and push again)",
    )?;
    let report = profile
        .import_contribution(incoming, Some(&source))
        .context("the push was refused")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut client = crate::relay::client(&args.server)?;
    let spinner = crate::output::slow_spinner(&format!("Sending to {}", args.server));
    let round = rt.block_on(client.sync(&mut profile));
    spinner.finish_and_clear();
    let round = round.map_err(|e| {
        crate::output::relay_error(
            &args.server,
            "imported here, but sending to the relay failed (it stays queued; run `satchel sync`)",
            e,
        )
    })?;
    if args.json {
        outln!(
            "{}",
            json!({"added": report.added.len(), "updated": report.updated.len(),
                   "unchanged": report.unchanged.len(), "skipped": report.skipped.len(),
                   "sent": round.uploaded, "record": profile.record_id(), "source": source})
        );
    } else {
        outln!(
            "Pushed to {}'s record as {source}: {} added, {} updated, {} unchanged, {} skipped; {} envelope(s) sent.",
            profile.owner_name(),
            report.added.len(),
            report.updated.len(),
            report.unchanged.len(),
            report.skipped.len(),
            round.uploaded
        );
    }
    Ok(())
}

fn run_serve(home_dir: Option<PathBuf>, args: ServeArgs) -> Result<()> {
    let home = home::require_home(home_dir)?;
    let passphrase = home::passphrase(false)?;
    let config = satchel_gateway::GatewayConfig {
        clients_file: satchel_gateway::clients_file(&home),
        home,
        passphrase,
        relay: args.server,
        trust: crate::relay::trust(),
        listen: args.listen,
        public_url: args.public_url,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| satchel_sync_server::TlsFiles { cert, key }),
        max_open_records: args.max_open_records,
        refresh: std::time::Duration::from_secs(args.refresh_secs.max(1)),
        token_lifetime: std::time::Duration::from_secs(args.token_lifetime_secs.clamp(1, 3600)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let gateway = satchel_gateway::Gateway::start(config)?;
        eprintln!(
            "satchel provider gateway at {} (FHIR R4; token endpoint {}/auth/token)",
            gateway.base, gateway.base
        );
        gateway
            .serve(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

fn run_clients(home_dir: Option<PathBuf>, command: ClientsCommand) -> Result<()> {
    use satchel_gateway::auth::{ClientRegistry, RegisteredClient, Scopes};
    let home = home::require_home(home_dir)?;
    let path = satchel_gateway::clients_file(&home);
    let mut registry = ClientRegistry::load(&path)?;
    match command {
        ClientsCommand::Add {
            client_id,
            jwks,
            scope,
        } => {
            let text = std::fs::read(&jwks)
                .with_context(|| format!("cannot read the JWKS file {}", jwks.display()))?;
            let jwks: serde_json::Value = serde_json::from_slice(&text).with_context(|| {
                format!(
                    "{} is not JSON (a JSON Web Key Set: {{\"keys\": [...]}})",
                    jwks.display()
                )
            })?;
            let scopes = Scopes::parse(&scope)?;
            registry.add(RegisteredClient {
                client_id: client_id.clone(),
                jwks,
                scopes,
            })?;
            registry.save(&path)?;
            outln!("Registered client {client_id}; a running gateway picks it up when restarted.");
        }
        ClientsCommand::List { json } => {
            let rows: Vec<serde_json::Value> = registry
                .clients()
                .iter()
                .map(|c| {
                    json!({
                        "client_id": c.client_id,
                        "scope": c.scopes.to_string(),
                        "keys": c.jwks.get("keys").and_then(|k| k.as_array()).map_or(0, Vec::len),
                    })
                })
                .collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                outln!("No clients. Register one with `satchel provider clients add`.");
            } else {
                let mut table = crate::output::table(&["CLIENT", "SCOPE", "KEYS"]);
                for r in &rows {
                    table.add_row(vec![
                        r["client_id"].as_str().unwrap_or_default().to_owned(),
                        r["scope"].as_str().unwrap_or_default().to_owned(),
                        r["keys"].to_string(),
                    ]);
                }
                outln!("{table}");
            }
        }
        ClientsCommand::Remove { client_id } => {
            if !registry.remove(&client_id) {
                bail!("no client {client_id} is registered; nothing changed (see `satchel provider clients list`)");
            }
            registry.save(&path)?;
            outln!(
                "Removed client {client_id}; restart the gateway for its tokens to stop working."
            );
        }
    }
    Ok(())
}
