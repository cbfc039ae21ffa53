//! The protocol kernel's promise across its users: a relay and a device
//! decide the same about every envelope and about every member's rights,
//! because both run `satchel-protocol`'s one acceptance rule and one
//! authorization rule. Each side is driven through its real path: the
//! relay over HTTP (upload handler, stored member rights, route checks), the
//! device through `Profile::apply_pulled` and its verified access log.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

#[path = "relay_common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::{client, get_json, login, upload, Device, TestServer};
use proptest::prelude::*;
use satchel_core::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey};
use satchel_core::ids::RecordId;
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::record::Section;
use satchel_core::sharing::GrantRole;
use satchel_core::store::MemoryStore;
use satchel_core::sync::sharing::post_statement;
use satchel_core::sync::transport::RelayClient;
use satchel_protocol::accept::Refusal;

fn copy(id: &Identity) -> Identity {
    Identity::from_secret_bytes(&id.to_secret_bytes()).unwrap()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A record on a running relay, its owner's device, and the test's own
/// handle on the owner's record (to publish statements).
struct Scene {
    rt: tokio::runtime::Runtime,
    server: TestServer,
    http: reqwest::Client,
    relay: RelayClient,
    owner: Profile<MemoryStore>,
    _keystore: MemorySecretStore,
}

impl Scene {
    fn new() -> Scene {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(TestServer::start(|_| {}));
        let http = client();
        let keystore = MemorySecretStore::new();
        let mut owner =
            Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keystore)).unwrap();
        let mut relay = RelayClient::new(&server.base).unwrap();
        rt.block_on(relay.sync(&mut owner)).unwrap();
        Scene {
            rt,
            server,
            http,
            relay,
            owner,
            _keystore: keystore,
        }
    }

    fn grant(&mut self, who: &Identity, role: GrantRole, sections: &[Section], exp: Option<i64>) {
        let st = self
            .owner
            .grant_statement(who.card(), role, sections, exp, "test")
            .unwrap();
        self.rt
            .block_on(post_statement(&mut self.relay, &mut self.owner, st))
            .unwrap();
    }

    /// Revoke; `false` when the owner's device refuses to make the
    /// statement (nothing of it to take away).
    fn revoke(&mut self, who: &Identity, sections: Option<&[Section]>) -> bool {
        let Ok(st) = self.owner.revoke_statement(&who.id(), sections) else {
            return false;
        };
        self.rt
            .block_on(post_statement(&mut self.relay, &mut self.owner, st))
            .unwrap();
        true
    }

    fn login(&self, who: &Identity) -> Device {
        self.rt.block_on(login(&self.http, &self.server, copy(who)))
    }
}

/// The relay's and the device's verdicts on one envelope: `Ok` accepted,
/// `Err` refused (the device's reason when it refused for a reason of the
/// shared rule; its own half, opening with a key, does not count).
fn device_verdict(owner: &mut Profile<MemoryStore>, log: &str, seq: u64, bytes: Vec<u8>) -> bool {
    let report = owner
        .apply_pulled(log.parse().unwrap(), false, None, vec![(seq, bytes)], seq)
        .unwrap();
    let public: BTreeSet<&str> = [
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::WrongRecord,
        Refusal::WrongLog,
        Refusal::NotWriter,
        Refusal::NotSnapshotAuthor,
        Refusal::BadSignature,
    ]
    .iter()
    .map(|r| r.message())
    .collect();
    !report.rejected.iter().any(|r| public.contains(r.reason))
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    None,
    /// Flip one bit at this position (modulo the envelope's length).
    Flip(usize, u8),
}

#[derive(Debug, Clone)]
struct Case {
    author: usize,
    header_log: usize,
    sent_to: usize,
    epoch: u32,
    other_record: bool,
    tamper: Tamper,
}

const LOGS: [&str; 5] = [
    "vitals",
    "labs",
    "notes",
    "demographics",
    "wearables.chunks",
];

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![3 => Just(0usize), 2 => Just(1usize), 3 => 2usize..5],
        0usize..LOGS.len(),
        prop_oneof![5 => Just(None), 1 => (0usize..LOGS.len()).prop_map(Some)],
        prop_oneof![6 => Just(0u32), 1 => Just(1u32), 1 => Just(2u32)],
        prop::bool::weighted(0.1),
        prop_oneof![
            4 => Just(Tamper::None),
            1 => (any::<usize>(), 0u8..8).prop_map(|(p, b)| Tamper::Flip(p, b)),
        ],
    )
        .prop_map(
            |(author, header_log, sent_to, epoch, other_record, tamper)| Case {
                author,
                header_log,
                sent_to: sent_to.unwrap_or(header_log),
                epoch,
                other_record,
                tamper,
            },
        )
}

/// Random valid and invalid envelopes (wrong epoch, authors without the
/// right, tampered bytes, another record, another log): the relay's
/// verdict on upload and the device's verdict on pull agree for each.
#[test]
fn relay_and_device_accept_the_same_envelopes() {
    let mut scene = Scene::new();
    // The cast: a manager (who uploads every case: it may write every
    // log), a writer of vitals/labs/demographics (writers never write
    // demographics), a reader of vitals, a former writer of notes (revoked:
    // notes rotate to epoch 1) and a stranger.
    let manager = Identity::generate("Manager", Role::Carer, None).unwrap();
    let writer = Identity::generate("GP", Role::Provider, None).unwrap();
    let reader = Identity::generate("Reader", Role::Carer, None).unwrap();
    let former = Identity::generate("Former", Role::Carer, None).unwrap();
    let stranger = Identity::generate("Stranger", Role::Carer, None).unwrap();
    scene.grant(&manager, GrantRole::Manager, &[], None);
    scene.grant(
        &writer,
        GrantRole::Writer,
        &[Section::Vitals, Section::Labs, Section::Demographics],
        None,
    );
    scene.grant(&reader, GrantRole::Reader, &[Section::Vitals], None);
    scene.grant(&former, GrantRole::Writer, &[Section::Notes], None);
    assert!(scene.revoke(&former, None));
    let uploader = scene.login(&manager);
    let authors = [manager, writer, reader, former, stranger];
    let record = scene.owner.record_id();
    let other = RecordId::random();

    let scene = std::cell::RefCell::new(scene);
    let seq = std::cell::Cell::new(0u64);
    let agreed = std::cell::Cell::new([0usize; 2]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(&case(), |c| {
            let mut scene = scene.borrow_mut();
            let scene = &mut *scene;
            seq.set(seq.get() + 1);
            let seq = seq.get();
            let author = &authors[c.author];
            let header = EnvelopeHeader {
                record_id: if c.other_record { other } else { record },
                section: LOGS[c.header_log].into(),
                epoch: c.epoch,
                author: author.id(),
                seq,
            };
            let key = SectionKey::generate().unwrap();
            let payload = seq.to_be_bytes();
            let mut bytes = Envelope::seal(&key, header, &payload, author)
                .unwrap()
                .to_bytes();
            if let Tamper::Flip(at, bit) = c.tamper {
                let at = at % bytes.len();
                bytes[at] ^= 1 << bit;
            }
            let log = LOGS[c.sent_to];
            let (status, body) = scene.rt.block_on(upload(
                &scene.http,
                &scene.server,
                &uploader,
                record,
                log,
                std::slice::from_ref(&bytes),
            ));
            prop_assert!(status == 200 || status == 422, "{status}: {body}");
            let relay = status == 200;
            let device = device_verdict(&mut scene.owner, log, seq, bytes);
            prop_assert_eq!(relay, device, "{:?}: relay {}", c, body);
            let mut counts = agreed.get();
            counts[usize::from(relay)] += 1;
            agreed.set(counts);
            Ok(())
        })
        .unwrap();
    // Both verdicts occurred, often: the cases are not all one kind.
    let agreed = agreed.get();
    assert!(agreed[0] >= 20 && agreed[1] >= 20, "{agreed:?}");
}

#[derive(Debug, Clone)]
enum Op {
    Grant {
        who: usize,
        role: usize,
        sections: Vec<usize>,
        /// Expiry relative to now, in hours (negative: already expired).
        expires_in_h: Option<i64>,
    },
    Revoke {
        who: usize,
        sections: Option<Vec<usize>>,
    },
}

const SECTIONS: [Section; 4] = [
    Section::Vitals,
    Section::Labs,
    Section::Demographics,
    Section::Notes,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (
            0usize..3,
            0usize..3,
            prop::collection::vec(0usize..SECTIONS.len(), 1..4),
            prop_oneof![2 => Just(None), 1 => (-48i64..48).prop_map(Some)],
        )
            .prop_map(|(who, role, sections, expires_in_h)| Op::Grant {
                who,
                role,
                sections,
                expires_in_h,
            }),
        1 => (
            0usize..3,
            prop_oneof![Just(None), prop::collection::vec(0usize..SECTIONS.len(), 1..3).prop_map(Some)],
        )
            .prop_map(|(who, sections)| Op::Revoke { who, sections }),
    ]
}

/// Random access logs (grants of every role, expiries in the past and the
/// future, revocations of some or all sections): for every identity and
/// section, the relay's answers (pull allowed, upload allowed) and the
/// device's (`Members::may_read` / `may_write` of its verified log) agree.
#[test]
fn relay_and_device_agree_on_access() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let checked = std::cell::Cell::new(0usize);
    runner
        .run(&prop::collection::vec(op(), 1..7), |ops| {
            let mut scene = Scene::new();
            let people: Vec<Identity> = (0..3)
                .map(|i| Identity::generate(&format!("Member {i}"), Role::Carer, None).unwrap())
                .collect();
            let now = now_ms();
            for op in &ops {
                match op {
                    Op::Grant {
                        who,
                        role,
                        sections,
                        expires_in_h,
                    } => {
                        let role =
                            [GrantRole::Manager, GrantRole::Writer, GrantRole::Reader][*role];
                        let sections: Vec<Section> =
                            sections.iter().map(|i| SECTIONS[*i]).collect();
                        let exp = expires_in_h.map(|h| now + h * 3_600_000);
                        scene.grant(&people[*who], role, &sections, exp);
                    }
                    Op::Revoke { who, sections } => {
                        if scene.owner.members().access(&people[*who].id()).is_none() {
                            continue;
                        }
                        let sections: Option<Vec<Section>> = sections
                            .as_ref()
                            .map(|s| s.iter().map(|i| SECTIONS[*i]).collect());
                        let _ = scene.revoke(&people[*who], sections.as_deref());
                    }
                }
            }
            let record = scene.owner.record_id();
            for person in &people {
                let device = scene.login(person);
                let id = person.id();
                for section in SECTIONS {
                    let name = section.as_str();
                    let at = now_ms();
                    let members = scene.owner.members();
                    let (may_read, may_write) = (
                        members.may_read(&id, name, at),
                        members.may_write(&id, name, at),
                    );
                    let (read_status, _) = scene.rt.block_on(get_json(
                        &scene.http,
                        &scene.server,
                        &device,
                        &format!("/v1/records/{record}/sections/{name}/envelopes"),
                    ));
                    prop_assert_eq!(read_status == 200, may_read, "read {} {:?}", name, ops);
                    prop_assert!(read_status == 200 || read_status == 403);
                    let epoch = scene.owner.members().epoch(name);
                    let env = Envelope::seal(
                        &SectionKey::generate().unwrap(),
                        EnvelopeHeader {
                            record_id: record,
                            section: name.into(),
                            epoch,
                            author: id,
                            seq: 1,
                        },
                        b"x",
                        person,
                    )
                    .unwrap()
                    .to_bytes();
                    let (write_status, body) = scene.rt.block_on(upload(
                        &scene.http,
                        &scene.server,
                        &device,
                        record,
                        name,
                        &[env],
                    ));
                    prop_assert!(write_status == 200 || write_status == 403, "{body}");
                    prop_assert_eq!(write_status == 200, may_write, "write {} {:?}", name, ops);
                    checked.set(checked.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    let checked = checked.get();
    assert!(checked >= 12 * 3 * SECTIONS.len(), "{checked}");
}

/// The relay depends on the protocol kernel, not on the phone library:
/// none of the device's heavy crates is in its dependency tree.
#[test]
fn relay_links_none_of_the_phone_library() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "tree",
            "--offline",
            "-p",
            "satchel-sync-server",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("satchel-protocol"), "{tree}");
    for crate_name in [
        "satchel-core",
        "automerge",
        "uniffi",
        "reqwest",
        // (argon2 is the relay's own too: share-link passcodes are kept
        // as Argon2id hashes, docs/sharing-links.md.)
        "quick-xml",
        "zstd",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{crate_name} "))),
            "the relay links {crate_name}"
        );
    }
}
