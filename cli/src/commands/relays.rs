//! `satchel relays add|remove|list|move`: the relays the record syncs with
//! (an ordered list in the profile; `satchel sync` without `--server` uses
//! each in turn), and moving the record to another relay.
//!
//! A move names the new relay in the access log, copies the log to it,
//! uploads everything this device holds until the new relay has
//! acknowledged every envelope, and only then retires the old relay in the
//! log (the old relay refuses the record from then on) and puts the new
//! relay in the old one's place in the list. Every step can be run again:
//! an interrupted move finishes when `satchel relays move` is run again.

use std::path::PathBuf;

use anyhow::{bail, Result};
use satchel_core::crypto::IdentityCard;
use satchel_core::sync::{moving, sharing as net, RelayUrl};
use serde_json::json;

use crate::{home, output};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a relay at the end of the list.
    Add(UrlArgs),
    /// Take a relay off the list (nothing changes on the relay).
    Remove(UrlArgs),
    /// The relays in order, with what each has not acknowledged yet.
    List(ListArgs),
    /// Move the record to another relay: upload everything there, then
    /// retire the old relay.
    Move(MoveArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel relays add https://relay.example")]
pub struct UrlArgs {
    /// The relay's address, e.g. https://relay.example (plain http:// only
    /// to this machine).
    pub relay: RelayUrl,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel relays list\n  satchel relays list --json")]
pub struct ListArgs {
    /// Print JSON on stdout (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel relays move --to https://relay.new.example --fingerprint 3F2A-91C0-...\n  satchel relays move --from https://relay.old.example --to https://relay.new.example"
)]
pub struct MoveArgs {
    /// The relay to move the record to.
    #[arg(long)]
    pub to: RelayUrl,
    /// The relay the record moves away from (default: the first listed).
    #[arg(long)]
    pub from: Option<RelayUrl>,
    /// The fingerprint the new relay's operator read out: refuse the relay
    /// if its card does not have it.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Add(args) => run_add(home_dir, args),
        Command::Remove(args) => run_remove(home_dir, args),
        Command::List(args) => run_list(home_dir, args),
        Command::Move(args) => run_move(home_dir, args),
    }
}

fn run_add(home_dir: Option<PathBuf>, args: UrlArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let added = profile.add_relay(&args.relay)?;
    let count = profile.relays()?.len();
    if args.json {
        outln!(
            "{}",
            json!({"relay": args.relay.as_str(), "added": added, "relays": count})
        );
    } else if added {
        outln!(
            "Added {} ({count} relay(s)); `satchel sync` now syncs with it too.",
            args.relay
        );
    } else {
        outln!("{} is listed already; nothing changed.", args.relay);
    }
    Ok(())
}

fn run_remove(home_dir: Option<PathBuf>, args: UrlArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let waiting = profile.waiting_for(args.relay.as_str())?;
    if !profile.remove_relay(&args.relay)? {
        bail!(
            "{} is not in the list (see `satchel relays list`); nothing changed",
            args.relay
        );
    }
    if args.json {
        outln!(
            "{}",
            json!({"relay": args.relay.as_str(), "removed": true, "unsent": waiting})
        );
        return Ok(());
    }
    outln!(
        "Removed {} from the list; the relay still holds what it has (`satchel relays move` retires a relay).",
        args.relay
    );
    if waiting > 0 {
        outln!("{waiting} local change(s) never reached it; the other relays still get them.");
    }
    Ok(())
}

fn run_list(home_dir: Option<PathBuf>, args: ListArgs) -> Result<()> {
    let profile = home::open(home_dir)?;
    let current = profile.current_relay()?;
    let mut rows = Vec::new();
    for (i, relay) in profile.relays()?.iter().enumerate() {
        rows.push((
            i + 1,
            relay.to_string(),
            profile.waiting_for(relay.as_str())?,
            current.as_deref() == Some(relay.as_str()),
        ));
    }
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(n, relay, waiting, last)| {
                json!({"position": n, "relay": relay, "unsent": waiting, "synced_last": last})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "No relays listed. Add one with `satchel relays add URL` (or sync with --server URL)."
        );
        return Ok(());
    }
    let mut table = output::table(&["#", "Relay", "Not yet sent", "Synced last"]);
    for (n, relay, waiting, last) in rows {
        table.add_row(vec![
            n.to_string(),
            relay,
            waiting.to_string(),
            if last { "yes".into() } else { String::new() },
        ]);
    }
    output::keep_whole(&mut table, &[1]);
    outln!("{table}");
    Ok(())
}

/// The card a relay shows, checked (and compared with `fingerprint`).
fn relay_card(
    rt: &tokio::runtime::Runtime,
    relay: &RelayUrl,
    fingerprint: Option<&str>,
) -> Result<IdentityCard> {
    let mut client = crate::relay::client(relay)?;
    let card = rt.block_on(net::relay_identity(&mut client)).map_err(|e| {
        output::relay_error(
            relay,
            "could not read the relay's identity; nothing changed",
            e,
        )
    })?;
    if let Some(expected) = fingerprint {
        let shown = card.fingerprint();
        if !super::replica::same_fingerprint(expected, &shown) {
            bail!(
                "the relay at {relay} shows fingerprint {shown}, not {expected}: it is not the relay its operator described; nothing changed"
            );
        }
    }
    Ok(card)
}

fn run_move(home_dir: Option<PathBuf>, args: MoveArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.is_creator() {
        bail!("run the move on the device that created the record: it is the record's root of trust, and only it can register the record with a new relay");
    }
    let from = match args.from.clone() {
        Some(from) => from,
        None => match profile.relays()?.into_iter().next() {
            Some(first) => first,
            None => bail!(
                "no relay to move from: name it with --from URL (or add it with `satchel relays add URL`)"
            ),
        },
    };
    if from == args.to {
        bail!("the record is already on {}; nothing changed", args.to);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let new_card = relay_card(&rt, &args.to, args.fingerprint.as_deref())?;
    let old_card = relay_card(&rt, &from, None)?;
    let mut old = crate::relay::client(&from)?;
    let mut new = crate::relay::client(&args.to)?;
    // A move that already retired the old relay only has the last step
    // left (telling the old relay).
    let retired = profile.members().relay_serves(&old_card.id()).is_err();
    let mut uploaded = moving::Uploaded::default();
    if !retired {
        let spinner = output::slow_spinner(&format!("Naming {} in the access log", args.to));
        let named = rt.block_on(moving::name_new_relay(
            &mut old,
            &mut profile,
            &new_card,
            args.to.as_str(),
        ));
        spinner.finish_and_clear();
        named.map_err(|e| {
            output::relay_error(
                &from,
                "could not name the new relay in the access log; nothing moved (run the move again)",
                e,
            )
        })?;
        rt.block_on(moving::copy_access_log(&mut new, &mut profile))
            .map_err(|e| {
                output::relay_error(
                    &args.to,
                    "could not copy the access log to the new relay; the record stays where it is (run the move again)",
                    e,
                )
            })?;
        let bar = output::slow_bar(&format!("Uploading to {}", args.to), 0, false);
        let result = rt.block_on(moving::upload_everything(
            &mut new,
            &mut profile,
            &mut |done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            },
        ));
        bar.finish_and_clear();
        uploaded = result.map_err(|e| {
            output::relay_error(
                &args.to,
                "the upload stopped; the record stays on the old relay (run the move again to finish)",
                e,
            )
        })?;
        if uploaded.left > 0 {
            bail!(
                "{} has not acknowledged {} envelope(s) yet; the record stays on {from} (run the move again to finish)",
                args.to,
                uploaded.left
            );
        }
    }
    let told = rt
        .block_on(moving::retire_old_relay(
            &mut old,
            &mut new,
            &mut profile,
            &old_card,
            &new_card,
        ))
        .map_err(|e| {
            output::relay_error(
                &args.to,
                "everything is on the new relay, but retiring the old one failed (run the move again to finish)",
                e,
            )
        })?;
    profile.replace_relay(&from, &args.to)?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "from": from.as_str(),
                "to": args.to.as_str(),
                "fingerprint": new_card.fingerprint(),
                "uploaded": uploaded.envelopes,
                "rounds": uploaded.rounds,
                "old_relay_refuses": told,
            }))?
        );
    } else {
        outln!(
            "Moved the record from {from} to {} (fingerprint {}): {} envelope(s) uploaded, every one acknowledged.",
            args.to,
            new_card.fingerprint(),
            uploaded.envelopes
        );
        if told {
            outln!("{from} is retired in the access log and refuses the record from now on.");
        } else {
            outln!("{from} could not be reached to be told; run `satchel relays move --from {from} --to {}` again when it can.", args.to);
        }
    }
    if !told {
        bail!("the old relay has not been told yet (see above)");
    }
    Ok(())
}
