//! Decoded samples per metric, deduplicated, and the queries over them.
//!
//! **Identity and corrections.** A sample is identified by (metric, source,
//! start, end). When chunks hold the same identity more than once (the same
//! sample imported on two devices, or a corrected value), one is kept: the
//! one from the chunk that sorts last by (written_at_ms, envelope hash), so
//! every replica with the same chunks shows the same samples.
//!
//! **Merging sources** (two watches on one wrist must not double-count):
//! - instant metrics (heart rate, weight, ...): every source's readings are
//!   kept; buckets take min / max / mean / sum / count over all of them;
//! - cumulative metrics (steps, active energy): within each clock hour only
//!   the source with the largest total in that hour counts (ties: the
//!   source name that sorts first); a bucket adds up those hourly winners.
//!   A sample counts in the hour its start falls in (no pro-rating).
//!   Devices worn at the same time count once; devices carried in different
//!   hours all count; two devices carried apart within the same hour
//!   undercount (the larger is kept).

use std::collections::HashMap;

use super::codec::Point;
use super::index::ChunkEntry;
use super::metric::{Kind, Metric};
use super::sample::Sample;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 1970-01-01 was a Thursday: weeks start on Monday.
const WEEK_SHIFT_MS: i64 = 3 * DAY_MS;

/// Bucket width of an aggregate query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Every {
    Hour,
    Day,
    /// Monday to Sunday.
    Week,
}

impl std::str::FromStr for Every {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hour" => Ok(Every::Hour),
            "day" => Ok(Every::Day),
            "week" => Ok(Every::Week),
            _ => Err("expected hour, day or week"),
        }
    }
}

impl Every {
    /// The bucket holding local time `t` (ms), and its start.
    fn bucket_start(self, t: i64) -> i64 {
        match self {
            Every::Hour => t.div_euclid(HOUR_MS) * HOUR_MS,
            Every::Day => t.div_euclid(DAY_MS) * DAY_MS,
            Every::Week => (t + WEEK_SHIFT_MS).div_euclid(7 * DAY_MS) * 7 * DAY_MS - WEEK_SHIFT_MS,
        }
    }

    fn width(self) -> i64 {
        match self {
            Every::Hour => HOUR_MS,
            Every::Day => DAY_MS,
            Every::Week => 7 * DAY_MS,
        }
    }
}

/// One aggregate bucket: `[start_ms, end_ms)` in UTC milliseconds.
#[derive(Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub end_ms: i64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub sum: f64,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("start_ms", &self.start_ms)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct P {
    start: i64,
    end: i64,
    value: f64,
    source: u32,
    chunk: u32,
}

#[derive(Default)]
struct MetricSeries {
    points: Vec<P>,
    /// Points were added since the last dedupe / sort.
    dirty: bool,
}

/// Every decoded sample, per metric.
#[derive(Default)]
pub struct Series {
    sources: Vec<String>,
    source_ids: HashMap<String, u32>,
    /// Per chunk (by position): its conflict order key.
    chunk_order: Vec<(i64, [u8; 32])>,
    metrics: HashMap<Metric, MetricSeries>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series")
            .field("chunks", &self.chunk_order.len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct Acc {
    count: u64,
    min: f64,
    max: f64,
    sum: f64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        count: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum: 0.0,
    };
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
    }
    fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum += o.sum;
    }
}

impl Series {
    pub fn new() -> Self {
        Self::default()
    }

    fn source_id(&mut self, source: &str) -> u32 {
        if let Some(id) = self.source_ids.get(source) {
            return *id;
        }
        let id = self.sources.len() as u32;
        self.sources.push(source.to_string());
        self.source_ids.insert(source.to_string(), id);
        id
    }

    /// Add a decoded chunk's samples (described by its index entry).
    pub fn add_chunk(&mut self, entry: &ChunkEntry, points: &[Point]) {
        let source = self.source_id(&entry.source);
        let chunk = self.chunk_order.len() as u32;
        self.chunk_order.push(entry.order_key());
        let series = self.metrics.entry(entry.metric).or_default();
        series.points.extend(points.iter().map(|p| P {
            start: p.start_ms,
            end: p.end_ms,
            value: p.value,
            source,
            chunk,
        }));
        series.dirty = true;
    }

    /// Deduplicated points of a metric, sorted by (start, end, source).
    fn points(&mut self, metric: Metric) -> &[P] {
        let Some(series) = self.metrics.get_mut(&metric) else {
            return &[];
        };
        if series.dirty {
            let order = &self.chunk_order;
            let key = |p: &P| order.get(p.chunk as usize).copied();
            // Identity groups together, the winning chunk first.
            series.points.sort_unstable_by(|a, b| {
                (a.source, a.start, a.end)
                    .cmp(&(b.source, b.start, b.end))
                    .then_with(|| key(b).cmp(&key(a)))
            });
            series
                .points
                .dedup_by(|b, a| (a.source, a.start, a.end) == (b.source, b.start, b.end));
            let sources = &self.sources;
            series.points.sort_unstable_by(|a, b| {
                (a.start, a.end, &sources[a.source as usize]).cmp(&(
                    b.start,
                    b.end,
                    &sources[b.source as usize],
                ))
            });
            series.dirty = false;
        }
        &series.points
    }

    /// Number of distinct samples of a metric.
    pub fn len(&mut self, metric: Metric) -> usize {
        self.points(metric).len()
    }

    /// Whether the kept sample with this identity has this value.
    pub fn contains(&mut self, sample: &Sample) -> bool {
        self.contains_parts(
            sample.metric,
            &sample.source,
            sample.start_ms,
            sample.end_ms,
            sample.value,
        )
    }

    /// [`Series::contains`] without building a [`Sample`].
    pub fn contains_parts(
        &mut self,
        metric: Metric,
        source: &str,
        start_ms: i64,
        end_ms: i64,
        value: f64,
    ) -> bool {
        let Some(&source) = self.source_ids.get(source) else {
            return false;
        };
        let points = self.points(metric);
        let from = points.partition_point(|p| (p.start, p.end) < (start_ms, end_ms));
        points[from..]
            .iter()
            .take_while(|p| (p.start, p.end) == (start_ms, end_ms))
            .any(|p| p.source == source && p.value == value)
    }

    fn range(&mut self, metric: Metric, from_ms: i64, to_ms: i64) -> &[P] {
        let points = self.points(metric);
        let a = points.partition_point(|p| p.start < from_ms);
        let b = points.partition_point(|p| p.start < to_ms);
        &points[a..b.max(a)]
    }

    /// Samples of `metric` starting in `[from_ms, to_ms)`, every source, in
    /// time order.
    pub fn samples(&mut self, metric: Metric, from_ms: i64, to_ms: i64) -> Vec<Sample> {
        let points: Vec<P> = self.range(metric, from_ms, to_ms).to_vec();
        points
            .into_iter()
            .map(|p| Sample {
                metric,
                start_ms: p.start,
                end_ms: p.end,
                value: p.value,
                source: self.sources[p.source as usize].clone(),
            })
            .collect()
    }

    /// Aggregates of `metric` over `[from_ms, to_ms)` by `every`, with
    /// buckets aligned to local time at `utc_offset_ms`; sources merged by
    /// the module's rule. Empty buckets are left out.
    pub fn aggregate(
        &mut self,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
        every: Every,
        utc_offset_ms: i64,
    ) -> Vec<Bucket> {
        let kind = metric.kind();
        let sources_sorted: Vec<u32> = {
            let mut ids: Vec<u32> = (0..self.sources.len() as u32).collect();
            ids.sort_by(|a, b| self.sources[*a as usize].cmp(&self.sources[*b as usize]));
            let mut rank = vec![0u32; ids.len()];
            for (r, id) in ids.into_iter().enumerate() {
                rank[id as usize] = r as u32;
            }
            rank
        };
        let points = self.range(metric, from_ms, to_ms);
        let mut out: Vec<Bucket> = Vec::new();
        let mut current: Option<(i64, Acc)> = None;
        let push = |start: i64, acc: Acc, out: &mut Vec<Bucket>| {
            if acc.count > 0 {
                out.push(Bucket {
                    start_ms: start - utc_offset_ms,
                    end_ms: start - utc_offset_ms + every.width(),
                    count: acc.count,
                    min: acc.min,
                    max: acc.max,
                    mean: acc.sum / acc.count as f64,
                    sum: acc.sum,
                });
            }
        };
        let mut fold = |local: i64, acc: &Acc, out: &mut Vec<Bucket>| {
            let b = every.bucket_start(local);
            match &mut current {
                Some((start, cur)) if *start == b => cur.merge(acc),
                _ => {
                    if let Some((start, cur)) = current.take() {
                        push(start, cur, out);
                    }
                    current = Some((b, *acc));
                }
            }
        };
        match kind {
            Kind::Instant => {
                // Points are in time order: stay in the open bucket while
                // it lasts, without dividing per point.
                let width = every.width();
                let (mut lo, mut hi, mut acc) = (i64::MAX, i64::MIN, Acc::EMPTY);
                for p in points {
                    let local = p.start + utc_offset_ms;
                    if local < lo || local >= hi {
                        if acc.count > 0 {
                            fold(lo, &acc, &mut out);
                        }
                        lo = every.bucket_start(local);
                        hi = lo + width;
                        acc = Acc::EMPTY;
                    }
                    acc.add(p.value);
                }
                if acc.count > 0 {
                    fold(lo, &acc, &mut out);
                }
            }
            Kind::Cumulative => {
                // Per clock hour: the source with the largest total wins.
                let mut hour = i64::MIN;
                let mut per_source: Vec<(u32, Acc)> = Vec::new();
                let mut flush = |hour: i64, per: &mut Vec<(u32, Acc)>, out: &mut Vec<Bucket>| {
                    let best = per.iter().max_by(|(sa, a), (sb, b)| {
                        a.sum.total_cmp(&b.sum).then_with(|| {
                            sources_sorted[*sb as usize].cmp(&sources_sorted[*sa as usize])
                        })
                    });
                    if let Some((_, acc)) = best {
                        let acc = *acc;
                        fold(hour, &acc, out);
                    }
                    per.clear();
                };
                for p in points {
                    let local = p.start + utc_offset_ms;
                    let h = local.div_euclid(HOUR_MS) * HOUR_MS;
                    if h != hour {
                        flush(hour, &mut per_source, &mut out);
                        hour = h;
                    }
                    match per_source.iter_mut().find(|(s, _)| *s == p.source) {
                        Some((_, acc)) => acc.add(p.value),
                        None => {
                            let mut acc = Acc::EMPTY;
                            acc.add(p.value);
                            per_source.push((p.source, acc));
                        }
                    }
                }
                flush(hour, &mut per_source, &mut out);
            }
        }
        if let Some((start, cur)) = current.take() {
            push(start, cur, &mut out);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::IdentityId;

    fn entry(n: u8, metric: Metric, source: &str, written: i64) -> ChunkEntry {
        ChunkEntry {
            hash: [n; 32],
            metric,
            author: IdentityId([1; 32]),
            written_at_ms: written,
            first_start_ms: 0,
            last_start_ms: 0,
            count: 0,
            source: source.into(),
        }
    }

    fn pt(start: i64, value: f64) -> Point {
        Point {
            start_ms: start,
            end_ms: start + 60_000,
            value,
        }
    }

    #[test]
    fn two_watches_do_not_double_count_steps() {
        let mut s = Series::new();
        // Both watches on one wrist, 9:00-10:00 UTC; the phone alone at 11:00.
        s.add_chunk(
            &entry(1, Metric::Steps, "Watch A", 1),
            &[pt(9 * HOUR_MS, 500.0), pt(9 * HOUR_MS + 600_000, 300.0)],
        );
        s.add_chunk(
            &entry(2, Metric::Steps, "Watch B", 1),
            &[pt(9 * HOUR_MS + 60_000, 820.0)],
        );
        s.add_chunk(
            &entry(3, Metric::Steps, "Phone", 1),
            &[pt(11 * HOUR_MS, 200.0)],
        );
        let days = s.aggregate(Metric::Steps, 0, DAY_MS, Every::Day, 0);
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].sum, 820.0 + 200.0);
        let hours = s.aggregate(Metric::Steps, 0, DAY_MS, Every::Hour, 0);
        assert_eq!(
            hours.iter().map(|b| b.sum).collect::<Vec<_>>(),
            vec![820.0, 200.0]
        );
    }

    #[test]
    fn duplicates_collapse_and_later_chunks_win() {
        let mut s = Series::new();
        s.add_chunk(
            &entry(1, Metric::HeartRate, "W", 10),
            &[pt(0, 60.0), pt(60_000, 61.0)],
        );
        s.add_chunk(&entry(2, Metric::HeartRate, "W", 20), &[pt(60_000, 65.0)]);
        s.add_chunk(&entry(3, Metric::HeartRate, "W", 5), &[pt(0, 60.0)]);
        let all = s.samples(Metric::HeartRate, i64::MIN, i64::MAX);
        assert_eq!(
            all.iter().map(|x| x.value).collect::<Vec<_>>(),
            vec![60.0, 65.0]
        );
        let b = s.aggregate(Metric::HeartRate, 0, DAY_MS, Every::Day, 0);
        assert_eq!(
            (b[0].count, b[0].min, b[0].max, b[0].mean),
            (2, 60.0, 65.0, 62.5)
        );
    }

    #[test]
    fn weeks_start_on_monday_and_offsets_shift_days() {
        // 2024-01-01 was a Monday: 19723 days after the epoch.
        let monday = 19_723 * DAY_MS;
        assert_eq!(Every::Week.bucket_start(monday + 5 * DAY_MS), monday);
        assert_eq!(Every::Week.bucket_start(monday - 1), monday - 7 * DAY_MS);
        let mut s = Series::new();
        s.add_chunk(
            &entry(1, Metric::Weight, "Scale", 1),
            &[pt(monday + 23 * HOUR_MS, 80.0)],
        );
        let utc = s.aggregate(Metric::Weight, 0, i64::MAX, Every::Day, 0);
        assert_eq!(utc[0].start_ms, monday);
        let plus2 = s.aggregate(Metric::Weight, 0, i64::MAX, Every::Day, 2 * HOUR_MS);
        assert_eq!(plus2[0].start_ms, monday + DAY_MS - 2 * HOUR_MS);
    }
}
