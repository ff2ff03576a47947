//! Durations and byte sizes.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{brief, load};
use crate::{ByteSize, Duration};

fn d(s: &str) -> Result<StdDuration, String> {
    s.parse::<Duration>().map(|d| d.0).map_err(|e| e.to_string())
}

fn b(s: &str) -> Result<u64, String> {
    s.parse::<ByteSize>().map(|b| b.0).map_err(|e| e.to_string())
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(d("5s"), Ok(StdDuration::from_secs(5)));
    assert_eq!(d("250ms"), Ok(StdDuration::from_millis(250)));
    assert_eq!(d("1m30s"), Ok(StdDuration::from_secs(90)));
    assert_eq!(d("2h"), Ok(StdDuration::from_secs(7200)));
    assert_eq!(d("100us"), Ok(StdDuration::from_micros(100)));
    assert_eq!(d("100µs"), Ok(StdDuration::from_micros(100)));
    assert_eq!(d("7ns"), Ok(StdDuration::from_nanos(7)));
    assert_eq!(d("1d1h1m1s1ms"), Ok(StdDuration::from_millis(90_061_001)));
    assert_eq!(d("0s"), Ok(StdDuration::ZERO));
}

#[test]
fn durations_without_units_or_malformed_are_refused() {
    assert_eq!(d("30"), Err("duration `30` has no unit: add one, e.g. `30s` or `30ms`".into()));
    assert!(d("").unwrap_err().starts_with("empty duration"));
    assert!(d("5x").unwrap_err().contains("unknown unit `x`"));
    assert!(d("1.5s").unwrap_err().starts_with("invalid duration `1.5s`"));
    assert!(d("1s1m").unwrap_err().contains("largest to smallest"));
    assert!(d("1s1s").unwrap_err().contains("largest to smallest"));
    assert!(d("5s3").unwrap_err().contains("the last number has no unit"));
    assert!(d("-5s").is_err());
    assert!(d(" 5s").is_err());
    assert!(d("99999999999999999999999d").unwrap_err().contains("too large"));
}

#[test]
fn durations_display_canonically_and_round_trip() {
    for (input, shown) in [("90s", "1m30s"), ("1500ms", "1s500ms"), ("0ms", "0s"), ("2h", "2h"), ("100us", "100us")] {
        let parsed: Duration = input.parse().unwrap();
        assert_eq!(parsed.to_string(), shown);
        assert_eq!(shown.parse::<Duration>().unwrap(), parsed);
    }
    assert_eq!(serde_json::to_string(&Duration::from_millis(250)).unwrap(), "\"250ms\"");
    assert_eq!(serde_json::from_str::<Duration>("\"5s\"").unwrap(), Duration::from_secs(5));
    assert!(serde_json::from_str::<Duration>("5").unwrap_err().to_string().contains("has no unit"));
    let std: StdDuration = Duration::from_secs(3).into();
    assert_eq!(std, StdDuration::from_secs(3));
    assert!(Duration::from_secs(1) < Duration::from_secs(2));
}

#[test]
fn a_plain_integer_duration_in_config_asks_for_a_unit() {
    #[derive(Debug, Deserialize)]
    struct T {
        #[allow(dead_code)]
        timeout: Duration,
    }
    let loaded = load::<T>("timeout: 30\n");
    assert_eq!(brief(&loaded.errors), ["1:10 timeout: duration `30` has no unit: add one, e.g. `30s` or `30ms`"]);
}

#[test]
fn byte_sizes_parse_decimal_and_binary_units() {
    assert_eq!(b("512"), Ok(512));
    assert_eq!(b("512B"), Ok(512));
    assert_eq!(b("64KiB"), Ok(65_536));
    assert_eq!(b("10MiB"), Ok(10 * 1024 * 1024));
    assert_eq!(b("1GiB"), Ok(1 << 30));
    assert_eq!(b("100KB"), Ok(100_000));
    assert_eq!(b("1MB"), Ok(1_000_000));
    assert_eq!(b("2 kib"), Ok(2048));
    assert_eq!(b("1TB"), Ok(1_000_000_000_000));
}

#[test]
fn malformed_byte_sizes_are_refused() {
    assert!(b("").unwrap_err().starts_with("invalid size ``"));
    assert!(b("1.5MB").unwrap_err().contains("unknown unit `.5MB`"));
    assert!(b("10XB").unwrap_err().contains("unknown unit `XB`"));
    assert!(b("KB").is_err());
    assert!(b("20000000TiB").unwrap_err().contains("too large"));
}

#[test]
fn byte_sizes_display_canonically_and_deserialize_from_integers() {
    for (input, shown) in [("65536", "64KiB"), ("100000", "100KB"), ("512", "512B"), ("0", "0B"), ("1048576", "1MiB")] {
        let parsed: ByteSize = input.parse().unwrap();
        assert_eq!(parsed.to_string(), shown);
        assert_eq!(shown.parse::<ByteSize>().unwrap(), parsed);
    }
    assert_eq!(serde_json::to_string(&ByteSize(2048)).unwrap(), "\"2KiB\"");
    assert_eq!(serde_json::from_str::<ByteSize>("4096").unwrap(), ByteSize(4096));
    #[derive(Debug, Deserialize)]
    struct T {
        a: ByteSize,
        b: ByteSize,
    }
    let loaded = load::<T>("a: 1024\nb: 1MB\n");
    let t = loaded.value.unwrap();
    assert_eq!((t.a.0, t.b.0), (1024, 1_000_000));
    let loaded = load::<T>("a: -1\nb: lots\n");
    assert_eq!(
        brief(&loaded.errors),
        [
            "1:4 a: invalid size `-1`: must not be negative",
            "2:4 b: invalid size `lots`: expected a number of bytes with an optional unit, e.g. `512`, `64KiB`, `10MB`",
        ]
    );
}

#[test]
fn schemas_are_patterned_strings() {
    let mut generator = schemars::SchemaGenerator::default();
    let duration = serde_json::to_value(Duration::json_schema(&mut generator)).unwrap();
    assert_eq!(duration["type"], "string");
    let pattern = duration["pattern"].as_str().unwrap();
    assert!(pattern.contains("ms"), "{pattern}");
    assert!(duration["description"].as_str().unwrap().contains("1m30s"));
    let size = serde_json::to_value(ByteSize::json_schema(&mut generator)).unwrap();
    assert_eq!(size["type"], serde_json::json!(["string", "integer"]));
    assert!(size["pattern"].as_str().is_some());
    assert!(size["description"].as_str().is_some());
    // Spanned is transparent.
    let spanned = serde_json::to_value(schemars::schema_for!(crate::Spanned<Duration>)).unwrap();
    assert_eq!(spanned["type"], "string");
}
