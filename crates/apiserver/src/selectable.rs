//! What label and field selectors read of an object, kept beside its JSON in the watch
//! cache (kube-apiserver's cacher keeps each object's labels and fields the same way), so
//! that a list or watch with selectors filters without decoding the objects, and the
//! cache need not keep a decoded copy of every object.

use serde_json::Value;
use skiff_meta::selector::{field_value, FieldSelector, LabelSelector};
use std::borrow::Cow;

use crate::resource::Resource;

/// An object's labels and selectable fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selectable {
    /// The labels with string values, sorted by key.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// `metadata.name`, `metadata.namespace` and the kind's own selectable fields, as
    /// field selectors compare them; a field that renders as "" is left out.
    fields: Box<[(&'static str, Box<str>)]>,
}

impl Selectable {
    /// Reads `obj`, an object of `res`.
    pub fn of(res: &Resource, obj: &Value) -> Selectable {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let fields = ["metadata.name", "metadata.namespace"]
            .into_iter()
            .chain(crate::kinds::of(res).field_selectors().iter().copied())
            .filter_map(|path| {
                let v = field_value(obj, path);
                (!v.is_empty()).then(|| (path, v.into_boxed_str()))
            })
            .collect();
        Selectable {
            labels: labels.into_boxed_slice(),
            fields,
        }
    }

    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.labels[i].1.as_ref())
    }

    /// The value of a selectable field ("" when absent, as field selectors compare it).
    pub fn field(&self, path: &str) -> &str {
        self.fields
            .iter()
            .find(|(p, _)| *p == path)
            .map_or("", |(_, v)| v.as_ref())
    }

    /// Whether both selectors select the object.
    pub fn matches(&self, labels: &LabelSelector, fields: &FieldSelector) -> bool {
        labels.matches_fn(|k| self.label(k)) && fields.matches_fn(|f| Cow::Borrowed(self.field(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static Resource {
        crate::resources::lookup("", "v1", "pods").expect("pods")
    }

    #[test]
    fn selects_as_the_decoded_object_does() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "front", "n": "7"}},
            "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": true},
            "status": {"phase": "Running"}
        });
        let s = Selectable::of(pods(), &pod);
        assert_eq!(s.label("app"), Some("web"));
        assert_eq!(s.label("zzz"), None);
        assert_eq!(s.field("spec.nodeName"), "n1");
        assert_eq!(s.field("spec.hostNetwork"), "true");
        assert_eq!(s.field("status.podIP"), "");
        for (l, f) in [
            ("app=web", ""),
            ("app=db", ""),
            ("app in (web,db),tier!=back", ""),
            ("!tier", ""),
            ("n>5", "spec.nodeName=n1"),
            ("n<5", ""),
            ("", "spec.nodeName=n2"),
            ("", "spec.nodeName!=n2,status.phase=Running"),
            ("", "metadata.name=p,metadata.namespace=ns"),
            ("", "status.podIP="),
            ("", "spec.hostNetwork=true"),
        ] {
            let labels = LabelSelector::parse(l).expect("labels");
            let fields = FieldSelector::parse(f).expect("fields");
            assert_eq!(
                s.matches(&labels, &fields),
                labels.matches_object(&pod) && fields.matches_object(&pod),
                "{l:?} {f:?}"
            );
        }
        let unlabelled = Selectable::of(pods(), &json!({"metadata": {"name": "q"}}));
        assert!(unlabelled.matches(
            &LabelSelector::parse("!app").expect("labels"),
            &FieldSelector::parse("spec.nodeName=").expect("fields")
        ));
    }
}
