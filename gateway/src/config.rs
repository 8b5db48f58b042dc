//! gatewayd configuration: one TOML file on the data partition.
//!
//! Every field has a default, so an absent file (or an absent section) yields a
//! working router. A file that does not parse is reported with its line and
//! column, and the daemon carries on with the defaults: a typo must never leave
//! the LAN without DHCP.

use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;

pub mod edit;
mod lenient;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The file's schema version; always `SCHEMA` once loaded (older files are migrated).
    pub schema: u32,
    pub system: System,
    pub lan: Lan,
    pub wan: Wan,
    pub dhcp: Dhcp,
    pub dns: Dns,
    pub nat: Nat,
    pub ui: Ui,
    pub traffic: Traffic,
    pub capture: Capture,
    pub wlan: Wlan,
    /// Names the owner gave devices in the UI: `[[devices]]` tables.
    pub devices: Vec<Device>,
}

/// A device the owner named. The name is shown instead of the one the device sent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub mac: String,
    pub name: String,
}

impl Config {
    /// The owner's name for the device with this MAC, if they gave it one.
    pub fn device_name(&self, mac: &[u8; 6]) -> Option<&str> {
        self.devices
            .iter()
            .find(|d| parse_mac(&d.mac).as_ref() == Some(mac))
            .map(|d| d.name.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct System {
    pub hostname: String,
    /// DNS domain for LAN names (`<host>.<domain>`).
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Lan {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The ethernet ports init bridges into `interface`, by kernel name ("eth1") or MAC.
    /// Empty: every port but the WAN.
    pub ports: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Wan {
    pub interface: String,
    /// "dhcp" (busybox udhcpc) or "static" (`address`, `prefix_len`, `gateway`, `dns`).
    pub mode: String,
    /// The ethernet port init renames to `interface`, by kernel name ("eth0") or MAC.
    /// None: the automatic rule (the first port with a carrier and a DHCP offer).
    pub port: Option<String>,
    /// mode = "static": the WAN address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    /// mode = "static": the WAN subnet's prefix length, 1..=32; default 24.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
    /// mode = "static": the upstream router, inside `address`/`prefix_len`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// mode = "static": the upstream's resolvers (what DHCP would hand out); `[dns] upstreams`
    /// still wins when set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<Ipv4Addr>,
}

/// `[wan] prefix_len` when mode = "static" leaves it out.
pub const WAN_STATIC_PREFIX_LEN: u8 = 24;

/// The settings of `[wan] mode = "static"`, resolved (defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct StaticWan {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
}

impl Wan {
    pub fn is_static(&self) -> bool {
        self.mode == "static"
    }

    /// The static addressing in force: Some for mode = "static" with an address and a gateway
    /// (which validation requires), else None.
    pub fn static_addressing(&self) -> Option<StaticWan> {
        if !self.is_static() {
            return None;
        }
        Some(StaticWan {
            address: self.address?,
            prefix_len: self.prefix_len.unwrap_or(WAN_STATIC_PREFIX_LEN),
            gateway: self.gateway?,
            dns: self.dns.clone(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Dhcp {
    pub enabled: bool,
    pub range_start: Ipv4Addr,
    pub range_end: Ipv4Addr,
    pub lease_secs: u32,
    /// Upper bound on stored leases; the oldest expired ones go first.
    pub max_leases: usize,
    pub static_leases: Vec<StaticLease>,
    /// T1 (option 58), seconds; default half the lease time.
    pub renew_secs: Option<u32>,
    /// T2 (option 59), seconds; default 7/8 of the lease time.
    pub rebind_secs: Option<u32>,
    /// Before offering an address the client never had, ping it for this long
    /// (milliseconds); an address that answers is skipped. 0 disables.
    pub conflict_check_ms: u32,
    /// Interface MTU (option 26), sent to clients that ask for it.
    pub mtu: Option<u16>,
    /// NTP servers (option 42), sent to clients that ask for them.
    pub ntp_servers: Vec<Ipv4Addr>,
    /// Classless static routes (option 121, RFC 3442), sent to clients that ask
    /// for them, with a default route via the router added unless one is listed:
    /// `routes = [{ destination = "10.8.0.0/16", gateway = "192.168.1.2" }]`.
    pub routes: Vec<DhcpRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DhcpRoute {
    /// "a.b.c.d/len", host bits zero.
    pub destination: String,
    pub gateway: Ipv4Addr,
}

impl DhcpRoute {
    /// The destination as (network, prefix length), if well-formed.
    pub fn network(&self) -> Option<(Ipv4Addr, u8)> {
        let (addr, len) = self.destination.split_once('/')?;
        let addr: Ipv4Addr = addr.trim().parse().ok()?;
        let len: u8 = len.trim().parse().ok().filter(|l| *l <= 32)?;
        (u32::from(addr) & !prefix_mask(len) == 0).then_some((addr, len))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticLease {
    pub mac: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Dns {
    pub enabled: bool,
    /// Upstream resolvers. Empty means "use what WAN DHCP hands out".
    pub upstreams: Vec<Ipv4Addr>,
    /// DNS-over-TLS resolvers (RFC 7858). When any is set, queries go only to
    /// these, in order with failover, and never in clear text to `upstreams`.
    pub tls_upstreams: Vec<TlsUpstream>,
    /// Extra PEM CA certificates trusted for `tls_upstreams`, besides the
    /// built-in web PKI roots (private resolvers, tests).
    pub tls_ca_file: Option<String>,
    /// Positive answers are cached at least this long (seconds), whatever
    /// upstream says (a TTL of 0 still means "do not cache").
    pub min_ttl: u32,
    /// Nothing is cached longer than this (seconds), negative answers included.
    pub max_ttl: u32,
    /// Memory bound of the answer cache: bytes of stored messages plus a fixed
    /// per-entry overhead. 0 disables caching.
    pub cache_bytes: usize,
    /// Static names in the local domain: `{ name = "nas", ip = "192.168.1.5" }`.
    pub hosts: Vec<DnsHost>,
    /// Blocklists on the data partition. `path` is a file, or a directory whose
    /// regular files (not starting with '.') are all read. Each line is either
    /// hosts format (`0.0.0.0 ads.example.com`) or a bare domain; `#` starts a
    /// comment. A listed name blocks its subdomains too.
    pub blocklists: Vec<Blocklist>,
    /// "null" (A 0.0.0.0 / AAAA ::) or "nxdomain".
    pub block_mode: String,
    /// UDP sockets (SO_REUSEPORT), each with its own thread. 0: one per CPU.
    pub udp_workers: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsUpstream {
    pub address: Ipv4Addr,
    /// Name the resolver's certificate must carry.
    pub name: String,
    #[serde(default = "default_dot_port")]
    pub port: u16,
}

fn default_dot_port() -> u16 {
    853
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsHost {
    /// A label ("nas"), or a name already ending in the local domain.
    pub name: String,
    pub ip: Ipv4Addr,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Blocklist {
    pub name: String,
    pub path: String,
    /// A disabled list stays configured but is not loaded.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Nat {
    pub enabled: bool,
    pub queue_num: u16,
    /// Which remotes may send to a mapping: "endpoint-independent" (any, full cone),
    /// "address-dependent" or "address-and-port-dependent" (only where the inside host sent).
    pub filtering: crate::nat::mapping::Filtering,
    /// Static port forwards: `[[nat.forwards]]` tables. gatewayd re-reads these (and only
    /// these) from the file on SIGHUP; every other setting still needs a restart.
    pub forwards: Vec<Forward>,
}

/// Inbound traffic to `external` on the WAN address goes to `inside`; a range maps 1:1 onto
/// consecutive inside ports starting at `inside`'s port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    pub protocol: ForwardProtocol,
    /// One port (`8080`) or a range (`"8000-8010"`).
    pub external: PortRange,
    /// "192.168.1.20:80": a LAN host and its (first) port.
    pub inside: SocketAddrV4,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardProtocol {
    Tcp,
    Udp,
    Both,
}

/// An inclusive port range, written as a number or as "first-last".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    fn overlaps(&self, o: &PortRange) -> bool {
        self.first <= o.last && o.first <= self.last
    }
}

impl std::str::FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let port = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{s:?} is not a port (1-65535) or a range \"first-last\""))
        };
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        if first > last {
            return Err(format!("port range {s:?} ends before it starts"));
        }
        Ok(Self { first, last })
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            ser.serialize_u16(self.first)
        } else {
            ser.serialize_str(&format!("{}-{}", self.first, self.last))
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a port (8080) or a range (\"8000-8010\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PortRange, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PortRange, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
        }
        de.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ui {
    pub port: u16,
    /// HTTPS with the router's self-signed certificate, on the LAN address too; 0: off.
    pub https_port: u16,
}

/// Per-device traffic history (100 ms buckets).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Traffic {
    pub enabled: bool,
    /// Memory bound for the history; the oldest data goes first when it is hit.
    pub memory_bytes: usize,
    /// How far back the history reaches at most.
    pub retention_hours: u32,
}

/// Per-client packet capture rings (LAN-side view of NATed traffic).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Capture {
    pub enabled: bool,
    pub per_client_bytes: usize,
    pub total_bytes: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
    /// MACs (aa:bb:cc:dd:ee:ff) whose packets are never captured.
    pub disabled_clients: Vec<String>,
}

/// The WLAN access point. init reads, validates and applies this section (hostapd);
/// gatewayd only accepts it. Its values are not validated here on purpose: a bad
/// passphrase must cost the access point only, never the rest of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Wlan {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
    /// A channel number, or "auto".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<WlanChannel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The radio to use ("phy1"); unset: the first one found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub radio: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum WlanChannel {
    Number(i64),
    Name(String),
}

impl Default for Wlan {
    fn default() -> Self {
        Self {
            enabled: true,
            ssid: None,
            passphrase: None,
            channel: None,
            country: None,
            radio: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            schema: SCHEMA,
            system: System::default(),
            lan: Lan::default(),
            wan: Wan::default(),
            dhcp: Dhcp::default(),
            dns: Dns::default(),
            nat: Nat::default(),
            ui: Ui::default(),
            traffic: Traffic::default(),
            capture: Capture::default(),
            wlan: Wlan::default(),
            devices: Vec::new(),
        }
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            enabled: true,
            memory_bytes: 64 << 20,
            retention_hours: 24,
        }
    }
}

impl Default for Capture {
    fn default() -> Self {
        Self {
            enabled: true,
            per_client_bytes: 5 << 20,
            total_bytes: 64 << 20,
            snaplen: 65535,
            disabled_clients: Vec::new(),
        }
    }
}

impl Default for System {
    fn default() -> Self {
        Self {
            hostname: "gatehouse".into(),
            domain: "lan".into(),
        }
    }
}

impl Default for Lan {
    fn default() -> Self {
        Self {
            interface: "br-lan".into(),
            address: Ipv4Addr::new(192, 168, 1, 1),
            prefix_len: 24,
            ports: Vec::new(),
        }
    }
}

impl Default for Wan {
    fn default() -> Self {
        Self {
            interface: "wan".into(),
            mode: "dhcp".into(),
            port: None,
            address: None,
            prefix_len: None,
            gateway: None,
            dns: Vec::new(),
        }
    }
}

impl Default for Dhcp {
    fn default() -> Self {
        Self {
            enabled: true,
            range_start: Ipv4Addr::new(192, 168, 1, 100),
            range_end: Ipv4Addr::new(192, 168, 1, 249),
            lease_secs: 12 * 3600,
            max_leases: 4096,
            static_leases: Vec::new(),
            renew_secs: None,
            rebind_secs: None,
            conflict_check_ms: 300,
            mtu: None,
            ntp_servers: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            enabled: true,
            upstreams: Vec::new(),
            tls_upstreams: Vec::new(),
            tls_ca_file: None,
            min_ttl: 0,
            max_ttl: 86400,
            cache_bytes: 4 << 20,
            hosts: Vec::new(),
            blocklists: Vec::new(),
            block_mode: "null".into(),
            udp_workers: 0,
        }
    }
}

impl Default for Nat {
    fn default() -> Self {
        Self {
            enabled: true,
            queue_num: 0,
            filtering: Default::default(),
            forwards: Vec::new(),
        }
    }
}

impl Default for Ui {
    fn default() -> Self {
        Self {
            port: 80,
            https_port: 443,
        }
    }
}

impl Lan {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix_len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = prefix_mask(self.prefix_len);
        u32::from(ip) & m == u32::from(self.address) & m
    }
}

pub fn prefix_mask(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - l),
    }
}

/// A configuration problem, with the position in the file where known.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => write!(f, "{}", self.message),
        }
    }
}

/// Parses and validates configuration text. A file of an older schema is migrated in
/// memory; one newer than `SCHEMA` is refused (`load` and `read` know what to do with it).
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let table = parse_table(text)?;
    let from = schema_of(&table).map_err(plain)?;
    if from > SCHEMA {
        return Err(plain(format!(
            "schema {from} is newer than this release understands ({SCHEMA})"
        )));
    }
    let migrated = migrate(table.clone(), from);
    // While the migrations only renumbered the file, the text itself is still what gets
    // read, so errors keep their line and column.
    let mut cfg = if same_but_schema(&table, &migrated) {
        from_text(text)?
    } else {
        Config::deserialize(toml::Value::Table(migrated)).map_err(|e| plain(e.message()))?
    };
    cfg.schema = SCHEMA;
    validate(&cfg).map_err(plain)?;
    Ok(cfg)
}

fn plain(message: impl Into<String>) -> ConfigError {
    ConfigError {
        line: None,
        column: None,
        message: message.into(),
    }
}

fn positioned(text: &str, e: toml::de::Error) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_col(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    ConfigError {
        line,
        column,
        message: e.message().to_string(),
    }
}

fn parse_table(text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e| positioned(text, e))
}

fn from_text(text: &str) -> Result<Config, ConfigError> {
    toml::from_str(text).map_err(|e| positioned(text, e))
}

/// The config file's schema version this release reads and writes. A file without a
/// top-level `schema` key is schema 0: everything written before schemas existed.
#[cfg(not(feature = "next-schema"))]
pub const SCHEMA: u32 = 1;
/// Test builds only (feature `next-schema`): a release one schema ahead, so the QEMU
/// update test can install it, see the file migrated, roll back and find the old one.
#[cfg(feature = "next-schema")]
pub const SCHEMA: u32 = 2;

/// `MIGRATIONS[n]` turns a schema-n table into a schema-(n+1) one and sets `schema`
/// accordingly. A release that changes the file's meaning bumps `SCHEMA` and appends one
/// pure function here; nothing else changes.
const MIGRATIONS: [fn(&mut toml::Table); SCHEMA as usize] = [
    migrate_0_to_1,
    #[cfg(feature = "next-schema")]
    migrate_1_to_2,
];

fn migrate_0_to_1(t: &mut toml::Table) {
    t.insert("schema".into(), toml::Value::Integer(1));
}

/// The `next-schema` test release's step: the same settings under a new number.
#[cfg(feature = "next-schema")]
fn migrate_1_to_2(t: &mut toml::Table) {
    t.insert("schema".into(), toml::Value::Integer(2));
}

fn schema_of(t: &toml::Table) -> Result<u32, String> {
    match t.get("schema") {
        None => Ok(0),
        Some(toml::Value::Integer(n)) => {
            u32::try_from(*n).map_err(|_| format!("schema {n} must be a whole number from 0"))
        }
        Some(v) => Err(format!(
            "schema must be a whole number, not {}",
            v.type_str()
        )),
    }
}

/// Runs the migrations from schema `from` up to `SCHEMA`.
fn migrate(mut t: toml::Table, from: u32) -> toml::Table {
    for step in MIGRATIONS.iter().skip(from as usize) {
        step(&mut t);
    }
    t
}

fn same_but_schema(a: &toml::Table, b: &toml::Table) -> bool {
    let strip = |t: &toml::Table| {
        let mut t = t.clone();
        t.remove("schema");
        t
    };
    strip(a) == strip(b)
}

/// Where migrations keep the text they replaced (and where an older release, after a
/// rollback, finds a file of its own schema): `<dir>/config-archive/<stem>.schema<N>.toml`.
pub fn archive_path(path: &Path, schema: u32) -> std::path::PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map_or("gatehouse".into(), |s| s.to_string_lossy());
    dir.join("config-archive")
        .join(format!("{stem}.schema{schema}.toml"))
}

/// The file's text rewritten at schema `SCHEMA`. When the migrations only renumbered the
/// file, the owner's text (comments, order) is kept and the key goes on top; otherwise the
/// table is written out afresh.
fn migrated_text(text: &str, old: &toml::Table, new: &toml::Table) -> Result<String, String> {
    if !old.contains_key("schema") && same_but_schema(old, new) {
        return Ok(format!("schema = {SCHEMA}\n\n{text}"));
    }
    toml::to_string(new).map_err(|e| e.to_string())
}

/// What a file resolved to: the config, and for an older schema the text to write back.
struct Resolved {
    config: Config,
    rewrite: Option<(u32, String)>,
}

fn resolve(path: &Path, text: &str) -> Result<Resolved, String> {
    let at = |e: ConfigError| format!("{}: {e}", path.display());
    let table = parse_table(text).map_err(at)?;
    let from = schema_of(&table).map_err(|e| format!("{}: {e}", path.display()))?;
    if from > SCHEMA {
        return Ok(Resolved {
            config: resolve_newer(path, from, table)?,
            rewrite: None,
        });
    }
    let config = parse(text).map_err(at)?;
    let rewrite = if from < SCHEMA {
        let new = migrate(table.clone(), from);
        Some((from, migrated_text(text, &table, &new)?))
    } else {
        None
    };
    Ok(Resolved { config, rewrite })
}

/// We were rolled back to a release older than the file: prefer the copy of the file our
/// schema archived when it was migrated, else read the newer file leaving out what we do
/// not know.
fn resolve_newer(path: &Path, schema: u32, table: toml::Table) -> Result<Config, String> {
    let archived = archive_path(path, SCHEMA);
    match std::fs::read_to_string(&archived) {
        Ok(text) => match parse(&text) {
            Ok(cfg) => {
                eprintln!(
                    "config: {} has schema {schema}, newer than this release's {SCHEMA}; \
                     using {} instead",
                    path.display(),
                    archived.display()
                );
                return Ok(cfg);
            }
            Err(e) => eprintln!(
                "config: archived {} does not parse ({e}); reading the newer file",
                archived.display()
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("config: {}: {e}", archived.display()),
    }
    let (mut cfg, ignored) = lenient::from_table::<Config>(table)
        .map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    cfg.schema = SCHEMA;
    validate(&cfg).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "config: warning: {} has schema {schema}, newer than this release's {SCHEMA}; \
         ignoring what this release does not know: {}",
        path.display(),
        if ignored.is_empty() {
            "nothing".to_string()
        } else {
            ignored.join(", ")
        }
    );
    Ok(cfg)
}

/// Reads the file as `load` does but never writes: for reloads (SIGHUP, restore), which
/// must not race the startup migration. Absent file: defaults.
pub fn read(path: &Path) -> Result<Config, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => resolve(path, &text).map(|r| r.config),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Keeps the old text in the archive, then replaces the file with its migrated text. If
/// the old text cannot be kept, the file stays as it is: an older release must still find
/// a file it can read after a rollback.
fn write_migration(path: &Path, old_text: &str, from: u32, new_text: &str) -> std::io::Result<()> {
    let archived = archive_path(path, from);
    let dir = archived.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::atomic_file::write(dir, &archived, old_text.as_bytes())?;
    let parent = path.parent().unwrap_or(Path::new("."));
    crate::atomic_file::write(parent, path, new_text.as_bytes())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

pub(crate) fn validate(cfg: &Config) -> Result<(), String> {
    let lan = &cfg.lan;
    if !(8..=30).contains(&lan.prefix_len) {
        return Err(format!("lan.prefix_len {} must be 8..=30", lan.prefix_len));
    }
    validate_ports(cfg)?;
    validate_devices(&cfg.devices)?;
    let d = &cfg.dhcp;
    if u32::from(d.range_start) > u32::from(d.range_end) {
        return Err("dhcp.range_start is after dhcp.range_end".into());
    }
    for (name, ip) in [("range_start", d.range_start), ("range_end", d.range_end)] {
        if !lan.contains(ip) {
            return Err(format!("dhcp.{name} {ip} is outside the LAN subnet"));
        }
    }
    if (u32::from(d.range_start)..=u32::from(d.range_end)).contains(&u32::from(lan.address)) {
        return Err("the DHCP range contains the router's own LAN address".into());
    }
    if d.lease_secs < 120 {
        return Err("dhcp.lease_secs must be at least 120".into());
    }
    for s in &d.static_leases {
        if !lan.contains(s.ip) {
            return Err(format!("static lease {} is outside the LAN subnet", s.ip));
        }
        if parse_mac(&s.mac).is_none() {
            return Err(format!(
                "static lease MAC {:?} is not aa:bb:cc:dd:ee:ff",
                s.mac
            ));
        }
    }
    validate_dhcp_extras(d, lan)?;
    validate_dns(&cfg.dns)?;
    validate_traffic(&cfg.traffic, &cfg.capture)?;
    validate_forwards(&cfg.nat.forwards, lan)?;
    validate_wan(&cfg.wan, lan)?;
    Ok(())
}

/// `[wan]`: mode "dhcp" takes none of the static keys; mode "static" needs an address and a
/// gateway inside its subnet, on a subnet apart from the LAN's.
fn validate_wan(w: &Wan, lan: &Lan) -> Result<(), String> {
    let unicast = |ip: Ipv4Addr| {
        !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.is_broadcast())
    };
    match w.mode.as_str() {
        "dhcp" => {
            let set: Vec<&str> = [
                ("wan.address", w.address.is_some()),
                ("wan.prefix_len", w.prefix_len.is_some()),
                ("wan.gateway", w.gateway.is_some()),
                ("wan.dns", !w.dns.is_empty()),
            ]
            .into_iter()
            .filter_map(|(k, on)| on.then_some(k))
            .collect();
            if !set.is_empty() {
                return Err(format!(
                    "{}: only for wan.mode = \"static\" (mode is \"dhcp\")",
                    set.join(", ")
                ));
            }
            return Ok(());
        }
        "static" => {}
        other => return Err(format!("wan.mode {other:?} must be \"dhcp\" or \"static\"")),
    }
    let len = w.prefix_len.unwrap_or(WAN_STATIC_PREFIX_LEN);
    if !(1..=32).contains(&len) {
        return Err(format!("wan.prefix_len {len} must be 1..=32"));
    }
    let Some(addr) = w.address else {
        return Err("wan.mode = \"static\" needs wan.address (and wan.gateway)".into());
    };
    let Some(gw) = w.gateway else {
        return Err("wan.mode = \"static\" needs wan.gateway (the upstream router)".into());
    };
    let mask = prefix_mask(len);
    let net = format!("{}/{len}", Ipv4Addr::from(u32::from(addr) & mask));
    // Network and broadcast addresses exist from /30 down; /31 (RFC 3021) and /32 have none.
    let special = |ip: Ipv4Addr| {
        let host = u32::from(ip) & !mask;
        len <= 30 && (host == 0 || host == !mask)
    };
    for (key, ip) in [("wan.address", addr), ("wan.gateway", gw)] {
        if !unicast(ip) {
            return Err(format!("{key} {ip} is not a unicast address"));
        }
        if special(ip) {
            return Err(format!(
                "{key} {ip} is the network or broadcast address of {net}"
            ));
        }
    }
    if u32::from(gw) & mask != u32::from(addr) & mask {
        return Err(format!(
            "wan.gateway {gw} is outside the WAN subnet {net} (wan.address {addr}, wan.prefix_len {len})"
        ));
    }
    if gw == addr {
        return Err(format!(
            "wan.gateway {gw} is wan.address itself; it must be the upstream router"
        ));
    }
    let common = prefix_mask(len.min(lan.prefix_len));
    if u32::from(addr) & common == u32::from(lan.address) & common {
        return Err(format!(
            "wan.address {addr}/{len} overlaps the LAN {}/{}",
            lan.address, lan.prefix_len
        ));
    }
    if w.dns.len() > 8 {
        return Err("wan.dns: at most 8".into());
    }
    if let Some(bad) = w.dns.iter().find(|d| !unicast(**d)) {
        return Err(format!("wan.dns {bad} is not a unicast address"));
    }
    Ok(())
}

/// Most forwards a config may hold.
pub const MAX_FORWARDS: usize = 256;

/// `[wan] port` and `[lan] ports` name ports as init reads them: a kernel name or a MAC.
fn validate_ports(cfg: &Config) -> Result<(), String> {
    let ok = |p: &str| {
        let mac = p.split(':').count() == 6
            && p.split(':')
                .all(|b| b.len() == 2 && u8::from_str_radix(b, 16).is_ok());
        let name = !p.is_empty()
            && p.len() <= 15
            && p.bytes()
                .all(|c| c.is_ascii_graphic() && c != b'/' && c != b':');
        mac || name
    };
    if let Some(p) = &cfg.wan.port {
        if !ok(p) {
            return Err(format!(
                "wan.port {p:?} is not a port name (\"eth0\") or a MAC"
            ));
        }
        if cfg.lan.ports.iter().any(|l| l.eq_ignore_ascii_case(p)) {
            return Err(format!("wan.port {p:?} is also in lan.ports"));
        }
    }
    for (i, p) in cfg.lan.ports.iter().enumerate() {
        if !ok(p) {
            return Err(format!(
                "lan.ports: {p:?} is not a port name (\"eth1\") or a MAC"
            ));
        }
        if cfg.lan.ports[..i].iter().any(|q| q.eq_ignore_ascii_case(p)) {
            return Err(format!("lan.ports: {p:?} is listed twice"));
        }
    }
    Ok(())
}

fn validate_forwards(fwds: &[Forward], lan: &Lan) -> Result<(), String> {
    if fwds.len() > MAX_FORWARDS {
        return Err(format!("nat.forwards: at most {MAX_FORWARDS}"));
    }
    let (lo, hi) = crate::nat::ROUTER_PORTS;
    let router = PortRange {
        first: lo,
        last: hi,
    };
    let udp = |f: &Forward| f.protocol != ForwardProtocol::Tcp;
    let tcp = |f: &Forward| f.protocol != ForwardProtocol::Udp;
    for (i, f) in fwds.iter().enumerate() {
        let (e, ip) = (f.external, *f.inside.ip());
        let name = format!("nat.forwards[{i}] (external {}-{})", e.first, e.last);
        if !lan.contains(ip) || ip == lan.address {
            return Err(format!(
                "{name}: inside address {ip} is not a LAN host (LAN {}/{})",
                lan.address, lan.prefix_len
            ));
        }
        let host_bits = u32::from(ip) & !prefix_mask(lan.prefix_len);
        if host_bits == 0 || host_bits == !prefix_mask(lan.prefix_len) {
            return Err(format!(
                "{name}: inside address {ip} is the LAN's network or broadcast address"
            ));
        }
        if f.inside.port() == 0 || u32::from(f.inside.port()) + e.len() - 1 > 65535 {
            return Err(format!(
                "{name}: inside port {} cannot take {} port(s)",
                f.inside.port(),
                e.len()
            ));
        }
        if e.overlaps(&router) {
            return Err(format!("{name}: overlaps the router's own ports {lo}-{hi}"));
        }
        if udp(f) && e.first <= 68 && 68 <= e.last {
            return Err(format!("{name}: UDP port 68 is the router's DHCP client"));
        }
        for (j, g) in fwds[..i].iter().enumerate() {
            if e.overlaps(&g.external) && ((udp(f) && udp(g)) || (tcp(f) && tcp(g))) {
                return Err(format!(
                    "{name}: overlaps nat.forwards[{j}] (external {}-{})",
                    g.external.first, g.external.last
                ));
            }
        }
    }
    Ok(())
}

fn validate_traffic(t: &Traffic, c: &Capture) -> Result<(), String> {
    if !(1..=24).contains(&t.retention_hours) {
        return Err("traffic.retention_hours must be 1..=24".into());
    }
    if t.memory_bytes < 1 << 20 {
        return Err("traffic.memory_bytes must be at least 1 MiB".into());
    }
    if c.per_client_bytes < 64 << 10 || c.per_client_bytes > c.total_bytes {
        return Err(
            "capture.per_client_bytes must be at least 64 KiB and at most capture.total_bytes"
                .into(),
        );
    }
    if c.total_bytes > 1 << 30 {
        return Err("capture.total_bytes must be at most 1 GiB".into());
    }
    if !(64..=65535).contains(&c.snaplen) {
        return Err("capture.snaplen must be 64..=65535".into());
    }
    if let Some(bad) = c.disabled_clients.iter().find(|m| parse_mac(m).is_none()) {
        return Err(format!(
            "capture.disabled_clients: {bad:?} is not aa:bb:cc:dd:ee:ff"
        ));
    }
    Ok(())
}

fn validate_devices(devices: &[Device]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for d in devices {
        let mac = parse_mac(&d.mac)
            .ok_or_else(|| format!("devices: {:?} is not aa:bb:cc:dd:ee:ff", d.mac))?;
        if !seen.insert(mac) {
            return Err(format!("devices: {} is named twice", d.mac));
        }
        let name = d.name.trim();
        if name.is_empty() || name.chars().count() > 63 || name.chars().any(char::is_control) {
            return Err(format!(
                "devices: the name for {} must be 1 to 63 characters, without control characters",
                d.mac
            ));
        }
    }
    Ok(())
}

fn validate_dns(d: &Dns) -> Result<(), String> {
    if d.min_ttl > d.max_ttl {
        return Err("dns.min_ttl is larger than dns.max_ttl".into());
    }
    if !matches!(d.block_mode.as_str(), "null" | "nxdomain") {
        return Err(format!(
            "dns.block_mode {:?} must be \"null\" or \"nxdomain\"",
            d.block_mode
        ));
    }
    for h in &d.hosts {
        if !is_dns_name(&h.name) {
            return Err(format!(
                "dns host name {:?} is not a valid DNS name",
                h.name
            ));
        }
    }
    for t in &d.tls_upstreams {
        if !is_dns_name(&t.name) {
            return Err(format!(
                "dns TLS upstream name {:?} is not a valid DNS name",
                t.name
            ));
        }
    }
    for b in &d.blocklists {
        if b.name.is_empty() || b.path.is_empty() {
            return Err("dns blocklists need a name and a path".into());
        }
    }
    Ok(())
}

/// Letters, digits and inner hyphens in labels of 1..=63 bytes, 253 in all.
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn validate_dhcp_extras(d: &Dhcp, lan: &Lan) -> Result<(), String> {
    let t1 = d.renew_secs.unwrap_or(d.lease_secs / 2);
    let t2 = d
        .rebind_secs
        .unwrap_or((u64::from(d.lease_secs) * 7 / 8) as u32);
    if t1 == 0 || t1 >= t2 || t2 >= d.lease_secs {
        return Err(format!(
            "dhcp: need 0 < renew_secs ({t1}) < rebind_secs ({t2}) < lease_secs ({})",
            d.lease_secs
        ));
    }
    if d.conflict_check_ms > 5000 {
        return Err("dhcp.conflict_check_ms must be at most 5000".into());
    }
    if d.mtu.is_some_and(|m| m < 68) {
        return Err("dhcp.mtu must be at least 68".into());
    }
    if d.ntp_servers.len() > 16 {
        return Err("dhcp.ntp_servers: at most 16".into());
    }
    if d.routes.len() > 32 {
        return Err("dhcp.routes: at most 32".into());
    }
    for r in &d.routes {
        if r.network().is_none() {
            return Err(format!(
                "dhcp route destination {:?} is not a.b.c.d/len with the host bits zero",
                r.destination
            ));
        }
        if !lan.contains(r.gateway) {
            return Err(format!(
                "dhcp route gateway {} is not on the LAN",
                r.gateway
            ));
        }
    }
    Ok(())
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for b in out.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// What loading the file produced: the config in force, and the problem if the
/// file was rejected.
pub struct Loaded {
    pub config: Config,
    pub error: Option<String>,
}

/// Loads `path`. Absent file: defaults, no error. Bad file: defaults plus the error. A file
/// of an older schema is migrated and written back (its old text archived first); one of a
/// newer schema is read as `resolve_newer` says, and left alone.
pub fn load(path: &Path) -> Loaded {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Loaded {
                config: Config::default(),
                error: None,
            }
        }
        Err(e) => {
            return Loaded {
                config: Config::default(),
                error: Some(format!("{}: {e}", path.display())),
            }
        }
    };
    match resolve(path, &text) {
        Ok(Resolved { config, rewrite }) => {
            if let Some((from, new_text)) = rewrite {
                match write_migration(path, &text, from, &new_text) {
                    Ok(()) => eprintln!(
                        "config: {} migrated from schema {from} to {SCHEMA}; old text kept as {}",
                        path.display(),
                        archive_path(path, from).display()
                    ),
                    Err(e) => eprintln!(
                        "config: {} read as schema {SCHEMA} but not rewritten: {e}",
                        path.display()
                    ),
                }
            }
            Loaded {
                config,
                error: None,
            }
        }
        Err(e) => Loaded {
            config: Config::default(),
            error: Some(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_and_capture_bounds_are_checked() {
        let c = parse("[traffic]\nmemory_bytes = 8388608\n[capture]\nsnaplen = 128\ndisabled_clients = [\"02:00:00:00:00:01\"]\n").unwrap();
        assert_eq!(c.traffic.memory_bytes, 8 << 20);
        assert_eq!(c.capture.snaplen, 128);
        for (text, what) in [
            ("[traffic]\nretention_hours = 48\n", "retention_hours"),
            ("[traffic]\nmemory_bytes = 10\n", "memory_bytes"),
            (
                "[capture]\nper_client_bytes = 134217728\n",
                "per_client_bytes",
            ),
            ("[capture]\nsnaplen = 10\n", "snaplen"),
            (
                "[capture]\ndisabled_clients = [\"nope\"]\n",
                "disabled_clients",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn port_choice() {
        let c = Config::default();
        assert_eq!((c.wan.port, c.lan.ports.len()), (None, 0));
        let c = parse("[wan]\nport = \"eth1\"\n[lan]\nports = [\"eth0\", \"52:54:00:6A:01:03\"]\n")
            .unwrap();
        assert_eq!(c.wan.port.as_deref(), Some("eth1"));
        assert_eq!(c.lan.ports, ["eth0", "52:54:00:6A:01:03"]);
        for (text, what) in [
            ("[wan]\nport = \"\"\n", "wan.port"),
            ("[wan]\nport = \"a/b\"\n", "wan.port"),
            ("[wan]\nport = \"enp0s20f0u1u2u3u4\"\n", "wan.port"),
            (
                "[wan]\nport = \"eth0\"\n[lan]\nports = [\"eth0\"]\n",
                "also in lan.ports",
            ),
            ("[lan]\nports = [\"eth1\", \"eth1\"]\n", "twice"),
            ("[lan]\nports = [\"52:54:00\"]\n", "lan.ports"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
        }
    }

    #[test]
    fn static_wan() {
        let c = parse(
            "[wan]\nmode = \"static\"\naddress = \"203.0.113.2\"\ngateway = \"203.0.113.1\"\n\
             dns = [\"198.51.100.53\", \"198.51.100.54\"]\n",
        )
        .unwrap();
        let want = StaticWan {
            address: Ipv4Addr::new(203, 0, 113, 2),
            prefix_len: 24,
            gateway: Ipv4Addr::new(203, 0, 113, 1),
            dns: vec![
                Ipv4Addr::new(198, 51, 100, 53),
                Ipv4Addr::new(198, 51, 100, 54),
            ],
        };
        assert!(c.wan.is_static());
        assert_eq!(c.wan.static_addressing(), Some(want));
        // Serializes back to what it was read from; dhcp mode writes none of the keys.
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        let t: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
        let keys: Vec<&String> = t["wan"].as_table().unwrap().keys().collect();
        assert_eq!(keys, ["interface", "mode"]);
        assert_eq!(Config::default().wan.static_addressing(), None);

        // Other prefixes, /31 point-to-point, no dns.
        let s = |rest: &str| format!("[wan]\nmode = \"static\"\n{rest}");
        let c = parse(&s(
            "address = \"100.64.7.9\"\nprefix_len = 10\ngateway = \"100.127.0.1\"\n",
        ))
        .unwrap();
        let w = c.wan.static_addressing().unwrap();
        assert_eq!((w.prefix_len, w.dns.len()), (10, 0));
        parse(&s(
            "address = \"198.51.100.0\"\nprefix_len = 31\ngateway = \"198.51.100.1\"\n",
        ))
        .unwrap();

        let good = "address = \"203.0.113.2\"\ngateway = \"203.0.113.1\"\n";
        for (text, what) in [
            (
                "[wan]\nmode = \"pppoe\"\n".to_string(),
                "wan.mode \"pppoe\" must be \"dhcp\" or \"static\"",
            ),
            (s(""), "needs wan.address"),
            (s("address = \"203.0.113.2\"\n"), "needs wan.gateway"),
            (
                s("address = \"203.0.113.2\"\ngateway = \"198.51.100.1\"\n"),
                "wan.gateway 198.51.100.1 is outside the WAN subnet 203.0.113.0/24",
            ),
            (
                s("address = \"203.0.113.2\"\nprefix_len = 30\ngateway = \"203.0.113.5\"\n"),
                "outside the WAN subnet 203.0.113.0/30",
            ),
            (
                s("address = \"203.0.113.2\"\nprefix_len = 32\ngateway = \"203.0.113.1\"\n"),
                "outside the WAN subnet 203.0.113.2/32",
            ),
            (
                s("address = \"203.0.113.2\"\ngateway = \"203.0.113.2\"\n"),
                "is wan.address itself",
            ),
            (
                s(&format!("{good}prefix_len = 0\n")),
                "wan.prefix_len 0 must be 1..=32",
            ),
            (
                s(&format!("{good}prefix_len = 33\n")),
                "wan.prefix_len 33 must be 1..=32",
            ),
            (
                s("address = \"203.0.113.255\"\ngateway = \"203.0.113.1\"\n"),
                "wan.address 203.0.113.255 is the network or broadcast address of 203.0.113.0/24",
            ),
            (
                s("address = \"203.0.113.2\"\ngateway = \"203.0.113.0\"\n"),
                "wan.gateway 203.0.113.0 is the network or broadcast",
            ),
            (
                s("address = \"0.0.0.0\"\ngateway = \"0.0.0.1\"\n"),
                "wan.address 0.0.0.0 is not a unicast address",
            ),
            (
                s("address = \"192.168.1.7\"\ngateway = \"192.168.1.254\"\n"),
                "wan.address 192.168.1.7/24 overlaps the LAN 192.168.1.1/24",
            ),
            (
                s("address = \"192.168.7.7\"\nprefix_len = 16\ngateway = \"192.168.0.1\"\n"),
                "overlaps the LAN",
            ),
            (
                s(&format!("{good}dns = [\"224.0.0.1\"]\n")),
                "wan.dns 224.0.0.1 is not a unicast address",
            ),
            (
                s(&format!("{good}dns = [\"1.1.1.1\"]\nntp = \"x\"\n")),
                "unknown field `ntp`",
            ),
            (s(&format!("{good}address = \"x\"\n")), "duplicate key"),
            (
                s("address = \"203.0.113.300\"\ngateway = \"203.0.113.1\"\n"),
                "invalid IPv4 address",
            ),
            // The static keys in dhcp mode, named.
            (
                "[wan]\naddress = \"203.0.113.2\"\ngateway = \"203.0.113.1\"\n".to_string(),
                "wan.address, wan.gateway: only for wan.mode = \"static\" (mode is \"dhcp\")",
            ),
            (
                "[wan]\nmode = \"dhcp\"\nprefix_len = 24\ndns = [\"1.1.1.1\"]\n".to_string(),
                "wan.prefix_len, wan.dns: only for wan.mode = \"static\"",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
        }
        // A bad static WAN in the file: defaults in force, the error reported.
        let dir = scratch("static-wan");
        let p = dir.join("gatehouse.toml");
        std::fs::write(
            &p,
            "schema = 1\n[wan]\nmode = \"static\"\naddress = \"203.0.113.2\"\ngateway = \"10.0.0.1\"\n",
        )
        .unwrap();
        let l = load(&p);
        assert_eq!(l.config, Config::default());
        assert!(l.error.unwrap().contains("outside the WAN subnet"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wlan_section_is_accepted_whatever_its_values() {
        let c = parse("[wlan]\nssid = \"Home\"\npassphrase = \"short\"\nchannel = \"auto\"\ncountry = \"de\"\nradio = \"phy1\"\n")
            .unwrap();
        assert_eq!(c.wlan.ssid.as_deref(), Some("Home"));
        assert_eq!(c.wlan.channel, Some(WlanChannel::Name("auto".into())));
        let c = parse("[wlan]\nenabled = false\nchannel = 6\n").unwrap();
        assert_eq!(
            (c.wlan.enabled, c.wlan.channel.clone()),
            (false, Some(WlanChannel::Number(6)))
        );
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(parse("[wlan]\npasword = \"x\"\n").is_err());
    }

    #[test]
    fn readme_example_is_valid() {
        // The README's example config must keep parsing as the code evolves.
        let readme = include_str!("../../README.md");
        let start = readme.find("```toml\n").expect("README has a toml block") + 8;
        let len = readme[start..].find("```").unwrap();
        let cfg =
            parse(&readme[start..start + len]).unwrap_or_else(|e| panic!("README example: {e}"));
        assert_eq!(cfg.dhcp.static_leases.len(), 1);
    }

    #[test]
    fn nat_filtering_modes() {
        use crate::nat::mapping::Filtering;
        assert_eq!(
            Config::default().nat.filtering,
            Filtering::EndpointIndependent
        );
        for (text, want) in [
            ("endpoint-independent", Filtering::EndpointIndependent),
            ("address-dependent", Filtering::AddressDependent),
            (
                "address-and-port-dependent",
                Filtering::AddressAndPortDependent,
            ),
        ] {
            let c = parse(&format!("[nat]\nfiltering = \"{text}\"\n")).unwrap();
            assert_eq!(c.nat.filtering, want);
        }
        let e = parse("[nat]\n\nfiltering = \"full-cone\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("address-dependent"), "{e}");
    }

    #[test]
    fn nat_forwards() {
        let c = parse(
            r#"
[[nat.forwards]]
protocol = "tcp"
external = 8080
inside = "192.168.1.20:80"

[[nat.forwards]]
protocol = "both"
external = "7000-7009"
inside = "192.168.1.21:9000"

[[nat.forwards]]
protocol = "udp"
external = "8080"
inside = "192.168.1.22:8080"
"#,
        )
        .unwrap();
        let f = &c.nat.forwards;
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].protocol, ForwardProtocol::Tcp);
        assert_eq!(
            f[0].external,
            PortRange {
                first: 8080,
                last: 8080
            }
        );
        assert_eq!(f[0].inside, "192.168.1.20:80".parse().unwrap());
        assert_eq!(
            f[1].external,
            PortRange {
                first: 7000,
                last: 7009
            }
        );
        assert_eq!(f[1].external.len(), 10);
        // Serializes back to what it was read from.
        let again: Config = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again, c);

        let fwd = |proto: &str, ext: &str, inside: &str| {
            format!("[[nat.forwards]]\nprotocol = \"{proto}\"\nexternal = {ext}\ninside = \"{inside}\"\n")
        };
        for (text, what) in [
            (fwd("tcp", "0", "192.168.1.20:80"), "not a port"),
            (fwd("tcp", "\"90-80\"", "192.168.1.20:80"), "ends before"),
            (fwd("tcp", "\"80-x\"", "192.168.1.20:80"), "not a port"),
            (fwd("tcp", "70000", "192.168.1.20:80"), "not a port"),
            (fwd("icmp", "80", "192.168.1.20:80"), "unknown variant"),
            (fwd("tcp", "80", "10.0.0.5:80"), "not a LAN host"),
            (fwd("tcp", "80", "192.168.1.1:80"), "not a LAN host"),
            (fwd("tcp", "80", "192.168.1.255:80"), "broadcast"),
            (fwd("tcp", "80", "192.168.1.20:0"), "cannot take"),
            (
                fwd("tcp", "\"100-109\"", "192.168.1.20:65530"),
                "cannot take",
            ),
            (
                fwd("tcp", "\"60000-61000\"", "192.168.1.20:1"),
                "router's own ports",
            ),
            (fwd("udp", "\"60-70\"", "192.168.1.20:60"), "DHCP client"),
            (
                fwd("tcp", "\"80-90\"", "192.168.1.20:80") + &fwd("both", "90", "192.168.1.21:90"),
                "overlaps nat.forwards[0]",
            ),
        ] {
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains(what), "{text}: {e}");
        }
        // Same ports on different protocols are fine, and TCP 68 is not reserved.
        parse(&(fwd("tcp", "\"60-70\"", "192.168.1.20:60") + &fwd("udp", "80", "192.168.1.20:80")))
            .unwrap();
        assert!(parse(
            &"[[nat.forwards]]\nprotocol = \"tcp\"\nexternal = 1\ninside = \"192.168.1.20:1\"\n"
                .repeat(257)
        )
        .is_err());
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn partial_sections_keep_defaults() {
        let c = parse("[system]\nhostname = \"box\"\n[dhcp]\nlease_secs = 600\n").unwrap();
        assert_eq!(c.system.hostname, "box");
        assert_eq!(c.dhcp.lease_secs, 600);
        assert_eq!(c.dhcp.range_start, Ipv4Addr::new(192, 168, 1, 100));
    }

    #[test]
    fn syntax_error_names_line() {
        let e = parse("[system]\nhostname = \"box\"\n[dhcp\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn unknown_key_names_line() {
        let e = parse("[lan]\n\naddres = \"10.0.0.1\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("addres"), "{e}");
    }

    #[test]
    fn range_outside_subnet_rejected() {
        let e =
            parse("[dhcp]\nrange_start = \"10.0.0.5\"\nrange_end = \"10.0.0.9\"\n").unwrap_err();
        assert!(e.message.contains("outside"), "{e}");
    }

    #[test]
    fn load_bad_file_falls_back_to_defaults() {
        let dir = std::env::temp_dir().join(format!("gh-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("gatehouse.toml");
        std::fs::write(&p, "[ui]\nport = \"eighty\"\n").unwrap();
        let l = load(&p);
        assert_eq!(l.config, Config::default());
        assert!(l.error.unwrap().contains("line 2"));
        let l = load(&dir.join("absent.toml"));
        assert!(l.error.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("gh-schema-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn every_migration_lands_on_the_next_schema() {
        for (n, step) in MIGRATIONS.iter().enumerate() {
            let mut t = toml::Table::new();
            if n > 0 {
                t.insert("schema".into(), toml::Value::Integer(n as i64));
            }
            step(&mut t);
            assert_eq!(schema_of(&t), Ok(n as u32 + 1), "MIGRATIONS[{n}]");
        }
        assert_eq!(schema_of(&migrate(toml::Table::new(), 0)), Ok(SCHEMA));
    }

    #[test]
    fn schema_key_is_checked() {
        assert_eq!(parse("").unwrap().schema, SCHEMA);
        assert_eq!(parse("schema = 1\n").unwrap(), Config::default());
        assert_eq!(parse("schema = 0\n").unwrap(), Config::default());
        for bad in ["schema = -1\n", "schema = \"1\"\n", "schema = 1.5\n"] {
            assert!(
                parse(bad).unwrap_err().message.contains("whole number"),
                "{bad}"
            );
        }
        let e = parse("schema = 99\n").unwrap_err();
        assert!(e.message.contains("newer"), "{e}");
        // Errors in a current-schema file still name their line.
        let e = parse("schema = 1\n[lan]\naddres = \"10.0.0.1\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn an_old_file_is_migrated_once_and_its_text_archived() {
        let d = scratch("old");
        let p = d.join("gatehouse.toml");
        let old = "# my router\n[system]\nhostname = \"box\"  # the name\n";
        std::fs::write(&p, old).unwrap();
        let l = load(&p);
        assert!(l.error.is_none(), "{:?}", l.error);
        assert_eq!(l.config.system.hostname, "box");
        assert_eq!(l.config.schema, SCHEMA);
        let archived = d.join("config-archive/gatehouse.schema0.toml");
        assert_eq!(std::fs::read_to_string(&archived).unwrap(), old);
        let new = std::fs::read_to_string(&p).unwrap();
        assert!(new.starts_with("schema = 1\n"), "{new}");
        assert!(
            new.contains("# the name"),
            "the owner's comments were lost: {new}"
        );
        assert_eq!(parse(&new).unwrap(), l.config);
        // Loading the migrated file again changes nothing.
        std::fs::write(&archived, "sentinel").unwrap();
        let again = load(&p);
        assert_eq!(again.config, l.config);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), new);
        assert_eq!(std::fs::read_to_string(&archived).unwrap(), "sentinel");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_bad_old_file_is_neither_migrated_nor_archived() {
        let d = scratch("bad");
        let p = d.join("gatehouse.toml");
        std::fs::write(&p, "[ui]\nport = \"eighty\"\n").unwrap();
        assert!(load(&p).error.unwrap().contains("line 2"));
        assert!(!d.join("config-archive").exists());
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "[ui]\nport = \"eighty\"\n"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn read_migrates_in_memory_only() {
        let d = scratch("read");
        let p = d.join("gatehouse.toml");
        std::fs::write(&p, "[system]\nhostname = \"box\"\n").unwrap();
        assert_eq!(read(&p).unwrap().system.hostname, "box");
        assert!(!d.join("config-archive").exists());
        assert!(!std::fs::read_to_string(&p).unwrap().contains("schema"));
        assert_eq!(read(&d.join("absent.toml")).unwrap(), Config::default());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn after_a_rollback_the_archived_copy_of_our_schema_is_used() {
        let d = scratch("archived");
        let p = d.join("gatehouse.toml");
        let newer = format!("schema = {}\n[system]\nhostname = \"newer\"\n", SCHEMA + 1);
        std::fs::write(&p, &newer).unwrap();
        let archived = archive_path(&p, SCHEMA);
        std::fs::create_dir_all(archived.parent().unwrap()).unwrap();
        std::fs::write(&archived, "[system]\nhostname = \"ours\"\n").unwrap();
        let l = load(&p);
        assert!(l.error.is_none(), "{:?}", l.error);
        assert_eq!(l.config.system.hostname, "ours");
        // The newer release's file is left for it.
        assert_eq!(std::fs::read_to_string(&p).unwrap(), newer);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn after_a_rollback_without_an_archive_unknown_keys_are_left_out() {
        let d = scratch("lenient");
        let p = d.join("gatehouse.toml");
        let newer = format!(
            r#"schema = {}
future_top = 1
[system]
hostname = "newer"
colour = "blue"
[wifi]
ssid = "x"
[[nat.forwards]]
protocol = "tcp"
external = 8080
inside = "192.168.1.20:80"
comment = "new in a later release"
"#,
            SCHEMA + 1
        );
        std::fs::write(&p, &newer).unwrap();
        let l = load(&p);
        assert!(l.error.is_none(), "{:?}", l.error);
        assert_eq!(l.config.schema, SCHEMA);
        assert_eq!(l.config.system.hostname, "newer");
        assert_eq!(l.config.nat.forwards.len(), 1);
        assert_eq!(l.config.nat.forwards[0].external.first, 8080);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), newer);
        let (_, mut ignored) =
            lenient::from_table::<Config>(toml::from_str(&newer).unwrap()).unwrap();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                "future_top",
                "nat.forwards[0].comment",
                "system.colour",
                "wifi"
            ]
        );
        // What we do know is still validated.
        std::fs::write(
            &p,
            format!("schema = {}\n[lan]\nprefix_len = 40\n", SCHEMA + 1),
        )
        .unwrap();
        assert!(load(&p).error.unwrap().contains("prefix_len"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("52:54:00:aa:BB:01"),
            Some([0x52, 0x54, 0, 0xaa, 0xbb, 1])
        );
        assert_eq!(parse_mac("52:54:00:aa:bb"), None);
        assert_eq!(parse_mac("52:54:00:aa:bb:01:02"), None);
    }

    #[test]
    fn dns_section() {
        let c = parse(
            r#"
[dns]
min_ttl = 30
max_ttl = 3600
cache_bytes = 1048576
hosts = [{ name = "nas", ip = "192.168.1.5" }]
blocklists = [{ name = "ads", path = "/data/blocklists/ads.txt" }]
block_mode = "nxdomain"
tls_upstreams = [{ address = "1.1.1.1", name = "cloudflare-dns.com" }]
"#,
        )
        .unwrap();
        assert_eq!(c.dns.min_ttl, 30);
        assert_eq!(c.dns.hosts[0].ip, Ipv4Addr::new(192, 168, 1, 5));
        assert_eq!(c.dns.tls_upstreams[0].port, 853);
        assert_eq!(c.dns.blocklists[0].name, "ads");
        assert_eq!(Config::default().dns.block_mode, "null");
        for bad in [
            "[dns]\nmin_ttl = 10\nmax_ttl = 5\n",
            "[dns]\nblock_mode = \"drop\"\n",
            "[dns]\nhosts = [{ name = \"bad name\", ip = \"192.168.1.5\" }]\n",
            "[dns]\ntls_upstreams = [{ address = \"1.1.1.1\", name = \"\" }]\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(is_dns_name("a-b.example."));
        assert!(!is_dns_name("-a.example"));
        assert!(!is_dns_name("a..b"));
    }
}
