//! The nfqueue loop: one packet in, one verdict out.
//!
//! GSO trade-off: we do NOT set NFQA_CFG_F_GSO, so the kernel segments large packets and
//! completes checksums before queueing. Every packet then carries a valid checksum and an
//! incremental update is correct, at the cost of throughput (about 1 Gbit/s instead of ~7 with
//! GSO on the test host, see PLATFORM-NOTES). Should a packet still arrive "checksum not ready",
//! the full L4 checksum is computed, because nfqueue marks a payload we replaced CHECKSUM_NONE.

use super::packet::Csum;
use super::translate::{Action, Direction, Drop};
use super::{IfIndex, Table, WanAddr};
use crate::traffic::tap::Tap;
use anyhow::Context as _;
use nfq::{Queue, Verdict};
use std::sync::atomic::Ordering::Relaxed;

const NF_INET_PRE_ROUTING: u8 = 0;
const NF_INET_POST_ROUTING: u8 = 4;

/// Opens and binds the queue. Must happen before the queue rules exist: without a listener
/// (and without bypass) the kernel drops every queued packet.
pub fn open(queue_num: u16) -> anyhow::Result<Queue> {
    let mut q = Queue::open().context("opening nfnetlink socket")?;
    q.bind(queue_num)
        .with_context(|| format!("binding nfqueue {queue_num} (another gatewayd running?)"))?;
    q.set_recv_gso(queue_num, false)?;
    q.set_fail_open(queue_num, false)?;
    // Room for bursts while the single thread is busy; the kernel default is 1024.
    q.set_queue_max_len(queue_num, 8192)?;
    Ok(q)
}

/// Serves the queue until the socket fails. Never panics on packet contents. Every packet
/// that goes through is noted on `tap` in its LAN-side form (a hairpinned one once, as its
/// sender sent it). `lan` tells LAN-side packets (hairpins) from WAN-side ones.
pub fn serve(
    q: &mut Queue,
    table: &Table,
    wan: &WanAddr,
    lan: &IfIndex,
    tap: &mut Tap,
) -> anyhow::Result<()> {
    let stats = &table.stats;
    // Polls first, and only when the queue is empty hands the tap's partial batch over and
    // blocks: the history stays current without a timer in the packet path.
    q.set_nonblocking(true);
    loop {
        let mut msg = match q.recv() {
            Ok(m) => m,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                tap.idle();
                q.set_nonblocking(false);
                let m = q.recv();
                q.set_nonblocking(true);
                match m {
                    Ok(m) => m,
                    Err(e) => return Err(e).context("nfqueue recv"),
                }
            }
            Err(e) => match e.raw_os_error() {
                // Interrupted, kernel queue overflow, or one oversized message: keep going.
                Some(libc::EINTR | libc::ENOBUFS | libc::ENOSPC) => {
                    stats.recv_errors.fetch_add(1, Relaxed);
                    continue;
                }
                _ => return Err(e).context("nfqueue recv"),
            },
        };
        let lan_if = lan.get();
        let dir = match msg.get_hook() {
            NF_INET_PRE_ROUTING if lan_if != 0 && msg.get_indev() == lan_if => {
                Some(Direction::HairpinIn)
            }
            NF_INET_PRE_ROUTING => Some(Direction::Inbound),
            NF_INET_POST_ROUTING if lan_if != 0 && msg.get_outdev() == lan_if => {
                Some(Direction::HairpinOut)
            }
            NF_INET_POST_ROUTING => Some(Direction::Outbound),
            _ => None,
        };
        let result = match dir {
            None => Err(Drop::Unsupported),
            // A copy shorter than the packet must never be written back.
            Some(_) if msg.get_original_len() > msg.get_payload().len() => Err(Drop::Truncated),
            // Only with NFQA_CFG_F_GSO, which we never request; refuse rather than guess.
            Some(_) if msg.is_seg_offloaded() => Err(Drop::Unsupported),
            Some(dir) => {
                let csum = if msg.is_checksum_ready() {
                    Csum::Complete
                } else {
                    Csum::NotReady
                };
                let addr = wan.get();
                let now = crate::clock::unix_ns();
                let buf = msg.get_payload_mut();
                match dir {
                    Direction::Outbound | Direction::HairpinIn => {
                        // Outgoing packets are seen before NAT rewrites them. The router's own
                        // ICMP errors (already from the WAN address) are no LAN host's
                        // traffic, nor are packets that stay with the router.
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
        tap.maybe_flush();
        match (result, dir) {
            (Ok(Action::Local), _) => stats.to_router.fetch_add(1, Relaxed),
            (Ok(_), Some(Direction::Outbound)) => stats.translated_out.fetch_add(1, Relaxed),
            (Ok(_), Some(Direction::HairpinIn)) => stats.hairpinned.fetch_add(1, Relaxed),
            (Ok(_), Some(Direction::HairpinOut)) => 0,
            (Ok(_), _) => stats.translated_in.fetch_add(1, Relaxed),
            (Err(d), _) => stats.dropped(d).fetch_add(1, Relaxed),
        };
        msg.set_verdict(if result.is_ok() {
            Verdict::Accept
        } else {
            Verdict::Drop
        });
        if let Err(e) = q.verdict(msg) {
            // A failed verdict strands only that packet; a dead socket shows up at the
            // next recv.
            if stats
                .verdict_errors
                .fetch_add(1, Relaxed)
                .is_multiple_of(10_000)
            {
                eprintln!("gatewayd: nat: verdict failed: {e}");
            }
        }
    }
}
