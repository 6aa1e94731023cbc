//! The probe pass: runs due probes of running containers, restarts those whose
//! liveness or startup probe failed.

use super::Kubelet;
use crate::cri::ContainerState;
use crate::pod::RunningPod;
use crate::prober::Target;
use std::collections::BTreeMap;

/// An event a probe pass wants recorded.
pub struct ProbeEvent {
    pub uid: String,
    pub container: String,
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Run due probes of every running container; restart those whose liveness or
/// startup probe failed (the monitor brings them back by the restart policy).
/// Returns the Unhealthy and Killing events to record.
pub fn probe_pass(k: &Kubelet, running: &BTreeMap<String, RunningPod>) -> Vec<ProbeEvent> {
    let runtime = &*k.runtime;
    let mut events = Vec::new();
    let pods = k.pods();
    for (uid, rp) in running {
        let Some(pod) = pods.get(uid) else { continue };
        let Some(spec) = &pod.spec else { continue };
        for c in &spec.containers {
            let Some(id) = rp.containers.get(&c.name) else {
                continue;
            };
            if c.liveness_probe.is_none()
                && c.readiness_probe.is_none()
                && c.startup_probe.is_none()
            {
                continue;
            }
            let Ok(ct) = runtime.container_status(id) else {
                continue;
            };
            if ct.state != ContainerState::Running {
                k.prober.forget(id);
                if let Ok(mut v) = k.verdicts.lock() {
                    v.remove(id);
                }
                continue;
            }
            let since = ct
                .started_at
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            let target = Target {
                runtime,
                container_id: id,
                pod_ip: rp.ip.map(std::net::IpAddr::V4),
                started_at: std::time::Instant::now()
                    .checked_sub(since)
                    .unwrap_or_else(std::time::Instant::now),
            };
            let verdict = k.prober.check(c, &target);
            for f in &verdict.failures {
                events.push(ProbeEvent {
                    uid: uid.clone(),
                    container: c.name.clone(),
                    warning: true,
                    reason: "Unhealthy",
                    message: f.clone(),
                });
            }
            if let Some(why) = &verdict.restart {
                tracing::info!(pod = %uid, container = %c.name, "{why}");
                events.push(ProbeEvent {
                    uid: uid.clone(),
                    container: c.name.clone(),
                    warning: false,
                    reason: "Killing",
                    message: why.clone(),
                });
                // Not StopContainer: that is a user's stop and disables the restart
                // policy; this restart is the policy's to carry out.
                if let Err(e) = runtime.kill_container(id) {
                    tracing::warn!(pod = %uid, container = %c.name, error = %e, "killing the container after its failed probe");
                }
                k.prober.forget(id);
            }
            if let Ok(mut v) = k.verdicts.lock() {
                let was = v.get(id).map(|old| (old.ready, old.started));
                if was.is_some_and(|w| w != (verdict.ready, verdict.started)) {
                    tracing::info!(pod = %uid, container = %c.name, ready = verdict.ready,
                        started = verdict.started, "probe result changed");
                }
                v.insert(id.clone(), verdict);
            }
        }
    }
    events
}
