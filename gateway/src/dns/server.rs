//! The LAN-facing sockets: UDP and TCP on port 53 of the router's LAN address.

use super::resolver::{Resolver, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};

/// Queries being forwarded at once over UDP; beyond this we drop (the client retries).
const MAX_UDP_IN_FLIGHT: usize = 512;
const MAX_TCP_CONNECTIONS: usize = 64;
/// RFC 7766 suggests seconds, not minutes, for an idle DNS TCP connection.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Time allowed for the rest of a message once its length has arrived, and for writing a reply.
const TCP_IO: Duration = Duration::from_secs(5);

/// Binds both sockets, retrying every second: at boot the LAN bridge may not
/// have its address yet.
pub async fn bind(addr: SocketAddr) -> (UdpSocket, TcpListener) {
    let mut warned = false;
    loop {
        let res = async {
            Ok::<_, std::io::Error>((UdpSocket::bind(addr).await?, TcpListener::bind(addr).await?))
        };
        match res.await {
            Ok(sockets) => {
                eprintln!("gatewayd: dns: listening on {addr} (udp, tcp)");
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

pub async fn serve_udp(sock: UdpSocket, resolver: Arc<Resolver>) {
    let sock = Arc::new(sock);
    let slots = Arc::new(Semaphore::new(MAX_UDP_IN_FLIGHT));
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("gatewayd: dns: udp receive: {e}");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, resolver) = (sock.clone(), resolver.clone());
        tokio::spawn(async move {
            if let Some(reply) = resolver.handle(&query, Transport::Udp).await {
                // A client that went away is not our problem.
                let _ = sock.send_to(&reply, peer).await;
            }
            drop(slot);
        });
    }
}

pub async fn serve_tcp(listener: TcpListener, resolver: Arc<Resolver>) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
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
            connection(stream, &resolver).await;
            drop(slot);
        });
    }
}

/// Length-prefixed messages, answered in order, until the client goes quiet,
/// closes, or sends something we drop.
async fn connection(mut stream: TcpStream, resolver: &Resolver) {
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
        let Some(reply) = resolver.handle(&query, Transport::Tcp).await else {
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
