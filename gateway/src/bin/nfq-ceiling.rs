//! The least any nfqueue datapath can cost, for `scripts/bench-nat`: every packet takes the
//! trip through a queue and back and nothing else happens to it in userspace. It uses the
//! same batched socket as gatewayd (`gateway::nat::nfqueue`), so it measures the kernel's
//! side of the trip, which a userspace NAT cannot avoid, and not a different implementation.
//!
//!   nfq-ceiling QUEUE hop    copy 128 bytes (enough for any header) and accept unchanged:
//!                            the trip alone; too little to translate anything
//!   nfq-ceiling QUEUE copy   copy whole packets and write each back with the same addresses:
//!                            the trip a translating datapath needs (a payload written back
//!                            replaces the whole packet). The one piece of work kept is what
//!                            writing back forces: a packet that came "checksum not ready"
//!                            (GSO) gets its full checksum, as the kernel then trusts it.
//!
//! Runs until killed. Not part of the image.

use gateway::nat::nfqueue::{self, Meta, Msg, QueueSocket, RecvBatch, Verdicts, NF_ACCEPT};
use gateway::nat::packet::{Csum, Ipv4Packet, Side, L4};

/// Completes the L4 checksum of a packet flagged GSO or checksum-not-ready, by "rewriting" its
/// source to itself with gatewayd's own code. False when it cannot (not TCP or UDP, malformed).
fn complete_checksum(meta: &Meta, buf: &mut [u8]) -> bool {
    if meta.skb_info & (nfqueue::SKB_CSUM_NOT_READY | nfqueue::SKB_GSO) == 0 {
        return true;
    }
    let Ok(mut p) = Ipv4Packet::new_checked(buf) else {
        return false;
    };
    let port = match p.l4() {
        Ok(L4::Tcp { src_port, .. } | L4::Udp { src_port, .. }) => src_port,
        _ => return false,
    };
    let src = p.src();
    p.rewrite(Side::Src, src, port, Csum::NotReady).is_ok()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!("usage: nfq-ceiling QUEUE hop|copy");
        std::process::exit(2)
    };
    let queue: u16 = args
        .get(1)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| usage());
    let write_back = match args.get(2).map(String::as_str) {
        Some("hop") => false,
        Some("copy") => true,
        _ => usage(),
    };
    let copy_range = if write_back { u16::MAX } else { 128 };
    let q = match QueueSocket::open(queue, copy_range, 8192, true) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("nfq-ceiling: binding queue {queue}: {e}");
            std::process::exit(1)
        }
    };
    eprintln!("nfq-ceiling: serving queue {queue}");
    let mut batch = RecvBatch::default();
    let mut verdicts = Verdicts::default();
    let mut metas = Vec::with_capacity(nfqueue::BATCH);
    loop {
        match q.recv(&mut batch, true) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
            Err(e) => {
                eprintln!("nfq-ceiling: recv: {e}");
                std::process::exit(1)
            }
        }
        metas.clear();
        for i in 0..batch.len() {
            nfqueue::parse_datagram(batch.datagram(i), |m| {
                if let Ok(Msg::Packet(meta)) = m {
                    metas.push((i, meta));
                }
            });
        }
        for (i, meta) in metas.drain(..) {
            // A cut copy must not be written back (the kernel would cut the packet to it).
            let payload = (write_back
                && !meta.truncated()
                && complete_checksum(&meta, &mut batch.datagram_mut(i)[meta.payload.clone()]))
            .then_some((i, meta.payload));
            verdicts.push(queue, meta.id, NF_ACCEPT, payload);
            if verdicts.full() {
                let _ = q.send(&batch, &mut verdicts);
            }
        }
        if let Err(e) = q.send(&batch, &mut verdicts) {
            eprintln!("nfq-ceiling: verdicts: {e}");
        }
    }
}
