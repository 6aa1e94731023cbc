//! Backend-independent behaviour of the `Store` trait. Each backend's test file builds a
//! fresh store (revision 1, nothing compacted) and runs these scenarios against it, so the
//! embedded and etcd backends are held to the same semantics.

#![allow(dead_code)] // each test binary uses its own subset

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use skiff_store::{
    spawn_compactor, CompactionPolicy, Error, Event, EventKind, KeyValue, RangeOptions, Revision,
    Store, WatchStream,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Receives events until `n` have arrived (or fails after a timeout).
pub async fn collect(
    w: &mut WatchStream,
    n: usize,
) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), w.recv()).await? {
            Some(batch) => out.extend(batch?),
            None => return Err("watch ended early".into()),
        }
    }
    Ok(out)
}

pub async fn revisions_start_at_one_and_track_versions(s: &dyn Store) -> TestResult {
    assert_eq!(s.current_revision().await?, 1);
    let r1 = s
        .create(b"/registry/pods/default/a", b"v1".to_vec())
        .await?;
    assert_eq!(r1, 2);
    let kv = s.get(b"/registry/pods/default/a").await?.ok_or("missing")?;
    assert_eq!(kv.key, b"/registry/pods/default/a");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    assert_eq!(kv.value, b"v1");
    let r2 = s
        .update(b"/registry/pods/default/a", b"v2".to_vec(), None)
        .await?;
    assert_eq!(r2, 3);
    let kv = s.get(b"/registry/pods/default/a").await?.ok_or("missing")?;
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(s.current_revision().await?, 3);
    assert!(s.get(b"/nope").await?.is_none());
    Ok(())
}

pub async fn already_exists_not_found_and_cas_conflicts(s: &dyn Store) -> TestResult {
    let r = s.create(b"k", b"1".to_vec()).await?;
    assert!(matches!(
        s.create(b"k", b"2".to_vec()).await,
        Err(Error::AlreadyExists { .. })
    ));
    assert!(matches!(
        s.update(b"missing", b"x".to_vec(), None).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete(b"missing", None).await,
        Err(Error::NotFound { .. })
    ));
    // A guarded write to a missing key is NotFound too, whatever the expected revision.
    assert!(matches!(
        s.update(b"missing", b"x".to_vec(), Some(0)).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.delete(b"missing", Some(r)).await,
        Err(Error::NotFound { .. })
    ));
    // A failed write takes no revision.
    assert_eq!(s.current_revision().await?, r);

    let r2 = s.update(b"k", b"2".to_vec(), Some(r)).await?;
    match s.update(b"k", b"3".to_vec(), Some(r)).await {
        Err(Error::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (r, r2)),
        other => return Err(format!("expected conflict, got {other:?}").into()),
    }
    assert!(matches!(
        s.delete(b"k", Some(r)).await,
        Err(Error::Conflict { .. })
    ));
    let (rd, prev) = s.delete(b"k", Some(r2)).await?;
    assert_eq!(rd, r2 + 1);
    assert_eq!(prev.key, b"k");
    assert_eq!(prev.value, b"2");
    assert_eq!(prev.version, 2);
    assert!(s.get(b"k").await?.is_none());
    // Re-creation starts a new life: new create_revision, version 1.
    let r3 = s.create(b"k", b"again".to_vec()).await?;
    let kv = s.get(b"k").await?.ok_or("missing")?;
    assert_eq!((kv.create_revision, kv.version), (r3, 1));
    Ok(())
}

pub async fn range_by_prefix_with_limit_and_continuation(s: &dyn Store) -> TestResult {
    for i in 0..10 {
        s.create(format!("/pods/{i:02}").as_bytes(), vec![i])
            .await?;
    }
    s.create(b"/podsx/zz", b"other".to_vec()).await?;
    s.create(b"/a", b"before".to_vec()).await?;

    let all = s.range(b"/pods/", RangeOptions::default()).await?;
    assert_eq!(all.kvs.len(), 10);
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await?);

    let mut seen = Vec::new();
    let mut opts = RangeOptions {
        limit: 3,
        ..RangeOptions::default()
    };
    loop {
        let page = s.range(b"/pods/", opts.clone()).await?;
        seen.extend(keys(&page.kvs));
        if !page.more {
            break;
        }
        assert_eq!(page.kvs.len(), 3);
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        opts.revision = page.revision;
    }
    assert_eq!(seen, keys(&all.kvs));

    let everything = s.range(b"", RangeOptions::default()).await?;
    assert_eq!(everything.kvs.len(), 12);
    assert_eq!(keys(&everything.kvs)[0], "/a");
    // start_after before the prefix starts at the prefix.
    let page = s
        .range(
            b"/pods/",
            RangeOptions {
                limit: 1,
                start_after: Some(b"/a".to_vec()),
                revision: 0,
            },
        )
        .await?;
    assert_eq!(keys(&page.kvs), vec!["/pods/00"]);
    assert!(page.more);
    // start_after past the prefix: nothing left.
    let page = s
        .range(
            b"/pods/",
            RangeOptions {
                start_after: Some(b"/pods/99".to_vec()),
                ..RangeOptions::default()
            },
        )
        .await?;
    assert!(page.kvs.is_empty());
    assert!(!page.more);
    Ok(())
}

pub async fn range_at_past_revision_sees_the_old_state(s: &dyn Store) -> TestResult {
    for k in ["/r/a", "/r/b", "/r/c", "/r/d"] {
        s.create(k.as_bytes(), b"old".to_vec()).await?;
    }
    let snapshot = s.current_revision().await?;
    let before = s.range(b"/r/", RangeOptions::default()).await?;

    s.update(b"/r/a", b"new".to_vec(), None).await?;
    s.delete(b"/r/b", None).await?;
    s.create(b"/r/bb", b"new".to_vec()).await?;
    s.delete(b"/r/d", None).await?;
    s.create(b"/r/d", b"reborn".to_vec()).await?;
    s.create(b"/r/e", b"new".to_vec()).await?;

    let at = s
        .range(
            b"/r/",
            RangeOptions {
                revision: snapshot,
                ..RangeOptions::default()
            },
        )
        .await?;
    assert_eq!(at.revision, snapshot);
    assert_eq!(at.kvs, before.kvs);

    // Paging at the old revision gives the same list, page by page.
    let mut paged = Vec::new();
    let mut opts = RangeOptions {
        limit: 1,
        revision: snapshot,
        start_after: None,
    };
    loop {
        let page = s.range(b"/r/", opts.clone()).await?;
        paged.extend(page.kvs.clone());
        if !page.more {
            break;
        }
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(paged, before.kvs);

    let now = s.range(b"/r/", RangeOptions::default()).await?;
    assert_eq!(
        keys(&now.kvs),
        vec!["/r/a", "/r/bb", "/r/c", "/r/d", "/r/e"]
    );

    let current = s.current_revision().await?;
    match s
        .range(
            b"/r/",
            RangeOptions {
                revision: current + 1,
                ..RangeOptions::default()
            },
        )
        .await
    {
        Err(Error::FutureRevision {
            requested,
            current: c,
        }) => assert_eq!((requested, c), (current + 1, current)),
        other => return Err(format!("expected FutureRevision, got {other:?}").into()),
    }
    Ok(())
}

pub async fn watch_from_now_filters_by_prefix_and_carries_prev(s: &dyn Store) -> TestResult {
    s.create(b"/w/before", b"0".to_vec()).await?;
    let mut w = s.watch(b"/w/", 0).await?;
    let r1 = s.create(b"/w/a", b"1".to_vec()).await?;
    s.create(b"/other/x", b"ignored".to_vec()).await?;
    let r2 = s.update(b"/w/a", b"2".to_vec(), Some(r1)).await?;
    let (r3, _) = s.delete(b"/w/a", None).await?;
    let evs = collect(&mut w, 3).await?;
    assert_eq!(
        evs.iter().map(Event::revision).collect::<Vec<_>>(),
        vec![r1, r2, r3]
    );
    assert_eq!(evs[0].kind, EventKind::Put);
    assert_eq!(evs[0].kv.key, b"/w/a");
    assert_eq!((evs[0].kv.create_revision, evs[0].kv.version), (r1, 1));
    assert!(evs[0].prev_kv.is_none());
    assert_eq!(evs[1].kv.value, b"2");
    assert_eq!(
        evs[1].prev_kv.as_ref().map(|p| p.value.clone()),
        Some(b"1".to_vec())
    );
    assert_eq!(evs[2].kind, EventKind::Delete);
    assert_eq!(evs[2].kv.key, b"/w/a");
    assert_eq!(
        (
            evs[2].kv.create_revision,
            evs[2].kv.version,
            evs[2].kv.value.len()
        ),
        (0, 0, 0)
    );
    assert_eq!(evs[2].prev_kv.as_ref().map(|p| p.mod_revision), Some(r2));
    assert_eq!(
        evs[2].prev_kv.as_ref().map(|p| p.key.clone()),
        Some(b"/w/a".to_vec())
    );
    Ok(())
}

/// Writers on several tasks while watches start at different points in the past and
/// consume concurrently, crossing from history to live events mid-stream.
pub async fn watch_from_past_revision_has_no_gap_or_duplicate_under_writes(
    s: Arc<dyn Store>,
) -> TestResult {
    const TASKS: usize = 4;
    const PER_TASK: usize = 125;
    for i in 0..100 {
        s.create(format!("/k/{i}").as_bytes(), vec![1]).await?;
    }
    // Each task creates PER_TASK keys and updates every third one.
    let writes = 100 + TASKS * (PER_TASK + PER_TASK.div_ceil(3));
    let last = 1 + writes as Revision;
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let s = Arc::clone(&s);
        writers.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                let key = format!("/k/t{t}-{i}");
                s.create(key.as_bytes(), vec![2]).await?;
                if i % 3 == 0 {
                    s.update(key.as_bytes(), vec![3], None).await?;
                }
            }
            Ok::<_, Error>(())
        }));
    }
    let mut readers = Vec::new();
    for from in [2, 50, 101, 300] {
        let mut w = s.watch(b"/k/", from).await?;
        readers.push(tokio::spawn(async move {
            let expected = (last - from + 1) as usize;
            let evs = collect(&mut w, expected).await.map_err(|e| e.to_string())?;
            let revs: Vec<Revision> = evs.iter().map(Event::revision).collect();
            let want: Vec<Revision> = (from..=last).collect();
            if revs != want {
                return Err(format!("watch from {from}: got {revs:?}"));
            }
            Ok(())
        }));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // And one from "now", mid-storm: it must see a contiguous tail ending at `last`.
    let mut now = s.watch(b"/k/", 0).await?;
    for w in writers {
        w.await??;
    }
    assert_eq!(s.current_revision().await?, last);
    for r in readers {
        r.await??;
    }
    let mut tail: Vec<Revision> = Vec::new();
    while tail.last() != Some(&last) {
        match tokio::time::timeout(Duration::from_secs(10), now.recv()).await? {
            Some(batch) => tail.extend(batch?.iter().map(Event::revision)),
            None => return Err("watch from now ended early".into()),
        }
    }
    let first = tail.first().copied().ok_or("empty tail")?;
    assert_eq!(tail, (first..=last).collect::<Vec<_>>());
    Ok(())
}

pub async fn compaction_then_watch_or_read_below_it_is_compacted(s: &dyn Store) -> TestResult {
    for i in 0..20 {
        s.create(format!("/c/{i:02}").as_bytes(), vec![i]).await?;
    }
    assert_eq!(s.compact_revision().await?, 0);
    let compact_at: Revision = 12;
    s.compact(compact_at).await?;
    assert_eq!(s.compact_revision().await?, compact_at);
    match s.watch(b"/c/", compact_at - 1).await {
        Err(Error::Compacted {
            requested,
            compact_revision,
        }) => assert_eq!((requested, compact_revision), (compact_at - 1, compact_at)),
        other => return Err(format!("expected Compacted, got {other:?}").into()),
    }
    match s
        .range(
            b"/c/",
            RangeOptions {
                revision: compact_at - 1,
                ..RangeOptions::default()
            },
        )
        .await
    {
        Err(Error::Compacted {
            compact_revision, ..
        }) => assert_eq!(compact_revision, compact_at),
        other => return Err(format!("expected Compacted, got {other:?}").into()),
    }
    // At the compact revision itself history is still complete.
    let at = s
        .range(
            b"/c/",
            RangeOptions {
                revision: compact_at,
                ..RangeOptions::default()
            },
        )
        .await?;
    assert_eq!(at.kvs.len(), (compact_at - 1) as usize);
    let mut w = s.watch(b"/c/", compact_at).await?;
    let evs = collect(&mut w, 21 - compact_at as usize + 1).await?;
    assert_eq!(evs.first().map(Event::revision), Some(compact_at));
    assert_eq!(evs.last().map(Event::revision), Some(21));

    assert!(matches!(
        s.compact(compact_at).await,
        Err(Error::Compacted { .. })
    ));
    assert!(matches!(
        s.compact(1000).await,
        Err(Error::FutureRevision { .. })
    ));
    // Current state is untouched by compaction.
    assert_eq!(
        s.range(b"/c/", RangeOptions::default()).await?.kvs.len(),
        20
    );
    Ok(())
}

/// `open` gives a new handle on the same data each time it is called.
pub async fn reopen_keeps_data_revision_and_compaction<F, Fut>(open: F) -> TestResult
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Box<dyn Store>, Error>>,
{
    {
        let s = open().await?;
        for i in 0..10 {
            s.create(format!("/p/{i}").as_bytes(), vec![i]).await?;
        }
        s.delete(b"/p/3", None).await?;
        s.compact(5).await?;
    }
    let s = open().await?;
    assert_eq!(s.current_revision().await?, 12);
    assert_eq!(s.compact_revision().await?, 5);
    assert_eq!(s.range(b"/p/", RangeOptions::default()).await?.kvs.len(), 9);
    assert!(s.get(b"/p/3").await?.is_none());
    let r = s.create(b"/p/new", vec![]).await?;
    assert_eq!(r, 13);
    // History from the compact revision on survives a reopen.
    let mut w = s.watch(b"/p/", 5).await?;
    let evs = collect(&mut w, 9).await?;
    assert_eq!(evs.first().map(Event::revision), Some(5));
    assert_eq!(evs.last().map(Event::revision), Some(13));
    Ok(())
}

pub async fn watch_from_a_future_revision_waits_for_it(s: &dyn Store) -> TestResult {
    let mut w = s.watch(b"", 4).await?;
    for k in ["a", "b", "c", "d"] {
        s.create(k.as_bytes(), vec![]).await?;
    }
    let evs = collect(&mut w, 2).await?;
    assert_eq!(
        evs.iter().map(Event::revision).collect::<Vec<_>>(),
        vec![4, 5]
    );
    Ok(())
}

pub async fn compactor_compacts_to_the_revision_one_interval_ago(s: Arc<dyn Store>) -> TestResult {
    for i in 0..5 {
        s.create(format!("/x/{i}").as_bytes(), vec![]).await?;
    }
    let task = spawn_compactor(
        Arc::clone(&s),
        CompactionPolicy {
            interval: Duration::from_millis(50),
            min_retained_revisions: 0,
        },
    );
    // The first tick records revision 6; the next one compacts to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while s.compact_revision().await? == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.compact_revision().await?, 6);
    drop(s);
    // With the store gone the task ends on its next tick.
    tokio::time::timeout(Duration::from_secs(5), task).await??;
    Ok(())
}

/// `s` must refuse writes of more than 1000 bytes (key + value).
pub async fn empty_keys_and_oversized_writes_are_refused_alone(s: &dyn Store) -> TestResult {
    assert!(matches!(s.create(b"", vec![]).await, Err(Error::EmptyKey)));
    assert!(matches!(
        s.create(b"big", vec![0; 1000]).await,
        Err(Error::TooLarge { size: 1003, .. })
    ));
    s.create(b"small", vec![0; 900]).await?;
    assert!(matches!(
        s.update(b"small", vec![0; 2000], None).await,
        Err(Error::TooLarge { .. })
    ));
    assert_eq!(s.current_revision().await?, 2);
    Ok(())
}

pub async fn concurrent_cas_increments_never_lose_an_update(s: Arc<dyn Store>) -> TestResult {
    s.create(b"/counter", b"0".to_vec()).await?;
    const TASKS: usize = 16;
    const INCREMENTS: usize = 20;
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0usize;
            for _ in 0..INCREMENTS {
                loop {
                    let kv = s.get(b"/counter").await?.ok_or(Error::Closed)?;
                    let n: usize = String::from_utf8_lossy(&kv.value).parse().unwrap_or(0);
                    let next = (n + 1).to_string().into_bytes();
                    match s.update(b"/counter", next, Some(kv.mod_revision)).await {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok::<_, Error>(conflicts)
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await??;
    }
    let kv = s.get(b"/counter").await?.ok_or("missing")?;
    assert_eq!(kv.value, (TASKS * INCREMENTS).to_string().into_bytes());
    assert_eq!(kv.version as usize, TASKS * INCREMENTS + 1);
    // Contention did happen.
    assert!(conflicts > 0);
    Ok(())
}
