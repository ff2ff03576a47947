//! Calendar windows for quotas: days, weeks (from Monday) and months, aligned to midnight in a time zone, with
//! daylight-saving days of 23 or 25 hours counted as they are.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

use super::algorithm::Nanos;

/// A calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    /// From midnight to midnight.
    Day,
    /// From Monday 00:00 to the next Monday 00:00.
    Week,
    /// From the first of the month 00:00 to the first of the next.
    Month,
}

/// Calendar periods in a time zone, with the current period remembered (computing one takes a time-zone lookup).
#[derive(Debug)]
pub struct Calendar {
    unit: CalendarUnit,
    zone_name: String,
    zone: TimeZone,
    /// The last period computed: `[start, end)` in ns since the epoch (a benign race: two threads may both
    /// compute it).
    start: AtomicU64,
    end: AtomicU64,
}

impl Clone for Calendar {
    fn clone(&self) -> Self {
        Self::with_zone(self.unit, self.zone_name.clone(), self.zone.clone())
    }
}

impl PartialEq for Calendar {
    fn eq(&self, other: &Self) -> bool {
        self.unit == other.unit && self.zone_name == other.zone_name
    }
}

impl Eq for Calendar {}

impl Calendar {
    /// Periods of `unit` in the IANA time zone `zone` (`UTC`, `Europe/Paris`); an unknown zone is an error.
    pub fn new(unit: CalendarUnit, zone: &str) -> Result<Self, String> {
        let tz = TimeZone::get(zone).map_err(|err| format!("unknown time zone `{zone}`: {err}"))?;
        Ok(Self::with_zone(unit, zone.to_string(), tz))
    }

    fn with_zone(unit: CalendarUnit, zone_name: String, zone: TimeZone) -> Self {
        Self { unit, zone_name, zone, start: AtomicU64::new(0), end: AtomicU64::new(0) }
    }

    /// The unit.
    pub fn unit(&self) -> CalendarUnit {
        self.unit
    }

    /// The time zone's name.
    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    /// The period containing `now`: `[start, end)`.
    pub fn bounds(&self, now: Nanos) -> (Nanos, Nanos) {
        let (start, end) = (self.start.load(Ordering::Relaxed), self.end.load(Ordering::Relaxed));
        if start <= now && now < end {
            return (start, end);
        }
        let (start, end) = self.compute(now).unwrap_or_else(|| {
            // Out of the calendar's range (year 9999+): a day-long window, so the limit still applies.
            let day = 86_400 * super::algorithm::SECOND;
            (now - now % day, now - now % day + day)
        });
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        (start, end)
    }

    fn compute(&self, now: Nanos) -> Option<(Nanos, Nanos)> {
        let zoned = Timestamp::from_nanosecond(i128::from(now)).ok()?.to_zoned(self.zone.clone());
        let start: Zoned = match self.unit {
            CalendarUnit::Day => zoned.start_of_day().ok()?,
            CalendarUnit::Week => {
                let back = i64::from(zoned.weekday().to_monday_zero_offset());
                zoned.checked_sub(back.days()).ok()?.start_of_day().ok()?
            }
            CalendarUnit::Month => zoned.first_of_month().ok()?.start_of_day().ok()?,
        };
        let end = match self.unit {
            CalendarUnit::Day => start.checked_add(1.day()).ok()?,
            CalendarUnit::Week => start.checked_add(1.week()).ok()?,
            CalendarUnit::Month => start.checked_add(1.month()).ok()?,
        };
        let ns = |z: &Zoned| u64::try_from(z.timestamp().as_nanosecond()).ok();
        Some((ns(&start)?, ns(&end)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Nanos {
        let ts: Timestamp = text.parse().unwrap();
        ts.as_nanosecond() as Nanos
    }

    #[test]
    fn days_start_at_local_midnight() {
        let paris = Calendar::new(CalendarUnit::Day, "Europe/Paris").unwrap();
        let (start, end) = paris.bounds(at("2026-12-04T22:30:00Z"));
        assert_eq!(start, at("2026-12-03T23:00:00Z"));
        assert_eq!(end, at("2026-12-04T23:00:00Z"));
        // Just past local midnight is the next day.
        assert_eq!(paris.bounds(at("2026-12-04T23:00:01Z")).0, at("2026-12-04T23:00:00Z"));
    }

    #[test]
    fn daylight_saving_days_are_23_or_25_hours() {
        let paris = Calendar::new(CalendarUnit::Day, "Europe/Paris").unwrap();
        let (start, end) = paris.bounds(at("2026-03-29T12:00:00Z"));
        assert_eq!(end - start, 23 * 3600 * super::super::algorithm::SECOND);
        let (start, end) = paris.bounds(at("2026-10-25T12:00:00Z"));
        assert_eq!(end - start, 25 * 3600 * super::super::algorithm::SECOND);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let utc = Calendar::new(CalendarUnit::Week, "UTC").unwrap();
        // 2026-12-04 is a Friday.
        assert_eq!(utc.bounds(at("2026-12-04T10:00:00Z")), (at("2026-11-30T00:00:00Z"), at("2026-12-07T00:00:00Z")));
        let months = Calendar::new(CalendarUnit::Month, "UTC").unwrap();
        assert_eq!(months.bounds(at("2026-02-14T10:00:00Z")), (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z")));
    }

    #[test]
    fn unknown_zones_are_refused() {
        assert!(Calendar::new(CalendarUnit::Day, "Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
