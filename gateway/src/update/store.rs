//! Where an uploaded or downloaded bundle is written before RAUC reads it:
//! `/data/update/incoming.raucb`. Bytes are streamed to a temp name next to it, chunk by
//! chunk, and only a complete, fsynced file is renamed into place; the bundle never sits in
//! memory. The data partition also holds the leases and the config, so a bundle that would
//! not leave `reserve` bytes free is refused, before the first byte when its size is known
//! and while it arrives when it is not.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Bigger than any bundle should be (a slot is 384 MiB).
pub const MAX_BUNDLE: u64 = 1 << 30;
/// Left free on the data partition whatever arrives.
pub const RESERVE: u64 = 16 << 20;
/// Free space is looked at again after this many bytes.
const RECHECK_EVERY: u64 = 4 << 20;

#[derive(Debug)]
pub enum StoreError {
    /// The bundle would not fit: `need` bytes (at least; including `reserve`, which
    /// must stay free), `free` available. All 0 when the disk filled up unforeseen.
    NoSpace {
        need: u64,
        free: u64,
        reserve: u64,
    },
    TooLarge {
        limit: u64,
    },
    Io(io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::web::format_bytes as b;
        match self {
            Self::NoSpace { need: 0, .. } => {
                f.write_str("not enough space on the data partition: it is full")
            }
            Self::NoSpace {
                need,
                free,
                reserve,
            } => write!(
                f,
                "not enough space on the data partition: the bundle needs {} and {} must stay \
                 free, {} is available",
                b(need.saturating_sub(*reserve)),
                b(*reserve),
                b(*free)
            ),
            Self::TooLarge { limit } => write!(f, "the bundle is larger than {}", b(*limit)),
            Self::Io(e) => write!(f, "could not store the bundle: {e}"),
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        // A full disk the space checks did not see coming (another writer) is still a
        // space problem, not a mystery I/O error.
        if e.raw_os_error() == Some(libc::ENOSPC) {
            Self::NoSpace {
                need: 0,
                free: 0,
                reserve: 0,
            }
        } else {
            Self::Io(e)
        }
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    /// The finished bundle's path.
    pub path: PathBuf,
    pub max_bytes: u64,
    /// Bytes that must stay free on the filesystem.
    pub reserve: u64,
}

/// Bytes available to us on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

impl Store {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            max_bytes: MAX_BUNDLE,
            reserve: RESERVE,
        }
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or_default());
        name.push(".part");
        self.dir().join(name)
    }

    /// Removes what an interrupted transfer or install left (at startup, when nothing is
    /// using them).
    pub fn clean(&self) {
        for p in [self.temp_path(), self.path.clone()] {
            match std::fs::remove_file(&p) {
                Ok(()) => eprintln!("update: removed leftover {}", p.display()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => eprintln!("update: cannot remove {}: {e}", p.display()),
            }
        }
    }

    /// Deletes the finished bundle.
    pub fn discard(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("update: cannot remove {}: {e}", self.path.display());
            }
        }
    }

    /// Starts a bundle of `expected` bytes if known; refuses at once if it cannot fit.
    pub async fn begin(&self, expected: Option<u64>) -> Result<Writer, StoreError> {
        tokio::fs::create_dir_all(self.dir()).await?;
        // An old finished bundle is replaced anyway: its space counts as free.
        self.discard();
        let _ = tokio::fs::remove_file(self.temp_path()).await;
        if let Some(n) = expected {
            if n > self.max_bytes {
                return Err(StoreError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            let free = free_bytes(self.dir())?;
            if n.saturating_add(self.reserve) > free {
                return Err(StoreError::NoSpace {
                    need: n.saturating_add(self.reserve),
                    free,
                    reserve: self.reserve,
                });
            }
        }
        let temp = self.temp_path();
        // 0600: RAUC refuses bundles that others could write to.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await?;
        Ok(Writer {
            store: self.clone(),
            file: Some(file),
            temp,
            written: 0,
            checked_at: 0,
            done: false,
        })
    }
}

/// A bundle being written. Dropped unfinished (error, client gone, refused), it removes its
/// temp file.
pub struct Writer {
    store: Store,
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    written: u64,
    checked_at: u64,
    done: bool,
}

impl Writer {
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let n = chunk.len() as u64;
        let total = self.written + n;
        if total > self.store.max_bytes {
            return Err(StoreError::TooLarge {
                limit: self.store.max_bytes,
            });
        }
        if self.written == 0 || total - self.checked_at >= RECHECK_EVERY {
            // Between looks the reserve may shrink by up to RECHECK_EVERY: it is sized
            // for that.
            let free = free_bytes(self.store.dir())?;
            if free < self.store.reserve.saturating_add(n) {
                return Err(StoreError::NoSpace {
                    need: total.saturating_add(self.store.reserve),
                    free: free + self.written,
                    reserve: self.store.reserve,
                });
            }
            self.checked_at = self.written;
        }
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("bundle already finished"))?;
        f.write_all(chunk).await?;
        self.written = total;
        Ok(())
    }

    /// Flushes, fsyncs and renames the bundle into place; returns its path.
    pub async fn finish(mut self) -> Result<PathBuf, StoreError> {
        let mut f = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("bundle already finished"))?;
        f.flush().await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&self.temp, &self.store.path).await?;
        // The rename itself must survive a power cut before RAUC is told about the file.
        let dir = self.store.dir().to_path_buf();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(io::Error::other)??;
        self.done = true;
        Ok(self.store.path.clone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gh-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn writes_then_renames_into_place() {
        let d = dir("ok");
        let s = Store::new(d.join("update/incoming.raucb"));
        let mut w = s.begin(Some(6)).await.unwrap();
        w.write(b"abc").await.unwrap();
        assert!(!s.path.exists(), "visible before it was complete");
        assert!(s.temp_path().exists());
        w.write(b"def").await.unwrap();
        let p = w.finish().await.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcdef");
        assert!(!s.temp_path().exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        s.discard();
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn an_unfinished_bundle_leaves_nothing() {
        let d = dir("drop");
        let s = Store::new(d.join("incoming.raucb"));
        let mut w = s.begin(None).await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        assert!(!s.temp_path().exists());
        assert!(!s.path.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn refuses_what_does_not_fit() {
        let d = dir("space");
        let mut s = Store::new(d.join("incoming.raucb"));
        s.max_bytes = 10;
        assert!(matches!(
            s.begin(Some(11)).await,
            Err(StoreError::TooLarge { limit: 10 })
        ));
        let mut w = s.begin(None).await.unwrap();
        w.write(b"0123456789").await.unwrap();
        assert!(matches!(
            w.write(b"x").await,
            Err(StoreError::TooLarge { .. })
        ));
        drop(w);
        // A reserve larger than the disk: nothing fits, known size or not.
        let mut s = Store::new(d.join("incoming.raucb"));
        s.reserve = u64::MAX / 4;
        let e = s.begin(Some(1)).await.err().expect("refused");
        assert!(matches!(e, StoreError::NoSpace { .. }), "{e}");
        assert!(e.to_string().contains("not enough space"), "{e}");
        let mut w = s.begin(None).await.unwrap();
        assert!(matches!(
            w.write(b"x").await,
            Err(StoreError::NoSpace { .. })
        ));
        drop(w);
        assert!(!s.temp_path().exists());
        assert!(free_bytes(&d).unwrap() > 0);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
