//! Crash-safe file replacement: a reader (or the next boot) sees the old file or the new
//! one, never a mix, even across a power cut.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Temp file in the same directory (rename is only atomic within a
/// filesystem), fsync it, rename over the target, fsync the directory so the
/// rename itself survives a power cut.
pub fn write(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
