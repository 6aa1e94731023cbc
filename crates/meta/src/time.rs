//! Times as Kubernetes writes them.

/// Now as `metav1.Time` serializes it: RFC 3339 in UTC, whole seconds
/// (`2026-12-06T12:00:00Z`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty")]
    Empty(String),
    #[error("invalid duration {0:?}: missing unit (ns, us, ms, s, m, h)")]
    MissingUnit(String),
    #[error("invalid duration {0:?}: not a number")]
    Number(String),
    #[error("invalid duration {input:?}: unknown unit {unit:?}")]
    Unit { input: String, unit: String },
}

/// A Go duration (`time.ParseDuration`): `40s`, `5m`, `1m30s`, `1.5h`, `500ms`, `0`, as
/// Kubernetes' flags and Dockerfile `HEALTHCHECK` options take them.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty(s.into()));
    }
    let mut nanos = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit(s.into()))?;
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| DurationError::Number(s.into()))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                return Err(DurationError::Unit {
                    input: s.into(),
                    unit: unit.into(),
                })
            }
        };
        nanos += value * scale;
        rest = &rest[u..];
    }
    Ok(std::time::Duration::from_nanos(nanos as u64))
}

/// A duration as Go's `time.Duration.String` writes it (`523ms`, `1.234s`, `2m3.5s`,
/// `1h0m0s`), as Kubernetes' messages show durations.
pub fn go_duration(d: std::time::Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    // Below a second: the largest unit that keeps an integer part, with a fraction.
    let frac = |v: u128, unit: u128, name: &str| {
        let (int, rem) = (v / unit, v % unit);
        let digits = unit.ilog10() as usize;
        let mut f = format!("{rem:0digits$}");
        while f.ends_with('0') {
            f.pop();
        }
        if f.is_empty() {
            format!("{int}{name}")
        } else {
            format!("{int}.{f}{name}")
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return frac(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return frac(ns, 1_000_000, "ms");
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = frac(rest, 1_000_000_000, "s");
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        let ms = |n| go_duration(std::time::Duration::from_millis(n));
        assert_eq!(ms(0), "0s");
        assert_eq!(ms(523), "523ms");
        assert_eq!(ms(1234), "1.234s");
        assert_eq!(ms(2000), "2s");
        assert_eq!(ms(123_500), "2m3.5s");
        assert_eq!(ms(3_600_000), "1h0m0s");
        assert_eq!(go_duration(std::time::Duration::from_micros(1500)), "1.5ms");
        assert_eq!(go_duration(std::time::Duration::from_nanos(800)), "800ns");
    }

    #[test]
    fn go_durations() {
        let d = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(d("40s"), Ok(40_000));
        assert_eq!(d("1m30s"), Ok(90_000));
        assert_eq!(d("1.5h"), Ok(5_400_000));
        assert_eq!(d("500ms"), Ok(500));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(
            parse_duration("3").unwrap_err().to_string(),
            "invalid duration \"3\": missing unit (ns, us, ms, s, m, h)"
        );
        assert!(matches!(
            parse_duration("2d"),
            Err(DurationError::Unit { .. })
        ));
        assert!(matches!(parse_duration(""), Err(DurationError::Empty(_))));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::Number(_))
        ));
    }

    #[test]
    fn whole_seconds_in_utc() {
        let t = super::now();
        assert_eq!(t.len(), "2026-12-06T12:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(&t).is_ok());
    }
}
