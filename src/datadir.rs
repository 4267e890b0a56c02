//! One serving process per embedded store.
//!
//! SQLite allows several processes on one file, but the gateway's audit
//! sequencer, subject cache and (with the tiled log) log files assume they
//! are the only writer. So a serving gateway holds an exclusive advisory
//! lock on `<database>.lock` for its lifetime, with its pid written inside;
//! a second `serve` or `quickstart` on the same store is refused at start,
//! naming the holder. Read-only tools (`audit export`, `audit verify`,
//! `backup`) do not take the lock; `backup` instead holds the log
//! directory's writer lock for the moment it copies (see `crate::backup`).
//! `restore` takes this lock on its target, so it never writes under a
//! serving gateway and no gateway starts on a half-restored store.
//! PostgreSQL stores take none: several nodes are the point.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another process serves from this store.
    #[error(
        "{path} is locked by another credgate process (pid {holder}); one serving process per SQLite store: stop it first, or give this one another data directory"
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid as it wrote it (`unknown` if unreadable).
        holder: String,
    },
    /// The lock file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The SQLite database file a `sqlite:` store URL names, if it is one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

impl DataDirLock {
    /// Take the lock beside `database`.
    pub fn acquire(database: &Path) -> Result<DataDirLock, LockError> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    path,
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/x.db?mode=rwc"),
            Some("/var/x.db".into())
        );
        assert_eq!(sqlite_path("sqlite:x.db"), Some("x.db".into()));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = std::env::temp_dir().join(format!("credgate-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("credgate.db");
        let first = DataDirLock::acquire(&db).unwrap();
        let err = DataDirLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(&db).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
