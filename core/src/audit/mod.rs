//! Audit: who viewed and who contributed what, when — and both as FHIR R4
//! resources.
//!
//! Views come from the relay's access log (every pull and push it served,
//! readable by the owner's devices and managers only). Contributions come
//! from the record itself: every version of every entry names its author,
//! and an author is only merged when its envelope's signature verifies and
//! the access log lets it write the section (see `profile::replica`).
//! This module is I/O-free: it shapes those facts into rows and FHIR
//! `AuditEvent` / `Provenance` resources.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids::{EntryId, IdentityId, RecordId};
use crate::record::{EntryStatus, Query, Record, Section};

/// One event of the relay's audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventRow {
    pub seq: i64,
    pub at_ms: i64,
    pub identity: IdentityId,
    /// `pull` (viewed) or `push` (contributed).
    pub action: String,
    pub section: String,
    pub count: i64,
    /// The replica relay where it happened (for example a clinic's edge
    /// relay), which forwarded it to the relay read; `None`: at that relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<IdentityId>,
}

/// Where an event happened, for people: "home relay" for the relay the
/// audit was read from, else the replica relay's label as the access log
/// names it (its short id once no longer named).
pub fn place(members: &satchel_protocol::sharing::Members, relay: Option<&IdentityId>) -> String {
    match relay {
        None => "home relay".to_owned(),
        Some(id) => members.replicas.get(id).map_or_else(
            || format!("relay {}", id.short()),
            |r| {
                if r.label.is_empty() {
                    r.card.display_name.clone()
                } else {
                    r.label.clone()
                }
            },
        ),
    }
}

/// One request for a share link's files, for the audit: "share link LABEL
/// (recipient name)" viewed the link's sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShareLinkView {
    pub at_ms: i64,
    /// The link's short id (`satchel share-link list`).
    pub link: String,
    /// `share link LABEL (RECIPIENT)`.
    pub who: String,
    /// What the link shows (`IPS` or section names).
    pub sections: String,
    /// `viewed`, or `wrong passcode` (nothing was served).
    pub action: String,
}

/// The audit rows of share links: every request the relays recorded for
/// the links this device made (`statuses`, as the relays answered), named
/// by the label the patient gave each link. Links of other devices (not in
/// `links`) are named by their short handle.
pub fn share_link_views(
    links: &[crate::profile::share_links::ShareLinkRecord],
    statuses: &[satchel_protocol::wire::share_links::ShareLinkStatus],
) -> Vec<ShareLinkView> {
    use satchel_protocol::wire::share_links::ShareLinkOpenKind;
    let mut out = Vec::new();
    for status in statuses {
        let mine = links.iter().find(|l| l.handle == status.handle);
        let short = status.handle.to_hex()[..8].to_string();
        let label = mine
            .and_then(|l| l.label.clone())
            .unwrap_or_else(|| short.clone());
        let sections = mine.map_or_else(String::new, |l| l.content.describe());
        for open in &status.opens {
            out.push(ShareLinkView {
                at_ms: open.at_ms,
                link: short.clone(),
                who: format!("share link {label} ({})", open.recipient),
                sections: sections.clone(),
                action: match open.kind {
                    ShareLinkOpenKind::WrongPasscode => "wrong passcode".into(),
                    ShareLinkOpenKind::Manifest | ShareLinkOpenKind::Direct => "viewed".into(),
                },
            });
        }
    }
    out.sort_by_key(|v| v.at_ms);
    out
}

/// One version of one entry and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contribution {
    pub entry: EntryId,
    pub section: Section,
    pub resource_type: String,
    /// 1-based version number.
    pub version: usize,
    pub author: IdentityId,
    pub recorded_at_ms: i64,
    pub entered_in_error: bool,
    /// The sending system named at import, if any.
    pub source_system: Option<String>,
}

/// Every version of every entry in `record` (hidden ones included), oldest
/// first.
pub fn contributions(record: &Record) -> Vec<Contribution> {
    let entries = record.query(&Query {
        include_entered_in_error: true,
        ..Query::default()
    });
    let mut out = Vec::new();
    for entry in entries {
        let Ok(history) = record.history(entry.id) else {
            continue;
        };
        for (i, v) in history.iter().enumerate() {
            out.push(Contribution {
                entry: entry.id,
                section: entry.section,
                resource_type: entry.resource_type.clone(),
                version: i + 1,
                author: v.author,
                recorded_at_ms: v.recorded_at_ms,
                entered_in_error: v.status == EntryStatus::EnteredInError,
                source_system: entry.source_system.clone(),
            });
        }
    }
    out.sort_by_key(|c| (c.recorded_at_ms, c.entry.to_hex(), c.version));
    out
}

/// RFC 3339 UTC instant with milliseconds (FHIR `instant`).
pub fn instant(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn identity_reference(id: &IdentityId, display: &str) -> Value {
    json!({
        "identifier": {"system": "urn:satchel:identity", "value": id.to_hex()},
        "display": display
    })
}

/// A relay event as a FHIR R4 `AuditEvent` (DICOM "Query"/"Patient Record"
/// type; `R` read for pulls, `C` create for pushes). `who` is the display
/// name of the identity (from its card).
pub fn audit_event(record: RecordId, row: &AuditEventRow, who: &str) -> Value {
    let pushed = row.action == "push";
    json!({
        "resourceType": "AuditEvent",
        "id": format!("relay-{}", row.seq),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        },
        "subtype": [{
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": if pushed { "create" } else { "read" },
            "display": if pushed { "create" } else { "read" }
        }],
        "action": if pushed { "C" } else { "R" },
        "recorded": instant(row.at_ms),
        "outcome": "0",
        "agent": [{
            "who": identity_reference(&row.identity, who),
            "requestor": true
        }],
        "source": {
            "site": "satchel-sync",
            "observer": {"display": match &row.relay {
                None => "Satchel relay".to_owned(),
                Some(id) => format!("Satchel replica relay {}", id.short()),
            }},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server"
            }]
        },
        "entity": [{
            "what": {
                "identifier": {"system": "urn:satchel:record", "value": record.to_hex()}
            },
            "name": row.section,
            "description": format!("{} envelope(s) of section {}", row.count, row.section)
        }]
    })
}

/// A contribution as a FHIR R4 `Provenance` for the entry's version.
pub fn provenance(record: RecordId, c: &Contribution, who: &str) -> Value {
    let mut agent = json!({
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author",
            "display": "Author"
        }]},
        "who": identity_reference(&c.author, who)
    });
    if let Some(system) = &c.source_system {
        agent["onBehalfOf"] = json!({"display": system});
    }
    json!({
        "resourceType": "Provenance",
        "id": format!("{}-v{}", c.entry.to_hex(), c.version),
        "target": [{
            "identifier": {"system": format!("urn:satchel:record:{}", record.to_hex()), "value": c.entry.to_hex()},
            "display": format!("{} in {}", c.resource_type, c.section.as_str())
        }],
        "recorded": instant(c.recorded_at_ms),
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": if c.entered_in_error { "NULLIFY" } else if c.version == 1 { "CREATE" } else { "UPDATE" }
        }]},
        "agent": [agent],
        "signature": [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
            "when": instant(c.recorded_at_ms),
            "who": identity_reference(&c.author, who),
            "sigFormat": "application/x-satchel-envelope-ed25519"
        }]
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_fhir_instants() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
