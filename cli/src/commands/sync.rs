//! `satchel sync`, `satchel link-device` and `satchel join-device`.
//!
//! `satchel sync --server URL` syncs every record of the home with that
//! relay; without `--server` (and SATCHEL_SERVER) each record syncs with
//! every relay its profile lists (`satchel relays`), in order, and a relay
//! that cannot be reached does not stop the others.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use satchel_core::crypto::{Identity, Role};
use satchel_core::profile::{Profile, Unlock};
use satchel_core::store::SqliteStore;
use satchel_core::sync::engine::RoundReport;
use satchel_core::sync::link::{self, LinkCode};
use satchel_core::sync::transport::RECORD_MOVED;
use satchel_core::sync::{RelayUrl, SyncError, TransportError};

use crate::{home, output};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel sync --server http://127.0.0.1:8787\n  SATCHEL_SERVER=https://relay.example satchel sync --watch\n  satchel sync --server http://127.0.0.1:8787 --json\n  satchel sync   # every relay in `satchel relays list`, in order"
)]
pub struct Args {
    /// The relay, e.g. https://relay.example (plain http:// only to this
    /// machine). Without it, every relay the record lists (`satchel relays`).
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: Option<RelayUrl>,
    /// Stay connected and sync whenever the relay reports a change.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel --home ~/satchel link-device --server http://127.0.0.1:8787\n  # then, on the new device, run the join-device command it prints"
)]
pub struct LinkArgs {
    /// The relay, e.g. https://relay.example (plain http:// only to this machine)
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// How long to wait for the new device, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel --home ~/laptop join-device satchel-link:eyJyZWxheSI6..."
)]
pub struct JoinArgs {
    /// The code printed by `satchel link-device` on the existing device.
    pub code: String,
    /// How long to wait for the existing device, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A round's report as JSON (`record` names the record when the home holds
/// several), with what is known to be missing.
fn report_json(
    report: &RoundReport,
    record: Option<(String, &str)>,
    completeness: &output::Completeness,
) -> serde_json::Value {
    let mut out = serde_json::json!({
        "uploaded": report.uploaded,
        "pulled": report.pulled,
        "merged": report.merged,
        "refused": report.refused,
        "sections": report.sections_pulled,
        "snapshots_uploaded": report.snapshots_uploaded,
        "retries": report.retries,
        "set_aside": completeness.set_aside,
        "incomplete": completeness.incomplete,
        "complete": completeness.incomplete.is_empty(),
    });
    if let (Some((id, owner)), Some(o)) = (record, out.as_object_mut()) {
        o.insert("record_id".into(), id.into());
        o.insert("owner".into(), owner.into());
    }
    out
}

/// Print a round's report; say on stderr what is known to be missing (and
/// what was set aside). Returns whether the record is complete here.
fn print_report(profile: &home::HomeProfile, report: &RoundReport, json: bool) -> Result<bool> {
    let completeness = output::Completeness::of(profile)?;
    for line in &completeness.lines {
        eprintln!("{line}");
    }
    if json {
        outln!("{}", report_json(report, None, &completeness));
    } else {
        outln!(
            "Synced: {} sent, {} new from other devices{}{}{}",
            report.uploaded,
            report.merged,
            if report.refused > 0 {
                format!(
                    ", {} refused (not merged: failed verification)",
                    report.refused
                )
            } else {
                String::new()
            },
            if report.merged == 0 || report.sections_pulled.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    report
                        .sections_pulled
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if report.snapshots_uploaded > 0 {
                format!(", {} snapshot(s) uploaded", report.snapshots_uploaded)
            } else {
                String::new()
            }
        );
    }
    Ok(completeness.incomplete.is_empty())
}

/// The error a sync ends with when the record is known to be incomplete.
fn incomplete_error() -> anyhow::Error {
    anyhow::anyhow!("the record on this device is incomplete (see the lines above): the relay has not delivered every change; they are fetched without further action once it does, so sync again later, and if this persists ask the relay's operator")
}

/// Whether a sync failure is the relay refusing this identity (access
/// revoked or expired; not a record that moved to another relay).
fn access_ended(err: &TransportError) -> bool {
    match err {
        TransportError::Sync(SyncError::Refused { code, .. }) if code == RECORD_MOVED => false,
        TransportError::Sync(SyncError::Refused { status, code, .. }) => {
            matches!(status, 401 | 403) || code == "forbidden"
        }
        _ => false,
    }
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    // Invites approved since `satchel accept` become shared records.
    super::share::finish_accepts(&dir, Duration::ZERO, args.json)?;
    let Some(server) = args.server.clone() else {
        return run_listed(dir, &args);
    };
    let mut all = home::open_all(Some(dir))?;
    let several = all.len() > 1;
    let mut client = crate::relay::client(&server)?;
    let rt = runtime()?;
    // With --json and several records, one array of reports (one per record).
    let mut reports = Vec::new();
    let mut complete = true;
    let mut profile = all.remove(0);
    for other in &mut all {
        let mut client = crate::relay::client(&server)?;
        let spinner = output::slow_spinner(&format!(
            "Syncing {}'s record with {server}",
            other.owner_name()
        ));
        let result = rt.block_on(client.sync(other));
        spinner.finish_and_clear();
        match result {
            Ok(report) if args.json => {
                let completeness = output::Completeness::of(other)?;
                for line in &completeness.lines {
                    eprintln!("{line}");
                }
                complete &= completeness.incomplete.is_empty();
                reports.push(report_json(
                    &report,
                    Some((other.record_id().to_string(), other.owner_name())),
                    &completeness,
                ))
            }
            Ok(report) => complete &= print_report(other, &report, false)?,
            Err(e) if access_ended(&e) => {
                eprintln!(
                    "Your access to {}'s record has ended (revoked or expired). What you saw before stays on this device and is no longer updated.",
                    other.owner_name()
                );
            }
            Err(e) => {
                return Err(output::relay_error(
                    &server,
                    &format!("could not sync {}'s record", other.owner_name()),
                    e,
                ))
            }
        }
    }
    rt.block_on(async {
        let shared = !profile.is_owner_device();
        let spinner = output::slow_spinner(&format!("Syncing with {server}"));
        let result = client.sync(&mut profile).await;
        spinner.finish_and_clear();
        let report = result.map_err(|e| {
            let doing = if shared {
                format!(
                    "could not sync {}'s record (a 403 means your access has ended: revoked or expired; what you saw stays on this device)",
                    profile.owner_name()
                )
            } else {
                "could not sync (local changes stay queued and are sent next time)".to_string()
            };
            output::relay_error(&server, &doing, e)
        })?;
        if args.json && several {
            let completeness = output::Completeness::of(&profile)?;
            for line in &completeness.lines {
                eprintln!("{line}");
            }
            complete &= completeness.incomplete.is_empty();
            reports.insert(
                0,
                report_json(
                    &report,
                    Some((profile.record_id().to_string(), profile.owner_name())),
                    &completeness,
                ),
            );
            outln!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            complete &= print_report(&profile, &report, args.json)?;
        }
        if !args.watch {
            return if complete { Ok(()) } else { Err(incomplete_error()) };
        }
        let mut delay = Duration::from_millis(500);
        loop {
            match client.subscribe(profile.record_id()).await {
                Ok(changes) => {
                    let mut changes = std::pin::pin!(changes);
                    delay = Duration::from_millis(500);
                    eprintln!("Watching for changes (Ctrl-C to stop)");
                    // Subscribed first, then one round: nothing stored while
                    // the channel was down is missed.
                    profile.refresh()?;
                    if let Ok(report) = client.sync(&mut profile).await {
                        print_report(&profile, &report, args.json)?;
                    }
                    loop {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => return Ok(()),
                            next = changes.next() => match next {
                                Some(_) => {}
                                None => break,
                            },
                            // Also pick up changes made locally by other processes.
                            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        }
                        profile.refresh()?;
                        match client.sync(&mut profile).await {
                            Ok(report) => {
                                print_report(&profile, &report, args.json)?;
                            }
                            Err(e) => eprintln!(
                                "sync failed: {}",
                                output::one_line(&output::relay_error(&server, "will retry", e))
                            ),
                        }
                    }
                }
                Err(e) => eprintln!(
                    "push channel unavailable ({}); retrying",
                    output::one_line(&output::relay_error(&server, "subscribe", e))
                ),
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
            profile.refresh()?;
            if let Ok(report) = client.sync(&mut profile).await {
                print_report(&profile, &report, args.json)?;
            }
        }
    })
}

/// How one relay's round went, for [`run_listed`].
enum RelayOutcome {
    Synced(RoundReport),
    /// Not reached (offline, refused, moved): why, in one line.
    Failed(String),
}

/// `satchel sync` without `--server`: every record of the home with every
/// relay its profile lists, in order. Succeeds when each record reached at
/// least one of its relays.
fn run_listed(dir: PathBuf, args: &Args) -> Result<()> {
    if args.watch {
        bail!("--watch follows one relay: pass --server URL (one of `satchel relays list`)");
    }
    let mut all = home::open_all(Some(dir))?;
    let several = all.len() > 1;
    let rt = runtime()?;
    let mut records = Vec::new();
    let mut unreached = Vec::new();
    let mut complete = true;
    for profile in &mut all {
        let relays = profile.relays()?;
        if relays.is_empty() {
            bail!(
                "{}'s record lists no relay: add one with `satchel relays add URL`, or pass --server URL",
                profile.owner_name()
            );
        }
        let mut outcomes = Vec::new();
        for relay in &relays {
            let mut client = crate::relay::client(relay)?;
            let spinner = output::slow_spinner(&format!("Syncing with {relay}"));
            let result = rt.block_on(client.sync(profile));
            spinner.finish_and_clear();
            let outcome = match result {
                Ok(report) => RelayOutcome::Synced(report),
                Err(e) => RelayOutcome::Failed(output::one_line(&output::relay_error(
                    relay,
                    "not synced",
                    e,
                ))),
            };
            outcomes.push((relay.clone(), outcome));
        }
        if !outcomes
            .iter()
            .any(|(_, o)| matches!(o, RelayOutcome::Synced(_)))
        {
            unreached.push(profile.owner_name().to_string());
        }
        let completeness = output::Completeness::of(profile)?;
        for line in &completeness.lines {
            eprintln!("{line}");
        }
        complete &= completeness.incomplete.is_empty();
        if args.json {
            let per_relay: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|(relay, outcome)| match outcome {
                    RelayOutcome::Synced(report) => serde_json::json!({
                        "relay": relay.as_str(),
                        "reachable": true,
                        "report": report_json(report, None, &completeness),
                    }),
                    RelayOutcome::Failed(why) => serde_json::json!({
                        "relay": relay.as_str(),
                        "reachable": false,
                        "error": why,
                    }),
                })
                .collect();
            records.push(serde_json::json!({
                "record_id": profile.record_id().to_string(),
                "owner": profile.owner_name(),
                "relays": per_relay,
                "complete": completeness.incomplete.is_empty(),
            }));
        } else {
            for (relay, outcome) in &outcomes {
                match outcome {
                    RelayOutcome::Synced(report) => outln!(
                        "{}{relay}: {} sent, {} new from other devices",
                        if several {
                            format!("{}'s record, ", profile.owner_name())
                        } else {
                            String::new()
                        },
                        report.uploaded,
                        report.merged
                    ),
                    RelayOutcome::Failed(why) => eprintln!("{relay}: {why}"),
                }
            }
        }
    }
    if args.json {
        let out = if several {
            serde_json::Value::Array(records)
        } else {
            records.pop().unwrap_or_default()
        };
        outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    if !unreached.is_empty() {
        bail!(
            "no relay could be reached for {}'s record (see above); local changes stay queued and are sent next time",
            unreached.join(", ")
        );
    }
    if complete {
        Ok(())
    } else {
        Err(incomplete_error())
    }
}

pub fn run_link(home_dir: Option<PathBuf>, args: LinkArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let mut client = crate::relay::client(&args.server)?;
    runtime()?.block_on(async {
        let code = link::offer(&mut client, &mut profile)
            .await
            .map_err(|e| output::relay_error(&args.server, "could not create the link", e))?;
        outln!("On the new device run:\n");
        outln!("  satchel --home NEW_HOME join-device {}\n", code.encode()?);
        outln!("Waiting for the new device (up to {} s)...", args.timeout);
        let card = link::complete(
            &mut client,
            &mut profile,
            &code,
            Duration::from_secs(args.timeout),
        )
        .await
        .map_err(|e| {
            output::relay_error(
                &args.server,
                "linking failed (run `satchel link-device` again for a new code)",
                e,
            )
        })?;
        outln!(
            "Linked device {} (fingerprint {}).",
            card.id(),
            card.fingerprint()
        );
        Ok(())
    })
}

pub fn run_join(home_dir: Option<PathBuf>, args: JoinArgs) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    let path = home::db_path(&dir);
    if path.exists() {
        bail!(
            "{} already holds a Satchel profile; join into a new home",
            dir.display()
        );
    }
    let code = LinkCode::parse(&args.code).context(
        "copy the whole code that `satchel link-device` printed on the other device (it starts with satchel-link:)",
    )?;
    let pass = home::passphrase(true)?;
    if pass.is_empty() {
        bail!("the passphrase is empty; choose one (nothing was created)");
    }
    let identity = Identity::generate("Patient device", Role::PatientDevice, None)?;
    let mut client = crate::relay::client_for(&code.relay)?;
    runtime()?.block_on(async {
        outln!("Joining record {} through {}", code.record_id, code.relay);
        let bundle = link::join(
            &mut client,
            &identity,
            &code,
            Duration::from_secs(args.timeout),
        )
        .await
        .map_err(|e| {
            output::relay_error(
                &code.relay,
                "joining failed; nothing was created (run `satchel link-device` again on the other device for a new code)",
                e,
            )
        })?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let store = SqliteStore::open(&path)?;
        let mut profile = Profile::join(
            store,
            Unlock::Passphrase {
                passphrase: pass.as_bytes(),
                params: None,
            },
            identity,
            bundle,
        )?;
        let report = client
            .sync(&mut profile)
            .await
            .map_err(|e| {
                output::relay_error(
                    &code.relay,
                    "joined, but the first sync failed (run `satchel sync` to finish)",
                    e,
                )
            })?;
        outln!(
            "Joined as device {} (fingerprint {}).",
            profile.device_id(),
            profile.identity_card().fingerprint()
        );
        if print_report(&profile, &report, false)? {
            Ok(())
        } else {
            Err(incomplete_error())
        }
    })
}
