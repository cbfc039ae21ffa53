//! Unit conversion into each metric's stored UCUM unit.
//!
//! Only conversions defined by an exact factor or formula are made (pound =
//! 0.45359237 kg, inch = 2.54 cm, thermochemical kcal = 4.184 kJ,
//! °F → °C = (F − 32) × 5/9, fraction → percent × 100), plus blood glucose
//! from mmol/L to mg/dL with the factor **18.0156** (glucose's molar mass,
//! 180.156 g/mol; HealthKit's own `mmol<180.1558800000541>/L` unit carries
//! its molar mass, which is used instead). A converted value is rounded to
//! six decimal places. Any other unit is refused
//! ([`WearablesError::UnitMismatch`]): a value is never stored in a unit it
//! was not given in, nor guessed.

use super::metric::Metric;
use super::WearablesError;

/// The mmol/L → mg/dL factor for glucose (molar mass 180.156 g/mol ÷ 10).
pub const GLUCOSE_MG_DL_PER_MMOL_L: f64 = 18.0156;

enum Conv {
    Same,
    Factor(f64),
    Divide(f64),
    Fahrenheit,
}

fn conversion(metric: Metric, unit: &str) -> Option<Conv> {
    use Conv::*;
    use Metric::*;
    let unit = unit.trim();
    let conv = match metric {
        HeartRate | RestingHeartRate | RespiratoryRate => match unit {
            "/min" | "count/min" | "{beats}/min" | "{breaths}/min" | "beats/min" | "bpm" => Same,
            "/s" | "count/s" => Factor(60.0),
            _ => return None,
        },
        HrvSdnn => match unit {
            "ms" => Same,
            "s" => Factor(1000.0),
            _ => return None,
        },
        OxygenSaturation | BodyFat => match unit {
            "%" => Same,
            // A fraction (HealthKit's percent unit holds 0..1).
            "1" | "{fraction}" => Factor(100.0),
            _ => return None,
        },
        BodyTemperature => match unit {
            "Cel" | "degC" | "°C" => Same,
            "[degF]" | "degF" | "°F" => Fahrenheit,
            _ => return None,
        },
        BloodPressureSystolic | BloodPressureDiastolic => match unit {
            "mm[Hg]" | "mmHg" => Same,
            _ => return None,
        },
        Weight => match unit {
            "kg" => Same,
            "g" => Divide(1000.0),
            "[lb_av]" | "lb" | "lbs" => Factor(0.453_592_37),
            "[oz_av]" | "oz" => Factor(0.028_349_523_125),
            "[stone_av]" | "st" => Factor(6.350_293_18),
            _ => return None,
        },
        Height => match unit {
            "cm" => Same,
            "m" => Factor(100.0),
            "mm" => Divide(10.0),
            "[in_i]" | "in" => Factor(2.54),
            "[ft_i]" | "ft" => Factor(30.48),
            _ => return None,
        },
        Bmi => match unit {
            "kg/m2" | "kg/m²" | "count" => Same,
            _ => return None,
        },
        BloodGlucose => match unit {
            "mg/dL" => Same,
            "mmol/L" => Factor(GLUCOSE_MG_DL_PER_MMOL_L),
            other => {
                // HealthKit: "mmol<180.1558800000541>/L" (molar mass in g/mol).
                let mass: f64 = other
                    .strip_prefix("mmol<")?
                    .strip_suffix(">/L")?
                    .parse()
                    .ok()?;
                if !(179.0..=181.0).contains(&mass) {
                    return None;
                }
                Factor(mass / 10.0)
            }
        },
        Steps => match unit {
            "{steps}" | "count" | "{count}" | "steps" => Same,
            _ => return None,
        },
        ActiveEnergy => match unit {
            "kcal" | "Cal" => Same,
            "kJ" => Divide(4.184),
            "cal" => Divide(1000.0),
            _ => return None,
        },
    };
    Some(conv)
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// `value` in `unit`, converted to `metric`'s stored unit. The error names
/// the metric and the unit, never the value.
pub fn to_stored_unit(metric: Metric, value: f64, unit: &str) -> Result<f64, WearablesError> {
    let mismatch = || WearablesError::UnitMismatch {
        metric,
        unit: unit.chars().take(40).collect(),
    };
    if !value.is_finite() {
        return Err(WearablesError::NotFinite { metric });
    }
    let out = match conversion(metric, unit).ok_or_else(mismatch)? {
        Conv::Same => value,
        Conv::Factor(f) => round6(value * f),
        Conv::Divide(d) => round6(value / d),
        Conv::Fahrenheit => round6((value - 32.0) * 5.0 / 9.0),
    };
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_conversions() {
        assert_eq!(
            to_stored_unit(Metric::Weight, 150.0, "lb").unwrap(),
            68.038856
        );
        assert_eq!(to_stored_unit(Metric::Height, 70.0, "in").unwrap(), 177.8);
        assert_eq!(
            to_stored_unit(Metric::BodyTemperature, 98.6, "degF").unwrap(),
            37.0
        );
        assert_eq!(
            to_stored_unit(Metric::OxygenSaturation, 0.97, "1").unwrap(),
            97.0
        );
        assert_eq!(
            to_stored_unit(Metric::BloodGlucose, 5.5, "mmol/L").unwrap(),
            99.0858
        );
        assert_eq!(
            to_stored_unit(Metric::BloodGlucose, 5.0, "mmol<180.1558800000541>/L").unwrap(),
            90.077940
        );
        assert_eq!(
            to_stored_unit(Metric::ActiveEnergy, 418.4, "kJ").unwrap(),
            100.0
        );
        assert_eq!(
            to_stored_unit(Metric::HeartRate, 61.0, "count/min").unwrap(),
            61.0
        );
    }

    #[test]
    fn mismatches_are_refused_without_the_value() {
        let err = to_stored_unit(Metric::Weight, 81.3, "mmol/L").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("weight") && text.contains("mmol/L"), "{text}");
        assert!(!text.contains("81.3"));
        assert!(to_stored_unit(Metric::HeartRate, 60.0, "count").is_err());
        assert!(to_stored_unit(Metric::BloodGlucose, 6.0, "mmol<18>/L").is_err());
        assert!(to_stored_unit(Metric::Steps, f64::NAN, "count").is_err());
    }
}
