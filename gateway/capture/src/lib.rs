//! Per-LAN-client packet capture for gatewayd.
//!
//! Each client (keyed by MAC) has a ring of the raw IP packets that crossed
//! the router to or from it, newest overwriting oldest, bounded per client
//! and in total. A ring can be exported as a pcap or pcapng file
//! (LINKTYPE_RAW, nanosecond timestamps).
//!
//! `Captures` is not synchronised: the owner wraps it in a lock. `push` is
//! the hot path; to keep lock hold times short, take a [`Snapshot`] under
//! the lock and [`Snapshot::encode`] it after releasing it.

mod names;
mod ring;
mod writer;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::mem::size_of;

use serde::{Deserialize, Serialize};

pub use names::{file_name, format_mac, parse_mac, sanitize, utc_stamp};
use ring::{RecHdr, Ring, REC_HDR};

pub type Mac = [u8; 6];

const MIB: usize = 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Global switch. Off stops recording; what is held stays.
    pub enabled: bool,
    /// Memory cap for one client's ring, overhead included.
    pub per_client_bytes: usize,
    /// Memory cap for all rings together.
    pub total_bytes: usize,
    /// Bytes kept of each packet.
    pub snaplen: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            per_client_bytes: 5 * MIB,
            total_bytes: 64 * MIB,
            snaplen: 65535,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Pcap,
    PcapNg,
}

impl Format {
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }

    pub fn mime(&self) -> &'static str {
        match self {
            Format::Pcap => "application/vnd.tcpdump.pcap",
            Format::PcapNg => "application/x-pcapng",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pcap" => Ok(Format::Pcap),
            "pcapng" => Ok(Format::PcapNg),
            other => Err(format!("unknown capture format {other:?} (pcap or pcapng)")),
        }
    }
}

/// One client's capture state, for the UI / API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientInfo {
    pub mac: String,
    pub enabled: bool,
    /// Packets held.
    pub packets: usize,
    /// Captured packet bytes held (after snaplen).
    pub bytes: usize,
    /// What the client's ring costs, headers and overhead included; this is
    /// what the caps are checked against.
    pub memory_bytes: usize,
    /// Timestamp of the oldest held packet.
    pub first_ns: Option<u64>,
    /// Timestamp of the newest held packet.
    pub last_ns: Option<u64>,
    /// Packets lost: evicted to make room, or too big to fit at all.
    pub dropped: u64,
}

/// A finished capture file.
#[derive(Clone, Debug)]
pub struct Export {
    pub bytes: Vec<u8>,
    pub packets: usize,
    /// Earliest and latest packet timestamps in the file; 0 when empty.
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A packet as held: `data` is at most snaplen bytes, `orig_len` is what
/// it was on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRef<'a> {
    pub ts_ns: u64,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// A copied-out view of part of one client's ring, independent of the
/// `Captures` it came from.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Records back to back, in the ring's own layout.
    records: Vec<u8>,
    packets: usize,
    first_ns: u64,
    last_ns: u64,
    snaplen: u32,
    mac: Mac,
}

struct Client {
    ring: Ring,
    enabled: bool,
    dropped: u64,
    /// Whether the eviction heap has an entry for this client.
    in_heap: bool,
}

/// Fixed cost of one client: its map slot (plus a share of the table's
/// control bytes and slack) and its eviction-heap entry.
const CLIENT_OVERHEAD: usize =
    size_of::<(Mac, Client)>() * 8 / 7 + 8 + size_of::<Reverse<(u64, Mac)>>();

/// Chunk size for a per-client cap: a 32nd of it, as a power of two
/// between 256 B and 64 KiB, so a ring wastes at most ~1/16 of its cap in
/// partly used chunks and chunk allocations stay rare.
fn chunk_size_for(per_client: usize) -> usize {
    let c = (per_client / 32).clamp(256, 64 * 1024);
    1 << c.ilog2()
}

type Map = HashMap<Mac, Client, foldhash::fast::RandomState>;

pub struct Captures {
    cfg: Config,
    chunk: usize,
    clients: Map,
    /// Sum of every client's memory (`CLIENT_OVERHEAD` + ring).
    total: usize,
    /// Min-heap of (oldest held timestamp, client), one entry per non-empty
    /// client. Keys may be stale-low after per-client evictions; they are
    /// corrected when popped. Lets the total cap find the globally oldest
    /// packet in O(log clients) rather than scanning every client per push.
    oldest: BinaryHeap<Reverse<(u64, Mac)>>,
}

impl Captures {
    pub fn new(cfg: Config) -> Self {
        Captures {
            chunk: chunk_size_for(cfg.per_client_bytes),
            cfg,
            clients: Map::default(),
            total: 0,
            oldest: BinaryHeap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Applies a new config at once: smaller caps evict now, a different
    /// chunk size repacks the rings, a smaller snaplen applies to new
    /// packets only. Turning capture off drops nothing.
    pub fn set_config(&mut self, cfg: Config) {
        let chunk = chunk_size_for(cfg.per_client_bytes);
        self.cfg = cfg;
        if chunk != self.chunk {
            self.chunk = chunk;
            for c in self.clients.values_mut() {
                let mut ring = Ring::new(chunk);
                c.ring
                    .for_each(|h, data| ring.push(h.ts_ns, h.orig_len, data));
                c.ring = ring;
            }
        }
        let cap = self.cfg.per_client_bytes;
        self.total = 0;
        for c in self.clients.values_mut() {
            while CLIENT_OVERHEAD + c.ring.memory() > cap && c.ring.pop_front() {
                c.dropped += 1;
            }
            self.total += CLIENT_OVERHEAD + c.ring.memory();
        }
        self.evict_over(self.cfg.total_bytes);
    }

    /// Off stops recording for this client and keeps what it holds.
    pub fn set_client_enabled(&mut self, mac: Mac, on: bool) {
        match self.clients.get_mut(&mac) {
            Some(c) => c.enabled = on,
            // Unknown clients are on by default; only "off" needs an entry.
            None if !on => {
                self.total += CLIENT_OVERHEAD;
                self.clients.insert(mac, Client::new(self.chunk, false));
            }
            None => {}
        }
    }

    pub fn client_enabled(&self, mac: &Mac) -> bool {
        self.clients.get(mac).is_none_or(|c| c.enabled)
    }

    /// Whether `push` would record a packet for this client; lets the caller
    /// skip copying packets nobody keeps.
    pub fn wants(&self, mac: &Mac) -> bool {
        self.cfg.enabled && self.client_enabled(mac)
    }

    /// Records one packet. `data` is the packet as seen and is cut to
    /// snaplen here; `orig_len` is its full length.
    pub fn push(&mut self, client: Mac, ts_ns: u64, orig_len: u32, data: &[u8]) {
        if !self.cfg.enabled {
            return;
        }
        let data = &data[..data.len().min(self.cfg.snaplen as usize)];
        // Never claim fewer bytes on the wire than were captured.
        let orig_len = orig_len.max(data.len() as u32);
        let rec = REC_HDR + data.len();
        let chunk = self.chunk;
        let total = &mut self.total;
        let c = self.clients.entry(client).or_insert_with(|| {
            *total += CLIENT_OVERHEAD;
            Client::new(chunk, true)
        });
        if !c.enabled {
            return;
        }
        let alone = CLIENT_OVERHEAD + Ring::memory_alone(chunk, rec);
        if alone > self.cfg.per_client_bytes || alone > self.cfg.total_bytes {
            c.dropped += 1;
            return;
        }
        let before = c.ring.memory();
        while CLIENT_OVERHEAD + c.ring.memory_after(rec) > self.cfg.per_client_bytes {
            c.ring.pop_front();
            c.dropped += 1;
        }
        c.ring.push(ts_ns, orig_len, data);
        if !c.in_heap {
            c.in_heap = true;
            self.oldest.push(Reverse((ts_ns, client)));
        }
        self.total = self.total - before + c.ring.memory();
        if self.total > self.cfg.total_bytes {
            self.evict_over(self.cfg.total_bytes);
        }
    }

    /// Evicts the globally oldest packets until the total fits `cap`.
    fn evict_over(&mut self, cap: usize) {
        while self.total > cap {
            let Some(Reverse((key, mac))) = self.oldest.pop() else {
                return;
            };
            let Some(c) = self.clients.get_mut(&mac) else {
                continue;
            };
            let Some(front) = c.ring.front().map(|h| h.ts_ns) else {
                c.in_heap = false;
                continue;
            };
            if front != key {
                // Stale key: put it back where it belongs and look again.
                self.oldest.push(Reverse((front, mac)));
                continue;
            }
            // This client holds the oldest packet; keep taking from it while
            // it still does, saving heap round trips.
            let next = self.oldest.peek().map_or(u64::MAX, |Reverse((k, _))| *k);
            while self.total > cap {
                let Some(h) = c.ring.front() else { break };
                if h.ts_ns > next {
                    break;
                }
                let before = c.ring.memory();
                c.ring.pop_front();
                c.dropped += 1;
                self.total = self.total - before + c.ring.memory();
            }
            match c.ring.front() {
                Some(h) => self.oldest.push(Reverse((h.ts_ns, mac))),
                None => c.in_heap = false,
            }
        }
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        let mut v: Vec<ClientInfo> = self
            .clients
            .iter()
            .map(|(mac, c)| ClientInfo {
                mac: format_mac(mac),
                enabled: c.enabled,
                packets: c.ring.packets(),
                bytes: c.ring.data_bytes(),
                memory_bytes: CLIENT_OVERHEAD + c.ring.memory(),
                first_ns: c.ring.front().map(|h| h.ts_ns),
                last_ns: c.ring.last_ns(),
                dropped: c.dropped,
            })
            .collect();
        v.sort_by(|a, b| a.mac.cmp(&b.mac));
        v
    }

    /// Memory held by all rings, counted as the caps count it.
    pub fn memory_bytes(&self) -> usize {
        self.total
    }

    /// Copies out one client's packets with timestamps in [from_ns, to_ns)
    /// (None = unbounded). None if the client is unknown. Cheap enough to
    /// run under the caller's lock: a memcpy of the ring, or of the matching
    /// records.
    pub fn snapshot(
        &self,
        client: &Mac,
        from_ns: Option<u64>,
        to_ns: Option<u64>,
    ) -> Option<Snapshot> {
        let c = self.clients.get(client)?;
        let mut records = Vec::new();
        if from_ns.is_none() && to_ns.is_none() {
            c.ring.copy_all(&mut records);
        } else {
            let (from, to) = (from_ns.unwrap_or(0), to_ns.unwrap_or(u64::MAX));
            c.ring.for_each(|h, data| {
                if h.ts_ns >= from && h.ts_ns < to {
                    records.extend_from_slice(&h.encode());
                    records.extend_from_slice(data);
                }
            });
        }
        let mut s = Snapshot {
            records,
            packets: 0,
            first_ns: u64::MAX,
            last_ns: 0,
            snaplen: self.cfg.snaplen,
            mac: *client,
        };
        let (mut n, mut first, mut last, mut snap) = (0, u64::MAX, 0, s.snaplen);
        for p in s.iter() {
            n += 1;
            first = first.min(p.ts_ns);
            last = last.max(p.ts_ns);
            snap = snap.max(p.data.len() as u32);
        }
        if n == 0 {
            first = 0;
        }
        (s.packets, s.first_ns, s.last_ns, s.snaplen) = (n, first, last, snap);
        Some(s)
    }

    /// One client's packets within [from_ns, to_ns) as a complete file.
    /// `if_name` names the capture interface (empty: the client's MAC).
    pub fn export(
        &self,
        client: &Mac,
        format: Format,
        from_ns: Option<u64>,
        to_ns: Option<u64>,
        if_name: &str,
    ) -> Option<Export> {
        Some(
            self.snapshot(client, from_ns, to_ns)?
                .encode(format, if_name, None),
        )
    }

    /// Drops a client's ring and its settings.
    pub fn forget(&mut self, client: &Mac) {
        if let Some(c) = self.clients.remove(client) {
            self.total -= CLIENT_OVERHEAD + c.ring.memory();
            // Rare; rebuilding keeps the one-entry-per-client rule simple.
            self.oldest.retain(|Reverse((_, m))| m != client);
        }
    }
}

impl Client {
    fn new(chunk: usize, enabled: bool) -> Self {
        Client {
            ring: Ring::new(chunk),
            enabled,
            dropped: 0,
            in_heap: false,
        }
    }
}

impl Snapshot {
    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Earliest packet timestamp; 0 when empty.
    pub fn first_ns(&self) -> u64 {
        self.first_ns
    }

    /// Latest packet timestamp; 0 when empty.
    pub fn last_ns(&self) -> u64 {
        self.last_ns
    }

    /// Packets in capture order.
    pub fn iter(&self) -> impl Iterator<Item = PacketRef<'_>> + '_ {
        let mut rest = &self.records[..];
        std::iter::from_fn(move || {
            if rest.len() < REC_HDR {
                return None;
            }
            let h = RecHdr::decode(&rest[..REC_HDR]);
            let end = REC_HDR + h.caplen as usize;
            let data = &rest[REC_HDR..end];
            rest = &rest[end..];
            Some(PacketRef {
                ts_ns: h.ts_ns,
                orig_len: h.orig_len,
                data,
            })
        })
    }

    /// Encodes the snapshot as a file. `if_name` (pcapng only) defaults to
    /// the client's MAC when empty; `comment` goes in the pcapng section
    /// header (pcap has no place for it).
    pub fn encode(&self, format: Format, if_name: &str, comment: Option<&str>) -> Export {
        let packets = self.iter().map(|p| {
            let h = RecHdr {
                ts_ns: p.ts_ns,
                orig_len: p.orig_len,
                caplen: p.data.len() as u32,
            };
            (h, p.data)
        });
        // Files carry per-packet headers of about the size ours have.
        let hint = self.records.len() + 256 + 16 * self.packets;
        let bytes = match format {
            Format::Pcap => writer::pcap(self.snaplen, packets, hint),
            Format::PcapNg => {
                let mac;
                let name = if if_name.is_empty() {
                    mac = format_mac(&self.mac);
                    &mac
                } else {
                    if_name
                };
                writer::pcapng(self.snaplen, name, comment, packets, hint)
            }
        };
        Export {
            bytes,
            packets: self.packets,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
        }
    }
}

#[cfg(test)]
mod tests;
