//! The etcd v3 backend: the [`Store`] trait over an etcd cluster, with etcd's own revision
//! as the store revision (global, starting at 1, one per successful write, as ours).
//!
//! Mapping onto etcd's API:
//! - every key is stored under an optional key prefix (to share one etcd between clusters);
//!   the prefix is stripped from every key handed back, including watch events;
//! - `create` is `txn(if create_revision(k) == 0 then put)`; `update`/`delete` are
//!   `txn(if version(k) > 0 [and mod_revision(k) == expected] then put/delete else get)`,
//!   so one round trip both writes and, on failure, tells `NotFound` from `Conflict`
//!   (with the actual mod_revision);
//! - `range` is one etcd range `[max(prefix, start_after + "\0"), prefix_end)` with the
//!   limit, at the requested revision; `more` is etcd's;
//! - `watch` is one etcd watch with `prev_kv`; `from_revision = 0` waits for the watch to
//!   be created on the server before returning, so "changes after now" holds. A watch from
//!   a past revision is checked against compaction first (one cheap range), so a compacted
//!   start fails at `watch()` as in the embedded backend; a compaction racing it arrives
//!   as [`Error::Compacted`] on the stream instead;
//! - `compact` is etcd's compaction with `physical = false`.
//!
//! **Compact revision.** etcd does not report its compact revision directly. This backend
//! remembers the last compaction it issued or learned of (from a compacted watch), and
//! [`Store::compact_revision`] verifies that guess with reads at a past revision (etcd
//! refuses reads below its compact revision): two count-only ranges when the guess is
//! right, a binary search over the revisions when another client (or a restart, or etcd's
//! own auto-compaction) moved it. So the answer is exact, also after a reopen. The one
//! blind spot: compaction to revision 1 is indistinguishable from none (nothing lies
//! below 1), so it reads as 0 unless this store issued it.
//!
//! Network failures surface as [`Error::Etcd`]; the client reconnects by itself on the
//! next request. A watch whose connection drops ends with [`Error::Etcd`]: re-list and
//! watch again from the last revision seen.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient,
    Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::watch as signal;

use crate::{
    Error, Event, EventKind, KeyValue, RangeOptions, RangeResult, Result, Revision, Store,
    WatchItem, WatchSource, WatchStream,
};

/// Largest gRPC message accepted from etcd: etcd's own send limit (`math.MaxInt32`), as
/// kube-apiserver configures it. The client's 4 MiB default would fail big lists and
/// watches catching up (etcd sends up to 1000 revisions of events in one message).
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// Tuning of the etcd backend. `Default` suits the API server.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Time to establish a connection to an endpoint.
    pub connect_timeout: Duration,
    /// Longest a single request (not a watch) may take before it fails with [`Error::Etcd`].
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a dead connection is detected within about
    /// `keep_alive_interval + keep_alive_timeout` (this is what ends a watch on a
    /// silently dropped connection).
    pub keep_alive_interval: Duration,
    /// How long to wait for a keep-alive ping's answer.
    pub keep_alive_timeout: Duration,
    /// Largest key + value accepted in one write; etcd's own `--max-request-bytes` is
    /// 1.5 MiB by default. Larger writes fail with [`Error::TooLarge`] without a request.
    pub max_write_bytes: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            // Room for etcd's request framing within its 1.5 MiB limit.
            max_write_bytes: crate::MAX_WRITE_BYTES,
        }
    }
}

/// The etcd v3 [`Store`] backend. Cheap to share behind an `Arc`; dropping it ends the
/// watch streams it opened (they then yield `None`).
pub struct EtcdStore {
    client: Client,
    prefix: Vec<u8>,
    endpoints: Vec<String>,
    opts: EtcdOptions,
    /// Best known compact revision (see the module docs).
    compact_hint: Arc<AtomicI64>,
    /// Dropped with the store: tells open watches to end.
    _closed: signal::Sender<()>,
    closed_rx: signal::Receiver<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &crate::DisplayKey(&self.prefix))
            .finish()
    }
}

/// Whether a request failed before it was sent: its endpoint refused or could not be
/// reached (what a dead member of the cluster looks like). Such a request is safe to
/// make again, writes included.
fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable
                && [
                    "tcp connect error",
                    "error trying to connect",
                    "Connection refused",
                ]
                .iter()
                .any(|m| s.message().contains(m))
        }
        _ => false,
    }
}

fn etcd_err(op: &'static str) -> impl FnOnce(etcd_client::Error) -> Error {
    move |e| Error::Etcd {
        op,
        message: e.to_string(),
    }
}

/// What etcd says about a revision argument, recognised from its error text
/// (`etcdserver: mvcc: required revision has been compacted` / `... is a future revision`).
enum RevisionError {
    Compacted,
    Future,
}

fn revision_error(e: &etcd_client::Error) -> Option<RevisionError> {
    let etcd_client::Error::GRpcStatus(status) = e else {
        return None;
    };
    let message = status.message();
    if message.contains("has been compacted") {
        Some(RevisionError::Compacted)
    } else if message.contains("future revision") {
        Some(RevisionError::Future)
    } else {
        None
    }
}

/// The smallest key greater than every key starting with `prefix`; `"\0"` (etcd: no upper
/// bound) when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `"http://127.0.0.1:2379"`), keeping this
    /// store's keys under `prefix` (none by default). Fails unless etcd answers a request.
    ///
    /// The prefix is prepended to every key as bytes: end it with a separator
    /// (`/skiff/cluster-a/`) so that no other store's prefix extends it (`/a` would see the
    /// keys of `/ab`).
    pub async fn connect(endpoints: &[String], prefix: Option<&[u8]>) -> Result<Self> {
        Self::connect_with(endpoints, prefix, EtcdOptions::default()).await
    }

    /// [`EtcdStore::connect`] with explicit options.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: Option<&[u8]>,
        opts: EtcdOptions,
    ) -> Result<Self> {
        let connect_options = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_keep_alive(opts.keep_alive_interval, opts.keep_alive_timeout)
            .with_keep_alive_while_idle(true);
        let client = tokio::time::timeout(
            opts.connect_timeout,
            Client::connect(endpoints, Some(connect_options)),
        )
        .await
        .map_err(|_| Error::Etcd {
            op: "connecting",
            message: format!(
                "no answer from {endpoints:?} within {:?}",
                opts.connect_timeout
            ),
        })?
        .map_err(etcd_err("connecting"))?;
        let (closed, closed_rx) = signal::channel(());
        let store = EtcdStore {
            client,
            prefix: prefix.unwrap_or_default().to_vec(),
            endpoints: endpoints.to_vec(),
            opts,
            compact_hint: Arc::new(AtomicI64::new(0)),
            _closed: closed,
            closed_rx,
        };
        // One request proves the endpoint answers (connecting alone is lazy).
        let revision = tokio::time::timeout(store.opts.connect_timeout, store.current_revision())
            .await
            .map_err(|_| Error::Etcd {
                op: "connecting",
                message: format!(
                    "no answer from {endpoints:?} within {:?}",
                    store.opts.connect_timeout
                ),
            })??;
        tracing::debug!(endpoints = ?store.endpoints, revision, "connected to etcd");
        Ok(store)
    }

    /// A KV client that accepts answers as large as etcd sends (a big list).
    fn kv(&self) -> KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// A read of `key` with `opts`, on a client of its own (so it can be made again).
    fn get_request(
        &self,
        key: Vec<u8>,
        opts: GetOptions,
    ) -> impl std::future::Future<
        Output = std::result::Result<etcd_client::GetResponse, etcd_client::Error>,
    > {
        let mut kv = self.kv();
        async move { kv.get(key, Some(opts)).await }
    }

    /// A transaction, on a client of its own (so it can be made again).
    fn txn_request(
        &self,
        txn: Txn,
    ) -> impl std::future::Future<
        Output = std::result::Result<etcd_client::TxnResponse, etcd_client::Error>,
    > {
        let mut kv = self.kv();
        async move { kv.txn(txn).await }
    }

    /// The key prefix this store works under.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key);
        full
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

    /// Sends the request `request` makes, with the request timeout (None when it
    /// runs out). A request that never left (its endpoint refused the connection or
    /// could not be reached: a dead member of the cluster) is made again and goes to
    /// another endpoint, up to twice per endpoint, as etcd's Go client retries
    /// unavailable endpoints.
    async fn send<T, F, Fut>(
        &self,
        mut request: F,
    ) -> Option<std::result::Result<T, etcd_client::Error>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let tries = self.endpoints.len() * 2 + 1;
        let deadline = tokio::time::Instant::now() + self.opts.request_timeout;
        let mut tried = 0;
        loop {
            tried += 1;
            match tokio::time::timeout_at(deadline, request()).await {
                Err(_) => return None,
                Ok(Err(e)) if tried < tries && never_sent(&e) => {
                    tracing::debug!(error = %e, "an etcd endpoint is unreachable; trying another");
                    tokio::time::sleep(Duration::from_millis(20 * tried as u64)).await;
                }
                Ok(r) => return Some(r),
            }
        }
    }

    /// Runs one request (made again by `request` if it never left, see
    /// [`EtcdStore::send`]) with the request timeout, mapping failures to
    /// [`Error::Etcd`].
    async fn call<T, F, Fut>(&self, op: &'static str, request: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match self.send(request).await {
            Some(result) => result.map_err(etcd_err(op)),
            None => Err(Error::Etcd {
                op,
                message: format!("no answer within {:?}", self.opts.request_timeout),
            }),
        }
    }

    /// Runs one request that cannot be made again with the request timeout.
    async fn call_once<T, F>(&self, op: &'static str, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.opts.request_timeout, fut).await {
            Ok(result) => result.map_err(etcd_err(op)),
            Err(_) => Err(Error::Etcd {
                op,
                message: format!("no answer within {:?}", self.opts.request_timeout),
            }),
        }
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        to_kv(&self.prefix, kv)
    }

    /// Is history at `revision` still readable? `Ok(false)` if compacted, `Err` with
    /// [`Error::FutureRevision`] past the current revision.
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new()
            .with_revision(revision)
            .with_count_only()
            .with_limit(1);
        let probe = self.full_key(b"\0");
        match self
            .send(|| self.get_request(probe.clone(), opts.clone()))
            .await
        {
            None => Err(Error::Etcd {
                op: "reading the compact revision",
                message: format!("no answer within {:?}", self.opts.request_timeout),
            }),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => match revision_error(&e) {
                Some(RevisionError::Compacted) => Ok(false),
                Some(RevisionError::Future) => Err(Error::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await?,
                }),
                None => Err(etcd_err("reading the compact revision")(e)),
            },
        }
    }

    /// The compact revision, verified against etcd (see the module docs).
    async fn probe_compact_revision(&self) -> Result<Revision> {
        let hint = self.compact_hint.load(Ordering::SeqCst);
        // Search bounds: `lo` is compacted (or 0, below everything), `hi` is readable; the
        // compact revision is the smallest readable revision in (lo, hi].
        let (mut lo, mut hi) = if hint > 1 {
            if self.readable_at(hint).await? {
                if !self.readable_at(hint - 1).await? {
                    return Ok(hint);
                }
                // History below the hint is readable: etcd was replaced or restored.
                (0, hint - 1)
            } else {
                (hint, self.current_revision().await?)
            }
        } else if self.readable_at(1).await? {
            // Nothing lies below revision 1: compaction to 1 cannot be observed.
            return Ok(hint);
        } else {
            (1, self.current_revision().await?)
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable_at(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let found = if hi <= 1 { 0 } else { hi };
        if found < hint {
            self.compact_hint.store(found, Ordering::SeqCst);
        } else {
            self.learn_compact_revision(found);
        }
        Ok(found)
    }

    fn learn_compact_revision(&self, revision: Revision) {
        self.compact_hint.fetch_max(revision, Ordering::SeqCst);
    }

    async fn compacted_error(&self, requested: Revision) -> Error {
        match self.probe_compact_revision().await {
            Ok(compact_revision) => Error::Compacted {
                requested,
                compact_revision,
            },
            Err(e) => e,
        }
    }

    async fn future_error(&self, requested: Revision) -> Error {
        match self.current_revision().await {
            Ok(current) => Error::FutureRevision { requested, current },
            Err(e) => e,
        }
    }

    /// Guarded write: `op` if `key` exists (and has mod_revision `expected`), else a read of
    /// it to tell `NotFound` from `Conflict`. Returns the transaction's answer on success.
    async fn guarded(
        &self,
        op_name: &'static str,
        key: &[u8],
        expected: Option<Revision>,
        op: TxnOp,
    ) -> Result<etcd_client::TxnResponse> {
        let full = self.full_key(key);
        let mut compares = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![op])
            .or_else(vec![TxnOp::get(full, None)]);
        let resp = self.call(op_name, || self.txn_request(txn.clone())).await?;
        if resp.succeeded() {
            return Ok(resp);
        }
        let current = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
            _ => None,
        });
        Err(match (current, expected) {
            (None, _) => Error::NotFound { key: key.to_vec() },
            (Some(actual), Some(expected)) => Error::Conflict {
                key: key.to_vec(),
                expected,
                actual,
            },
            (Some(_), None) => Error::Etcd {
                op: op_name,
                message: "transaction failed although the key exists".into(),
            },
        })
    }
}

fn to_kv(prefix: &[u8], kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv.key().strip_prefix(prefix).ok_or_else(|| Error::Etcd {
        op: "decoding a key",
        message: format!(
            "key {} is outside the store prefix {}",
            crate::DisplayKey(kv.key()),
            crate::DisplayKey(prefix)
        ),
    })?;
    Ok(KeyValue {
        key: key.to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>, op: &'static str) -> Result<i64> {
    header.map(|h| h.revision()).ok_or_else(|| Error::Etcd {
        op,
        message: "response without a header".into(),
    })
}

// ---------------------------------------------------------------------------------------
// Watch

struct EtcdWatch {
    /// Keeps the server-side watch alive (dropping it cancels the watch); progress
    /// requests go through it.
    requests: etcd_client::WatchRequestSender,
    /// Notified when a reader wants a progress notification.
    want_progress: Arc<tokio::sync::Notify>,
    responses: etcd_client::WatchResponseStream,
    prefix: Vec<u8>,
    requested: Revision,
    compact_hint: Arc<AtomicI64>,
    closed: signal::Receiver<()>,
}

impl EtcdWatch {
    fn events(&self, resp: &etcd_client::WatchResponse) -> Result<Vec<Event>> {
        resp.events()
            .iter()
            .map(|ev| {
                let kv = ev.kv().ok_or_else(|| Error::Etcd {
                    op: "watching",
                    message: "event without a key".into(),
                })?;
                let kind = match ev.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                };
                Ok(Event {
                    kind,
                    kv: to_kv(&self.prefix, kv)?,
                    prev_kv: ev.prev_kv().map(|p| to_kv(&self.prefix, p)).transpose()?,
                })
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl WatchSource for EtcdWatch {
    async fn next_batch(&mut self) -> Option<Result<Vec<Event>>> {
        loop {
            match self.next_item().await? {
                Ok(WatchItem::Events(events)) => return Some(Ok(events)),
                Ok(WatchItem::Progress(_)) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn progress_requester(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(Arc::clone(&self.want_progress))
    }

    async fn next_item(&mut self) -> Option<Result<WatchItem>> {
        loop {
            let message = tokio::select! {
                // The store was dropped.
                _ = self.closed.changed() => return None,
                _ = self.want_progress.notified() => {
                    // etcd answers on the response stream with the revision every
                    // change before it has been sent at.
                    if let Err(e) = self.requests.request_progress().await {
                        return Some(Err(Error::Etcd {
                            op: "watching",
                            message: format!("requesting watch progress: {e}"),
                        }));
                    }
                    continue;
                }
                message = self.responses.message() => message,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Some(Err(Error::Etcd {
                        op: "watching",
                        message: "etcd closed the watch stream (connection lost?); \
                                  re-list and watch again"
                            .into(),
                    }))
                }
                Err(e) => {
                    return Some(Err(Error::Etcd {
                        op: "watching",
                        message: format!("watch connection failed: {e}; re-list and watch again"),
                    }))
                }
            };
            if resp.compact_revision() > 0 {
                self.compact_hint
                    .fetch_max(resp.compact_revision(), Ordering::SeqCst);
                return Some(Err(Error::Compacted {
                    requested: self.requested,
                    compact_revision: resp.compact_revision(),
                }));
            }
            if resp.canceled() {
                return Some(Err(Error::Etcd {
                    op: "watching",
                    message: format!("etcd cancelled the watch: {}", resp.cancel_reason()),
                }));
            }
            match self.events(&resp) {
                Ok(events) if events.is_empty() => {
                    // No events and not the creation: a progress notification.
                    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
                    if !resp.created() && rev > 0 {
                        return Some(Ok(WatchItem::Progress(rev)));
                    }
                    continue;
                }
                other => return Some(other.map(WatchItem::Events)),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Store

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        let full = self.full_key(key);
        let resp = self
            .call("reading a key", || {
                self.get_request(full.clone(), GetOptions::new())
            })
            .await?;
        resp.kvs().first().map(|kv| self.to_kv(kv)).transpose()
    }

    async fn range(&self, prefix: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        let start = self.full_key(prefix);
        let end = prefix_end(&start);
        let start = match &opts.start_after {
            Some(after) => {
                let mut after = self.full_key(after);
                after.push(0);
                after.max(start)
            }
            None => start,
        };
        // etcd treats an empty key as invalid; "\0" is the smallest key there is.
        let start = if start.is_empty() { vec![0] } else { start };
        let limit = i64::try_from(opts.limit).unwrap_or(i64::MAX);
        let get_opts = GetOptions::new()
            .with_range(end)
            .with_limit(limit)
            .with_revision(opts.revision.max(0));
        let resp = match self
            .send(|| self.get_request(start.clone(), get_opts.clone()))
            .await
        {
            None => {
                return Err(Error::Etcd {
                    op: "reading keys",
                    message: format!("no answer within {:?}", self.opts.request_timeout),
                })
            }
            Some(Ok(resp)) => resp,
            Some(Err(e)) => {
                return Err(match revision_error(&e) {
                    Some(RevisionError::Compacted) => self.compacted_error(opts.revision).await,
                    Some(RevisionError::Future) => self.future_error(opts.revision).await,
                    None => etcd_err("reading keys")(e),
                })
            }
        };
        let kvs = resp
            .kvs()
            .iter()
            .map(|kv| self.to_kv(kv))
            .collect::<Result<Vec<_>>>()?;
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            header_revision(resp.header(), "reading keys")?
        };
        Ok(RangeResult {
            kvs,
            more: resp.more(),
            revision,
        })
    }

    async fn create(&self, key: &[u8], value: Vec<u8>) -> Result<Revision> {
        self.check_write(key, value.len())?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                full.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then(vec![TxnOp::put(full, value, None)]);
        let resp = self
            .call("creating a key", || self.txn_request(txn.clone()))
            .await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.to_vec() });
        }
        header_revision(resp.header(), "creating a key")
    }

    async fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expected_mod_revision: Option<Revision>,
    ) -> Result<Revision> {
        self.check_write(key, value.len())?;
        let op = TxnOp::put(self.full_key(key), value, None);
        let resp = self
            .guarded("updating a key", key, expected_mod_revision, op)
            .await?;
        header_revision(resp.header(), "updating a key")
    }

    async fn delete(
        &self,
        key: &[u8],
        expected_mod_revision: Option<Revision>,
    ) -> Result<(Revision, KeyValue)> {
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let op = TxnOp::delete(
            self.full_key(key),
            Some(DeleteOptions::new().with_prev_key()),
        );
        let resp = self
            .guarded("deleting a key", key, expected_mod_revision, op)
            .await?;
        let revision = header_revision(resp.header(), "deleting a key")?;
        let prev = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
            _ => None,
        });
        let prev = prev.ok_or_else(|| Error::Etcd {
            op: "deleting a key",
            message: "etcd returned no previous value for the deleted key".into(),
        })?;
        Ok((revision, self.to_kv(&prev)?))
    }

    async fn watch(&self, prefix: &[u8], from_revision: Revision) -> Result<WatchStream> {
        if from_revision > 0 {
            // Fail at once, like the embedded backend, when the start is compacted.
            // A future start is fine: the watch waits for it.
            match self.readable_at(from_revision).await {
                Ok(true) | Err(Error::FutureRevision { .. }) => {}
                Ok(false) => return Err(self.compacted_error(from_revision).await),
                Err(e) => return Err(e),
            }
        }
        let start = self.full_key(prefix);
        let end = prefix_end(&start);
        let start = if start.is_empty() { vec![0] } else { start };
        let mut watch_opts = WatchOptions::new().with_range(end).with_prev_key();
        if from_revision > 0 {
            watch_opts = watch_opts.with_start_revision(from_revision);
        }
        let stream = self
            .call("watching", || {
                let mut client = self
                    .client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES);
                let (start, watch_opts) = (start.clone(), watch_opts.clone());
                async move { client.watch(start, Some(watch_opts)).await }
            })
            .await?;
        let (requests, mut responses) = stream.split();
        // Wait until the server has registered the watch: from then on every write is seen.
        let created = self.call_once("watching", responses.message()).await?;
        match created {
            Some(resp) if resp.created() && !resp.canceled() => {}
            Some(resp) if resp.compact_revision() > 0 => {
                self.learn_compact_revision(resp.compact_revision());
                return Err(Error::Compacted {
                    requested: from_revision,
                    compact_revision: resp.compact_revision(),
                });
            }
            Some(resp) => {
                return Err(Error::Etcd {
                    op: "watching",
                    message: format!("etcd refused the watch: {}", resp.cancel_reason()),
                })
            }
            None => {
                return Err(Error::Etcd {
                    op: "watching",
                    message: "etcd closed the watch stream before creating the watch".into(),
                })
            }
        }
        Ok(WatchStream::new(Box::new(EtcdWatch {
            requests,
            want_progress: Arc::new(tokio::sync::Notify::new()),
            responses,
            prefix: self.prefix.clone(),
            requested: from_revision,
            compact_hint: Arc::clone(&self.compact_hint),
            closed: self.closed_rx.clone(),
        })))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let opts = GetOptions::new().with_count_only().with_limit(1);
        let probe = self.full_key(b"\0");
        let resp = self
            .call("reading the current revision", || {
                self.get_request(probe.clone(), opts.clone())
            })
            .await?;
        header_revision(resp.header(), "reading the current revision")
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let compact = || {
            let mut kv = self.kv();
            async move { kv.compact(revision, None).await }
        };
        match self.send(compact).await {
            None => Err(Error::Etcd {
                op: "compacting",
                message: format!("no answer within {:?}", self.opts.request_timeout),
            }),
            Some(Ok(_)) => {
                self.learn_compact_revision(revision);
                Ok(())
            }
            Some(Err(e)) => Err(match revision_error(&e) {
                Some(RevisionError::Compacted) => self.compacted_error(revision).await,
                Some(RevisionError::Future) => self.future_error(revision).await,
                None => etcd_err("compacting")(e),
            }),
        }
    }

    async fn compact_revision(&self) -> Result<Revision> {
        self.probe_compact_revision().await
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(prefix_end(b"/pods/"), b"/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
