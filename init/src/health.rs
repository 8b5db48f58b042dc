//! The health gate of a trial boot (the first boot of a freshly installed
//! slot): the slot is marked good only when every check has passed, and bad
//! (then the machine reboots into the old slot) when a service crash-loops or
//! the checks do not all pass within the time limit.
//!
//! ```text
//!   Waiting --all checks pass--> Good
//!      |--crash loop-----------> Bad(reason)
//!      '--deadline passed------> Bad(what is still failing)
//! ```
//! The decision is a pure function of the observations; main.rs gathers them.

use std::time::Duration;

/// A service restarted this often during a trial is crash-looping.
pub const CRASH_LOOP_RESTARTS: u32 = 3;
/// Default limit from init start to healthy. Generous: an emulated machine
/// (QEMU without KVM) needs about a minute; real hardware a few seconds.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(240);

/// What is known at one moment. `None`: not checked yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Services not running (yet, or again).
    pub not_running: Vec<String>,
    /// A service over the restart limit, with its restart count.
    pub crash_loop: Option<(String, u32)>,
    pub dhcp: Option<Result<(), String>>,
    pub dns: Option<Result<(), String>>,
    pub ui: Option<Result<(), String>>,
    /// The WAN check, only when a WAN cable is present (`None` otherwise).
    pub wan: Option<Result<(), String>>,
    pub wan_cable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Waiting,
    Good,
    Bad(String),
}

fn describe(name: &str, r: &Option<Result<(), String>>, out: &mut Vec<String>) {
    match r {
        Some(Ok(())) => {}
        Some(Err(e)) => out.push(format!("{name}: {e}")),
        None => out.push(format!("{name}: not checked yet")),
    }
}

/// Everything still failing, in words; empty when healthy.
pub fn failing(o: &Observed) -> Vec<String> {
    let mut out = Vec::new();
    if !o.not_running.is_empty() {
        out.push(format!("not running: {}", o.not_running.join(", ")));
    }
    describe("DHCP on the LAN", &o.dhcp, &mut out);
    describe("DNS", &o.dns, &mut out);
    describe("admin UI", &o.ui, &mut out);
    if o.wan_cable {
        describe("WAN", &o.wan, &mut out);
    }
    out
}

pub fn decide(o: &Observed, elapsed: Duration, limit: Duration) -> Verdict {
    if let Some((name, n)) = &o.crash_loop {
        return Verdict::Bad(format!("{name} crash-looped ({n} restarts)"));
    }
    let failing = failing(o);
    if failing.is_empty() {
        Verdict::Good
    } else if elapsed >= limit {
        Verdict::Bad(format!(
            "not healthy after {} s: {}",
            limit.as_secs(),
            failing.join("; ")
        ))
    } else {
        Verdict::Waiting
    }
}

/// The limit from `gatehouse.health_timeout=SECONDS` on the kernel command line.
pub fn limit_from_cmdline(cmdline: &str) -> Duration {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("gatehouse.health_timeout="))
        .and_then(|s| s.parse().ok())
        .filter(|&s: &u64| s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Observed {
        Observed {
            dhcp: Some(Ok(())),
            dns: Some(Ok(())),
            ui: Some(Ok(())),
            ..Default::default()
        }
    }

    const LIMIT: Duration = Duration::from_secs(100);

    #[test]
    fn good_only_when_every_check_passed() {
        assert_eq!(decide(&healthy(), Duration::ZERO, LIMIT), Verdict::Good);
        let mut o = healthy();
        o.dns = None;
        assert_eq!(decide(&o, Duration::from_secs(5), LIMIT), Verdict::Waiting);
        let mut o = healthy();
        o.not_running = vec!["rauc".into()];
        assert_eq!(decide(&o, Duration::from_secs(5), LIMIT), Verdict::Waiting);
    }

    #[test]
    fn wan_counts_only_with_a_cable() {
        let mut o = healthy();
        o.wan = Some(Err("no address".into()));
        assert_eq!(decide(&o, Duration::ZERO, LIMIT), Verdict::Good);
        o.wan_cable = true;
        assert_eq!(decide(&o, Duration::ZERO, LIMIT), Verdict::Waiting);
        o.wan = Some(Ok(()));
        assert_eq!(decide(&o, Duration::ZERO, LIMIT), Verdict::Good);
    }

    #[test]
    fn deadline_names_what_failed() {
        let mut o = healthy();
        o.ui = Some(Err("connection refused".into()));
        match decide(&o, LIMIT, LIMIT) {
            Verdict::Bad(r) => {
                assert!(r.contains("admin UI: connection refused"), "{r}");
                assert!(!r.contains("DNS"), "{r}");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn crash_loop_fails_at_once() {
        let mut o = healthy();
        o.crash_loop = Some(("gatewayd".into(), 3));
        assert_eq!(
            decide(&o, Duration::ZERO, LIMIT),
            Verdict::Bad("gatewayd crash-looped (3 restarts)".into())
        );
    }

    #[test]
    fn limit_option() {
        assert_eq!(
            limit_from_cmdline("quiet gatehouse.health_timeout=30"),
            Duration::from_secs(30)
        );
        assert_eq!(
            limit_from_cmdline("gatehouse.health_timeout=x"),
            DEFAULT_LIMIT
        );
        assert_eq!(limit_from_cmdline(""), DEFAULT_LIMIT);
    }
}
