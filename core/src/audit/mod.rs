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
    /// `pull` (viewed: envelopes served by a relay), `push` (contributed)
    /// or `view` (entries a member showed from its own copy, as it
    /// reported: a provider's FHIR gateway answering a read).
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
/// type; `R` read for pulls and reported views, `C` create for pushes).
/// `who` is the display name of the identity (from its card).
pub fn audit_event(record: RecordId, row: &AuditEventRow, who: &str) -> Value {
    let pushed = row.action == "push";
    let viewed = row.action == "view";
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
                _ if viewed => "the member's own copy (reported to the Satchel relay)".to_owned(),
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
            "description": if viewed {
                format!("{} entry(ies) of section {} shown", row.count, row.section)
            } else {
                format!("{} envelope(s) of section {}", row.count, row.section)
            }
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

/// Views a member made from its own copy, not yet reported to the relay
/// (`POST .../audit/views`). Kept sealed in the record's store (private
/// value [`PendingViews::PRIVATE_NAME`]) from the moment of the read until
/// the relay stores them, so a crash loses none. Views of a section in the
/// same minute are merged (their counts add up, the first time is kept);
/// at most [`PendingViews::MAX`] are pending, then a section's views merge
/// into its newest pending one whatever its minute: counts are never
/// dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingViews {
    views: Vec<PendingView>,
}

/// One pending view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingView {
    pub section: String,
    pub count: u64,
    pub at_ms: i64,
}

impl PendingViews {
    /// The private value that holds them.
    pub const PRIVATE_NAME: &'static str = "pending-views";
    /// The most pending views kept apart.
    pub const MAX: usize = 10_000;

    /// Add `count` entries of `section` shown at `at_ms`.
    pub fn note(&mut self, section: &str, count: u64, at_ms: i64) {
        if count == 0 {
            return;
        }
        let minute = at_ms.div_euclid(60_000);
        let full = self.views.len() >= Self::MAX;
        let merge = self
            .views
            .iter_mut()
            .rev()
            .find(|v| v.section == section && (full || v.at_ms.div_euclid(60_000) == minute));
        match merge {
            Some(v) => v.count = v.count.saturating_add(count),
            None => self.views.push(PendingView {
                section: section.to_owned(),
                count,
                at_ms,
            }),
        }
    }

    /// The oldest `n` pending views (the next report).
    pub fn first(&self, n: usize) -> &[PendingView] {
        &self.views[..n.min(self.views.len())]
    }

    /// Forget the oldest `n` (the relay stored them).
    pub fn reported(&mut self, n: usize) {
        self.views.drain(..n.min(self.views.len()));
    }

    /// How many are pending.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether none is pending.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }
}

#[cfg(test)]
mod pending_views_tests {
    use super::PendingViews;

    #[test]
    fn views_of_a_section_in_one_minute_merge() {
        let mut p = PendingViews::default();
        p.note("vitals", 3, 60_000);
        p.note("vitals", 2, 119_999);
        p.note("labs", 1, 61_000);
        p.note("vitals", 1, 120_000);
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.first(10)
                .iter()
                .map(|v| (v.section.as_str(), v.count, v.at_ms))
                .collect::<Vec<_>>(),
            [
                ("vitals", 5, 60_000),
                ("labs", 1, 61_000),
                ("vitals", 1, 120_000)
            ]
        );
    }

    #[test]
    fn zero_counts_are_not_views() {
        let mut p = PendingViews::default();
        p.note("vitals", 0, 1);
        assert!(p.is_empty());
    }

    #[test]
    fn a_full_queue_merges_but_never_drops_a_count() {
        let mut p = PendingViews::default();
        for i in 0..PendingViews::MAX as i64 {
            p.note("vitals", 1, i * 60_000);
        }
        p.note("vitals", 7, i64::MAX / 2);
        p.note("labs", 2, 0);
        assert_eq!(p.len(), PendingViews::MAX + 1);
        let total: u64 = p.first(usize::MAX).iter().map(|v| v.count).sum();
        assert_eq!(total, PendingViews::MAX as u64 + 7 + 2);
    }

    #[test]
    fn reported_views_leave_the_queue_oldest_first() {
        let mut p = PendingViews::default();
        p.note("a", 1, 0);
        p.note("b", 1, 0);
        p.note("c", 1, 0);
        p.reported(2);
        assert_eq!(p.first(5)[0].section, "c");
        p.reported(5);
        assert!(p.is_empty());
    }
}
