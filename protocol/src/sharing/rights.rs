//! The one authorization rule: what a member may do in a record at a given
//! time. [`Members`](super::Members) answers with it for any identity of a
//! verified log; the relay stores each member's [`Rights`] (its projection
//! of the same log) and answers with the same methods. No other code
//! decides who may read, write, administer or snapshot.

use std::collections::BTreeSet;

use super::members::base_section;
use super::statement::GrantRole;

/// A member's role, as the verified access log establishes it. Serialises
/// as its wire name (`owner-device`, `manager`, `writer`, `reader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MemberRole {
    /// A device of the record's owner (or its recovery key): everything.
    OwnerDevice,
    /// Delegated full control: reads and writes every section, may grant
    /// and revoke.
    Manager,
    /// Reads and writes its granted sections (never demographics).
    Writer,
    /// Reads its granted sections.
    Reader,
    /// A relay named as a replica: fetches and forwards every log's
    /// ciphertext (and snapshots, and the access log), never authors (the
    /// acceptance rule checks each envelope's own author), never
    /// administers, never holds a key.
    Replica,
}

impl MemberRole {
    /// The wire name (`owner-device`, `manager`, `writer`, `reader`).
    pub const fn as_str(self) -> &'static str {
        match self {
            MemberRole::OwnerDevice => "owner-device",
            MemberRole::Manager => "manager",
            MemberRole::Writer => "writer",
            MemberRole::Reader => "reader",
            MemberRole::Replica => "replica",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner-device" => Some(MemberRole::OwnerDevice),
            "manager" => Some(MemberRole::Manager),
            "writer" => Some(MemberRole::Writer),
            "reader" => Some(MemberRole::Reader),
            "replica" => Some(MemberRole::Replica),
            _ => None,
        }
    }

    /// The role a grant gives.
    pub const fn of_grant(role: GrantRole) -> Self {
        match role {
            GrantRole::Manager => MemberRole::Manager,
            GrantRole::Writer => MemberRole::Writer,
            GrantRole::Reader => MemberRole::Reader,
        }
    }

    /// Whether the role writes its sections at all (a replica uploads
    /// others' envelopes: it writes none of its own).
    pub const fn writes(self) -> bool {
        !matches!(self, MemberRole::Reader | MemberRole::Replica)
    }

    /// Whether the role may write `base` (a base section name) when it
    /// holds it: owner devices and managers write every section, writers
    /// every section but demographics ([`GrantRole::writes_section`]).
    fn writes_section(self, base: &str) -> bool {
        match self {
            MemberRole::OwnerDevice => true,
            MemberRole::Manager => GrantRole::Manager.writes_section(base),
            MemberRole::Writer => GrantRole::Writer.writes_section(base),
            MemberRole::Reader => GrantRole::Reader.writes_section(base),
            MemberRole::Replica => false,
        }
    }
}

/// What one identity may do in a record: its role, the sections it holds
/// (unused for owner devices, who hold every section) and when its grant
/// stops being in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// The role.
    pub role: MemberRole,
    /// Granted base-section names (empty for owner devices; every section
    /// for a manager).
    pub sections: BTreeSet<String>,
    /// When the grant stops being in force (Unix ms; `None`: never).
    pub expires_at_ms: Option<i64>,
}

impl Rights {
    /// A replica relay's rights (every log, no expiry).
    pub fn replica() -> Self {
        Rights {
            role: MemberRole::Replica,
            sections: BTreeSet::new(),
            expires_at_ms: None,
        }
    }

    /// An owner device's rights.
    pub fn owner_device() -> Self {
        Rights {
            role: MemberRole::OwnerDevice,
            sections: BTreeSet::new(),
            expires_at_ms: None,
        }
    }

    /// A grantee's rights.
    pub fn granted(
        role: GrantRole,
        sections: BTreeSet<String>,
        expires_at_ms: Option<i64>,
    ) -> Self {
        Rights {
            role: MemberRole::of_grant(role),
            sections,
            expires_at_ms,
        }
    }

    /// In force at `now_ms` (owner devices always; grants until expiry).
    pub fn live_at(&self, now_ms: i64) -> bool {
        live(self.role, self.expires_at_ms, now_ms)
    }

    /// May read `section` (or a `section.suffix` log) at `now_ms`.
    pub fn may_read(&self, section: &str, now_ms: i64) -> bool {
        may_read(
            self.role,
            &self.sections,
            self.expires_at_ms,
            section,
            now_ms,
        )
    }

    /// May upload envelopes to `section`'s log at `now_ms`: its writers,
    /// and replica relays forwarding what others wrote (each envelope's
    /// author is checked by the acceptance rule, whoever uploads it).
    pub fn may_upload(&self, section: &str, now_ms: i64) -> bool {
        may_upload(
            self.role,
            &self.sections,
            self.expires_at_ms,
            section,
            now_ms,
        )
    }

    /// May write `section` (or a `section.suffix` log) at `now_ms`.
    pub fn may_write(&self, section: &str, now_ms: i64) -> bool {
        may_write(
            self.role,
            &self.sections,
            self.expires_at_ms,
            section,
            now_ms,
        )
    }

    /// May grant, revoke, open invite links and read the audit trail
    /// (owner devices and live managers).
    pub fn may_administer(&self, now_ms: i64) -> bool {
        may_administer(self.role, self.expires_at_ms, now_ms)
    }

    /// May author a compaction snapshot (the whole section): as
    /// [`Rights::may_administer`].
    pub fn may_snapshot(&self, now_ms: i64) -> bool {
        self.may_administer(now_ms)
    }

    /// May upload a snapshot: its possible authors, and replica relays
    /// forwarding one (whose author the acceptance rule checks).
    pub fn may_upload_snapshot(&self, now_ms: i64) -> bool {
        self.role == MemberRole::Replica || self.may_snapshot(now_ms)
    }

    /// Whether this is a replica relay.
    pub fn is_replica(&self) -> bool {
        self.role == MemberRole::Replica
    }
}

// The rule itself, over borrowed parts, so that `Members` answers without
// building a `Rights` for every question.

pub(super) fn live(role: MemberRole, expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    matches!(role, MemberRole::OwnerDevice | MemberRole::Replica)
        || expires_at_ms.is_none_or(|t| now_ms < t)
}

fn holds(role: MemberRole, sections: &BTreeSet<String>, base: &str) -> bool {
    matches!(role, MemberRole::OwnerDevice | MemberRole::Replica) || sections.contains(base)
}

pub(super) fn may_upload(
    role: MemberRole,
    sections: &BTreeSet<String>,
    expires_at_ms: Option<i64>,
    section: &str,
    now_ms: i64,
) -> bool {
    role == MemberRole::Replica || may_write(role, sections, expires_at_ms, section, now_ms)
}

pub(super) fn may_read(
    role: MemberRole,
    sections: &BTreeSet<String>,
    expires_at_ms: Option<i64>,
    section: &str,
    now_ms: i64,
) -> bool {
    live(role, expires_at_ms, now_ms) && holds(role, sections, base_section(section))
}

pub(super) fn may_write(
    role: MemberRole,
    sections: &BTreeSet<String>,
    expires_at_ms: Option<i64>,
    section: &str,
    now_ms: i64,
) -> bool {
    let base = base_section(section);
    live(role, expires_at_ms, now_ms) && role.writes_section(base) && holds(role, sections, base)
}

pub(super) fn may_administer(role: MemberRole, expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    matches!(role, MemberRole::OwnerDevice | MemberRole::Manager)
        && live(role, expires_at_ms, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in [
            MemberRole::OwnerDevice,
            MemberRole::Manager,
            MemberRole::Writer,
            MemberRole::Reader,
        ] {
            assert_eq!(MemberRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(MemberRole::parse("Owner-Device"), None);
    }

    #[test]
    fn writers_never_write_demographics_and_readers_never_write() {
        let sections: BTreeSet<String> = ["demographics", "vitals"].map(String::from).into();
        let writer = Rights::granted(GrantRole::Writer, sections.clone(), None);
        assert!(writer.may_read("demographics", 0));
        assert!(!writer.may_write("demographics", 0));
        assert!(writer.may_write("vitals", 0));
        assert!(!writer.may_write("labs", 0));
        let reader = Rights::granted(GrantRole::Reader, sections, None);
        assert!(reader.may_read("vitals", 0) && !reader.may_write("vitals", 0));
        assert!(Rights::owner_device().may_write("demographics", i64::MAX));
    }

    #[test]
    fn expiry_ends_everything_at_its_instant() {
        let sections: BTreeSet<String> = ["wearables"].map(String::from).into();
        let m = Rights::granted(GrantRole::Manager, sections, Some(1_000));
        assert!(m.may_administer(999) && m.may_write("wearables.chunks", 999));
        assert!(!m.may_administer(1_000));
        assert!(!m.may_read("wearables", 1_000));
        assert!(!m.live_at(1_000));
    }
}
