//! Wearable samples (watches, rings, glucose monitors, scales, cuffs) held
//! compactly, encrypted, synced and shareable, apart from the clinical
//! sections. I/O-free: this module owns the model and the bytes; the
//! profile (`profile/wearables.rs`) seals, stores and syncs them.
//!
//! - [`metric`]: the metric table (LOINC, UCUM, HealthKit / Health Connect).
//! - [`units`]: exact unit conversion, refusal otherwise.
//! - [`sample`]: what the apps hand over ([`SampleInput`]) and what is kept ([`Sample`]).
//! - [`codec`]: the chunk format (columns of delta / delta-of-delta zigzag
//!   varints, then zstd).
//! - [`index`]: the automerge document listing every chunk (the record's
//!   `wearables` section).
//! - [`series`]: decoded samples per metric, deduplicated, and queries:
//!   raw ranges and min / max / mean / sum / count by hour, day or week, with
//!   the source-merge rule.
//! - [`apple`]: streaming import of an Apple Health `export.xml`.
//! - [`csv_import`]: CSV import.
//! - [`observation`]: daily summaries as FHIR R4 Observations.
//!
//! See `docs/wearables.md` for the rules (sample identity, merge rule,
//! chunking) and the HealthKit / Health Connect mapping.

pub mod apple;
pub mod codec;
pub mod csv_import;
pub mod index;
pub mod metric;
pub mod observation;
pub mod sample;
pub mod series;
pub mod units;

pub use metric::{Kind, Metric};
pub use sample::{Sample, SampleInput};
pub use series::{Bucket, Every};

/// Errors of the wearables model. Messages name metrics, units, positions
/// and formats, never a measured value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WearablesError {
    #[error("unknown metric; known metrics: heart-rate, resting-heart-rate, hrv-sdnn, respiratory-rate, oxygen-saturation, body-temperature, blood-pressure-systolic, blood-pressure-diastolic, weight, height, bmi, body-fat, blood-glucose, steps, active-energy")]
    UnknownMetric,
    #[error("{metric} cannot be stored from unit \"{unit}\": no exact conversion to {expected} (nothing was imported)", expected = metric.unit())]
    UnitMismatch { metric: Metric, unit: String },
    #[error("a {metric} value is not a finite number")]
    NotFinite { metric: Metric },
    #[error("a {metric} sample ends before it starts")]
    EndBeforeStart { metric: Metric },
    #[error("a sample has no source device name (or one longer than 200 bytes)")]
    BadSource,
    #[error("sample {index} of the input")]
    InInput {
        index: usize,
        #[source]
        source: Box<WearablesError>,
    },
    #[error("wearables chunk is corrupt ({0})")]
    CorruptChunk(&'static str),
    #[error("wearables index document: {0}")]
    Index(&'static str),
    #[error("import file: {0}")]
    Import(String),
}
