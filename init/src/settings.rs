//! The few settings init needs from gatewayd's config file (hostname, LAN
//! address, which ports are WAN and LAN). Unknown sections are ignored here: gatewayd owns and validates the
//! full file, and reports its errors. `gatehouse.failsafe` on the kernel command
//! line makes init ignore the file entirely.

use serde::Deserialize;
use std::net::Ipv4Addr;

pub const CONFIG: &str = "/data/gatehouse.toml";

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub hostname: String,
    pub lan_address: Ipv4Addr,
    pub lan_prefix: u8,
    /// `[wan] port`: the WAN port, by kernel name ("eth0") or MAC. None: the auto rule.
    pub wan_port: Option<String>,
    /// `[lan] ports`: the ports that join br-lan. Empty: every port but the WAN.
    pub lan_ports: Vec<String>,
    /// Booted with `gatehouse.failsafe`: the config file is ignored.
    pub failsafe: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            hostname: "gatehouse".into(),
            lan_address: Ipv4Addr::new(192, 168, 1, 1),
            lan_prefix: 24,
            wan_port: None,
            lan_ports: Vec::new(),
            failsafe: false,
        }
    }
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    system: FileSystem,
    #[serde(default)]
    lan: FileLan,
    #[serde(default)]
    wan: FileWan,
}

#[derive(Deserialize, Default)]
struct FileSystem {
    hostname: Option<String>,
}

#[derive(Deserialize, Default)]
struct FileLan {
    address: Option<Ipv4Addr>,
    prefix_len: Option<u8>,
    ports: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
struct FileWan {
    port: Option<String>,
}

/// Parses the config text; any error yields the defaults (gatewayd reports it).
pub fn from_text(text: &str) -> Settings {
    let d = Settings::default();
    let Ok(f) = toml::from_str::<File>(text) else {
        return d;
    };
    let hostname = f
        .system
        .hostname
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 63
                && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .unwrap_or(d.hostname);
    Settings {
        hostname,
        lan_address: f.lan.address.unwrap_or(d.lan_address),
        lan_prefix: f
            .lan
            .prefix_len
            .filter(|p| (8..=30).contains(p))
            .unwrap_or(d.lan_prefix),
        wan_port: f.wan.port.filter(|p| !p.trim().is_empty()),
        lan_ports: f.lan.ports.unwrap_or_default(),
        failsafe: false,
    }
}

pub fn failsafe(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .any(|w| w == "gatehouse.failsafe")
}

pub fn load() -> Settings {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if failsafe(&cmdline) {
        crate::log!("failsafe boot: ignoring {CONFIG}");
        return Settings {
            failsafe: true,
            ..Settings::default()
        };
    }
    std::fs::read_to_string(CONFIG)
        .map(|t| from_text(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_ignores_the_rest() {
        let s = from_text("[system]\nhostname = \"edge\"\n[lan]\naddress = \"10.1.0.1\"\nprefix_len = 16\n[dhcp]\nx = 1\n");
        assert_eq!(s.hostname, "edge");
        assert_eq!(s.lan_address, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(s.lan_prefix, 16);
        assert_eq!(s.wan_port, None);
        assert!(s.lan_ports.is_empty());
    }

    #[test]
    fn reads_the_port_choice() {
        let s = from_text(
            "[wan]\nport = \"eth1\"\nmode = \"dhcp\"\n[lan]\nports = [\"eth0\", \"eth2\"]\n",
        );
        assert_eq!(s.wan_port.as_deref(), Some("eth1"));
        assert_eq!(s.lan_ports, ["eth0", "eth2"]);
        assert_eq!(from_text("[wan]\nport = \"\"\n").wan_port, None);
    }

    #[test]
    fn bad_input_gives_defaults() {
        assert_eq!(from_text("[system\n"), Settings::default());
        assert_eq!(
            from_text("[system]\nhostname = \"bad name!\"\n").hostname,
            "gatehouse"
        );
    }

    #[test]
    fn failsafe_flag() {
        assert!(failsafe("console=ttyS0 rauc.slot=A gatehouse.failsafe"));
        assert!(!failsafe("console=ttyS0 gatehouse.failsafe=0"));
    }
}
