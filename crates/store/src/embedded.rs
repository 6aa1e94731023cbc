//! The embedded backend: one redb file, one writer thread doing group commit.
//!
//! Layout (all in `<data dir>/store.redb`):
//! - `kv`:   key → current state (create/mod revision, version, value);
//! - `log`:  revision → the change made at that revision (kind, new state, previous state),
//!   kept from the compact revision on; it serves watch replay and reads at a past revision;
//! - `meta`: "revision" (last committed revision) and "compact_revision".
//!
//! Every write goes through one channel to one writer thread. It drains whatever is queued
//! (up to `max_batch`), applies the operations in order in ONE redb write transaction — each
//! successful operation taking the next revision — commits it with `Durability::Immediate`
//! (fsync) and only then answers every waiter and publishes the events to watchers. Many
//! concurrent writers thus share one fsync, and a crash leaves a committed prefix of writes
//! (the revision counter lives in the same transaction).
//!
//! Reads run on tokio's blocking pool in a redb read transaction (a consistent snapshot).
//! A read at a past revision `R` takes the current state and undoes, per key, the changes
//! logged after `R` (using the logged previous state), so its cost grows with the number of
//! writes since `R`; it needs `R >= compact_revision`.
//!
//! Compaction raises `compact_revision` at once (reads and watches below it fail from then
//! on) and deletes the log entries below it in chunks of `purge_chunk` per write batch, so a
//! big compaction never stalls writers for long.
//!
//! Defragmentation: redb reuses freed pages but never shrinks its file, so after churn the
//! file keeps the size of the history it once held. When a compaction's purge has
//! finished and the file is more than twice the live data (keys, values and the B-trees'
//! own bytes) and larger than `defrag_min_bytes`, the writer thread copies every table in
//! key order into a fresh file and renames it over the database (as `etcdctl defrag`
//! rewrites bbolt's), holding off reads and writes meanwhile, as etcd's defragmentation
//! does.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};

use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::codec;
use crate::{
    Error, Event, EventKind, KeyValue, RangeOptions, RangeResult, Result, Revision, Store,
    WatchSource, WatchStream,
};

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact_revision";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// Tuning of the embedded backend. `Default` suits the API server.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most operations committed in one transaction (one fsync).
    pub max_batch: usize,
    /// Writes that may wait in the queue before writers wait for room.
    pub queue_depth: usize,
    /// Commit batches buffered per watcher; a watcher further behind gets
    /// [`Error::WatchLagged`] and must re-list.
    pub watch_buffer: usize,
    /// Most events returned per batch while a watch replays history.
    pub replay_chunk: usize,
    /// Most compacted log entries deleted per write transaction.
    pub purge_chunk: usize,
    /// redb page cache size in bytes.
    pub cache_size: usize,
    /// Files this small are never defragmented, however fragmented.
    pub defrag_min_bytes: u64,
    /// Largest key + value accepted in one write ([`crate::MAX_WRITE_BYTES`], what etcd
    /// takes by default, so both backends take the same objects); larger writes fail with [`Error::TooLarge`] before reaching the batch.
    pub max_write_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_batch: 1024,
            queue_depth: 8192,
            watch_buffer: 1024,
            replay_chunk: 1024,
            purge_chunk: 10_000,
            cache_size: 256 * 1024 * 1024,
            defrag_min_bytes: 16 * 1024 * 1024,
            max_write_bytes: crate::MAX_WRITE_BYTES,
        }
    }
}

enum Op {
    Create {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    Delete {
        key: Vec<u8>,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

enum Reply {
    Revision(Revision),
    Deleted(Revision, KeyValue),
    Done,
}

struct WriteRequest {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

type EventBatch = Arc<Vec<Event>>;

struct Shared {
    /// Written (exclusively) only to defragment.
    db: std::sync::RwLock<Database>,
    /// The database file.
    path: PathBuf,
    /// Last committed revision; written only by the writer thread, after commit.
    revision: AtomicI64,
    /// Compact revision; written only by the writer thread, after commit.
    compact_revision: AtomicI64,
    /// redb page cache size, for the file a defragmentation writes.
    cache_size: usize,
    events: broadcast::Sender<EventBatch>,
}

/// The embedded [`Store`] backend. Dropping it finishes queued writes, stops the writer
/// thread and closes the database file (open watch streams then end).
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writes: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<std::thread::JoinHandle<()>>,
    opts: EmbeddedOptions,
    path: PathBuf,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .field("revision", &self.shared.revision.load(Ordering::SeqCst))
            .finish()
    }
}

impl Shared {
    /// The database, for a transaction (not while it is being defragmented).
    fn db(&self) -> std::sync::RwLockReadGuard<'_, Database> {
        self.db.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `data_dir`. Blocking: call it at startup
    /// (or from a blocking context); it may run redb's repair after an unclean shutdown.
    pub fn open(data_dir: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self> {
        let dir = data_dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            context: format!("creating data directory {}", dir.display()),
            err: Arc::new(e),
        })?;
        let path = dir.join(DB_FILE);
        // A defragmentation that a crash cut short left its unfinished copy.
        let _ = std::fs::remove_file(rewrite_path(&path));
        let db = Database::builder()
            .set_cache_size(opts.cache_size)
            .create(&path)
            .map_err(Error::storage("opening the database"))?;

        let txn = db
            .begin_write()
            .map_err(Error::storage("initialising tables"))?;
        let (revision, compact_revision) = {
            txn.open_table(KV)
                .map_err(Error::storage("initialising tables"))?;
            txn.open_table(LOG)
                .map_err(Error::storage("initialising tables"))?;
            let mut meta = txn
                .open_table(META)
                .map_err(Error::storage("initialising tables"))?;
            let revision = read_meta(&meta, META_REVISION)?;
            let compact = read_meta(&meta, META_COMPACT)?;
            let revision = match revision {
                Some(r) => r,
                None => {
                    meta.insert(META_REVISION, 1)
                        .map_err(Error::storage("initialising tables"))?;
                    1
                }
            };
            let compact = match compact {
                Some(c) => c,
                None => {
                    meta.insert(META_COMPACT, 0)
                        .map_err(Error::storage("initialising tables"))?;
                    0
                }
            };
            (revision, compact)
        };
        txn.commit()
            .map_err(Error::storage("initialising tables"))?;

        let (events, _) = broadcast::channel(opts.watch_buffer.max(1));
        let shared = Arc::new(Shared {
            db: std::sync::RwLock::new(db),
            path: path.clone(),
            revision: AtomicI64::new(revision),
            compact_revision: AtomicI64::new(compact_revision),
            cache_size: opts.cache_size,
            events,
        });
        let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
        let writer_shared = Arc::clone(&shared);
        let max_batch = opts.max_batch.max(1);
        let purge_chunk = opts.purge_chunk.max(1);
        let defrag_min = opts.defrag_min_bytes;
        let writer = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer_loop(writer_shared, rx, max_batch, purge_chunk, defrag_min))
            .map_err(|e| Error::Io {
                context: "spawning the store writer thread".into(),
                err: Arc::new(e),
            })?;
        tracing::debug!(path = %path.display(), revision, compact_revision, "store opened");
        Ok(EmbeddedStore {
            shared,
            writes: Some(tx),
            writer: Some(writer),
            opts,
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_write(&self, key: &[u8], value_len: usize) -> Result<()> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let size = key.len().saturating_add(value_len);
        if size > self.opts.max_write_bytes {
            return Err(Error::TooLarge {
                key: key.to_vec(),
                size,
                max: self.opts.max_write_bytes,
            });
        }
        Ok(())
    }

    async fn write(&self, op: Op) -> Result<Reply> {
        let writes = self.writes.as_ref().ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        writes
            .send(WriteRequest { op, reply })
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared) -> Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        run_blocking(move || f(&shared)).await
    }
}

async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("store read task failed: {e}")))?
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit; joining it
        // releases its handle on the database so the file can be reopened right away.
        self.writes.take();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "store writer thread panicked");
            }
        }
    }
}

fn read_meta<T: ReadableTable<&'static str, i64>>(meta: &T, name: &str) -> Result<Option<i64>> {
    Ok(meta
        .get(name)
        .map_err(Error::storage("reading metadata"))?
        .map(|v| v.value()))
}

fn required_meta<T: ReadableTable<&'static str, i64>>(meta: &T, name: &str) -> Result<i64> {
    read_meta(meta, name)?.ok_or_else(|| Error::Corrupt {
        table: "meta",
        detail: format!("missing {name}"),
    })
}

// ---------------------------------------------------------------------------------------
// Writer

fn writer_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<WriteRequest>,
    max_batch: usize,
    purge_chunk: usize,
    defrag_min: u64,
) {
    let mut batch: Vec<WriteRequest> = Vec::with_capacity(max_batch);
    // Compacted history may remain to be purged: then an idle writer purges on.
    let mut purging = false;
    loop {
        if purging {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(mpsc::error::TryRecvError::Empty) => {}
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(req) => batch.push(req),
                None => break,
            }
        }
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        let purged = commit_batch(&shared, &mut batch, purge_chunk);
        let finished = (purging || purged > 0) && purged < purge_chunk;
        purging = purged == purge_chunk;
        if finished {
            defragment_if_needed(&shared, defrag_min);
        }
    }
    tracing::debug!("store writer stopped");
}

/// Rewrites the database file compactly when it is more than twice its live data (and
/// larger than `min` bytes). Reads and writes wait meanwhile.
fn defragment_if_needed(shared: &Shared, min: u64) {
    let file = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = file(&shared.path);
    if before <= min {
        return;
    }
    let live = {
        let db = shared.db();
        let stats = db.begin_write().map_err(|e| e.to_string()).and_then(|txn| {
            let stats = txn.stats().map_err(|e| e.to_string());
            let _ = txn.abort();
            stats
        });
        match stats {
            Ok(s) => s.stored_bytes() + s.metadata_bytes(),
            Err(e) => {
                tracing::warn!(error = %e, "store: cannot read the database's statistics");
                return;
            }
        }
    };
    if before <= live.saturating_mul(2) {
        return;
    }
    let started = std::time::Instant::now();
    let mut db = shared.db.write().unwrap_or_else(|e| e.into_inner());
    match rewrite(shared, &mut db) {
        Ok(()) => tracing::info!(
            before,
            after = file(&shared.path),
            live,
            ms = started.elapsed().as_millis() as u64,
            "store defragmented"
        ),
        Err(e) => tracing::warn!(error = %e, before, live, "store: defragmentation failed"),
    }
}

/// The file a defragmentation writes before it takes the database's place.
fn rewrite_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".rewrite");
    PathBuf::from(name)
}

/// Defragments by copying every table, in key order, into a fresh file beside the
/// database and renaming it over the database (as `etcdctl defrag` does). Pages filled
/// in order come out nearly full, where redb's in-place `compact` leaves B-tree pages
/// half full and free pages inside the file. A crash before the rename leaves the old
/// file whole (the half-written copy is removed at the next open); after it, the copy.
fn rewrite(shared: &Shared, db: &mut Database) -> std::result::Result<(), String> {
    let fresh_path = rewrite_path(&shared.path);
    let _ = std::fs::remove_file(&fresh_path);
    let copied = (|| -> std::result::Result<Database, String> {
        let fresh = Database::builder()
            .set_cache_size(shared.cache_size)
            .create(&fresh_path)
            .map_err(|e| format!("creating {}: {e}", fresh_path.display()))?;
        let read = db.begin_read().map_err(|e| e.to_string())?;
        let write = fresh.begin_write().map_err(|e| e.to_string())?;
        {
            copy_table(&read, &write, KV)?;
            copy_table(&read, &write, LOG)?;
            copy_table(&read, &write, META)?;
        }
        write.commit().map_err(|e| e.to_string())?;
        // redb grows a file by doubling it and gives its free tail back a half at a
        // commit: commit (nothing) until it stops shrinking.
        let len = || std::fs::metadata(&fresh_path).map_or(0, |m| m.len());
        let mut last = len();
        for _ in 0..32 {
            let txn = fresh.begin_write().map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())?;
            let now = len();
            if now >= last {
                break;
            }
            last = now;
        }
        Ok(fresh)
    })();
    let fresh = match copied {
        Ok(fresh) => fresh,
        Err(e) => {
            let _ = std::fs::remove_file(&fresh_path);
            return Err(e);
        }
    };
    std::fs::rename(&fresh_path, &shared.path).map_err(|e| {
        let _ = std::fs::remove_file(&fresh_path);
        format!("renaming {} over the database: {e}", fresh_path.display())
    })?;
    if let Some(dir) = shared.path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    // The old file (now unlinked) closes when its handle is dropped here.
    *db = fresh;
    Ok(())
}

/// Page size of redb's files.
const PAGE: usize = 4096;

/// Copies one table into an empty one of a fresh database, in an order that leaves its
/// leaf pages full. redb splits a full leaf in halves, so entries inserted in key order
/// leave every leaf but the last half full (a file about twice what a bulk load would
/// make). Instead, the entries are cut into runs that fill one page each; the last
/// `(n + 2) / 2` of every run go in first, which splits the pages at the runs' bounds,
/// and the first ones of every run are inserted after, filling each page in place.
fn copy_table<K, V>(
    read: &redb::ReadTransaction,
    write: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> std::result::Result<(), String>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let from = read.open_table(def).map_err(|e| e.to_string())?;
    let mut to = write.open_table(def).map_err(|e| e.to_string())?;
    // What one entry takes in a leaf page: its bytes and any length fields.
    let cost = |k: &redb::AccessGuard<'_, K>, v: &redb::AccessGuard<'_, V>| {
        let kb = K::as_bytes(&k.value()).as_ref().len();
        let vb = V::as_bytes(&v.value()).as_ref().len();
        kb + vb
            + if K::fixed_width().is_none() { 4 } else { 0 }
            + if V::fixed_width().is_none() { 4 } else { 0 }
    };
    for tails in [true, false] {
        let mut run = Vec::new();
        let mut used = 4; // the page's header
        let flush = |run: &mut Vec<(redb::AccessGuard<'_, K>, redb::AccessGuard<'_, V>)>,
                     to: &mut redb::Table<'_, K, V>|
         -> std::result::Result<(), String> {
            let first_tail = run.len() - (run.len() + 2) / 2;
            for (i, (k, v)) in run.drain(..).enumerate() {
                if (i >= first_tail) == tails {
                    to.insert(k.value(), v.value()).map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        };
        for entry in from.iter().map_err(|e| e.to_string())? {
            let (k, v) = entry.map_err(|e| e.to_string())?;
            let c = cost(&k, &v);
            if !run.is_empty() && used + c > PAGE {
                flush(&mut run, &mut to)?;
                used = 4;
            }
            used += c;
            run.push((k, v));
        }
        if !run.is_empty() {
            flush(&mut run, &mut to)?;
        }
    }
    Ok(())
}

/// Commits the batch; how many compacted log entries it purged.
fn commit_batch(shared: &Shared, batch: &mut Vec<WriteRequest>, purge_chunk: usize) -> usize {
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    match apply_batch(shared, batch, &mut results, &mut events, purge_chunk) {
        Ok((revision, compact, purged)) => {
            shared.revision.store(revision, Ordering::SeqCst);
            shared.compact_revision.store(compact, Ordering::SeqCst);
            if !events.is_empty() {
                // No receivers is fine: nobody is watching.
                let _ = shared.events.send(Arc::new(events));
            }
            for (req, result) in batch.drain(..).zip(results) {
                let _ = req.reply.send(result);
            }
            purged
        }
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(), "store commit failed");
            for req in batch.drain(..) {
                let _ = req.reply.send(Err(e.clone()));
            }
            0
        }
    }
}

/// Applies the batch in one transaction. The outer error aborts the whole transaction
/// (storage failure); per-operation outcomes (conflicts etc.) go to `results`. Returns the
/// revision, the compact revision and how many compacted log entries it purged.
fn apply_batch(
    shared: &Shared,
    batch: &mut [WriteRequest],
    results: &mut Vec<Result<Reply>>,
    events: &mut Vec<Event>,
    purge_chunk: usize,
) -> Result<(Revision, Revision, usize)> {
    let db = shared.db();
    let mut txn = db
        .begin_write()
        .map_err(Error::storage("beginning a write"))?;
    txn.set_durability(Durability::Immediate);
    let mut revision = shared.revision.load(Ordering::SeqCst);
    let mut compact = shared.compact_revision.load(Ordering::SeqCst);
    let mut purged = 0usize;
    {
        let mut kv = txn.open_table(KV).map_err(Error::storage("opening kv"))?;
        let mut log = txn.open_table(LOG).map_err(Error::storage("opening log"))?;
        let mut meta = txn
            .open_table(META)
            .map_err(Error::storage("opening meta"))?;
        let mut tables = WriteTables {
            kv: &mut kv,
            log: &mut log,
        };
        for req in batch.iter_mut() {
            let result = match &mut req.op {
                Op::Create { key, value } => {
                    tables.create(key, std::mem::take(value), &mut revision, events)?
                }
                Op::Update {
                    key,
                    value,
                    expected,
                } => tables.update(key, std::mem::take(value), *expected, &mut revision, events)?,
                Op::Delete { key, expected } => {
                    tables.delete(key, *expected, &mut revision, events)?
                }
                Op::Compact { revision: target } => {
                    let target = *target;
                    if target <= compact {
                        Err(Error::Compacted {
                            requested: target,
                            compact_revision: compact,
                        })
                    } else if target > revision {
                        Err(Error::FutureRevision {
                            requested: target,
                            current: revision,
                        })
                    } else {
                        compact = target;
                        Ok(Reply::Done)
                    }
                }
            };
            results.push(result);
        }
        // Physically drop a bounded chunk of compacted history per transaction.
        if compact > 0 {
            let extracted = log
                .extract_from_if(..compact, |_, _| true)
                .map_err(Error::storage("compacting the log"))?;
            for entry in extracted.take(purge_chunk) {
                entry.map_err(Error::storage("compacting the log"))?;
                purged += 1;
            }
        }
        meta.insert(META_REVISION, revision)
            .map_err(Error::storage("writing the revision"))?;
        meta.insert(META_COMPACT, compact)
            .map_err(Error::storage("writing the compact revision"))?;
    }
    txn.commit().map_err(Error::storage("committing"))?;
    Ok((revision, compact, purged))
}

struct WriteTables<'a, 't> {
    kv: &'a mut redb::Table<'t, &'static [u8], &'static [u8]>,
    log: &'a mut redb::Table<'t, i64, &'static [u8]>,
}

impl WriteTables<'_, '_> {
    fn current(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.kv.get(key).map_err(Error::storage("reading a key"))? {
            None => Ok(None),
            Some(v) => codec::decode_current(key, v.value()).map(Some),
        }
    }

    fn record(&mut self, revision: Revision, ev: Event, events: &mut Vec<Event>) -> Result<()> {
        self.log
            .insert(revision, codec::encode_event(&ev).as_slice())
            .map_err(Error::storage("appending to the log"))?;
        events.push(ev);
        Ok(())
    }

    fn put(&mut self, kv: &KeyValue) -> Result<()> {
        self.kv
            .insert(kv.key.as_slice(), codec::encode_current(kv).as_slice())
            .map_err(Error::storage("writing a key"))?;
        Ok(())
    }

    /// Outer error: storage failure (aborts the batch). Inner: this operation's outcome.
    fn create(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        revision: &mut Revision,
        events: &mut Vec<Event>,
    ) -> Result<Result<Reply>> {
        if self
            .kv
            .get(key)
            .map_err(Error::storage("reading a key"))?
            .is_some()
        {
            return Ok(Err(Error::AlreadyExists { key: key.to_vec() }));
        }
        let rev = *revision + 1;
        let kv = KeyValue {
            key: key.to_vec(),
            value,
            create_revision: rev,
            mod_revision: rev,
            version: 1,
        };
        self.put(&kv)?;
        self.record(
            rev,
            Event {
                kind: EventKind::Put,
                kv,
                prev_kv: None,
            },
            events,
        )?;
        *revision = rev;
        Ok(Ok(Reply::Revision(rev)))
    }

    fn check(
        &self,
        key: &[u8],
        expected: Option<Revision>,
    ) -> Result<std::result::Result<KeyValue, Error>> {
        let Some(prev) = self.current(key)? else {
            return Ok(Err(Error::NotFound { key: key.to_vec() }));
        };
        if let Some(expected) = expected {
            if prev.mod_revision != expected {
                return Ok(Err(Error::Conflict {
                    key: key.to_vec(),
                    expected,
                    actual: prev.mod_revision,
                }));
            }
        }
        Ok(Ok(prev))
    }

    fn update(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        expected: Option<Revision>,
        revision: &mut Revision,
        events: &mut Vec<Event>,
    ) -> Result<Result<Reply>> {
        let prev = match self.check(key, expected)? {
            Ok(prev) => prev,
            Err(e) => return Ok(Err(e)),
        };
        let rev = *revision + 1;
        let kv = KeyValue {
            key: key.to_vec(),
            value,
            create_revision: prev.create_revision,
            mod_revision: rev,
            version: prev.version + 1,
        };
        self.put(&kv)?;
        self.record(
            rev,
            Event {
                kind: EventKind::Put,
                kv,
                prev_kv: Some(prev),
            },
            events,
        )?;
        *revision = rev;
        Ok(Ok(Reply::Revision(rev)))
    }

    fn delete(
        &mut self,
        key: &[u8],
        expected: Option<Revision>,
        revision: &mut Revision,
        events: &mut Vec<Event>,
    ) -> Result<Result<Reply>> {
        let prev = match self.check(key, expected)? {
            Ok(prev) => prev,
            Err(e) => return Ok(Err(e)),
        };
        let rev = *revision + 1;
        self.kv
            .remove(key)
            .map_err(Error::storage("deleting a key"))?;
        self.record(
            rev,
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.to_vec(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: rev,
                    version: 0,
                },
                prev_kv: Some(prev.clone()),
            },
            events,
        )?;
        *revision = rev;
        Ok(Ok(Reply::Deleted(rev, prev)))
    }
}

// ---------------------------------------------------------------------------------------
// Reads

fn get_current(shared: &Shared, key: &[u8]) -> Result<Option<KeyValue>> {
    let db = shared.db();
    let txn = db
        .begin_read()
        .map_err(Error::storage("beginning a read"))?;
    let kv = txn.open_table(KV).map_err(Error::storage("opening kv"))?;
    match kv.get(key).map_err(Error::storage("reading a key"))? {
        None => Ok(None),
        Some(v) => codec::decode_current(key, v.value()).map(Some),
    }
}

fn range_blocking(shared: &Shared, prefix: &[u8], opts: &RangeOptions) -> Result<RangeResult> {
    let db = shared.db();
    let txn = db
        .begin_read()
        .map_err(Error::storage("beginning a read"))?;
    let meta = txn
        .open_table(META)
        .map_err(Error::storage("opening meta"))?;
    let current = required_meta(&meta, META_REVISION)?;
    let compact = required_meta(&meta, META_COMPACT)?;
    let at = match opts.revision {
        0 => current,
        r if r > current => {
            return Err(Error::FutureRevision {
                requested: r,
                current,
            })
        }
        r if r < compact => {
            return Err(Error::Compacted {
                requested: r,
                compact_revision: compact,
            })
        }
        r => r,
    };
    let after = opts.start_after.as_deref();
    let in_range = |key: &[u8]| key.starts_with(prefix) && after.is_none_or(|a| key > a);

    // Keys changed after `at`, mapped to their state at `at` (None: absent then).
    let mut overlay: BTreeMap<Vec<u8>, Option<KeyValue>> = BTreeMap::new();
    if at < current {
        let log = txn.open_table(LOG).map_err(Error::storage("opening log"))?;
        for entry in log
            .range(at + 1..=current)
            .map_err(Error::storage("reading the log"))?
        {
            let (_, raw) = entry.map_err(Error::storage("reading the log"))?;
            let key = codec::event_key(raw.value())?;
            if !in_range(key) || overlay.contains_key(key) {
                continue;
            }
            let ev = codec::decode_event(raw.value())?;
            overlay.insert(ev.kv.key, ev.prev_kv);
        }
    }

    let kv = txn.open_table(KV).map_err(Error::storage("opening kv"))?;
    let lower = match after {
        Some(a) if a >= prefix => Bound::Excluded(a),
        _ => Bound::Included(prefix),
    };
    let mut cur = kv
        .range::<&[u8]>((lower, Bound::Unbounded))
        .map_err(Error::storage("reading keys"))?;
    let mut next_current = move || -> Result<Option<KeyValue>> {
        match cur.next() {
            None => Ok(None),
            Some(entry) => {
                let (k, v) = entry.map_err(Error::storage("reading keys"))?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    return Ok(None);
                }
                codec::decode_current(key, v.value()).map(Some)
            }
        }
    };
    let mut overlay = overlay.into_iter();
    let mut cur_head = next_current()?;
    let mut ov_head = overlay.next();
    let limit = opts.limit;
    let mut kvs = Vec::new();
    let mut more = false;
    loop {
        let item = match (cur_head.take(), ov_head.take()) {
            (None, None) => break,
            (Some(c), Some((ok, ov))) => {
                if c.key == ok {
                    cur_head = next_current()?;
                    ov_head = overlay.next();
                    ov
                } else if ok < c.key {
                    cur_head = Some(c);
                    ov_head = overlay.next();
                    ov
                } else {
                    ov_head = Some((ok, ov));
                    cur_head = next_current()?;
                    Some(c)
                }
            }
            (Some(c), None) => {
                cur_head = next_current()?;
                Some(c)
            }
            (None, Some((_, ov))) => {
                ov_head = overlay.next();
                ov
            }
        };
        if let Some(item) = item {
            if limit > 0 && kvs.len() == limit {
                more = true;
                break;
            }
            kvs.push(item);
        }
    }
    Ok(RangeResult {
        kvs,
        more,
        revision: at,
    })
}

/// Current and compact revision as one snapshot sees them.
fn revisions(shared: &Shared) -> Result<(Revision, Revision)> {
    let db = shared.db();
    let txn = db
        .begin_read()
        .map_err(Error::storage("beginning a read"))?;
    let meta = txn
        .open_table(META)
        .map_err(Error::storage("opening meta"))?;
    Ok((
        required_meta(&meta, META_REVISION)?,
        required_meta(&meta, META_COMPACT)?,
    ))
}

/// Logged events in `from..=end` under `prefix`, at most `max` of them. Returns the events
/// and the next revision to read.
fn replay_chunk(
    shared: &Shared,
    prefix: &[u8],
    from: Revision,
    end: Revision,
    max: usize,
) -> Result<(Vec<Event>, Revision)> {
    let db = shared.db();
    let txn = db
        .begin_read()
        .map_err(Error::storage("beginning a read"))?;
    let meta = txn
        .open_table(META)
        .map_err(Error::storage("opening meta"))?;
    let compact = required_meta(&meta, META_COMPACT)?;
    if from < compact {
        return Err(Error::Compacted {
            requested: from,
            compact_revision: compact,
        });
    }
    let log = txn.open_table(LOG).map_err(Error::storage("opening log"))?;
    let mut events = Vec::new();
    // Bound the work per call even when few entries match the prefix.
    let mut scanned = 0usize;
    let scan_limit = max.saturating_mul(16).max(1);
    for entry in log
        .range(from..=end)
        .map_err(Error::storage("reading the log"))?
    {
        let (rev, raw) = entry.map_err(Error::storage("reading the log"))?;
        let rev = rev.value();
        scanned += 1;
        if codec::event_key(raw.value())?.starts_with(prefix) {
            events.push(codec::decode_event(raw.value())?);
        }
        if events.len() >= max || scanned >= scan_limit {
            return Ok((events, rev + 1));
        }
    }
    Ok((events, end + 1))
}

// ---------------------------------------------------------------------------------------
// Watch

struct EmbeddedWatch {
    shared: Weak<Shared>,
    prefix: Vec<u8>,
    live: broadcast::Receiver<EventBatch>,
    /// History still to replay: next revision to read, last revision to read.
    replay: Option<(Revision, Revision)>,
    /// Live events below this revision were (or will be) delivered by the replay.
    live_from: Revision,
    chunk: usize,
}

#[async_trait::async_trait]
impl WatchSource for EmbeddedWatch {
    async fn next_batch(&mut self) -> Option<Result<Vec<Event>>> {
        while let Some((from, end)) = self.replay {
            let shared = self.shared.upgrade()?;
            let prefix = self.prefix.clone();
            let chunk = self.chunk;
            let read = run_blocking(move || replay_chunk(&shared, &prefix, from, end, chunk)).await;
            match read {
                Err(e) => return Some(Err(e)),
                Ok((events, next)) => {
                    self.replay = (next <= end).then_some((next, end));
                    if !events.is_empty() {
                        return Some(Ok(events));
                    }
                }
            }
        }
        loop {
            match self.live.recv().await {
                Ok(batch) => {
                    let events: Vec<Event> = batch
                        .iter()
                        .filter(|e| {
                            e.revision() >= self.live_from && e.kv.key.starts_with(&self.prefix)
                        })
                        .cloned()
                        .collect();
                    if !events.is_empty() {
                        return Some(Ok(events));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Some(Err(Error::WatchLagged { missed }))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Store

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        // A point read is a few microseconds from redb's page cache: done in place, it
        // costs less than handing it to the blocking pool and waking a thread.
        get_current(&self.shared, key)
    }

    async fn range(&self, prefix: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let prefix = prefix.to_vec();
        self.read(move |s| range_blocking(s, &prefix, &opts)).await
    }

    async fn create(&self, key: &[u8], value: Vec<u8>) -> Result<Revision> {
        self.check_write(key, value.len())?;
        match self
            .write(Op::Create {
                key: key.to_vec(),
                value,
            })
            .await?
        {
            Reply::Revision(r) => Ok(r),
            _ => Err(Error::Internal("unexpected reply to create".into())),
        }
    }

    async fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expected_mod_revision: Option<Revision>,
    ) -> Result<Revision> {
        self.check_write(key, value.len())?;
        match self
            .write(Op::Update {
                key: key.to_vec(),
                value,
                expected: expected_mod_revision,
            })
            .await?
        {
            Reply::Revision(r) => Ok(r),
            _ => Err(Error::Internal("unexpected reply to update".into())),
        }
    }

    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        match self
            .write(Op::Delete {
                key: key.to_vec(),
                expected: expected_mod_revision,
            })
            .await?
        {
            Reply::Deleted(r, prev) => Ok((r, prev)),
            _ => Err(Error::Internal("unexpected reply to delete".into())),
        }
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream> {
        // Subscribe first: everything committed after the snapshot below reaches us live.
        let live = self.shared.events.subscribe();
        let (replay, live_from) = if from_revision <= 0 {
            (None, self.shared.revision.load(Ordering::SeqCst) + 1)
        } else {
            let (current, compact) = self.read(revisions).await?;
            if from_revision < compact {
                return Err(Error::Compacted {
                    requested: from_revision,
                    compact_revision: compact,
                });
            }
            let replay = (from_revision <= current).then_some((from_revision, current));
            (replay, from_revision.max(current + 1))
        };
        Ok(WatchStream::new(Box::new(EmbeddedWatch {
            shared: Arc::downgrade(&self.shared),
            prefix: prefix.to_vec(),
            live,
            replay,
            live_from,
            chunk: self.opts.replay_chunk.max(1),
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.write(Op::Compact { revision }).await? {
            Reply::Done => Ok(()),
            _ => Err(Error::Internal("unexpected reply to compact".into())),
        }
    }

    async fn compact_revision(&self) -> Result<Revision> {
        Ok(self.shared.compact_revision.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn log_bounds(s: &EmbeddedStore) -> Result<(usize, Option<Revision>)> {
        let db = s.shared.db();
        let txn = db.begin_read().map_err(Error::storage("test read"))?;
        let log = txn.open_table(LOG).map_err(Error::storage("test read"))?;
        let len = log.len().map_err(Error::storage("test read"))? as usize;
        let first = log
            .first()
            .map_err(Error::storage("test read"))?
            .map(|(k, _)| k.value());
        Ok((len, first))
    }

    #[tokio::test]
    async fn compaction_purges_the_log_in_chunks() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            context: "tempdir".into(),
            err: Arc::new(e),
        })?;
        let s = EmbeddedStore::open(
            dir.path(),
            EmbeddedOptions {
                purge_chunk: 5,
                ..EmbeddedOptions::default()
            },
        )?;
        for i in 0..30u8 {
            s.create(&[b'k', i], vec![i]).await?;
        }
        assert_eq!(log_bounds(&s)?, (30, Some(2)));
        s.compact(20).await?;
        // The compaction's own transaction purges the first chunk (revisions 2..=6); the
        // writer, idle, purges the rest chunk by chunk; history from 20 on stays.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (len, first) = log_bounds(&s)?;
            assert!(
                first.is_some_and(|f| (7..=20).contains(&f)),
                "{len} {first:?}"
            );
            if (len, first) == (12, Some(20)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "purge stalled at {first:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for i in 0..4u8 {
            s.update(&[b'k', i], vec![], None).await?;
        }
        assert_eq!(log_bounds(&s)?, (12 + 4, Some(20)));
        Ok(())
    }

    /// After churn and compaction the file is rewritten compactly, and every object and
    /// the revision survive it.
    #[tokio::test]
    async fn an_unfinished_rewrite_is_dropped_at_open() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            context: "tempdir".into(),
            err: Arc::new(e),
        })?;
        {
            let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
            s.create(b"/k/a", b"kept".to_vec()).await?;
        }
        // A crash in the middle of a defragmentation leaves a half-written copy.
        let stale = rewrite_path(&dir.path().join(DB_FILE));
        std::fs::write(&stale, b"half a database").map_err(|e| Error::Io {
            context: "writing".into(),
            err: Arc::new(e),
        })?;
        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?;
        assert!(!stale.exists());
        let kv = s
            .get(b"/k/a")
            .await?
            .ok_or(Error::Internal("lost".into()))?;
        assert_eq!(kv.value, b"kept");
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_churned_store_is_defragmented_after_compaction() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            context: "tempdir".into(),
            err: Arc::new(e),
        })?;
        let s = Arc::new(EmbeddedStore::open(
            dir.path(),
            EmbeddedOptions {
                defrag_min_bytes: 0,
                ..EmbeddedOptions::default()
            },
        )?);
        let size = || std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(0);
        // 10,000 keys of 400 bytes (a small stored object), rewritten 3 times by 10
        // writers: 30,000 writes.
        let value = |i: usize, round: usize| vec![(i + round) as u8; 400];
        for i in 0..10000 {
            s.create(format!("/k/{i:04}").as_bytes(), value(i, 0))
                .await?;
        }
        let mut writers = Vec::new();
        for w in 0..10 {
            let s = s.clone();
            writers.push(tokio::spawn(async move {
                for round in 1..=3 {
                    for i in (w * 1000)..(w * 1000 + 1000) {
                        s.update(format!("/k/{i:04}").as_bytes(), value(i, round), None)
                            .await?;
                    }
                }
                Ok::<_, Error>(())
            }));
        }
        for w in writers {
            w.await.map_err(|e| Error::Internal(e.to_string()))??;
        }
        let churned = size();
        let rev = s.current_revision().await?;
        s.compact(rev).await?;
        // The purge and the defragmentation run in the writer: a write after them waits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Compacting to `rev` keeps the change made at `rev`.
        while log_bounds(&s)?.0 > 1 || size() * 2 > churned {
            assert!(
                std::time::Instant::now() < deadline,
                "not defragmented: {} of {churned}",
                size()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let after = s.create(b"/k/new", vec![1]).await?;
        assert_eq!(after, rev + 1);
        let (live, leaves) = {
            let db = s.shared.db();
            let txn = db.begin_write().map_err(Error::storage("test stats"))?;
            let st = txn.stats().map_err(Error::storage("test stats"))?;
            txn.abort().map_err(Error::storage("test stats"))?;
            (st.stored_bytes() + st.metadata_bytes(), st.leaf_pages())
        };
        // The rewrite fills the leaf pages (in key order they would be half full: ~1,900
        // leaves for these ~4.3 MB), and the file is about twice the live bytes (redb
        // grows a file by doubling it); without defragmentation it was 19 times.
        let full = live as usize / PAGE;
        assert!(
            (leaves as usize) < full + full / 5,
            "{leaves} leaf pages for {live} live bytes"
        );
        assert!(
            size() <= 2 * live + 2 * 1024 * 1024 && size() * 4 <= churned,
            "file {} for {live} live bytes (churned: {churned})",
            size()
        );
        let page = s.range(b"/k/", RangeOptions::default()).await?;
        assert_eq!(page.kvs.len(), 10001);
        assert_eq!(page.kvs[7].value, value(7, 3));
        Ok(())
    }
}
