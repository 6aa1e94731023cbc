//! Image garbage collection (the kubelet's image GC): when the image filesystem is
//! fuller than the high threshold, images no container uses are removed, least
//! recently used first, until it is below the low threshold. As the kubelet does, an
//! image is only removed once this node has known it for the minimum age
//! (`--minimum-image-ttl-duration`, 2 minutes): an image that was just built, loaded
//! or pulled is about to be used.

use crate::cri::{ContainerFilter, Runtime};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The thresholds, in percent of the image filesystem used (Kubernetes: 85 and 80),
/// and the minimum age of an image before it may be removed (Kubernetes: 2m).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub high_percent: u64,
    pub low_percent: u64,
    pub min_age: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            high_percent: 85,
            low_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

fn used_percent((available, capacity): (u64, u64)) -> u64 {
    if capacity == 0 {
        return 0;
    }
    100 - available.min(capacity) * 100 / capacity
}

/// What the node knows of each image: when it first saw it and when a container last
/// used it (the kubelet's `imageRecord`).
#[derive(Debug, Default)]
pub struct Tracker {
    first_seen: BTreeMap<String, Instant>,
    last_used: BTreeMap<String, Instant>,
}

impl Tracker {
    /// Record the images present (id, created) and those containers use, at `now`;
    /// forget images that are gone.
    pub fn observe(
        &mut self,
        images: &[(String, Option<String>)],
        in_use: &BTreeSet<String>,
        now: Instant,
    ) {
        let present: BTreeSet<&String> = images.iter().map(|(id, _)| id).collect();
        self.first_seen.retain(|id, _| present.contains(id));
        self.last_used.retain(|id, _| present.contains(id));
        for id in &present {
            self.first_seen.entry((*id).clone()).or_insert(now);
        }
        for id in in_use.iter().filter(|id| present.contains(id)) {
            self.last_used.insert(id.clone(), now);
        }
    }

    /// The images that may be removed at `now`, least recently used first (never
    /// used: by when the node first saw them, then by creation): not used by any
    /// container, and known for at least `min_age`.
    pub fn candidates(
        &self,
        images: &[(String, Option<String>)],
        in_use: &BTreeSet<String>,
        min_age: Duration,
        now: Instant,
    ) -> Vec<String> {
        let mut c: Vec<(Instant, &Option<String>, &String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (id, created) in images {
            if in_use.contains(id) || !seen.insert(id) {
                continue;
            }
            let Some(first) = self.first_seen.get(id) else {
                continue;
            };
            if now.saturating_duration_since(*first) < min_age {
                continue;
            }
            c.push((*self.last_used.get(id).unwrap_or(first), created, id));
        }
        c.sort();
        c.into_iter().map(|(_, _, id)| id.clone()).collect()
    }
}

/// One pass: record what is present and used, then, above the high threshold,
/// remove candidates until below the low one. Returns the ids removed.
pub fn collect(rt: &dyn Runtime, t: Thresholds, tracker: &mut Tracker) -> Vec<String> {
    let now = Instant::now();
    let in_use: BTreeSet<String> = rt
        .list_containers(&ContainerFilter::default())
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.image_id)
        .collect();
    let images: Vec<(String, Option<String>)> = rt
        .list_images()
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.id, i.created))
        .collect();
    tracker.observe(&images, &in_use, now);
    let dir = rt.image_fs_info().image_filesystem;
    if used_percent(crate::pressure::fs(&dir)) <= t.high_percent {
        return Vec::new();
    }
    let mut removed = Vec::new();
    for id in tracker.candidates(&images, &in_use, t.min_age, now) {
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

    fn image(id: &str, created: &str) -> (String, Option<String>) {
        (id.to_string(), Some(created.to_string()))
    }

    #[test]
    fn unused_images_old_enough_go_least_recently_used_first() {
        let t0 = Instant::now();
        let min_age = Duration::from_secs(120);
        let mut tr = Tracker::default();
        let images = vec![
            image("sha256:new", "2026-03-01T00:00:00Z"),
            image("sha256:old", "2025-01-01T00:00:00Z"),
            image("sha256:busy", "2024-01-01T00:00:00Z"),
            image("sha256:old", "2025-01-01T00:00:00Z"),
        ];
        let busy: BTreeSet<String> = ["sha256:busy".to_string()].into_iter().collect();
        tr.observe(&images, &busy, t0);
        // Just seen: nothing is old enough yet.
        assert!(tr.candidates(&images, &busy, min_age, t0).is_empty());
        let later = t0 + min_age;
        // Never used: by creation; the busy one never.
        assert_eq!(
            tr.candidates(&images, &busy, min_age, later),
            vec!["sha256:old", "sha256:new"]
        );
        // "new" was used a minute in, "old" never: old goes first either way, and
        // an image that stops being used is a candidate by when it was last used.
        let none = BTreeSet::new();
        let used_new: BTreeSet<String> = ["sha256:new".to_string()].into_iter().collect();
        tr.observe(&images, &used_new, t0 + Duration::from_secs(60));
        tr.observe(&images, &none, later);
        assert_eq!(
            tr.candidates(&images, &none, min_age, later),
            vec!["sha256:busy", "sha256:old", "sha256:new"]
        );
        // An image that appears later waits its own minimum age.
        let more = [
            images.clone(),
            vec![image("sha256:fresh", "2020-01-01T00:00:00Z")],
        ]
        .concat();
        tr.observe(&more, &none, later);
        assert!(!tr
            .candidates(&more, &none, min_age, later)
            .contains(&"sha256:fresh".to_string()));
        assert_eq!(used_percent((25, 100)), 75);
        assert_eq!(used_percent((0, 0)), 0);
    }
}
