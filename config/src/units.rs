//! Human-friendly units in config values: [`ByteSize`] (`64MiB`) and
//! [`Dur`] (`500ms`).
//!
//! Both print in the largest unit that divides the value exactly, so
//! `parse(x.to_string()) == x` for every value: a config dumped with
//! `serde` reads back unchanged.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A value that is not a size or a duration. `Display` is the message shown
/// to the operator, e.g. `invalid size "12XB" (use e.g. 64MiB, 1GB, 4096)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?} ({hint})")]
pub struct ParseUnitError {
    /// `"size"` or `"duration"`.
    pub what: &'static str,
    /// The text as given.
    pub input: String,
    /// What is wrong or what would be accepted.
    pub hint: &'static str,
}

const SIZE_HINT: &str = "use e.g. 64MiB, 1GB, 4096";
const SIZE_TOO_LARGE: &str = "too large: at most 18446744073709551615 bytes";
const DUR_HINT: &str = "use e.g. 500ms, 5s, 2m";
const DUR_TOO_LARGE: &str = "too large: at most about 584 billion years";

/// A number of bytes.
///
/// Reads `"64MiB"`, `"1GB"`, `"512KiB"`, `"4096"`, `"100B"` or a bare
/// integer; units are case-insensitive, `KB`/`MB`/`GB`/`TB` are powers of
/// 1000 and `KiB`/`MiB`/`GiB`/`TiB` powers of 1024. A space between number
/// and unit is allowed. Prints as `64MiB`, `1GB`, `4KiB`, `1234B`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Largest first: `Display` takes the first unit that divides exactly.
const SIZE_UNITS: [(&str, u64); 8] = [
    ("TiB", TIB),
    ("TB", 1_000_000_000_000),
    ("GiB", GIB),
    ("GB", 1_000_000_000),
    ("MiB", MIB),
    ("MB", 1_000_000),
    ("KiB", KIB),
    ("KB", 1_000),
];

impl ByteSize {
    /// `n` KiB.
    pub const fn kib(n: u64) -> ByteSize {
        ByteSize(n * KIB)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> ByteSize {
        ByteSize(n * MIB)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> ByteSize {
        ByteSize(n * GIB)
    }

    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The number of bytes as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = ParseUnitError;

    fn from_str(input: &str) -> Result<ByteSize, ParseUnitError> {
        let err = |hint| ParseUnitError { what: "size", input: input.to_owned(), hint };
        let s = input.trim();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(digits_end);
        if digits.is_empty() {
            return Err(err(SIZE_HINT));
        }
        let unit = unit.trim_start();
        let factor = if unit.is_empty() || unit.eq_ignore_ascii_case("b") {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|&(_, factor)| factor)
                .ok_or_else(|| err(SIZE_HINT))?
        };
        // Digits only, so the one parse failure left is overflow.
        let n: u64 = digits.parse().map_err(|_| err(SIZE_TOO_LARGE))?;
        n.checked_mul(factor).map(ByteSize).ok_or_else(|| err(SIZE_TOO_LARGE))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n != 0 {
            for (name, factor) in SIZE_UNITS {
                if n.is_multiple_of(factor) {
                    return write!(f, "{}{name}", n / factor);
                }
            }
        }
        write!(f, "{n}B")
    }
}

impl From<u64> for ByteSize {
    fn from(n: u64) -> ByteSize {
        ByteSize(n)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 64MiB, 1GB or 4096")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteSize, E> {
                u64::try_from(n).map(ByteSize).map_err(|_| {
                    E::custom(ParseUnitError { what: "size", input: n.to_string(), hint: "must not be negative" })
                })
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<ByteSize, E> {
                Err(E::custom(ParseUnitError {
                    what: "size",
                    input: n.to_string(),
                    hint: "whole bytes only; use e.g. 1536KiB instead of 1.5MiB",
                }))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A length of time.
///
/// Reads a number followed by a unit (`ns`, `us` or `µs`, `ms`, `s`, `m`,
/// `h`, `d`), or several of them (`1m30s`); a bare `0` is zero. Prints in
/// the largest unit that divides exactly: `500ms`, `5s`, `2m`, `90s`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

const NS: u128 = 1;
const US: u128 = 1_000;
const MS: u128 = 1_000_000;
const SEC: u128 = 1_000_000_000;

/// Largest first: `Display` takes the first unit that divides exactly.
const DUR_UNITS: [(&str, u128); 7] =
    [("d", 86_400 * SEC), ("h", 3_600 * SEC), ("m", 60 * SEC), ("s", SEC), ("ms", MS), ("us", US), ("ns", NS)];

impl Dur {
    /// `n` milliseconds.
    pub const fn from_millis(n: u64) -> Dur {
        Dur(Duration::from_millis(n))
    }

    /// `n` seconds.
    pub const fn from_secs(n: u64) -> Dur {
        Dur(Duration::from_secs(n))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Dur {
    type Err = ParseUnitError;

    fn from_str(input: &str) -> Result<Dur, ParseUnitError> {
        let err = |hint| ParseUnitError { what: "duration", input: input.to_owned(), hint };
        let mut rest = input.trim();
        if rest == "0" {
            return Ok(Dur(Duration::ZERO));
        }
        if rest.is_empty() {
            return Err(err(DUR_HINT));
        }
        let mut total: u128 = 0;
        while !rest.is_empty() {
            let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            let (digits, tail) = rest.split_at(digits_end);
            if digits.is_empty() {
                return Err(err(DUR_HINT));
            }
            let tail = tail.trim_start();
            let unit_end = tail.find(|c: char| !c.is_alphabetic()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_end);
            let factor = match unit {
                "µs" => US,
                "" if tail.is_empty() => return Err(err("a unit is required, e.g. 5s")),
                _ => DUR_UNITS
                    .iter()
                    .find(|(name, _)| *name == unit)
                    .map(|&(_, factor)| factor)
                    .ok_or_else(|| err(DUR_HINT))?,
            };
            let n: u128 = digits.parse().map_err(|_| err(DUR_TOO_LARGE))?;
            total = n.checked_mul(factor).and_then(|part| total.checked_add(part)).ok_or_else(|| err(DUR_TOO_LARGE))?;
            rest = tail.trim_start();
        }
        let secs = u64::try_from(total / SEC).map_err(|_| err(DUR_TOO_LARGE))?;
        let nanos = u32::try_from(total % SEC).expect("remainder of division by 1e9 fits u32");
        Ok(Dur(Duration::new(secs, nanos)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.as_nanos();
        if n == 0 {
            return f.write_str("0s");
        }
        for (name, factor) in DUR_UNITS {
            if n.is_multiple_of(factor) {
                return write!(f, "{}{name}", n / factor);
            }
        }
        unreachable!("every duration is a whole number of nanoseconds")
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Dur {
        Dur(d)
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dur, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 500ms, 5s or 2m")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                if n == 0 {
                    return Ok(Dur(Duration::ZERO));
                }
                Err(E::custom(ParseUnitError {
                    what: "duration",
                    input: n.to_string(),
                    hint: "a unit is required, e.g. 5s",
                }))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(ParseUnitError {
                        what: "duration",
                        input: n.to_string(),
                        hint: "must not be negative",
                    })),
                }
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(ParseUnitError {
                    what: "duration",
                    input: n.to_string(),
                    hint: "a unit is required and fractions are not; use e.g. 1500ms",
                }))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                s.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_display_picks_the_largest_exact_unit() {
        let cases = [
            (0, "0B"),
            (1, "1B"),
            (1000, "1KB"),
            (1024, "1KiB"),
            (4096, "4KiB"),
            (1234, "1234B"),
            (64 * MIB, "64MiB"),
            (1_000_000_000, "1GB"),
            (3 * GIB, "3GiB"),
            (2 * TIB, "2TiB"),
            (u64::MAX, "18446744073709551615B"),
        ];
        for (n, want) in cases {
            assert_eq!(ByteSize(n).to_string(), want, "display of {n}");
        }
    }

    #[test]
    fn dur_display_picks_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(86_400), "1d"),
            (Duration::from_micros(250), "250us"),
            (Duration::from_nanos(1_000_000_001), "1000000001ns"),
        ];
        for (d, want) in cases {
            assert_eq!(Dur(d).to_string(), want, "display of {d:?}");
        }
    }

    #[test]
    fn dur_max_round_trips_through_its_display() {
        let max = Dur(Duration::MAX);
        assert_eq!(max.to_string().parse::<Dur>(), Ok(max));
    }
}
