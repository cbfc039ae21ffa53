//! Samples: what the phone apps hand over, and what the record keeps.
//!
//! A sample's identity is (metric, source, start, end): the same sample sent
//! twice (a re-import, a retry, two devices importing the same export) is
//! stored once. A sample with the identity of a stored one but another
//! value is a correction: it is stored, and queries show the value from the
//! most recently written chunk (see [`super::series`]).

use std::fmt;

use super::metric::Metric;
use super::units::to_stored_unit;
use super::WearablesError;

/// Longest source device name kept, in bytes.
pub const MAX_SOURCE_LEN: usize = 200;

/// One sample as HealthKit / Health Connect (or an import file) gives it.
#[derive(Clone, PartialEq)]
pub struct SampleInput {
    pub metric: Metric,
    /// Unix milliseconds (UTC).
    pub start_ms: i64,
    /// Unix milliseconds (UTC); equal to `start_ms` for a reading at a moment.
    pub end_ms: i64,
    pub value: f64,
    /// The unit `value` is in (UCUM, or HealthKit's unit string).
    pub unit: String,
    /// The device or app that measured it (e.g. "Jane's Apple Watch").
    pub source: String,
}

impl fmt::Debug for SampleInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SampleInput")
            .field("metric", &self.metric)
            .finish_non_exhaustive()
    }
}

/// A stored sample, its value in the metric's unit.
#[derive(Clone, PartialEq)]
pub struct Sample {
    pub metric: Metric,
    pub start_ms: i64,
    pub end_ms: i64,
    pub value: f64,
    pub source: String,
}

impl fmt::Debug for Sample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sample")
            .field("metric", &self.metric)
            .finish_non_exhaustive()
    }
}

impl SampleInput {
    /// Check the sample; its value in the stored unit.
    pub fn checked_value(&self) -> Result<f64, WearablesError> {
        if self.end_ms < self.start_ms {
            return Err(WearablesError::EndBeforeStart {
                metric: self.metric,
            });
        }
        let source = self.source.trim();
        if source.is_empty() || source.len() > MAX_SOURCE_LEN {
            return Err(WearablesError::BadSource);
        }
        to_stored_unit(self.metric, self.value, &self.unit)
    }

    /// Check the sample and convert its value to the stored unit (the
    /// source name trimmed).
    pub fn normalise(&self) -> Result<Sample, WearablesError> {
        Ok(Sample {
            metric: self.metric,
            start_ms: self.start_ms,
            end_ms: self.end_ms,
            value: self.checked_value()?,
            source: self.source.trim().to_string(),
        })
    }
}

/// Normalise a whole batch: the first bad sample refuses all of it.
pub fn normalise_all(input: &[SampleInput]) -> Result<Vec<Sample>, WearablesError> {
    input
        .iter()
        .enumerate()
        .map(|(index, s)| {
            s.normalise().map_err(|e| WearablesError::InInput {
                index,
                source: Box::new(e),
            })
        })
        .collect()
}
