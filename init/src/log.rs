//! Console logging with boot-relative timestamps.
//!
//! PID 1's stdout is the kernel console. Every line carries seconds since boot
//! (CLOCK_BOOTTIME), the same clock as the kernel's own messages, so the two
//! interleave into one readable timeline.

use crate::logring::Rings;
use std::io::Write;
use std::sync::{Arc, OnceLock};

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

/// PID 1's own lines also go into its log ring. This is the one process-wide
/// hook in init: `log!` is called from every module, the way the console it
/// writes to is process-wide too. Set once by main; other binaries leave it unset.
static RINGS: OnceLock<Arc<Rings>> = OnceLock::new();

pub fn set_rings(rings: Arc<Rings>) {
    let _ = RINGS.set(rings);
}

/// One line of `source` to the console and the boot log file.
fn to_console(source: &str, msg: &str, boot: f64) {
    let line = format!("[{boot:10.3}] {source}: {msg}\n");
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
    drop(out);
    append(&line);
}

/// A service that already names itself does not need the name twice.
fn strip_name<'a>(source: &str, msg: &'a str) -> &'a str {
    msg.strip_prefix(source)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(msg)
}

pub fn line(source: &str, msg: &str) {
    let msg = strip_name(source, msg);
    let boot = since_boot();
    if let Some(r) = RINGS.get() {
        r.push(source, msg, std::time::SystemTime::now(), boot);
    }
    to_console(source, msg, boot);
}

/// A line of a supervised service's output: into its ring, and to the
/// console when the service's spec says so.
pub fn service_line(rings: &Rings, source: &str, msg: &str, echo: bool) {
    let msg = strip_name(source, msg);
    let boot = since_boot();
    rings.push(source, msg, std::time::SystemTime::now(), boot);
    if echo {
        to_console(source, msg, boot);
    }
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line("init", &format!($($arg)*)) };
}
