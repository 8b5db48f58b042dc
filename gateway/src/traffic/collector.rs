//! The collector thread: turns the NAT thread's batches into history records, capture ring
//! entries and live ticks. Everything slow happens here, never on the packet path.

use super::clients::ClientMap;
use super::tap::Batch;
use super::{LiveTick, Traffic};
use crate::dhcp::lease_store::SharedStore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;
use traffic_history::{Counts, Dir, Mac, Record, BUCKET_MS};

/// Batches the NAT thread may have in flight before it starts dropping them.
pub const CHANNEL_DEPTH: usize = 256;

/// Starts the collector; the returned sender goes to the NAT thread's tap.
pub fn spawn(
    traffic: Arc<Traffic>,
    leases: Option<SharedStore>,
) -> std::io::Result<std::sync::mpsc::SyncSender<Batch>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(CHANNEL_DEPTH);
    std::thread::Builder::new()
        .name("traffic".into())
        .spawn(move || run(&traffic, rx, ClientMap::new(leases)))?;
    Ok(tx)
}

/// Per-tick aggregate for the live stream.
#[derive(Default)]
struct Live {
    tick: u64,
    flows: HashMap<(Mac, IpAddr), Counts>,
}

/// The collector's state between batches.
pub struct Collector {
    clients: ClientMap,
    recs: Vec<Record>,
    live: Live,
}

fn run(t: &Traffic, rx: Receiver<Batch>, clients: ClientMap) {
    let mut c = Collector::new(clients);
    loop {
        match rx.recv_timeout(Duration::from_millis(BUCKET_MS / 2)) {
            Ok(b) => c.ingest(t, &b),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        c.tick(t, crate::clock::unix_ms());
    }
}

impl Collector {
    pub fn new(clients: ClientMap) -> Self {
        Self {
            clients,
            recs: Vec::with_capacity(1024),
            live: Live::default(),
        }
    }

    /// Publishes the live tick and moves the history on once per 100 ms of `now_ms`.
    pub fn tick(&mut self, t: &Traffic, now_ms: u64) {
        let tick = now_ms / BUCKET_MS;
        if tick != self.live.tick {
            // Every tick, empty ones included, so a viewer sees time pass.
            if t.live.receiver_count() > 0 {
                publish(t, &mut self.live);
            } else {
                self.live.flows.clear();
            }
            self.live.tick = tick;
            t.history().advance(now_ms);
        }
    }

    /// Records one batch from the NAT thread.
    pub fn ingest(&mut self, t: &Traffic, b: &Batch) {
        let (clients, recs, live) = (&mut self.clients, &mut self.recs, &mut self.live);
        recs.clear();
        let watching = t.live.receiver_count() > 0;
        let mut caps = (!b.data.is_empty()).then(|| t.captures());
        for s in &b.seen {
            let client = clients.lookup(s.inside).unwrap_or_else(|| {
                t.counters.unknown_client_packets.fetch_add(1, Relaxed);
                [0; 6]
            });
            let remote = IpAddr::V4(s.remote);
            let dir = if s.up { Dir::Up } else { Dir::Down };
            recs.push(Record {
                t_ms: s.t_ns / 1_000_000,
                client,
                remote,
                dir,
                bytes: s.len,
            });
            if watching {
                let c = live.flows.entry((client, remote)).or_default();
                if s.up {
                    c.up_bytes += u64::from(s.len);
                    c.up_packets += 1;
                } else {
                    c.down_bytes += u64::from(s.len);
                    c.down_packets += 1;
                }
            }
            if let Some(caps) = caps.as_mut() {
                if s.cap_len > 0 && client != [0; 6] && caps.wants(&client) {
                    caps.push(client, s.t_ns, s.len, b.captured(s));
                }
            }
        }
        drop(caps);
        if t.enabled {
            t.history().ingest(recs);
        }
    }
}

fn publish(t: &Traffic, live: &mut Live) {
    let flows: Vec<_> = live.flows.drain().map(|((m, r), c)| (m, r, c)).collect();
    // No subscribers is not an error: the tick is simply not wanted.
    let _ = t.live.send(Arc::new(LiveTick {
        t_ms: live.tick * BUCKET_MS,
        flows,
    }));
}
