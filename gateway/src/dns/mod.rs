//! DNS forwarder for the LAN: answers on the router's LAN address (UDP and TCP
//! port 53), serves local names itself (the router, static hosts, DHCP lease
//! hostnames), answers blocked names, caches positive and negative answers and
//! relays everything else to the configured or WAN-provided upstream resolvers,
//! in clear or over TLS.
//!
//! Module map: `wire` (allocation-free reading of raw messages), `message`
//! (hickory-based helpers), `local` (names that stay on the LAN), `blocklist`,
//! `cache`, `querylog`, `upstream` and `tls` (the hardened exchanges with
//! resolvers), `resolver` (the per-query pipeline: a fast path for cache hits
//! and blocked names, a full one for the rest), `server` (the sockets) and
//! `udp_batch` (its batched UDP system calls).

mod blocklist;
mod cache;
mod local;
pub mod message;
pub mod names;
pub mod querylog;
mod resolver;
mod server;
mod tls;
pub mod udp_batch;
mod upstream;
pub mod wire;

use crate::context::Context;
use crate::dhcp::lease_store::SharedStore;
pub use blocklist::ListStats;
pub use querylog::{ClientSummary, LogEntry};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Running totals and live views, for the status page and the UI.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Every message received from a client, well-formed or not.
    pub queries: AtomicU64,
    /// Queries answered by an upstream resolver.
    pub forwarded: AtomicU64,
    /// Queries answered from the cache (negative answers included).
    pub cache_hits: AtomicU64,
    /// Of those, NXDOMAIN/NODATA answers (RFC 2308).
    pub negative_cache_hits: AtomicU64,
    /// Queries for local names answered by us.
    pub local_answers: AtomicU64,
    /// Queries for blocked names.
    pub blocked: AtomicU64,
    /// Client messages dropped or answered FORMERR.
    pub malformed: AtomicU64,
    /// Exchanges with one upstream that failed (timeout, refused, bad reply,
    /// TLS handshake or certificate failure); a query that fails over counts
    /// once per upstream tried.
    pub upstream_failures: AtomicU64,
    /// Upstream-side replies ignored for a wrong source, ID or question.
    pub spoofed_rejected: AtomicU64,
    /// UDP queries dropped because too many were waiting for upstreams.
    pub dropped_busy: AtomicU64,
    /// Size of the answer cache.
    pub cache: Arc<cache::Gauges>,
    /// Per-list totals; filled in when the forwarder starts.
    pub blocklists: Mutex<Vec<Arc<ListStats>>>,
    /// Per-client totals (bounded); the recent queries themselves are read
    /// with `query_log`.
    #[serde(rename = "clients", serialize_with = "serialize_clients")]
    pub log: querylog::QueryLog,
    /// Which name was looked up for which address, for the traffic history.
    #[serde(skip)]
    pub names: names::LookedUp,
}

fn serialize_clients<S: serde::Serializer>(
    log: &querylog::QueryLog,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&log.clients(), s)
}

impl Counters {
    /// The last queries of `client` (at most `querylog::PER_CLIENT`), oldest first.
    pub fn query_log(&self, client: IpAddr) -> Vec<LogEntry> {
        self.log.entries(client)
    }

    /// Every client the bounded log tracks, with its totals, busiest first.
    pub fn clients(&self) -> Vec<ClientSummary> {
        self.log.clients()
    }

    /// Per-list status: names loaded, bad lines, read errors, blocks.
    pub fn blocklist_stats(&self) -> Vec<Arc<ListStats>> {
        self.blocklists
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }
}

/// Runs the forwarder forever, counting into `counters` (the web UI reads
/// them) and answering for the hostnames of active leases in `leases`.
/// `published` is the config in force: changes to its `[dns]` section
/// (blocklists, hosts, upstreams, TTLs) are applied without a restart.
pub async fn run(
    ctx: Context,
    counters: Arc<Counters>,
    leases: SharedStore,
    published: tokio::sync::watch::Receiver<Arc<crate::config::Config>>,
    ready: Arc<crate::readiness::Readiness>,
) -> anyhow::Result<()> {
    let addr = SocketAddr::from((ctx.config.lan.address, 53));
    let workers = match ctx.config.dns.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        n => n.min(64),
    };
    let resolver = Arc::new(resolver::Resolver::new(ctx, counters, Some(leases)));
    tokio::spawn(resolver.clone().follow(published));
    let (udp, tcp) = server::bind(addr, workers).await;
    ready.up(crate::readiness::Part::Dns);
    let mut stopped = server::spawn_udp_workers(udp, resolver.clone());
    tokio::select! {
        _ = server::serve_tcp(tcp, resolver) => {}
        _ = stopped.recv() => anyhow::bail!("a dns udp worker stopped"),
    }
    anyhow::bail!("dns listeners stopped")
}
