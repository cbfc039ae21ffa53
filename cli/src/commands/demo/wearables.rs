//! A month of wearable samples for the demo, as the CSV the phone apps
//! would hand over: a watch (heart rate every 5 minutes, steps every hour)
//! and a continuous glucose monitor (every 5 minutes, in mmol/L, converted
//! to mg/dL on import). Values follow a daily rhythm, deterministically.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, Time};

/// What was written: the days covered (UTC, inclusive) and sample counts.
pub struct Month {
    pub from: String,
    pub to: String,
    pub heart_rate: u64,
    pub steps: u64,
    pub glucose: u64,
}

const DAYS: i64 = 30;

/// Write `watch.csv` and `glucose.csv` into `dir` for the 30 days before today.
pub fn write_month(dir: &Path) -> Result<Month> {
    let today = OffsetDateTime::now_utc().replace_time(Time::MIDNIGHT);
    let first = today - Duration::days(DAYS);
    let mut watch = String::from("metric,start,end,value,unit,source\n");
    let mut glucose = String::from("metric,start,end,value,unit,source\n");
    let (mut hr, mut steps, mut bg) = (0, 0, 0);
    for i in 0..DAYS * 24 * 12 {
        let t = first + Duration::minutes(5 * i);
        let start = t.format(&Rfc3339)?;
        // Hour of day as a fraction of the day, for a daily rhythm.
        let day_phase = (i % (24 * 12)) as f64 / (24.0 * 12.0);
        let wobble = ((i * 7919) % 13) as f64;
        let awake = (0.3..0.95).contains(&day_phase);
        let heart = if awake { 72.0 } else { 56.0 } + wobble;
        writeln!(watch, "heart-rate,{start},,{heart},/min,Apple Watch")?;
        hr += 1;
        if i % 12 == 0 {
            let end = (t + Duration::hours(1)).format(&Rfc3339)?;
            let count = if awake { 400 + (i % 700) } else { 0 };
            writeln!(watch, "steps,{start},{end},{count},{{steps}},Apple Watch")?;
            steps += 1;
        }
        // Glucose in mmol/L: higher after meals (8:00, 13:00, 19:00).
        let meal = [8.0, 13.0, 19.0]
            .iter()
            .map(|h| {
                let d = day_phase * 24.0 - h;
                if (0.0..2.0).contains(&d) {
                    2.5 * (1.0 - d / 2.0)
                } else {
                    0.0
                }
            })
            .sum::<f64>();
        let mmol = 5.2 + meal + wobble / 20.0;
        writeln!(glucose, "blood-glucose,{start},,{mmol:.1},mmol/L,Dexcom G7")?;
        bg += 1;
    }
    std::fs::write(dir.join("watch.csv"), watch)?;
    std::fs::write(dir.join("glucose.csv"), glucose)?;
    let day =
        |t: OffsetDateTime| format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day());
    Ok(Month {
        from: day(first),
        to: day(today - Duration::days(1)),
        heart_rate: hr,
        steps,
        glucose: bg,
    })
}
