//! The patch engines: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
//! merge patch for the built-in types (merge keys for lists such as `containers`, `env`,
//! `ports`, `volumes`; the directives `$patch`, `$retainKeys`, `$setElementOrder/…` and
//! `$deleteFromPrimitiveList/…` that `kubectl apply` sends).

use serde_json::{Map, Value};

/// The patch formats a PATCH request may carry (by its Content-Type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("invalid patch: {0}")]
    Malformed(String),
    #[error("{0}")]
    Failed(String),
    /// Over a limit that protects the server (413, as kube-apiserver answers).
    #[error("{0}")]
    TooLarge(String),
}

/// kube-apiserver's bound on the operations of one JSON patch (CVE-2019-1002100).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// kube-apiserver's `JSONPatchMaxCopyBytes`: how much a JSON patch's `copy`
/// operations may add to a document, in all.
pub const MAX_JSON_PATCH_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies `patch` (raw body) of `kind` to `doc`.
pub fn apply(doc: &mut Value, patch: &[u8], kind: PatchType) -> Result<(), PatchError> {
    match kind {
        PatchType::Json => json_patch_bounded(doc, patch),
        PatchType::Merge => {
            let p: Value =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
            if !p.is_object() {
                return Err(PatchError::Malformed(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchType::StrategicMerge => {
            let p: Value =
                serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
            strategic_merge(doc, &p)
        }
        // Apply patches need the managed fields: `crate::managed::apply` takes them.
        PatchType::Apply => Err(PatchError::Failed(
            "server-side apply is not supported on this subresource".into(),
        )),
    }
}

/// A JSON patch, applied with kube-apiserver's bounds: at most
/// [`MAX_JSON_PATCH_OPERATIONS`] operations, and `copy` operations adding at most
/// [`MAX_JSON_PATCH_COPY_BYTES`] in all, so a patch that copies a value into itself
/// over and over is refused before it grows the document.
fn json_patch_bounded(doc: &mut Value, patch: &[u8]) -> Result<(), PatchError> {
    let raw: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let n = raw.as_array().map(Vec::len).ok_or_else(|| {
        PatchError::Malformed("a JSON patch must be an array of operations".into())
    })?;
    if n > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {n}"
        )));
    }
    let ops: json_patch::Patch =
        serde_json::from_value(raw).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let mut copied = 0usize;
    for (i, op) in ops.0.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            if let Some(v) = doc.pointer(c.from.as_str()) {
                copied = copied.saturating_add(json_size(v, MAX_JSON_PATCH_COPY_BYTES + 1));
            }
            if copied > MAX_JSON_PATCH_COPY_BYTES {
                return Err(PatchError::Failed(format!(
                    "Unable to complete copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_JSON_PATCH_COPY_BYTES}"
                )));
            }
        }
        // `doc` is the caller's working copy: no undo log is needed on failure.
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| {
            PatchError::Failed(format!(
                "operation '/{i}' failed at path '{}': {}",
                e.path, e.kind
            ))
        })?;
    }
    Ok(())
}

/// The length of `v` as compact JSON, counted up to `cap` (no copy is made).
fn json_size(v: &Value, cap: usize) -> usize {
    struct Count(usize, usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            if self.0 > self.1 {
                return Err(std::io::Error::other("over the cap"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0, cap);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// How one list field of the built-in types merges: the key strategic merge patch matches
/// its items by (`x-kubernetes-patch-merge-key`) and the keys server-side apply identifies
/// them by (`x-kubernetes-list-map-keys`, each with the default a missing key field takes).
/// One field name may have several rules (container vs service `ports`): the rule whose
/// merge key the items carry is the one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRule {
    pub field: &'static str,
    pub merge_key: &'static str,
    pub map_keys: &'static [(&'static str, Option<&'static str>)],
}

const fn by(field: &'static str, key: &'static str) -> ListRule {
    ListRule {
        field,
        merge_key: key,
        map_keys: &[],
    }
}

/// The list fields of the built-in types that merge by key (the one table of the patch
/// engines, server-side apply and the OpenAPI extensions).
pub const LIST_RULES: &[ListRule] = &[
    by("containers", "name"),
    by("initContainers", "name"),
    by("ephemeralContainers", "name"),
    by("env", "name"),
    by("volumes", "name"),
    by("imagePullSecrets", "name"),
    by("resourceClaims", "name"),
    by("schedulingGates", "name"),
    by("secrets", "name"),
    by("volumeMounts", "mountPath"),
    by("volumeDevices", "devicePath"),
    ListRule {
        field: "ports",
        merge_key: "containerPort",
        map_keys: &[("containerPort", None), ("protocol", Some("TCP"))],
    },
    ListRule {
        field: "ports",
        merge_key: "port",
        map_keys: &[("port", None), ("protocol", Some("TCP"))],
    },
    by("hostAliases", "ip"),
    by("conditions", "type"),
    by("addresses", "type"),
    by("ownerReferences", "uid"),
    by("topologySpreadConstraints", "topologyKey"),
    by("taints", "key"),
];

impl ListRule {
    /// The server-side apply keys: the declared list-map keys, else the merge key.
    pub fn keys(&self) -> Vec<(&'static str, Option<&'static str>)> {
        if self.map_keys.is_empty() {
            vec![(self.merge_key, None)]
        } else {
            self.map_keys.to_vec()
        }
    }
}

/// The rules for list field `field`.
pub fn list_rules(field: &str) -> impl Iterator<Item = &'static ListRule> + '_ {
    LIST_RULES.iter().filter(move |r| r.field == field)
}

/// The rule for list field `field` whose items carry its merge key (`has` tells whether
/// the items carry a field); the first rule if none does.
pub fn list_rule(field: &str, has: impl Fn(&str) -> bool) -> Option<&'static ListRule> {
    list_rules(field)
        .find(|r| has(r.merge_key))
        .or_else(|| list_rules(field).next())
}

/// Fields whose patch strategy includes `retainKeys` (kubectl then sends `$retainKeys`):
/// a Deployment's `strategy` and each of a pod's `volumes`.
pub fn retains_keys(field: &str) -> bool {
    matches!(field, "strategy" | "volumes")
}

/// Primitive lists merged as sets rather than replaced (`x-kubernetes-list-type: set`).
pub fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Applies a strategic merge patch to `doc`.
pub fn strategic_merge(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Some(p) = patch.as_object() else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    match doc {
        Value::Object(o) => {
            if merge_map(o, p)? {
                *doc = Value::Object(Map::new());
            }
            Ok(())
        }
        _ => unreachable!("set to an object above"),
    }
}

/// Merges `patch` into `orig`. Returns true if the map itself is to be deleted.
fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<bool, PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *orig = strip_map(patch);
            return Ok(false);
        }
        Some("delete") => return Ok(true),
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown patch type: {other} in map"
            )))
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keys: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::Malformed("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }
    let mut orders = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field, v));
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        match (orig.get_mut(k), v) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                if merge_map(o, p)? {
                    orig.remove(k);
                }
            }
            (Some(Value::Array(o)), Value::Array(p)) => merge_list(k, o, p)?,
            (_, Value::Object(p)) => {
                if p.get("$patch").and_then(Value::as_str) != Some("delete") {
                    let mut fresh = Map::new();
                    merge_map(&mut fresh, p)?;
                    orig.insert(k.clone(), Value::Object(fresh));
                }
            }
            (_, Value::Array(p)) => {
                let mut fresh = Vec::new();
                merge_list(k, &mut fresh, p)?;
                orig.insert(k.clone(), Value::Array(fresh));
            }
            (_, v) => {
                orig.insert(k.clone(), v.clone());
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(field), order.as_array()) {
            reorder(field, list, order);
        }
    }
    Ok(false)
}

fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_map(m)),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|x| x.get("$patch").is_none())
                .map(strip)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn strip_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), strip(v)))
        .collect()
}

fn pick_key(field: &str, orig: &[Value], patch: &[Value]) -> Option<&'static str> {
    list_rule(field, |key| {
        patch.iter().chain(orig).any(|x| x.get(key).is_some())
    })
    .map(|r| r.merge_key)
}

fn merge_list(field: &str, orig: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
    if patch
        .iter()
        .any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *orig = patch
            .iter()
            .filter(|x| x.get("$patch").is_none())
            .map(strip)
            .collect();
        return Ok(());
    }
    let objects = patch.iter().all(Value::is_object) && !patch.is_empty();
    match pick_key(field, orig, patch) {
        Some(key) if objects || patch.is_empty() => {
            for item in patch {
                let Some(kv) = item.get(key) else {
                    return Err(PatchError::Failed(format!(
                        "map: {item} does not contain declared merge key: {key}"
                    )));
                };
                let pos = orig.iter().position(|o| o.get(key) == Some(kv));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    orig.retain(|o| o.get(key) != Some(kv));
                    continue;
                }
                let Some(pm) = item.as_object() else { continue };
                match pos.and_then(|i| orig.get_mut(i)) {
                    Some(Value::Object(o)) => {
                        if merge_map(o, pm)? {
                            orig.retain(|o| o.get(key) != Some(kv));
                        }
                    }
                    _ => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, pm)?;
                        orig.push(Value::Object(fresh));
                    }
                }
            }
        }
        _ if merges_primitives(field) => {
            for item in patch {
                if !orig.contains(item) {
                    orig.push(item.clone());
                }
            }
        }
        _ => *orig = patch.iter().map(strip).collect(),
    }
    Ok(())
}

/// Orders `list` as `order` says (items of `order` first, in its order; the rest after).
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value]) {
    let key = pick_key(field, list, order);
    let ident = |v: &Value| -> Value {
        match key {
            Some(k) if v.is_object() => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let mut rest: Vec<Value> = std::mem::take(list);
    for o in order {
        let id = ident(o);
        if let Some(i) = rest.iter().position(|x| ident(x) == id) {
            list.push(rest.remove(i));
        }
    }
    list.extend(rest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(doc: Value, patch: Value) -> Value {
        let mut d = doc;
        strategic_merge(&mut d, &patch).unwrap();
        d
    }

    #[test]
    fn merges_containers_by_name() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]}, {"name": "b", "image": "y"}]}});
        let out = smp(
            doc,
            json!({"spec": {"containers": [{"name": "a", "image": "x2", "env": [{"name": "F", "value": "2"}]}]}}),
        );
        assert_eq!(out["spec"]["containers"][0]["image"], "x2");
        assert_eq!(
            out["spec"]["containers"][0]["env"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "b");
    }

    #[test]
    fn directives() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
            "metadata": {"finalizers": ["f1", "f2"], "labels": {"a": "1", "b": "2"}}});
        let out = smp(
            doc,
            json!({
                "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}],
                "spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "c", "image": "z"}],
                    "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}},
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"], "finalizers": ["f3"], "labels": {"a": null}}
            }),
        );
        let names: Vec<_> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, vec![json!("b"), json!("c")]);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["f2", "f3"]));
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn setelementorder_at_top_of_nested_map() {
        let doc =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let out = smp(
            doc,
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "a", "image": "y"}]}}}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "y"}]}}}})
        );
    }

    #[test]
    fn lists_without_keys_replace_and_replace_directive() {
        let doc = json!({"args": ["a", "b"], "ports": [{"port": 80}, {"port": 81}]});
        let out = smp(
            doc,
            json!({"args": ["c"], "ports": [{"$patch": "replace"}, {"port": 90}]}),
        );
        assert_eq!(out, json!({"args": ["c"], "ports": [{"port": 90}]}));
    }

    #[test]
    fn json_patch_bounds() {
        let mut doc = json!({"metadata": {}});
        let big: String = "x".repeat(1024);
        let mut ops =
            vec![json!({"op": "add", "path": "/metadata/annotations", "value": {"a": big}})];
        for i in 0..40 {
            ops.push(json!({"op": "copy", "from": "/metadata/annotations", "path": format!("/metadata/annotations/c{i}")}));
        }
        let e = apply(
            &mut doc,
            &serde_json::to_vec(&ops).unwrap(),
            PatchType::Json,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Unable to complete copy, the accumulated size increase of copy is"),
            "{e}"
        );
        let many: Vec<Value> = (0..20_000)
            .map(|_| json!({"op": "test", "path": "/metadata", "value": {}}))
            .collect();
        let e = apply(
            &mut doc,
            &serde_json::to_vec(&many).unwrap(),
            PatchType::Json,
        )
        .unwrap_err();
        assert_eq!(
            e,
            PatchError::TooLarge(
                "The allowed maximum operations in a JSON patch is 10000, got 20000".into()
            )
        );
        // Within the bounds, operations still apply in order and fail with their index.
        let mut doc = json!({"a": 1});
        let ok =
            json!([{"op": "copy", "from": "/a", "path": "/b"}, {"op": "remove", "path": "/a"}]);
        apply(&mut doc, &serde_json::to_vec(&ok).unwrap(), PatchType::Json).unwrap();
        assert_eq!(doc, json!({"b": 1}));
        let bad = json!([{"op": "add", "path": "/c", "value": 1}, {"op": "remove", "path": "/zz"}]);
        let e = apply(
            &mut doc,
            &serde_json::to_vec(&bad).unwrap(),
            PatchType::Json,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("operation '/1' failed at path '/zz'"),
            "{e}"
        );
    }

    #[test]
    fn merge_and_json_patch() {
        let mut d = json!({"a": {"b": 1, "c": 2}});
        apply(&mut d, br#"{"a": {"b": null, "d": 3}}"#, PatchType::Merge).unwrap();
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}}));
        apply(&mut d, br#"[{"op": "replace", "path": "/a/c", "value": 5}, {"op": "add", "path": "/e", "value": [1]}]"#, PatchType::Json).unwrap();
        assert_eq!(d, json!({"a": {"c": 5, "d": 3}, "e": [1]}));
        assert!(matches!(
            apply(
                &mut d,
                br#"[{"op": "test", "path": "/a/c", "value": 6}]"#,
                PatchType::Json
            ),
            Err(PatchError::Failed(_))
        ));
        assert!(matches!(
            apply(&mut d, b"not json", PatchType::Merge),
            Err(PatchError::Malformed(_))
        ));
    }
}
