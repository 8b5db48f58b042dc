//! Console logging with boot-relative timestamps.
//!
//! PID 1's stdout is the kernel console. Every line carries seconds since boot
//! (CLOCK_BOOTTIME), the same clock as the kernel's own messages, so the two
//! interleave into one readable timeline.

use std::io::Write;

/// Everything logged also goes here, for the recovery console's "show logs".
/// Bounded: past LOG_MAX bytes the file moves to `.1`, replacing the older one.
pub const LOG_FILE: &str = "/run/gatehouse/log";
const LOG_MAX: u64 = 256 * 1024;

fn append(line: &str) {
    if std::fs::metadata(LOG_FILE).is_ok_and(|m| m.len() > LOG_MAX) {
        let _ = std::fs::rename(LOG_FILE, format!("{LOG_FILE}.1"));
    }
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(LOG_FILE)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

pub fn since_boot() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

pub fn line(source: &str, msg: &str) {
    // A service that already names itself does not need the name twice.
    let msg = msg
        .strip_prefix(source)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg);
    let line = format!("[{:10.3}] {source}: {msg}\n", since_boot());
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    drop(out);
    append(&line);
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line("init", &format!($($arg)*)) };
}
