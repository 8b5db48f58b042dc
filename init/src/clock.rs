//! The clock and the entropy pool at boot.
//!
//! Clock: from the RTC when there is one (busybox hwclock, UTC). Boards
//! without an RTC start in 1970, so the time of the last shutdown (and of
//! every boot) is kept on /data and the clock never starts before it: leases,
//! logs and certificate checks then at least move forward.
//!
//! Entropy: a seed saved on /data is mixed into the pool at boot (without
//! crediting it; the kernel's own sources do that) and replaced at once, so
//! no two boots start from the same seed.

use crate::log;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CLOCK_FILE: &str = "/data/gatehouse/clock";
const SEED_FILE: &str = "/data/gatehouse/random-seed";
const SEED_BYTES: usize = 512;

/// The time to set at boot: the saved time when the clock is behind it.
pub fn floor(now: SystemTime, saved: Option<SystemTime>) -> Option<SystemTime> {
    saved.filter(|s| *s > now)
}

fn read_saved() -> Option<SystemTime> {
    let secs: u64 = std::fs::read_to_string(CLOCK_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Records the current time as the floor for the next boot.
pub fn save() {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return;
    };
    if let Err(e) = crate::atomic_file::write(
        Path::new(CLOCK_FILE),
        format!("{}\n", now.as_secs()).as_bytes(),
    ) {
        log!("clock: cannot save the time: {e}");
    }
}

fn set(t: SystemTime) -> nix::Result<()> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = nix::sys::time::TimeSpec::new(d.as_secs() as libc::time_t, 0);
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
}

/// After /data is mounted: RTC, then the saved floor, then the entropy seed.
pub fn at_boot() {
    if Path::new("/dev/rtc0").exists() {
        match std::process::Command::new("/bin/hwclock")
            .args(["-s", "-u", "-f", "/dev/rtc0"])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => log!(
                "clock: RTC unreadable: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => log!("clock: hwclock: {e}"),
        }
    }
    if let Some(t) = floor(SystemTime::now(), read_saved()) {
        match set(t) {
            Ok(()) => log!("clock: behind the last saved time; moved forward to it"),
            Err(e) => log!("clock: cannot set: {e}"),
        }
    }
    let _ = std::fs::create_dir_all("/data/gatehouse");
    save();
    seed_entropy();
}

fn seed_entropy() {
    if let Ok(seed) = std::fs::read(SEED_FILE) {
        // Writing to /dev/urandom mixes the bytes in without crediting them.
        if let Err(e) = std::fs::write("/dev/urandom", &seed) {
            log!("entropy: cannot mix in the saved seed: {e}");
        }
    }
    let mut fresh = vec![0u8; SEED_BYTES];
    // SAFETY: getrandom writes at most fresh.len() bytes into fresh.
    let n = unsafe { libc::getrandom(fresh.as_mut_ptr().cast(), fresh.len(), libc::GRND_NONBLOCK) };
    if n == fresh.len() as isize {
        if let Err(e) = crate::atomic_file::write(Path::new(SEED_FILE), &fresh) {
            log!("entropy: cannot save a new seed: {e}");
        }
    } else {
        // Not initialised yet: keep the old seed rather than save a weak one.
        log!("entropy: pool not ready yet; seed not refreshed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_only_moves_forward() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(floor(t(10), Some(t(1_800_000_000))), Some(t(1_800_000_000)));
        assert_eq!(floor(t(1_800_000_001), Some(t(1_800_000_000))), None);
        assert_eq!(floor(t(10), None), None);
    }
}
