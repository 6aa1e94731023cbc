//! What `skiff agent --cleanup` (and `skiff server --cleanup`) does to the pods of a
//! node, as `k3s-killall.sh` does: every pod the agent left is stopped at once (no
//! grace period; the API is not asked, it may be gone), its containers, sandbox,
//! cgroups, volumes and directory removed. The network part (rules, routes, devices,
//! the pod bridge) is the caller's, from the crates that made it.

use crate::cri::Runtime;
use crate::pod::{stop_pod, NodeSettings, RunningPod};
use std::time::Duration;

/// Stops every pod recorded under `node.pods_dir`; returns how many there were, and
/// the errors of those that could not be stopped completely.
pub fn stop_all_pods(rt: &dyn Runtime, node: &NodeSettings) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut errors = Vec::new();
    let Ok(rd) = std::fs::read_dir(&node.pods_dir) else {
        return (0, errors);
    };
    for e in rd.flatten() {
        let Ok(bytes) = std::fs::read(e.path().join("running.json")) else {
            // A directory without a record: nothing runs for it.
            let _ = std::fs::remove_dir_all(e.path());
            continue;
        };
        count += 1;
        match serde_json::from_slice::<RunningPod>(&bytes) {
            Ok(rp) => {
                if let Err(err) = stop_pod(rt, &rp, Duration::ZERO, None) {
                    errors.push(format!("pod {}: {err}", rp.uid));
                }
            }
            Err(err) => errors.push(format!("{}: {err}", e.path().display())),
        }
    }
    rt.remove_pods_cgroup(&node.pods_cgroup);
    (count, errors)
}
