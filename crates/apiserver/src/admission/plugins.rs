//! Which admission plugins run: kube-apiserver's `--enable-admission-plugins` and
//! `--disable-admission-plugins`, by kube's plugin names. The default set always runs
//! in skiff; two optional plugins can be turned on: `DenyServiceExternalIPs` (no new
//! `spec.externalIPs`, the mitigation of CVE-2020-8554) and `AlwaysPullImages` (every
//! new pod's containers pull, so a pod cannot run a private image another tenant's
//! credentials brought onto the node).

use serde_json::Value;

/// kube-apiserver's plugins that skiff always runs (enabling them changes nothing).
const ALWAYS_ON: &[&str] = &[
    "NamespaceLifecycle",
    "LimitRanger",
    "ServiceAccount",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PodSecurity",
    "ResourceQuota",
    "NodeRestriction",
];

/// The optional plugins skiff has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Plugins {
    pub deny_service_external_ips: bool,
    pub always_pull_images: bool,
}

impl Plugins {
    /// The set `enable` and `disable` name (comma lists already split); unknown names,
    /// plugins skiff does not have, and disabling one skiff always runs are errors.
    pub fn from_flags(enable: &[String], disable: &[String]) -> Result<Plugins, String> {
        let mut p = Plugins::default();
        for name in enable.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            match name {
                "DenyServiceExternalIPs" => p.deny_service_external_ips = true,
                "AlwaysPullImages" => p.always_pull_images = true,
                n if ALWAYS_ON.contains(&n) => {}
                n => {
                    return Err(format!(
                        "--enable-admission-plugins: plugin {n:?} is not built into skiff (optional ones: AlwaysPullImages, DenyServiceExternalIPs; always on: {})",
                        ALWAYS_ON.join(", ")
                    ))
                }
            }
        }
        for name in disable.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            match name {
                "DenyServiceExternalIPs" => p.deny_service_external_ips = false,
                "AlwaysPullImages" => p.always_pull_images = false,
                n if ALWAYS_ON.contains(&n) => {
                    return Err(format!(
                        "--disable-admission-plugins: skiff always runs {n}; it cannot be disabled"
                    ))
                }
                n => {
                    return Err(format!(
                        "--disable-admission-plugins: plugin {n:?} is not built into skiff"
                    ))
                }
            }
        }
        Ok(p)
    }
}

fn external_ips(svc: &Value) -> Vec<&str> {
    svc.pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// DenyServiceExternalIPs: a Service may keep the external IPs it has, never gain one.
pub fn external_ips_denied(old: Option<&Value>, new: &Value) -> bool {
    let before = old.map(external_ips).unwrap_or_default();
    external_ips(new).iter().any(|ip| !before.contains(ip))
}

/// AlwaysPullImages: every container of a new pod pulls its image.
pub fn always_pull(pod: &mut Value) {
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.insert("imagePullPolicy".into(), Value::from("Always"));
            }
        }
    }
}

/// AlwaysPullImages on update: a container may not move away from `Always`.
pub fn pull_policy_weakened(new: &Value) -> Option<String> {
    for list in ["initContainers", "containers"] {
        for c in new
            .pointer(&format!("/spec/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if c.get("imagePullPolicy").and_then(Value::as_str) != Some("Always") {
                return Some(format!(
                    "spec.{list}[name={}].imagePullPolicy: Unsupported value: {:?}: supported values: \"Always\"",
                    c.get("name").and_then(Value::as_str).unwrap_or(""),
                    c.get("imagePullPolicy").and_then(Value::as_str).unwrap_or("")
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_name_kubes_plugins() {
        let p = Plugins::from_flags(&names(&["NodeRestriction", "DenyServiceExternalIPs"]), &[])
            .unwrap();
        assert!(p.deny_service_external_ips && !p.always_pull_images);
        let p = Plugins::from_flags(&names(&["AlwaysPullImages"]), &names(&["AlwaysPullImages"]))
            .unwrap();
        assert_eq!(p, Plugins::default());
        let e = Plugins::from_flags(&names(&["ImagePolicyWebhook"]), &[]).unwrap_err();
        assert!(
            e.contains("\"ImagePolicyWebhook\" is not built into skiff"),
            "{e}"
        );
        let e = Plugins::from_flags(&[], &names(&["PodSecurity"])).unwrap_err();
        assert!(e.contains("cannot be disabled"), "{e}");
    }

    #[test]
    fn external_ips_may_be_kept_never_added() {
        let with = |ips: &[&str]| json!({"spec": {"externalIPs": ips}});
        assert!(external_ips_denied(None, &with(&["192.0.2.1"])));
        assert!(!external_ips_denied(None, &json!({"spec": {}})));
        assert!(!external_ips_denied(
            Some(&with(&["192.0.2.1"])),
            &with(&["192.0.2.1"])
        ));
        assert!(!external_ips_denied(
            Some(&with(&["192.0.2.1", "192.0.2.2"])),
            &with(&["192.0.2.2"])
        ));
        assert!(external_ips_denied(
            Some(&with(&["192.0.2.1"])),
            &with(&["192.0.2.9"])
        ));
    }

    #[test]
    fn always_pull_sets_and_holds_the_policy() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "imagePullPolicy": "Never"}], "initContainers": [{"name": "i"}]}});
        always_pull(&mut pod);
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            pod["spec"]["initContainers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(pull_policy_weakened(&pod).is_none());
        pod["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        assert!(pull_policy_weakened(&pod).unwrap().contains("name=a"));
    }
}
