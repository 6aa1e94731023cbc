//! The etcd backend against a real etcd: the shared scenarios of `common` (also run against
//! the embedded backend), plus what is particular to etcd (key prefixes, lost connections).
//!
//! Every test starts its own etcd (`skiff_testsupport::etcd`: free ports, a throw-away
//! data directory, killed when done), so tests run in parallel and leave nothing behind.
//! Without etcd (`scripts/deps.sh` installs it) these tests fail rather than skip.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestResult;
use skiff_store::{Error, EtcdOptions, EtcdStore, RangeOptions, Store};
use skiff_testsupport::etcd::Etcd;

const PREFIX: &[u8] = b"/skiff-test";

type BoxError = Box<dyn std::error::Error>;

fn free_port() -> std::io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// A started etcd (`skiff_testsupport::etcd`) that a store can reach.
async fn start_etcd() -> Result<Etcd, BoxError> {
    let etcd = Etcd::try_start()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let opts = EtcdOptions {
            connect_timeout: Duration::from_millis(500),
            ..EtcdOptions::default()
        };
        if EtcdStore::connect_with(&etcd.endpoints(), None, opts)
            .await
            .is_ok()
        {
            return Ok(etcd);
        }
        if Instant::now() > deadline {
            return Err(format!("etcd not answering: {}", etcd.log_tail()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A store on `etcd` under `prefix`.
async fn store_on(etcd: &Etcd, prefix: Option<&[u8]>) -> Result<EtcdStore, Error> {
    EtcdStore::connect(&etcd.endpoints(), prefix).await
}

/// A fresh etcd and a store on it under the test prefix.
async fn fresh() -> Result<(Etcd, EtcdStore), BoxError> {
    let etcd = start_etcd().await?;
    let s = store_on(&etcd, Some(PREFIX)).await?;
    Ok((etcd, s))
}

/// A dead member among the endpoints (nothing listens on its port) costs nothing but
/// a retry: every request, reads, writes and watches, reaches the live one.
#[tokio::test]
async fn a_dead_endpoint_among_several_is_passed_over() -> TestResult {
    let etcd = start_etcd().await?;
    let (dead, port) = free_port()?;
    drop(dead);
    let endpoints = vec![format!("http://127.0.0.1:{port}"), etcd.endpoint.clone()];
    let s = EtcdStore::connect(&endpoints, Some(PREFIX)).await?;
    for i in 0..30 {
        let key = format!("/k/{i}");
        s.create(key.as_bytes(), b"v".to_vec()).await?;
        assert!(s.get(key.as_bytes()).await?.is_some());
        assert_eq!(
            s.range(b"/k/", RangeOptions::default()).await?.kvs.len(),
            i + 1
        );
    }
    let mut w = s.watch(b"/k/", 0).await?;
    s.create(b"/k/after", b"v".to_vec()).await?;
    assert_eq!(common::collect(&mut w, 1).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn revisions_start_at_one_and_track_versions() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::revisions_start_at_one_and_track_versions(&s).await
}

#[tokio::test]
async fn already_exists_not_found_and_cas_conflicts() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::already_exists_not_found_and_cas_conflicts(&s).await
}

#[tokio::test]
async fn range_by_prefix_with_limit_and_continuation() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::range_by_prefix_with_limit_and_continuation(&s).await
}

#[tokio::test]
async fn range_without_a_store_prefix_spans_the_whole_key_space() -> TestResult {
    let etcd = start_etcd().await?;
    let s = store_on(&etcd, None).await?;
    common::range_by_prefix_with_limit_and_continuation(&s).await
}

#[tokio::test]
async fn range_at_past_revision_sees_the_old_state() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::range_at_past_revision_sees_the_old_state(&s).await
}

#[tokio::test]
async fn watch_from_now_filters_by_prefix_and_carries_prev() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::watch_from_now_filters_by_prefix_and_carries_prev(&s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_past_revision_has_no_gap_or_duplicate_under_writes() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::watch_from_past_revision_has_no_gap_or_duplicate_under_writes(Arc::new(s)).await
}

#[tokio::test]
async fn compaction_then_watch_or_read_below_it_is_compacted() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::compaction_then_watch_or_read_below_it_is_compacted(&s).await
}

#[tokio::test]
async fn reopen_keeps_data_revision_and_compaction() -> TestResult {
    let etcd = start_etcd().await?;
    let etcd = &etcd;
    common::reopen_keeps_data_revision_and_compaction(move || async move {
        Ok(Box::new(store_on(etcd, Some(PREFIX)).await?) as Box<dyn Store>)
    })
    .await
}

#[tokio::test]
async fn watch_from_a_future_revision_waits_for_it() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::watch_from_a_future_revision_waits_for_it(&s).await
}

#[tokio::test]
async fn compactor_compacts_to_the_revision_one_interval_ago() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::compactor_compacts_to_the_revision_one_interval_ago(Arc::new(s)).await
}

#[tokio::test]
async fn empty_keys_and_oversized_writes_are_refused_alone() -> TestResult {
    let etcd = start_etcd().await?;
    let s = EtcdStore::connect_with(
        &etcd.endpoints(),
        Some(PREFIX),
        EtcdOptions {
            max_write_bytes: 1000,
            ..EtcdOptions::default()
        },
    )
    .await?;
    common::empty_keys_and_oversized_writes_are_refused_alone(&s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_increments_never_lose_an_update() -> TestResult {
    let (_etcd, s) = fresh().await?;
    common::concurrent_cas_increments_never_lose_an_update(Arc::new(s)).await
}

#[tokio::test]
async fn stores_with_different_prefixes_do_not_see_each_other() -> TestResult {
    let etcd = start_etcd().await?;
    let a = store_on(&etcd, Some(b"/cluster-a")).await?;
    let b = store_on(&etcd, Some(b"/cluster-b")).await?;
    let mut wa = a.watch(b"", 0).await?;
    a.create(b"/k", b"a".to_vec()).await?;
    let rb = b.create(b"/k", b"b".to_vec()).await?;
    assert_eq!(a.get(b"/k").await?.map(|kv| kv.value), Some(b"a".to_vec()));
    assert_eq!(b.get(b"/k").await?.map(|kv| kv.value), Some(b"b".to_vec()));
    let all_a = a.range(b"", RangeOptions::default()).await?;
    assert_eq!(common::keys(&all_a.kvs), vec!["/k"]);
    // Revisions are etcd's, shared by both.
    assert_eq!(all_a.revision, rb);
    a.delete(b"/k", None).await?;
    let evs = common::collect(&mut wa, 2).await?;
    assert!(evs.iter().all(|e| e.kv.key == b"/k"));
    assert_eq!(
        evs.iter().map(|e| e.revision()).collect::<Vec<_>>(),
        vec![2, 4]
    );
    // In the raw key space keys sit under their prefixes (a's was deleted).
    let raw = store_on(&etcd, None).await?;
    assert_eq!(
        common::keys(&raw.range(b"", RangeOptions::default()).await?.kvs),
        vec!["/cluster-b/k"]
    );
    Ok(())
}

/// Writes a watch does not cover (another cluster on the same etcd) move the revision
/// without events; a progress request makes etcd say how far the watch has got.
#[tokio::test]
async fn progress_requests_report_revisions_moved_by_foreign_writes() -> TestResult {
    let etcd = start_etcd().await?;
    let ours = store_on(&etcd, Some(b"/cluster-a")).await?;
    let theirs = store_on(&etcd, Some(b"/cluster-b")).await?;
    let mut w = ours.watch(b"", 0).await?;
    let mine = ours.create(b"/k", b"a".to_vec()).await?;
    let foreign = theirs.create(b"/k", b"b".to_vec()).await?;
    assert!(foreign > mine);
    let progress = w
        .progress_requester()
        .ok_or("the etcd watch offers progress requests")?;
    progress.notify_one();
    let mut events = 0;
    let reached = loop {
        match tokio::time::timeout(Duration::from_secs(10), w.recv_item()).await? {
            Some(Ok(skiff_store::WatchItem::Events(evs))) => events += evs.len(),
            Some(Ok(skiff_store::WatchItem::Progress(rev))) => break rev,
            other => return Err(format!("watch ended: {other:?}").into()),
        }
    };
    assert_eq!(events, 1, "our own write arrives first, as an event");
    assert!(
        reached >= foreign,
        "progress {reached} < foreign write {foreign}"
    );
    Ok(())
}

#[tokio::test]
async fn watch_ends_when_store_is_dropped() -> TestResult {
    let (_etcd, s) = fresh().await?;
    let mut w = s.watch(b"", 0).await?;
    s.create(b"a", vec![]).await?;
    assert_eq!(common::collect(&mut w, 1).await?.len(), 1);
    drop(s);
    assert!(tokio::time::timeout(Duration::from_secs(5), w.recv())
        .await?
        .is_none());
    Ok(())
}

#[tokio::test]
async fn a_lost_etcd_ends_watches_with_an_error_and_fails_requests() -> TestResult {
    let (mut etcd, s) = fresh().await?;
    let mut w = s.watch(b"", 0).await?;
    s.create(b"a", vec![]).await?;
    assert_eq!(common::collect(&mut w, 1).await?.len(), 1);
    etcd.kill();
    match tokio::time::timeout(Duration::from_secs(30), w.recv()).await? {
        Some(Err(Error::Etcd { op, .. })) => assert_eq!(op, "watching"),
        other => return Err(format!("expected an etcd error, got {other:?}").into()),
    }
    assert!(w.recv().await.is_none());
    assert!(matches!(
        s.create(b"b", vec![]).await,
        Err(Error::Etcd { .. })
    ));
    assert!(matches!(s.get(b"a").await, Err(Error::Etcd { .. })));
    assert!(matches!(s.watch(b"", 0).await, Err(Error::Etcd { .. })));
    Ok(())
}

#[tokio::test]
async fn connecting_to_nothing_fails_cleanly() -> TestResult {
    let (listener, port) = free_port()?;
    drop(listener);
    let started = Instant::now();
    let result = EtcdStore::connect_with(
        &[format!("http://127.0.0.1:{port}")],
        None,
        EtcdOptions {
            connect_timeout: Duration::from_secs(1),
            ..EtcdOptions::default()
        },
    )
    .await;
    assert!(matches!(result, Err(Error::Etcd { .. })));
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn lists_and_watches_larger_than_the_grpc_default_limit() -> TestResult {
    let (_etcd, s) = fresh().await?;
    // 64 values of 100 KB: 6.4 MB, above the 4 MiB default message limit of gRPC clients.
    for i in 0..64 {
        s.create(format!("/big/{i:02}").as_bytes(), vec![b'x'; 100_000])
            .await?;
    }
    let all = s.range(b"/big/", RangeOptions::default()).await?;
    assert_eq!(all.kvs.len(), 64);
    // A watch catching up gets many revisions per message.
    let mut w = s.watch(b"/big/", 2).await?;
    let evs = common::collect(&mut w, 64).await?;
    assert_eq!(evs.len(), 64);
    assert!(evs.iter().all(|e| e.kv.value.len() == 100_000));
    Ok(())
}

/// Rough figures, not a test: `cargo test -p skiff-store --release --test etcd -- --ignored
/// --nocapture bench`. etcd's data lives in /dev/shm where available (no disk fsync cost);
/// set `SKIFF_ETCD_TEST_DIR=/var/tmp` to measure on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand"]
async fn bench_etcd_backend() -> TestResult {
    let (_etcd, s) = fresh().await?;
    let s = Arc::new(s);
    const SEQ: usize = 500;
    let t = Instant::now();
    for i in 0..SEQ {
        s.create(format!("/seq/{i:05}").as_bytes(), vec![7; 1000])
            .await?;
    }
    let seq = t.elapsed();
    eprintln!(
        "sequential create (1 KB): {:.0}/s, {:.2} ms each",
        SEQ as f64 / seq.as_secs_f64(),
        seq.as_secs_f64() * 1000.0 / SEQ as f64
    );

    const TASKS: usize = 64;
    const PER_TASK: usize = 50;
    let mut w = s.watch(b"/par/", 0).await?;
    let t = Instant::now();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            for i in 0..PER_TASK {
                s.create(format!("/par/{task}/{i}").as_bytes(), vec![7; 1000])
                    .await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let par = t.elapsed();
    eprintln!(
        "concurrent create ({TASKS} tasks, 1 KB): {:.0}/s",
        (TASKS * PER_TASK) as f64 / par.as_secs_f64()
    );
    let evs = common::collect(&mut w, TASKS * PER_TASK).await?;
    eprintln!(
        "watch delivered {} events {:.0} ms after the first write",
        evs.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );

    let t = Instant::now();
    const LISTS: usize = 20;
    for _ in 0..LISTS {
        let all = s.range(b"/par/", RangeOptions::default()).await?;
        assert_eq!(all.kvs.len(), TASKS * PER_TASK);
    }
    eprintln!(
        "range of {} keys: {:.1} ms",
        TASKS * PER_TASK,
        t.elapsed().as_secs_f64() * 1000.0 / LISTS as f64
    );

    let t = Instant::now();
    const GETS: usize = 1000;
    for i in 0..GETS {
        s.get(format!("/seq/{:05}", i % SEQ).as_bytes()).await?;
    }
    eprintln!(
        "sequential get: {:.0}/s",
        GETS as f64 / t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    for _ in 0..100 {
        s.compact_revision().await?;
    }
    eprintln!(
        "compact_revision (verified): {:.2} ms",
        t.elapsed().as_secs_f64() * 1000.0 / 100.0
    );
    Ok(())
}
