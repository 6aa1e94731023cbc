//! The embedded store's file under churn (issue 15): KEYS keys, then WRITES updates of
//! them by 64 writers, compacted as the API server compacts its store (every INTERVAL
//! seconds to the revision of one interval before; the server's interval is 5 minutes),
//! with the store's own defragmentation after each compaction. Prints, every tenth of
//! the writes and after the last compaction, the file's size against the live data (the
//! bytes of the current keys and values). A figure of size, not of speed.
//!
//! cargo run --release -p skiff-store --example store_churn -- [keys] [writes] [value_bytes] [interval_s]
//! Defaults: 10000 keys, 1000000 writes, 400-byte values (a small stored object), 10 s.
// A benchmark tool: a panic is its error report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{
    spawn_compactor, CompactionPolicy, EmbeddedOptions, EmbeddedStore, RangeOptions, Store,
};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = arg(1, 10_000).max(1);
    let writes = arg(2, 1_000_000);
    let value_bytes = arg(3, 400);
    let interval = Duration::from_secs(arg(4, 10).max(1) as u64);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);
    let path = store.path().to_path_buf();
    let file_mib = || std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    let key = |i: usize| format!("/registry/configmaps/churn/cm-{i:06}");
    for i in 0..keys {
        store
            .create(key(i).as_bytes(), vec![b'v'; value_bytes])
            .await?;
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let compactor = spawn_compactor(
        dyn_store,
        CompactionPolicy {
            interval,
            min_retained_revisions: 0,
        },
    );
    let live_mib = |s: Arc<EmbeddedStore>| async move {
        let page = s
            .range(b"/registry/", RangeOptions::default())
            .await
            .expect("range");
        page.kvs
            .iter()
            .map(|kv| kv.key.len() + kv.value.len())
            .sum::<usize>() as f64
            / 1048576.0
    };
    println!(
        "{:>10} {:>8} {:>10} {:>10} {:>7}",
        "writes", "secs", "file MiB", "live MiB", "ratio"
    );
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let row = |writes: usize, live: f64, note: &str| {
        println!(
            "{:>10} {:>8.1} {:>10.1} {:>10.1} {:>7.2}{note}",
            writes,
            start.elapsed().as_secs_f64(),
            file_mib(),
            live,
            file_mib() / live
        );
    };
    let mut tasks = Vec::new();
    for t in 0..64usize {
        let (store, done) = (store.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = t;
            while done.fetch_add(1, Ordering::Relaxed) < writes {
                let v = vec![b'a' + (n % 26) as u8; value_bytes];
                store
                    .update(key(n % keys).as_bytes(), v, None)
                    .await
                    .expect("update");
                n += 64;
            }
        }));
    }
    let step = (writes / 10).max(1);
    let mut next = step;
    while next <= writes {
        if done.load(Ordering::Relaxed) >= next {
            row(next, live_mib(store.clone()).await, "");
            next += step;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for t in tasks {
        t.await?;
    }
    // Two more intervals: the last writes' history is compacted and the file defragmented.
    tokio::time::sleep(interval * 2 + Duration::from_secs(2)).await;
    // A write waits for the writer, so the defragmentation is over.
    store
        .update(key(0).as_bytes(), vec![b'z'; value_bytes], None)
        .await?;
    row(
        writes,
        live_mib(store.clone()).await,
        "   (after the last compaction)",
    );
    compactor.abort();
    Ok(())
}
