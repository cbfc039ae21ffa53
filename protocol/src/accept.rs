//! The one acceptance rule for envelopes: whether an envelope belongs in a
//! record's log. The relay runs it on every upload and snapshot, devices on
//! every envelope they pull (then open it with their section key); peers
//! will run it too. No other code decides.
//!
//! In order, first failure wins:
//! 1. size: at most the caller's limit;
//! 2. structure: the envelope parses (`Envelope::from_bytes`);
//! 3. place: its record and log are the ones it was sent to;
//! 4. rights: its author could write that log's section under the key
//!    epoch it names, per the verified access log
//!    ([`Members::wrote_with`]: a later revocation does not undo what was
//!    legitimately written before it); a snapshot's author must also be an
//!    owner device or a manager ([`Members::is_owner_or_manager`]);
//! 5. signature: the author's Ed25519 signature over header and ciphertext.
//!
//! [`check`] is steps 1–4 (callers that verify many signatures at once run
//! [`verify`] or their own batch verification afterwards); [`accept`] is
//! all five.

use crate::crypto::Envelope;
use crate::ids::RecordId;
use crate::sharing::Members;

/// What the envelope is expected to be.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The record it was sent to.
    pub record: RecordId,
    /// The log (section name, or a `section.suffix` log) it was sent to.
    pub log: &'a str,
    /// A change, or a compaction snapshot of the whole log.
    pub kind: Kind,
    /// The largest envelope accepted, in bytes.
    pub max_bytes: usize,
}

/// What kind of envelope is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A change (any writer of the section).
    Change,
    /// A compaction snapshot (owner devices and managers only).
    Snapshot,
}

/// Why an envelope was refused. No content: kinds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooLarge,
    Malformed,
    WrongRecord,
    WrongLog,
    NotWriter,
    NotSnapshotAuthor,
    BadSignature,
}

impl Refusal {
    /// The reason in words, as relays answer it and devices record it.
    pub const fn message(self) -> &'static str {
        match self {
            Refusal::TooLarge => "envelope exceeds the size limit",
            Refusal::Malformed => "envelope does not parse",
            Refusal::WrongRecord => "envelope is for another record",
            Refusal::WrongLog => "envelope is for another section",
            Refusal::NotWriter => {
                "envelope author is not a member with write access to this section under its key epoch"
            }
            Refusal::NotSnapshotAuthor => {
                "only the owner's devices and managers may write snapshots"
            }
            Refusal::BadSignature => "envelope signature does not verify",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for Refusal {}

/// Steps 1–4: everything but the signature.
pub fn check(bytes: &[u8], expect: &Expect<'_>, members: &Members) -> Result<Envelope, Refusal> {
    if bytes.len() > expect.max_bytes {
        return Err(Refusal::TooLarge);
    }
    let env = Envelope::from_bytes(bytes).map_err(|_| Refusal::Malformed)?;
    place(&env, expect)?;
    rights(&env, expect, members)?;
    Ok(env)
}

/// Step 3 alone, for an envelope already parsed.
pub fn place(env: &Envelope, expect: &Expect<'_>) -> Result<(), Refusal> {
    if env.header.record_id != expect.record {
        return Err(Refusal::WrongRecord);
    }
    if env.header.section != expect.log {
        return Err(Refusal::WrongLog);
    }
    Ok(())
}

/// Step 4 alone, for an envelope already parsed and placed.
pub fn rights(env: &Envelope, expect: &Expect<'_>, members: &Members) -> Result<(), Refusal> {
    let author = &env.header.author;
    if !members.wrote_with(author, expect.log, env.header.epoch) {
        return Err(Refusal::NotWriter);
    }
    if expect.kind == Kind::Snapshot && !members.is_owner_or_manager(author) {
        return Err(Refusal::NotSnapshotAuthor);
    }
    Ok(())
}

/// Step 5 alone.
pub fn verify(env: &Envelope) -> Result<(), Refusal> {
    env.verify_signature().map_err(|_| Refusal::BadSignature)
}

/// All five steps.
pub fn accept(bytes: &[u8], expect: &Expect<'_>, members: &Members) -> Result<Envelope, Refusal> {
    let env = check(bytes, expect, members)?;
    verify(&env)?;
    Ok(env)
}
