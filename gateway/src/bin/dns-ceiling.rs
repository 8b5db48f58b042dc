//! The least a UDP DNS server can cost, for `scripts/bench-dns`: every query is answered with
//! no work at all (the query sent back flagged as a response: NOERROR, no records), through the
//! same batched socket calls as gatewayd's UDP workers (`gateway::dns::udp_batch`), one
//! thread per SO_REUSEPORT socket as gatewayd runs them. What it costs is the kernel's UDP
//! path, which any server pays; a cache cannot answer for less.
//!
//!   dns-ceiling ADDR:PORT [THREADS]     (default: one thread per CPU)
//!
//! Runs until killed. Not part of the image.

use gateway::dns::udp_batch::{send_all, RecvBatch, BATCH};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

fn serve(sock: &Socket) -> ! {
    let fd = sock.as_raw_fd();
    let mut rx = RecvBatch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    // SAFETY: all-zero is a valid sockaddr_storage.
    let zero: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut dests = vec![(zero, 0 as libc::socklen_t); BATCH];
    loop {
        let Ok(got) = rx.recv(fd) else { continue };
        let mut n = 0;
        for i in 0..got {
            let len = rx.hdrs[i].msg_len as usize;
            if len < 12 {
                continue;
            }
            let out = &mut outs[n];
            out.clear();
            out.extend_from_slice(&rx.bufs[i][..len]);
            out[2] |= 0x80; // QR: a response
            out[3] &= 0xf0; // RCODE NOERROR
            dests[n] = (rx.addrs[i], rx.hdrs[i].msg_hdr.msg_namelen);
            n += 1;
        }
        send_all(fd, &outs, &dests, n);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(addr) = args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()) else {
        eprintln!("usage: dns-ceiling ADDR:PORT [THREADS]");
        std::process::exit(2)
    };
    let threads = args
        .get(2)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .and_then(|s| {
                s.set_reuse_port(true)?;
                s.set_recv_buffer_size(4 << 20)?;
                s.bind(&addr.into())?;
                Ok(s)
            })
            .unwrap_or_else(|e| {
                eprintln!("dns-ceiling: {addr}: {e}");
                std::process::exit(1)
            });
        handles.push(std::thread::spawn(move || serve(&sock)));
    }
    eprintln!("dns-ceiling: answering on {addr} (udp x{threads})");
    for h in handles {
        let _ = h.join();
    }
}
