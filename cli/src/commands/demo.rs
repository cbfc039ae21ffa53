//! `satchel demo`: the whole foundation in one run, in a temporary home.
//! Creates a record under a passphrase, adds a FHIR Bundle, amends an entry,
//! marks one entered-in-error, closes and reopens from the encrypted SQLite
//! store, and checks that no clinical text is readable in any file.

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
    println!("\nDemo complete.");
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
