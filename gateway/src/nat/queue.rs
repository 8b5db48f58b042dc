//! The nfqueue loop: a batch of packets in, a batch of verdicts out.
//!
//! GSO is on (NFQA_CFG_F_GSO): TCP arrives as the sender's or GRO's large segments, not cut
//! to the MTU, which is what lets the datapath keep pace with the kernel's NAT. Such packets
//! often arrive "checksum not ready" (the field holds only the pseudo-header sum), and a GRO
//! aggregate's checksum belongs to its first segment only; nfqueue marks any payload we
//! replace CHECKSUM_NONE. So both get their full L4 checksum computed; the rest are updated
//! incrementally.

use super::nfqueue::{self, Meta, Msg, QueueSocket, RecvBatch, Verdicts, NF_ACCEPT, NF_DROP};
use super::packet::Csum;
use super::translate::{Action, Direction, Drop};
use super::{IfIndex, Table, WanAddr};
use crate::traffic::tap::Tap;
use anyhow::Context as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::Duration;

const NF_INET_PRE_ROUTING: u8 = 0;
const NF_INET_POST_ROUTING: u8 = 4;
const FAILURE_CHECK_EVERY: Duration = Duration::from_millis(500);
/// Room for bursts while a batch is processed; the kernel default is 1024.
const QUEUE_MAX_LEN: u32 = 8192;

/// Opens and binds the queue. Must happen before the queue rules exist: without a listener
/// (and without bypass) the kernel drops every queued packet.
pub fn open(queue_num: u16) -> anyhow::Result<QueueSocket> {
    let q = QueueSocket::open(queue_num, u16::MAX, QUEUE_MAX_LEN, true).with_context(|| {
        format!("binding nfqueue {queue_num} (another gatewayd running? nfnetlink_queue loaded?)")
    })?;
    if q.early_drops > 0 {
        eprintln!(
            "gatewayd: nat: dropped {} packets queued before the queue was set up",
            q.early_drops
        );
    }
    Ok(q)
}

/// The per-packet context `serve` hands to `handle`.
struct Path<'a> {
    table: &'a Table,
    wan: &'a WanAddr,
    lan_if: u32,
}

/// Serves the queue until the socket fails. Never panics on packet contents. Every packet
/// that goes through is noted on `tap` in its LAN-side form (a hairpinned one once, as its
/// sender sent it). `lan` tells LAN-side packets (hairpins) from WAN-side ones.
pub fn serve(
    q: &mut QueueSocket,
    table: &Table,
    wan: &WanAddr,
    lan: &IfIndex,
    tap: &mut Tap,
    failed: &Mutex<Option<anyhow::Error>>,
) -> anyhow::Result<()> {
    let stats = &table.stats;
    // Blocking receives wake up this often to see whether the setup beside us failed.
    q.set_recv_timeout(FAILURE_CHECK_EVERY)
        .context("setting the nfqueue receive timeout")?;
    let mut batch = RecvBatch::default();
    let mut verdicts = Verdicts::default();
    let mut metas: Vec<(usize, Meta)> = Vec::with_capacity(nfqueue::BATCH);
    loop {
        // Polls first, and only when the queue is empty hands the tap's partial batch over
        // and blocks: the history stays current without a timer in the packet path.
        let n = match q.recv(&mut batch, false) {
            Ok(0) => {
                tap.idle();
                q.recv(&mut batch, true)
            }
            r => r,
        };
        match n {
            Ok(0) => {
                if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(e);
                }
                continue;
            }
            Ok(_) => {}
            // Interrupted, or the kernel dropped packets for lack of buffer: keep going.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ENOBUFS)) => {
                stats.recv_errors.fetch_add(1, Relaxed);
                continue;
            }
            Err(e) => return Err(e).context("nfqueue recv"),
        }
        metas.clear();
        for i in 0..batch.len() {
            nfqueue::parse_datagram(batch.datagram(i), |m| match m {
                Ok(Msg::Packet(meta)) => metas.push((i, meta)),
                // A verdict the kernel refused (its packet already gone): that packet only.
                Ok(Msg::Ack { errno, .. }) if errno != 0 => {
                    stats.verdict_errors.fetch_add(1, Relaxed);
                }
                Ok(_) => {}
                Err(nfqueue::Malformed) => {
                    stats.recv_errors.fetch_add(1, Relaxed);
                }
            });
        }
        let path = Path {
            table,
            wan,
            lan_if: lan.get(),
        };
        for (i, meta) in metas.drain(..) {
            let buf = &mut batch.datagram_mut(i)[meta.payload.clone()];
            let verdict = match handle(&path, &meta, buf, tap) {
                Ok(Action::Translated) => (NF_ACCEPT, Some((i, meta.payload))),
                // Untouched: no need to copy it back.
                Ok(Action::Local) => (NF_ACCEPT, None),
                Err(_) => (NF_DROP, None),
            };
            verdicts.push(q.queue(), meta.id, verdict.0, verdict.1);
            if verdicts.full() {
                send(q, &batch, &mut verdicts, table);
            }
        }
        send(q, &batch, &mut verdicts, table);
        tap.maybe_flush();
    }
}

fn send(q: &QueueSocket, batch: &RecvBatch, v: &mut Verdicts, table: &Table) {
    let n = v.len() as u64;
    if let Err(e) = q.send(batch, v) {
        // A failed send strands only these packets (the kernel frees them when the queue
        // goes); a dead socket shows up at the next recv.
        if table.stats.verdict_errors.fetch_add(n, Relaxed) < n {
            eprintln!("gatewayd: nat: sending verdicts failed: {e}");
        }
    }
}

/// Decides one packet, rewriting `buf` in place, and counts the outcome.
fn handle(p: &Path, meta: &Meta, buf: &mut [u8], tap: &mut Tap) -> Result<Action, Drop> {
    let stats = &p.table.stats;
    let dir = match meta.hook {
        NF_INET_PRE_ROUTING if p.lan_if != 0 && meta.indev == p.lan_if => {
            Some(Direction::HairpinIn)
        }
        NF_INET_PRE_ROUTING => Some(Direction::Inbound),
        NF_INET_POST_ROUTING if p.lan_if != 0 && meta.outdev == p.lan_if => {
            Some(Direction::HairpinOut)
        }
        NF_INET_POST_ROUTING => Some(Direction::Outbound),
        _ => None,
    };
    let result = match dir {
        None => Err(Drop::Unsupported),
        // A copy shorter than the packet must never be written back: the kernel would cut
        // the packet to it.
        Some(_) if meta.truncated() => Err(Drop::Truncated),
        Some(dir) => {
            let csum = if meta.skb_info & (nfqueue::SKB_CSUM_NOT_READY | nfqueue::SKB_GSO) != 0 {
                Csum::NotReady
            } else {
                Csum::Complete
            };
            let addr = p.wan.get();
            let now = crate::clock::unix_ns();
            let table = p.table;
            match dir {
                Direction::Outbound | Direction::HairpinIn => {
                    // Outgoing packets are seen before NAT rewrites them. The router's own
                    // ICMP errors (already from the WAN address) are no LAN host's traffic,
                    // nor are packets that stay with the router.
                    let own = addr.is_some_and(|a| buf.get(12..16) == Some(&a.octets()[..]));
                    let mark = (!own).then(|| tap.note(buf, true, now));
                    let r = table.translate(buf, dir, addr, csum);
                    if let (Err(_) | Ok(Action::Local), Some(mark)) = (&r, mark) {
                        tap.rollback(mark);
                    }
                    r
                }
                Direction::Inbound => {
                    let r = table.translate(buf, dir, addr, csum);
                    if r.is_ok() {
                        tap.note(buf, false, now);
                    }
                    r
                }
                // Already noted on its way in.
                Direction::HairpinOut => table.translate(buf, dir, addr, csum),
            }
        }
    };
    match (result, dir) {
        (Ok(Action::Local), _) => stats.to_router.fetch_add(1, Relaxed),
        (Ok(_), Some(Direction::Outbound)) => stats.translated_out.fetch_add(1, Relaxed),
        (Ok(_), Some(Direction::HairpinIn)) => stats.hairpinned.fetch_add(1, Relaxed),
        (Ok(_), Some(Direction::HairpinOut)) => 0,
        (Ok(_), _) => stats.translated_in.fetch_add(1, Relaxed),
        (Err(d), _) => stats.dropped(d).fetch_add(1, Relaxed),
    };
    result
}
