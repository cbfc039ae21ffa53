//! `satchel nearby`: direct sync with members' devices on the local network,
//! no relay. This file owns the subcommand group and `discover` (mDNS,
//! `satchel_core::nearby::discovery`); `listen` and `sync` join it here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use satchel_core::nearby::discovery::{self, discovery_key_for, NearbyDevice};
use serde_json::json;

use crate::home::{self, HomeProfile};
use crate::output;

/// Longest browse `--timeout` accepts, in seconds.
const MAX_TIMEOUT: u64 = 600;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List nearby devices of the members of this home's records (mDNS on
    /// the local network): device name, fingerprint, record, address.
    #[command(
        after_help = "Example:\n  satchel nearby discover\n  satchel nearby discover --timeout 10 --json\n\nOnly members of a record can recognise its devices' adverts; the name and\nfingerprint shown are what the device says until a direct sync proves them."
    )]
    Discover(DiscoverArgs),
}

#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// How long to listen for adverts, in seconds (1 to 600).
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub timeout: u64,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Discover(args) => discover(home_dir, args),
    }
}

/// One device found, with what this home knows about it.
struct Row<'a> {
    device: NearbyDevice,
    profile: &'a HomeProfile,
    /// The fingerprint of the identity card the record's access log holds
    /// for the advertised identity, if it holds one.
    fingerprint: Option<String>,
}

/// `ip:port`, with IPv6 in brackets.
fn socket_text(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The address to show first: IPv4 before IPv6 (a link-local IPv6 address
/// needs its interface to be dialled).
fn preferred(addresses: &[IpAddr]) -> Option<&IpAddr> {
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addresses.first())
}

fn discover(home_dir: Option<PathBuf>, args: DiscoverArgs) -> Result<()> {
    if !(1..=MAX_TIMEOUT).contains(&args.timeout) {
        bail!("--timeout is in seconds, from 1 to {MAX_TIMEOUT}");
    }
    let profiles = home::open_all(home_dir)?;
    let mut keys = Vec::with_capacity(profiles.len());
    for profile in &profiles {
        let key = discovery_key_for(&profile.record_id(), &profile.creator())
            .context("cannot derive a record's discovery key")?;
        keys.push((profile.record_id(), key));
    }
    let spinner = output::spinner("Looking for nearby devices");
    let found = discovery::browse(&keys, Duration::from_secs(args.timeout));
    spinner.finish_and_clear();
    let found = found.context("cannot look for nearby devices on this network")?;

    let mut rows = Vec::new();
    for device in found {
        let Some(profile) = profiles.iter().find(|p| p.record_id() == device.record) else {
            continue;
        };
        // This home's own adverts (a `nearby listen` of the same home).
        if device.device.identity == profile.device_id() {
            continue;
        }
        let fingerprint = profile
            .members()
            .card(&device.device.identity)
            .map(|card| card.fingerprint());
        rows.push(Row {
            device,
            profile,
            fingerprint,
        });
    }

    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "record": r.device.record,
                    "owner": r.profile.owner_name(),
                    "device": {
                        "identity": r.device.device.identity,
                        "name": r.device.device.name,
                    },
                    "fingerprint": r.fingerprint,
                    "member": r.fingerprint.is_some(),
                    "addresses": r.device.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "port": r.device.port,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "No nearby device of this home's records answered in {} s (the other device must be on this network with `satchel nearby listen` running).",
            args.timeout
        );
        return Ok(());
    }
    let mut table = output::table(&["DEVICE", "FINGERPRINT", "RECORD", "ADDRESS"]);
    output::keep_whole(&mut table, &[1, 3]);
    for r in &rows {
        let fingerprint = r.fingerprint.clone().unwrap_or_else(|| {
            format!(
                "not in the access log (id {})",
                r.device.device.identity.short()
            )
        });
        let record = format!(
            "{} ({})",
            r.profile.owner_name(),
            &r.device.record.to_hex()[..8]
        );
        let address = preferred(&r.device.addresses).map_or_else(
            || "no address".to_string(),
            |ip| socket_text(ip, r.device.port),
        );
        table.add_row(vec![
            r.device.device.name.clone(),
            fingerprint,
            record,
            address,
        ]);
    }
    outln!("{table}");
    outln!("Compare a fingerprint with the one the other device shows (`satchel whoami`) before trusting its name.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_as_dialable_text_ipv4_first() {
        let v6 = IpAddr::from([0xfe80u16, 0, 0, 0, 0, 0, 0, 1]);
        let v4: IpAddr = IpAddr::from([10, 0, 0, 7]);
        assert_eq!(preferred(&[v6, v4]), Some(&v4));
        assert_eq!(preferred(&[v6]), Some(&v6));
        assert_eq!(preferred(&[]), None);
        assert_eq!(socket_text(&v4, 4000), "10.0.0.7:4000");
        assert_eq!(socket_text(&v6, 4000), "[fe80::1]:4000");
    }
}
