//! The one grammar for byte counts in flags, config files and test parameters.
//!
//! `NUMBER[UNIT]`: `NUMBER` is decimal (`4096`) or hexadecimal with `0x` (`0x1000`); `UNIT`
//! is `K`, `M`, `G` or `T` in either case, binary (1024-based), optionally followed by `B`
//! or `iB` (`64K` = `64KB` = `64KiB` = 65536). Surrounding white space is ignored; anything
//! else, and a value that does not fit in 64 bits, is an error.

use std::fmt;

/// Why a size did not parse; the message quotes the text and says what would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Not of the grammar above.
    Malformed(String),
    /// More than `u64::MAX` bytes.
    TooLarge(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Malformed(text) => write!(
                f,
                "{text:?} is not a size (examples: 4096, 0x1000, 64K, 128M, 2GiB)"
            ),
            SizeError::TooLarge(text) => write!(f, "{text:?} is too large for a 64-bit size"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a byte count (see the module documentation for the grammar).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let malformed = || SizeError::Malformed(text.to_string());
    let t = text.trim();
    // "128MiB" and "128MB" mean "128M"; a bare "B" stays a hex digit ("0xB").
    let t = match t.strip_suffix("iB").or_else(|| t.strip_suffix('B')) {
        Some(rest) if rest.ends_with(['k', 'K', 'm', 'M', 'g', 'G', 't', 'T']) => rest,
        _ => t,
    };
    let (digits, shift) = match t.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&t[..t.len() - 1], 10),
        Some(b'M') => (&t[..t.len() - 1], 20),
        Some(b'G') => (&t[..t.len() - 1], 30),
        Some(b'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    // from_str_radix and parse accept a leading '+': the grammar does not.
    let (digits, radix) = match digits.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(malformed());
    }
    let value =
        u64::from_str_radix(digits, radix).map_err(|_| SizeError::TooLarge(text.to_string()))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_with_optional_b_or_ib() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 512K "), Ok(512 << 10));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("0xB"), Ok(11));
        assert_eq!(parse_size("0x10M"), Ok(16 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn anything_else_is_refused_with_the_text() {
        for bad in [
            "", "K", "x", "12Q", "1.5G", "-1", "+1", "8 M", "0x", "0xG", "1KK", "B",
        ] {
            assert_eq!(
                parse_size(bad),
                Err(SizeError::Malformed(bad.to_string())),
                "{bad:?}"
            );
        }
        assert!(parse_size("12Q")
            .unwrap_err()
            .to_string()
            .contains("\"12Q\""));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert_eq!(
            parse_size("16383P").unwrap_err(),
            SizeError::Malformed("16383P".into())
        );
        assert_eq!(
            parse_size("16777216T"),
            Err(SizeError::TooLarge("16777216T".into()))
        );
        assert_eq!(parse_size("16777215T"), Ok(16777215 << 40));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size("18446744073709551616"),
            Err(SizeError::TooLarge("18446744073709551616".into()))
        );
        assert!(parse_size("0xFFFFFFFFFFFFFFFFF").is_err());
    }
}
