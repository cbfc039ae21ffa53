//! Sharing commands: `invite`, `accept`, `approve`, `grants`, `revoke`,
//! `recovery-key`, `restore` and `audit`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use satchel_core::audit;
use satchel_core::crypto::Role;
use satchel_core::ids::IdentityId;
use satchel_core::profile::{AnswerError, Profile, Unlock};
use satchel_core::record::Section;
use satchel_core::sharing::{Access, GrantRole, RecoveryKey};
use satchel_core::store::{SqliteStore, Store};
use satchel_core::sync::sharing::{self as net, InviteTerms};
use satchel_core::sync::RelayUrl;
use serde_json::json;

use crate::{home, output};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `30d`, `12h`, `90m`, `45s` → milliseconds.
fn parse_duration_ms(text: &str) -> Result<i64> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = num.parse().with_context(|| {
        format!("--expires {text}: expected a number and a unit (30d, 12h, 90m, 45s)")
    })?;
    let ms = match unit {
        "d" => n * 86_400_000,
        "h" => n * 3_600_000,
        "m" => n * 60_000,
        "s" => n * 1_000,
        _ => bail!("--expires {text}: the unit must be d, h, m or s (e.g. 30d)"),
    };
    if ms <= 0 {
        bail!("--expires must be positive");
    }
    Ok(ms)
}

fn parse_sections(list: &str) -> Result<Vec<Section>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Section>().map_err(|_| {
                anyhow::anyhow!(
                    "unknown section {s:?}; sections are: {}",
                    Section::ALL.map(Section::as_str).join(", ")
                )
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum InviteRole {
    Carer,
    Provider,
    Manager,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel invite --server http://127.0.0.1:8787 --role carer --sections medications,allergies --expires 30d --label Daughter"
)]
pub struct InviteArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// Who is invited: carer (reads), provider (reads; writes with --write) or manager (full control).
    #[arg(long, value_enum)]
    pub role: InviteRole,
    /// Comma-separated sections (ignored for managers: they get every section).
    #[arg(long, default_value = "")]
    pub sections: String,
    /// Let the invitee add entries to those sections (providers contributing).
    #[arg(long)]
    pub write: bool,
    /// The grant ends after this long (30d, 12h, 90m).
    #[arg(long)]
    pub expires: Option<String>,
    /// A name for the grant, shown in `satchel grants` (visible to the relay: no clinical detail).
    #[arg(long, default_value = "")]
    pub label: String,
    /// How long the invite code stays valid (seconds).
    #[arg(long, default_value_t = 86_400)]
    pub valid_for: u64,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run_invite(home_dir: Option<PathBuf>, args: InviteArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let role = match (args.role, args.write) {
        (InviteRole::Manager, _) => GrantRole::Manager,
        (_, true) => GrantRole::Writer,
        (_, false) => GrantRole::Reader,
    };
    let sections = parse_sections(&args.sections)?;
    if sections.is_empty() && role != GrantRole::Manager {
        bail!("name the sections to share with --sections (e.g. --sections medications,allergies)");
    }
    if role == GrantRole::Writer && sections.contains(&Section::Demographics) {
        eprintln!(
            "note: demographics are shared read-only: a provider checks what it pushes against them, but only your devices and managers change them"
        );
    }
    let expires_at_ms = args
        .expires
        .as_deref()
        .map(parse_duration_ms)
        .transpose()?
        .map(|ms| now_ms() + ms);
    let label = if args.label.is_empty() {
        format!("{:?}", args.role).to_lowercase()
    } else {
        args.label.clone()
    };
    let terms = InviteTerms {
        role,
        sections,
        expires_at_ms,
        label,
    };
    let mut client = crate::relay::client(&args.server)?;
    let (link_id, code) = runtime()?
        .block_on(net::invite(
            &mut client,
            &mut profile,
            terms,
            Duration::from_secs(args.valid_for),
        ))
        .map_err(|e| {
            output::relay_error(
                &args.server,
                "could not create the invite; nothing was shared",
                e,
            )
        })?;
    if args.json {
        outln!("{}", json!({"invite": link_id, "code": code}));
    } else {
        outln!("Invite {link_id} created. Give the invitee this code (a link or a QR code):\n");
        outln!("  {code}\n");
        outln!("They run `satchel accept CODE --name NAME`; then approve them with `satchel approve {link_id}` after checking their fingerprint.");
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel --home ~/carer accept satchel-invite:... --name \"Jane (daughter)\""
)]
pub struct AcceptArgs {
    /// The code from `satchel invite`.
    pub code: String,
    /// Your name as the record's owner will see it (first use of this home).
    #[arg(long)]
    pub name: Option<String>,
    /// Your kind of identity (first use of this home).
    #[arg(long, value_enum, default_value = "carer")]
    pub role: AcceptRole,
    /// Your organisation (providers).
    #[arg(long)]
    pub organisation: Option<String>,
    /// Wait this many seconds for the approval (0: return now; finish with `satchel sync`).
    #[arg(long, default_value_t = 0)]
    pub wait: u64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AcceptRole {
    Carer,
    Provider,
    Manager,
}

pub fn run_accept(home_dir: Option<PathBuf>, args: AcceptArgs) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    if home::db_path(&dir).exists() {
        bail!("this home holds your own record; accept invites in a separate home (--home)");
    }
    let code = net::parse_invite(&args.code).context(
        "not a Satchel invite code (copy the whole code `satchel invite` printed; it starts with satchel-invite:)",
    )?;
    let role = match args.role {
        AcceptRole::Carer => Role::Carer,
        AcceptRole::Provider => Role::Provider,
        AcceptRole::Manager => Role::Manager,
    };
    let name = args.name.as_deref().unwrap_or("Carer");
    let mut vault = home::open_identity(&dir, Some((name, role, args.organisation.as_deref())))?;
    let identity = vault.card().clone();
    let mut client = crate::relay::client_for(&code.relay)?;
    let rt = runtime()?;
    rt.block_on(vault.answer_invite(&mut client, &code, &args.code))
        .map_err(|e| match e {
            AnswerError::Link(e) => output::relay_error(
                &code.relay,
                "could not answer the invite (it may have expired or been used: ask for a new one)",
                e,
            ),
            AnswerError::Profile(e) => anyhow::Error::new(e)
                .context("the invite was answered, but this home could not keep it as pending"),
        })?;
    outln!(
        "Sent your identity card. Tell the record's owner your fingerprint:\n\n  {}\n",
        identity.fingerprint()
    );
    if args.wait == 0 {
        outln!("Once they approve, run `satchel sync` to receive the record.");
        return Ok(());
    }
    finish_accepts(&dir, Duration::from_secs(args.wait), false)?;
    Ok(())
}

/// Turn approved invites into shared records (and forget them). Returns
/// how many records were added. With `notes_to_stderr` (a `--json` caller)
/// what happened is told on stderr, keeping stdout for the JSON.
pub fn finish_accepts(
    dir: &std::path::Path,
    wait: Duration,
    notes_to_stderr: bool,
) -> Result<usize> {
    let note = |text: String| -> Result<()> {
        if notes_to_stderr {
            eprintln!("{text}");
        } else {
            outln!("{text}");
        }
        Ok(())
    };
    if !home::identity_path(dir).exists() {
        return Ok(0);
    }
    let mut vault = home::open_identity(dir, None)?;
    let pending = vault.pending_accepts()?;
    if pending.is_empty() {
        return Ok(0);
    }
    let rt = runtime()?;
    let mut still = Vec::new();
    let mut added = 0;
    for text in pending {
        let code = net::parse_invite(&text)?;
        let mut client = crate::relay::client_for(&code.relay)?;
        match rt.block_on(vault.await_approval(&mut client, &code, wait)) {
            Ok(info) => {
                let owner = info.owner_name.clone();
                let mut profile = home::create_shared(dir, &mut vault, info, &text)?;
                rt.block_on(client.sync(&mut profile)).map_err(|e| {
                    output::relay_error(
                        &code.relay,
                        "approved, but the first sync of the shared record failed (run `satchel sync` again)",
                        e,
                    )
                })?;
                let sections: Vec<&str> = profile
                    .readable_sections()
                    .iter()
                    .map(|s| s.as_str())
                    .collect();
                note(format!(
                    "Approved: you now have access to {owner}'s record ({}).",
                    sections.join(", ")
                ))?;
                added += 1;
            }
            Err(satchel_core::sync::link::LinkError::TimedOut) => still.push(text),
            Err(e) => {
                vault.forget_pending_accept(&text)?;
                let e = output::relay_error(&code.relay, "an invite could not be completed", e);
                eprintln!(
                    "{}; it was dropped (ask the record's owner for a new invite)",
                    output::one_line(&e)
                );
            }
        }
    }
    if !still.is_empty() {
        note(format!(
            "{} invite(s) still waiting for approval (run `satchel sync` again after the owner approves).",
            still.len()
        ))?;
    }
    Ok(added)
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel approve            # lists invites and who answered\n  satchel approve 3f2a... --fingerprint \"12345 67890 ...\""
)]
pub struct ApproveArgs {
    /// The invite to approve (its id from `satchel invite`); without it, list pending invites.
    pub invite: Option<String>,
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// The fingerprint the invitee told you; approval proceeds only if it matches.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Approve without asking (you checked the fingerprint another way).
    #[arg(long)]
    pub yes: bool,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

pub fn run_approve(home_dir: Option<PathBuf>, args: ApproveArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let mut client = crate::relay::client(&args.server)?;
    let rt = runtime()?;
    let pending = net::pending_invites(&profile)?;
    let server = &args.server;
    let ask = |e| output::relay_error(server, "could not ask the relay who answered the invite", e);
    let Some(wanted) = args.invite.as_deref() else {
        let mut rows = Vec::new();
        for p in &pending {
            let card = rt
                .block_on(net::invitee_card(&mut client, &mut profile, &p.link_id))
                .map_err(ask)?;
            rows.push((p, card));
        }
        if args.json {
            let out: Vec<_> = rows
                .iter()
                .map(|(p, c)| json!({
                    "invite": p.link_id, "role": p.terms.role.as_str(),
                    "sections": p.terms.sections.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "label": p.terms.label,
                    "invitee": c.as_ref().map(|c| json!({"identity": c.id(), "name": c.display_name, "fingerprint": c.fingerprint()})),
                }))
                .collect();
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        let mut table = output::table(&[
            "INVITE",
            "ROLE",
            "SECTIONS",
            "LABEL",
            "ANSWERED BY",
            "FINGERPRINT",
        ]);
        output::keep_whole(&mut table, &[0, 1, 5]);
        for (p, c) in rows {
            table.add_row(output::one_line_row(vec![
                p.link_id.clone(),
                p.terms.role.as_str().to_string(),
                p.terms
                    .sections
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                p.terms.label.clone(),
                c.as_ref()
                    .map_or("(not yet)".into(), |c| c.display_name.clone()),
                c.as_ref().map_or(String::new(), |c| c.fingerprint()),
            ]));
        }
        outln!("{table}");
        return Ok(());
    };
    let invite = pending
        .iter()
        .find(|p| p.link_id.starts_with(wanted))
        .with_context(|| format!("no pending invite {wanted} (see `satchel approve`)"))?;
    let link_id = invite.link_id.clone();
    let card = rt
        .block_on(net::invitee_card(&mut client, &mut profile, &link_id))
        .map_err(ask)?
        .context(
            "nobody has answered this invite yet; try again after they run `satchel accept`",
        )?;
    outln!(
        "{} ({}{}) asks for {} access to: {}\nFingerprint: {}",
        card.display_name,
        card.role.as_str(),
        card.organisation
            .as_deref()
            .map(|o| format!(", {o}"))
            .unwrap_or_default(),
        invite.terms.role.as_str(),
        if invite.terms.role == GrantRole::Manager {
            "every section".to_string()
        } else {
            invite
                .terms
                .sections
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
        card.fingerprint()
    );
    if let Some(change) =
        profile.grant_change(&card.id(), invite.terms.role, &invite.terms.sections)
    {
        let names = |list: &[satchel_core::record::Section]| {
            if list.is_empty() {
                "nothing".to_string()
            } else {
                list.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        outln!(
            "They already hold a {} grant: approving CHANGES it.\n  Gains: {}\n  Loses: {}{}",
            change.role_before.as_str(),
            names(&change.gained),
            names(&change.lost),
            if change.lost.is_empty() {
                String::new()
            } else {
                " (those sections' keys rotate: nothing written there from now on is readable by them; what they already saw cannot be unseen)".to_string()
            }
        );
    }
    let approved = match (&args.fingerprint, args.yes) {
        (Some(fp), _) => {
            if digits(fp) != digits(&card.fingerprint()) {
                bail!("the fingerprint does not match the card that answered the invite; nothing was granted (someone else may have used the code)");
            }
            true
        }
        (None, true) => true,
        (None, false) => {
            if !std::io::stdin().is_terminal() {
                bail!("confirm with --fingerprint \"...\" (what the invitee told you) or --yes");
            }
            eprint!("Approve? Type yes: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().eq_ignore_ascii_case("yes")
        }
    };
    if !approved {
        bail!("not approved; nothing was granted");
    }
    let card = rt
        .block_on(net::approve(
            &mut client,
            &mut profile,
            &link_id,
            &card.id(),
        ))
        .map_err(|e| output::relay_error(server, "approval failed; nothing was granted", e))?;
    outln!("Approved {} ({}).", card.display_name, card.id().short());
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel grants --json")]
pub struct GrantsArgs {
    /// Which record (when the home holds several).
    #[arg(long)]
    pub record: Option<String>,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run_grants(home_dir: Option<PathBuf>, args: GrantsArgs) -> Result<()> {
    let profile = home::open_record(home_dir, args.record.as_deref())?;
    let m = profile.members();
    let now = now_ms();
    let mut rows = Vec::new();
    for (id, card) in &m.owner_devices {
        let name = card
            .as_ref()
            .map_or("Patient device (creator)".to_string(), |c| {
                c.display_name.clone()
            });
        let role = if m.recovery.contains(id) {
            "recovery-key"
        } else {
            "owner-device"
        };
        rows.push((
            *id,
            name,
            role.to_string(),
            "all".to_string(),
            None,
            String::new(),
            true,
        ));
    }
    for (id, r) in &m.replicas {
        rows.push((
            *id,
            format!("{} [{}]", r.card.display_name, r.card.fingerprint()),
            "replica-relay".to_string(),
            "all (ciphertext only)".to_string(),
            None,
            r.label.clone(),
            true,
        ));
    }
    // Relays the record moved away from: they refuse it (no access).
    for (id, r) in &m.retired_relays {
        rows.push((
            *id,
            format!("{} [{}]", r.card.display_name, r.card.fingerprint()),
            "retired-relay".to_string(),
            "none (the record moved away)".to_string(),
            None,
            String::new(),
            false,
        ));
    }
    for (id, g) in &m.grants {
        rows.push((
            *id,
            g.card.display_name.clone(),
            g.role.as_str().to_string(),
            g.sections.iter().cloned().collect::<Vec<_>>().join(","),
            g.expires_at_ms,
            g.label.clone(),
            g.live_at(now),
        ));
    }
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|(id, name, role, sections, exp, label, live)| {
                json!({"identity": id, "name": name, "role": role, "sections": sections,
                       "expires_at_ms": exp, "label": label, "live": live})
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!("Who has access to {}'s record", profile.owner_name());
    let mut table = output::table(&[
        "IDENTITY", "NAME", "ROLE", "SECTIONS", "EXPIRES", "LABEL", "STATUS",
    ]);
    output::keep_whole(&mut table, &[0, 2, 4, 6]);
    for (id, name, role, sections, exp, label, live) in rows {
        let status = match (live, role.as_str()) {
            (true, _) => "active",
            (false, "retired-relay") => "retired",
            (false, _) => "expired",
        };
        // Wrapped, not cut: every granted section must stay visible.
        table.add_row(vec![
            id.short(),
            name,
            role,
            sections,
            exp.map_or("never".into(), output::format_ms),
            label,
            status.to_string(),
        ]);
    }
    outln!("{table}");
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel revoke \"Jane (daughter)\" --server http://127.0.0.1:8787\n  satchel revoke 3f2a91 --sections medications"
)]
pub struct RevokeArgs {
    /// Who: an identity id (or its first characters), a name or a label from `satchel grants`.
    pub who: String,
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// Only these sections (comma-separated); default: everything.
    #[arg(long)]
    pub sections: Option<String>,
}

fn find_identity<S: Store>(profile: &Profile<S>, who: &str) -> Result<IdentityId> {
    let m = profile.members();
    let lower = who.to_lowercase();
    let mut found: Vec<IdentityId> = m
        .grants
        .iter()
        .filter(|(id, g)| {
            id.to_hex().starts_with(&lower)
                || g.card.display_name.eq_ignore_ascii_case(who)
                || g.label.eq_ignore_ascii_case(who)
        })
        .map(|(id, _)| *id)
        .collect();
    found.extend(
        m.replicas
            .iter()
            .filter(|(id, r)| {
                id.to_hex().starts_with(&lower)
                    || r.card.display_name.eq_ignore_ascii_case(who)
                    || r.label.eq_ignore_ascii_case(who)
            })
            .map(|(id, _)| *id),
    );
    found.extend(
        m.owner_devices
            .keys()
            .filter(|id| lower.len() >= 6 && id.to_hex().starts_with(&lower)),
    );
    match found.len() {
        0 => bail!("nobody matching {who:?} has access (see `satchel grants`)"),
        1 => Ok(found[0]),
        _ => bail!("{who:?} matches several identities; use more of the identity id"),
    }
}

pub fn run_revoke(home_dir: Option<PathBuf>, args: RevokeArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let id = find_identity(&profile, &args.who)?;
    let sections = args.sections.as_deref().map(parse_sections).transpose()?;
    let name = profile
        .members()
        .card(&id)
        .map_or(id.short(), |c| c.display_name.clone());
    let was_replica = profile.members().replicas.contains_key(&id);
    let mut client = crate::relay::client(&args.server)?;
    runtime()?
        .block_on(net::revoke(
            &mut client,
            &mut profile,
            &id,
            sections.as_deref(),
        ))
        .map_err(|e| {
            output::relay_error(
                &args.server,
                "revocation failed; nothing changed and access continues (run `satchel revoke` again)",
                e,
            )
        })?;
    if was_replica {
        outln!("Removed the replica relay {name}: it no longer receives or forwards the record.");
        return Ok(());
    }
    outln!(
        "Revoked {name}{}. Keys were rotated: nothing written from now on is readable by them. What they already saw cannot be unseen.",
        sections
            .map(|s| format!(" from {}", s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")))
            .unwrap_or_default()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel recovery-key --server http://127.0.0.1:8787   # write the key down, keep it offline"
)]
pub struct RecoveryKeyArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
}

pub fn run_recovery_key(home_dir: Option<PathBuf>, args: RecoveryKeyArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let mut client = crate::relay::client(&args.server)?;
    let key = runtime()?
        .block_on(net::make_recovery_key(&mut client, &mut profile))
        .map_err(|e| output::relay_error(&args.server, "could not create a recovery key", e))?;
    outln!("Your recovery key (write it down and keep it somewhere safe; anyone holding it can restore your record):\n");
    outln!("  {}\n", key.to_printable().as_str());
    outln!(
        "Restore on a new device with: satchel --home NEW_HOME restore --server {}",
        args.server
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  SATCHEL_RECOVERY_KEY=\"SATCHEL-...\" satchel --home ~/new-phone restore --server http://127.0.0.1:8787"
)]
pub struct RestoreArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
}

pub fn run_restore(home_dir: Option<PathBuf>, args: RestoreArgs) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    let path = home::db_path(&dir);
    if path.exists() {
        bail!(
            "{} already holds a record; restore into a new home",
            dir.display()
        );
    }
    let text = match std::env::var("SATCHEL_RECOVERY_KEY") {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(_) => zeroize::Zeroizing::new(
            rpassword::prompt_password("Recovery key: ")
                .context("set SATCHEL_RECOVERY_KEY when not on a terminal")?,
        ),
    };
    let key = RecoveryKey::parse(&text).context(
        "that is not a recovery key (it starts with SATCHEL-; type it as `satchel recovery-key` printed it)",
    )?;
    let pass = home::passphrase(true)?;
    if pass.is_empty() {
        bail!("the passphrase is empty; choose one (nothing was created)");
    }
    let mut client = crate::relay::client(&args.server)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spinner = output::slow_spinner("Restoring from the relay");
    let result = runtime()?.block_on(net::restore(
        &mut client,
        &key,
        SqliteStore::open(&path)?,
        Unlock::Passphrase {
            passphrase: pass.as_bytes(),
            params: None,
        },
    ));
    spinner.finish_and_clear();
    let profile = match result {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            for ext in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
            }
            return Err(output::relay_error(
                &args.server,
                "restore failed (nothing was kept)",
                e,
            ));
        }
    };
    let n = profile.query(&Default::default()).len();
    outln!(
        "Restored {}'s record ({}): {n} entries. This device is now one of the owner's devices.",
        profile.owner_name(),
        profile.record_id()
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel audit --server http://127.0.0.1:8787\n  satchel audit --server URL --fhir audit.json"
)]
pub struct AuditArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the audit as a FHIR R4 collection Bundle of AuditEvent and Provenance resources.
    #[arg(long)]
    pub fhir: Option<PathBuf>,
}

pub fn run_audit(home_dir: Option<PathBuf>, args: AuditArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    if !profile.may_administer() {
        bail!("only the record's owner and managers may read its audit (run this in the owner's home)");
    }
    let mut client = crate::relay::client(&args.server)?;
    let spinner = output::slow_spinner("Reading the relay's audit log");
    let events = runtime()?.block_on(net::fetch_audit(&mut client, &mut profile));
    spinner.finish_and_clear();
    let events = events.map_err(|e| {
        output::relay_error(&args.server, "could not read the relay's audit log", e)
    })?;
    // Share links are audited by the relay that hosts them: every request
    // for their files, with the name the recipient gave.
    let spinner = output::slow_spinner("Reading who opened the record's share links");
    let statuses = runtime()?.block_on(satchel_core::sync::share_links::status(
        &mut client,
        &mut profile,
    ));
    spinner.finish_and_clear();
    let statuses = statuses.map_err(|e| {
        output::relay_error(&args.server, "could not read who opened the share links", e)
    })?;
    let link_views = audit::share_link_views(&profile.share_links()?, &statuses);
    let contributions = audit::contributions(profile.record());
    let members = profile.members().clone();
    let name_of = |id: &IdentityId| -> String {
        match members.access(id) {
            Some(Access::Granted(g)) if !g.label.is_empty() => {
                format!("{} ({})", g.card.display_name, g.label)
            }
            _ => members.card(id).map_or_else(
                || {
                    if *id == members.creator {
                        "Patient device".to_string()
                    } else {
                        id.short()
                    }
                },
                |c| c.display_name.clone(),
            ),
        }
    };
    let record = profile.record_id();
    if let Some(path) = &args.fhir {
        let mut entries = Vec::new();
        for e in &events {
            let r = audit::audit_event(record, e, &name_of(&e.identity));
            entries.push(json!({"fullUrl": format!("urn:satchel:audit:{}", r["id"].as_str().unwrap_or_default()), "resource": r}));
        }
        for c in &contributions {
            let r = audit::provenance(record, c, &name_of(&c.author));
            entries.push(json!({"fullUrl": format!("urn:satchel:audit:{}", r["id"].as_str().unwrap_or_default()), "resource": r}));
        }
        let bundle = json!({"resourceType": "Bundle", "type": "collection",
                            "timestamp": audit::instant(now_ms()), "entry": entries});
        std::fs::write(path, serde_json::to_vec_pretty(&bundle)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        let views: Vec<_> = events
            .iter()
            .map(|e| {
                json!({"at_ms": e.at_ms, "identity": e.identity, "name": name_of(&e.identity),
                            "action": e.action, "section": e.section, "count": e.count,
                            "relay": e.relay, "place": audit::place(&members, e.relay.as_ref())})
            })
            .collect();
        let contribs: Vec<_> = contributions
            .iter()
            .map(|c| {
                json!({"entry": c.entry, "section": c.section.as_str(), "version": c.version,
                            "author": c.author, "name": name_of(&c.author),
                            "recorded_at_ms": c.recorded_at_ms, "source_system": c.source_system})
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"events": views, "share_link_views": link_views, "contributions": contribs})
            )?
        );
        return Ok(());
    }
    outln!(
        "Who viewed and changed {}'s record (relay log)",
        profile.owner_name()
    );
    let mut table = output::table(&["WHEN", "WHO", "WHERE", "ACTION", "SECTION", "COUNT"]);
    output::keep_whole(&mut table, &[0, 3, 4, 5]);
    let mut rows: Vec<(i64, Vec<String>)> = events
        .iter()
        .map(|e| {
            (
                e.at_ms,
                vec![
                    output::format_ms(e.at_ms),
                    name_of(&e.identity),
                    if e.action == "view" {
                        "their own copy".into()
                    } else {
                        audit::place(&members, e.relay.as_ref())
                    },
                    match e.action.as_str() {
                        "pull" => "viewed".into(),
                        "view" => "viewed (entries)".into(),
                        _ => "contributed".into(),
                    },
                    e.section.clone(),
                    e.count.to_string(),
                ],
            )
        })
        .collect();
    rows.extend(link_views.iter().map(|v| {
        (
            v.at_ms,
            vec![
                output::format_ms(v.at_ms),
                v.who.clone(),
                "home relay".into(),
                v.action.clone(),
                v.sections.clone(),
                "-".into(),
            ],
        )
    }));
    rows.sort_by_key(|(at, _)| *at);
    for (_, cells) in rows {
        table.add_row(output::one_line_row(cells));
    }
    outln!("{table}");
    outln!("\nWho contributed each entry (verified signatures)");
    let mut table = output::table(&["WHEN", "WHO", "ENTRY", "SECTION", "VERSION"]);
    output::keep_whole(&mut table, &[0, 2, 3, 4]);
    for c in &contributions {
        table.add_row(output::one_line_row(vec![
            output::format_ms(c.recorded_at_ms),
            name_of(&c.author),
            c.entry.to_string(),
            c.section.as_str().to_string(),
            c.version.to_string(),
        ]));
    }
    outln!("{table}");
    Ok(())
}
