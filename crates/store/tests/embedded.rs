//! Behaviour of the embedded backend through the `Store` trait: the shared scenarios of
//! `common` (also run against etcd), plus what only the embedded backend does.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::TestResult;
use skiff_store::{EmbeddedOptions, EmbeddedStore, Error, RangeOptions, Revision, Store};

fn open(dir: &tempfile::TempDir) -> Result<EmbeddedStore, Error> {
    EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
}

/// A fresh store in its own directory (kept alive with it).
fn fresh() -> Result<(tempfile::TempDir, EmbeddedStore), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    Ok((dir, s))
}

#[tokio::test]
async fn revisions_start_at_one_and_track_versions() -> TestResult {
    let (_dir, s) = fresh()?;
    common::revisions_start_at_one_and_track_versions(&s).await
}

#[tokio::test]
async fn already_exists_not_found_and_cas_conflicts() -> TestResult {
    let (_dir, s) = fresh()?;
    common::already_exists_not_found_and_cas_conflicts(&s).await
}

#[tokio::test]
async fn range_by_prefix_with_limit_and_continuation() -> TestResult {
    let (_dir, s) = fresh()?;
    common::range_by_prefix_with_limit_and_continuation(&s).await
}

#[tokio::test]
async fn range_at_past_revision_sees_the_old_state() -> TestResult {
    let (_dir, s) = fresh()?;
    common::range_at_past_revision_sees_the_old_state(&s).await
}

#[tokio::test]
async fn watch_from_now_filters_by_prefix_and_carries_prev() -> TestResult {
    let (_dir, s) = fresh()?;
    common::watch_from_now_filters_by_prefix_and_carries_prev(&s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_past_revision_has_no_gap_or_duplicate_under_writes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = Arc::new(EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            replay_chunk: 7, // many replay chunks
            ..EmbeddedOptions::default()
        },
    )?);
    common::watch_from_past_revision_has_no_gap_or_duplicate_under_writes(s).await
}

#[tokio::test]
async fn compaction_then_watch_or_read_below_it_is_compacted() -> TestResult {
    let (_dir, s) = fresh()?;
    common::compaction_then_watch_or_read_below_it_is_compacted(&s).await
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_compaction() -> TestResult {
    let dir = tempfile::tempdir()?;
    let dir = &dir;
    common::reopen_keeps_data_revision_and_compaction(move || async move {
        Ok(Box::new(open(dir)?) as Box<dyn Store>)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_keeps_every_acknowledged_write() -> TestResult {
    let dir = tempfile::tempdir()?;
    const TASKS: usize = 64;
    const PER_TASK: usize = 40;
    let mut acked = HashSet::new();
    {
        let s = Arc::new(open(&dir)?);
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = Arc::clone(&s);
            handles.push(tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..PER_TASK {
                    let key = format!("/g/{t}/{i}");
                    revs.push((key.clone(), s.create(key.as_bytes(), vec![7; 100]).await?));
                }
                Ok::<_, Error>(revs)
            }));
        }
        for h in handles {
            for (key, rev) in h.await?? {
                assert!(acked.insert(rev), "revision {rev} handed out twice");
                let kv = s.get(key.as_bytes()).await?.ok_or("acked key missing")?;
                assert_eq!(kv.mod_revision, rev);
            }
        }
    }
    let total = (TASKS * PER_TASK) as Revision;
    let want: HashSet<Revision> = (2..=total + 1).collect();
    assert_eq!(acked, want);
    let s = open(&dir)?;
    assert_eq!(s.current_revision().await?, total + 1);
    assert_eq!(
        s.range(b"/g/", RangeOptions::default()).await?.kvs.len(),
        total as usize
    );
    Ok(())
}

#[tokio::test]
async fn slow_watcher_gets_lagged_and_does_not_block_writers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            watch_buffer: 4,
            ..EmbeddedOptions::default()
        },
    )?;
    let mut w = s.watch(b"", 0).await?;
    for i in 0..50 {
        // Sequential writes: one commit batch each, far more than the buffer.
        tokio::time::timeout(
            Duration::from_secs(5),
            s.create(format!("/s/{i}").as_bytes(), vec![]),
        )
        .await??;
    }
    match w.recv().await {
        Some(Err(Error::WatchLagged { missed })) => assert!(missed > 0),
        other => return Err(format!("expected WatchLagged, got {other:?}").into()),
    }
    assert!(w.recv().await.is_none());
    Ok(())
}

#[tokio::test]
async fn watch_ends_when_store_is_dropped() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = open(&dir)?;
    let mut w = s.watch(b"", 0).await?;
    s.create(b"a", vec![]).await?;
    drop(s);
    let mut seen = 0;
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(5), w.recv()).await? {
        seen += batch?.len();
    }
    assert_eq!(seen, 1);
    // The file is free again.
    let s = open(&dir)?;
    assert_eq!(s.current_revision().await?, 2);
    Ok(())
}

#[tokio::test]
async fn watch_from_a_future_revision_waits_for_it() -> TestResult {
    let (_dir, s) = fresh()?;
    common::watch_from_a_future_revision_waits_for_it(&s).await
}

#[tokio::test]
async fn compactor_compacts_to_the_revision_one_interval_ago() -> TestResult {
    let (_dir, s) = fresh()?;
    common::compactor_compacts_to_the_revision_one_interval_ago(Arc::new(s)).await
}

#[tokio::test]
async fn empty_keys_and_oversized_writes_are_refused_alone() -> TestResult {
    let dir = tempfile::tempdir()?;
    let s = EmbeddedStore::open(
        dir.path(),
        EmbeddedOptions {
            max_write_bytes: 1000,
            ..EmbeddedOptions::default()
        },
    )?;
    common::empty_keys_and_oversized_writes_are_refused_alone(&s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_never_lose_an_update() -> TestResult {
    let (_dir, s) = fresh()?;
    common::concurrent_cas_increments_never_lose_an_update(Arc::new(s)).await
}
