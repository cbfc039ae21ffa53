//! The chunk format: the samples of one metric from one source device, in
//! time order, as columns, then compressed.
//!
//! ```text
//! chunk  = 0x57 'W', format 1, zstd frame of:
//!          metric u8, time unit u8 (0 ms, 1 s, 2 min), value mode u8
//!          (0 decimal, 1 f64), decimals u8 (0..=6),
//!          varint source length, source (UTF-8), varint count,
//!          starts:    zigzag varint of the first start, of the first delta,
//!                     then of each delta-of-delta (in the time unit)
//!          durations: zigzag varint of (end - start) minus the previous one
//!          values:    decimal: zigzag varint of round(value * 10^decimals)
//!                     minus the previous one; f64: 8 bytes little-endian each
//! ```
//!
//! The time unit is the coarsest that every start and end is a multiple
//! of, and `decimals` the fewest that represent every value exactly (else
//! the values are stored as raw f64), so decoding gives back exactly what
//! was encoded. Regular series (a reading every minute, integral beats per
//! minute) become runs of zero bytes and small deltas, which zstd's entropy
//! stage takes close to their information content.

use super::metric::Metric;
use super::WearablesError;

const MAGIC: u8 = 0x57;
const FORMAT: u8 = 1;
/// zstd level: chunks are written once and read often; this level keeps a
/// year of samples well under the ingest budget.
const LEVEL: i32 = 9;
/// Most samples one chunk may hold (writers split above it).
pub const MAX_SAMPLES: usize = 1 << 20;
/// Largest decompressed chunk accepted.
const MAX_PLAIN: u64 = 64 * 1024 * 1024;
const UNITS: [i64; 3] = [1, 1000, 60_000];
const POW10: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// One sample inside a chunk: start and end (unix ms), value.
#[derive(Clone, Copy, PartialEq)]
pub struct Point {
    pub start_ms: i64,
    pub end_ms: i64,
    pub value: f64,
}

impl std::fmt::Debug for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Point { .. }")
    }
}

/// A decoded chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub metric: Metric,
    pub source: String,
    /// Sorted by (start, end).
    pub points: Vec<Point>,
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, WearablesError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(WearablesError::CorruptChunk("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, WearablesError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WearablesError::CorruptChunk("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WearablesError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(WearablesError::CorruptChunk("truncated"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

fn decimals_for(points: &[Point]) -> Option<usize> {
    (0..POW10.len()).find(|&k| {
        points.iter().all(|p| {
            let scaled = (p.value * POW10[k]).round();
            scaled.abs() < 9.0e15 && scaled / POW10[k] == p.value
        })
    })
}

/// Encode the samples of one metric from one source. `points` must be
/// sorted by (start, end) and hold at most [`MAX_SAMPLES`].
pub fn encode(metric: Metric, source: &str, points: &[Point]) -> Result<Vec<u8>, WearablesError> {
    if points.len() > MAX_SAMPLES {
        return Err(WearablesError::CorruptChunk("too many samples"));
    }
    let unit_code = (0..UNITS.len())
        .rev()
        .find(|&u| {
            points
                .iter()
                .all(|p| p.start_ms % UNITS[u] == 0 && p.end_ms % UNITS[u] == 0)
        })
        .unwrap_or(0);
    let unit = UNITS[unit_code];
    let decimals = decimals_for(points);
    let mut out = Vec::with_capacity(points.len() * 4 + source.len() + 16);
    out.push(metric.id());
    out.push(unit_code as u8);
    out.push(if decimals.is_some() { 0 } else { 1 });
    out.push(decimals.unwrap_or(0) as u8);
    put_varint(&mut out, source.len() as u64);
    out.extend_from_slice(source.as_bytes());
    put_varint(&mut out, points.len() as u64);
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for p in points {
        let t = p.start_ms / unit;
        let delta = t.wrapping_sub(prev);
        put_varint(&mut out, zigzag(delta.wrapping_sub(prev_delta)));
        prev = t;
        prev_delta = delta;
    }
    let mut prev_dur = 0i64;
    for p in points {
        let dur = p.end_ms.wrapping_sub(p.start_ms) / unit;
        put_varint(&mut out, zigzag(dur.wrapping_sub(prev_dur)));
        prev_dur = dur;
    }
    match decimals {
        Some(k) => {
            let mut prev = 0i64;
            for p in points {
                let n = (p.value * POW10[k]).round() as i64;
                put_varint(&mut out, zigzag(n.wrapping_sub(prev)));
                prev = n;
            }
        }
        None => {
            for p in points {
                out.extend_from_slice(&p.value.to_le_bytes());
            }
        }
    }
    let compressed = zstd::bulk::compress(&out, LEVEL)
        .map_err(|_| WearablesError::CorruptChunk("compression failed"))?;
    let mut chunk = Vec::with_capacity(compressed.len() + 2);
    chunk.push(MAGIC);
    chunk.push(FORMAT);
    chunk.extend_from_slice(&compressed);
    Ok(chunk)
}

/// Decode (and check) a chunk.
pub fn decode(chunk: &[u8]) -> Result<Chunk, WearablesError> {
    let frame = match chunk {
        [MAGIC, FORMAT, rest @ ..] => rest,
        [MAGIC, _, ..] => return Err(WearablesError::CorruptChunk("unknown format")),
        _ => return Err(WearablesError::CorruptChunk("not a chunk")),
    };
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|s| *s <= MAX_PLAIN)
        .ok_or(WearablesError::CorruptChunk("bad frame size"))?;
    let plain = zstd::bulk::decompress(frame, size as usize)
        .map_err(|_| WearablesError::CorruptChunk("decompression failed"))?;
    let mut r = Reader {
        bytes: &plain,
        pos: 0,
    };
    let metric = Metric::from_id(r.byte()?).ok_or(WearablesError::CorruptChunk("metric"))?;
    let unit = *UNITS
        .get(usize::from(r.byte()?))
        .ok_or(WearablesError::CorruptChunk("time unit"))?;
    let mode = r.byte()?;
    let decimals = usize::from(r.byte()?);
    let scale = *POW10
        .get(decimals)
        .ok_or(WearablesError::CorruptChunk("decimals"))?;
    let source_len =
        usize::try_from(r.varint()?).map_err(|_| WearablesError::CorruptChunk("source length"))?;
    let source = std::str::from_utf8(r.take(source_len)?)
        .map_err(|_| WearablesError::CorruptChunk("source name"))?
        .to_string();
    let count = usize::try_from(r.varint()?)
        .ok()
        .filter(|c| *c <= MAX_SAMPLES)
        .ok_or(WearablesError::CorruptChunk("count"))?;
    // Every sample takes at least 3 bytes: refuse counts the data cannot hold.
    if count.saturating_mul(3) > plain.len() {
        return Err(WearablesError::CorruptChunk("count"));
    }
    let mut points = Vec::with_capacity(count);
    let (mut prev, mut prev_delta) = (0i64, 0i64);
    for _ in 0..count {
        let delta = prev_delta.wrapping_add(unzigzag(r.varint()?));
        prev = prev.wrapping_add(delta);
        prev_delta = delta;
        points.push(Point {
            start_ms: prev.wrapping_mul(unit),
            end_ms: 0,
            value: 0.0,
        });
    }
    let mut dur = 0i64;
    for p in points.iter_mut() {
        dur = dur.wrapping_add(unzigzag(r.varint()?));
        if dur < 0 {
            return Err(WearablesError::CorruptChunk("negative duration"));
        }
        p.end_ms = p.start_ms.wrapping_add(dur.wrapping_mul(unit));
    }
    match mode {
        0 => {
            let mut n = 0i64;
            for p in points.iter_mut() {
                n = n.wrapping_add(unzigzag(r.varint()?));
                p.value = n as f64 / scale;
            }
        }
        1 => {
            for p in points.iter_mut() {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                p.value = f64::from_le_bytes(a);
            }
        }
        _ => return Err(WearablesError::CorruptChunk("value mode")),
    }
    if r.pos != plain.len() {
        return Err(WearablesError::CorruptChunk("trailing bytes"));
    }
    if points.windows(2).any(|w| {
        (w[0].start_ms, w[0].end_ms) > (w[1].start_ms, w[1].end_ms) || !w[1].value.is_finite()
    }) {
        return Err(WearablesError::CorruptChunk("samples out of order"));
    }
    Ok(Chunk {
        metric,
        source,
        points,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pts(v: &[(i64, i64, f64)]) -> Vec<Point> {
        v.iter()
            .map(|&(s, e, x)| Point {
                start_ms: s,
                end_ms: e,
                value: x,
            })
            .collect()
    }

    #[test]
    fn round_trips_exactly() {
        let cases = vec![
            pts(&[]),
            pts(&[(1_700_000_000_000, 1_700_000_000_000, 61.0)]),
            pts(&[
                (0, 60_000, 12.0),
                (60_000, 120_000, 40.0),
                (600_000, 600_000, 3.0),
            ]),
            pts(&[(5, 7, 0.1), (9, 9, -3.25), (9, 11, 98.6)]),
            pts(&[(-1000, 1000, 1.0 / 3.0), (2000, 2000, 1e300)]),
        ];
        for points in cases {
            let bytes = encode(Metric::HeartRate, "Watch", &points).unwrap();
            let chunk = decode(&bytes).unwrap();
            assert_eq!(chunk.points, points);
            assert_eq!(chunk.source, "Watch");
            assert_eq!(chunk.metric, Metric::HeartRate);
        }
    }

    #[test]
    fn regular_series_compress_below_two_bytes_a_sample() {
        let mut state = 7u64;
        let mut v = 70i64;
        let points: Vec<Point> = (0..20_000)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                v = (v + ((state >> 60) as i64 % 5) - 2).clamp(45, 160);
                let t = 1_700_000_000_000 + i * 120_000 + ((state >> 40) % 5) as i64 * 1000;
                Point {
                    start_ms: t,
                    end_ms: t,
                    value: v as f64,
                }
            })
            .collect();
        let bytes = encode(Metric::HeartRate, "Watch", &points).unwrap();
        assert!(bytes.len() < points.len() * 2, "{} bytes", bytes.len());
        assert_eq!(decode(&bytes).unwrap().points, points);
    }

    #[test]
    fn refuses_damaged_chunks() {
        let points = pts(&[(0, 0, 1.0), (1000, 1000, 2.0)]);
        let bytes = encode(Metric::Steps, "Phone", &points).unwrap();
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[MAGIC, 9, 0]).is_err());
        assert!(decode(b"nope").is_err());
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        // Either refused or (if zstd's checksum is off) a different chunk; never a panic.
        let _ = decode(&flipped);
    }
}
