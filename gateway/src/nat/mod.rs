//! NAPT datapath on nfqueue: the kernel queues WAN-crossing, untracked IPv4 packets to us;
//! we translate them against an endpoint-independent mapping table and hand them back.
//!
//! - `packet`: checked IPv4 view and checksum-preserving rewrites
//! - `mapping`: the mapping table, port allocation and timers
//! - `translate`: the per-packet decision
//! - `firewall`: ruleset text and its atomic installation
//! - `kernel_ready`: the wait at boot for init to load netfilter's modules
//! - `persist`: the mapping table kept in the run dir, so a restart loses no flow
//! - `nfqueue`: the nfnetlink_queue socket, batched receive and verdicts
//! - `queue`: the loop that feeds queued packets through `translate`

pub mod firewall;
pub mod kernel_ready;
pub mod mapping;
pub mod nfqueue;
pub mod packet;
pub mod persist;
pub mod queue;
pub mod translate;

use crate::context::Context;
use anyhow::Context as _;
use mapping::{Mappings, Millis, Params, Proto, TcpState};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use translate::{Direction, Drop};

/// The router's own ephemeral port range (net.ipv4.ip_local_port_range). Never used for
/// mappings; WAN traffic to it stays with the kernel.
pub const ROUTER_PORTS: (u16, u16) = (61000, 65535);

const SWEEP_EVERY: Duration = Duration::from_secs(10);
const WAN_POLL_EVERY: Duration = Duration::from_secs(1);
/// The table's time (`Millis`) starts this long before the process did, so that times an
/// earlier run saved are still representable; older ones belong to long expired entries.
const PAST: Millis = 30 * 86_400_000;

/// Packet counters, bumped lock-free from the queue thread.
#[derive(Default)]
pub struct Stats {
    pub translated_out: AtomicU64,
    pub translated_in: AtomicU64,
    /// LAN packets to a mapped or forwarded port of the WAN address, sent back into the LAN.
    pub hairpinned: AtomicU64,
    /// LAN packets to the WAN address that no mapping claims: left to the router's own stack.
    pub to_router: AtomicU64,
    pub drop_no_wan_address: AtomicU64,
    pub drop_truncated: AtomicU64,
    pub drop_malformed: AtomicU64,
    pub drop_fragment: AtomicU64,
    pub drop_unsupported: AtomicU64,
    pub drop_no_mapping: AtomicU64,
    pub drop_filtered: AtomicU64,
    pub drop_not_for_us: AtomicU64,
    pub drop_ports_exhausted: AtomicU64,
    pub recv_errors: AtomicU64,
    pub verdict_errors: AtomicU64,
    pub expired: AtomicU64,
    /// SIGHUP reloads of the forward set that were applied, and that were refused.
    pub forward_reloads: AtomicU64,
    pub forward_reload_errors: AtomicU64,
    /// Mappings put back at startup from the copy an earlier run left in the run dir.
    pub restored: AtomicU64,
    /// Saved entries not put back: damaged (a write cut short) or contradicting another.
    pub restore_skipped: AtomicU64,
    /// Saved tables not read at all: another format or version, a damaged header.
    pub restore_rejected: AtomicU64,
    /// The saved table could not be created or written; the table is no longer kept then.
    pub persist_errors: AtomicU64,
}

impl Stats {
    fn dropped(&self, d: Drop) -> &AtomicU64 {
        match d {
            Drop::NoWanAddress => &self.drop_no_wan_address,
            Drop::Truncated => &self.drop_truncated,
            Drop::Malformed => &self.drop_malformed,
            Drop::Fragment => &self.drop_fragment,
            Drop::Unsupported => &self.drop_unsupported,
            Drop::NoMapping => &self.drop_no_mapping,
            Drop::Filtered => &self.drop_filtered,
            Drop::NotForUs => &self.drop_not_for_us,
            Drop::PortsExhausted => &self.drop_ports_exhausted,
        }
    }
}

/// A point-in-time copy of `Stats`, for the UI.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StatsView {
    pub mappings: usize,
    pub translated_out: u64,
    pub translated_in: u64,
    pub hairpinned: u64,
    pub to_router: u64,
    pub drop_no_wan_address: u64,
    pub drop_truncated: u64,
    pub drop_malformed: u64,
    pub drop_fragment: u64,
    pub drop_unsupported: u64,
    pub drop_no_mapping: u64,
    pub drop_filtered: u64,
    pub drop_not_for_us: u64,
    pub drop_ports_exhausted: u64,
    pub recv_errors: u64,
    pub verdict_errors: u64,
    pub expired: u64,
    pub forwards: usize,
    pub forward_reloads: u64,
    pub forward_reload_errors: u64,
    /// Why the last refused reload was refused (cleared by a good one).
    pub forward_reload_error: Option<String>,
    /// Whether the table is kept in the run dir (a restart then carries every flow on).
    pub persistent: bool,
    /// Mappings the kept copy has no room for (it holds `persist::CAPACITY` entries).
    pub unsaved: usize,
    pub restored: u64,
    pub restore_skipped: u64,
    pub restore_rejected: u64,
    pub persist_errors: u64,
}

impl StatsView {
    /// Packets dropped, per reason (the field name without `drop_`).
    pub fn drops(&self) -> [(&'static str, u64); 9] {
        [
            ("no_wan_address", self.drop_no_wan_address),
            ("truncated", self.drop_truncated),
            ("malformed", self.drop_malformed),
            ("fragment", self.drop_fragment),
            ("unsupported", self.drop_unsupported),
            ("no_mapping", self.drop_no_mapping),
            ("filtered", self.drop_filtered),
            ("not_for_us", self.drop_not_for_us),
            ("ports_exhausted", self.drop_ports_exhausted),
        ]
    }

    /// Every packet dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drops().iter().map(|(_, n)| n).sum()
    }
}

/// One mapping as the UI shows it. Times are Unix seconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MappingView {
    pub proto: Proto,
    pub inside: SocketAddrV4,
    pub outside_port: u16,
    pub remote: SocketAddrV4,
    /// "established"/"transitory"/"closing" for TCP.
    pub state: Option<&'static str>,
    pub created: u64,
    pub last_seen: u64,
    pub expires_in_secs: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
}

/// The shared NAT state: the mapping table plus counters. Share as `Arc<Table>`.
pub struct Table {
    map: Mutex<Mappings>,
    /// The copy of `map` kept in the run dir, if any. Locked only with `map` held (or, in
    /// `sync_saved`, taken under it), so writes reach the file in the order they happened.
    store: Mutex<Option<persist::Store>>,
    /// The WAN address the mappings were made on (0: none): a restart keeps the restored
    /// ones only if the address is still the same.
    mappings_wan: AtomicU32,
    unsaved: AtomicUsize,
    /// A failure of the saved copy is logged once.
    persist_logged: AtomicBool,
    /// Forwards as configured ("both" counts once).
    forwards: AtomicUsize,
    reload_error: Mutex<Option<String>>,
    /// When the table's time was `PAST`.
    epoch: Instant,
    /// The Unix time (ms) of the table's time 0; negative while the clock is still near 1970
    /// (no RTC, no NTP yet).
    epoch_unix_ms: i64,
    pub stats: Stats,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    pub fn new() -> Self {
        Self::with_params(Params::default())
    }

    /// A table with the behaviour and the forwards `[nat]` asks for.
    pub fn from_config(cfg: &crate::config::Nat) -> Self {
        let t = Self::with_params(Params {
            filtering: cfg.filtering,
            ..Params::default()
        });
        t.set_forwards(&cfg.forwards);
        t
    }

    pub fn with_params(params: Params) -> Self {
        let epoch_unix_ms = crate::clock::unix_ms() as i64 - PAST as i64;
        Self {
            map: Mutex::new(Mappings::new(params, rand::random())),
            store: Mutex::new(None),
            mappings_wan: AtomicU32::new(0),
            unsaved: AtomicUsize::new(0),
            persist_logged: AtomicBool::new(false),
            forwards: AtomicUsize::new(0),
            reload_error: Mutex::new(None),
            epoch: Instant::now(),
            epoch_unix_ms,
            stats: Stats::default(),
        }
    }

    fn now(&self) -> Millis {
        PAST + self.epoch.elapsed().as_millis() as Millis
    }

    /// A poisoned lock only means another thread panicked mid-update; the table is still
    /// structurally sound, so keep serving rather than take the router down.
    fn lock(&self) -> MutexGuard<'_, Mappings> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store_lock(&self) -> MutexGuard<'_, Option<persist::Store>> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn translate(
        &self,
        buf: &mut [u8],
        dir: Direction,
        wan: Option<Ipv4Addr>,
        csum: packet::Csum,
    ) -> Result<translate::Action, Drop> {
        let now = self.now();
        let mut map = self.lock();
        let r = translate::translate(buf, dir, wan, csum, &mut map, now);
        self.save(&mut map);
        r
    }

    /// Writes what changed in `map` to the saved copy, if one is kept. Call with `map`
    /// locked, right after the change.
    fn save(&self, map: &mut Mappings) {
        if !map.has_changes() {
            return;
        }
        let mut store = self.store_lock();
        let res = match store.as_mut() {
            Some(s) => s.save(map),
            None => Ok(()),
        };
        if let Err(e) = res {
            self.stop_keeping(&mut store, map, &e);
        }
    }

    /// After a failed write: the copy is dropped (a stale one could bring back mappings that
    /// went) and the table runs unsaved.
    fn stop_keeping(
        &self,
        store: &mut Option<persist::Store>,
        map: &mut Mappings,
        e: &std::io::Error,
    ) {
        let path = store.take().map(|s| {
            let _ = std::fs::remove_file(s.path());
            s.path().display().to_string()
        });
        map.track_changes(false);
        self.persist_failed(path.as_deref().unwrap_or("?"), e);
    }

    fn persist_failed(&self, path: &str, e: &dyn std::fmt::Display) {
        self.stats.persist_errors.fetch_add(1, Relaxed);
        if !self.persist_logged.swap(true, Relaxed) {
            eprintln!(
                "gatewayd: nat: cannot keep the mapping table in {path}: {e}; running without \
                 (a restart will cut every flow)"
            );
        }
    }

    /// Keeps the table in the file at `path` from now on, first putting back what an
    /// earlier run saved there (entries that expired meanwhile are dropped), so that a
    /// restarted gatewayd finds every mapping. Forwards in force are re-applied to what
    /// comes back. Without the file the NAT runs as before, unsaved. Returns how many
    /// mappings came back.
    pub fn keep_in(&self, path: &Path) -> usize {
        let now = self.now();
        let loaded = match persist::open(path, self.epoch_unix_ms) {
            Ok(l) => l,
            Err(e) => {
                self.persist_failed(&path.display().to_string(), &e);
                return 0;
            }
        };
        if let Some(why) = &loaded.rejected {
            self.stats.restore_rejected.fetch_add(1, Relaxed);
            eprintln!(
                "gatewayd: nat: {}: {why}; starting with an empty table",
                path.display()
            );
        }
        let mut store = loaded.store;
        let mut map = self.lock();
        if !map.is_empty() || map.held() > 0 {
            // Only a fresh table is restored into (this runs once, before any packet).
            eprintln!(
                "gatewayd: nat: table in use, not restoring {}",
                path.display()
            );
            return 0;
        }
        let n = match store.restore(&mut map, loaded.saved, now) {
            Ok(n) => n,
            Err(e) => {
                map.clear();
                let _ = std::fs::remove_file(path);
                self.persist_failed(&path.display().to_string(), &e);
                return 0;
            }
        };
        self.mappings_wan
            .store(loaded.wan.map_or(0, u32::from), Relaxed);
        map.track_changes(true);
        let fwds = map.forwards().to_vec();
        let ended = map.set_forwards(fwds, now);
        let restored = n.mappings.saturating_sub(ended);
        let s = &self.stats;
        s.restored.fetch_add(restored as u64, Relaxed);
        s.restore_skipped
            .fetch_add((n.conflicting + loaded.damaged) as u64, Relaxed);
        s.expired.fetch_add(n.expired as u64, Relaxed);
        let mut guard = self.store_lock();
        *guard = Some(store);
        drop(guard);
        self.save(&mut map);
        eprintln!(
            "gatewayd: nat: restored {restored} mappings and {} held ports from {} (WAN {}); \
             dropped {} expired, {} ended by the forwards, {} damaged, {} conflicting",
            n.holds,
            path.display(),
            loaded.wan.map_or("none".to_string(), |a| a.to_string()),
            n.expired,
            ended,
            loaded.damaged,
            n.conflicting
        );
        restored
    }

    /// Brings the saved copy's counters and times up to date (they are not written per
    /// packet), and gives a slot to mappings that found none. The file is written with
    /// `map` unlocked: packets go on meanwhile.
    fn sync_saved(&self) {
        let map = self.lock();
        let mut store = self.store_lock();
        let Some(s) = store.as_mut() else {
            return;
        };
        let (batch, unsaved) = s.collect(&map);
        self.unsaved.store(unsaved, Relaxed);
        drop(map);
        if let Err(e) = s.write_batch(batch) {
            // Taken again in lock order to stop keeping the copy.
            drop(store);
            let mut map = self.lock();
            self.stop_keeping(&mut self.store_lock(), &mut map, &e);
        }
    }

    /// Puts a (validated) forward set in force; returns how many mappings it ended.
    pub fn set_forwards(&self, fwds: &[crate::config::Forward]) -> usize {
        let now = self.now();
        self.forwards.store(fwds.len(), Relaxed);
        let mut map = self.lock();
        let ended = map.set_forwards(forwards(fwds), now);
        self.save(&mut map);
        ended
    }

    /// Puts a filtering mode in force (RFC 4787 REQ-8); says so when it changes.
    pub fn set_filtering(&self, f: mapping::Filtering) {
        let mut map = self.lock();
        if map.filtering() != f {
            eprintln!("gatewayd: nat: filtering now {f:?}");
            map.set_filtering(f);
        }
    }

    /// What SIGHUP does: re-reads the config file and applies its forward set and filtering
    /// mode, and only those (the rest of the NAT config needs a restart). The whole file is validated first;
    /// if it is rejected the forwards in force stay, and the error is counted and kept for
    /// the UI. An absent file means defaults, as at startup: no forwards. Returns the config
    /// read and the number of mappings ended.
    pub fn reload_forwards(&self, path: &Path) -> Result<(crate::config::Config, usize), String> {
        // Read as at startup (older schemas migrated in memory, a newer one after a
        // rollback resolved), but never written: that is startup's job.
        let cfg = crate::config::read(path);
        let mut last_error = self.reload_error.lock().unwrap_or_else(|e| e.into_inner());
        match cfg {
            Ok(cfg) => {
                let ended = self.set_forwards(&cfg.nat.forwards);
                self.set_filtering(cfg.nat.filtering);
                self.stats.forward_reloads.fetch_add(1, Relaxed);
                *last_error = None;
                Ok((cfg, ended))
            }
            Err(e) => {
                self.stats.forward_reload_errors.fetch_add(1, Relaxed);
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn sweep(&self) {
        let now = self.now();
        let mut map = self.lock();
        let n = map.sweep(now);
        self.save(&mut map);
        self.stats.expired.fetch_add(n as u64, Relaxed);
    }

    /// The WAN address is now `addr`. Mappings made on another address are useless (nothing
    /// sent to it reaches us), so they go once a different one is in, those restored at
    /// startup included. While there is none they stay, in case the same one comes back: a
    /// restarted DHCP client deconfigures the WAN before it gets its lease again.
    fn wan_changed(&self, addr: Option<Ipv4Addr>) {
        let Some(addr) = addr else {
            return;
        };
        let a = u32::from(addr);
        let mut map = self.lock();
        if self.mappings_wan.swap(a, Relaxed) != a {
            map.clear();
        }
        self.save(&mut map);
        let mut store = self.store_lock();
        if let Some(Err(e)) = store.as_mut().map(|s| s.set_wan(Some(addr))) {
            self.stop_keeping(&mut store, &mut map, &e);
        }
    }

    /// All live mappings, oldest first.
    pub fn snapshot(&self) -> Vec<MappingView> {
        let now = self.now();
        let unix = |t: Millis| (self.epoch_unix_ms + t as i64).max(0) as u64 / 1000;
        let map = self.lock();
        let mut v: Vec<MappingView> = map
            .iter()
            .map(|m| MappingView {
                proto: m.proto,
                inside: m.inside,
                outside_port: m.outside_port,
                remote: m.remote,
                state: (m.proto == Proto::Tcp).then_some(match m.tcp {
                    TcpState::Established => "established",
                    TcpState::Transitory => "transitory",
                    TcpState::Closing => "closing",
                }),
                created: unix(m.created),
                last_seen: unix(m.last_seen),
                expires_in_secs: (m.last_seen + map.timeout(m)).saturating_sub(now) / 1000,
                packets_out: m.out.packets,
                bytes_out: m.out.bytes,
                packets_in: m.inb.packets,
                bytes_in: m.inb.bytes,
            })
            .collect();
        v.sort_by_key(|m| (m.created, m.outside_port));
        v
    }

    pub fn stats(&self) -> StatsView {
        let s = &self.stats;
        let g = |a: &AtomicU64| a.load(Relaxed);
        StatsView {
            mappings: self.lock().len(),
            forwards: self.forwards.load(Relaxed),
            forward_reloads: g(&s.forward_reloads),
            forward_reload_errors: g(&s.forward_reload_errors),
            forward_reload_error: self
                .reload_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            translated_out: g(&s.translated_out),
            translated_in: g(&s.translated_in),
            hairpinned: g(&s.hairpinned),
            to_router: g(&s.to_router),
            drop_no_wan_address: g(&s.drop_no_wan_address),
            drop_truncated: g(&s.drop_truncated),
            drop_malformed: g(&s.drop_malformed),
            drop_fragment: g(&s.drop_fragment),
            drop_unsupported: g(&s.drop_unsupported),
            drop_no_mapping: g(&s.drop_no_mapping),
            drop_filtered: g(&s.drop_filtered),
            drop_not_for_us: g(&s.drop_not_for_us),
            drop_ports_exhausted: g(&s.drop_ports_exhausted),
            recv_errors: g(&s.recv_errors),
            verdict_errors: g(&s.verdict_errors),
            expired: g(&s.expired),
            persistent: self.store_lock().is_some(),
            unsaved: self.unsaved.load(Relaxed),
            restored: g(&s.restored),
            restore_skipped: g(&s.restore_skipped),
            restore_rejected: g(&s.restore_rejected),
            persist_errors: g(&s.persist_errors),
        }
    }
}

/// The mapping table's form of configured forwards: "both" becomes one per protocol.
pub fn forwards(cfg: &[crate::config::Forward]) -> Vec<mapping::Forward> {
    use crate::config::ForwardProtocol as P;
    let mut v = Vec::new();
    for f in cfg {
        let protos: &[Proto] = match f.protocol {
            P::Tcp => &[Proto::Tcp],
            P::Udp => &[Proto::Udp],
            P::Both => &[Proto::Tcp, Proto::Udp],
        };
        for &proto in protos {
            v.push(mapping::Forward {
                proto,
                first: f.external.first,
                last: f.external.last,
                inside: *f.inside.ip(),
                inside_first: f.inside.port(),
            });
        }
    }
    v
}

/// Applies the config file's forward set on every SIGHUP (see `Table::reload_forwards`), and
/// publishes the file's config so the UI shows what is in force. `hup` is registered by the
/// caller before anything can send the signal, whose default action would end the process.
/// In failsafe mode the file is left alone.
pub async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    file: Arc<crate::config::edit::ConfigFile>,
    failsafe: bool,
    table: Arc<Table>,
) -> anyhow::Result<()> {
    while hup.recv().await.is_some() {
        if failsafe {
            eprintln!("gatewayd: SIGHUP ignored: failsafe mode runs on built-in defaults");
            continue;
        }
        let t = table.clone();
        let f = file.clone();
        match tokio::task::spawn_blocking(move || {
            let (cfg, ended) = t.reload_forwards(f.path())?;
            let counts = (cfg.nat.forwards.len(), ended);
            f.publish(cfg);
            Ok::<_, String>(counts)
        })
        .await?
        {
            Ok((n, ended)) => {
                eprintln!("gatewayd: nat: SIGHUP: {n} forwards in force, {ended} mappings ended")
            }
            Err(e) => eprintln!(
                "gatewayd: nat: SIGHUP: config rejected, forwards unchanged ({} in force, {} \
                 rejected reloads): {e}",
                table.stats().forwards,
                table.stats.forward_reload_errors.load(Relaxed)
            ),
        }
    }
    Ok(())
}

/// The WAN address the queue thread translates to (0 = none yet), updated by the maintenance
/// thread so the packet path never touches the watch channel or the kernel.
#[derive(Default)]
pub struct WanAddr(AtomicU32);

impl WanAddr {
    pub fn get(&self) -> Option<Ipv4Addr> {
        match self.0.load(Relaxed) {
            0 => None,
            a => Some(Ipv4Addr::from(a)),
        }
    }

    fn set(&self, a: Option<Ipv4Addr>) {
        self.0.store(a.map_or(0, u32::from), Relaxed);
    }
}

/// The LAN interface's index (0 = not there), refreshed by the maintenance thread: the LAN
/// bridge may come and go under init, and its index with it.
#[derive(Default)]
pub struct IfIndex(AtomicU32);

impl IfIndex {
    pub fn get(&self) -> u32 {
        self.0.load(Relaxed)
    }

    fn refresh(&self, name: &str) {
        let i = nix::net::if_::if_nametoindex(name).unwrap_or(0);
        self.0.store(i, Relaxed);
    }
}

/// The WAN address: what the DHCP client reported, else the interface's first IPv4 address
/// (static setups, `--no-wan-client`, or a lease the client has not published yet).
fn wan_address(ctx: &Context) -> Option<Ipv4Addr> {
    let reported = ctx.wan.borrow().address;
    reported.or_else(|| interface_ipv4(&ctx.config.wan.interface))
}

/// The first IPv4 address on interface `name`, if any.
pub fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|i| i.interface_name == name)
        .find_map(|i| i.address?.as_sockaddr_in().map(|s| s.ip()))
}

/// Picks up WAN address changes; a new address invalidates every mapping (their outside
/// address is gone), so the table is flushed (see `Table::wan_changed`).
fn refresh_wan(ctx: &Context, wan: &WanAddr, table: &Table) {
    let now = wan_address(ctx);
    if now != wan.get() {
        eprintln!(
            "gatewayd: nat: WAN address {}",
            now.map_or("none".to_string(), |a| a.to_string())
        );
        wan.set(now);
        table.wan_changed(now);
    }
}

/// Installs the firewall and runs the queue loop on `table`, noting traffic on `tap`.
/// Blocking: run it on its own thread.
/// `modules_ready`: the file init creates once the kernel modules are loaded (see
/// `kernel_ready`).
pub fn run(
    ctx: Context,
    table: Arc<Table>,
    mut tap: crate::traffic::tap::Tap,
    modules_ready: Option<&Path>,
) -> anyhow::Result<()> {
    let cfg = &ctx.config;
    let spec = firewall::Spec {
        lan_if: cfg.lan.interface.clone(),
        lan_addr: cfg.lan.address,
        lan_prefix: cfg.lan.prefix_len,
        wan_if: cfg.wan.interface.clone(),
        queue_num: cfg.nat.queue_num,
        router_ports: ROUTER_PORTS,
    };
    // Before the queue is bound: the first packets after a restart must find their mappings.
    table.keep_in(&ctx.run_dir.join(persist::FILE_NAME));
    kernel_ready::wait_for_modules(modules_ready);
    let mut queue = queue::open(spec.queue_num)?;
    let wan = Arc::new(WanAddr::default());
    refresh_wan(&ctx, &wan, &table);
    let lan = Arc::new(IfIndex::default());
    lan.refresh(&spec.lan_if);
    // The ruleset goes in on the maintenance thread while this one already serves: after a
    // restart the old rules still queue traffic to us, and installing them again through
    // iptables takes a good 100 ms that would otherwise stall every flow.
    let failed: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let maint = {
        let (ctx, wan, table, stop) = (ctx.clone(), wan.clone(), table.clone(), stop.clone());
        let (lan, lan_if) = (lan.clone(), spec.lan_if.clone());
        let failed = failed.clone();
        std::thread::Builder::new()
            .name("nat-maint".into())
            .spawn(move || {
                let backend = match firewall::apply(&spec).context("installing the firewall") {
                    Ok(b) => b,
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                };
                // Forwarding only once the ruleset is in: before that, LAN traffic would
                // leave untranslated.
                firewall::set_sysctls(ROUTER_PORTS, &spec.lan_if);
                eprintln!(
                    "gatewayd: nat: queue {} on {} ({backend:?}), filtering {:?}, {} forwards",
                    spec.queue_num,
                    spec.wan_if,
                    ctx.config.nat.filtering,
                    table.stats().forwards
                );
                let mut last_sweep = Instant::now();
                while !stop.load(Relaxed) {
                    std::thread::sleep(WAN_POLL_EVERY);
                    refresh_wan(&ctx, &wan, &table);
                    lan.refresh(&lan_if);
                    table.sync_saved();
                    if last_sweep.elapsed() >= SWEEP_EVERY {
                        table.sweep();
                        last_sweep = Instant::now();
                    }
                }
            })
            .context("spawning nat maintenance thread")?
    };
    let res = queue::serve(&mut queue, &table, &wan, &lan, &mut tap, &failed);
    stop.store(true, Relaxed);
    let _ = maint.join();
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    const FWD: &str = "[[nat.forwards]]\nprotocol = \"both\"\nexternal = \"8080-8081\"\ninside = \"192.168.1.20:80\"\n";

    #[test]
    fn forwards_from_config_split_both() {
        let cfg = crate::config::parse(FWD).unwrap();
        let f = forwards(&cfg.nat.forwards);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].proto, f[1].proto), (Proto::Tcp, Proto::Udp));
        assert_eq!((f[0].first, f[0].last, f[0].inside_first), (8080, 8081, 80));
    }

    #[test]
    fn reload_applies_good_files_and_keeps_the_set_on_bad_ones() {
        let dir = std::env::temp_dir().join(format!("gh-nat-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gatehouse.toml");
        let t = Table::new();
        assert_eq!(t.stats().forwards, 0);

        std::fs::write(&path, FWD).unwrap();
        assert_eq!(
            t.reload_forwards(&path)
                .map(|(c, e)| (c.nat.forwards.len(), e)),
            Ok((1, 0))
        );
        assert_eq!(t.stats().forwards, 1);
        assert_eq!(t.lock().forwards().len(), 2, "one per protocol");
        // A forward's mapping, to see it end when the forward goes.
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 5000);
        let flags = packet::TcpFlags(packet::TcpFlags::SYN);
        assert!(t
            .lock()
            .inbound(Proto::Tcp, 8081, remote, flags, 1, t.now())
            .is_ok());

        // Broken syntax, then valid TOML with an invalid forward: both refused, set kept.
        for bad in [
            "[nat\n",
            "[[nat.forwards]]\nprotocol = \"tcp\"\nexternal = 80\ninside = \"10.9.9.9:80\"\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = t.reload_forwards(&path).unwrap_err();
            assert!(e.contains("gatehouse.toml"), "{e}");
            let s = t.stats();
            assert_eq!(s.forwards, 1);
            assert_eq!(s.forward_reload_error.as_deref(), Some(e.as_str()));
        }
        assert!(t
            .stats()
            .forward_reload_error
            .unwrap()
            .contains("not a LAN host"));
        assert_eq!(t.stats().forward_reload_errors, 2);
        assert_eq!(t.stats().mappings, 1);

        // Removal ends the forward's mapping; an absent file means no forwards.
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            t.reload_forwards(&path)
                .map(|(c, e)| (c.nat.forwards.len(), e)),
            Ok((0, 1))
        );
        let s = t.stats();
        assert_eq!((s.forwards, s.mappings, s.forward_reloads), (0, 0, 2));
        assert_eq!(s.forward_reload_error, None);
        std::fs::write(&path, FWD).unwrap();
        t.reload_forwards(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            t.reload_forwards(&path)
                .map(|(c, e)| (c.nat.forwards.len(), e)),
            Ok((0, 0))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn run_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gh-nat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An outbound packet's effect on the table, written to the kept copy as the packet
    /// path does.
    fn out(t: &Table, proto: Proto, inside: SocketAddrV4, flags: u8) -> Option<u16> {
        let remote = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 443);
        let now = t.now();
        let mut m = t.lock();
        let p = m.outbound(proto, inside, remote, packet::TcpFlags(flags), 1, now);
        t.save(&mut m);
        p
    }

    fn lan(host: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, host), port)
    }

    fn view(t: &Table) -> Vec<(Proto, SocketAddrV4, u16, Option<&'static str>)> {
        let mut v: Vec<_> = t
            .snapshot()
            .into_iter()
            .map(|m| (m.proto, m.inside, m.outside_port, m.state))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_restarted_table_has_the_same_mappings() {
        let dir = run_dir("restart");
        let path = dir.join(persist::FILE_NAME);
        let wan = Some(Ipv4Addr::new(203, 0, 113, 2));
        let a = Table::new();
        assert_eq!(a.keep_in(&path), 0);
        assert!(a.stats().persistent);
        a.wan_changed(wan);
        const SYN: u8 = packet::TcpFlags::SYN;
        const ACK: u8 = packet::TcpFlags::ACK;
        out(&a, Proto::Udp, lan(10, 5000), 0);
        // Port 5000 is taken: .11 gets another, which only the saved copy can bring back.
        let p11 = out(&a, Proto::Udp, lan(11, 5000), 0).unwrap();
        assert_ne!(p11, 5000);
        out(&a, Proto::Tcp, lan(10, 2000), SYN);
        {
            let now = a.now();
            let far = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 443);
            let mut m = a.lock();
            let synack = packet::TcpFlags(packet::TcpFlags::SYN | ACK);
            m.inbound(Proto::Tcp, 2000, far, synack, 1, now).unwrap();
            a.save(&mut m);
        }
        out(&a, Proto::Tcp, lan(10, 2000), ACK);
        out(&a, Proto::Tcp, lan(12, 3000), SYN);
        let before = view(&a);
        assert!(before.contains(&(Proto::Tcp, lan(10, 2000), 2000, Some("established"))));
        assert!(before.contains(&(Proto::Udp, lan(11, 5000), p11, None)));
        drop(a); // the crash: nothing is flushed on the way out

        let b = Table::new();
        assert_eq!(b.keep_in(&path), 4);
        assert_eq!(view(&b), before);
        let s = b.stats();
        assert_eq!((s.restored, s.restore_skipped, s.persistent), (4, 0, true));
        // The same WAN address keeps them, also after a while without one; another address
        // ends them, and the copy with them.
        b.wan_changed(wan);
        b.wan_changed(None);
        b.wan_changed(wan);
        assert_eq!(b.stats().mappings, 4);
        b.wan_changed(None);
        b.wan_changed(Some(Ipv4Addr::new(203, 0, 113, 9)));
        assert_eq!(b.stats().mappings, 0);
        drop(b);
        let c = Table::new();
        assert_eq!(c.keep_in(&path), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn forwards_in_force_apply_to_restored_mappings() {
        let dir = run_dir("restore-fwd");
        let path = dir.join(persist::FILE_NAME);
        let a = Table::new();
        a.keep_in(&path);
        out(&a, Proto::Udp, lan(30, 8080), 0);
        out(&a, Proto::Udp, lan(31, 9000), 0);
        drop(a);
        // The new config forwards UDP 8080 to .20: .30's mapping on it does not come back.
        let cfg = crate::config::parse(FWD).unwrap();
        let b = Table::from_config(&cfg.nat);
        assert_eq!(b.keep_in(&path), 1);
        assert_eq!(view(&b), vec![(Proto::Udp, lan(31, 9000), 9000, None)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_run_dir_the_nat_runs_unsaved() {
        let t = Table::new();
        let path = std::path::Path::new("/nonexistent-gatehouse-run/nat-mappings");
        assert_eq!(t.keep_in(path), 0);
        let s = t.stats();
        assert_eq!((s.persistent, s.persist_errors), (false, 1));
        assert_eq!(out(&t, Proto::Udp, lan(10, 5000), 0), Some(5000));
        t.sync_saved();
        assert_eq!(t.stats().mappings, 1);
    }

    #[test]
    fn a_file_of_another_format_is_replaced_and_counted() {
        let dir = run_dir("restore-format");
        let path = dir.join(persist::FILE_NAME);
        std::fs::write(&path, vec![7u8; 4096]).unwrap();
        let t = Table::new();
        assert_eq!(t.keep_in(&path), 0);
        let s = t.stats();
        assert_eq!((s.restore_rejected, s.persistent), (1, true));
        out(&t, Proto::Udp, lan(10, 5000), 0);
        drop(t);
        assert_eq!(Table::new().keep_in(&path), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
