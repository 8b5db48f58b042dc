//! The WLAN access point. `[wlan]` in the config file becomes hostapd's
//! configuration for the first radio (or the one named in `radio`); init
//! supervises hostapd, which starts once that file exists and bridges the
//! radio into br-lan itself. WPA2-PSK and WPA3-SAE share one passphrase.
//!
//! There is no access point until an SSID and a passphrase are set: no default
//! passphrase would be safe. Settings that do not validate, a missing radio and
//! a radio that never brings the access point up are reported (a console line
//! and the one-line status file), never fatal.
//!
//! Parsing, validation and rendering are pure; `poll` looks at /sys and writes
//! the files, from PID 1's main loop, so a radio that appears later (a USB
//! adapter, a test's mac80211_hwsim) is picked up.

use crate::log;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// hostapd's configuration; the hostapd service runs while it exists.
pub const HOSTAPD_CONF: &str = "/run/gatehouse/hostapd.conf";
/// One line of state for the console and the UI.
pub const STATUS_FILE: &str = "/run/gatehouse/wlan";
/// hostapd's control sockets (`hostapd_cli -p /run/hostapd`).
pub const CTRL_DIR: &str = "/run/hostapd";
/// Where `channel = "auto"` ends up when automatic selection does not bring
/// the access point up (a driver without channel surveys): 2.4 GHz channel 6
/// exists on every radio and is allowed in every regulatory domain.
pub const FALLBACK_CHANNEL: u8 = 6;
/// How long a radio gets to bring the access point up before it counts as
/// failed (and "auto" falls back to `FALLBACK_CHANNEL`).
const UP_WITHIN: Duration = Duration::from_secs(90);
/// DFS channels first listen for radar: 60 s, 10 min on weather-radar channels.
const UP_WITHIN_DFS: Duration = Duration::from_secs(11 * 60);

/// The `[wlan]` section, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum WlanSettings {
    /// No SSID and passphrase yet (no `[wlan]`, or neither key in it).
    #[default]
    NotConfigured,
    /// `enabled = false`.
    Disabled,
    /// Settings that do not validate: why, naming the key.
    Invalid(String),
    Enabled(AccessPoint),
}

#[derive(Clone, PartialEq)]
pub struct AccessPoint {
    pub ssid: String,
    pub passphrase: String,
    pub channel: Channel,
    /// ISO 3166 alpha-2 code; None leaves the radio in the world regulatory domain.
    pub country: Option<String>,
    /// A phy name (`phy1`); None takes the first radio found.
    pub radio: Option<String>,
}

// By hand, so the passphrase never reaches a log through `{:?}`.
impl std::fmt::Debug for AccessPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPoint")
            .field("ssid", &self.ssid)
            .field("passphrase", &"<hidden>")
            .field("channel", &self.channel)
            .field("country", &self.country)
            .field("radio", &self.radio)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// hostapd's automatic channel selection (a survey of the 2.4 GHz band).
    Auto,
    Fixed(u8),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Auto => write!(f, "auto"),
            Channel::Fixed(c) => write!(f, "{c}"),
        }
    }
}

const KEYS: &[&str] = &[
    "enabled",
    "ssid",
    "passphrase",
    "channel",
    "country",
    "radio",
];

/// Notices when a file is replaced or rewritten (its inode, size or mtime
/// changes), so edits of the config file, by gatewayd's settings page or from
/// the console's shell, reach the access point without a reboot.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    seen: Option<(u64, u64, i64, i64)>,
}

impl FileWatch {
    /// Starts from the file as it is now.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let seen = Self::identity(&path);
        Self { path, seen }
    }

    fn identity(path: &Path) -> Option<(u64, u64, i64, i64)> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    }

    /// Whether the file changed (appeared, went, was rewritten) since the last call.
    pub fn changed(&mut self) -> bool {
        let now = Self::identity(&self.path);
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}

/// Reads `[wlan]` from the config file (`settings::CONFIG`), at boot and
/// whenever it changes. A failsafe boot ignores the file, so there is no
/// access point then.
pub fn load(failsafe: bool) -> WlanSettings {
    if failsafe {
        return WlanSettings::NotConfigured;
    }
    match std::fs::read_to_string(crate::settings::CONFIG) {
        Ok(text) => from_text(&text),
        Err(_) => WlanSettings::NotConfigured,
    }
}

/// Reads `[wlan]` from the config file's text. Unlike the rest of init's
/// settings, a problem here is kept and reported rather than replaced by a
/// default: the owner asked for an access point and should learn why there is none.
pub fn from_text(text: &str) -> WlanSettings {
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(_) => {
            return WlanSettings::Invalid(
                "the config file does not parse (gatewayd reports where)".into(),
            )
        }
    };
    match table.get("wlan") {
        None => WlanSettings::NotConfigured,
        Some(toml::Value::Table(t)) => from_table(t).unwrap_or_else(WlanSettings::Invalid),
        Some(_) => WlanSettings::Invalid("wlan must be a section: [wlan]".into()),
    }
}

fn from_table(t: &toml::Table) -> Result<WlanSettings, String> {
    if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key wlan.{k} (known: {})", KEYS.join(", ")));
    }
    let string = |k: &str| match t.get(k) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
        Some(v) => Err(format!("wlan.{k} must be a string, not {}", v.type_str())),
    };
    match t.get("enabled") {
        None | Some(toml::Value::Boolean(true)) => {}
        Some(toml::Value::Boolean(false)) => return Ok(WlanSettings::Disabled),
        Some(v) => {
            return Err(format!(
                "wlan.enabled must be true or false, not {}",
                v.type_str()
            ))
        }
    }
    let (ssid, passphrase) = match (string("ssid")?, string("passphrase")?) {
        (None, None) => return Ok(WlanSettings::NotConfigured),
        (Some(_), None) => return Err("wlan.passphrase is not set".into()),
        (None, Some(_)) => return Err("wlan.ssid is not set".into()),
        (Some(s), Some(p)) => (s, p),
    };
    check_ssid(ssid)?;
    check_passphrase(passphrase)?;
    let channel = channel(t.get("channel"))?;
    let country = string("country")?.map(check_country).transpose()?;
    let radio = string("radio")?.map(check_radio).transpose()?;
    if let (Channel::Fixed(c), None) = (channel, &country) {
        // The world domain lets an access point transmit on 1-11 only.
        if c > 11 {
            return Err(format!(
                "wlan.channel {c} needs wlan.country: without a country only channels 1-11 may be used"
            ));
        }
    }
    Ok(WlanSettings::Enabled(AccessPoint {
        ssid: ssid.into(),
        passphrase: passphrase.into(),
        channel,
        country,
        radio,
    }))
}

fn check_ssid(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 32 {
        return Err(format!("wlan.ssid must be 1-32 bytes (it has {})", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err("wlan.ssid must not contain control characters such as a line break".into());
    }
    Ok(())
}

fn check_passphrase(p: &str) -> Result<(), String> {
    // The passphrase itself never goes into a message.
    if !p.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(
            "wlan.passphrase must be printable ASCII only (letters, digits, punctuation, space)"
                .into(),
        );
    }
    if !(8..=63).contains(&p.len()) {
        return Err(format!(
            "wlan.passphrase must be 8-63 printable ASCII characters (it has {})",
            p.len()
        ));
    }
    Ok(())
}

fn check_country(c: &str) -> Result<String, String> {
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c.into())
    } else {
        Err(format!(
            "wlan.country must be two uppercase letters such as \"DE\" or \"US\", not {c:?}"
        ))
    }
}

fn check_radio(r: &str) -> Result<String, String> {
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(r.into())
    } else {
        Err(format!(
            "wlan.radio must name a radio such as \"phy0\", not {r:?}"
        ))
    }
}

/// 20 MHz channel numbers: 2.4 GHz 1-14; 5 GHz 36-64, 100-144, 149-165.
pub fn valid_channel(c: i64) -> bool {
    (1..=14).contains(&c)
        || ((36..=64).contains(&c) || (100..=144).contains(&c)) && c % 4 == 0
        || (149..=165).contains(&c) && c % 4 == 1
}

/// Channels where an access point must first listen for radar (DFS).
fn dfs(c: u8) -> bool {
    (52..=144).contains(&c)
}

fn channel(v: Option<&toml::Value>) -> Result<Channel, String> {
    let n = match v {
        None => return Ok(Channel::Auto),
        Some(toml::Value::String(s)) if s == "auto" => return Ok(Channel::Auto),
        Some(toml::Value::Integer(n)) => Some(*n),
        // A quoted number ("6") is what the owner meant.
        Some(toml::Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if valid_channel(n) => Ok(Channel::Fixed(n as u8)),
        _ => Err(format!(
            "wlan.channel must be 1-14, a 5 GHz channel (36-64 or 100-144 in steps of 4, 149-165) or \"auto\", not {}",
            v.map_or(String::new(), |v| v.to_string())
        )),
    }
}

/// hostapd's configuration for `ap` on interface `iface`.
pub fn hostapd_conf(ap: &AccessPoint, iface: &str) -> String {
    let mut c = String::new();
    let mut line = |s: &str| {
        c.push_str(s);
        c.push('\n');
    };
    line("# Written by gatehouse-init from [wlan] in /data/gatehouse.toml; edits here are lost.");
    line(&format!("interface={iface}"));
    line(&format!("bridge={}", crate::net::BRIDGE));
    line("driver=nl80211");
    line(&format!("ctrl_interface={CTRL_DIR}"));
    // Standard output only: init puts it on the console. There is no syslog.
    line("logger_syslog=0");
    line("logger_stdout=-1");
    line("logger_stdout_level=2");
    if ap.ssid.is_ascii() {
        line(&format!("ssid={}", ap.ssid));
    } else {
        // hostapd reads the line as bytes; hex keeps UTF-8 intact.
        let hex: String = ap.ssid.bytes().map(|b| format!("{b:02x}")).collect();
        line(&format!("ssid2={hex}"));
        line("utf8_ssid=1");
    }
    if let Some(cc) = &ap.country {
        line(&format!("country_code={cc}"));
        line("ieee80211d=1");
    }
    match ap.channel {
        Channel::Auto => {
            line("hw_mode=g");
            line("channel=acs_survey");
        }
        // Channel 14 (Japan) is 802.11b only.
        Channel::Fixed(14) => {
            line("hw_mode=b");
            line("channel=14");
        }
        Channel::Fixed(ch) if ch <= 14 => {
            line("hw_mode=g");
            line(&format!("channel={ch}"));
        }
        Channel::Fixed(ch) => {
            line("hw_mode=a");
            line(&format!("channel={ch}"));
            line("ieee80211ac=1");
            if dfs(ch) {
                line("ieee80211h=1");
            }
        }
    }
    if ap.channel != Channel::Fixed(14) {
        line("ieee80211n=1");
    }
    line("wmm_enabled=1");
    // WPA2-PSK and WPA3-SAE on one network with one passphrase. Management
    // frame protection is optional for WPA2 clients and required for SAE ones.
    line("auth_algs=1");
    line("wpa=2");
    line("wpa_key_mgmt=WPA-PSK SAE");
    line("rsn_pairwise=CCMP");
    line(&format!("wpa_passphrase={}", ap.passphrase));
    line("ieee80211w=1");
    line("sae_require_mfp=1");
    c
}

/// A radio and the network interface hostapd runs the access point on.
#[derive(Debug, Clone, PartialEq)]
pub struct Radio {
    pub phy: String,
    pub iface: String,
}

/// The radio to use: the one named, else the first (by phy index) that has a
/// network interface. Err says why there is none, for the status line.
pub fn find_radio(sys: &Path, wanted: Option<&str>) -> Result<Radio, String> {
    // By wiphy index, the order the kernel registered the radios in.
    let class = sys.join("class/ieee80211");
    let mut phys: Vec<(u32, String)> = std::fs::read_dir(&class)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let idx = std::fs::read_to_string(class.join(&name).join("index"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u32::MAX);
            (idx, name)
        })
        .collect();
    phys.sort();
    // Network interfaces name their radio through the phy80211 link.
    let mut ifaces: Vec<(String, String)> = std::fs::read_dir(sys.join("class/net"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let phy = std::fs::read_link(e.path().join("phy80211")).ok()?;
                    let phy = phy.file_name()?.to_string_lossy().into_owned();
                    Some((phy, e.file_name().to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    ifaces.sort();
    let iface_of = |phy: &str| {
        ifaces.iter().find(|(p, _)| p == phy).map(|(_, i)| Radio {
            phy: phy.into(),
            iface: i.clone(),
        })
    };
    match wanted {
        Some(w) if !phys.iter().any(|(_, p)| p == w) => {
            Err(format!("no radio: wlan.radio {w:?} not found"))
        }
        Some(w) => iface_of(w).ok_or_else(|| format!("no radio: {w} has no network interface")),
        None if phys.is_empty() => Err("no radio".into()),
        None => phys
            .iter()
            .find_map(|(_, p)| iface_of(p))
            .ok_or_else(|| format!("no radio: {} has no network interface", phys[0].1)),
    }
}

/// The files `poll` reads and writes; tests point them into a scratch directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub sys: PathBuf,
    pub conf: PathBuf,
    pub status: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            sys: "/sys".into(),
            conf: HOSTAPD_CONF.into(),
            status: STATUS_FILE.into(),
        }
    }
}

/// What `poll` remembers between calls.
#[derive(Debug, Default)]
pub struct WlanState {
    status: String,
    /// When the current hostapd.conf was written; None while there is none.
    since: Option<Instant>,
    up: bool,
    /// "auto" did not bring the access point up: use `FALLBACK_CHANNEL`.
    fallback: bool,
}

impl WlanState {
    /// New settings: a newly chosen channel or radio gets a fresh try at "auto". Otherwise
    /// the fallback stays: it is about the radio, not the network's name or passphrase.
    pub fn new_settings(&mut self, old: &WlanSettings, new: &WlanSettings) {
        let placement = |s: &WlanSettings| match s {
            WlanSettings::Enabled(ap) => Some((ap.channel, ap.radio.clone())),
            _ => None,
        };
        if placement(old) != placement(new) {
            self.fallback = false;
        }
    }
}

/// What the main loop must do after a `poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// hostapd.conf was replaced or removed: a running hostapd must be
    /// restarted (or stopped) to follow it. hostapd reads it only at start.
    RestartHostapd,
}

/// One look at the radios and the settings (every ~0.5 s from PID 1).
pub fn poll(cfg: &WlanSettings, st: &mut WlanState) -> Change {
    poll_with(&Paths::default(), cfg, st, Instant::now())
}

pub fn poll_with(p: &Paths, cfg: &WlanSettings, st: &mut WlanState, now: Instant) -> Change {
    let ap = match cfg {
        WlanSettings::NotConfigured => {
            set_status(
                p,
                st,
                "off: no access point until wlan.ssid and wlan.passphrase are set",
            );
            return remove_conf(p, st);
        }
        WlanSettings::Disabled => {
            set_status(p, st, "off: disabled (wlan.enabled = false)");
            return remove_conf(p, st);
        }
        WlanSettings::Invalid(why) => {
            set_status(p, st, &format!("invalid: {why}; access point not started"));
            return remove_conf(p, st);
        }
        WlanSettings::Enabled(ap) => ap,
    };
    let radio = match find_radio(&p.sys, ap.radio.as_deref()) {
        Ok(r) => r,
        Err(why) => {
            set_status(p, st, &why);
            st.fallback = false;
            return remove_conf(p, st);
        }
    };
    let mut ap = ap.clone();
    if st.fallback {
        ap.channel = Channel::Fixed(FALLBACK_CHANNEL);
    }
    let text = hostapd_conf(&ap, &radio.iface);
    let what = format!(
        "{} on {} ({}), channel {}",
        ap.ssid, radio.iface, radio.phy, ap.channel
    );
    let mut change = Change::None;
    if std::fs::read_to_string(&p.conf).ok().as_deref() != Some(text.as_str()) {
        let replaced = p.conf.exists();
        if let Some(dir) = p.conf.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = crate::atomic_file::write_private(&p.conf, text.as_bytes()) {
            set_status(
                p,
                st,
                &format!("failed: cannot write {}: {e}", p.conf.display()),
            );
            return Change::None;
        }
        log!(
            "wlan: access point {} on {} ({})",
            ap.ssid,
            radio.iface,
            radio.phy
        );
        st.status = format!("starting: {what}");
        write_status(p, &st.status);
        st.since = Some(now);
        st.up = false;
        if replaced {
            change = Change::RestartHostapd;
        }
    }
    let up = std::fs::read_to_string(p.sys.join("class/net").join(&radio.iface).join("operstate"))
        .is_ok_and(|s| s.trim() == "up");
    if up {
        if !st.up {
            st.up = true;
            let ch = match ap.channel {
                Channel::Auto => {
                    current_channel(&radio.iface).map_or("auto".into(), |c| format!("{c} (auto)"))
                }
                c => c.to_string(),
            };
            set_status(
                p,
                st,
                &format!(
                    "up: {} on {} ({}), channel {ch}",
                    ap.ssid, radio.iface, radio.phy
                ),
            );
        }
        return change;
    }
    if st.up {
        // It was up and went down: hostapd restarting, or the radio failing.
        st.up = false;
        st.since = Some(now);
        set_status(p, st, &format!("starting: {what} (was up, went down)"));
    }
    let limit = match ap.channel {
        Channel::Fixed(c) if dfs(c) => UP_WITHIN_DFS,
        _ => UP_WITHIN,
    };
    let late = st.since.is_some_and(|t| now.duration_since(t) >= limit);
    if late && ap.channel == Channel::Auto {
        log!(
            "wlan: automatic channel selection did not bring {} up within {} s; using channel {FALLBACK_CHANNEL}",
            radio.iface,
            limit.as_secs()
        );
        st.fallback = true;
        // The next poll writes the new file and asks for the restart.
        return change;
    }
    if late {
        set_status(
            p,
            st,
            &format!(
                "failed: {what}: not up after {} s; see the hostapd lines in the log",
                limit.as_secs()
            ),
        );
    }
    change
}

/// The channel an interface is on, from `iw` (best effort, for the status line).
fn current_channel(iface: &str) -> Option<u32> {
    let out = std::process::Command::new("/usr/sbin/iw")
        .args(["dev", iface, "info"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        l.trim()
            .strip_prefix("channel ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

fn remove_conf(p: &Paths, st: &mut WlanState) -> Change {
    st.since = None;
    st.up = false;
    match std::fs::remove_file(&p.conf) {
        Ok(()) => Change::RestartHostapd,
        Err(_) => Change::None,
    }
}

/// Logs and publishes a new status line; the same line again does nothing.
fn set_status(p: &Paths, st: &mut WlanState, status: &str) {
    if st.status != status {
        st.status = status.to_string();
        log!("wlan: {status}");
        write_status(p, status);
    }
}

fn write_status(p: &Paths, status: &str) {
    if let Some(dir) = p.status.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::atomic_file::write(&p.status, format!("{status}\n").as_bytes()) {
        log!("wlan: {}: {e}", p.status.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_watch_sees_writes_replacements_and_removal() {
        let dir = std::env::temp_dir().join(format!("wlan-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gatehouse.toml");
        let _ = std::fs::remove_file(&path);
        let mut w = FileWatch::new(&path);
        assert!(!w.changed(), "no file, no change");
        std::fs::write(&path, "[wlan]\nssid = \"a\"\n").unwrap();
        assert!(w.changed(), "created");
        assert!(!w.changed(), "reported once");
        // Replaced by rename, as gatewayd writes it: a new inode even at the same size.
        let tmp = dir.join("gatehouse.toml.tmp");
        std::fs::write(&tmp, "[wlan]\nssid = \"b\"\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert!(w.changed(), "replaced");
        std::fs::remove_file(&path).unwrap();
        assert!(w.changed(), "removed");
        assert!(!w.changed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    const OK: &str = "[wlan]\nssid = \"Home\"\npassphrase = \"correct horse\"\n";

    fn ap(text: &str) -> AccessPoint {
        match from_text(text) {
            WlanSettings::Enabled(ap) => ap,
            other => panic!("not enabled: {other:?}"),
        }
    }

    #[test]
    fn channel_fallback_survives_a_new_name_not_a_new_channel() {
        let auto = from_text(OK);
        let renamed = from_text(&OK.replace("Home", "Cabin"));
        let fixed = from_text(&format!("{OK}channel = 11\n"));
        let mut st = WlanState {
            fallback: true,
            ..WlanState::default()
        };
        st.new_settings(&auto, &renamed);
        assert!(
            st.fallback,
            "same radio and channel: the radio still cannot do auto"
        );
        st.new_settings(&renamed, &fixed);
        assert!(!st.fallback, "a new channel gets its own try");
    }

    fn invalid(text: &str) -> String {
        match from_text(text) {
            WlanSettings::Invalid(why) => why,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn no_access_point_until_ssid_and_passphrase_are_set() {
        assert_eq!(from_text(""), WlanSettings::NotConfigured);
        assert_eq!(
            from_text("[system]\nhostname = \"gw\"\n"),
            WlanSettings::NotConfigured
        );
        assert_eq!(
            from_text("[wlan]\ncountry = \"DE\"\n"),
            WlanSettings::NotConfigured
        );
        assert!(invalid("[wlan]\nssid = \"Home\"\n").contains("wlan.passphrase is not set"));
        assert!(invalid("[wlan]\npassphrase = \"12345678\"\n").contains("wlan.ssid is not set"));
        assert_eq!(
            from_text(&format!("{OK}enabled = false\n")),
            WlanSettings::Disabled
        );
    }

    #[test]
    fn mixed_wpa2_wpa3_config() {
        let a = ap(&format!("{OK}channel = 11\ncountry = \"DE\"\n"));
        let c = hostapd_conf(&a, "wlan0");
        for want in [
            "interface=wlan0\n",
            "bridge=br-lan\n",
            "driver=nl80211\n",
            "ctrl_interface=/run/hostapd\n",
            "ssid=Home\n",
            "country_code=DE\n",
            "ieee80211d=1\n",
            "hw_mode=g\n",
            "channel=11\n",
            "ieee80211n=1\n",
            "wpa=2\n",
            "wpa_key_mgmt=WPA-PSK SAE\n",
            "rsn_pairwise=CCMP\n",
            "wpa_passphrase=correct horse\n",
            "ieee80211w=1\n",
            "sae_require_mfp=1\n",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        // hostapd has no quoting: every line is one key=value.
        assert!(c.lines().all(|l| l.starts_with('#') || l.contains('=')));
        assert!(!format!("{a:?}").contains("correct horse"));
    }

    #[test]
    fn auto_channel_is_acs_in_2_4_ghz() {
        let a = ap(OK);
        assert_eq!(a.channel, Channel::Auto);
        assert_eq!(
            ap(&format!("{OK}channel = \"auto\"\n")).channel,
            Channel::Auto
        );
        let c = hostapd_conf(&a, "wlan0");
        assert!(c.contains("hw_mode=g\nchannel=acs_survey\n"), "{c}");
        assert!(!c.contains("country_code"), "{c}");
    }

    #[test]
    fn five_ghz_and_dfs_channels() {
        let c = hostapd_conf(
            &ap(&format!("{OK}channel = 100\ncountry = \"DE\"\n")),
            "wlan0",
        );
        assert!(
            c.contains("hw_mode=a\nchannel=100\nieee80211ac=1\nieee80211h=1\n"),
            "{c}"
        );
        let c = hostapd_conf(
            &ap(&format!("{OK}channel = 36\ncountry = \"US\"\n")),
            "wlan0",
        );
        assert!(
            c.contains("channel=36\n") && !c.contains("ieee80211h"),
            "{c}"
        );
        let c = hostapd_conf(
            &ap(&format!("{OK}channel = \"14\"\ncountry = \"JP\"\n")),
            "wlan0",
        );
        assert!(
            c.contains("hw_mode=b\nchannel=14\n") && !c.contains("ieee80211n"),
            "{c}"
        );
        // Outside 1-11 the radio needs to know the country.
        assert!(invalid(&format!("{OK}channel = 36\n")).contains("needs wlan.country"));
        assert!(invalid(&format!("{OK}channel = 13\n")).contains("needs wlan.country"));
    }

    #[test]
    fn channel_numbers() {
        for good in [1, 6, 11, 13, 14, 36, 40, 64, 100, 144, 149, 165] {
            assert!(valid_channel(good), "{good}");
        }
        for bad in [0, 15, 35, 37, 65, 96, 145, 150, 166, 200, -1] {
            assert!(!valid_channel(bad), "{bad}");
        }
        for bad in ["0", "15", "\"7a\"", "\"\"", "6.0", "true"] {
            let why = invalid(&format!("{OK}channel = {bad}\n"));
            assert!(why.starts_with("wlan.channel must be"), "{why}");
        }
    }

    #[test]
    fn ssid_with_a_line_break_is_rejected_and_utf8_is_hex() {
        let why = invalid("[wlan]\nssid = \"Home\\nchannel=1\"\npassphrase = \"12345678\"\n");
        assert!(why.contains("control characters"), "{why}");
        assert!(invalid("[wlan]\nssid = \"\"\npassphrase = \"12345678\"\n").contains("1-32 bytes"));
        let long = "x".repeat(33);
        assert!(invalid(&format!(
            "[wlan]\nssid = \"{long}\"\npassphrase = \"12345678\"\n"
        ))
        .contains("(it has 33)"));
        // 32 bytes, counted in bytes: 16 two-byte characters fit, 17 do not.
        ap(&format!(
            "[wlan]\nssid = \"{}\"\npassphrase = \"12345678\"\n",
            "é".repeat(16)
        ));
        let c = hostapd_conf(
            &ap("[wlan]\nssid = \"Café\"\npassphrase = \"12345678\"\n"),
            "wlan0",
        );
        assert!(c.contains("ssid2=436166c3a9\nutf8_ssid=1\n"), "{c}");
        assert!(!c.contains("\nssid="), "{c}");
    }

    #[test]
    fn passphrase_rules_never_echo_it() {
        let why = invalid("[wlan]\nssid = \"Home\"\npassphrase = \"secret7\"\n");
        assert!(
            why.contains("8-63 printable ASCII characters (it has 7)"),
            "{why}"
        );
        assert!(!why.contains("secret7"));
        let long = "a".repeat(64);
        assert!(invalid(&format!(
            "[wlan]\nssid = \"Home\"\npassphrase = \"{long}\"\n"
        ))
        .contains("(it has 64)"));
        assert!(
            invalid("[wlan]\nssid = \"Home\"\npassphrase = \"pässwort1\"\n")
                .contains("printable ASCII only")
        );
        assert!(
            invalid("[wlan]\nssid = \"Home\"\npassphrase = \"tab\\there1\"\n")
                .contains("printable ASCII only")
        );
        ap(&format!(
            "[wlan]\nssid = \"Home\"\npassphrase = \"{}\"\n",
            "a".repeat(63)
        ));
    }

    #[test]
    fn country_radio_and_keys() {
        for bad in ["de", "DEU", "D", "", "1A"] {
            let why = invalid(&format!("{OK}country = \"{bad}\"\n"));
            assert!(why.contains("two uppercase letters"), "{why}");
        }
        assert_eq!(
            ap(&format!("{OK}country = \"GB\"\n")).country.as_deref(),
            Some("GB")
        );
        assert_eq!(
            ap(&format!("{OK}radio = \"phy1\"\n")).radio.as_deref(),
            Some("phy1")
        );
        assert!(invalid(&format!("{OK}radio = \"../x\"\n")).contains("wlan.radio"));
        assert!(invalid(&format!("{OK}pasword = \"x\"\n")).contains("unknown key wlan.pasword"));
        assert!(invalid("[wlan]\nssid = 5\n").contains("wlan.ssid must be a string"));
        assert!(invalid("[wlan]\nenabled = \"yes\"\n").contains("true or false"));
        assert!(invalid("wlan = 1\n").contains("section"));
        assert!(invalid("[wlan\n").contains("does not parse"));
    }

    #[test]
    fn readme_example_is_valid() {
        // The README's example config (its first toml block) sets up an access point.
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").expect("README has a toml block") + 8;
        let len = readme[start..].find("```").unwrap();
        let a = ap(&readme[start..start + len]);
        assert_eq!(
            (a.channel, a.country.as_deref()),
            (Channel::Auto, Some("DE"))
        );
    }

    /// A scratch /sys and /run for `poll_with`.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir().join(format!("gh-wlan-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(d.join("sys/class/net")).unwrap();
            std::fs::create_dir_all(d.join("sys/class/ieee80211")).unwrap();
            Self(d)
        }
        fn paths(&self) -> Paths {
            Paths {
                sys: self.0.join("sys"),
                conf: self.0.join("run/hostapd.conf"),
                status: self.0.join("run/wlan"),
            }
        }
        fn radio(&self, idx: u32, iface: &str) {
            let phy = self.0.join(format!("sys/class/ieee80211/phy{idx}"));
            std::fs::create_dir_all(&phy).unwrap();
            std::fs::write(phy.join("index"), format!("{idx}\n")).unwrap();
            let net = self.0.join("sys/class/net").join(iface);
            std::fs::create_dir_all(&net).unwrap();
            std::os::unix::fs::symlink(&phy, net.join("phy80211")).unwrap();
            std::fs::write(net.join("operstate"), "down\n").unwrap();
        }
        fn set_up(&self, iface: &str, up: bool) {
            let state = if up { "up\n" } else { "down\n" };
            std::fs::write(
                self.0.join("sys/class/net").join(iface).join("operstate"),
                state,
            )
            .unwrap();
        }
        fn unplug(&self, idx: u32, iface: &str) {
            std::fs::remove_dir_all(self.0.join(format!("sys/class/ieee80211/phy{idx}"))).unwrap();
            std::fs::remove_dir_all(self.0.join("sys/class/net").join(iface)).unwrap();
        }
        fn status(&self) -> String {
            std::fs::read_to_string(self.0.join("run/wlan")).unwrap_or_default()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn finds_the_first_radio_or_the_named_one() {
        let s = Scratch::new("find");
        let sys = s.paths().sys;
        assert_eq!(find_radio(&sys, None), Err("no radio".into()));
        s.radio(10, "wlan10");
        s.radio(2, "wlan2");
        let r = find_radio(&sys, None).unwrap();
        assert_eq!((r.phy.as_str(), r.iface.as_str()), ("phy2", "wlan2"));
        assert_eq!(find_radio(&sys, Some("phy10")).unwrap().iface, "wlan10");
        assert!(find_radio(&sys, Some("phy7"))
            .unwrap_err()
            .contains("\"phy7\" not found"));
    }

    #[test]
    fn poll_follows_the_radio() {
        let s = Scratch::new("poll");
        let p = s.paths();
        let cfg = from_text(&format!("{OK}channel = 6\n"));
        let mut st = WlanState::default();
        let t0 = Instant::now();
        assert_eq!(poll_with(&p, &cfg, &mut st, t0), Change::None);
        assert_eq!(s.status(), "no radio\n");
        assert!(!p.conf.exists());
        // A radio appears (modprobe, USB): the file is written, hostapd starts on it.
        s.radio(0, "wlan0");
        assert_eq!(poll_with(&p, &cfg, &mut st, t0), Change::None);
        let conf = std::fs::read_to_string(&p.conf).unwrap();
        assert!(conf.contains("interface=wlan0\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p.conf).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(s.status(), "starting: Home on wlan0 (phy0), channel 6\n");
        assert_eq!(poll_with(&p, &cfg, &mut st, t0), Change::None);
        s.set_up("wlan0", true);
        poll_with(&p, &cfg, &mut st, t0);
        assert_eq!(s.status(), "up: Home on wlan0 (phy0), channel 6\n");
        // Someone deleted the file: it comes back.
        std::fs::remove_file(&p.conf).unwrap();
        poll_with(&p, &cfg, &mut st, t0);
        assert_eq!(std::fs::read_to_string(&p.conf).unwrap(), conf);
        // Unplugged: reported, and the file goes so hostapd stops.
        s.unplug(0, "wlan0");
        assert_eq!(poll_with(&p, &cfg, &mut st, t0), Change::RestartHostapd);
        assert!(!p.conf.exists());
        assert_eq!(s.status(), "no radio\n");
    }

    #[test]
    fn a_radio_that_never_comes_up_is_reported_and_auto_falls_back() {
        let s = Scratch::new("late");
        let p = s.paths();
        s.radio(0, "wlan0");
        let fixed = from_text(&format!("{OK}channel = 1\n"));
        let mut st = WlanState::default();
        let t0 = Instant::now();
        poll_with(&p, &fixed, &mut st, t0);
        poll_with(&p, &fixed, &mut st, t0 + UP_WITHIN);
        assert!(s
            .status()
            .starts_with("failed: Home on wlan0 (phy0), channel 1: not up after 90 s"));

        let auto = from_text(OK);
        let mut st = WlanState::default();
        std::fs::remove_file(&p.conf).unwrap();
        poll_with(&p, &auto, &mut st, t0);
        assert!(std::fs::read_to_string(&p.conf)
            .unwrap()
            .contains("channel=acs_survey"));
        poll_with(&p, &auto, &mut st, t0 + UP_WITHIN);
        assert_eq!(
            poll_with(&p, &auto, &mut st, t0 + UP_WITHIN),
            Change::RestartHostapd
        );
        assert!(std::fs::read_to_string(&p.conf)
            .unwrap()
            .contains("hw_mode=g\nchannel=6\n"));
        assert_eq!(s.status(), "starting: Home on wlan0 (phy0), channel 6\n");
    }

    #[test]
    fn invalid_settings_are_reported_and_start_nothing() {
        let s = Scratch::new("invalid");
        let p = s.paths();
        s.radio(0, "wlan0");
        let mut st = WlanState::default();
        let cfg = from_text("[wlan]\nssid = \"Home\"\npassphrase = \"short77\"\n");
        poll_with(&p, &cfg, &mut st, Instant::now());
        assert!(!p.conf.exists());
        assert_eq!(
            s.status(),
            "invalid: wlan.passphrase must be 8-63 printable ASCII characters (it has 7); access point not started\n"
        );
        poll_with(&p, &WlanSettings::NotConfigured, &mut st, Instant::now());
        assert!(s.status().starts_with("off: no access point until"));
    }
}
