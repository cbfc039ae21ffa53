//! Strict decoding of automerge byte streams (concatenated chunks) into
//! changes, so that bad bytes are refused as a whole before anything is
//! applied. (automerge's own `load_incremental` silently keeps a valid prefix.)

use automerge::{Automerge, Change, LoadOptions, OnPartialLoad, VerificationMode};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;
const CHUNK_COMPRESSED_CHANGE: u8 = 2;

/// Unsigned LEB128; returns (value, bytes read).
fn uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        let low = u64::from(b & 0x7f);
        let shift = 7 * u32::try_from(i).ok()?;
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Options for strict document loading.
pub(crate) fn strict_load_options() -> LoadOptions<'static> {
    LoadOptions::new()
        .on_partial_load(OnPartialLoad::Error)
        .verification_mode(VerificationMode::Check)
}

/// The chunks of an automerge byte stream (`save` output, change chunks,
/// or any concatenation), with their types. Refuses a broken frame and any
/// chunk type Satchel never writes: only documents, changes and compressed
/// changes go on to automerge's parsers. (automerge 0.12's parser of its
/// "bundle" chunks panics on crafted input: found by fuzzing,
/// `fuzz/regressions/section_load/`.) Errors are fixed strings.
pub(crate) fn chunks(bytes: &[u8]) -> Result<Vec<(u8, &[u8])>, &'static str> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < 10 || rest[..4] != MAGIC {
            return Err("not automerge data");
        }
        let chunk_type = rest[8];
        let (len, len_bytes) = uleb128(&rest[9..]).ok_or("bad chunk length")?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| (9 + len_bytes).checked_add(len))
            .filter(|end| *end <= rest.len())
            .ok_or("truncated automerge data")?;
        if !matches!(
            chunk_type,
            CHUNK_DOCUMENT | CHUNK_CHANGE | CHUNK_COMPRESSED_CHANGE
        ) {
            return Err("unsupported automerge chunk type");
        }
        out.push((chunk_type, &rest[..end]));
        rest = &rest[end..];
    }
    Ok(out)
}

/// Split `bytes` (the output of `save`, `save_after` or concatenated change
/// chunks) into verified changes. Errors are fixed strings without content.
pub(crate) fn decode_changes(bytes: &[u8]) -> Result<Vec<Change>, &'static str> {
    let mut out = Vec::new();
    for (chunk_type, chunk) in chunks(bytes)? {
        if chunk_type == CHUNK_DOCUMENT {
            let doc = Automerge::load_with_options(chunk, strict_load_options())
                .map_err(|_| "corrupt document")?;
            out.extend(doc.get_changes(&[]));
        } else {
            let change = Change::try_from(chunk).map_err(|_| "corrupt change")?;
            if change.hash().0[..4] != chunk[4..8] {
                return Err("change checksum mismatch");
            }
            out.push(change);
        }
    }
    Ok(out)
}

/// Whether every entry version that `changes` (change chunks, as sealed in
/// one envelope) writes names `author` as its author: what lets the entry
/// list show a contributor that the envelope's verified signature stands
/// behind. Values that are not readable versions are ignored here as the
/// index ignores them. `Err` for undecodable changes.
pub fn versions_authored_by(
    changes: &[u8],
    author: crate::ids::IdentityId,
) -> Result<bool, &'static str> {
    use automerge::legacy::OpType;
    use automerge::ScalarValue;
    for change in decode_changes(changes)? {
        for op in change.decode().operations {
            let OpType::Put(ScalarValue::Bytes(bytes)) = &op.action else {
                continue;
            };
            let header = super::layout::split_version(bytes)
                .and_then(|(header, _)| super::layout::VersionHeader::decode(header));
            if header.is_some_and(|h| h.author != author) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leb128() {
        assert_eq!(uleb128(&[0x00]), Some((0, 1)));
        assert_eq!(uleb128(&[0x7f]), Some((127, 1)));
        assert_eq!(uleb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(uleb128(&[0x80]), None);
        assert_eq!(uleb128(&[]), None);
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode_changes(b"definitely not automerge").is_err());
        assert!(decode_changes(&[0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1, 0x7f]).is_err());
        assert_eq!(decode_changes(&[]).unwrap().len(), 0);
    }

    #[test]
    fn only_document_and_change_chunks_reach_automerge() {
        let doc = Automerge::new();
        let saved = doc.save();
        assert_eq!(chunks(&saved).unwrap().len(), 1);
        // The same frame with any other chunk type (3 is automerge's bundle).
        for chunk_type in [3u8, 4, 0xff] {
            let mut other = saved.clone();
            other[8] = chunk_type;
            assert_eq!(chunks(&other), Err("unsupported automerge chunk type"));
            assert!(decode_changes(&other).is_err());
        }
    }
}
