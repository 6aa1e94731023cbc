//! Kubernetes resource quantities ("100m", "0.5", "128Mi", "1G", "1e3", "1.5Gi") as the
//! scheduler counts them: milli-units (read by `skiff_meta::quantity`), whole units and
//! the int64 values Kubernetes keeps.

pub use skiff_meta::quantity::QuantityError;

/// Parses a Kubernetes quantity into milli-units, rounding up as
/// `Quantity.MilliValue()` does ("0.1m" is 1 milli). "1" is 1000, "100m" is 100,
/// "1Ki" is 1024000. The one reader of quantities is `skiff_meta::quantity`.
pub fn parse_quantity(s: &str) -> Result<i128, QuantityError> {
    skiff_meta::quantity::parse_milli(s)
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
            Err(QuantityError::Invalid(_))
        ));
        assert_eq!(parse_quantity(""), Err(QuantityError::Empty));
    }

    #[test]
    fn milli_to_units_rounds_up() {
        assert_eq!(milli_to_units(1500), 2);
        assert_eq!(milli_to_units(1000), 1);
        assert_eq!(milli_to_units(0), 0);
        assert_eq!(milli_to_units(1), 1);
    }
}
