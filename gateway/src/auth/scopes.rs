//! [`Scopes`] and [`Access`]: SMART `system/` scopes, parsed from v1
//! (`.read`, `.write`, `.*`) and v2 (`.cruds` letters) syntax, checked per
//! resource type, intersected, and printed in one canonical v1 form.

use std::collections::BTreeMap;
use std::fmt;

use super::error::{quote, AuthError};

/// What a request does to a resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read or search (`.read`, v2 `r` and `s`).
    Read,
    /// Create or update (`.write`, v2 `c` and `u`).
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// Read and write rights on one resource type (or on `*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Rights {
    read: bool,
    write: bool,
}

impl Rights {
    fn has(self, access: Access) -> bool {
        match access {
            Access::Read => self.read,
            Access::Write => self.write,
        }
    }

    fn any(self) -> bool {
        self.read || self.write
    }
}

/// A set of SMART `system/` scopes: per resource type (or `*`), read and/or
/// write.
///
/// Parsing accepts `system/<Type|*>.<read|write|*>` (SMART v1) and
/// `system/<Type|*>.<cruds>` (SMART v2: `c`, `u` give write; `r`, `s` give
/// read; `d` gives nothing, as the gateway never deletes). `Display` gives
/// the canonical v1 form, sorted, `*` first, with types already covered by
/// `*` left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scopes(BTreeMap<String, Rights>);

const WILDCARD: &str = "*";

impl Scopes {
    /// Parses a space-separated scope string. An empty string is an empty set.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        let mut scopes = Scopes::default();
        for token in s.split_ascii_whitespace() {
            let (resource_type, rights) = parse_one(token)?;
            let entry = scopes.0.entry(resource_type.to_owned()).or_default();
            entry.read |= rights.read;
            entry.write |= rights.write;
        }
        Ok(scopes.normalized())
    }

    /// Whether these scopes allow `access` on `resource_type` (through the
    /// type itself or through `*`).
    pub fn allows(&self, resource_type: &str, access: Access) -> bool {
        [resource_type, WILDCARD]
            .iter()
            .any(|t| self.0.get(*t).is_some_and(|r| r.has(access)))
    }

    /// What both sets allow.
    pub fn intersect(&self, other: &Scopes) -> Scopes {
        let mut out = Scopes::default();
        for (a, b) in [(self, other), (other, self)] {
            for (resource_type, rights) in &a.0 {
                let entry = out.0.entry(resource_type.clone()).or_default();
                for access in [Access::Read, Access::Write] {
                    // `*` in `a` survives only as far as `*` in `b` goes;
                    // a named type survives if `b` allows it either way.
                    if rights.has(access) && b.allows(resource_type, access) {
                        match access {
                            Access::Read => entry.read = true,
                            Access::Write => entry.write = true,
                        }
                    }
                }
            }
        }
        out.normalized()
    }

    /// Whether the set allows nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops empty entries and rights already given by `*`.
    fn normalized(mut self) -> Self {
        let star = self.0.get(WILDCARD).copied().unwrap_or_default();
        for (resource_type, rights) in self.0.iter_mut() {
            if resource_type != WILDCARD {
                rights.read &= !star.read;
                rights.write &= !star.write;
            }
        }
        self.0.retain(|_, rights| rights.any());
        self
    }
}

/// One `system/Type.rights` scope.
fn parse_one(token: &str) -> Result<(&str, Rights), AuthError> {
    let invalid = |detail| AuthError::InvalidScope {
        scope: quote(token),
        detail,
    };
    let rest = token.strip_prefix("system/").ok_or_else(|| {
        invalid(
            "only system/ scopes are granted to backend services (e.g. system/Observation.read)",
        )
    })?;
    if rest.contains('?') {
        return Err(invalid("scopes with search parameters are not supported"));
    }
    let (resource_type, rights) = rest
        .split_once('.')
        .ok_or_else(|| invalid("expected system/<ResourceType or *>.<read|write|cruds>"))?;
    let type_ok = resource_type == WILDCARD
        || (resource_type.starts_with(|c: char| c.is_ascii_uppercase())
            && resource_type.chars().all(|c| c.is_ascii_alphanumeric())
            && resource_type.len() <= 64);
    if !type_ok {
        return Err(invalid(
            "the resource type must be a FHIR resource type name or *",
        ));
    }
    let rights = match rights {
        "read" => Rights {
            read: true,
            write: false,
        },
        "write" => Rights {
            read: false,
            write: true,
        },
        "*" => Rights {
            read: true,
            write: true,
        },
        letters => parse_v2_letters(letters).ok_or_else(|| {
            invalid(
                "the rights must be read, write, * or SMART v2 letters from cruds, in that order",
            )
        })?,
    };
    Ok((resource_type, rights))
}

/// SMART v2 rights: a non-empty subsequence of `cruds`.
fn parse_v2_letters(letters: &str) -> Option<Rights> {
    let mut order = "cruds".chars();
    let mut rights = Rights::default();
    if letters.is_empty() {
        return None;
    }
    for letter in letters.chars() {
        // Each letter must come later in `cruds` than the one before.
        order.by_ref().find(|&c| c == letter)?;
        match letter {
            'c' | 'u' => rights.write = true,
            'r' | 's' => rights.read = true,
            _ => {}
        }
    }
    Some(rights)
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (resource_type, rights) in &self.0 {
            for (has, name) in [(rights.read, "read"), (rights.write, "write")] {
                if has {
                    if !first {
                        f.write_str(" ")?;
                    }
                    first = false;
                    write!(f, "system/{resource_type}.{name}")?;
                }
            }
        }
        Ok(())
    }
}

impl TryFrom<String> for Scopes {
    type Error = AuthError;
    fn try_from(s: String) -> Result<Self, AuthError> {
        Scopes::parse(&s)
    }
}

impl From<Scopes> for String {
    fn from(scopes: Scopes) -> String {
        scopes.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scopes {
        Scopes::parse(text).unwrap()
    }

    #[test]
    fn v1_scopes_parse_and_print_canonically() {
        let scopes = s("system/Patient.read system/*.read  system/Observation.write");
        assert_eq!(scopes.to_string(), "system/*.read system/Observation.write");
    }

    #[test]
    fn v2_letters_map_to_read_and_write() {
        assert_eq!(s("system/Patient.rs").to_string(), "system/Patient.read");
        assert_eq!(s("system/Patient.cu").to_string(), "system/Patient.write");
        assert_eq!(
            s("system/Patient.cruds").to_string(),
            "system/Patient.read system/Patient.write"
        );
        assert!(s("system/Patient.d").is_empty());
    }

    #[test]
    fn malformed_scopes_are_refused_as_invalid_scope() {
        for bad in [
            "patient/*.read",
            "system/Patient",
            "system/patient.read",
            "system/Patient.sr",
            "system/Patient.rx",
            "system/Observation.rs?category=vital-signs",
            "launch",
        ] {
            let err = Scopes::parse(bad).unwrap_err();
            assert_eq!(err.oauth_error(), "invalid_scope", "{bad}");
        }
    }

    #[test]
    fn wildcard_allows_every_type_for_its_access_only() {
        let scopes = s("system/*.read system/Observation.write");
        assert!(scopes.allows("Patient", Access::Read));
        assert!(scopes.allows("Observation", Access::Write));
        assert!(!scopes.allows("Patient", Access::Write));
    }

    #[test]
    fn intersection_keeps_what_both_allow() {
        let registered = s("system/*.read system/Observation.write");
        let requested = s("system/Patient.read system/*.write system/Condition.cruds");
        let granted = registered.intersect(&requested);
        assert_eq!(
            granted.to_string(),
            "system/Condition.read system/Observation.write system/Patient.read"
        );
        assert_eq!(granted, requested.intersect(&registered));
    }

    #[test]
    fn intersection_of_disjoint_scopes_is_empty() {
        let granted = s("system/Patient.read").intersect(&s("system/Observation.read"));
        assert!(granted.is_empty());
        assert_eq!(granted.to_string(), "");
    }

    #[test]
    fn scopes_serialize_as_their_canonical_string() {
        let json = serde_json::to_string(&s("system/Patient.rs")).unwrap();
        assert_eq!(json, "\"system/Patient.read\"");
        let back: Scopes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s("system/Patient.read"));
    }
}
