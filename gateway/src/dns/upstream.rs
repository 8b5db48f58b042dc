//! Talking to upstream resolvers. Every exchange uses a fresh socket (kernel-
//! chosen random source port) and a fresh random ID, and a reply counts only if
//! it comes from the upstream and echoes our ID and question: that is what
//! stands between LAN clients and off-path cache poisoning. DNS-over-TLS
//! upstreams (RFC 7858) get the same ID and question checks on top of a
//! certificate-verified channel.

use super::message::{is_reply_to, is_truncated, set_id};
use super::tls::TlsClient;
use super::Counters;
use hickory_proto::op::Query;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// How long one upstream gets (per transport) before we move to the next.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Where a query can go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Port 53, UDP with TCP for truncated answers.
    Plain(SocketAddr),
    /// DNS over TLS; `name` is what the certificate must say.
    Tls { addr: SocketAddr, name: String },
}

/// The upstream that answered last goes first, so a dead resolver early in
/// the list costs one timeout, not one per query.
pub fn order<T: PartialEq + Clone>(upstreams: &[T], preferred: Option<&T>) -> Vec<T> {
    let mut out: Vec<T> = preferred
        .filter(|p| upstreams.contains(p))
        .cloned()
        .into_iter()
        .collect();
    for u in upstreams {
        if !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// Asks each upstream in turn; returns the first genuine reply and who sent
/// it. The reply still carries our upstream-side ID.
pub async fn forward(
    query: &[u8],
    question: &Query,
    upstreams: &[Target],
    wait: Duration,
    counters: &Counters,
    tls: Option<&TlsClient>,
) -> Option<(Target, Vec<u8>)> {
    for up in upstreams {
        let res = match up {
            Target::Plain(addr) => exchange(*addr, query, question, wait, counters).await,
            Target::Tls { addr, name } => match tls {
                Some(t) => {
                    match timeout(wait, t.exchange(*addr, name, query, question, counters)).await {
                        Ok(r) => r,
                        Err(e) => Err(e.into()),
                    }
                }
                None => Err(io::Error::other("no TLS client")),
            },
        };
        match res {
            Ok(reply) => return Some((up.clone(), reply)),
            Err(_) => {
                counters.upstream_failures.fetch_add(1, Relaxed);
            }
        }
    }
    None
}

async fn exchange(
    up: SocketAddr,
    query: &[u8],
    question: &Query,
    wait: Duration,
    counters: &Counters,
) -> io::Result<Vec<u8>> {
    let reply = timeout(wait, udp(up, query, question, counters)).await??;
    if let Some(reply) = reply.filter(|r| !is_truncated(r)) {
        return Ok(reply);
    }
    // The answer did not fit in a datagram: the full one is only available over TCP.
    timeout(wait, tcp(up, query, question, counters)).await?
}

pub fn with_fresh_id(query: &[u8]) -> (u16, Vec<u8>) {
    let id: u16 = rand::random();
    let mut q = query.to_vec();
    set_id(&mut q, id);
    (id, q)
}

/// Largest UDP reply we accept for `query`: what its sender said it can take
/// (the upstream sees the client's own OPT record), 512 without EDNS.
fn udp_reply_limit(query: &[u8]) -> usize {
    super::wire::parse_question(query).map_or(usize::from(u16::MAX), |q| q.udp_limit())
}

/// The genuine UDP reply, or None if it was larger than the query allowed
/// (then only TCP can deliver it whole).
async fn udp(
    up: SocketAddr,
    query: &[u8],
    question: &Query,
    counters: &Counters,
) -> io::Result<Option<Vec<u8>>> {
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connecting makes the kernel drop datagrams from other sources and report
    // ICMP unreachable as an error, so a dead upstream fails fast.
    sock.connect(up).await?;
    let (id, q) = with_fresh_id(query);
    sock.send(&q).await?;
    // One byte more than allowed, to notice a reply that would not fit (a
    // 64 KiB buffer per query in flight would be most of our memory).
    let cap = udp_reply_limit(query) + 1;
    let mut buf = vec![0u8; cap];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        if from == up && n >= cap {
            return Ok(None);
        }
        if from == up && is_reply_to(&buf[..n], id, question) {
            buf.truncate(n);
            return Ok(Some(buf));
        }
        counters.spoofed_rejected.fetch_add(1, Relaxed);
    }
}

async fn tcp(
    up: SocketAddr,
    query: &[u8],
    question: &Query,
    counters: &Counters,
) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(up).await?;
    exchange_framed(&mut stream, query, question, counters).await
}

/// One query over a stream (TCP or TLS, RFC 1035 4.2.2 framing) with a fresh
/// ID; the reply must match it.
pub async fn exchange_framed<S>(
    stream: &mut S,
    query: &[u8],
    question: &Query,
    counters: &Counters,
) -> io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let len = u16::try_from(query.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "query too long"))?;
    let (id, q) = with_fresh_id(query);
    let mut framed = Vec::with_capacity(q.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&q);
    stream.write_all(&framed).await?;
    stream.flush().await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    if !is_reply_to(&reply, id, question) {
        counters.spoofed_rejected.fetch_add(1, Relaxed);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "stream reply does not match the query",
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::message::id;
    use crate::dns::message::tests::query_msg;
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::RecordType;
    use tokio::net::TcpListener;

    #[test]
    fn preferred_upstream_goes_first() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        assert_eq!(order(&[a, b], None), vec![a, b]);
        assert_eq!(order(&[a, b], Some(&b)), vec![b, a]);
        // A preference no longer configured is ignored.
        assert_eq!(order(&[a], Some(&b)), vec![a]);
    }

    /// Reply built from the query bytes the upstream received.
    fn answer_to(received: &[u8], truncated: bool) -> Vec<u8> {
        let mut m = Message::from_vec(received).unwrap();
        m.set_message_type(MessageType::Response)
            .set_truncated(truncated);
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn spoofed_replies_ignored_then_real_one_accepted() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up = server.local_addr().unwrap();
        let query = query_msg("a.test.", RecordType::A, 0x4242)
            .to_vec()
            .unwrap();
        let question = Message::from_vec(&query).unwrap().queries()[0].clone();
        let srv = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, client) = server.recv_from(&mut buf).await.unwrap();
            let got = buf[..n].to_vec();
            // Wrong ID.
            let mut bad = answer_to(&got, false);
            set_id(&mut bad, id(&got).unwrap().wrapping_add(1));
            server.send_to(&bad, client).await.unwrap();
            // Right ID, different question.
            let mut other = query_msg("b.test.", RecordType::A, 0).to_vec().unwrap();
            set_id(&mut other, id(&got).unwrap());
            server
                .send_to(&answer_to(&other, false), client)
                .await
                .unwrap();
            // The real thing.
            server
                .send_to(&answer_to(&got, false), client)
                .await
                .unwrap();
            got
        });
        let counters = Counters::default();
        let (from, reply) = forward(
            &query,
            &question,
            &[Target::Plain(up)],
            TIMEOUT,
            &counters,
            None,
        )
        .await
        .unwrap();
        let sent = srv.await.unwrap();
        assert_eq!(from, Target::Plain(up));
        assert_eq!(&sent[2..], &query[2..], "only the ID is rewritten");
        assert_eq!(id(&reply), id(&sent));
        assert_eq!(counters.spoofed_rejected.load(Relaxed), 2);
        assert_eq!(counters.upstream_failures.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn silent_upstream_fails_over_and_truncation_retries_tcp() {
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // One port, both transports, as a real resolver on :53.
        let tcp_srv = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = tcp_srv.local_addr().unwrap();
        let udp_srv = UdpSocket::bind(up).await.unwrap();
        let query = query_msg("big.test.", RecordType::TXT, 7).to_vec().unwrap();
        let question = Message::from_vec(&query).unwrap().queries()[0].clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, client) = udp_srv.recv_from(&mut buf).await.unwrap();
            udp_srv
                .send_to(&answer_to(&buf[..n], true), client)
                .await
                .unwrap();
        });
        tokio::spawn(async move {
            let (mut s, _) = tcp_srv.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            let r = answer_to(&q, false);
            s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&r).await.unwrap();
        });
        let counters = Counters::default();
        let ups = [Target::Plain(dead.local_addr().unwrap()), Target::Plain(up)];
        let (from, reply) = forward(
            &query,
            &question,
            &ups,
            Duration::from_millis(300),
            &counters,
            None,
        )
        .await
        .unwrap();
        assert_eq!(from, Target::Plain(up));
        assert!(!is_truncated(&reply), "full answer came over TCP");
        assert_eq!(counters.upstream_failures.load(Relaxed), 1);
        drop(dead);
    }

    #[tokio::test]
    async fn reply_larger_than_the_client_allows_is_fetched_over_tcp() {
        let tcp_srv = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = tcp_srv.local_addr().unwrap();
        let udp_srv = UdpSocket::bind(up).await.unwrap();
        // No EDNS: the client takes 512 bytes at most.
        let query = query_msg("big.test.", RecordType::TXT, 7).to_vec().unwrap();
        let question = Message::from_vec(&query).unwrap().queries()[0].clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, client) = udp_srv.recv_from(&mut buf).await.unwrap();
            let mut big = answer_to(&buf[..n], false);
            big.resize(700, 0);
            udp_srv.send_to(&big, client).await.unwrap();
        });
        tokio::spawn(async move {
            let (mut s, _) = tcp_srv.accept().await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            let r = answer_to(&q, false);
            s.write_all(&(r.len() as u16).to_be_bytes()).await.unwrap();
            s.write_all(&r).await.unwrap();
        });
        let counters = Counters::default();
        let (_, reply) = forward(
            &query,
            &question,
            &[Target::Plain(up)],
            Duration::from_secs(2),
            &counters,
            None,
        )
        .await
        .unwrap();
        assert!(
            reply.len() < 512,
            "the TCP answer, not the oversized datagram"
        );
        assert!(Message::from_vec(&reply).is_ok());
        assert_eq!(counters.upstream_failures.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn no_answer_anywhere_is_none() {
        let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let query = query_msg("a.test.", RecordType::A, 1).to_vec().unwrap();
        let question = Message::from_vec(&query).unwrap().queries()[0].clone();
        let counters = Counters::default();
        let ups = [Target::Plain(dead.local_addr().unwrap())];
        assert!(forward(
            &query,
            &question,
            &ups,
            Duration::from_millis(100),
            &counters,
            None,
        )
        .await
        .is_none());
        assert_eq!(counters.upstream_failures.load(Relaxed), 1);
    }
}
