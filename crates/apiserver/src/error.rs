//! Errors: [`Error`] for starting and running the server, [`ApiError`] for one API request
//! (answered as a `metav1.Status`).

use serde_json::{json, Value};

/// Errors of starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("not supported yet: {0}")]
    Unsupported(String),
    /// A file-system operation failed; the OS error (errno) is part of the message and
    /// kept in `err`, not repeated as a source.
    #[error("I/O error while {context}: {err}")]
    Io {
        context: String,
        err: std::io::Error,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The store's own error says what failed (it names the operation and the key).
    #[error(transparent)]
    Store(#[from] skiff_store::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            err: source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The result of serving (part of) one API request.
pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;

/// One cause of an Invalid error: a field path and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Cause {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", json!(value)),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// An API error, rendered as a `metav1.Status` with the HTTP code and reason the real
/// kube-apiserver uses.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details` of the Status: (group, kind, name, causes).
    pub details: Option<Box<Details>>,
}

#[derive(Clone, Debug, Default)]
pub struct Details {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub causes: Vec<Cause>,
}

fn resource_desc(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }
    fn with(mut self, group: &str, kind: &str, name: &str) -> ApiError {
        self.details = Some(Box::new(Details {
            group: group.into(),
            kind: kind.into(),
            name: name.into(),
            causes: vec![],
        }));
        self
    }
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource_desc(group, plural)),
        )
        .with(group, plural, name)
    }
    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource_desc(group, plural)),
        )
        .with(group, plural, name)
    }
    pub fn conflict(group: &str, plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource_desc(group, plural)
            ),
        )
        .with(group, plural, name)
    }
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let list = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect::<Vec<_>>();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
        )
        .with(group, kind, name);
        if let Some(d) = e.details.as_mut() {
            d.causes = causes;
        }
        e
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }
    pub fn too_large() -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }
    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(501, "NotImplemented", message)
    }

    /// The `metav1.Status` object of this error.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut details = json!({"name": d.name, "kind": d.kind});
            if !d.group.is_empty() {
                details["group"] = json!(d.group);
            }
            if !d.causes.is_empty() {
                details["causes"] = d
                    .causes
                    .iter()
                    .map(|c| {
                        let mut cause = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() {
                            cause["field"] = json!(c.field);
                        }
                        cause
                    })
                    .collect();
            }
            status["details"] = details;
        }
        status
    }

    /// Maps a store error about `name` of a resource to the API error the client expects.
    pub fn from_store(e: skiff_store::Error, group: &str, plural: &str, name: &str) -> ApiError {
        use skiff_store::Error as S;
        match e {
            S::AlreadyExists { .. } => ApiError::already_exists(group, plural, name),
            S::NotFound { .. } => ApiError::not_found(group, plural, name),
            S::Conflict { .. } => ApiError::conflict(group, plural, name),
            S::Compacted {
                requested,
                compact_revision,
            } => ApiError::gone(format!(
                "too old resource version: {} ({compact_revision})",
                requested.saturating_sub(1)
            )),
            // kube-apiserver passes etcd's 500 `etcdserver: request is too large` on;
            // we say what was too large and what the store takes.
            S::TooLarge { size, max, .. } => ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!(
                    "Request entity too large: {plural}{}{group} \"{name}\" is {size} bytes when stored, over the store's limit of {max} bytes for one write",
                    if group.is_empty() { "" } else { "." },
                ),
            ),
            S::FutureRevision { requested, current } => ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {requested}, current: {current}"),
            ),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// metav1.Status's fields in the order of its Go struct (what kube-apiserver writes).
const STATUS_ORDER: &[&str] = &[
    "kind",
    "apiVersion",
    "metadata",
    "status",
    "message",
    "reason",
    "details",
    "code",
];
/// metav1.StatusDetails's.
const DETAILS_ORDER: &[&str] = &[
    "name",
    "group",
    "kind",
    "uid",
    "causes",
    "retryAfterSeconds",
];
/// metav1.StatusCause's.
const CAUSE_ORDER: &[&str] = &["reason", "message", "field"];

/// A JSON value written with a `Status` (and its details and causes) in its Go
/// struct's field order, wherever it is (an answer, a watch event's object); other
/// objects' keys as the map holds them.
struct GoOrder<'a>(&'a Value, Option<&'static [&'static str]>);

impl serde::Serialize for GoOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(m) => {
                let order = self.1.or_else(|| {
                    (m.get("kind").and_then(Value::as_str) == Some("Status")
                        && m.get("apiVersion").and_then(Value::as_str) == Some("v1"))
                    .then_some(STATUS_ORDER)
                });
                let mut map = s.serialize_map(Some(m.len()))?;
                let child = |k: &str| match (order, k) {
                    (Some(o), "details") if std::ptr::eq(o, STATUS_ORDER) => Some(DETAILS_ORDER),
                    _ => None,
                };
                let mut keys: Vec<&String> = m.keys().collect();
                if let Some(o) = order {
                    keys.sort_by_key(|k| o.iter().position(|x| x == k).unwrap_or(o.len()));
                }
                for k in keys {
                    let v = &m[k];
                    if order.is_some_and(|o| std::ptr::eq(o, DETAILS_ORDER)) && k == "causes" {
                        let items: Vec<GoOrder> = v
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| GoOrder(c, Some(CAUSE_ORDER)))
                            .collect();
                        map.serialize_entry(k, &items)?;
                    } else {
                        map.serialize_entry(k, &GoOrder(v, child(k)))?;
                    }
                }
                map.end()
            }
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(&GoOrder(v, None))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

/// `v` as JSON, a `Status` in it written in kube-apiserver's field order.
pub fn to_json(v: &Value) -> Vec<u8> {
    serde_json::to_vec(&GoOrder(v, None)).unwrap_or_default()
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn a_status_is_written_in_go_order() {
        let e = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![Cause::invalid("spec.replicas", "x", "bad")],
        );
        let text = String::from_utf8(to_json(&e.status())).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Deployment \"web\" is invalid: spec.replicas: Invalid value: \"x\": bad","reason":"Invalid","details":{"name":"web","group":"apps","kind":"Deployment","causes":[{"reason":"FieldValueInvalid","message":"Invalid value: \"x\": bad","field":"spec.replicas"}]},"code":422}"#
        );
        // Nested too; other objects as before.
        let list = json!([ApiError::gone("too old").status()]);
        let text = String::from_utf8(to_json(&list)).unwrap();
        assert_eq!(
            text,
            r#"[{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old","reason":"Expired","code":410}]"#
        );
        let pod = json!({"kind": "Pod", "apiVersion": "v1", "b": 1, "a": 2});
        assert_eq!(to_json(&pod), serde_json::to_vec(&pod).unwrap());
    }
}
