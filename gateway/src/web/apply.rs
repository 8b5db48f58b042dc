//! What a saved settings change does to the running router.
//!
//! `ConfigFile::edit` has already written and published the new config. Parts that follow
//! the published config (DHCP, DNS, the UI itself) pick it up on their own; the NAT's
//! forward set is put in force here; init follows the file's `[wlan]` on its own. What only
//! init reads at boot (interfaces, addresses) or what gatewayd binds at start waits for a
//! reboot, and the owner is told which.

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

/// Which settings changed between `old` and `new`, sorted by when they take effect. `boot` is
/// the config the router started with: DHCP follows edits only while the LAN it serves is
/// still the one the interface has. Pure.
pub fn classify(boot: &Config, old: &Config, new: &Config) -> Applied {
    let mut a = Applied::default();
    let lan_as_booted = new.lan == boot.lan && new.system.domain == boot.system.domain;
    let mut live = |changed: bool, what: &'static str| {
        if changed {
            a.live.push(what)
        }
    };
    live(old.nat.forwards != new.nat.forwards, "port forwards");
    live(old.nat.filtering != new.nat.filtering, "NAT filtering");
    live(old.devices != new.devices, "device names");
    // init watches the file and restarts hostapd with the new settings.
    live(old.wlan != new.wlan, "wireless network");
    live(old.dhcp != new.dhcp && lan_as_booted, "DHCP");
    // The resolver follows `[dns]` live, but for what its sockets and cache were made with.
    let restart = |d: &crate::config::Dns| (d.enabled, d.udp_workers, d.cache_bytes);
    let dns_live = |d: &crate::config::Dns| crate::config::Dns {
        enabled: true,
        udp_workers: 0,
        cache_bytes: 0,
        ..d.clone()
    };
    live(dns_live(&old.dns) != dns_live(&new.dns), "DNS");
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
    later(old.dhcp != new.dhcp && !lan_as_booted, "DHCP");
    later(old.wan != new.wan, "WAN settings");
    later(old.system != new.system, "host name and domain");
    later(old.ui != new.ui, "admin UI port");
    later(
        restart(&old.dns) != restart(&new.dns),
        "DNS server on/off, workers and cache size",
    );
    later(
        old.nat.enabled != new.nat.enabled || old.nat.queue_num != new.nat.queue_num,
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
    let a = classify(&shared.config.booted(), old, new);
    if old.nat.forwards != new.nat.forwards {
        let ended = shared.nat.set_forwards(&new.nat.forwards);
        eprintln!(
            "web: {} port forwards in force, {ended} mappings ended",
            new.nat.forwards.len()
        );
    }
    shared.nat.set_filtering(new.nat.filtering);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_sorted_by_when_they_apply() {
        let old = Config::default();
        let mut new = old.clone();
        assert_eq!(
            classify(&old, &old, &new).message(),
            "Saved. Nothing changed."
        );
        new.dhcp.lease_secs += 60;
        new.nat.forwards.push(crate::config::Forward {
            protocol: crate::config::ForwardProtocol::Tcp,
            external: "8080".parse().unwrap(),
            inside: "192.168.1.20:80".parse().unwrap(),
        });
        let a = classify(&old, &old, &new);
        assert_eq!(a.live, vec!["port forwards", "DHCP"]);
        new.lan.prefix_len = 16;
        let a = classify(&old, &old, &new);
        assert_eq!(a.live, vec!["port forwards"]);
        assert_eq!(a.at_reboot, vec!["LAN address and ports", "DHCP"]);
        assert_eq!(
            a.message(),
            "Saved. Applied now: port forwards. Takes effect after a reboot: LAN address and \
             ports, DHCP."
        );
    }

    #[test]
    fn nat_filtering_is_live_but_the_queue_is_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.nat.filtering = crate::nat::mapping::Filtering::AddressDependent;
        let a = classify(&old, &old, &new);
        assert_eq!((a.live, a.at_reboot), (vec!["NAT filtering"], vec![]));
        new.nat.queue_num += 1;
        assert_eq!(classify(&old, &old, &new).at_reboot, vec!["NAT mode"]);
    }

    #[test]
    fn capture_toggles_are_live_but_capture_limits_are_not() {
        let old = Config::default();
        let mut new = old.clone();
        new.capture
            .disabled_clients
            .push("02:00:00:00:00:01".into());
        assert_eq!(classify(&old, &old, &new).live, vec!["capture"]);
        assert!(classify(&old, &old, &new).at_reboot.is_empty());
        new.capture.snaplen = 128;
        assert_eq!(
            classify(&old, &old, &new).at_reboot,
            vec!["traffic history and capture limits"]
        );
    }
}
