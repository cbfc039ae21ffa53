//! A clinic's edge relay through a cut link (issue 15), over network
//! namespaces made by this test and joined by veth links:
//!
//! ```text
//!   clinic                                  cloud                     home
//!   edge relay 10.91.3.1 (lo)               cloud relay 10.91.0.1 (lo)
//!   tablet (patient's 2nd device)           (no forwarding)           phone (patient)
//!   clinician (provider, writes labs)                                 carer (reads meds, allergies)
//!   to-cloud 10.91.1.2 ===veth=== to-clinic 10.91.1.1
//!                                           to-home 10.91.2.1 ===veth=== to-cloud 10.91.2.2
//! ```
//!
//! Clinic and home each reach the cloud relay's address through their veth
//! (a host route); the cloud does not forward, so home never reaches the
//! edge relay, and the clinic reaches the cloud only over its link. Both
//! relays speak TLS with a certificate from a throwaway CA (devices pin it
//! with `--relay-ca`, the edge with `--upstream-ca`). Devices at the clinic
//! sync with the edge relay, devices at home with the cloud relay.
//!
//! The patient's phone makes the record at the cloud; the tablet, linked
//! at the clinic, names the edge relay a replica; a carer (home) and a
//! clinician (clinic) are granted sections. Then the clinic's link is cut
//! (`ip link set to-cloud down` in the clinic namespace): both sides keep
//! writing and syncing with the relay they can reach, the clinician writes
//! a lab and views the record at the edge. The link returns; the relays
//! converge (polled, with a deadline) to the same envelopes, each once, a
//! superset of everything either acknowledged; every device converges to
//! the entries it may read; the patient's audit at the cloud shows the
//! clinician's views at the clinic, tagged with the edge relay.
//!
//! Needs root and iproute2: fails when CI (or `SATCHEL_REQUIRE_FIXTURES`)
//! is set and namespaces cannot be made, else is skipped with a note.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "netns_common/mod.rs"]
mod netns;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use netns::{veth, Namespace};
use satchel_tests::link_devices_via as link_devices;
use satchel_tests::pki::test_ca;
use satchel_tests::run;
use satchel_tests::world::{allergy, lab, med, rand_suffix, PASS};
use serde_json::{json, Value};

const CLOUD_IP: &str = "10.91.0.1";
const EDGE_IP: &str = "10.91.3.1";
/// The cloud's end of the clinic's link.
const CLOUD_ON_CLINIC_LINK: &str = "10.91.1.1";
const EDGE_NAME: &str = "Riverside clinic relay";
const EDGE_LABEL: &str = "Riverside clinic";
const CLINICIAN: &str = "Dr Okafor";
const CARER: &str = "Jane";

/// A device (or carer's, clinician's home) driven through the `satchel`
/// binary inside its namespace, syncing with one relay.
struct Device<'a> {
    name: &'static str,
    ns: &'a Namespace,
    home: PathBuf,
    relay: String,
    ca: PathBuf,
}

impl Device<'_> {
    fn cmd(&self) -> Command {
        let mut cmd = self.ns.satchel(&self.home, PASS);
        cmd.arg("--relay-ca").arg(&self.ca);
        cmd
    }

    fn sync(&self) -> Output {
        self.cmd()
            .args(["sync", "--server", &self.relay])
            .output()
            .unwrap()
    }

    fn must_sync(&self) {
        let out = self.sync();
        assert!(
            out.status.success(),
            "{} could not sync with {}: {}",
            self.name,
            self.relay,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sync until a round succeeds (e.g. until the edge relay holds the
    /// record or a grant), for at most `secs` seconds.
    fn sync_within(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.sync();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} could not sync with {} within {secs} s: {}",
                self.name,
                self.relay,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn add(&self, value: &Value) {
        let file = self
            .home
            .with_extension(format!("input-{}.json", rand_suffix()));
        std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
        run(self.cmd().arg("add").arg(&file), true);
    }

    /// Every entry this device holds, sorted by id.
    fn entries(&self) -> Vec<Value> {
        let out = run(self.cmd().args(["list", "--json"]), true);
        let mut entries: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        entries.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
        entries
    }
}

fn vital(text: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": text}]},
        "effectiveDateTime": "2026-12-07", "valueQuantity": {"value": 72, "unit": "/min"}})
}

/// Invite `who` from the owner's device `by` (at `by`'s relay) with
/// `flags`, accept as `name` in `who`'s home, approve by the fingerprint
/// the invitee printed. The invitee does not sync yet.
fn share(by: &Device, who: &Device, name: &str, role: &str, flags: &[&str]) {
    let out = run(
        by.cmd()
            .args(["invite", "--server", &by.relay, "--json"])
            .args(flags),
        true,
    );
    let invite: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = run(
        who.cmd().args([
            "accept",
            invite["code"].as_str().unwrap(),
            "--name",
            name,
            "--role",
            role,
        ]),
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fingerprint = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit() || c == ' '))
        .expect("accept printed the fingerprint")
        .to_string();
    run(
        by.cmd().args([
            "approve",
            invite["invite"].as_str().unwrap(),
            "--server",
            &by.relay,
            "--fingerprint",
            &fingerprint,
        ]),
        true,
    );
}

/// The hashes of every envelope a relay stores (its SQLite database, read
/// directly), one per row: a duplicate would show twice.
fn stored_hashes(relay_dir: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open_with_flags(
        relay_dir.join("relay.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = db
        .prepare("SELECT hex(hash) FROM envelopes ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn as_set(hashes: &[String]) -> BTreeSet<String> {
    hashes.iter().cloned().collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The entries of `sections` in `entries`.
fn only(entries: &[Value], sections: &[&str]) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| sections.contains(&e["section"].as_str().unwrap()))
        .cloned()
        .collect()
}

/// Whether `entries` holds an entry whose FHIR resource contains `text`.
fn has(entries: &[Value], text: &str) -> bool {
    entries
        .iter()
        .any(|e| e["resource"].to_string().contains(text))
}

#[test]
fn clinic_partition_converges() {
    let started = Instant::now();
    let Some(cloud) = Namespace::create("cloud") else {
        return;
    };
    let clinic = Namespace::create("clinic").expect("a second network namespace");
    let home = Namespace::create("home").expect("a third network namespace");
    veth(
        &cloud,
        "to-clinic",
        &format!("{CLOUD_ON_CLINIC_LINK}/24"),
        &clinic,
        "to-cloud",
        "10.91.1.2/24",
    );
    veth(
        &cloud,
        "to-home",
        "10.91.2.1/24",
        &home,
        "to-cloud",
        "10.91.2.2/24",
    );
    cloud.must(&["ip", "addr", "add", &format!("{CLOUD_IP}/32"), "dev", "lo"]);
    clinic.must(&["ip", "addr", "add", &format!("{EDGE_IP}/32"), "dev", "lo"]);
    let clinic_route = [
        "ip",
        "route",
        "replace",
        &format!("{CLOUD_IP}/32"),
        "via",
        CLOUD_ON_CLINIC_LINK,
        "dev",
        "to-cloud",
    ]
    .map(String::from);
    let clinic_route: Vec<&str> = clinic_route.iter().map(String::as_str).collect();
    clinic.must(&clinic_route);
    home.must(&[
        "ip",
        "route",
        "replace",
        &format!("{CLOUD_IP}/32"),
        "via",
        "10.91.2.1",
        "dev",
        "to-cloud",
    ]);

    let dir = tempfile::tempdir().unwrap();
    // One throwaway CA; one certificate for both relays' addresses.
    let (ca, cert, key) = test_ca(&dir.path().join("pki"), "clinic", &[CLOUD_IP, EDGE_IP]);
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let cloud_relay = cloud.relay(&dir.path().join("cloud"), &format!("{CLOUD_IP}:0"), &tls);
    let cloud_url = format!("https://{}", cloud_relay.addr);
    let mut edge_flags = tls.to_vec();
    edge_flags.extend([
        "--upstream",
        &cloud_url,
        "--upstream-ca",
        ca.to_str().unwrap(),
        "--replication-interval",
        "0.2",
        "--relay-name",
        EDGE_NAME,
    ]);
    let edge_relay = clinic.relay(
        &dir.path().join("edge"),
        &format!("{EDGE_IP}:0"),
        &edge_flags,
    );
    let edge_url = format!("https://{}", edge_relay.addr);
    let device = |name: &'static str, ns, relay: &str| Device {
        name,
        ns,
        home: dir.path().join(name),
        relay: relay.to_string(),
        ca: ca.clone(),
    };
    // At home, devices sync with the cloud relay; at the clinic, with the
    // clinic's relay.
    let phone = device("phone", &home, &cloud_url);
    let carer = device("carer", &home, &cloud_url);
    let tablet = device("tablet", &clinic, &edge_url);
    let clinician = device("clinician", &clinic, &edge_url);

    // The record, made on the phone at the cloud relay.
    run(phone.cmd().args(["init", "--name", "Pat Example"]), true);
    phone.add(&med("metformin before"));
    phone.add(&allergy("penicillin before"));
    phone.must_sync();
    // The tablet is linked at the clinic (through the cloud relay, where
    // the record lives) and names the clinic's relay a replica.
    let mut offer = phone.cmd();
    offer.args(["link-device", "--server", &cloud_url, "--timeout", "60"]);
    link_devices(offer, tablet.cmd());
    let out = run(
        tablet.cmd().args([
            "replica", "add", &edge_url, "--label", EDGE_LABEL, "--server", &cloud_url, "--json",
        ]),
        true,
    );
    let replica: Value = serde_json::from_slice(&out.stdout).unwrap();
    let edge_identity = replica["identity"].as_str().unwrap().to_string();
    let edge_fingerprint = replica["fingerprint"].as_str().unwrap().to_string();
    // From now on the tablet syncs with the edge, once it holds the record.
    tablet.sync_within(20);
    assert!(has(&tablet.entries(), "metformin before"));
    // A carer at home and a clinician at the clinic (writes labs, reads
    // medications), both approved from the phone at the cloud relay.
    share(
        &phone,
        &carer,
        CARER,
        "carer",
        &[
            "--role",
            "carer",
            "--sections",
            "medications,allergies",
            "--label",
            "Daughter",
        ],
    );
    carer.must_sync();
    share(
        &phone,
        &clinician,
        CLINICIAN,
        "provider",
        &[
            "--role",
            "provider",
            "--sections",
            "labs,medications",
            "--write",
            "--label",
            "Clinic GP",
        ],
    );
    // Its first sync: the approved invite at the cloud (while the link is
    // up), then the edge, once the grant has reached it.
    clinician.sync_within(20);
    tablet.must_sync();
    phone.must_sync();
    println!(
        "set up in {:.1} s; cloud {cloud_url}, edge {edge_url}",
        started.elapsed().as_secs_f32()
    );

    // The clinic's link to the cloud is cut.
    clinic.must(&["ip", "link", "set", "to-cloud", "down"]);
    let cut_ms = now_ms();
    let partition = Instant::now();
    for round in 0..3 {
        // Clinic: the tablet writes, the clinician writes a lab and views
        // (pulls) the record, all at the edge.
        tablet.add(&vital(&format!("clinic pulse {round}")));
        tablet.add(&med(&format!("clinic medicine {round}")));
        tablet.must_sync();
        clinician.add(&lab(&format!("clinic lab {round}")));
        clinician.must_sync();
        // Home: the phone writes, the carer views, at the cloud.
        phone.add(&med(&format!("home medicine {round}")));
        phone.add(&allergy(&format!("home allergy {round}")));
        phone.must_sync();
        carer.must_sync();
    }
    clinician.must_sync();
    // Each side saw its own side's writes only.
    let at_clinic = clinician.entries();
    assert!(has(&at_clinic, "clinic medicine 2"), "{at_clinic:?}");
    assert!(
        !has(&at_clinic, "home medicine 0"),
        "the link is cut, yet home's writes reached the clinic"
    );
    assert!(!has(&carer.entries(), "clinic medicine 0"));
    // What each relay acknowledged while cut off from the other.
    let acked_edge = as_set(&stored_hashes(&edge_relay.dir));
    let acked_cloud = as_set(&stored_hashes(&cloud_relay.dir));
    assert!(
        !acked_edge.is_subset(&acked_cloud) && !acked_cloud.is_subset(&acked_edge),
        "both sides acknowledged envelopes the other did not have"
    );
    let acked: BTreeSet<String> = acked_edge.union(&acked_cloud).cloned().collect();
    println!(
        "partition: {:.1} s; edge acknowledged {}, cloud {}, {} in all",
        partition.elapsed().as_secs_f32(),
        acked_edge.len(),
        acked_cloud.len(),
        acked.len()
    );

    // The link returns (setting it down dropped the route through it).
    clinic.must(&["ip", "link", "set", "to-cloud", "up"]);
    clinic.must(&clinic_route);
    let restored = Instant::now();
    // The relays converge: the same envelopes, each once, everything
    // either acknowledged.
    let deadline = restored + Duration::from_secs(40);
    loop {
        let (edge, up) = (
            stored_hashes(&edge_relay.dir),
            stored_hashes(&cloud_relay.dir),
        );
        if as_set(&edge) == acked && as_set(&up) == acked {
            assert_eq!(edge.len(), acked.len(), "the edge stored an envelope twice");
            assert_eq!(up.len(), acked.len(), "the cloud stored an envelope twice");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relays did not converge within 40 s of the link's return: edge lacks {}, cloud lacks {}, \
             edge has {} not acknowledged by anyone, cloud {}; edge log:\n{}",
            acked.difference(&as_set(&edge)).count(),
            acked.difference(&as_set(&up)).count(),
            as_set(&edge).difference(&acked).count(),
            as_set(&up).difference(&acked).count(),
            edge_relay.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "relays converged {:.1} s after the link returned",
        restored.elapsed().as_secs_f32()
    );

    // Every device converges.
    for d in [&phone, &tablet, &carer, &clinician] {
        d.must_sync();
    }
    let patient = phone.entries();
    assert_eq!(
        patient.len(),
        2 + 3 * 5,
        "the patient's entries: 2 before, 5 per round in 3 rounds"
    );
    for text in [
        "metformin before",
        "home medicine 2",
        "home allergy 2",
        "clinic pulse 2",
        "clinic medicine 2",
        "clinic lab 2",
    ] {
        assert!(has(&patient, text), "the phone lacks {text:?}");
    }
    assert_eq!(tablet.entries(), patient, "the patient's devices differ");
    assert_eq!(
        carer.entries(),
        only(&patient, &["medications", "allergies"]),
        "the carer's copy"
    );
    assert_eq!(
        clinician.entries(),
        only(&patient, &["labs", "medications"]),
        "the clinician's copy"
    );
    // Still nothing lost or doubled at either relay.
    let (edge, up) = (
        stored_hashes(&edge_relay.dir),
        stored_hashes(&cloud_relay.dir),
    );
    assert_eq!((as_set(&edge), edge.len()), (acked.clone(), acked.len()));
    assert_eq!((as_set(&up), up.len()), (acked.clone(), acked.len()));

    // The patient's audit, read at the cloud relay from home: the
    // clinician's labs are its contributions (verified signatures).
    let audit = || -> Value {
        let out = run(
            phone
                .cmd()
                .args(["audit", "--server", &cloud_url, "--json"]),
            true,
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let shown = audit();
    let contributions = shown["contributions"].as_array().unwrap();
    assert_eq!(
        contributions
            .iter()
            .filter(|c| c["name"].as_str().unwrap().starts_with(CLINICIAN) && c["section"] == "labs")
            .count(),
        3,
        "{contributions:?}"
    );
    // And the clinician's views at the clinic, during the cut, tagged with
    // the edge relay (however the audit names it: its identity,
    // fingerprint, name or label, in any field of the event). The
    // clinician never reached the cloud after the cut (it syncs with the
    // edge only), so only the edge relay's forwarded audit can show them
    // (issue 15: "the audit survives federation"). Polled: the audit may
    // follow the envelopes by a replication round.
    let names_edge = |event: &Value| {
        let text = event.to_string();
        [
            edge_identity.as_str(),
            edge_fingerprint.as_str(),
            EDGE_NAME,
            EDGE_LABEL,
        ]
        .iter()
        .any(|t| text.contains(t))
    };
    // The clinician's pulls since the cut (whether tagged or not).
    let views_since_cut = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .filter(|e| {
                e["name"].as_str().unwrap_or("").starts_with(CLINICIAN)
                    && e["action"] == "pull"
                    && e["at_ms"].as_i64().unwrap_or(0) >= cut_ms
            })
            .cloned()
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = shown;
    loop {
        let events = shown["events"].as_array().unwrap();
        let views = views_since_cut(events);
        if let Some(view) = views.iter().find(|e| names_edge(e)) {
            println!("the clinician's view at the clinic, in the patient's audit: {view}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the patient's audit does not show {CLINICIAN}'s views at the clinic, tagged with the edge relay \
             ({EDGE_NAME}, {edge_identity}): {} of its pulls since the cut (at {cut_ms} ms) are listed{}; all its events:\n{}",
            views.len(),
            if views.is_empty() {
                " (the edge relay's audit did not reach the cloud)"
            } else {
                ", none naming the edge relay"
            },
            serde_json::to_string_pretty(&events).unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
        shown = audit();
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f32());
}
