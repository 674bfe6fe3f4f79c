//! One sender at a time: `deliver`, `run`, `retry`, `migrate` and each daemon pass hold an
//! exclusive lock on `<ledger>.lock` (flock(2), released by the kernel when the process ends, even
//! by SIGKILL), so two overlapping cron runs, or a cron run and the daemon, never send the same
//! delivery. A daemon also holds `<ledger>.daemon.lock` for its whole life: one daemon per ledger.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock; released on drop (or when the process dies).
pub struct LedgerLock {
    _file: File,
}

/// The sender lock file beside a ledger.
pub fn lock_path(ledger: &Path) -> PathBuf {
    beside(ledger, ".lock")
}

/// The daemon's lock file beside a ledger.
pub fn daemon_lock_path(ledger: &Path) -> PathBuf {
    beside(ledger, ".daemon.lock")
}

fn beside(ledger: &Path, suffix: &str) -> PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Takes the sender lock without waiting. `Ok(None)`: another process holds it.
pub fn try_lock(ledger: &Path) -> std::io::Result<Option<LedgerLock>> {
    try_lock_file(&lock_path(ledger))
}

/// Takes the daemon lock without waiting. `Ok(None)`: another daemon holds it.
pub fn try_daemon_lock(ledger: &Path) -> std::io::Result<Option<LedgerLock>> {
    try_lock_file(&daemon_lock_path(ledger))
}

fn try_lock_file(path: &Path) -> std::io::Result<Option<LedgerLock>> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(LedgerLock { _file: file }));
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("l.db");
        let first = try_lock(&db).unwrap().expect("free");
        assert!(try_lock(&db).unwrap().is_none(), "two holders");
        drop(first);
        assert!(try_lock(&db).unwrap().is_some());
    }
}
