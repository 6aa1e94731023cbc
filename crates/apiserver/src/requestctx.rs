//! What admission learns of the request it runs in, and what it hands back besides the
//! object: the user (after impersonation), the warnings for the response's `Warning:
//! 299` headers (kube-apiserver's `warning.AddWarning`) and audit annotations
//! (`audit.AddAuditAnnotation`).
//!
//! [`crate::handler`] runs each request inside [`scope`]; code deep in the registry calls
//! [`user`], [`subresource`], [`add_warning`] and [`add_audit_annotation`]. Outside a request (the server's
//! own bootstrap writes) there is no user and warnings go nowhere.
//!
//! skiff keeps no audit log: the audit annotations of a request are written to the
//! server log at debug level under the `skiff_apiserver::audit` target (method, path,
//! user, annotations), where kube-apiserver would put them in its audit events.

use std::future::Future;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Context {
    user: Option<String>,
    subresource: Mutex<Option<String>>,
    warnings: Mutex<Vec<String>>,
    audit: Mutex<Vec<(String, String)>>,
}

tokio::task_local! {
    static REQUEST: Arc<Context>;
}

/// What a request collected: its warnings (in order, duplicates once) and its audit
/// annotations.
#[derive(Debug, Default)]
pub struct Collected {
    pub warnings: Vec<String>,
    pub audit_annotations: Vec<(String, String)>,
}

/// Runs `f` as the request of `user`; returns its output and what it collected.
pub async fn scope<F: Future>(user: Option<String>, f: F) -> (F::Output, Collected) {
    let ctx = Arc::new(Context {
        user,
        ..Default::default()
    });
    let out = REQUEST.scope(ctx.clone(), f).await;
    fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
        std::mem::take(&mut *m.lock().unwrap_or_else(|e| e.into_inner()))
    }
    let collected = Collected {
        warnings: take(&ctx.warnings),
        audit_annotations: take(&ctx.audit),
    };
    (out, collected)
}

/// The requesting user's name (None outside a request).
pub fn user() -> Option<String> {
    REQUEST.try_with(|c| c.user.clone()).ok().flatten()
}

/// Notes the subresource the request is for (`scale`, `status`, ...).
pub fn set_subresource(sub: Option<&str>) {
    let _ = REQUEST.try_with(|c| {
        *c.subresource.lock().unwrap_or_else(|e| e.into_inner()) = sub.map(String::from)
    });
}

/// The subresource of the request (None for the object itself or outside a request).
pub fn subresource() -> Option<String> {
    REQUEST
        .try_with(|c| {
            c.subresource
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
        .ok()
        .flatten()
}

/// Adds a warning to the response (once).
pub fn add_warning(text: impl Into<String>) {
    let text = text.into();
    let _ = REQUEST.try_with(|c| {
        let mut w = c.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !w.contains(&text) {
            w.push(text);
        }
    });
}

/// Adds an audit annotation to the request's audit event (the server log).
pub fn add_audit_annotation(key: impl Into<String>, value: impl Into<String>) {
    let (key, value) = (key.into(), value.into());
    let _ = REQUEST.try_with(|c| {
        c.audit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((key, value))
    });
}

/// The value of a `Warning` header for `text`: `299 - "<text>"` with quotes and
/// backslashes escaped, as kube-apiserver writes it.
pub fn warning_header(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn collects_within_the_scope_only() {
        add_warning("outside");
        assert_eq!(user(), None);
        let (u, c) = scope(Some("alice".into()), async {
            add_warning("a");
            add_warning("a");
            add_warning("b");
            add_audit_annotation("k", "v");
            assert_eq!(subresource(), None);
            set_subresource(Some("scale"));
            assert_eq!(subresource().as_deref(), Some("scale"));
            user()
        })
        .await;
        assert_eq!(u.as_deref(), Some("alice"));
        assert_eq!(c.warnings, ["a", "b"]);
        assert_eq!(c.audit_annotations, [("k".to_string(), "v".to_string())]);
        assert_eq!(warning_header(r#"x "y" \z"#), r#"299 - "x \"y\" \\z""#);
    }
}
