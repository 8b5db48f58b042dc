//! NAPT datapath on nfqueue: the kernel queues WAN-crossing, untracked IPv4 packets to us;
//! we translate them against an endpoint-independent mapping table and hand them back.
//!
//! - `packet`: checked IPv4 view and checksum-preserving rewrites
//! - `mapping`: the mapping table, port allocation and timers
//! - `translate`: the per-packet decision
//! - `firewall`: ruleset text and its atomic installation
//! - `queue`: the nfqueue loop

pub mod firewall;
pub mod mapping;
pub mod packet;
pub mod queue;
pub mod translate;

use crate::context::Context;
use anyhow::Context as _;
use mapping::{Mappings, Millis, Params, Proto, TcpState};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use translate::{Direction, Drop};

/// The router's own ephemeral port range (net.ipv4.ip_local_port_range). Never used for
/// mappings; WAN traffic to it stays with the kernel.
pub const ROUTER_PORTS: (u16, u16) = (61000, 65535);

const SWEEP_EVERY: Duration = Duration::from_secs(10);
const WAN_POLL_EVERY: Duration = Duration::from_secs(1);

/// Packet counters, bumped lock-free from the queue thread.
#[derive(Default)]
pub struct Stats {
    pub translated_out: AtomicU64,
    pub translated_in: AtomicU64,
    pub drop_no_wan_address: AtomicU64,
    pub drop_truncated: AtomicU64,
    pub drop_malformed: AtomicU64,
    pub drop_fragment: AtomicU64,
    pub drop_unsupported: AtomicU64,
    pub drop_no_mapping: AtomicU64,
    pub drop_not_for_us: AtomicU64,
    pub drop_ports_exhausted: AtomicU64,
    pub recv_errors: AtomicU64,
    pub verdict_errors: AtomicU64,
    pub expired: AtomicU64,
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
    pub drop_no_wan_address: u64,
    pub drop_truncated: u64,
    pub drop_malformed: u64,
    pub drop_fragment: u64,
    pub drop_unsupported: u64,
    pub drop_no_mapping: u64,
    pub drop_not_for_us: u64,
    pub drop_ports_exhausted: u64,
    pub recv_errors: u64,
    pub verdict_errors: u64,
    pub expired: u64,
}

impl StatsView {
    /// Every packet dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.drop_no_wan_address
            + self.drop_truncated
            + self.drop_malformed
            + self.drop_fragment
            + self.drop_unsupported
            + self.drop_no_mapping
            + self.drop_not_for_us
            + self.drop_ports_exhausted
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
    epoch: Instant,
    epoch_unix_ms: u64,
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

    pub fn with_params(params: Params) -> Self {
        let epoch_unix_ms = crate::clock::unix_ms();
        Self {
            map: Mutex::new(Mappings::new(params, rand::random())),
            epoch: Instant::now(),
            epoch_unix_ms,
            stats: Stats::default(),
        }
    }

    fn now(&self) -> Millis {
        self.epoch.elapsed().as_millis() as Millis
    }

    /// A poisoned lock only means another thread panicked mid-update; the table is still
    /// structurally sound, so keep serving rather than take the router down.
    fn lock(&self) -> MutexGuard<'_, Mappings> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn translate(
        &self,
        buf: &mut [u8],
        dir: Direction,
        wan: Option<Ipv4Addr>,
        csum: packet::Csum,
    ) -> Result<(), Drop> {
        let now = self.now();
        translate::translate(buf, dir, wan, csum, &mut self.lock(), now)
    }

    fn sweep(&self) {
        let now = self.now();
        let n = self.lock().sweep(now);
        self.stats.expired.fetch_add(n as u64, Relaxed);
    }

    fn clear(&self) {
        self.lock().clear();
    }

    /// All live mappings, oldest first.
    pub fn snapshot(&self) -> Vec<MappingView> {
        let now = self.now();
        let unix = |t: Millis| (self.epoch_unix_ms + t) / 1000;
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
            translated_out: g(&s.translated_out),
            translated_in: g(&s.translated_in),
            drop_no_wan_address: g(&s.drop_no_wan_address),
            drop_truncated: g(&s.drop_truncated),
            drop_malformed: g(&s.drop_malformed),
            drop_fragment: g(&s.drop_fragment),
            drop_unsupported: g(&s.drop_unsupported),
            drop_no_mapping: g(&s.drop_no_mapping),
            drop_not_for_us: g(&s.drop_not_for_us),
            drop_ports_exhausted: g(&s.drop_ports_exhausted),
            recv_errors: g(&s.recv_errors),
            verdict_errors: g(&s.verdict_errors),
            expired: g(&s.expired),
        }
    }
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

/// The WAN address: what the DHCP client reported, else the interface's first IPv4 address
/// (static setups, `--no-wan-client`, or a lease the client has not published yet).
fn wan_address(ctx: &Context) -> Option<Ipv4Addr> {
    let reported = ctx.wan.borrow().address;
    reported.or_else(|| interface_ipv4(&ctx.config.wan.interface))
}

fn interface_ipv4(name: &str) -> Option<Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|i| i.interface_name == name)
        .find_map(|i| i.address?.as_sockaddr_in().map(|s| s.ip()))
}

/// Picks up WAN address changes; a new address invalidates every mapping (their outside
/// address is gone), so the table is flushed.
fn refresh_wan(ctx: &Context, wan: &WanAddr, table: &Table) {
    let now = wan_address(ctx);
    if now != wan.get() {
        eprintln!(
            "gatewayd: nat: WAN address {}",
            now.map_or("none".to_string(), |a| a.to_string())
        );
        wan.set(now);
        table.clear();
    }
}

/// Installs the firewall and runs the queue loop on `table`, noting traffic on `tap`.
/// Blocking: run it on its own thread.
pub fn run(
    ctx: Context,
    table: Arc<Table>,
    mut tap: crate::traffic::tap::Tap,
) -> anyhow::Result<()> {
    let cfg = &ctx.config;
    let spec = firewall::Spec {
        lan_if: cfg.lan.interface.clone(),
        lan_addr: cfg.lan.address,
        wan_if: cfg.wan.interface.clone(),
        queue_num: cfg.nat.queue_num,
        router_ports: ROUTER_PORTS,
    };
    let mut queue = queue::open(spec.queue_num)?;
    let wan = Arc::new(WanAddr::default());
    refresh_wan(&ctx, &wan, &table);
    let backend = firewall::apply(&spec).context("installing the firewall")?;
    // Forwarding only once the ruleset is in: before that, LAN traffic would leave untranslated.
    firewall::set_sysctls(ROUTER_PORTS);
    eprintln!(
        "gatewayd: nat: queue {} on {} ({backend:?})",
        spec.queue_num, spec.wan_if
    );

    let stop = Arc::new(AtomicBool::new(false));
    let maint = {
        let (ctx, wan, table, stop) = (ctx.clone(), wan.clone(), table.clone(), stop.clone());
        std::thread::Builder::new()
            .name("nat-maint".into())
            .spawn(move || {
                let mut last_sweep = Instant::now();
                while !stop.load(Relaxed) {
                    std::thread::sleep(WAN_POLL_EVERY);
                    refresh_wan(&ctx, &wan, &table);
                    if last_sweep.elapsed() >= SWEEP_EVERY {
                        table.sweep();
                        last_sweep = Instant::now();
                    }
                }
            })
            .context("spawning nat maintenance thread")?
    };
    let res = queue::serve(&mut queue, &table, &wan, &mut tap);
    stop.store(true, Relaxed);
    let _ = maint.join();
    res
}
