//! End-to-end scheduling decisions over realistic Node and Pod objects, through the
//! public API only.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};
use skiff_informer::CachedPod;
use skiff_scheduler::{Filtered, NodeScore, Snapshot, Unschedulable};
use skiff_testsupport::objects::{self, pod};
use std::collections::BTreeMap;

// The scheduler works on pods as the pods informer caches them.
fn schedule(p: &Pod, snap: &Snapshot) -> Result<String, Unschedulable> {
    skiff_scheduler::schedule(&CachedPod::from(p), snap)
}

fn filter(p: &Pod, snap: &Snapshot) -> Filtered {
    skiff_scheduler::filter(&CachedPod::from(p), snap)
}

fn score(p: &Pod, snap: &Snapshot) -> BTreeMap<String, NodeScore> {
    skiff_scheduler::score(&CachedPod::from(p), snap)
}

fn node_with(name: &str, labels: Value, allocatable: Value, spec: Value) -> Node {
    let mut labels = labels;
    if let Some(m) = labels.as_object_mut() {
        m.entry("kubernetes.io/os")
            .or_insert_with(|| json!("linux"));
    }
    let mut n = objects::node(name, labels, allocatable, spec);
    n.status.get_or_insert_with(Default::default).node_info = Some(
        serde_json::from_value(json!({"architecture": "amd64", "operatingSystem": "linux",
            "kubeletVersion": "v1.33.0", "bootID": "", "containerRuntimeVersion": "skiff://0.1.0",
            "kernelVersion": "6.1.0", "kubeProxyVersion": "", "machineID": "", "osImage": "skiff",
            "systemUUID": ""}))
        .expect("nodeInfo JSON"),
    );
    n
}

fn alloc(cpu: &str, memory: &str) -> Value {
    json!({"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "50Gi"})
}

fn node(name: &str, labels: Value) -> Node {
    node_with(name, labels, alloc("4", "8Gi"), json!({}))
}

/// A Deployment-style replica: one nginx container with requests.
fn replica(name: &str, cpu: &str, memory: &str) -> Pod {
    pod(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "nginx", "pod-template-hash": "7c5ddbdf54"}},
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}}
            }],
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        },
        "status": {"phase": "Pending"}
    }))
}

fn with_spec(mut p: Pod, patch: Value) -> Pod {
    let mut v = serde_json::to_value(&p).expect("pod to JSON");
    if let (Some(spec), Some(patch)) = (v["spec"].as_object_mut(), patch.as_object()) {
        for (k, val) in patch {
            spec.insert(k.clone(), val.clone());
        }
    }
    p = serde_json::from_value(v).expect("patched pod");
    p
}

/// Binds the pod as the controller would, and adds it to the snapshot.
fn bind(snap: &mut Snapshot, mut p: Pod, node_name: &str) {
    if let Some(spec) = p.spec.as_mut() {
        spec.node_name = Some(node_name.to_string());
    }
    p.status = Some(serde_json::from_value(json!({"phase": "Running"})).expect("status"));
    snap.pods.push(p.into());
}

fn schedule_and_bind(snap: &mut Snapshot, p: Pod) -> Result<String, String> {
    snap.pods.push(p.clone().into());
    let result = schedule(&p, snap).map_err(|e| e.message);
    snap.pods.pop();
    if let Ok(n) = &result {
        bind(snap, p, n);
    }
    result
}

#[test]
fn resources_fit_and_do_not_fit() {
    let mut snap = Snapshot {
        nodes: vec![node_with("small", json!({}), alloc("1", "1Gi"), json!({}))],
        ..Default::default()
    };
    assert_eq!(
        schedule_and_bind(&mut snap, replica("a", "600m", "512Mi")),
        Ok("small".into())
    );
    assert_eq!(
        schedule_and_bind(&mut snap, replica("b", "600m", "256Mi")),
        Err("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into())
    );
    assert_eq!(
        schedule_and_bind(&mut snap, replica("c", "400m", "600Mi")),
        Err("0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into())
    );
    assert_eq!(
        schedule_and_bind(&mut snap, replica("d", "400m", "512Mi")),
        Ok("small".into())
    );
    // A pod larger than the node: preemption could never help.
    assert_eq!(
        schedule_and_bind(&mut snap, replica("e", "2", "2Gi")),
        Err("0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into())
    );
    // Finished pods release their requests.
    for p in snap.pods.iter_mut() {
        p.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).expect("status"));
    }
    assert_eq!(
        schedule_and_bind(&mut snap, replica("f", "1", "1Gi")),
        Ok("small".into())
    );
}

#[test]
fn a_pod_is_the_unit_of_scheduling() {
    // Two containers of 1.5 cpu each need one node with 3 cpu free, not two nodes.
    let snap = Snapshot {
        nodes: vec![
            node_with("two-cpu", json!({}), alloc("2", "8Gi"), json!({})),
            node_with("four-cpu", json!({}), alloc("4", "8Gi"), json!({})),
        ],
        ..Default::default()
    };
    let p = pod(json!({
        "metadata": {"name": "pair", "namespace": "default"},
        "spec": {"containers": [
            {"name": "a", "image": "busybox", "resources": {"requests": {"cpu": "1500m"}}},
            {"name": "b", "image": "busybox", "resources": {"requests": {"cpu": "1.5"}}}
        ]}
    }));
    assert_eq!(schedule(&p, &snap), Ok("four-cpu".to_string()));
    assert_eq!(
        filter(&p, &snap).per_node["two-cpu"],
        vec!["Insufficient cpu".to_string()]
    );
}

#[test]
fn node_selector() {
    let snap = Snapshot {
        nodes: vec![
            node("hdd-1", json!({"disktype": "hdd"})),
            node("ssd-1", json!({"disktype": "ssd"})),
        ],
        ..Default::default()
    };
    let p = with_spec(
        replica("p", "100m", "64Mi"),
        json!({"nodeSelector": {"disktype": "ssd"}}),
    );
    assert_eq!(schedule(&p, &snap), Ok("ssd-1".to_string()));
    let p = with_spec(
        replica("p", "100m", "64Mi"),
        json!({"nodeSelector": {"disktype": "nvme"}}),
    );
    let err = schedule(&p, &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(err.to_string(), err.message);
    assert_eq!(err.per_node.len(), 2);
}

#[test]
fn node_affinity_operators() {
    let snap = Snapshot {
        nodes: vec![
            node("a", json!({"zone": "east", "cores": "8"})),
            node("b", json!({"zone": "west", "cores": "32"})),
            node("c", json!({"zone": "north"})),
        ],
        ..Default::default()
    };
    let feasible = |exprs: Value| -> Vec<String> {
        let p = with_spec(
            replica("p", "100m", "64Mi"),
            json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [exprs]}}}}),
        );
        filter(&p, &snap).feasible
    };
    let e = |key: &str, op: &str, values: Value| json!({"matchExpressions": [{"key": key, "operator": op, "values": values}]});
    assert_eq!(
        feasible(e("zone", "In", json!(["east", "west"]))),
        ["a", "b"]
    );
    assert_eq!(feasible(e("zone", "NotIn", json!(["east"]))), ["b", "c"]);
    assert_eq!(feasible(e("cores", "Exists", json!(null))), ["a", "b"]);
    assert_eq!(feasible(e("cores", "DoesNotExist", json!(null))), ["c"]);
    assert_eq!(feasible(e("cores", "Gt", json!(["16"]))), ["b"]);
    assert_eq!(feasible(e("cores", "Lt", json!(["16"]))), ["a"]);
    assert_eq!(
        feasible(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]})
        ),
        ["c"]
    );
    // Terms are ORed.
    let p = with_spec(
        replica("p", "100m", "64Mi"),
        json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            e("zone", "In", json!(["north"])), e("cores", "Gt", json!(["16"]))
        ]}}}}),
    );
    assert_eq!(filter(&p, &snap).feasible, ["b", "c"]);
}

#[test]
fn preferred_node_affinity_decides_between_feasible_nodes() {
    let snap = Snapshot {
        nodes: vec![
            node("a", json!({"zone": "east"})),
            node("b", json!({"zone": "west"})),
        ],
        ..Default::default()
    };
    let p = with_spec(
        replica("p", "100m", "64Mi"),
        json!({"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["west"]}]}}
        ]}}}),
    );
    assert_eq!(schedule(&p, &snap), Ok("b".to_string()));
}

#[test]
fn taints_and_tolerations() {
    let snap = Snapshot {
        nodes: vec![
            node_with(
                "control-plane",
                json!({"node-role.kubernetes.io/control-plane": ""}),
                alloc("4", "8Gi"),
                json!({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}),
            ),
            node_with(
                "gpu",
                json!({}),
                alloc("4", "8Gi"),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
            ),
        ],
        ..Default::default()
    };
    let p = replica("p", "100m", "64Mi");
    assert_eq!(
        schedule(&p, &snap).unwrap_err().message,
        "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let tolerant = with_spec(
        p.clone(),
        json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
        ]}),
    );
    assert_eq!(schedule(&tolerant, &snap), Ok("gpu".to_string()));
    let everything = with_spec(p.clone(), json!({"tolerations": [{"operator": "Exists"}]}));
    assert!(schedule(&everything, &snap).is_ok());

    // PreferNoSchedule only steers.
    let snap = Snapshot {
        nodes: vec![
            node_with(
                "a-spot",
                json!({}),
                alloc("4", "8Gi"),
                json!({"taints": [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]}),
            ),
            node("b-ondemand", json!({})),
        ],
        ..Default::default()
    };
    assert_eq!(schedule(&p, &snap), Ok("b-ondemand".to_string()));
    let spot_ok = with_spec(
        p,
        json!({"tolerations": [{"key": "spot", "operator": "Exists"}]}),
    );
    assert_eq!(schedule(&spot_ok, &snap), Ok("a-spot".to_string()));
}

#[test]
fn unschedulable_and_named_nodes() {
    let snap = Snapshot {
        nodes: vec![
            node_with(
                "cordoned",
                json!({}),
                alloc("4", "8Gi"),
                json!({"unschedulable": true,
                "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
            ),
            node("open", json!({})),
        ],
        ..Default::default()
    };
    let p = replica("p", "100m", "64Mi");
    assert_eq!(schedule(&p, &snap), Ok("open".to_string()));
    let named = with_spec(p.clone(), json!({"nodeName": "cordoned"}));
    let err = schedule(&named, &snap).unwrap_err();
    assert_eq!(err.per_node["cordoned"], ["node(s) were unschedulable"]);
    assert_eq!(
        err.per_node["open"],
        ["node(s) didn't match the requested node name"]
    );
    let daemon = with_spec(
        p,
        json!({"nodeName": "cordoned", "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}
        ]}),
    );
    assert_eq!(schedule(&daemon, &snap), Ok("cordoned".to_string()));
}

#[test]
fn host_port_conflict() {
    let mut snap = Snapshot {
        nodes: vec![node("n1", json!({})), node("n2", json!({}))],
        ..Default::default()
    };
    let ingress = |name: &str| {
        with_spec(
            replica(name, "100m", "64Mi"),
            json!({"containers": [{
                "name": "ingress", "image": "nginx",
                "ports": [{"containerPort": 80, "hostPort": 80, "protocol": "TCP"}]
            }]}),
        )
    };
    assert_eq!(schedule_and_bind(&mut snap, ingress("i1")), Ok("n1".into()));
    assert_eq!(schedule_and_bind(&mut snap, ingress("i2")), Ok("n2".into()));
    assert_eq!(
        schedule_and_bind(&mut snap, ingress("i3")),
        Err("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.".into())
    );
    // UDP on the same port does not conflict.
    let dns = with_spec(
        replica("dns", "100m", "64Mi"),
        json!({"containers": [{
            "name": "dns", "image": "coredns",
            "ports": [{"containerPort": 53, "hostPort": 80, "protocol": "UDP"}]
        }]}),
    );
    assert!(schedule(&dns, &snap).is_ok());
}

#[test]
fn pod_anti_affinity_spreads_replicas_across_hosts() {
    let mut snap = Snapshot {
        nodes: vec![
            node("n1", json!({})),
            node("n2", json!({})),
            node("n3", json!({})),
        ],
        ..Default::default()
    };
    let anti = |name: &str| {
        with_spec(
            replica(name, "10m", "16Mi"),
            json!({"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "nginx"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}}),
        )
    };
    // Make n1 the most attractive by LeastAllocated: the others already carry load.
    bind(
        &mut snap,
        pod(
            json!({"metadata": {"name": "load2", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}),
        ),
        "n2",
    );
    bind(
        &mut snap,
        pod(
            json!({"metadata": {"name": "load3", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}}),
        ),
        "n3",
    );
    let mut placed: Vec<String> = (0..3)
        .map(|i| schedule_and_bind(&mut snap, anti(&format!("web-{i}"))).expect("fits"))
        .collect();
    assert_eq!(placed, ["n1", "n2", "n3"]);
    placed.sort();
    placed.dedup();
    assert_eq!(placed.len(), 3);
    assert_eq!(
        schedule_and_bind(&mut snap, anti("web-3")),
        Err("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".into())
    );
    // A pod of another app that existing replicas' anti-affinity does not select fits.
    let other = with_spec(
        pod(
            json!({"metadata": {"name": "db", "namespace": "default", "labels": {"app": "db"}},
        "spec": {"containers": [{"name": "db"}]}}),
        ),
        json!({}),
    );
    assert!(schedule(&other, &snap).is_ok());
}

#[test]
fn existing_pods_anti_affinity_keeps_others_away() {
    let mut snap = Snapshot {
        nodes: vec![node("n1", json!({})), node("n2", json!({}))],
        ..Default::default()
    };
    let loner = with_spec(
        replica("loner", "10m", "16Mi"),
        json!({"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, "topologyKey": "kubernetes.io/hostname"}
        ]}}}),
    );
    bind(&mut snap, loner, "n1");
    let p = replica("other", "10m", "16Mi");
    let f = filter(&p, &snap);
    assert_eq!(f.feasible, ["n2"]);
    assert_eq!(
        f.per_node["n1"],
        ["node(s) didn't satisfy existing pods anti-affinity rules"]
    );
}

#[test]
fn pod_affinity_co_locates() {
    let mut snap = Snapshot {
        nodes: vec![
            node("n1", json!({"zone": "a"})),
            node("n2", json!({"zone": "b"})),
        ],
        ..Default::default()
    };
    bind(
        &mut snap,
        pod(
            json!({"metadata": {"name": "cache", "namespace": "default", "labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "redis"}]}}),
        ),
        "n2",
    );
    let p = with_spec(
        replica("web", "100m", "64Mi"),
        json!({"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}
        ]}}}),
    );
    assert_eq!(schedule(&p, &snap), Ok("n2".to_string()));
    // Preferred affinity steers without excluding.
    let pref = with_spec(
        replica("web", "100m", "64Mi"),
        json!({"affinity": {"podAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}}
        ]}}}),
    );
    assert_eq!(schedule(&pref, &snap), Ok("n2".to_string()));
    // Nothing matches in the cache's namespace: unschedulable.
    let elsewhere = with_spec(
        replica("web", "100m", "64Mi"),
        json!({"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone", "namespaces": ["prod"]}
        ]}}}),
    );
    assert_eq!(
        schedule(&elsewhere, &snap).unwrap_err().message,
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn topology_spread_across_zones() {
    let mut snap = Snapshot {
        nodes: vec![
            node("a1", json!({"topology.kubernetes.io/zone": "a"})),
            node("a2", json!({"topology.kubernetes.io/zone": "a"})),
            node("b1", json!({"topology.kubernetes.io/zone": "b"})),
        ],
        ..Default::default()
    };
    let spread = |name: &str| {
        with_spec(
            replica(name, "100m", "64Mi"),
            json!({"topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "nginx"}}
            }]}),
        )
    };
    let placed: Vec<String> = (0..4)
        .map(|i| schedule_and_bind(&mut snap, spread(&format!("web-{i}"))).expect("fits"))
        .collect();
    let zone_a = placed.iter().filter(|n| n.starts_with('a')).count();
    assert_eq!(zone_a, 2, "{placed:?}");
    // With 2 in each zone and b full, the next one must not go to zone a twice in a row.
    snap.nodes[2] = node_with(
        "b1",
        json!({"topology.kubernetes.io/zone": "b"}),
        alloc("4", "8Gi"),
        json!({"unschedulable": true}),
    );
    assert_eq!(
        schedule_and_bind(&mut snap, spread("web-4")).map(|n| n.starts_with('a')),
        Ok(true)
    );
    assert_eq!(
        schedule_and_bind(&mut snap, spread("web-5")),
        Err("0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.".into())
    );
}

#[test]
fn schedule_anyway_spread_prefers_the_empty_zone() {
    let mut snap = Snapshot {
        nodes: vec![
            node("a1", json!({"topology.kubernetes.io/zone": "a"})),
            node("b1", json!({"topology.kubernetes.io/zone": "b"})),
        ],
        ..Default::default()
    };
    // The zone-a node is emptier by resources, but holds the app's pods.
    bind(&mut snap, replica("old-1", "10m", "16Mi"), "a1");
    bind(&mut snap, replica("old-2", "10m", "16Mi"), "a1");
    bind(
        &mut snap,
        pod(
            json!({"metadata": {"name": "load", "namespace": "kube-system"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}),
        ),
        "b1",
    );
    let p = with_spec(
        replica("web", "100m", "64Mi"),
        json!({"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "nginx"}}
        }]}),
    );
    let scores = score(&p, &snap);
    assert_eq!(scores["b1"].plugins["PodTopologySpread"], 100);
    assert_eq!(scores["a1"].plugins["PodTopologySpread"], 0);
    assert_eq!(schedule(&p, &snap), Ok("b1".to_string()));
}

#[test]
fn failed_scheduling_message_for_a_mixed_case() {
    // The brief's example: one node too small for the request, two without the label.
    let snap = Snapshot {
        nodes: vec![
            node_with(
                "small",
                json!({"disktype": "ssd"}),
                alloc("1", "8Gi"),
                json!({}),
            ),
            node("hdd-1", json!({"disktype": "hdd"})),
            node("hdd-2", json!({"disktype": "hdd"})),
        ],
        ..Default::default()
    };
    let p = with_spec(
        replica("p", "2", "1Gi"),
        json!({"nodeSelector": {"disktype": "ssd"}}),
    );
    let err = schedule(&p, &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    assert_eq!(err.per_node["small"], ["Insufficient cpu"]);

    // Every kind of failure at once.
    let mut snap = Snapshot {
        nodes: vec![
            node_with(
                "cordoned",
                json!({"disktype": "ssd"}),
                alloc("4", "8Gi"),
                json!({"unschedulable": true}),
            ),
            node_with(
                "gpu",
                json!({"disktype": "ssd"}),
                alloc("4", "8Gi"),
                json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
            ),
            node("ports", json!({"disktype": "ssd"})),
            node("full", json!({"disktype": "ssd"})),
            node("hdd", json!({"disktype": "hdd"})),
        ],
        ..Default::default()
    };
    let web = |name: &str, cpu: &str, mem: &str| {
        with_spec(
            replica(name, cpu, mem),
            json!({
                "nodeSelector": {"disktype": "ssd"},
                "containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": mem}},
                    "ports": [{"containerPort": 8080, "hostPort": 8080}]}]
            }),
        )
    };
    bind(&mut snap, web("holder", "100m", "64Mi"), "ports");
    bind(&mut snap, replica("hog", "3500m", "7Gi"), "full");
    let err = schedule(&web("new", "1", "2Gi"), &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/5 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable. preemption: 0/5 nodes are available: 2 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling."
    );
    assert_eq!(
        err.per_node["full"],
        ["Insufficient cpu", "Insufficient memory"]
    );

    let never = with_spec(
        web("never", "1", "2Gi"),
        json!({"preemptionPolicy": "Never"}),
    );
    assert!(schedule(&never, &snap).unwrap_err().message.ends_with(
        "1 node(s) were unschedulable. preemption: not eligible due to preemptionPolicy=Never."
    ));
}

#[test]
fn no_nodes_at_all() {
    let err = schedule(&replica("p", "100m", "64Mi"), &Snapshot::default()).unwrap_err();
    assert_eq!(err.message, "no nodes available to schedule pods");
}

#[test]
fn pending_until_a_labelled_node_joins() {
    let mut snap = Snapshot {
        nodes: vec![
            node("worker-1", json!({})),
            node("worker-2", json!({"gpu": "false"})),
        ],
        ..Default::default()
    };
    let p = with_spec(
        replica("trainer", "1", "1Gi"),
        json!({"nodeSelector": {"gpu": "true"}}),
    );
    snap.pods.push(p.clone().into());
    let err = schedule(&p, &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    snap.nodes.push(node("worker-3", json!({"gpu": "true"})));
    assert_eq!(schedule(&p, &snap), Ok("worker-3".to_string()));
}

#[test]
fn identical_pods_spread_across_equal_nodes() {
    let mut snap = Snapshot {
        nodes: vec![
            node("n1", json!({})),
            node("n2", json!({})),
            node("n3", json!({})),
        ],
        ..Default::default()
    };
    let mut per_node = std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for i in 0..9 {
        let n = schedule_and_bind(&mut snap, replica(&format!("web-{i}"), "250m", "256Mi"))
            .expect("fits");
        *per_node.entry(n.clone()).or_insert(0) += 1;
        order.push(n);
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [3, 3, 3],
        "{order:?}"
    );
    // Deterministic: ties go to the first name.
    assert_eq!(&order[..3], ["n1", "n2", "n3"]);
    // Best-effort pods (no requests) spread too, by the 100m / 200Mi defaults.
    let mut snap = Snapshot {
        nodes: vec![node("n1", json!({})), node("n2", json!({}))],
        ..Default::default()
    };
    let bare = |name: &str| {
        pod(json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    };
    let placed: Vec<String> = (0..4)
        .map(|i| schedule_and_bind(&mut snap, bare(&format!("b{i}"))).expect("fits"))
        .collect();
    assert_eq!(placed, ["n1", "n2", "n1", "n2"]);
}

#[test]
fn scores_are_exposed_per_plugin() {
    let snap = Snapshot {
        nodes: vec![node("n1", json!({})), node("n2", json!({}))],
        ..Default::default()
    };
    let s = score(&replica("p", "1", "2Gi"), &snap);
    let n1 = &s["n1"];
    assert_eq!(n1.plugins["NodeResourcesFit"], 75);
    assert_eq!(n1.plugins["NodeResourcesBalancedAllocation"], 100);
    assert_eq!(n1.plugins["TaintToleration"], 100);
    // 3*100 (taints) + 2*0 (node affinity) + 2*0 (spread) + 2*0 (inter-pod) + 75 + 100.
    assert_eq!(n1.total, 475);
}

#[test]
fn node_name_match_fields_narrow_the_nodes_first() {
    let snap = Snapshot {
        nodes: vec![
            node("a", json!({})),
            node_with("b", json!({}), alloc("100m", "8Gi"), json!({})),
            node("c", json!({})),
        ],
        ..Default::default()
    };
    let pinned = |terms: Value| {
        with_spec(
            replica("p", "500m", "64Mi"),
            json!({"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
        )
    };
    let field = |vals: Value| json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": vals}]});
    assert_eq!(
        schedule(&pinned(json!([field(json!(["c"]))])), &snap),
        Ok("c".to_string())
    );
    let err = schedule(&pinned(json!([field(json!(["b"]))])), &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let conflict = json!([{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["a"]},
        {"key": "metadata.name", "operator": "In", "values": ["b"]}
    ]}]);
    let err = schedule(&pinned(conflict), &snap).unwrap_err();
    assert_eq!(
        err.message,
        "0/3 nodes are available: pod affinity terms conflict. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    assert_eq!(err.per_node.len(), 3);
}
