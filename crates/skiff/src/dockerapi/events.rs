//! `GET /events?since&until&filters`: the engine's event journal
//! ([`skiff_engine::events`]) as docker's stream of JSON objects, one per line.

use super::{Answer, ApiError, Req};
use bytes::Bytes;
use skiff_engine::events::{stream, FILTERS};

/// `GET /events`.
pub(super) fn events(req: &Req) -> Answer {
    let clamp = |n: Option<i128>| n.map(|n| n.clamp(0, i64::MAX as i128) as i64);
    let since = clamp(req.epoch_ns("since")?);
    let until = clamp(req.epoch_ns("until")?);
    let filters = req.filters()?;
    if let Some((k, _)) = filters.iter().find(|(k, _)| !FILTERS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!("invalid filter '{k}'")));
    }
    let root = req.root.clone();
    super::streamed_with(256, "application/json", "docker-api-events", move |tx| {
        stream(
            &root,
            since,
            until,
            &filters,
            |ev| {
                let mut line = serde_json::to_vec(ev).unwrap_or_default();
                line.push(b'\n');
                tx.blocking_send(Bytes::from(line)).is_ok()
            },
            || !tx.is_closed(),
        )
    })
}
