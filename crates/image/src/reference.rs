//! Image references: docker's normalization rules and the familiar (short) form.

use crate::error::{ImageError, Result};

const DEFAULT_DOMAIN: &str = "docker.io";
const OFFICIAL_PREFIX: &str = "library/";

fn invalid(reference: &str, reason: &str) -> ImageError {
    ImageError::InvalidReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    }
}

/// A parsed, normalized reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `quay.io`...
    pub domain: String,
    /// `library/busybox`, `me/app`...
    pub path: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` if the reference pins a digest.
    pub digest: Option<String>,
}

impl Reference {
    /// `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_path_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() {
        return false;
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    let run = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && alnum(b[*i]) {
            *i += 1;
        }
        *i > s
    };
    if !run(&mut i) {
        return false;
    }
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Whether `d` is `sha256:` followed by 64 lowercase hex digits.
pub fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    })
}

/// Parse and normalize a reference by docker's rules.
pub fn parse_reference(s: &str) -> Result<Reference> {
    if s.is_empty() {
        return Err(invalid(s, "empty reference"));
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => {
            if !is_digest(d) {
                return Err(invalid(s, "invalid digest (want sha256:<64 hex digits>)"));
            }
            (r, Some(d.to_string()))
        }
        None => (s, None),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let i = last_slash + i;
            (&rest[..i], Some(rest[i + 1..].to_string()))
        }
        None => (rest, None),
    };
    if let Some(t) = &tag {
        if !valid_tag(t) {
            return Err(invalid(s, "invalid tag"));
        }
    }
    if name.is_empty() {
        return Err(invalid(s, "empty repository name"));
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, remainder))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            if !valid_domain(first) {
                return Err(invalid(s, "invalid registry domain"));
            }
            let d = if first == "index.docker.io" {
                DEFAULT_DOMAIN
            } else {
                first
            };
            (d.to_string(), remainder.to_string())
        }
        _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_PREFIX}{path}")
    } else {
        path
    };
    for comp in path.split('/') {
        if comp.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !valid_path_component(comp) {
            return Err(invalid(
                s,
                "repository name components may contain only [a-z0-9] separated by '.', '_', '__' or '-'",
            ));
        }
    }
    if path.len() + domain.len() + 1 > 255 {
        return Err(invalid(
            s,
            "repository name must not be more than 255 characters",
        ));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some("latest".to_string()),
        (t, _) => t,
    };
    Ok(Reference {
        domain,
        path,
        tag,
        digest,
    })
}

/// `busybox` → `docker.io/library/busybox:latest`, `me/app:1` → `docker.io/me/app:1`,
/// `localhost:5000/x` → `localhost:5000/x:latest`; digests are kept (`name@sha256:...`).
pub fn normalize_reference(s: &str) -> Result<String> {
    Ok(parse_reference(s)?.to_string())
}

/// The reverse of [`normalize_reference`] for display:
/// `docker.io/library/busybox:latest` → `busybox:latest`, `docker.io/me/app:1` → `me/app:1`.
pub fn familiar_name(normalized: &str) -> String {
    if let Some(rest) = normalized.strip_prefix("docker.io/") {
        if let Some(r) = rest.strip_prefix(OFFICIAL_PREFIX) {
            if !r.split(['@', ':']).next().unwrap_or("").contains('/') {
                return r.to_string();
            }
        }
        return rest.to_string();
    }
    normalized.to_string()
}

/// Splits a familiar or normalized name into (repository, tag) as `docker images` shows them;
/// the tag is `<none>` for digest-only references.
pub fn split_repo_tag(name: &str) -> (String, String) {
    let name = name.split('@').next().unwrap_or(name);
    let last_slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last_slash..].rfind(':') {
        Some(i) => (
            name[..last_slash + i].to_string(),
            name[last_slash + i + 1..].to_string(),
        ),
        None => (name.to_string(), "<none>".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("me/app:1", "docker.io/me/app:1"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x:y", "localhost/x:y"),
            ("quay.io/a/b/c", "quay.io/a/b/c:latest"),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
            ("my-app_x.y__z", "docker.io/library/my-app_x.y__z:latest"),
        ];
        for (i, o) in cases {
            assert_eq!(normalize_reference(i).unwrap(), o, "{i}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize_reference(&format!("busybox@{d}")).unwrap(),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            normalize_reference(&format!("busybox:1@{d}")).unwrap(),
            format!("docker.io/library/busybox:1@{d}")
        );
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "Busybox",
            "me/App",
            "a b",
            "x:",
            "x:-bad",
            "a//b",
            "-a",
            "a@sha256:12",
            "x!",
        ] {
            let e = normalize_reference(bad).unwrap_err();
            assert!(
                e.to_string().contains("invalid reference format"),
                "{bad}: {e}"
            );
        }
        assert!(normalize_reference("Busybox")
            .unwrap_err()
            .to_string()
            .contains("lowercase"));
    }

    #[test]
    fn familiar() {
        assert_eq!(
            familiar_name("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar_name("docker.io/me/app:1"), "me/app:1");
        assert_eq!(
            familiar_name("localhost:5000/x:latest"),
            "localhost:5000/x:latest"
        );
        assert_eq!(
            split_repo_tag("localhost:5000/x:latest"),
            ("localhost:5000/x".into(), "latest".into())
        );
        assert_eq!(split_repo_tag("busybox:1"), ("busybox".into(), "1".into()));
    }
}
