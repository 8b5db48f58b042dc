//! The NAT thread's side of recording: it notes each forwarded packet (and, when capture is
//! on, a copy of its LAN-side bytes) in a batch and hands full batches to the collector
//! thread over a bounded channel. It never blocks: when the collector falls behind, the batch
//! is dropped and counted, and the packet still goes through.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packets per batch before it is handed over.
const BATCH_PACKETS: usize = 512;
/// Captured bytes per batch before it is handed over.
const BATCH_BYTES: usize = 512 << 10;
/// A partly filled batch waits at most this long under steady traffic (an idle queue flushes
/// at once, see `idle`).
const BATCH_AGE: Duration = Duration::from_millis(20);

/// One forwarded packet, as the LAN client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub t_ns: u64,
    pub inside: Ipv4Addr,
    pub remote: Ipv4Addr,
    /// Client → internet.
    pub up: bool,
    /// IP total length.
    pub len: u32,
    /// Where its captured bytes sit in `Batch::data` (empty when not captured).
    pub cap_start: u32,
    pub cap_len: u32,
}

#[derive(Debug, Default)]
pub struct Batch {
    pub seen: Vec<Seen>,
    pub data: Vec<u8>,
}

impl Batch {
    pub fn captured(&self, s: &Seen) -> &[u8] {
        let a = s.cap_start as usize;
        &self.data[a..a + s.cap_len as usize]
    }
}

/// Settings the UI may change while the NAT thread runs.
#[derive(Debug, Default)]
pub struct TapControl {
    /// Bytes to copy of each packet; 0 = capture off.
    pub snaplen: AtomicU32,
    /// Batches thrown away because the collector was behind.
    pub dropped_batches: AtomicU64,
    pub dropped_packets: AtomicU64,
}

/// A position to roll back to if the packet turns out to be dropped.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    seen: usize,
    data: usize,
}

pub struct Tap {
    tx: SyncSender<Batch>,
    ctl: Arc<TapControl>,
    batch: Batch,
    first_at: Option<Instant>,
}

impl Tap {
    pub fn new(tx: SyncSender<Batch>, ctl: Arc<TapControl>) -> Self {
        Self {
            tx,
            ctl,
            batch: Batch::default(),
            first_at: None,
        }
    }

    /// Notes `pkt` (an IPv4 packet in its LAN-side form: before NAT going out, after NAT
    /// coming in). Returns a mark for `rollback`.
    pub fn note(&mut self, pkt: &[u8], up: bool, t_ns: u64) -> Mark {
        let mark = Mark {
            seen: self.batch.seen.len(),
            data: self.batch.data.len(),
        };
        if pkt.len() < 20 {
            return mark;
        }
        let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
        let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
        let (inside, remote) = if up { (src, dst) } else { (dst, src) };
        let snap = self.ctl.snaplen.load(Relaxed) as usize;
        let take = pkt.len().min(snap);
        self.batch.data.extend_from_slice(&pkt[..take]);
        self.batch.seen.push(Seen {
            t_ns,
            inside,
            remote,
            up,
            len: pkt.len() as u32,
            cap_start: mark.data as u32,
            cap_len: take as u32,
        });
        self.first_at.get_or_insert_with(Instant::now);
        mark
    }

    /// Forgets everything noted since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        self.batch.seen.truncate(mark.seen);
        self.batch.data.truncate(mark.data);
    }

    /// After each packet: hands the batch over when it is full or old enough.
    pub fn maybe_flush(&mut self) {
        let full = self.batch.seen.len() >= BATCH_PACKETS || self.batch.data.len() >= BATCH_BYTES;
        // Checking the clock only every 64 packets keeps it off the per-packet cost.
        let old = self.batch.seen.len().is_multiple_of(64)
            && self.first_at.is_some_and(|t| t.elapsed() >= BATCH_AGE);
        if full || old {
            self.flush();
        }
    }

    /// The queue went idle: hand over what there is, so the live view stays current.
    pub fn idle(&mut self) {
        if !self.batch.seen.is_empty() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.first_at = None;
        let fresh = Batch {
            seen: Vec::with_capacity(self.batch.seen.capacity()),
            data: Vec::with_capacity(BATCH_BYTES.min(self.batch.data.capacity())),
        };
        let batch = std::mem::replace(&mut self.batch, fresh);
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.ctl.dropped_batches.fetch_add(1, Relaxed);
                self.ctl
                    .dropped_packets
                    .fetch_add(b.seen.len() as u64, Relaxed);
                // Reuse the buffers rather than free and reallocate them.
                self.batch = Batch {
                    seen: {
                        let mut v = b.seen;
                        v.clear();
                        v
                    },
                    data: {
                        let mut v = b.data;
                        v.clear();
                        v
                    },
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src: [u8; 4], dst: [u8; 4], len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        p[0] = 0x45;
        p[9] = 17;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    fn tap(snaplen: u32, depth: usize) -> (Tap, std::sync::mpsc::Receiver<Batch>, Arc<TapControl>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let ctl = Arc::new(TapControl::default());
        ctl.snaplen.store(snaplen, Relaxed);
        (Tap::new(tx, ctl.clone()), rx, ctl)
    }

    #[test]
    fn notes_lan_side_endpoints_and_snaps() {
        let (mut t, rx, _) = tap(100, 4);
        t.note(&udp([192, 168, 1, 10], [198, 51, 100, 1], 300), true, 5);
        t.note(&udp([198, 51, 100, 1], [192, 168, 1, 10], 60), false, 6);
        t.idle();
        let b = rx.try_recv().unwrap();
        assert_eq!(b.seen.len(), 2);
        let (up, down) = (b.seen[0], b.seen[1]);
        assert_eq!(
            (up.inside, up.remote, up.up, up.len),
            (
                "192.168.1.10".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                true,
                300
            )
        );
        assert_eq!(
            (down.inside, down.remote, down.up, down.len),
            (
                "192.168.1.10".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
                false,
                60
            )
        );
        assert_eq!(b.captured(&up).len(), 100);
        assert_eq!(
            b.captured(&down),
            &udp([198, 51, 100, 1], [192, 168, 1, 10], 60)[..]
        );
    }

    #[test]
    fn rollback_forgets_a_dropped_packet() {
        let (mut t, rx, _) = tap(65535, 4);
        t.note(&udp([192, 168, 1, 10], [198, 51, 100, 1], 40), true, 1);
        let m = t.note(&udp([192, 168, 1, 11], [198, 51, 100, 1], 50), true, 2);
        t.rollback(m);
        t.idle();
        let b = rx.try_recv().unwrap();
        assert_eq!(b.seen.len(), 1);
        assert_eq!(b.data.len(), 40);
    }

    #[test]
    fn capture_off_copies_nothing_and_runts_are_ignored() {
        let (mut t, rx, _) = tap(0, 4);
        t.note(&udp([192, 168, 1, 10], [198, 51, 100, 1], 1500), true, 1);
        t.note(&[0x45; 10], true, 2);
        t.idle();
        let b = rx.try_recv().unwrap();
        assert_eq!(b.seen.len(), 1);
        assert!(b.data.is_empty());
        assert_eq!(b.seen[0].len, 1500);
    }

    #[test]
    fn full_channel_drops_and_counts_without_blocking() {
        let (mut t, rx, ctl) = tap(0, 1);
        for i in 0..(3 * BATCH_PACKETS) {
            t.note(
                &udp([192, 168, 1, 10], [198, 51, 100, 1], 40),
                true,
                i as u64,
            );
            t.maybe_flush();
        }
        assert_eq!(rx.try_iter().count(), 1);
        assert_eq!(ctl.dropped_batches.load(Relaxed), 2);
        assert_eq!(ctl.dropped_packets.load(Relaxed), 2 * BATCH_PACKETS as u64);
    }
}
