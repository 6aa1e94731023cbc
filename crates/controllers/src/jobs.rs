//! Jobs: run pods from the template until `completions` have succeeded, at most
//! `parallelism` at a time; a job whose pods failed more than `backoffLimit` times,
//! or that ran past `activeDeadlineSeconds`, fails. Pods are owned by the Job and
//! labelled with its `controller-uid` and `job-name`, as Kubernetes does.

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

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
        let succeeded = owned.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
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
                conditions.push(
                    json!({"type": "Failed", "status": "True", "reason": reason, "message": msg,
                                       "lastProbeTime": now(), "lastTransitionTime": now()}),
                );
            } else if succeeded >= completions {
                conditions.push(json!({"type": "Complete", "status": "True",
                                       "lastProbeTime": now(), "lastTransitionTime": now()}));
                completion_time = Some(now());
            } else {
                let want = parallelism.min(completions - succeeded) - active.len() as i32;
                if !spec.suspend.unwrap_or(false) {
                    let template = serde_json::to_value(&spec.template).unwrap_or_default();
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
