//! The query pipeline, independent of how the query arrived: validate, answer
//! local names, try the cache, forward, and shape the reply for the transport.

use super::cache::{self, Cache};
use super::local::LocalZones;
use super::message::{self, Parsed};
use super::upstream;
use super::Counters;
use crate::context::Context;
use hickory_proto::op::{Message, ResponseCode};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

pub struct Resolver {
    ctx: Context,
    counters: Arc<Counters>,
    local: LocalZones,
    cache: Mutex<Cache>,
    /// Upstream that answered last (as u32; 0 = none yet).
    preferred: AtomicU32,
}

impl Resolver {
    pub fn new(ctx: Context, counters: Arc<Counters>) -> Self {
        let sys = &ctx.config.system;
        let local = LocalZones::new(&sys.hostname, &sys.domain, ctx.config.lan.address);
        Resolver {
            ctx,
            counters,
            local,
            cache: Mutex::new(Cache::new(cache::CAPACITY)),
            preferred: AtomicU32::new(0),
        }
    }

    /// The reply to send back, or None to stay silent (malformed input).
    pub async fn handle(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let c = &self.counters;
        c.queries.fetch_add(1, Relaxed);
        let req = match message::parse_query(bytes) {
            Parsed::Query(m) => m,
            Parsed::Refuse(reply, rcode) => {
                if rcode == ResponseCode::FormErr {
                    c.malformed.fetch_add(1, Relaxed);
                }
                return Some(reply);
            }
            Parsed::Drop => {
                c.malformed.fetch_add(1, Relaxed);
                return None;
            }
        };
        let limit = match transport {
            Transport::Udp => message::udp_limit(&req),
            Transport::Tcp => usize::from(u16::MAX),
        };
        let reply = self.resolve(bytes, &req).await?;
        Some(message::fit(reply, limit))
    }

    async fn resolve(&self, bytes: &[u8], req: &Message) -> Option<Vec<u8>> {
        if let Some(m) = self.local.answer(req) {
            return m.to_vec().ok();
        }
        let key = cache::Key::new(req)?;
        let cached = self.cache().get(&key, Instant::now());
        // Served even if too big for this client's UDP buffer: `fit` then sets
        // TC, and asking upstream again would only fetch the same big answer.
        if let Some(reply) = cached.and_then(|m| message::reply_from_cache(m, req)) {
            self.counters.cache_hits.fetch_add(1, Relaxed);
            return Some(reply);
        }

        let upstreams = self.upstreams();
        let question = req.queries().first()?;
        let addrs: Vec<SocketAddr> = upstream::order(&upstreams, self.preferred())
            .into_iter()
            .map(|ip| SocketAddr::from((ip, 53)))
            .collect();
        let forwarded =
            upstream::forward(bytes, question, &addrs, upstream::TIMEOUT, &self.counters).await;
        let Some((from, mut reply)) = forwarded else {
            // Covers "no upstream known yet" too: the client should try again later.
            return message::error_reply(req, ResponseCode::ServFail);
        };
        if let SocketAddr::V4(v4) = from {
            self.preferred.store(u32::from(*v4.ip()), Relaxed);
        }
        self.counters.forwarded.fetch_add(1, Relaxed);
        if let Some((msg, ttl)) = cache::cacheable(&reply) {
            self.cache().insert(key, msg, ttl, Instant::now());
        }
        message::set_id(&mut reply, req.id());
        Some(reply)
    }

    fn upstreams(&self) -> Vec<Ipv4Addr> {
        let cfg = &self.ctx.config;
        let wan = self.ctx.wan.borrow();
        pick_upstreams(&cfg.dns.upstreams, &wan.dns, cfg.lan.address)
    }

    fn preferred(&self) -> Option<Ipv4Addr> {
        match self.preferred.load(Relaxed) {
            0 => None,
            ip => Some(Ipv4Addr::from(ip)),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariants a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Configured upstreams win; otherwise whatever the WAN lease handed out (read
/// per query, so a renewed lease takes effect at once). Addresses that cannot
/// be a resolver go, and so does our own (a forwarding loop).
fn pick_upstreams(configured: &[Ipv4Addr], wan: &[Ipv4Addr], lan: Ipv4Addr) -> Vec<Ipv4Addr> {
    let list = if configured.is_empty() {
        wan
    } else {
        configured
    };
    list.iter()
        .copied()
        .filter(|ip| !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast())
        .filter(|ip| *ip != lan)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_upstreams_beat_wan_and_never_include_us() {
        let lan = Ipv4Addr::new(192, 168, 1, 1);
        let (a, b) = (Ipv4Addr::new(9, 9, 9, 9), Ipv4Addr::new(1, 1, 1, 1));
        assert_eq!(pick_upstreams(&[a], &[b], lan), vec![a]);
        assert_eq!(pick_upstreams(&[], &[b, a], lan), vec![b, a]);
        assert!(pick_upstreams(&[], &[], lan).is_empty());
        assert_eq!(
            pick_upstreams(&[lan, Ipv4Addr::UNSPECIFIED, a], &[], lan),
            vec![a]
        );
    }
}
