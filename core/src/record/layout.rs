//! Byte formats of the two scalars an entry is made of (layout 2; see the
//! module documentation of [`crate::record`] for the document around them).
//!
//! Both are automerge *bytes* scalars, written once and never changed:
//!
//! ```text
//! meta    = 0x01                      format
//!           str  resource_type
//!           [32] created_by           identity
//!           i64  created_at           unix ms
//!           opt<str> source_system
//!           opt<str> source_id
//!           ...                       (ignored: room for later fields)
//!
//! version = 0x01                      format
//!           uleb H                    header length
//!           header (H bytes):
//!             [32] author             identity
//!             i64  recorded_at        unix ms
//!             u8   status             0 active, 1 entered-in-error
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
//! version reads its header only and never parses the resource JSON.

use serde_json::Value;

use super::EntryStatus;
use crate::fhir::ResourceSummary;
use crate::ids::IdentityId;

const FORMAT_1: u8 = 1;

/// Offset, within a version header, of what follows author, time and
/// status (copied verbatim when a version is re-issued with a new status).
const HEADER_FIXED: usize = IdentityId::LEN + 8 + 1;

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

// ----- meta ------------------------------------------------------------------

/// An entry's immutable metadata, borrowed from its `meta` scalar.
#[derive(Clone, Copy)]
pub(super) struct MetaRef<'a> {
    pub resource_type: &'a str,
    pub created_by: IdentityId,
    pub created_at: i64,
    pub source_system: Option<&'a str>,
    pub source_id: Option<&'a str>,
}

impl<'a> MetaRef<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let extra = self.source_system.map_or(0, str::len) + self.source_id.map_or(0, str::len);
        let mut out = Vec::with_capacity(64 + self.resource_type.len() + extra);
        out.push(FORMAT_1);
        put_str(&mut out, self.resource_type);
        out.extend_from_slice(self.created_by.as_bytes());
        out.extend_from_slice(&self.created_at.to_le_bytes());
        put_opt_str(&mut out, self.source_system);
        put_opt_str(&mut out, self.source_id);
        out
    }

    pub fn decode(bytes: &'a [u8]) -> Option<Self> {
        let mut r = Reader { buf: bytes };
        if r.u8()? != FORMAT_1 {
            return None;
        }
        Some(MetaRef {
            resource_type: r.str()?,
            created_by: r.identity()?,
            created_at: r.i64()?,
            source_system: r.opt_str()?,
            source_id: r.opt_str()?,
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

/// A version header, borrowed and fully validated.
#[derive(Clone, Copy)]
pub(super) struct VersionHeader<'a> {
    pub author: IdentityId,
    pub recorded_at: i64,
    pub status: EntryStatus,
    pub date: Option<i64>,
    pub date_text: Option<&'a str>,
    pub codes: Items<'a>,
    pub displays: Items<'a>,
}

impl<'a> VersionHeader<'a> {
    /// Decode (and check all of) a header, as split off by [`split_version`].
    pub fn decode(header: &'a [u8]) -> Option<Self> {
        let mut r = Reader { buf: header };
        let author = r.identity()?;
        let recorded_at = r.i64()?;
        let status = match r.u8()? {
            0 => EntryStatus::Active,
            1 => EntryStatus::EnteredInError,
            _ => return None,
        };
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
        Some(VersionHeader {
            author,
            recorded_at,
            status,
            date,
            date_text,
            codes,
            displays,
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

/// A version scalar (status active) for a resource and its index fields.
pub(super) fn encode_version(
    author: IdentityId,
    recorded_at: i64,
    summary: &ResourceSummary,
    resource: &Value,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut header = Vec::with_capacity(128);
    header.extend_from_slice(author.as_bytes());
    header.extend_from_slice(&recorded_at.to_le_bytes());
    header.push(status_byte(EntryStatus::Active));
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
    let mut out = assemble(&header, 1024);
    serde_json::to_writer(&mut out, resource)?;
    Ok(out)
}

/// A copy of version scalar `bytes` (format 1) with another author, time
/// and status: the index fields and the resource are kept byte for byte.
pub(super) fn reissue_version(
    bytes: &[u8],
    author: IdentityId,
    recorded_at: i64,
    status: EntryStatus,
) -> Option<Vec<u8>> {
    let (header, resource) = split_version(bytes)?;
    VersionHeader::decode(header)?;
    let rest = header.get(HEADER_FIXED..)?;
    let mut new_header = Vec::with_capacity(header.len());
    new_header.extend_from_slice(author.as_bytes());
    new_header.extend_from_slice(&recorded_at.to_le_bytes());
    new_header.push(status_byte(status));
    new_header.extend_from_slice(rest);
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
        let bytes = encode_version(IdentityId([7; 32]), 42, &summary(), &value).unwrap();
        let (header, resource) = split_version(&bytes).unwrap();
        assert_eq!(resource, json);
        let h = VersionHeader::decode(header).unwrap();
        assert_eq!(h.author, IdentityId([7; 32]));
        assert_eq!(h.recorded_at, 42);
        assert_eq!(h.status, EntryStatus::Active);
        assert_eq!(h.date, Some(-1234));
        assert_eq!(h.date_text, Some("2012-05"));
        assert_eq!(
            h.codes.codes().collect::<Vec<_>>(),
            vec![(Some("http://snomed.info/sct"), "1|2"), (None, "")]
        );
        assert_eq!(h.displays.strs().collect::<Vec<_>>(), vec!["Ünïcode", ""]);

        let again =
            reissue_version(&bytes, IdentityId([9; 32]), 7, EntryStatus::EnteredInError).unwrap();
        let (header2, resource2) = split_version(&again).unwrap();
        assert_eq!(resource2, json);
        let h2 = VersionHeader::decode(header2).unwrap();
        assert_eq!(
            (h2.author, h2.recorded_at, h2.status),
            (IdentityId([9; 32]), 7, EntryStatus::EnteredInError)
        );
        assert_eq!(&header2[HEADER_FIXED..], &header[HEADER_FIXED..]);

        // Every truncation of the header is refused; trailing header bytes are not.
        for n in 0..header.len() {
            assert!(VersionHeader::decode(&header[..n]).is_none(), "{n}");
        }
        let mut longer = header.to_vec();
        longer.push(0xff);
        assert!(VersionHeader::decode(&longer).is_some());
        assert!(split_version(&[2, 0]).is_none());
        assert!(split_version(&[1, 5, 0]).is_none());
    }

    #[test]
    fn meta_round_trips() {
        let meta = MetaRef {
            resource_type: "Observation",
            created_by: IdentityId([3; 32]),
            created_at: i64::MIN,
            source_system: Some("https://h.example"),
            source_id: None,
        };
        let bytes = meta.encode();
        let m = MetaRef::decode(&bytes).unwrap();
        assert_eq!(m.resource_type, "Observation");
        assert_eq!(m.created_by, IdentityId([3; 32]));
        assert_eq!(m.created_at, i64::MIN);
        assert_eq!(m.source_system, Some("https://h.example"));
        assert_eq!(m.source_id, None);
        for n in 0..bytes.len() {
            assert!(MetaRef::decode(&bytes[..n]).is_none(), "{n}");
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert!(MetaRef::decode(&bad).is_none());
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
