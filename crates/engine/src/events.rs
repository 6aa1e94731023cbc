//! The engine's event journal: what `docker events` and `skiff events` stream. skiff
//! has no daemon, so every process that changes something (a CLI verb, the Docker
//! API, a container's monitor when its process dies) appends one JSON line in docker's
//! event shape to `events.jsonl` in the engine root, under an exclusive `flock`; past
//! [`MAX_BYTES`] the file is rotated to `events.1.jsonl` (one old file kept), so the
//! journal stays bounded. Readers replay both files (`--since`) and follow the live one
//! across rotations.
//!
//! Recording never fails the operation it reports: a journal that cannot be written
//! is logged and skipped.

use crate::Container;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const FILE: &str = "events.jsonl";
const ROTATED: &str = "events.1.jsonl";
/// The live file's size past which it is rotated.
pub const MAX_BYTES: u64 = 1 << 20;
/// The longest line a reader accepts (a longer one is skipped).
const MAX_LINE: usize = 64 << 10;

/// Who an event is about: an id and docker's attributes (`name`, `image`, labels…).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, as dockerd's `/events` sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `container`, `image`, `network`, `volume`.
    #[serde(rename = "Type")]
    pub typ: String,
    /// `create`, `start`, `die`, `destroy`, …
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    /// The old API's fields of container events (`status`, `id`, `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Records an event of `typ`/`action` about `id`.
pub fn record(
    root: &Path,
    typ: &str,
    action: &str,
    id: &str,
    attributes: BTreeMap<String, String>,
) {
    let nanos = now_nanos();
    let legacy = typ == "container";
    let from = if legacy {
        attributes.get("image").cloned()
    } else {
        None
    };
    let ev = Event {
        typ: typ.into(),
        action: action.into(),
        actor: Actor {
            id: id.into(),
            attributes,
        },
        scope: "local".into(),
        time: nanos / 1_000_000_000,
        time_nano: nanos,
        status: legacy.then(|| action.to_string()),
        id: legacy.then(|| id.to_string()),
        from,
    };
    if let Err(e) = append(root, &ev) {
        tracing::warn!(error = %e, action, id, "recording an event");
    }
}

/// Records a container event: its `name`, `image` and labels as attributes, plus
/// `extra` (a `die`'s `exitCode`, a `kill`'s `signal`).
pub fn container(root: &Path, c: &Container, action: &str, extra: &[(&str, String)]) {
    let mut attrs = c.record.labels.clone();
    attrs.insert("name".into(), c.record.name.clone());
    attrs.insert("image".into(), c.record.image.clone());
    for (k, v) in extra {
        attrs.insert((*k).into(), v.clone());
    }
    record(root, "container", action, &c.record.id, attrs);
}

fn append(root: &Path, ev: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let path = root.join(FILE);
    for _ in 0..4 {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Rotated while we waited for the lock: write to the new file.
        if std::fs::metadata(&path).map(|m| m.ino()).ok() != Some(f.metadata()?.ino()) {
            continue;
        }
        f.write_all(&line)?;
        if f.metadata()?.len() > MAX_BYTES {
            std::fs::rename(&path, root.join(ROTATED))?;
        }
        return Ok(());
    }
    Err(std::io::Error::other(
        "the event journal kept being rotated",
    ))
}

fn parse(line: &[u8]) -> Option<Event> {
    serde_json::from_slice(line).ok()
}

/// The recorded events from `since_nanos` on (all kept ones for None), oldest first.
pub fn replay(root: &Path, since_nanos: Option<i64>) -> Vec<Event> {
    let mut out = Vec::new();
    for name in [ROTATED, FILE] {
        let Ok(f) = File::open(root.join(name)) else {
            continue;
        };
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            if line.len() > MAX_LINE {
                continue;
            }
            if let Some(ev) = parse(&line) {
                if since_nanos.is_none_or(|s| ev.time_nano >= s) {
                    out.push(ev);
                }
            }
        }
    }
    out
}

/// Follows the live journal from its current end: [`Follower::poll`] returns what was
/// appended since the last call, across rotations.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the journal's end (what is recorded after this).
    pub fn new(root: &Path) -> Follower {
        let path = root.join(FILE);
        let mut f = Follower {
            path,
            file: None,
            ino: 0,
            pos: 0,
            partial: Vec::new(),
        };
        if let Ok(file) = File::open(&f.path) {
            if let Ok(m) = file.metadata() {
                f.ino = m.ino();
                f.pos = m.len();
            }
            f.file = Some(file);
        }
        f
    }

    /// The events appended since the last call.
    pub fn poll(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.read_new(&mut out);
        // Rotated (or created): the old file is read to its end above, then the new
        // one from its start.
        let now = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if now.is_some() && now != Some(self.ino) {
            if let Ok(file) = File::open(&self.path) {
                self.ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
                self.file = Some(file);
                self.pos = 0;
                self.partial.clear();
                self.read_new(&mut out);
            }
        }
        out
    }

    fn read_new(&mut self, out: &mut Vec<Event>) {
        let Some(f) = self.file.as_mut() else { return };
        if f.seek(SeekFrom::Start(self.pos)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.take(4 << 20).read_to_end(&mut buf) else {
            return;
        };
        self.pos += n as u64;
        self.partial.extend_from_slice(&buf);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            if let Some(ev) = parse(&line[..line.len() - 1]) {
                out.push(ev);
            }
        }
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
    }
}

fn now() -> i64 {
    now_nanos()
}

/// Streams events to `emit` (which returns false to stop): replayed from `since` (or
/// from the oldest kept with only `until`), then followed live until `until` passes
/// or `emit` or `alive` says to stop (checked every 100 ms). Only those `filters`
/// match are emitted. Times are nanoseconds since the epoch.
pub fn stream(
    root: &Path,
    since: Option<i64>,
    until: Option<i64>,
    filters: &[(String, String)],
    mut emit: impl FnMut(&Event) -> bool,
    alive: impl Fn() -> bool,
) {
    // Follow from here before replaying, so nothing falls between the two; what both
    // see is emitted once (by time).
    let mut follower = Follower::new(root);
    let mut last = i64::MIN;
    if since.is_some() || until.is_some() {
        for ev in replay(root, since) {
            if until.is_some_and(|u| ev.time_nano > u) {
                return;
            }
            last = last.max(ev.time_nano);
            if matches(&ev, filters) && !emit(&ev) {
                return;
            }
        }
    }
    loop {
        for ev in follower.poll() {
            if ev.time_nano <= last {
                continue;
            }
            if until.is_some_and(|u| ev.time_nano > u) {
                return;
            }
            if matches(&ev, filters) && !emit(&ev) {
                return;
            }
        }
        if !alive() || until.is_some_and(|u| now() > u) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The filter names docker's events know (others are refused, as dockerd does).
pub const FILTERS: [&str; 14] = [
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// docker's event filters: `type`, `event` (the action), `container`, `image`,
/// `network`, `volume` (an id, id prefix or name), `label` (`key` or `key=value`).
/// Values of one filter are ORed, filters are ANDed.
pub fn matches(ev: &Event, filters: &[(String, String)]) -> bool {
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in filters {
        by.entry(k.as_str()).or_default().push(v.as_str());
    }
    let attr = |k: &str| ev.actor.attributes.get(k).map(String::as_str);
    let names_actor = |v: &str| {
        ev.actor.id == v || (v.len() >= 3 && ev.actor.id.starts_with(v)) || attr("name") == Some(v)
    };
    by.iter().all(|(k, vals)| match *k {
        "type" => vals.contains(&ev.typ.as_str()),
        "event" => vals
            .iter()
            .any(|v| *v == ev.action || ev.action.split(':').next() == Some(*v)),
        "container" | "network" | "volume" => ev.typ == *k && vals.iter().any(|v| names_actor(v)),
        "image" => vals.iter().any(|v| {
            attr("image") == Some(*v)
                || (ev.typ == "image" && names_actor(v))
                || attr("image").is_some_and(|i| i.strip_suffix(":latest") == Some(*v))
        }),
        "label" => vals.iter().any(|v| match v.split_once('=') {
            Some((lk, lv)) => attr(lk) == Some(lv),
            None => attr(v).is_some(),
        }),
        "scope" => vals.contains(&"local"),
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_replay_follow_and_rotate() {
        let d = tempfile::tempdir().unwrap();
        let mut f = Follower::new(d.path());
        let attrs: BTreeMap<String, String> = [("name".to_string(), "web".to_string())].into();
        record(d.path(), "container", "start", "abc123", attrs.clone());
        record(d.path(), "network", "create", "net1", BTreeMap::new());
        let got = f.poll();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].status.as_deref(), Some("start"));
        assert_eq!(got[1].status, None);
        assert!(f.poll().is_empty());
        let all = replay(d.path(), None);
        assert_eq!(all.len(), 2);
        assert_eq!(replay(d.path(), Some(got[1].time_nano + 1)).len(), 0);
        // Filters.
        let flt = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert!(matches(&got[0], &flt("container", "web")));
        assert!(matches(&got[0], &flt("container", "abc")));
        assert!(!matches(&got[1], &flt("container", "web")));
        assert!(matches(&got[1], &flt("type", "network")));
        assert!(matches(&got[0], &flt("event", "start")));
        assert!(!matches(&got[0], &flt("event", "die")));
        // Past the bound the live file rotates, and the follower keeps up.
        let big: BTreeMap<String, String> = [("pad".to_string(), "x".repeat(4096))].into();
        let n = (MAX_BYTES / 4096) as usize + 10;
        let mut seen = 0;
        for i in 0..n {
            record(d.path(), "volume", "create", &format!("v{i}"), big.clone());
            if i % 50 == 0 {
                seen += f.poll().len();
            }
        }
        seen += f.poll().len();
        assert_eq!(seen, n);
        assert!(d.path().join(ROTATED).exists());
        assert!(std::fs::metadata(d.path().join(FILE)).unwrap().len() <= MAX_BYTES + 8192);
    }
}
