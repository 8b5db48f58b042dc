//! The DHCP server's socket: receive, decide (server_logic), persist, reply.

use super::codec;
use super::lease_store::SharedStore;
use super::server_logic::{self, Kind, Settings};
use super::Counters;
use crate::context::Context;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// How often to check that the LAN interface was not deleted and re-created
/// under us (SO_BINDTODEVICE sticks to the old interface index).
const IFINDEX_CHECK: Duration = Duration::from_secs(10);

pub async fn serve(
    ctx: Context,
    store: SharedStore,
    counters: Arc<Counters>,
) -> anyhow::Result<()> {
    let settings = Arc::new(Settings::from_config(&ctx.config));
    let iface = ctx.config.lan.interface.clone();
    let mut malformed_log = RateLimit::new(Duration::from_secs(10));
    loop {
        let (sock, ifindex) = bind_when_present(&iface).await?;
        eprintln!("dhcp: listening on {iface} port 67");
        let mut buf = vec![0u8; 4096];
        let mut check = tokio::time::interval(IFINDEX_CHECK);
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok((n, peer)) => {
                        handle_datagram(&sock, &buf[..n], peer, &settings, &store, &counters, &mut malformed_log).await;
                    }
                    Err(e) => {
                        eprintln!("dhcp: receive on {iface} failed: {e}; rebinding");
                        break;
                    }
                },
                _ = check.tick() => {
                    if nix::net::if_::if_nametoindex(iface.as_str()).ok() != Some(ifindex) {
                        eprintln!("dhcp: {iface} changed or disappeared; rebinding");
                        break;
                    }
                }
            }
        }
        drop(sock);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Binds to `iface`, waiting for it to appear: at boot init may still be
/// creating the bridge. Other errors (port taken, no privilege) are fatal.
async fn bind_when_present(iface: &str) -> anyhow::Result<(UdpSocket, u32)> {
    let mut waiting = false;
    loop {
        match bind(iface) {
            Ok(s) => return Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                if !waiting {
                    eprintln!("dhcp: interface {iface} not present yet; retrying every second");
                    waiting = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("dhcp: binding port 67 on {iface}: {e}")),
        }
    }
}

fn bind(iface: &str) -> std::io::Result<(UdpSocket, u32)> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_broadcast(true)?;
    // Clients without an address send from 0.0.0.0 to 255.255.255.255; only the
    // device binding tells us (and the kernel, for our broadcasts) which link.
    s.bind_device(Some(iface.as_bytes()))?;
    let ifindex = nix::net::if_::if_nametoindex(iface)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)).into())?;
    Ok((UdpSocket::from_std(s.into())?, ifindex))
}

async fn handle_datagram(
    sock: &UdpSocket,
    data: &[u8],
    peer: SocketAddr,
    settings: &Arc<Settings>,
    store: &SharedStore,
    counters: &Counters,
    malformed_log: &mut RateLimit,
) {
    counters.received.fetch_add(1, Relaxed);
    let msg = match codec::decode(data) {
        Ok(m) => m,
        Err(e) => {
            let n = counters.malformed.fetch_add(1, Relaxed) + 1;
            if malformed_log.allow() {
                eprintln!("dhcp: dropped malformed packet from {peer}: {e} ({n} so far)");
            }
            return;
        }
    };
    // Deciding and writing the lease file block; keep them off the reactor.
    let (settings, store) = (settings.clone(), store.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let mut st = store.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = server_logic::handle(&settings, &mut st, &msg, crate::clock::unix_now());
        // Persist before answering: an ACKed lease must survive a crash.
        let saved = if st.is_dirty() { Some(st.save()) } else { None };
        (outcome, saved)
    })
    .await;
    let (outcome, saved) = match joined {
        Ok(r) => r,
        Err(e) => {
            counters.dropped.fetch_add(1, Relaxed);
            eprintln!("dhcp: request handling failed: {e}");
            return;
        }
    };
    if let Some(Err(e)) = saved {
        // Refusing to answer would take the LAN down with the disk; answer, and
        // say loudly that the lease may be forgotten.
        counters.persist_errors.fetch_add(1, Relaxed);
        eprintln!("dhcp: could not write lease file: {e}; answering anyway");
    }
    let counter = match outcome.kind {
        Kind::Offer => &counters.offers,
        Kind::Ack => &counters.acks,
        Kind::Nak => &counters.naks,
        Kind::Decline => &counters.declines,
        Kind::Release => &counters.releases,
        Kind::Dropped => &counters.dropped,
    };
    counter.fetch_add(1, Relaxed);
    eprintln!("{}", outcome.log);
    if let Some(reply) = outcome.reply {
        match reply.encode() {
            Ok(bytes) => send(sock, &bytes, reply.dest).await,
            Err(e) => eprintln!("dhcp: encoding reply failed: {e}"),
        }
    }
}

async fn send(sock: &UdpSocket, bytes: &[u8], dest: SocketAddrV4) {
    if let Err(e) = sock.send_to(bytes, dest).await {
        eprintln!("dhcp: sending to {dest} failed: {e}");
    }
}

/// Lets a log line through at most once per `every`, so a flood of junk
/// cannot flood the log.
struct RateLimit {
    every: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    fn new(every: Duration) -> Self {
        RateLimit { every, last: None }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}
