//! `--datastore-migrate`: moving a server from its embedded store to etcd. Every
//! object (the keys under `/registry/`) is copied in the order it was last written,
//! so resourceVersions (the store's revisions) keep their order, and so do the
//! creation order and history a watch from "now" would need. The embedded store is
//! left as it was; a datastore that already holds objects is refused.

use crate::error::{Error, Result};
use skiff_store::{RangeOptions, Store};

const OBJECTS: &[u8] = b"/registry/";
const PAGE: usize = 1000;

/// Copies the objects of `from` into the empty `to`; returns how many.
pub async fn copy(from: &dyn Store, to: &dyn Store) -> Result<usize> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: skiff_store::Error| Error::Config(format!("--datastore-migrate: {what}: {e}"))
    };
    let present = to
        .range(
            OBJECTS,
            RangeOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .map_err(err("reading the datastore"))?;
    if let Some(kv) = present.kvs.first() {
        return Err(Error::Config(format!(
            "--datastore-migrate: the datastore already holds objects ({} among them): not migrating into it",
            String::from_utf8_lossy(&kv.key)
        )));
    }
    // One consistent view of the embedded store, paged.
    let mut all = Vec::new();
    let mut opts = RangeOptions {
        limit: PAGE,
        ..Default::default()
    };
    loop {
        let page = from
            .range(OBJECTS, opts.clone())
            .await
            .map_err(err("reading the embedded store"))?;
        opts.revision = page.revision;
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        let more = page.more;
        all.extend(page.kvs);
        if !more {
            break;
        }
    }
    all.sort_by_key(|kv| kv.mod_revision);
    for kv in &all {
        to.create(&kv.key, kv.value.clone())
            .await
            .map_err(err(&format!(
                "writing {}",
                String::from_utf8_lossy(&kv.key)
            )))?;
    }
    Ok(all.len())
}
