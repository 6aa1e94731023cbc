//! Image garbage collection (the kubelet's image GC): when the image filesystem is
//! fuller than the high threshold, images no container uses are removed, oldest
//! first, until it is below the low threshold.

use crate::cri::{ContainerFilter, Runtime};
use std::collections::BTreeSet;

/// The thresholds, in percent of the image filesystem used (Kubernetes: 85 and 80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub high_percent: u64,
    pub low_percent: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            high_percent: 85,
            low_percent: 80,
        }
    }
}

fn used_percent((available, capacity): (u64, u64)) -> u64 {
    if capacity == 0 {
        return 0;
    }
    100 - available.min(capacity) * 100 / capacity
}

/// The images to remove, oldest first: those in `images` (id, created) that no
/// container uses.
pub fn candidates(images: &[(String, Option<String>)], in_use: &BTreeSet<String>) -> Vec<String> {
    let mut c: Vec<&(String, Option<String>)> = images
        .iter()
        .filter(|(id, _)| !in_use.contains(id))
        .collect();
    c.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut seen = BTreeSet::new();
    c.into_iter()
        .filter(|(id, _)| seen.insert(id.clone()))
        .map(|(id, _)| id.clone())
        .collect()
}

/// One pass: returns the ids removed (empty when below the high threshold).
pub fn collect(rt: &dyn Runtime, t: Thresholds) -> Vec<String> {
    let dir = rt.image_fs_info().image_filesystem;
    if used_percent(crate::pressure::fs(&dir)) <= t.high_percent {
        return Vec::new();
    }
    let in_use: BTreeSet<String> = rt
        .list_containers(&ContainerFilter::default())
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.image_ref)
        .collect();
    let images: Vec<(String, Option<String>)> = rt
        .list_images()
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.id, i.created))
        .collect();
    let mut removed = Vec::new();
    for id in candidates(&images, &in_use) {
        if used_percent(crate::pressure::fs(&dir)) < t.low_percent {
            break;
        }
        match rt.remove_image(&id) {
            Ok(_) => removed.push(id),
            Err(e) => tracing::warn!(image = %id, error = %e, "image garbage collection"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_images_go_oldest_first() {
        let images = vec![
            (
                "sha256:new".to_string(),
                Some("2026-03-01T00:00:00Z".to_string()),
            ),
            (
                "sha256:old".to_string(),
                Some("2025-01-01T00:00:00Z".to_string()),
            ),
            (
                "sha256:busy".to_string(),
                Some("2024-01-01T00:00:00Z".to_string()),
            ),
            (
                "sha256:old".to_string(),
                Some("2025-01-01T00:00:00Z".to_string()),
            ),
        ];
        let in_use: BTreeSet<String> = ["sha256:busy".to_string()].into_iter().collect();
        assert_eq!(
            candidates(&images, &in_use),
            vec!["sha256:old", "sha256:new"]
        );
        assert_eq!(used_percent((25, 100)), 75);
        assert_eq!(used_percent((0, 0)), 0);
    }
}
