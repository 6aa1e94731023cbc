//! Shared watch fan-out: one store watch per (resource, key prefix) feeds every API watch of
//! it. Each change is decoded and serialized once, not once per watcher, and a short
//! backlog of recent changes lets a watch start from a recent resourceVersion without a
//! store replay. A watch the hub cannot serve exactly (its resourceVersion is older than
//! the hub's backlog) reads the store directly, so no event is ever skipped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use skiff_store::{Event, EventKind, Revision, Store, WatchStream};
use tokio::sync::broadcast;

use crate::registry;
use crate::resources::Resource;

/// Most events kept for watches that start a little in the past.
const BACKLOG_EVENTS: usize = 4096;
/// Batches a subscriber may fall behind before it must re-list (410).
const CHANNEL_BATCHES: usize = 1024;

/// One change, decoded and serialized once for all watchers.
pub struct Prepared {
    pub rev: Revision,
    pub kind: EventKind,
    /// The object after a put; the last state (with the deletion's resourceVersion) after
    /// a delete.
    pub obj: Value,
    /// `obj` as JSON.
    pub obj_json: Bytes,
    /// The state before a put, when there was one (selectors see transitions).
    pub prev: Option<Value>,
}

/// Decodes one store event for `res`; `None` for an undecodable object.
pub fn prepare(res: &Resource, ev: &Event) -> Option<Prepared> {
    let (obj, prev) = match ev.kind {
        EventKind::Put => (
            registry::decode_as(res, &ev.kv).ok()?,
            ev.prev_kv
                .as_ref()
                .and_then(|p| registry::decode_as(res, p).ok()),
        ),
        EventKind::Delete => {
            let mut prev = registry::decode_as(res, ev.prev_kv.as_ref()?).ok()?;
            registry::set_rv(&mut prev, ev.revision());
            (prev, None)
        }
    };
    let obj_json = Bytes::from(serde_json::to_vec(&obj).ok()?);
    Some(Prepared {
        rev: ev.revision(),
        kind: ev.kind,
        obj,
        obj_json,
        prev,
    })
}

pub type Batch = Arc<Vec<Prepared>>;

/// What a hub publishes.
#[derive(Clone)]
pub enum Msg {
    Batch(Batch),
    Error(skiff_store::Error),
}

struct Hub {
    /// Revisions up to this one are not (or no longer) in the backlog.
    evicted_upto: Revision,
    backlog: VecDeque<Batch>,
    backlog_events: usize,
    tx: broadcast::Sender<Msg>,
    closed: bool,
}

/// The hubs of one server.
#[derive(Clone, Default)]
pub struct Hubs {
    map: Arc<Mutex<HashMap<String, Arc<Mutex<Hub>>>>>,
}

/// Where a watch reads its changes from.
pub enum Source {
    /// Its own store watch (events prepared per watcher).
    Direct(&'static Resource, WatchStream),
    /// A shared hub: the backlog first, then live batches.
    Shared(VecDeque<Batch>, broadcast::Receiver<Msg>),
}

impl Source {
    /// The next batch of changes; `None` when the source has ended.
    pub async fn next(&mut self) -> Option<Result<Batch, skiff_store::Error>> {
        match self {
            Source::Direct(res, stream) => match stream.recv().await? {
                Ok(events) => Some(Ok(Arc::new(
                    events.iter().filter_map(|e| prepare(res, e)).collect(),
                ))),
                Err(e) => Some(Err(e)),
            },
            Source::Shared(backlog, rx) => {
                if let Some(b) = backlog.pop_front() {
                    return Some(Ok(b));
                }
                match rx.recv().await {
                    Ok(Msg::Batch(b)) => Some(Ok(b)),
                    Ok(Msg::Error(e)) => Some(Err(e)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        Some(Err(skiff_store::Error::WatchLagged { missed }))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Hubs {
    /// A source of every change of `res` under `prefix` after revision `after`.
    pub async fn source(
        &self,
        store: &Arc<dyn Store>,
        res: &'static Resource,
        prefix: &str,
        after: Revision,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Source, skiff_store::Error> {
        let key = format!("{}/{}/{}|{prefix}", res.group, res.version, res.plural);
        if let Some(src) = self.subscribe(&key, after) {
            return Ok(src);
        }
        // No hub that can serve `after`: start one there if none is running, else read
        // the store directly.
        let running = lock(&self.map).get(&key).is_some_and(|h| !lock(h).closed);
        let stream = store.watch(prefix.as_bytes(), after + 1).await?;
        if running {
            return Ok(Source::Direct(res, stream));
        }
        let (tx, _) = broadcast::channel(CHANNEL_BATCHES);
        let hub = Arc::new(Mutex::new(Hub {
            evicted_upto: after,
            backlog: VecDeque::new(),
            backlog_events: 0,
            tx,
            closed: false,
        }));
        {
            let mut map = lock(&self.map);
            if map.get(&key).is_some_and(|h| !lock(h).closed) {
                drop(map);
                return Ok(Source::Direct(res, stream));
            }
            map.insert(key.clone(), hub.clone());
        }
        // Subscribe before the hub task can publish anything.
        let rx = lock(&hub).tx.subscribe();
        tokio::spawn(run_hub(self.map.clone(), key, hub, res, stream, shutdown));
        Ok(Source::Shared(VecDeque::new(), rx))
    }

    fn subscribe(&self, key: &str, after: Revision) -> Option<Source> {
        let hub = lock(&self.map).get(key).cloned()?;
        let hub = lock(&hub);
        if hub.closed || after < hub.evicted_upto {
            return None;
        }
        let backlog = hub
            .backlog
            .iter()
            .filter(|b| b.last().is_some_and(|e| e.rev > after))
            .cloned()
            .collect();
        Some(Source::Shared(backlog, hub.tx.subscribe()))
    }
}

async fn run_hub(
    map: Arc<Mutex<HashMap<String, Arc<Mutex<Hub>>>>>,
    key: String,
    hub: Arc<Mutex<Hub>>,
    res: &'static Resource,
    mut stream: WatchStream,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut idle = tokio::time::interval(Duration::from_secs(30));
    idle.tick().await;
    loop {
        let next = tokio::select! {
            _ = shutdown.changed() => None,
            _ = idle.tick() => {
                if lock(&hub).tx.receiver_count() == 0 {
                    None
                } else {
                    continue;
                }
            }
            next = stream.recv() => next,
        };
        let msg = match next {
            None => break,
            Some(Err(e)) => Msg::Error(e),
            Some(Ok(events)) => Msg::Batch(Arc::new(
                events.iter().filter_map(|e| prepare(res, e)).collect(),
            )),
        };
        let mut h = lock(&hub);
        match &msg {
            Msg::Batch(b) => {
                if b.is_empty() {
                    continue;
                }
                h.backlog_events += b.len();
                h.backlog.push_back(b.clone());
                while h.backlog_events > BACKLOG_EVENTS {
                    let Some(old) = h.backlog.pop_front() else {
                        break;
                    };
                    h.backlog_events -= old.len();
                    if let Some(last) = old.last() {
                        h.evicted_upto = last.rev;
                    }
                }
                let _ = h.tx.send(msg.clone());
                if h.tx.receiver_count() == 0 {
                    break;
                }
            }
            Msg::Error(_) => {
                let _ = h.tx.send(msg.clone());
                break;
            }
        }
    }
    lock(&hub).closed = true;
    let mut m = lock(&map);
    if m.get(&key).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
        m.remove(&key);
    }
}
