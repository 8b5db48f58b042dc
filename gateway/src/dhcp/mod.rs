//! DHCPv4 server for the LAN.
//!
//! - `lease_store`: the lease table, its snapshot file and its journal.
//! - `server_logic`: RFC 2131 decisions, pure (no sockets, no clock).
//! - `codec`: datagram <-> dhcproto message, hardened against bad input.
//! - `server`: the UDP socket on the LAN interface, group commit of leases,
//!   and the ping check before an address is offered.

use crate::context::Context;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

pub mod codec;
pub mod lease_store;
mod server;
pub mod server_logic;

/// Packet counters, shared with whoever wants to show them (the web UI).
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    /// Undecodable, not a BOOTREQUEST, or without a message type.
    pub malformed: AtomicU64,
    pub offers: AtomicU64,
    /// Sent (an ACK goes out once its lease is on disk); includes ACKs to INFORM.
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub declines: AtomicU64,
    pub releases: AtomicU64,
    /// Well-formed but unanswered: for another server, no address left, etc.
    pub dropped: AtomicU64,
    /// ACKs not sent because their lease could not be written to disk.
    pub persist_errors: AtomicU64,
    /// Addresses ping-checked before being offered.
    pub probes: AtomicU64,
    /// Of those, addresses that answered (in use by some host): skipped.
    pub conflicts: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub received: u64,
    pub malformed: u64,
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub declines: u64,
    pub releases: u64,
    pub dropped: u64,
    pub persist_errors: u64,
    pub probes: u64,
    pub conflicts: u64,
}

impl Counters {
    // Read by the web UI once it is wired to `serve`; main does not pass
    // counters around yet.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            received: self.received.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            offers: self.offers.load(Relaxed),
            acks: self.acks.load(Relaxed),
            naks: self.naks.load(Relaxed),
            declines: self.declines.load(Relaxed),
            releases: self.releases.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            persist_errors: self.persist_errors.load(Relaxed),
            probes: self.probes.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
        }
    }
}

/// Runs the server forever, counting into `counters` (the web UI reads them).
pub async fn run(
    ctx: Context,
    store: lease_store::SharedStore,
    counters: Arc<Counters>,
    live: tokio::sync::watch::Receiver<Arc<crate::config::Config>>,
    ready: Arc<crate::readiness::Readiness>,
) -> anyhow::Result<()> {
    server::serve(ctx, store, counters, live, ready).await
}
