//! Managed fields and server-side apply, as kube-apiserver's field manager does them.
//!
//! Every write through the API records who set which fields in `metadata.managedFields`:
//! one entry per (manager, operation, apiVersion, subresource) with its field set in the
//! `FieldsV1` format (`f:<field>`, `k:{<list-map keys>}`, `v:<set value>`, `i:<index>`, and
//! `.` for a node that is itself a member). Updates (`operation: Update`) take the fields
//! they change from everyone else; an apply (`operation: Apply`, [`apply`]) merges the
//! applier's configuration into the object, fails with a conflict on fields another manager
//! owns and it would change (unless forced, which takes them over), and removes the fields
//! the applier owned before and no longer sets when nobody else owns them.
//!
//! Lists are identified as the patch engine's table ([`crate::patch::LIST_RULES`]) says:
//! lists of objects with keys are associative (`k:`), `finalizers` is a set (`v:`), every
//! other list is atomic (owned as a whole).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Cause};
use crate::patch::{list_rule, merges_primitives};
use crate::resource::Resource;

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// `f:name`: a field of an object.
    Field(String),
    /// `k:{...}`: the item of an associative list with these keys (compact JSON, keys sorted).
    Key(String),
    /// `v:...`: the item of a set list with this value (compact JSON).
    Value(String),
    /// `i:N`: the item at an index (lists without keys, read from FieldsV1 only).
    Index(usize),
}

/// A field path from the object's root.
pub type Path = Vec<PathElement>;

/// A set of field paths (the members of a managed-fields entry).
pub type FieldSet = BTreeSet<Path>;

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<PathElement> {
        let (kind, rest) = s.split_at_checked(2)?;
        Some(match kind {
            "f:" => PathElement::Field(rest.to_string()),
            "k:" => PathElement::Key(canonical(&serde_json::from_str(rest).ok()?)),
            "v:" => PathElement::Value(canonical(&serde_json::from_str(rest).ok()?)),
            "i:" => PathElement::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// Compact JSON with object keys sorted.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// A path as kube-apiserver prints it in conflicts: `.spec.containers[name="a"].image`.
pub fn path_string(p: &[PathElement]) -> String {
    let mut out = String::new();
    for e in p {
        match e {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parsed: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = parsed.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Renders a field set in the FieldsV1 format.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<String, Node>,
    }
    fn render(n: &Node) -> Value {
        let mut m = Map::new();
        if n.member && !n.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &n.children {
            m.insert(k.clone(), render(c));
        }
        Value::Object(m)
    }
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for e in path {
            node = node.children.entry(e.encode()).or_default();
        }
        node.member = true;
    }
    render(&root)
}

/// Reads a FieldsV1 document; unknown keys are skipped.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Path, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        if m.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            if let Some(e) = PathElement::decode(k) {
                path.push(e);
                walk(child, path, out);
                path.pop();
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// Which part of an object a write manages: a main-resource write does not own `status`
/// of resources with a status subresource; a status write owns only `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    All,
    Main,
    Status,
}

impl Scope {
    pub fn of(res: &Resource, subresource: Option<&str>) -> Scope {
        match subresource {
            Some("status") => Scope::Status,
            _ if res.status => Scope::Main,
            _ => Scope::All,
        }
    }
}

/// Server-owned fields no manager owns.
fn stripped(path: &[PathElement], scope: Scope) -> bool {
    let field = |i: usize| match path.get(i) {
        Some(PathElement::Field(f)) => Some(f.as_str()),
        _ => None,
    };
    match (field(0), path.len()) {
        (Some("apiVersion" | "kind"), 1) => return true,
        (Some("status"), _) if scope == Scope::Main => return true,
        (Some(f), _) if scope == Scope::Status && f != "status" => return true,
        (Some("metadata"), 2) => {
            return matches!(
                field(1),
                Some(
                    "name"
                        | "namespace"
                        | "uid"
                        | "creationTimestamp"
                        | "generation"
                        | "managedFields"
                        | "resourceVersion"
                        | "selfLink"
                        | "deletionTimestamp"
                        | "deletionGracePeriodSeconds"
                )
            )
        }
        _ => {}
    }
    false
}

/// The name of the list field at the end of `path`.
fn last_field(path: &[PathElement]) -> &str {
    match path.last() {
        Some(PathElement::Field(f)) => f,
        _ => "",
    }
}

/// How the items of list `field` holding `items` are identified.
enum ListKind {
    Map(Vec<(&'static str, Option<&'static str>)>),
    Set,
    Atomic,
}

fn list_kind(field: &str, items: &[Value]) -> ListKind {
    if !items.is_empty() && items.iter().all(Value::is_object) {
        if let Some(rule) = list_rule(field, |k| items.iter().any(|i| i.get(k).is_some())) {
            return ListKind::Map(rule.keys());
        }
    }
    if merges_primitives(field) && items.iter().all(|i| !i.is_object() && !i.is_array()) {
        return ListKind::Set;
    }
    ListKind::Atomic
}

/// The `k:` element of an associative list's item (key fields missing from it take their
/// defaults), or None if a key without default is missing.
fn item_key(item: &Value, keys: &[(&str, Option<&str>)]) -> Option<String> {
    let mut m = Map::new();
    for (k, default) in keys {
        match (item.get(*k), default) {
            (Some(v), _) if !v.is_null() => {
                m.insert((*k).to_string(), v.clone());
            }
            (_, Some(d)) => {
                m.insert((*k).to_string(), json!(d));
            }
            _ => return None,
        }
    }
    Some(canonical(&Value::Object(m)))
}

/// Structs owned as a whole (`x-kubernetes-map-type: atomic`): label selectors.
fn atomic_object(field: &str, v: &Map<String, Value>) -> bool {
    field == "selector" && (v.contains_key("matchLabels") || v.contains_key("matchExpressions"))
}

/// Fields of map type (string keys to values, as opposed to structs): an update that adds
/// one owns the map itself too (`.`), as kube-apiserver's comparison of objects makes it.
fn map_field(field: &str) -> bool {
    matches!(
        field,
        "labels"
            | "annotations"
            | "data"
            | "binaryData"
            | "stringData"
            | "nodeSelector"
            | "matchLabels"
            | "selector"
            | "limits"
            | "requests"
            | "capacity"
            | "allocatable"
            | "hard"
            | "parameters"
    )
}

/// The leaves of `obj` (scalars, empty objects, atomic lists and structs) with their values,
/// and the items of keyed and set lists (as members with value `true`); with `maps`, the
/// maps too (members with value `true`).
pub fn leaves(obj: &Value, scope: Scope, maps: bool) -> BTreeMap<Path, &Value> {
    static MEMBER: Value = Value::Bool(true);
    fn walk<'a>(
        v: &'a Value,
        path: &mut Path,
        scope: Scope,
        maps: bool,
        out: &mut BTreeMap<Path, &'a Value>,
    ) {
        if !path.is_empty() && stripped(path, scope) {
            return;
        }
        match v {
            Value::Object(m) if !m.is_empty() && !atomic_object(last_field(path), m) => {
                if maps && !path.is_empty() && map_field(last_field(path)) {
                    out.insert(path.clone(), &MEMBER);
                }
                for (k, c) in m {
                    path.push(PathElement::Field(k.clone()));
                    walk(c, path, scope, maps, out);
                    path.pop();
                }
            }
            Value::Array(items) => match list_kind(last_field(path), items) {
                ListKind::Map(keys) if items.iter().all(|i| item_key(i, &keys).is_some()) => {
                    for item in items {
                        let key = item_key(item, &keys).unwrap_or_default();
                        path.push(PathElement::Key(key));
                        out.insert(path.clone(), &MEMBER);
                        walk(item, path, scope, maps, out);
                        path.pop();
                    }
                }
                ListKind::Set => {
                    for item in items {
                        path.push(PathElement::Value(canonical(item)));
                        out.insert(path.clone(), &MEMBER);
                        path.pop();
                    }
                }
                _ => {
                    out.insert(path.clone(), v);
                }
            },
            Value::Null if path.is_empty() => {}
            _ if path.is_empty() => {}
            other => {
                out.insert(path.clone(), other);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(obj, &mut Vec::new(), scope, maps, &mut out);
    out
}

/// The fields a configuration sets.
pub fn field_set(obj: &Value, scope: Scope) -> FieldSet {
    leaves(obj, scope, false).into_keys().collect()
}

/// What changed from `old` to `new`: (added or modified fields, removed fields).
pub fn compare(old: &Value, new: &Value, scope: Scope) -> (FieldSet, FieldSet) {
    let n = leaves(new, scope, true);
    if old.is_null() {
        // A new object: every field is new.
        return (n.into_keys().collect(), FieldSet::new());
    }
    let o = leaves(old, scope, true);
    let removed = o.keys().filter(|p| !n.contains_key(*p)).cloned().collect();
    let changed = n
        .into_iter()
        .filter(|(p, v)| o.get(p) != Some(v))
        .map(|(p, _)| p)
        .collect();
    (changed, removed)
}

/// One entry of `metadata.managedFields`.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(&self.fields),
        });
        if let Some(t) = &self.time {
            v["time"] = json!(t);
        }
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    /// How a conflict names this manager.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// The managed-fields entries of `obj`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    let list = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    list.iter()
        .filter(|e| !s(e, "manager").is_empty() || e.get("fieldsV1").is_some())
        .map(|e| Entry {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: e.get("time").and_then(Value::as_str).map(String::from),
            subresource: s(e, "subresource"),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

/// Writes `list` (without empty entries; Apply entries first, then by time) into `obj`.
fn store_entries(obj: &mut Value, mut list: Vec<Entry>) {
    list.retain(|e| !e.fields.is_empty());
    list.sort_by(|a, b| {
        (a.operation != "Apply")
            .cmp(&(b.operation != "Apply"))
            .then_with(|| a.time.cmp(&b.time))
            .then_with(|| a.manager.cmp(&b.manager))
    });
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert(
            "managedFields".into(),
            Value::Array(list.iter().map(Entry::to_json).collect()),
        );
    }
}

/// Who makes an update: the request's `fieldManager`, else its user agent's program name;
/// and the subresource it writes through when the write itself does not say (`scale`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    pub subresource: Option<&'static str>,
}

impl Manager {
    /// The manager of a request as kube-apiserver names it.
    pub fn of_request(field_manager: Option<&str>, user_agent: Option<&str>) -> Manager {
        let name = match field_manager.filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => user_agent
                .and_then(|ua| ua.split('/').next())
                .unwrap_or("")
                .chars()
                .take(128)
                .collect(),
        };
        Manager {
            name,
            subresource: None,
        }
    }

    /// The same manager writing through `subresource`.
    pub fn through(&self, subresource: &'static str) -> Manager {
        Manager {
            subresource: Some(subresource),
            ..self.clone()
        }
    }
}

/// Checks a `fieldManager` parameter as kube-apiserver does.
pub fn validate_manager(name: &str, required: bool) -> Result<(), ApiError> {
    if required && name.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH /apply requests require fieldManager to be set",
        ));
    }
    if name.chars().count() > 128 {
        return Err(ApiError::bad_request(format!(
            "fieldManager: Too long: may not be more than 128 bytes, got {}",
            name.len()
        )));
    }
    if name.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(ApiError::bad_request(format!(
            "fieldManager: Invalid value: {name:?}: must consist of printable characters"
        )));
    }
    Ok(())
}

/// The entries a write starts from: the ones the request sets, if it sets them differently
/// from the live object's (`[{}]` clears them), else the live object's.
fn base_entries(old: Option<&Value>, new: &Value) -> Vec<Entry> {
    let live = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .cloned();
    match new.pointer("/metadata/managedFields") {
        Some(v) if Some(v) != live.as_ref() && !v.is_null() => entries(new),
        _ => old.map(entries).unwrap_or_default(),
    }
}

/// Records an update by `manager` from `old` (None: a create) to `new` through
/// `subresource` in `new`'s managed fields.
pub fn record_update(
    res: &Resource,
    old: Option<&Value>,
    new: &mut Value,
    manager: &Manager,
    subresource: Option<&str>,
) {
    let mut list = base_entries(old, new);
    let scope = Scope::of(res, subresource);
    let (changed, removed) = compare(old.unwrap_or(&Value::Null), new, scope);
    let sub = subresource.unwrap_or("");
    for e in &mut list {
        e.fields.retain(|p| !removed.contains(p));
        if !e.same_owner(&manager.name, "Update", sub) {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        let now = crate::strategy::now_rfc3339();
        match list
            .iter_mut()
            .find(|e| e.same_owner(&manager.name, "Update", sub))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = Some(now);
                e.api_version = res.api_version();
            }
            None => list.push(Entry {
                manager: manager.name.clone(),
                operation: "Update".into(),
                api_version: res.api_version(),
                time: Some(now),
                subresource: sub.to_string(),
                fields: changed,
            }),
        }
    }
    store_entries(new, list);
}

/// Merges an apply configuration into `live`: objects field by field, associative lists
/// item by item (new items appended), set lists as unions, everything else replaced.
pub fn merge(live: &mut Value, config: &Value, path: &mut Path) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !atomic_object(last_field(path), c) => {
            for (k, cv) in c {
                path.push(PathElement::Field(k.clone()));
                match l.get_mut(k) {
                    Some(lv) if !cv.is_null() => merge(lv, cv, path),
                    _ => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(l), Value::Array(c)) => {
            let field = last_field(path).to_string();
            let all: Vec<Value> = l.iter().chain(c).cloned().collect();
            match list_kind(&field, &all) {
                ListKind::Map(keys) => {
                    for ci in c {
                        let ck = item_key(ci, &keys);
                        match l
                            .iter_mut()
                            .find(|li| ck.is_some() && item_key(li, &keys) == ck)
                        {
                            Some(li) => {
                                path.push(PathElement::Key(ck.unwrap_or_default()));
                                merge(li, ci, path);
                                path.pop();
                            }
                            None => l.push(ci.clone()),
                        }
                    }
                }
                ListKind::Set => {
                    for ci in c {
                        if !l.contains(ci) {
                            l.push(ci.clone());
                        }
                    }
                }
                ListKind::Atomic => *l = c.clone(),
            }
        }
        (l, c) => *l = c.clone(),
    }
}

/// Removes the field at `path` from `obj` (nothing if it is not there).
pub fn remove_path(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut node = obj;
    let mut at: Path = Vec::new();
    for e in parent {
        let next = step(node, e, &at);
        at.push(e.clone());
        match next {
            Some(n) => node = n,
            None => return,
        }
    }
    match (node, last) {
        (Value::Object(m), PathElement::Field(f)) => {
            m.remove(f);
        }
        (Value::Array(items), e) => {
            let field = last_field(&at).to_string();
            let kind = list_kind(&field, items);
            let pos = items.iter().position(|i| matches_element(i, e, &kind));
            if let Some(i) = pos {
                items.remove(i);
            }
        }
        _ => {}
    }
}

fn matches_element(item: &Value, e: &PathElement, kind: &ListKind) -> bool {
    match (e, kind) {
        (PathElement::Key(k), ListKind::Map(keys)) => item_key(item, keys).as_ref() == Some(k),
        (PathElement::Value(v), _) => &canonical(item) == v,
        _ => false,
    }
}

fn step<'a>(node: &'a mut Value, e: &PathElement, at: &[PathElement]) -> Option<&'a mut Value> {
    match (node, e) {
        (Value::Object(m), PathElement::Field(f)) => m.get_mut(f),
        (Value::Array(items), PathElement::Index(i)) => items.get_mut(*i),
        (Value::Array(items), e) => {
            let kind = list_kind(last_field(at), items);
            items.iter_mut().find(|i| matches_element(i, e, &kind))
        }
        _ => None,
    }
}

/// Server-side apply of `config` by `manager` to `live` (None: the object does not exist
/// yet). Returns the object to store, with its managed fields, or a 409 Conflict listing
/// the fields other managers own that the apply would change (unless `force`).
pub fn apply(
    res: &Resource,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
) -> Result<Value, ApiError> {
    let scope = Scope::of(res, subresource);
    let sub = subresource.unwrap_or("");
    let mut list = live.map(entries).unwrap_or_default();
    // An object nobody manages yet (made before managed fields were recorded) is owned by
    // "before-first-apply", as kube-apiserver does, so a first apply does not silently
    // take over what it changes.
    if let (Some(l), true) = (live, list.is_empty()) {
        list.push(Entry {
            manager: "before-first-apply".into(),
            operation: "Update".into(),
            api_version: res.api_version(),
            time: Some(crate::strategy::now_rfc3339()),
            subresource: String::new(),
            fields: field_set(l, scope),
        });
    }
    let mut config = config.clone();
    if let Some(m) = config.as_object_mut() {
        if scope == Scope::Main {
            m.remove("status");
        }
    }
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    let applied = field_set(&config, scope);
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let mut object = base.clone();
    merge(&mut object, &config, &mut Vec::new());
    let (changed, _) = compare(&base, &object, scope);

    // Conflicts: fields another manager owns that this apply changes.
    let mut conflicts: Vec<(String, Path)> = Vec::new();
    for e in list
        .iter_mut()
        .filter(|e| !e.same_owner(manager, "Apply", sub))
    {
        let theirs: Vec<Path> = e
            .fields
            .iter()
            .filter(|p| changed.contains(*p) && applied.contains(*p))
            .cloned()
            .collect();
        if force {
            e.fields.retain(|p| !theirs.contains(p));
        } else {
            conflicts.extend(theirs.into_iter().map(|p| (e.describe(), p)));
        }
    }
    if !conflicts.is_empty() {
        return Err(conflict_error(conflicts));
    }

    // Fields this manager applied before and no longer applies go, unless others own them.
    let previous = list
        .iter()
        .find(|e| e.same_owner(manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = list
        .iter()
        .filter(|e| !e.same_owner(manager, "Apply", sub))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    // A path still leading to applied or others' fields stays (a map whose `.` the
    // applier owned keeps the entries it still applies).
    let dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied.iter().chain(&others).any(|o| o.starts_with(p)))
        .collect();
    // Only the outermost: a dropped list item goes with its fields (its keys find it).
    for p in &dropped {
        if !dropped
            .iter()
            .any(|q| q.len() < p.len() && p.starts_with(q))
        {
            remove_path(&mut object, p);
        }
    }

    let (_, removed) = compare(&base, &object, scope);
    for e in &mut list {
        e.fields.retain(|p| !removed.contains(p));
    }
    let now = crate::strategy::now_rfc3339();
    match list
        .iter_mut()
        .find(|e| e.same_owner(manager, "Apply", sub))
    {
        Some(e) => {
            if e.fields != applied {
                e.time = Some(now);
            }
            e.fields = applied;
            e.api_version = res.api_version();
        }
        None => list.push(Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version: res.api_version(),
            time: Some(now),
            subresource: sub.to_string(),
            fields: applied,
        }),
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    store_entries(&mut object, list);
    Ok(object)
}

/// The 409 of an apply with conflicts, worded as kube-apiserver does.
fn conflict_error(conflicts: Vec<(String, Path)>) -> ApiError {
    let message = if let [(who, path)] = conflicts.as_slice() {
        format!(
            "Apply failed with 1 conflict: conflict with {who}: {}",
            path_string(path)
        )
    } else {
        let mut by: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (who, path) in &conflicts {
            by.entry(who).or_default().push(path_string(path));
        }
        let mut lines = Vec::new();
        for (who, paths) in by {
            lines.push(format!("conflicts with {who}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    let causes = conflicts
        .iter()
        .map(|(who, path)| Cause {
            reason: "FieldManagerConflict",
            field: path_string(path),
            message: format!("conflict with {who}"),
        })
        .collect();
    // Details carry the causes only, as kube-apiserver's NewApplyConflict.
    let mut e = ApiError::new(409, "Conflict", message);
    e.details = Some(Box::new(crate::error::Details {
        causes,
        ..Default::default()
    }));
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    fn deployments() -> &'static Resource {
        lookup("apps", "v1", "deployments").expect("deployments")
    }

    fn config(replicas: i64, env: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "env": env,
                    "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn fields_v1_round_trip_and_paths() {
        let obj = config(1, json!([{"name": "A", "value": "1"}]));
        let mut obj2 = obj.clone();
        obj2["metadata"]["finalizers"] = json!(["x/y"]);
        let set = field_set(&obj2, Scope::Main);
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:spec"]["f:replicas"], json!({}));
        assert_eq!(v1["f:spec"]["f:selector"], json!({}));
        assert!(v1.get("f:apiVersion").is_none() && v1["f:metadata"].get("f:name").is_none());
        assert_eq!(v1["f:metadata"]["f:finalizers"], json!({"v:\"x/y\"": {}}));
        let c = &v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert_eq!(from_fields_v1(&v1), set);
        let env_value: Path = ["spec", "template", "spec", "containers"]
            .iter()
            .map(|f| PathElement::Field(f.to_string()))
            .chain([
                PathElement::Key("{\"name\":\"c\"}".into()),
                PathElement::Field("env".into()),
                PathElement::Key("{\"name\":\"A\"}".into()),
                PathElement::Field("value".into()),
            ])
            .collect();
        assert!(set.contains(&env_value));
        assert_eq!(
            path_string(&env_value),
            ".spec.template.spec.containers[name=\"c\"].env[name=\"A\"].value"
        );
        assert_eq!(
            path_string(&[
                PathElement::Field("f".into()),
                PathElement::Value("\"x\"".into())
            ]),
            ".f[=\"x\"]"
        );
    }

    #[test]
    fn update_takes_changed_fields_from_others() {
        let res = deployments();
        let mut created = config(1, json!([]));
        record_update(
            res,
            None,
            &mut created,
            &Manager::of_request(Some("a"), None),
            None,
        );
        let mut changed = created.clone();
        changed["spec"]["replicas"] = json!(3);
        changed["metadata"]["labels"]["x"] = json!("y");
        record_update(
            res,
            Some(&created),
            &mut changed,
            &Manager::of_request(Some("b"), None),
            None,
        );
        let list = entries(&changed);
        let b = list.iter().find(|e| e.manager == "b").expect("b");
        assert_eq!(
            to_fields_v1(&b.fields),
            json!({"f:metadata": {"f:labels": {"f:x": {}}}, "f:spec": {"f:replicas": {}}})
        );
        let a = list.iter().find(|e| e.manager == "a").expect("a");
        assert!(!a.fields.iter().any(|p| path_string(p) == ".spec.replicas"));
        // The first label of an object owns the labels map too (`.`).
        let mut bare = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let before = bare.clone();
        bare["metadata"]["labels"] = json!({"a": "1"});
        record_update(
            res,
            Some(&before),
            &mut bare,
            &Manager::of_request(Some("l"), None),
            None,
        );
        assert_eq!(
            bare["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}})
        );
        // Applying after owning the map's `.` keeps the map, drops the unapplied keys.
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let cms = lookup("", "v1", "configmaps").expect("configmaps");
        record_update(
            cms,
            None,
            &mut cm,
            &Manager::of_request(Some("m"), None),
            None,
        );
        assert_eq!(
            cm["metadata"]["managedFields"][0]["fieldsV1"]["f:data"]["."],
            json!({})
        );
        cm["metadata"]["managedFields"][0]["operation"] = json!("Apply");
        let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let out = apply(cms, Some(&cm), &cfg, "m", None, false).expect("apply");
        assert_eq!(out["data"], json!({"a": "1"}));
        // No change: nothing recorded, the entries stay as they are.
        let mut same = changed.clone();
        record_update(
            res,
            Some(&changed),
            &mut same,
            &Manager::of_request(Some("c"), None),
            None,
        );
        assert_eq!(same, changed);
        // A request that sets managedFields to [{}] clears them.
        let mut cleared = changed.clone();
        cleared["metadata"]["managedFields"] = json!([{}]);
        record_update(
            res,
            Some(&changed),
            &mut cleared,
            &Manager::of_request(Some("c"), None),
            None,
        );
        assert!(cleared["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let res = deployments();
        let two_env = json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let first =
            apply(res, None, &config(1, two_env.clone()), "mgr", None, false).expect("apply");
        let mut live = first.clone();
        live["spec"]["replicas"] = json!(4);
        live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        record_update(
            res,
            Some(&first),
            &mut live,
            &Manager::of_request(Some("other"), None),
            None,
        );

        let err = apply(
            res,
            Some(&live),
            &config(1, two_env.clone()),
            "mgr",
            None,
            false,
        )
        .expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 2 conflicts: conflicts with \"other\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"c\"].image"
        );
        let causes = err.details.map(|d| d.causes).unwrap_or_default();
        assert_eq!(causes[0].reason, "FieldManagerConflict");

        let forced =
            apply(res, Some(&live), &config(1, two_env), "mgr", None, true).expect("forced");
        assert_eq!(forced["spec"]["replicas"], 1);
        assert!(entries(&forced).iter().all(|e| e.manager == "mgr"));

        // Dropping env B (and the label) removes them; the merge keeps unowned fields.
        let mut live = forced.clone();
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        let mut smaller = config(1, json!([{"name": "A", "value": "1"}]));
        smaller["metadata"]["labels"] = json!({});
        let out = apply(res, Some(&live), &smaller, "mgr", None, false).expect("apply");
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(out["metadata"]["labels"], json!({}));
    }

    #[test]
    fn unmanaged_objects_belong_to_before_first_apply() {
        let res = deployments();
        let live = config(1, json!([]));
        let err =
            apply(res, Some(&live), &config(2, json!([])), "m", None, false).expect_err("conflict");
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
        );
        let out =
            apply(res, Some(&live), &config(1, json!([])), "m", None, false).expect("same values");
        let managers: Vec<String> = entries(&out).into_iter().map(|e| e.manager).collect();
        assert_eq!(managers, vec!["m", "before-first-apply"]);
    }

    #[test]
    fn merge_lists() {
        let mut live = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "x", "image": "1", "args": ["p"]}]}});
        let cfg = json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "y", "image": "3"}, {"name": "x", "image": "2", "args": ["q"]}]}});
        merge(&mut live, &cfg, &mut Vec::new());
        assert_eq!(
            live,
            json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [{"name": "x", "image": "2", "args": ["q"]}, {"name": "y", "image": "3"}]}})
        );
    }

    #[test]
    fn managers_from_requests() {
        assert_eq!(
            Manager::of_request(None, Some("kubectl/v1.33.0 (linux/amd64) kubernetes/abc")).name,
            "kubectl"
        );
        assert_eq!(
            Manager::of_request(Some("kubectl-edit"), Some("kubectl/v1.33.0")).name,
            "kubectl-edit"
        );
        assert!(validate_manager("", true).is_err());
        assert!(validate_manager(&"x".repeat(129), false).is_err());
        assert!(validate_manager("ok", true).is_ok());
    }
}
