//! Watch streams: the events of one resource from a revision (or after its current
//! state, with `sendInitialEvents`), as JSON lines, Table rows or protobuf frames, with
//! bookmarks, ended by the server's shutdown or the client's timeout.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::Response;
use serde_json::{json, Value};
use skiff_meta::selector::LabelSelector;
use skiff_store::{EventKind, Revision};

use crate::error::ApiError;
use crate::http::{full, truthy, Accept, Body, Query};
use crate::params::list_options;
use crate::registry::{self, ListOptions, Registry};
use crate::resource::Resource;
use crate::selectable::Selectable;
use crate::state::State;
use crate::table::{self, IncludeObject};
use crate::watchcache::{Prepared, Source};

use crate::error::ApiResult;

/// Where a watch's producer puts its event lines.
#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<std::collections::VecDeque<Bytes>>>);

/// Lines queued before the producer lets the body send them.
const LINES_QUEUED: usize = 64;

impl Lines {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<Bytes>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues one line; with a full queue, yields once so the body sends them first.
    async fn send(&self, line: Bytes) {
        let full = {
            let mut q = self.lock();
            q.push_back(line);
            q.len() >= LINES_QUEUED
        };
        if full {
            let mut yielded = false;
            std::future::poll_fn(|_| {
                if yielded {
                    Poll::Ready(())
                } else {
                    // No wake-up needed: the body polls its producer on every poll.
                    yielded = true;
                    Poll::Pending
                }
            })
            .await;
        }
    }
}

/// A watch response body that runs its producer itself (no task or channel of its own
/// per watch): each poll advances the producer, then sends everything it queued as
/// one frame.
struct WatchBody<F> {
    /// (In a mutex only to be `Sync`; reached through `get_mut`, never locked.)
    producer: Option<std::sync::Mutex<Pin<Box<F>>>>,
    lines: Lines,
}

impl<F: std::future::Future<Output = ()> + Send> hyper::body::Body for WatchBody<F> {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(p) = self.producer.as_mut() {
            let p = p.get_mut().unwrap_or_else(|e| e.into_inner());
            if p.as_mut().poll(cx).is_ready() {
                self.producer = None;
            }
        }
        let mut q = self.lines.lock();
        let frame = match q.len() {
            0 => None,
            1 => q.pop_front(),
            _ => {
                let mut buf = Vec::with_capacity(q.iter().map(Bytes::len).sum());
                for b in q.drain(..) {
                    buf.extend_from_slice(&b);
                }
                Some(Bytes::from(buf))
            }
        };
        drop(q);
        match (frame, &self.producer) {
            (Some(b), _) => Poll::Ready(Some(Ok(Frame::data(b)))),
            (None, None) => Poll::Ready(None),
            (None, Some(_)) => Poll::Pending,
        }
    }
}

/// How one watch renders its events.
struct WatchRender {
    res: &'static Resource,
    table: bool,
    /// Objects as PartialObjectMetadata (a metadata-only watch).
    partial: bool,
    include: IncludeObject,
    first_table: bool,
}

impl WatchRender {
    /// One event of a prepared change: the shared serialization unless rendering tables.
    fn prepared(&mut self, kind: &str, ev: &Prepared) -> Bytes {
        if self.partial {
            return self.event(kind, &ev.meta_obj());
        }
        if self.table {
            return self.event(kind, &ev.obj());
        }
        if kind == crate::watchcache::natural_type(ev.kind, ev.prev.is_some()) {
            return ev.line.clone();
        }
        let mut line = Vec::with_capacity(ev.obj_json.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&ev.obj_json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn event(&mut self, kind: &str, obj: &Value) -> Bytes {
        let object = if self.table && kind != "ERROR" && kind != "BOOKMARK" {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(json!(""));
            let t = table::table(
                self.res,
                std::slice::from_ref(obj),
                self.include,
                json!({"resourceVersion": rv}),
                self.first_table,
            );
            self.first_table = false;
            t
        } else if self.partial && kind != "ERROR" && kind != "BOOKMARK" {
            crate::render::partial(obj)
        } else {
            obj.clone()
        };
        // {"type":..,"object":..} in metav1.WatchEvent's order.
        let mut line = format!("{{\"type\":{},\"object\":", json!(kind)).into_bytes();
        line.extend(crate::error::to_json(&object));
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }
}

pub(crate) async fn watch(
    state: &State,
    res: &'static Resource,
    ns: Option<&str>,
    q: &Query,
    accept: Accept,
) -> ApiResult<Response<Body>> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let opts = list_options(res, q)?;
    let fields = opts.fields;
    let rv = q.get("resourceVersion").filter(|s| !s.is_empty()).cloned();
    let send_initial = truthy(q, "sendInitialEvents");
    let from: Option<Revision> = match rv.as_deref() {
        None | Some("0") => None,
        Some(x) if send_initial => {
            let _ = registry::parse_rv(x)?;
            None
        }
        Some(x) => Some(registry::parse_rv(x)?),
    };
    let bookmarks = truthy(q, "allowWatchBookmarks");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let reg = state.registry.clone();
    let prefix = crate::storage::prefix(res, ns);
    let mut shutdown = state.shutdown.clone();
    let tx = Lines::default();
    let lines = tx.clone();
    let mut render = WatchRender {
        res,
        table: accept.table,
        partial: accept.partial,
        include: IncludeObject::parse(q.get("includeObject").map(String::as_str)),
        first_table: true,
    };
    // Initial state (synthetic ADDED events) is read before answering, so errors are HTTP errors.
    let (initial, start, source) = watch_start(&reg, res, ns, &prefix, from, rv.as_deref()).await?;
    let producer = async move {
        let matches = |s: &Selectable| s.matches(&labels, &fields);
        for p in initial.iter().filter(|p| matches(&p.sel)) {
            tx.send(render.prepared("ADDED", p)).await;
        }
        let bookmark = |rev: Revision, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rev.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"kind": res.kind, "apiVersion": res.api_version(), "metadata": meta})
        };
        if send_initial && bookmarks {
            let b = render.event("BOOKMARK", &bookmark(start, true));
            tx.send(b).await;
        }
        let mut source = match source {
            Ok(s) => s,
            Err(e) => {
                tx.send(render.event("ERROR", &watch_error(e, start))).await;
                return;
            }
        };
        let mut last = start;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut ticker = tokio::time::interval(Duration::from_secs(30));
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = ticker.tick(), if bookmarks => {
                    tx.send(render.event("BOOKMARK", &bookmark(last, false))).await;
                }
                batch = source.next() => {
                    let events = match batch {
                        None => return,
                        Some(Err(e)) => {
                            tx.send(render.event("ERROR", &watch_error(e, last))).await;
                            return;
                        }
                        Some(Ok(events)) => events,
                    };
                    for ev in events.iter() {
                        if ev.rev <= last {
                            continue;
                        }
                        last = ev.rev;
                        if !ev.key.starts_with(&prefix) {
                            continue;
                        }
                        let kind = match ev.kind {
                            EventKind::Put => match (matches(&ev.sel), ev.prev.as_deref().map(&matches)) {
                                (true, None | Some(false)) => Some("ADDED"),
                                (true, Some(true)) => Some("MODIFIED"),
                                (false, Some(true)) => Some("DELETED"),
                                (false, _) => None,
                            },
                            EventKind::Delete => matches(&ev.sel).then_some("DELETED"),
                        };
                        if let Some(kind) = kind {
                            tx.send(render.prepared(kind, ev)).await;
                        }
                    }
                }
            }
        }
    };
    let body = WatchBody {
        producer: Some(std::sync::Mutex::new(Box::pin(producer))),
        lines,
    };
    let body = body.boxed();
    Ok(Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Cache-Control", "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(full(""))))
}

/// Where a watch starts: the initial objects (for ADDED events; none when watching from
/// a resourceVersion), the revision they reflect, and the source of later changes. From
/// the watch cache when it can serve the request, else from the store.
async fn watch_start(
    reg: &Registry,
    res: &'static Resource,
    ns: Option<&str>,
    prefix: &str,
    from: Option<Revision>,
    rv: Option<&str>,
) -> ApiResult<(
    Vec<Arc<Prepared>>,
    Revision,
    Result<Source, skiff_store::Error>,
)> {
    if let Some(r) = from {
        if let Some(src) = reg.cache().and_then(|c| c.changes_after(res, r)) {
            return Ok((Vec::new(), r, Ok(src)));
        }
        let src = reg.store().watch(prefix.as_bytes(), r + 1).await;
        return Ok((Vec::new(), r, src.map(|w| Source::Direct(res, w))));
    }
    if let Some(cache) = reg.cache() {
        // No resourceVersion: the state as of now; "0": any state the cache has.
        let target = if rv == Some("0") {
            0
        } else {
            reg.store()
                .current_revision()
                .await
                .map_err(|e| ApiError::from_store(e, res.group, res.plural, ""))?
        };
        if cache.wait_for(target, Duration::from_millis(500)).await {
            if let Some((items, rev, src)) = cache.snapshot(res, prefix) {
                return Ok((items, rev, Ok(src)));
            }
        }
    }
    let page = reg.list_store(res, ns, &ListOptions::default()).await?;
    let src = reg
        .store()
        .watch(prefix.as_bytes(), page.revision + 1)
        .await;
    Ok((
        page.items,
        page.revision,
        src.map(|w| Source::Direct(res, w)),
    ))
}

fn watch_error(e: skiff_store::Error, last: Revision) -> Value {
    let err = match e {
        skiff_store::Error::Compacted { .. } | skiff_store::Error::WatchLagged { .. } => {
            ApiError::gone(format!("too old resource version: {last} ({last})"))
        }
        other => ApiError::internal(other.to_string()),
    };
    err.status()
}
