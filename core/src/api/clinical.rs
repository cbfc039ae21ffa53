//! FHIR import and export and wearables on [`HealthRecord`]: the same core
//! calls the CLI makes (`satchel add`, `satchel export`, `satchel
//! wearables`), with JSON strings for FHIR and small records for samples.

use super::error::{Result, SatchelError};
use super::record::{lock, HealthRecord};
use super::types::parse_sections;
use crate::fhir::import::collect_resources;
use crate::profile::import::ImportError;
use crate::wearables::sample::SampleInput;
use crate::wearables::series::Every;
use crate::wearables::Metric;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ImportSummary {
    pub added: u32,
    pub updated: u32,
    pub unchanged: u32,
    /// Bundle entries of types no section holds (Practitioner, ...).
    pub skipped: u32,
}

/// One wearable sample as HealthKit / Health Connect hand it over.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct WearableSample {
    /// Metric name, e.g. `heart-rate`, `steps`, `blood-glucose`.
    pub metric: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub value: f64,
    /// UCUM or HealthKit unit string (converted only when exact).
    pub unit: String,
    /// The device or app that measured it.
    pub source: String,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WearableIngest {
    pub received: u64,
    pub stored: u64,
    pub duplicates: u64,
}

/// One aggregate bucket.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct WearableBucket {
    pub start_ms: i64,
    pub end_ms: i64,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub sum: f64,
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<ImportError> for SatchelError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Profile(p) => p.into(),
            other => SatchelError::InvalidInput {
                reason: other.to_string(),
            },
        }
    }
}

fn metric(name: &str) -> Result<Metric> {
    name.parse()
        .map_err(|_| SatchelError::invalid("unknown wearable metric"))
}

#[uniffi::export]
impl HealthRecord {
    /// Import FHIR R4 JSON (one resource or a Bundle) with de-duplication
    /// and the wrong-patient check; `source_system` names the sender.
    pub fn import_fhir(
        &self,
        json: String,
        source_system: Option<String>,
    ) -> Result<ImportSummary> {
        let (_, incoming) =
            collect_resources(json.as_bytes()).map_err(|e| SatchelError::InvalidInput {
                reason: e.to_string(),
            })?;
        let report = lock(&self.inner)?
            .profile
            .import_resources(incoming, source_system.as_deref())?;
        Ok(ImportSummary {
            added: count(report.added.len()),
            updated: count(report.updated.len()),
            unchanged: count(report.unchanged.len()),
            skipped: count(report.skipped.len()),
        })
    }

    /// The record (or some sections) as a FHIR R4 collection Bundle (JSON).
    pub fn export_fhir(&self, sections: Vec<String>) -> Result<String> {
        let sections = parse_sections(&sections)?;
        let guard = lock(&self.inner)?;
        let bundle = guard
            .profile
            .export_fhir((!sections.is_empty()).then_some(sections.as_slice()))?;
        serde_json::to_string(&bundle).map_err(|_| SatchelError::storage("export failed"))
    }

    /// An International Patient Summary document Bundle (JSON).
    pub fn export_ips(&self) -> Result<String> {
        let ips = lock(&self.inner)?.profile.export_ips()?;
        serde_json::to_string(&ips).map_err(|_| SatchelError::storage("export failed"))
    }

    /// Add wearable samples (idempotent: a sample given twice is stored once).
    pub fn ingest_wearables(&self, samples: Vec<WearableSample>) -> Result<WearableIngest> {
        let input = samples
            .into_iter()
            .map(|s| {
                Ok(SampleInput {
                    metric: metric(&s.metric)?,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    value: s.value,
                    unit: s.unit,
                    source: s.source,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let report = lock(&self.inner)?.profile.wearables_ingest(&input)?;
        Ok(WearableIngest {
            received: report.received as u64,
            stored: report.stored as u64,
            duplicates: report.duplicates as u64,
        })
    }

    /// Min, max, mean, sum and count of a metric by `hour`, `day` or `week`
    /// (UTC) between two instants.
    pub fn wearable_summary(
        &self,
        metric_name: String,
        from_ms: i64,
        to_ms: i64,
        every: String,
    ) -> Result<Vec<WearableBucket>> {
        let m = metric(&metric_name)?;
        let every: Every = every
            .parse()
            .map_err(|e: &'static str| SatchelError::invalid(e))?;
        let buckets = lock(&self.inner)?
            .profile
            .wearables_summary(m, from_ms, to_ms, every, 0)?;
        Ok(buckets
            .into_iter()
            .map(|b| WearableBucket {
                start_ms: b.start_ms,
                end_ms: b.end_ms,
                count: b.count,
                min: b.min,
                max: b.max,
                mean: b.mean,
                sum: b.sum,
            })
            .collect())
    }
}
