//! `satchel replica add`: name another relay (a clinic's edge relay, the
//! patient's own server) a replica of the record. The relay's card is
//! fetched from it and its fingerprint shown (and, with `--fingerprint`,
//! checked); the `add-replica` statement is signed and appended on the
//! record's relay. A replica holds ciphertext only. `satchel grants` lists
//! replicas and `satchel revoke` removes one.

use std::path::PathBuf;

use anyhow::{bail, Result};
use satchel_core::sync::sharing as net;
use satchel_core::sync::RelayUrl;
use serde_json::json;

use crate::{home, output};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Name a relay a replica of the record (it then holds and forwards the
    /// record's ciphertext; it never gets a key).
    Add(AddArgs),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel replica add https://relay.riverside-clinic.example --label \"Riverside clinic\" --fingerprint 3F2A-91C0-... --server https://relay.example"
)]
pub struct AddArgs {
    /// The relay to name a replica (its address).
    pub relay: RelayUrl,
    /// What the replica is, as `satchel grants` shows it ("Riverside
    /// clinic"): a name, never clinical detail.
    #[arg(long)]
    pub label: String,
    /// The fingerprint the relay's operator read out: refuse the relay if
    /// its card does not have it.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// The record's relay, where the access log lives.
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Fingerprints compared as people read them: case, spaces and dashes
/// ignored.
pub(crate) fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect::<String>()
    };
    norm(a) == norm(b)
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Add(args) => run_add(home_dir, args),
    }
}

fn run_add(home_dir: Option<PathBuf>, args: AddArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut replica = crate::relay::client(&args.relay)?;
    let card = rt
        .block_on(net::relay_identity(&mut replica))
        .map_err(|e| {
            output::relay_error(
                &args.relay,
                "could not read the relay's identity; nothing changed",
                e,
            )
        })?;
    let fingerprint = card.fingerprint();
    if let Some(expected) = &args.fingerprint {
        if !same_fingerprint(expected, &fingerprint) {
            bail!(
                "the relay at {} shows fingerprint {fingerprint}, not {expected}: it is not the relay its operator described; nothing changed",
                args.relay
            );
        }
    }
    let mut client = crate::relay::client(&args.server)?;
    rt.block_on(net::add_replica(
        &mut client,
        &mut profile,
        &card,
        &args.label,
    ))
    .map_err(|e| {
        output::relay_error(
            &args.server,
            "naming the replica failed; nothing changed (run `satchel replica add` again)",
            e,
        )
    })?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "identity": card.id(),
                "name": card.display_name,
                "fingerprint": fingerprint,
                "label": args.label,
                "relay": args.relay.to_string(),
            }))?
        );
        return Ok(());
    }
    outln!(
        "{} ({}) at {} is now a replica of the record: it holds and forwards the record's ciphertext, never a key.",
        card.display_name,
        args.label,
        args.relay
    );
    outln!("Fingerprint: {fingerprint}");
    if args.fingerprint.is_none() {
        outln!("Check this fingerprint with the relay's operator; `satchel revoke \"{}\"` removes the replica.", args.label);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::same_fingerprint;

    #[test]
    fn fingerprints_compare_as_read_out() {
        assert!(same_fingerprint("3f2a-91c0 aa", "3F2A91C0AA"));
        assert!(!same_fingerprint("3F2A91C0AA", "3F2A91C0AB"));
    }
}
