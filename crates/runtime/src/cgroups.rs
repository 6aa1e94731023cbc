//! Control groups, v1 and v2 behind one type.
//!
//! The mode is decided by the filesystem type of the cgroup root (cgroup2 magic → v2,
//! anything else → v1), never by `/proc/self/cgroup`. A created group records the
//! absolute directory of every hierarchy it lives in; callers persist that and never
//! recompute it.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The v1 controllers a container group is created in.
pub const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The cgroup layout of the host, as seen from the calling process.
#[derive(Debug, Clone)]
pub struct Host {
    pub version: Version,
    /// v1: controller → (mountpoint, the caller's own path in that hierarchy).
    /// v2: "" → (mountpoint, own path).
    pub hierarchies: BTreeMap<String, (PathBuf, String)>,
}

impl Host {
    /// Detect the host's layout from `/sys/fs/cgroup`, `/proc/self/mountinfo` and
    /// `/proc/self/cgroup`.
    pub fn detect() -> Result<Host, Error> {
        let root = Path::new("/sys/fs/cgroup");
        let st = nix::sys::statfs::statfs(root)
            .map_err(|e| Error::Cgroup(format!("statfs {}: {e}", root.display())))?;
        let self_cg = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Error::Cgroup(format!("reading /proc/self/cgroup: {e}")))?;
        if st.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC {
            let own = self_cg
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/")
                .to_string();
            return Ok(Host::v2(root.to_path_buf(), &own));
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Cgroup(format!("reading mountinfo: {e}")))?;
        Ok(Host::v1_from(&mountinfo, &self_cg))
    }

    /// A v2 layout rooted at `mount` (also used for a directory laid out like one).
    pub fn v2(mount: PathBuf, own: &str) -> Host {
        let mut h = BTreeMap::new();
        h.insert(String::new(), (mount, own.to_string()));
        Host {
            version: Version::V2,
            hierarchies: h,
        }
    }

    /// Parse a v1 layout from mountinfo and /proc/self/cgroup text.
    pub fn v1_from(mountinfo: &str, self_cgroup: &str) -> Host {
        let mut mounts: BTreeMap<String, PathBuf> = BTreeMap::new();
        for line in mountinfo.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let post: Vec<&str> = post.split_whitespace().collect();
            if post.first() != Some(&"cgroup") {
                continue;
            }
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let Some(mp) = pre.get(4) else { continue };
            let opts = post.get(2).copied().unwrap_or("");
            for o in opts.split(',') {
                if V1_CONTROLLERS.contains(&o) {
                    mounts.insert(o.to_string(), PathBuf::from(mp));
                }
            }
        }
        let mut own: BTreeMap<String, String> = BTreeMap::new();
        for line in self_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
            if let (Some(ctrls), Some(path)) = (ctrls, path) {
                for c in ctrls.split(',') {
                    own.insert(c.to_string(), path.to_string());
                }
            }
        }
        let hierarchies = mounts
            .into_iter()
            .map(|(c, mp)| {
                let p = own.get(&c).cloned().unwrap_or_else(|| "/".into());
                (c, (mp, p))
            })
            .collect();
        Host {
            version: Version::V1,
            hierarchies,
        }
    }

    /// The absolute directories of group `name` under `parent`. A `parent` starting
    /// with `/` is taken from each hierarchy's root; otherwise it is relative to the
    /// caller's own group in that hierarchy (so limits on the engine bind its children).
    pub fn paths_for(&self, parent: &str, name: &str) -> BTreeMap<String, PathBuf> {
        self.hierarchies
            .iter()
            .map(|(c, (mp, own))| {
                let base = if parent.starts_with('/') {
                    parent.to_string()
                } else {
                    format!("{}/{}", own.trim_end_matches('/'), parent)
                };
                let rel = format!("{}/{}", base.trim_end_matches('/'), name);
                (c.clone(), mp.join(rel.trim_start_matches('/')))
            })
            .collect()
    }
}

/// Resource limits as docker's flags express them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    /// Device cgroup rules (`c 1:3 rwm`) allowed on top of docker's defaults;
    /// `None` with `privileged` = allow all.
    pub device_rules: Vec<String>,
    pub privileged: bool,
}

/// docker's default allowed devices.
pub const DEFAULT_DEVICE_RULES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
    "c 10:200 rwm",
];

/// One container's (or pod's) group, in every hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cgroup {
    pub version: Version,
    pub paths: BTreeMap<String, PathBuf>,
}

fn write(path: &Path, value: &str) -> Result<(), Error> {
    fs::write(path, value)
        .map_err(|e| Error::Cgroup(format!("writing {:?} to {}: {e}", value, path.display())))
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

impl Cgroup {
    /// Create the group directories (and missing parents) and apply `res`.
    pub fn create(host: &Host, parent: &str, name: &str, res: &Resources) -> Result<Cgroup, Error> {
        let paths = host.paths_for(parent, name);
        for (ctrl, path) in &paths {
            if ctrl == "cpuset" {
                create_cpuset_chain(path)?;
            } else {
                fs::create_dir_all(path)
                    .map_err(|e| Error::Cgroup(format!("creating {}: {e}", path.display())))?;
            }
        }
        let cg = Cgroup {
            version: host.version.clone(),
            paths,
        };
        if cg.version == Version::V2 {
            cg.enable_v2_controllers();
        }
        cg.apply(res)?;
        Ok(cg)
    }

    fn dir(&self, ctrl: &str) -> Option<&PathBuf> {
        match self.version {
            Version::V1 => self.paths.get(ctrl),
            Version::V2 => self.paths.get(""),
        }
    }

    fn enable_v2_controllers(&self) {
        // Delegate the controllers the parent has to the parent's subtree, best effort
        // (a v2 hierarchy without controllers, like the empty one beside a v1 host,
        // simply has none to enable).
        let Some(dir) = self.dir("") else { return };
        let Some(parent) = dir.parent() else { return };
        if let Some(avail) = read_trim(&parent.join("cgroup.controllers")) {
            let want: Vec<String> = avail
                .split_whitespace()
                .filter(|c| ["cpu", "cpuset", "memory", "pids", "io"].contains(c))
                .map(|c| format!("+{c}"))
                .collect();
            if !want.is_empty() {
                let _ = fs::write(parent.join("cgroup.subtree_control"), want.join(" "));
            }
        }
    }

    /// Write the limits in `res`.
    pub fn apply(&self, res: &Resources) -> Result<(), Error> {
        match self.version {
            Version::V1 => self.apply_v1(res, true),
            Version::V2 => self.apply_v2(res, true),
        }
    }

    /// The limits of `res` on a live group (`docker update`): its device rules are
    /// left as they are.
    pub fn update_limits(&self, res: &Resources) -> Result<(), Error> {
        match self.version {
            Version::V1 => self.apply_v1(res, false),
            Version::V2 => self.apply_v2(res, false),
        }
    }

    fn apply_v1(&self, res: &Resources, devices: bool) -> Result<(), Error> {
        if let Some(d) = self.dir("memory") {
            if let Some(m) = res.memory {
                let limit = d.join("memory.limit_in_bytes");
                let memsw = d.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    // docker: swap defaults to twice the memory limit; -1 = unlimited.
                    let swap = match res.memory_swap {
                        Some(s) => s,
                        None => m * 2,
                    };
                    // memsw may never be below the memory limit: on a live group
                    // (`docker update`) raise memsw first when it stays above the
                    // current limit, else lower the limit first.
                    let current: i64 = fs::read_to_string(&limit)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(i64::MAX);
                    if swap < 0 || swap >= current {
                        write(&memsw, &swap.to_string())?;
                        write(&limit, &m.to_string())?;
                    } else {
                        write(&limit, &m.to_string())?;
                        write(&memsw, &swap.to_string())?;
                    }
                } else {
                    write(&limit, &m.to_string())?;
                }
            }
        }
        if let Some(d) = self.dir("cpu") {
            if let Some(s) = res.cpu_shares {
                write(&d.join("cpu.shares"), &s.to_string())?;
            }
            if let Some(p) = res.cpu_period {
                write(&d.join("cpu.cfs_period_us"), &p.to_string())?;
            }
            if let Some(q) = res.cpu_quota {
                write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        if let Some(d) = self.dir("cpuset") {
            if let Some(c) = &res.cpuset_cpus {
                write(&d.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = &res.cpuset_mems {
                write(&d.join("cpuset.mems"), m)?;
            }
        }
        if let Some(d) = self.dir("pids") {
            if let Some(p) = res.pids_limit {
                let v = if p <= 0 {
                    "max".to_string()
                } else {
                    p.to_string()
                };
                write(&d.join("pids.max"), &v)?;
            }
        }
        if let Some(d) = self.dir("devices").filter(|_| devices) {
            if res.privileged {
                write(&d.join("devices.allow"), "a")?;
            } else {
                write(&d.join("devices.deny"), "a")?;
                for r in DEFAULT_DEVICE_RULES
                    .iter()
                    .map(|s| s.to_string())
                    .chain(res.device_rules.iter().cloned())
                {
                    write(&d.join("devices.allow"), &r)?;
                }
            }
        }
        Ok(())
    }

    fn apply_v2(&self, res: &Resources, devices: bool) -> Result<(), Error> {
        let Some(d) = self.dir("") else {
            return Ok(());
        };
        if let Some(m) = res.memory {
            write(&d.join("memory.max"), &m.to_string())?;
            if let Some(s) = res.memory_swap {
                // v2's swap limit excludes memory; docker writes memory-swap minus memory.
                let v = if s < 0 {
                    "max".to_string()
                } else {
                    (s - m).max(0).to_string()
                };
                write(&d.join("memory.swap.max"), &v)?;
            }
        }
        if let Some(s) = res.cpu_shares {
            write(&d.join("cpu.weight"), &shares_to_weight(s).to_string())?;
        }
        if res.cpu_quota.is_some() || res.cpu_period.is_some() {
            let period = res.cpu_period.unwrap_or(100_000);
            let quota = match res.cpu_quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            write(&d.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        if let Some(c) = &res.cpuset_cpus {
            write(&d.join("cpuset.cpus"), c)?;
        }
        if let Some(m) = &res.cpuset_mems {
            write(&d.join("cpuset.mems"), m)?;
        }
        if let Some(p) = res.pids_limit {
            let v = if p <= 0 {
                "max".to_string()
            } else {
                p.to_string()
            };
            write(&d.join("pids.max"), &v)?;
        }
        // v2 has no devices.allow: device access is an eBPF program on the group
        // (only on a real cgroup2 file system; a directory laid out like one for
        // tests has nothing to attach to).
        if devices && !res.privileged && is_cgroup2(d) {
            let mut rules = Vec::new();
            for r in DEFAULT_DEVICE_RULES
                .iter()
                .map(|s| s.to_string())
                .chain(res.device_rules.iter().cloned())
            {
                rules.push(crate::devices_bpf::parse_rule(&r)?);
            }
            crate::devices_bpf::attach(d, &rules)?;
        }
        Ok(())
    }

    /// Move process `pid` into every hierarchy of this group.
    pub fn join(&self, pid: i32) -> Result<(), Error> {
        for p in self.paths.values() {
            write(&p.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// The number of OOM kills in this group so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, dir) = match self.version {
            Version::V1 => ("memory.oom_control", self.dir("memory")),
            Version::V2 => ("memory.events", self.dir("")),
        };
        dir.and_then(|d| fs::read_to_string(d.join(file)).ok())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Freeze (pause) or thaw every process in the group.
    pub fn freeze(&self, frozen: bool) -> Result<(), Error> {
        match self.version {
            Version::V1 => {
                let d = self
                    .dir("freezer")
                    .ok_or_else(|| Error::Cgroup("no freezer hierarchy".into()))?;
                write(
                    &d.join("freezer.state"),
                    if frozen { "FROZEN" } else { "THAWED" },
                )?;
                // Wait until the state settles.
                for _ in 0..1000 {
                    let s = read_trim(&d.join("freezer.state")).unwrap_or_default();
                    if (frozen && s == "FROZEN") || (!frozen && s == "THAWED") {
                        return Ok(());
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(Error::Cgroup(format!(
                    "freezer at {} did not settle",
                    d.display()
                )))
            }
            Version::V2 => {
                let d = self
                    .dir("")
                    .ok_or_else(|| Error::Cgroup("no cgroup".into()))?;
                write(&d.join("cgroup.freeze"), if frozen { "1" } else { "0" })
            }
        }
    }

    /// The pids in the group (from the pids hierarchy on v1, or any).
    pub fn procs(&self) -> Vec<i32> {
        let dir = match self.version {
            Version::V1 => self
                .dir("pids")
                .or_else(|| self.dir("memory"))
                .or_else(|| self.paths.values().next()),
            Version::V2 => self.dir(""),
        };
        dir.and_then(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// SIGKILL every process in the group: `cgroup.kill` on v2; freeze, kill, thaw on v1.
    pub fn kill_all(&self) -> Result<(), Error> {
        if self.version == Version::V2 {
            if let Some(d) = self.dir("") {
                if d.join("cgroup.kill").exists() {
                    return write(&d.join("cgroup.kill"), "1");
                }
            }
        }
        let frozen = self.freeze(true).is_ok();
        for pid in self.procs() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if frozen {
            self.freeze(false)?;
        }
        Ok(())
    }

    /// Remove the group's directories, waiting briefly for exiting processes.
    pub fn remove(&self) -> Result<(), Error> {
        for p in self.paths.values() {
            let mut tries = 0;
            loop {
                match fs::remove_dir(p) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) if tries < 200 && e.raw_os_error() == Some(libc::EBUSY) => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(e) => return Err(Error::Cgroup(format!("removing {}: {e}", p.display()))),
                }
            }
        }
        Ok(())
    }

    /// Memory usage and limit in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let num = |p: PathBuf| -> u64 {
            read_trim(&p)
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX)
        };
        match self.version {
            Version::V1 => match self.dir("memory") {
                Some(d) => (
                    num(d.join("memory.usage_in_bytes")).min(u64::MAX - 1),
                    num(d.join("memory.limit_in_bytes")),
                ),
                None => (0, u64::MAX),
            },
            Version::V2 => match self.dir("") {
                Some(d) => (num(d.join("memory.current")), num(d.join("memory.max"))),
                None => (0, u64::MAX),
            },
        }
    }

    /// Total CPU time used, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> u64 {
        match self.version {
            Version::V1 => self
                .dir("cpuacct")
                .and_then(|d| read_trim(&d.join("cpuacct.usage")))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            Version::V2 => self
                .dir("")
                .and_then(|d| fs::read_to_string(d.join("cpu.stat")).ok())
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
                .map(|us| us * 1000)
                .unwrap_or(0),
        }
    }

    /// The counters `docker stats` reports: CPU time (total, user, system), memory
    /// (usage, limit, memory.stat), pids (current, limit) and block I/O bytes per
    /// device, read from the cgroup's own files (v2; v1 where it has them).
    pub fn stats(&self) -> Stats {
        let mut st = Stats {
            cpu_total_ns: self.cpu_usage_ns(),
            pids: self.pids_current(),
            ..Default::default()
        };
        let (usage, limit) = self.memory();
        st.memory_usage = usage;
        st.memory_limit = limit;
        let kv = |text: String| -> BTreeMap<String, u64> {
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect()
        };
        match self.version {
            Version::V2 => {
                let Some(d) = self.dir("") else { return st };
                let cpu = kv(fs::read_to_string(d.join("cpu.stat")).unwrap_or_default());
                st.cpu_user_ns = cpu.get("user_usec").copied().unwrap_or(0) * 1000;
                st.cpu_system_ns = cpu.get("system_usec").copied().unwrap_or(0) * 1000;
                st.memory_stat = kv(fs::read_to_string(d.join("memory.stat")).unwrap_or_default());
                st.pids_limit = read_trim(&d.join("pids.max")).and_then(|s| s.parse().ok());
                // io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N ..." per device.
                for line in fs::read_to_string(d.join("io.stat"))
                    .unwrap_or_default()
                    .lines()
                {
                    let mut f = line.split_whitespace();
                    let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
                        continue;
                    };
                    let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) else {
                        continue;
                    };
                    let (mut r, mut w) = (0, 0);
                    for kv in f {
                        match kv.split_once('=') {
                            Some(("rbytes", v)) => r = v.parse().unwrap_or(0),
                            Some(("wbytes", v)) => w = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    st.io.push(IoBytes {
                        major: maj,
                        minor: min,
                        read: r,
                        write: w,
                    });
                }
            }
            Version::V1 => {
                if let Some(d) = self.dir("cpuacct") {
                    // In USER_HZ ticks.
                    let cpu = kv(fs::read_to_string(d.join("cpuacct.stat")).unwrap_or_default());
                    let ns = |k: &str| crate::sys::ticks_to_ns(cpu.get(k).copied().unwrap_or(0));
                    st.cpu_user_ns = ns("user");
                    st.cpu_system_ns = ns("system");
                }
                if let Some(d) = self.dir("blkio") {
                    // "MAJ:MIN Read N" lines, and a Total.
                    let text =
                        fs::read_to_string(d.join("blkio.throttle.io_service_bytes_recursive"))
                            .unwrap_or_default();
                    for line in text.lines() {
                        let f: Vec<&str> = line.split_whitespace().collect();
                        let [dev, op, v] = f[..] else { continue };
                        let Some((maj, min)) = dev.split_once(':') else {
                            continue;
                        };
                        let (Ok(major), Ok(minor), Ok(v)) = (maj.parse(), min.parse(), v.parse())
                        else {
                            continue;
                        };
                        let i = match st
                            .io
                            .iter()
                            .position(|d| d.major == major && d.minor == minor)
                        {
                            Some(i) => i,
                            None => {
                                st.io.push(IoBytes {
                                    major,
                                    minor,
                                    ..Default::default()
                                });
                                st.io.len() - 1
                            }
                        };
                        match op {
                            "Read" => st.io[i].read = v,
                            "Write" => st.io[i].write = v,
                            _ => {}
                        }
                    }
                }
                if let Some(d) = self.dir("memory") {
                    st.memory_stat =
                        kv(fs::read_to_string(d.join("memory.stat")).unwrap_or_default());
                }
                if let Some(d) = self.dir("pids") {
                    st.pids_limit = read_trim(&d.join("pids.max")).and_then(|s| s.parse().ok());
                }
            }
        }
        st
    }

    /// Number of processes (pids.current).
    pub fn pids_current(&self) -> u64 {
        let d = match self.version {
            Version::V1 => self.dir("pids"),
            Version::V2 => self.dir(""),
        };
        d.and_then(|d| read_trim(&d.join("pids.current")))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// One cgroup's counters (see [`Cgroup::stats`]).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub memory_usage: u64,
    /// `u64::MAX` without a limit.
    pub memory_limit: u64,
    pub memory_stat: BTreeMap<String, u64>,
    pub pids: u64,
    /// None for "max".
    pub pids_limit: Option<u64>,
    pub io: Vec<IoBytes>,
}

/// Bytes read and written on one block device.
#[derive(Debug, Clone, Default)]
pub struct IoBytes {
    pub major: u64,
    pub minor: u64,
    pub read: u64,
    pub write: u64,
}

fn is_cgroup2(p: &Path) -> bool {
    nix::sys::statfs::statfs(p)
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// docker's conversion of v1 cpu shares to a v2 cpu.weight.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// A new v1 cpuset group starts with empty cpus/mems: create each missing level and
/// copy both down from its parent.
fn create_cpuset_chain(path: &Path) -> Result<(), Error> {
    if path.exists() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut p = path.to_path_buf();
    while !p.exists() {
        missing.push(p.clone());
        if !p.pop() {
            break;
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::Cgroup(format!("creating {}: {e}", dir.display()))),
        }
        let parent = dir.parent().unwrap_or(Path::new("/"));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let cur = read_trim(&dir.join(f)).unwrap_or_default();
            if cur.is_empty() {
                if let Some(v) = read_trim(&parent.join(f)) {
                    write(&dir.join(f), &v)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_layout() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n\
                  31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let cg = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        let h = Host::v1_from(mi, cg);
        assert_eq!(h.version, Version::V1);
        let p = h.paths_for("skiff", "c1");
        assert_eq!(
            p["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/skiff/c1")
        );
        assert_eq!(p["cpu"], PathBuf::from("/sys/fs/cgroup/cpu/skiff/c1"));
        let p = h.paths_for("/custom", "c1");
        assert_eq!(
            p["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/custom/c1")
        );
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10000);
    }

    /// A directory laid out like /sys/fs/cgroup on a v2 host: limits land in the
    /// v2 file names with docker's formats.
    #[test]
    fn v2_limits_in_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        let host = Host::v2(root.to_path_buf(), "/");
        let res = Resources {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            cpu_shares: Some(512),
            cpu_quota: Some(150_000),
            cpu_period: Some(100_000),
            cpuset_cpus: Some("0".into()),
            pids_limit: Some(20),
            ..Default::default()
        };
        // In a plain directory the kernel does not create the interface files, so
        // create the group and write limits as on a real host.
        let cg = Cgroup::create(&host, "/skiff", "c1", &res).unwrap();
        let d = root.join("skiff/c1");
        assert_eq!(cg.paths[""], d);
        let rd = |f: &str| fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(rd("memory.max"), (64u64 << 20).to_string());
        assert_eq!(rd("memory.swap.max"), (64u64 << 20).to_string());
        assert_eq!(rd("cpu.max"), "150000 100000");
        assert_eq!(rd("cpu.weight"), "20");
        assert_eq!(rd("cpuset.cpus"), "0");
        assert_eq!(rd("pids.max"), "20");
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 1);
        assert_eq!(
            fs::read_to_string(root.join("skiff/cgroup.subtree_control")).unwrap_or_default(),
            ""
        );
    }
}

/// Against the real (controller-less) cgroup2 hierarchy this host mounts at
/// /sys/fs/cgroup/unified: create, join, freeze, kill, remove.
#[cfg(test)]
mod v2_real {
    use super::*;

    #[test]
    fn lifecycle_on_real_cgroup2() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        let is_v2 = nix::sys::statfs::statfs(mount)
            .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        if !is_v2 || !nix::unistd::geteuid().is_root() {
            eprintln!(
                "no writable cgroup2 hierarchy at {}: skipped",
                mount.display()
            );
            return;
        }
        let host = Host::v2(mount.to_path_buf(), "/");
        let name = format!("t{}", std::process::id());
        let cg = Cgroup::create(&host, "/skiff-test", &name, &Resources::default()).unwrap();
        // The device filter: docker's defaults allow /dev/null and /dev/zero; a group
        // allowing only /dev/null denies /dev/zero.
        let only_null = Cgroup::create(
            &host,
            "/skiff-test",
            &format!("{name}-dev"),
            &Resources {
                privileged: true,
                ..Default::default()
            },
        )
        .unwrap();
        crate::devices_bpf::attach(
            &only_null.paths[""],
            &[crate::devices_bpf::parse_rule("c 1:3 rwm").unwrap()],
        )
        .unwrap();
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "read x; (head -c 1 /dev/zero >/dev/null 2>&1 && echo zero-ok) || echo zero-denied; echo hi > /dev/null && echo null-ok"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        only_null.join(sh.id() as i32).unwrap();
        {
            use std::io::Write;
            sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
        }
        let out = sh.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "zero-denied\nnull-ok\n"
        );
        only_null.remove().unwrap();
        // A group with docker's default rules (attached by create) still opens both.
        let mut sh = std::process::Command::new("sh")
            .args([
                "-c",
                "read x; head -c 1 /dev/zero >/dev/null && echo zero-ok",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cg.join(sh.id() as i32).unwrap();
        {
            use std::io::Write;
            sh.stdin.take().unwrap().write_all(b"go\n").unwrap();
        }
        let out = sh.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "zero-ok\n");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        cg.join(pid).unwrap();
        assert_eq!(cg.procs(), vec![pid]);
        cg.freeze(true).unwrap();
        assert_eq!(
            fs::read_to_string(cg.paths[""].join("cgroup.freeze"))
                .unwrap()
                .trim(),
            "1"
        );
        cg.freeze(false).unwrap();
        cg.kill_all().unwrap();
        let st = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        cg.remove().unwrap();
        assert!(!cg.paths[""].exists());
        let _ = fs::remove_dir(mount.join("skiff-test"));
    }
}
