//! The generic steps of the store's writes (kube-apiserver's "strategies"): server-set
//! metadata (uid, timestamps, generation), what a subresource's write may change (from
//! [`crate::subresource`]), the metadata's validation, then each kind's own hooks from
//! [`crate::kinds`] (defaults, status, what an update carries over, its rules on every
//! write, on create and on update). Also new uids and random name suffixes.

use serde_json::{json, Value};

use crate::defaults::obj_mut;
use crate::error::Cause;
use crate::resource::Resource;

use crate::subresource::Subresource;

/// RFC 3339 timestamp with seconds, as Kubernetes writes `metav1.Time`.
pub use skiff_meta::time::now as now_rfc3339;

/// A random version-4 UUID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to the clock: uniqueness, not secrecy, is what a uid needs.
        let n = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Five random characters from the alphabet `generateName` uses.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Sets server-owned metadata and defaults on an object about to be created. `name` and
/// `namespace` are already final.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
    let strategy = crate::kinds::of(res);
    let meta = obj_mut(obj, "metadata");
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(k);
    }
    if res.generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if res.status {
        strategy.reset_status(obj);
    }
    strategy.defaults(obj);
    status_defaults(res, obj);
    strategy.prepare_create(obj);
}

/// Fills in the status fields kube-apiserver always serializes (required in the OpenAPI
/// schema, or non-pointer fields without `omitempty` in the Go types), on create and on
/// every status write.
pub fn status_defaults(res: &Resource, obj: &mut Value) {
    if res.status {
        crate::kinds::of(res).status_defaults(obj);
    }
}

/// Defaults of the kind of `res`, as the real server applies them (also on update).
pub fn apply_defaults(res: &Resource, obj: &mut Value) {
    crate::kinds::of(res).defaults(obj);
}

/// Carries server-owned state from `old` into `new` for an update of `sub`.
pub fn prepare_for_update(res: &Resource, old: &Value, new: &mut Value, sub: Subresource) {
    match sub {
        Subresource::Main => {}
        Subresource::Status => {
            sub.carry_over(old, new);
            status_defaults(res, new);
            return;
        }
        Subresource::EphemeralContainers => {
            sub.carry_over(old, new);
            apply_defaults(res, new);
            return;
        }
        Subresource::Finalize | Subresource::Binding => {
            sub.carry_over(old, new);
            return;
        }
    }
    // Server-owned metadata.
    let strategy = crate::kinds::of(res);
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = obj_mut(new, "metadata");
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    meta.remove("selfLink");
    if res.status {
        strategy.keep_status(old, new);
    }
    strategy.prepare_update(old, new);
    apply_defaults(res, new);
    if res.generation {
        let changed = spec_of(old) != spec_of(new);
        let gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        obj_mut(new, "metadata").insert(
            "generation".into(),
            json!(if changed { gen + 1 } else { gen }),
        );
    }
}

/// Everything but metadata and status: what a generation counts changes of.
fn spec_of(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

/// The rules of every write: the metadata's, then the kind's.
pub fn validate(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = crate::validation::validate_metadata(res, obj);
    crate::kinds::of(res).validate(obj, &mut causes);
    causes
}

/// Rules only a create checks.
pub fn validate_create(res: &Resource, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    crate::kinds::of(res).validate_create(obj, &mut causes);
    causes
}

/// Immutable-field rules of an update (after [`prepare_for_update`]).
pub fn validate_update(res: &Resource, old: &Value, new: &Value, sub: Subresource) -> Vec<Cause> {
    let mut causes = Vec::new();
    if sub != Subresource::Main {
        sub.validate_update(old, new, &mut causes);
        return causes;
    }
    crate::kinds::of(res).validate_update(old, new, &mut causes);
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn pod_defaults() {
        let res = lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox:1.36"}]}});
        prepare_for_create(res, &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["qosClass"], "BestEffort");
        assert_eq!(pod["metadata"]["uid"].as_str().map(str::len), Some(36));
    }

    #[test]
    fn status_writes_keep_the_fields_go_always_writes() {
        let res = lookup("apps", "v1", "daemonsets").unwrap();
        let mut old = json!({"metadata": {"name": "d"}, "spec": {}});
        prepare_for_create(res, &mut old);
        assert_eq!(
            old["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0})
        );
        let mut new = old.clone();
        new["status"] = json!({"numberReady": 2, "observedGeneration": 1});
        prepare_for_update(res, &old, &mut new, Subresource::Status);
        assert_eq!(
            new["status"],
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 2, "observedGeneration": 1})
        );
        let node = lookup("", "v1", "nodes").unwrap();
        let mut n =
            json!({"metadata": {"name": "n"}, "status": {"nodeInfo": {"kubeletVersion": "v1"}}});
        prepare_for_create(node, &mut n);
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1");
        assert_eq!(n["status"]["nodeInfo"]["bootID"], "");
        assert_eq!(
            n["status"]["daemonEndpoints"],
            json!({"kubeletEndpoint": {"Port": 0}})
        );
    }

    #[test]
    fn generation_bumps_on_spec_change_only() {
        let res = lookup("apps", "v1", "deployments").unwrap();
        let mut old = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        prepare_for_create(res, &mut old);
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        prepare_for_update(res, &old, &mut labelled, Subresource::Main);
        assert_eq!(labelled["metadata"]["generation"], 1);
        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(3);
        scaled["status"] = json!({"replicas": 9});
        prepare_for_update(res, &old, &mut scaled, Subresource::Main);
        assert_eq!(scaled["metadata"]["generation"], 2);
        assert_eq!(scaled["status"], json!({}));
    }

    #[test]
    fn statefulset_mounts_may_name_claim_templates() {
        let res = crate::resources::lookup("apps", "v1", "statefulsets").unwrap();
        let sts = |mount: &str| {
            json!({"kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [
                    {"name": "c", "image": "busybox", "volumeMounts": [{"name": mount, "mountPath": "/d"}]}
                ]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
            }})
        };
        assert!(validate(res, &sts("data")).is_empty());
        let causes = validate(res, &sts("other"));
        assert_eq!(
            causes[0].field,
            "spec.template.spec.containers[0].volumeMounts[0].name"
        );
    }
    #[test]
    fn pod_requires_containers() {
        let res = crate::resources::lookup("", "v1", "pods").unwrap();
        let causes = validate(res, &json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(causes[0].field, "spec.containers");
        let causes = validate(
            res,
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
        );
        assert_eq!(causes[0].field, "spec.containers[0].image");
        let ok = validate(
            res,
            &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        );
        assert!(ok.is_empty());
    }
}
