//! `satchel nearby`: direct sync with members' devices on the local network,
//! no relay: `listen` (show a pairing code, advertise, serve), `sync` (with
//! a code, or with the members' devices mDNS finds) and `discover` (mDNS,
//! `satchel_core::nearby::discovery`).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use satchel_core::nearby::discovery::{self, discovery_key_for, NearbyDevice};
use satchel_core::nearby::net::{connect_to_with_progress, local_address, serve_one_with_progress};
use satchel_core::nearby::pairing::PairingCode;
use satchel_core::nearby::session::{DirectReport, Pairing, Progress};
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
    /// Show a pairing code (text and QR code) and serve one direct sync:
    /// with the device that scans the code, or (with --advertise) with a
    /// member's device that finds this one by mDNS.
    #[command(
        after_help = "Example:\n  satchel nearby listen\n  satchel nearby listen --advertise --timeout 600\n  # on the other device: satchel nearby sync satchel-nearby:192.168.1.20:50123/…"
    )]
    Listen(ListenArgs),
    /// Sync directly, once: with the device whose pairing code is given, or
    /// without one, with every nearby device of this record's members that
    /// mDNS finds.
    #[command(
        after_help = "Example:\n  satchel nearby sync satchel-nearby:192.168.1.20:50123/5b31…/9f0c…\n  satchel nearby sync --json"
    )]
    Sync(SyncArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// The record to serve (its id or a prefix; default: this home's own).
    #[arg(long)]
    pub record: Option<String>,
    /// Where to listen (default: every interface, a free port).
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: std::net::SocketAddr,
    /// The address to put in the pairing code (default: this machine's
    /// address on its default route, else 127.0.0.1).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// Also advertise on the local network (mDNS, an opaque name only
    /// members recognise) and serve members' devices without the code.
    #[arg(long)]
    pub advertise: bool,
    /// How long to wait for the other device, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    /// Print JSON on stdout (the code first, then the result) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// The code `satchel nearby listen` shows (without it: mDNS).
    pub code: Option<String>,
    /// The record to sync (its id or a prefix; default: this home's own).
    #[arg(long)]
    pub record: Option<String>,
    /// How long to look for devices by mDNS (without a code), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub timeout: u64,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
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
        Command::Listen(args) => listen(home_dir, args),
        Command::Sync(args) => sync(home_dir, args),
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

/// A peer silent this long mid-session ends its connection.
const STALL: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The pairing code as a QR code of terminal characters.
fn qr_text(code: &str) -> Result<String> {
    let qr = qrcode::QrCode::new(code.as_bytes()).context("cannot draw the pairing code")?;
    Ok(qr
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// A fork of the access log seen in an earlier direct sync stays visible
/// until it is resolved (on stderr, so `--json` output stays clean).
fn warn_fork(profile: &HomeProfile) -> Result<()> {
    if let Some(fork) = profile.access_fork()? {
        let who = profile
            .members()
            .card(&fork.peer)
            .map_or_else(|| fork.peer.short(), |c| c.display_name.clone());
        eprintln!(
            "warning: this record's access log diverged from {who}'s on {} (a fork: {} statements here, {} there); direct sync with that device is refused until it is resolved",
            output::format_ms(fork.at_ms),
            fork.ours,
            fork.theirs
        );
    }
    Ok(())
}

/// Large transfers: how many changes and bytes have arrived so far.
fn show_progress(spinner: Option<&indicatif::ProgressBar>, p: Progress) {
    if let Some(s) = spinner {
        s.set_message(format!(
            "Received {} change(s), {}",
            p.envelopes,
            indicatif::HumanBytes(p.bytes)
        ));
    }
}

fn report_json(r: &DirectReport) -> serde_json::Value {
    json!({
        "peer": {
            "identity": r.peer.id(),
            "name": r.peer.display_name,
            "fingerprint": r.peer.fingerprint(),
        },
        "in_sync": r.in_sync,
        "statements_learned": r.statements_learned,
        "sent": r.sent,
        "received": {"stored": r.merged, "known": r.known, "refused": r.refused},
        "bytes": {"sent": r.bytes_sent, "received": r.bytes_received},
    })
}

fn report_text(r: &DirectReport) -> String {
    let who = format!("{} ({})", r.peer.display_name, r.peer.fingerprint());
    if r.in_sync {
        return format!("Already in sync with {who}.");
    }
    let mut text = format!(
        "Synced directly with {who}: received {} new change(s){}, sent {}.",
        r.merged,
        if r.known > 0 {
            format!(" ({} already here)", r.known)
        } else {
            String::new()
        },
        r.sent
    );
    if r.statements_learned > 0 {
        text.push_str(&format!(
            " Learned {} access change(s).",
            r.statements_learned
        ));
    }
    if r.refused > 0 {
        text.push_str(&format!(
            " Refused {} change(s) that failed the checks (not stored).",
            r.refused
        ));
    }
    text
}

fn listen(home_dir: Option<PathBuf>, args: ListenArgs) -> Result<()> {
    let mut profile = home::open_record(home_dir, args.record.as_deref())?;
    warn_fork(&profile)?;
    let listener = std::net::TcpListener::bind(args.bind)
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let port = listener.local_addr()?.port();
    let address = args.address.unwrap_or_else(local_address);
    let code = PairingCode::new(
        std::net::SocketAddr::new(address, port),
        profile.device_id(),
    )
    .context("cannot make a pairing code")?;
    let advertiser = if args.advertise {
        let key = discovery_key_for(&profile.record_id(), &profile.creator())
            .context("cannot derive the record's discovery key")?;
        let me = discovery::DeviceAdvert {
            identity: profile.device_id(),
            name: profile.identity_card().display_name.clone(),
        };
        Some(
            discovery::Advertiser::start(&[(key, me)], port, now_ms())
                .context("cannot advertise on the local network")?,
        )
    } else {
        None
    };
    if args.json {
        outln!("{}", json!({"code": code.to_string(), "port": port}));
    } else {
        outln!("Pairing code (scan the QR code or paste the text on the other device):\n");
        outln!("{}", qr_text(&code.to_string())?);
        outln!("  {code}\n");
        outln!(
            "This device: {} ({})",
            profile.identity_card().display_name,
            profile.identity_card().fingerprint()
        );
    }
    let pairing = Pairing {
        token: (!args.advertise).then_some(code.token),
        device: None,
    };
    let spinner = (!args.json).then(|| output::spinner("Waiting for the other device"));
    let deadline = std::time::Instant::now() + Duration::from_secs(args.timeout);
    let served = serve_one_with_progress(
        &mut profile,
        &listener,
        pairing,
        STALL,
        deadline,
        now_ms,
        |e| eprintln!("a connection failed: {e} (still listening)"),
        &mut |p| show_progress(spinner.as_ref(), p),
    );
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    if let Some(a) = advertiser {
        a.stop()
            .context("cannot withdraw the local-network advert")?;
    }
    let Some(report) = served.context("the listener failed")? else {
        bail!(
            "no device synced within {} s (nothing was changed)",
            args.timeout
        );
    };
    if args.json {
        outln!("{}", report_json(&report));
    } else {
        outln!("{}", report_text(&report));
    }
    Ok(())
}

fn sync(home_dir: Option<PathBuf>, args: SyncArgs) -> Result<()> {
    let mut profile = home::open_record(home_dir, args.record.as_deref())?;
    warn_fork(&profile)?;
    let mut reports = Vec::new();
    match &args.code {
        Some(text) => {
            let code: PairingCode = text.parse()?;
            let spinner = (!args.json).then(|| output::spinner("Syncing directly"));
            let result = connect_to_with_progress(
                &mut profile,
                code.addr,
                code.pairing(),
                STALL,
                now_ms(),
                &mut |p| show_progress(spinner.as_ref(), p),
            );
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            reports.push(result.context("the direct sync failed (nothing was changed)")?);
        }
        None => {
            let key = discovery_key_for(&profile.record_id(), &profile.creator())
                .context("cannot derive the record's discovery key")?;
            let spinner = (!args.json).then(|| output::spinner("Looking for nearby devices"));
            let found = discovery::browse(
                &[(profile.record_id(), key)],
                Duration::from_secs(args.timeout),
            );
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            let found = found.context("cannot look for nearby devices on this network")?;
            let me = profile.device_id();
            let peers: Vec<_> = found
                .into_iter()
                .filter(|d| d.device.identity != me)
                .collect();
            if peers.is_empty() {
                bail!(
                    "no nearby device of this record answered in {} s (run `satchel nearby listen --advertise` on it, or use its pairing code)",
                    args.timeout
                );
            }
            for peer in peers {
                let Some(ip) = preferred(&peer.addresses).copied() else {
                    continue;
                };
                let spinner = (!args.json)
                    .then(|| output::spinner(&format!("Syncing with {}", peer.device.name)));
                let result = connect_to_with_progress(
                    &mut profile,
                    std::net::SocketAddr::new(ip, peer.port),
                    Pairing {
                        token: None,
                        device: Some(peer.device.identity),
                    },
                    STALL,
                    now_ms(),
                    &mut |p| show_progress(spinner.as_ref(), p),
                );
                if let Some(s) = spinner {
                    s.finish_and_clear();
                }
                match result {
                    Ok(r) => reports.push(r),
                    Err(e) => eprintln!("{}: {e}", peer.device.name),
                }
            }
            if reports.is_empty() {
                bail!("no nearby device could be synced with (nothing was changed)");
            }
        }
    }
    if args.json {
        let out: Vec<_> = reports.iter().map(report_json).collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for r in &reports {
            outln!("{}", report_text(r));
        }
    }
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
