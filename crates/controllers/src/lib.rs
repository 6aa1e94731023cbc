//! skiff-controllers: the control loops that make API objects true. Each is a
//! level-triggered reconcile pass over the current state; none relies on having
//! seen every event. Today: the scheduler's binding loop, Deployments, ReplicaSets, Jobs,
//! CronJobs, DaemonSets and background garbage collection. ( DaemonSet, StatefulSet, node
//! lifecycle and endpoints are the next ones.)

pub mod cronjobs;

/// Objects in namespace `ns` whose controlling owner has `uid`.
pub fn controlled_by<'a, K: kube::Resource>(items: &'a [K], ns: &str, uid: &str) -> Vec<&'a K> {
    items
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter(|o| {
            o.meta()
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == uid && r.controller == Some(true))
        })
        .collect()
}
pub mod daemonsets;
pub mod jobs;
pub mod scheduling;
pub mod workloads;
