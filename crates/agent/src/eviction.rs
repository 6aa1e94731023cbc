//! Which pod goes first when the node is starved of a resource: the kubelet's ranking
//! (pkg/kubelet/eviction/helpers.go). Under memory pressure: pods whose usage exceeds
//! their requests first, then lower priority first, then the largest usage above
//! requests first; disk pressure the same with ephemeral storage; PID pressure by
//! priority, then the most processes. Pods without usage figures go first, as the
//! kubelet's do.

use k8s_openapi::api::core::v1::{Container, Pod};
use std::cmp::Ordering;

/// The resource the node is short of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Memory,
    Disk,
    Pids,
}

impl Signal {
    /// The resource named in the Evicted message.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::Memory => "memory",
            Signal::Disk => "ephemeral-storage",
            Signal::Pids => "pids",
        }
    }
}

/// What a pod uses right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Working set bytes of its containers.
    pub memory: u64,
    /// Bytes of its writable layers, logs and local volumes.
    pub disk: u64,
    pub processes: u64,
}

/// A pod the node may evict.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    /// The pod's memory and ephemeral-storage requests in bytes.
    pub memory_request: u64,
    pub disk_request: u64,
    /// None: no figures could be read.
    pub usage: Option<Usage>,
}

impl Candidate {
    pub fn new(uid: &str, pod: &Pod, usage: Option<Usage>) -> Candidate {
        Candidate {
            uid: uid.to_string(),
            priority: pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            memory_request: pod_request(pod, "memory"),
            disk_request: pod_request(pod, "ephemeral-storage"),
            usage,
        }
    }

    fn used_and_requested(&self, signal: Signal) -> Option<(u64, u64)> {
        let u = self.usage?;
        Some(match signal {
            Signal::Memory => (u.memory, self.memory_request),
            Signal::Disk => (u.disk, self.disk_request),
            Signal::Pids => (u.processes, 0),
        })
    }
}

/// A container's request of `resource` in bytes.
fn request(c: &Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| crate::podspec::parse_quantity_milli(&q.0).ok())
        .map(|m| (m / 1000).max(0) as u64)
        .unwrap_or(0)
}

/// The pod's request of `resource` as the kubelet sums it: its containers' requests,
/// or its largest init container's when that is more.
pub fn pod_request(pod: &Pod, resource: &str) -> u64 {
    let Some(spec) = &pod.spec else { return 0 };
    let sum: u64 = spec.containers.iter().map(|c| request(c, resource)).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| request(c, resource))
        .max()
        .unwrap_or(0);
    sum.max(init)
}

/// The kubelet's cmpBool: `a` before `b` when only `a` holds.
fn first_if(a: bool, b: bool) -> Ordering {
    match (a, b) {
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Pods without figures first (the kubelet evicts those it cannot measure first).
fn unmeasured(a: &Candidate, b: &Candidate) -> Ordering {
    first_if(a.usage.is_none(), b.usage.is_none())
}

fn exceeds_requests(signal: Signal) -> impl Fn(&Candidate, &Candidate) -> Ordering {
    move |a, b| match (a.used_and_requested(signal), b.used_and_requested(signal)) {
        (Some((ua, ra)), Some((ub, rb))) => first_if(ua > ra, ub > rb),
        _ => unmeasured(a, b),
    }
}

fn priority(a: &Candidate, b: &Candidate) -> Ordering {
    a.priority.cmp(&b.priority)
}

/// The largest consumer relative to its request first.
fn usage_above_requests(signal: Signal) -> impl Fn(&Candidate, &Candidate) -> Ordering {
    move |a, b| match (a.used_and_requested(signal), b.used_and_requested(signal)) {
        (Some((ua, ra)), Some((ub, rb))) => {
            let above = |u: u64, r: u64| u as i128 - r as i128;
            above(ub, rb).cmp(&above(ua, ra))
        }
        _ => unmeasured(a, b),
    }
}

/// Orders `pods` for eviction under `signal`: the first is evicted first.
pub fn rank(pods: &mut [Candidate], signal: Signal) {
    match signal {
        Signal::Memory | Signal::Disk => {
            let (exceeds, above) = (exceeds_requests(signal), usage_above_requests(signal));
            pods.sort_by(|a, b| {
                exceeds(a, b)
                    .then_with(|| priority(a, b))
                    .then_with(|| above(a, b))
            });
        }
        Signal::Pids => {
            let most = usage_above_requests(Signal::Pids);
            pods.sort_by(|a, b| priority(a, b).then_with(|| most(a, b)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn cand(uid: &str, priority: i32, request: u64, memory: Option<u64>) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            memory_request: request,
            disk_request: request,
            usage: memory.map(|m| Usage {
                memory: m,
                disk: m,
                processes: m / MI,
            }),
        }
    }

    fn order(mut pods: Vec<Candidate>, signal: Signal) -> Vec<String> {
        rank(&mut pods, signal);
        pods.into_iter().map(|c| c.uid).collect()
    }

    #[test]
    fn pods_above_their_requests_go_before_higher_priority_and_bigger_ones() {
        // The kubelet's TestOrderedByExceedsRequestMemory and TestOrderedByPriority,
        // then usage above requests: a high-priority pod over its request goes before a
        // low-priority one within it, however much that one uses.
        let pods = vec![
            cand("within-big", -10, 500 * MI, Some(400 * MI)),
            cand("over-high", 100, 100 * MI, Some(150 * MI)),
            cand("over-low", 0, 100 * MI, Some(120 * MI)),
        ];
        for signal in [Signal::Memory, Signal::Disk] {
            assert_eq!(
                order(pods.clone(), signal),
                ["over-low", "over-high", "within-big"],
                "{signal:?}"
            );
        }
    }

    #[test]
    fn equal_priorities_go_by_usage_above_requests() {
        let pods = vec![
            cand("over-by-10", 0, 100 * MI, Some(110 * MI)),
            cand("over-by-300", 0, 0, Some(300 * MI)),
            cand("over-by-50", 0, 200 * MI, Some(250 * MI)),
            cand("within-by-1", 5, 101 * MI, Some(100 * MI)),
            cand("within-by-90", 5, 100 * MI, Some(10 * MI)),
        ];
        assert_eq!(
            order(pods, Signal::Memory),
            [
                "over-by-300",
                "over-by-50",
                "over-by-10",
                "within-by-1",
                "within-by-90"
            ]
        );
    }

    #[test]
    fn unmeasured_pods_go_first_and_pid_pressure_ranks_by_priority_then_processes() {
        let pods = vec![
            cand("measured", 0, 0, Some(500 * MI)),
            cand("unmeasured", 1000, 0, None),
        ];
        assert_eq!(order(pods, Signal::Memory), ["unmeasured", "measured"]);
        let pods = vec![
            cand("few-low", 0, 0, Some(2 * MI)),
            cand("many-high", 10, 0, Some(90 * MI)),
            cand("many-low", 0, 0, Some(50 * MI)),
        ];
        assert_eq!(
            order(pods, Signal::Pids),
            ["many-low", "few-low", "many-high"]
        );
    }

    #[test]
    fn requests_sum_containers_or_take_the_largest_init_container() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "priority": 7,
                "initContainers": [{"name": "i", "resources": {"requests": {"memory": "300Mi"}}}],
                "containers": [
                    {"name": "a", "resources": {"requests": {"memory": "100Mi", "ephemeral-storage": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"memory": "50Mi"}}},
                    {"name": "c"}
                ]
            }
        }))
        .unwrap();
        let c = Candidate::new("u", &pod, None);
        assert_eq!(
            (c.priority, c.memory_request, c.disk_request),
            (7, 300 * MI, 1 << 30)
        );
    }
}
