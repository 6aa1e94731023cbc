//! Periodic compaction, the way kube-apiserver drives etcd: every `interval`, compact to
//! the revision that was current one interval earlier, so at least one interval of history
//! stays available for watches and paged lists.

use std::sync::Arc;
use std::time::Duration;

use crate::{Error, Revision, Store};

/// When and how far [`spawn_compactor`] compacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Time between compactions; history younger than this is always kept.
    pub interval: Duration,
    /// Additionally keep at least this many of the latest revisions (0 = no minimum).
    pub min_retained_revisions: Revision,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(5 * 60),
            min_retained_revisions: 0,
        }
    }
}

impl CompactionPolicy {
    /// The revision to compact to, given the revision seen one interval ago and now.
    pub fn target(&self, previous: Revision, current: Revision) -> Revision {
        if self.min_retained_revisions > 0 {
            previous.min(current - self.min_retained_revisions)
        } else {
            previous
        }
    }
}

/// Runs compaction of `store` in the background on the current tokio runtime. The task holds
/// only a weak reference: it ends by itself once every other `Arc` to the store is dropped
/// (or abort the returned handle).
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    policy: CompactionPolicy,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(&store);
    drop(store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(policy.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Revision> = None;
        loop {
            ticker.tick().await;
            let Some(store) = weak.upgrade() else { break };
            let current = match store.current_revision().await {
                Ok(r) => r,
                Err(Error::Closed) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "compactor: cannot read the current revision");
                    continue;
                }
            };
            if let Some(prev) = previous {
                let target = policy.target(prev, current);
                let compacted = store.compact_revision().await.unwrap_or(0);
                if target > compacted {
                    match store.compact(target).await {
                        Ok(()) => tracing::debug!(revision = target, "compacted store history"),
                        Err(Error::Compacted { .. }) => {}
                        Err(Error::Closed) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, revision = target, "compaction failed")
                        }
                    }
                }
            }
            previous = Some(current);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_interval_and_minimum() {
        let p = CompactionPolicy::default();
        assert_eq!(p.target(100, 500), 100);
        let p = CompactionPolicy {
            min_retained_revisions: 450,
            ..CompactionPolicy::default()
        };
        assert_eq!(p.target(100, 500), 50);
        assert_eq!(p.target(100, 1000), 100);
    }
}
