//! Write throughput and latency of the embedded store under concurrent creates.
//!
//! cargo run --release -p skiff-store --example store_bench -- [tasks] [creates] [value_bytes] [watchers]
//! Defaults: 64 tasks, 50000 creates, 1024-byte values, 0 watchers. Uses a temp dir under
//! $TMPDIR (fsync'd writes, as in production).
// A benchmark tool: a panic is its error report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::{EmbeddedOptions, EmbeddedStore, Store};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tasks = arg(1, 64).max(1);
    let total = arg(2, 50_000);
    let value_bytes = arg(3, 1024);
    let watchers = arg(4, 0);
    let per_task = total / tasks;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);

    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let mut w = store.watch(b"/registry/", 0).await?;
        watch_tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(Ok(batch)) = w.recv().await {
                n += batch.len();
            }
            n
        }));
    }

    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let key = format!("/registry/pods/ns{t}/pod-{i}");
                let value = vec![b'x'; value_bytes];
                let t0 = Instant::now();
                store.create(key.as_bytes(), value).await?;
                lat.push(t0.elapsed());
            }
            Ok::<_, skiff_store::Error>(lat)
        }));
    }
    let mut lat = Vec::with_capacity(per_task * tasks);
    for h in handles {
        lat.extend(h.await??);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let n = lat.len();
    println!(
        "{n} creates from {tasks} tasks, {value_bytes}-byte values, {watchers} watchers: \
         {:.0} writes/s over {:.2}s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    let t0 = Instant::now();
    let listed = store
        .range(b"/registry/pods/", skiff_store::RangeOptions::default())
        .await?;
    println!(
        "range of {} keys: {:.1} ms",
        listed.kvs.len(),
        t0.elapsed().as_secs_f64() * 1e3
    );
    let size = std::fs::metadata(store.path())?.len();
    println!("database file: {:.1} MiB", size as f64 / 1048576.0);
    drop(store);
    for w in watch_tasks {
        let seen = w.await?;
        println!("watcher saw {seen} events");
    }
    Ok(())
}
