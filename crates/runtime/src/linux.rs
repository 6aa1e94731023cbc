//! Creating a container process and entering a running one.
//!
//! `create` clones the container's first process into fresh namespaces; that child
//! builds the root filesystem inside its own mount namespace (so nothing can leak to
//! the host), pivots into it, then waits for the caller's go-ahead (given after the
//! caller placed it in its cgroups and wired its network). `Created::start` gives the
//! go-ahead and returns once the process has exec'd, or the reason it could not.
//!
//! Callers must be single-threaded when they call `create` or `exec`: both fork.

use crate::spec::{ContainerSpec, MountKind, NsMode, Process, Propagation, Rootfs};
use crate::sys;
use crate::{Error, ExecFailure};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// File descriptors to install as 0, 1, 2 in the container (-1: /dev/null).
#[derive(Debug, Clone, Copy)]
pub struct Stdio {
    pub stdin: libc::c_int,
    pub stdout: libc::c_int,
    pub stderr: libc::c_int,
}

impl Stdio {
    pub fn null() -> Stdio {
        Stdio {
            stdin: -1,
            stdout: -1,
            stderr: -1,
        }
    }
}

/// A cloned container process waiting for `start`.
#[derive(Debug)]
pub struct Created {
    pub pid: libc::pid_t,
    go_w: libc::c_int,
    err_r: libc::c_int,
    console_r: Option<libc::c_int>,
}

/// A started container (or exec'd) process.
#[derive(Debug)]
pub struct Started {
    pub pid: libc::pid_t,
    /// The pty master, when the process was given a terminal.
    pub console: Option<libc::c_int>,
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.go_w >= 0 {
            sys::close(self.go_w);
        }
        if self.err_r >= 0 {
            sys::close(self.err_r);
        }
        if let Some(c) = self.console_r {
            sys::close(c);
        }
    }
}

fn ns_flag(kind: &str) -> libc::c_int {
    match kind {
        "pid" => libc::CLONE_NEWPID,
        "net" => libc::CLONE_NEWNET,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "mnt" => libc::CLONE_NEWNS,
        "cgroup" => libc::CLONE_NEWCGROUP,
        _ => 0,
    }
}

/// Clone the container's first process. See the module docs.
pub fn create(spec: &ContainerSpec, stdio: Stdio) -> Result<Created, Error> {
    let (go_r, go_w) = sys::pipe().map_err(|e| Error::sys("pipe", e))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| Error::sys("pipe", e))?;
    let console = if spec.process.terminal {
        Some(sys::socketpair().map_err(|e| Error::sys("socketpair", e))?)
    } else {
        None
    };
    let ns = &spec.namespaces;
    let mut flags = libc::CLONE_NEWNS;
    for (kind, mode) in [
        ("pid", &ns.pid),
        ("net", &ns.net),
        ("ipc", &ns.ipc),
        ("uts", &ns.uts),
    ] {
        if *mode == NsMode::New {
            flags |= ns_flag(kind);
        }
    }
    // Joining a PID namespace only affects children: do it here, before the clone,
    // and go back afterwards.
    let mut restore_pid_ns = None;
    if let NsMode::Join(p) = &ns.pid {
        let own = sys::open_path(Path::new("/proc/self/ns/pid"), libc::O_RDONLY)
            .map_err(|e| Error::sys("opening /proc/self/ns/pid", e))?;
        let fd = sys::open_path(p, libc::O_RDONLY)
            .map_err(|e| Error::sys(format!("opening {}", p.display()), e))?;
        let r = sys::setns(fd, libc::CLONE_NEWPID);
        sys::close(fd);
        if let Err(e) = r {
            sys::close(own);
            return Err(Error::sys(
                format!("joining pid namespace {}", p.display()),
                e,
            ));
        }
        restore_pid_ns = Some(own);
    }
    // SAFETY: the runtime is only driven from single-threaded processes (the monitor
    // and the helpers, see the crate docs), and the child only runs `child_main`,
    // which execs or `_exit`s.
    let pid = unsafe { sys::clone_fork(flags) };
    if let Some(own) = restore_pid_ns {
        let _ = sys::setns(own, libc::CLONE_NEWPID);
        sys::close(own);
    }
    let pid = pid.map_err(|e| Error::sys("clone", e))?;
    if pid == 0 {
        sys::close(go_w);
        sys::close(err_r);
        let console_w = console.map(|(r, w)| {
            sys::close(r);
            w
        });
        let r = container_init(spec, stdio, go_r, console_w);
        report_and_exit(err_w, r);
    }
    sys::close(go_r);
    sys::close(err_w);
    let console_r = console.map(|(r, w)| {
        sys::close(w);
        r
    });
    Ok(Created {
        pid,
        go_w,
        err_r,
        console_r,
    })
}

impl Created {
    /// Kill the waiting process and reap it.
    pub fn abort(self) {
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }

    /// Let the process go on to exec its command; wait until it has.
    pub fn start(mut self) -> Result<Started, Error> {
        let _ = sys::write_all(self.go_w, b"G");
        sys::close(self.go_w);
        self.go_w = -1;
        let console = match self.console_r.take() {
            Some(sock) => {
                let fd = sys::recv_fd(sock).ok().flatten();
                sys::close(sock);
                fd
            }
            None => None,
        };
        let msg = sys::read_to_end(self.err_r).unwrap_or_default();
        sys::close(self.err_r);
        self.err_r = -1;
        if msg.is_empty() {
            return Ok(Started {
                pid: self.pid,
                console,
            });
        }
        if let Some(c) = console {
            sys::close(c);
        }
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        Err(parse_failure(&msg))
    }
}

fn parse_failure(msg: &[u8]) -> Error {
    let s = String::from_utf8_lossy(msg);
    let (code, text) = s.split_once('\n').unwrap_or(("1", &s));
    Error::Exec(ExecFailure {
        code: code.trim().parse().unwrap_or(1),
        message: text.to_string(),
    })
}

/// What went wrong in the child before exec: an exit code (127: not found,
/// 126: not executable, 1: setup) and the message.
type ChildResult = Result<std::convert::Infallible, (i32, String)>;

fn report_and_exit(err_w: libc::c_int, r: ChildResult) -> ! {
    let (code, msg) = match r {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let _ = sys::write_all(err_w, format!("{code}\n{msg}").as_bytes());
    // SAFETY: the forked child leaves without running the parent's exit handlers or
    // destructors, which belong to the parent's copy of the state.
    unsafe { libc::_exit(code) }
}

fn setup<T>(what: &str, r: io::Result<T>) -> Result<T, (i32, String)> {
    r.map_err(|e| (1, format!("{what}: {e}")))
}

fn container_init(
    spec: &ContainerSpec,
    stdio: Stdio,
    go_r: libc::c_int,
    console_w: Option<libc::c_int>,
) -> ChildResult {
    // Until it executes the entrypoint, no other process (another container sharing
    // the PID namespace) may open our /proc entries: exe, fds, memory.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let ns = &spec.namespaces;
    for (kind, mode) in [("net", &ns.net), ("ipc", &ns.ipc), ("uts", &ns.uts)] {
        if let NsMode::Join(p) = mode {
            let fd = setup("open namespace", sys::open_path(p, libc::O_RDONLY))?;
            setup(
                &format!("join {kind} namespace"),
                sys::setns(fd, ns_flag(kind)),
            )?;
            sys::close(fd);
        }
    }
    install_stdio(stdio)?;
    let _ = nix::unistd::setsid();
    if ns.net == NsMode::New {
        loopback_up()?;
    }

    let root = build_rootfs(spec)?;
    setup("chdir to rootfs", std::env::set_current_dir(&root))?;
    setup("pivot_root", sys::pivot_root_dot())?;
    setup("detach old root", sys::umount_detach(Path::new(".")))?;
    setup("chdir /", std::env::set_current_dir("/"))?;

    for (k, v) in &spec.sysctl {
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        setup(&format!("sysctl {k}"), std::fs::write(&p, v))?;
    }
    if !spec.privileged {
        for p in &spec.readonly_paths {
            readonly_path(Path::new(p))?;
        }
        for p in &spec.masked_paths {
            mask_path(Path::new(p))?;
        }
    }
    if spec.readonly_rootfs {
        setup(
            "remount / read-only",
            sys::mount(
                None,
                Path::new("/"),
                None,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                None,
            ),
        )?;
    }
    if let (NsMode::New, Some(h)) = (&ns.uts, &spec.hostname) {
        setup(
            "sethostname",
            nix::unistd::sethostname(h).map_err(io::Error::from),
        )?;
    }
    if let Some(sock) = console_w {
        let master = open_console(spec.process.console_size)?;
        setup("send console", sys::send_fd(sock, master))?;
        sys::close(master);
        sys::close(sock);
    }

    // Wait for the caller: cgroups joined, network wired.
    match sys::read_byte(go_r) {
        Ok(Some(_)) => {}
        _ => return Err((1, "container creation was abandoned".into())),
    }
    sys::close(go_r);
    if ns.cgroup == NsMode::New {
        setup(
            "unshare cgroup namespace",
            sys::unshare(libc::CLONE_NEWCGROUP),
        )?;
    }
    // Mounted now, inside the container's cgroup namespace, so each hierarchy is
    // rooted at the container's own cgroup.
    mount_cgroups(spec.privileged)?;
    exec_process(&spec.process)
}

/// `/sys/fs/cgroup` as docker and the kubelet mount it: read-only unless privileged;
/// on cgroup v2 the unified hierarchy, on v1 a tmpfs with each hierarchy at
/// `/sys/fs/cgroup/<controllers>` (and a link per controller of a shared one).
fn mount_cgroups(privileged: bool) -> Result<(), (i32, String)> {
    let target = Path::new("/sys/fs/cgroup");
    if std::fs::symlink_metadata(target)
        .map(|m| !m.is_dir())
        .unwrap_or(true)
    {
        // No sysfs directory to mount on (sysfs could not be mounted): nothing to do.
        return Ok(());
    }
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    let ro = if privileged { 0 } else { libc::MS_RDONLY };
    let own = setup(
        "read /proc/self/cgroup",
        std::fs::read_to_string("/proc/self/cgroup"),
    )?;
    // (hierarchy id, controllers) of every v1 hierarchy; `0::` is the unified one.
    let v1: Vec<String> = own
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl) = (f.next()?, f.next()?);
            (!ctl.is_empty()).then(|| ctl.to_string())
        })
        .collect();
    if v1.is_empty() {
        return setup(
            "mount /sys/fs/cgroup",
            sys::mount(Some("cgroup2"), target, Some("cgroup2"), flags | ro, None),
        );
    }
    setup(
        "mount /sys/fs/cgroup",
        sys::mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            flags,
            Some("mode=755,size=64k"),
        ),
    )?;
    for ctl in &v1 {
        let (dir, data) = match ctl.strip_prefix("name=") {
            Some(n) => (n.to_string(), format!("none,name={n}")),
            None => (ctl.clone(), ctl.clone()),
        };
        let at = target.join(&dir);
        mkdir_p(&at)?;
        setup(
            &format!("mount cgroup {ctl}"),
            sys::mount(Some("cgroup"), &at, Some("cgroup"), flags | ro, Some(&data)),
        )?;
        if ctl.contains(',') && !ctl.starts_with("name=") {
            for one in ctl.split(',') {
                let _ = std::os::unix::fs::symlink(&dir, target.join(one));
            }
        }
    }
    if own.lines().any(|l| l.starts_with("0::")) {
        let at = target.join("unified");
        mkdir_p(&at)?;
        setup(
            "mount cgroup2 at /sys/fs/cgroup/unified",
            sys::mount(Some("cgroup2"), &at, Some("cgroup2"), flags | ro, None),
        )?;
    }
    if ro != 0 {
        setup(
            "remount /sys/fs/cgroup read-only",
            sys::mount(
                None,
                target,
                None,
                libc::MS_REMOUNT | libc::MS_RDONLY | flags,
                None,
            ),
        )?;
    }
    Ok(())
}

/// Bring `lo` up in a fresh network namespace (an ioctl: no netlink needed).
pub fn loopback_up() -> Result<(), (i32, String)> {
    // SAFETY: `req` is a zeroed ifreq (a valid bit pattern) whose name is the
    // NUL-terminated "lo"; both ioctls read or write exactly one ifreq; `s` is a
    // socket this block opened and closes on every path.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err((1, format!("socket: {}", io::Error::last_os_error())));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) < 0 {
            libc::close(s);
            return Err((
                1,
                format!("SIOCGIFFLAGS lo: {}", io::Error::last_os_error()),
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(s, libc::SIOCSIFFLAGS, &req);
        libc::close(s);
        if r < 0 {
            return Err((1, format!("bringing lo up: {}", io::Error::last_os_error())));
        }
    }
    Ok(())
}

fn install_stdio(stdio: Stdio) -> Result<(), (i32, String)> {
    let null = if stdio.stdin < 0 || stdio.stdout < 0 || stdio.stderr < 0 {
        Some(setup(
            "open /dev/null",
            sys::open_path(Path::new("/dev/null"), libc::O_RDWR),
        )?)
    } else {
        None
    };
    for (src, dst) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        let src = if src < 0 { null.unwrap_or(-1) } else { src };
        if src != dst {
            setup("dup2", sys::dup2(src, dst))?;
        }
    }
    if let Some(n) = null {
        if n > 2 {
            sys::close(n);
        }
    }
    Ok(())
}

/// Open a pty in the container's own devpts and make its slave the controlling
/// terminal and stdio of this process; returns the master.
fn open_console(size: Option<(u16, u16)>) -> Result<libc::c_int, (i32, String)> {
    let master = setup(
        "open /dev/ptmx",
        sys::open_path(Path::new("/dev/ptmx"), libc::O_RDWR | libc::O_NOCTTY),
    )?;
    // SAFETY: grantpt(3) and unlockpt(3) take the master descriptor opened above.
    unsafe {
        if libc::grantpt(master) < 0 || libc::unlockpt(master) < 0 {
            return Err((1, format!("unlockpt: {}", io::Error::last_os_error())));
        }
    }
    let mut buf = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r(3) writes a NUL-terminated name of at most `buf.len()` bytes.
    if unsafe { libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()) } != 0 {
        return Err((1, "ptsname failed".into()));
    }
    // SAFETY: on success `buf` holds a NUL-terminated string (ptsname_r fails with
    // ERANGE rather than truncate).
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .to_string();
    let slave = setup(
        "open pty slave",
        sys::open_path(Path::new(&name), libc::O_RDWR | libc::O_NOCTTY),
    )?;
    if let Some((cols, rows)) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize, which `ws` is.
        unsafe { libc::ioctl(slave, libc::TIOCSWINSZ, &ws) };
    }
    // SAFETY: TIOCSCTTY takes an integer argument; `slave` is the pty opened above.
    unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) };
    for fd in 0..3 {
        let _ = sys::dup2(slave, fd);
    }
    if slave > 2 {
        sys::close(slave);
    }
    Ok(master)
}

/// Resolve `path` inside `root` without letting symlinks escape it.
pub fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            out.pop();
            continue;
        }
        let candidate = out.join(&c);
        match std::fs::read_link(root.join(&candidate)) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    out = PathBuf::new();
                }
                for tc in target.components().rev() {
                    match tc {
                        Component::Normal(s) => pending.push(s.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => out = candidate,
        }
    }
    root.join(out)
}

fn build_rootfs(spec: &ContainerSpec) -> Result<PathBuf, (i32, String)> {
    setup(
        "make / rslave",
        sys::mount(
            None,
            Path::new("/"),
            None,
            libc::MS_REC | libc::MS_SLAVE,
            None,
        ),
    )?;
    let root = match &spec.rootfs {
        Rootfs::Overlay {
            lower,
            lower_base,
            upper,
            work,
            target,
        } => {
            if let Some(b) = lower_base {
                setup("chdir to layers", std::env::set_current_dir(b))?;
            }
            let lowers: Vec<String> = lower
                .iter()
                .map(|p| p.to_string_lossy().to_string())
                .collect();
            let data = format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
                lowers.join(":"),
                upper.display(),
                work.display()
            );
            if data.len() > 4000 {
                return Err((
                    1,
                    format!(
                        "too many image layers for one overlay mount ({})",
                        lower.len()
                    ),
                ));
            }
            setup(
                "mount overlay rootfs",
                sys::mount(Some("overlay"), target, Some("overlay"), 0, Some(&data)),
            )?;
            target.clone()
        }
        Rootfs::Dir(d) => {
            setup(
                "bind rootfs",
                sys::mount_path(d, d, libc::MS_BIND | libc::MS_REC),
            )?;
            d.clone()
        }
    };
    let at = |p: &str| resolve_in_root(&root, Path::new(p));
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

    let proc_dir = at("/proc");
    mkdir_p(&proc_dir)?;
    setup(
        "mount /proc",
        sys::mount(Some("proc"), &proc_dir, Some("proc"), nosuid, None),
    )?;

    let sys_dir = at("/sys");
    mkdir_p(&sys_dir)?;
    let ro = if spec.sys_readonly && !spec.privileged {
        libc::MS_RDONLY
    } else {
        0
    };
    if sys::mount(Some("sysfs"), &sys_dir, Some("sysfs"), nosuid | ro, None).is_err() {
        // Not owning the network namespace (--net host): bind the host's /sys.
        setup(
            "bind /sys",
            sys::mount_path(Path::new("/sys"), &sys_dir, libc::MS_BIND | libc::MS_REC),
        )?;
        if ro != 0 {
            let _ = sys::mount(
                None,
                &sys_dir,
                None,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_REC,
                None,
            );
        }
    }

    let dev = at("/dev");
    mkdir_p(&dev)?;
    setup(
        "mount /dev",
        sys::mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_STRICTATIME,
            Some("mode=755,size=65536k"),
        ),
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        setup(
            "mknod",
            sys::mknod(&dev.join(name), 'c', major, minor, 0o666),
        )?;
        // mknod applies the umask; docker's and the kubelet's devices are 0666.
        setup("chmod device", chmod(&dev.join(name), 0o666))?;
    }
    if spec.privileged {
        copy_host_devices(&dev)?;
    }
    for d in &spec.devices {
        let p = resolve_in_root(&root, &d.path);
        if let Some(parent) = p.parent() {
            mkdir_p(parent)?;
        }
        let _ = std::fs::remove_file(&p);
        setup(
            "mknod device",
            sys::mknod(&p, d.kind, d.major, d.minor, d.mode),
        )?;
        setup("chown device", sys::chown(&p, d.uid, d.gid))?;
        setup("chmod device", chmod(&p, d.mode & 0o7777))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
        ("ptmx", "pts/ptmx"),
    ] {
        setup(
            "symlink in /dev",
            std::os::unix::fs::symlink(target, dev.join(link)),
        )?;
    }
    for (sub, fstype, flags, data) in [
        (
            "pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        ("shm", "tmpfs", nosuid, "mode=1777,size=65536k"),
        ("mqueue", "mqueue", nosuid, ""),
    ] {
        let d = dev.join(sub);
        mkdir_p(&d)?;
        let data = if data.is_empty() { None } else { Some(data) };
        setup(
            &format!("mount /dev/{sub}"),
            sys::mount(Some(fstype), &d, Some(fstype), flags, data),
        )?;
    }

    for m in &spec.mounts {
        let dst = resolve_in_root(&root, &m.destination);
        match m.kind {
            MountKind::Bind => {
                let is_dir = std::fs::metadata(&m.source)
                    .map(|md| md.is_dir())
                    .map_err(|e| (1, format!("bind source {}: {e}", m.source.display())))?;
                if is_dir {
                    mkdir_p(&dst)?;
                } else {
                    if let Some(p) = dst.parent() {
                        mkdir_p(p)?;
                    }
                    if !dst.exists() {
                        setup(
                            "create bind target",
                            std::fs::OpenOptions::new()
                                .create(true)
                                .truncate(false)
                                .write(true)
                                .mode(0o644)
                                .open(&dst)
                                .map(|_| ()),
                        )?;
                    }
                }
                if m.copy_up && is_dir {
                    copy_up(&dst, &m.source)?;
                }
                setup(
                    "bind mount",
                    sys::mount_path(&m.source, &dst, libc::MS_BIND | libc::MS_REC),
                )?;
                if m.readonly {
                    setup(
                        "remount bind read-only",
                        sys::mount(
                            None,
                            &dst,
                            None,
                            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
                            None,
                        ),
                    )?;
                }
            }
            MountKind::Tmpfs => {
                mkdir_p(&dst)?;
                let flags =
                    libc::MS_NOSUID | libc::MS_NODEV | if m.readonly { libc::MS_RDONLY } else { 0 };
                setup(
                    "mount tmpfs",
                    sys::mount(Some("tmpfs"), &dst, Some("tmpfs"), flags, m.data.as_deref()),
                )?;
            }
        }
        let prop = match m.propagation {
            Propagation::Private => libc::MS_PRIVATE,
            Propagation::Rprivate => libc::MS_PRIVATE | libc::MS_REC,
            Propagation::Slave => libc::MS_SLAVE,
            Propagation::Rslave => libc::MS_SLAVE | libc::MS_REC,
            Propagation::Shared => libc::MS_SHARED,
            Propagation::Rshared => libc::MS_SHARED | libc::MS_REC,
        };
        setup(
            "mount propagation",
            sys::mount(None, &dst, None, prop, None),
        )?;
    }
    Ok(root)
}

/// Copy the image's content at `from` into the empty volume directory `to`.
fn copy_up(from: &Path, to: &Path) -> Result<(), (i32, String)> {
    let empty = std::fs::read_dir(to)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if !empty || !from.is_dir() {
        return Ok(());
    }
    copy_tree(from, to).map_err(|e| (1, format!("copying image content into volume: {e}")))
}

/// Recursively copy a directory's content, keeping modes, owners and symlinks.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let src = e.path();
        let dst = to.join(e.file_name());
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dst)?;
            copy_tree(&src, &dst)?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue;
        }
        let _ = sys::chown(&dst, md.uid(), md.gid());
    }
    let md = std::fs::metadata(from)?;
    let _ = sys::chown(to, md.uid(), md.gid());
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(md.mode() & 0o7777))
}

fn copy_host_devices(dev: &Path) -> Result<(), (i32, String)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(entries) = std::fs::read_dir("/dev") else {
        return Ok(());
    };
    for e in entries.flatten() {
        let Ok(md) = e.metadata() else { continue };
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            continue;
        };
        let target = dev.join(e.file_name());
        if target.exists() || e.file_name() == "console" || e.file_name() == "ptmx" {
            continue;
        }
        let rdev = md.rdev();
        let _ = sys::mknod(
            &target,
            kind,
            libc::major(rdev) as u64,
            libc::minor(rdev) as u64,
            md.mode(),
        );
    }
    Ok(())
}

fn mkdir_p(p: &Path) -> Result<(), (i32, String)> {
    std::fs::create_dir_all(p).map_err(|e| (1, format!("mkdir {}: {e}", p.display())))
}

fn readonly_path(p: &Path) -> Result<(), (i32, String)> {
    if !p.exists() {
        return Ok(());
    }
    setup(
        "bind read-only path",
        sys::mount_path(p, p, libc::MS_BIND | libc::MS_REC),
    )?;
    setup(
        "remount read-only path",
        sys::mount(
            None,
            p,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_REC,
            None,
        ),
    )
}

fn mask_path(p: &Path) -> Result<(), (i32, String)> {
    match std::fs::metadata(p) {
        Err(_) => Ok(()),
        Ok(md) if md.is_dir() => setup(
            "mask dir",
            sys::mount(Some("tmpfs"), p, Some("tmpfs"), libc::MS_RDONLY, None),
        ),
        Ok(_) => setup(
            "mask file",
            sys::mount_path(Path::new("/dev/null"), p, libc::MS_BIND),
        ),
    }
}

/// A user and groups resolved against the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub groups: Vec<u32>,
}

/// Resolve a docker user spec (`""`, `uid`, `uid:gid`, `name`, `name:group`) with
/// the given passwd and group file contents, as docker does.
pub(crate) fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let gr: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    let entry = pw
        .iter()
        .find(|f| f[0] == u || (f[2] == u && u.parse::<u32>().is_ok()));
    let (uid, mut gid, home, name) = match (entry, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid in /etc/passwd for {u}"))?,
            f[3].parse().unwrap_or(0),
            f[5].to_string(),
            f[0].to_string(),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), String::new()),
        (None, Err(_)) => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(g) = g {
        gid = match gr.iter().find(|f| f[0] == g) {
            Some(f) => f[2].parse().unwrap_or(0),
            None => g.parse().map_err(|_| {
                format!("unable to find group {g}: no matching entries in group file")
            })?,
        };
    }
    let mut groups = Vec::new();
    if !name.is_empty() {
        for f in &gr {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(n) = f[2].parse::<u32>() {
                    if !groups.contains(&n) {
                        groups.push(n);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        home,
        groups,
    })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "core" => libc::RLIMIT_CORE,
        "cpu" => libc::RLIMIT_CPU,
        "data" => libc::RLIMIT_DATA,
        "fsize" => libc::RLIMIT_FSIZE,
        "locks" => libc::RLIMIT_LOCKS,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "nofile" => libc::RLIMIT_NOFILE,
        "nproc" => libc::RLIMIT_NPROC,
        "rss" => libc::RLIMIT_RSS,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "stack" => libc::RLIMIT_STACK,
        "as" => libc::RLIMIT_AS,
        _ => return None,
    })
}

/// Validate rlimit names and clamp requests this process cannot grant (no
/// CAP_SYS_RESOURCE: a hard limit above the current one, a negative oom_score_adj
/// below the current one) to what the host allows. Returns one warning per change.
pub fn clamp_process(p: &mut Process) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    let has_sys_resource = has_capability(24);
    for r in &mut p.rlimits {
        let res = rlimit_resource(&r.name)
            .ok_or_else(|| Error::Invalid(format!("invalid ulimit type: {}", r.name)))?;
        if r.soft > r.hard {
            return Err(Error::Invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                r.soft, r.hard
            )));
        }
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes one rlimit, which `cur` is.
        unsafe { libc::getrlimit(res, &mut cur) };
        if r.name == "nofile" {
            let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1_048_576);
            if r.hard > nr_open {
                warnings.push(format!(
                    "ulimit nofile: hard limit {} exceeds the kernel's nr_open {nr_open}; clamped",
                    r.hard
                ));
                r.hard = nr_open;
                r.soft = r.soft.min(r.hard);
            }
        }
        if !has_sys_resource && r.hard > cur.rlim_max {
            warnings.push(format!(
                "ulimit {}: hard limit {} exceeds the host's {} and this process lacks CAP_SYS_RESOURCE; clamped to {}",
                r.name, r.hard, cur.rlim_max, cur.rlim_max
            ));
            r.hard = cur.rlim_max;
            r.soft = r.soft.min(r.hard);
        }
    }
    if let Some(adj) = p.oom_score_adj {
        let cur: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if adj < cur && !has_sys_resource {
            warnings.push(format!(
                "oom_score_adj {adj} is below the current {cur} and this process lacks CAP_SYS_RESOURCE; clamped to {cur}"
            ));
            p.oom_score_adj = Some(cur);
        }
    }
    Ok(warnings)
}

/// Whether the calling process has capability `n` in its effective set.
pub fn has_capability(n: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .map(|mask| mask & (1u64 << n) != 0)
        .unwrap_or(false)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn apply_capabilities(names: &[String], keep_effective: bool) -> Result<(), (i32, String)> {
    let all = names.iter().any(|n| n == "ALL");
    let mut mask: u64 = 0;
    for n in names {
        if let Some(c) = crate::spec::capability_number(n) {
            mask |= 1u64 << c;
        }
    }
    if all {
        mask = u64::MAX;
    }
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    for c in 0..=last {
        if mask & (1u64 << c) == 0 {
            // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, c as libc::c_ulong, 0, 0, 0) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err((1, format!("dropping capability {c}: {e}")));
                }
            }
        }
    }
    if !keep_effective {
        return Ok(());
    }
    // Only what is still in our permitted set can be raised.
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut cur = [CapData::default(); 2];
    // SAFETY: capget(2) with the version-3 header reads `hdr` and writes two CapData
    // (the 64-bit sets as two 32-bit halves), the length of `cur`.
    unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut hdr as *mut CapHeader,
            cur.as_mut_ptr(),
        )
    };
    let permitted = (cur[0].permitted as u64) | ((cur[1].permitted as u64) << 32);
    let m = mask & permitted;
    let data = [
        CapData {
            effective: m as u32,
            permitted: m as u32,
            inheritable: m as u32,
        },
        CapData {
            effective: (m >> 32) as u32,
            permitted: (m >> 32) as u32,
            inheritable: (m >> 32) as u32,
        },
    ];
    // SAFETY: capset(2) with the version-3 header reads `hdr` and two CapData, the
    // length of `data`.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
    if r < 0 {
        return Err((1, format!("capset: {}", io::Error::last_os_error())));
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    Ok(())
}

/// Find `cmd` on `PATH` (from env) the way execvp does; `Err` carries docker's codes.
fn find_executable(cmd: &str, env: &[String]) -> Result<PathBuf, (i32, String)> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(cmd);
        if let Ok(md) = std::fs::metadata(&cand) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err((
        127,
        format!("exec: \"{cmd}\": executable file not found in $PATH"),
    ))
}

/// Everything after the namespaces are in place: identity, limits, exec.
fn exec_process(p: &Process) -> ChildResult {
    if p.args.is_empty() {
        return Err((1, "no command specified".into()));
    }
    let read = |f: &str| std::fs::read_to_string(f).unwrap_or_default();
    let user =
        resolve_user(&p.user, &read("/etc/passwd"), &read("/etc/group")).map_err(|e| (1, e))?;
    for r in &p.rlimits {
        if let Some(res) = rlimit_resource(&r.name) {
            let l = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            // SAFETY: setrlimit(2) reads one rlimit, which `l` is.
            if unsafe { libc::setrlimit(res, &l) } < 0 {
                return Err((
                    1,
                    format!("setrlimit {}: {}", r.name, io::Error::last_os_error()),
                ));
            }
        }
    }
    if let Some(adj) = p.oom_score_adj {
        setup(
            "oom_score_adj",
            std::fs::write("/proc/self/oom_score_adj", adj.to_string()),
        )?;
    }
    let cwd = if p.cwd.is_empty() { "/" } else { &p.cwd };
    if std::fs::metadata(cwd).is_err() {
        setup(
            &format!("creating working directory {cwd}"),
            std::fs::create_dir_all(cwd),
        )?;
    }
    let mut env: Vec<String> = p.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    if p.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let exe = find_executable(&p.args[0], &env)?;

    if p.seccomp {
        // Installed while we still hold CAP_SYS_ADMIN (so no_new_privs is not
        // required); nothing that follows is in the profile.
        let filters = crate::seccomp::default_profile(&p.capabilities).map_err(|e| (1, e))?;
        crate::seccomp::install(&filters).map_err(|e| (1, e))?;
    }
    apply_capabilities(&p.capabilities, false)?;
    let mut groups: Vec<libc::gid_t> = user.groups.clone();
    groups.extend(p.additional_gids.iter().copied());
    let groups: Vec<nix::unistd::Gid> =
        groups.into_iter().map(nix::unistd::Gid::from_raw).collect();
    if let Err(e) = nix::unistd::setgroups(&groups) {
        return Err((1, format!("setgroups: {}", io::Error::from(e))));
    }
    if let Err(e) = nix::unistd::setgid(nix::unistd::Gid::from_raw(user.gid)) {
        return Err((1, format!("setgid: {}", io::Error::from(e))));
    }
    if user.uid == 0 {
        apply_capabilities(&p.capabilities, true)?;
    } else if let Err(e) = nix::unistd::setuid(nix::unistd::Uid::from_raw(user.uid)) {
        return Err((1, format!("setuid: {}", io::Error::from(e))));
    }
    if p.no_new_privileges {
        let _ = nix::sys::prctl::set_no_new_privs();
    }
    setup(&format!("chdir to {cwd}"), std::env::set_current_dir(cwd))?;

    let argv = sys::CStrArray::new(&p.args).map_err(|e| (1, e.to_string()))?;
    let envp = sys::CStrArray::new(&env).map_err(|e| (1, e.to_string()))?;
    let exe_c = sys::cstr(&exe).map_err(|e| (1, e.to_string()))?;
    // Nothing of ours but 0, 1, 2 survives the exec.
    // SAFETY: close_range(2) only marks descriptors close-on-exec; execve(2) gets
    // NUL-terminated strings and NULL-terminated arrays (`CStrArray`) that live until
    // it returns, which it only does on failure.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    let e = io::Error::last_os_error();
    let code = match e.raw_os_error() {
        Some(libc::ENOENT) => 127,
        _ => 126,
    };
    let what = match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".to_string(),
        Some(libc::EACCES) => "permission denied".to_string(),
        _ => e.to_string(),
    };
    Err((code, format!("exec: \"{}\": {what}", p.args[0])))
}

fn chmod(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Where to exec a new process: a running container's init and its cgroup.
#[derive(Debug, Clone)]
pub struct ExecTarget<'a> {
    pub pid: libc::pid_t,
    pub cgroup: Option<&'a crate::cgroups::Cgroup>,
}

/// Start `process` inside all of `target`'s namespaces and its cgroup.
///
/// The new process is a grandchild of the caller, which must be a child subreaper
/// (`prctl(PR_SET_CHILD_SUBREAPER)`) to wait for it. Returns its pid.
pub fn exec(target: &ExecTarget, process: &Process, stdio: Stdio) -> Result<Started, Error> {
    let (pid_r, pid_w) = sys::pipe().map_err(|e| Error::sys("pipe", e))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| Error::sys("pipe", e))?;
    let console = if process.terminal {
        Some(sys::socketpair().map_err(|e| Error::sys("socketpair", e))?)
    } else {
        None
    };
    // SAFETY: `exec` is called from single-threaded processes (the CLI's `exec`
    // re-executes first, the agent runs it in a helper), and the child only runs
    // `exec_enter`, which execs or `_exit`s.
    let mid = unsafe { sys::clone_fork(0) }.map_err(|e| Error::sys("fork", e))?;
    if mid == 0 {
        sys::close(pid_r);
        sys::close(err_r);
        let r = exec_enter(target, process, stdio, pid_w, err_w, console);
        report_and_exit(err_w, r);
    }
    sys::close(pid_w);
    sys::close(err_w);
    let console_r = console.map(|(r, w)| {
        sys::close(w);
        r
    });
    let pid_bytes = sys::read_to_end(pid_r).unwrap_or_default();
    sys::close(pid_r);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(mid), None);
    let console = match console_r {
        Some(sock) => {
            let fd = if pid_bytes.is_empty() {
                None
            } else {
                sys::recv_fd(sock).ok().flatten()
            };
            sys::close(sock);
            fd
        }
        None => None,
    };
    let msg = sys::read_to_end(err_r).unwrap_or_default();
    sys::close(err_r);
    if !msg.is_empty() {
        if let Some(c) = console {
            sys::close(c);
        }
        return Err(parse_failure(&msg));
    }
    let pid: libc::pid_t = String::from_utf8_lossy(&pid_bytes)
        .trim()
        .parse()
        .map_err(|_| Error::Protocol("exec helper did not report a pid".into()))?;
    Ok(Started { pid, console })
}

fn exec_enter(
    target: &ExecTarget,
    process: &Process,
    stdio: Stdio,
    pid_w: libc::c_int,
    err_w: libc::c_int,
    console: Option<(libc::c_int, libc::c_int)>,
) -> ChildResult {
    // Nothing the container can see may lead to our files: our /proc entries are
    // closed to its processes until we execute its command, and no descriptor of
    // ours but the stdio given crosses that exec.
    // SAFETY: prctl and close_range with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    if let Some(cg) = target.cgroup {
        let me = std::process::id() as i32;
        cg.join(me).map_err(|e| (1, e.to_string()))?;
    }
    // Open every namespace first: after entering the mount namespace the target's
    // /proc/<pid> may no longer be reachable by the same path.
    let kinds = ["ipc", "uts", "net", "pid", "cgroup", "mnt"];
    let mut fds = Vec::new();
    for k in kinds {
        let theirs = PathBuf::from(format!("/proc/{}/ns/{k}", target.pid));
        let same = match (
            std::fs::read_link(&theirs),
            std::fs::read_link(format!("/proc/self/ns/{k}")),
        ) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), _) => return Err((1, format!("container process is gone: {e}"))),
            _ => false,
        };
        if !same {
            fds.push((
                k,
                setup("open namespace", sys::open_path(&theirs, libc::O_RDONLY))?,
            ));
        }
    }
    for (k, fd) in fds {
        setup(&format!("join {k} namespace"), sys::setns(fd, ns_flag(k)))?;
        sys::close(fd);
    }
    // SAFETY: this is the single-threaded middle process of `exec`; the child only
    // runs the closure below, which execs or `_exit`s.
    let child = unsafe { sys::clone_fork(0) }.map_err(|e| (1, format!("fork: {e}")))?;
    if child == 0 {
        sys::close(pid_w);
        let r = (|| -> ChildResult {
            if let Some((r, w)) = console {
                sys::close(r);
                let _ = nix::unistd::setsid();
                let master = open_console(process.console_size)?;
                setup("send console", sys::send_fd(w, master))?;
                sys::close(master);
                sys::close(w);
            } else {
                install_stdio(stdio)?;
            }
            exec_process(process)
        })();
        report_and_exit(err_w, r);
    }
    let _ = sys::write_all(pid_w, child.to_string().as_bytes());
    sys::close(pid_w);
    // The grandchild holds err_w until it execs; our copy must go so the caller
    // sees EOF on success.
    sys::close(err_w);
    // SAFETY: the forked middle process leaves without running the parent's exit
    // handlers or destructors.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_like_docker() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:app\napp:x:1000:\n";
        assert_eq!(resolve_user("", passwd, group).unwrap().uid, 0);
        let u = resolve_user("app", passwd, group).unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
        assert_eq!(u.groups, vec![10]);
        let u = resolve_user("1000:wheel", passwd, group).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        let u = resolve_user("4242:4243", passwd, group).unwrap();
        assert_eq!((u.uid, u.gid), (4242, 4243));
        assert!(resolve_user("ghost", passwd, group)
            .unwrap_err()
            .contains("unable to find user ghost"));
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink("/real", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", root.join("escape")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/abs/x")),
            root.join("real/x")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/escape/passwd")),
            root.join("etc/passwd")
        );
    }
}
