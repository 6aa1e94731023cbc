//! Times as Kubernetes writes them.

/// Now as `metav1.Time` serializes it: RFC 3339 in UTC, whole seconds
/// (`2026-12-06T12:00:00Z`).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_seconds_in_utc() {
        let t = super::now();
        assert_eq!(t.len(), "2026-12-06T12:00:00Z".len(), "{t}");
        assert!(t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(&t).is_ok());
    }
}
