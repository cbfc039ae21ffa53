//! The binary body of `POST /v1/replica/pull` ([`super::ReplicaPull`]):
//! envelopes and snapshots of many logs in one answer, as their exact
//! bytes (no base64, no JSON), so that a replica relay catching up moves
//! little more than the envelopes themselves.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! "SRB1"
//! per log, in the order asked (an answer may stop early: logs not
//! present are asked again):
//!   u8 1                       log follows
//!   [16] record id
//!   u8 n, [n] log name (UTF-8, as in paths)
//!   u64 next                   cursor for the next ask
//!   u8 more                    0 or 1: more envelopes follow `next`
//!   u32 count
//!   count x { u64 seq, u32 len, [len] envelope }
//!   u8 snapshot                0 or 1
//!   if 1: u64 upto_seq, u32 len, [len] snapshot envelope
//! u8 0                         end
//! ```
//!
//! The decoder refuses anything else: a wrong magic, a truncated body,
//! trailing bytes, a flag that is not 0 or 1, a name that is not UTF-8, or
//! an envelope longer than the caller's limit.

use crate::ids::RecordId;

/// The format's first four bytes.
pub const MAGIC: &[u8; 4] = b"SRB1";
/// The media type of the body.
pub const CONTENT_TYPE: &str = "application/vnd.satchel.replica-batch";

/// One log's part of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    pub record: RecordId,
    /// The log's name (a section, or another log such as `wearables.chunks`).
    pub log: String,
    /// Envelopes after the cursor asked, oldest first: (relay seq, bytes).
    pub envelopes: Vec<(u64, Vec<u8>)>,
    /// The log's snapshot when it covers more than the cursor asked:
    /// (upto seq, bytes). It never stands in for the envelopes it covers.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// The cursor for the next ask.
    pub next: u64,
    /// More envelopes follow `next`.
    pub more: bool,
}

impl LogBatch {
    /// How many bytes this part takes in a body.
    pub fn encoded_len(&self) -> usize {
        1 + RecordId::LEN
            + 1
            + self.log.len()
            + 8
            + 1
            + 4
            + self
                .envelopes
                .iter()
                .map(|(_, b)| 12 + b.len())
                .sum::<usize>()
            + 1
            + self.snapshot.as_ref().map_or(0, |(_, b)| 12 + b.len())
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the replica batch does not start with its magic bytes")]
    Magic,
    #[error("the replica batch ends early")]
    Truncated,
    #[error("the replica batch has bytes after its end")]
    Trailing,
    #[error("the replica batch has a flag that is neither 0 nor 1")]
    Flag,
    #[error("a log name in the replica batch is not UTF-8 or is too long")]
    Name,
    #[error("an envelope in the replica batch is longer than {limit} bytes")]
    TooLong { limit: usize },
}

/// Writes a body part by part.
#[derive(Debug)]
pub struct Encoder {
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An empty body (its magic only).
    pub fn new() -> Self {
        Encoder {
            out: MAGIC.to_vec(),
        }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Nothing but the magic yet.
    pub fn is_empty(&self) -> bool {
        self.out.len() == MAGIC.len()
    }

    /// Append one log's part. Log names longer than 255 bytes do not exist
    /// (the protocol's names are short); one is refused.
    pub fn push(&mut self, batch: &LogBatch) -> Result<(), BatchError> {
        let name = u8::try_from(batch.log.len()).map_err(|_| BatchError::Name)?;
        let count = u32::try_from(batch.envelopes.len()).map_err(|_| BatchError::TooLong {
            limit: u32::MAX as usize,
        })?;
        self.out.reserve(batch.encoded_len());
        self.out.push(1);
        self.out.extend_from_slice(batch.record.as_bytes());
        self.out.push(name);
        self.out.extend_from_slice(batch.log.as_bytes());
        self.out.extend_from_slice(&batch.next.to_be_bytes());
        self.out.push(u8::from(batch.more));
        self.out.extend_from_slice(&count.to_be_bytes());
        for (seq, bytes) in &batch.envelopes {
            self.blob(*seq, bytes)?;
        }
        match &batch.snapshot {
            None => self.out.push(0),
            Some((upto, bytes)) => {
                self.out.push(1);
                self.blob(*upto, bytes)?;
            }
        }
        Ok(())
    }

    fn blob(&mut self, seq: u64, bytes: &[u8]) -> Result<(), BatchError> {
        let len = u32::try_from(bytes.len()).map_err(|_| BatchError::TooLong {
            limit: u32::MAX as usize,
        })?;
        self.out.extend_from_slice(&seq.to_be_bytes());
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// The finished body.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(0);
        self.out
    }
}

/// Read a body; `max_envelope` bounds every envelope and snapshot.
pub fn decode(body: &[u8], max_envelope: usize) -> Result<Vec<LogBatch>, BatchError> {
    let mut r = Reader { rest: body };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(BatchError::Magic);
    }
    let mut out = Vec::new();
    loop {
        match r.u8()? {
            0 => break,
            1 => {}
            _ => return Err(BatchError::Flag),
        }
        let record =
            RecordId::from_slice(r.take(RecordId::LEN)?).map_err(|_| BatchError::Truncated)?;
        let n = usize::from(r.u8()?);
        let log = std::str::from_utf8(r.take(n)?)
            .map_err(|_| BatchError::Name)?
            .to_owned();
        let next = r.u64()?;
        let more = r.flag()?;
        let count = r.u32()? as usize;
        // Each envelope takes at least 12 bytes: a count the body cannot
        // hold is refused before anything is reserved for it.
        if count > r.rest.len() / 12 {
            return Err(BatchError::Truncated);
        }
        let mut envelopes = Vec::with_capacity(count);
        for _ in 0..count {
            envelopes.push(r.blob(max_envelope)?);
        }
        let snapshot = if r.flag()? {
            Some(r.blob(max_envelope)?)
        } else {
            None
        };
        out.push(LogBatch {
            record,
            log,
            envelopes,
            snapshot,
            next,
            more,
        });
    }
    if !r.rest.is_empty() {
        return Err(BatchError::Trailing);
    }
    Ok(out)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.rest.len() < n {
            return Err(BatchError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, BatchError> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, BatchError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BatchError::Flag),
        }
    }

    fn u32(&mut self) -> Result<u32, BatchError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BatchError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }

    fn blob(&mut self, max: usize) -> Result<(u64, Vec<u8>), BatchError> {
        let seq = self.u64()?;
        let len = self.u32()? as usize;
        if len > max {
            return Err(BatchError::TooLong { limit: max });
        }
        Ok((seq, self.take(len)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<LogBatch> {
        vec![
            LogBatch {
                record: RecordId([7; 16]),
                log: "vitals".into(),
                envelopes: vec![(3, vec![1, 2, 3]), (9, vec![4; 40])],
                snapshot: Some((2, vec![9; 5])),
                next: 9,
                more: true,
            },
            LogBatch {
                record: RecordId([8; 16]),
                log: "wearables.chunks".into(),
                envelopes: vec![],
                snapshot: None,
                next: 0,
                more: false,
            },
        ]
    }

    fn encode(batches: &[LogBatch]) -> Vec<u8> {
        let mut e = Encoder::new();
        for b in batches {
            e.push(b).unwrap();
        }
        e.finish()
    }

    #[test]
    fn a_body_reads_back_as_written() {
        let body = encode(&sample());
        assert_eq!(decode(&body, 1000).unwrap(), sample());
        assert_eq!(
            body.len(),
            MAGIC.len() + sample().iter().map(LogBatch::encoded_len).sum::<usize>() + 1
        );
        assert_eq!(decode(&Encoder::new().finish(), 10).unwrap(), vec![]);
    }

    #[test]
    fn the_layout_is_fixed() {
        let one = LogBatch {
            record: RecordId([0xab; 16]),
            log: "meds".into(),
            envelopes: vec![(0x0102, vec![0xee, 0xff])],
            snapshot: None,
            next: 0x0102,
            more: false,
        };
        let mut want = b"SRB1".to_vec();
        want.push(1);
        want.extend_from_slice(&[0xab; 16]);
        want.push(4);
        want.extend_from_slice(b"meds");
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        want.push(0);
        want.extend_from_slice(&[0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 2, 0xee, 0xff]);
        want.push(0);
        want.push(0);
        assert_eq!(encode(&[one]), want);
    }

    #[test]
    fn every_truncation_is_refused() {
        let body = encode(&sample());
        for cut in 0..body.len() {
            assert!(decode(&body[..cut], 1000).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_bodies_are_refused_with_their_reason() {
        let body = encode(&sample());
        let mut magic = body.clone();
        magic[0] = b'X';
        assert_eq!(decode(&magic, 1000), Err(BatchError::Magic));
        let mut trailing = body.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing, 1000), Err(BatchError::Trailing));
        let mut flag = body.clone();
        flag[4] = 2;
        assert_eq!(decode(&flag, 1000), Err(BatchError::Flag));
        assert_eq!(decode(&body, 39), Err(BatchError::TooLong { limit: 39 }));
        // A count far beyond the body is refused without reserving for it.
        let mut count = encode(&sample()[1..]);
        let at = 4 + 1 + 16 + 1 + "wearables.chunks".len() + 8 + 1;
        count[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&count, 1000), Err(BatchError::Truncated));
    }

    #[test]
    fn an_overlong_log_name_is_refused_when_written() {
        let mut b = sample().remove(1);
        b.log = "x".repeat(256);
        assert_eq!(Encoder::new().push(&b), Err(BatchError::Name));
    }
}
