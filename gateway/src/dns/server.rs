//! The LAN-facing sockets: UDP and TCP on port 53 of the router's LAN address.
//!
//! UDP is served by several sockets bound to the same address with
//! SO_REUSEPORT (the kernel spreads clients over them by address and port),
//! each read by its own thread in batches (recvmmsg). Cache hits and blocked
//! names are answered on that thread and sent back in one sendmmsg per batch;
//! everything else goes to the async runtime, which replies on the same
//! socket when the answer is ready. TCP is served by the runtime.

use super::resolver::{Batch, Resolver, Transport};
use super::udp_batch::{send_all, to_socket_addr, RecvBatch, BATCH};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{sleep, timeout};

/// Queries being forwarded at once over UDP; beyond this we drop (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 512;
const MAX_TCP_CONNECTIONS: usize = 64;
/// RFC 7766 suggests seconds, not minutes, for an idle DNS TCP connection.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Time allowed for the rest of a message once its length has arrived, and for writing a reply.
const TCP_IO: Duration = Duration::from_secs(5);
/// Socket receive buffer: absorbs bursts while a worker is busy.
const RCVBUF: usize = 4 << 20;

fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    // Best effort: a smaller buffer only means earlier drops under load.
    let _ = s.set_recv_buffer_size(RCVBUF);
    let _ = s.set_send_buffer_size(RCVBUF);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds `workers` UDP sockets and the TCP listener, retrying every second:
/// at boot the LAN bridge may not have its address yet.
pub async fn bind(addr: SocketAddr, workers: usize) -> (Vec<UdpSocket>, TcpListener) {
    let mut warned = false;
    loop {
        let res = async {
            let first = udp_socket(addr)?;
            // Port 0 (tests): the others join the port the first one got.
            let addr = first.local_addr()?;
            let mut udp = vec![first];
            for _ in 1..workers.max(1) {
                udp.push(udp_socket(addr)?);
            }
            Ok::<_, std::io::Error>((udp, TcpListener::bind(addr).await?))
        };
        match res.await {
            Ok(sockets) => {
                eprintln!(
                    "gatewayd: dns: listening on {addr} (udp x{}, tcp)",
                    sockets.0.len()
                );
                return sockets;
            }
            Err(e) => {
                if !warned {
                    eprintln!("gatewayd: dns: cannot bind {addr}: {e}; retrying every second");
                    warned = true;
                }
                sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Starts one thread per socket. The returned channel yields when any of them
/// stops (which must not happen): the caller treats that as fatal.
pub fn spawn_udp_workers(socks: Vec<UdpSocket>, resolver: Arc<Resolver>) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(socks.len().max(1));
    let rt = tokio::runtime::Handle::current();
    let slots = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    for (n, sock) in socks.into_iter().enumerate() {
        let (resolver, rt, slots, stop) = (resolver.clone(), rt.clone(), slots.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("dns-udp-{n}"))
            .spawn(move || {
                // Tell the daemon if this thread ends, however it ends.
                struct Stopped(mpsc::Sender<()>);
                impl Drop for Stopped {
                    fn drop(&mut self) {
                        let _ = self.0.try_send(());
                    }
                }
                let _guard = Stopped(stop);
                worker(n, Arc::new(sock), &resolver, &rt, &slots);
            });
        if let Err(e) = spawned {
            eprintln!("gatewayd: dns: cannot start udp worker: {e}");
            let _ = tx.try_send(());
        }
    }
    rx
}

fn worker(
    n: usize,
    sock: Arc<UdpSocket>,
    resolver: &Arc<Resolver>,
    rt: &tokio::runtime::Handle,
    slots: &Arc<Semaphore>,
) {
    let fd = sock.as_raw_fd();
    let counters = resolver.counters.clone();
    let log = counters.log.worker_shard(n);
    let mut rx = RecvBatch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    // SAFETY: all-zero is a valid sockaddr_storage.
    let zero: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut dests = vec![(zero, 0 as libc::socklen_t); BATCH];
    loop {
        let got = match rx.recv(fd) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("gatewayd: dns: udp receive: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let mut batch = Batch::new(log);

        let mut answered = 0;
        for i in 0..got {
            let len = rx.hdrs[i].msg_len as usize;
            let (addr, alen) = (rx.addrs[i], rx.hdrs[i].msg_hdr.msg_namelen);
            let Some(peer) = to_socket_addr(&addr, alen) else {
                continue;
            };
            if rx.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                batch.tally.queries += 1;
                batch.tally.malformed += 1;
                continue;
            }
            let query = &rx.bufs[i][..len];
            if resolver.try_fast(query, peer.ip(), &mut outs[answered], &mut batch) {
                dests[answered] = (addr, alen);
                answered += 1;
                continue;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                batch.tally.queries += 1;
                counters.dropped_busy.fetch_add(1, Relaxed);
                continue;
            };
            let query = query.to_vec();
            let (sock, resolver) = (sock.clone(), resolver.clone());
            rt.spawn(async move {
                if let Some(reply) = resolver.handle(&query, Transport::Udp, peer.ip()).await {
                    // Never block a runtime thread: a full send buffer drops the reply.
                    let _ = socket2::SockRef::from(&*sock).send_to_with_flags(
                        &reply,
                        &SockAddr::from(peer),
                        libc::MSG_DONTWAIT,
                    );
                }
                drop(slot);
            });
        }
        if answered > 0 {
            send_all(fd, &outs, &dests, answered);
        }
        batch.tally.flush(&counters);
    }
}

pub async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                eprintln!("gatewayd: dns: tcp accept: {e}");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let resolver = resolver.clone();
        tokio::spawn(async move {
            connection(stream, peer, &resolver).await;
            drop(slot);
        });
    }
}

/// Length-prefixed messages, answered in order, until the client goes quiet,
/// closes, or sends something we drop.
async fn connection(mut stream: TcpStream, peer: SocketAddr, resolver: &Resolver) {
    loop {
        let mut len = [0u8; 2];
        if !matches!(
            timeout(TCP_IDLE, stream.read_exact(&mut len)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(
            timeout(TCP_IO, stream.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(reply) = resolver.handle(&query, Transport::Tcp, peer.ip()).await else {
            return;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&reply_len.to_be_bytes());
        framed.extend_from_slice(&reply);
        if !matches!(timeout(TCP_IO, stream.write_all(&framed)).await, Ok(Ok(_))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Blocklist, Config};
    use crate::context::Context;
    use crate::dns::message::tests::query_msg;
    use crate::dns::Counters;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, RecordType};
    use std::net::Ipv4Addr;

    fn resolver(list: &std::path::Path) -> Arc<Resolver> {
        let mut cfg = Config::default();
        cfg.lan.address = Ipv4Addr::LOCALHOST;
        cfg.dns.blocklists = vec![Blocklist {
            name: "t".into(),
            path: list.display().to_string(),
            enabled: true,
        }];
        let (_tx, rx) = tokio::sync::watch::channel(crate::wan::WanStatus::default());
        let ctx = Context {
            config: Arc::new(cfg),
            config_error: None,
            run_dir: std::env::temp_dir(),
            wan: rx,
        };
        Arc::new(Resolver::new(ctx, Arc::new(Counters::default()), None))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_workers_and_tcp_answer() {
        let dir = std::env::temp_dir().join(format!(
            "gh-srv-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, "blocked.test\n").unwrap();
        let r = resolver(&list);
        let (udp, tcp) = bind("127.0.0.1:0".parse().unwrap(), 2).await;
        assert_eq!(udp.len(), 2);
        let addr = udp[0].local_addr().unwrap();
        assert_eq!(udp[1].local_addr().unwrap(), addr, "SO_REUSEPORT group");
        let _stopped = spawn_udp_workers(udp, r.clone());

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = |name: &str, id: u16| query_msg(name, RecordType::A, id).to_vec().unwrap();
        let mut buf = [0u8; 2048];
        // Slow path (a local name, answered via the runtime).
        client
            .send_to(&ask("gatehouse.lan.", 1), addr)
            .await
            .unwrap();
        let (n, _) = timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.id(), 1);
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(127, 0, 0, 1)));
        // Fast path, in bursts that arrive as batches.
        for id in 100..164u16 {
            client
                .send_to(&ask("x.blocked.test.", id), addr)
                .await
                .unwrap();
        }
        let mut ids = Vec::new();
        for _ in 0..64 {
            let (n, _) = timeout(Duration::from_secs(5), client.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert_eq!(m.response_code(), ResponseCode::NoError);
            assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
            ids.push(m.id());
        }
        ids.sort();
        assert_eq!(ids, (100..164).collect::<Vec<u16>>());
        // Garbage gets no answer but is counted.
        client.send_to(b"\x12\x34garbage", addr).await.unwrap();
        client
            .send_to(&ask("gatehouse.lan.", 2), addr)
            .await
            .unwrap();
        let (n, _) = timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(Message::from_vec(&buf[..n]).unwrap().id(), 2);
        // Workers add their counts once per batch, which may land just after
        // the slow path's answer: give it a moment.
        for _ in 0..100 {
            if r.counters.malformed.load(Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.counters.malformed.load(Relaxed), 1);
        assert_eq!(r.counters.blocked.load(Relaxed), 64);

        // TCP on the same port.
        let tcp_addr = tcp.local_addr().unwrap();
        tokio::spawn(serve_tcp(tcp, r.clone()));
        let mut s = TcpStream::connect(tcp_addr).await.unwrap();
        let q = ask("blocked.test.", 7);
        s.write_all(&(q.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.unwrap();
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut reply).await.unwrap();
        let m = Message::from_vec(&reply).unwrap();
        assert_eq!(m.id(), 7);
        assert_eq!(m.answers()[0].data(), &RData::A(A::new(0, 0, 0, 0)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
