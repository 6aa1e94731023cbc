//! The wiring of the workload controllers: each one's work queue, fed by the shared
//! informers (an object's change queues its key, an owned object's change its
//! owner's), its workers and its periodic resync.

use crate::cronjobs::CronJobs;
use crate::daemonsets::DaemonSets;
use crate::jobs::Jobs;
use crate::statefulsets::StatefulSets;
use crate::workloads::{Deployments, ReplicaOwner, Replicas};
use kube::Client;
use skiff_informer::Informers;
use skiff_informer::{resync, run_workers, stopped, Expectations, Informer, Key, Queue, Requeue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Starts controller `$c` (a value with `async fn reconcile(&self, Key)`) over
/// `$queue` with [`spawn_controller`].
macro_rules! spawn {
    ($name:expr, $workers:expr, $queue:expr, $primary:expr, $inf:expr, $stop:expr, $c:expr) => {{
        let c = Arc::new($c);
        spawn_controller(
            $name,
            $workers,
            $queue,
            $primary,
            $inf.clone(),
            $stop.clone(),
            move |k| {
                let c = c.clone();
                async move { c.reconcile(k).await }
            },
        )
    }};
}

/// How often every object is reconciled even if nothing was seen to change.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Queues the key of every object of `informer` that changes.
pub fn enqueue_changed<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
    informer: &Informer<K>,
    queue: &Arc<Queue>,
) {
    let q = queue.clone();
    informer.on_change(move |o| q.add(Key::of(o)));
}

/// Queues the controlling owner of kind `kind` of every object of `informer` that changes.
pub fn enqueue_owner<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
    informer: &Informer<K>,
    kind: &'static str,
    queue: &Arc<Queue>,
) {
    let q = queue.clone();
    informer.on_change(move |o| {
        if let Some(k) = Key::controller_of(o, kind) {
            q.add(k)
        }
    });
}

/// The replica controller for owners of kind `K` (ReplicaSets or ReplicationControllers):
/// one queue fed by the owners and by their pods, one reconcile.
fn spawn_replicas<K>(
    name: &'static str,
    client: &Client,
    owners: Informer<K>,
    inf: &Informers,
    stop: &watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()>
where
    K: ReplicaOwner + kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let q = Queue::new();
    enqueue_changed(&owners, &q);
    enqueue_owner(&inf.pods, K::KIND, &q);
    spawn!(
        name,
        5,
        q,
        owners,
        inf,
        stop,
        Replicas::<K> {
            client: client.clone(),
            owners: owners.clone(),
            pods: inf.pods.clone(),
            expectations: Expectations::new(inf.pods.clone()),
        }
    )
}

/// Starts a controller's workers over `queue` once the caches are synced, with a
/// resync of every object of `primary` every [`RESYNC`].
pub fn spawn_controller<K, F, Fut>(
    name: &'static str,
    workers: usize,
    queue: Arc<Queue>,
    primary: Informer<K>,
    informers: Informers,
    stop: watch::Receiver<bool>,
    reconcile: F,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: Fn(Key) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Requeue, kube::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            _ = informers.synced() => {}
            _ = stopped(stop.clone()) => return,
        }
        tokio::spawn(resync(primary, queue.clone(), RESYNC, stop.clone()));
        run_workers(name, queue, workers, reconcile, stop).await;
    })
}

/// Starts the workload controllers (Deployments, ReplicaSets, ReplicationControllers, StatefulSets, Jobs,
/// CronJobs, DaemonSets) over the shared informers; they run until `stop`.
pub fn start(
    client: &Client,
    inf: &Informers,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();

    tasks.push(spawn_replicas(
        "replicaset",
        client,
        inf.replicasets.clone(),
        inf,
        stop,
    ));
    tasks.push(spawn_replicas(
        "replicationcontroller",
        client,
        inf.replication_controllers.clone(),
        inf,
        stop,
    ));

    let q = Queue::new();
    enqueue_changed(&inf.deployments, &q);
    enqueue_owner(&inf.replicasets, "Deployment", &q);
    tasks.push(spawn!(
        "deployment",
        5,
        q,
        inf.deployments.clone(),
        inf,
        stop,
        Deployments {
            client: client.clone(),
            deployments: inf.deployments.clone(),
            replicasets: inf.replicasets.clone(),
            expectations: Expectations::new(inf.replicasets.clone()),
        }
    ));

    let q = Queue::new();
    enqueue_changed(&inf.statefulsets, &q);
    enqueue_owner(&inf.pods, "StatefulSet", &q);
    enqueue_owner(&inf.revisions, "StatefulSet", &q);
    tasks.push(spawn!(
        "statefulset",
        2,
        q,
        inf.statefulsets.clone(),
        inf,
        stop,
        StatefulSets {
            client: client.clone(),
            statefulsets: inf.statefulsets.clone(),
            pods: inf.pods.clone(),
            revisions: inf.revisions.clone(),
            expectations: Expectations::new(inf.pods.clone()),
        }
    ));

    let q = Queue::new();
    enqueue_changed(&inf.jobs, &q);
    enqueue_owner(&inf.pods, "Job", &q);
    tasks.push(spawn!(
        "job",
        3,
        q,
        inf.jobs.clone(),
        inf,
        stop,
        Jobs {
            client: client.clone(),
            jobs: inf.jobs.clone(),
            pods: inf.pods.clone(),
            expectations: Expectations::new(inf.pods.clone()),
        }
    ));

    let q = Queue::new();
    enqueue_changed(&inf.cronjobs, &q);
    enqueue_owner(&inf.jobs, "CronJob", &q);
    tasks.push(spawn!(
        "cronjob",
        2,
        q,
        inf.cronjobs.clone(),
        inf,
        stop,
        CronJobs {
            client: client.clone(),
            cronjobs: inf.cronjobs.clone(),
            jobs: inf.jobs.clone(),
            expectations: Expectations::new(inf.jobs.clone()),
        }
    ));

    let q = Queue::new();
    enqueue_changed(&inf.daemonsets, &q);
    enqueue_owner(&inf.pods, "DaemonSet", &q);
    enqueue_owner(&inf.revisions, "DaemonSet", &q);
    {
        // A node that comes, goes or changes may change where every set runs.
        let (q, sets) = (q.clone(), inf.daemonsets.clone());
        inf.nodes.on_change(move |_| {
            for ds in sets.state() {
                q.add(Key::of(ds.as_ref()));
            }
        });
    }
    tasks.push(spawn!(
        "daemonset",
        2,
        q,
        inf.daemonsets.clone(),
        inf,
        stop,
        DaemonSets {
            client: client.clone(),
            daemonsets: inf.daemonsets.clone(),
            nodes: inf.nodes.clone(),
            pods: inf.pods.clone(),
            revisions: inf.revisions.clone(),
            expectations: Expectations::new(inf.pods.clone()),
        }
    ));
    tasks
}
