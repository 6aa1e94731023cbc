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
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

use crate::now;

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

fn index_of(p: &Pod) -> Option<i32> {
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

/// One pass over every Job.
pub async fn sync_jobs(client: &Client) -> Result<(), kube::Error> {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let all_pods = pods.list(&ListParams::default()).await?.items;
    for job in jobs.list(&ListParams::default()).await?.items {
        if job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let (Some(ttl), Some(at)) = (
            job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
            finished_at(&job),
        ) {
            if chrono::Utc::now().timestamp() >= at + ttl as i64 {
                let api: Api<Job> = Api::namespaced(
                    client.clone(),
                    job.metadata.namespace.as_deref().unwrap_or(""),
                );
                let _ = api
                    .delete(
                        job.metadata.name.as_deref().unwrap_or(""),
                        &DeleteParams::foreground(),
                    )
                    .await;
                continue;
            }
        }
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = &job.spec else { continue };
        let done = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            })
            .unwrap_or(false);
        let owned: Vec<&Pod> = crate::controlled_by(&all_pods, &ns, &uid);
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
        let active: Vec<&&Pod> = owned
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
        if !done {
            if failed > backoff_limit || deadline_passed {
                for p in &active {
                    let _ = api_pods
                        .delete(
                            p.metadata.name.as_deref().unwrap_or(""),
                            &DeleteParams::default(),
                        )
                        .await;
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
                for t in ["FailureTarget", "Failed"] {
                    conditions.push(
                        json!({"type": t, "status": "True", "reason": reason, "message": msg,
                               "lastProbeTime": now(), "lastTransitionTime": now()}),
                    );
                }
            } else if succeeded >= completions {
                for t in ["SuccessCriteriaMet", "Complete"] {
                    conditions.push(json!({"type": t, "status": "True",
                        "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods",
                        "lastProbeTime": now(), "lastTransitionTime": now()}));
                }
                completion_time = Some(now());
            } else {
                let want = parallelism.min(completions - succeeded) - active.len() as i32;
                if !spec.suspend.unwrap_or(false) {
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
                            if let Err(e) = api_pods.create(&PostParams::default(), &p).await {
                                tracing::warn!(job = %name, error = %e, "creating pod");
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
        if start.is_none() {
            status["startTime"] = json!(now());
        }
        if indexed {
            status["completedIndexes"] = json!(format_indexes(&completed_idx));
        }
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
            status["active"] = json!(0);
        }
        if let Some(t) = completion_time {
            status["completionTime"] = json!(t);
        }
        let japi: Api<Job> = Api::namespaced(client.clone(), &ns);
        let _ = japi
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await;
    }
    Ok(())
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
