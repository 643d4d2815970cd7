//! Sizes written by people (`64KiB`, `1.5MiB`, `10MB`), read one way by every flag and config
//! field, so `--cache-size 64k` means the same bytes in every service.
//!
//! The rule: `K`, `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB` are binary (powers of 1024), because
//! these are memory, cache and piece sizes and a bare `64k` means 64 KiB to Unbound, nginx and
//! Varnish alike; the explicit SI spellings `kB`, `MB`, `GB`, `TB` are decimal (powers of 1000),
//! as SI defines them. Units are case-insensitive, `B` or nothing means bytes, a space may stand
//! between number and unit, and a fraction (`1.5MiB`) is rounded down to whole bytes. Negative
//! numbers, garbage, unknown units and values past `u64::MAX` are errors.

use std::fmt;

/// Why a size did not parse; the message quotes the input and shows the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeError {}

/// Parses a size in bytes: `512`, `64K`, `64KiB`, `64kB` (64000), `1.5MiB`, `2GiB`, `10MB`.
/// See the module documentation for the rule.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => {
            return Err(SizeError(format!(
                "unknown unit {other:?} in {text:?} (use a byte count or KiB, MiB, GiB, TiB (also K, M, G, T), or kB, MB, GB, TB)"
            )));
        }
    };
    let garbage = || SizeError(format!("{text:?} is not a size like 512, 64KiB, 1.5MiB or 10MB"));
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(garbage());
    }
    let too_large = || SizeError(format!("{text:?} is too large (at most {} bytes)", u64::MAX));
    let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| too_large())? };
    let mut bytes = whole.checked_mul(mult).ok_or_else(too_large)?;
    // The fraction: digits past 30 cannot change whole bytes of any unit here (mult < 10^13).
    let frac = &frac[..frac.len().min(30)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| garbage())?;
        bytes += digits * mult / 10u128.pow(frac.len() as u32);
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Parses a rate in bytes per second: a [`parse_size`] with an optional `/s` (`500KiB/s`).
pub fn parse_rate(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    parse_size(t.strip_suffix("/s").unwrap_or(t))
}

/// [`parse_size`] into a `usize`, for in-memory limits (a clap `value_parser` and serde helper).
pub fn parse_size_usize(text: &str) -> Result<usize, SizeError> {
    let n = parse_size(text)?;
    usize::try_from(n).map_err(|_| SizeError(format!("{text:?} is too large for this machine")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_binary_units() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4m"), Ok(4 << 20));
        assert_eq!(parse_size("32MiB"), Ok(32 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
    }

    #[test]
    fn si_spellings_are_decimal() {
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
    }

    #[test]
    fn fractions_round_down() {
        assert_eq!(parse_size("1.5MiB"), Ok(3 << 19));
        assert_eq!(parse_size("2.5MB"), Ok(2_500_000));
        assert_eq!(parse_size("0.5K"), Ok(512));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("1.0001K"), Ok(1024));
        assert_eq!(parse_size("1.00000000000000000000000000000000001GiB"), Ok(1 << 30));
    }

    #[test]
    fn garbage_is_rejected_with_the_input_quoted() {
        for bad in ["", "lots", "-1", "1.2.3K", ".", "K", "3 parsecs", "1e6", "0x10", "12KiBs", "+5"] {
            let err = parse_size(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn overflow_is_rejected() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("16777216TiB").unwrap_err().to_string().contains("too large"));
        assert!(parse_size("99999999999999999999999999999999999999999999GiB").is_err());
    }

    #[test]
    fn rates_take_an_optional_per_second() {
        assert_eq!(parse_rate("500KiB/s"), Ok(500 << 10));
        assert_eq!(parse_rate("1MB"), Ok(1_000_000));
        assert!(parse_rate("1MB/h").is_err());
    }

    #[test]
    fn usize_variant() {
        assert_eq!(parse_size_usize("32MiB"), Ok(32 << 20));
    }
}
