//! What a saved settings change does to the running router.
//!
//! `ConfigFile::edit` has already written and published the new config. Parts that follow
//! the published config (DHCP, DNS, the UI itself) pick it up on their own; the NAT's
//! forward set is put in force here. What only init reads at boot (interfaces, addresses,
//! the WLAN radio) or what gatewayd binds at start waits for a reboot, and the owner is
//! told which.

use super::Shared;
use crate::config::Config;

/// The outcome of an edit, in words for the owner.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// Settings in force now.
    pub live: Vec<&'static str>,
    /// Settings saved that take effect at the next boot.
    pub at_reboot: Vec<&'static str>,
}

impl Applied {
    /// "Saved. Applied now: port forwards. After a reboot: LAN address."
    pub fn message(&self) -> String {
        let mut m = String::from("Saved.");
        if !self.live.is_empty() {
            m.push_str(&format!(" Applied now: {}.", self.live.join(", ")));
        }
        if !self.at_reboot.is_empty() {
            m.push_str(&format!(
                " Takes effect after a reboot: {}.",
                self.at_reboot.join(", ")
            ));
        }
        if self.live.is_empty() && self.at_reboot.is_empty() {
            m.push_str(" Nothing changed.");
        }
        m
    }
}

/// Which settings changed between `old` and `new`, sorted by when they take effect. Pure.
pub fn classify(old: &Config, new: &Config) -> Applied {
    let mut a = Applied::default();
    let mut live = |changed: bool, what: &'static str| {
        if changed {
            a.live.push(what)
        }
    };
    live(old.nat.forwards != new.nat.forwards, "port forwards");
    live(old.devices != new.devices, "device names");
    live(old.dhcp != new.dhcp, "DHCP");
    live(old.dns != new.dns, "DNS");
    live(
        old.capture.disabled_clients != new.capture.disabled_clients,
        "capture",
    );
    let mut later = |changed: bool, what: &'static str| {
        if changed {
            a.at_reboot.push(what)
        }
    };
    later(old.lan != new.lan, "LAN address and ports");
    later(old.wan != new.wan, "WAN settings");
    later(old.wlan != new.wlan, "wireless network");
    later(old.system != new.system, "host name and domain");
    later(old.ui != new.ui, "admin UI port");
    later(
        old.nat.enabled != new.nat.enabled
            || old.nat.queue_num != new.nat.queue_num
            || old.nat.filtering != new.nat.filtering,
        "NAT mode",
    );
    let limits = |c: &crate::config::Capture| crate::config::Capture {
        disabled_clients: Vec::new(),
        ..c.clone()
    };
    later(
        old.traffic != new.traffic || limits(&old.capture) != limits(&new.capture),
        "traffic history and capture limits",
    );
    a
}

/// Puts what can change live in force after an edit, and says what did.
pub fn after_edit(shared: &Shared, old: &Config, new: &Config) -> Applied {
    let a = classify(old, new);
    if old.nat.forwards != new.nat.forwards {
        let ended = shared.nat.set_forwards(&new.nat.forwards);
        eprintln!(
            "web: {} port forwards in force, {ended} mappings ended",
            new.nat.forwards.len()
        );
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_sorted_by_when_they_apply() {
        let old = Config::default();
        let mut new = old.clone();
        assert_eq!(classify(&old, &new).message(), "Saved. Nothing changed.");
        new.dhcp.lease_secs += 60;
        new.lan.prefix_len = 16;
        let a = classify(&old, &new);
        assert_eq!(a.live, vec!["DHCP"]);
        assert_eq!(a.at_reboot, vec!["LAN address and ports"]);
        assert_eq!(
            a.message(),
            "Saved. Applied now: DHCP. Takes effect after a reboot: LAN address and ports."
        );
    }

    #[test]
    fn capture_toggles_are_live_but_capture_limits_are_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.capture
            .disabled_clients
            .push("02:00:00:00:00:01".into());
        assert_eq!(classify(&old, &new).live, vec!["capture"]);
        assert!(classify(&old, &new).at_reboot.is_empty());
        new.capture.snaplen = 128;
        assert_eq!(
            classify(&old, &new).at_reboot,
            vec!["traffic history and capture limits"]
        );
    }
}
