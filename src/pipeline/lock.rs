//! The data directory's lock: one process at a time owns a data directory
//! (see "One process at a time" in the pipeline's module documentation).

use std::path::{Path, PathBuf};

/// The name of the lock file in the data directory.
pub const LOCK_FILE: &str = "voicegate.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another voicegate process uses the same data directory.
    #[error(
        "another voicegate process{holder} is using the data directory {dir}; stop it first, or give this one its own --data-dir"
    )]
    Busy {
        /// The data directory.
        dir: PathBuf,
        /// " (pid N)" when the lock file names it.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock the data directory {dir}: {source}")]
    Lock {
        /// The data directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// An exclusive `flock` on the data directory's lock file, held for the
/// pipeline's life. The kernel releases it when the process ends, so a
/// killed process never leaves a stale lock behind.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    pub(super) fn take(dir: &Path) -> Result<DirLock, LockError> {
        use std::io::{Read, Seek, Write};
        use std::os::fd::AsRawFd;
        let lock_err = |source| LockError::Lock {
            dir: dir.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(lock_err)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
                    },
                });
            }
            return Err(lock_err(err));
        }
        // Who holds it, for the next one's error message.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}
