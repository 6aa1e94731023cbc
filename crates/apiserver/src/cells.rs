//! What the kinds' table columns share: the column type, the common columns (name, age,
//! containers, images, selector) and the cell helpers, `kubectl`'s renderings of them
//! (human durations, `<none>`, selectors as strings). Pure functions of one object.

use serde_json::{json, Value};

/// One column of a table: name, type, format and priority (1 for the `-o wide` ones).
pub(crate) type Col = (&'static str, &'static str, &'static str, u8);

pub(crate) const NAME: Col = ("Name", "string", "name", 0);
pub(crate) const AGE: Col = ("Age", "date", "", 0);
pub(crate) const CONTAINERS: Col = ("Containers", "string", "", 1);
pub(crate) const IMAGES: Col = ("Images", "string", "", 1);
pub(crate) const SELECTOR: Col = ("Selector", "string", "", 1);

/// What a kind's `impl Columns` uses, for one glob import among its imports (a glob
/// never clashes with the file's own imports).
pub(crate) mod prelude {
    pub(crate) use super::{
        age, containers, count, human_duration, i, images, join_names_plain, name, or_none, s,
        selector_string, since, Col, AGE, CONTAINERS, IMAGES, NAME, SELECTOR,
    };
    pub(crate) use serde_json::{json, Value};
}

/// k8s's `duration.HumanDuration`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

/// The time since `ts` (an RFC 3339 string), or `<unknown>`.
pub(crate) fn since(ts: Option<&Value>) -> String {
    match ts
        .and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    {
        Some(t) => human_duration(chrono::Utc::now().signed_duration_since(t)),
        None => "<unknown>".into(),
    }
}

/// The string at `ptr`, or "".
pub(crate) fn s<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `ptr`, or 0.
pub(crate) fn i(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// `v`, or `<none>` when empty.
pub(crate) fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v
    }
}

/// `field` of each element of the array `list`, comma-joined.
fn join_names(list: Option<&Value>, field: &str) -> String {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c.get(field).and_then(Value::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The object's name cell.
pub(crate) fn name(obj: &Value) -> Value {
    json!(s(obj, "/metadata/name"))
}

/// The object's age cell.
pub(crate) fn age(obj: &Value) -> Value {
    json!(since(obj.pointer("/metadata/creationTimestamp")))
}

/// The names of the containers at `ptr` (a pod template's), or `<none>`.
pub(crate) fn containers(obj: &Value, ptr: &str) -> Value {
    json!(or_none(join_names(obj.pointer(ptr), "name")))
}

/// The images of the containers at `ptr` (a pod template's), or `<none>`.
pub(crate) fn images(obj: &Value, ptr: &str) -> Value {
    json!(or_none(join_names(obj.pointer(ptr), "image")))
}

/// A label selector object as its string form (`<none>` for none).
pub(crate) fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    let labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .or_else(|| {
            // A plain map selector (services, replication controllers).
            if sel.get("matchExpressions").is_none() {
                sel.as_object()
            } else {
                None
            }
        });
    for (k, v) in labels.into_iter().flatten() {
        parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values = join_names_plain(e.get("values"));
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({values})")),
            "NotIn" => parts.push(format!("{key} notin ({values})")),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    or_none(parts.join(","))
}

/// The strings of the array `v`, comma-joined.
pub(crate) fn join_names_plain(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// How many entries the map `field` of `obj` has.
pub(crate) fn count(obj: &Value, field: &str) -> usize {
    obj.get(field)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(150)), "2m30s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(3 * 3600 + 60)), "3h1m");
        assert_eq!(human_duration(d(30 * 3600)), "30h");
        assert_eq!(human_duration(d(3 * 86400 + 3600)), "3d1h");
    }
}
