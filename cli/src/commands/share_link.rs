//! `satchel share-link create|list|show|revoke` and `satchel
//! emergency-card`: SMART Health Links for people without the app
//! (docs/sharing-links.md).
//!
//! A link is made on this device: a fresh 256-bit id and key, the IPS (or
//! the chosen sections) encrypted as a JWE under the key, hosted blind by
//! the relay. The key leaves this device only inside the link, printed
//! here as the bare `shlink:/` payload, as the relay's viewer URL (the key
//! is in the fragment, which browsers never send) and as a QR code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use satchel_core::profile::share_links::{
    viewer_url, EmergencyParts, ShareContent, ShareLinkOptions, ShareLinkRecord,
};
use satchel_core::record::Section;
use satchel_core::share_link::ShlPayload;
use satchel_core::sync::{share_links as host, RelayUrl};
use serde_json::json;
use zeroize::Zeroizing;

use super::wallet_card;
use crate::home::{self, HomeProfile};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make a link to the summary (or some sections) and show it as a QR code.
    Create(CreateArgs),
    /// This record's links: label, dates, what they show, who opened them.
    List(ListArgs),
    /// Show a link again (payload, viewer URL, QR code).
    Show(ShowArgs),
    /// Revoke a link: it stops working at once.
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RelayArg {
    /// The relay that hosts the link (default: the first relay the record
    /// lists, `satchel relays list`).
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: Option<RelayUrl>,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel share-link create --ips --expires 24h --passcode --label \"For Dr Okafor\"\n  satchel share-link create --sections allergies,medications --live --expires 30d\n  satchel share-link create --ips --once --png summary-qr.png --json\n\nThe passcode is asked for (or read from SATCHEL_LINK_PASSCODE); tell it to the recipient separately."
)]
pub struct CreateArgs {
    /// The International Patient Summary (the default).
    #[arg(long, conflicts_with = "sections")]
    pub ips: bool,
    /// Only these sections (comma-separated), as a collection Bundle.
    #[arg(long, value_delimiter = ',')]
    pub sections: Option<Vec<Section>>,
    /// How long the link works: 90s, 30m, 24h, 7d, 52w, or never.
    #[arg(long, default_value = "24h")]
    pub expires: String,
    /// Protect the link with a passcode (asked for; or SATCHEL_LINK_PASSCODE).
    #[arg(long)]
    pub passcode: bool,
    /// Shown to the recipient before opening (at most 80 characters).
    #[arg(long)]
    pub label: Option<String>,
    /// Keep the files current: every sync replaces them with the record as it is then.
    #[arg(long)]
    pub live: bool,
    /// The link works for one successful open only.
    #[arg(long)]
    pub once: bool,
    /// Also write the QR code as a PNG image.
    #[arg(long)]
    pub png: Option<PathBuf>,
    #[command(flatten)]
    pub relay: RelayArg,
    /// Print JSON on stdout (for scripts) instead of text and a QR code.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel share-link list\n  satchel share-link list --json")]
pub struct ListArgs {
    #[command(flatten)]
    pub relay: RelayArg,
    /// Print JSON on stdout (for scripts) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel share-link show 3f2a91c0 --png card.png")]
pub struct ShowArgs {
    /// The link's id (`satchel share-link list`; 4 or more characters).
    pub id: String,
    /// Also write the QR code as a PNG image.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Print JSON on stdout (for scripts) instead of text and a QR code.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel share-link revoke 3f2a91c0\n  satchel share-link revoke --all    # e.g. after losing a phone\n\nAny owner or manager device revokes any of the record's links: the ids are those of `satchel share-link list`, which lists links made on other devices too."
)]
pub struct RevokeArgs {
    /// The link's id (`satchel share-link list`; 4 or more characters).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every link of the record the relay still serves, made on any device.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub relay: RelayArg,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel emergency-card --png card-qr.png --pdf wallet-card.pdf --svg wallet-card.svg\n  satchel emergency-card --include allergies,medications,blood-group\n  satchel emergency-card --show\n  satchel emergency-card --revoke\n\nThe card is a passcode-free SMART Health Link (flag U) that works until revoked: anyone who scans it reads what it shows. Issuing a new card revokes the old one."
)]
pub struct EmergencyArgs {
    /// What the card shows (comma-separated): allergies, medications,
    /// conditions, blood-group, contact. Default: all of them.
    #[arg(long, value_delimiter = ',')]
    pub include: Option<Vec<EmergencyPart>>,
    /// Show the card issued before instead of issuing a new one.
    #[arg(long, conflicts_with_all = ["revoke", "include"])]
    pub show: bool,
    /// Revoke the card: it stops working at once.
    #[arg(long, conflicts_with = "include")]
    pub revoke: bool,
    /// Also write the QR code as a PNG image.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Also write a printable wallet card (85.6 x 54 mm, SVG) with the QR code.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Also write the wallet card as a one-page PDF of the card's size.
    #[arg(long)]
    pub pdf: Option<PathBuf>,
    #[command(flatten)]
    pub relay: RelayArg,
    /// Print JSON on stdout (for scripts) instead of text and a QR code.
    #[arg(long)]
    pub json: bool,
}

/// One part of the emergency card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmergencyPart {
    Allergies,
    Medications,
    Conditions,
    BloodGroup,
    Contact,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Create(args) => run_create(home_dir, args),
        Command::List(args) => run_list(home_dir, args),
        Command::Show(args) => run_show(home_dir, args),
        Command::Revoke(args) => run_revoke(home_dir, args),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `90s`, `30m`, `24h`, `7d`, `52w` in milliseconds; `never` is `None`.
pub(crate) fn parse_duration(text: &str) -> Result<Option<i64>> {
    let text = text.trim();
    if text == "never" {
        return Ok(None);
    }
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = digits.parse().ok().filter(|n| *n > 0).with_context(|| {
        format!("--expires {text}: use a number and a unit, e.g. 30m, 24h, 7d, 52w, or never")
    })?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => bail!("--expires {text}: the unit must be s, m, h, d or w (e.g. 24h), or say never"),
    };
    Ok(Some(n.saturating_mul(unit_ms)))
}

/// The passcode: SATCHEL_LINK_PASSCODE, or asked for twice.
fn read_passcode() -> Result<Zeroizing<String>> {
    if let Ok(pc) = std::env::var("SATCHEL_LINK_PASSCODE") {
        return Ok(Zeroizing::new(pc));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Passcode for the link: ")
            .context("cannot read the passcode")?,
    );
    let again = Zeroizing::new(
        rpassword::prompt_password("Same passcode again: ").context("cannot read the passcode")?,
    );
    if first != again {
        bail!("the two passcodes differ; no link was made");
    }
    Ok(first)
}

/// The relay to host links: `--server`, else the first the record lists.
pub(crate) fn hosting_relay(profile: &HomeProfile, arg: &RelayArg) -> Result<RelayUrl> {
    if let Some(url) = &arg.server {
        return Ok(url.clone());
    }
    profile.relays()?.into_iter().next().context(
        "no relay to host the link: pass --server URL, or add one with `satchel relays add URL`",
    )
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run_create(home_dir: Option<PathBuf>, args: CreateArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.may_administer() {
        bail!("only the record's owner and managers may make share links (run this in the owner's home)");
    }
    let relay = hosting_relay(&profile, &args.relay)?;
    let now = now_ms();
    let options = ShareLinkOptions {
        content: match &args.sections {
            Some(list) => ShareContent::Sections(list.clone()),
            None => ShareContent::Ips,
        },
        expires_at_ms: parse_duration(&args.expires)?.map(|d| now.saturating_add(d)),
        passcode: if args.passcode {
            Some(read_passcode()?)
        } else {
            None
        },
        label: args.label.clone(),
        live: args.live,
        once: args.once,
        direct: false,
        emergency_card: false,
    };
    let mut client = crate::relay::client(&relay)?;
    let spinner = output::slow_spinner("Encrypting the summary and hosting the link");
    let made = runtime()?.block_on(host::create(&mut client, &mut profile, &options, now));
    spinner.finish_and_clear();
    let (record, payload) = made.map_err(|e| {
        output::relay_error(
            &relay,
            "could not make the share link; nothing was shared",
            e,
        )
    })?;
    present(&record, &payload, args.png.as_deref(), args.json)
}

/// Print a link: JSON, or the payload, the viewer URL and a QR code.
pub(crate) fn present(
    record: &ShareLinkRecord,
    payload: &ShlPayload,
    png: Option<&Path>,
    json_out: bool,
) -> Result<()> {
    let shlink = payload.to_shlink()?;
    let viewer = payload.to_viewer_url(&viewer_url(&record.relay))?;
    if let Some(path) = png {
        write_png(path, &viewer)?;
    }
    if json_out {
        outln!(
            "{}",
            json!({
                "id": record.short_id(),
                "handle": record.handle,
                "shlink": shlink.as_str(),
                "viewer_url": viewer.as_str(),
                "label": record.label,
                "content": record.content.describe(),
                "created_at_ms": record.created_at_ms,
                "expires_at_ms": record.expires_at_ms,
                "live": record.live,
                "passcode": record.passcode,
                "once": record.once,
                "direct": record.direct,
                "png": png.map(|p| p.display().to_string()),
            })
        );
        return Ok(());
    }
    outln!("{}", qr_text(&viewer)?);
    outln!(
        "Share link {} ({}):",
        record.short_id(),
        record.content.describe()
    );
    outln!("  open in a browser: {}", viewer.as_str());
    outln!("  SMART Health Link: {}", shlink.as_str());
    outln!(
        "  works until: {}{}{}",
        record
            .expires_at_ms
            .map_or_else(|| "revoked".to_string(), output::format_ms),
        if record.passcode {
            "; needs the passcode (tell it separately)"
        } else {
            ""
        },
        if record.live {
            "; live: follows the record at every sync"
        } else {
            ""
        }
    );
    if let Some(path) = png {
        outln!("  QR code image: {}", path.display());
    }
    outln!("Anyone with this link (and the passcode, if set) can read what it shows. Revoke it with `satchel share-link revoke {}`.", record.short_id());
    Ok(())
}

/// The QR code (error correction M, as the specification recommends) in
/// terminal characters.
fn qr_text(text: &str) -> Result<String> {
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .context("the link is too long for a QR code")?;
    Ok(qr
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// The QR code (error correction M) as a PNG image.
pub(crate) fn write_png(path: &Path, text: &str) -> Result<()> {
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .context("the link is too long for a QR code")?;
    let image = qr
        .render::<image::Luma<u8>>()
        .min_dimensions(400, 400)
        .quiet_zone(true)
        .build();
    image
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write the QR code to {}", path.display()))
}

fn run_list(home_dir: Option<PathBuf>, args: ListArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.may_administer() {
        bail!("only the record's owner and managers may list its share links (run this in the owner's home)");
    }
    let relay = hosting_relay(&profile, &args.relay)?;
    let mut client = crate::relay::client(&relay)?;
    let spinner = output::slow_spinner("Reading the relay's share links");
    let statuses = runtime()?.block_on(host::status(&mut client, &mut profile));
    spinner.finish_and_clear();
    let statuses = statuses
        .map_err(|e| output::relay_error(&relay, "could not read the record's share links", e))?;
    let mine = profile.share_links()?;
    let now = now_ms();
    let rows: Vec<serde_json::Value> = statuses
        .iter()
        .map(|s| {
            let local = mine.iter().find(|l| l.handle == s.handle);
            let opened: Vec<&str> = s
                .opens
                .iter()
                .filter(|o| {
                    o.kind
                        != satchel_core::sync::wire::share_links::ShareLinkOpenKind::WrongPasscode
                })
                .map(|o| o.recipient.as_str())
                .collect();
            let mut names: Vec<&str> = opened.clone();
            names.sort_unstable();
            names.dedup();
            let state = if s.revoked_at_ms.is_some() {
                "revoked"
            } else if s.expires_at_ms.is_some_and(|e| e <= now) {
                "expired"
            } else if s.remaining_attempts == Some(0) || s.remaining_opens == Some(0) {
                "used up"
            } else {
                "active"
            };
            json!({
                "id": s.handle.to_hex()[..8],
                "handle": s.handle,
                "label": local.and_then(|l| l.label.clone()),
                "content": local.map(|l| l.content.describe()),
                "created_at_ms": s.created_at_ms,
                "expires_at_ms": s.expires_at_ms,
                "revoked_at_ms": s.revoked_at_ms,
                "state": state,
                "live": local.is_some_and(|l| l.live),
                "passcode": s.passcode,
                "remaining_attempts": s.remaining_attempts,
                "opened": opened.len(),
                "recipients": names,
                "made_here": local.is_some(),
            })
        })
        .collect();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        outln!("No share links. Make one with `satchel share-link create --ips`.");
        return Ok(());
    }
    let mut table = output::table(&[
        "ID", "LABEL", "SHOWS", "CREATED", "EXPIRES", "STATE", "OPENED", "BY",
    ]);
    output::keep_whole(&mut table, &[0, 3, 4, 5, 6]);
    for r in &rows {
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let when = |k: &str| {
            r[k].as_i64()
                .map_or_else(|| "never".into(), output::format_ms)
        };
        table.add_row(output::one_line_row(vec![
            text("id"),
            r["label"].as_str().unwrap_or("(no label)").to_string(),
            r["content"]
                .as_str()
                .unwrap_or("(another device)")
                .to_string(),
            when("created_at_ms"),
            when("expires_at_ms"),
            text("state"),
            r["opened"].to_string(),
            r["recipients"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
        ]));
    }
    outln!("{table}");
    Ok(())
}

fn run_show(home_dir: Option<PathBuf>, args: ShowArgs) -> Result<()> {
    let profile = home::open(home_dir)?;
    let record = profile.find_share_link(&args.id)?.with_context(|| {
        format!(
            "no share link made on this device has id {} (see `satchel share-link list`)",
            args.id
        )
    })?;
    if !record.is_active(now_ms()) {
        bail!(
            "share link {} was revoked or has expired; make a new one with `satchel share-link create`",
            record.short_id()
        );
    }
    let payload = record.payload()?;
    present(&record, &payload, args.png.as_deref(), args.json)
}

fn run_revoke(home_dir: Option<PathBuf>, args: RevokeArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.may_administer() {
        bail!("only the record's owner and managers may revoke its share links (run this in the owner's home)");
    }
    let now = now_ms();
    // A link made here is revoked at the relay that hosts it; any other
    // (made on another device) at the relay of `--server`, found in its list.
    let local = match &args.id {
        Some(id) => profile.find_share_link(id)?,
        None => None,
    };
    let relay = match &local {
        Some(record) => RelayUrl::parse(&record.relay)
            .with_context(|| "the link names a relay that cannot be used".to_string())?,
        None => hosting_relay(&profile, &args.relay)?,
    };
    let mut client = crate::relay::client(&relay)?;
    let rt = runtime()?;
    let revoked: Vec<String> = if let Some(record) = &local {
        rt.block_on(host::revoke(&mut client, &mut profile, &record.handle, now))
            .map_err(|e| output::relay_error(&relay, "could not revoke the share link", e))?;
        vec![record.short_id()]
    } else if let Some(id) = &args.id {
        let prefix = id.trim().to_ascii_lowercase();
        let listed = rt
            .block_on(host::status(&mut client, &mut profile))
            .map_err(|e| {
                output::relay_error(&relay, "could not read the record's share links", e)
            })?;
        let hits: Vec<_> = listed
            .iter()
            .filter(|s| prefix.len() >= 4 && s.handle.to_hex().starts_with(&prefix))
            .collect();
        let [hit] = hits.as_slice() else {
            bail!(
                "{} share links of this record have id {id} at {relay} (see `satchel share-link list`; give 4 or more characters of one); nothing was revoked",
                hits.len()
            );
        };
        let handle = hit.handle;
        rt.block_on(host::revoke(&mut client, &mut profile, &handle, now))
            .map_err(|e| output::relay_error(&relay, "could not revoke the share link", e))?;
        vec![handle.to_hex()[..8].to_string()]
    } else {
        let spinner = output::slow_spinner("Revoking every share link");
        let done = rt.block_on(host::revoke_all(&mut client, &mut profile, now));
        spinner.finish_and_clear();
        done.map_err(|e| output::relay_error(&relay, "could not revoke every share link", e))?
            .iter()
            .map(|h| h.to_hex()[..8].to_string())
            .collect()
    };
    if args.json {
        outln!("{}", json!({"revoked": revoked}));
    } else if revoked.is_empty() {
        outln!("No share link was active at {relay}; nothing changed.");
    } else {
        outln!(
            "Revoked {} ({}): {} no longer open, and the files are gone from the relay. Anyone who opened a link before may have kept what they saw.",
            if revoked.len() == 1 { "share link" } else { "share links" },
            revoked.join(", "),
            if revoked.len() == 1 { "it does" } else { "they do" },
        );
    }
    Ok(())
}

pub fn run_emergency(home_dir: Option<PathBuf>, args: EmergencyArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.may_administer() {
        bail!("only the record's owner and managers may issue the emergency card (run this in the owner's home)");
    }
    let now = now_ms();
    if args.show {
        let card = profile
            .share_links()?
            .into_iter()
            .rfind(|l| l.emergency_card && l.is_active(now))
            .context("no emergency card has been issued on this device (issue one with `satchel emergency-card`)")?;
        let payload = card.payload()?;
        write_wallet_cards(&args, &card, &payload, profile.owner_name())?;
        return present(&card, &payload, args.png.as_deref(), args.json);
    }
    let relay = hosting_relay(&profile, &args.relay)?;
    let mut client = crate::relay::client(&relay)?;
    if args.revoke {
        let revoked = runtime()?
            .block_on(host::revoke_emergency_card(&mut client, &mut profile, now))
            .map_err(|e| output::relay_error(&relay, "could not revoke the emergency card", e))?;
        if args.json {
            outln!("{}", json!({"revoked": revoked}));
        } else if revoked == 0 {
            outln!("No emergency card was active; nothing changed.");
        } else {
            outln!("Revoked the emergency card: scanning it shows nothing from now on.");
        }
        return Ok(());
    }
    let parts = match &args.include {
        None => EmergencyParts::ALL,
        Some(list) => EmergencyParts {
            allergies: list.contains(&EmergencyPart::Allergies),
            medications: list.contains(&EmergencyPart::Medications),
            conditions: list.contains(&EmergencyPart::Conditions),
            blood_group: list.contains(&EmergencyPart::BloodGroup),
            contact: list.contains(&EmergencyPart::Contact),
        },
    };
    let spinner = output::slow_spinner("Issuing the emergency card");
    let made = runtime()?.block_on(host::issue_emergency_card(
        &mut client,
        &mut profile,
        parts,
        None,
        now,
    ));
    spinner.finish_and_clear();
    let (card, payload) = made.map_err(|e| {
        output::relay_error(
            &relay,
            "could not issue the emergency card; nothing changed",
            e,
        )
    })?;
    write_wallet_cards(&args, &card, &payload, profile.owner_name())?;
    present(&card, &payload, args.png.as_deref(), args.json)
}

/// The wallet cards asked for (`--svg`, `--pdf`).
fn write_wallet_cards(
    args: &EmergencyArgs,
    card: &ShareLinkRecord,
    payload: &ShlPayload,
    owner: &str,
) -> Result<()> {
    for (path, format) in [
        (&args.svg, wallet_card::Format::Svg),
        (&args.pdf, wallet_card::Format::Pdf),
    ] {
        if let Some(path) = path {
            wallet_card::write(path, format, card, payload, owner)?;
        }
    }
    Ok(())
}
