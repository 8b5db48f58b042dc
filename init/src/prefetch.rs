//! Boot prefetch: reads the programs of the image's services into the page
//! cache on a thread of its own, while PID 1 mounts /data and waits for the
//! module loads.
//!
//! Why: every page of a program on the compressed root is inflated the first
//! time it is touched. gatewayd is the biggest, and its start is what LAN
//! clients wait for; inflating it while one CPU would otherwise sit waiting on
//! the module thread takes that time off the DHCP server's start. It runs at
//! the lowest priority, so it mostly takes the time the boot leaves idle.
//! Failures are ignored: the programs are read again when they start anyway.

use crate::services::{self, Spec};
use std::io::Read;

/// The programs to warm, in order: services that start at once (no
/// dependencies, no terminal) first, each program once.
pub fn programs(specs: &[Spec]) -> Vec<String> {
    let first = specs
        .iter()
        .filter(|s| s.after.is_empty() && s.tty.is_none());
    let rest = specs
        .iter()
        .filter(|s| !(s.after.is_empty() && s.tty.is_none()));
    let mut out: Vec<String> = Vec::new();
    for s in first.chain(rest) {
        if s.program.starts_with('/') && !out.contains(&s.program) {
            out.push(s.program.clone());
        }
    }
    out
}

/// Starts the prefetch of the programs in the services file `path`.
pub fn start(path: &'static str) {
    let _ = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || {
            // Lowest priority: the mounts and module loads beside it come first.
            let _ = crate::priority::nice_this_thread(19);
            let Ok(text) = std::fs::read_to_string(path) else {
                return;
            };
            let Ok(specs) = services::parse(&text, path) else {
                return;
            };
            for p in programs(&specs) {
                warm(&p);
            }
        });
}

/// Reads `path` once, so its pages are in the page cache.
fn warm(path: &str) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = vec![0u8; 256 << 10];
    while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_that_start_at_once_come_first() {
        let text = r#"
[[service]]
name = "dbus"
command = ["/usr/bin/dbus-daemon", "--system"]
ready = "notify"

[[service]]
name = "rauc"
command = ["/usr/bin/rauc", "service"]
after = ["dbus"]

[[service]]
name = "gatewayd"
command = ["/usr/sbin/gatewayd"]

[[service]]
name = "console"
command = ["/usr/sbin/gatehouse-console"]
tty = "console"

[[service]]
name = "console-tty1"
command = ["/usr/sbin/gatehouse-console"]
tty = "/dev/tty1"
"#;
        let specs = services::parse(text, "test").unwrap();
        assert_eq!(
            programs(&specs),
            [
                "/usr/bin/dbus-daemon",
                "/usr/sbin/gatewayd",
                "/usr/bin/rauc",
                "/usr/sbin/gatehouse-console"
            ]
        );
    }
}
