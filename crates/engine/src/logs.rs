//! Container logs in docker's json-file format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.000000000Z"}`.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a byte stream into log lines, keeping a partial line until it completes.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; returns the complete lines (with their `\n`).
    pub fn feed(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &b in data {
            self.partial.push(b);
            if b == b'\n' || self.partial.len() >= 16 * 1024 {
                out.push(std::mem::take(&mut self.partial));
            }
        }
        out
    }
    /// The remainder at end of stream.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.partial.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.partial))
        }
    }
}

pub fn encode(line: &[u8], stream: &str) -> Vec<u8> {
    let e = Entry {
        log: String::from_utf8_lossy(line).into_owned(),
        stream: stream.into(),
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    };
    let mut v = serde_json::to_vec(&e).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Where a container's log from before its last restart is kept (the monitor moves
/// the log there when it restarts a container that asks for it, as the kubelet keeps
/// one previous instance for `kubectl logs --previous`).
pub fn previous_path(log: &std::path::Path) -> std::path::PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".previous");
    std::path::PathBuf::from(p)
}

/// Rotates `log`: `<log>.N` becomes `<log>.N+1` and `log` becomes `<log>.1`, keeping
/// `max_files` files with the current one (which the writer then creates afresh).
pub fn rotate(log: &std::path::Path, max_files: u32) -> std::io::Result<()> {
    let numbered = |n: u32| {
        let mut p = log.as_os_str().to_owned();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    let keep = max_files.max(1) - 1;
    if keep == 0 {
        return std::fs::remove_file(log);
    }
    let _ = std::fs::remove_file(numbered(keep));
    for n in (1..keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    std::fs::rename(log, numbered(1))
}

/// Options of `skiff logs`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Read entries from a json-file log.
pub fn read_entries(path: &std::path::Path) -> Vec<Entry> {
    let mut out = Vec::new();
    each_entry(path, |e| {
        out.push(e);
        true
    });
    out
}

/// Calls `each` with the entries of a json-file log in order, one line in memory at
/// a time, until it returns false.
pub fn each_entry(path: &std::path::Path, mut each: impl FnMut(Entry) -> bool) {
    let Ok(f) = std::fs::File::open(path) else {
        return;
    };
    for line in std::io::BufReader::new(f).lines().map_while(|l| l.ok()) {
        if let Ok(e) = serde_json::from_str(&line) {
            if !each(e) {
                return;
            }
        }
    }
}

/// The entries of a json-file log that `keep` accepts, the last `tail` of them (all
/// for None), to `each` in order until it returns false (then false is returned). A
/// tail takes two passes over the file, so the log is never held in memory.
pub fn each_kept(
    path: &std::path::Path,
    tail: Option<usize>,
    keep: impl Fn(&Entry) -> bool,
    mut each: impl FnMut(&Entry) -> bool,
) -> bool {
    let skip = match tail {
        Some(t) => {
            let mut n = 0usize;
            each_entry(path, |en| {
                n += usize::from(keep(&en));
                true
            });
            n.saturating_sub(t)
        }
        None => 0,
    };
    let (mut seen, mut stopped) = (0usize, false);
    each_entry(path, |en| {
        if !keep(&en) {
            return true;
        }
        seen += 1;
        if seen <= skip {
            return true;
        }
        stopped = !each(&en);
        !stopped
    });
    !stopped
}

/// Follows a container's json-file log at `path` from its current end: `each` gets
/// every entry appended (across size rotations, `<log>.1`, `<log>.2`, …), until it
/// returns false or the container `c` is no longer running and all is read.
pub fn follow(c: &mut crate::Container, path: &std::path::Path, each: impl FnMut(&Entry) -> bool) {
    follow_while(
        path,
        || c.reload().is_ok() && c.state.status.is_active(),
        each,
    )
}

/// [`follow`] for a reader that learns whether the container still runs from
/// `running` (the node agent asks its runtime interface).
pub fn follow_while(
    path: &std::path::Path,
    mut running: impl FnMut() -> bool,
    mut each: impl FnMut(&Entry) -> bool,
) {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut pos = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let ino = |m: std::io::Result<std::fs::Metadata>| m.map(|m| m.ino()).ok();
    loop {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= pos {
            // Rotated: what the old file had is read; go on with the next one, which
            // is `<log>.N-1` if ours is now `<log>.N`, else the current log.
            let mine = ino(f.metadata());
            if ino(std::fs::metadata(path)) != mine {
                let numbered = |n: u32| {
                    let mut p = path.as_os_str().to_owned();
                    p.push(format!(".{n}"));
                    std::path::PathBuf::from(p)
                };
                let at = (1..=64).find(|&n| ino(std::fs::metadata(numbered(n))) == mine);
                let next = match at {
                    Some(n) if n > 1 => numbered(n - 1),
                    _ => path.to_path_buf(),
                };
                if let Ok(nf) = std::fs::File::open(&next) {
                    f = nf;
                    pos = 0;
                    continue;
                }
            }
        }
        if len > pos {
            let _ = f.seek(SeekFrom::Start(pos));
            let mut r = std::io::BufReader::new(&f);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                pos += line.len() as u64;
                if let Ok(e) = serde_json::from_str::<Entry>(&line) {
                    if !each(&e) {
                        return;
                    }
                }
                line.clear();
            }
            continue;
        }
        if !running() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Write one entry as `docker logs` prints it, to stdout or stderr.
pub fn print_entry(e: &Entry, opts: &LogOptions, out: &mut dyn Write, err: &mut dyn Write) {
    let w: &mut dyn Write = if e.stream == "stderr" { err } else { out };
    if opts.timestamps {
        let _ = write!(w, "{} ", e.time);
    }
    let _ = w.write_all(e.log.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_of_kept_entries_in_two_passes() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("c-json.log");
        let mut text = String::new();
        for i in 0..10 {
            let stream = if i % 2 == 0 { "stdout" } else { "stderr" };
            text.push_str(&format!(
                "{{\"log\":\"{i}\\n\",\"stream\":\"{stream}\",\"time\":\"2026-01-01T00:00:00Z\"}}\n"
            ));
        }
        text.push_str("not json\n");
        std::fs::write(&log, text).unwrap();
        let collect = |tail: Option<usize>, limit: usize| {
            let mut got = Vec::new();
            let done = each_kept(
                &log,
                tail,
                |e| e.stream == "stdout",
                |e| {
                    got.push(e.log.trim().to_string());
                    got.len() < limit
                },
            );
            (got, done)
        };
        assert_eq!(collect(Some(2), 99), (vec!["6".into(), "8".into()], true));
        assert_eq!(collect(None, 99).0.len(), 5);
        assert_eq!(collect(Some(100), 99).0.len(), 5);
        assert_eq!(collect(None, 2), (vec!["0".into(), "2".into()], false));
        assert_eq!(collect(Some(0), 99).0.len(), 0);
    }

    #[test]
    fn rotation_keeps_max_files() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("c-json.log");
        for i in 0..5 {
            std::fs::write(&log, format!("{i}")).unwrap();
            rotate(&log, 3).unwrap();
        }
        let read = |s: &str| std::fs::read_to_string(t.path().join(s)).ok();
        assert_eq!(read("c-json.log.1").as_deref(), Some("4"));
        assert_eq!(read("c-json.log.2").as_deref(), Some("3"));
        assert_eq!(read("c-json.log.3"), None);
        assert!(!log.exists());
    }

    #[test]
    fn splits_lines_and_encodes() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(s.feed(b"c\n"), vec![b"bc\n".to_vec()]);
        assert_eq!(s.flush(), None);
        let j = encode(b"hi\n", "stdout");
        let e: Entry = serde_json::from_slice(&j).unwrap();
        assert_eq!((e.log.as_str(), e.stream.as_str()), ("hi\n", "stdout"));
    }
}
