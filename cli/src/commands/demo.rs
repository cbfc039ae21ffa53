//! `satchel demo`: the story so far in one run, in a temporary directory.
//! Creates a record under a passphrase, adds a FHIR Bundle, amends an entry,
//! marks one entered-in-error, closes and reopens from the encrypted SQLite
//! store, checks that no clinical text is readable in any file; then starts
//! an embedded relay, links a tablet, converges, invites a carer and a
//! consultant (approved by fingerprint), revokes the carer (keys rotate),
//! reads the audit, and checks the relay holds ciphertext only. Every step
//! verifies its expectation; a failed one exits non-zero.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use satchel_core::fhir;
use satchel_core::profile::{Profile, Unlock};
use satchel_core::record::Query;
use satchel_core::store::SqliteStore;

use crate::home;
use crate::output;

const DEMO_BUNDLE: &str = include_str!("demo_bundle.json");
const DEMO_PASSPHRASE: &[u8] = b"correct horse battery staple";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the demo home here instead of a temporary directory (must not exist yet).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

pub fn run(args: Args) -> Result<()> {
    let temp;
    let dir: PathBuf = match args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!("{} already exists; choose a new directory", dir.display());
            }
            std::fs::create_dir_all(&dir)?;
            dir
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let db = home::db_path(&dir);
    let unlock = || Unlock::Passphrase {
        passphrase: DEMO_PASSPHRASE,
        params: None,
    };

    step(1, "Create a record protected by a passphrase (Argon2id)");
    let mut profile = Profile::create(SqliteStore::open(&db)?, "Alex Morgan", unlock())?;
    println!(
        "    record {}  device fingerprint {}",
        profile.record_id(),
        profile.identity_card().fingerprint()
    );

    step(
        2,
        "Add a FHIR R4 Bundle from the GP (9 resources, routed to sections)",
    );
    let bundle = fhir::parse_resource(DEMO_BUNDLE.as_bytes())?;
    let added = profile.add_resources(vec![bundle], Some("https://gp.example.org/fhir"))?;
    println!("    added {} entries", added.len());

    step(
        3,
        "Refuse bad input: a resource with no section changes nothing",
    );
    let bad = serde_json::json!({"resourceType": "Account", "id": "x"});
    match profile.add_resources(vec![bad], None) {
        Err(e) => println!("    refused: {e}"),
        Ok(_) => bail!("an Account resource was accepted"),
    }

    step(
        4,
        "Amend the allergy (criticality confirmed high); the first version is kept",
    );
    let allergy = profile
        .query(&Query {
            section: Some(satchel_core::record::Section::Allergies),
            ..Query::default()
        })
        .into_iter()
        .next()
        .context("the demo allergy is missing")?;
    let mut amended = allergy.current.resource.clone();
    amended["criticality"] = serde_json::json!("high");
    profile.amend(&allergy.id, amended)?;

    step(
        5,
        "Mark a mistyped glucose result entered-in-error (hidden, kept in history)",
    );
    let typo = profile
        .query(&Query {
            code: Some((Some("http://loinc.org".into()), "2339-0".into())),
            ..Query::default()
        })
        .into_iter()
        .next()
        .context("the demo glucose result is missing")?;
    profile.mark_entered_in_error(&typo.id)?;
    drop(profile);

    step(6, "Close, reopen from the encrypted store, and list");
    let profile = Profile::open(SqliteStore::open(&db)?, unlock())?;
    let entries = profile.query(&Query::default());
    let mut table = output::table(&["SECTION", "TYPE", "DATE", "SUMMARY", "V"]);
    for e in &entries {
        table.add_row(vec![
            e.section.as_str().to_string(),
            e.resource_type.clone(),
            e.current.date_text.clone().unwrap_or_default(),
            output::summary_text(&e.current.displays),
            e.version_count.to_string(),
        ]);
    }
    println!("{table}");
    let history = profile.history(&allergy.id)?;
    println!(
        "    allergy history: {} versions; glucose result hidden: {}",
        history.len(),
        profile
            .query(&Query::default())
            .iter()
            .all(|e| e.id != typo.id)
    );

    step(7, "Query: everything dated on or after 2026-01-01");
    let since = output::parse_day("2026-01-01", false)?;
    for e in profile.query(&Query {
        from_ms: Some(since),
        ..Query::default()
    }) {
        println!(
            "    {}  {}",
            e.current.date_text.clone().unwrap_or_default(),
            output::summary_text(&e.current.displays)
        );
    }
    drop(profile);

    step(
        8,
        "Look for clinical text in every file of the home directory",
    );
    let needles: [&[u8]; 4] = [b"Salbutamol", b"Penicillin", b"Asthma", b"Morgan"];
    let mut hits = 0;
    for file in files_under(&dir)? {
        let bytes = std::fs::read(&file)?;
        for n in needles {
            if bytes.windows(n.len()).any(|w| w == n) {
                hits += 1;
                println!("    FOUND in {}", file.display());
            }
        }
    }
    if hits > 0 {
        bail!("plaintext found at rest");
    }
    println!(
        "    none of {} clinical strings appears in any file: the store holds ciphertext only",
        needles.len()
    );

    relay_demo(&dir, &db, &needles)?;
    println!("\nDemo complete.");
    Ok(())
}

/// Steps 9-12: an embedded relay on loopback, a second device linked with a
/// one-time code, offline edits on both, and convergence.
fn relay_demo(dir: &Path, phone_db: &Path, needles: &[&[u8]]) -> Result<()> {
    use satchel_core::crypto::{Identity, Role};
    use satchel_core::sync::{link, RelayClient};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let relay_dir = dir.join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = satchel_sync_server::Config::sqlite(relay_dir.join("relay.db"));
    let server = rt.spawn(satchel_sync_server::serve(config, listener, async {
        let _ = stopped.await;
    }));

    step(
        9,
        &format!("Start a relay (embedded SQLite) at {url} and sync the phone"),
    );
    let unlock = || Unlock::Passphrase {
        passphrase: DEMO_PASSPHRASE,
        params: None,
    };
    let mut phone = Profile::open(SqliteStore::open(phone_db)?, unlock())?;
    let mut phone_client = RelayClient::new(&url)?;
    let report = rt.block_on(phone_client.sync(&mut phone))?;
    println!("    sent {} envelopes", report.uploaded);

    step(
        10,
        "Link a tablet with a one-time code (keys travel wrapped to the tablet's key)",
    );
    let tablet_db = dir.join("tablet.db");
    let mut tablet = rt.block_on(async {
        let code = link::offer(&mut phone_client, &mut phone).await?;
        println!("    code: {}...", &code.encode()[..32]);
        let identity = Identity::generate("Patient device", Role::PatientDevice, None)?;
        let mut tablet_client = RelayClient::new(&url)?;
        let wait = std::time::Duration::from_secs(30);
        let (card, bundle) = tokio::join!(
            link::complete(&mut phone_client, &mut phone, &code, wait),
            link::join(&mut tablet_client, &identity, &code, wait),
        );
        println!("    tablet fingerprint {}", card?.fingerprint());
        let mut tablet =
            Profile::join(SqliteStore::open(&tablet_db)?, unlock(), identity, bundle?)?;
        tablet_client.sync(&mut tablet).await?;
        anyhow::Ok(tablet)
    })?;
    println!(
        "    tablet holds {} entries",
        tablet.query(&Query::default()).len()
    );

    step(11, "Both devices edit offline, then sync");
    let allergy = |text: &str| serde_json::json!({"resourceType": "AllergyIntolerance", "code": {"text": text}, "recordedDate": "2026-03-01"});
    phone.add_resources(vec![allergy("Latex")], None)?;
    tablet.add_resources(vec![allergy("Ibuprofen")], None)?;
    let mut tablet_client = RelayClient::new(&url)?;
    rt.block_on(async {
        phone_client.sync(&mut phone).await?;
        tablet_client.sync(&mut tablet).await?;
        phone_client.sync(&mut phone).await?;
        anyhow::Ok(())
    })?;
    let all = Query {
        include_entered_in_error: true,
        ..Query::default()
    };
    let (p, t) = (phone.query(&all), tablet.query(&all));
    println!(
        "    phone {} entries, tablet {} entries, identical: {}",
        p.len(),
        t.len(),
        p == t
    );
    if p != t {
        bail!("the devices did not converge");
    }

    sharing_demo(&rt, &url, dir, &mut phone, &mut phone_client)?;

    step(
        17,
        "Stop the relay and look for clinical text in its database and WAL",
    );
    let _ = stop.send(());
    rt.block_on(server)??;
    for file in files_under(&relay_dir)? {
        let bytes = std::fs::read(&file)?;
        if needles
            .iter()
            .any(|n| bytes.windows(n.len()).any(|w| w == *n))
        {
            bail!("plaintext found on the relay in {}", file.display());
        }
    }
    println!("    the relay holds ciphertext only");
    Ok(())
}

/// Invite, accept and approve (by fingerprint) one member; returns its
/// profile for the shared record, synced.
/// Where the demo's relay runs and its files live.
struct DemoEnv<'a> {
    rt: &'a tokio::runtime::Runtime,
    url: &'a str,
    dir: &'a Path,
}

fn share_with(
    env: &DemoEnv<'_>,
    phone: &mut Profile<SqliteStore>,
    phone_client: &mut satchel_core::sync::RelayClient,
    name: &str,
    role: satchel_core::crypto::Role,
    terms: satchel_core::sync::sharing::InviteTerms,
) -> Result<Profile<SqliteStore>> {
    use satchel_core::crypto::Identity;
    use satchel_core::sync::sharing as net;
    use satchel_core::sync::RelayClient;
    let DemoEnv { rt, url, dir } = *env;
    let unlock = || Unlock::Passphrase {
        passphrase: DEMO_PASSPHRASE,
        params: None,
    };
    rt.block_on(async {
        let (link_id, code) = net::invite(
            phone_client,
            phone,
            terms,
            std::time::Duration::from_secs(600),
        )
        .await?;
        let identity = Identity::generate(name, role, None)?;
        let mut client = RelayClient::new(url)?;
        let parsed = net::parse_invite(&code)?;
        net::accept(&mut client, &identity, &parsed).await?;
        let card = net::invitee_card(phone_client, phone, &link_id)
            .await?
            .context("the invitee's card did not arrive")?;
        println!(
            "    {} answered; fingerprint {} matches what they read out: approved",
            card.display_name,
            card.fingerprint()
        );
        if card.fingerprint() != identity.card().fingerprint() {
            bail!("fingerprint mismatch");
        }
        net::approve(phone_client, phone, &link_id, &card.id()).await?;
        let info = net::await_approval(
            &mut client,
            &identity,
            &parsed,
            std::time::Duration::from_secs(10),
        )
        .await?;
        let db = dir.join(format!(
            "{}.db",
            name.split_whitespace()
                .next()
                .unwrap_or("member")
                .to_lowercase()
        ));
        let mut member = Profile::create_member(SqliteStore::open(&db)?, unlock(), identity, info)?;
        client.sync(&mut member).await?;
        anyhow::Ok(member)
    })
}

fn sections_seen(p: &Profile<SqliteStore>) -> std::collections::BTreeSet<&'static str> {
    p.query(&Query::default())
        .iter()
        .map(|e| e.section.as_str())
        .collect()
}

/// Steps 13-16: a carer for some sections, a consultant for a week,
/// revocation with key rotation, and the audit.
fn sharing_demo(
    rt: &tokio::runtime::Runtime,
    url: &str,
    dir: &Path,
    phone: &mut Profile<SqliteStore>,
    phone_client: &mut satchel_core::sync::RelayClient,
) -> Result<()> {
    use satchel_core::crypto::Role;
    use satchel_core::record::Section;
    use satchel_core::sharing::GrantRole;
    use satchel_core::sync::sharing::{self as net, InviteTerms};
    use satchel_core::sync::RelayClient;

    step(
        13,
        "Invite the daughter as a carer for medications, allergies and appointments",
    );
    let granted = [
        Section::Medications,
        Section::Allergies,
        Section::Encounters,
    ];
    let env = DemoEnv { rt, url, dir };
    let mut daughter = share_with(
        &env,
        phone,
        phone_client,
        "Sam",
        Role::Carer,
        InviteTerms {
            role: GrantRole::Reader,
            sections: granted.to_vec(),
            expires_at_ms: None,
            label: "Daughter".into(),
        },
    )?;
    let seen = sections_seen(&daughter);
    println!(
        "    the daughter sees {} entries, in: {}",
        daughter.query(&Query::default()).len(),
        seen.iter().copied().collect::<Vec<_>>().join(", ")
    );
    if seen
        .iter()
        .any(|s| !granted.iter().any(|g| g.as_str() == *s))
        || seen.is_empty()
    {
        bail!("the carer sees sections she was not granted");
    }

    step(14, "Give a consultant read access to everything for 7 days");
    let week = 7 * 24 * 3600 * 1000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let consultant = share_with(
        &env,
        phone,
        phone_client,
        "Dr Rivera",
        Role::Provider,
        InviteTerms {
            role: GrantRole::Reader,
            sections: Section::ALL.to_vec(),
            expires_at_ms: Some(i64::try_from(now)? + week),
            label: "Consultant (7 days)".into(),
        },
    )?;
    let (mine, theirs) = (
        phone.query(&Query::default()).len(),
        consultant.query(&Query::default()).len(),
    );
    println!("    the consultant sees {theirs} of {mine} entries until the grant expires");
    if mine != theirs {
        bail!("the consultant should see the whole record");
    }
    let mut table = output::table(&["WHO", "ROLE", "SECTIONS", "EXPIRES", "LABEL"]);
    for g in phone.members().grants.values() {
        table.add_row(vec![
            g.card.display_name.clone(),
            g.role.as_str().to_string(),
            g.sections.iter().cloned().collect::<Vec<_>>().join(","),
            g.expires_at_ms.map_or("never".into(), output::format_ms),
            g.label.clone(),
        ]);
    }
    println!("{table}");

    step(
        15,
        "Revoke the daughter: keys rotate; she can read nothing written afterwards",
    );
    let before = daughter.query(&Query::default()).len();
    rt.block_on(net::revoke(
        phone_client,
        phone,
        &daughter.device_id(),
        None,
    ))?;
    phone.add_resources(
        vec![serde_json::json!({"resourceType": "MedicationStatement", "status": "active",
            "medicationCodeableConcept": {"text": "Apixaban 5 mg"}, "subject": {"reference": "Patient/p"}})],
        None,
    )?;
    rt.block_on(phone_client.sync(phone))?;
    let mut client = RelayClient::new(url)?;
    let refused = rt.block_on(client.sync(&mut daughter)).is_err();
    println!(
        "    the relay refuses her sync: {refused}; she still holds the {before} entries she saw (what was seen cannot be unseen)"
    );
    if !refused || daughter.query(&Query::default()).len() != before {
        bail!("the revoked carer still has access");
    }

    step(
        16,
        "The patient reads the audit: who viewed and who contributed",
    );
    let events = rt.block_on(net::fetch_audit(phone_client, phone))?;
    let members = phone.members().clone();
    let name = |id: &satchel_core::ids::IdentityId| {
        members
            .card(id)
            .map_or("Patient device".to_string(), |c| c.display_name.clone())
    };
    let mut table = output::table(&["WHEN", "WHO", "ACTION", "SECTION", "ENVELOPES"]);
    let own = events
        .iter()
        .filter(|e| members.owner_devices.contains_key(&e.identity))
        .count();
    for e in events
        .iter()
        .filter(|e| !members.owner_devices.contains_key(&e.identity))
    {
        table.add_row(vec![
            output::format_ms(e.at_ms),
            name(&e.identity),
            if e.action == "pull" {
                "viewed".into()
            } else {
                "contributed".into()
            },
            e.section.clone(),
            e.count.to_string(),
        ]);
    }
    println!("{table}");
    println!("    (and {own} pulls and pushes by the patient's own devices)");
    if !events
        .iter()
        .any(|e| name(&e.identity) == "Sam" && e.action == "pull")
    {
        bail!("the audit does not show the daughter's views");
    }
    Ok(())
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(files_under(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
