//! skiff-store: the key-value store the Kubernetes-compatible API server stands on.
//!
//! It owns etcd v3's data model and nothing above it:
//! - a revisioned key space: one global [`Revision`] counter, incremented by every
//!   successful write; each key carries `create_revision`, `mod_revision` and `version`;
//! - compare-and-swap writes (`update`/`delete` guarded by the expected `mod_revision`);
//! - range by prefix with a limit, continuation from a key, and reads at a past revision
//!   (as far as history reaches) for consistent paging;
//! - watch from a revision: events replayed from the history log, then live, in revision
//!   order with no gap and no duplicate; a watch from a compacted revision fails with
//!   [`Error::Compacted`];
//! - compaction of old history ([`Store::compact`], [`spawn_compactor`]).
//!
//! Backends implement the object-safe [`Store`] trait: the embedded one
//! ([`EmbeddedStore`], one redb file, group-committed and fsync'd) and etcd v3
//! ([`EtcdStore`], `EtcdStore::connect(&endpoints, prefix)`): every type here maps
//! one-to-one onto etcd's, and etcd's revision is the store revision.
//!
//! ```no_run
//! # async fn demo() -> Result<(), skiff_store::Error> {
//! use skiff_store::{EmbeddedOptions, EmbeddedStore, RangeOptions, Store};
//! let store = EmbeddedStore::open("/var/lib/skiff/store", EmbeddedOptions::default())?;
//! let rev = store.create(b"/registry/pods/default/web", b"{}".to_vec()).await?;
//! // Compare-and-swap on the mod_revision (resourceVersion).
//! let rev = store.update(b"/registry/pods/default/web", b"{..}".to_vec(), Some(rev)).await?;
//! // A consistent list, then a watch that continues exactly after it.
//! let list = store.range(b"/registry/pods/", RangeOptions::default()).await?;
//! let mut watch = store.watch(b"/registry/pods/", list.revision + 1).await?;
//! while let Some(batch) = watch.recv().await {
//!     for event in batch? {
//!         println!("{:?} at {}", event.kind, event.revision());
//!     }
//! }
//! # let _ = rev; Ok(()) }
//! ```
//!
//! It must not know about Kubernetes objects, resources or JSON: keys and values are bytes.
//! The API server's `resourceVersion` is this crate's [`Revision`].

mod codec;
mod compactor;
mod embedded;
mod etcd;

use std::fmt;
use std::sync::Arc;

pub use compactor::{spawn_compactor, CompactionPolicy};
pub use embedded::{EmbeddedOptions, EmbeddedStore, DB_FILE};
pub use etcd::{EtcdOptions, EtcdStore};

/// A point in the store's history. The empty store is at revision 1 (etcd's convention);
/// every successful write takes the next revision.
pub type Revision = i64;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One key with its value and its revision bookkeeping (etcd's `mvccpb.KeyValue`).
/// The largest key + value one write may carry on either backend: etcd's default
/// `--max-request-bytes` (1.5 MiB) less what its request framing takes.
pub const MAX_WRITE_BYTES: usize = 1536 * 1024 - 512;

#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since creation; 1 right after creation.
    pub version: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &DisplayKey(&self.key))
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watcher sees it (etcd's `mvccpb.Event`).
///
/// For a `Put`, `kv` is the new state. For a `Delete`, `kv` has the key, an empty value,
/// `mod_revision` = the deletion's revision and zero `create_revision`/`version`
/// (as etcd reports it). `prev_kv` is the state just before the change, if the key existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Options of [`Store::range`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Maximum number of keys to return; 0 = no limit.
    pub limit: usize,
    /// Continue after this key (exclusive), e.g. the last key of the previous page.
    pub start_after: Option<Vec<u8>>,
    /// Read the key space as it was at this revision; 0 = current. Fails with
    /// [`Error::Compacted`] below the compact revision and [`Error::FutureRevision`]
    /// above the current one.
    pub revision: Revision,
}

/// Answer of [`Store::range`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// More keys match beyond the limit.
    pub more: bool,
    /// The revision the read was served at (the current one when none was asked for);
    /// pass it back as [`RangeOptions::revision`] to page consistently.
    pub revision: Revision,
}

/// Errors of the store. Cloneable so one storage failure can be answered to every
/// writer of a group commit.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    #[error("key {} already exists", DisplayKey(.key))]
    AlreadyExists { key: Vec<u8> },
    #[error("key {} not found", DisplayKey(.key))]
    NotFound { key: Vec<u8> },
    #[error("conflict on key {}: expected mod_revision {expected}, found {actual}", DisplayKey(.key))]
    Conflict {
        key: Vec<u8>,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (compact revision {compact_revision})")]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error(
        "watcher fell too far behind ({missed} batches of events dropped); re-list and watch again"
    )]
    WatchLagged { missed: u64 },
    #[error("store is closed")]
    Closed,
    /// The embedded database failed; its error is part of the message and kept in
    /// `err` (not repeated as a source, so a printed chain says it once).
    #[error("storage error while {op}: {err}")]
    Storage {
        op: &'static str,
        err: std::sync::Arc<redb::Error>,
    },
    /// A file-system operation failed; the OS error (errno) is kept in `err`.
    #[error("I/O error while {context}: {err}")]
    Io {
        context: String,
        err: std::sync::Arc<std::io::Error>,
    },
    #[error("corrupt record in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("empty key")]
    EmptyKey,
    #[error("write to key {} is too large: {size} bytes, at most {max}", DisplayKey(.key))]
    TooLarge {
        key: Vec<u8>,
        size: usize,
        max: usize,
    },
    /// A request to etcd failed (unreachable, timed out, connection lost, refused).
    #[error("etcd error while {op}: {message}")]
    Etcd { op: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl Error {
    pub(crate) fn storage<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> Error {
        move |e| Error::Storage {
            op,
            err: std::sync::Arc::new(e.into()),
        }
    }
}

/// Shows a byte key as text where it is UTF-8, escaped otherwise.
pub struct DisplayKey<'a>(pub &'a [u8]);

impl fmt::Display for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.0))
    }
}

impl fmt::Debug for DisplayKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The store's interface: etcd v3 semantics over bytes. Object-safe (`Arc<dyn Store>`).
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The current state of one key.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix` (all keys for an empty prefix), ascending.
    async fn range(&self, prefix: &[u8], opts: RangeOptions) -> Result<RangeResult>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists. Returns the revision.
    async fn create(&self, key: &[u8], value: Vec<u8>) -> Result<Revision>;

    /// Replaces the value of an existing `key`. With `Some(rev)`, only if its mod_revision is
    /// `rev` ([`Error::Conflict`] otherwise). [`Error::NotFound`] if absent. Returns the revision.
    async fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expected_mod_revision: Option<Revision>,
    ) -> Result<Revision>;

    /// Deletes `key` (guarded like `update`). Returns the revision and the deleted state.
    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)>;

    /// Watches keys starting with `prefix`. `from_revision` 0 = changes after now;
    /// otherwise every change at or after that revision (replayed from history, then live).
    /// A Kubernetes watch "from resourceVersion X" is `from_revision = X + 1`. Fails with
    /// [`Error::Compacted`] if `from_revision` is below the compact revision.
    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream>;

    /// The revision of the last write (1 for an empty store).
    async fn current_revision(&self) -> Result<Revision>;

    /// Drops history below `revision`: reads and watches below it then fail with
    /// [`Error::Compacted`]. Fails with `Compacted` if already compacted at or past it.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision history is compacted to (reads/watches below it fail); 0 if never.
    async fn compact_revision(&self) -> Result<Revision>;
}

/// What a watch delivers: changes, or word that every change up to a revision has
/// been delivered (etcd's progress notification).
#[derive(Debug)]
pub enum WatchItem {
    Events(Vec<Event>),
    Progress(Revision),
}

/// A source of watch events, implemented per backend.
#[async_trait::async_trait]
pub trait WatchSource: Send {
    /// Next batch of events (non-empty, ascending revisions), an error (after which the
    /// stream ends), or `None` when the stream has ended (store closed).
    async fn next_batch(&mut self) -> Option<Result<Vec<Event>>>;

    /// Next batch of events or progress notification. Backends that cannot tell
    /// progress deliver only events.
    async fn next_item(&mut self) -> Option<Result<WatchItem>> {
        Some(self.next_batch().await?.map(WatchItem::Events))
    }

    /// A handle that asks the backend for a progress notification, if it can give one
    /// (needed where writers the watch does not see advance the revision: a shared etcd).
    fn progress_requester(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// A stream of watch events. Dropping it cancels the watch.
pub struct WatchStream {
    source: Box<dyn WatchSource>,
    done: bool,
}

impl WatchStream {
    /// Wraps a backend's event source.
    pub fn new(source: Box<dyn WatchSource>) -> Self {
        WatchStream {
            source,
            done: false,
        }
    }

    /// Like [`WatchStream::recv`], with progress notifications (see [`WatchItem`]).
    pub async fn recv_item(&mut self) -> Option<Result<WatchItem>> {
        if self.done {
            return None;
        }
        let next = self.source.next_item().await;
        match &next {
            None | Some(Err(_)) => self.done = true,
            Some(Ok(_)) => {}
        }
        next
    }

    /// See [`WatchSource::progress_requester`].
    pub fn progress_requester(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.source.progress_requester()
    }

    /// Next batch of events in revision order. After an error ([`Error::Compacted`],
    /// [`Error::WatchLagged`], ...) the stream yields `None` forever: re-list and re-watch.
    pub async fn recv(&mut self) -> Option<Result<Vec<Event>>> {
        if self.done {
            return None;
        }
        let next = self.source.next_batch().await;
        match &next {
            None | Some(Err(_)) => self.done = true,
            Some(Ok(_)) => {}
        }
        next
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("done", &self.done)
            .finish()
    }
}
