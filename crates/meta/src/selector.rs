//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h,i>3`) and field selectors
//! (`metadata.name=x,status.phase!=Running`), parsed as kube-apiserver parses them.

use std::collections::BTreeMap;

use serde_json::Value;

pub use crate::object::labels_of;

/// A selector that failed to parse; the message is shown to the client as a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// The value of `=`/`==`/`!=`.
    pub value: String,
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name part.
pub fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !crate::names::is_dns1123_subdomain(p) {
            return false;
        }
    }
    valid_label_value(name) && !name.is_empty()
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn valid_label_value(v: &str) -> bool {
    v.len() <= 63 && label_value_format(v)
}

/// A label value's characters (empty, or alphanumeric at both ends with `-_.` between),
/// whatever its length.
pub fn label_value_format(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    /// An identifier/value: up to a delimiter.
    fn word(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_whitespace()
                || matches!(c, b',' | b'=' | b'!' | b'(' | b')' | b'<' | b'>')
            {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }
    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.s[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(input: &str) -> Result<LabelSelector, SelectorError> {
        let mut lx = Lexer {
            s: input.as_bytes(),
            pos: 0,
        };
        let mut requirements = Vec::new();
        lx.skip_ws();
        if lx.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            let req = Self::requirement(&mut lx, input)?;
            requirements.push(req);
            lx.skip_ws();
            match lx.peek() {
                None => break,
                Some(b',') => {
                    lx.pos += 1;
                }
                Some(_) => return Err(SelectorError(input.to_string())),
            }
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(lx: &mut Lexer<'_>, input: &str) -> Result<Requirement, SelectorError> {
        let err = |m: &str| SelectorError(format!("{input}: {m}"));
        if lx.eat("!") {
            let key = lx.word();
            if !valid_label_key(&key) {
                return Err(err("invalid label key"));
            }
            return Ok(Requirement {
                key,
                op: Op::DoesNotExist,
                value: String::new(),
            });
        }
        let key = lx.word();
        if !valid_label_key(&key) {
            return Err(err(&format!("invalid label key \"{key}\"")));
        }
        lx.skip_ws();
        let (op, value) = if lx.eat("==") || lx.eat("=") {
            (Op::Equals, lx.word())
        } else if lx.eat("!=") {
            (Op::NotEquals, lx.word())
        } else if lx.eat(">") || lx.eat("<") {
            let gt = lx.s[lx.pos - 1] == b'>';
            let v = lx.word();
            let n: i64 = v.parse().map_err(|_| {
                err(&format!(
                    "for 'Gt', 'Lt' operators, the value must be an integer: {v}"
                ))
            })?;
            (if gt { Op::Gt(n) } else { Op::Lt(n) }, String::new())
        } else if matches!(lx.peek(), None | Some(b',')) {
            (Op::Exists, String::new())
        } else {
            let word = lx.word();
            let set_op = match word.as_str() {
                "in" => true,
                "notin" => false,
                other => {
                    return Err(err(&format!(
                        "found '{other}', expected: in, notin, =, ==, !=, gt, lt"
                    )))
                }
            };
            if !lx.eat("(") {
                return Err(err("expected '('"));
            }
            let mut values = Vec::new();
            loop {
                let v = lx.word();
                if !valid_label_value(&v) {
                    return Err(err(&format!("invalid label value: \"{v}\"")));
                }
                values.push(v);
                if lx.eat(",") {
                    continue;
                }
                if lx.eat(")") {
                    break;
                }
                return Err(err("expected ',' or ')'"));
            }
            (
                if set_op {
                    Op::In(values)
                } else {
                    Op::NotIn(values)
                },
                String::new(),
            )
        };
        if !valid_label_value(&value) {
            return Err(err(&format!("invalid label value: \"{value}\"")));
        }
        Ok(Requirement { key, op, value })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_fn(|k| labels.get(k).map(String::as_str))
    }

    /// Whether the labels `label` looks up satisfy every requirement.
    pub fn matches_fn<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| {
            let v = label(&r.key);
            match &r.op {
                Op::Equals => v == Some(r.value.as_str()),
                Op::NotEquals => v != Some(r.value.as_str()),
                Op::In(set) => v.is_some_and(|v| set.iter().any(|s| s == v)),
                Op::NotIn(set) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Lt(n) => v
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Matches the labels of a JSON object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.is_empty() {
            return true;
        }
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches_fn(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }
}

/// Whether `labels` satisfy a `metav1.LabelSelector` (matchLabels and
/// matchExpressions; an empty selector matches everything). An unknown operator
/// matches nothing.
pub fn label_selector_matches(sel: &Value, labels: &BTreeMap<String, String>) -> bool {
    let by_label = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    by_label
        && sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let have = labels.get(key);
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => have.is_some_and(|h| values.contains(&h.as_str())),
                    "NotIn" => have.is_none_or(|h| !values.contains(&h.as_str())),
                    "Exists" => have.is_some(),
                    "DoesNotExist" => have.is_none(),
                    _ => false,
                }
            })
}

/// Whether `labels` carry every pair of `set` (a Service's or a ReplicationController's
/// selector, apimachinery's `SelectorFromSet`; an empty set matches everything).
pub fn set_matches(set: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    set.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether `labels` satisfy a typed `metav1.LabelSelector`: every matchLabels pair and
/// every matchExpressions requirement (In, NotIn, Exists, DoesNotExist). An empty
/// selector matches everything; an unknown operator matches nothing.
pub fn typed_label_selector_matches(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    if let Some(set) = &selector.match_labels {
        if !set_matches(set, labels) {
            return false;
        }
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field path, value, negated)
    pub terms: Vec<(String, String, bool)>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        for part in input.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, neg) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            terms.push((field.trim().to_string(), value.trim().to_string(), neg));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the object's fields satisfy every term; fields are read by dotted path.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches_fn(|field| std::borrow::Cow::Owned(field_value(obj, field)))
    }

    /// Whether the fields `field` reads (as [`field_value`] renders them) satisfy every
    /// term.
    pub fn matches_fn<'a>(&self, field: impl Fn(&str) -> std::borrow::Cow<'a, str>) -> bool {
        self.terms
            .iter()
            .all(|(path, value, neg)| (field(path) == value.as_str()) != *neg)
    }
}

/// The value of a dotted field path as a field selector compares it ("" when absent).
pub fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_all_operators() {
        let s =
            LabelSelector::parse("a=b, c==d,e!=f,g in (x, y),h notin (z),i,!j,k>3,l<9").unwrap();
        assert_eq!(s.requirements.len(), 9);
        assert_eq!(s.requirements[3].op, Op::In(vec!["x".into(), "y".into()]));
        assert_eq!(s.requirements[4].op, Op::NotIn(vec!["z".into()]));
        assert_eq!(s.requirements[5].op, Op::Exists);
        assert_eq!(s.requirements[6].op, Op::DoesNotExist);
        assert_eq!(s.requirements[7].op, Op::Gt(3));
    }

    #[test]
    fn matching() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web,db)"));
        assert!(!m("app notin (web)"));
        assert!(m("missing notin (web)"));
        assert!(m("!missing"));
        assert!(!m("!app"));
        assert!(m("n>4") && !m("n<5"));
        assert!(m("example.com/x!=y"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "a in (b",
            "a=b=c",
            "=b",
            "a in b",
            "a foo (b)",
            "a=-bad-",
            "a,,b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_selectors() {
        let obj = serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"unschedulable": true}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches_object(&obj);
        assert!(m("metadata.name=x"));
        assert!(m("metadata.name==x,metadata.namespace!=other"));
        assert!(!m("metadata.name!=x"));
        assert!(m("spec.unschedulable=true"));
        assert!(m("status.phase="));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
