//! DNS forwarder for the LAN: answers on the router's LAN address (UDP and TCP
//! port 53), serves local names itself, caches positive answers and relays
//! everything else to the configured or WAN-provided upstream resolvers.
//!
//! Module map: `message` (wire helpers), `local` (names that stay on the LAN),
//! `cache`, `upstream` (the hardened exchange with resolvers), `resolver` (the
//! per-query pipeline) and `server` (the listening sockets).

mod cache;
mod local;
mod message;
mod resolver;
mod server;
mod upstream;

use crate::context::Context;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Running totals, for the status page.
#[derive(Debug, Default, serde::Serialize)]
pub struct Counters {
    /// Every message received from a client, well-formed or not.
    pub queries: AtomicU64,
    /// Queries answered by an upstream resolver.
    pub forwarded: AtomicU64,
    pub cache_hits: AtomicU64,
    /// Client messages dropped or answered FORMERR.
    pub malformed: AtomicU64,
    /// Exchanges with one upstream that failed (timeout, refused, bad reply);
    /// a query that fails over counts once per upstream tried.
    pub upstream_failures: AtomicU64,
    /// Upstream-side replies ignored for a wrong source, ID or question.
    pub spoofed_rejected: AtomicU64,
}

/// Runs the forwarder forever, counting into `counters` (the web UI reads them).
pub async fn run(ctx: Context, counters: Arc<Counters>) -> anyhow::Result<()> {
    let addr = SocketAddr::from((ctx.config.lan.address, 53));
    let (udp, tcp) = server::bind(addr).await;
    let resolver = Arc::new(resolver::Resolver::new(ctx, counters));
    tokio::join!(
        server::serve_udp(udp, resolver.clone()),
        server::serve_tcp(tcp, resolver)
    );
    anyhow::bail!("dns listeners stopped")
}
