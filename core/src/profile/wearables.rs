//! The wearables shell: ingest, query and sync of wearable samples over the
//! store (the model is [`crate::wearables`], I/O-free).
//!
//! Storage: samples go into chunks (one metric, one source, one UTC
//! calendar month per chunk and write), each sealed with the `wearables`
//! section key into an envelope stored and synced under the store / relay
//! log `wearables.chunks`. Every chunk is listed in the chunk index, the
//! automerge document of the record's `wearables` section (log
//! `wearables`), by the SHA-256 of its envelope. Both logs are only read
//! when wearables are first used, so they never slow opening the clinical
//! record. A chunk counts once both it and its index entry are present.

use std::collections::{HashMap, HashSet};

use super::{now_ms, payload, Profile, ProfileError, Result, META_DEVICE_SEQ, SNAPSHOT_EVERY};
use crate::crypto::Envelope;
use crate::record::Section;
use crate::store::{envelope_hash, Store, WriteBatch};
use crate::wearables::codec::{self, Point};
use crate::wearables::index::{ChunkEntry, ChunkIndex};
use crate::wearables::{observation, Bucket, Every, Metric, Sample, SampleInput, WearablesError};
use satchel_protocol::accept::{self, Expect, Kind};
use satchel_protocol::LogName;

/// The store / relay log of the chunk index (the `wearables` section).
pub(super) const INDEX_LOG: LogName = LogName::Section(Section::Wearables);
/// The store / relay log of the sealed chunks (`wearables.chunks`).
pub const CHUNKS_LOG: LogName = LogName::WearableChunks;

/// Whether this store / relay log belongs to wearables.
pub(super) fn handles(log: LogName) -> bool {
    log.section() == Section::Wearables
}

/// Chunks never span two UTC calendar months: the start of the month after
/// the one holding `ms`.
fn month_end_after(ms: i64) -> i64 {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return i64::MAX;
    };
    let (y, m) = match t.month() {
        time::Month::December => (t.year() + 1, time::Month::January),
        m => (t.year(), m.next()),
    };
    time::Date::from_calendar_date(y, m, 1)
        .map(|d| d.midnight().assume_utc().unix_timestamp() * 1000)
        .unwrap_or(i64::MAX)
}

/// One checked sample of an ingest batch (source interned).
struct Row {
    metric: Metric,
    source: u32,
    start: i64,
    end: i64,
    value: f64,
    pos: u32,
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Samples handed over.
    pub received: usize,
    /// Samples newly stored.
    pub stored: usize,
    /// Samples already stored (or repeated within the batch).
    pub duplicates: usize,
    /// Chunks written.
    pub chunks: usize,
}

/// Wearables state of an opened profile, loaded on first use.
#[derive(Default)]
pub(super) struct WearablesState {
    index: Option<ChunkIndex>,
    index_tail: usize,
    index_last_seq: u64,
    /// Sealed chunk envelopes by hash.
    envelopes: HashMap<[u8; 32], Vec<u8>>,
    /// Chunks already in `series`.
    decoded: HashSet<[u8; 32]>,
    series: crate::wearables::series::Series,
}

impl<S: Store> Profile<S> {
    fn wearables_open_envelope(&self, bytes: &[u8], log: LogName) -> Result<(Vec<u8>, Envelope)> {
        let env = Envelope::from_bytes(bytes).map_err(|_| ProfileError::Corrupt("envelope"))?;
        if env.header.record_id != self.record.id || env.header.section != log.as_str() {
            return Err(ProfileError::Corrupt("envelope header"));
        }
        let key = self
            .keys
            .get(&(Section::Wearables, env.header.epoch))
            .ok_or(ProfileError::NoKey(Section::Wearables.as_str()))?;
        let plain = env
            .open(key)
            .map_err(|_| ProfileError::Corrupt("envelope"))?;
        Ok((payload::decode(&plain)?, env))
    }

    /// Read both wearables logs from the store (once).
    fn wearables_load(&mut self) -> Result<()> {
        if self.wearables.index.is_some() {
            return Ok(());
        }
        let log = self.store.load_section(INDEX_LOG)?;
        let mut index = match &log.snapshot {
            Some(snap) => {
                let (plain, _) = self.wearables_open_envelope(&snap.envelope, INDEX_LOG)?;
                ChunkIndex::load(&plain).map_err(|_| ProfileError::Corrupt("wearables index"))?
            }
            None => {
                let mut fresh =
                    ChunkIndex::new().map_err(|_| ProfileError::Corrupt("wearables index"))?;
                // The genesis change is part of every stored index.
                fresh.take_changes();
                fresh
            }
        };
        for item in &log.tail {
            let (plain, _) = self.wearables_open_envelope(&item.envelope, INDEX_LOG)?;
            index
                .apply(&plain)
                .map_err(|_| ProfileError::Corrupt("wearables index"))?;
        }
        let chunks = self.store.load_section(CHUNKS_LOG)?;
        let envelopes = chunks
            .tail
            .into_iter()
            .map(|item| (envelope_hash(&item.envelope), item.envelope))
            .collect();
        self.wearables = WearablesState {
            index_tail: log.tail.len(),
            index_last_seq: log
                .tail
                .last()
                .map(|i| i.seq)
                .or(log.snapshot.as_ref().map(|s| s.upto_seq))
                .unwrap_or(0),
            index: Some(index),
            envelopes,
            decoded: HashSet::new(),
            series: Default::default(),
        };
        Ok(())
    }

    /// Decrypt and decode every indexed chunk of `metric` not yet in the series.
    fn wearables_decode(&mut self, metric: Metric) -> Result<()> {
        self.wearables_load()?;
        let Some(index) = &self.wearables.index else {
            return Ok(());
        };
        let todo: Vec<ChunkEntry> = index
            .entries()
            .values()
            .filter(|e| e.metric == metric && !self.wearables.decoded.contains(&e.hash))
            .filter(|e| self.wearables.envelopes.contains_key(&e.hash))
            .cloned()
            .collect();
        for entry in todo {
            let Some(bytes) = self.wearables.envelopes.get(&entry.hash) else {
                continue;
            };
            let (plain, env) = self.wearables_open_envelope(bytes, CHUNKS_LOG)?;
            let chunk =
                codec::decode(&plain).map_err(|_| ProfileError::Corrupt("wearables chunk"))?;
            // The index entry must describe this chunk, written by its author.
            if env.header.author != entry.author
                || chunk.metric != entry.metric
                || chunk.source != entry.source
            {
                return Err(ProfileError::Corrupt(
                    "wearables chunk does not match its index entry",
                ));
            }
            self.wearables.series.add_chunk(&entry, &chunk.points);
            self.wearables.decoded.insert(entry.hash);
        }
        Ok(())
    }

    /// Store a batch of samples (as HealthKit / Health Connect or an import
    /// hands them over). Every sample is checked and converted first: one
    /// bad sample (unknown unit, end before start, ...) refuses the batch
    /// and nothing is stored. Samples already stored (same metric, source,
    /// start, end and value) are skipped, in any order and however late.
    /// Durable when this returns.
    pub fn wearables_ingest(&mut self, input: &[SampleInput]) -> Result<IngestReport> {
        self.check_writable()?;
        self.check_may_write(Section::Wearables)?;
        // Check and convert every sample first: one bad sample refuses the batch.
        let mut source_ids: HashMap<&str, u32> = HashMap::new();
        let mut sources: Vec<&str> = Vec::new();
        let mut rows: Vec<Row> = Vec::with_capacity(input.len());
        for (index, s) in input.iter().enumerate() {
            let value = s.checked_value().map_err(|e| WearablesError::InInput {
                index,
                source: Box::new(e),
            })?;
            let name = s.source.trim();
            let source = *source_ids.entry(name).or_insert_with(|| {
                sources.push(name);
                sources.len() as u32 - 1
            });
            rows.push(Row {
                metric: s.metric,
                source,
                start: s.start_ms,
                end: s.end_ms,
                value,
                pos: index as u32,
            });
        }
        let mut report = IngestReport {
            received: input.len(),
            ..IngestReport::default()
        };
        let metrics: std::collections::BTreeSet<Metric> = rows.iter().map(|r| r.metric).collect();
        for m in &metrics {
            self.wearables_decode(*m)?;
        }
        // Group by (metric, source), time order; of two samples with one
        // identity in the batch the later in the input wins.
        rows.sort_unstable_by(|a, b| {
            (a.metric, a.source, a.start, a.end, std::cmp::Reverse(a.pos)).cmp(&(
                b.metric,
                b.source,
                b.start,
                b.end,
                std::cmp::Reverse(b.pos),
            ))
        });
        rows.dedup_by(|b, a| {
            (b.metric, b.source, b.start, b.end) == (a.metric, a.source, a.start, a.end)
        });
        let series = &mut self.wearables.series;
        rows.retain(|r| {
            !series.contains_parts(
                r.metric,
                sources[r.source as usize],
                r.start,
                r.end,
                r.value,
            )
        });
        report.duplicates = input.len() - rows.len();
        report.stored = rows.len();
        if rows.is_empty() {
            return Ok(report);
        }
        // Chunks: one per (metric, source, UTC month).
        let mut groups: Vec<(Metric, u32, Vec<Point>)> = Vec::new();
        let mut month_end = i64::MIN;
        for r in rows {
            let same = groups
                .last()
                .is_some_and(|(m, s, _)| *m == r.metric && *s == r.source && r.start < month_end);
            if !same {
                month_end = month_end_after(r.start);
                groups.push((r.metric, r.source, Vec::new()));
            }
            if let Some((_, _, points)) = groups.last_mut() {
                points.push(Point {
                    start_ms: r.start,
                    end_ms: r.end,
                    value: r.value,
                });
            }
        }
        let author = self.identity.id();
        let written_at_ms = now_ms();
        let mut seq = self.device_seq;
        let mut batch = WriteBatch::new();
        let mut written: Vec<(ChunkEntry, Vec<u8>, Vec<Point>)> = Vec::new();
        for (metric, source, points) in groups {
            let source = sources[source as usize].to_string();
            for part in points.chunks(codec::MAX_SAMPLES) {
                let bytes = codec::encode(metric, &source, part)?;
                let sealed = self.seal_named(CHUNKS_LOG, seq, &bytes)?;
                seq += 1;
                let entry = ChunkEntry {
                    hash: envelope_hash(&sealed),
                    metric,
                    author,
                    written_at_ms,
                    first_start_ms: part.first().map_or(0, |p| p.start_ms),
                    last_start_ms: part.last().map_or(0, |p| p.start_ms),
                    count: part.len() as u32,
                    source: source.clone(),
                };
                batch.append(CHUNKS_LOG, sealed.clone());
                written.push((entry, sealed, part.to_vec()));
            }
        }
        report.chunks = written.len();
        let mut index = match self.wearables.index.take() {
            Some(i) => i,
            None => return Err(ProfileError::Corrupt("wearables index")),
        };
        let entries: Vec<ChunkEntry> = written.iter().map(|(e, _, _)| e.clone()).collect();
        let added = index.add(&entries);
        let changes = index.take_changes();
        self.wearables.index = Some(index);
        added?;
        batch.append(INDEX_LOG, self.seal(Section::Wearables, seq, &changes)?);
        seq += 1;
        batch.put_meta(META_DEVICE_SEQ, seq.to_be_bytes().to_vec());
        let committed = match self.store.commit(batch) {
            Ok(c) => c,
            Err(e) => {
                self.poisoned = true;
                return Err(e.into());
            }
        };
        self.device_seq = seq;
        self.wearables.index_tail += 1;
        if let Some(last) = committed.appended.last() {
            self.wearables.index_last_seq = *last;
        }
        for (entry, sealed, points) in written {
            self.wearables.series.add_chunk(&entry, &points);
            self.wearables.decoded.insert(entry.hash);
            self.wearables.envelopes.insert(entry.hash, sealed);
        }
        self.wearables_compact_index()?;
        Ok(report)
    }

    /// Snapshot the chunk index once its tail is long.
    fn wearables_compact_index(&mut self) -> Result<()> {
        if self.wearables.index_tail < SNAPSHOT_EVERY {
            return Ok(());
        }
        let Some(index) = self.wearables.index.as_mut() else {
            return Ok(());
        };
        let full = index.save();
        let seq = self.device_seq;
        let sealed = self.seal(Section::Wearables, seq, &full)?;
        let mut batch = WriteBatch::new();
        batch
            .put_snapshot(INDEX_LOG, self.wearables.index_last_seq, sealed)
            .put_meta(META_DEVICE_SEQ, (seq + 1).to_be_bytes().to_vec());
        if let Err(e) = self.store.commit(batch) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.device_seq = seq + 1;
        self.wearables.index_tail = 0;
        Ok(())
    }

    /// Samples of `metric` starting in `[from_ms, to_ms)`, every source,
    /// in time order (duplicates collapsed; see [`crate::wearables::series`]).
    pub fn wearables_samples(
        &mut self,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Sample>> {
        self.wearables_decode(metric)?;
        Ok(self.wearables.series.samples(metric, from_ms, to_ms))
    }

    /// Min / max / mean / sum / count of `metric` by hour, day or week over
    /// `[from_ms, to_ms)`, buckets aligned to local time at `utc_offset_s`,
    /// sources merged by the rule in [`crate::wearables::series`].
    pub fn wearables_summary(
        &mut self,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
        every: Every,
        utc_offset_s: i32,
    ) -> Result<Vec<Bucket>> {
        self.wearables_decode(metric)?;
        Ok(self.wearables.series.aggregate(
            metric,
            from_ms,
            to_ms,
            every,
            i64::from(utc_offset_s) * 1000,
        ))
    }

    /// Daily summaries of every metric over `[from_ms, to_ms)` as FHIR R4
    /// Observations (see [`crate::wearables::observation`]); `subject` is
    /// a FHIR Reference to put in each.
    pub fn wearables_observations(
        &mut self,
        from_ms: i64,
        to_ms: i64,
        utc_offset_s: i32,
        subject: Option<&serde_json::Value>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        let days =
            |p: &mut Self, m| p.wearables_summary(m, from_ms, to_ms, Every::Day, utc_offset_s);
        for m in Metric::ALL {
            if matches!(
                m,
                Metric::BloodPressureSystolic | Metric::BloodPressureDiastolic
            ) {
                continue;
            }
            let d = days(self, *m)?;
            out.extend(observation::daily(*m, &d, subject));
        }
        let sys = days(self, Metric::BloodPressureSystolic)?;
        let dia = days(self, Metric::BloodPressureDiastolic)?;
        out.extend(observation::blood_pressure(&sys, &dia, subject));
        Ok(out)
    }

    /// Chunks listed in the index, and of those, how many are present.
    pub fn wearables_chunk_counts(&mut self) -> Result<(usize, usize)> {
        self.wearables_load()?;
        let listed = self
            .wearables
            .index
            .as_ref()
            .map_or(0, |i| i.entries().len());
        let present = self.wearables.index.as_ref().map_or(0, |i| {
            i.entries()
                .keys()
                .filter(|h| self.wearables.envelopes.contains_key(*h))
                .count()
        });
        Ok((listed, present))
    }

    /// Merge pulled envelopes of a wearables log (`wearables`: index
    /// changes; `wearables.chunks`: chunks): each must parse, belong to this
    /// record and log, come from a device that may write `wearables`, verify
    /// and decrypt under the wearables key, and decode (a chunk) or apply
    /// (index changes). Refused ones are reported, never stored.
    pub(super) fn apply_remote_wearables(
        &mut self,
        log: LogName,
        source: super::replica::Source,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
    ) -> Result<super::ApplyReport> {
        use super::replica::{cursor_key, get_u64, since_snapshot_key, Source};
        use super::{ApplyReport, Rejected};
        self.check_writable()?;
        self.wearables_load()?;
        let members = self.access.members.clone();
        let mut report = ApplyReport::default();
        let mut batch = WriteBatch::new();
        let relay = match source {
            Source::Relay { next_cursor, .. } => {
                batch.put_meta(cursor_key(log), next_cursor.to_be_bytes().to_vec());
                true
            }
            Source::Direct => false,
        };
        let forward = source.forwards(&members, &self.identity.id(), log);
        let current_relay = self.current_relay()?;
        let mut received = 0u64;
        let mut new_chunks = Vec::new();
        for (seq, bytes) in snapshot.into_iter().chain(envelopes) {
            received += 1;
            let reject = |reason, author| Rejected {
                server_seq: seq,
                author,
                reason,
            };
            // The shared acceptance rule (satchel_protocol::accept), step by
            // step: our own envelopes, already stored, skip the rights check.
            // Chunk logs follow the wearables section's rights and keys.
            let expect = Expect {
                record: self.record.id,
                log: log.as_str(),
                kind: Kind::Change,
                max_bytes: usize::MAX,
            };
            let Ok(env) = Envelope::from_bytes(&bytes) else {
                report
                    .rejected
                    .push(reject(accept::Refusal::Malformed.message(), None));
                continue;
            };
            let author = Some(env.header.author);
            if let Err(r) = accept::place(&env, &expect) {
                report.rejected.push(reject(r.message(), author));
                continue;
            }
            let hash = envelope_hash(&bytes);
            if self.store.contains(&hash)? {
                report.known += 1;
                if relay {
                    batch.receive(log, bytes, current_relay.as_deref(), seq);
                }
                continue;
            }
            if let Err(r) = accept::rights(&env, &expect, &members) {
                report.rejected.push(reject(r.message(), author));
                continue;
            }
            if let Err(r) = accept::verify(&env) {
                report.rejected.push(reject(r.message(), author));
                continue;
            }
            let Ok((plain, _)) = self.wearables_open_envelope(&bytes, log) else {
                report.rejected.push(reject("decryption failed", author));
                continue;
            };
            if log == CHUNKS_LOG {
                if codec::decode(&plain).is_err() {
                    report
                        .rejected
                        .push(reject("undecodable wearables chunk", author));
                    continue;
                }
                new_chunks.push((hash, bytes.clone()));
            } else {
                let Some(index) = self.wearables.index.as_mut() else {
                    return Err(ProfileError::Corrupt("wearables index"));
                };
                if index.apply(&plain).is_err() {
                    report.rejected.push(reject(
                        "changes do not apply to the section document",
                        author,
                    ));
                    continue;
                }
            }
            report.merged += 1;
            if relay {
                batch.receive(log, bytes, current_relay.as_deref(), seq);
            } else {
                batch.receive_direct(log, bytes, forward);
            }
        }
        if relay {
            let since_key = since_snapshot_key(log);
            let since = get_u64(&self.store, &since_key)? + received;
            batch.put_meta(since_key, since.to_be_bytes().to_vec());
        }
        let committed = match self.store.commit(batch) {
            Ok(c) => c,
            Err(e) => {
                self.poisoned = true;
                return Err(e.into());
            }
        };
        for (hash, bytes) in new_chunks {
            self.wearables.envelopes.insert(hash, bytes);
        }
        if log == INDEX_LOG {
            let new: Vec<u64> = committed.received.iter().flatten().copied().collect();
            self.wearables.index_tail += new.len();
            if let Some(last) = new.last() {
                self.wearables.index_last_seq = self.wearables.index_last_seq.max(*last);
            }
            self.wearables_compact_index()?;
        }
        Ok(report)
    }
}
