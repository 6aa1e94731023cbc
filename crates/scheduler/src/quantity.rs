//! Kubernetes resource quantities ("100m", "0.5", "128Mi", "1G", "1e3", "1.5Gi"),
//! parsed exactly (no floating point) into milli-units.

use thiserror::Error;

/// Why a quantity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {0:?} has no digits")]
    NoDigits(String),
    #[error("quantity {quantity:?} has an unknown suffix {suffix:?}")]
    UnknownSuffix { quantity: String, suffix: String },
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// Parses a Kubernetes quantity into milli-units, rounding up as
/// `Quantity.MilliValue()` does ("0.1m" is 1 milli). "1" is 1000, "100m" is 100,
/// "1Ki" is 1024000.
pub fn parse_quantity(s: &str) -> Result<i128, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut negative = false;
    if bytes[0] == b'+' || bytes[0] == b'-' {
        negative = bytes[0] == b'-';
        i = 1;
    }
    let overflow = || QuantityError::Overflow(s.to_string());
    let mut mantissa: i128 = 0;
    let mut frac_digits: u32 = 0;
    let mut digits = 0usize;
    let mut seen_dot = false;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_digit() {
            digits += 1;
            // Leading zeros and trailing zeros are harmless; cap precision to avoid overflow
            // on absurdly long strings.
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(c - b'0')))
                .ok_or_else(overflow)?;
            if seen_dot {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_dot {
            seen_dot = true;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 {
        return Err(QuantityError::NoDigits(s.to_string()));
    }
    let suffix = &s[i..];
    // value = mantissa / 10^frac_digits * 2^bin_exp * 10^dec_exp
    let (bin_exp, dec_exp): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => {
            let unknown = || QuantityError::UnknownSuffix {
                quantity: s.to_string(),
                suffix: suffix.to_string(),
            };
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(unknown)?;
            let digits_part = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits_part.is_empty() || !digits_part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(unknown());
            }
            let exp: i32 = rest.parse().map_err(|_| overflow())?;
            (0, exp)
        }
    };
    // Milli-units: multiply by 10^3.
    let dec_exp = dec_exp
        .checked_add(3)
        .and_then(|e| e.checked_sub(i32::try_from(frac_digits).ok()?))
        .ok_or_else(overflow)?;
    let mut numerator = mantissa
        .checked_mul(1i128.checked_shl(bin_exp).ok_or_else(overflow)?)
        .ok_or_else(overflow)?;
    let mut denominator: i128 = 1;
    if dec_exp >= 0 {
        let pow = 10i128
            .checked_pow(dec_exp.unsigned_abs())
            .ok_or_else(overflow)?;
        numerator = numerator.checked_mul(pow).ok_or_else(overflow)?;
    } else if dec_exp.unsigned_abs() > 38 {
        // Smaller than one milli-unit: rounds up to 1 unless zero.
        return Ok(match (numerator == 0, negative) {
            (true, _) => 0,
            (false, false) => 1,
            (false, true) => 0,
        });
    } else {
        denominator = 10i128
            .checked_pow(dec_exp.unsigned_abs())
            .ok_or_else(overflow)?;
    }
    // Round up (towards +infinity), as resource.Quantity does for MilliValue.
    let value = if negative {
        -(numerator / denominator)
    } else {
        numerator / denominator + i128::from(numerator % denominator != 0)
    };
    Ok(value)
}

/// Converts milli-units to whole units, rounding up as `Quantity.Value()` does.
pub(crate) fn milli_to_units(milli: i128) -> i128 {
    milli.div_euclid(1000) + i128::from(milli.rem_euclid(1000) != 0)
}

/// Saturating conversion used where Kubernetes keeps int64 values.
pub(crate) fn to_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_quantities_exactly() {
        let cases: &[(&str, i128)] = &[
            ("100m", 100),
            ("0.5", 500),
            ("1", 1000),
            ("2", 2000),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1G", 1_000_000_000_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e-3", 1),
            ("1.5Gi", 1536 * 1024 * 1024 * 1000),
            ("1Ki", 1_024_000),
            ("1k", 1_000_000),
            ("0.1m", 1),
            ("1n", 1),
            ("0", 0),
            ("0m", 0),
            (".5", 500),
            ("5.", 5000),
            ("+1", 1000),
            ("-1", -1000),
            ("250u", 1),
            ("1E", 1_000_000_000_000_000_000_000),
            ("1Ei", (1i128 << 60) * 1000),
            ("110", 110_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_quantities() {
        for s in [
            "", "abc", "1x", "Mi", "1e", "1e+", "1.2.3", "1 Mi", "1mi", "1KB",
        ] {
            assert!(parse_quantity(s).is_err(), "{s} should not parse");
        }
        assert!(matches!(
            parse_quantity("1e99999"),
            Err(QuantityError::Overflow(_))
        ));
    }

    #[test]
    fn milli_to_units_rounds_up() {
        assert_eq!(milli_to_units(1500), 2);
        assert_eq!(milli_to_units(1000), 1);
        assert_eq!(milli_to_units(0), 0);
        assert_eq!(milli_to_units(1), 1);
    }
}
