//! The byte format of a version: one automerge *bytes* scalar, written once
//! and never changed (layout 2; see the module documentation of
//! [`crate::record`] for the document around it).
//!
//! ```text
//! version = 0x01                      format
//!           uleb H                    header length
//!           header (H bytes):
//!             [16] entry              entry id
//!             [32] author             identity
//!             i64  recorded_at        unix ms
//!             u8   status             0 active, 1 entered-in-error
//!             opt<creation>           present only in the version that creates the entry:
//!               str      resource_type
//!               opt<str> source_system
//!               opt<str> source_id
//!             opt<i64> date           clinical date, unix ms UTC
//!             opt<str> date_text      clinical date as written
//!             uleb n, n × (opt<str> system, str code)    codes
//!             uleb n, n × str                            displays
//!             ...                     (ignored: room for later fields)
//!           resource JSON             the rest, UTF-8, unchanged
//!
//! i64 = 8 bytes little-endian; uleb = unsigned LEB128;
//! str = uleb length + UTF-8; opt<x> = 0x00 | 0x01 x
//! ```
//!
//! Everything before the resource is what the index needs, so indexing a
//! version decodes its header only and never parses the resource JSON.

use serde_json::Value;

use super::EntryStatus;
use crate::fhir::ResourceSummary;
use crate::ids::{EntryId, IdentityId};

const FORMAT_1: u8 = 1;
/// Tag of the optional trailing base field of a version header.
const BASE_TAG: u8 = 1;

fn put_base(out: &mut Vec<u8>, base: Option<Base>) {
    if let Some(b) = base {
        out.push(BASE_TAG);
        out.extend_from_slice(&b.recorded_at.to_le_bytes());
        out.extend_from_slice(b.author.as_bytes());
    }
}

// ----- primitives ------------------------------------------------------------

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    put_uleb(out, u64::try_from(len).unwrap_or(u64::MAX));
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

/// A bounds-checked reader; every method returns `None` on malformed input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(*first)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn uleb(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for i in 0..10u32 {
            let b = self.u8()?;
            let low = u64::from(b & 0x7f);
            if i == 9 && low > 1 {
                return None;
            }
            value |= low << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.uleb()?).ok()
    }

    fn i64(&mut self) -> Option<i64> {
        let b = self.take(8)?;
        Some(i64::from_le_bytes(b.try_into().ok()?))
    }

    fn identity(&mut self) -> Option<IdentityId> {
        IdentityId::from_slice(self.take(IdentityId::LEN)?).ok()
    }

    fn entry_id(&mut self) -> Option<EntryId> {
        EntryId::from_slice(self.take(EntryId::LEN)?).ok()
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn flag(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        Some(if self.flag()? {
            Some(self.str()?)
        } else {
            None
        })
    }

    fn opt_i64(&mut self) -> Option<Option<i64>> {
        Some(if self.flag()? {
            Some(self.i64()?)
        } else {
            None
        })
    }
}

// ----- versions --------------------------------------------------------------

/// Split a version scalar into its header and the resource JSON bytes.
pub(super) fn split_version(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader { buf: bytes };
    if r.u8()? != FORMAT_1 {
        return None;
    }
    let n = r.len()?;
    let header = r.take(n)?;
    Some((header, r.buf))
}

/// Decode a version scalar from outside bytes as the index does (header,
/// codes, displays, base) and count its index items; `None` if it is
/// refused. The entry point of the fuzzing facade (`crate::fuzzing`).
pub(crate) fn decode_index_fields(bytes: &[u8]) -> Option<usize> {
    let (header, _resource) = split_version(bytes)?;
    let h = VersionHeader::decode(header)?;
    Some(h.codes.codes().count() + h.displays.strs().count() + usize::from(h.base.is_some()))
}

/// The encoded codes or display strings of a header (already validated).
#[derive(Clone, Copy)]
pub(super) struct Items<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Items<'a> {
    /// Codes as `(system, code)`.
    pub fn codes(self) -> impl Iterator<Item = (Option<&'a str>, &'a str)> {
        let mut r = Reader { buf: self.bytes };
        (0..self.count).map_while(move |_| Some((r.opt_str()?, r.str()?)))
    }

    /// Display strings.
    pub fn strs(self) -> impl Iterator<Item = &'a str> {
        let mut r = Reader { buf: self.bytes };
        (0..self.count).map_while(move |_| r.str())
    }
}

/// What the version that creates an entry says about it (immutable).
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) struct Creation<'a> {
    pub resource_type: &'a str,
    pub source_system: Option<&'a str>,
    pub source_id: Option<&'a str>,
}

/// A version header, borrowed and fully validated.
/// The version a new version was written over: the current version as its
/// author saw it, named by (recorded_at, author) so that every replica
/// names it the same. Two versions with the same base were written without
/// knowing of each other: a conflict to show, not to hide.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub(crate) struct Base {
    pub recorded_at: i64,
    pub author: IdentityId,
}

#[derive(Clone, Copy)]
pub(super) struct VersionHeader<'a> {
    pub entry: EntryId,
    pub author: IdentityId,
    pub recorded_at: i64,
    pub status: EntryStatus,
    pub creation: Option<Creation<'a>>,
    pub date: Option<i64>,
    pub date_text: Option<&'a str>,
    pub codes: Items<'a>,
    pub displays: Items<'a>,
    /// The version this one was written over (amendments and
    /// entered-in-error); `None` for creations and for versions written
    /// before bases were recorded. An optional trailing field: older
    /// readers ignore it.
    pub base: Option<Base>,
    /// Where the index fields (date onwards) start in the header.
    index_fields: usize,
    /// Where they end (the base, if any, follows).
    index_end: usize,
}

impl<'a> VersionHeader<'a> {
    /// Decode (and check all of) a header, as split off by [`split_version`].
    pub fn decode(header: &'a [u8]) -> Option<Self> {
        let mut r = Reader { buf: header };
        let entry = r.entry_id()?;
        let author = r.identity()?;
        let recorded_at = r.i64()?;
        let status = match r.u8()? {
            0 => EntryStatus::Active,
            1 => EntryStatus::EnteredInError,
            _ => return None,
        };
        let creation = if r.flag()? {
            Some(Creation {
                resource_type: r.str()?,
                source_system: r.opt_str()?,
                source_id: r.opt_str()?,
            })
        } else {
            None
        };
        let index_fields = header.len() - r.buf.len();
        let date = r.opt_i64()?;
        let date_text = r.opt_str()?;
        let count = r.len()?;
        let start = r.buf;
        for _ in 0..count {
            r.opt_str()?;
            r.str()?;
        }
        let codes = Items {
            count,
            bytes: &start[..start.len() - r.buf.len()],
        };
        let count = r.len()?;
        let start = r.buf;
        for _ in 0..count {
            r.str()?;
        }
        let displays = Items {
            count,
            bytes: &start[..start.len() - r.buf.len()],
        };
        let index_end = header.len() - r.buf.len();
        // Trailing fields are optional and skipped when not understood
        // (a later format may add more).
        let base = match r.u8() {
            Some(BASE_TAG) => (|| {
                Some(Base {
                    recorded_at: r.i64()?,
                    author: r.identity()?,
                })
            })(),
            _ => None,
        };
        Some(VersionHeader {
            entry,
            author,
            recorded_at,
            status,
            creation,
            date,
            date_text,
            codes,
            displays,
            base,
            index_fields,
            index_end,
        })
    }
}

fn status_byte(status: EntryStatus) -> u8 {
    match status {
        EntryStatus::Active => 0,
        EntryStatus::EnteredInError => 1,
    }
}

fn assemble(header: &[u8], resource_json_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 10 + header.len() + resource_json_len);
    out.push(FORMAT_1);
    put_len(&mut out, header.len());
    out.extend_from_slice(header);
    out
}

fn put_prefix(
    out: &mut Vec<u8>,
    entry: EntryId,
    author: IdentityId,
    recorded_at: i64,
    status: EntryStatus,
    creation: Option<Creation<'_>>,
) {
    out.extend_from_slice(entry.as_bytes());
    out.extend_from_slice(author.as_bytes());
    out.extend_from_slice(&recorded_at.to_le_bytes());
    out.push(status_byte(status));
    match creation {
        Some(c) => {
            out.push(1);
            put_str(out, c.resource_type);
            put_opt_str(out, c.source_system);
            put_opt_str(out, c.source_id);
        }
        None => out.push(0),
    }
}

/// A version scalar (status active) for a resource and its index fields;
/// `creation` is given for the version that creates the entry.
pub(super) fn encode_version(
    entry: EntryId,
    author: IdentityId,
    recorded_at: i64,
    creation: Option<Creation<'_>>,
    base: Option<Base>,
    summary: &ResourceSummary,
    resource: &Value,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut header = Vec::with_capacity(256);
    put_prefix(
        &mut header,
        entry,
        author,
        recorded_at,
        EntryStatus::Active,
        creation,
    );
    match &summary.date {
        Some(d) => {
            header.push(1);
            header.extend_from_slice(&d.start_ms.to_le_bytes());
        }
        None => header.push(0),
    }
    put_opt_str(&mut header, summary.date.as_ref().map(|d| d.text.as_str()));
    put_len(&mut header, summary.codes.len());
    for c in &summary.codes {
        put_opt_str(&mut header, c.system.as_deref());
        put_str(&mut header, &c.code);
    }
    put_len(&mut header, summary.displays.len());
    for d in &summary.displays {
        put_str(&mut header, d);
    }
    put_base(&mut header, base);
    let mut out = assemble(&header, 1024);
    serde_json::to_writer(&mut out, resource)?;
    Ok(out)
}

/// A copy of version scalar `bytes` (format 1) with another author, time
/// and status, creating nothing: the index fields and the resource are kept
/// byte for byte.
pub(super) fn reissue_version(
    bytes: &[u8],
    author: IdentityId,
    recorded_at: i64,
    status: EntryStatus,
    base: Base,
) -> Option<Vec<u8>> {
    let (header, resource) = split_version(bytes)?;
    let h = VersionHeader::decode(header)?;
    let rest = header.get(h.index_fields..h.index_end)?;
    let mut new_header = Vec::with_capacity(header.len() + 41);
    put_prefix(&mut new_header, h.entry, author, recorded_at, status, None);
    new_header.extend_from_slice(rest);
    put_base(&mut new_header, Some(base));
    let mut out = assemble(&new_header, resource.len());
    out.extend_from_slice(resource);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::fhir::{ClinicalDate, Coding};

    fn summary() -> ResourceSummary {
        ResourceSummary {
            resource_type: "Condition".into(),
            id: None,
            date: Some(ClinicalDate {
                text: "2012-05".into(),
                start_ms: -1234,
            }),
            codes: vec![
                Coding {
                    system: Some("http://snomed.info/sct".into()),
                    code: "1|2".into(),
                },
                Coding {
                    system: None,
                    code: String::new(),
                },
            ],
            displays: vec!["Ünïcode".into(), String::new()],
        }
    }

    #[test]
    fn version_round_trips() {
        let json = br#"{"resourceType":"Condition","b":1,"a":2}"#;
        let value: Value = serde_json::from_slice(json).unwrap();
        let entry = EntryId([5; 16]);
        let creation = Creation {
            resource_type: "Condition",
            source_system: Some("https://h.example"),
            source_id: None,
        };
        let bytes = encode_version(
            entry,
            IdentityId([7; 32]),
            42,
            Some(creation),
            None,
            &summary(),
            &value,
        )
        .unwrap();
        let (header, resource) = split_version(&bytes).unwrap();
        assert_eq!(resource, json);
        let h = VersionHeader::decode(header).unwrap();
        assert_eq!(h.entry, entry);
        assert_eq!(h.author, IdentityId([7; 32]));
        assert_eq!(h.recorded_at, 42);
        assert_eq!(h.status, EntryStatus::Active);
        assert_eq!(h.creation, Some(creation));
        assert_eq!(h.date, Some(-1234));
        assert_eq!(h.date_text, Some("2012-05"));
        assert_eq!(
            h.codes.codes().collect::<Vec<_>>(),
            vec![(Some("http://snomed.info/sct"), "1|2"), (None, "")]
        );
        assert_eq!(h.displays.strs().collect::<Vec<_>>(), vec!["Ünïcode", ""]);

        assert_eq!(h.base, None);
        // Re-issued: new author, time and status; no creation; the rest
        // kept; the base names the version it was written over.
        let base = Base {
            recorded_at: 42,
            author: IdentityId([7; 32]),
        };
        let again = reissue_version(
            &bytes,
            IdentityId([9; 32]),
            7,
            EntryStatus::EnteredInError,
            base,
        )
        .unwrap();
        let (header2, resource2) = split_version(&again).unwrap();
        assert_eq!(resource2, json);
        let h2 = VersionHeader::decode(header2).unwrap();
        assert_eq!(
            (h2.entry, h2.author, h2.recorded_at, h2.status, h2.creation),
            (
                entry,
                IdentityId([9; 32]),
                7,
                EntryStatus::EnteredInError,
                None
            )
        );
        assert_eq!(
            &header2[h2.index_fields..h2.index_end],
            &header[h.index_fields..]
        );
        assert_eq!(h2.base, Some(base));
        // Re-issuing a version that has a base replaces it.
        let third = Base {
            recorded_at: 7,
            author: IdentityId([9; 32]),
        };
        let again2 =
            reissue_version(&again, IdentityId([3; 32]), 8, EntryStatus::Active, third).unwrap();
        let h3 = VersionHeader::decode(split_version(&again2).unwrap().0).unwrap();
        assert_eq!(h3.base, Some(third));
        assert_eq!(
            (
                h2.date,
                h2.date_text,
                h2.codes.codes().count(),
                h2.displays.strs().count()
            ),
            (h.date, h.date_text, 2, 2)
        );

        // Every truncation of the header is refused; trailing header bytes are not.
        for n in 0..header.len() {
            assert!(VersionHeader::decode(&header[..n]).is_none(), "{n}");
        }
        let mut longer = header.to_vec();
        longer.push(0xff);
        assert!(VersionHeader::decode(&longer).is_some());
        // Bad format byte, header longer than the scalar, bad status or flag.
        assert!(split_version(&[2, 0]).is_none());
        assert!(split_version(&[1, 5, 0]).is_none());
        let mut bad = header.to_vec();
        bad[56] = 2;
        assert!(VersionHeader::decode(&bad).is_none());
        let mut bad = header.to_vec();
        bad[57] = 2;
        assert!(VersionHeader::decode(&bad).is_none());
    }

    #[test]
    fn leb128() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_uleb(&mut out, v);
            let mut r = Reader { buf: &out };
            assert_eq!(r.uleb(), Some(v));
            assert!(r.buf.is_empty());
        }
        assert_eq!(Reader { buf: &[0x80] }.uleb(), None);
        assert_eq!(Reader { buf: &[0xff; 10] }.uleb(), None);
    }
}
