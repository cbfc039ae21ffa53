//! `satchel demo`: the whole story, played by separate homes through this
//! CLI against an embedded relay, each expectation checked as it goes (a
//! failed one exits non-zero).
//!
//! The patient's phone and tablet; a GP practice and a hospital pushing
//! FHIR; a watch and a glucose monitor adding a month of samples; a daughter
//! invited as carer for medications, allergies and appointments; a
//! consultant reading everything for 7 days; the relay down during a home
//! visit, the GP's note reaching the phone directly and the daughter
//! through the relay once it is back; the daughter revoked; the patient
//! reading the audit. Every party is a real `satchel` process in its
//! own home ([`party`]); with `--keep DIR` the homes stay for use by hand.

mod party;
mod wearables;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use satchel_core::record::Section;
use serde_json::Value;

use party::{Cli, Relay, PASSPHRASE};

const PATIENT: &str = include_str!("data/patient.json");
const GP_BUNDLE: &str = include_str!("data/gp.json");
const HOSPITAL_BUNDLE: &str = include_str!("data/hospital.json");
const WRONG_PATIENT: &str = include_str!("data/wrong_patient.json");

/// Words from the demo's clinical content that must never appear in any
/// file of a home or of the relay (inputs aside).
const CLINICAL: [&str; 7] = [
    "Salbutamol",
    "Wheeze",
    "Penicillin",
    "Asthma",
    "Prednisolone",
    "Apixaban",
    "Morgan",
];

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  satchel demo\n  satchel demo --keep ./satchel-demo   \
    (keep the homes; the demo prints how to carry on)"
)]
pub struct Args {
    /// Keep the homes, the relay's database and the inputs here instead of
    /// a temporary directory (must not exist yet).
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

fn step(n: u32, text: &str) -> Result<()> {
    outln!("\n[{n}] {text}");
    Ok(())
}

/// Check an expectation; a failed one ends the demo with an error.
fn check(ok: bool, what: &str) -> Result<()> {
    if !ok {
        bail!("demo expectation failed: {what}");
    }
    outln!("    ✓ {what}");
    Ok(())
}

pub fn run(args: Args) -> Result<()> {
    let temp;
    let dir: PathBuf = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!(
                    "{} already exists; choose a new directory for --keep",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let inputs = dir.join("inputs");
    std::fs::create_dir_all(&inputs)?;
    for (name, text) in [
        ("patient.json", PATIENT),
        ("gp.json", GP_BUNDLE),
        ("hospital.json", HOSPITAL_BUNDLE),
        ("wrong-patient.json", WRONG_PATIENT),
    ] {
        std::fs::write(inputs.join(name), text)?;
    }
    let relay_dir = dir.join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let mut relay = Relay::start(&relay_dir.join("relay.db"))?;
    outln!("Satchel demo in {}", dir.display());
    outln!(
        "A relay (satchel-sync, embedded SQLite) listens at {}. Each party below is a\n\
         separate home in that directory; every command runs there with\n\
         SATCHEL_SERVER={} and SATCHEL_PASSPHRASE set.",
        relay.url,
        relay.url
    );
    let cli = Cli::new(&dir, &relay.url)?;
    Story {
        cli: &cli,
        relay: &mut relay,
    }
    .play()?;

    step(
        16,
        "Look for clinical text in every file of every home and of the relay",
    )?;
    relay.stop()?;
    let mut files = 0;
    for file in files_under(&dir)? {
        if file.starts_with(&inputs) {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&file)?;
        for word in CLINICAL {
            if bytes.windows(word.len()).any(|w| w == word.as_bytes()) {
                bail!("plaintext {word:?} found at rest in {}", file.display());
            }
        }
    }
    check(
        files > 0,
        &format!(
            "none of {} clinical words appears in any of {files} files (homes and relay hold ciphertext only)",
            CLINICAL.len()
        ),
    )?;

    outln!("\nDemo complete: every step verified.");
    if let Some(kept) = args.keep {
        outln!(
            "\nThe homes are kept in {}. To carry on by hand:\n\
             \n  cd {}\
             \n  export SATCHEL_PASSPHRASE='{PASSPHRASE}'\
             \n  satchel serve --listen 127.0.0.1:8787 --db relay/relay.db &\
             \n  export SATCHEL_SERVER=http://127.0.0.1:8787\
             \n  satchel --home phone list\
             \n  satchel --home daughter list\
             \n  satchel --home consultant sync && satchel --home consultant list --section medications\
             \n  satchel --home phone audit\n\
             \nHomes: phone, tablet (the patient's devices), gp, hospital (providers),\n\
             daughter (revoked carer), consultant (reader for 7 days).",
            kept.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The parties and the story's steps 1–15.
struct Story<'a> {
    cli: &'a Cli,
    relay: &'a mut Relay,
}

fn entries(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

fn sections_of(list: &Value) -> BTreeSet<String> {
    entries(list)
        .iter()
        .filter_map(|e| e["section"].as_str().map(str::to_string))
        .collect()
}

fn mentions(list: &Value, word: &str) -> bool {
    entries(list).iter().any(|e| {
        e["displays"].as_array().is_some_and(|d| {
            d.iter()
                .any(|t| t.as_str().is_some_and(|t| t.contains(word)))
        })
    })
}

/// The home-visit note of step 10 in a `list --json`.
fn find_note(list: &Value) -> Option<&Value> {
    entries(list)
        .iter()
        .find(|e| e["source_id"].as_str() == Some("Encounter/demo-home-visit"))
}

/// Whether an entry's verified author is the GP (`contributed_by` comes
/// from the signing identity's card in the access log).
fn by_gp(entry: &Value) -> bool {
    entry["contributed_by"]
        .as_str()
        .is_some_and(|c| c.contains("Dr Okafor"))
}

/// The fingerprint `satchel accept` printed (a line of digit groups).
fn fingerprint(accept_output: &str) -> Result<String> {
    accept_output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit() || c == ' '))
        .map(str::to_string)
        .context("`satchel accept` printed no fingerprint")
}

impl Story<'_> {
    fn play(&mut self) -> Result<()> {
        let cli = self.cli;

        step(
            1,
            "The patient creates her record on her phone and syncs it",
        )?;
        cli.show("phone", &["init", "--name", "Alex Morgan"])?;
        cli.show("phone", &["add", "inputs/patient.json"])?;
        cli.show("phone", &["sync"])?;
        let me = cli.json("phone", &["whoami", "--json"])?;
        let record = me["record_id"]
            .as_str()
            .context("whoami --json has no record_id")?
            .to_string();

        step(2, "She links her tablet with a one-time code")?;
        cli.link("phone", "tablet")?;
        let phone = cli.json("phone", &["list", "--json"])?;
        let tablet = cli.json("tablet", &["list", "--json"])?;
        check(
            phone == tablet && !entries(&phone).is_empty(),
            "the tablet holds the same record as the phone",
        )?;

        step(
            3,
            "Her GP practice is invited as a provider; it pushes her GP record",
        )?;
        self.share(
            "gp",
            &[
                "--role",
                "provider",
                "--write",
                "--sections",
                "demographics,allergies,medications,conditions,immunizations,vitals,labs,encounters",
                "--label",
                "GP practice",
            ],
            &[
                "--name",
                "Dr Okafor",
                "--role",
                "provider",
                "--organisation",
                "Riverside Medical Practice",
            ],
        )?;
        cli.show(
            "gp",
            &["provider", "push", "--record", &record, "inputs/gp.json"],
        )?;

        step(4, "The hospital is invited too and pushes her admission")?;
        self.share(
            "hospital",
            &[
                "--role",
                "provider",
                "--write",
                "--sections",
                "demographics,encounters,conditions,procedures,labs,medications",
                "--label",
                "Hospital",
            ],
            &[
                "--name",
                "Respiratory team",
                "--role",
                "provider",
                "--organisation",
                "St Mary's Hospital",
            ],
        )?;
        cli.show(
            "hospital",
            &[
                "provider",
                "push",
                "--record",
                &record,
                "inputs/hospital.json",
            ],
        )?;
        let err = cli.refused(
            "hospital",
            &[
                "provider",
                "push",
                "--record",
                &record,
                "inputs/wrong-patient.json",
            ],
        )?;
        check(
            !err.contains("Warfarin") && !err.contains("Alexandra"),
            "a Bundle about another patient is refused, with no clinical detail in the error",
        )?;

        step(5, "The phone syncs: every entry shows who contributed it")?;
        cli.show("phone", &["sync"])?;
        cli.show("phone", &["list"])?;
        let list = cli.json("phone", &["list", "--json"])?;
        let from = |org: &str| {
            entries(&list)
                .iter()
                .filter(|e| {
                    e["contributed_by"]
                        .as_str()
                        .is_some_and(|c| c.contains(org))
                })
                .count()
        };
        check(
            from("Riverside Medical Practice") == 8,
            "the GP's 8 resources arrived, each marked as contributed by the practice",
        )?;
        check(
            from("St Mary's Hospital") == 6,
            "the hospital's 6 resources arrived, marked as contributed by the hospital",
        )?;
        check(
            !mentions(&list, "Warfarin"),
            "nothing from the other patient's Bundle reached the record",
        )?;

        step(
            6,
            "The GP's mistyped glucose result is marked entered-in-error on the tablet",
        )?;
        cli.show("tablet", &["sync"])?;
        let glucose = cli.json("tablet", &["list", "--code", "2339-0", "--json"])?;
        let typo = entries(&glucose)
            .first()
            .and_then(|e| e["id"].as_str())
            .context("the GP's glucose result is missing")?
            .to_string();
        cli.show("tablet", &["entered-in-error", &typo])?;
        cli.show("tablet", &["sync"])?;
        cli.show("phone", &["sync"])?;
        let shown = cli.json("phone", &["list", "--code", "2339-0", "--json"])?;
        let all = cli.json("phone", &["list", "--code", "2339-0", "--all", "--json"])?;
        check(
            entries(&shown).is_empty() && entries(&all).len() == 1,
            "the phone hides it too (kept in history, shown with --all)",
        )?;

        step(
            7,
            "A watch (on the phone) and a glucose monitor (on the tablet) add a month of samples",
        )?;
        let month = wearables::write_month(&self.cli_dir().join("inputs"))?;
        cli.show("phone", &["wearables", "import", "inputs/watch.csv"])?;
        cli.show("tablet", &["wearables", "import", "inputs/glucose.csv"])?;
        for home in ["phone", "tablet", "phone"] {
            cli.show(home, &["sync"])?;
        }
        let range = ["--from", month.from.as_str(), "--to", month.to.as_str()];
        let weekly = |metric: &'static str| -> Vec<&str> {
            let mut a = vec!["wearables", "summary", "--metric", metric];
            a.extend_from_slice(&range);
            a.extend_from_slice(&["--every", "week"]);
            a
        };
        cli.show("phone", &weekly("heart-rate"))?;
        cli.show("phone", &weekly("blood-glucose"))?;
        for (metric, expected) in [
            ("heart-rate", month.heart_rate),
            ("steps", month.steps),
            ("blood-glucose", month.glucose),
        ] {
            let mut a = vec!["wearables", "summary", "--metric", metric];
            a.extend_from_slice(&range);
            a.extend_from_slice(&["--every", "day", "--json"]);
            let on_phone = cli.json("phone", &a)?;
            let on_tablet = cli.json("tablet", &a)?;
            let count: u64 = entries(&on_phone)
                .iter()
                .filter_map(|b| b["count"].as_u64())
                .sum();
            check(
                count == expected && on_phone == on_tablet,
                &format!(
                    "{metric}: all {expected} samples on both devices, identical daily summaries"
                ),
            )?;
        }

        step(
            8,
            "Her daughter Sam is invited as a carer for medications, allergies and appointments",
        )?;
        self.share(
            "daughter",
            &[
                "--role",
                "carer",
                "--sections",
                "medications,allergies,encounters",
                "--label",
                "Daughter",
            ],
            &["--name", "Sam", "--role", "carer"],
        )?;
        cli.show("daughter", &["list"])?;
        let seen = cli.json("daughter", &["list", "--json"])?;
        let granted: BTreeSet<String> = ["medications", "allergies", "encounters"]
            .map(str::to_string)
            .into();
        let mut expected = 0;
        let phone_list = cli.json("phone", &["list", "--json"])?;
        for e in entries(&phone_list) {
            if e["section"].as_str().is_some_and(|s| granted.contains(s)) {
                expected += 1;
            }
        }
        check(
            sections_of(&seen).is_subset(&granted) && entries(&seen).len() == expected,
            &format!(
                "Sam sees exactly the {expected} entries of the three granted sections, nothing else"
            ),
        )?;

        step(9, "A consultant gets read access to everything for 7 days")?;
        let all_sections = Section::ALL.map(Section::as_str).join(",");
        self.share(
            "consultant",
            &[
                "--role",
                "provider",
                "--sections",
                &all_sections,
                "--expires",
                "7d",
                "--label",
                "Consultant (7 days)",
            ],
            &[
                "--name",
                "Dr Rivera",
                "--role",
                "provider",
                "--organisation",
                "City Chest Clinic",
            ],
        )?;
        let theirs = cli.json("consultant", &["list", "--json"])?;
        check(
            entries(&theirs).len() == entries(&phone_list).len(),
            "the consultant sees the whole record",
        )?;
        cli.show("phone", &["grants"])?;

        self.offline_visit(&record)?;

        step(
            11,
            "The patient revokes her daughter's access: the section keys rotate",
        )?;
        cli.show("phone", &["revoke", "Sam"])?;
        let apixaban = self.cli_dir().join("inputs").join("apixaban.json");
        std::fs::write(
            &apixaban,
            serde_json::to_vec_pretty(&serde_json::json!({
                "resourceType": "MedicationStatement", "status": "active",
                "medicationCodeableConcept": {"text": "Apixaban 5 mg twice daily"},
                "subject": {"reference": "Patient/alex"}, "effectiveDateTime": "2026-11-20"}))?,
        )?;
        cli.show("phone", &["add", "inputs/apixaban.json"])?;
        cli.show("phone", &["sync"])?;
        let err = cli.refused("daughter", &["sync"])?;
        check(
            !err.is_empty(),
            "the relay refuses Sam's sync, and she is told so",
        )?;
        let text = cli.show("daughter", &["list", "--section", "medications"])?;
        let after = cli.json("daughter", &["list", "--json"])?;
        check(
            text.contains("ACCESS ENDED") && !mentions(&after, "Apixaban"),
            "her copy is labelled ACCESS ENDED and lacks the new medication",
        )?;

        step(12, "The consultant still syncs and sees the new medication")?;
        cli.show("consultant", &["sync"])?;
        let theirs = cli.json("consultant", &["list", "--json"])?;
        check(
            mentions(&theirs, "Apixaban"),
            "the consultant's copy has the new medication",
        )?;

        step(
            13,
            "The patient reads the audit: who viewed and who contributed",
        )?;
        cli.show("phone", &["audit"])?;
        let audit = cli.json("phone", &["audit", "--json"])?;
        let events = audit["events"].as_array().map_or(&[][..], Vec::as_slice);
        let did = |name: &str, action: &str| {
            events.iter().any(|e| {
                e["name"].as_str().is_some_and(|n| n.contains(name))
                    && e["action"].as_str() == Some(action)
            })
        };
        check(
            did("Sam", "pull") && did("Dr Rivera", "pull"),
            "the audit shows Sam's and the consultant's views",
        )?;
        check(
            did("Dr Okafor", "push") && did("Respiratory team", "push"),
            "the audit shows the GP's and the hospital's contributions",
        )?;
        let contributions = audit["contributions"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        check(
            contributions
                .iter()
                .filter(|c| c["name"].as_str().is_some_and(|n| n.contains("Dr Okafor")))
                .count()
                == 9,
            "each of the GP's 9 entries (the home-visit note too) carries its verified signature",
        )?;

        step(14, "The tablet catches up and agrees with the phone")?;
        cli.show("tablet", &["sync"])?;
        let phone = cli.json("phone", &["list", "--all", "--json"])?;
        let tablet = cli.json("tablet", &["list", "--all", "--json"])?;
        check(phone == tablet, "phone and tablet hold the same record")?;

        step(15, "An International Patient Summary for any clinician")?;
        cli.show("phone", &["export", "--format", "ips", "-o", "ips.json"])?;
        let ips: Value = serde_json::from_slice(&std::fs::read(self.cli_dir().join("ips.json"))?)?;
        check(
            ips["type"].as_str() == Some("document")
                && ips["entry"][0]["resource"]["resourceType"].as_str() == Some("Composition"),
            "ips.json is a FHIR document Bundle led by its Composition",
        )?;
        std::fs::remove_file(self.cli_dir().join("ips.json"))?;
        Ok(())
    }

    /// Step 10: edge sync. The relay is down while the GP is on a home
    /// visit: the note written on the GP's tablet reaches the patient's
    /// phone directly (pairing code, loopback TCP); once the relay is back
    /// the phone forwards it, signed by the GP, and the carer receives it.
    fn offline_visit(&mut self, record: &str) -> Result<()> {
        let cli = self.cli;
        step(
            10,
            "The relay goes down during a home visit: the GP's tablet and the patient's phone sync directly",
        )?;
        let gp_pushes = |audit: &Value| -> u64 {
            audit["events"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter(|e| {
                    e["name"].as_str().is_some_and(|n| n.contains("Dr Okafor"))
                        && e["action"].as_str() == Some("push")
                        && e["section"].as_str() == Some("encounters")
                })
                .filter_map(|e| e["count"].as_u64())
                .sum()
        };
        let before = gp_pushes(&cli.json("phone", &["audit", "--json"])?);

        self.relay.pause()?;
        outln!("    relay stopped: {} no longer answers", self.relay.url);

        // The consultation note: an Encounter, so it lands in the
        // encounters section (the GP may write it, the carer may read it).
        let gp: Value = serde_json::from_str(GP_BUNDLE)?;
        let patient = gp["entry"][0].clone();
        let subject = patient["fullUrl"]
            .as_str()
            .context("the GP bundle's patient has no fullUrl")?;
        let note = serde_json::json!({
            "resourceType": "Bundle", "type": "collection",
            "entry": [patient, {"resource": {
                "resourceType": "Encounter", "id": "demo-home-visit", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH",
                          "display": "home health"},
                "type": [{"text": "Home visit (consultation note)"}],
                "reasonCode": [{"text": "Wheeze after a chest infection; inhaler technique reviewed"}],
                "subject": {"reference": subject},
                "period": {"start": "2026-11-12T10:00:00Z", "end": "2026-11-12T10:30:00Z"}}}]});
        std::fs::write(
            self.cli_dir().join("inputs").join("home-visit.json"),
            serde_json::to_vec_pretty(&note)?,
        )?;
        let err = cli.refused(
            "gp",
            &[
                "provider",
                "push",
                "--record",
                record,
                "inputs/home-visit.json",
            ],
        )?;
        check(
            err.contains("stays queued") && !err.contains("Wheeze"),
            "the GP adds the consultation note offline: kept on the GP's tablet, queued for the relay",
        )?;

        let report = cli.nearby("phone", "gp", &["--record", record])?;
        let stored = report["received"]["stored"]
            .as_u64()
            .context("nearby listen --json reported no received.stored")?;
        let on_phone = cli.json("phone", &["list", "--section", "encounters", "--json"])?;
        let note = find_note(&on_phone).context("the note did not reach the phone")?;
        let gp_key = cli.json("gp", &["whoami", "--json"])?["identity"]["signing_key"].clone();
        check(
            stored >= 1 && by_gp(note) && note["created_by"] == gp_key,
            &format!(
                "GP's tablet and Alex's phone synced directly: 1 note ({stored} change(s) received), signed by Dr Okafor"
            ),
        )?;

        if self.relay.resume()? {
            cli.set_server(&self.relay.url);
            outln!(
                "    (the relay's old port was taken meanwhile; it is back at {})",
                self.relay.url
            );
        }
        outln!("    relay back at {}, on the same database", self.relay.url);
        cli.show("phone", &["sync"])?;
        let after = gp_pushes(&cli.json("phone", &["audit", "--json"])?);
        check(
            after > before,
            "relay back; the phone forwarded the note, and the relay's audit names Dr Okafor (its author) as the contributor",
        )?;

        cli.show("daughter", &["sync"])?;
        cli.show("daughter", &["list", "--section", "encounters"])?;
        let hers = cli.json("daughter", &["list", "--section", "encounters", "--json"])?;
        check(
            find_note(&hers).is_some_and(|n| by_gp(n) && n["created_by"] == gp_key),
            "Sam, the carer, received the note from Dr Okafor through the relay",
        )?;
        Ok(())
    }

    fn cli_dir(&self) -> &Path {
        self.cli.dir()
    }

    /// Invite from the phone with `invite`, accept in `home` with `accept`,
    /// approve by the fingerprint the invitee read out, sync the invitee.
    fn share(&self, home: &str, invite: &[&str], accept: &[&str]) -> Result<()> {
        let cli = self.cli;
        let mut args = vec!["invite"];
        args.extend_from_slice(invite);
        args.push("--json");
        let made: Value = serde_json::from_str(&cli.show("phone", &args)?)
            .context("invite --json did not print JSON")?;
        let code = made["code"].as_str().context("invite --json has no code")?;
        let id = made["invite"].as_str().context("invite --json has no id")?;
        let mut args = vec!["accept", code];
        args.extend_from_slice(accept);
        let out = cli.show(home, &args)?;
        let fp = fingerprint(&out)?;
        cli.show("phone", &["approve", id, "--fingerprint", &fp])?;
        cli.show(home, &["sync"])?;
        Ok(())
    }
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
