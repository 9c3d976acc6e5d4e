//! Byte sizes in policy files: an integer number of bytes (`65536`) or a
//! number with a binary unit (`512B`, `64KiB`, `16MiB`, `1GiB`).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// Deserializes an optional byte size written as bytes or with a unit.
pub(crate) fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    d.deserialize_any(SizeVisitor).map(Some)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a byte size: whole bytes (65536) or a number with a unit (512B, 64KiB, 16MiB, 1GiB)",
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        usize::try_from(v).map_err(|_| E::custom(format!("byte size {v} is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        u64::try_from(v)
            .map_err(|_| E::custom(format!("byte size must not be negative, got {v}")))
            .and_then(|v| self.visit_u64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

fn parse(s: &str) -> Option<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1usize << shift)
}

/// Renders a size the way a policy file would write it (the largest exact unit).
pub(crate) fn display(n: usize) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse("65536"), Some(65536));
        assert_eq!(parse("512B"), Some(512));
        assert_eq!(parse("64KiB"), Some(64 << 10));
        assert_eq!(parse(" 16MiB "), Some(16 << 20));
        assert_eq!(parse("1GiB"), Some(1 << 30));
        assert_eq!(parse("1GB"), None);
        assert_eq!(parse("MiB"), None);
        assert_eq!(parse("-1"), None);
        assert_eq!(display(16 << 20), "16MiB");
        assert_eq!(display(1000), "1000B");
        assert_eq!(display(3 << 10), "3KiB");
    }
}
