//! Jobs: run pods from the template until `completions` have succeeded, at most
//! `parallelism` at a time; a job whose pods failed more than `backoffLimit` times,
//! or that ran past `activeDeadlineSeconds`, fails (FailureTarget, then Failed; success
//! is SuccessCriteriaMet, then Complete, as 1.31+ sets them). Pods are owned by the Job
//! and labelled with its `controller-uid` and `job-name`, as Kubernetes does. In
//! `Indexed` completion mode each pod has an index (label and annotation
//! `batch.kubernetes.io/job-completion-index`, env `JOB_COMPLETION_INDEX`, hostname
//! `<job>-<index>`) and the job completes once every index has succeeded. A finished
//! job with `ttlSecondsAfterFinished` is deleted that long after it finished.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch};
use kube::Client;
use serde_json::json;
use skiff_informer::CachedPod;
use skiff_informer::{Expectations, Informer, Key, Requeue, EXPECTATIONS_RECHECK};
use std::time::Duration;

fn phase(p: &CachedPod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

use crate::now;

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn index_of(p: &CachedPod) -> Option<i32> {
    p.metadata.annotations.as_ref()?.get(INDEX)?.parse().ok()
}

/// Indexes as the `completedIndexes` field writes them: `0-2,4`.
pub fn format_indexes(idx: &std::collections::BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut it = idx.iter().copied().peekable();
    while let Some(a) = it.next() {
        let mut b = a;
        while it.peek() == Some(&(b + 1)) {
            b = it.next().unwrap_or(b);
        }
        out.push(if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        });
    }
    out.join(",")
}

/// When a finished job finished (its Complete or Failed condition's time), in
/// seconds since the epoch.
fn finished_at(job: &Job) -> Option<i64> {
    let st = job.status.as_ref()?;
    st.conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .or(st.completion_time.as_ref())
                .map(|t| t.0.as_second())
                .unwrap_or(0)
        })
}

/// Sets the pod's completion index the way the Job controller does.
fn set_index(pod: &mut serde_json::Value, job: &str, i: i32) {
    pod["metadata"]["annotations"][INDEX] = json!(i.to_string());
    pod["metadata"]["labels"][INDEX] = json!(i.to_string());
    pod["metadata"]["generateName"] = json!(format!("{job}-{i}-"));
    pod["spec"]["hostname"] = json!(format!("{job}-{i}"));
    for kind in ["initContainers", "containers"] {
        if let Some(cs) = pod["spec"][kind].as_array_mut() {
            for c in cs {
                let mut env = c["env"].as_array().cloned().unwrap_or_default();
                env.push(
                    json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                    "fieldPath": format!("metadata.annotations['{INDEX}']")}}}),
                );
                c["env"] = json!(env);
            }
        }
    }
}

/// The Job controller: a Job is reconciled when it or one of its pods changes.
pub struct Jobs {
    pub client: Client,
    pub jobs: Informer<Job>,
    pub pods: Informer<CachedPod>,
    pub expectations: Expectations<CachedPod>,
}

/// How often a Job with a deadline or a time to live is looked at.
const DEADLINE_RECHECK: Duration = Duration::from_secs(1);

impl Jobs {
    pub async fn reconcile(&self, key: Key) -> Result<Requeue, kube::Error> {
        let client = &self.client;
        let Some(job) = self.jobs.get(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if !self.expectations.satisfied(&key) {
            return Ok(Some(EXPECTATIONS_RECHECK));
        }
        let timed = job.spec.as_ref().is_some_and(|s| {
            s.ttl_seconds_after_finished.is_some() || s.active_deadline_seconds.is_some()
        });
        let requeue = timed.then_some(DEADLINE_RECHECK);
        if let (Some(ttl), Some(at)) = (
            job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
            finished_at(&job),
        ) {
            if chrono::Utc::now().timestamp() >= at + ttl as i64 {
                let api: Api<Job> = Api::namespaced(
                    client.clone(),
                    job.metadata.namespace.as_deref().unwrap_or(""),
                );
                if api
                    .delete(
                        job.metadata.name.as_deref().unwrap_or(""),
                        &DeleteParams::foreground(),
                    )
                    .await
                    .is_ok()
                {
                    tracing::info!(job = %key, "deleted finished job (ttlSecondsAfterFinished)");
                }
                return Ok(None);
            }
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &job.spec else {
            return Ok(None);
        };
        let done = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
            .unwrap_or(false);
        let owned_pods = self.pods.controlled_by(&ns, &uid);
        let owned: Vec<&CachedPod> = owned_pods.iter().map(|p| p.as_ref()).collect();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let completed_idx: std::collections::BTreeSet<i32> = owned
            .iter()
            .filter(|p| phase(p) == "Succeeded")
            .filter_map(|p| index_of(p))
            .collect();
        let succeeded = if indexed {
            completed_idx.len() as i32
        } else {
            owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32
        };
        let failed = owned.iter().filter(|p| phase(p) == "Failed").count() as i32;
        let active: Vec<&&CachedPod> = owned
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !matches!(phase(p), "Succeeded" | "Failed")
            })
            .collect();
        let completions = spec.completions.unwrap_or(1);
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        let api_pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let start = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string());
        let deadline_passed = match (spec.active_deadline_seconds, &start) {
            (Some(d), Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds() >= d)
                .unwrap_or(false),
            _ => false,
        };
        let mut conditions = Vec::new();
        let mut completion_time = None;
        let suspended = spec.suspend.unwrap_or(false);
        let was_suspended = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Suspended"))
            .map(|c| c.status == "True");
        if !done {
            if failed > backoff_limit || deadline_passed {
                for p in &active {
                    if let Ok(r) = api_pods
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await
                    {
                        self.expectations.deleted(&key, p, r.left().as_ref());
                    }
                }
                let (reason, msg) = if deadline_passed {
                    (
                        "DeadlineExceeded",
                        "Job was active longer than specified deadline",
                    )
                } else {
                    (
                        "BackoffLimitExceeded",
                        "Job has reached the specified backoff limit",
                    )
                };
                tracing::info!(job = %format!("{ns}/{name}"), reason, failed, "job failed");
                for t in ["FailureTarget", "Failed"] {
                    conditions.push(
                        json!({"type": t, "status": "True", "reason": reason, "message": msg,
                               "lastProbeTime": now(), "lastTransitionTime": now()}),
                    );
                }
            } else if succeeded >= completions {
                tracing::info!(job = %format!("{ns}/{name}"), succeeded, "job completed");
                for t in ["SuccessCriteriaMet", "Complete"] {
                    conditions.push(json!({"type": t, "status": "True",
                        "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods",
                        "lastProbeTime": now(), "lastTransitionTime": now()}));
                }
                completion_time = Some(now());
            } else if suspended {
                // A suspended Job runs nothing: its active pods go.
                for p in &active {
                    if let Ok(r) = api_pods
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await
                    {
                        self.expectations.deleted(&key, p, r.left().as_ref());
                    }
                }
            } else {
                let want = parallelism.min(completions - succeeded) - active.len() as i32;
                {
                    let template = serde_json::to_value(&spec.template).unwrap_or_default();
                    let busy: std::collections::BTreeSet<i32> =
                        active.iter().filter_map(|p| index_of(p)).collect();
                    let mut free = (0..completions)
                        .filter(|i| !completed_idx.contains(i) && !busy.contains(i));
                    for _ in 0..want.max(0) {
                        let mut pod = crate::pod_from_template(
                            &template,
                            &ns,
                            crate::owner_ref("batch/v1", "Job", &name, &uid),
                        );
                        pod["metadata"]["labels"]["controller-uid"] = json!(uid);
                        pod["metadata"]["labels"]["job-name"] = json!(name);
                        pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] =
                            json!(uid);
                        pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] = json!(name);
                        if indexed {
                            match free.next() {
                                Some(i) => set_index(&mut pod, &name, i),
                                None => break,
                            }
                        }
                        if let Ok(p) = serde_json::from_value::<Pod>(pod) {
                            match api_pods.create(&crate::post_params(), &p).await {
                                Ok(p) => {
                                    tracing::info!(owner = %format!("Job/{ns}/{name}"),
                                        pod = p.metadata.name.as_deref().unwrap_or(""), "created pod");
                                    self.expectations.wrote(&key, &p)
                                }
                                Err(e) => {
                                    tracing::warn!(job = %name, error = %e, "creating pod");
                                    let involved = json!({"apiVersion": "batch/v1", "kind": "Job",
                                        "name": name, "namespace": ns, "uid": uid});
                                    crate::failed_create(
                                        client,
                                        involved,
                                        "job-controller",
                                        |m| format!("Error creating: {m}"),
                                        &e,
                                    )
                                    .await;
                                }
                            }
                        }
                    }
                }
            }
        }
        let mut status = json!({
            "active": active.len(),
            "succeeded": succeeded,
            "failed": failed,
            "ready": active.iter().filter(|p| p.status.as_ref().and_then(|s| s.conditions.as_ref())
                .map(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True")).unwrap_or(false)).count(),
        });
        // Suspending and resuming, as the job controller records them: a Job
        // created suspended has no startTime; resuming starts the clock anew.
        let mut suspend_condition = None;
        if !done && conditions.is_empty() {
            if suspended && was_suspended != Some(true) {
                suspend_condition = Some(json!({"type": "Suspended", "status": "True",
                    "reason": "JobSuspended", "message": "Job suspended",
                    "lastProbeTime": now(), "lastTransitionTime": now()}));
            } else if !suspended && was_suspended == Some(true) {
                suspend_condition = Some(json!({"type": "Suspended", "status": "False",
                    "reason": "JobResumed", "message": "Job resumed",
                    "lastProbeTime": now(), "lastTransitionTime": now()}));
                status["startTime"] = json!(now());
            }
        }
        if start.is_none() && !suspended {
            status["startTime"] = json!(now());
        }
        if let Some(c) = suspend_condition {
            let mut all: Vec<serde_json::Value> = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.type_ != "Suspended")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect();
            all.push(c);
            status["conditions"] = json!(all);
        }
        if indexed {
            status["completedIndexes"] = json!(format_indexes(&completed_idx));
        }
        if !conditions.is_empty() {
            // A finished Job keeps the record of having been suspended.
            let mut all: Vec<serde_json::Value> = job
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .filter(|c| c.type_ == "Suspended")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect();
            all.extend(conditions);
            status["conditions"] = json!(all);
            status["active"] = json!(0);
        }
        if let Some(t) = completion_time {
            status["completionTime"] = json!(t);
        }
        if crate::patch_changes(&job.status, &status) {
            let japi: Api<Job> = Api::namespaced(client.clone(), &ns);
            japi.patch_status(
                &name,
                &crate::patch_params(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        }
        Ok(requeue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_are_ranges() {
        let s = |v: &[i32]| format_indexes(&v.iter().copied().collect());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&[0, 1, 2, 4]), "0-2,4");
        assert_eq!(s(&[3]), "3");
        assert_eq!(s(&[1, 3, 4, 6, 7, 8]), "1,3-4,6-8");
    }
}
