//! kill -9 in the middle of a write storm leaves a committed prefix that holds every
//! acknowledged write. The test re-runs its own binary as the writer child.
// A test: a panic is its failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use skiff_store::{EmbeddedOptions, EmbeddedStore, RangeOptions, Revision, Store};

const DIR_ENV: &str = "SKIFF_STORE_CRASH_CHILD_DIR";

/// The child: writes from 16 tasks forever, printing each acknowledged write.
#[test]
#[ignore = "run only as the child of kill_9_keeps_every_acknowledged_write"]
fn crash_child_writer() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(&dir, EmbeddedOptions::default())?);
        let mut handles = Vec::new();
        for t in 0..16 {
            let store = Arc::clone(&store);
            handles.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{t}/{i}");
                    let rev = store.create(key.as_bytes(), vec![t as u8; 200]).await?;
                    println!("ACK {key} {rev}");
                }
                Ok::<_, skiff_store::Error>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        Ok(())
    })
}

#[tokio::test]
async fn kill_9_keeps_every_acknowledged_write() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "crash_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let mut acked: BTreeMap<String, Revision> = BTreeMap::new();
    let mut lines = BufReader::new(stdout).lines();
    while acked.len() < 3000 {
        let Some(line) = lines.next() else {
            return Err("child stopped before being killed".into());
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, rev) = rest.split_once(' ').ok_or("bad ACK line")?;
            acked.insert(key.to_string(), rev.parse()?);
        }
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    // Acks printed between our last read and the kill still count.
    for line in lines {
        let line = line?;
        if let Some(rest) = line.strip_prefix("ACK ") {
            if let Some((key, rev)) = rest.split_once(' ') {
                acked.insert(key.to_string(), rev.parse()?);
            }
        }
    }

    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
    let current = store.current_revision().await?;
    let all = store.range(b"/crash/", RangeOptions::default()).await?;
    let stored: BTreeMap<String, Revision> = all
        .kvs
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                kv.mod_revision,
            )
        })
        .collect();
    for (key, rev) in &acked {
        assert_eq!(stored.get(key), Some(rev), "acknowledged {key} lost");
    }
    // A committed prefix: revisions 2..=current, each exactly once.
    let mut revs: Vec<Revision> = stored.values().copied().collect();
    revs.sort();
    assert_eq!(revs, (2..=current).collect::<Vec<_>>());
    // And the store keeps working.
    let r = store.create(b"/after", vec![]).await?;
    assert_eq!(r, current + 1);
    Ok(())
}
