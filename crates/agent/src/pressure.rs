//! Node pressure: the kubelet's hard eviction signals (memory.available,
//! nodefs.available, imagefs.available, pid.available) read from the host and held
//! against `--eviction-hard` thresholds, giving the MemoryPressure, DiskPressure and
//! PIDPressure node conditions.

/// A threshold: an absolute quantity or a percentage of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Bytes(u64),
    Percent(f64),
}

impl Threshold {
    /// Whether `available` of `capacity` is below the threshold.
    pub fn crossed(&self, available: u64, capacity: u64) -> bool {
        match *self {
            Threshold::Bytes(b) => available < b,
            Threshold::Percent(p) => (available as f64) < capacity as f64 * p / 100.0,
        }
    }
}

/// The hard eviction thresholds (the kubelet's defaults: memory.available<100Mi,
/// nodefs.available<10%, imagefs.available<15%).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub memory: Option<Threshold>,
    pub nodefs: Option<Threshold>,
    pub imagefs: Option<Threshold>,
    pub pids: Option<Threshold>,
}

pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%";

/// What is wrong with an `--eviction-hard` setting.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdError {
    /// A part that is not `signal<value`.
    #[error("invalid eviction threshold {0:?}")]
    Invalid(String),
    /// A part whose percentage is not a number.
    #[error("invalid percentage in {0:?}")]
    Percentage(String),
    #[error("invalid quantity: {0}")]
    Quantity(String),
    #[error("unknown eviction signal {0:?}")]
    UnknownSignal(String),
}

/// Parses `--eviction-hard` (`signal<quantity|percent`, comma-separated).
pub fn parse(s: &str) -> Result<Thresholds, ThresholdError> {
    let mut t = Thresholds::default();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (signal, value) = part
            .split_once('<')
            .ok_or_else(|| ThresholdError::Invalid(part.to_string()))?;
        let th = match value.strip_suffix('%') {
            Some(p) => Threshold::Percent(
                p.parse()
                    .map_err(|_| ThresholdError::Percentage(part.to_string()))?,
            ),
            None => Threshold::Bytes(
                (skiff_meta::quantity::parse_milli(value)
                    .map_err(|_| ThresholdError::Quantity(value.to_string()))?
                    / 1000)
                    .clamp(0, u64::MAX as i128) as u64,
            ),
        };
        match signal {
            "memory.available" => t.memory = Some(th),
            "nodefs.available" => t.nodefs = Some(th),
            "imagefs.available" => t.imagefs = Some(th),
            "pid.available" => t.pids = Some(th),
            "nodefs.inodesFree" | "imagefs.inodesFree" => {}
            other => return Err(ThresholdError::UnknownSignal(other.to_string())),
        }
    }
    Ok(t)
}

/// One reading of the signals: (available, capacity) each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    pub memory: (u64, u64),
    pub nodefs: (u64, u64),
    pub imagefs: (u64, u64),
    pub pids: (u64, u64),
}

fn meminfo(key: &str) -> u64 {
    skiff_runtime::sys::meminfo(key).unwrap_or(0)
}

/// (available, capacity) in bytes of the filesystem holding `path`.
pub fn fs(path: &std::path::Path) -> (u64, u64) {
    nix::sys::statvfs::statvfs(path)
        .map(|s| {
            (
                s.blocks_available() * s.fragment_size(),
                s.blocks() * s.fragment_size(),
            )
        })
        .unwrap_or((0, 0))
}

/// Reads the signals: memory from /proc/meminfo, nodefs from the filesystem of
/// `root`, imagefs from that of `images`, pids from /proc.
pub fn read(root: &std::path::Path, images: &std::path::Path) -> Readings {
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(32768u64);
    let used = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count() as u64
        })
        .unwrap_or(0);
    Readings {
        memory: (meminfo("MemAvailable:"), meminfo("MemTotal:")),
        nodefs: fs(root),
        imagefs: fs(images),
        pids: (max.saturating_sub(used), max),
    }
}

/// (MemoryPressure, DiskPressure, PIDPressure) for `r` against `t`.
pub fn pressure(r: &Readings, t: &Thresholds) -> (bool, bool, bool) {
    let hit = |th: &Option<Threshold>, (a, c): (u64, u64)| th.is_some_and(|th| th.crossed(a, c));
    (
        hit(&t.memory, r.memory),
        hit(&t.nodefs, r.nodefs) || hit(&t.imagefs, r.imagefs),
        hit(&t.pids, r.pids),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_pressure() {
        let t = parse(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(t.memory, Some(Threshold::Bytes(100 << 20)));
        assert_eq!(t.nodefs, Some(Threshold::Percent(10.0)));
        assert_eq!(t.imagefs, Some(Threshold::Percent(15.0)));
        assert!(parse("bogus<1").is_err());
        // The messages `skiff agent --eviction-hard` prints.
        let said = |s: &str| parse(s).map(|_| ()).unwrap_err().to_string();
        assert_eq!(said("bogus<1"), "unknown eviction signal \"bogus\"");
        assert_eq!(
            said("memory.available"),
            "invalid eviction threshold \"memory.available\""
        );
        assert_eq!(
            said("nodefs.available<x%"),
            "invalid percentage in \"nodefs.available<x%\""
        );
        assert_eq!(said("memory.available<lots"), "invalid quantity: lots");
        let gib = 1u64 << 30;
        let ok = Readings {
            memory: (gib, 4 * gib),
            nodefs: (50 * gib, 100 * gib),
            imagefs: (50 * gib, 100 * gib),
            pids: (30000, 32768),
        };
        assert_eq!(pressure(&ok, &t), (false, false, false));
        let low = Readings {
            memory: (50 << 20, 4 * gib),
            imagefs: (12 * gib, 100 * gib),
            ..ok
        };
        assert_eq!(pressure(&low, &t), (true, true, false));
        let pids = parse("pid.available<99%").unwrap();
        assert_eq!(pressure(&ok, &pids), (false, false, true));
        assert!(
            read(std::path::Path::new("/"), std::path::Path::new("/"))
                .memory
                .1
                > 0
        );
    }
}
