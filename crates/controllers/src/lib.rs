//! skiff-controllers: the control loops that make API objects true. Each is a
//! level-triggered reconcile pass over the current state; none relies on having
//! seen every event. Today: the scheduler's binding loop, Deployments, ReplicaSets, Jobs,
//! CronJobs, DaemonSets and background garbage collection. ( DaemonSet, StatefulSet, node
//! lifecycle and endpoints are the next ones.)

pub mod cronjobs;
pub mod daemonsets;
pub mod jobs;
pub mod scheduling;
pub mod workloads;
