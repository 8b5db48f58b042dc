//! Waiting for the kernel's netfilter modules at boot.
//!
//! init starts gatewayd as soon as the network is up, while it is still loading the
//! image's kernel modules: DHCP, DNS and the UI need none of them, and that load is the
//! longest step of a boot. The NAT does need them before it binds its queue and installs
//! its ruleset, and cannot simply let the kernel load them on demand: a request for a
//! module that another modprobe is still loading returns before the module is usable. So
//! init names a file (`ENV`) it creates once the list is loaded, and the NAT waits for it.

use std::path::Path;
use std::time::{Duration, Instant};

/// The environment variable init sets for its services: the file that appears once the
/// image's kernel modules are loaded.
pub const ENV: &str = "GATEHOUSE_MODULES_READY";

/// Long enough for the slowest emulated boot; past it the NAT goes on and reports
/// whatever is missing when it installs its ruleset.
pub const WAIT_AT_MOST: Duration = Duration::from_secs(60);

const POLL: Duration = Duration::from_millis(20);

/// Waits until `path` exists, at most `limit`: how long it waited, or None when it never
/// appeared.
pub fn wait_for(path: &Path, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if path.exists() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// The wait the NAT makes before it touches netfilter, with its log lines; `marker` is
/// the file from `ENV`, if gatewayd was given one.
pub fn wait_for_modules(marker: Option<&Path>) {
    let Some(path) = marker.filter(|p| !p.exists()) else {
        return;
    };
    eprintln!("gatewayd: nat: waiting for init to finish loading the kernel modules");
    match wait_for(path, WAIT_AT_MOST) {
        Some(d) => eprintln!(
            "gatewayd: nat: kernel modules loaded after {:.2} s",
            d.as_secs_f64()
        ),
        None => eprintln!(
            "gatewayd: nat: warning: {} did not appear within {} s; going on without it",
            path.display(),
            WAIT_AT_MOST.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_the_file_appears_and_gives_up_at_the_limit() {
        let dir = std::env::temp_dir().join(format!("gh-kready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("modules-loaded");
        let _ = std::fs::remove_file(&file);
        assert_eq!(wait_for(&file, Duration::from_millis(100)), None);
        let writer = {
            let file = file.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                std::fs::write(&file, "").unwrap();
            })
        };
        let waited = wait_for(&file, Duration::from_secs(10)).expect("the file appeared");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        writer.join().unwrap();
        // Already there: no wait at all, even with no time allowed.
        assert!(wait_for(&file, Duration::ZERO).is_some_and(|d| d < POLL));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
