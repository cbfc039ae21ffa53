//! The metrics the record keeps: LOINC code, UCUM unit, how samples
//! aggregate, and where they come from on the phone (HealthKit quantity
//! types, Health Connect record types). The table is documented in
//! `docs/wearables.md`.

use std::fmt;
use std::str::FromStr;

use super::WearablesError;

/// How samples of a metric combine over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A reading at a moment (heart rate, weight): buckets take min, max and
    /// mean; sources are all kept.
    Instant,
    /// An amount over an interval (steps, energy): buckets add up; sources
    /// that overlap are merged by the rule in [`super::aggregate`].
    Cumulative,
}

macro_rules! metrics {
    ($( $variant:ident = $id:literal, $name:literal, $loinc:literal, $display:literal, $unit:literal,
        $kind:ident, $vital:literal, $hk:expr, $hc:expr; )*) => {
        /// A wearable metric. Its numeric id is stable (it is written into chunks).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Metric { $( $variant = $id, )* }

        impl Metric {
            /// Every metric, in id order.
            pub const ALL: &'static [Metric] = &[$( Metric::$variant, )*];

            /// Stable numeric id (chunk format).
            pub const fn id(self) -> u8 { self as u8 }

            /// The metric with this id.
            pub fn from_id(id: u8) -> Option<Metric> {
                match id { $( $id => Some(Metric::$variant), )* _ => None }
            }

            /// Command-line and CSV name, e.g. `heart-rate`.
            pub const fn name(self) -> &'static str {
                match self { $( Metric::$variant => $name, )* }
            }

            /// LOINC code.
            pub const fn loinc(self) -> &'static str {
                match self { $( Metric::$variant => $loinc, )* }
            }

            /// LOINC display.
            pub const fn display(self) -> &'static str {
                match self { $( Metric::$variant => $display, )* }
            }

            /// The UCUM unit values are stored in.
            pub const fn unit(self) -> &'static str {
                match self { $( Metric::$variant => $unit, )* }
            }

            /// How samples aggregate.
            pub const fn kind(self) -> Kind {
                match self { $( Metric::$variant => Kind::$kind, )* }
            }

            /// Whether the FHIR vital-signs profile covers it.
            pub const fn is_vital_sign(self) -> bool {
                match self { $( Metric::$variant => $vital, )* }
            }

            /// The HealthKit quantity type identifier it is read from.
            pub const fn healthkit(self) -> Option<&'static str> {
                match self { $( Metric::$variant => $hk, )* }
            }

            /// The Health Connect record type (and field) it is read from.
            pub const fn health_connect(self) -> Option<&'static str> {
                match self { $( Metric::$variant => $hc, )* }
            }
        }
    };
}

metrics! {
    HeartRate = 1, "heart-rate", "8867-4", "Heart rate", "/min", Instant, true,
        Some("HKQuantityTypeIdentifierHeartRate"), Some("HeartRateRecord.samples.beatsPerMinute");
    RestingHeartRate = 2, "resting-heart-rate", "40443-4", "Heart rate --resting", "/min", Instant, true,
        Some("HKQuantityTypeIdentifierRestingHeartRate"), Some("RestingHeartRateRecord.beatsPerMinute");
    HrvSdnn = 3, "hrv-sdnn", "80404-7", "R-R interval.standard deviation (Heart rate variability)", "ms", Instant, false,
        Some("HKQuantityTypeIdentifierHeartRateVariabilitySDNN"), None;
    RespiratoryRate = 4, "respiratory-rate", "9279-1", "Respiratory rate", "/min", Instant, true,
        Some("HKQuantityTypeIdentifierRespiratoryRate"), Some("RespiratoryRateRecord.rate");
    OxygenSaturation = 5, "oxygen-saturation", "2708-6", "Oxygen saturation in Arterial blood", "%", Instant, true,
        Some("HKQuantityTypeIdentifierOxygenSaturation"), Some("OxygenSaturationRecord.percentage");
    BodyTemperature = 6, "body-temperature", "8310-5", "Body temperature", "Cel", Instant, true,
        Some("HKQuantityTypeIdentifierBodyTemperature"), Some("BodyTemperatureRecord.temperature");
    BloodPressureSystolic = 7, "blood-pressure-systolic", "8480-6", "Systolic blood pressure", "mm[Hg]", Instant, true,
        Some("HKQuantityTypeIdentifierBloodPressureSystolic"), Some("BloodPressureRecord.systolic");
    BloodPressureDiastolic = 8, "blood-pressure-diastolic", "8462-4", "Diastolic blood pressure", "mm[Hg]", Instant, true,
        Some("HKQuantityTypeIdentifierBloodPressureDiastolic"), Some("BloodPressureRecord.diastolic");
    Weight = 9, "weight", "29463-7", "Body weight", "kg", Instant, true,
        Some("HKQuantityTypeIdentifierBodyMass"), Some("WeightRecord.weight");
    Height = 10, "height", "8302-2", "Body height", "cm", Instant, true,
        Some("HKQuantityTypeIdentifierHeight"), Some("HeightRecord.height");
    Bmi = 11, "bmi", "39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", Instant, true,
        Some("HKQuantityTypeIdentifierBodyMassIndex"), None;
    BodyFat = 12, "body-fat", "41982-0", "Percentage of body fat Measured", "%", Instant, false,
        Some("HKQuantityTypeIdentifierBodyFatPercentage"), Some("BodyFatRecord.percentage");
    BloodGlucose = 13, "blood-glucose", "2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", Instant, false,
        Some("HKQuantityTypeIdentifierBloodGlucose"), Some("BloodGlucoseRecord.level");
    Steps = 14, "steps", "55423-8", "Number of steps in unspecified time Pedometer", "{steps}", Cumulative, false,
        Some("HKQuantityTypeIdentifierStepCount"), Some("StepsRecord.count");
    ActiveEnergy = 15, "active-energy", "41981-2", "Calories burned", "kcal", Cumulative, false,
        Some("HKQuantityTypeIdentifierActiveEnergyBurned"), Some("ActiveCaloriesBurnedRecord.energy");
}

/// The LOINC code of the blood-pressure panel (systolic and diastolic
/// samples are exported together under it).
pub const BLOOD_PRESSURE_PANEL: &str = "85354-9";

impl Metric {
    /// The metric read from this HealthKit quantity type, if any.
    pub fn from_healthkit(identifier: &str) -> Option<Metric> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.healthkit() == Some(identifier))
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = WearablesError;

    /// A metric by name (`heart-rate`), alias (`spo2`, `bp-systolic`) or LOINC code.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let alias = match s {
            "spo2" => Some(Metric::OxygenSaturation),
            "hrv" => Some(Metric::HrvSdnn),
            "glucose" => Some(Metric::BloodGlucose),
            "temperature" => Some(Metric::BodyTemperature),
            "systolic" | "bp-systolic" => Some(Metric::BloodPressureSystolic),
            "diastolic" | "bp-diastolic" => Some(Metric::BloodPressureDiastolic),
            _ => None,
        };
        alias
            .or_else(|| {
                Metric::ALL
                    .iter()
                    .copied()
                    .find(|m| m.name() == s || m.loinc() == s)
            })
            .ok_or(WearablesError::UnknownMetric)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_codes_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_id(m.id()), Some(*m));
            assert_eq!(m.name().parse::<Metric>().unwrap(), *m);
            assert_eq!(m.loinc().parse::<Metric>().unwrap(), *m);
            if let Some(hk) = m.healthkit() {
                assert_eq!(Metric::from_healthkit(hk), Some(*m));
            }
        }
        assert_eq!(Metric::ALL.len(), 15);
        assert!("blood-pressure".parse::<Metric>().is_err());
        assert_eq!(Metric::from_id(0), None);
    }
}
