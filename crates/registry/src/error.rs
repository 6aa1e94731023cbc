//! The registry client's errors: each one line, naming what failed and the registry's
//! reason, never a credential.

use skiff_image::ImageError;

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RegistryErrorEntry {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// What can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The registry answered with an error status; `reason` is its message in docker's
    /// form (`manifest unknown: manifest unknown`, `unauthorized: authentication required`).
    #[error("{reason}")]
    Status {
        status: u16,
        /// The registry's error codes (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, ...).
        codes: Vec<String>,
        reason: String,
    },
    /// A registry asks for basic auth and we have no credentials for it.
    #[error("{method} \"{url}\": no basic auth credentials")]
    NoBasicCredentials { method: String, url: String },
    /// The registry has no such manifest (docker's `manifest for X not found: ...`).
    #[error("{0}")]
    NotFound(String),
    /// The registry could not be reached (connection refused, DNS, TLS, timeout).
    #[error("Get \"{url}\": {reason}")]
    Unreachable { url: String, reason: String },
    /// The connection failed while an answer was being read.
    #[error("reading the registry's answer: {0}")]
    Transport(String),
    /// Content whose digest is not the one asked for.
    #[error("digest mismatch for {want}: the registry sent content with digest {got}")]
    DigestMismatch { want: String, got: String },
    /// A manifest, index or config the client cannot use.
    #[error("{0}")]
    Invalid(String),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A local file operation failed.
    #[error("{context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            err,
        }
    }

    /// The HTTP status, for errors that carry one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the registry named `code` (`MANIFEST_UNKNOWN`, ...).
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, Error::Status { codes, .. } if codes.iter().any(|c| c == code))
    }

    /// Whether retrying the same request may help (the registry could not be reached,
    /// or answered 429 or a 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Transport(_) => true,
            Error::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Builds the error for an error status from the response body.
    pub(crate) fn from_status(status: u16, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<RegistryErrorEntry>,
        }
        let entries = serde_json::from_slice::<Body>(body)
            .map(|b| b.errors)
            .unwrap_or_default();
        let codes: Vec<String> = entries.iter().map(|e| e.code.clone()).collect();
        let reason = if entries.is_empty() {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let canonical = http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            match status {
                401 => "unauthorized: authentication required".to_string(),
                429 => "toomanyrequests: too many requests".to_string(),
                _ if !text.is_empty() && text.len() < 200 && !text.contains('\n') => {
                    format!("unexpected status {status} {canonical}: {text}")
                }
                _ => format!("unexpected status {status} {canonical}"),
            }
        } else {
            entries
                .iter()
                .map(|e| {
                    let code = e.code.to_lowercase().replace('_', " ");
                    if e.message.is_empty() {
                        code
                    } else {
                        format!("{code}: {}", e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        Error::Status {
            status,
            codes,
            reason,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_docker() {
        let e = Error::from_status(
            404,
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#,
        );
        assert_eq!(e.to_string(), "manifest unknown: manifest unknown");
        assert!(e.has_code("MANIFEST_UNKNOWN"));
        assert!(!e.is_transient());
        let e = Error::from_status(
            401,
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#,
        );
        assert_eq!(e.to_string(), "unauthorized: authentication required");
        let e = Error::from_status(429, b"");
        assert_eq!(e.to_string(), "toomanyrequests: too many requests");
        assert!(e.is_transient());
        assert_eq!(
            Error::from_status(502, b"<html>\n</html>").to_string(),
            "unexpected status 502 Bad Gateway"
        );
    }
}
