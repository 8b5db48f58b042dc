//! The serial recovery console's menu: what each choice means, and the pure
//! parts of carrying it out. The terminal I/O lives in `bin/console.rs`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status,
    SwitchSlot,
    FactoryReset,
    ResetPassword,
    ResetNetwork,
    Logs,
    Shell,
    Reboot,
    PowerOff,
    Install,
    Backup,
    Restore,
}

pub const MENU: &[(Action, &str)] = &[
    (
        Action::Status,
        "Status: slots, version, addresses, services",
    ),
    (Action::SwitchSlot, "Switch the boot slot"),
    (
        Action::FactoryReset,
        "Factory reset (erase settings and leases)",
    ),
    (Action::ResetPassword, "Reset the admin password"),
    (
        Action::ResetNetwork,
        "Reset the network settings to defaults",
    ),
    (Action::Logs, "Show the logs"),
    (Action::Shell, "Open a shell"),
    (Action::Reboot, "Reboot"),
    (Action::PowerOff, "Power off"),
    (
        Action::Install,
        "Install an update bundle (a path or an http(s) URL)",
    ),
    (Action::Backup, "Back up the config to a file"),
    (Action::Restore, "Restore the config from a backup file"),
];

/// The files a config backup holds, relative to /data. Secrets (the admin
/// password hash) and state (leases, history) are not part of it.
pub const BACKUP_FILES: &[&str] = &["gatehouse.toml"];

/// The word the owner must type to confirm a factory reset.
pub const CONFIRM_WORD: &str = "RESET";

/// Where the admin UI keeps its password hash; deleting it makes the next
/// visit to the UI ask for a new password.
pub const PASSWORD_FILE: &str = "/data/ui/admin-password";
/// The admin page's HTTPS certificate fingerprint ("SHA256 AB:CD:..."), written by gatewayd
/// when it makes the certificate; the status screen shows it so the owner can check what
/// the browser shows.
pub const HTTPS_FINGERPRINT_FILE: &str = "/data/ui/https-fingerprint";

pub fn menu_text(title: &str) -> String {
    let mut s = format!("\n== {title} ==\n");
    for (i, (_, label)) in MENU.iter().enumerate() {
        s.push_str(&format!("  {}) {label}\n", i + 1));
    }
    s.push_str("Choice: ");
    s
}

/// Maps a typed line to an action: the number, or Enter alone for the status.
pub fn parse_choice(line: &str) -> Option<Action> {
    let t = line.trim();
    if t.is_empty() {
        return Some(Action::Status);
    }
    let n: usize = t.parse().ok()?;
    MENU.get(n.checked_sub(1)?).map(|(a, _)| *a)
}

/// The other slot of an A/B pair.
pub fn other_slot(slot: &str) -> &'static str {
    if slot == "A" {
        "B"
    } else {
        "A"
    }
}

/// The network sections of the config file, dropped by "reset network".
pub const NETWORK_SECTIONS: &[&str] = &["lan", "wan", "dhcp"];

/// Removes the network sections from config text, keeping everything else.
/// Text that does not parse is replaced by an empty config: it could not have
/// been in force anyway (gatewayd ran on defaults).
pub fn without_network(text: &str) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return String::new();
    };
    for s in NETWORK_SECTIONS {
        table.remove(*s);
    }
    toml::to_string(&table).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices() {
        assert_eq!(parse_choice("1\n"), Some(Action::Status));
        assert_eq!(parse_choice(" 3 "), Some(Action::FactoryReset));
        assert_eq!(parse_choice("9"), Some(Action::PowerOff));
        assert_eq!(parse_choice(""), Some(Action::Status));
        assert_eq!(parse_choice("0"), None);
        assert_eq!(parse_choice("10"), Some(Action::Install));
        assert_eq!(parse_choice("13"), None);
        assert_eq!(parse_choice("reboot"), None);
    }

    #[test]
    fn menu_lists_every_action_numbered() {
        let m = menu_text("gw");
        assert!(m.contains("  1) Status"));
        assert!(m.contains("  9) Power off"));
        assert!(m.contains(&format!("  {}) Restore the config", MENU.len())));
    }

    #[test]
    fn network_reset_keeps_other_sections() {
        let text = "[system]\nhostname = \"edge\"\n[lan]\naddress = \"10.0.0.1\"\n[dhcp]\nlease_secs = 600\n[dns]\nupstreams = [\"9.9.9.9\"]\n";
        let out = without_network(text);
        assert!(out.contains("hostname = \"edge\""));
        assert!(out.contains("9.9.9.9"));
        assert!(!out.contains("10.0.0.1"));
        assert!(!out.contains("lease_secs"));
        assert_eq!(without_network("[lan\n"), "");
    }
}
