//! A pod's effective resource requests, computed as Kubernetes does
//! (`resourcehelper.PodRequests`), and a node's allocatable resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_informer::CachedPod;

use skiff_meta::quantity::parse_milli;

/// Converts milli-units to whole units, rounding up as `Quantity.Value()` does.
pub(crate) fn milli_to_units(milli: i128) -> i128 {
    milli.div_euclid(1000) + i128::from(milli.rem_euclid(1000) != 0)
}

/// Saturating conversion used where Kubernetes keeps int64 values.
pub(crate) fn to_i64(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Default cpu request (milli-cores) the scoring plugins assume for a container without one.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Default memory request (bytes) the scoring plugins assume for a container without one.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Resource amounts: cpu in milli-cores, memory and ephemeral storage in bytes,
/// any other (extended) resource in whole units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended and other resources ("nvidia.com/gpu", "hugepages-2Mi", ...), in units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a ResourceList (requests, limits, allocatable, overhead). Quantities that do
    /// not parse count as zero: the API server validates them before they reach us.
    pub fn from_list<'a>(list: impl IntoIterator<Item = (&'a String, &'a Quantity)>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            let milli = parse_milli(&q.0).unwrap_or(0);
            r.set(name, milli);
        }
        r
    }

    fn set(&mut self, name: &str, milli: i128) {
        match name {
            "cpu" => self.milli_cpu = to_i64(milli),
            "memory" => self.memory = to_i64(milli_to_units(milli)),
            "ephemeral-storage" => self.ephemeral_storage = to_i64(milli_to_units(milli)),
            // "pods" is a node capacity, never a request.
            "pods" => {}
            other => {
                self.scalar
                    .insert(other.to_string(), to_i64(milli_to_units(milli)));
            }
        }
    }

    /// Adds `other` to `self`, resource by resource.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Raises each resource of `self` to at least the amount in `other`.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// True when every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &skiff_informer::CachedContainer, non_zero: bool) -> Resources {
    let list: &[(String, Quantity)] = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_deref())
        .unwrap_or_default();
    let mut r = Resources::from_list(list.iter().map(|(k, v)| (k, v)));
    if non_zero {
        // GetNonzeroRequestForResource: only a missing request gets the default;
        // an explicit zero stays zero.
        let has = |name: &str| list.iter().any(|(k, _)| k == name);
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

fn aggregate(pod: &CachedPod, non_zero: bool) -> Resources {
    let mut reqs = Resources::default();
    let Some(spec) = pod.spec.as_ref() else {
        return reqs;
    };
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    // Init containers run one at a time before the app containers, except sidecars
    // (restartPolicy: Always) which keep running alongside everything started after them.
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            sidecars.add(&r);
            init_max.max_with(&sidecars);
        } else {
            let mut during = r;
            during.add(&sidecars);
            init_max.max_with(&during);
        }
    }
    reqs.max_with(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(overhead));
    }
    reqs
}

/// The pod's effective requests: the sum of its app containers (plus sidecars), or the
/// largest init container if that is more, per resource, plus the pod overhead.
/// Containers without requests count as zero.
pub fn pod_requests(pod: &CachedPod) -> Resources {
    aggregate(pod, false)
}

/// Like [`pod_requests`], but a container with no cpu or memory request counts as
/// 100m cpu / 200Mi memory, as the scoring plugins of kube-scheduler assume.
pub fn pod_non_zero_requests(pod: &CachedPod) -> Resources {
    aggregate(pod, true)
}

/// A node's allocatable resources, and the number of pods it accepts.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let empty = BTreeMap::new();
    let list = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .unwrap_or(&empty);
    let pods = list
        .get("pods")
        .and_then(|q| parse_milli(&q.0).ok())
        .map(|m| to_i64(milli_to_units(m)))
        .unwrap_or(0);
    (Resources::from_list(list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use serde_json::json;

    #[test]
    fn sums_app_containers() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [
                {"name": "a", "image": "nginx", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                {"name": "b", "image": "nginx", "resources": {"requests": {"cpu": "0.5", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
                {"name": "c", "image": "nginx"}
            ]}
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 750);
        assert_eq!(r.memory, 64 * 1024 * 1024 + 1024 * 1024 * 1024);
        assert_eq!(r.scalar.get("nvidia.com/gpu"), Some(&1));
        let nz = pod_non_zero_requests(&p);
        assert_eq!(nz.milli_cpu, 850);
        assert_eq!(nz.memory, r.memory + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn init_containers_take_the_max_and_overhead_adds() {
        let p = pod(json!({
            "metadata": {"name": "web"},
            "spec": {
                "initContainers": [
                    {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "10Mi"}}},
                    {"name": "i2", "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}
                ],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}}
                ],
                "overhead": {"cpu": "10m", "memory": "1Mi"}
            }
        }));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2010);
        assert_eq!(r.memory, 501 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_everything_after_them() {
        let p = pod(json!({
            "metadata": {"name": "web"},
            "spec": {
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                    {"name": "migrate", "resources": {"requests": {"cpu": "1"}}}
                ],
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "300m"}}}
                ]
            }
        }));
        // max(300 + 200, 1000 + 200)
        assert_eq!(pod_requests(&p).milli_cpu, 1200);
    }

    #[test]
    fn explicit_zero_is_not_defaulted() {
        let p = pod(json!({
            "metadata": {"name": "web"},
            "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "0"}}}]}
        }));
        let nz = pod_non_zero_requests(&p);
        assert_eq!(nz.milli_cpu, 0);
        assert_eq!(nz.memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn reads_node_allocatable() {
        let n = node(
            "n1",
            json!({}),
            json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100G"}),
        );
        let (r, pods) = node_allocatable(&n);
        assert_eq!(r.milli_cpu, 4000);
        assert_eq!(r.memory, 8 << 30);
        assert_eq!(r.ephemeral_storage, 100_000_000_000);
        assert_eq!(pods, 110);
    }

    // The scheduler reads quantities with skiff_meta::quantity::parse_milli.
    #[test]
    fn parses_kubernetes_quantities_exactly() {
        let cases: &[(&str, i128)] = &[
            ("100m", 100),
            ("0.5", 500),
            ("1", 1000),
            ("2", 2000),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1G", 1_000_000_000_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e-3", 1),
            ("1.5Gi", 1536 * 1024 * 1024 * 1000),
            ("1Ki", 1_024_000),
            ("1k", 1_000_000),
            ("0.1m", 1),
            ("1n", 1),
            ("0", 0),
            ("0m", 0),
            (".5", 500),
            ("5.", 5000),
            ("+1", 1000),
            ("-1", -1000),
            ("250u", 1),
            ("1E", 1_000_000_000_000_000_000_000),
            ("1Ei", (1i128 << 60) * 1000),
            ("110", 110_000),
        ];
        for (s, want) in cases {
            assert_eq!(parse_milli(s), Ok(*want), "{s}");
        }
    }

    #[test]
    fn rejects_malformed_quantities() {
        for s in [
            "", "abc", "1x", "Mi", "1e", "1e+", "1.2.3", "1 Mi", "1mi", "1KB",
        ] {
            assert!(parse_milli(s).is_err(), "{s} should not parse");
        }
        assert!(matches!(
            parse_milli("1e99999"),
            Err(skiff_meta::quantity::QuantityError::Invalid(_))
        ));
        assert_eq!(
            parse_milli(""),
            Err(skiff_meta::quantity::QuantityError::Empty)
        );
    }

    #[test]
    fn milli_to_units_rounds_up() {
        assert_eq!(milli_to_units(1500), 2);
        assert_eq!(milli_to_units(1000), 1);
        assert_eq!(milli_to_units(0), 0);
        assert_eq!(milli_to_units(1), 1);
    }
}
