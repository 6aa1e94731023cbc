//! Cgroups by path, for whoever places pods (the node agent and its tests): the
//! directories of a cgroup path in every hierarchy, and removing a node's pod cgroup
//! parent once no pod is left in it.

use std::path::PathBuf;

/// The directories of cgroup `path` (relative to this process's own cgroup unless
/// it starts with `/`) in every hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let Ok(host) = skiff_runtime::cgroups::Host::detect() else {
        return Vec::new();
    };
    let (parent, name) = match path.trim_end_matches('/').rsplit_once('/') {
        Some(("", n)) => ("/", n),
        Some((p, n)) => (p, n),
        None => ("", path),
    };
    host.paths_for(parent, name).into_values().collect()
}

/// Removes a node's pod cgroup parent and the `--cgroup-root` above it in every
/// hierarchy, if no pod is left in them (best effort).
pub fn remove_pods_cgroup(pods_cgroup: &str) {
    let root = pods_cgroup
        .trim_end_matches('/')
        .rsplit_once('/')
        .map(|(r, _)| r);
    for p in cgroup_dirs(pods_cgroup) {
        if std::fs::remove_dir(&p).is_ok() && !matches!(root, None | Some("")) {
            if let Some(up) = p.parent() {
                let _ = std::fs::remove_dir(up);
            }
        }
    }
}

/// Removes a pod's cgroup, whose containers were its children: their monitors remove
/// their own groups as they finish, so a busy group is waited for (up to 2 seconds).
pub fn remove_pod_cgroup(path: &str) {
    for p in cgroup_dirs(path) {
        for _ in 0..100 {
            match std::fs::remove_dir(&p) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                _ => break,
            }
        }
    }
}
