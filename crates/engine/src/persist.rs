//! The engine's files on disk: JSON written atomically (a temp file renamed into
//! place), read back, and guarded by `flock`, so several skiff processes (CLIs,
//! monitors, the node agent) share them safely; and the timestamps they hold.

use crate::{EngineError, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// A held `flock`; released on drop.
pub struct Lock(#[allow(dead_code)] skiff_image::lock::FileLock);

impl Lock {
    pub fn exclusive(path: &Path) -> Result<Lock> {
        skiff_image::lock::exclusive(path)
            .map(Lock)
            .map_err(|e| EngineError::io(format!("locking {}", path.display()), e))
    }
}

/// Write `bytes` to `path` atomically (temp file + rename in the same directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("f"),
        std::process::id()
    ));
    let mut f =
        File::create(&tmp).map_err(|e| EngineError::io(format!("writing {}", tmp.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| EngineError::io(format!("writing {}", tmp.display()), e))?;
    fs::rename(&tmp, path)
        .map_err(|e| EngineError::io(format!("renaming to {}", path.display()), e))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let b =
        fs::read(path).map_err(|e| EngineError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_slice(&b).map_err(|e| EngineError::Corrupt(format!("{}: {e}", path.display())))
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let b = serde_json::to_vec_pretty(v)
        .map_err(|e| EngineError::Corrupt(format!("encoding {}: {e}", path.display())))?;
    write_atomic(path, &b)
}

/// Now as the engine records it (docker's `Created`, `StartedAt`, `FinishedAt`):
/// RFC 3339 in UTC with nanoseconds, so containers created within one second keep
/// their order.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
