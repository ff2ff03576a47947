//! Human-written quantities in config: durations (`1m30s`) and byte sizes (`64KiB`).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::{Serialize, Serializer};

/// Why a duration or byte size did not parse. The message quotes the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitParseError(String);

impl fmt::Display for UnitParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitParseError {}

/// A duration written with units: `5s`, `250ms`, `1m30s`, `2h`, `100us`.
///
/// Units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` and `d`; several may be combined, largest
/// first, each at most once (`1h30m`). A bare number is refused with a message asking for a
/// unit, since `30` could mean seconds or milliseconds. Fractions are not accepted (`1s500ms`,
/// not `1.5s`). Serializes to its canonical form (`90s` displays as `1m30s`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

const DURATION_UNITS: &[(&str, u128)] = &[
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const DURATION_HELP: &str =
    "a number followed by a unit (`ns`, `us`, `ms`, `s`, `m`, `h`, `d`), e.g. `5s`, `250ms` or `1m30s`";

impl Duration {
    /// Zero.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// Whole milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Duration(std::time::Duration::from_millis(millis))
    }

    /// The standard library duration.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = UnitParseError;

    /// Parses `5s`, `1m30s`, ... Fails on an empty string, a bare number, an unknown unit, a
    /// unit repeated or out of order, or a value past `std::time::Duration::MAX`.
    fn from_str(s: &str) -> Result<Self, UnitParseError> {
        let invalid = |why: &str| UnitParseError(format!("invalid duration `{s}`: {why}"));
        if s.is_empty() {
            return Err(UnitParseError(format!("empty duration: expected {DURATION_HELP}")));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UnitParseError(format!("duration `{s}` has no unit: add one, e.g. `{s}s` or `{s}ms`")));
        }
        if s.contains(char::is_whitespace) {
            return Err(invalid("write numbers and units together without spaces, like `5s`, `250ms` or `1m30s`"));
        }
        let mut rest = s;
        let mut total: u128 = 0;
        let mut last_unit: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid(&format!("expected {DURATION_HELP}")));
            }
            let number: u128 = rest[..digits].parse().map_err(|_| invalid("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.char_indices().find(|(_, c)| !c.is_alphabetic()).map_or(rest.len(), |(i, _)| i);
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let unit = if unit == "µs" || unit == "μs" { "us" } else { unit };
            let Some(pos) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    invalid("the last number has no unit")
                } else {
                    invalid(&format!("unknown unit `{unit}`, expected {DURATION_HELP}"))
                });
            };
            if last_unit.is_some_and(|last| pos <= last) {
                return Err(invalid("units must go from largest to smallest, each once (`1h30m`)"));
            }
            last_unit = Some(pos);
            total = number
                .checked_mul(DURATION_UNITS[pos].1)
                .and_then(|n| total.checked_add(n))
                .ok_or_else(|| invalid("too large"))?;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| invalid("too large"))?;
        let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| invalid("too large"))?;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Duration {
    /// The canonical form: largest units first, zero parts left out (`1m30s`, `250ms`, `0s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0.as_nanos();
        if rest == 0 {
            return f.write_str("0s");
        }
        for (name, nanos) in DURATION_UNITS {
            let n = rest / nanos;
            if n > 0 {
                write!(f, "{n}{name}")?;
                rest -= n * nanos;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration: {DURATION_HELP}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                self.visit_str(&v.to_string())
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl JsonSchema for Duration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "turnpike_config::Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ns|us|µs|ms|s|m|h|d))+$",
            "description": "A duration: a number followed by a unit (ns, us, ms, s, m, h, d); units may be combined largest first, e.g. `5s`, `250ms`, `1m30s`.",
            "examples": ["5s", "250ms", "1m30s"]
        })
    }
}

/// A size in bytes: `512` (bytes), `512B`, `100KB`, `1MB` (powers of 1000), `64KiB`, `10MiB`,
/// `1GiB` (powers of 1024), up to `TB`/`TiB`.
///
/// Units are case-insensitive and may follow one space (`64 KiB`); a plain integer is bytes.
/// Fails on fractions, unknown units and values past `u64::MAX`. Serializes to its canonical
/// form: the largest unit that divides the value exactly (`65536` displays as `64KiB`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

/// Largest first, each binary unit before the decimal one just below it.
const BYTE_UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

impl ByteSize {
    /// `n` bytes.
    pub const fn bytes(n: u64) -> Self {
        ByteSize(n)
    }

    /// `n` KiB.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }

    /// The size in bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> Self {
        b.0
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> Self {
        ByteSize(n)
    }
}

impl TryFrom<ByteSize> for usize {
    type Error = std::num::TryFromIntError;

    fn try_from(b: ByteSize) -> Result<Self, Self::Error> {
        usize::try_from(b.0)
    }
}

impl FromStr for ByteSize {
    type Err = UnitParseError;

    fn from_str(s: &str) -> Result<Self, UnitParseError> {
        let invalid = |why: &str| UnitParseError(format!("invalid size `{s}`: {why}"));
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid("expected a number of bytes with an optional unit, e.g. `512`, `64KiB`, `10MB`"));
        }
        let number: u64 = s[..digits].parse().map_err(|_| invalid("too large"))?;
        let unit = &s[digits..];
        let unit = unit.strip_prefix(' ').unwrap_or(unit);
        if unit.is_empty() {
            return Ok(ByteSize(number));
        }
        let Some((_, factor)) = BYTE_UNITS.iter().find(|(name, _)| name.eq_ignore_ascii_case(unit)) else {
            return Err(invalid(&format!(
                "unknown unit `{unit}`, expected `B`, `KB`, `MB`, `GB`, `TB`, `KiB`, `MiB`, `GiB` or `TiB`"
            )));
        };
        number.checked_mul(*factor).map(ByteSize).ok_or_else(|| invalid("too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, factor) = BYTE_UNITS
            .iter()
            .find(|(_, factor)| self.0 != 0 && self.0.is_multiple_of(*factor))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", self.0 / factor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a number of bytes with an optional unit, e.g. `512`, `64KiB`, `10MB`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format_args!("invalid size `{v}`: must not be negative")))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl JsonSchema for ByteSize {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "turnpike_config::ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer"],
            "minimum": 0,
            "pattern": "^[0-9]+ ?([bB]|[kKmMgGtT][iI]?[bB])?$",
            "description": "A size in bytes: a plain integer, or a number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. `64KiB`, `10MB`.",
            "examples": ["64KiB", "10MiB", "1GB"]
        })
    }
}
