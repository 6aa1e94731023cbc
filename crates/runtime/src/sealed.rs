//! Running skiff from an executable no container can write (the CVE-2019-5736 class).
//!
//! A process that enters a container (the exec helper, a container's init before it
//! executes the entrypoint, the pod sandbox before it executes the pause program) can
//! be seen from inside: `/proc/<pid>/exe` there, or `/proc/self/exe` reached through a
//! `#!/proc/self/exe` script the helper is asked to run. If that resolves to the host's
//! skiff file, a container process can keep a descriptor to it and write the host
//! binary once nothing executes it any more.
//!
//! So every such process runs from a read-only view of skiff's file: a detached bind
//! mount of the binary (`open_tree(OPEN_TREE_CLONE)`) made read-only with
//! `mount_setattr`, never attached to any mount tree, gone with the last process that
//! executes it. A write through any descriptor to it fails with EROFS, and a container
//! lacks the capability to change the mount. Where those calls are missing (kernels
//! before 5.12), a sealed memfd copy serves instead, as runc does. A command whose own
//! process forks into containers re-executes itself from the view first
//! ([`reexec_sealed`]); helpers are always started from a view ([`helper_exe`]), so
//! they are sealed from their first instruction.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The environment variable holding the path of the host's skiff file while skiff runs
/// from its sealed view (whose own path says nothing useful).
pub const EXE_ENV: &str = "SKIFF_EXE";

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const OPEN_TREE_CLONE: libc::c_uint = 1;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Whether this process executes a file that cannot be written: a read-only mount or
/// a memfd with write seals.
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    is_sealed_fd(&f)
}

fn is_sealed_fd(f: &impl AsRawFd) -> bool {
    let fd = f.as_raw_fd();
    // SAFETY: fstatvfs writes into a zeroed struct we own; fd is open.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstatvfs(fd, &mut st) } == 0 && st.f_flag & libc::ST_RDONLY != 0 {
        return true;
    }
    // SAFETY: F_GET_SEALS on any descriptor only reads its seals.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0
}

/// A descriptor for a read-only view of `path`: a detached read-only bind mount of
/// the file, or (without the new mount calls) a sealed memfd copy of it.
pub fn sealed_view(path: &Path) -> io::Result<OwnedFd> {
    match ro_mount_view(path) {
        Ok(fd) => Ok(fd),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
            ) =>
        {
            memfd_copy(path)
        }
        Err(e) => Err(e),
    }
}

fn ro_mount_view(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_tree takes a NUL-terminated path and flags; returns a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (of the size given) and changes the detached
    // mount behind `fd`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A sealed (no write, grow, shrink or further seals) memfd copy of `path`, named
/// `name` (what `/proc/<pid>/exe` shows as `/memfd:<name>`), close-on-exec.
pub fn memfd_copy_named(path: &Path, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    let mut src = std::fs::File::open(path)?;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; returns a new fd.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a descriptor that nothing else owns.
    let mut dst = unsafe { std::fs::File::from_raw_fd(fd) };
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our own memfd.
    if unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(dst.into())
}

fn memfd_copy(path: &Path) -> io::Result<OwnedFd> {
    memfd_copy_named(path, c"skiff")
}

/// The path of the host's skiff file: [`EXE_ENV`] when set, else this process's exe.
pub fn host_exe() -> io::Result<PathBuf> {
    match std::env::var_os(EXE_ENV) {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => std::env::current_exe(),
    }
}

/// What to start skiff's own helper processes from, so that they run sealed from
/// their first instruction: `/proc/self/exe` when this process is sealed (the child
/// executes the same read-only view); else `/proc/self/fd/N` of a read-only view of
/// the host file made once for this process (no re-execution of this process needed).
pub fn helper_exe() -> io::Result<PathBuf> {
    if is_sealed() {
        return Ok(PathBuf::from("/proc/self/exe"));
    }
    static VIEW: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    let fd = match VIEW.get() {
        Some(fd) => fd,
        None => {
            let view = sealed_view(&host_exe()?)?;
            // Out of the way of the low descriptors a spawner installs in its child
            // before the exec (the path is resolved at exec time, in the child).
            // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor we own.
            let high = unsafe { libc::fcntl(view.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 200) };
            if high < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fcntl returned a new descriptor that nothing else owns.
            VIEW.get_or_init(|| unsafe { OwnedFd::from_raw_fd(high) })
        }
    };
    Ok(PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())))
}

/// Re-execute this process from a sealed view of its own file unless it already runs
/// from one: for the commands whose own process forks into containers (exec, build,
/// a server or agent). Returns only when no re-execution is needed (already sealed,
/// or not root: only root runs containers); an error means the sealed view could not
/// be made or executed. Call before any thread exists.
pub fn reexec_sealed() -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() || is_sealed() {
        return Ok(());
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let view = sealed_view(&exe)?;
    if !is_sealed_fd(&view) {
        return Err(io::Error::other(format!(
            "the read-only view of {} is writable",
            exe.display()
        )));
    }
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    if !env.iter().any(|(k, _)| k == EXE_ENV) {
        env.push((EXE_ENV.into(), exe.clone().into_os_string()));
    }
    let argv = crate::sys::CStrArray::new(std::env::args_os().map(|a| a.into_vec()))?;
    let envp = crate::sys::CStrArray::new(env.iter().map(|(k, v)| {
        let mut b = k.as_bytes().to_vec();
        b.push(b'=');
        b.extend_from_slice(v.as_bytes());
        b
    }))?;
    // SAFETY: execveat with AT_EMPTY_PATH executes the file behind `view` (close-on-
    // exec, so it is gone in the new image); argv and envp are NULL-terminated arrays
    // of NUL-terminated strings that outlive the call. It returns only on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            view.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn views_are_not_writable() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        std::fs::write(&p, b"\x7fELF not really").unwrap();
        for view in [ro_mount_view(&p).unwrap(), memfd_copy(&p).unwrap()] {
            assert!(is_sealed_fd(&view));
            let path = format!("/proc/self/fd/{}", view.as_raw_fd());
            let w = std::fs::OpenOptions::new().append(true).open(&path);
            match w {
                Ok(mut f) => assert!(f.write_all(b"x").is_err(), "wrote through {path}"),
                Err(e) => assert!(
                    matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EPERM)),
                    "{e}"
                ),
            }
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"\x7fELF not really");
        let plain = std::fs::File::open(&p).unwrap();
        assert!(!is_sealed_fd(&plain));
    }
}
