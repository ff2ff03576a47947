//! RFC 3339 timestamps without a date-time dependency.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Nanoseconds since the Unix epoch at `at`, from a reading of both clocks this thread took less than a second
/// before (or takes now): one clock read per access-log line instead of two, and integer arithmetic instead of
/// `SystemTime`'s. A step of the wall clock shows within a second.
pub(crate) fn unix_nanos(at: Instant) -> u64 {
    thread_local! {
        static BASE: Cell<Option<(Instant, u64)>> = const { Cell::new(None) };
    }
    BASE.with(|base| {
        if let Some((mono, wall)) = base.get()
            && let Some(since) = at.checked_duration_since(mono)
            && since < Duration::from_secs(1)
        {
            return wall.saturating_add(u64::from(since.subsec_nanos()));
        }
        let (mono, wall) = (Instant::now(), nanos(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()));
        base.set(Some((mono, wall)));
        match at.checked_duration_since(mono) {
            Some(ahead) => wall.saturating_add(nanos(ahead)),
            None => wall.saturating_sub(nanos(mono.saturating_duration_since(at))),
        }
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `unix_nanos` (ns since the Unix epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`. This runs for every access-log line: the
/// date and time up to the second are formatted once per second and thread, then copied.
pub(crate) fn rfc3339_millis(unix_nanos: u64) -> [u8; 24] {
    thread_local! {
        /// The last second formatted, and `YYYY-MM-DDTHH:MM:SS.` as two words (copied as two loads, where bytes
        /// would be copied one by one).
        static SECOND: Cell<(u64, u128, u32)> = const { Cell::new((u64::MAX, 0, 0)) };
    }
    let secs = unix_nanos / 1_000_000_000;
    let (head, tail) = SECOND.with(|cached| {
        let (second, head, tail) = cached.get();
        if second == secs {
            return (head, tail);
        }
        let prefix = format_second(secs);
        let mut head = [0; 16];
        head.copy_from_slice(&prefix[..16]);
        let mut tail = [0; 4];
        tail.copy_from_slice(&prefix[16..]);
        let (head, tail) = (u128::from_le_bytes(head), u32::from_le_bytes(tail));
        cached.set((secs, head, tail));
        (head, tail)
    });
    let ms = (unix_nanos % 1_000_000_000 / 1_000_000) as u32;
    let mut out = [0u8; 24];
    out[..16].copy_from_slice(&head.to_le_bytes());
    out[16..20].copy_from_slice(&tail.to_le_bytes());
    out[20..].copy_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8, b'Z']);
    out
}

/// `time` as ns since the Unix epoch (0 before it).
pub(crate) fn system_nanos(time: SystemTime) -> u64 {
    nanos(time.duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// `YYYY-MM-DDTHH:MM:SS.` of a second since the Unix epoch.
fn format_second(secs: u64) -> [u8; 20] {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut digits = |at: usize, value: u64, width: usize| {
        let mut value = value;
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, u64::try_from(y).unwrap_or(0), 4);
    digits(5, u64::from(m), 2);
    digits(8, u64::from(d), 2);
    digits(11, (rem / 3600) as u64, 2);
    digits(14, (rem % 3600 / 60) as u64, 2);
    digits(17, (rem % 60) as u64, 2);
    out
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

    #[test]
    fn the_wall_clock_follows_the_monotonic_one() {
        let close = |a: u64, b: SystemTime| {
            let b = system_nanos(b);
            assert!(a.abs_diff(b) < 50_000_000, "{a} vs {b}");
        };
        let wall_clock = unix_nanos;
        let now = Instant::now();
        close(wall_clock(now), SystemTime::now());
        // From the base just taken, then from a base older than the instant asked about.
        close(wall_clock(now + Duration::from_millis(300)), SystemTime::now() + Duration::from_millis(300));
        let earlier = now.checked_sub(Duration::from_secs(5)).unwrap_or(now);
        let expected = SystemTime::now() - now.saturating_duration_since(earlier);
        close(wall_clock(earlier), expected);
        close(wall_clock(now + Duration::from_secs(3)), SystemTime::now() + Duration::from_secs(3));
    }

    #[test]
    fn formats_known_instants() {
        let out = rfc3339_millis(1_700_000_000_123_456_789);
        assert_eq!(&out, b"2023-11-14T22:13:20.123Z");
        let out = rfc3339_millis(951_782_400_000_000_000); // leap day 2000
        assert_eq!(&out, b"2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_cached_second_is_reused_only_within_that_second() {
        let at = |ms: u64| String::from_utf8(rfc3339_millis(ms * 1_000_000).to_vec()).unwrap();
        assert_eq!(at(1_700_000_000_001), "2023-11-14T22:13:20.001Z");
        assert_eq!(at(1_700_000_000_999), "2023-11-14T22:13:20.999Z");
        assert_eq!(at(1_700_000_001_000), "2023-11-14T22:13:21.000Z");
        assert_eq!(at(1_699_999_999_500), "2023-11-14T22:13:19.500Z");
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
    }
}
