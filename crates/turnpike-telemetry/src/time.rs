//! RFC 3339 timestamps without a date-time dependency.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `now` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn write_rfc3339_millis(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let ms = since.subsec_millis();
    // Fixed-width digits by hand: this runs for every access-log line.
    let digits = |out: &mut Vec<u8>, value: u64, width: u32| {
        for i in (0..width).rev() {
            out.push(b'0' + (value / 10u64.pow(i) % 10) as u8);
        }
    };
    digits(out, u64::try_from(y).unwrap_or(0), 4);
    out.push(b'-');
    digits(out, u64::from(m), 2);
    out.push(b'-');
    digits(out, u64::from(d), 2);
    out.push(b'T');
    digits(out, hh as u64, 2);
    out.push(b':');
    digits(out, mm as u64, 2);
    out.push(b':');
    digits(out, ss as u64, 2);
    out.push(b'.');
    digits(out, u64::from(ms), 3);
    out.push(b'Z');
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let mut out = Vec::new();
        write_rfc3339_millis(&mut out, UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        assert_eq!(String::from_utf8(out).unwrap(), "2023-11-14T22:13:20.123Z");
        let mut out = Vec::new();
        write_rfc3339_millis(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400)); // leap day 2000
        assert_eq!(String::from_utf8(out).unwrap(), "2000-02-29T00:00:00.000Z");
    }
}
