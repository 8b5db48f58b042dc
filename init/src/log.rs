//! Console logging with boot-relative timestamps.
//!
//! PID 1's stdout is the kernel console. Every line carries seconds since boot
//! (CLOCK_BOOTTIME), the same clock as the kernel's own messages, so the two
//! interleave into one readable timeline.

use std::io::Write;

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
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{:10.3}] {source}: {msg}", since_boot());
    let _ = out.flush();
}

#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::line("init", &format!($($arg)*)) };
}
