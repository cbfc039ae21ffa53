//! `satchel sync`, `satchel link-device` and `satchel join-device`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use satchel_core::crypto::{Identity, Role};
use satchel_core::profile::{Profile, Unlock};
use satchel_core::store::SqliteStore;
use satchel_core::sync::engine::RoundReport;
use satchel_core::sync::link::{self, LinkCode};
use satchel_core::sync::RelayClient;

use crate::home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The relay, e.g. http://127.0.0.1:8787
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: String,
    /// Stay connected and sync whenever the relay reports a change.
    #[arg(long)]
    pub watch: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LinkArgs {
    /// The relay, e.g. http://127.0.0.1:8787
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: String,
    /// How long to wait for the new device, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
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

fn print_report(report: &RoundReport, json: bool) {
    if json {
        let out = serde_json::json!({
            "uploaded": report.uploaded,
            "pulled": report.pulled,
            "merged": report.merged,
            "refused": report.refused,
            "sections": report.sections_pulled,
            "snapshots_uploaded": report.snapshots_uploaded,
            "retries": report.retries,
        });
        println!("{out}");
    } else {
        println!(
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
                format!(" ({})", report.sections_pulled.join(", "))
            },
            if report.snapshots_uploaded > 0 {
                format!(", {} snapshot(s) uploaded", report.snapshots_uploaded)
            } else {
                String::new()
            }
        );
    }
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    // Invites approved since `satchel accept` become shared records.
    super::share::finish_accepts(&dir, Duration::ZERO)?;
    let mut all = home::open_all(Some(dir))?;
    let mut profile = all.remove(0);
    let mut client = RelayClient::new(&args.server)?;
    let rt = runtime()?;
    for other in &mut all {
        let mut client = RelayClient::new(&args.server)?;
        match rt.block_on(client.sync(other)) {
            Ok(report) => print_report(&report, args.json),
            Err(e) if e.to_string().contains("403") || e.to_string().contains("forbidden") => {
                eprintln!(
                    "Your access to {}'s record has ended (revoked or expired). What you saw before stays on this device and is no longer updated.",
                    other.owner_name()
                );
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("sync of {}'s record failed", other.owner_name())))
            }
        }
    }
    rt.block_on(async {
        let shared = !profile.is_owner_device();
        let report = client.sync(&mut profile).await.with_context(|| {
            if shared {
                format!(
                    "sync of {}'s record failed (a 403 means your access has ended: revoked or expired; what you saw stays on this device)",
                    profile.owner_name()
                )
            } else {
                "sync failed".to_string()
            }
        })?;
        print_report(&report, args.json);
        if !args.watch {
            return Ok(());
        }
        let mut delay = Duration::from_millis(500);
        loop {
            match client.subscribe(profile.record_id()).await {
                Ok(changes) => {
                    let mut changes = std::pin::pin!(changes);
                    delay = Duration::from_millis(500);
                    eprintln!("Watching for changes (Ctrl-C to stop)");
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
                            Ok(report) => print_report(&report, args.json),
                            Err(e) => eprintln!("sync failed: {e}"),
                        }
                    }
                }
                Err(e) => eprintln!("push channel unavailable ({e}); retrying"),
            }
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
            profile.refresh()?;
            if let Ok(report) = client.sync(&mut profile).await {
                print_report(&report, args.json);
            }
        }
    })
}

pub fn run_link(home_dir: Option<PathBuf>, args: LinkArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let mut client = RelayClient::new(&args.server)?;
    runtime()?.block_on(async {
        let code = link::offer(&mut client, &mut profile)
            .await
            .context("could not create the link on the relay")?;
        println!("On the new device run:\n");
        println!("  satchel --home NEW_HOME join-device {}\n", code.encode());
        println!("Waiting for the new device (up to {} s)...", args.timeout);
        let card = link::complete(
            &mut client,
            &mut profile,
            &code,
            Duration::from_secs(args.timeout),
        )
        .await
        .context("linking failed")?;
        println!(
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
    let code = LinkCode::parse(&args.code)?;
    let pass = home::passphrase(true)?;
    if pass.is_empty() {
        bail!("the passphrase is empty; choose one (nothing was created)");
    }
    let identity = Identity::generate("Patient device", Role::PatientDevice, None)?;
    let mut client = RelayClient::new(&code.relay)?;
    runtime()?.block_on(async {
        println!("Joining record {} through {}", code.record_id, code.relay);
        let bundle = link::join(
            &mut client,
            &identity,
            &code,
            Duration::from_secs(args.timeout),
        )
        .await
        .context("joining failed")?;
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
            .context("first sync failed")?;
        println!(
            "Joined as device {} (fingerprint {}).",
            profile.device_id(),
            profile.identity_card().fingerprint()
        );
        print_report(&report, false);
        Ok(())
    })
}
