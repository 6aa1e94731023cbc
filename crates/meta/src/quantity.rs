//! Resource quantities (`500m`, `1.5Gi`, `2e3`) parsed and written in canonical form as
//! apimachinery's `resource.Quantity` does: `0.5` → `500m`, `1536Mi` stays, `2048Ki` →
//! `2Mi`, `1000m` → `1`; precision below nano rounds up.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

/// A parsed quantity: `mantissa * 10^exp`, in its input format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Quantity {
    mantissa: i128,
    exp: i32,
    format: Format,
}

const LIMIT: i128 = 1 << 100;

fn parse(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (sign, rest) = match s.as_bytes().first()? {
        b'-' => (-1i128, &s[1..]),
        b'+' => (1, &s[1..]),
        _ => (1, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, suffix) = rest.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let mut mantissa: i128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        mantissa = mantissa
            .checked_mul(10)?
            .checked_add(i128::from(c - b'0'))?;
        if mantissa > LIMIT {
            return None;
        }
    }
    let mut exp = -(frac.len() as i32);
    let format = match suffix {
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let k = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
                .iter()
                .position(|x| *x == suffix)? as u32
                + 1;
            mantissa = mantissa.checked_mul(1024i128.checked_pow(k)?)?;
            Format::BinarySI
        }
        "n" | "u" | "m" | "" | "k" | "M" | "G" | "T" | "P" | "E" => {
            exp += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                "E" => 18,
                _ => 0,
            };
            Format::DecimalSI
        }
        e if e.starts_with(['e', 'E']) => {
            exp += e[1..].parse::<i32>().ok().filter(|x| x.abs() <= 40)?;
            Format::DecimalExponent
        }
        _ => return None,
    };
    Some(Quantity {
        mantissa: sign * mantissa,
        exp,
        format,
    })
}

fn normalize(mut q: Quantity) -> Quantity {
    if q.mantissa == 0 {
        q.exp = 0;
        return q;
    }
    // Round up (away from zero) below nano precision.
    while q.exp < -9 {
        let rem = q.mantissa % 10;
        q.mantissa /= 10;
        if rem != 0 {
            q.mantissa += q.mantissa.signum().max(if rem > 0 { 1 } else { -1 });
        }
        q.exp += 1;
    }
    while q.mantissa != 0 && q.mantissa % 10 == 0 {
        q.mantissa /= 10;
        q.exp += 1;
    }
    q
}

fn pow10(e: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(e).ok()?)
}

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    /// Not a quantity, or one out of the range Kubernetes takes.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (got {0:?})")]
    Invalid(String),
}

/// [`milli_value`] with the reason when there is none.
pub fn parse_milli(s: &str) -> Result<i128, QuantityError> {
    if s.trim().is_empty() {
        return Err(QuantityError::Empty);
    }
    milli_value(s).ok_or_else(|| QuantityError::Invalid(s.to_string()))
}

/// The value of a quantity in thousandths (`500m` → 500, `1Gi` → 1073741824000), rounded
/// up; `None` if it does not parse or overflows.
pub fn milli_value(s: &str) -> Option<i128> {
    let q = parse(s)?;
    let e = q.exp + 3;
    if e >= 0 {
        q.mantissa.checked_mul(pow10(e)?)
    } else {
        let d = pow10(-e)?;
        let v = q.mantissa / d;
        Some(if q.mantissa % d > 0 { v + 1 } else { v })
    }
}

/// Writes a value in thousandths as a canonical quantity (binary suffixes for whole
/// multiples of 1024, as memory is shown).
pub fn from_milli(m: i128) -> String {
    if m % 1000 == 0 {
        let v = m / 1000;
        if v != 0 && v % 1024 == 0 {
            return canonicalize(&format!("{}Ki", v / 1024)).unwrap_or_else(|| v.to_string());
        }
        return v.to_string();
    }
    canonicalize(&format!("{m}m")).unwrap_or_else(|| format!("{m}m"))
}

/// Writes a value in thousandths in the format of the quantity `like` (what
/// `Quantity.Add` keeps: the sum of `1G` and `1G` is `2G`, of `1Gi` and `1Gi` is `2Gi`).
pub fn from_milli_as(m: i128, like: &str) -> String {
    let Some(format) = parse(like).map(|q| q.format) else {
        return from_milli(m);
    };
    canonical(Quantity {
        mantissa: m,
        exp: -3,
        format,
    })
    .unwrap_or_else(|| from_milli(m))
}

/// What a quantity must look like, as resource.Quantity's parse error says it.
pub const PATTERN: &str = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$";

/// The canonical form of a quantity string, or `None` if it does not parse.
pub fn canonicalize(s: &str) -> Option<String> {
    canonical(parse(s)?)
}

fn canonical(q: Quantity) -> Option<String> {
    let q = normalize(q);
    if q.mantissa == 0 {
        return Some("0".into());
    }
    let mut format = q.format;
    if format == Format::BinarySI {
        let integer = if q.exp >= 0 {
            pow10(q.exp).and_then(|p| q.mantissa.checked_mul(p))
        } else {
            None
        };
        match integer {
            Some(v) if v.abs() >= 1024 => {
                let mut k = 0;
                let mut m = v;
                while k < 6 && m % 1024 == 0 {
                    m /= 1024;
                    k += 1;
                }
                return Some(format!(
                    "{m}{}",
                    ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k]
                ));
            }
            _ => format = Format::DecimalSI,
        }
    }
    let mut e3 = q.exp.div_euclid(3) * 3;
    if format == Format::DecimalSI && e3 > 18 {
        e3 = 18;
    }
    let m = q.mantissa.checked_mul(pow10(q.exp - e3)?)?;
    let suffix = match format {
        Format::DecimalExponent if e3 == 0 => String::new(),
        Format::DecimalExponent => format!("e{e3}"),
        _ => match e3 {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        }
        .to_string(),
    };
    Some(format!("{m}{suffix}"))
}

/// Canonicalizes every value of a map of quantities in place; returns the keys that do
/// not parse.
pub fn canonicalize_map(map: &mut serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut bad = Vec::new();
    for (k, v) in map.iter_mut() {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                bad.push(k.clone());
                continue;
            }
        };
        match canonicalize(&text) {
            Some(c) => *v = serde_json::Value::String(c),
            None => bad.push(k.clone()),
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::canonicalize as c;
    use super::{from_milli, milli_value};

    #[test]
    fn milli_values() {
        assert_eq!(milli_value("500m"), Some(500));
        assert_eq!(milli_value("1"), Some(1000));
        assert_eq!(milli_value("1Gi"), Some(1024 * 1024 * 1024 * 1000));
        assert_eq!(milli_value("0.5"), Some(500));
        assert_eq!(milli_value("1n"), Some(1));
        assert_eq!(from_milli(1500), "1500m");
        assert_eq!(from_milli(2000), "2");
        assert_eq!(from_milli(256 * 1024 * 1024 * 1000), "256Mi");
        assert_eq!(super::from_milli_as(2_000_000_000_000, "1G"), "2G");
        assert_eq!(super::from_milli_as(2_147_483_648_000, "1Gi"), "2Gi");
        assert_eq!(super::from_milli_as(300, "100m"), "300m");
        assert_eq!(super::from_milli_as(0, "1Gi"), "0");
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(c("0.5").as_deref(), Some("500m"));
        assert_eq!(c("1000m").as_deref(), Some("1"));
        assert_eq!(c("1500m").as_deref(), Some("1500m"));
        assert_eq!(c("2000").as_deref(), Some("2k"));
        assert_eq!(c("128Mi").as_deref(), Some("128Mi"));
        assert_eq!(c("2048Ki").as_deref(), Some("2Mi"));
        assert_eq!(c("1.5Gi").as_deref(), Some("1536Mi"));
        assert_eq!(c("512").as_deref(), Some("512"));
        assert_eq!(c("100Ki").as_deref(), Some("100Ki"));
        assert_eq!(c("0.5Ki").as_deref(), Some("512"));
        assert_eq!(c("1e3").as_deref(), Some("1e3"));
        assert_eq!(c("1.5e3").as_deref(), Some("1500"));
        assert_eq!(c("0").as_deref(), Some("0"));
        assert_eq!(c("0.0000000001").as_deref(), Some("1n"));
        assert_eq!(c("-1.5").as_deref(), Some("-1500m"));
        assert_eq!(c("1G").as_deref(), Some("1G"));
        for bad in ["", "abc", "1.2.3", "1Qi", "--1", "1e", "."] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }
}
