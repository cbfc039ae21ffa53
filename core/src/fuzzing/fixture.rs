//! The fixed world the fuzz targets decode against: the identities, record
//! id and section key of the protocol test vectors (docs/protocol.md), a
//! valid access log, and a medications document with two entries. Built
//! once per process.

use std::sync::OnceLock;

use serde_json::json;
use zeroize::Zeroizing;

use crate::crypto::{wrap_key, Identity, Role, SectionKey};
use crate::ids::RecordId;
use crate::record::{NewEntry, Section, SectionDoc};
use crate::sharing::{
    key_wrap_aad, verify_next, AccessChange, AccessStatement, GrantRole, KeyWrap, Members,
    SignedStatement,
};

/// `[start, start + 1, ...]` (wrapping), as in the protocol vectors.
fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn identity(signing: u8, agreement: u8, name: &str, role: Role) -> Identity {
    // Fixed valid seeds and names: failing here means the crypto is broken.
    #[allow(clippy::expect_used)]
    Identity::from_seeds(
        Zeroizing::new(seq(signing)),
        Zeroizing::new(seq(agreement)),
        name,
        role,
        None,
    )
    .expect("fixed seeds give an identity")
}

#[cfg_attr(not(feature = "seeds"), allow(dead_code))]
pub(super) struct Fixture {
    pub record: RecordId,
    /// The record's creator device.
    pub phone: Identity,
    pub carer: Identity,
    /// The medications key of epoch 0.
    pub section_key: SectionKey,
    /// A valid log: a grant to the carer (reader of medications), then
    /// the tablet added as a device.
    pub log: Vec<SignedStatement>,
    /// The members after each prefix of the log (empty, first, both).
    pub prefixes: Vec<Members>,
    /// A saved medications document with two entries (one amended, one
    /// entered-in-error).
    pub section_doc: Vec<u8>,
    /// The same document, loaded (targets clone it: cheaper than loading).
    pub loaded: SectionDoc,
    /// The changes that made `section_doc`, in order.
    pub section_changes: Vec<Vec<u8>>,
}

pub(super) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

/// A medication statement as the tests write them.
pub(super) fn medication(text: &str, code: &str) -> serde_json::Value {
    json!({
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": code, "display": text}],
            "text": text
        },
        "effectiveDateTime": "2024-05-01",
        "subject": {"reference": "Patient/p"}
    })
}

// The fixture is built from fixed, valid inputs; a failure is a bug in the
// code under test, reported loudly at start-up.
#[allow(clippy::expect_used)]
fn build() -> Fixture {
    let record = RecordId(seq(0xf0));
    let phone = identity(0x00, 0x20, "Test phone", Role::PatientDevice);
    let carer = identity(0x40, 0x60, "Test carer", Role::Carer);
    let tablet = identity(0x80, 0xa0, "Test tablet", Role::PatientDevice);
    let section_key = SectionKey::from_bytes(seq(0xc0));

    let mut members = Members::root(record, phone.id(), Some(phone.card()));
    let mut log = Vec::new();
    let mut prefixes = vec![members.clone()];
    let wrap = KeyWrap {
        section: "medications".into(),
        epoch: 0,
        to: carer.id(),
        key: wrap_key(
            carer.card(),
            section_key.expose(),
            &key_wrap_aad(&record, "medications", 0, &carer.id()),
        )
        .expect("wrap to a valid card"),
    };
    let changes = [
        AccessChange::Grant {
            grantee: carer.card().clone(),
            role: GrantRole::Reader,
            sections: vec!["medications".into()],
            expires_at_ms: Some(1_700_604_800_000),
            label: "Test carer".into(),
            keys: vec![wrap],
            rotations: Vec::new(),
        },
        AccessChange::AddDevice {
            device: tablet.card().clone(),
            keys: Vec::new(),
        },
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let signed = AccessStatement {
            record_id: record,
            by: phone.id(),
            at_ms: 1_700_000_000_000 + 60_000 * i as i64,
            prev: members.head,
            change,
        }
        .sign(&phone)
        .expect("the fixture statement encodes");
        verify_next(&mut members, &signed).expect("the fixture log verifies");
        prefixes.push(members.clone());
        log.push(signed);
    }

    let mut doc = SectionDoc::new(Section::Medications);
    let mut section_changes = Vec::new();
    let ids = doc
        .add_entries(vec![
            NewEntry {
                resource: medication("Metformin 500 mg", "109081006"),
                author: phone.id(),
                recorded_at_ms: 1_700_000_000_000,
                source_system: Some("https://gp.example".into()),
                source_id: Some("MedicationStatement/1".into()),
            },
            NewEntry {
                resource: medication("Amoxicillin", "27658006"),
                author: tablet.id(),
                recorded_at_ms: 1_700_000_001_000,
                source_system: None,
                source_id: None,
            },
        ])
        .expect("fixture entries fit the medications section");
    section_changes.push(doc.take_changes());
    doc.amend_entry(
        ids[0],
        medication("Metformin 1 g", "109081006"),
        phone.id(),
        1_700_000_002_000,
    )
    .expect("amend a fixture entry");
    section_changes.push(doc.take_changes());
    doc.mark_entered_in_error(ids[1], tablet.id(), 1_700_000_003_000)
        .expect("mark a fixture entry");
    section_changes.push(doc.take_changes());
    let section_doc = doc.save();
    let loaded =
        SectionDoc::load(Section::Medications, &section_doc).expect("the fixture document loads");

    Fixture {
        record,
        phone,
        carer,
        section_key,
        log,
        prefixes,
        section_doc,
        loaded,
        section_changes,
    }
}
