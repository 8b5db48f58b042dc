//! The hardware watchdog: PID 1 arms it once boot is done and pets it from
//! its main loop, so a wedged init (deadlock, stopped, stuck in the kernel)
//! resets the machine. `gatehouse.watchdog=SECONDS` sets the timeout; 0
//! leaves the watchdog alone.

use crate::log;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub const DEFAULT_TIMEOUT: u32 = 30;
const DEVICES: [&str; 2] = ["/dev/watchdog0", "/dev/watchdog"];
/// Pet at most this often; the main loop wakes every half second.
const PET_EVERY: Duration = Duration::from_secs(1);

nix::ioctl_read!(wdioc_keepalive, b'W', 5, libc::c_int);
nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, libc::c_int);

pub struct Watchdog {
    dev: File,
    last: Instant,
}

/// The timeout from the kernel command line: None when disabled.
pub fn timeout_from_cmdline(cmdline: &str) -> Option<u32> {
    let t = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gatehouse.watchdog="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    (t > 0).then_some(t)
}

impl Watchdog {
    /// Opens and arms the first watchdog device; None if there is none.
    pub fn open(timeout: u32) -> Option<Self> {
        let (path, dev) = DEVICES
            .iter()
            .find_map(|p| File::options().write(true).open(p).ok().map(|f| (p, f)))?;
        let mut t = timeout as libc::c_int;
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int.
        match unsafe { wdioc_settimeout(dev.as_raw_fd(), &mut t) } {
            Ok(_) => log!("watchdog: {path} armed, {t} s timeout"),
            Err(e) => log!("watchdog: {path} armed with its default timeout ({e})"),
        }
        let mut w = Self {
            dev,
            last: Instant::now(),
        };
        w.pet_now();
        Some(w)
    }

    fn pet_now(&mut self) {
        let mut dummy = 0;
        // SAFETY: WDIOC_KEEPALIVE writes at most one int.
        if unsafe { wdioc_keepalive(self.dev.as_raw_fd(), &mut dummy) }.is_err() {
            // Every driver accepts a write as a keepalive.
            let _ = std::io::Write::write_all(&mut self.dev, b"\0");
        }
        self.last = Instant::now();
    }

    /// Called from the main loop and shutdown's waits. The device is never
    /// closed with the magic 'V', so init's death also resets the machine.
    pub fn pet(&mut self) {
        if self.last.elapsed() >= PET_EVERY {
            self.pet_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_defaults_and_can_be_disabled() {
        assert_eq!(timeout_from_cmdline("quiet"), Some(DEFAULT_TIMEOUT));
        assert_eq!(timeout_from_cmdline("a gatehouse.watchdog=12 b"), Some(12));
        assert_eq!(timeout_from_cmdline("gatehouse.watchdog=0"), None);
    }
}
