//! Kubernetes name formats (apimachinery's `validation.IsDNS1123Label` and friends).

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length.
pub fn label_format(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Dot-separated [`label_format`]s (no limit on each one's length, as upstream's regex).
pub fn subdomain_format(s: &str) -> bool {
    s.split('.').all(label_format)
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= 63 && label_format(s)
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated `[a-z0-9-]` runs,
/// alphanumeric at both ends.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && subdomain_format(s)
}

/// DNS-1035 label: a DNS-1123 label starting with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain("../etc"));
        assert!(!is_dns1035_label("1abc"));
    }
}
