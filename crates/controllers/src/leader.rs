//! Leader election over `coordination.k8s.io/v1` Leases, as client-go's
//! `leaderelection` does it for kube-controller-manager and kube-scheduler: a candidate
//! takes the Lease when it is absent or its holder's record has not changed for
//! `lease_duration` (timed by this candidate's own clock from when it saw the record, so
//! clock skew between servers does not matter); the holder renews every `retry_period`
//! and stops leading once it has gone `renew_deadline` without a successful renewal,
//! which is before any other candidate may take the Lease. Writes carry the Lease's
//! resourceVersion, so two candidates never both win one term. The datastore is the only
//! source of truth.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Kubernetes' defaults (`--leader-elect-lease-duration`, `-renew-deadline`,
/// `-retry-period`).
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Where the Lease lives: get, create, replace (the replace carries the
/// resourceVersion it read and fails if the Lease changed since).
pub trait LeaseApi: Send + Sync {
    fn get(&self) -> impl Future<Output = Result<Option<Value>, String>> + Send;
    fn create(&self, lease: Value) -> impl Future<Output = Result<(), String>> + Send;
    fn replace(&self, lease: Value) -> impl Future<Output = Result<(), String>> + Send;
}

/// The API server's Lease `namespace/name`.
pub struct KubeLease {
    api: Api<Lease>,
    name: String,
}

impl KubeLease {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        KubeLease {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }
}

/// Lease writes carry the field manager client-go's elector uses.
fn post_params() -> PostParams {
    PostParams {
        field_manager: Some("leader-election".into()),
        ..Default::default()
    }
}

fn to_lease(v: Value) -> Result<Lease, String> {
    serde_json::from_value(v).map_err(|e| format!("encoding the Lease: {e}"))
}

impl LeaseApi for KubeLease {
    async fn get(&self) -> Result<Option<Value>, String> {
        match self.api.get_opt(&self.name).await {
            Ok(l) => l
                .map(|l| serde_json::to_value(l).map_err(|e| e.to_string()))
                .transpose(),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn create(&self, lease: Value) -> Result<(), String> {
        self.api
            .create(&post_params(), &to_lease(lease)?)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn replace(&self, lease: Value) -> Result<(), String> {
        self.api
            .replace(&self.name, &post_params(), &to_lease(lease)?)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The identity client-go gives a candidate: `<host>_<random id>`.
pub fn identity(host: &str) -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{host}_{id}")
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// One candidate for one Lease.
pub struct Elector<L: LeaseApi> {
    api: L,
    name: String,
    namespace: String,
    identity: String,
    timing: Timing,
    /// The holder's record as last seen (holder, renewTime, transitions) and when this
    /// candidate first saw it.
    observed: Option<(Value, Instant)>,
}

impl<L: LeaseApi> Elector<L> {
    pub fn new(api: L, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        Elector {
            api,
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
        }
    }

    fn record(&self, acquire: &str, transitions: i64) -> Value {
        json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.timing.lease_duration.as_secs(),
            "acquireTime": acquire,
            "renewTime": now_micro(),
            "leaseTransitions": transitions,
        })
    }

    /// One attempt: true when this candidate holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, String> {
        let Some(mut lease) = self.api.get().await? else {
            let now = now_micro();
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self.record(&now, 0),
            });
            self.api.create(lease).await?;
            self.observed = None;
            return Ok(true);
        };
        let spec = lease.get("spec").cloned().unwrap_or(Value::Null);
        let holder = spec
            .get("holderIdentity")
            .and_then(Value::as_str)
            .unwrap_or("");
        let seen = json!([holder, spec.get("renewTime"), spec.get("leaseTransitions")]);
        let now = Instant::now();
        let since = match &self.observed {
            Some((rec, at)) if rec == &seen => *at,
            _ => {
                self.observed = Some((seen, now));
                now
            }
        };
        let duration = spec
            .get("leaseDurationSeconds")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .unwrap_or(self.timing.lease_duration);
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() && now < since + duration {
            return Ok(false);
        }
        let transitions = spec
            .get("leaseTransitions")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let record = if mine {
            let acquire = spec
                .get("acquireTime")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(now_micro);
            self.record(&acquire, transitions)
        } else {
            self.record(&now_micro(), transitions + 1)
        };
        lease["spec"] = record;
        self.api.replace(lease).await?;
        self.observed = None;
        Ok(true)
    }

    /// Campaigns until `stop`: `leading` is true while this candidate holds the Lease.
    /// It turns false at once when a renewal fails past the renew deadline.
    pub async fn run(mut self, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let t = self.timing.clone();
        let lease = format!("{}/{}", self.namespace, self.name);
        loop {
            // Candidate.
            loop {
                if *stop.borrow() {
                    return;
                }
                match self.try_acquire_or_renew().await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::debug!(%lease, error = %e, "acquiring the lease"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(t.retry_period) => {}
                    _ = stop.changed() => {}
                }
            }
            let mut renewed = Instant::now();
            tracing::info!(%lease, identity = %self.identity, "started leading");
            let _ = leading.send(true);
            // Leader: renew every retry period; give up at the renew deadline.
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(t.retry_period) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    let _ = leading.send(false);
                    return;
                }
                let deadline = renewed + t.renew_deadline;
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(true)) => renewed = Instant::now(),
                    Ok(Ok(false)) => {
                        tracing::info!(%lease, "another candidate holds the lease");
                        break;
                    }
                    Ok(Err(e)) => tracing::warn!(%lease, error = %e, "renewing the lease"),
                    Err(_) => {}
                }
                if Instant::now() >= deadline {
                    tracing::warn!(%lease, "could not renew the lease within the renew deadline");
                    break;
                }
            }
            tracing::info!(%lease, identity = %self.identity, "stopped leading");
            let _ = leading.send(false);
        }
    }
}

/// Runs `component` (given a stop signal of its own) whenever `leading` is true, and
/// stops it (waiting for it to end) as soon as it turns false or `stop` fires.
pub async fn while_leading<F, Fut>(
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    component: F,
) where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        while !*leading.borrow_and_update() {
            tokio::select! {
                r = leading.changed() => if r.is_err() { return },
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(component(rx));
        while *leading.borrow_and_update() && !*stop.borrow() {
            tokio::select! {
                r = leading.changed() => if r.is_err() { break },
                _ = stop.changed() => {}
            }
        }
        let _ = tx.send(true);
        let _ = task.await;
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
