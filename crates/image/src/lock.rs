//! Advisory file locks (`flock`) held for the life of a value: the one lock both the
//! image store and the engine's state files take, so any number of skiff commands can
//! share a root.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A held lock on a file; released when dropped.
pub struct FileLock(#[allow(dead_code)] Flock<File>);

/// How a lock is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Takes the lock on `path` (created if missing), waiting for it when `wait`; `None`
/// when it is held elsewhere and `wait` is false.
pub fn take(path: &Path, mode: Mode, wait: bool) -> io::Result<Option<FileLock>> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    let arg = match (mode, wait) {
        (Mode::Shared, true) => FlockArg::LockShared,
        (Mode::Shared, false) => FlockArg::LockSharedNonblock,
        (Mode::Exclusive, true) => FlockArg::LockExclusive,
        (Mode::Exclusive, false) => FlockArg::LockExclusiveNonblock,
    };
    loop {
        match Flock::lock(file, arg) {
            Ok(l) => return Ok(Some(FileLock(l))),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, Errno::EWOULDBLOCK)) if !wait => return Ok(None),
            Err((_, e)) => return Err(e.into()),
        }
    }
}

/// Waits for the exclusive lock on `path`.
pub fn exclusive(path: &Path) -> io::Result<FileLock> {
    take(path, Mode::Exclusive, true)?
        .ok_or_else(|| io::Error::other("an exclusive lock that was waited for was not taken"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = exclusive(&p).unwrap();
        assert!(take(&p, Mode::Exclusive, false).unwrap().is_none());
        assert!(take(&p, Mode::Shared, false).unwrap().is_none());
        drop(held);
        let a = take(&p, Mode::Shared, false).unwrap();
        let b = take(&p, Mode::Shared, false).unwrap();
        assert!(a.is_some() && b.is_some());
    }
}
